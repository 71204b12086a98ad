"""``nxfp-hw`` command line: thin argument parsing over the library (one module per subcommand)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import warnings

from . import __version__
from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_TOOL, EXIT_USAGE, ToolError, UserError
from .formats import FormatError
from .interrupts import Terminated, handle_signals
from .paths import describe_os_error

# Subcommand modules under nxfp_hw.commands; each has ``register(subparsers)``.
COMMANDS = ("run", "formats", "quantize", "generate", "verify", "manifest", "area", "report", "sweep", "model_eval")


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


# Text of library exceptions (wasmtime, zipfile, ...) that mean the machine ran out of room.
_RESOURCE_ERRORS = (("os error 28", "no space left on device"), ("No space left", "no space left on device"),
                    ("os error 27", "file too large (file size limit reached)"),
                    ("File too large", "file too large (file size limit reached)"))


def _error(command: str, message: str) -> None:
    # One line: a message with newlines (a tool's output, a huge argument) is cut to its first line.
    lines = str(message).strip().splitlines() or [""]
    first = lines[0] if len(lines[0]) <= 2000 else lines[0][:2000] + "..."
    with contextlib.suppress(OSError, ValueError):
        print(f"nxfp-hw {command}: error: {first}", file=sys.stderr, flush=True)


def _argument_of(parser: argparse.ArgumentParser, args: argparse.Namespace, text: str | None) -> str | None:
    """The option of ``args.command`` whose value is ``text`` (a format string that failed to parse)."""
    if text is None:
        return None
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    command = sub.choices.get(args.command) if sub is not None else None
    for action in command._actions if command is not None else ():
        value = getattr(args, action.dest, None)
        if action.option_strings and (value == text or (isinstance(value, list) and text in value)):
            return action.option_strings[0] if action.option_strings[0].startswith("--") else action.option_strings[-1]
    return None


def _stdout_closed() -> None:
    """After a broken pipe: point stdout at /dev/null so that the interpreter's final flush stays quiet."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; exit statuses in :mod:`nxfp_hw.errors` (0, 1, 2 usage, 3 tool, 130, 143)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    command = args.command
    with handle_signals(), warnings.catch_warnings():
        if not sys.warnoptions:  # numeric RuntimeWarnings and library notices are not the user's business
            warnings.simplefilter("ignore")
            logging.getLogger("matplotlib").setLevel(logging.ERROR)  # "building the font cache" and the like
        try:
            status = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
            return status
        except ToolError as exc:
            _error(command, str(exc))
            return EXIT_TOOL
        except FormatError as exc:
            option = _argument_of(parser, args, exc.text)
            _error(command, f"{option}: {exc}" if option else str(exc))
            return EXIT_USAGE
        except UserError as exc:
            _error(command, str(exc))
            return EXIT_USAGE
        except BrokenPipeError:
            _stdout_closed()
            _error(command, "standard output was closed (broken pipe); stopped")
            return EXIT_USAGE
        except OSError as exc:
            _error(command, describe_os_error(exc))
            return EXIT_USAGE
        except MemoryError:
            _error(command, "out of memory")
            return EXIT_USAGE
        except Terminated:
            _error(command, "terminated")
            return EXIT_TERMINATED
        except KeyboardInterrupt:
            _error(command, "interrupted")
            return EXIT_INTERRUPTED
        except Exception as exc:  # noqa: BLE001 - the last resort: one line, not a traceback
            if os.environ.get("NXFP_DEBUG"):
                raise
            text = f"{type(exc).__name__}: {exc}"
            for marker, reason in _RESOURCE_ERRORS:
                if marker in text:  # a library that reports a full disk in its own exception type
                    _error(command, f"{reason} (reported by {type(exc).__name__})")
                    return EXIT_USAGE
            _error(command, f"internal error, please report it (NXFP_DEBUG=1 shows the traceback): {text}")
            return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
