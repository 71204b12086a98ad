"""Unit tests of the verification components (verif/*, sim/runner.py).

Pure-Python parts (payload packing, scoreboard, coverage, stimulus generators) are checked against
independent re-implementations; the runner, stream driver/monitor/backpressure and the generic
testbench against a hand-written Verilog register stage with a hand-written manifest, on both
simulators, including a deliberately broken variant that the regression must catch.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

from nxfp_hw.formats import PRESETS, parse_format
from nxfp_hw.golden.decode import decode_bits
from verif.coverage import FormatCoverage, ResultCoverage, coverage_summary
from verif.manifest_dut import FieldSpec, PayloadLayout
from verif.regression import ModuleFiles, env_seed, run_vectors
from verif.scoreboard import Scoreboard, describe_header, show_bits
from verif.vectors import VectorSet, decode_exhaustive, dot_directed, dot_random, dot_vectors

SEED = env_seed(20240611)


def setup_module() -> None:
    print(f"test_verif_components: seed {SEED} (set NXFP_SEED to override)")


# --- payload layout ---------------------------------------------------------------------------------
PORT = {"name": "i__payload", "direction": "input", "width": 24,
        "fields": [{"name": "header", "offset": 0, "width": 8},
                   {"name": "codes", "offset": 8, "width": 16, "count": 4, "stride": 4}]}


def test_field_spec_reads_manifest_arrays() -> None:
    f = FieldSpec.from_manifest(PORT["fields"][1])
    assert (f.offset, f.width, f.count, f.stride, f.is_array) == (8, 4, 4, 4, True)
    assert not FieldSpec.from_manifest(PORT["fields"][0]).is_array


def test_payload_pack_matches_bit_slicing() -> None:
    rng = np.random.default_rng(SEED)
    layout = PayloadLayout(PORT)
    headers = rng.integers(0, 256, 50)
    codes = rng.integers(0, 16, (50, 4))
    words = layout.pack_many({"header": headers, "codes": codes})
    for w, h, c in zip(words, headers, codes, strict=False):
        bits = format(w, "024b")[::-1]  # bit i of the payload at index i
        assert int(bits[0:8][::-1], 2) == h
        for j in range(4):
            assert int(bits[8 + 4 * j: 12 + 4 * j][::-1], 2) == c[j]
        assert layout.pack({"header": int(h), "codes": c}) == w
    back = layout.unpack_many(words)
    np.testing.assert_array_equal(back["header"], headers)
    np.testing.assert_array_equal(back["codes"], codes)


def test_payload_rejects_values_that_do_not_fit() -> None:
    layout = PayloadLayout(PORT)
    with pytest.raises(ValueError, match="codes"):
        layout.pack_many({"codes": np.full((2, 4), 16)})
    with pytest.raises(ValueError, match="header"):
        layout.pack({"header": 256})
    with pytest.raises(KeyError, match="no field 'bogus'"):
        layout.pack({"bogus": 1})
    with pytest.raises(ValueError, match="beyond the port width"):
        PayloadLayout({**PORT, "width": 20})


# --- scoreboard ---------------------------------------------------------------------------------------
def test_scoreboard_reports_first_mismatch_with_decoded_inputs() -> None:
    fmt = PRESETS["nxfp4"]
    header = int(fmt.make_header(0b011111, 1, 1))  # E1M2, recycled -0 = -4, scale 2**0 * 1.5
    expected = np.array([[0x3F800000, 0x40000000], [0x7FC00000, 0x00000001]], dtype=np.uint32)
    seen = []
    sb = Scoreboard(expected, describe=lambda t, lane: seen.append((t, lane)) or describe_header(fmt, header))
    assert sb.check([0x3F800000, 0x40000000])
    assert not sb.check([0x7FC00000, 0x00000002])
    assert not sb.check([0, 0])  # unexpected third transaction: kept as extra, first mismatch unchanged
    assert seen == [(1, 1)]
    assert (sb.mismatches, sb.extra, sb.missing, sb.passed) == (1, 1, 0, False)
    msg = sb.first.message
    assert "transaction 1, lane 1" in msg and "0x00000001 (1.401298464324817e-45)" in msg
    assert "0x00000002 (2.802596928649634e-45)" in msg
    assert "selector=1" in msg and "recycle=1" in msg and "element format E1M2" in msg


def test_scoreboard_counts_missing_and_passes_exact() -> None:
    sb = Scoreboard(np.array([1, 2, 3], dtype=np.uint32))
    sb.check(1)
    sb.check(2)
    assert sb.missing == 1 and not sb.passed
    sb.check(3)
    assert sb.passed and sb.compared == 3
    assert show_bits(0x3FC00000) == "0x3fc00000 (1.5)"
    assert show_bits(0x3E00, "fp16") == "0x3e00 (1.5)"
    assert show_bits(0x3FC0, "bf16") == "0x3fc0 (1.5)"


def test_describe_header_fields() -> None:
    fmt = PRESETS["mxfp8_e4m3"]
    text = describe_header(fmt, 127)
    assert "scale_exponent=127" in text and "scale E8M0 = 1.0" in text
    assert "nan" in describe_header(fmt, 255)


# --- coverage -------------------------------------------------------------------------------------------
def test_format_coverage_bins_exhaustive_vs_partial() -> None:
    fmt = PRESETS["nxfp4"]
    h, c = decode_exhaustive(fmt, 32)
    cov = FormatCoverage(fmt)
    cov.sample(h, c)
    bins = cov.bins()
    assert all(hit == total for hit, total in bins.values()), bins
    assert bins["a.recycled"] == (4, 4) and bins["a.selectors"] == (2, 2)
    part = FormatCoverage(fmt)
    part.sample(np.array([fmt.make_header(30, 0, 0)]), np.array([[0, 1, 2]]))
    b = part.bins()
    assert b["a.codes[E2M1]"] == (3, 16) and b["a.codes[E1M2]"] == (0, 16)
    assert b["a.scale_codes"] == (1, 64) and b["a.recycled"] == (0, 4)
    assert "max" in part.missing_classes()["E2M1"] and "zero" not in part.missing_classes()["E2M1"]


def test_element_classes_of_specials() -> None:
    cov = FormatCoverage(PRESETS["mxfp8_e5m2"])
    cov.sample(np.array([127, 127]), np.array([[0x7C, 0x7D], [0xFC, 0x01]]))  # +Inf, NaN, -Inf, subnormal
    assert set(cov.missing_classes()["E5M2"]) == {"normal", "max", "zero", "negative"}  # -Inf is not finite
    rc = ResultCoverage()
    rc.sample(np.array([0x80000000, 0x00000001, 0x7F800000, 0x7FC00000], dtype=np.uint32))
    assert set(rc.missing()) == {"+0", "-subnormal", "normal", "-inf"}
    summary = coverage_summary(cov, rc)
    assert summary["bins"]["result.classes"] == [4, 8]


# --- stimulus -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,lanes", [("mxfp8_e4m3", 32), ("nxfp6", 8), ("mxfp4_e2m1", 32), ("mxint8", 16)])
def test_decode_exhaustive_covers_every_pair_on_every_lane(name: str, lanes: int) -> None:
    fmt = PRESETS[name]
    h, c = decode_exhaustive(fmt, lanes)
    n_h, n_c = 1 << fmt.header_bits, 1 << fmt.element_width
    pairs = set(zip(np.repeat(h, lanes).tolist(), c.reshape(-1).tolist(), strict=False))
    assert len(pairs) == n_h * n_c
    for lane in range(lanes):
        assert len(set(c[:, lane].tolist())) == n_c


def test_dot_vectors_beats_reassemble_blocks() -> None:
    fa, fb = PRESETS["nxfp4"], PRESETS["mxfp4_e2m1"]
    rng = np.random.default_rng(SEED)
    blocks = dot_random(fa, fb, 12, rng, distributions=("gaussian", "codes"))
    vs = dot_vectors(fa, fb, 8, blocks, rng)
    per = 4
    assert vs.beats == 12 * per
    np.testing.assert_array_equal(vs.inputs["a_codes"].reshape(12, 32), blocks.ca)
    np.testing.assert_array_equal(vs.inputs["b_codes"].reshape(12, 32), blocks.cb)
    np.testing.assert_array_equal(vs.inputs["a_header"][::per], blocks.ha)
    last = vs.inputs["last"].reshape(12, per)
    assert not last[:, :-1].any() and np.array_equal(last[:, -1].astype(bool), blocks.last)
    # results: float32 sums of independently decoded products (exact here: small formats, few blocks)
    va = np.array([[float(x) for x in row] for row in decode_bits(fa, blocks.ha, blocks.ca).view(np.float32)])
    vb = np.array([[float(x) for x in row] for row in decode_bits(fb, blocks.hb, blocks.cb).view(np.float32)])
    per_block = np.float32((va * vb).sum(axis=1))
    acc, out = np.float32(0), []
    for r, is_last in zip(per_block, blocks.last, strict=False):
        acc = np.float32(acc + r)
        if is_last:
            out.append(acc)
            acc = np.float32(0)
    np.testing.assert_array_equal(vs.expected["result"].view(np.float32), np.array(out, np.float32))


def _result_classes(bits: np.ndarray) -> set[str]:
    f = bits.view(np.float32)
    out = set()
    out |= {"nan"} if np.isnan(f).any() else set()
    out |= {"+inf"} if (f == np.inf).any() else set()
    out |= {"-inf"} if (f == -np.inf).any() else set()
    sub = (np.abs(f) < np.finfo(np.float32).tiny) & (f != 0)
    out |= {"subnormal"} if sub.any() else set()
    return out


@pytest.mark.parametrize("name", ["mxfp8_e5m2", "mxfp8_e4m3"])
def test_dot_directed_reaches_special_results(name: str) -> None:
    fmt = PRESETS[name]
    rng = np.random.default_rng(SEED)
    blocks = dot_directed(fmt, fmt, rng)
    vs = dot_vectors(fmt, fmt, 32, blocks, rng)
    classes = _result_classes(vs.expected["result"])
    want = {"nan", "+inf", "subnormal"} | ({"-inf"} if name == "mxfp8_e5m2" else set())
    assert want <= classes
    cases = set(blocks.case)
    assert {"accumulation tie to even (down)", "accumulation tie to even (up)", "block cancellation"} <= cases
    if name == "mxfp8_e5m2":
        assert {"+Inf + -Inf (E5M2 in a)", "Inf x 0 (E5M2 in b)", "block tie to even (up)"} <= cases
    # the accumulation ties: 1 + 2**-24 -> 1.0, (1 + 2**-23) + 2**-24 -> 1 + 2**-22
    ends = vs.aux["red_end"]
    case_of = [blocks.case[e] for e in ends]
    res = vs.expected["result"].view(np.float32)
    assert res[case_of.index("accumulation tie to even (down)")] == np.float32(1.0)
    assert res[case_of.index("accumulation tie to even (up)")] == np.float32(1 + 2.0**-22)


def test_dot_directed_covers_every_selector_and_recycled_value() -> None:
    fmt = PRESETS["nxfp5"]
    blocks = dot_directed(fmt, fmt, np.random.default_rng(SEED))
    cov = FormatCoverage(fmt)
    cov.sample(blocks.ha, blocks.ca)
    assert cov.bins()["a.selectors"] == (2, 2)
    assert cov.bins()["a.recycled"] == (4, 4)


# --- runner + stream components on a hand-written register stage ----------------------------------------
STAGE_V = """`timescale 1ns/1ps
// values[j] = {16'h0, header, 4'h0, codes[j]}: a one-deep valid/ready register stage.
module pt_stage(input clk, input rst, input i__valid, output i__ready, input [23:0] i__payload,
                output reg o__valid, input o__ready, output reg [127:0] o__payload);
  assign i__ready = !o__valid || o__ready;
  integer j;
  always @(posedge clk) begin
    if (rst) begin
      o__valid <= 1'b0;
    end else if (i__valid && i__ready) begin
      o__valid <= 1'b1;
      for (j = 0; j < 4; j = j + 1)
        o__payload[32*j +: 32] <= {16'h0, i__payload[7:0], 4'h0, i__payload[8 + 4*j +: 4]} ^ BUG_MASK(j);
    end else if (o__ready) begin
      o__valid <= 1'b0;
    end
  end
  function [31:0] BUG_MASK(input integer lane);
    BUG_MASK = (`BUG && lane == 2 && i__payload[7:0] == 8'h2a) ? 32'h1 : 32'h0;
  endfunction
endmodule
"""


def _stage_manifest() -> dict:
    fmt = parse_format("elem=E2M1,scale=E8M0,k=4")
    return {
        "schema": "nxfp-hw-manifest/1", "module": "pt_stage", "unit": "passthrough",
        "formats": {"a": fmt.describe()}, "lanes": 4, "latency": 1, "initiation_interval": 1,
        "clock": {"name": "clk", "edge": "posedge"},
        "reset": {"name": "rst", "polarity": "active_high", "synchronous": True},
        "ports": [{"name": "clk", "direction": "input", "width": 1}, {"name": "rst", "direction": "input", "width": 1},
                  {"name": "i__valid", "direction": "input", "width": 1},
                  {"name": "i__ready", "direction": "output", "width": 1},
                  PORT, {"name": "o__valid", "direction": "output", "width": 1},
                  {"name": "o__ready", "direction": "input", "width": 1},
                  {"name": "o__payload", "direction": "output", "width": 128,
                   "fields": [{"name": "values", "offset": 0, "width": 128, "count": 4, "stride": 32}]}],
        "streams": {"i": {"valid": "i__valid", "ready": "i__ready", "payload": "i__payload"},
                    "o": {"valid": "o__valid", "ready": "o__ready", "payload": "o__payload"}},
        "files": {"verilog": "pt_stage.v", "core": "pt_stage.core"},
    }


def _stage(tmp: Path, bug: bool) -> ModuleFiles:
    import json

    d = tmp / ("bug" if bug else "ok")
    d.mkdir(parents=True, exist_ok=True)
    (d / "pt_stage.v").write_text(f"`define BUG {int(bug)}\n" + STAGE_V)
    manifest = _stage_manifest()
    (d / "pt_stage.json").write_text(json.dumps(manifest))
    return ModuleFiles("pt_stage", d / "pt_stage.v", d / "pt_stage.json", manifest)


def _stage_vectors(n: int, rng: np.random.Generator) -> VectorSet:
    headers = rng.integers(0, 256, n)
    headers[headers == 0x2A] = 0x2B
    headers[n // 2] = 0x2A  # the only beat the broken stage corrupts (lane 2)
    codes = rng.integers(0, 16, (n, 4))
    values = (headers[:, None] << 8) | codes  # independent model of the stage
    meta = {"unit": "passthrough", "compare_field": "values", "kind": "fp32", "operands": {"a": ["header", "codes"]},
            "reset_prefix": 3}
    return VectorSet({"header": headers, "codes": codes}, {"values": values.astype(np.uint32)}, {}, meta)


@pytest.fixture(scope="module")
def build_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("NXFP_SIM_BUILD")
    return Path(env).resolve() if env else tmp_path_factory.mktemp("simbuild")


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_stream_components_on_register_stage(simulator: str, tmp_path: Path, build_root: Path) -> None:
    rng = np.random.default_rng(SEED)
    vs = _stage_vectors(60, rng)
    good = run_vectors(_stage(tmp_path, False), vs, simulator, seed=SEED, gap=0.3, stall=0.4,
                       build_root=build_root, testbench="verif.tb_stream", tag="stage-ok")
    assert good.passed, good.message
    st = good.stats
    assert st["received"] == 60 and st["input_gaps"] > 0 and st["output_stalls"] > 0 and st["reset_prefix"] == 3
    assert st["cycles"] >= 60 + st["input_gaps"]
    np.testing.assert_array_equal(good.got, vs.expected["values"])
    # The same build is reused for the next run.
    again = run_vectors(_stage(tmp_path, False), vs, simulator, seed=SEED + 1, build_root=build_root,
                        testbench="verif.tb_stream", tag="stage-again")
    assert again.passed and again.build.reused
    bad = run_vectors(_stage(tmp_path, True), vs, simulator, seed=SEED, build_root=build_root,
                      testbench="verif.tb_stream", tag="stage-bug")
    assert not bad.passed
    assert bad.stats["mismatches"] >= 1
    assert f"transaction {30}, lane 2" in bad.message and "header=42" in bad.message


def test_runner_waves_kept_only_on_failure(tmp_path: Path, build_root: Path) -> None:
    rng = np.random.default_rng(SEED)
    vs = _stage_vectors(8, rng)
    ok = run_vectors(_stage(tmp_path, False), vs, "icarus", seed=SEED, waves=True, build_root=build_root,
                     testbench="verif.tb_stream", tag="waves-ok")
    assert ok.passed and ok.sim.waves is None and not list(ok.sim.run_dir.glob("*.fst"))
    bad = run_vectors(_stage(tmp_path, True), vs, "icarus", seed=SEED, waves=True, build_root=build_root,
                      testbench="verif.tb_stream", tag="waves-bug")
    assert not bad.passed and bad.sim.waves is not None and bad.sim.waves.stat().st_size > 0


def test_check_simulator_names_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from nxfp_hw.errors import UserError
    from sim.runner import check_simulator

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UserError, match="apt-get install iverilog"):
        check_simulator("icarus")
    with pytest.raises(UserError, match="expected one of verilator, icarus"):
        check_simulator("modelsim")


def test_env_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NXFP_SEED", "0x10")
    assert env_seed(3) == 16
    monkeypatch.delenv("NXFP_SEED")
    assert env_seed(3) == 3
    assert isinstance(env_seed(), int)
    random.seed(0)
