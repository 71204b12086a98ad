"""Accuracy figures and the accuracy-versus-cost report (nxfp_hw.flows.accuracy / report) on a tiny sweep."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from nxfp_hw.cli import main
from nxfp_hw.errors import UserError
from nxfp_hw.flows import report as report_mod
from nxfp_hw.flows.accuracy import accuracy_of, measure_accuracy
from nxfp_hw.flows.report import pareto_front, run_report
from nxfp_hw.formats import parse_format

needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed")


def seed() -> int:
    s = int(os.environ.get("NXFP_SEED", "20250101"))
    print(f"NXFP_SEED={s}")
    return s


def mxfp4_reference(x: np.ndarray) -> np.ndarray:
    """Independent MXFP4 round trip (OCP scale rule, spec 5): ml_dtypes' E2M1 cast after clipping to +-6."""
    blocks = x.astype(np.float64).reshape(-1, 32)
    amax = np.abs(blocks).max(axis=1, keepdims=True)
    exp = np.frexp(np.where(amax > 0, amax, 1.0))[1] - 1  # exact floor(log2(amax))
    scale = np.exp2(exp - 2.0)  # emax(E2M1) = 2
    elems = np.clip(blocks / scale, -6, 6).astype(ml_dtypes.float4_e2m1fn).astype(np.float64)
    return (elems * scale).reshape(x.shape)


def test_accuracy_matches_independent_mxfp4() -> None:
    rng = np.random.default_rng(seed())
    x = (rng.standard_normal(64 * 32) * rng.uniform(0.01, 10, 64).repeat(32)).astype(np.float32)
    rel, sqnr = measure_accuracy(x, parse_format("mxfp4_e2m1"))
    ref = np.mean((x.astype(np.float64) - mxfp4_reference(x)) ** 2) / np.mean(x.astype(np.float64) ** 2)
    assert rel == pytest.approx(ref, rel=1e-12)
    assert sqnr == pytest.approx(-10 * np.log10(ref), rel=1e-12)


def test_accuracy_cache(tmp_path: Path) -> None:
    x = np.random.default_rng(seed()).standard_normal(1024).astype(np.float32)
    fmt = parse_format("nxfp4")
    a = accuracy_of(fmt, x, label="g", cache_dir=tmp_path)
    files = list((tmp_path / "accuracy").glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["relative_mse"] == a.relative_mse
    # a cache entry is used: tamper with it and read it back
    data = json.loads(files[0].read_text())
    data["relative_mse"] = 0.5
    files[0].write_text(json.dumps(data))
    assert accuracy_of(fmt, x, label="g", cache_dir=tmp_path).relative_mse == 0.5
    # a different tensor is a different entry
    accuracy_of(fmt, x * 2 + 1, label="g", cache_dir=tmp_path)
    assert len(list((tmp_path / "accuracy").glob("*.json"))) == 2


def test_accuracy_rejects_bad_tensors() -> None:
    fmt = parse_format("mxfp4_e2m1")
    with pytest.raises(UserError, match="NaN or Inf"):
        measure_accuracy(np.array([1.0, np.nan], dtype=np.float32), fmt)
    with pytest.raises(UserError, match="all zeros"):
        measure_accuracy(np.zeros(32, dtype=np.float32), fmt)


def test_pareto_front() -> None:
    pts = [(3.0, 1.0), (1.0, 5.0), (2.0, 2.0), (2.5, 3.0), (1.0, 6.0), (4.0, 0.5)]
    assert pareto_front(pts) == [1, 2, 0, 5]
    assert pareto_front([]) == []


def _md_rows(md: str, first_cell: str, section: str = "## decode unit") -> list[list[str]]:
    """Table rows starting with ``first_cell`` in the markdown section titled ``section``."""
    body = md.split(section + "\n", 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in body.splitlines()
            if line.startswith(f"| {first_cell} ")]


@needs_yosys
def test_tiny_sweep_writes_consistent_report_and_reruns_from_cache(tmp_path: Path, capsys) -> None:
    x = np.random.default_rng(seed()).standard_normal(4096).astype(np.float32)
    npy = tmp_path / "t.npy"
    np.save(npy, x)
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["report", "--formats", "mxfp4_e2m1,nxfp4", "--units", "decode", "--flows", "generic", "--lanes", "4",
            "--pipeline", "none", "--tensor", str(npy), "--out", str(out), "--cache", str(cache), "--jobs", "2"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert re.search(r"\[[12]/2\] decode mxfp4_e2m1 generic \.\.\. [0-9.]+ s", first), first
    for name in ("report.md", "report.json", "area.png", "pareto.png"):
        assert (out / name).is_file()
    for name in ("area.png", "pareto.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()

    # accuracy figures are those of the accuracy module on the same tensor
    for name in ("mxfp4_e2m1", "nxfp4"):
        rel, _ = measure_accuracy(x, parse_format(name))
        assert data["formats"][name]["relative_mse"] == pytest.approx(rel, rel=1e-12)
    # every md row holds the json's numbers
    recs = {r["format"]: r for r in data["results"]}
    for name, rec in recs.items():
        fig = rec["flows"]["generic"]["figures"]
        assert rec["lanes"] == 4 and fig["ffs"] == 0  # --pipeline none: combinational
        assert rec["pipeline"]["enabled"] == [] and rec["pipeline"]["positions"]
        (row,) = _md_rows(md, name)
        assert row[2] == f"{data['formats'][name]['relative_mse']:.4g}"
        assert row[-2:] == [str(fig["cells"]), str(fig["transistors"])]
    # overhead row computed from the two records
    (ov,) = data["overhead"]
    t_nx = recs["nxfp4"]["flows"]["generic"]["figures"]["transistors"]
    t_mx = recs["mxfp4_e2m1"]["flows"]["generic"]["figures"]["transistors"]
    assert (ov["nxfp_value"], ov["mx_value"]) == (t_nx, t_mx)
    assert ov["overhead_pct"] == pytest.approx((t_nx / t_mx - 1) * 100, abs=0.01)

    # refuses to overwrite, then reruns from the cache with --force and writes the same report
    assert main(argv) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    second = capsys.readouterr().out
    assert second.count("... cached") == 2, second
    assert json.loads((out / "report.json").read_text()) == data
    assert (out / "report.md").read_text() == md


@needs_yosys
def test_failed_configuration_is_reported_and_sweep_continues(tmp_path: Path, monkeypatch) -> None:
    real = report_mod.build_for_area

    def flaky(unit, fmt, *args, **kwargs):
        if fmt.label == "nxfp4":
            raise RuntimeError("synthetic build failure")
        return real(unit, fmt, *args, **kwargs)

    monkeypatch.setattr(report_mod, "build_for_area", flaky)
    lines: list[str] = []
    res = run_report(formats=["mxfp4_e2m1", "nxfp4"], units=["decode"], flows=["generic"],
                     tensor=np.linspace(-1, 1, 256, dtype=np.float32), out_dir=tmp_path / "o",
                     cache_dir=tmp_path / "c", lanes=2, echo=lines.append)
    assert any("decode nxfp4 generic ... FAILED" in ln and "synthetic build failure" in ln for ln in lines), lines
    assert res.failures and "synthetic build failure" in res.failures[0]
    md = (tmp_path / "o" / "report.md").read_text()
    assert "FAILED" in _md_rows(md, "nxfp4")[0]
    assert "## Failed configurations" in md
    assert _md_rows(md, "mxfp4_e2m1")[0][-1].isdigit()
    assert res.data["overhead"] == []


def test_report_argument_errors(tmp_path: Path) -> None:
    x = np.ones(64, dtype=np.float32)
    with pytest.raises(UserError, match="units: unknown unit 'mul'"):
        run_report(units=["mul"], formats=["nxfp4"], flows=["generic"], tensor=x, out_dir=tmp_path, cache_dir=tmp_path)
    with pytest.raises(UserError, match="flows: unknown flow 'vivado'"):
        run_report(units=["dot"], formats=["nxfp4"], flows=["vivado"], tensor=x, out_dir=tmp_path, cache_dir=tmp_path)


@needs_yosys
def test_area_command_json_record(tmp_path: Path, capsys) -> None:
    from nxfp_hw.flows.generate import build_unit
    from nxfp_hw.flows.manifest import config_hash

    out = tmp_path / "rec.json"
    assert main(["area", "--unit", "decode", "--format", "mxfp4_e2m1", "--lanes", "2", "--flow", "generic",
                 "--json", str(out), "--workdir", str(tmp_path / "w")]) == 0
    text = capsys.readouterr().out
    rec = json.loads(out.read_text())
    comp = build_unit("decode", parse_format("mxfp4_e2m1"), lanes=2)
    comp._MustUse__silence = True
    assert rec["config_hash"] == config_hash(comp.config) and rec["module"] == comp.module_name
    assert rec["tools"]["yosys"] and rec["formats"] == {"a": "mxfp4_e2m1"}
    fig = rec["flows"]["generic"]["figures"]
    assert re.search(rf"generic\s+transistors\s+{fig['transistors']}\b", text), text
    assert Path(rec["flows"]["generic"]["logs"][next(iter(rec["flows"]["generic"]["logs"]))]).is_file()
    assert main(["area", "--unit", "decode", "--format", "mxfp4_e2m1", "--flow", "generic", "--json", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err


@needs_yosys
def test_area_command_accumulation_and_named_pipeline(tmp_path: Path, capsys) -> None:
    """--acc and a named --pipeline reach the dot engine; the record and the printout state both."""
    out = tmp_path / "rec.json"
    assert main(["area", "--unit", "dot", "--format", "mxfp4_e2m1", "--lanes", "8", "--acc", "fused",
                 "--pipeline", "sum,acc_add", "--flow", "generic", "--json", str(out),
                 "--workdir", str(tmp_path / "w")]) == 0
    text = capsys.readouterr().out
    rec = json.loads(out.read_text())
    assert rec["accumulation"]["mode"] == "fused" and rec["pipeline"]["enabled"] == ["sum", "acc_add"]
    assert rec["initiation_interval_per_block"] == 4 and rec["block_size"] == 32
    assert "accumulation fused" in text and "pipeline 2/" in text and "sum, acc_add" in text
    assert main(["area", "--unit", "dot", "--format", "mxfp4_e2m1", "--pipeline", "sum,nowhere",
                 "--flow", "generic"]) == 2
    assert "pipeline: no register position 'nowhere'" in capsys.readouterr().err


@pytest.mark.slow
def test_default_sweep_small_lanes(tmp_path: Path) -> None:
    """All default formats, both units, generic and asic flows (minutes)."""
    res = run_report(units=["decode", "dot"], flows=["generic", "asic"], lanes=4, out_dir=tmp_path / "o",
                     cache_dir=tmp_path / "c")
    assert not res.failures, res.failures
    assert {o["nxfp"] for o in res.data["overhead"]} == {"nxfp4", "nxfp5", "nxfp6"}


@needs_yosys
@pytest.mark.skipif(shutil.which("sta") is None, reason="opensta not installed")
def test_encode_unit_in_report_with_its_own_formats(tmp_path: Path, monkeypatch) -> None:
    """The encode unit sweeps ``encode_formats`` only (accuracy measured for them too), its throughput is
    lanes / II x Fmax values encoded per second, and the encoder-cost section compares the pair measured in
    the same run. Tiny k=4 formats keep the encoders small; the pair is patched in as if NxFP versus MX."""
    big, small = "elem=E2M3,scale=E8M0,k=4,rule=ocp", "elem=E2M1,scale=E8M0,k=4,rule=ocp"
    lb, ls = parse_format(big).label, parse_format(small).label
    monkeypatch.setattr(report_mod, "OVERHEAD_PAIRS", ((lb, ls, "test pair"),))
    x = np.random.default_rng(seed()).standard_normal(256).astype(np.float32)
    res = run_report(formats=["mxfp4_e2m1"], units=["decode", "encode"], flows=["generic", "asic"], tensor=x,
                     out_dir=tmp_path / "o", cache_dir=tmp_path / "c", lanes=2, encode_formats=[big, small],
                     encode_flows=["asic"], echo=lambda _: None)
    assert not res.failures, res.failures
    got = {(r["unit"], r["format"]) for r in res.data["results"]}
    assert got == {("decode", "mxfp4_e2m1"), ("encode", lb), ("encode", ls)}
    assert set(res.data["formats"]) == {"mxfp4_e2m1", lb, ls}
    recs = {r["format"]: r for r in res.data["results"] if r["unit"] == "encode"}
    assert set(res.data["results"][0]["flows"]) == {"generic", "asic"}
    for r in recs.values():
        assert set(r["flows"]) == {"asic"}
        asic = r["flows"]["asic"]
        assert r["lanes"] == 2 and r["initiation_interval"] == 1
        assert asic["throughput_per_s"] == pytest.approx(2 / 1 * asic["figures"]["fmax_mhz"] * 1e6)
    md = (tmp_path / "o" / "report.md").read_text()
    section = "## Encoder cost: NxFP adaptive search versus plain MX"
    rows = {r[3]: r for r in _md_rows(md, lb, section)}
    assert set(rows) == {"asic"}
    a_um, b_um = (recs[n]["flows"]["asic"]["figures"]["area_um2"] for n in (lb, ls))
    assert rows["asic"][7] == f"{a_um / b_um:.2f}x"
    assert rows["asic"][10] == f"{recs[lb]['flows']['asic']['throughput_per_s'] / 1e9:.3g}"
    (enc_row,) = _md_rows(md, lb, "## encode unit")
    assert enc_row[7:9] == ["not run", "-"]  # generic columns
    assert "Not run for the encode unit: generic" in md and "## Failed configurations" not in md
    assert _md_rows(md, lb, "## decode unit") == []
    with pytest.raises(UserError, match="encode-flows: expected a non-empty subset"):
        run_report(formats=["nxfp4"], units=["encode"], flows=["generic"], tensor=x, out_dir=tmp_path / "p",
                   cache_dir=tmp_path / "c", encode_flows=["ice40"])
    with pytest.raises(UserError, match="encode-formats: only meaningful"):
        run_report(formats=["nxfp4"], units=["decode"], flows=["generic"], tensor=x, out_dir=tmp_path / "p",
                   cache_dir=tmp_path / "c", encode_formats=["nxfp4"])
