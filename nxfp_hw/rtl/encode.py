"""Block encoder: float32/bfloat16 values -> one packed block (direct cast, spec 5 and 6).

Datapath (docs/encoder.md): gather ``k / lanes`` beats with a running ``amax`` and NaN/Inf flag;
one scale code per distinct ``max_elem`` (rule ``ocp`` from the exponent field, rule ``ceil`` by
exact comparison against constant thresholds); the block moves into a work register (the double
buffer that keeps the input at full rate), from which ``lanes`` elements per cycle are rounded:
per element and candidate one alignment shift into the scale's units and a thermometer of exact
comparisons against the rounding midpoints (spec 5.3); per (candidate, recycling option) pair the
codes and, when the block format has more than one pair, the fixed-point error of
:mod:`nxfp_hw.golden.hw_metric`, accumulated over the slices. With the last slice the least error
wins, ties to the lowest selector then the lowest recycling option (spec 5.4). The rounding and
error hardware therefore scales with ``lanes``, not with ``k``.
"""

from __future__ import annotations

from amaranth.hdl import Array, C, Cat, Const, Module, Mux, Signal, Value, signed
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
    square,
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
    ``pipeline`` (register stages after the work register, default 3: one between the error and
    the selection when ``pipeline >= 2``, one between the rounding and the error when
    ``pipeline >= 3``, the rest at the output).

    Members: ``i`` = ``In(stream.Signature({values[lanes]}))``, ``k / lanes`` beats per block in
    element order; ``o`` = ``Out(stream.Signature({header, codes[k]}))``, one beat per block.
    ``latency = k / lanes + pipeline`` counts from the transfer of a block's last beat to its output
    (the work register, ``k / lanes`` slices, the pipeline); the input takes a beat every cycle.
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
            pipeline = 3
        if isinstance(pipeline, bool) or not isinstance(pipeline, int):
            raise TypeError(f"pipeline must be an int, got {pipeline!r}")
        if not 0 <= pipeline <= 16:
            raise ValueError(f"pipeline must be in 0..16 register stages, got {pipeline}")
        self.fmt = fmt
        self.formats = {"a": fmt}
        self.lanes = lanes
        self.input = input
        self.pipeline = pipeline
        self.latency = fmt.k // lanes + pipeline
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
        self._work_layout = data.StructLayout({
            "values": data.ArrayLayout(in_width, fmt.k),
            "ef": 8,
            "special": 1,
            "scales": data.ArrayLayout(fmt.scale.width, len(self._scale_groups)),
        })
        many = len(self._pairs) > 1
        common = {
            "codes": data.ArrayLayout(data.ArrayLayout(fmt.element_width, lanes), len(self._pairs)),
            "scales": data.ArrayLayout(fmt.scale.width, len(self._scale_groups)),
            "special": 1,
            "last": 1,
        }
        rounded = dict(common)
        if many:  # what the error stage needs: each pair's level per lane and its alignment shift, |x| in metric units
            rounded["levels"] = data.ArrayLayout(data.ArrayLayout(self._level_width, lanes), len(self._pairs))
            rounded["align"] = data.ArrayLayout(signed(12), len(self._pairs))
            rounded["xf"] = data.ArrayLayout(HW_FRAC_BITS + 1, lanes)
        self._rounded_layout = data.StructLayout(rounded)
        slice_fields = dict(common)
        if many:
            slice_fields["errs"] = data.ArrayLayout(hw_error_width(lanes), len(self._pairs))
        self._slice_layout = data.StructLayout(slice_fields)
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
        self._level_width = max(max(t.levels) for _, _, tabs in self._round_groups.values()
                                for t in tabs.values()).bit_length()

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
        """Collect ``k / lanes`` beats, keeping a running ``amax`` and NaN/Inf flag (spec 5.1).

        Returns ``(values, amax, special, valid, ready)`` of the whole block, valid together with
        its last beat (the earlier beats come from a buffer, the last one straight from the input).
        """
        k, lanes = self.fmt.k, self.lanes
        beats = k // lanes
        beat_vals = [self.i.payload.values[n] for n in range(lanes)]
        beat_amax = Signal(31, name="beat_amax")
        beat_special = Signal(name="beat_special")
        unpacked = [unpack_fp32(self._fp32(v)) for v in beat_vals]
        m.d.comb += [
            beat_amax.eq(max_tree([self._fp32(v)[:31] for v in beat_vals])),
            beat_special.eq(Cat(*(u[3] for u in unpacked)).any()),
        ]
        block_ready = Signal(name="block_ready")
        if beats == 1:
            m.d.comb += self.i.ready.eq(block_ready)
            return beat_vals, beat_amax, beat_special, self.i.valid, block_ready
        width = ENCODE_INPUTS[self.input]
        buf = Signal(data.ArrayLayout(width, k - lanes), name="gather_buf")
        count = Signal(range(beats), name="gather_count")
        run_amax = Signal(31, name="gather_amax")  # over the beats before this one
        run_special = Signal(name="gather_special")
        last = count == beats - 1
        amax = Signal(31, name="amax")
        special = Signal(name="special")
        first = count == 0
        m.d.comb += [
            amax.eq(Mux(first | (beat_amax >= run_amax), beat_amax, run_amax)),
            special.eq(beat_special | (run_special & ~first)),
            self.i.ready.eq(~last | block_ready),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += count.eq(Mux(last, 0, count + 1))
            with m.If(~last):
                m.d.sync += [run_amax.eq(amax), run_special.eq(special)]
                for b in range(beats - 1):
                    with m.If(count == b):
                        for n in range(lanes):
                            m.d.sync += buf[b * lanes + n].eq(beat_vals[n])
        vals = [buf[n] for n in range(k - lanes)] + beat_vals
        return vals, amax, special, self.i.valid & last, block_ready

    def _fp32(self, v):
        return v if self.input == "fp32" else Cat(C(0, 16), v)

    def _scale_codes(self, m: Module, amax: Value) -> list[Value]:
        """One scale code per scale group from the block's ``amax`` (spec 5.2)."""
        fmt = self.fmt
        sf = fmt.scale
        out = []
        for g, maxe in enumerate(self._scale_groups):
            code = Signal(sf.width, name=f"scale{g}")
            if fmt.rule == "ocp":
                emax = fmt.emax_element(*next((c, j) for c, j, mx, _ in self._pairs if mx == maxe))
                field = ocp_field(m, fmt, amax[23:31], emax, name=f"ocp_field{g}")
                m.d.comb += code.eq(field << sf.mbits)
            else:  # ceil: count the thresholds amax exceeds (spec 5.2, exact)
                thr = ceil_thresholds(fmt, maxe)
                above = [amax > Const(t, 31) for t in thr]
                count = Signal(range(len(thr) + 1), name=f"ceil_count{g}")
                m.d.comb += count.eq(sum_tree(above))
                m.d.comb += code.eq(Mux(count > sf.max_code, sf.max_code, count))
            out.append(code)
        return out

    def _front(self, m: Module, vals, amax, special, block_valid, block_ready, sink) -> None:
        """The work register (one block, the double buffer behind the gather buffer) and the
        rounding of ``lanes`` elements per cycle: one slice beat per cycle into ``sink``."""
        fmt, lanes = self.fmt, self.lanes
        beats = fmt.k // lanes
        work = Signal(self._work_layout, name="work")
        busy = Signal(name="work_busy")
        index = Signal(range(beats), name="work_slice")
        last = index == beats - 1
        scales = self._scale_codes(m, amax)
        m.d.comb += block_ready.eq(~busy | (last & sink.ready))
        with m.If(sink.valid & sink.ready):
            m.d.sync += index.eq(Mux(last, 0, index + 1))
            with m.If(last):
                m.d.sync += busy.eq(0)
            with m.Else():  # the next slice moves to the bottom lanes
                for n in range(fmt.k - lanes):
                    m.d.sync += work.values[n].eq(work.values[n + lanes])
        with m.If(block_valid & block_ready):
            m.d.sync += [busy.eq(1), index.eq(0), work.ef.eq(amax[23:31]), work.special.eq(special)]
            for n, v in enumerate(vals):
                m.d.sync += work.values[n].eq(v)
            for g, s in enumerate(scales):
                m.d.sync += work.scales[g].eq(s)
        p = sink.payload
        m.d.comb += [
            sink.valid.eq(busy), p.last.eq(last), p.special.eq(work.special), p.scales.eq(work.scales),
        ]
        self._round_slice(m, [work.values[n] for n in range(lanes)], work.ef, work.scales, p)

    def _round_slice(self, m: Module, values, ef_amax, scales_in, p) -> None:
        """Element rounding of one slice for every pair (spec 5.3): the codes go to
        ``p.codes[pair]``; with several pairs, the chosen levels to ``p.levels[pair]`` and
        ``floor(|x| * 2^(F - A))`` to ``p.xf`` for :meth:`_slice_error`."""
        fmt = self.fmt
        sf = fmt.scale
        b = sf.mbits
        F = HW_FRAC_BITS
        many = len(self._pairs) > 1
        scale = [scales_in[g] for g in range(len(self._scale_groups))]
        field = [s[b:] for s in scale]
        man = [s[:b] for s in scale]
        ef_top = Signal(signed(10), name="ef_top")  # max(ef_amax, 1): alignment exponent + 127
        m.d.comb += ef_top.eq(Mux(ef_amax == 0, 1, ef_amax))
        elems = []
        for n, v in enumerate(values):
            sign, ef, sig, _ = unpack_fp32(self._fp32(v))
            e = Signal(signed(10), name=f"e{n}")
            m.d.comb += e.eq(Mux(ef == 0, 1, ef))
            elems.append((sign, e, sig))
        # x part of the hw metric, shared by all pairs: floor(|x| * 2^(F - A)).
        if many:
            for n, (_, e, sig) in enumerate(elems):
                r, _, _ = shift_floor(m, sig, e - ef_top + (F - 23), lo=-24, hi=F - 23, width=F + 1, name=f"xf{n}")
                m.d.comb += p.xf[n].eq(r)
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
        # Per pair: codes and, for the error stage, the chosen levels and the shift that aligns the
        # levels (in units of 2^-frac of the pair's scale) to the metric's units 2^(A - F).
        lw = self._level_width
        for pi, (c, _j, maxe, r) in enumerate(self._pairs):
            g = self._scale_groups.index(maxe)
            frac, _, tabs = self._round_groups[(c, maxe)]
            if many:
                m.d.comb += p.align[pi].eq(field[g] - ef_top + (127 - sf.bias - b - frac + F))
            r_pos = abs(r) if r is not None and r > 0 else None
            r_neg = abs(r) if r is not None and r < 0 else None
            t_pos, t_neg = tabs[r_pos], tabs[r_neg]
            for n, (sign, _, _) in enumerate(elems):
                i_pos, i_neg = idx[(c, maxe, r_pos, n)], idx[(c, maxe, r_neg, n)]
                pos_code = _rom(t_pos.codes, fmt.element_width, i_pos)
                neg_code = _rom(self._neg_codes(c, t_neg.codes, t_neg.r_index), fmt.element_width, i_neg)
                m.d.comb += p.codes[pi][n].eq(Mux(sign, neg_code, pos_code))
                if many:
                    m.d.comb += p.levels[pi][n].eq(
                        Mux(sign, _rom(t_neg.levels, lw, i_neg), _rom(t_pos.levels, lw, i_pos)))

    def _slice_error(self, m: Module, src, dst) -> None:
        """Each pair's hw-metric error over one rounded slice (spec 5.4, docs/encoder.md):
        ``yf`` from the level and the scale, ``D = xf - yf``, ``D^2`` by the folded squarer, summed
        over the lanes. Codes and header fields pass through."""
        fmt = self.fmt
        sf = fmt.scale
        b = sf.mbits
        F = HW_FRAC_BITS
        p, q = src.payload, dst.payload
        m.d.comb += [dst.valid.eq(src.valid), src.ready.eq(dst.ready),
                     q.codes.eq(p.codes), q.scales.eq(p.scales), q.special.eq(p.special), q.last.eq(p.last)]
        if len(self._pairs) == 1:
            return
        for pi, (_c, _j, maxe, _r) in enumerate(self._pairs):
            man = p.scales[self._scale_groups.index(maxe)][:b]
            sq = []
            for n in range(self.lanes):
                lv = p.levels[pi][n]
                prod = Signal(len(lv) + b + 1, name=f"xq{pi}_{n}")
                m.d.comb += prod.eq(lv * Cat(man, C(1, 1)) if b else lv)
                yf, _, _ = shift_floor(m, prod, p.align[pi], lo=-len(prod), hi=F + 2, width=F + 2,
                                       name=f"yf{pi}_{n}")
                d_abs = Signal(F + 2, name=f"dabs{pi}_{n}")  # |xf - yf| <= 2^(F+1), both differences in parallel
                m.d.comb += d_abs.eq(Mux(p.xf[n] >= yf, p.xf[n] - yf, yf - p.xf[n]))
                d2 = Signal(2 * F + 3, name=f"d2_{pi}_{n}")
                m.d.comb += d2.eq(square(d_abs))
                sq.append(d2)
            m.d.comb += q.errs[pi].eq(sum_tree(sq))

    def _back(self, m: Module, src, out) -> None:
        """Assemble the block from its slices: shift the codes in, accumulate each pair's error;
        with the last slice, pick the pair (least error, ties to the lowest selector then
        option, spec 5.4) and emit header and codes (NaN header and zero codes for NaN/Inf)."""
        fmt, lanes = self.fmt, self.lanes
        sf = fmt.scale
        k = fmt.k
        beats = k // lanes
        pairs = self._pairs
        many = len(pairs) > 1
        p = src.payload
        m.d.comb += [out.valid.eq(src.valid & p.last), src.ready.eq(~p.last | out.ready)]
        step = src.valid & src.ready
        pair_codes, pair_err = [], []
        for pi in range(len(pairs)):
            slice_codes = [p.codes[pi][n] for n in range(lanes)]
            if beats == 1:
                pair_codes.append(Cat(*slice_codes))
            else:
                held = Signal(data.ArrayLayout(fmt.element_width, k - lanes), name=f"codes_held{pi}")
                with m.If(step & ~p.last):  # shift down one slice, the new slice on top
                    for n in range(k - lanes):
                        m.d.sync += held[n].eq(held[n + lanes] if n + lanes < k - lanes
                                               else slice_codes[n + lanes - (k - lanes)])
                pair_codes.append(Cat(held.as_value(), *slice_codes))
            if many:
                total = Signal(hw_error_width(k), name=f"err{pi}")
                if beats == 1:
                    m.d.comb += total.eq(p.errs[pi])
                else:
                    acc = Signal(hw_error_width(k), name=f"err_acc{pi}")
                    m.d.comb += total.eq(acc + p.errs[pi])
                    with m.If(step):
                        m.d.sync += acc.eq(Mux(p.last, 0, total))
                pair_err.append(total)
        pair_hdr = []
        for pi, (c, j, maxe, _) in enumerate(pairs):
            g = self._scale_groups.index(maxe)
            hdr = Signal(fmt.header_bits, name=f"hdr{pi}")
            m.d.comb += hdr.eq(
                p.scales[g] | (j << sf.width) | (c << (sf.width + fmt.recycle_bits))
                if fmt.header_bits > sf.width else p.scales[g]
            )
            pair_hdr.append(hdr)
        best = Signal(range(len(pairs)), name="best")
        if many:  # strict < keeps the earlier (selector, option) on ties
            chosen_err, chosen = pair_err[0], C(0, len(best))
            for pi in range(1, len(pairs)):
                better = pair_err[pi] < chosen_err
                chosen_err = Mux(better, pair_err[pi], chosen_err)
                chosen = Mux(better, pi, chosen)
            m.d.comb += best.eq(chosen)
        hdr = _rom_signals(pair_hdr, best) if many else pair_hdr[0]
        cds = _rom_signals(pair_codes, best) if many else pair_codes[0]
        with m.If(p.special):  # spec 5.1: NaN header, zero codes
            m.d.comb += [out.payload.header.eq(int(fmt.make_header(sf.nan_code, 0, 0))), out.payload.codes.eq(0)]
        with m.Else():
            m.d.comb += [out.payload.header.eq(hdr), out.payload.codes.eq(cds)]

    def elaborate(self, platform) -> Module:
        m = Module()
        vals, amax, special, block_valid, block_ready = self._gather(m)
        error_stages = 1 if self.pipeline >= 2 else 0  # between the error and the selection
        round_stages = 1 if self.pipeline >= 3 else 0  # between rounding and the error
        rounded_in, rounded_out = add_pipeline(m, self._rounded_layout, round_stages, name="rounded")
        self._front(m, vals, amax, special, block_valid, block_ready, rounded_in)
        slice_in, slice_out = add_pipeline(m, self._slice_layout, error_stages, name="slice")
        self._slice_error(m, rounded_out, slice_in)
        tail_in, tail_out = add_pipeline(m, self._out_layout, self.pipeline - round_stages - error_stages,
                                         name="tail")
        self._back(m, slice_out, tail_in)
        m.d.comb += [
            self.o.valid.eq(tail_out.valid),
            self.o.payload.eq(tail_out.payload),
            tail_out.ready.eq(self.o.ready),
        ]
        return m
