"""``nxfp-hw generate``: Verilog + manifest + FuseSoC core of one unit (docs/manifest.md).

Also the unit options shared by ``generate``, ``area`` and ``run``: lanes, named pipeline positions,
the dot engine's accumulation mode, and ``--target-mhz`` (docs/timing.md "Target frequency").
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..flows.area import ICE40_DEVICES
from ..flows.generate import INPUT_FORMATS, OUTPUT_FORMATS, UNIT_BUILDERS, build_unit, check_out_dir, generate
from ..flows.manifest import ACC_MODES
from ..formats import parse_format
from ..paths import check_output_dir
from .options import heartbeat, nonnegative_int, positive_float, positive_int

#: Flows ``--target-mhz`` can close timing on (they report an Fmax).
TIMING_FLOWS = ("asic", "ice40")


def positive_mhz(text: str) -> float:
    """argparse type of ``--target-mhz``: a positive, finite number of MHz."""
    return positive_float(text, "a positive frequency in MHz")


def add_pipeline_arguments(p: argparse.ArgumentParser, *, what: str = "the unit") -> None:
    """``--pipeline``, ``--acc`` and ``--guard-bits``."""
    p.add_argument("--pipeline", metavar="P",
                   help=f"pipeline registers of {what}: a count, 'none', 'all', or comma-separated register "
                        "positions (listed in the manifest; docs/timing.md); default: the unit's")
    p.add_argument("--acc", choices=ACC_MODES,
                   help="accumulation mode of the dot engine (spec 8.1; default fp32): fp32 rounds each block, then "
                        "the sum; fused adds the accumulator into the exact block sum (one rounding per block); "
                        "exact keeps a long fixed-point sum and rounds once at the end of the reduction")
    p.add_argument("--guard-bits", type=nonnegative_int, metavar="G",
                   help="guard bits of the exact accumulator window (dot engine, --acc exact; default 16: exact for "
                        "reductions of up to 2^16 blocks)")


def add_select_argument(p: argparse.ArgumentParser) -> None:
    """``--select``: the encoder's selection policy (docs/encoder.md "Selection policies")."""
    from ..golden.select import DEFAULT_SELECT, SELECT_POLICIES

    p.add_argument("--select", metavar="POLICY",
                   help=f"selection policy of the encode unit: {', '.join(SELECT_POLICIES)} (default {DEFAULT_SELECT}; "
                        "docs/encoder.md); only for formats with several (candidate, recycling option) pairs")


def add_target_arguments(p: argparse.ArgumentParser, *, flow_option: str = "--flow") -> None:
    """``--target-mhz`` and the flow it targets (``--flow`` on generate, ``--target-flow`` elsewhere)."""
    p.add_argument("--target-mhz", type=positive_mhz, metavar="F",
                   help="choose the pipeline that meets F MHz with the least area on the target flow, from a delay "
                        "model of the unit calibrated on that flow, confirmed by running the flow "
                        "(docs/timing.md); replaces --pipeline")
    p.add_argument(flow_option, dest="target_flow", choices=TIMING_FLOWS, default="asic",
                   help="flow that --target-mhz closes timing on (default asic: OSU 0.18 um + OpenSTA; ice40: "
                        "nextpnr place and route)")
    p.add_argument("--ice40-device", choices=ICE40_DEVICES, default="auto",
                   help="iCE40 part of the ice40 flow: auto (UP5K with its DSPs, HX8K when the unit does not fit), "
                        "up5k or hx8k (default auto)")
    p.add_argument("--timing-cache", type=Path, metavar="DIR",
                   help="where --target-mhz keeps its calibrations and flow runs (default "
                        "$XDG_CACHE_HOME/nxfp-hw/timing)")


def check_target(args: argparse.Namespace) -> None:
    """``--target-mhz`` chooses the pipeline: refuse an explicit ``--pipeline`` beside it."""
    if getattr(args, "target_mhz", None) is not None and getattr(args, "pipeline", None) is not None:
        raise UserError("pipeline: --target-mhz chooses the pipeline; give --pipeline or --target-mhz, not both")
    if getattr(args, "target_mhz", None) is not None and getattr(args, "timing_cache", None) is not None:
        check_output_dir(args.timing_cache, "--timing-cache")


def unit_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``build_unit`` from the shared options."""
    opts = {"lanes": args.lanes, "pipeline": args.pipeline, "acc": args.acc, "guard_bits": args.guard_bits}
    if getattr(args, "select", None) is not None:
        opts["select"] = args.select
    return opts


def close_timing(args: argparse.Namespace, unit: str, fmt_a: Any, fmt_b: Any = None, *, indent: str = "",
                 **kwargs: Any) -> Any:
    """Run ``flows.timing.close_timing`` for the parsed options (progress on stdout); the closure."""
    from ..flows.timing import close_timing as close

    return close(unit, fmt_a, fmt_b, target_mhz=args.target_mhz, flow=args.target_flow,
                 ice40_device=getattr(args, "ice40_device", "auto"), cache_dir=args.timing_cache,
                 echo=lambda s: print(indent + s, flush=True), **kwargs)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate", help="generate the Verilog, JSON manifest and FuseSoC core of one unit (decode, dot, encode)",
        description="Build one unit for a block format and write <module>.v, <module>.json (manifest, "
                    "docs/manifest.md), <module>.core (FuseSoC) and <module>.vlt (lint waivers) into --out. "
                    "With --target-mhz the pipeline is chosen to meet that clock on --flow.")
    p.add_argument("--unit", required=True, choices=sorted(UNIT_BUILDERS), help="which unit to build")
    p.add_argument("--format", "-f", dest="fmt", required=True, help="block format: preset or format string")
    p.add_argument("--format-b", dest="fmt_b", help="format of operand B (dot only; default: same as --format)")
    p.add_argument("--lanes", type=positive_int, help="elements per beat, a divisor of k (default: k)")
    add_pipeline_arguments(p)
    add_select_argument(p)
    p.add_argument("--output-format", dest="out_fmt", default="fp32", choices=OUTPUT_FORMATS,
                   help="decode output number format (default fp32)")
    p.add_argument("--input-format", dest="in_fmt", choices=INPUT_FORMATS,
                   help="encode input number format (default fp32)")
    add_target_arguments(p)
    p.add_argument("--out", "-o", required=True, type=Path, help="output directory (created if missing)")
    p.add_argument("--force", action="store_true",
                   help="write into a directory that holds other files (this module's files are replaced)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_target(args)
    fmt_a = parse_format(args.fmt)
    fmt_b = parse_format(args.fmt_b) if args.fmt_b else None
    opts = {**unit_options(args), "out": args.out_fmt, "input_format": args.in_fmt}
    check_out_dir(args.out, force=args.force)
    check_output_dir(args.out, "--out")
    unit = build_unit(args.unit, fmt_a, fmt_b, **opts)  # bad options fail here, before any flow runs
    if args.target_mhz is not None:
        check_out_dir(args.out, force=args.force)  # refuse before the flows run, not after
        unit._MustUse__silence = True  # built to check the options; the closure builds the one written
        closure = close_timing(args, args.unit, fmt_a, fmt_b, **{k: v for k, v in opts.items() if k != "pipeline"})
        unit = closure.component
    with heartbeat(f"generating {unit.module_name}"):
        result = generate(unit, args.out, force=args.force)
    m = result.manifest_data
    print(f"module {result.name}: {m['unit']}, {m['lanes']} lanes, latency {m['latency']} cycles, "
          f"initiation interval {m['initiation_interval']} per beat, {m['initiation_interval_per_block']} per block")
    pipe = m["pipeline"]
    if pipe["positions"]:
        print(f"pipeline registers at: {', '.join(pipe['enabled']) or 'none'} "
              f"(positions: {', '.join(pipe['positions'])})")
    if m["accumulation"] is not None:
        acc = m["accumulation"]
        guard = "" if acc["guard_bits"] is None else f", {acc['guard_bits']} guard bits"
        print(f"accumulation {acc['mode']}: {acc['accumulator_width']}-bit accumulator{guard}")
    if args.target_mhz is not None:
        print(closure.summary())
    for path in (result.verilog, result.manifest, result.core, result.lint_waivers):
        print(f"  wrote {path}")
    print("ports:")
    for port in m["ports"]:
        fields = port.get("fields")
        detail = ""
        if fields:
            detail = "  {" + ", ".join(f"{f['name']}[{f['offset'] + f['width'] - 1}:{f['offset']}]"
                                       + (f" ({f['count']}x{f['stride']})" if "count" in f else "")
                                       for f in fields) + "}"
        print(f"  {port['direction']:<6} {port['width']:>5}  {port['name']}{detail}")
    return 0
