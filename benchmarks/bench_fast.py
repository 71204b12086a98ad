"""Verification throughput: the compiled fast path against the cocotb path, on Verilator and Icarus, same run.

For decode (mxfp8_e4m3, 32 lanes), dot (nxfp4 x nxfp4, 32 lanes, fp32 accumulation) and encode
(mxfp4_e2m1, 8 lanes): a seeded vector set per (engine, simulator) (sizes below: the cocotb path gets
fewer vectors, rates are per second), driven with no valid gaps and no backpressure (pure simulator
speed; the default 0.2/0.3 are measured too for the fast path on Verilator). The fast path on Verilator
runs its C++ harness (``fast``) and the SystemVerilog testbench with ``--binary --timing`` (``fast-sv``),
on Icarus the SystemVerilog testbench. Reported per run: build
time (separately, from a fresh build directory), values compared per second and simulated cycles per
second of the simulation wall time (cocotb: measured inside the testbench, excluding start-up; fast:
the simulator process, start-up included), the end-to-end rate (fast: packing, simulation, unpacking and
the scoreboard), dot block pairs per second, and the ratio to the cocotb path on the same simulator.

    .venv/bin/python benchmarks/bench_fast.py [--seed S] [--quick] [--build-dir DIR]

Results: benchmarks/results/fast.json (written atomically).
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
from verif.fast import run_fast  # noqa: E402
from verif.regression import prepare_module, run_vectors  # noqa: E402
from verif.vectors import (  # noqa: E402
    decode_vectors,
    dot_random,
    dot_vectors,
    encode_random,
    encode_vectors,
    random_blocks,
)

# (unit, amount per (engine, simulator)): decode beats, dot blocks, encode blocks
SIZES = {
    "decode": {("fast", "verilator"): 65536, ("fast-sv", "verilator"): 16384, ("cocotb", "verilator"): 2048,
               ("fast", "icarus"): 2048, ("cocotb", "icarus"): 256},
    "dot": {("fast", "verilator"): 200_000, ("fast-sv", "verilator"): 50_000, ("cocotb", "verilator"): 5000,
            ("fast", "icarus"): 4000, ("cocotb", "icarus"): 1000},
    "encode": {("fast", "verilator"): 20000, ("fast-sv", "verilator"): 5000, ("cocotb", "verilator"): 1000,
               ("fast", "icarus"): 1000, ("cocotb", "icarus"): 200},
}
QUICK = 8  # --quick divides every size by this
UNITS = {"decode": ("mxfp8_e4m3", None), "dot": ("nxfp4", None), "encode": ("mxfp4_e2m1", 8)}


def vectors_for(unit: str, fmt_name: str, module, amount: int, rng: np.random.Generator):
    fmt = parse_format(fmt_name)
    lanes = module.manifest_data["lanes"]
    if unit == "decode":
        h, c = random_blocks(fmt, "codes", -(-amount * lanes // fmt.k), rng)
        return decode_vectors(fmt, np.repeat(h, fmt.k // lanes)[:amount], c.reshape(-1, lanes)[:amount],
                              reset_prefix=0)
    if unit == "dot":
        return dot_vectors(fmt, fmt, lanes, dot_random(fmt, fmt, amount, rng), rng, reset_prefix=0)
    x, cases = encode_random(fmt, amount, rng)
    return encode_vectors(fmt, x, lanes, cases=cases, reset_prefix=0)


def measure(unit: str, seed: int, build_root: Path, quick: bool) -> dict:
    fmt_name, lanes = UNITS[unit]
    fmt = parse_format(fmt_name)
    module = prepare_module(unit, fmt, fmt if unit == "dot" else None, lanes=lanes, build_root=build_root,
                            input_format="fp32" if unit == "encode" else None)
    out: dict = {"module": module.name, "format": fmt.label, "lanes": module.manifest_data["lanes"], "runs": {}}
    for (engine, sim), amount in SIZES[unit].items():
        amount = max(amount // QUICK, 16) if quick else amount
        rng = np.random.default_rng(seed)
        t0 = time.perf_counter()
        vs = vectors_for(unit, fmt_name, module, amount, rng)
        golden = time.perf_counter() - t0
        for gap, stall in ((0.0, 0.0), (0.2, 0.3)) if (engine, sim) == ("fast", "verilator") else ((0.0, 0.0),):
            t0 = time.perf_counter()
            if engine.startswith("fast"):
                res = run_fast(module, vs, sim, seed=seed, gap=gap, stall=stall, build_root=build_root,
                               tag=f"bench-{unit}", harness="sv" if engine == "fast-sv" else None)
            else:
                res = run_vectors(module, vs, sim, seed=seed, gap=gap, stall=stall, build_root=build_root,
                                  tag=f"bench-{unit}")
            total = time.perf_counter() - t0 - res.build.build_seconds
            if not res.passed:
                raise SystemExit(f"{unit} {engine} on {sim} failed: {res.message}")
            st = res.stats
            wall = max(st["wall_seconds"], 1e-9)
            e2e = max(total if engine.startswith("fast") else st["wall_seconds"], 1e-9)
            rec = {
                "amount": amount, "beats": vs.beats, "values": vs.values, "gap": gap, "stall": stall,
                "golden_seconds": round(golden, 2), "build_seconds": round(res.build.build_seconds, 2),
                "build_reused": res.build.reused, "cycles": st["cycles"], "sim_wall_seconds": round(wall, 3),
                "run_seconds_without_build": round(total, 2),
                "values_per_second": round(vs.values / wall, 1), "cycles_per_second": round(st["cycles"] / wall, 1),
                "values_per_second_end_to_end": round(vs.values / e2e, 1),
            }
            if unit == "dot":
                rec["block_pairs_per_second"] = round(vs.meta["blocks"] / wall, 1)
            key = f"{engine}-{sim}" + ("" if gap == 0 else "-gaps")
            out["runs"][key] = rec
            print(f"{unit:6} {key:22} build {res.build.build_seconds:6.1f} s  {vs.values:9d} values  "
                  f"{vs.values / wall:12,.0f} values/s  {st['cycles'] / wall:12,.0f} cycles/s"
                  + (f"  {rec['block_pairs_per_second']:10,.0f} block pairs/s" if unit == "dot" else ""),
                  flush=True)
    for sim in ("verilator", "icarus"):
        f, c = out["runs"][f"fast-{sim}"], out["runs"][f"cocotb-{sim}"]
        out[f"fast_over_cocotb_{sim}"] = {
            "values_per_second": round(f["values_per_second"] / c["values_per_second"], 1),
            "cycles_per_second": round(f["cycles_per_second"] / c["cycles_per_second"], 1)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help=f"sizes divided by {QUICK} (a smoke run)")
    ap.add_argument("--units", default="decode,dot,encode")
    ap.add_argument("--build-dir", type=Path,
                    help="reuse builds from here (default: a fresh directory, so build times are measured)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fast.json")
    args = ap.parse_args()
    fresh = args.build_dir is None
    (ROOT / "build").mkdir(exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(prefix="bench-fast-", dir=ROOT / "build")) if fresh else args.build_dir.resolve()
    try:
        results = {
            "benchmark": "fast", "seed": args.seed, "quick": args.quick,
            "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version(),
                        "platform": platform.platform()},
            "tools": {"verilator": tool_version("verilator"), "iverilog": tool_version("iverilog")},
            "goals": {"verilator_fast_decode_values_per_second": 1_000_000,
                      "verilator_fast_dot_block_pairs_per_second": 100_000},
            "units": {u: measure(u, args.seed, build_dir, args.quick) for u in args.units.split(",")},
        }
    finally:
        if fresh:
            shutil.rmtree(build_dir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
