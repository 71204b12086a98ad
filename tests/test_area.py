"""Area/timing flows (nxfp_hw.flows.area) on small hand-written designs whose figures are known."""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
from pathlib import Path

import pytest

from nxfp_hw.flows import area
from nxfp_hw.flows.area import FlowError, run_area

needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed")
needs_sta = pytest.mark.skipif(shutil.which("sta") is None or not area.OSU018_DIR.is_dir(),
                               reason="opensta / qflow-tech-osu018 not installed")
needs_nextpnr = pytest.mark.skipif(shutil.which("nextpnr-ice40") is None, reason="nextpnr-ice40 not installed")


def reg_adder(n: int, name: str = "radd") -> str:
    """n-bit adder with registered (n+1)-bit sum: exactly n + 1 flip-flops, no reset, no enable."""
    return (f"module {name}(input clk, input [{n - 1}:0] a, input [{n - 1}:0] b, output reg [{n}:0] q);\n"
            f"  always @(posedge clk) q <= a + b;\nendmodule\n")


def comb_adder(n: int, name: str = "cadd") -> str:
    return (f"module {name}(input [{n - 1}:0] a, input [{n - 1}:0] b, output [{n}:0] s);\n"
            f"  assign s = a + b;\nendmodule\n")


def bin_with_yosys(tmp_path: Path) -> Path:
    """A directory holding only yosys and the ABC it calls, to put alone on PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("yosys", "yosys-abc", "berkeley-abc"):
        if shutil.which(tool):
            os.symlink(shutil.which(tool), bindir / tool)
    return bindir


def parse_liberty_areas(path: Path) -> dict[str, float]:
    """Independent reader: cell name -> area, by walking the Liberty braces."""
    text = path.read_text()
    areas, depth, cell, cell_depth = {}, 0, None, -1
    for line in text.splitlines():
        m = re.match(r"\s*cell\s*\(\s*\"?(\w+)\"?\s*\)", line)
        if m and depth == 1:
            cell, cell_depth = m.group(1), depth
        m = re.match(r"\s*area\s*:\s*([0-9.]+)\s*;", line)
        if m and cell is not None and depth == cell_depth + 1:
            areas[cell] = float(m.group(1))
        depth += line.count("{") - line.count("}")
        if cell is not None and depth <= cell_depth:
            cell = None
    return areas


@needs_yosys
def test_generic_counts_ffs_and_grows_with_width(tmp_path: Path) -> None:
    cells = []
    for n in (4, 8, 16):
        r = run_area(reg_adder(n), "radd", "generic", workdir=tmp_path / str(n))
        f = r.figures
        assert f["ffs"] == n + 1
        assert f["cells"] == sum(f["cells_by_type"].values())
        assert f["transistors_complete"] and f["transistors"] > 0
        assert Path(r.logs[next(iter(r.logs))]).is_file()
        assert r.tools["yosys"]
        cells.append((f["cells"], f["transistors"]))
    assert cells[0][0] < cells[1][0] < cells[2][0]
    assert cells[0][1] < cells[1][1] < cells[2][1]


@needs_yosys
@needs_sta
def test_asic_area_is_liberty_sum_and_fmax_consistent(tmp_path: Path) -> None:
    lib_areas = parse_liberty_areas(area.osu018_liberty())
    assert {"DFFPOSX1", "NAND2X1", "INVX1"} <= set(lib_areas)
    r = run_area(reg_adder(8), "radd", "asic", workdir=tmp_path)
    f = r.figures
    assert f["ffs"] == 9
    assert f["cells_by_type"].get("DFFPOSX1") == 9
    assert f["area_um2"] == pytest.approx(sum(lib_areas[c] * n for c, n in f["cells_by_type"].items()), abs=1e-6)
    assert f["cells"] == sum(f["cells_by_type"].values())
    assert f["timing"].startswith("clocked")
    assert 0.1 < f["critical_path_ns"] < 10
    assert f["fmax_mhz"] == pytest.approx(1000.0 / f["critical_path_ns"], rel=1e-4)
    assert re.fullmatch(r"[ab]\[\d\]", f["critical_path_from"]), f["critical_path_from"]  # an input port
    assert re.fullmatch(r"q\[\d\]", f["critical_path_to"]), f["critical_path_to"]  # a register bit by name
    assert set(r.tools) == {"yosys", "sta"}
    assert (tmp_path / "asic" / "asic.sdc").read_text().startswith("create_clock -name clk")


@needs_yosys
@needs_sta
def test_asic_combinational_delay_grows_with_width(tmp_path: Path) -> None:
    res = {n: run_area(comb_adder(n), "cadd", "asic", workdir=tmp_path / str(n)) for n in (2, 32)}
    for r in res.values():
        assert r.figures["ffs"] == 0
        assert r.figures["timing"].startswith("combinational")
        assert any("input-to-output" in n for n in r.notes)
        assert r.figures["fmax_mhz"] == pytest.approx(1000.0 / r.figures["critical_path_ns"], rel=1e-4)
    assert res[2].figures["critical_path_ns"] < res[32].figures["critical_path_ns"]
    assert res[2].figures["area_um2"] < res[32].figures["area_um2"]


@needs_yosys
@needs_nextpnr
def test_ice40_counts_and_fmax(tmp_path: Path) -> None:
    r = run_area(reg_adder(8), "radd", "ice40", workdir=tmp_path)
    f = r.figures
    assert f["ffs"] == 9
    assert f["carries"] >= 7 and f["luts"] >= 8
    assert f["dsps"] == 0 and f["rams"] == 0
    assert f["device"] == "up5k-sg48"
    assert f["critical_path_ns"] == pytest.approx(1000.0 / f["fmax_mhz"], rel=1e-3)
    assert 10 < f["fmax_mhz"] < 1000
    # the harness holds 16 + 1 input and 9 output registers on top of the unit's own 9
    assert f["logic_cells_placed"] >= f["luts"]


@needs_yosys
@needs_nextpnr
def test_ice40_harness_does_not_dominate_the_path(tmp_path: Path) -> None:
    """The harness adds its registers and nothing else: a wire-through unit reaches a high Fmax with at most
    the output-capture LUT on its path, while a 32-bit combinational adder's path is the unit's carry chain,
    from a harness input register to a harness output register."""
    thru = run_area("module thru(input [15:0] a, output [15:0] y);\n  assign y = a;\nendmodule\n", "thru",
                    "ice40", workdir=tmp_path / "thru").figures
    assert thru["luts"] == 0 and thru["carries"] == 0
    assert thru["critical_path_lut_levels"] <= 1 and thru["critical_path_carry_cells"] == 0
    assert thru["fmax_mhz"] > 80
    add = run_area(comb_adder(32), "cadd", "ice40", workdir=tmp_path / "add").figures
    assert add["critical_path_from"].startswith("isr")
    assert add["critical_path_carry_cells"] >= 30
    assert add["critical_path_harness_luts"] <= 1
    assert add["fmax_mhz"] < thru["fmax_mhz"] / 2
    # the path's own delays add up to the reported period (1 / Fmax)
    assert add["critical_path_routing_ns"] < add["critical_path_ns"]


def test_ice40_path_parser_reads_nextpnr_04_steps() -> None:
    """nextpnr 0.4 names the launching register as the ``to`` of the clk-to-q step; LUT levels are logic
    steps ending on O, carry cells those ending on COUT; cells not under ``dut.`` are the harness'."""
    def step(kind: str, a: str, b: str, port: str = "O", delay: float = 1.0) -> dict:
        return {"type": kind, "delay": delay, "from": {"cell": a, "port": "I0"}, "to": {"cell": b, "port": port}}
    path = [step("clk-to-q", "junk", "isr_DFFLC"), step("routing", "isr_DFFLC", "dut.l1", "I2", 2.0),
            step("logic", "dut.l1", "dut.l1"), step("routing", "dut.l1", "dut.c1", "I1", 0.5),
            step("logic", "dut.c1", "dut.c1", "COUT", 0.3), step("logic", "$nextpnr_LC_1", "$nextpnr_LC_1"),
            step("routing", "x", "osr_mux", "I0", 1.5), step("logic", "osr_mux", "osr_mux"),
            step("setup", "osr_LC", "osr_LC", "I3")]
    report = {"critical_paths": [{"from": "posedge clk$SB_IO_IN_$glb_clk", "to": "posedge clk$SB_IO_IN_$glb_clk",
                                  "path": path}]}
    assert area._ice40_path(report) == {
        "critical_path_from": "isr_DFFLC", "critical_path_to": "osr_LC", "critical_path_lut_levels": 3,
        "critical_path_carry_cells": 1, "critical_path_routing_ns": 4.0, "critical_path_harness_luts": 1}


@needs_yosys
def test_xilinx_counts(tmp_path: Path) -> None:
    r = run_area(reg_adder(8), "radd", "xilinx", workdir=tmp_path)
    f = r.figures
    assert f["ffs"] == 9
    assert f["carries"] == 3  # 9 sum bits (8 + carry out) in 4-bit CARRY4 blocks
    assert f["luts"] == sum(f["luts_by_size"].values()) > 0
    assert f["dsps"] == 0


def test_unknown_flow(tmp_path: Path) -> None:
    with pytest.raises(FlowError, match=r"flow selection: unknown flow 'vivado'; expected one of generic"):
        run_area(reg_adder(4), "radd", "vivado", workdir=tmp_path)


def test_missing_tool_names_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(FlowError, match=r"generic flow: yosys: not found on PATH; install with: apt-get install yosys"):
        run_area(reg_adder(4), "radd", "generic", workdir=tmp_path)


@needs_yosys
def test_missing_sta_fails_at_timing_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = bin_with_yosys(tmp_path)
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(FlowError, match=r"apt-get install opensta"):
        run_area(reg_adder(4), "radd", "asic", workdir=tmp_path / "w")


@needs_yosys
def test_syntax_error_keeps_log(tmp_path: Path) -> None:
    with pytest.raises(FlowError) as info:
        run_area("module radd(input a, output b);\n  assign b = a +;\nendmodule\n", "radd", "generic",
                 workdir=tmp_path)
    err = info.value
    assert err.step.startswith("generic synthesis")
    assert err.log is not None and err.log.is_file() and str(err.log) in str(err)
    assert "ERROR" in err.log.read_text()


@needs_yosys
@needs_sta
def test_unmappable_cell(tmp_path: Path) -> None:
    src = ("(* blackbox *) module mystery(input i, output o); endmodule\n"
           "module top(input clk, input a, output b);\n  mystery u(.i(a), .o(b));\nendmodule\n")
    with pytest.raises(FlowError, match=r"asic synthesis .*cells not mapped to the Liberty library: mystery") as info:
        run_area(src, "top", "asic", workdir=tmp_path)
    assert info.value.log.is_file()


@needs_yosys
def test_unparsable_timing_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not area.OSU018_DIR.is_dir():
        pytest.skip("qflow-tech-osu018 not installed")
    bindir = bin_with_yosys(tmp_path)
    fake = bindir / "sta"
    fake.write_text('#!/bin/sh\nif [ "$1" = "-version" ]; then echo 2.0.17; exit 0; fi\necho "garbage report"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(FlowError, match=r"asic timing \(OpenSTA\): could not parse slack") as info:
        run_area(reg_adder(4), "radd", "asic", workdir=tmp_path / "w")
    assert info.value.log.read_text().strip() == "garbage report"


def test_ice40_overuse_parser() -> None:
    log = ("Info: Device utilisation:\nInfo: \t         ICESTORM_LC:  6000/ 5280   113%\n"
           "Info: \t        ICESTORM_DSP:     9/    8   112%\nInfo: \t        ICESTORM_RAM:     0/   30     0%\n")
    assert area._ice40_overuse(log) == "ICESTORM_LC 6000/5280, ICESTORM_DSP 9/8"
    assert area._ice40_overuse("Info: \t ICESTORM_LC: 10/ 5280 0%\n") == ""


@needs_yosys
@needs_nextpnr
def test_ice40_falls_back_to_hx8k_when_dsps_run_out(tmp_path: Path) -> None:
    """Nine 8x8 multipliers need nine SB_MAC16; the UP5K has eight, so the flow moves to the HX8K."""
    n = 9
    body = "\n".join(f"  always @(posedge clk) p{i} <= a{i} * b{i};" for i in range(n))
    ports = ", ".join(f"input [7:0] a{i}, input [7:0] b{i}, output reg [15:0] p{i}" for i in range(n))
    src = f"module muls(input clk, {ports});\n{body}\nendmodule\n"
    r = run_area(src, "muls", "ice40", workdir=tmp_path)
    assert r.figures["device"] == "hx8k-ct256"
    assert r.figures["dsps"] == 0 and r.figures["ffs"] == 16 * n
    assert any("does not fit iCE40 UP5K" in note and "ICESTORM_DSP" in note for note in r.notes), r.notes


@needs_yosys
@needs_nextpnr
def test_ice40_device_choice(tmp_path: Path) -> None:
    """``ice40_device="hx8k"`` places on the HX8K even where the UP5K fits, without SB_MAC16s; a
    multiplier that ``auto`` puts in a DSP becomes LUTs there."""
    src = "module mul(input clk, input [7:0] a, input [7:0] b, output reg [15:0] p);\n" \
          "  always @(posedge clk) p <= a * b;\nendmodule\n"
    auto = run_area(src, "mul", "ice40", workdir=tmp_path / "auto").figures
    hx = run_area(src, "mul", "ice40", workdir=tmp_path / "hx", ice40_device="hx8k").figures
    assert auto["device"] == "up5k-sg48" and auto["dsps"] == 1
    assert hx["device"] == "hx8k-ct256" and hx["dsps"] == 0 and hx["luts"] > auto["luts"] + 30
    assert "dsps_note" in hx and "dsps_note" not in auto


def test_ice40_unknown_device(tmp_path: Path) -> None:
    with pytest.raises(FlowError, match=r"ice40 device: expected one of auto, up5k, hx8k, got 'ecp5'"):
        run_area(reg_adder(4), "radd", "ice40", workdir=tmp_path, ice40_device="ecp5")
    assert not (tmp_path / "ice40").exists()


@needs_yosys
def test_ice40_too_many_cells_fails_before_place_and_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit needing more flip-flops than a device has logic cells is not harnessed nor placed: the flow
    says so for each device, at the cost of the unit's synthesis only."""
    monkeypatch.setattr(area, "_ICE40_LOGIC_CELLS", {"up5k": 4, "hx8k": 8})
    monkeypatch.setattr(area, "_ice40_pnr", lambda *a, **k: pytest.fail("nextpnr must not run"))
    with pytest.raises(FlowError, match=r"does not fit iCE40 HX8K: the unit alone needs 17 logic cells, the "
                                        r"device has 8") as exc:
        run_area(reg_adder(16), "radd", "ice40", workdir=tmp_path)
    assert exc.value.step == "ice40 place and route (nextpnr-ice40 --hx8k)"
    assert not (tmp_path / "ice40" / "ice40_wrap.v").exists()


def test_ice40_fmax_ignores_grounded_dsp_clock() -> None:
    """An unregistered SB_MAC16 has its CLK pin on the ground net, which nextpnr reports as a clock."""
    report = {"fmax": {"$PACKER_GND_NET_$glb_clk": {"achieved": 256.1, "constraint": 50},
                       "clk$SB_IO_IN_$glb_clk": {"achieved": 4.85, "constraint": 50}},
              "critical_paths": [
                  {"from": "posedge $PACKER_GND_NET_$glb_clk", "to": "posedge $PACKER_GND_NET_$glb_clk",
                   "path": [{"from": {"cell": "g0"}, "to": {"cell": "g1"}}]},
                  {"from": "posedge clk$SB_IO_IN_$glb_clk", "to": "posedge clk$SB_IO_IN_$glb_clk",
                   "path": [{"from": {"cell": "a"}, "to": {"cell": "b"}},
                            {"from": {"cell": "b"}, "to": {"cell": "c"}}]},
              ]}
    assert area._ice40_fmax(report, "") == 4.85
    assert area._ice40_path(report) == {"critical_path_from": "a", "critical_path_to": "c"}
    log = ("Info: Max frequency for clock    'clk$SB_IO_IN_$glb_clk': 5.04 MHz (FAIL at 50.00 MHz)\n"
           "Info: Max frequency for clock '$PACKER_GND_NET_$glb_clk': 275.25 MHz (PASS at 50.00 MHz)\n")
    assert area._ice40_fmax({}, log) == 5.04


@needs_yosys
def test_ice40_stuck_router_retries_with_next_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A nextpnr run that does not finish in time is retried with the next placement seed."""
    bindir = bin_with_yosys(tmp_path)
    fake = bindir / "nextpnr-ice40"
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys, time\na = sys.argv[1:]\n"
        "if '--version' in a: print('nextpnr-ice40 (Version 0.4-1+b1)'); sys.exit()\n"
        "if a[a.index('--seed') + 1] == '1': time.sleep(30)\n"
        "rep = {'fmax': {'clk$SB_IO_IN_$glb_clk': {'achieved': 42.0, 'constraint': 50}},"
        " 'utilization': {'ICESTORM_LC': {'used': 7, 'available': 5280}}}\n"
        "open(a[a.index('--report') + 1], 'w').write(json.dumps(rep))\nprint('Info: Program finished normally.')\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bindir))
    r = run_area(reg_adder(4), "radd", "ice40", workdir=tmp_path / "w", pnr_timeout=2)
    assert r.figures["seed"] == 2 and r.figures["fmax_mhz"] == 42.0 and r.figures["ffs"] == 5
    assert any("seed 1 did not finish routing within 2 s" in n for n in r.notes), r.notes
    assert (tmp_path / "w" / "ice40" / "ice40_up5k_pnr_seed1.log").is_file()
