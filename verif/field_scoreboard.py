"""Scoreboard for output fields of any width and meaning (foreign units, docs/verification.md).

Values are Python ints (no int64 limit); a field is ``width`` bits per element, ``signed`` (two's
complement) or not, and has a ``kind`` that says how to show a value: ``int`` (decimal), ``fp32``/
``fp16``/``bf16`` (IEEE bits and the number), ``exact`` (an integer times ``2**lsb_exponent``),
``code`` (an element code and its value, via ``show``), or any callable. Expected values may be
``None`` (don't care); a got value of ``None`` means X/Z bits. The first mismatch is kept as a
message naming the transaction, port, lane, both values decoded, and the transaction's inputs
(``describe(transaction, lane)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["FieldCheck", "FieldMismatch", "FieldScoreboard", "show_value", "to_signed"]


def to_signed(value: int, width: int) -> int:
    """``value`` (``width`` bits) read as two's complement."""
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


def show_value(value: int | None, width: int, kind: str = "int", *, lsb_exponent: int = 0,
               show: Callable[[int], str] | None = None) -> str:
    """A value as hex plus its meaning; never raises (unknown kinds show hex and decimal)."""
    from .scoreboard import float_of_bits, show_exact

    if value is None:
        return "X/Z"
    digits = max(1, (width + 3) // 4)
    raw = f"0x{value & ((1 << width) - 1):0{digits}x}" if width > 0 else hex(value)
    try:
        if show is not None:
            return f"{raw} ({show(value)})"
        if kind in ("fp32", "fp16", "bf16"):
            return f"{raw} ({float_of_bits(value & ((1 << width) - 1), kind)!r})"
        if kind == "exact":
            return f"{raw} ({show_exact(value, lsb_exponent)})"
        return f"{raw} ({value})"
    except Exception as exc:  # a message must never crash the report
        return f"{raw} (undecodable: {exc})"


@dataclass
class FieldCheck:
    """How to compare and show one output port (``count`` elements of ``width`` bits)."""

    port: str
    field: str
    width: int
    count: int = 1
    signed: bool = False
    kind: str = "int"
    lsb_exponent: int = 0
    show: Callable[[int], str] | None = None
    offset: int = 0  # bit offset of the field in its port (several fields in one port)
    key: str = ""  # the expected values' key (default: the port)


@dataclass(frozen=True)
class FieldMismatch:
    transaction: int
    port: str
    lane: int
    expected: int
    got: int | None
    message: str


@dataclass
class FieldScoreboard:
    """Compares transactions of several ports against expected values (``None``: don't care)."""

    checks: Sequence[FieldCheck]
    describe: Callable[[int, int], str] | None = None
    name: str = "output"
    compared: int = 0
    dont_care: int = 0
    mismatches: int = 0
    xz: int = 0
    mismatched_transactions: int = 0
    transactions: int = 0
    first: FieldMismatch | None = None
    per_port: dict[str, int] = field(default_factory=dict)

    def read(self, check: FieldCheck, flat: int | None) -> list[int | None]:
        """Elements of a port's flat value (element ``j`` at bits ``[j*width, (j+1)*width)``), signed if asked."""
        if flat is None:
            return [None] * check.count
        flat >>= check.offset
        out: list[int | None] = []
        for j in range(check.count):
            v = (flat >> (j * check.width)) & ((1 << check.width) - 1)
            out.append(to_signed(v, check.width) if check.signed else v)
        return out

    def check(self, t: int, got: dict[str, int | None], expected: dict[str, Sequence[int | None]]) -> bool:
        """Compare transaction ``t``: ``got`` flat port values (None: X/Z), ``expected`` per port the element
        values (already signed where the port is). True when every cared-for element matches."""
        self.transactions += 1
        ok = True
        for c in self.checks:
            elems = self.read(c, got.get(c.port))
            want = list(expected[c.key or c.port])
            for lane, (e, g) in enumerate(zip(want, elems, strict=True)):
                if e is None:
                    self.dont_care += 1
                    continue
                self.compared += 1
                if g is not None and self._fits(c, e) and g == e:
                    continue
                if g is None:
                    self.xz += 1
                self.mismatches += 1
                self.per_port[c.port] = self.per_port.get(c.port, 0) + 1
                if ok:
                    self.mismatched_transactions += 1
                ok = False
                if self.first is None:
                    self.first = FieldMismatch(t, c.port, lane, e, g, self._message(t, c, lane, e, g, want, elems))
        return ok

    @staticmethod
    def _fits(c: FieldCheck, value: int) -> bool:
        lo, hi = (-(1 << (c.width - 1)), (1 << (c.width - 1)) - 1) if c.signed else (0, (1 << c.width) - 1)
        return lo <= value <= hi

    def _message(self, t: int, c: FieldCheck, lane: int, e: int, g: int | None, want: list, elems: list) -> str:
        def sv(v: int | None) -> str:
            return show_value(v, c.width, c.kind, lsb_exponent=c.lsb_exponent, show=c.show)

        where = (f"transaction {t}, port {c.port} ({c.field}" + (f"[{lane}]" if c.count > 1 else "")
                 + (f", bits {c.offset}+)" if c.offset else ")"))
        differ = sum(1 for x, y in zip(want, elems, strict=True) if x is not None and x != y)
        text = f"{self.name} mismatch at {where}: expected {sv(e)}, got {sv(g)}"
        if not self._fits(c, e):
            text += f" (the expected value does not fit the port's {c.width} bits)"
        if g is None:
            text += " (X/Z: the output is not driven, or the simulator cannot evaluate the design)"
        if c.count > 1:
            text += f"; {differ} of {c.count} elements differ"
        if self.describe is not None:
            try:
                text += "\n  inputs: " + self.describe(t, lane)
            except Exception as exc:  # never lose the verdict to a description bug
                text += f"\n  inputs: (cannot describe: {exc})"
        return text

    @property
    def passed(self) -> bool:
        return self.mismatches == 0

    def report(self) -> str:
        head = (f"{self.name}: {self.transactions} transactions, {self.compared} values compared, "
                f"{self.dont_care} don't care, {self.mismatches} mismatching")
        if self.per_port:
            head += " (" + ", ".join(f"{p} {n}" for p, n in self.per_port.items()) + ")"
        if self.first is not None:
            head += "\n" + self.first.message
        return head
