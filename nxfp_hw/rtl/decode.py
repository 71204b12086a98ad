"""Block decode unit: element codes + block header -> IEEE numbers (spec 7, 9).

``value = element(code, selected candidate, recycling option) * scale(header)``: the element
significand is multiplied exactly by the scale's NanoMantissa, then rounded once to nearest-even
into fp32, bf16 or fp16. A NaN header or NaN element gives the canonical quiet NaN; Inf elements
give signed Inf. Datapath (docs/timing.md "Decode unit"):

1. **Lane lookup**: per lane, the element code with the header's selector, recycling option and
   NanoMantissa index one constant table (built at elaboration from the format's value tables,
   exactly) holding the normalised product ``1.frac * 2^(e_lo + j)``: its sign, the bits ``frac``
   below the leading one and a selector ``sel`` (``j`` for finite non-zero products, then one value
   each for zeros, Inf and NaN; the NaN selector is all ones, so a NaN header is ``sel | nan``).
   Formats whose table index would exceed :data:`TABLE_MAX_BITS` bits
   decode the element arithmetically (``ElementDecoder``, a multiplier, a leading-zero shift).
2. **Exponent**: when every product is exact in the output format or overflows it (the product's
   bits fit the output significand and never fall below the smallest subnormal: every preset into
   fp32 and bf16, the NxFP presets into fp16), nothing is ever rounded. The exponent fields of the
   few possible ``j`` (biased exponent, subnormal shift, overflow) are then computed **once per
   block** from the scale exponent and each lane picks its own with ``sel`` (at most
   :data:`CANDIDATES_MAX` choices; beyond that each lane adds the scale exponent itself).
   Otherwise the lane is rounded by :func:`~nxfp_hw.rtl.float_round.round_to_ieee`.
3. **Assembly**: ``sign | exponent field | fraction`` (the fraction shifted right for subnormal
   results, cleared on overflow).

Register positions, in datapath order: ``in`` (the input beat), ``product`` (after the lane lookup
and the per-block exponent fields), ``norm`` (after each lane's exponent selection; inside the
rounding on the rounding path) and ``out`` (the IEEE results).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from amaranth.hdl import C, Cat, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..formats import BlockFormat
from .element_decode import ElementDecoder, HeaderDecoder
from .encode_arith import const_table
from .float_round import IEEE_FORMATS, IeeeFormat, ieee_format, leading_zeros, round_to_ieee
from .pipeline import PipelineSpec, add_pipeline, cuts_tag, resolve_cuts

__all__ = ["CANDIDATES_MAX", "DECODE_DEFAULT_CUTS", "DECODE_POSITIONS", "DECODE_PREFERENCE", "TABLE_MAX_BITS",
           "DecodeUnit"]

#: Register positions of the decode unit, in datapath order.
DECODE_POSITIONS = ("in", "product", "norm", "out")
#: The order in which a register count enables them (``pipeline=1`` is the output register,
#: ``pipeline=2`` adds the product register, as before positions were named).
DECODE_PREFERENCE = ("out", "product", "norm", "in")
#: Default positions: nxfp4, 32 lanes, meets 300 MHz on the asic flow and 60 MHz on the ice40 flow.
DECODE_DEFAULT_CUTS = ("product", "out")
#: Largest lane lookup table index (code, selector, recycling option, NanoMantissa bits).
TABLE_MAX_BITS = 10
#: Largest number of per-block exponent choices a lane selects from (else a per-lane adder).
CANDIDATES_MAX = 16


class _LanePlan:
    """The lane's normalised product ``(-1)^sign * 1.frac * 2^(e_lo + j + E + scale_base)`` (``E`` the
    scale's raw exponent field) and the range facts that decide which logic exists.

    ``frac_bits`` F (>= 1), ``span`` R (the values of ``j``), the selectors of the other results
    ``zero_sel = R``, ``inf_sel = R + 1`` and ``nan_sel`` (all ones: NaN elements and a NaN header),
    ``sel_width``, ``e_lo``/``e_hi`` (exponent of the leading one at ``j = 0`` and at most, before
    the scale), ``lsb_min`` (smallest exponent of a product's last significant bit), ``table``
    (lookup words ``frac | sel << F | sign << (F + sel_width)``, or None for the arithmetic lane).
    """

    def __init__(self, fmt: BlockFormat, elem: ElementDecoder, table_max_bits: int) -> None:
        b = fmt.scale.mbits
        self.index_bits = fmt.element_width + fmt.selector_bits + fmt.recycle_bits + b
        self.table: list[int] | None = None
        if self.index_bits <= table_max_bits:
            self._plan_table(fmt)
        else:
            w = elem.sig_width + b + 1  # the product magnitude
            self.frac_bits = max(w - 1, 1)
            self.e_lo = elem.exp_base  # leading one at bit 0 of the product, element exponent offset 0
            self.e_hi = self.e_lo + (1 << elem.exp_width) - 1 + w - 1
            self.lsb_min = elem.exp_base
            self._set_span()

    def _set_span(self) -> None:
        self.span = self.e_hi - self.e_lo + 1
        self.zero_sel, self.inf_sel = self.span, self.span + 1
        self.sel_width = (self.span + 2).bit_length()
        self.nan_sel = (1 << self.sel_width) - 1

    def _plan_table(self, fmt: BlockFormat) -> None:
        b = fmt.scale.mbits
        tables = fmt.value_tables()
        ncand, nopt = tables.shape[0], tables.shape[1]
        entries = []  # (sign, kind, odd, t): |product| = odd * 2^t
        for index in range(1 << self.index_bits):
            code = index & ((1 << fmt.element_width) - 1)
            rest = index >> fmt.element_width
            sel = rest & ((1 << fmt.selector_bits) - 1)
            rest >>= fmt.selector_bits
            rec = rest & ((1 << fmt.recycle_bits) - 1)
            man = (1 << b) + (rest >> fmt.recycle_bits)
            # A selector or recycling field beyond the last defined one selects the last (as the golden model).
            v = float(tables[min(sel, ncand - 1), min(rec, nopt - 1), code])
            if np.isnan(v):
                entries.append((0, "nan", 0, 0))
            elif np.isinf(v):
                entries.append((int(v < 0), "inf", 0, 0))
            elif v == 0:
                entries.append((int(np.signbit(v)), "zero", 0, 0))
            else:
                q = abs(Fraction(v)) * man
                tz = (q.numerator & -q.numerator).bit_length() - 1
                entries.append((int(v < 0), "finite", q.numerator >> tz, tz - (q.denominator.bit_length() - 1)))
        finite = [(odd, t) for _, kind, odd, t in entries if kind == "finite"] or [(1, 0)]
        self.frac_bits = max(1, max(odd.bit_length() - 1 for odd, _ in finite))
        leads = [t + odd.bit_length() - 1 for odd, t in finite]
        self.e_lo, self.e_hi = min(leads), max(leads)
        self.lsb_min = min(t for _, t in finite)
        self._set_span()
        F, sw = self.frac_bits, self.sel_width
        words = []
        for sign, kind, odd, t in entries:
            frac, sel = 0, {"zero": self.zero_sel, "nan": self.nan_sel, "inf": self.inf_sel}.get(kind)
            if kind == "finite":
                n = odd.bit_length() - 1
                frac, sel = (odd - (1 << n)) << (F - n), t + n - self.e_lo
            words.append(frac | (sel << F) | (sign << (F + sw)))
        self.table = words
        self.word_width = F + sw + 1

    def exact_plan(self, f: IeeeFormat, scale_base: int, scale_exp_max: int) -> dict | None:
        """Whether every product is exact in ``f`` or overflows it; then which of the subnormal and
        overflow logic is reachable and whether the lanes select per-block exponent fields, else None
        (the lanes round with ``round_to_ieee``)."""
        sub_lsb = 1 - f.bias - f.mbits  # exponent of the smallest subnormal's bit
        if self.frac_bits > f.mbits or self.lsb_min + scale_base < sub_lsb:
            return None
        return {"subnormal": self.e_lo + scale_base < f.emin,
                "overflow": self.e_hi + scale_exp_max + scale_base > f.bias,
                "candidates": self.table is not None and self.span + 2 <= CANDIDATES_MAX}


def _exp_fields(m: Module, f: IeeeFormat, plan: dict, x: Value, c: int, name: str) -> dict[str, Value]:
    """Exponent side of an exact result whose leading one has the biased exponent ``x + c`` (``x``
    unsigned, ``c`` a constant): the exponent field ``e`` (0 for a subnormal, all ones on overflow),
    and when reachable ``sub``/``down`` (subnormal: the fraction moves right by ``down = 1 - x - c``)
    and ``clr`` (overflow: Inf, the fraction cleared). The range tests compare ``x`` itself with
    constants, in parallel with the sum."""
    biased = Signal((x + c).shape(), name=f"{name}_biased")
    m.d.comb += biased.eq(x + c)
    out = {}
    e = biased[: f.ebits]
    if plan["subnormal"]:
        sub = Signal(name=f"{name}_sub")
        down = Signal(range(f.mbits + 2), name=f"{name}_down")
        m.d.comb += [sub.eq(x <= -c), down.eq(Mux(x <= -c - f.mbits, f.mbits + 1, (1 - c) - x))]
        e = Mux(sub, 0, e)
        out.update(sub=sub, down=down)
    if plan["overflow"]:
        clr = Signal(name=f"{name}_clr")
        m.d.comb += clr.eq(x >= (1 << f.ebits) - 1 - c)
        e = Mux(clr, (1 << f.ebits) - 1, e)
        out["clr"] = clr
    field = Signal(f.ebits, name=f"{name}_e")
    m.d.comb += field.eq(e)
    return {"e": field, **out}


def _assemble(m: Module, f: IeeeFormat, frac_bits: int, fields: dict[str, Value], name: str) -> Value:
    """``sign | e | mantissa``: the fraction left-aligned in the mantissa, or for a subnormal result
    ``1.frac`` shifted right by ``down`` (exact: no bit is lost), or cleared on overflow; the
    canonical NaN when ``nan``."""
    F = frac_bits
    frac = fields["frac"]
    mant = Cat(C(0, f.mbits - F), frac)
    if "sub" in fields:
        top = Cat(C(0, f.mbits - F), frac, C(1, 1))  # 1.frac left-aligned on mbits + 1 bits
        shifted = Signal(f.mbits, name=f"{name}_subfrac")
        m.d.comb += shifted.eq((top >> fields["down"])[: f.mbits])
        mant = Mux(fields["sub"], shifted, mant)
    if "clr" in fields:
        mant = Mux(fields["clr"], 0, mant)
    nan = fields["nan"]
    result = Signal(f.width, name=f"{name}_bits")
    m.d.comb += result.eq(Cat(Mux(nan, C(f.nan_bits, f.mbits), mant), fields["e"], fields["sign"] & ~nan))
    return result


def _shape(v):
    """The layout of a View, else the Value's shape."""
    return v.shape() if isinstance(v, data.View) else Value.cast(v).shape()


class DecodeUnit(wiring.Component):
    """Decode ``lanes`` elements of one block per beat (architecture.md "Hardware units").

    Parameters: ``fmt`` (the block format), ``lanes`` (elements per beat, divides ``fmt.k``;
    default ``fmt.k``), ``out`` (``"fp32"``, ``"bf16"`` or ``"fp16"``), ``pipeline`` (register
    positions: a count, the first ``n`` of ``out, product, norm, in``; or names such as
    ``"product,out"``, a list of names, ``"none"``, ``"all"``; default :data:`DECODE_DEFAULT_CUTS`).
    Each register is a valid/ready stage (``pipeline.add_pipeline``); with none the unit is a
    combinational path with ``o.valid = i.valid`` and ``i.ready = o.ready``. The header is sent with
    every beat.

    Members: ``i`` = ``In(stream.Signature({header, codes[lanes]}))``,
    ``o`` = ``Out(stream.Signature({values[lanes]}))``. Attributes: ``pipeline_positions``,
    ``cuts`` (the enabled positions, also ``pipeline``), ``latency`` (``len(cuts)`` cycles),
    ``exact`` (no rounding hardware, see the module doc).
    """

    unit_kind = "decode"
    initiation_interval = 1
    pipeline_positions = DECODE_POSITIONS

    def __init__(self, fmt: BlockFormat, lanes: int | None = None, out: str = "fp32",
                 pipeline: PipelineSpec = None) -> None:
        if not isinstance(fmt, BlockFormat):
            raise TypeError(f"fmt must be a BlockFormat, got {type(fmt).__name__}")
        if lanes is None:
            lanes = fmt.k
        if isinstance(lanes, bool) or not isinstance(lanes, int):
            raise TypeError(f"lanes must be an int, got {lanes!r}")
        if not 1 <= lanes <= fmt.k or fmt.k % lanes:
            raise ValueError(f"lanes must divide the block size k={fmt.k} (1..{fmt.k}), got {lanes}")
        if out not in IEEE_FORMATS:
            raise ValueError(f"out must be one of {', '.join(IEEE_FORMATS)}, got {out!r}")
        self.cuts = resolve_cuts(pipeline, DECODE_POSITIONS, DECODE_PREFERENCE, DECODE_DEFAULT_CUTS)
        self.fmt = fmt
        self.formats = {"a": fmt}
        self.lanes = lanes
        self.out = out
        self.pipeline = self.cuts
        self.latency = len(self.cuts)
        self.config = {"unit": "decode", "format": fmt.to_string(), "lanes": lanes, "out": out,
                       "pipeline": list(self.cuts)}
        self.module_name = f"nxfp_decode_{fmt.ident}_l{lanes}_{out}_{cuts_tag(self.cuts, DECODE_POSITIONS)}"
        self._elem = ElementDecoder(fmt)
        self._hdr = HeaderDecoder(fmt)
        self._in_layout = data.StructLayout({
            "header": fmt.header_bits,
            "codes": data.ArrayLayout(fmt.element_width, lanes),
        })
        self._out_layout = data.StructLayout({"values": data.ArrayLayout(IEEE_FORMATS[out].width, lanes)})
        self._lane = _LanePlan(fmt, self._elem, TABLE_MAX_BITS)
        self._exact = self._lane.exact_plan(ieee_format(out), self._hdr.scale_exp_base, (1 << fmt.scale.ebits) - 1)
        self.exact = self._exact is not None
        super().__init__({
            "i": In(stream.Signature(self._in_layout)),
            "o": Out(stream.Signature(self._out_layout)),
        })

    def _stage(self, m: Module, name: str, fields: list[dict[str, Value]], valid: Value, ready: Value):
        """The register at position ``name`` (when enabled) for every entry of ``fields``.

        Returns ``(fields, valid, ready)`` after it: the same Values when the position is off, else
        views of one valid/ready stage's payload register (one driver for the whole stage)."""
        if name not in self.cuts:
            return fields, valid, ready
        layout = data.StructLayout({f"f{n}": data.StructLayout({k: _shape(v) for k, v in f.items()})
                                    for n, f in enumerate(fields)})
        sink, source = add_pipeline(m, layout, 1, name=name)
        m.d.comb += [sink.valid.eq(valid), ready.eq(sink.ready),
                     sink.payload.eq(Cat(Cat(*(Value.cast(v) for v in f.values())) for f in fields))]
        return [{k: source.payload[f"f{n}"][k] for k in f} for n, f in enumerate(fields)], source.valid, source.ready

    def _lane_fields(self, m: Module, code: Value, hdr: data.View, n: int) -> dict[str, Value]:
        """Lane ``n``'s normalised exact product: ``sign``, ``frac``, ``sel`` (see :class:`_LanePlan`),
        a NaN header already folded in (the NaN selector is all ones: ``sel | nan``)."""
        fmt, lane = self.fmt, self._lane
        F, sw = lane.frac_bits, lane.sel_width
        if lane.table is not None:
            index = Cat(code, hdr.selector[: fmt.selector_bits], hdr.recycle[: fmt.recycle_bits],
                        hdr.scale_man[: fmt.scale.mbits])
            word = Signal(lane.word_width, name=f"lut{n}")
            m.d.comb += word.eq(const_table(lane.table, lane.word_width, index))
            sign, frac, sel = word[F + sw], word[:F], word[F: F + sw]
        else:  # element decode, exact significand product, leading-zero normalisation
            e = self._elem.decode(m, code, selector=hdr.selector, recycle=hdr.recycle, name=f"elem{n}")
            w = F + 1
            mag = Signal(w, name=f"mag{n}")
            m.d.comb += mag.eq(e.sig * hdr.scale_man)
            lz, all_zero = leading_zeros(mag)
            lz_sig = Signal(range(w + 1), name=f"lz{n}")
            m.d.comb += lz_sig.eq(lz)
            frac = Signal(F, name=f"efrac{n}")
            m.d.comb += frac.eq((mag << lz_sig)[:F])
            sel = Signal(sw, name=f"esel{n}")
            j = e.exp + (w - 1) - lz_sig
            m.d.comb += sel.eq(Mux(e.is_nan, lane.nan_sel,
                                   Mux(e.is_inf, lane.inf_sel, Mux(all_zero, lane.zero_sel, j))))
            sign = e.sign
        folded = Signal(sw, name=f"sel{n}")
        m.d.comb += folded.eq(sel | hdr.scale_nan.replicate(sw))
        return {"sign": sign, "frac": frac, "sel": folded}

    def _shared_fields(self, m: Module, hdr: data.View) -> dict[str, Value]:
        """What every lane needs of the header after the lane lookup: the exponent fields of each
        ``j`` (candidates), or the scale exponent (a per-lane adder or the rounding path)."""
        if self._exact is None or not self._exact["candidates"]:
            return {"scale_exp": hdr.scale_exp}
        f, lane = ieee_format(self.out), self._lane
        out = {}
        for j in range(lane.span):
            c = lane.e_lo + j + self._hdr.scale_exp_base + f.bias
            fields = _exp_fields(m, f, self._exact, hdr.scale_exp, c, f"cand{j}")
            out.update({f"c{j}_{k}": v for k, v in fields.items()})
        return out

    def _lane_exponent(self, m: Module, p: dict[str, Value], shared: dict[str, Value], n: int) -> dict[str, Value]:
        """Lane ``n``'s exponent fields on the exact path: picked from the candidates by ``sel``, or
        from its own biased exponent; zeros have exponent field 0, NaN/Inf elements all ones."""
        f, lane, plan = ieee_format(self.out), self._lane, self._exact
        keys = ["e"] + [k for k, on in (("sub", plan["subnormal"]), ("down", plan["subnormal"]),
                                        ("clr", plan["overflow"])) if on]
        zero = {"e": C(0, f.ebits), "sub": C(0, 1), "down": C(0, 1), "clr": C(0, 1)}
        special = {**zero, "e": C((1 << f.ebits) - 1, f.ebits)}  # Inf and NaN
        sel = p["sel"]
        if plan["candidates"]:
            others = lane.nan_sel + 1 - lane.span
            picks = {k: _select(sel, [shared[f"c{j}_{k}"] for j in range(lane.span)] + [zero[k]] + [special[k]] *
                                (others - 1)) for k in keys}
        else:
            x = Signal(max(len(shared["scale_exp"]), len(sel)) + 1, name=f"x{n}")
            m.d.comb += x.eq(shared["scale_exp"] + sel)
            own = _exp_fields(m, f, plan, x, lane.e_lo + self._hdr.scale_exp_base + f.bias, f"lane{n}")
            picks = {k: Mux(sel == lane.zero_sel, zero[k], Mux(sel > lane.zero_sel, special[k], own[k]))
                     for k in keys}
        out = {}
        for k in keys:
            sig = Signal(len(Value.cast(picks[k])), name=f"x{n}_{k}")
            m.d.comb += sig.eq(picks[k])
            out[k] = sig
        return out

    def elaborate(self, platform) -> Module:
        # Every intermediate is a single-driver Signal per lane and field, and every register stage
        # one payload Signal loaded by one assignment. Shared wide struct Signals assembled from
        # several drivers made Icarus re-send the whole vector to every lane on each partial update.
        m = Module()
        f = ieee_format(self.out)
        lane = self._lane
        F = lane.frac_bits
        valid, ready = self.i.valid, self.i.ready
        (beat,), valid, ready = self._stage(m, "in", [{"header": self.i.payload.header,
                                                        "codes": self.i.payload.codes}], valid, ready)
        # Lane lookup (spec 3, 4, 7) and the per-block exponent fields. Register ``product``.
        hdr = self._hdr.decode(m, beat["header"])
        lanes = [self._lane_fields(m, beat["codes"][n], hdr, n) for n in range(self.lanes)]
        shared = self._shared_fields(m, hdr)
        (shared, *lanes), valid, ready = self._stage(m, "product", [shared, *lanes], valid, ready)

        values = []
        if self._exact is not None:
            # Exact path: each lane's exponent fields, register ``norm``, assembly.
            fields = [{"sign": p["sign"], "frac": p["frac"], "nan": p["sel"] == lane.nan_sel,
                       **self._lane_exponent(m, p, shared, n)} for n, p in enumerate(lanes)]
            fields, valid, ready = self._stage(m, "norm", fields, valid, ready)
            values = [_assemble(m, f, F, q, name=f"rnd{n}") for n, q in enumerate(fields)]
        else:
            # Rounding path: round_to_ieee with register ``norm`` between its normalisation and its
            # rounding (the cut hook collects each lane's fields and hands back placeholders that the
            # stage register drives once every lane is built).
            collected: list[dict[str, Value]] = []
            placeholders: list[dict[str, Signal]] = []

            def cut(fields: dict[str, Value]) -> dict[str, Value]:
                n = len(collected)
                collected.append(fields)
                held = {k: Signal(_shape(v), name=f"norm{n}_{k}") for k, v in fields.items()}
                placeholders.append(held)
                return held

            hook = cut if "norm" in self.cuts else None
            for n, p in enumerate(lanes):
                finite = p["sel"] < lane.span
                mag = Signal(F + 1, name=f"mag{n}")
                nan, inf = Signal(name=f"nan{n}"), Signal(name=f"inf{n}")
                m.d.comb += [mag.eq(Cat(p["frac"], finite)), nan.eq(p["sel"] == lane.nan_sel),
                             inf.eq(p["sel"] == lane.inf_sel)]
                values.append(round_to_ieee(
                    m, sign=p["sign"], magnitude=mag, fmt=f, is_nan=nan, is_inf=inf, name=f"rnd{n}", cut=hook,
                    exponent=shared["scale_exp"] + p["sel"] + (lane.e_lo + self._hdr.scale_exp_base - F)))
            if hook is not None:
                held, valid, ready = self._stage(m, "norm", collected, valid, ready)
                for ph, h in zip(placeholders, held, strict=True):
                    m.d.comb += [ph[k].eq(h[k]) for k in ph]

        (res,), valid, ready = self._stage(m, "out", [{"values": Cat(*values)}], valid, ready)
        m.d.comb += [self.o.valid.eq(valid), ready.eq(self.o.ready), self.o.payload.values.eq(res["values"])]
        return m


def _select(sel: Value, choices: list[Value]) -> Value:
    """``choices[sel]`` (``sel`` below ``len(choices)``) as a balanced multiplexer tree on the bits of ``sel``."""
    def build(lo: int, bit: int) -> Value:
        if bit < 0 or lo + 1 >= len(choices):
            return choices[lo]
        half = lo + (1 << bit)
        if half >= len(choices):
            return build(lo, bit - 1)
        return Mux(sel[bit], build(half, bit - 1), build(lo, bit - 1))

    return build(0, len(sel) - 1)
