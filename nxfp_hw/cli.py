"""``nxfp-hw`` command line: thin argument parsing over the library (one module per subcommand)."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import UserError
from .formats import FormatError

# Subcommand modules under nxfp_hw.commands; each has ``register(subparsers)``.
COMMANDS = ("run", "formats", "quantize", "generate", "verify", "area", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nxfp-hw",
        description=(
            "Generate, verify and measure hardware for block-scaled low-bit formats "
            "(OCP MX: mxfp4/6/8, mxint8; NxFP: nxfp4/5/6 and any format string, see docs/formats.md)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"nxfp-hw {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"nxfp_hw.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"nxfp_hw.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, FormatError) as exc:
        print(f"nxfp-hw {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nxfp-hw: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
