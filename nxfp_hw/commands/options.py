"""argparse types shared by the subcommands: every number is checked when the command line is parsed,
before any work starts (a bad value exits with status 2 and a message naming the option)."""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import threading
import time
from collections.abc import Iterator

__all__ = ["MAX_SEED", "csv_list", "heartbeat", "nonnegative_int", "positive_float", "positive_int", "seed"]

#: Seeds are 32-bit unsigned integers (cocotb and the simulators take them as such).
MAX_SEED = (1 << 32) - 1


def _int(text: str) -> int:
    text = text.strip()
    # int() accepts Unicode digits and "1_6"; a seed or a count on a command line is plain ASCII digits.
    body = text[1:] if text[:1] in "+-" else text
    if not body.isascii() or not body.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(text)


def csv_list(text: str) -> list[str]:
    """A comma-separated list of one or more items."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def seed(text: str) -> int:
    """A seed: an integer 0 .. 2^32-1."""
    value = _int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed between 0 and {MAX_SEED}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def positive_float(text: str, what: str = "a positive finite number") -> float:
    """A positive, finite number (``what`` names it in the message)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


@contextlib.contextmanager
def heartbeat(label: str, delay: float = 3.0, every: float = 5.0) -> Iterator[None]:
    """While the block runs longer than ``delay`` seconds, say on stderr that ``label`` is still going
    (elapsed seconds, every ``every`` seconds): a long generation is not mistaken for a hang."""
    done = threading.Event()
    start = time.monotonic()

    def beat() -> None:
        wait = delay
        while not done.wait(wait):
            with contextlib.suppress(OSError, ValueError):
                print(f"  ... {label}: {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
            wait = every

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
