"""Block encoder: float32/bfloat16 values -> one packed block (direct cast, spec 5 and 6).

Datapath (docs/encoder.md): gather ``k / lanes`` beats into a block; ``amax`` tree over the
31-bit magnitudes (NaN/Inf -> NaN header, zero codes); one scale code per distinct ``max_elem``
(rule ``ocp`` from the exponent field, rule ``ceil`` by exact comparison against constant
thresholds); per element and candidate one alignment shift into the scale's units and a
thermometer of exact comparisons against the rounding midpoints (spec 5.3); per (candidate,
recycling option) pair the codes and, when the block format has more than one pair, the
fixed-point error of :mod:`nxfp_hw.golden.hw_metric`; least error wins, ties to the lowest
selector then the lowest recycling option (spec 5.4).
"""

from __future__ import annotations

from amaranth.hdl import Array, C, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..formats import BlockFormat
from ..golden.hw_metric import HW_FRAC_BITS, hw_error_width
from .encode_arith import (
    ceil_thresholds,
    magnitude_table,
    max_tree,
    ocp_field,
    round_index,
    shift_floor,
    sum_tree,
    unpack_fp32,
)
from .pipeline import add_pipeline

__all__ = ["ENCODE_INPUTS", "EncodeUnit"]

#: Input number formats: name -> bit width.
ENCODE_INPUTS = {"fp32": 32, "bf16": 16}


def _rom(values, width: int, index: Signal):
    """Constant lookup ``values[index]``, padded with the last value to every index pattern (so
    the emitted ``case`` is complete; indices past the table never occur)."""
    vals = list(values) + [values[-1]] * ((1 << len(index)) - len(values))
    return Array(C(v, width) for v in vals)[index]


def _rom_signals(signals: list, index: Signal):
    """``signals[index]``, padded like :func:`_rom`."""
    return Array(list(signals) + [signals[-1]] * ((1 << len(index)) - len(signals)))[index]


class EncodeUnit(wiring.Component):
    """Quantize one block of ``fmt.k`` values, ``lanes`` per input beat (architecture.md "Hardware units").

    Parameters: ``fmt`` (rule ``ocp`` or ``ceil``; ``search`` is not supported in hardware),
    ``lanes`` (divides ``fmt.k``, default ``fmt.k``), ``input`` (``"fp32"`` or ``"bf16"``),
    ``pipeline`` (register stages, default 2; 0 is combinational from the last beat of a block).

    Members: ``i`` = ``In(stream.Signature({values[lanes]}))``, ``k / lanes`` beats per block in
    element order; ``o`` = ``Out(stream.Signature({header, codes[k]}))``, one beat per block.
    ``latency`` counts from the transfer of a block's last beat; the input takes a beat every cycle.
    """

    unit_kind = "encode"
    initiation_interval = 1

    def __init__(self, fmt: BlockFormat, lanes: int | None = None, input: str = "fp32",  # noqa: A002
                 pipeline: int | None = None) -> None:
        if not isinstance(fmt, BlockFormat):
            raise TypeError(f"fmt must be a BlockFormat, got {type(fmt).__name__}")
        if fmt.rule == "search":
            raise ValueError(
                f"format {fmt.label}: scale rule 'search' is not supported in hardware; use rule=ceil or rule=ocp"
            )
        if lanes is None:
            lanes = fmt.k
        if isinstance(lanes, bool) or not isinstance(lanes, int):
            raise TypeError(f"lanes must be an int, got {lanes!r}")
        if not 1 <= lanes <= fmt.k or fmt.k % lanes:
            raise ValueError(f"lanes must divide the block size k={fmt.k} (1..{fmt.k}), got {lanes}")
        if input not in ENCODE_INPUTS:
            raise ValueError(f"input must be one of {', '.join(ENCODE_INPUTS)}, got {input!r}")
        if pipeline is None:
            pipeline = 2
        if isinstance(pipeline, bool) or not isinstance(pipeline, int):
            raise TypeError(f"pipeline must be an int, got {pipeline!r}")
        if not 0 <= pipeline <= 16:
            raise ValueError(f"pipeline must be in 0..16 register stages, got {pipeline}")
        self.fmt = fmt
        self.formats = {"a": fmt}
        self.lanes = lanes
        self.input = input
        self.pipeline = pipeline
        self.latency = pipeline
        self.metric_frac_bits = HW_FRAC_BITS
        self.config = {
            "unit": "encode", "format": fmt.to_string(), "lanes": lanes, "input": input, "pipeline": pipeline,
            "metric": "hw", "metric_frac_bits": HW_FRAC_BITS,
        }
        self.module_name = f"nxfp_encode_{fmt.ident}_l{lanes}_{input}_p{pipeline}"
        self._plan()
        in_width = ENCODE_INPUTS[input]
        self._in_layout = data.StructLayout({"values": data.ArrayLayout(in_width, lanes)})
        self._out_layout = data.StructLayout({
            "header": fmt.header_bits,
            "codes": data.ArrayLayout(fmt.element_width, fmt.k),
        })
        self._mid_layout = data.StructLayout({
            "values": data.ArrayLayout(in_width, fmt.k),
            "ef": 8,
            "special": 1,
            "scales": data.ArrayLayout(fmt.scale.width, len(self._scale_groups)),
        })
        super().__init__({
            "i": In(stream.Signature(self._in_layout)),
            "o": Out(stream.Signature(self._out_layout)),
        })

    # --- elaboration-time tables ---------------------------------------------------------------
    def _plan(self) -> None:
        """Pairs (candidate, option), their scale groups (one per distinct ``max_elem``) and
        rounding groups (one per candidate and ``max_elem``, sharing the alignment shift)."""
        fmt = self.fmt
        self._pairs = []
        self._scale_groups: list[float] = []
        rgroups: dict[tuple[int, float], list[float | None]] = {}
        for c in range(len(fmt.elements)):
            for j in range(max(fmt.recycle_options, 1)):
                maxe = fmt.max_element(c, j)
                r = fmt.recycling[c][j] if fmt.recycling else None
                if maxe not in self._scale_groups:
                    self._scale_groups.append(maxe)
                tabs = rgroups.setdefault((c, maxe), [None])
                if r is not None and abs(r) not in tabs:
                    tabs.append(abs(r))
                self._pairs.append((c, j, maxe, r))
        self._round_groups = {}
        for (c, maxe), rs in rgroups.items():
            frac = max(magnitude_table(fmt, c, r).frac for r in rs)
            tabs = {r: magnitude_table(fmt, c, r, frac) for r in rs}
            width = max(
                ((1 << fmt.scale.mbits) + mv) * mid
                for t in tabs.values() for mid in t.mids for mv in range(1 << fmt.scale.mbits)
            ).bit_length()
            self._round_groups[(c, maxe)] = (frac, width, tabs)

    def _neg_codes(self, c: int, codes: tuple[int, ...], r_index: int) -> list[int]:
        """Codes of the negated magnitudes (spec 5.3 sign rules): INT two's complement; minifloat
        sign bit set, except R (its own code) and zero (+0 with recycling, -0 without)."""
        elem = self.fmt.elements[c]
        w = elem.width
        out = []
        for i, code in enumerate(codes):
            if elem.is_int:
                out.append((-code) % (1 << w))
            elif i == r_index:
                out.append(code)
            elif code == 0 and self.fmt.recycling:
                out.append(0)
            else:
                out.append(code | (1 << (w - 1)))
        return out

    # --- hardware -----------------------------------------------------------------------------------
    def _gather(self, m: Module):
        """Collect ``k / lanes`` beats; returns ``(block values, valid, ready)`` of the whole block,
        which is valid together with its last beat (no added latency)."""
        k, lanes = self.fmt.k, self.lanes
        beats = k // lanes
        block_ready = Signal(name="block_ready")
        if beats == 1:
            vals = [self.i.payload.values[n] for n in range(lanes)]
            m.d.comb += self.i.ready.eq(block_ready)
            return vals, self.i.valid, block_ready
        width = ENCODE_INPUTS[self.input]
        buf = Signal(data.ArrayLayout(width, k - lanes), name="gather_buf")
        count = Signal(range(beats), name="gather_count")
        last = count == beats - 1
        m.d.comb += self.i.ready.eq(~last | block_ready)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += count.eq(Mux(last, 0, count + 1))
            with m.If(~last):
                for b in range(beats - 1):
                    with m.If(count == b):
                        for n in range(lanes):
                            m.d.sync += buf[b * lanes + n].eq(self.i.payload.values[n])
        vals = [buf[n] for n in range(k - lanes)] + [self.i.payload.values[n] for n in range(lanes)]
        return vals, self.i.valid & last, block_ready

    def _fp32(self, v):
        return v if self.input == "fp32" else Cat(C(0, 16), v)

    def _stage_scale(self, m: Module, vals, payload) -> None:
        """amax tree, NaN/Inf flag, one scale code per scale group (spec 5.1, 5.2)."""
        fmt = self.fmt
        sf = fmt.scale
        mags, specials = [], []
        for v in vals:
            bits = self._fp32(v)
            _, _, _, special = unpack_fp32(bits)
            mags.append(bits[:31])
            specials.append(special)
        amax = Signal(31, name="amax")
        m.d.comb += amax.eq(max_tree(mags))
        special = Signal(name="special")
        m.d.comb += special.eq(Cat(*specials).any())
        for n, v in enumerate(vals):
            m.d.comb += payload.values[n].eq(v)
        m.d.comb += [payload.ef.eq(amax[23:31]), payload.special.eq(special)]
        for g, maxe in enumerate(self._scale_groups):
            if fmt.rule == "ocp":
                emax = fmt.emax_element(*next((c, j) for c, j, mx, _ in self._pairs if mx == maxe))
                field = ocp_field(m, fmt, amax[23:31], emax, name=f"ocp_field{g}")
                m.d.comb += payload.scales[g].eq(field << sf.mbits)
            else:  # ceil: count the thresholds amax exceeds (spec 5.2, exact)
                thr = ceil_thresholds(fmt, maxe)
                above = [amax > Const(t, 31) for t in thr]
                count = Signal(range(len(thr) + 1), name=f"ceil_count{g}")
                m.d.comb += count.eq(sum_tree(above))
                m.d.comb += payload.scales[g].eq(Mux(count > sf.max_code, sf.max_code, count))

    def _stage_round(self, m: Module, p, out) -> None:
        """Element rounding for every pair, the hw error, selection, header assembly (spec 5.3, 5.4)."""
        fmt = self.fmt
        sf = fmt.scale
        b = sf.mbits
        k = fmt.k
        w = fmt.element_width
        F = HW_FRAC_BITS
        many = len(self._pairs) > 1
        scale = [p.scales[g] for g in range(len(self._scale_groups))]
        field = [s[b:] for s in scale]
        man = [s[:b] for s in scale]
        ef_top = Signal(signed(10), name="ef_top")  # max(ef_amax, 1): alignment exponent + 127
        m.d.comb += ef_top.eq(Mux(p.ef == 0, 1, p.ef))
        elems = []
        for n in range(k):
            sign, ef, sig, _ = unpack_fp32(self._fp32(p.values[n]))
            e = Signal(signed(10), name=f"e{n}")
            m.d.comb += e.eq(Mux(ef == 0, 1, ef))
            elems.append((sign, e, sig))
        # x part of the hw metric, shared by all pairs: floor(|x| * 2^(F - A)).
        xf = []
        if many:
            for n, (_, e, sig) in enumerate(elems):
                r, _, _ = shift_floor(m, sig, e - ef_top + (F - 23), lo=-24, hi=F - 23, width=F + 1, name=f"xf{n}")
                xf.append(r)
        # Rounding groups: one alignment shift per element, one thermometer per magnitude table.
        idx = {}
        for (c, maxe), (frac, width, tabs) in self._round_groups.items():
            g = self._scale_groups.index(maxe)
            const = sf.bias + b + frac - 150
            for n, (_, e, sig) in enumerate(elems):
                amt = Signal(signed(12), name=f"ya{c}_{g}_{n}")
                m.d.comb += amt.eq(e - field[g] + const)
                y, sticky, ovf = shift_floor(m, sig, amt, lo=-24, hi=width, width=width, name=f"y{c}_{g}_{n}")
                for ti, (r, tab) in enumerate(tabs.items()):
                    tag = "n" if r is None else f"r{ti}"
                    idx[(c, maxe, r, n)] = round_index(m, y, sticky, ovf, man[g], b, tab, name=f"idx{c}_{g}_{tag}_{n}")
        # Per pair: codes and the error.
        pair_codes, pair_err, pair_hdr = [], [], []
        for pi, (c, j, maxe, r) in enumerate(self._pairs):
            g = self._scale_groups.index(maxe)
            frac = self._round_groups[(c, maxe)][0]
            tabs = self._round_groups[(c, maxe)][2]
            r_pos = abs(r) if r is not None and r > 0 else None
            r_neg = abs(r) if r is not None and r < 0 else None
            t_pos, t_neg = tabs[r_pos], tabs[r_neg]
            codes = Signal(data.ArrayLayout(w, k), name=f"codes{pi}")
            sq = []
            for n, (sign, _, _) in enumerate(elems):
                i_pos, i_neg = idx[(c, maxe, r_pos, n)], idx[(c, maxe, r_neg, n)]
                pos_code = _rom(t_pos.codes, w, i_pos)
                neg_code = _rom(self._neg_codes(c, t_neg.codes, t_neg.r_index), w, i_neg)
                m.d.comb += codes[n].eq(Mux(sign, neg_code, pos_code))
                if many:
                    lw = max(max(t_pos.levels), max(t_neg.levels)).bit_length()
                    lv = Signal(lw, name=f"lv{pi}_{n}")
                    m.d.comb += lv.eq(Mux(sign, _rom(t_neg.levels, lw, i_neg), _rom(t_pos.levels, lw, i_pos)))
                    prod = Signal(lw + b + 1, name=f"xq{pi}_{n}")
                    m.d.comb += prod.eq(lv * Cat(man[g], C(1, 1)) if b else lv)
                    t = Signal(signed(12), name=f"xqa{pi}_{n}")
                    m.d.comb += t.eq(field[g] - ef_top + (127 - sf.bias - b - frac + F))
                    yf, _, _ = shift_floor(m, prod, t, lo=-len(prod), hi=F + 2, width=F + 2, name=f"yf{pi}_{n}")
                    d = Signal(signed(F + 4), name=f"d{pi}_{n}")
                    m.d.comb += d.eq(xf[n] - yf)
                    d2 = Signal(2 * F + 3, name=f"d2_{pi}_{n}")
                    m.d.comb += d2.eq(d * d)
                    sq.append(d2)
            pair_codes.append(codes)
            if many:
                err = Signal(hw_error_width(k), name=f"err{pi}")
                m.d.comb += err.eq(sum_tree(sq))
                pair_err.append(err)
            pair_hdr.append(Signal(fmt.header_bits, name=f"hdr{pi}"))
            m.d.comb += pair_hdr[-1].eq(
                scale[g] | (j << sf.width) | (c << (sf.width + fmt.recycle_bits))
                if fmt.header_bits > sf.width else scale[g]
            )
        # Selection: least error, strict < keeps the earlier (selector, option) on ties (spec 5.4).
        best = Signal(range(len(self._pairs)), name="best")
        if many:
            chosen_err, chosen = pair_err[0], C(0, len(best))
            for pi in range(1, len(self._pairs)):
                better = pair_err[pi] < chosen_err
                chosen_err = Mux(better, pair_err[pi], chosen_err)
                chosen = Mux(better, pi, chosen)
            m.d.comb += best.eq(chosen)
        hdr = _rom_signals(pair_hdr, best) if many else pair_hdr[0]
        cds = _rom_signals(pair_codes, best) if many else pair_codes[0]
        with m.If(p.special):  # spec 5.1: NaN header, zero codes
            m.d.comb += [out.header.eq(int(fmt.make_header(sf.nan_code, 0, 0))), out.codes.eq(0)]
        with m.Else():
            m.d.comb += [out.header.eq(hdr), out.codes.eq(cds)]

    def elaborate(self, platform) -> Module:
        m = Module()
        vals, block_valid, block_ready = self._gather(m)
        mid_stages = 1 if self.pipeline >= 2 else 0
        mid_in, mid_out = add_pipeline(m, self._mid_layout, mid_stages, name="mid")
        self._stage_scale(m, vals, mid_in.payload)
        m.d.comb += [mid_in.valid.eq(block_valid), block_ready.eq(mid_in.ready)]
        tail_in, tail_out = add_pipeline(m, self._out_layout, self.pipeline - mid_stages, name="tail")
        self._stage_round(m, mid_out.payload, tail_in.payload)
        m.d.comb += [tail_in.valid.eq(mid_out.valid), mid_out.ready.eq(tail_in.ready)]
        m.d.comb += [
            self.o.valid.eq(tail_out.valid),
            self.o.payload.eq(tail_out.payload),
            tail_out.ready.eq(self.o.ready),
        ]
        return m
