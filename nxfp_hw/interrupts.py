"""SIGTERM handled like SIGINT, child processes stopped with the command, and critical sections.

``nxfp-hw`` writes every output through a temporary file or directory that an exception removes
(``except BaseException``). Python turns SIGINT into ``KeyboardInterrupt`` but dies on SIGTERM
without unwinding, leaving those temporaries and any tool it started (yosys and its ABC, make and
g++, a simulator) running as orphans. :func:`handle_signals` makes both signals:

1. stop every descendant process of this one (found through ``/proc``, so a tool's own children,
   such as the ``yosys-abc`` a ``yosys`` started, go too);
2. raise :class:`Terminated` (SIGTERM) or ``KeyboardInterrupt`` (SIGINT) in the main thread, so
   the cleanup paths run and the CLI exits with 143 or 130.

:func:`deferred` holds both signals back over a few statements that must not be cut in half (the
renames that replace one generated module's files in place).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

__all__ = ["Terminated", "deferred", "handle_signals", "kill_descendants", "stopping"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_stopping = threading.Event()


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM (a ``KeyboardInterrupt`` so every cleanup path treats it alike)."""


def stopping() -> bool:
    """True once SIGINT or SIGTERM arrived: work in other threads should not start a new step."""
    return _stopping.is_set()


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _resource_tracker() -> int | None:
    """The pid of this process's multiprocessing resource tracker, if it started one (a Dask LocalCluster does)."""
    import sys

    tracker = getattr(sys.modules.get("multiprocessing.resource_tracker"), "_resource_tracker", None)
    return getattr(tracker, "_pid", None)


def kill_descendants() -> None:
    """SIGKILL every process below this one (the whole tree is listed first, then killed). The multiprocessing
    resource tracker is spared: it runs no tool and exits with this process, and without it every semaphore a
    killed worker leaves would be released with a traceback on stderr."""
    spare = _resource_tracker()
    for pid in _descendants(os.getpid()):
        if pid == spare:
            continue
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _handler(signum: int, frame: object) -> None:
    _stopping.set()
    kill_descendants()
    # A second signal during the cleanup must not cut the cleanup short.
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM stop child processes and raise (module doc); the previous
    handlers come back afterwards. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    _stopping.clear()
    for sig in _SIGNALS:
        if saved[sig] != signal.SIG_IGN:  # `nohup` / a background job's ignored SIGINT stays ignored
            signal.signal(sig, _handler)
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block ends (then they act as usual)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
