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

import numpy as np
from amaranth.hdl import Array, C, Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..formats import BlockFormat
from ..golden.hw_metric import hw_error_width
from ..golden.select import (
    DEFAULT_SELECT,
    SELECT_POLICIES,
    check_select,
    scale_fields,
    scaled_delta_constants,
    scaled_delta_plan,
    scaled_geometry,
    scaled_hits_by_count,
    scaled_unit_span,
)
from .encode_arith import (
    ceil_thresholds,
    const_table,
    csa_sum,
    magnitude_table,
    max_select,
    ocp_field,
    round_index,
    shift_floor,
    square_rows,
    thermometer_count,
    unpack_fp32,
)
from .pipeline import PipelineSpec, add_pipeline, cuts_tag, resolve_cuts

__all__ = ["ENCODE_DEFAULT_CUTS", "ENCODE_INPUTS", "ENCODE_POSITIONS", "ENCODE_POSITIONS_ONE_PAIR",
           "ENCODE_PREFERENCE", "EncodeUnit"]

#: Input number formats: name -> bit width.
ENCODE_INPUTS = {"fp32": 32, "bf16": 16}
#: Register positions in datapath order (docs/timing.md "Encoder"); formats with one (candidate,
#: option) pair have no error and no selection, so no ``diff``, ``slice`` or ``total``.
ENCODE_POSITIONS = ("beat", "align", "rounded", "diff", "slice", "total", "out")
ENCODE_POSITIONS_ONE_PAIR = ("beat", "align", "rounded", "out")
#: The order in which a register count enables them (``pipeline=3`` is the former default: the
#: output, the error/selection and the rounding/error registers).
ENCODE_PREFERENCE = ("out", "slice", "rounded", "beat", "align", "diff", "total")
#: Default positions: nxfp4, 8 lanes, meets 200 MHz on the asic flow.
ENCODE_DEFAULT_CUTS = ENCODE_POSITIONS


def _rom(values, width: int, index: Value):
    """Constant lookup ``values[index]``, padded with the last value to every index pattern (indices
    past the table never occur); :func:`~nxfp_hw.rtl.encode_arith.const_table`."""
    vals = list(values) + [values[-1]] * ((1 << len(index)) - len(values))
    return const_table(vals, width, index)


def _rom_signals(signals: list, index: Signal):
    """``signals[index]``, padded like :func:`_rom`."""
    return Array(list(signals) + [signals[-1]] * ((1 << len(index)) - len(signals)))[index]


class EncodeUnit(wiring.Component):
    """Quantize one block of ``fmt.k`` values, ``lanes`` per input beat (architecture.md "Hardware units").

    Parameters: ``fmt`` (rule ``ocp`` or ``ceil``; ``search`` is not supported in hardware),
    ``lanes`` (divides ``fmt.k``, default ``fmt.k``), ``input`` (``"fp32"`` or ``"bf16"``),
    ``pipeline`` (register positions, see ``pipeline_positions`` and docs/timing.md "Encoder": a
    count, the first ``n`` of ``out, slice, rounded, beat, align, diff, total``; or names such
    as ``"beat,align,out"``, a list of names, ``"none"``, ``"all"``; default
    :data:`ENCODE_DEFAULT_CUTS` restricted to the format's positions). Every register is a
    valid/ready stage that never drops or duplicates a beat.

    Members: ``i`` = ``In(stream.Signature({values[lanes]}))``, ``k / lanes`` beats per block in
    element order; ``o`` = ``Out(stream.Signature({header, codes[k]}))``, one beat per block.
    ``latency = k / lanes + len(cuts)`` counts from the transfer of a block's last beat to its output
    (the work register, ``k / lanes`` slices, the registers); the input takes a beat every cycle.
    """

    unit_kind = "encode"
    initiation_interval = 1

    def __init__(self, fmt: BlockFormat, lanes: int | None = None, input: str = "fp32",  # noqa: A002
                 pipeline: PipelineSpec = None, select: str | None = None) -> None:
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
        self.fmt = fmt
        self.lanes = lanes
        if select is not None:
            check_select(select, fmt, argument="select")
        self.select = select or DEFAULT_SELECT
        self._policy = SELECT_POLICIES[self.select]
        self._frac_bits = self._policy.frac_bits_for(fmt)
        self._plan()
        many = len(self._pairs) > 1
        if not many:  # nothing to select: the single-pair encoders keep the configuration they always had
            self._policy = SELECT_POLICIES["exact"]
            self._frac_bits = self._policy.frac_bits_for(fmt)
            self._plan()
        self.pipeline_positions = ENCODE_POSITIONS if many else ENCODE_POSITIONS_ONE_PAIR
        preference = tuple(p for p in ENCODE_PREFERENCE if p in self.pipeline_positions)
        default = tuple(p for p in ENCODE_DEFAULT_CUTS if p in self.pipeline_positions)
        self.cuts = resolve_cuts(pipeline, self.pipeline_positions, preference, default)
        self.formats = {"a": fmt}
        self.input = input
        self.pipeline = self.cuts
        self.latency = fmt.k // lanes + len(self.cuts)
        self.metric_frac_bits = self._frac_bits
        self.config = {
            "unit": "encode", "format": fmt.to_string(), "lanes": lanes, "input": input,
            "pipeline": list(self.cuts), "metric": self._policy.metric, "metric_frac_bits": self._frac_bits,
        }
        tag = ""
        if self.select != DEFAULT_SELECT:  # a policy other than the default is named in the module and config
            self.config.update(select=self.select)
            tag = f"_s{self.select.replace('-', '')}"
        self.module_name = (f"nxfp_encode_{fmt.ident}_l{lanes}_{input}_"
                            f"{cuts_tag(self.cuts, self.pipeline_positions)}{tag}")
        self._layouts()
        super().__init__({
            "i": In(stream.Signature(self._in_layout)),
            "o": Out(stream.Signature(self._out_layout)),
        })

    def _layouts(self) -> None:
        fmt, lanes = self.fmt, self.lanes
        F = self._frac_bits
        npairs, ngroups = len(self._entries), len(self._scale_groups)
        many = len(self._pairs) > 1
        in_width = ENCODE_INPUTS[self.input]
        self._in_layout = data.StructLayout({"values": data.ArrayLayout(in_width, lanes)})
        self._out_layout = data.StructLayout({
            "header": fmt.header_bits,
            "codes": data.ArrayLayout(fmt.element_width, fmt.k),
        })
        scales = data.ArrayLayout(fmt.scale.width, ngroups)
        # A beat after the scale of its own largest magnitude (spec 5.1, 5.2).
        self._beat_layout = data.StructLayout({
            "values": data.ArrayLayout(in_width, lanes), "scales": scales, "ef": 8, "special": 1})
        # The work register also keeps the block's alignment constants (spec 5.3, 5.4), computed once
        # per block: per rounding group the shift of an element's exponent into the scale's units, the
        # shift into the metric's units and per pair the shift of its levels to them.
        work = {"values": data.ArrayLayout(in_width, fmt.k), "special": 1, "scales": scales,
                "kshift": data.ArrayLayout(signed(12), len(self._round_groups)), "kx": signed(12)}
        if self._shared:  # each group's shift from the shared aligned value (_plan_shared_shift)
            work["sshift"] = data.ArrayLayout(self._shared["s_width"], len(self._round_groups))
        self._work_layout = data.StructLayout(dict(work, palign=data.ArrayLayout(signed(12), npairs)))
        common = {"scales": scales, "special": 1, "last": 1}
        codes = data.ArrayLayout(data.ArrayLayout(self._code_width, lanes), npairs)
        # After the alignment shifts: per rounding group and lane y, sticky, overflow (spec 5.3).
        # (policy scaled: y keeps the metric's extra fraction bits, so y is also xf, derived after the register)
        align = dict(common, sign=data.ArrayLayout(1, lanes))
        if self._shared:  # one aligned value per lane, each group's shift from it (_plan_shared_shift)
            align.update(z=data.ArrayLayout(self._shared["z_width"], lanes), zsticky=data.ArrayLayout(1, lanes),
                         zovf=data.ArrayLayout(1, lanes),
                         sshift=data.ArrayLayout(self._shared["s_width"], len(self._round_groups)))
        for gi, ((c, _), (_, width, _)) in enumerate(() if self._shared else self._round_groups.items()):
            align[f"y{gi}"] = data.ArrayLayout(width + self._extra_bits(c), lanes)
            align[f"sticky{gi}"] = data.ArrayLayout(1, lanes)
            align[f"ovf{gi}"] = data.ArrayLayout(1, lanes)
        if many and not self._scaled:  # |x| in metric units and each pair's shift of its levels to them (spec 5.4)
            align["xf"] = data.ArrayLayout(F + 1, lanes)
            align["align"] = data.ArrayLayout(signed(12), npairs)
        self._align_layout = data.StructLayout(align)
        rounded = dict(common, codes=codes)
        if many and self._scaled and self._shared:  # the shared aligned value: each group's xf after the register
            rounded.update({k: align[k] for k in ("z", "zsticky", "zovf", "sshift")})
        if many and self._scaled:  # |x| in each rounding group's metric units; the levels follow from the codes
            if not self._shared:
                rounded["xf"] = data.ArrayLayout(data.ArrayLayout(self._xf_width, lanes), len(self._round_groups))
            if not self._delta:
                rounded["levels"] = data.ArrayLayout(data.ArrayLayout(self._level_width, lanes), npairs)
        elif many:
            rounded["levels"] = data.ArrayLayout(data.ArrayLayout(self._level_width, lanes), npairs)
            rounded["xf"] = align["xf"]
            rounded["align"] = data.ArrayLayout(signed(12), npairs)
        self._rounded_layout = data.StructLayout(rounded)
        if many:
            ew = self._error_width  # the block accumulator's width: sum + carry wraps modulo 2^ew only
            dw = self._d_width
            diff = dict(common, codes=codes, dabs=data.ArrayLayout(data.ArrayLayout(dw, lanes), npairs))
            # The error of a slice in carry-save form: the accumulator adds both words.
            slice_ = dict(common, codes=codes, sum=data.ArrayLayout(ew, npairs), carry=data.ArrayLayout(ew, npairs))
            if self._delta:  # per sign the slice's correction sum of the hits (_corrections)
                slice_["hits_t"] = data.ArrayLayout(self._hit_sum_width, len(self._pairs))
                slice_["hits_n"] = data.ArrayLayout(self.lanes.bit_length(), len(self._pairs))
            self._diff_layout = data.StructLayout(diff)
            self._slice_layout = data.StructLayout(slice_)
            nkeys = len(self._pairs) if self._delta else npairs
            kw = self._key_width if self._scaled else ew  # scaled: the comparison keys (_back)
            total = {"codes": codes, "scales": scales, "special": 1, "errs": data.ArrayLayout(kw, nkeys)}
            if self._hits and not self._delta:  # per candidate the hit counts of both signs
                total["hits"] = data.ArrayLayout(data.ArrayLayout(fmt.k.bit_length(), 2), npairs)
            self._total_layout = data.StructLayout(total)

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
        self._scaled = self._policy.units == "scale" and len(self._pairs) > 1
        for (c, maxe), rs in rgroups.items():
            frac = max(magnitude_table(fmt, c, r).frac for r in rs)
            if self._scaled:  # the candidate's geometry, shared with the golden model (golden/select.py)
                frac = scaled_geometry(fmt, c, self._frac_bits).frac
            tabs = {r: magnitude_table(fmt, c, r, frac) for r in rs}
            width = max(
                ((1 << fmt.scale.mbits) + mv) * mid
                for t in tabs.values() for mid in t.mids for mv in range(1 << fmt.scale.mbits)
            ).bit_length()
            if self._scaled:
                geo = scaled_geometry(fmt, c, self._frac_bits)
                if width > geo.width:
                    raise ValueError(f"format {fmt.label}: select 'scaled' is not supported in hardware for "
                                     f"candidate {fmt.elements[c].name} (rounding width {width} > {geo.width})")
                width = geo.width
            self._round_groups[(c, maxe)] = (frac, width, tabs)
        self._level_width = max(max(t.levels) for _, _, tabs in self._round_groups.values()
                                for t in tabs.values()).bit_length()
        self._plan_entries()
        self._shared = self._plan_shared_shift()

    def _plan_shared_shift(self) -> dict | None:
        """One alignment shifter per lane for every rounding group, where the groups' shifts differ by a few
        bits only: group ``g`` aligns by ``kshift[g] = C_g - field_g`` (``C_g`` its constant, ``field_g`` its
        scale group's exponent field), so ``kshift[g] - kshift[0]`` takes the few values that the fields'
        difference takes over every block (:func:`~nxfp_hw.golden.select.scale_fields`, exact). The shifter
        aligns to the finest group (``top`` bits beyond group 0); group ``g`` takes that value right-shifted
        by ``s_g`` in ``[smin_g, smax_g]`` (a block constant), its sticky and overflow from the bits below and
        above. Returns ``None`` (a shifter per group) for one group or a span beyond 3."""
        groups = list(self._round_groups.items())
        if len(groups) < 2:
            return None
        rep = {mx: (c, j) for c, j, mx, _ in reversed(self._pairs)}  # each scale group's first pair (_beat_scales)
        fields = scale_fields(self.fmt, [rep[maxe] for (_, maxe), _ in groups])
        const = np.array([frac + self._extra_bits(c) for (c, _), (frac, _, _) in groups])
        d = (const - const[0])[:, None] - (fields - fields[0])  # kshift[g] - kshift[0] over every block
        top = int(d.max())
        smin, smax = top - d.max(axis=1), top - d.min(axis=1)
        if int(np.max(smax - smin)) > 3:
            return None
        widths = [width + self._extra_bits(c) for (c, _), (_, width, _) in groups]
        return {"top": top, "smin": [int(v) for v in smin], "smax": [int(v) for v in smax], "widths": widths,
                "z_width": max(w + int(v) for w, v in zip(widths, smax, strict=True)),
                "s_width": max(1, int(np.max(smax - smin)).bit_length())}

    def _plan_entries(self) -> None:
        """The error paths of the selection policy (golden/select.py): ``(candidate, option, max_elem,
        table for positive elements, table for negative ones)`` (tables by ``|R|``, ``None`` without R).
        Policies that measure every pair have one per pair; ``hits`` one per candidate (the symmetric
        rounding: ``|R|`` on both signs), whose codes carry the code without ``R`` and a hit bit."""
        fmt, pol = self.fmt, self._policy
        # scaled with a delta plan: one symmetric error path per candidate, the options' errors corrected
        self._delta_plan = scaled_delta_plan(fmt, self._frac_bits) if self._scaled else None
        self._delta = self._delta_plan is not None
        self._hits = (pol.recycling == "hits" and len(self._pairs) > 1) or self._delta  # symmetric entries
        self._error_width = hw_error_width(fmt.k, self._frac_bits, pol.error)
        self._d_width = self._frac_bits + 2  # |D| <= 2^(F+1)
        if self._scaled:  # |D| saturates at 2^Wd - 1; pairs compare on error << 2 (unit - least unit)
            geos = [scaled_geometry(fmt, c, self._frac_bits) for c in range(len(fmt.elements))]
            self._d_width = max(g.d_width for g in geos)
            self._xf_width = max(g.x_width for g in geos)
            self._error_width = 2 * self._d_width + (fmt.k - 1).bit_length()
            self._unit_span = scaled_unit_span(fmt, self._frac_bits)
            self._key_width = self._error_width + 2 * self._unit_span
            if self._delta:
                self._plan_delta()
        self._code_width = fmt.element_width + self._hits
        if not self._hits:
            self._entries = [(c, j, maxe, abs(r) if r is not None and r > 0 else None,
                              abs(r) if r is not None and r < 0 else None) for c, j, maxe, r in self._pairs]
            return
        self._entries, self._option_pos = [], []
        for c in range(len(fmt.elements)):
            rs = [float(r) for r in fmt.recycling[c]]
            maxes = {fmt.max_element(c, j) for j in range(len(rs))}
            if len(rs) != 2 or rs[0] != -rs[1] or len(maxes) != 1:
                raise ValueError(f"format {fmt.label}: select 'hits' is supported in hardware for recycling "
                                 "options +-r (two options, one |R|) only")
            self._entries.append((c, None, maxes.pop(), abs(rs[0]), abs(rs[0])))
            self._option_pos.append(0 if rs[0] > 0 else 1)

    def _plan_delta(self) -> None:
        """Policy ``scaled`` with one error path per candidate (``golden.select.scaled_delta_plan``): per
        candidate ``delta[P]``, the distance in metric units between ``|R|`` and the levels without ``R`` next
        to it at ``2^b + M = P``."""
        fmt = self.fmt
        dmax = (1 << self._d_width) - 1
        self._delta_const = [scaled_delta_constants(fmt, c, self._frac_bits) for c in range(len(fmt.elements))]
        self._by_count = [scaled_hits_by_count(fmt, c) for c in range(len(fmt.elements))]
        # a pair's block error: each element adds dc^2 <= dmax^2, or (delta - dc)^2 for a hit the pair cannot code
        worst = max([dmax, *(d for ds in self._delta_const for d in ds)])
        self._pair_width = (fmt.k * worst * worst).bit_length()
        self._hit_sum_width = (self.lanes * dmax).bit_length()  # a slice's sum of |D| over the hits of a sign
        self._error_width = self._pair_width  # the carry-save words wrap modulo 2^width: the pairs' width
        self._key_width = self._pair_width + 2 * self._unit_span

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
    def _stage(self, m: Module, name: str, layout, valid: Value, payload: Value):
        """The register at position ``name`` (when enabled) on a stream whose downstream side is built
        later: returns ``(valid, payload, ready_in, ready_out)`` where ``ready_in`` is the ready the
        upstream sees and ``ready_out`` a Signal the caller drives from the downstream ready."""
        ready_out = Signal(name=f"{name}_ready")
        if name not in self.cuts:
            return valid, payload, ready_out, ready_out
        sink, source = add_pipeline(m, layout, 1, name=name)
        m.d.comb += [sink.valid.eq(valid), sink.payload.eq(payload), source.ready.eq(ready_out)]
        return source.valid, source.payload, sink.ready, ready_out

    def _fp32(self, v):
        return v if self.input == "fp32" else Cat(C(0, 16), v)

    def _beat_scales(self, m: Module, amax: Value) -> list[Value]:
        """One scale code per scale group from the magnitude bits ``amax`` of a beat's largest value
        (spec 5.2). Both rules give a code that never decreases with ``amax``, so a block's code is the
        largest of its beats' codes. ``ceil``: the thresholds ``amax`` exceeds, counted by a binary search
        over the sorted exact comparisons, clamped to the largest code."""
        fmt = self.fmt
        sf = fmt.scale
        out = []
        for g, maxe in enumerate(self._scale_groups):
            code = Signal(sf.width, name=f"beat_scale{g}")
            if fmt.rule == "ocp":
                emax = fmt.emax_element(*next((c, j) for c, j, mx, _ in self._pairs if mx == maxe))
                field = ocp_field(m, fmt, amax[23:31], emax, name=f"ocp_field{g}")
                m.d.comb += code.eq(field << sf.mbits)
            else:
                thr = ceil_thresholds(fmt, maxe)
                count = Signal(range(len(thr) + 1), name=f"ceil_count{g}")
                m.d.comb += count.eq(thermometer_count([amax > Const(t, 31) for t in thr]))
                m.d.comb += code.eq(Mux(count > sf.max_code, sf.max_code, count))
            out.append(code)
        return out

    def _beat(self, m: Module):
        """Per input beat its largest magnitude (one comparison level, :func:`max_select`), its scale
        codes, exponent field and NaN/Inf flag; register ``beat``. Returns ``(valid, payload, ready)``
        with ``ready`` to be driven by the gather."""
        lanes = self.lanes
        vals = [self.i.payload.values[n] for n in range(lanes)]
        bits = [self._fp32(v) for v in vals]
        amax = Signal(31, name="beat_amax")
        m.d.comb += amax.eq(max_select([b[:31] for b in bits]))
        p = Signal(self._beat_layout, name="beat_in")
        m.d.comb += [p.values.eq(self.i.payload.values), p.ef.eq(amax[23:31]),
                     p.special.eq(Cat(*(unpack_fp32(b)[3] for b in bits)).any())]
        for g, code in enumerate(self._beat_scales(m, amax)):
            m.d.comb += p.scales[g].eq(code)
        valid, payload, ready_in, ready = self._stage(m, "beat", self._beat_layout, self.i.valid, p)
        m.d.comb += self.i.ready.eq(ready_in)
        return valid, payload, ready

    def _gather(self, m: Module, valid: Value, beat, ready: Signal):
        """Collect ``k / lanes`` beats, keeping the running largest scale codes, exponent field and
        NaN/Inf flag (spec 5.1, 5.2). Returns ``(values, ef, special, scales, valid, ready)`` of the
        whole block, valid together with its last beat (the earlier beats come from a buffer)."""
        fmt, lanes = self.fmt, self.lanes
        k = fmt.k
        beats = k // lanes
        ngroups = len(self._scale_groups)
        beat_vals = [beat.values[n] for n in range(lanes)]
        beat_scales = [beat.scales[g] for g in range(ngroups)]
        block_ready = Signal(name="block_ready")
        if beats == 1:
            m.d.comb += ready.eq(block_ready)
            return beat_vals, beat.ef, beat.special, beat_scales, valid, block_ready
        width = ENCODE_INPUTS[self.input]
        buf = Signal(data.ArrayLayout(width, k - lanes), name="gather_buf")
        count = Signal(range(beats), name="gather_count")
        run_ef = Signal(8, name="gather_ef")  # over the beats before this one
        run_special = Signal(name="gather_special")
        run_scales = [Signal(fmt.scale.width, name=f"gather_scale{g}") for g in range(ngroups)]
        last = count == beats - 1
        first = count == 0
        ef, special = Signal(8, name="block_ef"), Signal(name="block_special")
        scales = [Signal(fmt.scale.width, name=f"block_scale{g}") for g in range(ngroups)]

        def biggest(new, old):
            return Mux(first | (new >= old), new, old)

        m.d.comb += [ef.eq(biggest(beat.ef, run_ef)), special.eq(beat.special | (run_special & ~first)),
                     ready.eq(~last | block_ready)]
        m.d.comb += [s.eq(biggest(b, r)) for s, b, r in zip(scales, beat_scales, run_scales, strict=True)]
        with m.If(valid & ready):
            m.d.sync += count.eq(Mux(last, 0, count + 1))
            with m.If(~last):
                m.d.sync += [run_ef.eq(ef), run_special.eq(special)]
                m.d.sync += [r.eq(s) for r, s in zip(run_scales, scales, strict=True)]
                for b in range(beats - 1):
                    with m.If(count == b):
                        for n in range(lanes):
                            m.d.sync += buf[b * lanes + n].eq(beat_vals[n])
        vals = [buf[n] for n in range(k - lanes)] + beat_vals
        return vals, ef, special, scales, valid & last, block_ready

    def _work(self, m: Module, vals, ef, special, scales, block_valid, block_ready):
        """The work register (one block, the double buffer behind the gather buffer): one slice of
        ``lanes`` values per cycle. Returns ``(valid, slice, ready)``; ``slice`` has ``values``, ``ef``,
        ``special``, ``scales``, ``last``."""
        fmt, lanes = self.fmt, self.lanes
        beats = fmt.k // lanes
        work = Signal(self._work_layout, name="work")
        busy = Signal(name="work_busy")
        index = Signal(range(beats), name="work_slice")
        last = index == beats - 1
        ready = Signal(name="work_ready")
        m.d.comb += block_ready.eq(~busy | (last & ready))
        with m.If(busy & ready):
            m.d.sync += index.eq(Mux(last, 0, index + 1))
            with m.If(last):
                m.d.sync += busy.eq(0)
            with m.Else():  # the next slice moves to the bottom lanes
                for n in range(fmt.k - lanes):
                    m.d.sync += work.values[n].eq(work.values[n + lanes])
        with m.If(block_valid & block_ready):
            m.d.sync += [busy.eq(1), index.eq(0), work.special.eq(special)]
            for n, v in enumerate(vals):
                m.d.sync += work.values[n].eq(v)
            for g, s in enumerate(scales):
                m.d.sync += work.scales[g].eq(s)
            m.d.sync += self._block_constants(m, ef, scales, work)
        piece = {"values": [work.values[n] for n in range(lanes)], "special": work.special, "scales": work.scales,
                 "last": last, "kshift": work.kshift, "kx": work.kx, "palign": work.palign}
        if self._shared:
            piece["sshift"] = work.sshift
        return busy, piece, ready

    def _block_constants(self, m: Module, ef: Value, scales: list[Value], work) -> list:
        """The alignment constants of a block, from its ``ef(amax)`` and scale codes (loaded with it into
        the work register): an element of exponent ``e = max(ef, 1)`` is aligned by ``e + kshift[group]``
        into the scale's units (:meth:`_align`, ``shift_floor`` with ``lo = -24``) and by ``e + kx`` into the
        metric's units; pair ``pi``'s levels by ``palign[pi]`` (``shift_floor`` with ``lo = -prod``)."""
        sf = self.fmt.scale
        b = sf.mbits
        F = self._frac_bits
        field = [s[b:] for s in scales]
        ef_top = Signal(signed(10), name="ef_top")  # max(ef_amax, 1): alignment exponent + 127
        m.d.comb += ef_top.eq(Mux(ef == 0, 1, ef))
        out = [work.kx.eq((F - 23 + 24) - ef_top)]
        shared = self._shared
        kshift = []
        for (c, maxe), (frac, _, _) in self._round_groups.items():
            g = self._scale_groups.index(maxe)
            kshift.append((sf.bias + b + frac + self._extra_bits(c) - 150 + 24, field[g]))
        if shared:  # the shifter aligns to the finest group; group gi takes s = top - (kshift[gi] - kshift[0])
            (c0, f0), top = kshift[0], shared["top"]
            out.append(work.kshift[0].eq((c0 + top) - f0))
            for gi, (cg, fg) in enumerate(kshift):
                out.append(work.sshift[gi].eq((top - cg + c0 - shared["smin"][gi]) + fg - f0))
        else:
            out += [work.kshift[gi].eq(cg - fg) for gi, (cg, fg) in enumerate(kshift)]
        if self._scaled:
            return out
        prod = self._level_width + b + 1
        for pi, (c, _j, maxe, _rp, _rn) in enumerate(self._entries):
            g = self._scale_groups.index(maxe)
            frac = self._round_groups[(c, maxe)][0]
            out.append(work.palign[pi].eq(field[g] - ef_top + (127 - sf.bias - b - frac + F + prod)))
        return out

    def _align(self, m: Module, s: dict, p) -> None:
        """Alignment of one slice (spec 5.3): per element and rounding group ``y = |x| / 2^(field -
        bias_s - b)`` on the midpoints' fraction bits by one barrel shift, with sticky and overflow
        bits; with several pairs also ``xf = floor(|x| * 2^(F - A))`` and each pair's shift from its
        levels to the metric's units (spec 5.4); the per-block constants come with the slice
        (:meth:`_block_constants`)."""
        F = self._frac_bits
        many = len(self._pairs) > 1
        m.d.comb += [p.scales.eq(s["scales"]), p.special.eq(s["special"]), p.last.eq(s["last"])]
        elems = []
        for n, v in enumerate(s["values"]):
            sign, ef, sig, _ = unpack_fp32(self._fp32(v))
            e = Signal(8, name=f"e{n}")  # max(ef, 1)
            m.d.comb += [e.eq(Cat(ef[0] | ~ef.any(), ef[1:])), p.sign[n].eq(sign)]
            elems.append((e, sig))
            if many and not self._scaled:
                r, _, _ = shift_floor(m, sig, e + s["kx"], lo=-24, hi=F - 23, width=F + 1, name=f"xf{n}",
                                      biased=True)
                m.d.comb += p.xf[n].eq(r)
        if self._shared:  # one shifter per lane (_plan_shared_shift); the groups' shifts come after the register
            zw = self._shared["z_width"]
            m.d.comb += p.sshift.eq(s["sshift"])
            for n, (e, sig) in enumerate(elems):
                z, sticky, ovf = shift_floor(m, sig, e + s["kshift"][0], lo=-24, hi=zw, width=zw, name=f"z{n}",
                                             biased=True)
                m.d.comb += [p.z[n].eq(z), p.zsticky[n].eq(sticky), p.zovf[n].eq(ovf)]
        for gi, ((c, maxe), (_, width, _)) in enumerate(() if self._shared else self._round_groups.items()):
            g = self._scale_groups.index(maxe)
            extra = self._extra_bits(c)  # policy scaled: more fraction bits for its metric
            for n, (e, sig) in enumerate(elems):
                y, sticky, ovf = shift_floor(m, sig, e + s["kshift"][gi], lo=-24, hi=width + extra,
                                             width=width + extra, name=f"y{c}_{g}_{n}", biased=True)
                m.d.comb += [p[f"y{gi}"][n].eq(y), p[f"sticky{gi}"][n].eq(sticky), p[f"ovf{gi}"][n].eq(ovf)]
        if many and not self._scaled:
            m.d.comb += p.align.eq(s["palign"])

    def _group_aligned(self, m: Module, a, gi: int, n: int, name: str) -> tuple[Value, Value, Value]:
        """``(y, sticky, overflow)`` of rounding group ``gi`` and lane ``n`` from the align register: its own
        shifter's, or (:meth:`_plan_shared_shift`) the lane's shared value ``z`` right-shifted by the block's
        ``s_g``, the bits shifted out joining the sticky and those above the group's width the overflow
        (Signals named ``name``: an ``Array`` proxy used in comparisons would be copied into every one)."""
        if not self._shared:
            return a[f"y{gi}"][n], a[f"sticky{gi}"][n], a[f"ovf{gi}"][n]
        z, width = a.z[n], self._shared["widths"][gi]
        lo, hi = self._shared["smin"][gi], self._shared["smax"][gi]
        outs = [(z[s:s + width], z[:s].any() if s else C(0, 1), z[s + width:].any() if s + width < len(z) else C(0, 1))
                for s in range(lo, hi + 1)]
        bits = max(1, (hi - lo).bit_length())
        pick = a.sshift[gi][:bits]
        if len(outs) > 1:  # a full case (the block constant never exceeds hi - lo)
            outs += [outs[-1]] * ((1 << bits) - len(outs))
        y, sticky, ovf = Signal(width, name=f"{name}_y"), Signal(name=f"{name}_sticky"), Signal(name=f"{name}_ovf")
        for i, sig in enumerate((y, sticky, ovf)):
            m.d.comb += sig.eq(Array([o[i] for o in outs])[pick] if len(outs) > 1 else outs[0][i])
        return y, a.zsticky[n] | sticky, a.zovf[n] | ovf

    def _xf(self, c: int, y: Value, ovf: Value) -> Value:
        """Policy ``scaled``: ``xf = min(floor(|x| / u), 2^Wx - 1)`` (golden/select.py) of candidate ``c`` from
        its group's aligned value ``y`` (the rounding's bits and ``shift`` more) and overflow."""
        geo = scaled_geometry(self.fmt, c, self._frac_bits)
        return Mux(ovf, (1 << geo.x_width) - 1, y if geo.shift >= 0 else y[-geo.shift:])

    def _extra_bits(self, c: int) -> int:
        """Fraction bits the alignment of candidate ``c`` keeps beyond its rounding's: policy ``scaled``
        measures ``|x|`` on ``shift`` more bits (:func:`~nxfp_hw.golden.select.scaled_geometry`)."""
        return max(scaled_geometry(self.fmt, c, self._frac_bits).shift, 0) if self._scaled else 0

    def _round(self, m: Module, a, p) -> None:
        """Rounding of one aligned slice (spec 5.3): per magnitude table and NanoMantissa value a
        thermometer of exact comparisons against the midpoints, counted by binary search; the codes of
        every pair from constant tables (sign rules of :meth:`_neg_codes`) and, with several pairs, the
        chosen levels for the error."""
        fmt = self.fmt
        sf = fmt.scale
        b = sf.mbits
        many = len(self._pairs) > 1
        man = [a.scales[g][:b] for g in range(len(self._scale_groups))]
        m.d.comb += [p.scales.eq(a.scales), p.special.eq(a.special), p.last.eq(a.last)]
        if many and self._scaled and self._shared:
            m.d.comb += [p.z.eq(a.z), p.zsticky.eq(a.zsticky), p.zovf.eq(a.zovf), p.sshift.eq(a.sshift)]
        if many and not self._scaled:
            m.d.comb += [p.xf.eq(a.xf), p.align.eq(a.align)]
        idx = {}
        for gi, ((c, maxe), (_, _, tabs)) in enumerate(self._round_groups.items()):
            g = self._scale_groups.index(maxe)
            extra = self._extra_bits(c)
            for n in range(self.lanes):
                y, sticky, ovf = self._group_aligned(m, a, gi, n, name=f"g{gi}_{n}")
                if many and self._scaled and not self._shared:
                    m.d.comb += p.xf[gi][n].eq(self._xf(c, y, ovf))
                if extra:  # the rounding's own bits; the metric's extra ones count as sticky
                    y, sticky = y[extra:], sticky | y[:extra].any()
                for ti, (r, tab) in enumerate(tabs.items()):
                    tag = "n" if r is None else f"r{ti}"
                    idx[(c, maxe, r, n)] = round_index(m, y, sticky, ovf, man[g], b, tab, name=f"idx{c}_{g}_{tag}_{n}")
        lw = self._level_width
        for pi, (c, _j, maxe, r_pos, r_neg) in enumerate(self._entries):
            _, _, tabs = self._round_groups[(c, maxe)]
            t_pos, t_neg = tabs[r_pos], tabs[r_neg]
            for n in range(self.lanes):
                sign = a.sign[n]
                i_pos, i_neg = idx[(c, maxe, r_pos, n)], idx[(c, maxe, r_neg, n)]
                if self._hits:  # the code without R, and whether the element rounds to |R|
                    t_none, i_none = tabs[None], idx[(c, maxe, None, n)]
                    pos_code = _rom(t_none.codes, fmt.element_width, i_none)
                    neg_code = _rom(self._neg_codes(c, t_none.codes, -1), fmt.element_width, i_none)
                    m.d.comb += p.codes[pi][n].eq(Cat(Mux(sign, neg_code, pos_code), i_pos == t_pos.r_index))
                else:
                    pos_code = _rom(t_pos.codes, fmt.element_width, i_pos)
                    neg_code = _rom(self._neg_codes(c, t_neg.codes, t_neg.r_index), fmt.element_width, i_neg)
                    m.d.comb += p.codes[pi][n].eq(Mux(sign, neg_code, pos_code))
                if many and not self._delta:  # (with a delta plan the levels follow from the codes: _level)
                    m.d.comb += p.levels[pi][n].eq(
                        Mux(sign, _rom(t_neg.levels, lw, i_neg), _rom(t_pos.levels, lw, i_pos)))

    def _diff(self, m: Module, r, p) -> None:
        """Each pair's rounded magnitudes in the metric's units, ``yf = floor(level * (2^b + M) * 2^align)``,
        and ``|D| = |xf - yf|`` (spec 5.4, docs/encoder.md)."""
        b = self.fmt.scale.mbits
        F = self._frac_bits
        m.d.comb += [p.scales.eq(r.scales), p.special.eq(r.special), p.last.eq(r.last), p.codes.eq(r.codes)]
        if self._scaled:
            self._diff_scaled(m, r, p)
            return
        for pi, (_c, _j, maxe, _rp, _rn) in enumerate(self._entries):
            man = r.scales[self._scale_groups.index(maxe)][:b]
            for n in range(self.lanes):
                lv = r.levels[pi][n]
                prod = Signal(len(lv) + b + 1, name=f"xq{pi}_{n}")
                m.d.comb += prod.eq(lv * Cat(man, C(1, 1)) if b else lv)
                yf, _, _ = shift_floor(m, prod, r.align[pi], lo=-len(prod), hi=F + 2, width=F + 2,
                                       name=f"yf{pi}_{n}", biased=True)
                d_abs = Signal(F + 2, name=f"dabs{pi}_{n}")  # |xf - yf| <= 2^(F+1), both differences in parallel
                m.d.comb += [d_abs.eq(Mux(r.xf[n] >= yf, r.xf[n] - yf, yf - r.xf[n])), p.dabs[pi][n].eq(d_abs)]

    def _diff_scaled(self, m: Module, r, p) -> None:
        """Policy ``scaled``: per pair ``yf = level * (2^b + M)`` shifted by the candidate's constant
        ``shift``, ``|D| = min(|xf - yf|, 2^Wd - 1)`` with ``xf`` of the pair's rounding group."""
        fmt = self.fmt
        b = fmt.scale.mbits
        groups = list(self._round_groups)
        for pi, (c, _j, maxe, _rp, _rn) in enumerate(self._entries):
            geo = scaled_geometry(fmt, c, self._frac_bits)
            man = r.scales[self._scale_groups.index(maxe)][:b]
            gi = groups.index((c, maxe))
            top = (1 << geo.d_width) - 1
            for n in range(self.lanes):
                lv = self._level(c, maxe, r.codes[pi][n]) if self._delta else r.levels[pi][n]
                prod = Signal(len(lv) + b + 1, name=f"xq{pi}_{n}")
                m.d.comb += prod.eq(lv * Cat(man, C(1, 1)) if b else lv)
                yf = prod << geo.shift if geo.shift >= 0 else prod[-geo.shift:]
                if self._shared:
                    y_g, _, ovf = self._group_aligned(m, r, gi, n, name=f"xg{pi}_{n}")
                    xf = self._xf(c, y_g, ovf)
                else:
                    xf = r.xf[gi][n][: geo.x_width]
                w = max(len(yf), len(xf)) + 1
                d = Signal(w, name=f"d{pi}_{n}")
                m.d.comb += d.eq(Mux(xf >= yf, xf - yf, yf - xf))
                m.d.comb += p.dabs[pi][n].eq(Mux(d > top, top, d))

    def _level(self, c: int, maxe: float, word: Value) -> Value:
        """The level of the symmetric rounding (``|R|`` on both signs) from its code word (the code without
        ``R`` and the hit bit): ``|R|`` for a hit, else the level of the magnitude code. (The table with
        ``|R|`` refines the one without: an element that does not round to ``|R|`` rounds to the same level
        in both.)"""
        w = self.fmt.element_width
        tabs = self._round_groups[(c, maxe)][2]
        t_none, t_r = tabs[None], tabs[next(r for r in tabs if r is not None)]
        by_mag = [0] * (1 << (w - 1))
        for code, level in zip(t_none.codes, t_none.levels, strict=True):
            by_mag[code & ((1 << (w - 1)) - 1)] = level
        return Mux(word[w], t_r.levels[t_r.r_index], _rom(by_mag, self._level_width, word[: w - 1]))

    def _square(self, m: Module, y, p) -> None:
        """``D^2`` as the folded squarer's rows, the rows of all lanes of a pair reduced by carry-save
        adders to two words (spec 5.4) of the block accumulator's width: their sum is the slice's error
        modulo ``2^width``, exact once added to the accumulator (a block's error fits the width)."""
        ew = self._error_width
        m.d.comb += [p.scales.eq(y.scales), p.special.eq(y.special), p.last.eq(y.last), p.codes.eq(y.codes)]
        for pi in range(len(self._entries)):
            rows = []
            for n in range(self.lanes):
                rows += square_rows(y.dabs[pi][n]) if self._policy.error == "square" else [y.dabs[pi][n]]
            total_s, total_c = csa_sum(m, rows, ew, name=f"sq{pi}")
            m.d.comb += [p.sum[pi].eq(total_s), p.carry[pi].eq(total_c)]
        if self._delta:
            self._corrections(m, y, p)

    def _corrections(self, m: Module, y, p) -> None:
        """Policy ``scaled``, one path per candidate: per pair the slice's hits of the sign whose ``R`` the
        pair lacks, as their count ``n`` and their sum ``S`` of ``|D|``. The pair's accumulator adds
        ``n delta^2 - 2 delta S`` (:meth:`_correction_rows`; golden ``scaled_pair_keys``): each such hit then
        counts ``(delta - |D|)^2``, its distance to its level without ``R``; a candidate whose hits are counted
        (``scaled_hits_by_count``) adds ``n floor(delta^2 / 2)``, its ``S`` stays 0."""
        w = self.fmt.element_width
        sw = self._hit_sum_width
        for i, (c, j, _maxe, _r) in enumerate(self._pairs):
            lacks_neg = j == self._option_pos[c]  # the option with +R lacks -R: its negative hits
            words = [y.codes[c][n] for n in range(self.lanes)]
            mask = [wd[w] & (wd[w - 1] if lacks_neg else ~wd[w - 1]) for wd in words]
            m.d.comb += p.hits_n[i].eq(sum(mask))
            if not self._by_count[c]:
                rows = [Mux(mk, y.dabs[c][n], 0) for n, mk in enumerate(mask)]
                cs, cc = csa_sum(m, rows, sw, name=f"hits_t{i}")
                m.d.comb += p.hits_t[i].eq(cs + cc)

    def _correction_rows(self, m: Module, pair: int, n: Value, total: Value, scales) -> list[Value]:
        """Rows whose sum modulo ``2^pair_width`` is ``n delta^2 - 2 delta S`` for pair ``pair`` (``S`` =
        ``total``), ``delta`` by the block's NanoMantissa: per bit of the constants a shifted copy of ``n`` or
        of ``~S`` (``-S = ~S + 1``: the ones join a constant row), kept when that bit is set in the block's
        constant."""
        fmt = self.fmt
        b = fmt.scale.mbits
        pw = self._pair_width
        c, _j, maxe, _r = self._pairs[pair]
        man = scales[self._scale_groups.index(maxe)][:b]
        deltas = self._delta_const[c]
        if self._by_count[c]:  # floor(delta^2 / 2) per hit
            terms = [(n, [d * d // 2 for d in deltas])]
        else:
            s_inv = Signal(pw, name=f"hits_s{pair}")
            m.d.comb += s_inv.eq(~Cat(total, C(0, pw - len(total))))
            terms = [(n, [d * d for d in deltas]), (s_inv, [2 * d for d in deltas])]
        rows = []
        for value, consts in terms:
            for bit in range(max(consts).bit_length()):
                on = [(k >> bit) & 1 for k in consts]
                if not any(on):
                    continue
                row = (value << bit)[:pw]
                keep = C(1, 1) if all(on) else (_rom(on, 1, man) if b else C(on[0], 1))
                rows.append(Mux(keep, row, 0))
        if not self._by_count[c]:
            twice = [(2 * d) % (1 << pw) for d in deltas]  # the +1 of each -S row: 2 delta in all
            rows.append(C(twice[0], pw) if len(set(twice)) == 1 else _rom(twice, pw, man))
        return rows

    def _back(self, m: Module, valid: Value, p, ready: Signal, out_valid: Signal, out, out_ready: Value) -> None:
        """Assemble the block from its slices: shift the codes in, accumulate each pair's error; with
        the last slice (register ``total``: the totals, the last slice's codes), pick the pair (least
        error, ties to the lowest selector then option, spec 5.4) and emit header and codes (NaN header
        and zero codes for NaN/Inf). The held codes stay while a block waits in ``total``: a slice is
        taken only when ``total`` is empty or its block leaves."""
        fmt, lanes = self.fmt, self.lanes
        sf = fmt.scale
        k = fmt.k
        beats = k // lanes
        pairs = self._pairs
        entries = self._entries
        many = len(pairs) > 1
        w = fmt.element_width
        use_total = "total" in self.cuts
        step = valid & ready
        held = []
        for pi in range(len(entries)):
            if beats == 1:
                held.append(None)
                continue
            h = Signal(data.ArrayLayout(self._code_width, k - lanes), name=f"codes_held{pi}")
            slice_codes = [p.codes[pi][n] for n in range(lanes)]
            with m.If(step & ~p.last):  # shift down one slice, the new slice on top
                for n in range(k - lanes):
                    m.d.sync += h[n].eq(h[n + lanes] if n + lanes < k - lanes else slice_codes[n + lanes - (k - lanes)])
            held.append(h)

        def running(width: int, addends: list[Value], name: str, acc_name: str) -> Signal:
            """The block's sum of ``addends`` over its slices (this slice included); more than two addends
            meet in a carry-save tree before the one adder."""
            total = Signal(width, name=name)
            acc = None if beats == 1 else Signal(width, name=acc_name)
            terms = addends if acc is None else [*addends, acc]
            if len(addends) > 2:
                cs, cc = csa_sum(m, terms, width, name=f"{name}_csa")
                m.d.comb += total.eq(cs + cc)
            else:
                m.d.comb += total.eq(sum(addends[1:], addends[0]) if acc is None else sum(addends, acc))
            if acc is not None:
                with m.If(step):
                    m.d.sync += acc.eq(Mux(p.last, 0, total))
            return total

        totals, hits = [], []
        owners = [(c, maxe) for c, _j, maxe, *_ in entries]
        if self._delta:  # every pair: its candidate's symmetric error plus the pair's corrections
            for i, (c, j, _maxe, _r) in enumerate(pairs):
                corr = self._correction_rows(m, i, p.hits_n[i], p.hits_t[i], p.scales)
                totals.append(running(self._pair_width, [p.sum[c], p.carry[c], *corr],
                                      f"err{c}_{j}", f"err_acc{c}_{j}"))
            owners = [(c, maxe) for c, _j, maxe, _r in pairs]
        elif many:
            for pi in range(len(entries)):
                totals.append(running(self._error_width, [p.sum[pi], p.carry[pi]], f"err{pi}", f"err_acc{pi}"))
        if self._hits and not self._delta:  # per candidate, each sign's elements rounding to |R| (word: hit, sign)
            cw = k.bit_length()
            for pi in range(len(entries)):
                words = [p.codes[pi][n] for n in range(lanes)]
                pos = sum(wd[w] & ~wd[w - 1] for wd in words)
                neg = sum(wd[w] & wd[w - 1] for wd in words)
                hits.append((running(cw, [pos], f"hits_pos{pi}", f"hits_pos_acc{pi}"),
                             running(cw, [neg], f"hits_neg{pi}", f"hits_neg_acc{pi}")))
        if self._scaled:  # compare error * u^2 exactly: shift by twice the unit above the least
            totals = self._scaled_keys(m, totals, p.scales, owners)
        if use_total:
            t_in = Signal(self._total_layout, name="total_in")
            m.d.comb += [t_in.codes.eq(p.codes), t_in.scales.eq(p.scales), t_in.special.eq(p.special)]
            m.d.comb += [t_in.errs[pi].eq(t) for pi, t in enumerate(totals)]
            for pi, (hp, hn) in enumerate(hits):
                m.d.comb += [t_in.hits[pi][0].eq(hp), t_in.hits[pi][1].eq(hn)]
            sink, source = add_pipeline(m, self._total_layout, 1, name="total")
            m.d.comb += [sink.valid.eq(valid & p.last), sink.payload.eq(t_in), ready.eq(sink.ready),
                         out_valid.eq(source.valid), source.ready.eq(out_ready)]
            sel = source.payload
            last_codes, scales, special = sel.codes, sel.scales, sel.special
            totals = [sel.errs[i] for i in range(len(totals))]
            hits = [(sel.hits[pi][0], sel.hits[pi][1]) for pi in range(len(hits))]
        else:
            m.d.comb += [out_valid.eq(valid & p.last), ready.eq(~p.last | out_ready)]
            last_codes, scales, special = p.codes, p.scales, p.special
        pair_codes = []
        for pi in range(len(entries)):
            now = [last_codes[pi][n] for n in range(lanes)]
            pair_codes.append(Cat(*now) if held[pi] is None else Cat(held[pi].as_value(), *now))
        pair_hdr, neg_wins = [], []
        for pi, (c, j, maxe, _rp, _rn) in enumerate([] if self._delta else entries):
            g = self._scale_groups.index(maxe)
            if self._hits:  # the option with the most hits, ties to the lower option (golden/select.py)
                j_pos = self._option_pos[pi]
                hp, hn = hits[pi]
                wins = Signal(name=f"neg_wins{pi}")
                m.d.comb += wins.eq(hn > hp if j_pos == 0 else ~(hp > hn))
                neg_wins.append(wins)
                j = Mux(wins, 1 - j_pos, j_pos)
            hdr = Signal(fmt.header_bits, name=f"hdr{pi}")
            m.d.comb += hdr.eq(
                scales[g] | (j << sf.width) | (c << (sf.width + fmt.recycle_bits))
                if fmt.header_bits > sf.width else scales[g]
            )
            pair_hdr.append(hdr)
        best = Signal(range(len(totals) if many else 1), name="best")
        if many:  # policy scaled: the totals are its comparison keys (_scaled_keys)
            m.d.comb += best.eq(_least(totals))
        if self._delta:  # best is a pair: its candidate's codes, its header, whether it holds -R
            pair_hdr, neg_wins = [], []
            for c, j, maxe, _r in pairs:
                g = self._scale_groups.index(maxe)
                hdr = Signal(fmt.header_bits, name=f"hdr{c}_{j}")
                m.d.comb += hdr.eq(scales[g] | (j << sf.width) | (c << (sf.width + fmt.recycle_bits)))
                pair_hdr.append(hdr)
                neg_wins.append(C(int(j != self._option_pos[c]), 1))
            cand = _rom([c for c, *_ in pairs], max(1, (len(entries) - 1).bit_length()), best)
            hdr = _rom_signals(pair_hdr, best)
            cds = _rom_signals(pair_codes, cand)
        else:
            hdr = _rom_signals(pair_hdr, best) if many else pair_hdr[0]
            cds = _rom_signals(pair_codes, best) if many else pair_codes[0]
        if self._hits:  # the hit elements of the chosen option's sign take the recycled code (-0 code)
            words = [cds[n * (w + 1): (n + 1) * (w + 1)] for n in range(k)]
            wins = _rom_signals(neg_wins, best)
            r_code = fmt.elements[0].negative_zero_code
            cds = Cat(*(Mux(wd[w] & (wd[w - 1] == wins), C(r_code, w), wd[:w]) for wd in words))
        with m.If(special):  # spec 5.1: NaN header, zero codes
            m.d.comb += [out.header.eq(int(fmt.make_header(sf.nan_code, 0, 0))), out.codes.eq(0)]
        with m.Else():
            m.d.comb += [out.header.eq(hdr), out.codes.eq(cds)]

    def _scaled_keys(self, m: Module, totals: list[Value], scales, owners: list[tuple[int, float]]) -> list[Signal]:
        """Policy ``scaled``: each pair's block error shifted left by twice its unit exponent (``field + t``)
        above the least of the block's pairs, so the keys compare as ``error * u^2`` (golden/select.py);
        the difference is at most ``scaled_unit_span``. Before register ``total``: off its output path."""
        fmt = self.fmt
        sf = fmt.scale
        b = sf.mbits
        units = []
        for pi, (c, maxe) in enumerate(owners):
            u = Signal(sf.width + 4, name=f"unit{pi}")
            m.d.comb += u.eq(scales[self._scale_groups.index(maxe)][b:] +
                             scaled_geometry(fmt, c, self._frac_bits).top_exp)
            units.append(u)
        least = units[0]
        for i, u in enumerate(units[1:], 1):
            nxt = Signal(sf.width + 4, name=f"unit_least{i}")
            m.d.comb += nxt.eq(Mux(u < least, u, least))
            least = nxt
        span = self._unit_span
        keys = []
        for pi, (t, u) in enumerate(zip(totals, units, strict=True)):
            delta = Signal(range(span + 1), name=f"unit_delta{pi}")
            m.d.comb += delta.eq(u - least)  # within [0, span] (golden scaled_unit_span)
            key = Signal(self._key_width, name=f"key{pi}")
            m.d.comb += key.eq(t << (delta * 2))
            keys.append(key)
        return keys

    def elaborate(self, platform) -> Module:
        m = Module()
        many = len(self._pairs) > 1
        valid, beat, ready = self._beat(m)
        block = self._gather(m, valid, beat, ready)
        valid, piece, ready = self._work(m, *block)
        segments = [("align", self._align_layout, self._align), ("rounded", self._rounded_layout, self._round)]
        if many:
            segments += [("diff", self._diff_layout, self._diff), ("slice", self._slice_layout, self._square)]
        for name, layout, build in segments:
            p = Signal(layout, name=f"{name}_in")
            build(m, piece, p)
            valid, piece, ready_in, ready_next = self._stage(m, name, layout, valid, p)
            m.d.comb += ready.eq(ready_in)
            ready = ready_next
        out_in = Signal(self._out_layout, name="out_in")
        out_valid = Signal(name="out_in_valid")
        o_valid, o_payload, o_ready_in, o_ready = self._stage(m, "out", self._out_layout, out_valid, out_in)
        self._back(m, valid, piece, ready, out_valid, out_in, o_ready_in)
        m.d.comb += [self.o.valid.eq(o_valid), self.o.payload.eq(o_payload), o_ready.eq(self.o.ready)]
        return m


def _least(errors: list[Value]) -> Value:
    """Index of the least of ``errors``, ties to the lowest index (spec 5.4), as a tree of comparisons
    (``log2`` levels instead of a chain)."""
    level = [(e, C(i, max(1, (len(errors) - 1).bit_length()))) for i, e in enumerate(errors)]
    while len(level) > 1:
        nxt = []
        for a, b in zip(level[0::2], level[1::2], strict=False):
            better = b[0] < a[0]  # strict: the lower index wins ties
            nxt.append((Mux(better, b[0], a[0]), Mux(better, b[1], a[1])))
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0][1]
