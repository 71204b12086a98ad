"""Icarus Verilog speed of the generated decode unit (and the dot engine for comparison), plain Verilog.

Each configuration is emitted from the current sources into a temporary directory and driven by a
small generated Verilog testbench (no cocotb): one new random beat per clock (``$random``, so the
stimulus depends only on the port widths), ``valid`` and ``ready`` always high, and a 32-bit XOR
checksum of every output word. Cycles per second are ``(N - 1) / (t(N) - t(1))`` of the ``vvp``
wall times, so Icarus start-up is excluded.

``--baseline DIR`` also times the ``.v`` files found in DIR (e.g. a copy of an earlier
``rtl_out/``) whose module names match, over ``--baseline-cycles`` cycles, and checks that their
checksum equals the current module's over the same cycles (same stimulus, same outputs).

    .venv/bin/python benchmarks/bench_icarus_decode.py [--cycles 2000] [--baseline DIR]

Results: benchmarks/results/icarus_decode.json (written atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nxfp_hw.flows.generate import build_unit, emit_verilog  # noqa: E402
from nxfp_hw.flows.tools import find_tool, tool_version  # noqa: E402
from nxfp_hw.formats import parse_format  # noqa: E402

# (unit, format, lanes, out, pipeline); lanes None = the format's k.
CONFIGS = [
    ("decode", "mxfp8_e4m3", 32, "fp32", 0),
    ("decode", "mxfp8_e4m3", 8, "fp32", 0),
    ("decode", "mxfp8_e4m3", 32, "bf16", 2),
    ("decode", "mxfp4_e2m1", 32, "fp32", 0),
    ("decode", "nxfp4", 32, "fp32", 0),
    ("decode", "nxfp6", 32, "fp32", 0),
    ("dot", "mxfp8_e4m3", 32, None, 3),
]


def testbench(verilog: str, top: str, cycles: int) -> str:
    """A testbench for module ``top`` of ``verilog``: random inputs each cycle, XOR checksum of the outputs."""
    body = re.search(rf"module {re.escape(top)}\(.*?\);(.*?)endmodule", verilog, re.S)
    if body is None:
        raise SystemExit(f"module {top} not found")
    ports = [(d, int(w[1:].split(":")[0]) + 1 if w else 1, name)
             for d, w, name in re.findall(r"^\s*(input|output)\s*(\[\d+:0\])?\s*(\w+);", body.group(1), re.M)]
    decl, conn, drive, fold = [], [], [], []
    for d, w, name in ports:
        conn.append(f".{name}({name})")
        if name in ("clk", "rst"):
            continue
        if d == "output":
            decl.append(f"wire [{w - 1}:0] {name};")
            fold += [f"    sum = sum ^ {name}[{min(b + 31, w - 1)}:{b}];" for b in range(0, w, 32)]
        elif w == 1:
            decl.append(f"reg {name} = 0;")
            drive.append(f"    {name} = 1'b1;" if name.endswith(("valid", "ready")) else f"    {name} = $random;")
        else:
            decl += [f"reg [{w - 1}:0] {name} = 0;", f"reg [{w - 1}:0] next_{name};"]
            drive += [f"    for (k = 0; k < {w}; k = k + 32) next_{name} = (next_{name} << 32) | $unsigned($random);",
                      f"    {name} = next_{name};"]
    return "\n".join([
        "`timescale 1ns/1ps", "module tb;", "reg clk = 0; reg rst = 1;", *decl,
        f"{top} dut({', '.join(conn)});", "integer i, k; reg [31:0] sum = 0;", "initial begin",
        "  #5 rst = 0;", f"  for (i = 0; i < {cycles}; i = i + 1) begin", *drive, "    #5;", *fold,
        "    clk = 1; #5 clk = 0;", "  end", '  $display("checksum %h", sum);', "  $finish;", "end",
        "endmodule", ""])


def run_icarus(verilog_path: Path, top: str, cycles: int, work: Path) -> tuple[float, str]:
    """``(vvp wall seconds, checksum)`` of ``cycles`` cycles."""
    tb = work / f"tb_{top}_{cycles}.v"
    tb.write_text(testbench(verilog_path.read_text(), top, cycles))
    vvp = work / f"{top}_{cycles}.vvp"
    subprocess.run([str(find_tool("iverilog")), "-g2012", "-s", "tb", "-o", str(vvp), str(tb), str(verilog_path)],
                   check=True, capture_output=True)
    t0 = time.perf_counter()
    res = subprocess.run(["vvp", "-n", str(vvp)], check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    found = re.search(r"checksum ([0-9a-fx]+)", res.stdout)
    if found is None:
        raise SystemExit(f"no checksum from {top}: {res.stdout[-400:]}")
    return wall, found.group(1)


def rate(verilog_path: Path, top: str, cycles: int, work: Path) -> dict:
    t1, _ = run_icarus(verilog_path, top, 1, work)
    tn, checksum = run_icarus(verilog_path, top, cycles, work)
    return {"cycles": cycles, "vvp_seconds": round(tn, 3), "startup_seconds": round(t1, 3),
            "cycles_per_second": round((cycles - 1) / max(tn - t1, 1e-6), 1), "checksum": checksum}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=2000, help="cycles per timed run of the current modules")
    ap.add_argument("--baseline", type=Path, help="directory with earlier .v files to time as 'before'")
    ap.add_argument("--baseline-cycles", type=int, default=40, help="cycles per timed run of the baseline")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "icarus_decode.json")
    args = ap.parse_args()
    baseline = {p.stem: p for p in args.baseline.rglob("*.v")} if args.baseline else {}
    results = []
    with tempfile.TemporaryDirectory(prefix="nxfp_bench_icarus_") as tmp:
        work = Path(tmp)
        for unit, fmt_name, lanes, out, pipeline in CONFIGS:
            fmt = parse_format(fmt_name)
            kwargs = {"lanes": lanes, "pipeline": pipeline}
            if unit == "decode":
                component = build_unit(unit, fmt, out=out, **kwargs)
            else:
                component = build_unit(unit, fmt, fmt, **kwargs)
            name = component.module_name
            path = work / f"{name}.v"
            path.write_text(emit_verilog(component))
            entry = {"unit": unit, "module": name, "format": fmt.label, "lanes": component.lanes,
                     "pipeline": pipeline, "after": rate(path, name, args.cycles, work)}
            line = f"{name:45s} after {entry['after']['cycles_per_second']:9.1f} cycles/s"
            if name in baseline:
                before = rate(baseline[name], name, args.baseline_cycles, work)
                _, check = run_icarus(path, name, args.baseline_cycles, work)
                if check != before["checksum"]:
                    raise SystemExit(f"{name}: outputs differ from the baseline ({check} vs {before['checksum']})")
                entry["before"] = before
                entry["speedup"] = round(entry["after"]["cycles_per_second"] / before["cycles_per_second"], 1)
                line += f"   before {before['cycles_per_second']:8.1f} cycles/s   x{entry['speedup']}  (outputs equal)"
            print(line, flush=True)
            results.append(entry)
    doc = {
        "benchmark": "icarus_decode",
        "machine": {"cpus": os.cpu_count(), "load_average": list(os.getloadavg()),
                    "python": platform.python_version(), "platform": platform.platform()},
        "tools": {"iverilog": tool_version("iverilog")},
        "method": "plain Verilog testbench, random beat per cycle, valid/ready high; "
                  "cycles_per_second = (N-1)/(t(N)-t(1)) of vvp wall time",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=args.out.parent, prefix=".icarus_decode.", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")
    os.replace(tmp_name, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
