"""Arithmetic pieces of the block encoder (spec 5): constant tables built in Python from the
format objects, and small combinational builders that the :class:`~nxfp_hw.rtl.encode.EncodeUnit`
composes. Every comparison that decides a rounding or a scale is exact integer arithmetic.

Numbers: a float32 input ``x`` is ``(sign, ef, sig)`` with ``|x| = sig * 2^(max(ef, 1) - 150)``
(``sig`` 24 bits, implicit one included for ``ef > 0``, subnormals exact); its 31 magnitude bits
order like its value. A scale code ``(field, M)`` is ``X = 2^(field - bias_s - b) * (2^b + M)``.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
from amaranth.hdl import Array, C, Cat, Const, Module, Mux, Signal, Value, signed

from ..formats import BlockFormat

__all__ = [
    "MagnitudeTable",
    "ceil_thresholds",
    "fp32_round_down_bits",
    "magnitude_table",
    "csa_sum",
    "max_select",
    "max_tree",
    "ocp_field",
    "round_index",
    "shift_floor",
    "square",
    "sum_tree",
    "square_rows",
    "thermometer_count",
    "unpack_fp32",
]

FP32_MAX_BITS = 0x7F7FFFFF


# --- constant tables (pure Python) ---------------------------------------------------------------


def _floor_log2(q: Fraction) -> int:
    e = q.numerator.bit_length() - q.denominator.bit_length()
    if Fraction(2) ** e > q:
        e -= 1
    if Fraction(2) ** (e + 1) <= q:
        e += 1
    return e


def fp32_round_down_bits(q: Fraction) -> int:
    """Bit pattern of the largest finite non-negative float32 ``<= q`` (``q >= 0``).

    Since an input magnitude ``a`` is a float32, ``a <= q`` exactly iff ``bits(a) <= this``.
    """
    if q < 0:
        raise ValueError(f"fp32_round_down_bits needs q >= 0, got {q}")
    if q == 0:
        return 0
    e = _floor_log2(q)
    if e > 127:
        return FP32_MAX_BITS
    if e < -126:
        return int(q * 2**149)  # subnormal: the bits are the multiple of 2^-149
    sig = int(q * Fraction(2) ** (23 - e))  # floor, in [2^23, 2^24)
    return ((e + 127) << 23) | (sig - (1 << 23))


def ceil_thresholds(fmt: BlockFormat, max_elem: float) -> tuple[int, ...]:
    """Rule ``ceil`` (spec 5.2): ``T[c]`` for every non-NaN scale code ``c`` such that
    ``scale(c) * max_elem >= amax`` iff ``bits(amax) <= T[c]``; the chosen code is
    ``min(#{c : bits(amax) > T[c]}, max_code)``."""
    sf = fmt.scale
    out = []
    for code in range(sf.max_code + 1):
        field, man = code >> sf.mbits, code & ((1 << sf.mbits) - 1)
        scale = Fraction(2) ** (field - sf.bias) * (1 + Fraction(man, 1 << sf.mbits))
        out.append(fp32_round_down_bits(scale * Fraction(max_elem)))
    return tuple(out)


def ocp_field(m: Module, fmt: BlockFormat, ef: Value, emax_elem: int, name: str) -> Signal:
    """Rule ``ocp`` (spec 5.2): scale exponent field ``clip(ef - 127 - emax_elem + bias_s, 0, top)``
    from the biased exponent field ``ef`` of ``amax``. A subnormal or zero ``amax`` (``ef = 0``)
    gives field 0, as the exact ``floor(log2 amax)`` would (``bias_s <= 127``, ``emax_elem >= 0``)."""
    sf = fmt.scale
    top = sf.max_code >> sf.mbits
    ef_s = Signal(signed(10), name=f"{name}_ef")
    m.d.comb += ef_s.eq(ef)
    raw = Signal(signed(11), name=f"{name}_raw")
    m.d.comb += raw.eq(ef_s - (127 + emax_elem - sf.bias))
    field = Signal(sf.ebits, name=name)
    m.d.comb += field.eq(Mux(raw < 0, 0, Mux(raw > top, top, raw)))
    return field


@dataclass(frozen=True)
class MagnitudeTable:
    """Sorted magnitudes an element of one sign can round to (spec 5.3), scaled to integers.

    ``levels[i] * 2^-frac`` is the i-th magnitude (0 first), ``codes[i]`` its code (the -0 code
    for a recycled value ``R``), ``mids[j] = (levels[j] + levels[j+1]) / 2`` (integers, since
    ``frac`` counts the midpoints' fraction bits), ``tie_up[j]``: a tie at ``mids[j]`` goes up
    (to the code whose LSB is 0; if both are, down, to the smaller magnitude). ``r_index`` is the
    index of ``R`` or -1.
    """

    levels: tuple[int, ...]
    codes: tuple[int, ...]
    mids: tuple[int, ...]
    tie_up: tuple[bool, ...]
    frac: int
    r_index: int


@lru_cache(maxsize=256)
def magnitude_table(
    fmt: BlockFormat, candidate: int, recycled: float | None, frac: int | None = None
) -> MagnitudeTable:
    """The :class:`MagnitudeTable` of ``fmt.elements[candidate]`` with the recycled magnitude
    ``recycled`` added (``None``: without). ``frac``: fraction bits (default the table's own)."""
    elem = fmt.elements[candidate]
    vals = elem.code_values()
    half = 1 << (elem.width - 1)
    entries = [(Fraction(float(vals[c])), c) for c in range(half) if np.isfinite(vals[c])]
    r_code = -1
    if recycled is not None:
        r_code = elem.negative_zero_code
        entries.append((Fraction(abs(recycled)), r_code))
    entries.sort()
    mags = [v for v, _ in entries]
    codes = [c for _, c in entries]
    mids_q = [(a + b) / 2 for a, b in zip(mags[:-1], mags[1:], strict=True)]
    own = max(max(q.denominator.bit_length() - 1 for q in mids_q), 0)
    if frac is None:
        frac = own
    elif frac < own:
        raise ValueError(f"magnitude_table: frac={frac} below the {own} fraction bits the midpoints need")
    tie_up = tuple(
        (codes[j + 1] & 1 == 0) if (codes[j] & 1) != (codes[j + 1] & 1) else False for j in range(len(mids_q))
    )
    return MagnitudeTable(
        levels=tuple(int(v * 2**frac) for v in mags),
        codes=tuple(codes),
        mids=tuple(int(q * 2**frac) for q in mids_q),
        tie_up=tie_up,
        frac=frac,
        r_index=codes.index(r_code) if recycled is not None else -1,
    )


# --- combinational builders ---------------------------------------------------------------------


def unpack_fp32(bits: Value) -> tuple[Value, Value, Value, Value]:
    """``(sign, ef, sig, is_special)`` of a float32 bit pattern (spec 5.1): ``|x| = sig * 2^(max(ef,1) - 150)``."""
    bits = Value.cast(bits)
    ef = bits[23:31]
    sig = Cat(bits[:23], ef.any())
    return bits[31], ef, sig, ef.all()


def max_tree(values: list[Value]) -> Value:
    """Unsigned maximum of ``values`` as a balanced tree of comparators (the ``amax`` tree)."""
    if not values:
        raise ValueError("max_tree needs at least one value")
    level = [Value.cast(v) for v in values]
    while len(level) > 1:
        nxt = [Mux(a >= b, a, b) for a, b in zip(level[0::2], level[1::2], strict=False)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def const_table(words: list[int], width: int, index: Value) -> Value:
    """``words[index]`` (``index`` below ``len(words)``) as plain multiplexer logic after synthesis:
    each output bit selects its bit of the table's column, a constant, with ``bit_select``.

    (A ``case`` statement becomes a ROM in yosys, and a ROM next to a register a block RAM on iCE40.
    One shift of the whole table, sliced, makes Amaranth's combinational-cycle check quadratic in
    the table's bits: 4.6 minutes for the 32-lane nxfp6 decode unit, 1.6 s this way.)"""
    index = Value.cast(index)
    columns = [C(sum(((w >> j) & 1) << n for n, w in enumerate(words)), len(words)) for j in range(width)]
    return Cat(*(col.bit_select(index, 1) for col in columns))


def max_select(values: list[Value], group: int = 8) -> Value:
    """Unsigned maximum of ``values``, one comparison level per ``group`` inputs: every pair of a group
    is compared at once and the winner (the first of equal maxima) is picked by a one-hot
    AND-OR multiplexer, so a group of up to ``group`` values costs one comparator delay and one
    multiplexer instead of ``log2`` of each. More values: a tree of such groups."""
    if not values:
        raise ValueError("max_select needs at least one value")
    level = [Value.cast(v) for v in values]
    while len(level) > 1:
        nxt = []
        for g in range(0, len(level), group):
            vs = level[g: g + group]
            if len(vs) == 1:
                nxt.append(vs[0])
                continue
            ge = {(i, j): vs[i] >= vs[j] for i in range(len(vs)) for j in range(i + 1, len(vs))}
            wins = []
            for i in range(len(vs)):
                terms = [ge[(i, j)] for j in range(i + 1, len(vs))] + [~ge[(j, i)] for j in range(i)]
                wins.append(functools.reduce(operator.and_, terms))
            width = max(len(v) for v in vs)
            nxt.append(functools.reduce(operator.or_, [Mux(w, v, C(0, width)) for w, v in zip(wins, vs, strict=True)]))
        level = nxt
    return level[0]


def thermometer_count(bits: list[Value]) -> Value:
    """Number of leading ones of a thermometer ``bits`` (``bits[j]`` implies ``bits[j - 1]``), as a
    binary search: the top count bit is the middle tap, each lower bit a tap picked by the bits above
    (``log2`` multiplexer levels instead of a popcount adder tree)."""
    if not bits:
        return C(0, 1)
    width = len(bits).bit_length()  # counts 0..len(bits)
    taps = [Value.cast(b) for b in bits] + [C(0, 1)] * ((1 << width) - len(bits))

    def count(lo: int, size: int) -> Value:
        """Leading ones of taps[lo: lo + size] (size a power of two, the last tap 0 or beyond the end)."""
        if size == 1:
            return C(0, 0)
        half = size // 2
        upper = taps[lo + half - 1]
        rest = Mux(upper, count(lo + half, half), count(lo, half)) if half > 1 else C(0, 0)
        return Cat(rest, upper)

    return count(0, 1 << width)


def sum_tree(values: list[Value]) -> Value:
    """Sum of unsigned ``values`` as a balanced adder tree (widths grow one bit per level)."""
    if not values:
        return C(0, 1)
    level = [Value.cast(v) for v in values]
    while len(level) > 1:
        nxt = [a + b for a, b in zip(level[0::2], level[1::2], strict=False)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def square(value: Value) -> Value:
    """``value ** 2`` of an unsigned ``value`` as the folded partial-product sum of a squarer:
    ``sum_i v_i 2^(2i) + sum_(i<j) v_i v_j 2^(i+j+1)``, n(n+1)/2 partial-product bits instead of a
    general multiplier's n^2. Row ``i`` is ``v_i * (2^(2i) + (v >> (i+1)) << (2i+2))``."""
    v = Value.cast(value)
    n = len(v)
    rows = []
    for i in range(n):
        word = Cat(C(1, 1), C(0, 1), v[i + 1:]) if i + 1 < n else C(1, 1)
        rows.append(Mux(v[i], word, 0) << (2 * i))
    return sum_tree(rows)[: 2 * n]


def square_rows(value: Value) -> list[Value]:
    """The partial-product rows of :func:`square` (their sum is ``value ** 2``), for a carry-save sum."""
    v = Value.cast(value)
    n = len(v)
    rows = []
    for i in range(n):
        word = Cat(C(1, 1), C(0, 1), v[i + 1:]) if i + 1 < n else C(1, 1)
        rows.append(Mux(v[i], word, 0) << (2 * i))
    return rows


def csa_sum(m: Module, rows: list[Value], width: int, name: str) -> tuple[Signal, Signal]:
    """Reduce unsigned ``rows`` to two words whose sum (mod ``2^width``) is their sum, by layers of 3:2
    carry-save adders (each layer one full-adder delay, no carry propagation). Returns
    ``(sum, carry)`` Signals of ``width`` bits."""
    level = [Value.cast(r)[:width] for r in rows] or [C(0, width)]
    n = 0
    while len(level) > 2:
        nxt = []
        for g in range(0, len(level) - 2, 3):
            a, b, c = level[g: g + 3]
            s_sig = Signal(width, name=f"{name}_s{n}")
            c_sig = Signal(width, name=f"{name}_c{n}")
            m.d.comb += [s_sig.eq(a ^ b ^ c), c_sig.eq(((a & b) | (a & c) | (b & c)) << 1)]
            nxt += [s_sig, c_sig]
            n += 1
        nxt += level[3 * (len(level) // 3):]
        level = nxt
    if len(level) == 1:
        level.append(C(0, width))
    out_s, out_c = Signal(width, name=f"{name}_sum"), Signal(width, name=f"{name}_carry")
    m.d.comb += [out_s.eq(level[0]), out_c.eq(level[1])]
    return out_s, out_c


def shift_floor(
    m: Module, value: Value, amount: Value, *, lo: int, hi: int, width: int, name: str, biased: bool = False
) -> tuple[Signal, Value, Value]:
    """``floor(value * 2^amount)`` on ``width`` bits, with ``sticky`` (bits shifted out below the
    binary point were non-zero) and ``overflow`` (the result needs more than ``width`` bits).

    ``value`` unsigned, ``amount`` signed; ``lo <= -len(value)`` (any smaller amount floors to 0
    and is clamped to ``lo`` without changing the result); amounts above ``hi`` are clamped to
    ``hi`` and flagged as overflow for a non-zero value. ``biased``: ``amount`` is already
    ``amount - lo`` (a caller that adds constants folds ``-lo`` into them: one adder less).
    """
    value = Value.cast(value)
    amount = Value.cast(amount)
    vw = len(value)
    if lo > -vw:
        raise ValueError(f"shift_floor: lo={lo} must be <= -{vw} (minus the value width)")
    hi = max(hi, lo)
    span = hi - lo
    raw = Signal(signed(max(len(amount), (abs(lo) + abs(hi)).bit_length()) + 2), name=f"{name}_amt")
    m.d.comb += raw.eq(amount if biased else amount - lo)
    amt = Signal(range(span + 1), name=f"{name}_sh")
    m.d.comb += amt.eq(Mux(raw < 0, 0, Mux(raw > span, span, raw)))
    wide = Signal(vw + span, name=f"{name}_wide")
    m.d.comb += wide.eq(value << amt)
    res = Signal(width, name=name)
    m.d.comb += res.eq(wide[-lo: -lo + width])
    sticky = wide[: -lo].any()
    above = wide[-lo + width:].any() if vw + span > -lo + width else C(0, 1)
    overflow = above | ((raw > span) & value.any())
    return res, sticky, overflow


#: :func:`round_index` chooses its thresholds by the NanoMantissa for tables of at most this many midpoints
#: (measured on the asic flow at 8 lanes: nxfp4, 8 midpoints, 2 % smaller and faster; nxfp5, 16, the same area at
#: 203 instead of 215 MHz; nxfp6, 32, 144 MHz).
SELECTED_THRESHOLD_MIDS = 8


def round_index(m: Module, y: Value, sticky: Value, overflow: Value, man: Value, mbits: int,
                table: MagnitudeTable, name: str) -> Signal:
    """Index into ``table.levels`` of the magnitude nearest to ``y_exact / (2^mbits + man)``
    (spec 5.3: ties by ``tie_up``, saturating at the last level).

    ``y`` (integer part, the table's fraction bits included), ``sticky`` and ``overflow`` come from
    :func:`shift_floor`; ``man`` is the scale's NanoMantissa field. A thermometer of constant comparisons per
    mantissa value, then a multiplexer on ``man``; for tables of at most :data:`SELECTED_THRESHOLD_MIDS`
    midpoints one thermometer whose thresholds ``(2^mbits + man) * mid`` are chosen by ``man`` (a block
    constant; the thresholds of every ``man`` keep one order): smaller and as fast there, while on longer
    tables the comparisons against a chosen threshold miss the clock (docs/encoder.md, "Size notes").
    """
    if mbits and len(table.mids) <= SELECTED_THRESHOLD_MIDS:
        ups = []
        for i, (mid, tie) in enumerate(zip(table.mids, table.tie_up, strict=True)):
            consts = [((1 << mbits) + mv) * mid for mv in range(1 << mbits)]
            c = Signal(max(len(y), max(consts).bit_length()), name=f"{name}_t{i}")
            m.d.comb += c.eq(const_table(consts, len(c), man))
            gt = overflow | (y > c) | ((y == c) & sticky)
            ups.append(gt | ((y == c) & ~sticky) if tie else gt)
        idx = Signal(range(len(table.levels)), name=name)
        m.d.comb += idx.eq(thermometer_count(ups))
        return idx
    per_man = []
    for mv in range(1 << mbits):
        sm = (1 << mbits) + mv
        ups = []
        for mid, tie in zip(table.mids, table.tie_up, strict=True):
            c = Const(sm * mid, max(len(y), (sm * mid).bit_length()))
            gt = overflow | (y > c) | ((y == c) & sticky)
            ups.append(gt | ((y == c) & ~sticky) if tie else gt)
        per_man.append(thermometer_count(ups))
    idx = Signal(range(len(table.levels)), name=name)
    m.d.comb += idx.eq(per_man[0] if mbits == 0 else Array(per_man)[man])
    return idx
