"""The content-hash result cache shared by concurrent runs (docs/sweep.md "Cache").

Entries are small JSON files named by a digest of everything that decides the result (the Verilog, the
flow, its options, the tool versions and the flow sources). Many processes, on one machine or on the
nodes of a farm sharing the directory, may ask for the same entry at once: :func:`cached` takes an
exclusive lock on the entry (``flock`` on a hidden ``.<name>.lock`` beside it), looks again, and only then
computes, so an entry is computed once; it is written through a temporary file and a rename, so a reader
never sees half of it, and a process killed while computing leaves no entry (its lock dies with it). A
corrupt entry is treated as absent.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["cached", "entry_lock", "load_entry"]


def load_entry(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path``, or None when it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text()) if Path(path).is_file() else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def entry_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of cache entry ``path`` (other processes and threads wait)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cached(path: Path, compute: Callable[[], dict[str, Any]],
           valid: Callable[[dict[str, Any]], bool] = lambda _: True) -> tuple[dict[str, Any], bool]:
    """``(entry, hit)``: the entry at ``path`` if there is a ``valid`` one, else ``compute()`` written there
    under the entry's lock (``hit`` False). An exception in ``compute`` writes nothing."""
    from .accuracy import write_text_atomic

    entry = load_entry(path)
    if entry is not None and valid(entry):
        return entry, True
    with entry_lock(path):
        entry = load_entry(path)  # another process may have written it while this one waited
        if entry is not None and valid(entry):
            return entry, True
        entry = compute()
        write_text_atomic(path, json.dumps(entry, indent=1) + "\n")
    return entry, False
