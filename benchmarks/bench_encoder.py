#!/usr/bin/env python3
"""Encoder selection policies side by side (issue 14): asic area and Fmax of every policy's encoder
against the MX encoder of the same element width, measured in one run, and the relative MSE of every
policy on the all-MiniLM-L6-v2 weights and on a heavy-tailed activation-like tensor.

Usage: .venv/bin/python benchmarks/bench_encoder.py [--formats nxfp4,nxfp6] [--policies scaled,exact,sq6,abs,hits]
           [--lanes 8] [--jobs 2] [--area-skip nxfp6:abs]
           [--no-area] [--no-accuracy] [--cache DIR] [--out benchmarks/results/encoder.json]

Every encoder is built at its default pipeline with ``EncodeUnit(fmt, lanes, select=policy)`` and measured
with ``nxfp_hw.flows.area.run_area(verilog, top, "asic", workdir=...)``; a run is cached by its Verilog and
tool versions. The ratio of each NxFP encoder to its MX baseline (``nxfp4`` / ``mxfp4_e2m1``, ``nxfp6`` /
``mxfp6_e2m3``) uses figures of the same run. Accuracy: :func:`nxfp_hw.flows.select_report.policy_accuracy`.
Prints the table (:func:`nxfp_hw.flows.select_report.policy_table`) and records ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nxfp_hw import __version__  # noqa: E402
from nxfp_hw.flows.accuracy import write_text_atomic  # noqa: E402
from nxfp_hw.flows.select_report import (  # noqa: E402
    MX_BASELINE,
    measure_encoder_area,
    policy_accuracy,
    policy_rows,
    policy_table,
)
from nxfp_hw.golden.select import SELECT_POLICIES  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "encoder.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--formats", default="nxfp4,nxfp6")
    ap.add_argument("--policies", default=",".join(SELECT_POLICIES))
    ap.add_argument("--lanes", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-area", action="store_true")
    ap.add_argument("--area-skip", default="", help="format:policy pairs not measured on the asic flow (shown as -)")
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--accuracy-from", type=Path, help="reuse the accuracy figures of an earlier record")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "nxfp-hw" / "encoder"))
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    policies = [p for p in args.policies.split(",") if p]
    t0 = time.monotonic()
    skip = {tuple(x.split(":")) for x in args.area_skip.split(",") if x}
    configs = [(MX_BASELINE[f], None) for f in formats] + [(f, p) for f in formats for p in policies
                                                           if (f, p) not in skip]
    area: dict[str, Any] = {}
    if not args.no_area:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futs = {f"{f}:{p or '-'}": pool.submit(measure_encoder_area, f, p, args.lanes, args.cache)
                    for f, p in configs}
            for key, fut in futs.items():
                area[key] = fut.result()
                rec = area[key]
                print(f"{key}: {rec.get('area_um2')} um^2, {rec.get('fmax_mhz')} MHz "
                      f"({rec.get('seconds')} s){' ERROR ' + rec['error'] if 'error' in rec else ''}", flush=True)
    accuracy: dict[str, Any] = {}
    if args.accuracy_from is not None:
        accuracy = json.loads(args.accuracy_from.read_text())["accuracy"]
    elif not args.no_accuracy:
        accuracy = policy_accuracy(formats, policies)
    rows = policy_rows(formats, policies, area, accuracy)
    print(policy_table(rows))
    record = {
        "benchmark": "encoder selection policies (issue 14)",
        "generator": {"name": "nxfp-hw", "version": __version__},
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "options": {"formats": formats, "policies": policies, "lanes": args.lanes},
        "wall_seconds": round(time.monotonic() - t0, 1),
        "area": area,
        "accuracy": accuracy,
        "rows": rows,
        "digest": hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16],
    }
    write_text_atomic(Path(args.out), json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
