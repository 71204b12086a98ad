"""Where the tasks of a sweep run: this process, a Dask LocalCluster, or an existing Dask scheduler.

``nxfp-hw sweep`` and ``nxfp-hw report`` hand the engine a list of independent tasks (one sweep point, one
(unit, format) of a report) and a callback; the engine runs them and calls back, in the calling process,
once per task as it finishes, in whatever order they finish (docs/sweep.md):

- ``inline``: one after the other in this process (``report --jobs 1``: no cluster to start);
- ``workers=N``: a Dask ``LocalCluster`` of N worker processes with one thread each, each watched by a
  nanny that restarts it if it dies;
- ``scheduler="tcp://host:8786"``: the workers of an existing Dask cluster (``dask scheduler`` and
  ``dask worker`` processes, or dask-jobqueue's jobs on a SLURM/LSF/PBS farm).

A worker that dies (killed, out of memory, its node lost) loses only the task it was running: the Dask
scheduler gives it to another worker, up to ``distributed.scheduler.allowed-failures`` times (3), after
which the task is reported as failed. Each task's result reaches the callback exactly once.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError

__all__ = ["DEFAULT_CONNECT_TIMEOUT_S", "Engine", "Outcome", "Progress", "default_workers", "worker_address"]

DEFAULT_CONNECT_TIMEOUT_S = 10.0
# Without a finished task for this long, the progress line is repeated (a farm run is not mistaken for a hang).
HEARTBEAT_S = 60.0

Task = tuple[str, tuple[Any, ...], dict[str, Any]]  # (key, positional arguments, keyword arguments)


@dataclass
class Outcome:
    """One finished task: ``value`` is what the task returned; ``error`` says why the engine could not run it
    (then ``value`` is None)."""

    key: str
    args: tuple[Any, ...]
    value: Any = None
    lines: list[str] = field(default_factory=list)
    error: str | None = None
    worker: str = "local"
    seconds: float = 0.0


def default_workers() -> int:
    """Worker processes of a LocalCluster sized to this machine: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def worker_address() -> str:
    """The address of the Dask worker running the calling task (``local`` outside one)."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "local"


def _run_task(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
              ) -> tuple[Any, list[str], str, float]:
    """What a worker runs: ``fn(*args, echo=..., **kwargs)``, its lines collected for the caller."""
    lines: list[str] = []
    t0 = time.monotonic()
    value = fn(*args, echo=lines.append, **kwargs)
    return value, lines, worker_address(), time.monotonic() - t0


def _describe_failure(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "KilledWorker":
        return ("the workers running it died too often (distributed.scheduler.allowed-failures); see the "
                "workers' logs")
    return f"{name}: {exc}"


class Engine:
    """A context manager that runs tasks inline, on a LocalCluster of ``workers`` processes (default: one
    per CPU) or on the Dask scheduler at ``scheduler``. Entering it starts the cluster or connects: an
    unreachable scheduler, or one with no worker within ``connect_timeout`` seconds, is a ``UserError``."""

    def __init__(self, *, scheduler: str | None = None, workers: int | None = None, inline: bool = False,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S) -> None:
        if scheduler is not None and inline:
            raise ValueError("Engine: inline or a scheduler, not both")
        if workers is not None and workers < 1:
            raise UserError(f"workers: expected a positive number of worker processes, got {workers}")
        self.scheduler, self.inline, self.connect_timeout = scheduler, inline, connect_timeout
        self.n_workers = workers or default_workers()
        self.client: Any = None
        self.cluster: Any = None
        self._pending: set[str] = set()  # Dask keys of the tasks of the running map()

    def describe(self) -> str:
        """How the tasks run, for the progress output."""
        if self.inline:
            return "this process"
        if self.scheduler is not None:
            return f"the Dask scheduler at {self.scheduler} ({len(self.workers())} workers)"
        return f"a Dask LocalCluster of {self.n_workers} worker process{'es' if self.n_workers > 1 else ''}"

    def __enter__(self) -> Engine:
        if self.inline:
            return self
        from distributed import Client, LocalCluster

        if self.scheduler is not None:
            check_scheduler_address(self.scheduler)
            try:
                self.client = Client(self.scheduler, timeout=self.connect_timeout, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise UserError(f"scheduler: cannot reach {self.scheduler} within {self.connect_timeout:g} s "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no answer'})"
                                ) from None
            try:
                self.client.wait_for_workers(1, timeout=self.connect_timeout)
            except (OSError, TimeoutError):
                self.close()
                raise UserError(f"scheduler: {self.scheduler} has no worker (waited {self.connect_timeout:g} s); "
                                "start some with `dask worker " + self.scheduler + "`") from None
        else:
            self.cluster = LocalCluster(n_workers=self.n_workers, threads_per_worker=1, processes=True,
                                        dashboard_address=":0", silence_logs=logging.ERROR)
            self.client = Client(self.cluster, set_as_default=False)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect, and stop the LocalCluster this engine started (an existing cluster keeps running)."""
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    def workers(self) -> list[str]:
        """Addresses of the workers (``["local"]`` inline)."""
        if self.client is None:
            return ["local"]
        return sorted(self.client.scheduler_info(n_workers=-1)["workers"])

    def run_on_workers(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        """``{worker: fn(*args)}`` on every worker (a check of its environment)."""
        if self.client is None:
            return {"local": fn(*args)}
        return dict(self.client.run(fn, *args))

    def running(self) -> int:
        """How many tasks of the running ``map`` are on a worker now."""
        if self.client is None:
            return 1 if self._pending else 0
        try:  # a worker's processing set holds the tasks queued on it too: at most one per thread runs
            per_worker = self.client.processing()
            threads = self.client.nthreads()
            return sum(min(threads.get(w, 1), sum(1 for k in ks if k in self._pending))
                       for w, ks in per_worker.items())
        except Exception:  # noqa: BLE001 - a progress figure, never a reason to stop
            return 0

    def map(self, fn: Callable[..., Any], tasks: Sequence[Task], on_done: Callable[[Outcome], None], *,
            echo: Callable[[str], None] | None = None, heartbeat: Callable[[int], None] | None = None) -> None:
        """Run ``fn(*args, echo=..., **kwargs)`` for every ``(key, args, kwargs)`` of ``tasks`` and call
        ``on_done(Outcome)`` as each finishes. ``fn`` must be importable on the workers; its ``echo`` lines
        come back in ``Outcome.lines`` (inline, they go to ``echo`` as they are written, when given). An
        exception in ``fn`` or a task that keeps killing its workers is an ``Outcome`` with ``error``;
        ``heartbeat(running)`` is called when no task has finished for a while."""
        if self.client is None:
            for key, args, kwargs in tasks:
                self._pending = {key}
                t0, lines = time.monotonic(), []
                out = Outcome(key=key, args=args)
                try:
                    out.value = fn(*args, echo=echo or lines.append, **kwargs)
                except Exception as exc:  # noqa: BLE001 - reported, the other tasks go on
                    out.error = _describe_failure(exc)
                out.lines, out.seconds = lines, time.monotonic() - t0
                self._pending = set()
                on_done(out)
            return
        from distributed import as_completed

        tag = uuid.uuid4().hex[:8]
        futures = {}
        for key, args, kwargs in tasks:
            fut = self.client.submit(_run_task, fn, args, kwargs, key=f"{key}-{tag}", pure=False)
            futures[fut] = (key, args)
        pending = set(futures)
        self._pending = {f.key for f in pending}
        finished = as_completed(list(futures), loop=self.client.loop)
        quiet_since = time.monotonic()
        try:
            while pending:
                batch = finished.next_batch(block=False)
                if not batch:
                    if heartbeat is not None and time.monotonic() - quiet_since > HEARTBEAT_S:
                        heartbeat(self.running())
                        quiet_since = time.monotonic()
                    time.sleep(0.1)
                    continue
                quiet_since = time.monotonic()
                for fut in batch:
                    pending.discard(fut)
                    self._pending.discard(fut.key)
                    key, args = futures[fut]
                    out = Outcome(key=key, args=args)
                    try:
                        out.value, out.lines, out.worker, out.seconds = fut.result()
                    except Exception as exc:  # noqa: BLE001 - reported, the other tasks go on
                        out.error = _describe_failure(exc)
                    fut.release()
                    on_done(out)
        except BaseException:
            self.client.cancel(list(pending))
            raise
        finally:
            self._pending = set()


def check_scheduler_address(address: str) -> None:
    """A Dask scheduler address: ``tcp://host:port`` (or ``tls://``, ``ucx://``, ``inproc://``)."""
    from distributed.comm import parse_address

    try:
        scheme, loc = parse_address(address, strict=True)
    except ValueError as exc:
        raise UserError(f"scheduler: {address!r}: expected an address like tcp://host:8786 ({exc})") from None
    if scheme not in ("tcp", "tls", "ucx", "inproc", "ws", "wss") or not loc:
        raise UserError(f"scheduler: {address!r}: expected an address like tcp://host:8786")


class Progress:
    """Done / running / failed counts and the time left of a batch of tasks: one line on stderr (or ``echo``)
    per finished task, and on a heartbeat."""

    def __init__(self, total: int, *, skipped: int = 0, echo: Callable[[str], None] | None = None) -> None:
        self.total, self.done, self.failed, self.skipped = total, skipped, 0, skipped
        self.t0 = time.monotonic()
        self.echo = echo or (lambda s: print(s, file=sys.stderr, flush=True))

    def eta(self) -> str:
        ran = self.done - self.skipped
        left = self.total - self.done
        if not left:
            return "0 s"
        if ran <= 0:
            return "unknown"
        return _duration((time.monotonic() - self.t0) / ran * left)

    def status(self, running: int) -> str:
        return (f"[{self.done}/{self.total} done, {running} running, {self.failed} failed, ETA {self.eta()}, "
                f"{_duration(time.monotonic() - self.t0)} elapsed]")

    def finished(self, text: str, *, failed: bool, running: int) -> None:
        self.done += 1
        self.failed += failed
        self.echo(f"{self.status(running)} {text}")

    def heartbeat(self, running: int) -> None:
        self.echo(f"{self.status(running)} still running")


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
