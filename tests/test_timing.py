"""Timing closure (nxfp_hw.flows.timing, ``--target-mhz``): the delay model and the search on synthetic
calibrations (no tools), the SDF timing analysis on a hand-written SDF, the command-line errors, and one
small real closure on the asic flow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nxfp_hw.cli import main
from nxfp_hw.errors import UserError
from nxfp_hw.flows import area as area_mod
from nxfp_hw.flows import timing
from nxfp_hw.flows.timing import (
    CTL,
    IN,
    OUT,
    REG,
    Calibration,
    classify_registers,
    enumerate_pipelines,
    fit_merge_overhead,
    group_of_point,
    group_of_register,
    predict,
    rank_candidates,
    sdf_segments,
    stage_key,
    stages,
)
from nxfp_hw.formats import parse_format

needs_asic = pytest.mark.skipif(shutil.which("yosys") is None or shutil.which("sta") is None
                                or not area_mod.OSU018_DIR.is_dir(), reason="yosys / opensta / osu018 not installed")

POSITIONS = ("a", "b", "c")


def chain(**extra: dict[str, float]) -> Calibration:
    """IN -> a -> b -> c -> REG (output register), segments 2, 3, 4, 1 ns, register overhead 0.5 ns,
    a loop REG -> REG of 1.5 ns, and a flow-control path from the output valid to every enable."""
    segs = {IN: {"a": 2.0}, "a": {"b": 3.0}, "b": {"c": 4.0}, "c": {REG: 1.0}, REG: {REG: 1.5},
            CTL: {"a": 1.2, "b": 1.2, "c": 1.2, REG: 1.2}}
    for s, ends in extra.items():
        segs.setdefault(s, {}).update(ends)
    return Calibration(flow="asic", module="m", positions=POSITIONS, segments=segs, register_overhead_ns=0.5,
                       register_bits={"a": 10, "b": 40, "c": 20})


# --- the model -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("cuts", "period", "path"), [
    (("a", "b", "c"), 4.0, ("b", "c")),
    (("a", "c"), 6.5, ("a", "b", "c")),  # 3 + 4 - 0.5
    (("b",), 4.5, (IN, "a", "b")),  # 2 + 3 - 0.5 and 4 + 1 - 0.5 tie: the first found
    ((), 8.5, (IN, "a", "b", "c", REG)),  # 2 + 3 + 4 + 1 - 3 * 0.5
])
def test_predict_sums_merged_segments(cuts, period, path):
    pred = predict(chain(), cuts)
    assert pred.period_ns == pytest.approx(period)
    assert pred.path == path
    assert pred.fmax_mhz == pytest.approx(1000 / period)


def test_control_and_backward_paths_are_not_merged():
    """The stall path (CTL) and a ready chain (c -> a) end at the register they were measured at: when that
    position is disabled they do not run on through it."""
    cal = chain(c={"a": 5.0})
    assert predict(cal, ("a", "b", "c")).period_ns == 5.0  # c -> a is a real stage when both are registers
    assert predict(cal, ("b", "c")).period_ns == 4.5  # a disabled: c -> a is gone, not merged into a -> b
    cal = chain(**{CTL: {"a": 9.0}})
    assert predict(cal, ("b", "c")).period_ns == 4.5  # the control path to a's enable is gone with a
    assert predict(cal, ("a", "b", "c")).period_ns == 9.0


def test_branches_take_the_worst_and_transparent_positions_cost_nothing():
    cal = chain(**{IN: {"b": 6.0}})  # a second input path straight into b
    assert predict(cal, ("b", "c")).period_ns == 6.0
    assert predict(cal, ("c",)).period_ns == pytest.approx(9.5)  # IN -> b -> c = 6 + 4 - 0.5
    cal = Calibration(**{**chain().__dict__, "positions": ("a", "x", "b", "c")})  # x: no registers survived
    assert predict(cal, ("a", "x", "c")).period_ns == pytest.approx(6.5)
    assert cal.cost(("a", "x")) == 10


def test_measured_stages_override_the_model():
    cal = chain()
    facts = {stage_key(("a", "b", "c")): 7.25}
    assert predict(cal, ("a", "c"), facts).period_ns == 7.25
    assert predict(cal, ("a", "b", "c"), facts).period_ns == 4.0  # a different stage structure
    assert predict(cal, ("a", "c"), {stage_key(("a", "b", "c")): 1.0}).period_ns == 6.5  # never below the model


def test_stages_lists_every_stage_with_its_delay():
    found = dict((path, d) for d, path in stages(chain(), ("b",)))
    assert found[(IN, "a", "b")] == pytest.approx(4.5)
    assert found[("b", "c", REG)] == pytest.approx(4.5)
    assert found[(REG, REG)] == 1.5 and found[(CTL, "b")] == 1.2
    assert max(found.values()) == predict(chain(), ("b",)).period_ns


def test_fit_merge_overhead_matches_the_no_register_run():
    cal = chain()
    x = fit_merge_overhead(cal, 5.0)  # 10 - 3x = 5
    assert x == pytest.approx(5 / 3, abs=1e-3)
    cal.merge_overhead_ns = x
    assert predict(cal, ()).period_ns == pytest.approx(5.0, abs=1e-3)
    assert fit_merge_overhead(chain(), 20.0) == 0.0  # the model is not optimistic: nothing to subtract


def test_search_picks_the_cheapest_pipeline_predicted_to_meet():
    cal = chain()
    ranked = rank_candidates(cal, 1000 / 5.0, enumerate_pipelines(POSITIONS))
    assert [c.cuts for c in ranked][:3] == [("b",), ("a", "b"), ("b", "c")]  # 40, 50, 60 register bits
    assert all(c.prediction.period_ns <= 5.0 for c in ranked)
    assert ranked[0].cost == 40
    assert rank_candidates(cal, 1000 / 3.9, enumerate_pipelines(POSITIONS)) == []  # b -> c alone is 4 ns
    near = rank_candidates(cal, 1000 / 5.0, [("a", "c")], margin=0.3)
    assert [c.cuts for c in near] == [("a", "c")]


def test_enumerate_pipelines():
    assert len(enumerate_pipelines(POSITIONS)) == 8
    many = tuple(f"p{i}" for i in range(14))
    cands = enumerate_pipelines(many, many[::-1])
    assert () in cands and many in cands and len(cands) < 2 ** 14
    assert all(c == tuple(p for p in many if p in c) for c in cands)  # datapath order


# --- register groups -------------------------------------------------------------------------------

def test_register_groups():
    positions = ("block", "block_norm", "acc_add")
    assert group_of_register("block_norm_man[3]", positions) == "block_norm"
    assert group_of_register("block_valid", positions) == "block"
    assert group_of_register("\\acc_add_sum", positions) == "acc_add"
    assert group_of_register("acc", positions) == REG
    names = {"1": "block_x", "2": "o__payload", "3": "o__valid", "4": "acc", "5": "acc_add_s"}
    start, end, out = classify_registers(names, positions)
    assert (start, end, out) == ({"1": "block", "2": CTL, "3": CTL, "4": REG, "5": "acc_add"},
                                 {"1": "block", "2": REG, "3": REG, "4": REG, "5": "acc_add"}, None)
    # the output register is the last position when that position has no registers of its own
    start, end, out = classify_registers({"1": "in_x", "2": "o__payload"}, ("in", "out"))
    assert out == "out" and start["2"] == end["2"] == "out"


@pytest.mark.parametrize(("point", "flow", "start", "group"), [
    ("i__payload[3]", "asic", True, IN),
    ("o__ready", "asic", True, CTL),
    ("o__payload[2]", "asic", False, REG),
    ("i__ready", "asic", False, OUT),
    ("sum_total[7]", "asic", True, "sum"),
    ("_1234_", "asic", True, None),
    ("dut.sum_total_SB_DFFE_Q_9_D_SB_LUT4_O_LC", "ice40", True, "sum"),
    ("dut.acc_SB_DFFESR_Q_29_D_SB_LUT4_O_LC", "ice40", False, REG),
    ("isr_SB_DFF_Q_13_DFFLC", "ice40", True, IN),
    ("osr_SB_DFF_Q_3_DFFLC", "ice40", False, OUT),
    ("dut.$106_SB_DFF_Q_DFFLC", "ice40", True, REG),
])
def test_group_of_point(point, flow, start, group):
    assert group_of_point(point, flow, ("sum", "block"), start) == group
    if point.startswith("o__payload"):
        assert group_of_point(point, flow, ("sum", "block"), start, out_position="block") == "block"


SDF = """(DELAYFILE
  (SDFVERSION "3.0")
  (TIMESCALE 1ps)
  (CELL
    (CELLTYPE "top")
    (INSTANCE )
    (DELAY
      (ABSOLUTE
        (INTERCONNECT isr_SB_DFF_Q_DFFLC/O dut.a_x_SB_DFF_Q_DFFLC/I0 (500:500:500) (500:500:500))
        (INTERCONNECT dut.a_x_SB_DFF_Q_DFFLC/O \\$lut1/I1 (700:700:700) (700:700:700))
        (INTERCONNECT \\$lut1/O dut.b_y_SB_DFF_Q_DFFLC/I2 (300:300:300) (300:300:300))
        (INTERCONNECT isr_SB_DFF_Q_DFFLC/O \\$lut1/I0 (100:100:100) (100:100:100))
        (INTERCONNECT dut.b_y_SB_DFF_Q_DFFLC/O osr_SB_DFF_Q_DFFLC/I0 (400:400:400) (400:400:400))
      )
    )
  )
  (CELL
    (CELLTYPE "ICESTORM_LC")
    (INSTANCE \\$lut1)
    (DELAY (ABSOLUTE
        (IOPATH I0 O (449:449:449) (449:449:449))
        (IOPATH I1 O (400:400:400) (450:450:450))
    ))
  )
""" + "".join(f"""  (CELL
    (CELLTYPE "ICESTORM_LC")
    (INSTANCE {name})
    (DELAY (ABSOLUTE
        (IOPATH CLK O (1000:1000:1000) (1000:1000:1000))
    ))
    (TIMINGCHECK
      (SETUPHOLD (posedge {pin}) (posedge CLK) (200:200:200) (0:0:0))
    )
  )
""" for name, pin in (("isr_SB_DFF_Q_DFFLC", "I0"), ("dut.a_x_SB_DFF_Q_DFFLC", "I0"),
                      ("dut.b_y_SB_DFF_Q_DFFLC", "I2"), ("osr_SB_DFF_Q_DFFLC", "I0"))) + ")\n"


def test_sdf_static_timing():
    def groups(cells):
        names = {c: c[4:].split("_SB_")[0] for c in cells if c.startswith("dut.")}
        start, end, _ = classify_registers(names, ("a", "b"))
        start.update({c: IN for c in cells if c.startswith("isr")})
        end.update({c: OUT for c in cells if c.startswith("osr")})
        return start, end

    segs, med, cells = sdf_segments(SDF, groups)
    # clk-to-Q 1.0 + route + setup 0.2; a -> b through the LUT's slower I1 arc (0.45 ns)
    assert segs[IN]["a"] == pytest.approx(1.0 + 0.5 + 0.2)
    assert segs[IN]["b"] == pytest.approx(1.0 + 0.1 + 0.449 + 0.3 + 0.2)
    assert segs["a"]["b"] == pytest.approx(1.0 + 0.7 + 0.45 + 0.3 + 0.2)
    assert segs["b"][OUT] == pytest.approx(1.0 + 0.4 + 0.2)
    assert "a" not in segs.get("b", {}) and OUT not in segs["a"]
    assert med == {"clk_to_q": 1.0, "setup": 0.2, "logic": pytest.approx(0.4495)}
    assert cells == {"a": 1, "b": 1, OUT: 1}


def test_ice40_register_names_through_aliases():
    """A flip-flop whose cell Yosys named after a private net is still found by the names of its output bit,
    and the LUT packed with it (feeding its D input) stands for it too."""
    netlist = {"modules": {"nxfp_ooc_wrap": {
        "netnames": {"dut.$4258": {"bits": [10]}, "dut.sum_total": {"bits": [10, 11]}, "dut.wire_x": {"bits": [10]},
                     "dut.$77": {"bits": [12]}, "dut.acc$303": {"bits": [13]}, "isr": {"bits": [14]}},
        "cells": {
            "dut.$4258_SB_DFFE_Q": {"type": "SB_DFFE", "connections": {"Q": [10], "D": [12], "E": [1]}},
            "dut.$4258_SB_DFFE_Q_D_SB_LUT4_O": {"type": "SB_LUT4", "connections": {"O": [12], "I0": [14]}},
            "dut.acc_SB_DFF_Q": {"type": "SB_DFF", "connections": {"Q": [13], "D": [15]}},
            "isr_SB_DFF_Q": {"type": "SB_DFF", "connections": {"Q": [14], "D": [16]}},
        }}}}
    regs = timing.ice40_register_names(netlist, ("sum", "block"))
    assert regs == {"dut.$4258_SB_DFFE_Q": "sum_total", "dut.$4258_SB_DFFE_Q_D_SB_LUT4_O": "sum_total",
                    "dut.acc_SB_DFF_Q": "acc"}


# --- the command line ------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "needle"), [
    (["area", "--unit", "dot", "--format", "nxfp4", "--flow", "asic", "--target-mhz", "-1"],
     "argument --target-mhz: expected a positive frequency in MHz, got '-1'"),
    (["run", "--target-mhz", "fast"], "argument --target-mhz: expected a positive frequency in MHz, got 'fast'"),
    (["generate", "--unit", "dot", "--format", "nxfp4", "--target-mhz", "100", "--flow", "xilinx", "--out", "x"],
     "argument --flow: invalid choice: 'xilinx'"),
    (["area", "--unit", "dot", "--format", "nxfp4", "--flow", "ice40", "--ice40-device", "ecp5"],
     "argument --ice40-device: invalid choice: 'ecp5'"),
])
def test_cli_target_argument_errors(tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("argv", "needle"), [
    (["area", "--unit", "dot", "--format", "nxfp4", "--flow", "asic", "--target-mhz", "100", "--pipeline", "all"],
     "pipeline: --target-mhz chooses the pipeline"),
    (["area", "--unit", "dot", "--format", "nxfp4", "--flow", "asic", "--target-mhz", "100", "--period", "5"],
     "period: --target-mhz sets the ASIC target period"),
    (["area", "--unit", "decode", "--format", "nxfp4", "--flow", "asic", "--acc", "fused"],
     "acc: only the dot engine"),
    (["run", "--units", "decode", "--acc", "exact", "--out", "o"], "acc: --acc and --guard-bits configure the dot"),
    (["run", "--pipeline", "products", "--out", "o"], "pipeline: no register position 'products'"),
    (["run", "--target-mhz", "100", "--pipeline", "2", "--out", "o"], "pipeline: --target-mhz chooses the pipeline"),
])
def test_cli_option_errors(tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("error:") == 1
    assert list(tmp_path.iterdir()) == []


def test_missing_tool_is_named_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no yosys, no sta, no nextpnr
    out = tmp_path / "o"
    assert main(["generate", "--unit", "decode", "--format", "nxfp4", "--lanes", "2", "--target-mhz", "100",
                 "--timing-cache", str(tmp_path / "c"), "--out", str(out)]) == 3  # a missing tool (README)
    err = capsys.readouterr().err
    assert "yosys: not found on PATH; install with: apt-get install yosys" in err
    assert not out.exists()


def test_close_timing_rejects_bad_arguments():
    fmt = parse_format("nxfp4")
    with pytest.raises(UserError, match="target-mhz: expected a positive frequency in MHz, got 0"):
        timing.close_timing("decode", fmt, target_mhz=0)
    with pytest.raises(UserError, match="flow: --target-mhz closes timing on asic or ice40, got 'generic'"):
        timing.close_timing("decode", fmt, target_mhz=100, flow="generic")
    with pytest.raises(UserError, match="ice40-device: expected one of auto, up5k, hx8k, got 'ecp5'"):
        timing.close_timing("decode", fmt, target_mhz=100, flow="ice40", ice40_device="ecp5")


def test_target_flow_options_name_the_ice40_part():
    """The closure's flow runs (and their cache keys) carry the iCE40 part; ``auto`` adds nothing."""
    assert timing._flow_opts("ice40", 40, "hx8k") == {"freq_mhz": 40.0, "ice40_device": "hx8k"}
    assert timing._flow_opts("ice40", 40) == {"freq_mhz": 40.0}
    assert timing._flow_opts("asic", 250, "hx8k") == {"period_ns": 4.0}


# --- the search against a fake flow ----------------------------------------------------------------

def _fake_flow(monkeypatch, truth: dict[tuple[str, ...], float], cal: Calibration, runs: list) -> None:
    """``_run_flow`` answering from ``truth`` (cuts -> period ns) instead of running tools."""

    def fake(verilog, module, flow, target_mhz, cache, positions, *, calibrate, ice40_device="auto"):
        assert ice40_device == "auto"  # what the search below asks for
        cuts = next(k for k, v in truth.items() if module.endswith(v[1]))
        period = truth[cuts][0]
        runs.append(cuts)
        res = area_mod.AreaResult(flow=flow, top=module, figures={
            "fmax_mhz": round(1000 / period, 3), "critical_path_ns": period, "timing": "clocked (clk)",
            "critical_path_from": None, "critical_path_to": None}, tools={})
        c = Calibration(**{**cal.__dict__, "module": module}) if calibrate else None
        return timing._Run(res, c, False)

    monkeypatch.setattr(timing, "_run_flow", fake)
    monkeypatch.setattr(timing.area_mod, "_tool", lambda name, step: Path("/bin/true"))


def test_close_timing_search_on_a_fake_flow(monkeypatch):
    """The decode unit's four positions with a synthetic calibration: the search confirms the cheapest
    predicted pipeline, learns from a miss, and reports the measured Fmax."""
    from nxfp_hw.flows.generate import build_unit
    from nxfp_hw.rtl.pipeline import cuts_tag

    fmt = parse_format("nxfp4")
    unit = build_unit("decode", fmt, lanes=2, pipeline="all")
    unit._MustUse__silence = True
    pos = tuple(unit.pipeline_positions)
    segs = {IN: {pos[0]: 2.0}, pos[0]: {pos[1]: 3.0}, pos[1]: {pos[2]: 4.0}, pos[2]: {pos[3]: 1.0},
            pos[3]: {OUT: 0.5}}
    cal = Calibration(flow="asic", module="m", positions=pos, segments=segs, register_overhead_ns=0.5,
                      register_bits={pos[0]: 10, pos[1]: 40, pos[2]: 20, pos[3]: 30})
    truth = {}
    for cuts in enumerate_pipelines(pos):
        period = predict(cal, cuts).period_ns
        if cuts == (pos[1],):  # the model's favourite misses on the real flow
            period = 5.5
        truth[cuts] = (period, cuts_tag(cuts, pos))
    runs: list = []
    _fake_flow(monkeypatch, truth, cal, runs)
    lines: list[str] = []
    closure = timing.close_timing("decode", fmt, target_mhz=200, lanes=2, echo=lines.append, explore=0)
    assert runs[:3] == [pos, (), (pos[1],)]  # calibrate, no registers, the cheapest predicted
    assert closure.fmax_mhz >= 200 and closure.cuts == runs[-1] and closure.cuts != (pos[1],)
    assert predict(cal, closure.cuts).period_ns <= 5.0
    assert closure.component.cuts == closure.cuts
    assert "misses" in "\n".join(lines) and "Fmax achieved" in closure.summary()
    data = json.loads(json.dumps(closure.to_dict()))
    assert data["cuts"] == list(closure.cuts) and len(data["attempts"]) == len(runs)
    closure.component._MustUse__silence = True
    # a target above the all-positions Fmax: one message with the best Fmax found
    runs.clear()
    with pytest.raises(timing.TargetUnmet, match=r"target-mhz: 400 MHz cannot be met on the asic flow: the best "
                                                 r"Fmax found is 250\.0 MHz") as exc:
        timing.close_timing("decode", fmt, target_mhz=400, lanes=2, echo=lines.append)
    assert exc.value.best_fmax_mhz == 250.0


# --- one real closure ------------------------------------------------------------------------------

@needs_asic
def test_generate_target_mhz_on_the_asic_flow(tmp_path, capsys):
    """A 2-lane decode unit at 300 MHz on the asic flow: chosen, confirmed, written; then a target above its
    best Fmax exits 2 naming the best Fmax and writes nothing (the calibration is cached)."""
    cache, out = tmp_path / "cache", tmp_path / "gen"
    argv = ["generate", "--unit", "decode", "--format", "mxfp4_e2m1", "--lanes", "2", "--timing-cache", str(cache)]
    assert main([*argv, "--target-mhz", "300", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    m = json.loads(next(out.glob("*.json")).read_text())
    assert "Fmax achieved: " in text and "(target 300 MHz)" in text
    achieved = float(text.split("Fmax achieved: ")[1].split(" MHz")[0])
    assert achieved >= 300
    assert f"pipeline registers at: {', '.join(m['pipeline']['enabled']) or 'none'}" in text
    bad = tmp_path / "bad"
    assert main([*argv, "--target-mhz", "5000", "--out", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "target-mhz: 5000 MHz cannot be met on the asic flow: the best Fmax found is " in err
    assert not bad.exists()


@needs_asic
def test_main_job_with_a_target(tmp_path, capsys):
    """``run --target-mhz``: every unit of both formats gets its pipeline chosen; the generated RTL and the
    report measure those pipelines at the target."""
    out = tmp_path / "run"
    assert main(["run", "--units", "decode", "--lanes", "2", "--skip-verify", "--flows", "asic", "--target-mhz",
                 "250", "--timing-cache", str(tmp_path / "cache"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    data = json.loads((out / "report" / "report.json").read_text())
    for fmt in ("nxfp4", "mxfp4_e2m1"):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"  decode {fmt}: Fmax achieved: "))
        assert float(line.split("Fmax achieved: ")[1].split(" MHz")[0]) >= 250
        rec = next(r for r in data["results"] if r["format"] == fmt)
        assert f"pipeline registers at {', '.join(rec['pipeline']['enabled']) or 'none'} (" in line
        assert (out / "rtl" / rec["module"]).is_dir()
        assert rec["flows"]["asic"]["figures"]["target_period_ns"] == 4.0
