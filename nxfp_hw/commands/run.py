"""``nxfp-hw run``: the main job. Generate, verify and measure a format against its MX baseline.

Four steps (five with ``--target-mhz``), each reusing the library the other subcommands use:

0. with ``--target-mhz``: choose the pipeline of every unit that meets the clock (docs/timing.md);
1. ``generate``: decode unit, dot engine and encoder of both formats (Verilog + manifest + core);
2. ``verify``: a short bit-exact regression of each unit on a simulator;
3. accuracy of both formats on the all-MiniLM-L6-v2 weights (golden model), area and timing (generic
   gates and OSU 0.18 um + OpenSTA by default);
4. the comparison.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..formats import BlockFormat, mx_baseline_for, parse_format
from ..golden.select import check_select
from ..paths import check_output_dir
from .generate import add_pipeline_arguments, add_select_argument, add_target_arguments
from .options import positive_int
from .options import seed as seed_type

UNITS = ("decode", "dot", "encode")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="main job: generate, verify and measure a format against its MX baseline (default nxfp4)",
        description="Generate the decode unit, dot engine and encoder of a format and of its MX baseline, verify "
                    "them bit-exactly in simulation, run area and timing, and print the comparison. Results go to "
                    "--out (report.md, report.json, plots, generated RTL).")
    p.add_argument("--format", "-f", dest="fmt", default="nxfp4", help="format under study (default nxfp4)")
    p.add_argument("--baseline", help="format to compare against (default: the MX preset of the same element "
                                      "width, mxfp4_e2m1 for nxfp4)")
    p.add_argument("--lanes", type=positive_int, default=8,
                   help="lanes of the generated units (default 8; a divisor of k)")
    p.add_argument("--units", default=",".join(UNITS),
                   help=f"comma-separated units: {', '.join(UNITS)} (default all; the encoder skips the ice40 flow)")
    p.add_argument("--sim", default="verilator", choices=("verilator", "icarus"), help="simulator (default verilator)")
    p.add_argument("--blocks", type=int, default=32,
                   help="random blocks per dot and encode regression (default 32)")
    p.add_argument("--seed", type=seed_type, default=1, help="seed of the regressions, 0..2^32-1 (default 1)")
    p.add_argument("--flows", default="generic,asic,power",
                   help="comma-separated flows: generic, asic, ice40, xilinx, power (energy per operation from "
                        "gate-level simulation; default generic,asic,power)")
    p.add_argument("--out", type=Path, default=Path("out/run"), help="output directory (default out/run)")
    p.add_argument("--skip-verify", action="store_true", help="skip the simulation step")
    add_pipeline_arguments(p, what="every unit (positions differ between units: prefer a count)")
    add_target_arguments(p, flow_option="--target-flow")
    add_select_argument(p)
    p.set_defaults(func=run)


def _step(n: int, total: int, text: str) -> float:
    print(f"\n[{n}/{total}] {text}", flush=True)
    return time.monotonic()


def _done(t0: float) -> None:
    print(f"      done in {time.monotonic() - t0:.1f} s", flush=True)


def _unit_kwargs(unit: str, fmt: BlockFormat, args: argparse.Namespace, pipelines: dict) -> dict[str, Any]:
    """``build_unit`` options of one unit of the main job."""
    kwargs: dict[str, Any] = {"lanes": args.lanes, "pipeline": pipelines.get((unit, fmt.label), args.pipeline)}
    if unit == "dot":
        kwargs.update(acc=args.acc, guard_bits=args.guard_bits)
    if unit == "encode" and args.select is not None and len(fmt.elements) * max(fmt.recycle_options, 1) > 1:
        kwargs["select"] = args.select  # the baseline (MX: a single pair) keeps its encoder
    return kwargs


def _generate(fmt: BlockFormat, args: argparse.Namespace, rtl_dir: Path, units: list[str],
              pipelines: dict) -> list[str]:
    from ..flows.generate import build_unit, generate
    from ..flows.manifest import initiation_intervals

    names = []
    for unit in units:
        comp = build_unit(unit, fmt, **_unit_kwargs(unit, fmt, args, pipelines))
        gen = generate(comp, rtl_dir / comp.module_name)
        beat, block = initiation_intervals(comp)
        acc = f", acc {comp.accumulation}" if unit == "dot" else ""
        print(f"      {unit:6s} {fmt.label:12s} -> {gen.verilog}  (latency {comp.latency}, "
              f"II {beat} per beat / {block} per block{acc})")
        names.append(gen.name)
    return names


def _check_units(fmt: BlockFormat, base: BlockFormat, args: argparse.Namespace, units: list[str]) -> None:
    """Construct every unit once so that a bad option is refused before anything is written."""
    from ..flows.generate import build_unit

    for f in (fmt, base):
        for unit in units:
            comp = build_unit(unit, f, **_unit_kwargs(unit, f, args, {}))
            comp._MustUse__silence = True  # constructed to check the options only


def _close_timing(fmt: BlockFormat, base: BlockFormat, args: argparse.Namespace,
                  units: list[str]) -> dict[tuple[str, str], Any]:
    """``--target-mhz``: the timing closure of every (unit, format); stops at the first unmeetable target."""
    from .generate import close_timing

    closures = {}
    for f in (fmt, base):
        for unit in units:
            kwargs = {k: v for k, v in _unit_kwargs(unit, f, args, {}).items() if k != "pipeline"}
            closures[(unit, f.label)] = close_timing(args, unit, f, None, indent="      ", **kwargs)
    return closures


def _verify_options() -> set[str]:
    """Option strings ``nxfp-hw verify`` accepts (it may not take every unit option yet)."""
    from ..cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {opt for action in sub.choices["verify"]._actions for opt in action.option_strings}


def _verify(fmt: BlockFormat, args: argparse.Namespace, build_dir: Path, units: list[str],
            pipelines: dict) -> dict[str, int]:
    from ..cli import main as cli_main

    status = {}
    known = _verify_options()
    for unit in units:
        argv = ["verify", "--unit", unit, "--format", fmt.label, "--sim", args.sim, "--lanes",
                str(args.lanes), "--seed", str(args.seed), "--build-dir", str(build_dir)]
        if unit in ("dot", "encode"):
            argv += ["--blocks", str(args.blocks)]
        kwargs = _unit_kwargs(unit, fmt, args, pipelines)
        for opt, key in (("--pipeline", "pipeline"), ("--acc", "acc"), ("--guard-bits", "guard_bits"),
                         ("--select", "select")):
            value = kwargs.get(key)
            if value is None:
                continue
            if opt not in known:
                print(f"      note: nxfp-hw verify has no {opt} yet: the {unit} unit is verified without it")
                continue
            argv += [opt, ",".join(value) if isinstance(value, tuple | list) else str(value)]
        print(f"      $ nxfp-hw {' '.join(argv)}", flush=True)
        status[unit] = cli_main(argv)
    return status


def run(args: argparse.Namespace) -> int:
    from ..flows.report import ENCODE_SKIPPED_FLOWS, run_report

    fmt = parse_format(args.fmt)
    base = parse_format(args.baseline) if args.baseline else mx_baseline_for(fmt)
    if base == fmt:
        raise UserError(f"--baseline: {base.label} is the format under study; choose another baseline")
    for f in (fmt, base):
        if args.lanes < 1 or f.k % args.lanes:
            raise UserError(f"--lanes: {args.lanes} does not divide the block size k={f.k} of {f.label}")
    flows = [x.strip() for x in args.flows.split(",") if x.strip()]
    from ..flows.report import REPORT_FLOWS as FLOWS

    unknown = [f for f in flows if f not in FLOWS]
    if unknown or not flows:
        raise UserError(f"--flows: expected a comma-separated subset of {', '.join(FLOWS)}, got {args.flows!r}")
    check_output_dir(args.out, "--out")
    units = [x.strip() for x in args.units.split(",") if x.strip()]
    bad = [u for u in units if u not in UNITS]
    if bad or not units:
        raise UserError(f"--units: expected a comma-separated subset of {', '.join(UNITS)}, got {args.units!r}")
    if args.blocks < 1:
        raise UserError(f"--blocks: expected a positive number of random blocks, got {args.blocks}")
    if (args.acc is not None or args.guard_bits is not None) and "dot" not in units:
        raise UserError("acc: --acc and --guard-bits configure the dot engine; it is not in --units")
    if args.target_mhz is not None and args.pipeline is not None:
        raise UserError("pipeline: --target-mhz chooses the pipeline; give --pipeline or --target-mhz, not both")
    if args.select is not None:
        if "encode" not in units:
            raise UserError("--select: the encoder's selection policy; the encode unit is not in --units")
        check_select(args.select, fmt)
    _check_units(fmt, base, args, units)  # bad options fail here, before anything is written
    encode_flows = [f for f in flows if f not in ENCODE_SKIPPED_FLOWS] if "encode" in units else None
    report_units = [u for u in units if u != "encode" or encode_flows]
    out = args.out
    target = args.target_mhz is not None
    total = (3 if args.skip_verify else 4) + target
    step = 0
    print(f"nxfp-hw main job: {fmt.label} vs {base.label}, units {', '.join(units)}, {args.lanes} lanes, "
          f"flows {', '.join(flows)}" + (f", dot accumulation {args.acc}" if args.acc and "dot" in units else "")
          + (f", target {args.target_mhz:g} MHz on {args.target_flow}" if target else "") + f", output in {out}/")

    pipelines: dict[tuple[str, str], Any] = {}
    closures: dict[tuple[str, str], Any] = {}
    if target:
        step += 1
        t0 = _step(step, total, f"choose the pipeline of every unit for {args.target_mhz:g} MHz on {args.target_flow}")
        closures = _close_timing(fmt, base, args, units)
        pipelines = {key: c.cuts for key, c in closures.items()}
        _done(t0)

    step += 1
    t0 = _step(step, total, f"generate the {', '.join(units)} units of both formats")
    for f in (fmt, base):
        _generate(f, args, out / "rtl", units, pipelines)
    _done(t0)

    status: dict[str, dict[str, int]] = {}
    if not args.skip_verify:
        step += 1
        t0 = _step(step, total, f"verify every unit bit-exactly against the golden model on {args.sim}")
        for f in (fmt, base):
            status[f.label] = _verify(f, args, out / "build", units, pipelines)
        _done(t0)

    step += 1
    t0 = _step(step, total, "accuracy on all-MiniLM-L6-v2, area and timing")
    if "encode" in units and not encode_flows:
        print(f"      the encoder has no flow among {', '.join(flows)} (it skips {', '.join(ENCODE_SKIPPED_FLOWS)})")
    flow_opts: dict[str, Any] = {} if args.ice40_device == "auto" else {"ice40_device": args.ice40_device}
    if target:  # measure at the clock the pipelines were chosen for
        flow_opts.update({"period_ns": 1000.0 / args.target_mhz} if args.target_flow == "asic" else {
            "freq_mhz": args.target_mhz})
    result = run_report(formats=[fmt.label, base.label], units=report_units, flows=flows,
                        encode_flows=encode_flows if "encode" in report_units else None,
                        out_dir=out / "report", cache_dir=out / "cache", force=True, lanes=args.lanes,
                        pipeline=pipelines if target else args.pipeline, acc=args.acc, guard_bits=args.guard_bits,
                        select=args.select,
                        jobs=min(2, os.cpu_count() or 1),
                        echo=lambda s: print(f"      {s}", flush=True), **flow_opts)
    _done(t0)

    _step(total, total, f"comparison: {fmt.label} vs {base.label}")
    _print_comparison(result.data, fmt, base, flows, status, units)
    for (unit, label), closure in closures.items():
        print(f"  {unit} {label}: {closure.summary()}")
    print(f"\nreport: {out / 'report' / 'report.md'} (+ report.json, area.png, pareto.png)")
    failed = [f"{u} {name}" for name, st in status.items() for u, rc in st.items() if rc != 0]
    if failed or result.failures:
        for f in failed:
            print(f"FAILED verification: {f}")
        for f in result.failures:
            print(f"FAILED flow: {f}")
        return 1
    return 0


def _print_comparison(data: dict[str, Any], fmt: BlockFormat, base: BlockFormat, flows: list[str],
                      status: dict[str, dict[str, int]], units: list[str]) -> None:
    from ..flows.report import AREA_METRICS, ENCODE_SKIPPED_FLOWS, format_figure, pipeline_text

    acc = data["formats"]
    rows = [("", fmt.label, base.label, "change")]

    def add(label: str, a: Any, b: Any, pct: bool = True) -> None:
        change = "-"
        if pct and isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
            change = f"{(a / b - 1) * 100:+.1f} %"
        rows.append((label, format_figure(a), format_figure(b), change))

    add("bits / element", fmt.bits_per_element, base.bits_per_element)
    add("relative MSE (MiniLM)", acc[fmt.label]["relative_mse"], acc[base.label]["relative_mse"])
    add("SQNR (dB)", acc[fmt.label]["sqnr_db"], acc[base.label]["sqnr_db"], pct=False)
    records = {(r["unit"], r["format"]): r for r in data["results"]}
    for unit in units:
        ra, rb = (records.get((unit, f.label), {}) for f in (fmt, base))
        if unit == "dot":
            rows.append(("dot: accumulation", *((r.get("accumulation") or {}).get("mode", "-") for r in (ra, rb)), ""))
        rows.append((f"{unit}: pipeline registers", pipeline_text(ra.get("pipeline")),
                     pipeline_text(rb.get("pipeline")), ""))
        add(f"{unit}: latency (cycles)", ra.get("latency"), rb.get("latency"), pct=False)
        for flow in flows:
            if unit == "encode" and flow in ENCODE_SKIPPED_FLOWS:
                continue
            metric, label = AREA_METRICS[flow]
            a = records.get((unit, fmt.label), {}).get("flows", {}).get(flow, {}).get("figures", {})
            b = records.get((unit, base.label), {}).get("flows", {}).get(flow, {}).get("figures", {})
            add(f"{unit}: {label}", a.get(metric), b.get(metric))
            if flow != "power" and (a.get("fmax_mhz") or b.get("fmax_mhz")):  # power: the asic Fmax
                add(f"{unit}: Fmax MHz ({flow})", a.get("fmax_mhz"), b.get("fmax_mhz"))
    for unit in units:
        if status:
            rows.append((f"{unit}: RTL vs golden", _verdict(status, fmt, unit), _verdict(status, base, unit), ""))
        power = [records.get((unit, f.label), {}).get("flows", {}).get("power") for f in (fmt, base)]
        if any(power):  # the power flow fails unless the gate-level netlist is bit-exact
            rows.append((f"{unit}: netlist vs golden", *("-" if p is None else "bit-exact" if "figures" in p
                                                         else "FAILED" for p in power), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, r in enumerate(rows):
        print("  " + "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in
                              enumerate(zip(r, widths, strict=True))))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))


def _verdict(status: dict[str, dict[str, int]], fmt: BlockFormat, unit: str) -> str:
    rc = status.get(fmt.label, {}).get(unit)
    # a failure is a bit mismatch or a missed coverage goal; verify's own output above says which
    return "-" if rc is None else ("bit-exact" if rc == 0 else "FAILED")
