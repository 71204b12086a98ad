"""`nxfp-hw run`, the README's main job: end to end on a reduced configuration, and its errors."""

from __future__ import annotations

import json
import re

import pytest

from nxfp_hw.cli import main
from nxfp_hw.flows.report import pipeline_text
from nxfp_hw.formats import PRESETS


def test_main_job_generates_measures_and_compares(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--skip-verify", "--flows", "generic", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    names = ("nxfp_decode_{f}_l8_fp32_p", "nxfp_dot_{f}_x_{f}_l8_p", "nxfp_encode_{f}_l8_fp32_p")
    for pattern in names:
        for fmt in ("nxfp4", "mxfp4_e2m1"):
            (path,) = (out / "rtl").glob(pattern.format(f=fmt) + "*")  # the tag names the enabled registers
            name = path.name
            assert f"module {name}(" in (path / f"{name}.v").read_text()
            manifest = json.loads((path / f"{name}.json").read_text())
            assert manifest["lanes"] == 8 and name in text
            assert (manifest["accumulation"] or {}).get("mode", "fp32") == "fp32"
    data = json.loads((out / "report" / "report.json").read_text())
    nx, mx = data["formats"]["nxfp4"], data["formats"]["mxfp4_e2m1"]
    # the claim the tool exists to show: same bits per element, lower error (spec 4: 0.67 relative)
    assert nx["bits_per_element"] == mx["bits_per_element"] == PRESETS["nxfp4"].bits_per_element
    assert 0.6 < nx["relative_mse"] / mx["relative_mse"] < 0.72
    comparison = text[text.index("comparison: nxfp4 vs mxfp4_e2m1"):]
    mse_line = next(line for line in comparison.splitlines() if "relative MSE" in line)
    assert f"{nx['relative_mse']:.4g}" in mse_line and f"{mx['relative_mse']:.4g}" in mse_line
    assert "decode: transistors" in comparison and "dot: transistors" in comparison
    assert re.search(r"dot: accumulation\s+fp32\s+fp32", comparison), comparison
    for unit in ("decode", "dot", "encode"):
        rec = next(r for r in data["results"] if r["unit"] == unit and r["format"] == "nxfp4")
        assert re.search(rf"{unit}: pipeline registers\s+{re.escape(pipeline_text(rec['pipeline']))}\s", comparison)
    enc = next(line for line in comparison.splitlines() if "encode: transistors" in line).split()
    figures = {(r["unit"], r["format"]): r["flows"]["generic"]["figures"]["transistors"] for r in data["results"]}
    nx_mx = [str(figures[("encode", "nxfp4")]), str(figures[("encode", "mxfp4_e2m1")])]
    assert enc[-4:-2] == nx_mx  # the row ends with: NxFP, MX, change, %
    # the adaptive search costs area: the NxFP encoder is larger than the MX one
    assert figures[("encode", "nxfp4")] > figures[("encode", "mxfp4_e2m1")]


@pytest.mark.parametrize(("argv", "needle"), [
    (["--lanes", "3"], "--lanes: 3 does not divide the block size k=32"),
    (["--format", "mxfp4_e2m1", "--baseline", "mxfp4_e2m1"], "--baseline: mxfp4_e2m1 is the format under study"),
    (["--format", "nxfp7"], "unknown format preset 'nxfp7'"),
    (["--units", "decode,mul"], "--units: expected a comma-separated subset of decode, dot, encode"),
    (["--blocks", "0"], "--blocks: expected a positive number of random blocks, got 0"),
])
def test_main_job_bad_input(tmp_path, capsys, argv, needle):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), *argv]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()
