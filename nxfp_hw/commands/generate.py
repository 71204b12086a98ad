"""``nxfp-hw generate``: Verilog + manifest + FuseSoC core of one unit (docs/manifest.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..flows.generate import INPUT_FORMATS, OUTPUT_FORMATS, UNIT_BUILDERS, build_unit, generate
from ..formats import parse_format


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate", help="generate the Verilog, JSON manifest and FuseSoC core of one unit (decode, dot, encode)",
        description="Build one unit for a block format and write <module>.v, <module>.json (manifest, "
                    "docs/manifest.md), <module>.core (FuseSoC) and <module>.vlt (lint waivers) into --out.")
    p.add_argument("--unit", required=True, choices=sorted(UNIT_BUILDERS), help="which unit to build")
    p.add_argument("--format", "-f", dest="fmt", required=True, help="block format: preset or format string")
    p.add_argument("--format-b", dest="fmt_b", help="format of operand B (dot only; default: same as --format)")
    p.add_argument("--lanes", type=int, help="elements per beat, a divisor of k (default: k)")
    p.add_argument("--pipeline", type=int, help="pipeline registers (default: the unit's default)")
    p.add_argument("--output-format", dest="out_fmt", default="fp32", choices=OUTPUT_FORMATS,
                   help="decode output number format (default fp32)")
    p.add_argument("--input-format", dest="in_fmt", choices=INPUT_FORMATS,
                   help="encode input number format (default fp32)")
    p.add_argument("--out", "-o", required=True, type=Path, help="output directory (created if missing)")
    p.add_argument("--force", action="store_true",
                   help="write into a directory that holds other files (this module's files are replaced)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    fmt_a = parse_format(args.fmt)
    fmt_b = parse_format(args.fmt_b) if args.fmt_b else None
    unit = build_unit(args.unit, fmt_a, fmt_b, lanes=args.lanes, pipeline=args.pipeline, out=args.out_fmt,
                      input_format=args.in_fmt)
    result = generate(unit, args.out, force=args.force)
    m = result.manifest_data
    print(f"module {result.name}: {m['unit']}, {m['lanes']} lanes, latency {m['latency']} cycles, "
          f"initiation interval {m['initiation_interval']}")
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
