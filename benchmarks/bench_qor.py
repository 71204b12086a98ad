#!/usr/bin/env python3
"""Quality of results: area and Fmax of the dot engine (every accumulation mode), the decode unit and the
encoder, NxFP against MX, on the asic and ice40 flows (issue 10's goals).

Usage: .venv/bin/python benchmarks/bench_qor.py [--quick] [--units dot,decode,encode] [--modes fp32,fused,exact]
           [--formats nxfp4,mxfp4_e2m1] [--lanes 8,32] [--flows asic,ice40] [--pipeline P] [--period NS]
           [--jobs 2] [--cache DIR] [--out benchmarks/results/qor.json]

Every configuration is built with its default (timing-closed) pipeline unless ``--pipeline`` says otherwise,
and measured with ``nxfp_hw.flows.area.run_area`` (docs/area.md); flow runs are cached by Verilog, flow
options, tool versions and flow sources, so a rerun only measures what changed. The NxFP/MX ratio of every
pair (same unit, accumulation mode, lanes, pipeline, flow) comes from the same run. For the asic dot engine
the combinational area of each pipeline stage is measured too (``timing.stage_areas``, on the same engine
with every register position enabled so that every stage stands alone): products plus adder tree alone,
the reference of the 2x area goal. Prints a table and the goals, records ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nxfp_hw import __version__  # noqa: E402
from nxfp_hw.flows import area as area_mod  # noqa: E402
from nxfp_hw.flows.accuracy import write_text_atomic  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "qor.json"
UNITS = ("dot", "decode", "encode")
MODES = ("fp32", "fused", "exact")
FORMATS = ("nxfp4", "mxfp4_e2m1")
LANES = (8, 32)
FLOWS = ("asic", "ice40")
PAIRS = (("nxfp4", "mxfp4_e2m1"),)
#: Issue 10's reference: 32 E2M1 x E2M1 products and adder tree alone on the asic flow, um^2.
ISSUE_PRODUCTS_TREE_UM2 = 231_000
METRIC = {"asic": ("area_um2", "um^2"), "ice40": ("luts", "LUT4")}


def configs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (unit, mode, format, lanes, flow) to measure, largest first (they take longest)."""
    out = []
    for unit in args.units:
        for mode in (args.modes if unit == "dot" else [None]):
            for lanes in args.lanes:
                for flow in args.flows:
                    for fmt in args.formats:
                        out.append({"unit": unit, "acc": mode, "format": fmt, "lanes": lanes, "flow": flow,
                                    "pipeline": args.pipeline})
    return sorted(out, key=lambda c: (-c["lanes"], c["flow"] != "ice40", c["unit"] != "dot"))


def label(c: dict[str, Any]) -> str:
    mode = f" {c['acc']}" if c["acc"] else ""
    return f"{c['unit']}{mode} {c['format']} l{c['lanes']} {c['flow']}"


def _flow_digest() -> str:
    h = hashlib.sha256()
    for name in ("area.py", "tools.py", "timing.py"):
        h.update((ROOT / "nxfp_hw" / "flows" / name).read_bytes())
    return h.hexdigest()[:16]


def measure(c: dict[str, Any], cache: str, period: float | None, ice40_device: str = "hx8k",
            cache_only: bool = False) -> dict[str, Any]:
    """Build one configuration, run its flow (cached), and return the record (in a worker process);
    ``cache_only``: a configuration the cache does not hold is recorded as not measured."""
    from nxfp_hw.flows.generate import build_unit, emit_verilog
    from nxfp_hw.flows.manifest import accumulation_facts, initiation_intervals, pipeline_facts
    from nxfp_hw.flows.timing import stage_areas
    from nxfp_hw.formats import parse_format

    t0 = time.monotonic()
    rec: dict[str, Any] = {**c}
    try:
        fmt = parse_format(c["format"])
        kwargs: dict[str, Any] = {"lanes": c["lanes"], "pipeline": c["pipeline"]}
        if c["acc"]:
            kwargs["acc"] = c["acc"]
        comp = build_unit(c["unit"], fmt, **kwargs)
        verilog = emit_verilog(comp)
        ii_beat, ii_block = initiation_intervals(comp)
        rec.update(module=comp.module_name, latency=int(comp.latency), initiation_interval=ii_beat,
                   initiation_interval_per_block=ii_block, block_size=fmt.k, registers=pipeline_facts(comp),
                   accumulation=accumulation_facts(comp))
        opts: dict[str, Any] = {"period_ns": period} if c["flow"] == "asic" and period else {}
        if c["flow"] == "ice40":
            opts["ice40_device"] = ice40_device
        versions = {t: area_mod.tools.tool_version(t) for t in area_mod._FLOW_TOOLS[c["flow"]]}
        key = hashlib.sha256(json.dumps([hashlib.sha256(verilog.encode()).hexdigest(), comp.module_name, c["flow"],
                                         opts, versions, _flow_digest()], sort_keys=True).encode()).hexdigest()[:20]
        path = Path(cache) / "runs" / f"{key}.json"
        workdir = Path(cache) / "work" / f"{comp.module_name}_{key[:8]}"
        cached = json.loads(path.read_text()) if path.is_file() else None
        if cached is not None and "error" in cached:
            rec.update(cached, cached=True)
            rec["seconds"] = round(time.monotonic() - t0, 1)
            return rec
        if cached is None and cache_only:
            rec.update(error="not measured: not in the cache (--cache-only)", not_measured=True)
            rec["seconds"] = round(time.monotonic() - t0, 1)
            return rec
        if cached is None:
            try:
                res = area_mod.run_area(verilog, comp.module_name, c["flow"], workdir=workdir, **opts)
            except area_mod.FlowError as exc:
                if any(w in str(exc) for w in ("ICESTORM_LC", "placement failed", "does not fit")):  # deterministic
                    write_text_atomic(path, json.dumps({"error": str(exc), "fits": False}, indent=1) + "\n")
                raise
            fig = {k: v for k, v in res.figures.items() if k != "cells_by_type"}
            result: dict[str, Any] = {"figures": fig, "notes": res.notes, "tools": res.tools,
                                      "flow_seconds": round(res.seconds, 1)}
        else:
            result = cached
        if (c["unit"] == "dot" and c["flow"] == "asic" and result.get("stage_areas_of") != "every position"
                and not cache_only):
            # Stage areas need every stage between registers: the same engine with every position on.
            full = build_unit(c["unit"], fmt, **{**kwargs, "pipeline": "all"})
            stage_dir = workdir / "asic"
            if tuple(full.cuts) != tuple(comp.cuts):
                stage_dir = Path(cache) / "work" / f"{full.module_name}_{key[:8]}_stages"
                area_mod.run_area(emit_verilog(full), full.module_name, "asic", workdir=stage_dir, **opts)
                stage_dir = stage_dir / "asic"
            result["stage_area_um2"] = stage_areas(stage_dir, rec["registers"]["positions"])
            result["stage_areas_of"] = "every position"
            cached = None
        if cached is None:
            write_text_atomic(path, json.dumps(result, indent=1) + "\n")
        rec.update(result, cached=cached is not None)
    except Exception as exc:  # noqa: BLE001 - a failing configuration is recorded, the run goes on
        rec["error"] = str(exc) if isinstance(exc, area_mod.UserError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, area_mod.UserError):
            rec["traceback"] = traceback.format_exc(limit=3)
    rec["seconds"] = round(time.monotonic() - t0, 1)
    return rec


def throughput(r: dict[str, Any]) -> float | None:
    fmax = r.get("figures", {}).get("fmax_mhz")
    if fmax is None or not r.get("initiation_interval_per_block"):
        return None
    return r["block_size"] / r["initiation_interval_per_block"] * fmax * 1e6


def ratios(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """NxFP / MX of every pair measured in this run (same unit, mode, lanes, pipeline, flow)."""
    by = {(r["unit"], r["acc"], r["format"], r["lanes"], r["flow"]): r for r in records}
    out = []
    for nx, mx in PAIRS:
        for (unit, acc, fmt, lanes, flow), a in by.items():
            b = by.get((unit, acc, mx, lanes, flow))
            if fmt != nx or b is None or "figures" not in a or "figures" not in b:
                continue
            metric = METRIC[flow][0]
            va, vb = a["figures"].get(metric), b["figures"].get(metric)
            fa, fb = a["figures"].get("fmax_mhz"), b["figures"].get("fmax_mhz")
            out.append({"unit": unit, "acc": acc, "lanes": lanes, "flow": flow, "nxfp": nx, "mx": mx,
                        "same_pipeline": a.get("registers", {}).get("enabled") == b.get("registers", {}).get("enabled"),
                        "metric": metric, "nxfp_value": va, "mx_value": vb,
                        "area_ratio": round(va / vb, 4) if va and vb else None,
                        "nxfp_fmax_mhz": fa, "mx_fmax_mhz": fb,
                        "fmax_ratio": round(fa / fb, 4) if fa and fb else None})
    return out


def products_and_tree(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Area of each asic dot engine against its own products and adder tree alone (stage areas)."""
    out = []
    for r in records:
        stages = r.get("stage_area_um2")
        if not stages or "figures" not in r:
            continue
        core = stages.get("products", 0.0) + stages.get("tree", 0.0)
        total = r["figures"]["area_um2"]
        out.append({"acc": r["acc"], "format": r["format"], "lanes": r["lanes"], "area_um2": total,
                    "products_tree_um2": round(core, 1),
                    "decode_products_tree_um2": round(core + stages.get("decode", 0.0), 1),
                    "ratio": round(total / core, 3) if core else None,
                    "ratio_with_decode": round(total / (core + stages.get("decode", 0.0)), 3) if core else None,
                    "ratio_to_issue_reference": round(total / ISSUE_PRODUCTS_TREE_UM2, 3) if r["lanes"] == 32 else None,
                    "pipeline": r["registers"]["enabled"]})
    return out


def _fig(records: list[dict[str, Any]], **key: Any) -> dict[str, Any] | None:
    for r in records:
        if all(r.get(k) == v for k, v in key.items()):
            return r
    return None


def goals(records: list[dict[str, Any]], pairs: list[dict[str, Any]], core: list[dict[str, Any]]) -> list[dict]:
    """Issue 10's goals, each with the figure this run measured (None: not measured in this run)."""
    out = []

    def fmax_goal(what: str, target: float, **key: Any) -> None:
        r = _fig(records, **key)
        v = None if r is None else r.get("figures", {}).get("fmax_mhz")
        note = "" if r is None or "error" not in r else r["error"][:120]
        if r is not None and key.get("acc") == "exact" and r.get("initiation_interval_per_block") not in (None, 1):
            note = f"initiation interval {r['initiation_interval_per_block']} per block"
        out.append({"goal": what, "target": f">= {target:g} MHz", "measured": v,
                    "met": None if v is None else bool(v >= target and not note), "note": note})

    fmax_goal("dot nxfp4 32 lanes exact, one block per cycle (asic)", 250, unit="dot", acc="exact", format="nxfp4",
              lanes=32, flow="asic")
    fmax_goal("dot nxfp4 8 lanes fp32 (asic)", 200, unit="dot", acc="fp32", format="nxfp4", lanes=8, flow="asic")
    for p in pairs:
        if p["unit"] == "dot" and p["flow"] == "asic":
            v = p["area_ratio"]
            note = "" if p.get("same_pipeline", True) else (
                "default pipelines differ: the wide MX exact window keeps registers the 95-bit nxfp4 one does not need")
            out.append({"goal": f"dot area nxfp4 / mxfp4_e2m1, {p['lanes']} lanes {p['acc']} (asic)",
                        "target": "<= 1.15", "measured": v, "met": None if v is None else v <= 1.15, "note": note})
    fmax_goal("decode nxfp4 32 lanes (asic)", 300, unit="decode", format="nxfp4", lanes=32, flow="asic")
    fmax_goal("decode nxfp4 32 lanes (ice40)", 60, unit="decode", format="nxfp4", lanes=32, flow="ice40")
    fmax_goal("dot nxfp4 8 lanes fp32 (ice40)", 40, unit="dot", acc="fp32", format="nxfp4", lanes=8, flow="ice40")
    fmax_goal("encoder nxfp4 8 lanes (asic)", 200, unit="encode", format="nxfp4", lanes=8, flow="asic")
    # The products of coded elements include the elements' decode (sign, significand, exponent): a product
    # cannot be formed without it, and the issue's own reference (231,000 um^2 for E2M1 x E2M1) is larger
    # than this flow's products + tree of either format without it. The ratio without decode is in the note.
    for c in core:
        if c["format"] == "nxfp4" and c["lanes"] == 32:
            v = c["ratio_with_decode"]
            out.append({"goal": f"dot nxfp4 32 lanes {c['acc']}: area / (element decode + products + tree) (asic)",
                        "target": "<= 2", "measured": v, "met": None if v is None else v <= 2,
                        "note": f"decode+products+tree {c['decode_products_tree_um2']:,.0f} um^2; products+tree "
                                f"alone {c['products_tree_um2']:,.0f} um^2 ({c['ratio']}x); against the issue's "
                                f"231,000 um^2 {c['ratio_to_issue_reference']}x"})
    return out


def _num(v: Any, nd: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{nd}g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def render(data: dict[str, Any]) -> str:
    lines = [f"{'configuration':<36} {'area':>12} {'Fmax MHz':>9} {'lat':>4} {'II/blk':>6} {'G el/s':>7} "
             f"{'FFs':>6} {'regs':>6}  note"]
    for r in data["results"]:
        fig = r.get("figures", {})
        metric, unit = METRIC[r["flow"]]
        area = f"{_num(fig.get(metric))} {unit}" if fig.get(metric) is not None else "-"
        tp = throughput(r)
        pipe = r.get("registers") or {}
        regs = f"{len(pipe.get('enabled', []))}/{len(pipe.get('positions', []))}" if pipe.get("positions") else "-"
        note = r.get("error", "")[:70] or (fig.get("device", "") if r["flow"] == "ice40" else "")
        lines.append(f"{label(r):<36} {area:>12} {_num(fig.get('fmax_mhz')):>9} {_num(r.get('latency')):>4} "
                     f"{_num(r.get('initiation_interval_per_block')):>6} "
                     f"{'-' if tp is None else f'{tp / 1e9:.3g}':>7} {_num(fig.get('ffs')):>6} {regs:>6}  {note}")
    if data["ratios"]:
        lines.append("\nNxFP / MX (same unit, mode, lanes, pipeline, flow; measured in this run)")
        for p in data["ratios"]:
            mode = f" {p['acc']}" if p["acc"] else ""
            lines.append(f"  {p['unit']}{mode} l{p['lanes']} {p['flow']:<6} {p['metric']:<9} "
                         f"{_num(p['area_ratio'])}x   Fmax {_num(p['fmax_ratio'])}x"
                         + ("" if p.get("same_pipeline", True) else "   (default pipelines differ)"))
    if data["products_and_tree"]:
        lines.append("\nDot engine area against its own products + adder tree (asic stage areas)")
        for c in data["products_and_tree"]:
            lines.append(f"  {c['format']:<11} l{c['lanes']:<3} {c['acc']:<6} engine {_num(c['area_um2'])} um^2, "
                         f"products+tree {_num(c['products_tree_um2'])} um^2 (ratio {_num(c['ratio'])}), with "
                         f"element decode {_num(c['decode_products_tree_um2'])} um^2 "
                         f"(ratio {_num(c['ratio_with_decode'])})")
    if data["goals"]:
        lines.append("\nGoals (issue 10)")
        for g in data["goals"]:
            verdict = {True: "met", False: "NOT met", None: "not measured"}[g["met"]]
            lines.append(f"  {g['goal']:<62} {g['target']:>12}  {_num(g['measured']):>8}  {verdict}"
                         + (f"  ({g['note']})" if g["note"] else ""))
    return "\n".join(lines)


def _csv(kind: type = str):
    def parse(text: str) -> list:
        items = [kind(t.strip()) for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        return items
    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=_csv(), default=list(UNITS), help="dot,decode,encode (default all)")
    parser.add_argument("--modes", type=_csv(), default=list(MODES), help="dot accumulation modes (default all)")
    parser.add_argument("--formats", type=_csv(), default=list(FORMATS), help="default nxfp4,mxfp4_e2m1")
    parser.add_argument("--lanes", type=_csv(int), default=list(LANES), help="default 8,32")
    parser.add_argument("--flows", type=_csv(), default=list(FLOWS), help="asic,ice40 (default both)")
    parser.add_argument("--quick", action="store_true", help="8 lanes on the asic flow only (minutes, not an hour)")
    parser.add_argument("--pipeline", help="pipeline of every unit (default: each unit's timing-closed default)")
    parser.add_argument("--period", type=float, help="ASIC target period in ns (default: the flow's, 10 ns)")
    parser.add_argument("--ice40-device", choices=area_mod.ICE40_DEVICES, default="hx8k",
                        help="iCE40 part (default hx8k, the part of issue 10's goal; auto: UP5K, HX8K if it does "
                             "not fit)")
    parser.add_argument("--cache-only", action="store_true",
                        help="run no flow: record what the cache holds (configurations measured by earlier runs "
                             "of this script on the same Verilog, options and tools), the rest as not measured")
    parser.add_argument("--jobs", "-j", type=int, default=2, help="configurations measured in parallel (default 2)")
    parser.add_argument("--cache", type=Path, default=area_mod.default_cache_dir() / "qor",
                        help="flow-run cache and work directories (default $XDG_CACHE_HOME/nxfp-hw/qor)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON record (default {RESULTS.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    if args.quick:
        args.lanes = [n for n in args.lanes if n == 8] or [8]
        args.flows = [f for f in args.flows if f == "asic"] or ["asic"]
    bad = [u for u in args.units if u not in UNITS] + [m for m in args.modes if m not in MODES] + [
        f for f in args.flows if f not in FLOWS]
    if bad or args.jobs < 1:
        parser.error(f"unknown unit, mode or flow: {', '.join(bad)}" if bad else "--jobs must be >= 1")
    todo = configs(args)
    print(f"{len(todo)} configurations on {args.jobs} worker(s); cache {args.cache}", flush=True)
    t0 = time.monotonic()
    records: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(measure, c, str(args.cache), args.period, args.ice40_device, args.cache_only): c
                   for c in todo}
        for n, fut in enumerate(as_completed(futures), 1):
            r = fut.result()
            records.append(r)
            fig = r.get("figures", {})
            metric, unit = METRIC[r["flow"]]
            what = (f"FAILED: {r['error'][:150]}" if "error" in r else
                    f"{_num(fig.get(metric))} {unit}, {_num(fig.get('fmax_mhz'))} MHz")
            took = "cached" if r.get("cached") else f"{r['seconds']} s"
            print(f"[{n}/{len(todo)}] {label(r)} ... {what} ({took})", flush=True)
    records.sort(key=lambda c: (UNITS.index(c["unit"]), MODES.index(c["acc"]) if c["acc"] else 0, c["lanes"],
                                FLOWS.index(c["flow"]), c["format"]))
    pairs = ratios(records)
    core = products_and_tree(records)
    data = {
        "benchmark": "qor", "generator": {"name": "nxfp-hw", "version": __version__},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "tools": {t: area_mod.tools.tool_version(t) for f in args.flows for t in area_mod._FLOW_TOOLS[f]},
        "options": {"units": args.units, "modes": args.modes, "formats": args.formats, "lanes": args.lanes,
                    "flows": args.flows, "pipeline": args.pipeline, "period_ns": args.period or
                    area_mod.DEFAULT_PERIOD_NS, "ice40_freq_mhz": area_mod.DEFAULT_ICE40_FREQ_MHZ,
                    "ice40_device": args.ice40_device},
        "wall_seconds": round(time.monotonic() - t0, 1),
        "results": [{k: v for k, v in r.items() if k != "traceback"} for r in records],
        "ratios": pairs, "products_and_tree": core, "goals": goals(records, pairs, core),
    }
    print()
    print(render(data))
    write_text_atomic(args.out, json.dumps(data, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 1 if any("error" in r and r["flow"] != "ice40" for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
