"""Exact value -> IEEE bit pattern, rounded once to nearest-even (spec 7, 8).

``round_to_ieee`` builds combinational logic for ``(-1)^sign * magnitude * 2^exponent``
with an unsigned ``magnitude`` of any width and a signed ``exponent``: leading-zero count
(priority-encoder tree), normalising barrel shift, a second right shift for subnormal
results, round to nearest-even with guard and sticky bits, overflow to +-Inf, signed
zero, and the canonical quiet NaN. Shared by the decode unit and the dot engine.
"""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import C, Cat, Module, Mux, Signal, Value

from ..golden.ieee import IEEE_FORMATS, IeeeFormat, ieee_format

__all__ = ["IEEE_FORMATS", "IeeeFormat", "ieee_format", "leading_zeros", "round_to_ieee"]


def leading_zeros(value: Value) -> tuple[Value, Value]:
    """``(count, all_zero)`` of an unsigned value, built as a balanced priority-encoder tree.

    ``count`` is the number of zero bits above the most significant one (meaningless when
    ``all_zero``). Depth is ``log2(width)`` multiplexer levels.
    """
    value = Value.cast(value)
    width = len(value)
    if width == 0:
        raise ValueError("leading_zeros needs a value of at least one bit")
    if width == 1:
        return C(0, 1), ~value[0]
    half = 1 << ((width - 1).bit_length() - 1)  # largest power of two < width
    hi, lo = value[half:], value[:half]
    # The low part has exactly ``half`` bits (a power of two); the high part the rest.
    hi_cnt, hi_zero = leading_zeros(hi)
    lo_cnt, lo_zero = leading_zeros(lo)
    hi_width = width - half
    count = Mux(hi_zero, hi_width + lo_cnt, hi_cnt)
    return count[: width.bit_length()], hi_zero & lo_zero


def round_to_ieee(
    m: Module,
    *,
    sign: Value,
    magnitude: Value,
    exponent: Value,
    fmt: str | IeeeFormat = "fp32",
    is_nan: Value | int = 0,
    is_inf: Value | int = 0,
    name: str = "rnd",
    cut: Callable[[dict[str, Value]], dict[str, Value]] | None = None,
    exponent_range: tuple[int, int] | None = None,
    quantum_exponent: int | None = None,
) -> Value:
    """Combinational IEEE bit pattern of ``(-1)^sign * magnitude * 2^exponent`` (spec 7, 8).

    ``magnitude`` is unsigned (any width), ``exponent`` signed (or unsigned, then taken as
    non-negative). One round to nearest-even; subnormal results are kept, overflow gives
    +-Inf, a zero magnitude gives a zero of the given sign. ``is_nan`` forces the canonical
    quiet NaN, ``is_inf`` (when not NaN) a signed Inf. Returns a value of the format's width
    (32 for fp32, 16 for bf16/fp16); intermediate signals are named ``<name>_*``.

    ``cut`` (optional) is a register position between the normalisation (leading-zero count and
    shift) and the rounding: it is called with the intermediate fields and returns them
    (registered or not, the caller decides; see ``pipeline.Cuts``).

    Range facts the caller knows let the generator drop logic that can never act: ``exponent_range``
    (bounds of ``exponent``; a constant exponent is its own range) and ``quantum_exponent`` (every
    non-zero value is a multiple of ``2^quantum_exponent``). When no non-zero value can be
    subnormal, the subnormal shifter goes; when no value can reach the overflow binade, so does
    the overflow logic.
    """
    f = ieee_format(fmt)
    if exponent_range is None and isinstance(exponent, int):
        exponent_range = (exponent, exponent)
    sign = Value.cast(sign)
    magnitude = Value.cast(magnitude)
    exponent = Value.cast(exponent)
    is_nan = Value.cast(is_nan)
    is_inf = Value.cast(is_inf)
    if len(sign) != 1:
        raise TypeError(f"sign must be a 1-bit value, got {len(sign)} bits")
    if len(magnitude) == 0:
        raise TypeError("magnitude must have at least one bit")
    if magnitude.shape().signed:
        raise TypeError("magnitude must be unsigned")

    # Normalise on the magnitude's own width: the MSB of ``lead`` is the leading one (for a
    # non-zero magnitude). Then pad with zeros at the LSB side so that at least mbits + 3 bits
    # exist (significand, guard, one more); the padding is wiring, not logic.
    mag_width = len(magnitude)
    pad = max(0, f.mbits + 3 - mag_width)
    width = mag_width + pad
    lz, is_zero = leading_zeros(magnitude)
    lz_sig = Signal(range(mag_width + 1), name=f"{name}_lz")
    zero = Signal(name=f"{name}_zero")
    m.d.comb += [lz_sig.eq(lz), zero.eq(is_zero)]
    lead = Signal(mag_width, name=f"{name}_lead")
    m.d.comb += lead.eq((magnitude << lz_sig)[:mag_width])
    norm = Signal(width, name=f"{name}_norm")
    m.d.comb += norm.eq(lead << pad if pad else lead)

    # Biased exponent of the leading one: value = norm / 2^(width-1) * 2^(exp + width-1 - pad - lz).
    # The Signal takes the expression's own shape: no sign-extension concatenation (which an
    # event-driven simulator re-evaluates once per replicated bit).
    biased_value = exponent + (width - 1 - pad + f.bias) - lz_sig
    biased = Signal(biased_value.shape(), name=f"{name}_biased")
    m.d.comb += biased.eq(biased_value)
    # Right shift of ``norm`` leaving mbits+1 significand bits plus a guard bit: a fixed
    # ``base = width - mbits - 2`` for normal results (wiring; the bits below only make the
    # sticky), plus ``1 - biased`` more for subnormals, clamped once everything (including the
    # guard position) is shifted out.
    base = width - f.mbits - 2
    max_extra = f.mbits + 2  # beyond this the significand and guard are both zero
    lowest = max(x for x in (exponent_range and exponent_range[0], quantum_exponent, -(1 << 30)) if x is not None)
    no_subnormal = lowest >= f.emin  # every non-zero value is at least the smallest normal
    highest = None if exponent_range is None else exponent_range[1] + mag_width - 1
    exp_max = (1 << f.ebits) - 1
    no_overflow = highest is not None and highest + f.bias <= exp_max - 2  # not even after a rounding carry
    extra = Signal(range(max_extra + 1), name=f"{name}_extra")
    if no_subnormal:
        m.d.comb += extra.eq(0)
    else:
        m.d.comb += extra.eq(Mux(biased >= 1, 0, Mux(biased < 1 - max_extra, max_extra, 1 - biased)))
    head = Signal(f.mbits + 2, name=f"{name}_head")
    m.d.comb += head.eq(norm[base:])
    low_sticky = Signal(name=f"{name}_low_sticky")
    m.d.comb += low_sticky.eq(norm[:base].any() if base else 0)
    # Exponent field before the rounding carry: ``biased`` for a normal result (the hidden bit
    # is set), 0 for a subnormal one; at or above all-ones it is an overflow already.
    exp_part = Signal(f.ebits, name=f"{name}_exppart")
    over = Signal(name=f"{name}_over")
    edge = Signal(name=f"{name}_edge")  # one binade below Inf: a rounding carry overflows
    m.d.comb += [
        exp_part.eq(Mux(biased >= 1, biased, 0)),
        over.eq(0 if no_overflow else biased >= exp_max),
        edge.eq(0 if no_overflow else biased == exp_max - 1),
    ]
    if cut is not None:
        mid = cut({"head": head, "low_sticky": low_sticky, "extra": extra, "exp_part": exp_part, "over": over,
                   "edge": edge, "zero": zero, "sign": sign, "is_nan": is_nan, "is_inf": is_inf})
        head, low_sticky, extra, exp_part, over, edge, zero, sign, is_nan, is_inf = (
            mid[k] for k in ("head", "low_sticky", "extra", "exp_part", "over", "edge", "zero", "sign", "is_nan",
                             "is_inf"))

    kept = Signal(f.mbits + 2, name=f"{name}_kept")  # significand (mbits+1) and guard
    m.d.comb += kept.eq(head >> extra)
    sticky = Signal(name=f"{name}_sticky")
    m.d.comb += sticky.eq(low_sticky | (head & ~(C((1 << (f.mbits + 2)) - 1, f.mbits + 2) << extra)[: f.mbits + 2])
                          .any())
    guard = kept[0]
    frac = kept[1: f.mbits + 1]
    round_up = guard & (sticky | frac[0])

    # Field assembly: exponent field and fraction, plus one on round up: a carry out of the
    # fraction increments the exponent, which also turns the largest subnormal into the smallest
    # normal and the largest finite number into Inf.
    body = Signal(f.width - 1, name=f"{name}_body")
    m.d.comb += body.eq(Cat(frac, exp_part) + round_up)
    overflow = Signal(name=f"{name}_overflow")
    m.d.comb += overflow.eq(over | (edge & frac.all() & round_up))

    result = Signal(f.width, name=f"{name}_bits")
    signed_inf = C(f.inf_bits, f.width) | (sign << (f.width - 1))
    finite = Mux(zero, sign << (f.width - 1), body | (sign << (f.width - 1)))
    m.d.comb += result.eq(Mux(is_nan, f.nan_bits, Mux(is_inf | (overflow & ~zero), signed_inf, finite)))
    return result
