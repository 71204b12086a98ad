"""Gate-level simulation and the power flow (nxfp_hw.flows.gate_level, activity, power; docs/area.md,
"Energy per operation").

A small unit (the 2-lane mxfp4_e2m1 decode unit) goes through the asic flow, its mapped netlist runs the
cocotb regression on Icarus and Verilator (bit-exact, and both simulators see the same net values), and
the power flow's figures are checked where a bug would move them: all-zero data switches less than random
data, the components add up, leakage energy scales with the clock period while dynamic energy does not.
Activity parsing is checked against hand-made sample files and a hand-made VCD; bad inputs give one
``UserError`` naming the problem (exit status 2 on the command line). Seed: printed, ``NXFP_SEED``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from nxfp_hw.cli import main
from nxfp_hw.errors import UserError
from nxfp_hw.flows import area
from nxfp_hw.flows.activity import activity_from_samples, activity_from_vcd, read_samples
from nxfp_hw.formats import PRESETS
from verif.regression import env_seed

SEED = env_seed(11)
BUILD_ROOT = Path(os.environ.get("NXFP_SIM_BUILD", Path(__file__).resolve().parents[1] / "build" / "sim")).resolve()
needs_tools = pytest.mark.skipif(shutil.which("yosys") is None or shutil.which("sta") is None
                                 or shutil.which("iverilog") is None or not area.OSU018_DIR.is_dir(),
                                 reason="yosys, opensta, iverilog or qflow-tech-osu018 not installed")
FMT = "mxfp4_e2m1"
LANES = 2


def setup_module() -> None:
    print(f"test_power: seed {SEED} (set NXFP_SEED to override), builds under {BUILD_ROOT}")


# --- activity parsing: hand-made files ---------------------------------------------------------------

MANIFEST = {"reset": {"name": "rst"}, "streams": {"i": {"valid": "iv", "ready": "ir"},
                                                  "o": {"valid": "ov", "ready": "or"}}}
NETS = ["rst", "iv", "ir", "ov", "or", "a", "b"]


def _samples(rows: list[str]) -> bytes:
    return "".join(r + "\n" for r in rows).encode()


def test_activity_from_samples_counts_toggles_and_duty_in_the_stream_window(tmp_path: Path) -> None:
    #        rst iv ir ov or a b
    rows = ["1xxxxxx",  # reset: before the window, x ignored
            "0000000",
            "0110001",  # first input transfer: window starts; a=0 b=1 (b toggles 0->1 on entering)
            "0110011",  # a 0->1
            "0111101",  # a 1->0, output transfer
            "0000111",  # a 0->1
            "0001111",  # last output transfer (ov & or): window ends
            "0000000"]  # after the window: not counted
    path = tmp_path / "activity.bits"
    path.write_bytes(_samples(rows))
    act = activity_from_samples(path, NETS, MANIFEST)
    assert act.window == (2, 6) and act.cycles == 5
    per = act.per_cycle()
    assert per["a"] == (3 / 5, 3 / 5)  # toggles 0->1, 1->0, 0->1 in the window; high in 3 of 5 cycles
    assert per["b"] == (1 / 5, 1.0)  # one toggle entering the window, then always 1
    assert act.toggles[NETS.index("rst")] == 0


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty"),
    (b"0110001\n01100", "truncated"),
    (b"0110001\n011000\n", "has 6 values, the netlist has 7 nets"),
    (b"0110001\n01100q1\n", "characters other than"),
])
def test_activity_samples_bad_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "activity.bits"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_samples(path, len(NETS))


def test_activity_samples_without_a_transfer_give_no_activity(tmp_path: Path) -> None:
    path = tmp_path / "activity.bits"
    path.write_bytes(_samples(["1000000", "0000000", "0100000"]))  # valid without ready: no transfer
    with pytest.raises(UserError, match="no input and output transfer"):
        activity_from_samples(path, NETS, MANIFEST)


VCD = """$date today $end
$timescale 1ns $end
$scope module top $end
$scope module dut $end
$var wire 1 ! a $end
$var wire 1 " b $end
$var wire 1 # \\c[3] $end
$upscope $end
$upscope $end
$enddefinitions $end
#0
$dumpvars
0!
1"
x#
$end
#10
1!
0#
#20
0!
#25
1!
#30
0"
1#
#40
"""


def test_activity_from_a_hand_made_vcd(tmp_path: Path) -> None:
    path = tmp_path / "t.vcd"
    path.write_text(VCD)
    act = activity_from_vcd(path, ["a", "b", "c[3]"], scope="top.dut", period_ns=10.0)
    assert act.cycles == 4
    per = act.per_cycle()
    assert per["a"] == (3 / 4, (10 + 15) / 40)  # 0->1 at 10, 1->0 at 20, 0->1 at 25; high 10-20, 25-40
    assert per["b"] == (1 / 4, 30 / 40)  # 1 until 30
    assert per["c[3]"] == (1 / 4, 10 / 40)  # x->0 is not a toggle; 0->1 at 30
    # A window: only what happens in it.
    win = activity_from_vcd(path, ["a", "b"], scope="dut", period_ns=10.0, start_ns=15.0, end_ns=35.0)
    assert win.cycles == 2 and list(win.toggles) == [2, 1]


def test_vcd_that_does_not_match_the_netlist(tmp_path: Path) -> None:
    path = tmp_path / "t.vcd"
    path.write_text(VCD)
    with pytest.raises(UserError, match="does not match the netlist: 1 of its 3 nets"):
        activity_from_vcd(path, ["a", "b", "_0042_"], scope="dut", period_ns=10.0)
    with pytest.raises(UserError, match="no signals in a scope 'core'"):
        activity_from_vcd(path, ["a"], scope="core", period_ns=10.0)
    path.write_text("#0\n1!\n")
    with pytest.raises(UserError, match="is not a VCD"):
        activity_from_vcd(path, ["a"], scope="dut", period_ns=10.0)
    path.write_text(VCD.split("#0")[0])
    with pytest.raises(UserError, match="empty dump"):
        activity_from_vcd(path, ["a"], scope="dut", period_ns=10.0)


# --- workloads and other bad input -----------------------------------------------------------------

def test_workload_files(tmp_path: Path) -> None:
    from nxfp_hw.flows.power import load_workload

    good = tmp_path / "w.npy"
    np.save(good, np.ones((3, 64), np.float32))
    a, b = load_workload(good, "decode", 32)
    assert a.shape == (6, 32) and b is None
    cases = [
        ("ints.npy", np.ones((2, 32), np.int32), "decode", "dtype int32, expected floats"),
        ("shape.npy", np.ones((2, 33), np.float32), "decode", r"shape \(2, 33\); the last axis must be"),
        ("nan.npy", np.full((1, 32), np.nan, np.float32), "decode", "NaN or Inf"),
        ("one.npy", np.ones((1, 32), np.float32), "dot", "must hold float arrays a and b"),
    ]
    for name, arr, unit, message in cases:
        np.save(tmp_path / name, arr)
        with pytest.raises(UserError, match=message):
            load_workload(tmp_path / name, unit, 32)
    np.savez(tmp_path / "ab.npz", a=np.ones((2, 32)), b=np.ones((3, 32)))
    with pytest.raises(UserError, match="differ in shape"):
        load_workload(tmp_path / "ab.npz", "dot", 32)
    (tmp_path / "junk.npy").write_text("not numpy")
    with pytest.raises(UserError, match="cannot read"):
        load_workload(tmp_path / "junk.npy", "decode", 32)


def test_missing_cell_models(tmp_path: Path) -> None:
    from nxfp_hw.flows.gate_level import cell_models

    with pytest.raises(UserError, match=r"cell models .*nothere.v not found; install with: apt-get install "
                                        "qflow-tech-osu018"):
        cell_models(tmp_path / "nothere.v")
    (tmp_path / "other.v").write_text("module foo; endmodule\n")
    with pytest.raises(UserError, match="holds no OSU 0.18 um cell models"):
        cell_models(tmp_path / "other.v")


def test_wrapper_refuses_a_netlist_with_other_ports() -> None:
    from nxfp_hw.flows.gate_level import wrapper_verilog

    manifest = {"ports": [{"name": "clk", "direction": "input", "width": 1},
                          {"name": "d", "direction": "input", "width": 2},
                          {"name": "q", "direction": "output", "width": 1}]}
    ports = {"clk": ("input", 1), "d[0]": ("input", 1), "d[1]": ("input", 1), "q": ("output", 1)}
    text = wrapper_verilog("m", "m_gl", manifest, ports)
    assert "input [1:0] d;" in text and ".\\d[1] (d[1])" in text and ".q(q)" in text
    with pytest.raises(UserError, match=r"has no port d\[1\] \(manifest port d, 2 bits\)"):
        wrapper_verilog("m", "m_gl", manifest, {k: v for k, v in ports.items() if k != "d[1]"})
    with pytest.raises(UserError, match="ports the manifest lacks: e"):
        wrapper_verilog("m", "m_gl", manifest, {**ports, "e": ("input", 1)})
    with pytest.raises(UserError, match="port q of the netlist is an input"):
        wrapper_verilog("m", "m_gl", manifest, {**ports, "q": ("input", 1)})


# --- the flow on a small unit ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_unit(tmp_path_factory: pytest.TempPathFactory):
    """The 2-lane mxfp4_e2m1 decode unit: generated, through the asic flow, wrapped for gate-level runs."""
    from nxfp_hw.flows.gate_level import gate_level_module
    from verif.regression import prepare_module

    module = prepare_module("decode", PRESETS[FMT], lanes=LANES, build_root=BUILD_ROOT)
    work = tmp_path_factory.mktemp("power")
    asic = area.run_area(module.verilog, module.name, "asic", workdir=work)
    gl = gate_level_module(module, work / "asic", work / "gate_level")
    return module, asic, gl, work


def _decode_sample(module, beats: int):
    from verif.vectors import decode_exhaustive, decode_vectors

    fmt = PRESETS[FMT]
    h, c = decode_exhaustive(fmt, LANES)
    rng = np.random.default_rng(SEED)
    pick = rng.choice(h.size, beats, replace=False)
    return decode_vectors(fmt, h[pick], c[pick])


@needs_tools
@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_gate_level_regression_is_bit_exact(small_unit, simulator: str) -> None:
    from nxfp_hw.flows.gate_level import run_gate_level

    module, _asic, gl, _work = small_unit
    vs = _decode_sample(module, 48)
    run = run_gate_level(gl, vs, simulator, seed=SEED, build_root=BUILD_ROOT / "gl", tag=f"test-{simulator}")
    print(f"{gl.name} on {simulator}: seed {SEED}, {run.stats.get('values')} values, {run.stats.get('cycles')} cycles, "
          f"build {run.build_seconds:.1f} s, sim {run.wall_seconds:.1f} s")
    assert run.passed, run.message
    assert run.stats["values"] == vs.values and run.stats["mismatches"] == 0
    assert run.samples is not None


@needs_tools
def test_both_simulators_see_the_same_net_values(small_unit) -> None:
    """Zero-delay on both: once Icarus' x have cleared (Verilator starts at 0), every net has the same value
    in every cycle of the same stimulus."""
    from nxfp_hw.flows.gate_level import run_gate_level

    module, _asic, gl, _work = small_unit
    nets = json.loads(gl.verilog.with_name(f"{gl.name}.nets.json").read_text())["nets"]
    vs = _decode_sample(module, 24)
    got = {}
    for sim in ("icarus", "verilator"):
        run = run_gate_level(gl, vs, sim, seed=SEED, build_root=BUILD_ROOT / "gl", tag=f"same-{sim}")
        assert run.passed, run.message
        got[sim] = read_samples(run.samples, len(nets))
    a, b = got["icarus"], got["verilator"]
    assert a.shape == b.shape
    settled = int(np.flatnonzero((a == 2).any(axis=1))[-1]) + 1 if (a == 2).any() else 0
    assert settled < a.shape[0] // 2, "x values in Icarus for most of the run"
    np.testing.assert_array_equal(a[settled:], b[settled:])


@needs_tools
def test_power_flow_numbers(small_unit) -> None:
    from nxfp_hw.flows.power import run_power

    module, asic, _gl, work = small_unit
    res = run_power("decode", PRESETS[FMT], lanes=LANES, workdir=work, build_root=BUILD_ROOT, blocks=6, seed=SEED,
                    asic=asic)
    f = res.figures
    print(f"power flow: seed {SEED}, {json.dumps(f['energy_pj_per_op_by_workload'])} pJ/value, {res.seconds:.1f} s")
    assert f["op"] == "value" and f["gate_level_bit_exact"] and f["fmax_mhz"] == asic.figures["fmax_mhz"]
    w = f["workloads"]
    assert set(w) == {"minilm", "random", "zero"}
    for name, r in w.items():
        assert r["ops"] == 6 * 32 and r["bit_exact"]
        assert r["cycles"] >= 6 * 32 / LANES  # at least one beat per cycle, full rate
        for clock in ("at_reference", "at_fmax"):
            e = r[clock]["energy_pj_per_op"]
            assert e["total"] == pytest.approx(e["internal"] + e["switching"] + e["leakage"], rel=1e-4, abs=1e-5), name
            assert e["internal"] > 0 and e["leakage"] > 0
        ref, fmax = r["at_reference"], r["at_fmax"]
        # Dynamic energy per operation does not depend on the clock; leakage energy scales with the period.
        assert ref["energy_pj_per_op"]["switching"] == pytest.approx(fmax["energy_pj_per_op"]["switching"], rel=1e-3)
        assert ref["energy_pj_per_op"]["internal"] == pytest.approx(fmax["energy_pj_per_op"]["internal"], rel=1e-3)
        assert (ref["energy_pj_per_op"]["leakage"] / fmax["energy_pj_per_op"]["leakage"]
                == pytest.approx(fmax["clock_mhz"] / ref["clock_mhz"], rel=0.05))
    sw = {n: r["at_reference"]["energy_pj_per_op"]["switching"] for n, r in w.items()}
    assert sw["zero"] < 0.1 * sw["random"] and sw["zero"] < sw["minilm"]
    assert w["zero"]["activity"]["mean_toggle_rate"] < w["random"]["activity"]["mean_toggle_rate"]
    assert f["energy_pj_per_op"] == w["minilm"]["at_reference"]["energy_pj_per_op"]["total"]


@needs_tools
def test_power_refuses_activity_of_another_netlist(small_unit) -> None:
    from nxfp_hw.flows.activity import NetActivity
    from nxfp_hw.flows.power import liberty_pin_directions, netlist_pins, sta_power

    _module, asic, _gl, work = small_unit
    netlist = work / "asic" / "asic_netlist.v"
    pins = netlist_pins(netlist.read_text(), liberty_pin_directions(area.osu018_liberty()))
    act = NetActivity(["x", "y"], np.array([1, 2]), np.array([1.0, 1.0]), 4.0)
    with pytest.raises(UserError, match="activity has no value for .* nets of the netlist"):
        sta_power(netlist, asic.top, pins, act, [100.0], workdir=work / "asic", tag="bad", clocked=True)


@needs_tools
def test_area_power_command_bad_workload(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "w.npy"
    np.save(bad, np.ones((2, 33), np.float32))
    rc = main(["area", "--unit", "decode", "--format", FMT, "--lanes", str(LANES), "--flow", "power",
               "--workload", str(bad), "--workdir", str(tmp_path / "work")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "the last axis must be a non-zero multiple of k=32" in err and err.count("error") == 1
    assert not (tmp_path / "out.json").exists()


@needs_tools
@pytest.mark.slow
def test_main_job_compares_energy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The main job with the power flow: energy per operation of both formats side by side, the netlists
    bit-exact, and the figures in report.json and the report's energy table."""
    out = tmp_path / "run"
    assert main(["run", "--skip-verify", "--units", "decode", "--lanes", str(LANES), "--flows", "power",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    comparison = text[text.index("comparison: nxfp4 vs mxfp4_e2m1"):]
    data = json.loads((out / "report" / "report.json").read_text())
    energy = {r["format"]: r["flows"]["power"]["figures"]["energy_pj_per_op"] for r in data["results"]}
    line = next(ln for ln in comparison.splitlines() if "decode: energy per op" in ln)
    assert f"{energy['nxfp4']:.4g}" in line and f"{energy['mxfp4_e2m1']:.4g}" in line
    assert "decode: netlist vs golden" in comparison and comparison.count("bit-exact") >= 2
    md = (out / "report" / "report.md").read_text()
    assert "## Energy per operation, NxFP / MX" in md and (out / "report" / "energy.png").is_file()
