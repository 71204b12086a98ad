"""Bit-exact scoreboard: every output bit pattern against the golden model's (spec 7, 8).

The scoreboard counts every compared value and keeps the FIRST mismatch as a message a person can
act on: the transaction's inputs decoded into numbers (header fields and scale, element codes and
values), and expected vs got as hex and as a float. Helpers here turn header and element codes
into such text; the testbenches build the per-transaction description from them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from nxfp_hw.formats import BlockFormat

__all__ = ["Mismatch", "Scoreboard", "describe_elements", "describe_header", "float_of_bits", "show_bits", "show_exact"]

_FLOAT_VIEW = {32: (np.uint32, np.float32), 16: (np.uint16, np.float16)}


def float_of_bits(bits: int, kind: str = "fp32") -> float:
    """Value of an IEEE bit pattern: ``fp32``, ``fp16`` or ``bf16`` (``ValueError`` if it has more bits)."""
    if not 0 <= bits < 1 << (16 if kind in ("fp16", "bf16") else 32):
        raise ValueError(f"0x{bits:x} is not a {kind} bit pattern")
    if kind == "bf16":
        return float(np.array([bits << 16], dtype=np.uint32).view(np.float32)[0])
    width = 16 if kind == "fp16" else 32
    u, f = _FLOAT_VIEW[width]
    return float(np.array([bits], dtype=u).view(f)[0])


def show_bits(bits: int, kind: str = "fp32") -> str:
    """``0x3fc00000 (1.5)`` for IEEE kinds; any other kind (``code``, ``int``, ...) or a value wider than the
    kind shows hex and decimal (``0x1ffffffffff (2199023255551)``). Never raises."""
    bits = int(bits)
    if kind in ("fp32", "fp16", "bf16") and bits >= 0:
        digits = 4 if kind in ("fp16", "bf16") else 8
        try:
            return f"0x{bits:0{digits}x} ({float_of_bits(bits, kind)!r})"
        except ValueError:
            pass
    return f"{'-' if bits < 0 else ''}0x{abs(bits):x} ({bits})"


def show_exact(units: int, lsb_exponent: int) -> str:
    """An exact dyadic value ``units * 2**lsb_exponent`` as ``-3*2^-140 (~-2.1e-42)`` (odd significand)."""
    if units == 0:
        return "0"
    tz = (abs(units) & -abs(units)).bit_length() - 1
    m, e = units >> tz, lsb_exponent + tz
    try:
        approx = f"{math.ldexp(float(m), e):.9g}"
    except OverflowError:
        approx = f"{'-' if m < 0 else ''}inf"
    return f"{m}*2^{e} (~{approx})"


def describe_header(fmt: BlockFormat, header: int) -> str:
    """Header fields and the decoded scale / element format / recycled value of one header code."""
    scale_code, sel, rec = (int(x) for x in fmt.split_header(header))
    sel_c = min(sel, len(fmt.elements) - 1)
    fields = " ".join(f"{f.name}={int(f.extract(header))}" for f in reversed(fmt.header_fields))
    scale = float(fmt.scale.code_values()[scale_code])
    parts = [f"header 0x{header:0{(fmt.header_bits + 3) // 4}x} [{fields}]", f"scale {fmt.scale.name} = {scale!r}"]
    if len(fmt.elements) > 1:
        parts.append(f"element format {fmt.elements[sel_c].name}")
    if fmt.recycling:
        parts.append(f"recycled -0 = {float(fmt.recycling[sel_c][min(rec, fmt.recycle_options - 1)])!r}")
    return ", ".join(parts)


def describe_elements(fmt: BlockFormat, header: int, codes: Sequence[int], *, limit: int = 64) -> str:
    """``code:value`` of each element under ``header`` (element values before scaling)."""
    _, sel, rec = (int(x) for x in fmt.split_header(header))
    table = fmt.element_table(min(sel, len(fmt.elements) - 1), min(rec, max(fmt.recycle_options, 1) - 1))
    items = [f"{int(c):#x}:{float(table[int(c)])!r}" for c in list(codes)[:limit]]
    more = f" ... (+{len(codes) - limit})" if len(codes) > limit else ""
    return "[" + ", ".join(items) + more + "]"


def _int_array(values: object) -> np.ndarray:
    """int64, or Python ints (object) when a value does not fit 63 bits (outputs of any width)."""
    arr = np.asarray(values)
    if arr.dtype == object or (arr.dtype.kind == "u" and arr.dtype.itemsize >= 8):
        return arr.astype(object)
    return arr.astype(np.int64)


@dataclass(frozen=True)
class Mismatch:
    index: int  # transaction (output beat / reduction) number
    lane: int  # element within the transaction, 0 for scalar outputs
    expected: int
    got: int
    message: str


class Scoreboard:
    """Compares output transactions against expected bit patterns, in order.

    ``expected`` has shape ``(n,)`` (one value per transaction) or ``(n, lanes)``. ``describe(index, lane)``
    returns the decoded inputs of transaction ``index`` (lane ``lane``) for the mismatch message. ``kind`` says how to
    show values (``fp32``, ``fp16``, ``bf16``).
    """

    def __init__(self, expected: np.ndarray, *, describe: Callable[[int, int], str] | None = None, kind: str = "fp32",
                 name: str = "output"):
        self.expected = _int_array(expected)
        if self.expected.ndim == 1:
            self.expected = self.expected[:, None]
        self.describe = describe
        self.kind = kind
        self.name = name
        self.received = 0
        self.compared = 0
        self.mismatches = 0
        self.mismatched_transactions = 0
        self.first: Mismatch | None = None
        self.extra = 0
        self.got: list[np.ndarray] = []

    @property
    def expected_count(self) -> int:
        return self.expected.shape[0]

    def check(self, got: int | Sequence[int] | np.ndarray) -> bool:
        """Compare the next output transaction; True when every lane matches."""
        idx = self.received
        self.received += 1
        g = _int_array(got).reshape(-1)
        self.got.append(g)
        if idx >= self.expected_count:
            self.extra += 1
            if self.first is None:
                self.first = Mismatch(idx, 0, -1, int(g[0]),
                                      f"{self.name}: unexpected transaction {idx} (only {self.expected_count} "
                                      f"expected): got {', '.join(show_bits(int(x), self.kind) for x in g[:4])}")
            return False
        exp = self.expected[idx]
        if exp.shape != g.shape:
            raise ValueError(f"{self.name}: transaction {idx} has {g.size} values, expected {exp.size}")
        self.compared += g.size
        bad = np.flatnonzero(exp != g)
        if bad.size == 0:
            return True
        self.mismatches += int(bad.size)
        self.mismatched_transactions += 1
        if self.first is None:
            lane = int(bad[0])
            e, x = int(exp[lane]), int(g[lane])
            where = f"transaction {idx}" + (f", lane {lane}" if exp.size > 1 else "")
            inputs = self.describe(idx, lane) if self.describe is not None else ""
            msg = (f"{self.name} mismatch at {where}: expected {show_bits(e, self.kind)}, got {show_bits(x, self.kind)}"
                   f" ({bad.size} of {exp.size} lanes differ)" + (f"\n  inputs: {inputs}" if inputs else ""))
            self.first = Mismatch(idx, lane, e, x, msg)
        return False

    def check_all(self, rows: np.ndarray | Sequence[Sequence[int]]) -> bool:
        """:meth:`check` every row of ``rows`` (transactions in order); the leading rows that all match are taken
        in one vectorised step, so millions of values cost little. True when every row matches."""
        arr = _int_array(rows)
        n = arr.shape[0] if arr.ndim else 0
        if n == 0:
            return True
        arr = arr.reshape(n, -1)
        fits = min(n, max(self.expected_count - self.received, 0))
        start = self.received
        if type(self).check is Scoreboard.check and fits and arr.shape[1] == self.expected.shape[1]:
            bad = np.flatnonzero(np.any(arr[:fits] != self.expected[start:start + fits], axis=1))
            ok = int(bad[0]) if bad.size else fits
            self.got.extend(arr[:ok])
            self.received += ok
            self.compared += ok * arr.shape[1]
            arr = arr[ok:]
        passed = True
        for row in arr:
            passed = self.check(row) and passed
        return passed and self.mismatches == 0 and self.extra == 0

    @property
    def missing(self) -> int:
        return max(self.expected_count - self.received, 0)

    @property
    def passed(self) -> bool:
        return self.mismatches == 0 and self.extra == 0 and self.missing == 0

    def got_array(self) -> np.ndarray:
        """Received values, shape ``(received, lanes)`` (int64)."""
        if not self.got:
            return np.zeros((0, self.expected.shape[1]), dtype=np.int64)
        return np.stack(self.got)

    def report(self) -> str:
        """One-paragraph verdict with the first mismatch (if any)."""
        head = (f"{self.name}: {self.received}/{self.expected_count} transactions, {self.compared} values compared, "
                f"{self.mismatches} mismatching values")
        if self.missing:
            head += f", {self.missing} transactions missing"
        if self.extra:
            head += f", {self.extra} unexpected transactions"
        if self.first is not None:
            head += "\n" + self.first.message
        return head
