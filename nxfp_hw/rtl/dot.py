"""Block dot-product engine with fp32 accumulation (spec 8, 9; docs/dot_engine.md).

``DotEngine(fmt_a, fmt_b, lanes=, pipeline=)`` streams block pairs, ``lanes`` elements of
each operand per beat (``k / lanes`` beats per block pair), and emits one binary32 result per
reduction (the beat whose ``last`` bit is set on a block's final beat):

1. decode every lane's elements (``element_decode.ElementDecoder`` with the block's header
   selector and recycling option) into sign, integer significand and exponent offset;
2. multiply the significands exactly, shift each product left by the exponent sum into a
   two's complement word (the pair's smallest product exponent is the LSB) and add the lanes
   with a balanced tree; beats of one block add into an exact partial sum;
3. ``r = RNE_fp32(S * Xa * Xb)``: multiply by both nano-mantissa significands, add the scale
   exponents, round once (subnormals kept, overflow to Inf); NaN/Inf rules of spec 8;
4. ``acc = RNE_fp32(acc + r)`` from +0.0 in block order; on ``last`` the sum goes out and
   the accumulator restarts at +0.0.

Flow control: one global stall (``advance = ~o.valid | o.ready``); every pipeline register
moves only on ``advance``, so beats are never dropped or duplicated and ``i.ready`` is high
whenever the output register is free.
"""

from __future__ import annotations

from amaranth.hdl import C, Cat, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..formats import BlockFormat
from ..golden.dot import exact_sum_bits, exact_sum_lsb_exponent
from .element_decode import ElementDecoder, HeaderDecoder
from .fixed_sum import adder_tree, align_product, lane_bound
from .float_round import round_to_ieee
from .fp32_add import fp32_add

__all__ = ["DotEngine"]

MAX_PIPELINE = 3
DEFAULT_PIPELINE = 3


def _stage(m: Module, enable: bool, advance: Value, valid: Value, fields: dict[str, Value],
           name: str) -> tuple[Value, dict[str, Value]]:
    """A pipeline register for ``valid`` and ``fields`` when ``enable`` (moves on ``advance``)."""
    if not enable:
        return valid, fields
    v = Signal(name=f"{name}_valid")
    with m.If(advance):
        m.d.sync += v.eq(valid)
    out = {}
    for key, val in fields.items():
        reg = Signal(Value.cast(val).shape(), name=f"{name}_{key}", reset_less=True)
        with m.If(advance & valid):
            m.d.sync += reg.eq(val)
        out[key] = reg
    return v, out


class DotEngine(wiring.Component):
    """Streaming block dot product with fp32 accumulation (spec 8; docs/dot_engine.md).

    ``i.payload``: ``a_header``, ``a_codes`` (``lanes`` codes), ``b_header``, ``b_codes``,
    ``last``; ``k / lanes`` beats per block pair, headers sampled on a block's first beat,
    ``last`` read on a block's final beat. ``o.payload``: ``result`` (binary32 bits), once per
    reduction. ``pipeline`` (0..3) internal register stages: after the aligned products, after
    the adder tree / partial sum, after the block rounding; the accumulator output register is
    always there, so ``latency = pipeline + 1`` and ``initiation_interval = 1``.
    """

    unit_kind = "dot"

    def __init__(self, fmt_a: BlockFormat, fmt_b: BlockFormat | None = None, *, lanes: int | None = None,
                 pipeline: int | None = None) -> None:
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
        if pipeline is None:
            pipeline = DEFAULT_PIPELINE
        if isinstance(pipeline, bool) or not isinstance(pipeline, int):
            raise TypeError(f"pipeline must be an int, got {pipeline!r}")
        if not 0 <= pipeline <= MAX_PIPELINE:
            raise ValueError(f"pipeline must be in 0..{MAX_PIPELINE}, got {pipeline}")

        self.formats = {"a": fmt_a, "b": fmt_b}
        self.lanes = lanes
        self.pipeline = pipeline
        self.beats_per_block = k // lanes
        self.latency = pipeline + 1
        self.initiation_interval = 1
        self.lane_bound = lane_bound(fmt_a, fmt_b)
        self.lane_width = self.lane_bound.bit_length() + 1
        self.sum_width = exact_sum_bits(fmt_a, fmt_b)
        self.sum_lsb_exponent = exact_sum_lsb_exponent(fmt_a, fmt_b)
        self.config = {
            "unit": "dot",
            "format_a": fmt_a.to_string(),
            "format_b": fmt_b.to_string(),
            "lanes": lanes,
            "pipeline": pipeline,
            "accumulation": "fp32",
        }
        self.module_name = f"nxfp_dot_{fmt_a.ident}_x_{fmt_b.ident}_l{lanes}_p{pipeline}"
        in_layout = data.StructLayout({
            "a_header": fmt_a.header_bits,
            "a_codes": data.ArrayLayout(fmt_a.element_width, lanes),
            "b_header": fmt_b.header_bits,
            "b_codes": data.ArrayLayout(fmt_b.element_width, lanes),
            "last": 1,
        })
        out_layout = data.StructLayout({"result": 32})
        super().__init__({"i": In(stream.Signature(in_layout)), "o": Out(stream.Signature(out_layout))})

    def elaborate(self, platform) -> Module:
        m = Module()
        fa, fb = self.formats["a"], self.formats["b"]
        p = self.pipeline
        nb = self.beats_per_block
        pay = self.i.payload

        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]

        # --- block framing: beat counter, headers held from the first beat ------------------
        if nb > 1:
            beat = Signal(range(nb))
            with m.If(self.i.valid & advance):
                m.d.sync += beat.eq(Mux(beat == nb - 1, 0, beat + 1))
            first, end = beat == 0, beat == nb - 1
            held_a = Signal(fa.header_bits, reset_less=True)
            held_b = Signal(fb.header_bits, reset_less=True)
            with m.If(self.i.valid & advance & first):
                m.d.sync += [held_a.eq(pay.a_header), held_b.eq(pay.b_header)]
            hdr_a = Mux(first, pay.a_header, held_a)
            hdr_b = Mux(first, pay.b_header, held_b)
        else:
            first, end = C(1), C(1)
            hdr_a, hdr_b = pay.a_header, pay.b_header

        hdr_dec = {"a": HeaderDecoder(fa), "b": HeaderDecoder(fb)}
        elem_dec = {"a": ElementDecoder(fa), "b": ElementDecoder(fb)}
        hdr = {"a": hdr_dec["a"].decode(m, hdr_a, name="hdr_a"), "b": hdr_dec["b"].decode(m, hdr_b, name="hdr_b")}
        # Products come out in units of 2^(exp_base_a + exp_base_b); the low ``drop`` bits are always
        # zero, the aligned lane word starts at the pair's smallest product exponent.
        drop = self.sum_lsb_exponent - elem_dec["a"].exp_base - elem_dec["b"].exp_base

        # --- stage 0: decode, exact products, alignment (spec 8) ----------------------------
        terms: dict[str, Value] = {}
        lane_nan, lane_pinf, lane_ninf = [], [], []
        for n in range(self.lanes):
            ea = elem_dec["a"].decode(m, pay.a_codes[n], selector=hdr["a"].selector, recycle=hdr["a"].recycle,
                                      name=f"a{n}")
            eb = elem_dec["b"].decode(m, pay.b_codes[n], selector=hdr["b"].selector, recycle=hdr["b"].recycle,
                                      name=f"b{n}")
            sign = ea.sign ^ eb.sign
            terms[f"t{n}"] = align_product(m, sign=sign, sig_a=ea.sig, sig_b=eb.sig, shift=ea.exp + eb.exp,
                                           drop=drop, width=self.lane_width, name=f"p{n}")
            inf = ea.is_inf | eb.is_inf
            lane_nan.append(ea.is_nan | eb.is_nan | (ea.is_inf & eb.is_zero) | (eb.is_inf & ea.is_zero))
            lane_pinf.append(inf & ~sign)
            lane_ninf.append(inf & sign)
        s0 = {
            **terms,
            "nan": Cat(*lane_nan).any() | hdr["a"].scale_nan | hdr["b"].scale_nan,
            "pinf": Cat(*lane_pinf).any(),
            "ninf": Cat(*lane_ninf).any(),
            "first": first,
            "end": end,
            "last": pay.last & end,
            **{f"scale_{x}_{f}": getattr(hdr[x], f) for x in "ab" for f in ("scale_man", "scale_exp")},
        }
        v1, s1 = _stage(m, p >= 1, advance, self.i.valid, s0, "s1")

        # --- stage 1: adder tree and exact partial sum over the beats of a block ------------
        beat_sum = adder_tree(m, [s1[f"t{n}"] for n in range(self.lanes)], bound=self.lane_bound, name="tree")
        total = Signal(signed(self.sum_width))
        flags = {key: Signal(name=f"blk_{key}") for key in ("nan", "pinf", "ninf")}
        if nb > 1:
            part = Signal(signed(self.sum_width), reset_less=True)
            part_flags = {key: Signal(name=f"part_{key}", reset_less=True) for key in flags}
            m.d.comb += total.eq(beat_sum + Mux(s1["first"], 0, part))
            for key, sig in flags.items():
                m.d.comb += sig.eq(s1[key] | (~s1["first"] & part_flags[key]))
            with m.If(advance & v1 & ~s1["end"]):
                m.d.sync += part.eq(total)
                m.d.sync += [part_flags[key].eq(sig) for key, sig in flags.items()]
        else:
            m.d.comb += total.eq(beat_sum)
            m.d.comb += [sig.eq(s1[key]) for key, sig in flags.items()]
        block_done = v1 & s1["end"]
        v2, s2 = _stage(m, p >= 2, advance, block_done,
                        {"total": total, **flags, "last": s1["last"],
                         **{key: val for key, val in s1.items() if key.startswith("scale_")}}, "s2")

        # --- stage 2: r = RNE_fp32(S * Xa * Xb) (spec 8) -------------------------------------
        tot = s2["total"]
        neg = Signal()
        mag = Signal(self.sum_width - 1)
        m.d.comb += [neg.eq(tot < 0), mag.eq(Mux(neg, -tot, tot))]

        man_a, man_b = s2["scale_a_scale_man"], s2["scale_b_scale_man"]
        magnitude = Signal(len(mag) + len(man_a) + len(man_b))
        m.d.comb += magnitude.eq(mag * man_a * man_b)
        exp_const = self.sum_lsb_exponent + hdr_dec["a"].scale_exp_base + hdr_dec["b"].scale_exp_base
        exp_top = exp_const + (1 << fa.scale.ebits) - 1 + (1 << fb.scale.ebits) - 1
        exponent = Signal(range(min(exp_const, -1), max(exp_top, 1) + 1))
        m.d.comb += exponent.eq(s2["scale_a_scale_exp"] + s2["scale_b_scale_exp"] + exp_const)
        is_nan = s2["nan"] | (s2["pinf"] & s2["ninf"])
        is_inf = s2["pinf"] | s2["ninf"]
        result = round_to_ieee(m, sign=Mux(is_inf, s2["ninf"], neg), magnitude=magnitude, exponent=exponent,
                               is_nan=is_nan, is_inf=is_inf, name="blk")
        v3, s3 = _stage(m, p >= 3, advance, v2, {"r": result, "last": s2["last"]}, "s3")

        # --- stage 3: acc = RNE_fp32(acc + r), output on last (spec 8) -----------------------
        acc = Signal(32)
        acc_next = fp32_add(m, acc, s3["r"], name="acc")
        with m.If(advance):
            m.d.sync += self.o.valid.eq(v3 & s3["last"])
            with m.If(v3):
                with m.If(s3["last"]):
                    m.d.sync += [self.o.payload.result.eq(acc_next), acc.eq(0)]
                with m.Else():
                    m.d.sync += acc.eq(acc_next)
        return m
