"""Foreign units (docs/verification.md "Verify your own RTL"): descriptions, the Verilator port reader, the
adapter, the any-width scoreboard, and the hand-written examples under examples/foreign/ verified through
the real CLI (``nxfp-hw verify --manifest``) on Verilator and Icarus, the buggy variant caught."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from nxfp_hw.cli import main
from nxfp_hw.flows.foreign import ForeignError, adapter_text, load_description, read_ports
from verif.field_scoreboard import FieldCheck, FieldScoreboard, show_value
from verif.regression import env_seed

SEED = env_seed(12)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "foreign"
BUILD_ROOT = Path(os.environ.get("NXFP_SIM_BUILD", Path(__file__).resolve().parents[1] / "build" / "sim")).resolve()


def setup_module() -> None:
    print(f"test_foreign: seed {SEED} (set NXFP_SEED to override)")


def _verify(*args: str) -> int:
    return main(["verify", "--build-dir", str(BUILD_ROOT), "--seed", str(SEED), *args])


def _copy(tmp_path: Path, name: str | Path, **changes) -> Path:
    """The description ``name`` (an example's name, or a path) with ``changes`` applied (a key set to None
    is removed), its paths made absolute, written into ``tmp_path``."""
    src = name if isinstance(name, Path) else EXAMPLES / f"{name}.json"
    data = json.loads(src.read_text())
    for key in ("sources", "include_dirs"):
        if key in data:
            data[key] = [str((src.parent / s).resolve()) for s in data[key]]
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    path = tmp_path / src.name
    path.write_text(json.dumps(data))
    return path


# --- the port reader ---------------------------------------------------------------------------------
SV = """
`include "widths.svh"
typedef logic [7:0] byte_t;
module t #(parameter int K = 4, parameter int W = 43) (
  input  logic              clk,
  input  byte_t             i_scale,
  input  logic [3:0]        i_a [K],
  input  logic [3:0]        i_b [K-1:0],
  input  logic [1:0][5:0]   i_packed,
  output logic signed [W-1:0] o_dp,
  output logic [`OUT_W-1:0] o_flags,
  output logic              o_nan,
  output wire signed [3:0]  o_net
);
  assign o_net = 4'sd0;
  assign o_dp = '0;
  assign o_flags = '0;
  assign o_nan = i_scale[0] & clk;
endmodule
"""


def test_read_ports_systemverilog(tmp_path: Path) -> None:
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "widths.svh").write_text("`define OUT_W 3\n")
    src = tmp_path / "t.sv"
    src.write_text(SV)
    ports = read_ports("t", [src], includes=[tmp_path / "inc"], parameters={"K": 32})
    got = {n: (p.direction, p.width, p.signed, p.dims) for n, p in ports.items()}
    assert got == {
        "clk": ("input", 1, False, ()),
        "i_scale": ("input", 8, False, ()),
        "i_a": ("input", 4, False, ((0, 31),)),
        "i_b": ("input", 4, False, ((31, 0),)),
        "i_packed": ("input", 12, False, ()),
        "o_dp": ("output", 43, True, ()),
        "o_flags": ("output", 3, False, ()),
        "o_nan": ("output", 1, False, ()),
        "o_net": ("output", 4, True, ()),
    }
    assert list(ports) == ["clk", "i_scale", "i_a", "i_b", "i_packed", "o_dp", "o_flags", "o_nan", "o_net"]


def test_generated_manifest_port_check_reads_systemverilog() -> None:
    """The manifest/Verilog port check elaborates hand-written SystemVerilog instead of misreading it."""
    from nxfp_hw.flows.manifest import verilog_ports

    text = (EXAMPLES / "mx_block_dot.sv").read_text()
    assert verilog_ports(text, "mx_block_dot") == {
        "i_scale_a": ("input", 8), "i_scale_b": ("input", 8), "i_a": ("input", 256), "i_b": ("input", 256),
        "o_dp": ("output", 43), "o_exp": ("output", 10), "o_nan": ("output", 1)}
    text = ("module m (output logic signed [42:0] o_dp, input logic [3:0] a [32], output wire signed [3:0] x);\n"
            "endmodule")
    assert verilog_ports(text, "m") == {"o_dp": ("output", 43), "a": ("input", 128), "x": ("output", 4)}


def test_read_ports_compile_error_names_file_and_line(tmp_path: Path) -> None:
    src = tmp_path / "bad.sv"
    src.write_text("module bad (input logic a, output logic b);\n  assign b = a +;\nendmodule\n")
    with pytest.raises(ForeignError, match=r"sources do not compile \(verilator\): .*bad.sv:2:"):
        read_ports("bad", [src])


def test_adapter_flattens_unpacked_arrays() -> None:
    desc = load_description(EXAMPLES / "bf16_to_mxfp8.json")
    ports = read_ports(desc.top, list(desc.sources), parameters=desc.parameters)
    text = adapter_text(desc, ports)
    assert "input logic [511:0] i_bf16" in text and "output logic [255:0] o_elem" in text
    assert "assign i_bf16__u[0 + j] = i_bf16[j*16 +: 16];" in text
    assert "assign o_elem[j*8 +: 8] = o_elem__u[0 + j];" in text
    assert "bf16_to_mxfp8 #(.K(32), .MIN_SCALE(100)) u_dut (" in text


# --- the scoreboard ------------------------------------------------------------------------------------
def test_field_scoreboard_any_width_and_masks() -> None:
    checks = [FieldCheck("o_dp", "sum", 43, signed=True, kind="exact", lsb_exponent=-18),
              FieldCheck("o_wide", "x", 100), FieldCheck("o_codes", "codes", 8, count=4)]
    sb = FieldScoreboard(checks, describe=lambda t, lane: f"transaction {t} lane {lane}", name="dut")
    big = (1 << 99) + 12345
    assert sb.check(0, {"o_dp": (1 << 43) - 5, "o_wide": big, "o_codes": 0x04030201},
                    {"o_dp": [-5], "o_wide": [big], "o_codes": [1, 2, 3, 4]})
    # don't care lanes are skipped; a 43-bit negative mismatch never crashes and decodes both values
    assert not sb.check(1, {"o_dp": (1 << 42), "o_wide": big, "o_codes": 0xFF030201},
                        {"o_dp": [-(1 << 42) + 1], "o_wide": [big], "o_codes": [1, 2, 3, None]})
    assert sb.mismatches == 1 and sb.dont_care == 1
    msg = sb.first.message
    assert "port o_dp (sum)" in msg and "expected 0x40000000001" in msg and "got 0x40000000000" in msg
    assert "-4398046511103*2^-18" in msg and "transaction 1 lane 0" in msg
    assert not sb.check(2, {"o_dp": None, "o_wide": big + 1, "o_codes": 0}, {"o_dp": [0], "o_wide": [big],
                                                                           "o_codes": [0, 0, 0, 0]})
    assert sb.xz == 1 and sb.per_port == {"o_dp": 2, "o_wide": 1}
    assert show_value(None, 8) == "X/Z"
    assert show_value(0x7FC00000, 32, "fp32") == "0x7fc00000 (nan)"
    assert show_value(5, 8, "code", show=lambda v: 1 / 0).startswith("0x05 (undecodable")


def test_stream_scoreboard_wide_and_non_ieee() -> None:
    """The generated units' scoreboard and coverage with outputs past 64 bits and non-IEEE kinds."""
    from verif.coverage import ResultCoverage, coverage_summary
    from verif.scoreboard import Scoreboard, show_bits

    assert show_bits((1 << 43) - 1, "fp32") == "0x7ffffffffff (8796093022207)"
    assert show_bits(7, "code") == "0x7 (7)"
    sb = Scoreboard(np.array([[1 << 70, 3]], dtype=object), kind="int", name="wide")
    assert not sb.check([(1 << 70) + 1, 3])
    assert "expected 0x400000000000000000 (1180591620717411303424)" in sb.first.message
    rc = ResultCoverage("code", "codes")
    rc.sample(np.arange(4))
    assert coverage_summary(rc) == {"bins": {}, "missed": {}}


# --- bad descriptions: one message naming the key, exit 2 -------------------------------------------------
BAD = [
    ({"top": None}, "top: missing (required)"),
    ({"timing": {"model": "comb"}}, "timing.model: expected one of combinational, fixed_latency, stream, got "
                                    "\"comb\""),
    ({"unit": "dot"}, "unit: expected one of block_dot, convert, decode, got \"dot\""),
    ({"formats": {"a": "mxfp9", "b": "mxfp8_e4m3"}}, "formats.a: "),
    ({"sources": ["nope.sv"]}, "sources[0]: nope.sv does not exist"),
    ({"paramters": {"K": 32}}, "paramters: unknown key (did you mean 'parameters'?)"),
    ({"policy": "ocp"}, "policy: only for a convert unit"),
    ({"schema": "nxfp-hw-foreign/2"}, "schema: expected 'nxfp-hw-foreign/1', got \"nxfp-hw-foreign/2\""),
    ({"schema": None}, "schema: expected 'nxfp-hw-foreign/1', got null"),
    ({"parameters": {"K": 16}}, "ports (i_a).count: described as 32 elements, but the sources declare 16"),
]


@pytest.mark.parametrize("changes,message", BAD)
def test_bad_description(changes, message, tmp_path: Path, capsys) -> None:
    path = _copy(tmp_path, "mx_block_dot", **changes)
    if changes.get("sources"):
        data = json.loads(path.read_text())
        data["sources"] = changes["sources"]
        path.write_text(json.dumps(data))
    assert _verify("--manifest", str(path)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nxfp-hw verify: error: {message}"), err
    assert err.count("\n") == 1


def _ports(**edits) -> list[dict]:
    ports = json.loads((EXAMPLES / "mx_block_dot.json").read_text())["ports"]
    for p in ports:
        p.update(edits.get(p["name"], {}))
    return [p for p in ports if p.get("name") != "drop"]


BAD_PORTS = [
    ({"o_dp": {"name": "o_sum"}}, "ports (o_sum).name: o_sum is not a port of the top (ports: i_scale_a"),
    ({"o_dp": {"width": 40}}, "ports (o_dp).width: described as 40 bits per element, but the sources declare 43"),
    ({"o_dp": {"lsb_exponent": -20}}, "ports (o_dp).width: 43 bits cannot hold the exact sum of mxfp8_e4m3 x "
                                      "mxfp8_e4m3 (needs 44 bits, two's complement, LSB 2^-20)"),
    ({"o_dp": {"lsb_exponent": -16}}, "ports (o_dp).lsb_exponent: 2^-16 is coarser than the LSB 2^-18"),
    ({"o_dp": {"field": "summ"}}, "ports[4] (o_dp).field: \"summ\" is not a field of a block_dot unit"),
    ({"o_nan": {"field": None}}, "ports[6] (o_nan).field: missing; map the port to a field"),
    ({"i_a": {"field": "x"}}, "ports[2] (i_a).field: \"x\" is not a field of a block_dot unit"),
    ({"o_exp": {"name": "drop"}}, "ports: port o_exp of mx_block_dot (output) is not described"),
    ({"i_scale_a": {"field": "a.header", "width": 4}}, "ports (i_scale_a).width: described as 4 bits"),
    ({"o_nan": {"direction": "input"}}, "ports[6] (o_nan).direction: \"input\", but field nan is an output"),
    ({"o_dp": {"dont_care": "always"}}, "ports[4] (o_dp).dont_care: expected one of special, never"),
]


@pytest.mark.parametrize("edits,message", BAD_PORTS)
def test_ports_that_disagree(edits, message, tmp_path: Path, capsys) -> None:
    path = _copy(tmp_path, "mx_block_dot", ports=_ports(**edits))
    assert main(["manifest", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nxfp-hw manifest: error: {message}"), err


def test_malformed_json_and_policy(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "nxfp-hw-foreign/1",\n "top": }')
    assert _verify("--manifest", str(bad)) == 2
    assert "not valid JSON (line 2, column 9" in capsys.readouterr().err
    assert _verify("--manifest", str(tmp_path / "missing.json")) == 2
    assert "missing.json does not exist" in capsys.readouterr().err
    path = _copy(tmp_path, "bf16_to_mxfp8", policy={"preset": "mx"})
    assert _verify("--manifest", str(path)) == 2
    assert "policy.preset: unknown policy 'mx'; presets: spec, ocp, microxcaling" in capsys.readouterr().err
    path = _copy(tmp_path, "bf16_to_mxfp8", formats={"a": "mxfp4_e2m1"})
    assert _verify("--manifest", str(path)) == 2
    assert "policy.nonfinite: nan_elements needs element formats with a NaN or Inf code" in capsys.readouterr().err
    path = _copy(tmp_path, "mx_block_dot")
    assert _verify("--manifest", str(path), "--unit", "dot") == 2
    assert "--unit: not with --manifest" in capsys.readouterr().err


def test_manifest_init_drafts_ports(tmp_path: Path, capsys) -> None:
    out = tmp_path / "draft.json"
    assert main(["manifest", "init", "--rtl", str(EXAMPLES / "mx_block_dot.sv"), "--top", "mx_block_dot",
                 "-P", "K=32", "--unit", "block_dot", "-o", str(out)]) == 0
    draft = json.loads(out.read_text())
    assert draft["timing"] == {"model": "combinational"} and draft["clock"] is None
    assert {p["name"]: (p["width"], p.get("count"), p.get("signed")) for p in draft["ports"]} == {
        "i_scale_a": (8, None, None), "i_scale_b": (8, None, None), "i_a": (8, 32, None), "i_b": (8, 32, None),
        "o_dp": (43, None, True), "o_exp": (10, None, True), "o_nan": (1, None, None)}
    assert main(["manifest", "check", str(out)]) == 2  # formats and fields still to fill in
    assert "formats.a: expected a string, got null" in capsys.readouterr().err
    assert main(["manifest", "init", "--rtl", str(EXAMPLES / "mx_block_dot.sv"), "--top", "mx_block_dot",
                 "-o", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["manifest", "init", "--rtl", str(EXAMPLES / "mx_block_dot.sv"), "--top", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


# --- the examples through the CLI --------------------------------------------------------------------------
@pytest.mark.parametrize("name,sim", [("mx_block_dot", "verilator"), ("bf16_to_mxfp8", "verilator"),
                                      ("mx_block_dot", "icarus")])
def test_example_passes(name: str, sim: str, capsys) -> None:
    assert _verify("--manifest", str(EXAMPLES / f"{name}.json"), "--sim", sim, "--blocks", "32") == 0
    out = capsys.readouterr().out
    assert "PASS: every output bit matches the golden model" in out and "mismatches 0" in out


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_buggy_variant_is_caught(sim: str, capsys) -> None:
    assert _verify("--manifest", str(EXAMPLES / "mx_block_dot_buggy.json"), "--sim", sim, "--blocks", "16") == 1
    out = capsys.readouterr().out
    fail = out[out.index("FAIL: "):]
    assert fail.startswith("FAIL: mx_block_dot_buggy mismatch at transaction ")
    assert "port o_dp (sum): expected 0x" in fail and "*2^" in fail  # exact values, decoded
    assert "inputs: case: " in fail and "a: header 0x" in fail and "golden: S = " in fail


def test_icarus_says_it_cannot_run_the_converter(capsys) -> None:
    if shutil.which("iverilog") is None:
        pytest.skip("no iverilog")
    from nxfp_hw.flows.foreign import icarus_passes_unpacked_outputs
    from nxfp_hw.flows.tools import find_tool

    if icarus_passes_unpacked_outputs(find_tool("iverilog")):
        pytest.skip("this Icarus propagates unpacked-array output ports")
    assert _verify("--manifest", str(EXAMPLES / "bf16_to_mxfp8.json"), "--sim", "icarus") == 2
    err = capsys.readouterr().err
    assert "icarus cannot run this design (Icarus Verilog" in err
    assert "output port o_elem of bf16_to_mxfp8 is an unpacked array" in err and "--sim verilator" in err


def test_converter_policy_is_bit_exact_not_vacuous(tmp_path: Path, capsys) -> None:
    """The converter rounds ties away from zero: stated as ties to even, the same RTL must fail."""
    policy = json.loads((EXAMPLES / "bf16_to_mxfp8.json").read_text())["policy"]
    path = _copy(tmp_path, "bf16_to_mxfp8", policy={**policy, "rounding": "even"})
    assert _verify("--manifest", str(path), "--blocks", "0") == 1
    out = capsys.readouterr().out
    assert "port o_elem (codes[" in out and "(x / X = " in out


def test_generated_manifest_verified_as_edited(tmp_path: Path, capsys) -> None:
    """verify --manifest on a manifest nxfp-hw generated: the edited Verilog is verified, never regenerated."""
    name = "nxfp_decode_mxfp8_e4m3_l32_fp32_pa"
    shutil.copytree(Path(__file__).resolve().parents[1] / "rtl_out" / name, tmp_path / name)
    verilog = tmp_path / name / f"{name}.v"
    edited = verilog.read_text().replace("23'h400000", "23'h400001")  # NaN 0x7FC00001: not the canonical one
    assert edited != verilog.read_text()
    verilog.write_text(edited)
    assert _verify("--manifest", str(tmp_path / name / f"{name}.json"), "--sim", "icarus", "--blocks", "16") == 1
    out = capsys.readouterr().out
    assert "not regenerated" in out and "expected 0x7fc00000 (nan), got 0x7fc00001 (nan)" in out
    assert verilog.read_text() == edited


PIPED = Path(__file__).resolve().parent / "foreign" / "mx_block_dot_piped.json"


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_fixed_latency_with_strobes_reset_includes(sim: str, capsys) -> None:
    """Two sources, an include directory, a parameter, an active-low reset, valid strobes, packed element
    ports (count on a flat vector), an ignored output and a header mapped whole: all from the description."""
    assert _verify("--manifest", str(PIPED), "--sim", sim, "--blocks", "16", "--gap", "0.4") == 0
    out = capsys.readouterr().out
    assert "fixed_latency (latency 3, strobes in_valid/out_valid)" in out and "PASS" in out


def test_wrong_latency_is_a_strobe_error(tmp_path: Path, capsys) -> None:
    timing = {**json.loads(PIPED.read_text())["timing"], "latency": 2}
    path = _copy(tmp_path, PIPED, timing=timing)
    assert _verify("--manifest", str(path), "--blocks", "0") == 1
    out = capsys.readouterr().out
    assert "FAIL: valid strobe out of step: cycle " in out
    assert "out_valid is 0, expected 1 (2 cycles after a transaction)" in out


def test_json_schema_matches_the_validator() -> None:
    """foreign.schema.json documents exactly the keys load_description accepts, and the examples fit it."""
    from nxfp_hw.flows import foreign
    from nxfp_hw.golden.policies import PRESETS

    schema = json.loads(foreign.SCHEMA_FILE.read_text())
    assert set(schema["properties"]) == foreign._TOP_KEYS
    port = schema["properties"]["ports"]["items"]["properties"]
    assert set(port) == foreign._PORT_KEYS
    fields = {f for unit in foreign.UNITS.values() for f in unit}
    assert set(port["field"]["enum"]) - {None} == fields
    assert schema["properties"]["unit"]["enum"] == list(foreign.UNITS)
    assert schema["properties"]["timing"]["properties"]["model"]["enum"] == list(foreign.TIMING_MODELS)
    assert schema["properties"]["policy"]["oneOf"][0]["enum"] == list(PRESETS)
    import dataclasses

    from nxfp_hw.golden.policies import Policy

    policy_keys = set(schema["properties"]["policy"]["oneOf"][1]["properties"])
    assert policy_keys == {f.name for f in dataclasses.fields(Policy)} - {"name"} | {"preset"}
    slice_keys = set(port["fields"]["items"]["properties"])
    assert slice_keys == foreign._SLICE_KEYS
    assert set(schema["properties"]["accumulation"]["properties"]) == {"mode", "guard_bits"}
    for path in [*EXAMPLES.glob("*.json"), PIPED, STREAM]:
        data = json.loads(path.read_text())
        assert set(data) <= set(schema["properties"]) and set(schema["required"]) <= set(data), path
        for p in data["ports"]:
            assert set(p) <= set(port), (path, p)


STREAM = Path(__file__).resolve().parent / "foreign" / "mx_block_dot_stream.json"


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_stream_unit_with_backpressure(sim: str, capsys) -> None:
    assert _verify("--manifest", str(STREAM), "--sim", sim, "--blocks", "16", "--stall", "0.5") == 0
    out = capsys.readouterr().out
    assert "stream (s_valid/s_ready in, m_valid/m_ready out)" in out and "PASS" in out


def test_stream_handshake_bug_is_caught(tmp_path: Path, capsys) -> None:
    path = _copy(tmp_path, STREAM, defines={"DROP_ON_STALL": 1})
    assert _verify("--manifest", str(path), "--blocks", "8", "--stall", "0.5") == 1
    out = capsys.readouterr().out
    assert "FAIL: handshake protocol violated: cycle " in out and "changed while the output was stalled" in out


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_output_wider_than_64_bits(sim: str, tmp_path: Path, capsys) -> None:
    """An 80-bit sum port (the example's SUM_W parameter, sign-extended) compared as a Python int."""
    data = json.loads(_copy(tmp_path, "mx_block_dot").read_text())
    data["parameters"]["SUM_W"] = 80
    data["ports"][4]["lsb_exponent"] = -30  # 12 more fraction bits: the port still holds the sum exactly
    path = tmp_path / "wide.json"
    path.write_text(json.dumps(data))
    assert _verify("--manifest", str(path), "--sim", sim, "--blocks", "8") == 1  # a wrong LSB: the RTL's is 2^-18
    out = capsys.readouterr().out
    assert "port o_dp (sum): expected 0x" in out and "*2^" in out  # 80-bit values, decoded, no crash
    data["ports"][4]["lsb_exponent"] = -18
    path.write_text(json.dumps(data))
    assert _verify("--manifest", str(path), "--sim", sim, "--blocks", "8") == 0
    assert "PASS" in capsys.readouterr().out


def _desc(tmp_path: Path, unit: str, formats: dict, ports: list[dict], **extra) -> Path:
    data = {"schema": "nxfp-hw-foreign/1", "top": "t", "sources": [str(EXAMPLES / "mx_block_dot.sv")],
            "timing": {"model": "combinational"}, "unit": unit, "formats": formats, "ports": ports, **extra}
    path = tmp_path / f"{unit}.json"
    path.write_text(json.dumps(data))
    return path


def test_stimulus_fields_are_the_golden_views(tmp_path: Path) -> None:
    """Every output field's expected values, as make_stimulus computes them, against the golden functions."""
    from nxfp_hw.golden import block_dot_bits, decode_bits
    from nxfp_hw.golden.policies import encode_blocks
    from nxfp_hw.golden.views import block_scale, element_products, exact_block_sum
    from verif.foreign import make_stimulus

    rng = np.random.default_rng(SEED)
    path = _desc(tmp_path, "block_dot", {"a": "nxfp4", "b": "mxfp8_e5m2"}, [
        {"name": "ha", "field": "a.header"}, {"name": "ca", "field": "a.codes", "count": 32},
        {"name": "sb", "field": "b.scale"}, {"name": "cb", "field": "b.codes", "count": 32},
        {"name": "r", "field": "result"}, {"name": "p", "field": "products", "count": 32, "width": 40, "signed": True},
        {"name": "inf", "field": "inf"}, {"name": "m", "field": "scale_man", "width": 8},
        {"name": "s", "field": "sum", "width": 64, "signed": True, "dont_care": "never"}])
    desc = load_description(path, check_sources=False)
    st = make_stimulus(desc, rng, 16)
    fa, fb = desc.formats["a"], desc.formats["b"]
    ha, ca, hb, cb = st.inputs["a.header"], st.inputs["a.codes"], st.inputs["b.header"], st.inputs["b.codes"]
    assert (st.inputs["b.scale"] == fb.split_header(hb)[0]).all()
    assert [r[0] for r in st.expected["r"]] == block_dot_bits(fa, ha, ca, fb, hb, cb).tolist()
    s = exact_block_sum(fa, ha, ca, fb, hb, cb)
    assert [r[0] for r in st.expected["s"]] == s.value.tolist()  # "never": compared everywhere (0 when special)
    assert [r[0] for r in st.expected["inf"]] == (s.pinf | s.ninf).astype(int).tolist()
    special = s.nan | s.pinf | s.ninf
    sc = block_scale(fa, ha, fb, hb)
    assert [r[0] for r in st.expected["m"]] == [None if x else int(v) for x, v in zip(special, sc.scale_man,
                                                                                       strict=True)]
    pr = element_products(fa, ha, ca, fb, hb, cb)
    want = [[None if (special[t] or pr.nan[t, j] or pr.pinf[t, j] or pr.ninf[t, j]) else int(pr.value[t, j])
             for j in range(32)] for t in range(st.n)]
    assert st.expected["p"] == want

    path = _desc(tmp_path, "decode", {"a": "nxfp4"}, [
        {"name": "h", "field": "a.header"}, {"name": "c", "field": "a.codes", "count": 32},
        {"name": "v", "field": "values", "count": 32}], output_format="bf16")
    desc = load_description(path, check_sources=False)
    st = make_stimulus(desc, rng, 4)
    want = decode_bits(desc.formats["a"], st.inputs["a.header"], st.inputs["a.codes"], out="bf16")
    assert st.expected["v"] == want.astype(int).tolist() and desc.port("v").width == 16

    path = _desc(tmp_path, "convert", {"a": "nxfp4"}, [
        {"name": "x", "field": "x", "count": 32}, {"name": "h", "field": "header"},
        {"name": "c", "field": "codes", "count": 32}], policy={"preset": "ocp", "metric": "hw"})
    desc = load_description(path, check_sources=False)
    st = make_stimulus(desc, rng, 4)
    x = st.inputs["x"].astype(np.uint32).view(np.float32).astype(np.float64)
    enc = encode_blocks(desc.formats["a"], x, {"preset": "ocp", "metric": "hw"})
    assert [r[0] for r in st.expected["h"]] == enc.headers.tolist()
    nan_blocks = enc.headers == desc.formats["a"].make_header(desc.formats["a"].scale.nan_code)
    assert nan_blocks.any()
    assert all(all(v is None for v in st.expected["c"][t]) for t in np.flatnonzero(nan_blocks))  # don't care


def _generated_dot_as_foreign(tmp_path: Path, mode: str | None = None) -> Path:
    """A dot engine nxfp-hw generated (rtl_out/), described as a foreign stream unit: its payload ports
    sliced into fields at the offsets its own manifest gives, one fp32 result per reduction."""
    manifests = sorted((Path(__file__).resolve().parents[1] / "rtl_out").glob(
        "nxfp_dot_mxfp4_e2m1_x_mxfp4_e2m1_l32_*/*.json"))
    if not manifests:
        pytest.skip("no mxfp4 dot engine in rtl_out/")
    m = json.loads(manifests[0].read_text())
    ports = {p["name"]: p for p in m["ports"]}
    i, o = m["streams"]["i"], m["streams"]["o"]
    names = {"a_header": "a.header", "a_codes": "a.codes", "b_header": "b.header", "b_codes": "b.codes",
             "last": "last"}
    slices = [{"field": names[f["name"]], "offset": f["offset"]} for f in ports[i["payload"]]["fields"]]
    desc = {
        "schema": "nxfp-hw-foreign/1", "top": m["module"],
        "sources": [str(manifests[0].parent / m["files"]["verilog"])],
        "clock": {"name": m["clock"]["name"]}, "reset": {"name": m["reset"]["name"], "polarity": "active_high"},
        "timing": {"model": "stream", "valid_in": i["valid"], "ready_in": i["ready"], "valid_out": o["valid"],
                   "ready_out": o["ready"]},
        "unit": "block_dot", "formats": {"a": "mxfp4_e2m1", "b": "mxfp4_e2m1"},
        "accumulation": {"mode": mode or m["accumulation"]["mode"]},
        "ports": [{"name": i["payload"], "fields": slices},
                  {"name": o["payload"], "fields": [{"field": "reduction", "offset": 0}]}],
    }
    path = tmp_path / "generated_dot.json"
    path.write_text(json.dumps(desc))
    return path


def test_generated_dot_engine_as_foreign_reduction(tmp_path: Path, capsys) -> None:
    """Fields sliced out of packed ports, last markers, one result per reduction in the stated accumulation
    mode: the generated engine passes in its own mode and fails when described in another one."""
    path = _generated_dot_as_foreign(tmp_path)
    assert _verify("--manifest", str(path), "--sim", "icarus", "--blocks", "16") == 0
    out = capsys.readouterr().out
    assert "PASS" in out
    path = _generated_dot_as_foreign(tmp_path, mode="fused")
    assert _verify("--manifest", str(path), "--sim", "icarus", "--blocks", "0") == 1
    out = capsys.readouterr().out
    assert "(reduction, bits" not in out and "port o__payload (reduction): expected 0x" in out
    assert "accumulation fused" in out and "golden block result" in out


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["ports"][0]["fields"][1].update(offset=4), "ports (i__payload).fields: a.header (bits 0..7) overlaps"),
    (lambda d: d["ports"][0]["fields"][4].update(offset=400), "ports (i__payload:last).offset: the field ends at bit "
                                                              "401, beyond the 273 bits of i__payload"),
    (lambda d: d["ports"][0]["fields"].pop(4), "ports: a reduction output needs a port carrying the last field"),
    (lambda d: d.update(accumulation={"mode": "kahan"}), "accumulation.mode: expected one of fp32, fused, exact"),
    (lambda d: d["ports"][1]["fields"].append({"field": "nan", "offset": 0}),
     "ports: field nan comes once per block, reduction once per reduction"),
    (lambda d: d["ports"][0].update(field="a.codes"), "ports[0] (i__payload).fields: a list of slices"),
    (lambda d: d["ports"][0]["fields"][0].pop("offset"), "ports[0] (i__payload).fields[0].offset: missing"),
])
def test_bad_slices_and_accumulation(edit, message, tmp_path: Path, capsys) -> None:
    path = _generated_dot_as_foreign(tmp_path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    assert main(["manifest", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nxfp-hw manifest: error: {message}"), err


def test_xz_outputs_are_reported_as_such(tmp_path: Path, capsys) -> None:
    """An output Icarus leaves X is reported as X/Z (and why it may be), never as a wrong number."""
    fixture = Path(__file__).parent / "foreign" / "undriven_dot.sv"
    path = _copy(tmp_path, "mx_block_dot", top="undriven_dot", parameters=None,
                 sources=[str(EXAMPLES / "mx_block_dot.sv"), str(fixture)])
    assert _verify("--manifest", str(path), "--sim", "icarus", "--blocks", "0") == 1
    out = capsys.readouterr().out
    assert "FAIL: icarus left " in out and "output values X/Z" in out and "--sim verilator" in out
    assert "port o_nan (nan): expected 0x0 (0), got X/Z" in out
