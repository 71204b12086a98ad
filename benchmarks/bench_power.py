#!/usr/bin/env python3
"""Energy per operation and gate-level verification of every default unit (issue 13's goals).

Usage: .venv/bin/python benchmarks/bench_power.py [--quick] [--units decode,dot] [--formats F,...] [--lanes 8]
           [--blocks 64] [--sim icarus] [--regression-sims icarus,verilator] [--no-regression] [--seed S]
           [--out benchmarks/results/power.json]

Per (unit, format), both dot operands in the format, the unit's default pipeline and accumulation mode:

1. the power flow (``nxfp_hw.flows.power.run_power``, docs/area.md "Energy per operation"): asic
   synthesis and Fmax, gate-level simulation of the MiniLM, random and all-zero workloads (bit-exact),
   OpenSTA ``report_power`` at the reference clock and at Fmax; its runtime split into asic flow,
   simulation and OpenSTA;
2. unless ``--no-regression``, the unit's cocotb regression (directed and random vectors, random valid gaps
   and backpressure, a mid-stream reset) on the same netlist on each ``--regression-sims`` simulator.

Then the NxFP / MX energy ratios of the report's pairs (same run, same data, lanes, clock and mode) and the
goals: nxfp4 dot energy per MAC <= 1.10x mxfp4_e2m1, nxfp4 decode energy per value <= 1.0x. ``--quick``:
nxfp4 and mxfp4_e2m1 only. Prints a table, records ``--out``. The seed is printed; ``NXFP_SEED`` overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nxfp_hw import __version__  # noqa: E402
from nxfp_hw.flows import area as area_mod  # noqa: E402
from nxfp_hw.flows.accuracy import write_text_atomic  # noqa: E402
from nxfp_hw.flows.report import DEFAULT_FORMATS, OVERHEAD_PAIRS  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "power.json"
GOALS = {("dot", "nxfp4", "mxfp4_e2m1"): 1.10, ("decode", "nxfp4", "mxfp4_e2m1"): 1.0}


def regression_vectors(unit: str, fmt: Any, manifest: dict[str, Any], simulator: str, seed: int) -> Any:
    """The unit's regression stimulus (as in tests/test_cocotb_*): decode every (header, code) on Verilator,
    a 64-beat sample on Icarus; dot directed + mode-directed + 24 random blocks; encode directed + 12 random."""
    from verif import vectors as v

    rng = np.random.default_rng(seed)
    lanes = int(manifest["lanes"])
    if unit == "decode":
        h, c = v.decode_exhaustive(fmt, lanes)
        if simulator == "icarus":
            pick = rng.choice(h.size, min(64, h.size), replace=False)
            h, c = h[pick], c[pick]
        return v.decode_vectors(fmt, h, c)
    if unit == "dot":
        mode, guard = v.dot_mode_of(manifest)
        blocks = v.dot_directed(fmt, fmt, rng)
        blocks.add_stream(v.dot_mode_directed(fmt, fmt, rng, guard_bits=guard))
        blocks.add_stream(v.dot_random(fmt, fmt, 24, rng))
        return v.dot_vectors(fmt, fmt, lanes, blocks, rng, mode=mode, guard_bits=guard)
    x, cases = v.encode_directed(fmt, rng)
    xr, cr = v.encode_random(fmt, 12, rng)
    return v.encode_vectors(fmt, np.concatenate([x, xr]), lanes, cases=cases + cr)


def measure(unit: str, fmt_name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from nxfp_hw.flows.gate_level import gate_level_module, run_gate_level
    from nxfp_hw.flows.power import run_power
    from nxfp_hw.formats import parse_format
    from verif.regression import prepare_module

    fmt = parse_format(fmt_name)
    rec: dict[str, Any] = {"unit": unit, "format": fmt_name}
    wd = work / f"{unit}_{fmt.ident}"
    module = prepare_module(unit, fmt, fmt if unit == "dot" else None, lanes=args.lanes, build_root=args.build_root)
    t0 = time.monotonic()
    asic = area_mod.run_area(module.verilog, module.name, "asic", workdir=wd)
    asic_s = time.monotonic() - t0
    res = run_power(unit, fmt, workdir=wd, build_root=args.build_root, lanes=args.lanes, blocks=args.blocks,
                    seed=args.seed, simulator=args.sim, asic=asic)
    f = res.figures
    rec.update(module=res.top, cells=asic.figures["cells"], area_um2=asic.figures["area_um2"], fmax_mhz=f["fmax_mhz"],
               op=f["op"], energy_pj_per_op=f["energy_pj_per_op"], components_pj=f["energy_components_pj"],
               by_workload=f["energy_pj_per_op_by_workload"],
               at_fmax={w: r["at_fmax"]["energy_pj_per_op"]["total"] for w, r in f["workloads"].items()
                        if r["at_fmax"]},
               cycles={w: r["cycles"] for w, r in f["workloads"].items()},
               toggle_rate={w: r["activity"]["mean_toggle_rate"] for w, r in f["workloads"].items()},
               seconds={"asic": round(asic_s, 2), "simulation": f["sim_seconds"], "opensta": f["sta_seconds"],
                        "power_flow": round(asic_s + res.seconds, 2)})
    if args.regression_sims:
        gl = gate_level_module(module, wd / "asic", wd / "gate_level")
        rec["regression"] = {}
        for sim in args.regression_sims:
            vs = regression_vectors(unit, fmt, module.manifest_data, sim, args.seed)
            t0 = time.monotonic()
            run = run_gate_level(gl, vs, sim, seed=args.seed, build_root=args.build_root / "gl", tag=f"bench-{sim}")
            rec["regression"][sim] = {"passed": run.passed, "values": run.stats.get("values"),
                                      "mismatches": run.stats.get("mismatches"), "message": run.message[:300],
                                      "build_seconds": round(run.build_seconds, 1),
                                      "seconds": round(time.monotonic() - t0, 1)}
            if run.samples is not None:
                run.samples.unlink(missing_ok=True)
    return rec


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="nxfp4 and mxfp4_e2m1 only")
    p.add_argument("--units", default="decode,dot")
    p.add_argument("--formats", default=",".join(DEFAULT_FORMATS))
    p.add_argument("--lanes", type=int, default=8)
    p.add_argument("--blocks", type=int, default=64, help="blocks per workload (default 64)")
    p.add_argument("--sim", default="icarus", choices=("icarus", "verilator"), help="simulator of the power runs")
    p.add_argument("--regression-sims", default="icarus,verilator")
    p.add_argument("--no-regression", action="store_true")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--build-root", type=Path, default=ROOT / "build" / "sim")
    p.add_argument("--work", type=Path, default=ROOT / "build" / "bench_power")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    args.seed = int(os.environ.get("NXFP_SEED", args.seed if args.seed is not None else 2024))
    args.build_root = args.build_root.resolve()
    units = [u for u in args.units.split(",") if u]
    formats = ["nxfp4", "mxfp4_e2m1"] if args.quick else [f for f in args.formats.split(",") if f]
    args.regression_sims = [] if args.no_regression else [s for s in args.regression_sims.split(",") if s]
    print(f"bench_power: seed {args.seed}, units {', '.join(units)}, formats {', '.join(formats)}, lanes {args.lanes}, "
          f"{args.blocks} blocks per workload, power simulator {args.sim}, regression on "
          f"{', '.join(args.regression_sims) or 'nothing'}", flush=True)
    t_all = time.monotonic()
    records = []
    for unit in units:
        for fmt in formats:
            t0 = time.monotonic()
            try:
                rec = measure(unit, fmt, args, args.work.resolve())
            except Exception as exc:  # noqa: BLE001 - a failed configuration is recorded, the sweep goes on
                rec = {"unit": unit, "format": fmt, "error": f"{type(exc).__name__}: {exc}"}
                traceback.print_exc()
            rec["wall_seconds"] = round(time.monotonic() - t0, 1)
            records.append(rec)
            reg = " ".join(f"{s} {'pass' if r['passed'] else 'FAIL'}" for s, r in rec.get("regression", {}).items())
            print(f"{unit:7s} {fmt:11s} " + (f"{rec['energy_pj_per_op']:8.3f} pJ/{rec['op']:5s} "
                                             f"(random {rec['by_workload']['random']:.3f}, zero "
                                             f"{rec['by_workload']['zero']:.3f}) power flow "
                                             f"{rec['seconds']['power_flow']:.1f} s; gate-level {reg}"
                                             if "error" not in rec else f"FAILED: {rec['error']}"), flush=True)
    by = {(r["unit"], r["format"]): r for r in records if "error" not in r}
    ratios, goals = [], []
    for nx, mx, why in OVERHEAD_PAIRS:
        for unit in units:
            a, b = by.get((unit, nx)), by.get((unit, mx))
            if not (a and b):
                continue
            row = {"unit": unit, "nxfp": nx, "mx": mx, "why": why,
                   "ratio": round(a["energy_pj_per_op"] / b["energy_pj_per_op"], 4),
                   "by_workload": {w: round(a["by_workload"][w] / b["by_workload"][w], 4) for w in a["by_workload"]},
                   "switching_ratio": round(a["components_pj"]["switching"] / b["components_pj"]["switching"], 4)}
            ratios.append(row)
            limit = GOALS.get((unit, nx, mx))
            if limit is not None:
                goals.append({"goal": f"{nx} {unit} energy per {a['op']} <= {limit:.2f}x {mx}", "ratio": row["ratio"],
                              "met": row["ratio"] <= limit})
    regression_ok = all(r["passed"] for rec in records for r in rec.get("regression", {}).values())
    complete = all("error" not in r for r in records)
    print("\nNxFP / MX energy per operation (MiniLM workload, reference clock):")
    for r in ratios:
        print(f"  {r['unit']:7s} {r['nxfp']}/{r['mx']}: {r['ratio']:.3f} (random {r['by_workload']['random']:.3f}, "
              f"zero {r['by_workload']['zero']:.3f}; switching {r['switching_ratio']:.3f})")
    for g in goals:
        print(f"  goal {g['goal']}: {g['ratio']:.3f} {'met' if g['met'] else 'NOT MET'}")
    print(f"  every configuration has an energy figure: {complete}; gate-level regressions pass: {regression_ok}")
    total = time.monotonic() - t_all
    print(f"total {total:.0f} s")
    data = {"benchmark": "power", "generator": {"name": "nxfp-hw", "version": __version__},
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "tools": {t: area_mod.tools.tool_version(t) for t in ("yosys", "sta", "iverilog")},
            "seed": args.seed, "lanes": args.lanes, "blocks": args.blocks, "simulator": args.sim,
            "regression_simulators": args.regression_sims, "records": records, "ratios": ratios, "goals": goals,
            "all_energy_figures": complete, "gate_level_regressions_pass": regression_ok,
            "total_seconds": round(total, 1)}
    write_text_atomic(args.out, json.dumps(data, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if complete and regression_ok and all(g["met"] for g in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
