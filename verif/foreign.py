"""Verify a foreign unit from its description (``nxfp-hw verify --manifest``; docs/verification.md).

:func:`verify` reads and checks the description (ports elaborated by Verilator), writes the adapter,
checks that Icarus can compile the design when it is the simulator, makes the stimulus (the dot
engine's and the encoder's directed cases plus seeded random blocks), computes the golden view of
every output port (``nxfp_hw.golden.views``, under the description's policy), drives the unit through
``verif.tb_foreign`` and compares every output element in this process (Python ints: any width,
signed or not; don't-care where a value means nothing). Nothing is regenerated and no source is
written: the adapter and the builds live under the build directory.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nxfp_hw.flows.foreign import Description, ForeignError, PortMap, icarus_check, load_description, write_adapter
from nxfp_hw.formats import BlockFormat

from .field_scoreboard import FieldCheck, FieldScoreboard

__all__ = ["ForeignResult", "Stimulus", "make_stimulus", "verify"]

DEFAULT_BLOCKS = 64


@dataclass
class Stimulus:
    """Per transaction (one block or block pair): the input fields, the golden output fields (``None``
    entries: don't care), and the case label of each transaction."""

    inputs: dict[str, np.ndarray]
    expected: dict[str, list[list[int | None]]]  # by PortMap.key, one row per output transaction
    cases: list[str]
    aux: dict[str, Any] = field(default_factory=dict)
    produces: list[bool] | None = None  # which input transactions give an output (None: every one)
    out_cases: list[str] | None = None  # label of each output transaction (default: ``cases``)

    @property
    def n(self) -> int:
        return len(self.cases)

    @property
    def n_out(self) -> int:
        return self.n if self.produces is None else int(sum(self.produces))


def _ints(a: np.ndarray) -> list[list[int]]:
    """Rows of Python ints (object arrays, int64 arrays, bools alike)."""
    arr = np.asarray(a, dtype=object)
    if arr.ndim == 1:
        arr = arr[:, None]
    return [[int(v) for v in row] for row in arr]


def _masked(values: list[list[int]], care: np.ndarray) -> list[list[int | None]]:
    c = np.asarray(care, dtype=bool)
    if c.ndim == 1:
        c = c[:, None]
    c = np.broadcast_to(c, (len(values), len(values[0]) if values else 0))
    return [[v if ok else None for v, ok in zip(row, crow, strict=True)] for row, crow in zip(values, c, strict=True)]


def _header_fields(fmt: BlockFormat, h: np.ndarray, op: str) -> dict[str, np.ndarray]:
    scale, sel, rec = fmt.split_header(h)
    return {f"{op}.header": h, f"{op}.scale": scale, f"{op}.selector": sel, f"{op}.recycle": rec}


def _dot_expected(desc: Description, ha, ca, hb, cb) -> dict[str, Any]:
    from nxfp_hw.golden.views import block_result, block_scale, element_products, exact_block_sum, rescale

    fa, fb = desc.formats["a"], desc.formats["b"]
    s = exact_block_sum(fa, ha, ca, fb, hb, cb)
    sc = block_scale(fa, ha, fb, hb)
    special = s.nan | s.pinf | s.ninf
    out: dict[str, Any] = {"nan": (s.nan.astype(int), None), "inf": ((s.pinf | s.ninf).astype(int), None),
                           "result": (block_result(fa, ha, ca, fb, hb, cb), None),
                           "scale_exp": (sc.scale_exp, special), "scale_man": (sc.scale_man, special)}
    for p in desc.field_ports("output"):
        if p.field == "sum":
            lsb = p.lsb_exponent if p.lsb_exponent is not None else s.lsb_exponent
            v, exact = rescale(s.value, s.lsb_exponent, lsb)
            out[p.key] = (v, special if p.dont_care == "special" else None)
            if not exact.all():
                raise ForeignError(f"ports ({p.name}).lsb_exponent: 2^{p.lsb_exponent} is coarser than the exact sum's "
                                   f"LSB 2^{s.lsb_exponent}; the sum is not representable")
        elif p.field == "products":
            pr = element_products(fa, ha, ca, fb, hb, cb)
            v, _ = rescale(pr.value, pr.lsb_exponent, p.lsb_exponent if p.lsb_exponent is not None else pr.lsb_exponent)
            out[p.key] = (v, (special[:, None] | pr.nan | pr.pinf | pr.ninf) if p.dont_care == "special" else None)
    out["_aux"] = {"sum": s, "scale": sc}
    return out


def make_stimulus(desc: Description, rng: np.random.Generator, blocks: int = DEFAULT_BLOCKS) -> Stimulus:
    """Directed cases and ``blocks`` seeded random blocks for the description's unit, with the golden value
    of every output port."""
    from . import vectors as vx

    fa = desc.formats["a"]
    produces = out_cases = None
    if desc.unit == "block_dot":
        fb = desc.formats["b"]
        s = vx.dot_directed(fa, fb, rng)
        if desc.accumulation is not None:  # the accumulation modes' own corner cases (spec 8.1)
            s.add_stream(vx.dot_mode_directed(fa, fb, rng, guard_bits=desc.accumulation[1]))
        if blocks:
            s.add_stream(vx.dot_random(fa, fb, blocks, rng))
            s.add_stream(vx.dot_near_cancel(fa, fb, max(1, blocks // 8), rng))
        ha, ca, hb, cb = (np.asarray(a, dtype=np.int64) for a in (s.ha, s.ca, s.hb, s.cb))
        inputs = {**_header_fields(fa, ha, "a"), **_header_fields(fb, hb, "b"), "a.codes": ca, "b.codes": cb,
                  "last": np.asarray(s.last, dtype=np.int64)}
        cases = list(s.case)
        if desc.accumulation is not None:
            from nxfp_hw.golden.views import block_result, reduction_result

            mode, guard = desc.accumulation
            exp = {"reduction": (reduction_result(fa, ha, ca, fb, hb, cb, s.last, mode=mode, guard_bits=guard), None)}
            ends = np.flatnonzero(s.last)
            starts = np.concatenate([[0], ends[:-1] + 1])
            produces = [bool(v) for v in s.last]
            out_cases = [cases[i] for i in starts]
            aux = {"reductions": list(zip(starts.tolist(), ends.tolist(), strict=True)),
                   "block_results": block_result(fa, ha, ca, fb, hb, cb)}
        else:
            exp = _dot_expected(desc, ha, ca, hb, cb)
            aux = exp.pop("_aux")
    elif desc.unit == "decode":
        from nxfp_hw.golden.views import element_decode

        h, c = vx.decode_exhaustive(fa, fa.k)
        if blocks:
            hr, cr = vx.random_blocks(fa, "codes", blocks, rng)
            h, c = np.concatenate([h, hr]), np.concatenate([c, cr])
        h, c = h.astype(np.int64), c.astype(np.int64)
        inputs = {**_header_fields(fa, h, "a"), "a.codes": c}
        exp = {"values": (element_decode(fa, h, c, out=desc.output_format), None)}
        cases = ["exhaustive"] * (len(h) - blocks) + ["random codes"] * blocks
        aux = {}
    else:
        from nxfp_hw.golden.views import encoded_blocks

        x, cases = vx.encode_directed(fa, rng, desc.input_format)
        if blocks:
            xr, cr = vx.encode_random(fa, blocks, rng)
            x, cases = np.concatenate([x, xr]), cases + cr
        dt, bits_dt = vx.ENCODE_INPUTS[desc.input_format]
        with np.errstate(over="ignore"):
            xin = x.astype(dt)
        enc = encoded_blocks(fa, xin.astype(np.float64), desc.policy)
        inputs = {"x": xin.view(bits_dt).astype(np.int64)}
        exp = {"header": (enc.headers, None), "scale": (enc.scale, None), "codes": (enc.codes, ~enc.codes_care)}
        aux = {"x": xin.astype(np.float64), "enc": enc}
    expected: dict[str, list[list[int | None]]] = {}
    for p in desc.field_ports("output"):
        values, dont = exp[p.key] if p.key in exp else exp[p.field]
        rows = _ints(values)
        care = np.ones(np.shape(np.asarray(values, dtype=object)), bool) if dont is None else ~np.asarray(dont, bool)
        if dont is not None and p.dont_care == "never" and p.field not in ("codes",):
            care = np.ones_like(care)
        expected[p.key] = _masked(rows, care)
    return Stimulus(inputs, expected, cases, aux, produces, out_cases)


def _flat(p: PortMap, values: list[int]) -> int:
    word = 0
    for j, v in enumerate(values):
        word |= (int(v) & ((1 << p.width) - 1)) << (j * p.width)
    return word


def _elements(fmt: BlockFormat, header: int, codes: Any) -> str:
    """``code:value`` of each element under ``header``, runs of one code written once with ``(xN)``."""
    _, sel, rec = (int(x) for x in fmt.split_header(header))
    table = fmt.element_table(min(sel, len(fmt.elements) - 1), min(rec, max(fmt.recycle_options, 1) - 1))
    items: list[str] = []
    cs = [int(c) for c in np.asarray(codes).reshape(-1)]
    i = 0
    while i < len(cs):
        j = i
        while j + 1 < len(cs) and cs[j + 1] == cs[i]:
            j += 1
        items.append(f"{cs[i]:#x}:{float(table[cs[i]])!r}" + (f" (x{j - i + 1})" if j > i else ""))
        i = j + 1
    return "[" + ", ".join(items) + "]"


def _describe(desc: Description, st: Stimulus) -> Any:
    from .scoreboard import describe_header, show_bits, show_exact

    fa = desc.formats["a"]

    def blocks(t: int, lane: int = 0) -> str:
        """Output transaction ``t`` of an accumulating unit: its reduction's blocks and golden results."""
        start, end = st.aux["reductions"][t]
        mode, guard = desc.accumulation
        lines = [f"reduction {t} = blocks {start}..{end} (case: {st.cases[start]}), accumulation {mode}"
                 + (f" (guard bits {guard})" if mode == "exact" else "")]
        for blk in range(start, min(end, start + 3) + 1):
            lines.append(f"block {blk}: golden block result {show_bits(int(st.aux['block_results'][blk]))}")
            for op, fmt in desc.formats.items():
                h = int(st.inputs[f"{op}.header"][blk])
                lines.append(f"  {op}: {describe_header(fmt, h)}; elements "
                             f"{_elements(fmt, h, st.inputs[f'{op}.codes'][blk])}")
        if end - start > 3:
            lines.append(f"... {end - start - 3} more blocks")
        return "\n    ".join(lines)

    def text(t: int, lane: int = 0) -> str:
        if desc.accumulation is not None:
            return blocks(t, lane)
        parts = [f"case: {st.cases[t]}"]
        if desc.unit in ("block_dot", "decode"):
            for op, fmt in desc.formats.items():
                h = int(st.inputs[f"{op}.header"][t])
                elems = _elements(fmt, h, st.inputs[f"{op}.codes"][t])
                parts.append(f"{op}: {describe_header(fmt, h)}; elements {elems}")
            if desc.unit == "block_dot":
                s, sc = st.aux["sum"], st.aux["scale"]
                flags = [n for n, f in (("NaN", s.nan), ("+Inf", s.pinf), ("-Inf", s.ninf)) if f[t]]
                parts.append(f"golden: S = {show_exact(int(s.value[t]), s.lsb_exponent)}, Xa*Xb = "
                             f"{int(sc.scale_man[t])}*2^{int(sc.scale_exp[t])}" + (f", block {'/'.join(flags)}" if flags
                                                                                   else ""))
        else:
            x = st.aux["x"][t]
            enc = st.aux["enc"]
            vals = ", ".join(repr(float(v)) for v in x[:8]) + (f", ... (+{x.size - 8})" if x.size > 8 else "")
            scale = float(fa.scale.code_values()[int(fa.split_header(int(enc.headers[t]))[0])])
            ratio = f" (x / X = {float(x[lane]) / scale!r})" if np.isfinite(scale) and scale else ""
            parts.append(f"inputs ({desc.input_format}) [{vals}]; lane {lane}: {float(x[lane])!r}{ratio}")
            parts.append(f"golden ({desc.policy.name}): {describe_header(fa, int(enc.headers[t]))}, reported scale "
                         f"{int(enc.scale[t])}")
        return "\n    ".join(parts)

    return text


def _checks(desc: Description) -> list[FieldCheck]:
    fa = desc.formats["a"]
    out = []
    for p in desc.field_ports("output"):
        kind, lsb, show = "int", 0, None
        if p.field in ("sum", "products"):
            from nxfp_hw.golden.dot import exact_sum_lsb_exponent

            kind, lsb = "exact", p.lsb_exponent if p.lsb_exponent is not None else exact_sum_lsb_exponent(
                fa, desc.formats["b"])
        elif p.field in ("result", "reduction"):
            kind = "fp32"
        elif p.field == "values":
            kind = desc.output_format
        elif p.field == "codes":
            table = fa.element_table(0, 0)

            def show(v: int, table: np.ndarray = table) -> str:
                return f"{float(table[v]) if 0 <= v < table.size else '?'!r}" + (
                    " with the first candidate's table" if len(fa.elements) > 1 else "")
        elif p.field == "scale" and desc.unit == "convert":
            off = desc.policy.offset(fa)
            values = fa.scale.code_values()

            def show(v: int, off: int = off, values: np.ndarray = values, nan: int = fa.scale.nan_code) -> str:
                if v == nan:
                    return f"the NaN scale code {nan} (reported as is)"
                code = v - off
                return f"scale code {code} = {float(values[code])!r}" if 0 <= code < values.size else f"code {code}"
        out.append(FieldCheck(p.name, p.field or "", p.width, p.count, p.signed, kind, lsb, show, p.offset, p.key))
    return out


@dataclass
class ForeignResult:
    passed: bool
    desc: Description
    stats: dict[str, Any]
    scoreboard: FieldScoreboard
    message: str
    log: Path | None = None


def verify(path: Path | str, simulator: str = "verilator", *, seed: int = 1, blocks: int = DEFAULT_BLOCKS,
           gap: float = 0.2, stall: float = 0.3, build_root: Path | None = None, waves: bool = False,
           progress: Any = None, keep_run: bool = True) -> ForeignResult:
    """Run the foreign unit described by ``path`` against the golden model (module docstring). A failing
    run's directory (plan, outputs, simulator log, waves) is always kept; a passing one only with
    ``keep_run``."""
    from sim.runner import build, check_simulator, default_build_root, run

    from .coverage import FormatCoverage, ResultCoverage, coverage_summary

    check_simulator(simulator)
    desc = load_description(path)
    root = (build_root or default_build_root()).resolve()
    adapter, decls = write_adapter(desc, root / "foreign" / desc.top)
    if simulator == "icarus":
        icarus_check(desc, adapter, decls)
    rng = np.random.default_rng(seed)
    st = make_stimulus(desc, rng, blocks)
    if progress:
        progress(desc, st)
    words: dict[str, list[int]] = {}  # one flat value per input port and transaction (slices OR-ed in)
    for p in desc.ports:
        if p.direction != "input":
            continue
        col = words.setdefault(p.name, [0] * st.n)
        if p.constant is not None:
            vals = [p.constant] * st.n
        else:
            vals = [_flat(p, r) for r in _ints(st.inputs[p.field])]
        for t, v in enumerate(vals):
            col[t] |= v << p.offset
    stim = {name: [f"{v:x}" for v in col] for name, col in words.items()}
    plan = {"top": desc.adapter_name, "n": st.n, "n_out": st.n_out, "produces": st.produces, "seed": seed,
            "gap": gap, "timing": desc.timing,
            "latency": desc.latency, "clock": desc.clock, "reset": desc.reset, "reset_active": desc.reset_active,
            "valid_in": desc.valid_in, "valid_out": desc.valid_out, "ready_in": desc.ready_in,
            "ready_out": desc.ready_out, "stall": stall,
            "inputs": [{"name": n, "width": decls[n].flat_width} for n in words],
            "outputs": [{"name": n, "width": decls[n].flat_width} for n in
                        dict.fromkeys(p.name for p in desc.ports if p.direction == "output" and p.field is not None)],
            "stimulus": stim}
    sources = [*desc.sources, adapter]
    sim_build = build(simulator, sources, desc.adapter_name, build_root=root / "sim", waves=waves,
                      includes=list(desc.include_dirs), defines=desc.defines)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    run_dir = sim_build.build_dir / "runs" / f"{worker}-{os.getpid()}-{random.Random(seed).getrandbits(24):06x}-{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    plan_path = run_dir.parent / f"{run_dir.name}.plan.json"
    out_path = run_dir.parent / f"{run_dir.name}.out.json"
    plan_path.write_text(json.dumps(plan))
    out_path.unlink(missing_ok=True)
    res = run(sim_build, "verif.tb_foreign", env={"NXFP_TB_PLAN": str(plan_path), "NXFP_TB_OUTPUT": str(out_path)},
              seed=seed, run_dir=run_dir, tag="foreign")
    if not out_path.is_file():
        return ForeignResult(False, desc, {"transactions": st.n}, FieldScoreboard(_checks(desc)),
                             f"the simulation produced no results: {res.summary()}", res.log)
    out = json.loads(out_path.read_text())
    got = {p: [None if v is None else int(v, 16) for v in vals] for p, vals in out["got"].items()}
    sb = FieldScoreboard(_checks(desc), describe=_describe(desc, st), name=desc.top)
    received = min((len(v) for v in got.values()), default=0)
    for t in range(min(received, st.n_out)):
        sb.check(t, {p: got[p][t] for p in got}, {k: st.expected[k][t] for k in st.expected})
    missing, extra = max(st.n_out - received, 0), max(received - st.n_out, 0)
    xz_note = ""
    if sb.xz and simulator == "icarus":
        xz_note = (f"icarus left {sb.xz} output values X/Z: it cannot evaluate part of this design (an unsupported "
                   "SystemVerilog construct evaluated as X), or the design does not drive them; verify it with "
                   "--sim verilator")
    cov = []
    if desc.unit == "block_dot":
        for op, fmt in desc.formats.items():
            c = FormatCoverage(fmt, op)
            c.sample(st.inputs[f"{op}.header"], st.inputs[f"{op}.codes"])
            cov.append(c)
    elif desc.unit == "decode":
        c = FormatCoverage(desc.formats["a"], "a")
        c.sample(st.inputs["a.header"], st.inputs["a.codes"])
        cov.append(c)
    else:
        fa = desc.formats["a"]
        c = FormatCoverage(fa, "a")
        c.sample(st.aux["enc"].headers, st.aux["enc"].codes)
        cov.append(c)
        rc = ResultCoverage(desc.input_format, "inputs")
        rc.sample(st.inputs["x"])
        cov.append(rc)
    for p in desc.field_ports("output"):
        if p.field in ("result", "values") and got.get(p.name):
            kind = "fp32" if p.field == "result" else desc.output_format
            rc = ResultCoverage(kind, p.name)
            rc.sample(np.array([[(v >> (j * p.width)) & ((1 << p.width) - 1) for j in range(p.count)]
                                for v in got[p.name] if v is not None], dtype=np.int64).reshape(-1))
            cov.append(rc)
    stats = {"module": desc.top, "simulator": simulator, "seed": seed, "transactions": st.n, "received": received,
             "missing": missing, "extra": extra, "compared": sb.compared, "dont_care": sb.dont_care,
             "mismatches": sb.mismatches, "xz": sb.xz, "cycles": out.get("cycles", 0),
             "wall_seconds": out.get("wall_seconds", 0.0), "protocol_errors": out.get("protocol_errors", []),
             "first_mismatch": sb.first.message if sb.first else None, "coverage": coverage_summary(*cov),
             "build_seconds": sim_build.build_seconds, "build_reused": sim_build.reused,
             "build_dir": str(sim_build.build_dir), "policy": desc.policy.name if desc.unit == "convert" else None}
    passed = sb.passed and not missing and not extra and not stats["protocol_errors"] and res.tests > 0
    if passed:
        message = "every output bit matches the golden model"
    elif xz_note:
        message = xz_note + ("\n" + sb.first.message if sb.first else "")
    elif stats["protocol_errors"]:
        message = ("handshake protocol violated: " if desc.timing == "stream" else "valid strobe out of step: ") + \
            "; ".join(stats["protocol_errors"][:3])
    elif sb.first is not None:
        message = sb.first.message
    elif missing or extra:
        message = f"{received} output transactions, {st.n_out} expected"
    else:
        message = res.summary()
    if passed:
        plan_path.unlink(missing_ok=True)
        if not keep_run:
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
            out_path.unlink(missing_ok=True)
            try:
                run_dir.parent.rmdir()  # runs/ itself, once empty
            except OSError:
                pass
    return ForeignResult(passed, desc, stats, sb, message, res.log if not passed or keep_run else None)
