"""``nxfp-hw area``: area and timing of one generated unit with open tools (docs/area.md)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..flows.accuracy import write_text_atomic
from ..flows.area import FLOWS
from ..formats import parse_format
from ..paths import check_output_dir, check_output_file
from .generate import (
    add_pipeline_arguments,
    add_select_argument,
    add_target_arguments,
    check_target,
    close_timing,
    unit_options,
)
from .options import heartbeat, positive_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "area", help="area, Fmax and FPGA resources of a generated unit (yosys, OpenSTA, nextpnr)",
        description="Build a unit, run one or more area/timing flows on its Verilog and print the figures. "
                    "Flows: generic (yosys gates, transistor estimate), asic (OSU 0.18 um Liberty + OpenSTA), "
                    "ice40 (synth_ice40 + nextpnr-ice40), xilinx (synth_xilinx counts). See docs/area.md.")
    p.add_argument("--unit", required=True, choices=("decode", "dot", "encode"), help="unit kind")
    p.add_argument("--format", "-f", dest="fmt", required=True, help="block format (preset or format string)")
    p.add_argument("--format-b", dest="fmt_b", help="second operand format (dot engine; default: --format)")
    p.add_argument("--lanes", type=positive_int, help="elements per beat (a divisor of k; default: the unit's)")
    add_pipeline_arguments(p)
    add_select_argument(p)
    p.add_argument("--flow", dest="flows", action="append", choices=(*FLOWS, "power"), required=True,
                   help="flow to run (repeat for several); power: energy per operation from gate-level simulation "
                        "of the asic netlist (docs/area.md)")
    p.add_argument("--workload", type=Path, help="power flow: a float tensor (.npy/.npz, last axis a multiple of k; "
                   "dot: .npz with a and b) measured before the default workloads")
    p.add_argument("--period", type=positive_float, help="ASIC target clock period in ns (default 10)")
    p.add_argument("--freq", type=positive_float, help="iCE40 nextpnr target frequency in MHz (default 50)")
    add_target_arguments(p, flow_option="--target-flow")
    p.add_argument("--json", type=Path, help="write the JSON record to this file")
    p.add_argument("--workdir", type=Path,
                   help="directory for netlists and tool logs, one subdirectory per module (default: a new "
                        "temporary one); runs sharing it never read each other's files")
    p.add_argument("--force", action="store_true", help="replace an existing --json file")
    p.set_defaults(func=run)


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={n}" for k, n in v.items())
    return str(v)


def run(args: argparse.Namespace) -> int:
    from ..flows.report import build_for_area, measure_unit, pipeline_text, throughput, unit_build

    if args.json is not None:
        check_output_file(args.json, "--json", force=args.force)
    if args.workdir is not None:
        check_output_dir(args.workdir, "--workdir")
    if args.period is not None and not args.period > 0:
        raise UserError(f"period: expected a positive number of ns, got {args.period}")
    if args.freq is not None and not args.freq > 0:
        raise UserError(f"freq: expected a positive frequency in MHz, got {args.freq}")
    check_target(args)
    fmt_a = parse_format(args.fmt)
    fmt_b = parse_format(args.fmt_b) if args.fmt_b else None
    flows = list(dict.fromkeys(args.flows))
    if args.target_mhz is not None:
        if args.target_flow == "asic" and args.period is not None:
            raise UserError("period: --target-mhz sets the ASIC target period (1000 / F ns); give one or the other")
        if args.target_flow == "ice40" and args.freq is not None:
            raise UserError("freq: --target-mhz sets the nextpnr target frequency; give one or the other")
    with heartbeat(f"building the {args.unit} unit"):
        build = build_for_area(args.unit, fmt_a, fmt_b, **unit_options(args))  # bad options fail before any flow
    closure = None
    if args.target_mhz is not None:
        opts = {k: v for k, v in unit_options(args).items() if k != "pipeline"}
        closure = close_timing(args, args.unit, fmt_a, fmt_b, **opts)
        build = unit_build(closure.component)
        if args.target_flow == "asic":
            args.period = 1000.0 / args.target_mhz
        else:
            args.freq = args.target_mhz
    if args.workdir is not None:  # each module in its own subdirectory; run_area locks each flow's
        workdir = args.workdir / build.module
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix=f"nxfp-area-{build.module}-"))
    reuse = closure is not None and args.target_flow in flows
    record = measure_unit(build, [f for f in flows if not (reuse and f == args.target_flow)],
                          workdir=workdir.resolve(), period_ns=args.period, freq_mhz=args.freq,
                          ice40_device=args.ice40_device,
                          **({"workload_file": args.workload} if args.workload is not None else {}))
    if reuse:  # the closure's confirming run is this flow's measurement
        res = closure.result
        record["tools"].update(res.tools)
        fmax = res.figures.get("fmax_mhz")
        record["flows"][res.flow] = {**res.to_dict(), "throughput_per_s": throughput(build, fmax)}
        record["flows"] = {f: record["flows"][f] for f in flows}
    if closure is not None:
        record["timing_closure"] = closure.to_dict()
    fmts = ", ".join(f"{k}={v}" for k, v in build.formats.items())
    print(f"{build.module}: {args.unit} unit ({fmts}), {build.lanes} lanes, latency {build.latency}, "
          f"II {build.initiation_interval} per beat / {build.initiation_interval_per_block} per block, "
          f"config {build.config_hash}")
    if build.pipeline.get("positions"):
        print(f"  pipeline {pipeline_text(build.pipeline)}: {', '.join(build.pipeline['enabled']) or 'none'}")
    if build.accumulation is not None:
        print(f"  accumulation {build.accumulation['mode']}, {build.accumulation['accumulator_width']}-bit accumulator")
    if closure is not None:
        print(closure.summary())
    rows = []
    for flow, res in record["flows"].items():
        for key, value in res["figures"].items():
            if key not in ("cells_by_type", "workloads"):
                rows.append((flow, key, _fmt_value(value)))
        if res.get("throughput_per_s") is not None:
            unit = "MAC/s" if args.unit == "dot" else "values/s"
            rows.append((flow, f"throughput ({unit})", f"{res['throughput_per_s']:.4g}"))
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    for flow, key, value in rows:
        print(f"  {flow.ljust(w0)}  {key.ljust(w1)}  {value}")
    for flow, res in record["flows"].items():
        for note in res["notes"]:
            print(f"  note ({flow}): {note}")
    print(f"tool logs in {workdir}")
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0
