"""Block dot-product engine with three accumulation modes (spec 8, 8.1, 9; docs/dot_engine.md).

``DotEngine(fmt_a, fmt_b, lanes=, pipeline=, acc=, guard_bits=)`` streams block pairs, ``lanes``
elements of each operand per beat (``k / lanes`` beats per block pair), and emits one binary32
result per reduction (the beat whose ``last`` bit is set on a block's final beat):

1. decode every lane's elements (``element_decode``) into sign, integer significand and exponent;
2. multiply the significands exactly, shift each product into a two's complement word (the
   pair's smallest product exponent is the LSB) and add the lanes with a balanced tree; beats of
   one block add into an exact partial sum ``S``;
3. by accumulation mode (spec 8.1):
   - ``fp32``: ``r = RNE_fp32(S * Xa * Xb)``, then ``acc = RNE_fp32(acc + r)``;
   - ``fused``: ``acc = RNE_fp32(acc + S * Xa * Xb)``, one rounding per block;
   - ``exact``: ``S * Xa * Xb`` shifted into a long fixed-point window and added in a carry-save
     segmented accumulator; one rounding when the reduction ends, NaN when it left the window.

Every stage boundary is a named register position (``pipeline_positions``); ``pipeline`` picks
which are registers (a count, names, "none" or "all"; :func:`~nxfp_hw.rtl.pipeline.resolve_cuts`).
The ``fp32``/``fused`` accumulator loop takes ``L = 1 + (loop registers)`` cycles; it is spread
over the ``k / lanes`` beats of a block, and when ``L > k / lanes`` the input holds ``ready`` low
on a block's final beat until ``L`` cycles have passed since the previous one (initiation
interval ``max(k / lanes, L)`` cycles per block, recorded in the manifest). ``exact`` takes a
block every cycle.

Flow control: one global stall (``advance = ~o.valid | o.ready``); every register moves only on
``advance``, so beats are never dropped or duplicated.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import C, Cat, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..formats import BlockFormat
from ..golden.decode import element_parts
from ..golden.dot import exact_sum_bits, exact_sum_lsb_exponent
from .accumulate import (
    FP32_BIAS,
    coarse_normalise,
    float_accumulate,
    increment_by_chunks,
    normalise,
    resolve_lookahead,
    resolve_segments,
    segmented_accumulate,
    unpack_fp32,
)
from .element_decode import ElementDecoder, HeaderDecoder
from .fixed_sum import adder_tree, align_product, lane_bound
from .float_round import round_to_ieee
from .pipeline import Cuts, PipelineSpec, cuts_tag, resolve_cuts

__all__ = ["ACC_MODES", "DEFAULT_GUARD_BITS", "POSITIONS", "DotEngine", "ExactWindow", "default_cuts",
           "dot_exact_window"]

ACC_MODES = ("fp32", "fused", "exact")
DEFAULT_GUARD_BITS = 16
MAX_GUARD_BITS = 64
EXACT_SEGMENT_BITS = 12  # carry-save segment of the exact accumulator: the length of its loop adder

_FRONT = ("decode", "products", "tree", "sum", "scale")
_LOOP = ("acc_exp", "acc_align", "acc_add", "acc_norm")
POSITIONS = {
    "fp32": (*_FRONT, "block_norm", "block", *_LOOP),
    "fused": (*_FRONT, "block_norm", *_LOOP),
    "exact": (*_FRONT, "shift", "resolve_lo", "resolve", "magnitude", "coarse", "complement", "final_norm"),
}
# Order in which a register count fills the positions (the most useful cut first).
PREFERENCE = {
    "fp32": ("block", "sum", "products", "acc_add", "acc_norm", "scale", "block_norm", "acc_align", "tree",
             "decode", "acc_exp"),
    "fused": ("block_norm", "sum", "products", "acc_add", "acc_norm", "scale", "acc_align", "tree", "decode",
              "acc_exp"),
    "exact": ("shift", "resolve", "magnitude", "sum", "products", "final_norm", "coarse", "complement", "resolve_lo",
              "scale", "tree", "decode"),
}


# ``exact`` positions left out of its default when the window is narrow (nxfp4: 95 bits): there the
# 250 MHz closure on the asic flow needs none of them, and each costs a window-wide register. A wide
# window (MX's E8M0 scale pairs span 2^510) keeps them: its resolution is several lookahead levels deep.
_EXACT_SPARE = ("shift", "resolve_lo", "resolve", "coarse")
_EXACT_NARROW_WINDOW = 128


def default_cuts(acc: str, lanes: int, window_width: int | None = None) -> tuple[str, ...]:
    """Timing-closed defaults (docs/timing.md): every position but the element decode (short: a
    few table bits), ``acc_exp`` (a fifth loop cycle, for FPGAs) and, in ``exact`` mode with a
    window of at most 128 bits, the window-wide registers the 250 MHz closure does without; the
    mid-tree register only when the tree is deep (16 lanes or more)."""
    narrow = acc == "exact" and window_width is not None and window_width <= _EXACT_NARROW_WINDOW
    skip = ("decode", "acc_exp", *(_EXACT_SPARE if narrow else ()))
    return tuple(p for p in POSITIONS[acc] if p not in skip and (p != "tree" or lanes >= 16))


@dataclass(frozen=True)
class ExactWindow:
    """The ``exact`` mode's fixed-point window (spec 8.1): LSB exponent and width (sign included)."""

    lsb_exponent: int
    width: int
    guard_bits: int


def _scale_bounds(fmt: BlockFormat) -> tuple[int, int]:
    """``(largest scale significand, largest exponent field)`` over the non-NaN scale codes."""
    sc = fmt.scale
    max_man = (1 << (sc.mbits + 1)) - 1 if sc.mbits else 1
    return max_man, (sc.nan_code - 1) >> sc.mbits


def _times_scale_mantissas(x: Value, man_a: Value, man_b: Value) -> Value:
    """``x * man_a * man_b`` for scale significands ``man = Cat(nano, 1)`` (the implicit one on top).

    With one NanoMantissa bit on each side the product is ``4x``, ``6x`` or ``9x``: one adder of two
    multiplexed shifts instead of a general multiplier (whose partial-product rows do not know that
    the top bits are one). Other widths use the multiplier. Signed ``x`` stays signed.
    """
    x, man_a, man_b = Value.cast(x), Value.cast(man_a), Value.cast(man_b)
    if len(man_a) == 1 and len(man_b) == 1:  # no NanoMantissa: the significands are 1
        return x
    if len(man_a) == 2 and len(man_b) == 2:
        a, b = man_a[0], man_b[0]
        both = a & b
        zero = C(0, 1).as_signed() if x.shape().signed else C(0, 1)
        return Mux(both, x << 3, x << 2) + Mux(both, x, Mux(a | b, x << 1, zero))
    return x * (man_a * man_b)


def dot_exact_window(fmt_a: BlockFormat, fmt_b: BlockFormat, guard_bits: int = DEFAULT_GUARD_BITS) -> ExactWindow:
    """Window of the ``exact`` accumulator: from the smallest product LSB to the largest block MSB
    plus ``guard_bits`` (exact for up to ``2**guard_bits`` blocks; spec 8.1)."""
    pa, pb = element_parts(fmt_a), element_parts(fmt_b)
    most_positive = max(pa.max_positive * pb.max_positive, pa.max_negative * pb.max_negative)
    most_negative = max(pa.max_positive * pb.max_negative, pa.max_negative * pb.max_positive)
    max_sum = fmt_a.k * max(most_positive, most_negative)
    man_a, emax_a = _scale_bounds(fmt_a)
    man_b, emax_b = _scale_bounds(fmt_b)
    max_block = (max_sum * man_a * man_b) << (emax_a + emax_b)
    lsb = (exact_sum_lsb_exponent(fmt_a, fmt_b) - fmt_a.scale.bias - fmt_a.scale.mbits
           - fmt_b.scale.bias - fmt_b.scale.mbits)
    return ExactWindow(lsb_exponent=lsb, width=max_block.bit_length() + guard_bits + 1, guard_bits=guard_bits)


class DotEngine(wiring.Component):
    """Streaming block dot product (spec 8, 8.1; docs/dot_engine.md).

    ``i.payload``: ``a_header``, ``a_codes`` (``lanes`` codes), ``b_header``, ``b_codes``,
    ``last``; ``k / lanes`` beats per block pair, headers sampled on a block's first beat,
    ``last`` read on a block's final beat. ``o.payload``: ``result`` (binary32 bits), once per
    reduction. ``acc``: ``"fp32"`` (default), ``"fused"`` or ``"exact"``; ``guard_bits`` sizes the
    ``exact`` window. ``pipeline``: register positions (see module docstring); ``latency`` counts
    cycles from the transfer of a reduction's final beat to its result.
    """

    unit_kind = "dot"

    def __init__(self, fmt_a: BlockFormat, fmt_b: BlockFormat | None = None, *, lanes: int | None = None,
                 pipeline: PipelineSpec = None, acc: str = "fp32", guard_bits: int = DEFAULT_GUARD_BITS) -> None:
        if fmt_b is None:
            fmt_b = fmt_a
        for arg, f in (("fmt_a", fmt_a), ("fmt_b", fmt_b)):
            if not isinstance(f, BlockFormat):
                raise TypeError(f"{arg} must be a BlockFormat, got {type(f).__name__}")
        if fmt_a.k != fmt_b.k:
            raise ValueError(f"fmt_a and fmt_b must share the block size k, got k={fmt_a.k} ({fmt_a}) "
                             f"and k={fmt_b.k} ({fmt_b})")
        k = fmt_a.k
        if lanes is None:
            lanes = k
        if isinstance(lanes, bool) or not isinstance(lanes, int):
            raise TypeError(f"lanes must be an int, got {lanes!r}")
        if lanes < 1 or k % lanes:
            raise ValueError(f"lanes must divide the block size k={k}, got {lanes}")
        if acc not in ACC_MODES:
            raise ValueError(f"acc: expected one of {', '.join(ACC_MODES)}, got {acc!r}")
        if isinstance(guard_bits, bool) or not isinstance(guard_bits, int) or not 0 <= guard_bits <= MAX_GUARD_BITS:
            raise ValueError(f"guard_bits: expected an integer in 0..{MAX_GUARD_BITS}, got {guard_bits!r}")

        self.formats = {"a": fmt_a, "b": fmt_b}
        self.lanes = lanes
        self.accumulation = acc
        self.guard_bits = guard_bits
        self.pipeline_positions = POSITIONS[acc]
        self.window: ExactWindow | None = dot_exact_window(fmt_a, fmt_b, guard_bits) if acc == "exact" else None
        self.cuts = resolve_cuts(pipeline, self.pipeline_positions, PREFERENCE[acc],
                                 default_cuts(acc, lanes, self.window.width if self.window else None))
        self.pipeline = len(self.cuts)
        self.beats_per_block = k // lanes
        self.lane_bound = lane_bound(fmt_a, fmt_b)
        self.lane_width = self.lane_bound.bit_length() + 1
        self.sum_width = exact_sum_bits(fmt_a, fmt_b)
        self.sum_lsb_exponent = exact_sum_lsb_exponent(fmt_a, fmt_b)
        front = sum(c in self.cuts for c in _FRONT)
        if acc == "exact":
            assert self.window is not None
            self.accumulator_width = self.window.width
            self.loop_cycles = 1
            back = sum(c in self.cuts for c in POSITIONS["exact"][len(_FRONT):])
            self.latency = front + back + 2  # the accumulator register and the output register
        else:
            self.loop_cycles = 1 + sum(c in self.cuts for c in _LOOP)
            wide = fmt_a.scale.mbits + fmt_b.scale.mbits + 2 + self.sum_width - 1
            self.accumulator_width = 32 if acc == "fp32" else max(wide, 24) + 5
            block = sum(c in self.cuts for c in ("block_norm", "block"))
            self.latency = front + block + self.loop_cycles
        # Cycles per block pair at full input rate, and per input beat (spec 9's figure; fractional
        # when the loop's cycles are not a multiple of the beats of a block).
        self.block_interval = max(self.beats_per_block, self.loop_cycles)
        ii = self.block_interval / self.beats_per_block
        self.initiation_interval: int | float = int(ii) if ii.is_integer() else ii
        self.config = {
            "unit": "dot",
            "format_a": fmt_a.to_string(),
            "format_b": fmt_b.to_string(),
            "lanes": lanes,
            "pipeline": list(self.cuts),
            "accumulation": acc,
        }
        if acc == "exact":
            self.config["guard_bits"] = guard_bits
        tag = cuts_tag(self.cuts, self.pipeline_positions)
        suffix = "" if acc == "fp32" else f"_{acc}" + (f"_g{guard_bits}" if acc == "exact" else "")
        self.module_name = f"nxfp_dot_{fmt_a.ident}_x_{fmt_b.ident}_l{lanes}{suffix}_{tag}"
        in_layout = data.StructLayout({
            "a_header": fmt_a.header_bits,
            "a_codes": data.ArrayLayout(fmt_a.element_width, lanes),
            "b_header": fmt_b.header_bits,
            "b_codes": data.ArrayLayout(fmt_b.element_width, lanes),
            "last": 1,
        })
        out_layout = data.StructLayout({"result": 32})
        super().__init__({"i": In(stream.Signature(in_layout)), "o": Out(stream.Signature(out_layout))})

    # ------------------------------------------------------------------------------------------
    def elaborate(self, platform) -> Module:
        m = Module()
        fa, fb = self.formats["a"], self.formats["b"]
        nb = self.beats_per_block
        pay = self.i.payload

        advance = Signal()
        accept = Signal()  # the input may take a beat this cycle (initiation interval gate)
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance & accept)]
        take = self.i.valid & self.i.ready
        cuts = Cuts(m, advance, self.cuts)

        # --- block framing: beat counter, headers held from the first beat ------------------
        if nb > 1:
            beat = Signal(range(nb))
            with m.If(take):
                m.d.sync += beat.eq(Mux(beat == nb - 1, 0, beat + 1))
            first, end = beat == 0, beat == nb - 1
            held_a = Signal(fa.header_bits, reset_less=True)
            held_b = Signal(fb.header_bits, reset_less=True)
            with m.If(take & first):
                m.d.sync += [held_a.eq(pay.a_header), held_b.eq(pay.b_header)]
            hdr_a = Mux(first, pay.a_header, held_a)
            hdr_b = Mux(first, pay.b_header, held_b)
        else:
            first, end = C(1), C(1)
            hdr_a, hdr_b = pay.a_header, pay.b_header

        # Initiation interval: a block's final beat waits until the accumulator loop is free.
        if self.loop_cycles > nb:
            since = Signal(range(self.loop_cycles + 1), init=self.loop_cycles)
            with m.If(take & end):
                m.d.sync += since.eq(1)
            with m.Elif(advance & (since < self.loop_cycles)):
                m.d.sync += since.eq(since + 1)
            m.d.comb += accept.eq(~end | (since >= self.loop_cycles))
        else:
            m.d.comb += accept.eq(1)

        self._hdr_dec = {"a": HeaderDecoder(fa), "b": HeaderDecoder(fb)}
        elem_dec = {"a": ElementDecoder(fa), "b": ElementDecoder(fb)}
        hdr = {x: self._hdr_dec[x].decode(m, h, name=f"hdr_{x}") for x, h in (("a", hdr_a), ("b", hdr_b))}
        # Products come out in units of 2^(exp_base_a + exp_base_b); the low ``drop`` bits are always
        # zero, the aligned lane word starts at the pair's smallest product exponent.
        drop = self.sum_lsb_exponent - elem_dec["a"].exp_base - elem_dec["b"].exp_base

        # --- decode: element fields and the specials of spec 8 -------------------------------
        lanes_f: dict[str, Value] = {}
        lane_nan, lane_pinf, lane_ninf = [], [], []
        for n in range(self.lanes):
            ea = elem_dec["a"].decode(m, pay.a_codes[n], selector=hdr["a"].selector, recycle=hdr["a"].recycle,
                                      name=f"a{n}")
            eb = elem_dec["b"].decode(m, pay.b_codes[n], selector=hdr["b"].selector, recycle=hdr["b"].recycle,
                                      name=f"b{n}")
            sign = ea.sign ^ eb.sign
            lanes_f.update({f"sign{n}": sign, f"sa{n}": ea.sig, f"sb{n}": eb.sig, f"sh{n}": ea.exp + eb.exp})
            inf = ea.is_inf | eb.is_inf
            lane_nan.append(ea.is_nan | eb.is_nan | (ea.is_inf & eb.is_zero) | (eb.is_inf & ea.is_zero))
            lane_pinf.append(inf & ~sign)
            lane_ninf.append(inf & sign)
        ctl = {
            "nan": Cat(*lane_nan).any() | hdr["a"].scale_nan | hdr["b"].scale_nan,
            "pinf": Cat(*lane_pinf).any(),
            "ninf": Cat(*lane_ninf).any(),
            "first": first,
            "end": end,
            "last": pay.last & end,
            **{f"{f}_{x}": getattr(hdr[x], f) for x in "ab" for f in ("scale_man", "scale_exp")},
        }
        v, f = cuts.cut("decode", self.i.valid & accept, {**lanes_f, **ctl})

        # --- products: exact, aligned ---------------------------------------------------------
        terms = {f"t{n}": align_product(m, sign=f[f"sign{n}"], sig_a=f[f"sa{n}"], sig_b=f[f"sb{n}"],
                                        shift=f[f"sh{n}"], drop=drop, width=self.lane_width, name=f"p{n}")
                 for n in range(self.lanes)}
        v, f = cuts.cut("products", v, {**terms, **{key: f[key] for key in ctl}})

        # --- adder tree (register halfway up) and the exact partial sum over the beats --------
        state = {"v": v, "ctl": {key: f[key] for key in ctl}}

        def tree_cut(level: list[Value]) -> list[Value]:
            state["v"], g = cuts.cut("tree", state["v"], {**{f"l{i}": x for i, x in enumerate(level)},
                                                          **state["ctl"]})
            state["ctl"] = {key: g[key] for key in ctl}
            return [g[f"l{i}"] for i in range(len(level))]

        beat_sum = adder_tree(m, [f[f"t{n}"] for n in range(self.lanes)], bound=self.lane_bound, name="tree",
                              cut=tree_cut)
        v, c = state["v"], state["ctl"]
        total = Signal(signed(self.sum_width))
        flags = {key: Signal(name=f"blk_{key}") for key in ("nan", "pinf", "ninf")}
        if nb > 1:
            part = Signal(signed(self.sum_width), reset_less=True)
            part_flags = {key: Signal(name=f"part_{key}", reset_less=True) for key in flags}
            m.d.comb += total.eq(beat_sum + Mux(c["first"], 0, part))
            for key, sig in flags.items():
                m.d.comb += sig.eq(c[key] | (~c["first"] & part_flags[key]))
            with m.If(advance & v & ~c["end"]):
                m.d.sync += part.eq(total)
                m.d.sync += [part_flags[key].eq(sig) for key, sig in flags.items()]
        else:
            m.d.comb += total.eq(beat_sum)
            m.d.comb += [sig.eq(c[key]) for key, sig in flags.items()]
        scales = {key: val for key, val in c.items() if key.startswith("scale_")}
        v, f = cuts.cut("sum", v & c["end"], {"total": total, **flags, "last": c["last"], **scales})

        # --- scale: |S| * man_a * man_b (fp32, fused) or S * man_a * man_b (exact) -------------
        exp_sum = Signal(range(2 * max(1 << fa.scale.ebits, 1 << fb.scale.ebits)), name="scale_exp_sum")
        m.d.comb += exp_sum.eq(f["scale_exp_a"] + f["scale_exp_b"])
        man = (f["scale_man_a"], f["scale_man_b"])
        tot = f["total"]
        is_nan = f["nan"] | (f["pinf"] & f["ninf"])
        is_inf = f["pinf"] | f["ninf"]
        if self.accumulation == "exact":
            return self._exact(m, cuts, advance, v, tot, man, exp_sum, f)
        neg = Signal(name="blk_neg")
        abs_tot = Signal(self.sum_width - 1, name="blk_abs")
        m.d.comb += [neg.eq(tot < 0), abs_tot.eq(Mux(neg, -tot, tot))]
        prod = _times_scale_mantissas(abs_tot, *man)
        mag = Signal(len(prod), name="blk_mag")
        m.d.comb += mag.eq(prod)
        v, f = cuts.cut("scale", v, {"mag": mag, "neg": neg, "exp_sum": exp_sum, "is_nan": is_nan,
                                     "is_inf": is_inf, "ninf": f["ninf"], "last": f["last"]})
        # value = mag * 2^(exp_sum + exp_const)
        exp_const = self.sum_lsb_exponent + self._hdr_dec["a"].scale_exp_base + self._hdr_dec["b"].scale_exp_base
        inf_or_neg = Mux(f["is_inf"], f["ninf"], f["neg"])
        if self.accumulation == "fp32":
            state = {"v": v, "last": f["last"]}

            def norm_cut(fields: dict[str, Value]) -> dict[str, Value]:
                state["v"], g = cuts.cut("block_norm", state["v"], {**fields, "last": state["last"]})
                state["last"] = g.pop("last")
                return g

            exponent = Signal(signed(len(exp_sum) + 12), name="blk_exp")
            m.d.comb += exponent.eq(f["exp_sum"] + exp_const)
            exp_top = _scale_bounds(fa)[1] + _scale_bounds(fb)[1]
            r = round_to_ieee(m, sign=inf_or_neg, magnitude=f["mag"], exponent=exponent, is_nan=f["is_nan"],
                              is_inf=f["is_inf"], name="blk", cut=norm_cut,
                              exponent_range=(exp_const, exp_const + exp_top))
            v, f = cuts.cut("block", state["v"], {"r": r, "last": state["last"]})
            operand = unpack_fp32(m, f["r"], name="r")
        else:  # fused: normalise the exact block value, keep every bit
            norm, lz = normalise(m, f["mag"], name="blk")
            top = Signal(signed(len(exp_sum) + 12), name="blk_top")
            m.d.comb += top.eq(f["exp_sum"] + (exp_const + len(f["mag"]) - 1 + FP32_BIAS) - lz)  # biased
            v, f = cuts.cut("block_norm", v, {"sign": inf_or_neg, "mag": norm, "top": top, "is_nan": f["is_nan"],
                                              "is_inf": f["is_inf"], "last": f["last"]})
            operand = {**{key: f[key] for key in ("sign", "mag", "top", "is_nan", "is_inf")}, "neg_zero": C(0, 1)}
        return self._float_loop(m, cuts, advance, v, f["last"], operand)

    # ------------------------------------------------------------------------------------------
    def _float_loop(self, m: Module, cuts: Cuts, advance: Value, v: Value, last: Value,
                    operand: dict[str, Value]) -> Module:
        """``acc = RNE_fp32(acc + operand)`` over ``loop_cycles`` cycles; the result leaves on ``last``."""
        acc = Signal(32)
        state = {"v": v, "last": last}

        def loop_cut(position: str, fields: dict[str, Value]) -> dict[str, Value]:
            state["v"], g = cuts.cut(f"acc_{position}", state["v"], {**fields, "last": state["last"]})
            state["last"] = g.pop("last")
            return g

        # Every block value is a multiple of the exact window's LSB, and so is every rounded sum.
        quantum = dot_exact_window(*self.formats.values(), 0).lsb_exponent
        acc_next = float_accumulate(m, acc, operand, cut=loop_cut, quantum_exponent=quantum, name="acc")
        v, last = state["v"], state["last"]
        with m.If(advance):
            m.d.sync += self.o.valid.eq(v & last)
            with m.If(v):
                with m.If(last):
                    m.d.sync += [self.o.payload.result.eq(acc_next), acc.eq(0)]
                with m.Else():
                    m.d.sync += acc.eq(acc_next)
        return m

    def _exact(self, m: Module, cuts: Cuts, advance: Value, v: Value, tot: Value, man: tuple[Value, Value],
               exp_sum: Value,
               f: dict[str, Value]) -> Module:
        """The ``exact`` mode: window shift, segmented accumulator, resolve, one final rounding."""
        window = self.window
        assert window is not None
        width = window.width + 1  # one more bit, so that the first prefix sum leaving the window is seen
        finite = ~(f["nan"] | f["pinf"] | f["ninf"])
        prod = _times_scale_mantissas(Mux(finite, tot, 0), *man)
        value = Signal(signed(len(prod) + 1), name="blk_value")
        m.d.comb += value.eq(prod)
        v, g = cuts.cut("scale", v, {"value": value, "exp_sum": exp_sum, "nan": f["nan"], "pinf": f["pinf"],
                                     "ninf": f["ninf"], "last": f["last"]})
        shifted = Signal(signed(width), name="blk_shifted")
        m.d.comb += shifted.eq(g["value"] << g["exp_sum"])
        v, g = cuts.cut("shift", v, {"shifted": shifted, **{key: g[key] for key in ("nan", "pinf", "ninf", "last")}})

        # Accumulator: carry-save segments, flags beside it; ``clear`` after a reduction's last block.
        enable = advance & v
        clear = Signal(init=1)
        with m.If(enable):
            m.d.sync += clear.eq(g["last"])
        parts, carries = segmented_accumulate(m, addend=g["shifted"], enable=enable, clear=clear, width=width,
                                              segment=EXACT_SEGMENT_BITS, name="xacc")
        sticky = {}
        for key in ("nan", "pinf", "ninf"):
            reg = Signal(name=f"xacc_{key}", reset_less=True)
            with m.If(enable):
                m.d.sync += reg.eq(Mux(clear, 0, reg) | g[key])
            sticky[key] = reg
        acc_v = Signal(name="xacc_valid")
        acc_last = Signal(name="xacc_last", reset_less=True)
        with m.If(advance):
            m.d.sync += acc_v.eq(v)
        with m.If(enable):
            m.d.sync += acc_last.eq(g["last"])

        # Resolve the carry-save state: segment-level carry lookahead, then one short add per segment.
        carry_in = resolve_lookahead(m, parts, carries, name="resolve_la")
        nseg = len(parts)
        v, h = cuts.cut("resolve_lo", acc_v, {**{f"s{i}": parts[i] for i in range(nseg)},
                                              **{f"c{i}": carries[i] for i in range(nseg)},
                                              **{f"ci{i}": carry_in[i] for i in range(nseg)}, **sticky,
                                              "last": acc_last})
        resolved = Signal(signed(width), name="resolved")
        m.d.comb += resolved.eq(resolve_segments(m, [h[f"s{i}"] for i in range(nseg)],
                                                 [h[f"c{i}"] for i in range(nseg)],
                                                 [h[f"ci{i}"] for i in range(nseg)], name="resolve"))
        # Sign, one's complement (|x| = y + 1 for a negative x: the +1 waits until the window is
        # picked, so no carry runs across the whole accumulator) and the window check, all before
        # the register: the sign drives every bit, a fan-out only logic (not a flip-flop) can buffer.
        neg = Signal(name="sum_neg")
        ones = Signal(width - 1, name="sum_ones")
        m.d.comb += [neg.eq(resolved[width - 1]), ones.eq(resolved[: width - 1] ^ neg.replicate(width - 1))]
        v, h = cuts.cut("resolve", v, {"ones": ones, "neg": neg, "ovf_now": resolved[width - 1] ^ resolved[width - 2],
                                       **{key: h[key] for key in (*sticky, "last")}})
        # Sticky per reduction: did any prefix sum leave [-2^(w-1), 2^(w-1))?
        ovf_reg = Signal(name="window_ovf", reset_less=True)
        ovf_clear = Signal(init=1, name="window_ovf_clear")
        ovf = Signal(name="window_ovf_seen")
        m.d.comb += ovf.eq(Mux(ovf_clear, 0, ovf_reg) | h["ovf_now"])
        with m.If(advance & v):
            m.d.sync += [ovf_reg.eq(ovf), ovf_clear.eq(h["last"])]
        is_nan = h["nan"] | (h["pinf"] & h["ninf"]) | ovf
        is_inf = h["pinf"] | h["ninf"]
        v, h = cuts.cut("magnitude", v, {"ones": h["ones"], "neg": h["neg"], "sign": Mux(is_inf, h["ninf"], h["neg"]),
                                         "is_nan": is_nan, "is_inf": is_inf, "last": h["last"]})
        # Chunk-wise normalisation, so the rounder sees a short word (the rest jammed as sticky).
        chunks, chunk_ones, below_any, below_ones, offset, max_offset = coarse_normalise(m, h["ones"], chunk=16,
                                                                                         name="coarse")
        plus_one = h["neg"] & below_ones  # the +1 of a negative sum carries into the window
        sticky = Mux(h["neg"], ~below_ones, below_any)
        v, h = cuts.cut("coarse", v, {"window": chunks, "window_ones": chunk_ones, "plus_one": plus_one,
                                      "sticky": sticky, "offset": offset,
                                      **{key: h[key] for key in ("sign", "is_nan", "is_inf", "last")}})
        mag = Cat(h["sticky"], increment_by_chunks(m, h["window"], h["window_ones"], h["plus_one"], chunk=16,
                                                   name="complement"))
        v, h = cuts.cut("complement", v, {"mag": mag, **{key: h[key] for key in ("offset", "sign", "is_nan", "is_inf",
                                                                               "last")}})
        state = {"v": v, "last": h["last"]}

        def norm_cut(fields: dict[str, Value]) -> dict[str, Value]:
            state["v"], g2 = cuts.cut("final_norm", state["v"], {**fields, "last": state["last"]})
            state["last"] = g2.pop("last")
            return g2

        lsb = window.lsb_exponent - 1  # the window's LSB is the jammed sticky bit
        exponent = Signal(signed(max(len(Value.cast(lsb)), len(h["offset"]) + 1) + 2), name="final_exp")
        m.d.comb += exponent.eq(h["offset"] + lsb)
        result = round_to_ieee(m, sign=h["sign"], magnitude=h["mag"], exponent=exponent, is_nan=h["is_nan"],
                               is_inf=h["is_inf"], name="final", cut=norm_cut,
                               exponent_range=(lsb, lsb + max_offset))
        with m.If(advance):
            m.d.sync += self.o.valid.eq(state["v"] & state["last"])
            with m.If(state["v"] & state["last"]):
                m.d.sync += self.o.payload.result.eq(result)
        return m
