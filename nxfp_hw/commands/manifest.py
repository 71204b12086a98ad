"""``nxfp-hw manifest``: descriptions of RTL nxfp-hw did not generate (docs/verification.md "Verify your own RTL").

``manifest init --rtl a.sv b.sv --top T`` elaborates the sources with Verilator and drafts a
description (schema ``nxfp-hw-foreign/1``): every port as declared, the clock and reset guessed from
their names, each port's ``field`` left ``null`` for you to map. ``manifest check FILE`` validates a
description against its sources without simulating (one message naming the key or port at fault).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("manifest", help="draft or check the description of your own RTL (for verify --manifest)",
                       description="Draft (init) or check a description of a module nxfp-hw did not generate.")
    msub = p.add_subparsers(dest="manifest_command", metavar="ACTION")
    init = msub.add_parser("init", help="draft a description from the sources (ports read by Verilator)")
    init.add_argument("--rtl", nargs="+", type=Path, required=True, metavar="FILE",
                      help="Verilog/SystemVerilog sources")
    init.add_argument("--top", required=True, help="top module")
    init.add_argument("-I", "--include", dest="includes", action="append", type=Path, default=[], metavar="DIR",
                      help="include directory (repeatable)")
    init.add_argument("-D", "--define", dest="defines", action="append", default=[], metavar="NAME[=VALUE]",
                      help="preprocessor define (repeatable)")
    init.add_argument("-P", "--param", dest="params", action="append", default=[], metavar="NAME=VALUE",
                      help="top parameter (repeatable; integers or strings)")
    init.add_argument("--language", choices=("systemverilog", "verilog"), default="systemverilog")
    init.add_argument("--unit", choices=("block_dot", "convert", "decode"), help="golden view the unit computes")
    init.add_argument("--output", "-o", type=Path, help="write the draft here (default: print it)")
    init.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    check = msub.add_parser("check", help="validate a description against its sources (no simulation)")
    check.add_argument("description", type=Path)
    p.set_defaults(func=run)


def _pairs(items: list[str], opt: str, *, need_value: bool) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not name or (need_value and not eq):
            raise UserError(f"{opt}: expected NAME=VALUE, got {item!r}")
        try:
            out[name] = int(value, 0) if need_value else value
        except ValueError:
            out[name] = value
    return out


def run(args: argparse.Namespace) -> int:
    from ..flows.foreign import draft_description, load_description

    if args.manifest_command == "check":
        desc = load_description(args.description)
        fields = ", ".join(f"{p.name}->{p.field}" for p in desc.ports if p.field)
        print(f"{args.description}: {desc.top} ({desc.unit}, {desc.timing}) matches its sources; ports {fields}")
        return 0
    if args.manifest_command != "init":
        raise UserError("manifest: expected an action: init or check")
    for f in args.rtl:
        if not f.is_file():
            raise UserError(f"--rtl: {f} does not exist")
    for d in args.includes:
        if not d.is_dir():
            raise UserError(f"--include: {d} is not a directory")
    if args.output is not None and args.output.exists() and not args.force:
        raise UserError(f"--output: {args.output} exists; pass --force to overwrite it")
    base = (args.output.resolve().parent if args.output else Path.cwd())
    defines = {k: str(v) for k, v in _pairs(args.defines, "--define", need_value=False).items()}
    draft = draft_description(args.top, [f.resolve() for f in args.rtl], base=base,
                              includes=[d.resolve() for d in args.includes], defines=defines,
                              parameters=_pairs(args.params, "--param", need_value=True), language=args.language,
                              unit=args.unit)
    text = json.dumps(draft, indent=2) + "\n"
    if args.output is None:
        print(text, end="")
        return 0
    tmp = args.output.with_name(args.output.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(args.output)
    unmapped = [p["name"] for p in draft["ports"]]
    print(f"wrote {args.output}: fill in unit, formats and the field of ports {', '.join(unmapped)}; then "
          f"nxfp-hw manifest check {args.output} and nxfp-hw verify --manifest {args.output}")
    return 0
