"""IEEE binary32 adder, round to nearest-even (the accumulation of spec 8).

``fp32_add`` builds the combinational adder into a module: magnitude swap, alignment of the
smaller operand with guard, round and sticky bits (3 extra bits below the larger operand's
LSB, sticky jammed into the lowest), add or subtract, then one rounding by
:func:`~nxfp_hw.rtl.float_round.round_to_ieee` (normalisation, subnormals kept, overflow to
Inf). Special cases follow IEEE 754 with a canonical NaN: any NaN operand or ``+Inf + -Inf``
gives ``0x7FC00000``; an exact zero sum is ``+0`` unless both operands are ``-0`` (or of equal
magnitude and negative, i.e. ``-x + -x`` never cancels). ``FP32Adder`` wraps it as a small
component, optionally registered, for testing and reuse.
"""

from __future__ import annotations

from amaranth.hdl import C, Cat, Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .float_round import round_to_ieee

__all__ = ["FP32Adder", "fp32_add"]

_GRS = 3  # guard, round and sticky bits below the larger operand's LSB


def fp32_add(m: Module, a: Value, b: Value, *, name: str = "fadd") -> Value:
    """Combinational ``RNE_fp32(a + b)`` of two binary32 bit patterns; returns 32 bits (spec 8)."""
    a = Value.cast(a)
    b = Value.cast(b)
    if len(a) != 32 or len(b) != 32:
        raise TypeError(f"fp32_add needs two 32-bit values, got {len(a)} and {len(b)} bits")

    def unpack(x: Value, tag: str) -> tuple[Value, Value, Value, Value, Value]:
        e, f = x[23:31], x[:23]
        nan = Signal(name=f"{name}_{tag}_nan")
        inf = Signal(name=f"{name}_{tag}_inf")
        m.d.comb += [nan.eq((e == 0xFF) & (f != 0)), inf.eq((e == 0xFF) & (f == 0))]
        # Subnormals (E = 0) share the exponent of the smallest normal; the hidden bit is E != 0.
        return x[31], Mux(e == 0, 1, e), Cat(f, e != 0), nan, inf

    sa, ea, ma, nan_a, inf_a = unpack(a, "a")
    sb, eb, mb, nan_b, inf_b = unpack(b, "b")

    # Order by magnitude: the bit patterns without sign compare like the magnitudes.
    swap = Signal(name=f"{name}_swap")
    m.d.comb += swap.eq(b[:31] > a[:31])
    s_big, e_big, m_big = Mux(swap, sb, sa), Mux(swap, eb, ea), Mux(swap, mb, ma)
    e_small, m_small = Mux(swap, ea, eb), Mux(swap, ma, mb)

    width = 24 + _GRS
    diff = Signal(8, name=f"{name}_diff")
    m.d.comb += diff.eq(e_big - e_small)
    dist = Signal(range(width + 2), name=f"{name}_dist")  # clamped: beyond ``width`` all is sticky
    m.d.comb += dist.eq(Mux(diff > width, width + 1, diff))
    small_ext = Signal(width, name=f"{name}_small_ext")
    m.d.comb += small_ext.eq(m_small << _GRS)
    shifted = Signal(width, name=f"{name}_shifted")
    m.d.comb += shifted.eq(small_ext >> dist)
    sticky = Signal(name=f"{name}_sticky")
    m.d.comb += sticky.eq((small_ext & ~(C((1 << width) - 1, width) << dist)[:width]).any())
    aligned = Signal(width, name=f"{name}_aligned")
    m.d.comb += aligned.eq(shifted | sticky)

    subtract = Signal(name=f"{name}_sub")
    m.d.comb += subtract.eq(sa ^ sb)
    total = Signal(width + 1, name=f"{name}_sum")
    big_ext = m_big << _GRS
    # |big| >= |small|, so the difference is never negative (the jammed sticky bit lies below
    # the big operand's lowest set bit whenever dist > 0).
    m.d.comb += total.eq(Mux(subtract, big_ext - aligned, big_ext + aligned))

    sign = Signal(name=f"{name}_sign")
    m.d.comb += sign.eq(Mux(total == 0, sa & sb, s_big))  # exact cancellation gives +0 (RNE)
    exponent = Signal(signed(10), name=f"{name}_exp")
    m.d.comb += exponent.eq(e_big - (127 + 23 + _GRS))
    is_nan = nan_a | nan_b | (inf_a & inf_b & subtract)
    is_inf = inf_a | inf_b
    return round_to_ieee(m, sign=sign, magnitude=total, exponent=exponent, is_nan=is_nan, is_inf=is_inf, name=name)


class FP32Adder(wiring.Component):
    """``s = RNE_fp32(a + b)`` (IEEE binary32 bit patterns); ``registered`` adds one output register.

    Ports: ``a``, ``b`` (In 32), ``s`` (Out 32). ``latency`` is 0 or 1 cycle.
    """

    def __init__(self, *, registered: bool = False) -> None:
        if not isinstance(registered, bool):
            raise TypeError(f"registered must be a bool, got {registered!r}")
        self.registered = registered
        self.latency = int(registered)
        super().__init__({"a": In(32), "b": In(32), "s": Out(32)})

    def elaborate(self, platform) -> Module:
        m = Module()
        result = fp32_add(m, self.a, self.b)
        if self.registered:
            m.d.sync += self.s.eq(result)
        else:
            m.d.comb += self.s.eq(result)
        return m
