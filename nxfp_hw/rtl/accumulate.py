"""Accumulator arithmetic of the dot engine (spec 8, 8.1; docs/dot_engine.md).

:func:`float_accumulate` is ``RNE_fp32(acc + v)`` for a binary32 accumulator ``acc`` and a
block value ``v`` given exactly as a normalised significand of any width (``fp32`` mode: the
rounded block result; ``fused`` mode: the exact ``S * Xa * Xb``). One rounding, IEEE special
cases with the canonical NaN, with up to three register positions inside (``align``, ``add``,
``norm``) so the loop can be spread over the beats of a block.

Correct rounding with a finite window: both operands are placed in a window of ``P + 3`` bits
(``P = max(W, 24)``) under the larger of the two top exponents; the smaller operand is shifted
right and everything below the window is jammed into its lowest bit (sticky). When the shift is
0 or 1 nothing is jammed and the sum is exact; when it is 2 or more, the larger operand is
normalised (or both lie in the subnormal range), so the sum keeps its top within one bit of the
window top and the jammed bit lies at least two places below the rounding position.

:func:`segmented_accumulate` is the ``exact`` mode's long fixed-point accumulator: a two's
complement word split into segments whose carries are registered between segments (carry-save
by segment), so the loop is one segment adder long whatever the window width.
"""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import C, Cat, Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .fixed_sum import prefix_add
from .float_round import leading_zeros, round_to_ieee

__all__ = ["FP32_SIG", "FP32Adder", "coarse_normalise", "float_accumulate", "fp32_add", "increment_by_chunks",
           "normalise", "resolve_lookahead", "resolve_segments", "segmented_accumulate", "unpack_fp32"]

FP32_SIG = 24  # significand bits of binary32, hidden bit included
FP32_BIAS = 127  # operand ``top`` exponents are biased like binary32's, so the accumulator's need no subtraction
CutFn = Callable[[str, dict[str, Value]], dict[str, Value]]


def _no_cut(name: str, fields: dict[str, Value]) -> dict[str, Value]:
    return fields


def unpack_fp32(m: Module, x: Value, *, name: str) -> dict[str, Value]:
    """Operand fields of a binary32 pattern: ``sign``, ``mag`` (24-bit significand), ``top``
    (biased exponent of the significand's MSB position: the exponent field, 1 for subnormals),
    ``is_nan``, ``is_inf``, ``neg_zero``."""
    x = Value.cast(x)
    e, f = x[23:31], x[:23]
    top = Signal(8, name=f"{name}_top")
    m.d.comb += top.eq(Cat(e[0] | (e == 0), e[1:]))
    return {
        "sign": x[31],
        "mag": Cat(f, e != 0),
        "top": top,
        "is_nan": (e == 0xFF) & (f != 0),
        "is_inf": (e == 0xFF) & (f == 0),
        "neg_zero": x == 0x8000_0000,
    }


def normalise(m: Module, mag: Value, *, name: str) -> tuple[Value, Value]:
    """``(norm, lz)``: ``mag`` shifted left until its MSB is set, and the shift (leading zeros)."""
    mag = Value.cast(mag)
    lz, _ = leading_zeros(mag)
    lz_sig = Signal(range(len(mag) + 1), name=f"{name}_lz")
    norm = Signal(len(mag), name=f"{name}_norm")
    m.d.comb += [lz_sig.eq(lz), norm.eq((mag << lz_sig)[: len(mag)])]
    return norm, lz_sig


def float_accumulate(m: Module, acc: Value, blk: dict[str, Value], *, cut: CutFn | None = None,
                     quantum_exponent: int | None = None, name: str = "facc") -> Value:
    """Combinational ``RNE_fp32(acc + v)`` (spec 8, 8.1); returns 32 bits.

    ``acc`` is a binary32 pattern. ``blk`` describes ``v = (-1)^sign * mag * 2^(top - (W-1))``
    with ``mag`` of ``W`` bits, normalised (MSB set) unless zero or in the binary32 subnormal
    range, plus ``is_nan``, ``is_inf`` (Inf of sign ``sign``) and ``neg_zero`` (``v`` is -0; an
    exact zero that is not flagged counts as +0). ``cut(position, fields)`` is called at the
    register positions ``exp``, ``align``, ``add`` and ``norm`` and returns the fields (registered or not).
    ``quantum_exponent``: every non-zero ``acc`` and ``v`` is a multiple of ``2^quantum_exponent``
    (so is every sum); when that is at least the smallest normal, the subnormal logic is dropped.
    """
    cut = cut or _no_cut
    mag_b = Value.cast(blk["mag"])
    width_b = len(mag_b)
    p = max(width_b, FP32_SIG)
    win = p + 3  # window: P bits, then guard, round and the sticky (jam) position
    a = unpack_fp32(m, acc, name=f"{name}_a")

    # --- align: order by top exponent, shift the lower operand right with a sticky jam ----------
    top_b = Value.cast(blk["top"])
    tw = max(len(top_b), 10) + 2
    # Both exponent differences at once (no negation after the subtraction); the shift saturates
    # at a power of two at or above the window width, where everything is sticky anyway.
    d = Signal(signed(tw), name=f"{name}_d")
    rd = Signal(signed(tw), name=f"{name}_rd")
    m.d.comb += [d.eq(a["top"] - top_b), rd.eq(top_b - a["top"])]
    a_big = Signal(name=f"{name}_a_big")
    m.d.comb += a_big.eq(d >= 0)
    sat_bits = win.bit_length()
    absd = Mux(a_big, d, rd)
    dist = Signal(sat_bits, name=f"{name}_dist")
    m.d.comb += dist.eq(Mux(absd[sat_bits:].any(), (1 << sat_bits) - 1, absd[:sat_bits]))
    a_win = Signal(win, name=f"{name}_a_win")
    b_win = Signal(win, name=f"{name}_b_win")
    m.d.comb += [a_win.eq(a["mag"] << (win - FP32_SIG)), b_win.eq(mag_b << (win - width_b))]
    top = Signal(signed(tw), name=f"{name}_top")
    m.d.comb += top.eq(Mux(a_big, a["top"], top_b))
    is_nan = a["is_nan"] | blk["is_nan"] | (a["is_inf"] & blk["is_inf"] & (a["sign"] != blk["sign"]))
    e = cut("exp", {
        "a_big": a_big, "dist": dist, "a_win": a_win, "b_win": b_win, "a_neg": a["sign"], "b_neg": blk["sign"],
        "top": top, "is_nan": is_nan, "is_inf": a["is_inf"] | blk["is_inf"],
        "inf_neg": Mux(a["is_inf"], a["sign"], blk["sign"]), "neg_zero": a["neg_zero"] & blk["neg_zero"],
    })
    a_big, dist, a_win, b_win = e["a_big"], e["dist"], e["a_win"], e["b_win"]
    small = Signal(win, name=f"{name}_small")
    m.d.comb += small.eq(Mux(a_big, b_win, a_win))
    shifted = Signal(win, name=f"{name}_shifted")
    sticky = Signal(name=f"{name}_sticky")
    m.d.comb += [
        shifted.eq(small >> dist),
        sticky.eq((small & ~(C((1 << win) - 1, win) << dist)[:win]).any()),
    ]
    big_mag = Mux(a_big, a_win, b_win)
    f = cut("align", {
        "big": big_mag, "big_neg": Mux(a_big, e["a_neg"], e["b_neg"]), "small": shifted | sticky,
        "small_neg": Mux(a_big, e["b_neg"], e["a_neg"]),
        **{key: e[key] for key in ("top", "is_nan", "is_inf", "inf_neg", "neg_zero")},
    })

    # --- add: magnitudes add, or subtract both ways in parallel (one carry chain deep) ------------
    sub = f["big_neg"] ^ f["small_neg"]
    diff = Signal(win + 1, name=f"{name}_diff")  # big - small, two's complement
    rdiff = Signal(win, name=f"{name}_rdiff")  # small - big, used when big - small < 0
    total = Signal(win + 1, name=f"{name}_total")
    m.d.comb += [diff.eq(f["big"] - f["small"]), rdiff.eq(f["small"] - f["big"]), total.eq(f["big"] + f["small"])]
    swapped = sub & diff[win]
    neg = Signal(name=f"{name}_neg")
    mag = Signal(win + 1, name=f"{name}_mag")
    m.d.comb += [neg.eq(f["big_neg"] ^ swapped), mag.eq(Mux(sub, Mux(diff[win], rdiff, diff[:win]), total))]
    g = cut("add", {
        "mag": mag, "neg": neg, "top": f["top"], "is_nan": f["is_nan"], "is_inf": f["is_inf"],
        "inf_neg": f["inf_neg"], "neg_zero": f["neg_zero"],
    })

    # --- round: value = mag * 2^(top - (win - 1)); an exact zero is +0 unless both were -0 -------
    exponent = Signal(signed(len(g["top"]) + 1), name=f"{name}_exp")
    m.d.comb += exponent.eq(g["top"] - (FP32_BIAS + win - 1))
    zero_sign = Mux(g["mag"] == 0, g["neg_zero"], g["neg"])
    return round_to_ieee(m, sign=Mux(g["is_inf"], g["inf_neg"], zero_sign), magnitude=g["mag"], exponent=exponent,
                         is_nan=g["is_nan"], is_inf=g["is_inf"], name=f"{name}_rnd",
                         cut=lambda fields: cut("norm", fields), quantum_exponent=quantum_exponent)


def segmented_accumulate(m: Module, *, addend: Value, enable: Value, clear: Value, width: int, segment: int,
                         name: str = "xacc") -> tuple[list[Value], list[Value]]:
    """A ``width``-bit two's complement accumulator in carry-save segments (``exact`` mode, spec 8.1).

    On each cycle with ``enable``, the state becomes ``(clear ? 0 : state) + addend`` modulo
    ``2^width``; each segment of ``segment`` bits adds its slice of the sign-extended ``addend``
    and the carry its lower neighbour produced the cycle before, so the loop is one short adder.
    Returns ``(parts, carries)``: the segment registers (LSB first) and the carry into each
    segment (``carries[0]`` is 0); the state is ``sum(part_i << lo_i) + sum(carry_i << lo_i)``
    modulo ``2^width`` (:func:`resolve_segments`).
    """
    addend = Value.cast(addend)
    ext = Signal(width, name=f"{name}_addend")
    m.d.comb += ext.eq(addend.as_signed() if addend.shape().signed else addend)
    bounds = list(range(0, width, segment)) + [width]
    parts: list[Value] = []
    carries: list[Value] = [C(0, 1)]
    for i, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False)):
        part = Signal(hi - lo, name=f"{name}_s{i}", reset_less=True)
        # ``clear`` selects after the adder, so its fan-out buffering overlaps the carry chain.
        t = prefix_add(m, part, ext[lo:hi], cin=carries[-1], name=f"{name}_t{i}")
        with m.If(enable):
            m.d.sync += part.eq(Mux(clear, ext[lo:hi], t[: hi - lo]))
        parts.append(part)
        if hi < width:
            c = Signal(name=f"{name}_c{i + 1}", reset_less=True)
            with m.If(enable):
                m.d.sync += c.eq(~clear & t[hi - lo])
            carries.append(c)
    return parts, carries


def _lookahead(m: Module, gen: list[Value], prop: list[Value], *, name: str) -> list[Value]:
    """Carry into every segment from per-segment generate/propagate (Sklansky prefix; no carry in)."""
    n = len(gen)
    g, p = list(gen), list(prop)
    step = 1
    while step < n:
        g2, p2 = list(g), list(p)
        for i in range(n):
            if i & step:
                j = (i & ~(step - 1)) - 1
                g2[i], p2[i] = g[i] | (p[i] & g[j]), p[i] & p[j]
        level = Signal(n, name=f"{name}_la{step}")
        m.d.comb += level.eq(Cat(*g2))
        g, p = [level[i] for i in range(n)], p2
        step <<= 1
    return [C(0, 1)] + g[:-1]


def resolve_lookahead(m: Module, parts: list[Value], carries: list[Value], *, name: str) -> list[Value]:
    """Carry into each segment when the carry-save state is resolved (segment-level lookahead):
    segment ``i`` generates when ``part_i + carry_i`` overflows, propagates when it is all ones."""
    gen, prop = [], []
    for i, (part, c) in enumerate(zip(parts, carries, strict=True)):
        ones = (1 << len(part)) - 1
        g, p = Signal(name=f"{name}_g{i}"), Signal(name=f"{name}_p{i}")
        m.d.comb += [g.eq(c & (part == ones)), p.eq(Mux(c, part == ones - 1, part == ones))]
        gen.append(g)
        prop.append(p)
    return _lookahead(m, gen, prop, name=name)


def resolve_segments(m: Module, parts: list[Value], carries: list[Value], carry_in: list[Value], *,
                     name: str) -> Value:
    """The resolved word: every segment plus its own carry plus the looked-ahead carry (short adds)."""
    out = [prefix_add(m, part, Cat(c ^ ci, c & ci), name=f"{name}_{i}")[: len(part)]
           for i, (part, c, ci) in enumerate(zip(parts, carries, carry_in, strict=True))]
    return Cat(*out)


def fp32_add(m: Module, a: Value, b: Value, *, name: str = "fadd") -> Value:
    """Combinational ``RNE_fp32(a + b)`` of two binary32 patterns (IEEE 754, canonical NaN)."""
    a, b = Value.cast(a), Value.cast(b)
    if len(a) != 32 or len(b) != 32:
        raise TypeError(f"fp32_add needs two 32-bit values, got {len(a)} and {len(b)} bits")
    return float_accumulate(m, a, unpack_fp32(m, b, name=f"{name}_b"), name=name)


class FP32Adder(wiring.Component):
    """``s = RNE_fp32(a + b)`` (binary32 bit patterns); ``registered`` adds one output register.

    The ``fp32`` accumulation adder on its own, for exhaustive tests. Ports: ``a``, ``b`` (In 32),
    ``s`` (Out 32). ``latency`` is 0 or 1 cycle.
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


def _mux_tree(index: Value, options: list[Value]) -> Value:
    """``options[index]`` as a balanced tree of 2:1 multiplexers (one level per index bit)."""
    level, bit = list(options), 0
    while len(level) > 1:
        level = [Mux(index[bit], level[i + 1], level[i]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
        bit += 1
    return level[0]


def coarse_normalise(m: Module, mag: Value, *, chunk: int = 16, keep: int = 3,
                     name: str = "coarse") -> tuple[Value, Value, Value, Value, Value, int]:
    """Chunk-wise normalisation of a wide magnitude before one rounding (``exact`` mode).

    Picks the highest non-zero ``chunk``-bit chunk and returns ``(window, window_ones, below_any,
    below_ones, offset, max_offset)``: ``window`` holds that chunk and the ``keep - 1`` chunks
    below it (``mag = window * 2^offset + below``), ``window_ones`` flags its all-ones chunks,
    ``below_any`` / ``below_ones`` tell whether the bits below the window are not all zero / all
    one. The leading one lies at least ``(keep - 1) *
    chunk >= 25`` bits above the window's bottom, so those bits only matter as a sticky bit jammed
    below any rounding position of a binary32 result.
    """
    mag = Value.cast(mag)
    n = -(-len(mag) // chunk)
    if n <= keep:
        window = Cat(mag, C(0, keep * chunk - len(mag)))
        return window, Cat(*(window[i * chunk:(i + 1) * chunk].all() for i in range(keep))), C(0, 1), C(1, 1), \
            C(0, 1), 0
    padded = Cat(mag, C(0, n * chunk - len(mag)))
    chunks = [padded[i * chunk:(i + 1) * chunk] for i in range(n)]
    nonzero = [c.any() for c in chunks]
    full = [c.all() for c in chunks]
    # The window's bottom chunk: the top non-zero chunk minus (keep - 1), at least 0 (a priority
    # encoder tree over the chunk flags, then a tree of multiplexers: log depth in the chunk count).
    flags = Cat(C(1, 1), *nonzero[keep:])  # position p <-> bottom chunk p; position 0 always "found"
    lz, _ = leading_zeros(flags)
    bottom = Signal(range(n - keep + 1), name=f"{name}_bottom")
    m.d.comb += bottom.eq(n - keep - lz)
    options = [Cat(padded[b * chunk:(b + keep) * chunk], *full[b:b + keep],
                   Cat(*nonzero[:b]).any() if b else C(0, 1), Cat(*full[:b]).all() if b else C(1, 1))
               for b in range(n - keep + 1)]
    picked = _mux_tree(bottom, options)
    window = Signal(keep * chunk, name=f"{name}_window")
    window_ones = Signal(keep, name=f"{name}_window_ones")
    below_any = Signal(name=f"{name}_below_any")
    below_ones = Signal(name=f"{name}_below_ones")
    m.d.comb += Cat(window, window_ones, below_any, below_ones).eq(picked)
    offset = Signal(range((n - keep) * chunk + 1), name=f"{name}_offset")
    m.d.comb += offset.eq(bottom * chunk)
    return window, window_ones, below_any, below_ones, offset, (n - keep) * chunk


def increment_by_chunks(m: Module, window: Value, ones: Value, carry: Value, *, chunk: int,
                        name: str) -> Value:
    """``window + carry`` (one more bit for the carry out), with the carry looked ahead over the
    chunks' all-ones flags ``ones``: one short incrementer per chunk instead of a long chain."""
    window, ones = Value.cast(window), Value.cast(ones)
    out = []
    for k in range(len(ones)):
        cin = carry & (Cat(*(ones[j] for j in range(k))).all() if k else C(1, 1))
        out.append(prefix_add(m, window[k * chunk:(k + 1) * chunk], 0, cin=cin, name=f"{name}_{k}")[:chunk])
    return Cat(*out, carry & ones.all())
