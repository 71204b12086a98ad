"""Accuracy-versus-cost report: area, Fmax and throughput of the decode, dot and encode units per format,
with the quantization accuracy of each format (docs/area.md).

``measure_unit`` runs the area flows on one generated unit (used by ``nxfp-hw area``); ``run_report``
sweeps units x formats x flows with a result cache keyed by the configuration hash, then writes
``report.md``, ``report.json`` and two PNG plots (``area.png``, ``pareto.png``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import UserError
from ..formats import BlockFormat, parse_format
from . import area as area_mod
from .accuracy import Accuracy, accuracy_of, default_tensor, tensor_digest, write_text_atomic
from .pareto import pareto_front, staircase

__all__ = [
    "AREA_METRICS", "DEFAULT_ENCODE_FORMATS", "DEFAULT_FLOWS", "DEFAULT_FORMATS", "DEFAULT_UNITS",
    "ENCODE_SKIPPED_FLOWS", "OVERHEAD_PAIRS", "POWER_FLOW", "REPORT_FLOWS",
    "ReportResult",
    "build_for_area", "format_figure", "measure_unit", "pareto_front", "pipeline_text", "run_report", "unit_build",
]

DEFAULT_FORMATS = ("mxfp4_e2m1", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp8_e4m3", "nxfp4", "nxfp5", "nxfp6")
DEFAULT_UNITS = ("decode", "dot")
UNITS = ("decode", "dot", "encode")
# Formats of the encode unit in the committed report (scripts/make_report.sh): every default format.
DEFAULT_ENCODE_FORMATS = DEFAULT_FORMATS
# The power flow (nxfp_hw.flows.power): energy per operation from gate-level simulation of the asic netlist.
POWER_FLOW = "power"
REPORT_FLOWS = (*area_mod.FLOWS, POWER_FLOW)
DEFAULT_FLOWS = ("generic", "asic", "ice40", "xilinx", POWER_FLOW)
# Flows the encoder is not put through by the main job and scripts/make_report.sh: only the MX 4-bit encoder
# fits the largest supported iCE40; its power flow takes minutes per format (48,000 nets simulated at gate
# level; docs/area.md, "power": run it with `nxfp-hw area --unit encode --flow power`).
ENCODE_SKIPPED_FLOWS = ("ice40", POWER_FLOW)
# (NxFP, MX baseline, why): the comparisons spec 4 makes.
OVERHEAD_PAIRS = (("nxfp4", "mxfp4_e2m1", "same 4.25 bits/elem"), ("nxfp6", "mxfp6_e2m3", "same 6.25 bits/elem"),
                  ("nxfp5", "mxfp6_e3m2", "similar accuracy at 16% fewer bits"))
# flow -> (figure, label) of the area measure plotted and compared
AREA_METRICS = {"asic": ("area_um2", "area (um^2, OSU 0.18 um)"), "generic": ("transistors", "transistors (CMOS est.)"),
                "ice40": ("luts", "iCE40 LUT4"), "xilinx": ("luts", "7-series LUTs"),
                POWER_FLOW: ("energy_pj_per_op", "energy per op (pJ, MiniLM, OSU 0.18 um)")}
REPORT_SCHEMA = "nxfp-hw-report/1"
# Lanes of every unit in a report unless asked otherwise (capped at k): a 32-lane decoder of binary32
# outputs needs ~9k iCE40 LUT4, more than the largest supported iCE40 holds.
DEFAULT_REPORT_LANES = 8


# --- one unit ------------------------------------------------------------------------------------

@dataclass
class UnitBuild:
    """A unit ready for the area flows: its Verilog and the facts the report needs."""

    unit: str
    module: str
    verilog: str
    lanes: int
    latency: int
    initiation_interval: int
    config: dict[str, Any]
    config_hash: str
    formats: dict[str, str]
    block_size: int = 0
    initiation_interval_per_block: int = 0
    pipeline: dict[str, list[str]] = field(default_factory=dict)
    accumulation: dict[str, Any] | None = None

    def facts(self) -> dict[str, Any]:
        """The JSON-ready facts of a record (everything but the Verilog)."""
        return {"module": self.module, "lanes": self.lanes, "latency": self.latency,
                "initiation_interval": self.initiation_interval, "block_size": self.block_size,
                "initiation_interval_per_block": self.initiation_interval_per_block, "pipeline": self.pipeline,
                "accumulation": self.accumulation, "config_hash": self.config_hash}


def unit_build(comp: Any) -> UnitBuild:
    """A ``UnitBuild`` of an already constructed unit (emits its Verilog)."""
    from .generate import emit_verilog
    from .manifest import accumulation_facts, config_hash, initiation_intervals, pipeline_facts

    ii_beat, ii_block = initiation_intervals(comp)
    return UnitBuild(unit=comp.unit_kind, module=comp.module_name, verilog=emit_verilog(comp), lanes=int(comp.lanes),
                     latency=int(comp.latency), initiation_interval=ii_beat,
                     config=comp.config, config_hash=config_hash(comp.config),
                     formats={k: f.label for k, f in comp.formats.items()}, block_size=comp.formats["a"].k,
                     initiation_interval_per_block=ii_block, pipeline=pipeline_facts(comp),
                     accumulation=accumulation_facts(comp))


def build_for_area(unit: str, fmt_a: BlockFormat, fmt_b: BlockFormat | None = None, *, lanes: int | None = None,
                   pipeline: Any = None, acc: str | None = None, guard_bits: int | None = None,
                   select: str | None = None) -> UnitBuild:
    """Construct the unit with ``generate.build_unit`` and emit its Verilog."""
    from .generate import build_unit

    return unit_build(build_unit(unit, fmt_a, fmt_b, lanes=lanes, pipeline=pipeline, acc=acc, guard_bits=guard_bits,
                                 select=select))


def throughput(build: UnitBuild | dict[str, Any], fmax_mhz: float | None) -> float | None:
    """Elements per second at ``fmax_mhz``: elements per block / cycles per block x Fmax (MAC/s for dot,
    values/s for decode, values encoded per second for encode). Records without the per-block figures
    (older caches) use lanes / initiation interval per beat."""
    if fmax_mhz is None:
        return None
    get = build.get if isinstance(build, dict) else lambda k: getattr(build, k, None)
    if get("block_size") and get("initiation_interval_per_block"):
        return get("block_size") / get("initiation_interval_per_block") * fmax_mhz * 1e6
    return get("lanes") / get("initiation_interval") * fmax_mhz * 1e6


def measure_unit(build: UnitBuild, flows: Sequence[str], *, workdir: Path,
                 **flow_opts: Any) -> dict[str, Any]:
    """Run ``flows`` on a built unit; a JSON-ready record (unit facts, tool versions, per-flow results)."""
    results: list[area_mod.AreaResult] = []
    for f in flows:
        asic = next((r for r in results if r.flow == "asic"), None)
        results.append(_run_flow(build, f, workdir, flow_opts, asic=asic))
    tools: dict[str, str] = {}
    for r in results:
        tools.update(r.tools)
    return {
        "unit": build.unit, "formats": build.formats, **build.facts(), "config": build.config,
        "generator": {"name": "nxfp-hw", "version": __version__},
        "tools": tools,
        "flows": {r.flow: {**r.to_dict(), "throughput_per_s": throughput(build, r.figures.get("fmax_mhz"))}
                  for r in results},
    }


def _run_flow(build: UnitBuild, flow: str, workdir: Path, flow_opts: dict[str, Any],
              asic: area_mod.AreaResult | None = None) -> area_mod.AreaResult:
    """One flow on a built unit: ``run_area`` on its Verilog, or the power flow on its configuration (on the
    netlist of ``asic``, the unit's asic flow run just before with the same options, when given)."""
    power_opts = ("workload_file",)  # options of the power flow only
    if flow == POWER_FLOW:
        from .power import run_power_build

        return run_power_build(build, workdir=Path(workdir) / POWER_FLOW, period_ns=flow_opts.get("period_ns"),
                               asic=asic, **{k: v for k, v in flow_opts.items() if k in power_opts})
    return area_mod.run_area(build.verilog, build.module, flow, workdir=workdir,
                             **{k: v for k, v in flow_opts.items() if k not in power_opts})


# --- sweep ---------------------------------------------------------------------------------------

@dataclass
class ReportResult:
    """What ``run_report`` wrote and measured."""

    out_dir: Path
    files: list[Path]
    data: dict[str, Any]
    failures: list[str] = field(default_factory=list)


@functools.cache
def _flow_digest() -> str:
    """Digest of the area-flow sources: a changed flow invalidates the cache (the unit itself is keyed by
    its Verilog text, so a generator change that leaves a unit's Verilog alone keeps its results)."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in ("area.py", "tools.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def _power_digest() -> str:
    from .power import power_digest

    return power_digest()


def _metric(flow: str, figures: dict[str, Any]) -> float | None:
    v = figures.get(AREA_METRICS[flow][0]) if flow in AREA_METRICS else None
    return None if v is None else float(v)


# Amaranth elaboration is not documented as thread-safe: a process running several tasks at once (a Dask
# worker with --nthreads > 1) builds one unit at a time, only the external tools run in parallel.
_BUILD_LOCK = threading.Lock()


class _Progress:
    def __init__(self, total: int, echo: Callable[[str], None]) -> None:
        self.total, self.done, self.echo, self.lock = total, 0, echo, threading.Lock()

    def line(self, text: str) -> None:
        with self.lock:
            self.done += 1
            self.echo(f"[{self.done}/{self.total}] {text}")


def flow_versions(flow: str) -> str:
    """The tool versions a flow's cache entries are keyed by (``missing: ...`` when a tool is absent)."""
    out = ""
    for tool in area_mod._FLOW_TOOLS.get(flow, ("yosys", "sta", "iverilog")):
        try:
            out += f"{tool} {area_mod.tools.tool_version(tool)};"
        except UserError as exc:
            return f"missing: {exc}"
    return out


def run_flows_cached(build: UnitBuild, flows: Sequence[str], cache: Path, flow_opts: dict[str, Any], workdir: Path,
                     echo: Callable[[str], None], label: str, build_seconds: float = 0.0
                     ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Every flow of ``flows`` on ``build`` through the shared result cache (``nxfp_hw.flows.cache``: keyed by the
    Verilog, module, flow, flow sources, tool versions and options; computed once however many processes ask).
    Returns ``({flow: result or {"error": ...}}, {flow: "hit" | "ran" | "failed"})``; one progress line per flow
    through ``echo``, each starting with ``label`` (the first flow that runs counts ``build_seconds`` too). A
    failing flow is recorded and the next one runs."""
    from .cache import cached

    verilog_digest = hashlib.sha256(build.verilog.encode()).hexdigest()
    facts = build.facts()
    records: dict[str, dict[str, Any]] = {}
    status: dict[str, str] = {}
    ran_asic = None  # this run's asic result of the unit: its netlist is the power flow's
    for f in flows:
        opts = {k: (str(v) if isinstance(v, Path) else v) for k, v in flow_opts.items()}
        digest = _flow_digest() + (_power_digest() if f == POWER_FLOW else "")
        key = hashlib.sha256(json.dumps([verilog_digest, build.module, f, digest, flow_versions(f), opts],
                                        sort_keys=True).encode()).hexdigest()[:20]
        t0 = time.monotonic()
        ran: list[area_mod.AreaResult] = []

        def compute(f: str = f, ran: list = ran, asic: area_mod.AreaResult | None = ran_asic) -> dict[str, Any]:
            res = _run_flow(build, f, workdir, flow_opts, asic=asic)
            ran.append(res)
            return {"unit_facts": facts, "result": {"figures": res.figures, "tools": res.tools, "notes": res.notes,
                                                    "commands": res.commands}}

        try:
            entry, hit = cached(cache / "area" / f"{key}.json", compute, valid=lambda e: "result" in e)
        except Exception as exc:  # noqa: BLE001 - a failed configuration is reported, the sweep goes on
            msg = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            records[f], status[f] = {"error": msg}, "failed"
            echo(f"{label} {f} ... FAILED after {time.monotonic() - t0:.1f} s: {msg}")
            continue
        records[f], status[f] = entry["result"], "hit" if hit else "ran"
        ran_asic = ran[0] if f == "asic" and ran else ran_asic
        echo(f"{label} {f} ... " + ("cached" if hit else f"{time.monotonic() - t0 + build_seconds:.1f} s"))
        build_seconds = build_seconds if hit else 0.0
    return records, status


def _sweep_one(unit: str, fmt: BlockFormat, flows: Sequence[str], cache: Path, flow_opts: dict[str, Any],
               lanes: int | None, pipeline: Any, dot_opts: dict[str, Any], *,
               echo: Callable[[str], None]) -> dict[str, Any]:
    """All flows of one (unit, format): one task of the report on the sweep engine (``nxfp_hw.flows.engine``).
    Cached flows are read back, the rest run (build once). ``pipeline`` is one setting for every unit or a
    dict ``{(unit, format label): setting}`` (missing: the default); ``dot_opts`` (``acc``, ``guard_bits``) go
    to the dot engine, its ``select`` to the encoder. One line per flow through ``echo``."""
    label = f"{unit} {fmt.label}"
    record: dict[str, Any] = {"unit": unit, "format": fmt.label, "flows": {}}
    lanes = min(DEFAULT_REPORT_LANES, fmt.k) if lanes is None else lanes
    t0 = time.monotonic()
    try:
        with _BUILD_LOCK:
            pipe = pipeline.get((unit, fmt.label)) if isinstance(pipeline, dict) else pipeline
            opts = {k: v for k, v in dot_opts.items() if k != "select"} if unit == "dot" else {}
            if unit == "encode" and "select" in dot_opts and len(fmt.elements) * max(fmt.recycle_options, 1) > 1:
                opts = {"select": dot_opts["select"]}  # the encoder's selection policy (formats that select)
            build = build_for_area(unit, fmt, None, lanes=lanes, pipeline=pipe, **opts)
    except Exception as exc:  # noqa: BLE001 - a failed configuration is reported, the sweep goes on
        msg = f"build: {type(exc).__name__}: {exc}"
        for f in flows:
            record["flows"][f] = {"error": msg}
            echo(f"{label} {f} ... FAILED ({msg})")
        return record
    record.update(build.facts())

    record["flows"], _ = run_flows_cached(build, flows, cache, flow_opts,
                                          cache / "work" / f"{unit}_{fmt.ident}_{build.config_hash}", echo, label,
                                          build_seconds=time.monotonic() - t0)
    return record


def run_report(*, formats: Sequence[str] = DEFAULT_FORMATS, units: Sequence[str] = DEFAULT_UNITS,
               flows: Sequence[str] = DEFAULT_FLOWS, tensor: np.ndarray | None = None, tensor_label: str | None = None,
               out_dir: Path, cache_dir: Path, jobs: int = 1, force: bool = False, lanes: int | None = None,
               pipeline: Any = None, encode_formats: Sequence[str] | None = None,
               encode_flows: Sequence[str] | None = None, echo: Callable[[str], None] = print,
               acc: str | None = None, guard_bits: int | None = None, select: str | None = None,
               scheduler: str | None = None, **flow_opts: Any) -> ReportResult:
    """Sweep ``units`` x ``formats`` x ``flows``, measure accuracy on ``tensor`` (default: MiniLM weights),
    and write ``report.md``, ``report.json``, ``area.png`` and ``pareto.png`` into ``out_dir``.

    ``lanes=None`` means ``min(DEFAULT_REPORT_LANES, k)`` for every unit. ``pipeline`` is one setting for
    every unit (a count, names, "none", "all"; None: each unit's default) or ``{(unit, format label):
    setting}``; ``acc`` and ``guard_bits`` are the dot engine's accumulation mode and guard bits, ``select`` the
    encoder's selection policy (formats with a single pair keep theirs).
    ``encode_formats`` (default: the same as ``formats``) are the formats of the encode unit; their accuracy
    is measured too; ``encode_flows``
    (default: ``flows``, a subset of it) its flows (the others are shown as not run). Refuses to replace
    an existing report without ``force``. Failed configurations are listed in the output and the tables; the
    sweep continues. The (unit, format) tasks run on the sweep engine (``nxfp_hw.flows.engine``): in this
    process when ``jobs`` is 1, on a Dask LocalCluster of ``jobs`` worker processes, or on the Dask scheduler at
    ``scheduler``."""
    fmts = [parse_format(f) for f in formats]
    base_fmts = list(fmts)
    enc_fmts = list(fmts) if encode_formats is None else [parse_format(f) for f in encode_formats]
    if encode_formats is not None and "encode" not in units:
        raise UserError("encode-formats: only meaningful when the encode unit is in --units")
    if encode_flows is not None:
        if "encode" not in units:
            raise UserError("encode-flows: only meaningful when the encode unit is in --units")
        extra = [f for f in encode_flows if f not in flows]
        if extra or not encode_flows:
            raise UserError(f"encode-flows: expected a non-empty subset of the flows ({', '.join(flows)}), "
                            f"got {', '.join(encode_flows) or 'nothing'}")
    fmts += [f for f in enc_fmts if f.label not in {g.label for g in fmts}]
    if not fmts or not enc_fmts or not units or not flows:
        raise UserError("report: need at least one format, one unit and one flow")
    for u in units:
        if u not in UNITS:
            raise UserError(f"units: unknown unit {u!r}; expected one of {', '.join(UNITS)}")
    for f in flows:
        if f not in REPORT_FLOWS:
            raise UserError(f"flows: unknown flow {f!r}; expected one of {', '.join(REPORT_FLOWS)}")
    if jobs < 1:
        raise UserError(f"jobs: expected a positive integer, got {jobs}")
    out_dir, cache_dir = Path(out_dir), Path(cache_dir).resolve()
    names = ("report.md", "report.json", "area.png", "pareto.png", "energy.png")
    existing = [n for n in names if (out_dir / n).exists()]
    if existing and not force:
        raise UserError(f"out: {out_dir} already holds {', '.join(existing)}; pass --force to replace them")

    # Accuracy (per format, independent of the unit).
    if tensor is None:
        tensor, tensor_label = default_tensor()
    digest = tensor_digest(tensor)
    accs: dict[str, Accuracy] = {}
    for fmt in fmts:
        t0 = time.monotonic()
        accs[fmt.label] = accuracy_of(fmt, tensor, label=tensor_label, cache_dir=cache_dir, digest=digest)
        echo(f"accuracy {fmt.label} ... relative MSE {accs[fmt.label].relative_mse:.4g} "
             f"({time.monotonic() - t0:.1f} s)")

    # Hardware: one task per (unit, format) on the sweep engine (this process when jobs == 1).
    from .engine import Engine

    unit_fmts = {u: enc_fmts if u == "encode" else base_fmts for u in units}
    unit_flows = {u: [f for f in flows if u != "encode" or encode_flows is None or f in encode_flows]
                  for u in units}
    combos = [(u, f) for u in units for f in unit_fmts[u]]
    progress = _Progress(sum(len(unit_flows[u]) for u, _ in combos), echo)
    dot_opts = {k: v for k, v in (("acc", acc), ("guard_bits", guard_bits)) if v is not None}
    if select is not None:
        dot_opts["select"] = select
    tasks = [(f"{u}-{f.ident}", (u, f, unit_flows[u], cache_dir, flow_opts, lanes, pipeline, dot_opts), {})
             for u, f in combos]
    done: dict[str, dict[str, Any]] = {}

    def finished(outcome: Any) -> None:
        for line in outcome.lines:
            progress.line(line)
        if outcome.error is not None:  # the engine could not run it (its workers died)
            u, f = outcome.args[0], outcome.args[1]
            outcome.value = {"unit": u, "format": f.label, "flows": {fl: {"error": outcome.error}
                                                                      for fl in unit_flows[u]}}
        done[outcome.key] = outcome.value

    with Engine(workers=jobs, scheduler=scheduler, inline=jobs == 1 and scheduler is None) as engine:
        engine.map(_sweep_one, tasks, finished, echo=progress.line)
    records = [done[key] for key, _, _ in tasks]

    data = _assemble(fmts, units, flows, accs, records, tensor_label or "tensor", digest, int(np.asarray(tensor).size))
    data["unit_flows"] = unit_flows
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "report.json", out_dir / "report.md"]
    from .select_report import policy_section

    data["encoder_policies"], policy_md, policy_files = policy_section(out_dir) if "encode" in units else (None, "", [])
    write_text_atomic(files[0], json.dumps(data, indent=1, allow_nan=False, default=_json_default) + "\n")
    write_text_atomic(files[1], render_markdown(data) + policy_md)
    files += _plots(data, out_dir) + policy_files
    failures = [f"{r['unit']} {r['format']} {f}: {v['error']}" for r in records for f, v in r["flows"].items()
                if "error" in v]
    return ReportResult(out_dir=out_dir, files=files, data=data, failures=failures)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _assemble(fmts: list[BlockFormat], units: Sequence[str], flows: Sequence[str], accs: dict[str, Accuracy],
              records: list[dict[str, Any]], tensor_label: str, digest: str, size: int) -> dict[str, Any]:
    tools: dict[str, str] = {}
    for r in records:
        for v in r["flows"].values():
            tools.update(v.get("tools", {}))
    for r in records:
        for v in r["flows"].values():
            if "figures" in v:
                v["throughput_per_s"] = throughput(r, v["figures"].get("fmax_mhz"))
    by = {(r["unit"], r["format"]): r for r in records}
    overhead = []
    for nx, mx, why in OVERHEAD_PAIRS:
        if nx not in accs or mx not in accs:
            continue
        for unit in units:
            for flow in flows:
                a = by.get((unit, nx), {}).get("flows", {}).get(flow, {})
                b = by.get((unit, mx), {}).get("flows", {}).get(flow, {})
                if "figures" not in a or "figures" not in b:
                    continue
                row: dict[str, Any] = {"nxfp": nx, "mx": mx, "unit": unit, "flow": flow, "why": why,
                                       "metric": AREA_METRICS[flow][0]}
                va, vb = _metric(flow, a["figures"]), _metric(flow, b["figures"])
                row.update(nxfp_value=va, mx_value=vb,
                           overhead_pct=None if not (va and vb) else round((va / vb - 1) * 100, 2))
                fa, fb = a["figures"].get("fmax_mhz"), b["figures"].get("fmax_mhz")
                if fa and fb:
                    row.update(nxfp_fmax_mhz=fa, mx_fmax_mhz=fb, fmax_change_pct=round((fa / fb - 1) * 100, 2))
                row["bits_per_element_change_pct"] = round(
                    (accs[nx].bits_per_element / accs[mx].bits_per_element - 1) * 100, 2)
                row["relative_mse_ratio"] = (round(accs[nx].relative_mse / accs[mx].relative_mse, 4)
                                             if accs[mx].relative_mse else None)
                overhead.append(row)
    return {
        "schema": REPORT_SCHEMA,
        "generator": {"name": "nxfp-hw", "version": __version__},
        "tools": dict(sorted(tools.items())),
        "tensor": {"label": tensor_label, "digest": digest, "values": size},
        "units": list(units), "flows": list(flows),
        "formats": {f.label: {"format_string": f.to_string(), "bits_per_element": f.bits_per_element,
                              "mx": f.is_mx, "relative_mse": accs[f.label].relative_mse,
                              "sqnr_db": accs[f.label].sqnr_db if math.isfinite(accs[f.label].sqnr_db) else None}
                    for f in fmts},
        "results": records,
        "overhead": overhead,
    }


# --- rendering -----------------------------------------------------------------------------------

def format_figure(v: Any, nd: int = 4) -> str:
    """A figure for a table: ``-`` for None, floats to ``nd`` significant digits."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}g}"
    return str(v)


_FLOW_COLUMNS: dict[str, list[tuple[str, str, Callable[[dict[str, Any]], Any]]]] = {
    "generic": [("cells", "generic cells", lambda f: f.get("cells")),
                ("transistors", "transistors", lambda f: f.get("transistors"))],
    "asic": [("area_um2", "ASIC um^2", lambda f: f.get("area_um2")),
             ("critical_path_ns", "ASIC path ns", lambda f: f.get("critical_path_ns")),
             ("fmax_mhz", "ASIC MHz", lambda f: f.get("fmax_mhz"))],
    "ice40": [("luts", "iCE40 LUT", lambda f: f.get("luts")), ("carries", "CARRY", lambda f: f.get("carries")),
              ("ffs", "DFF", lambda f: f.get("ffs")), ("dsps", "MAC16", lambda f: f.get("dsps")),
              ("fmax_mhz", "iCE40 MHz", lambda f: f.get("fmax_mhz"))],
    "xilinx": [("luts", "7s LUT", lambda f: f.get("luts")), ("carries", "CARRY4", lambda f: f.get("carries")),
               ("ffs", "FF", lambda f: f.get("ffs")), ("dsps", "DSP48", lambda f: f.get("dsps"))],
    POWER_FLOW: [("energy_pj_per_op", "pJ/op", lambda f: f.get("energy_pj_per_op")),
                 ("internal", "internal pJ", lambda f: (f.get("energy_components_pj") or {}).get("internal")),
                 ("switching", "switching pJ", lambda f: (f.get("energy_components_pj") or {}).get("switching")),
                 ("leakage", "leakage pJ", lambda f: (f.get("energy_components_pj") or {}).get("leakage")),
                 ("random", "random pJ/op", lambda f: (f.get("energy_pj_per_op_by_workload") or {}).get("random")),
                 ("zero", "zero pJ/op", lambda f: (f.get("energy_pj_per_op_by_workload") or {}).get("zero"))],
}


def pipeline_text(pipe: dict[str, list[str]] | None) -> str:
    """``enabled/positions`` register positions of a record (``-`` when unknown)."""
    if not pipe or not pipe.get("positions"):
        return "-"
    return f"{len(pipe['enabled'])}/{len(pipe['positions'])}"


def _table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def render_markdown(data: dict[str, Any]) -> str:
    """``report.md``: one table per unit, the NxFP-vs-MX overhead table, failures, provenance."""
    fm = data["formats"]
    lines = ["# Accuracy versus hardware cost\n",
             f"Generated by `nxfp-hw report` ({data['generator']['name']} {data['generator']['version']}; "
             "regenerate with `scripts/make_report.sh`). Figures are defined in docs/area.md.\n",
             f"Accuracy: relative MSE (MSE / mean(x^2)) and SQNR of quantize -> dequantize on "
             f"{data['tensor']['label']} ({data['tensor']['values']:,} values, digest {data['tensor']['digest']}).\n",
             "Tools: " + ", ".join(f"{k} {v}" for k, v in data["tools"].items()) + ".\n",
             "Pipeline: register positions enabled / positions of the unit (which ones: `results[].pipeline` in "
             "report.json; docs/timing.md). acc: the dot engine's accumulation mode (spec 8.1). Throughput is "
             "elements per block / cycles per block x Fmax.\n"]
    fail_lines = []
    for unit in data["units"]:
        recs = [r for r in data["results"] if r["unit"] == unit]
        what = "MAC/s" if unit == "dot" else "values/s"
        lines.append(f"\n## {unit} unit\n")
        head = ["format", "bits/elem", "rel. MSE", "SQNR dB", "lanes", "latency", "pipeline"]
        if unit == "dot":
            head.append("acc")
        for flow in data["flows"]:
            head += [c[1] for c in _FLOW_COLUMNS[flow]]
            if flow in ("asic", "ice40"):
                head.append(f"{'ASIC' if flow == 'asic' else 'iCE40'} G{what}")
        rows = []
        for r in recs:
            f = fm[r["format"]]
            row = [r["format"], f"{f['bits_per_element']:.3g}", f"{f['relative_mse']:.4g}", format_figure(f["sqnr_db"]),
                   format_figure(r.get("lanes")), format_figure(r.get("latency")), pipeline_text(r.get("pipeline"))]
            if unit == "dot":
                row.append((r.get("accumulation") or {}).get("mode", "-"))
            for flow in data["flows"]:
                v = r["flows"].get(flow, {})
                ncol = len(_FLOW_COLUMNS[flow]) + (flow in ("asic", "ice40"))
                if flow not in r["flows"] and flow not in data.get("unit_flows", {}).get(unit, data["flows"]):
                    row += ["not run"] + ["-"] * (ncol - 1)
                    continue
                if "figures" not in v:
                    row += ["FAILED"] + ["-"] * (ncol - 1)
                    fail_lines.append(f"- {unit} {r['format']} {flow}: {v.get('error', 'not run')}")
                    continue
                row += [format_figure(c[2](v["figures"])) for c in _FLOW_COLUMNS[flow]]
                if flow in ("asic", "ice40"):
                    tp = v.get("throughput_per_s")
                    row.append("-" if tp is None else f"{tp / 1e9:.3g}")
            rows.append(row)
        lines.append(_table(head, rows))
        skipped = [f for f in data["flows"] if f not in data.get("unit_flows", {}).get(unit, data["flows"])]
        if skipped:
            lines.append(f"\nNot run for the {unit} unit: {', '.join(skipped)} (docs/area.md).\n")
        for flow in ("asic", "ice40"):
            notes = sorted({n for r in recs for n in r["flows"].get(flow, {}).get("notes", [])})
            if notes:
                lines.append(f"\n{flow} notes: " + "; ".join(notes) + ".\n")
    if data["overhead"]:
        lines.append("\n## NxFP versus MX: hardware overhead\n")
        lines.append("Measured in this run; overhead = NxFP / MX - 1 of the flow's area measure "
                     "(ASIC um^2, generic transistors, LUTs).\n\n")
        head = ["NxFP", "MX", "unit", "flow", "measure", "NxFP", "MX", "overhead", "Fmax change", "bits change",
                "rel. MSE ratio"]
        rows = [[o["nxfp"], o["mx"], o["unit"], o["flow"], o["metric"],
                 format_figure(o["nxfp_value"], 6), format_figure(o["mx_value"], 6),
                 "-" if o["overhead_pct"] is None else f"{o['overhead_pct']:+.1f}%",
                 f"{o['fmax_change_pct']:+.1f}%" if "fmax_change_pct" in o else "-",
                 f"{o['bits_per_element_change_pct']:+.1f}%", format_figure(o["relative_mse_ratio"], 3)]
                for o in data["overhead"]]
        lines.append(_table(head, rows))
    if any(o["flow"] == POWER_FLOW for o in data["overhead"]):
        lines.append(_energy_section(data))
    enc = [o for o in data["overhead"] if o["unit"] == "encode"]
    if enc:
        lines.append(_encoder_section(data, enc))
    elif "encode" in data["units"]:
        lines.append("\n## Encoder cost: NxFP adaptive search versus plain MX\n\nNo NxFP encoder and its MX "
                     "counterpart (nxfp4/mxfp4_e2m1, nxfp6/mxfp6_e2m3, nxfp5/mxfp6_e3m2) were both measured in this "
                     "run (docs/area.md).\n")
    lines.append("\n## Plots\n\n![area per format](area.png)\n\n![accuracy versus area](pareto.png)\n")
    if POWER_FLOW in data["flows"]:
        lines.append("\n![accuracy versus energy per operation](energy.png)\n")
    if fail_lines:
        lines.append("\n## Failed configurations\n\n" + "\n".join(fail_lines) + "\n")
    return "\n".join(lines).replace("\n\n\n", "\n\n")


def _energy_section(data: dict[str, Any]) -> str:
    """Energy per operation of each NxFP unit against its MX counterpart, per workload (same run, same data,
    lanes, pipeline defaults, accumulation mode and reference clock)."""
    recs = {(r["unit"], r["format"]): r for r in data["results"]}
    out = ["\n## Energy per operation, NxFP / MX\n",
           "Gate-level simulation of each unit's OSU 0.18 um netlist (bit-exact against the golden model) streaming "
           "a workload at full rate; per-net activity into OpenSTA `report_power` at the reference clock; energy = "
           "power x cycles x period / operations (pJ per MAC for the dot engine, per value for decode and encode). "
           "MiniLM: all-MiniLM-L6-v2 weights (dot: times standard-normal activations), quantized by the golden "
           "model; random: uniformly random codes and headers (encoder: Gaussian blocks); zero: all zeros. No wire "
           "load, no clock tree, typical corner (docs/area.md).\n\n"]
    head = ["NxFP", "MX", "unit", "NxFP pJ/op", "MX pJ/op", "ratio", "random ratio", "zero ratio",
            "NxFP switching pJ", "MX switching pJ", "rel. MSE ratio"]
    rows = []
    for o in data["overhead"]:
        if o["flow"] != POWER_FLOW:
            continue
        a = recs[(o["unit"], o["nxfp"])]["flows"][POWER_FLOW]["figures"]
        b = recs[(o["unit"], o["mx"])]["flows"][POWER_FLOW]["figures"]
        wa, wb = a.get("energy_pj_per_op_by_workload") or {}, b.get("energy_pj_per_op_by_workload") or {}

        def ratio(x: float | None, y: float | None) -> str:
            return "-" if not (x and y) else f"{x / y:.3f}"

        rows.append([o["nxfp"], o["mx"], o["unit"], format_figure(a.get("energy_pj_per_op")),
                     format_figure(b.get("energy_pj_per_op")),
                     ratio(a.get("energy_pj_per_op"), b.get("energy_pj_per_op")),
                     ratio(wa.get("random"), wb.get("random")), ratio(wa.get("zero"), wb.get("zero")),
                     format_figure((a.get("energy_components_pj") or {}).get("switching")),
                     format_figure((b.get("energy_components_pj") or {}).get("switching")),
                     format_figure(o["relative_mse_ratio"], 3)])
    out.append(_table(head, rows))
    return "\n".join(out)


def _encoder_section(data: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The cost of the adaptive search: each NxFP encoder against the MX encoder of the same bits, same lanes."""
    recs = {(r["unit"], r["format"]): r for r in data["results"]}
    out = ["\n## Encoder cost: NxFP adaptive search versus plain MX\n",
           "The NxFP encoder rounds every block once per (element candidate, Code Recycling option) pair and picks "
           "the pair of least hardware-metric error (spec 5.4, docs/encoder.md); the MX encoder has a single pair "
           "and no selection. Both are measured in this run with the same lanes and pipeline; ratio = NxFP / MX. "
           "Throughput is values encoded per second (lanes / initiation interval x Fmax).\n"]
    skipped = [f for f in data["flows"] if f not in data.get("unit_flows", {}).get("encode", data["flows"])]
    if "ice40" in skipped:
        out.append("The iCE40 flow is not run for the encoder: the 8-lane MX encoder (mxfp4_e2m1) alone takes "
                   "5,487 of the 7,680 logic cells of the largest supported iCE40 (HX8K; 23 MHz, docs/area.md), "
                   "and the NxFP encoders are 4-5 times larger in 7-series LUTs.\n")
    out.append("\n")
    head = ["NxFP", "MX", "lanes", "flow", "measure", "NxFP", "MX", "ratio", "NxFP MHz", "MX MHz",
            "NxFP Gvalues/s", "MX Gvalues/s"]
    table = []
    for o in rows:
        a = recs[("encode", o["nxfp"])]["flows"][o["flow"]]
        b = recs[("encode", o["mx"])]["flows"][o["flow"]]
        ratio = "-" if not (o["nxfp_value"] and o["mx_value"]) else f"{o['nxfp_value'] / o['mx_value']:.2f}x"
        tps = [v.get("throughput_per_s") for v in (a, b)]
        lanes = format_figure(recs[("encode", o["nxfp"])].get("lanes"))
        table.append([o["nxfp"], o["mx"], lanes, o["flow"], o["metric"],
                      format_figure(o["nxfp_value"], 6), format_figure(o["mx_value"], 6), ratio,
                      format_figure(a["figures"].get("fmax_mhz")), format_figure(b["figures"].get("fmax_mhz")),
                      *["-" if t is None else f"{t / 1e9:.3g}" for t in tps]])
    out.append(_table(head, table))
    return "\n".join(out)


def _plots(data: dict[str, Any], out_dir: Path) -> list[Path]:
    """``area.png`` (area measure per format, grouped by unit, one panel per flow) and ``pareto.png``
    (relative MSE versus area per unit, MX and NxFP marked differently, Pareto front drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fm, units, flows = data["formats"], data["units"], data["flows"]
    names = list(fm)
    recs = {(r["unit"], r["format"]): r for r in data["results"]}

    def value(unit: str, fmt: str, flow: str) -> float | None:
        v = recs.get((unit, fmt), {}).get("flows", {}).get(flow, {})
        return _metric(flow, v["figures"]) if "figures" in v else None

    paths = []
    fig, axes = plt.subplots(len(flows), 1, figsize=(max(6.0, 1.1 * len(names) + 2), 3.2 * len(flows)), squeeze=False)
    width = 0.8 / len(units)
    for ax, flow in zip(axes[:, 0], flows, strict=True):
        for j, unit in enumerate(units):
            xs = [i + (j - (len(units) - 1) / 2) * width for i in range(len(names))]
            ys = [value(unit, n, flow) for n in names]
            ax.bar(xs, [y if y is not None else 0 for y in ys], width, label=unit)
            for x, y, n in zip(xs, ys, names, strict=True):
                if y is None and "error" in recs.get((unit, n), {}).get("flows", {}).get(flow, {}):
                    ax.text(x, 0, "failed", rotation=90, ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        ax.set_ylabel(AREA_METRICS[flow][1], fontsize=8)
        ax.set_title(f"{flow} flow", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "area.png"))
    plt.close(fig)

    flow = next((f for f in ("asic", "generic", "ice40", "xilinx") if f in flows), flows[0])
    paths.append(_pareto_plot(plt, data, flow, out_dir / "pareto.png", value,
                              lambda unit: f"{unit} unit: {AREA_METRICS[flow][1]}",
                              lambda unit: f"{unit}: accuracy versus {flow} area"))
    if POWER_FLOW in flows:
        op = {"dot": "MAC"}
        paths.append(_pareto_plot(
            plt, data, POWER_FLOW, out_dir / "energy.png", value,
            lambda unit: f"{unit} unit: energy per {op.get(unit, 'value')} (pJ, MiniLM workload, OSU 0.18 um)",
            lambda unit: f"{unit}: accuracy versus energy per {op.get(unit, 'value')}"))
    return paths


def _pareto_plot(plt: Any, data: dict[str, Any], flow: str, path: Path, value: Callable[[str, str, str], float | None],
                 xlabel: Callable[[str], str], title: Callable[[str], str]) -> Path:
    """Relative MSE versus the flow's measure per unit (MX circles, NxFP triangles, the Pareto front dashed)."""
    fm, units = data["formats"], data["units"]
    fig, axes = plt.subplots(1, len(units), figsize=(5.5 * len(units), 4.2), squeeze=False)
    for ax, unit in zip(axes[0], units, strict=True):
        pts = [(value(unit, n, flow), fm[n]["relative_mse"], n) for n in fm]
        pts = [p for p in pts if p[0] is not None]
        for is_mx, marker, label in ((True, "o", "MX"), (False, "^", "NxFP / other")):
            sel = [p for p in pts if fm[p[2]]["mx"] == is_mx]
            if sel:
                ax.scatter([p[0] for p in sel], [p[1] for p in sel], marker=marker, s=50, label=label, zorder=3)
        for x, y, n in pts:
            ax.annotate(f"{n} ({fm[n]['bits_per_element']:g} b)", (x, y), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
        front = [pts[i] for i in pareto_front([(p[0], p[1]) for p in pts])]
        if front:
            xs, ys = staircase([(p[0], p[1]) for p in front])
            ax.plot(xs, ys, "k--", lw=1, label="Pareto front", zorder=2)
        ax.set_yscale("log")
        ax.margins(x=0.2, y=0.15)
        ax.set_xlabel(xlabel(unit), fontsize=8)
        ax.set_ylabel("relative MSE (lower is better)", fontsize=8)
        ax.set_title(title(unit), fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def _save(fig: Any, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
