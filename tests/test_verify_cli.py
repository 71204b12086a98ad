"""``nxfp-hw verify``: argument and input checks happen before any simulation; runs report and exit right."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from nxfp_hw.cli import main
from nxfp_hw.formats import PRESETS
from nxfp_hw.golden.decode import decode_bits
from nxfp_hw.golden.dot import dot_bits
from nxfp_hw.golden.quantize import quantize
from nxfp_hw.golden.select import select_metric
from verif.regression import env_seed

SEED = env_seed(5)
BUILD_ROOT = Path(os.environ.get("NXFP_SIM_BUILD", Path(__file__).resolve().parents[1] / "build" / "sim")).resolve()


def setup_module() -> None:
    print(f"test_verify_cli: seed {SEED} (set NXFP_SEED to override)")


def _verify(*args: str) -> int:
    return main(["verify", "--build-dir", str(BUILD_ROOT), *args])


@pytest.fixture
def no_sim(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a simulation is started."""
    import verif.regression

    def boom(*a, **k):
        raise AssertionError("a simulation was started")

    monkeypatch.setattr(verif.regression, "run_vectors", boom)


def test_missing_simulator_names_install_command(monkeypatch, capsys, no_sim) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert _verify("--unit", "decode", "--format", "mxfp4_e2m1", "--sim", "icarus") == 3  # missing tool
    assert "apt-get install iverilog" in capsys.readouterr().err


def test_bad_format_and_arguments(capsys, no_sim, tmp_path: Path) -> None:
    assert _verify("--unit", "decode", "--format", "nope4", "--sim", "icarus") == 2
    assert "nope4" in capsys.readouterr().err
    assert _verify("--unit", "decode", "--format", "nxfp4", "--format-b", "nxfp4", "--sim", "icarus") == 2
    assert "--format-b: only for --unit dot" in capsys.readouterr().err
    assert _verify("--unit", "dot", "--format", "nxfp4", "--sim", "icarus", "--output", str(tmp_path / "x.npz")) == 2
    assert "--output: only with --vectors" in capsys.readouterr().err
    assert _verify("--unit", "dot", "--format", "nxfp4", "--sim", "icarus", "--gap", "1.5") == 2
    assert "--gap" in capsys.readouterr().err


@pytest.mark.parametrize("arrays,message", [
    ({"headers": np.zeros((2, 1), np.float32), "codes": np.zeros((2, 1, 32), np.uint16)}, "expected an integer dtype"),
    ({"headers": np.zeros((2,), np.uint16), "codes": np.zeros((2, 16), np.uint16)}, "expected headers (..., nblocks)"),
    ({"headers": np.zeros((2,), np.uint16), "codes": np.full((2, 32), 16, np.uint16)}, "4-bit codes"),
    ({"x": np.zeros((3, 40), np.float32)}, "not a multiple of k=32"),
    ({"x": np.zeros((3, 32), np.int32)}, "expected float16, bfloat16, float32 or float64"),
    ({"x": np.zeros(32), "y": np.zeros(32)}, "expected one float tensor"),
])
def test_bad_decode_vectors_rejected_before_simulation(arrays, message, tmp_path: Path, capsys, no_sim) -> None:
    path = tmp_path / "v.npz"
    np.savez(path, **arrays)
    assert _verify("--unit", "decode", "--format", "mxfp4_e2m1", "--sim", "icarus", "--vectors", str(path)) == 2
    err = capsys.readouterr().err
    assert message in err and "--vectors" in err


def test_bad_dot_vectors_rejected(tmp_path: Path, capsys, no_sim) -> None:
    path = tmp_path / "a.npy"
    np.save(path, np.zeros((2, 32), np.float32))
    assert _verify("--unit", "dot", "--format", "nxfp4", "--sim", "icarus", "--vectors", str(path)) == 2
    assert "needs two operands" in capsys.readouterr().err
    path = tmp_path / "ab.npz"
    np.savez(path, a=np.zeros((2, 32), np.float32), b=np.zeros((3, 32), np.float32))
    assert _verify("--unit", "dot", "--format", "nxfp4", "--sim", "icarus", "--vectors", str(path)) == 2
    assert "must have the same shape" in capsys.readouterr().err


def test_quantized_for_another_format_rejected(tmp_path: Path, capsys, no_sim) -> None:
    q = quantize(np.ones((1, 32), np.float32), PRESETS["nxfp4"])
    path = tmp_path / "q.npz"
    np.savez(path, headers=q.headers, codes=q.codes, format=np.array(PRESETS["nxfp4"].to_string()))
    assert _verify("--unit", "decode", "--format", "mxfp4_e2m1", "--sim", "icarus", "--vectors", str(path)) == 2
    assert "was quantized to" in capsys.readouterr().err


def test_manifest_not_matching_verilog_rejected(tmp_path: Path, capsys, no_sim) -> None:
    from verif.regression import prepare_module

    root = tmp_path / "b"
    mod = prepare_module("decode", PRESETS["mxfp4_e2m1"], build_root=root)
    mod.verilog.write_text(mod.verilog.read_text().replace("o__ready", "o__rdy"))
    assert main(["verify", "--build-dir", str(root), "--unit", "decode", "--format", "mxfp4_e2m1",
                 "--sim", "icarus"]) == 2
    err = capsys.readouterr().err
    assert "does not match" in err and "o__ready" in err


def test_existing_output_needs_force(tmp_path: Path, capsys, no_sim) -> None:
    out = tmp_path / "out.npz"
    out.write_bytes(b"user data")
    vec = tmp_path / "x.npy"
    np.save(vec, np.ones((1, 32), np.float32))
    assert _verify("--unit", "decode", "--format", "mxfp4_e2m1", "--sim", "icarus", "--vectors", str(vec),
                   "--output", str(out)) == 2
    assert "pass --force" in capsys.readouterr().err
    assert out.read_bytes() == b"user data"


def test_decode_user_tensor_through_rtl(tmp_path: Path, capsys) -> None:
    """A user tensor: quantized by the golden model, decoded by the RTL, both outputs written."""
    rng = np.random.default_rng(SEED)
    x = (rng.standard_normal((2, 64)) * 3).astype(np.float32)
    x[1, 40] = np.inf  # a NaN block
    vec = tmp_path / "x.npy"
    np.save(vec, x)
    out = tmp_path / "res.npz"
    rc = _verify("--unit", "decode", "--format", "nxfp4", "--sim", "icarus", "--vectors", str(vec), "--output",
                 str(out), "--seed", str(SEED))
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "PASS" in text and "mismatches 0" in text and "vectors/s" in text and "coverage" in text
    with np.load(out) as z:
        q = quantize(x, PRESETS["nxfp4"])
        golden = decode_bits(PRESETS["nxfp4"], q.headers, q.codes)
        np.testing.assert_array_equal(z["rtl_bits"], golden)
        np.testing.assert_array_equal(z["golden_bits"], golden)
        assert z["rtl_bits"].shape == (2, 2, 32)
        assert np.isnan(z["rtl_values"][1, 1]).all()


def test_dot_user_tensors_through_rtl(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(SEED)
    a = rng.standard_t(3, (3, 96)).astype(np.float32)
    b = rng.standard_normal((3, 96)).astype(np.float32)
    vec = tmp_path / "ab.npz"
    np.savez(vec, a=a, b=b)
    out = tmp_path / "res.npz"
    rc = _verify("--unit", "dot", "--format", "nxfp4", "--format-b", "mxfp4_e2m1", "--sim", "icarus",
                 "--vectors", str(vec), "--output", str(out), "--seed", str(SEED))
    text = capsys.readouterr().out
    assert rc == 0, text
    qa, qb = quantize(a, PRESETS["nxfp4"]), quantize(b, PRESETS["mxfp4_e2m1"])
    want = dot_bits(PRESETS["nxfp4"], qa.headers, qa.codes, PRESETS["mxfp4_e2m1"], qb.headers, qb.codes)
    with np.load(out) as z:
        np.testing.assert_array_equal(z["rtl_bits"], want)
        np.testing.assert_array_equal(z["golden_bits"], want)


def test_generated_stimulus_run_and_mismatch_exit_code(tmp_path: Path, capsys, monkeypatch) -> None:
    assert _verify("--unit", "dot", "--format", "mxfp4_e2m1", "--sim", "icarus", "--blocks", "4",
                   "--seed", str(SEED)) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and f"--seed {SEED}" in out and "cycles" in out
    # A golden model that disagrees with the RTL -> exit 1 and the first mismatch printed.
    import verif.vectors

    real = verif.vectors.dot_accumulate_bits
    monkeypatch.setattr(verif.vectors, "dot_accumulate_bits", lambda r, last: real(r, last) ^ np.uint32(1))
    assert _verify("--unit", "dot", "--format", "mxfp4_e2m1", "--sim", "icarus", "--blocks", "4",
                   "--seed", str(SEED)) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "mismatch at transaction 0" in out and "block 0" in out


# --- encode ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arrays,message", [
    ({"x": np.zeros((3, 40), np.float32)}, "not a multiple of k=32"),
    ({"x": np.zeros((3, 32), np.int32)}, "expected float16, bfloat16, float32 or float64"),
    ({"x": np.zeros(32), "y": np.zeros(32)}, "takes one float tensor"),
])
def test_bad_encode_vectors_rejected_before_simulation(arrays, message, tmp_path: Path, capsys, no_sim) -> None:
    path = tmp_path / "v.npz"
    np.savez(path, **arrays)
    assert _verify("--unit", "encode", "--format", "nxfp4", "--sim", "icarus", "--vectors", str(path)) == 2
    err = capsys.readouterr().err
    assert message in err and "--vectors" in err


def test_input_format_only_for_encode(capsys, no_sim) -> None:
    assert _verify("--unit", "decode", "--format", "nxfp4", "--sim", "icarus", "--input-format", "bf16") == 2
    assert "--input-format: only for --unit encode" in capsys.readouterr().err


@pytest.mark.parametrize("fmt,input_format", [("nxfp4", "fp32"), ("mxfp4_e2m1", "bf16")])
def test_encode_user_tensor_through_rtl(fmt: str, input_format: str, tmp_path: Path, capsys) -> None:
    """A user tensor through the RTL encoder: its headers/codes are written next to the golden ones."""
    import ml_dtypes

    rng = np.random.default_rng(SEED)
    x = (rng.standard_t(3, (2, 3, 64)) * 2).astype(np.float32)
    x[1, 2, 40] = np.nan  # a NaN block
    x[0, 1, :32] = 0.0
    vec = tmp_path / "x.npy"
    np.save(vec, x)
    out = tmp_path / "res.npz"
    rc = _verify("--unit", "encode", "--format", fmt, "--sim", "icarus", "--lanes", "8", "--input-format",
                 input_format, "--vectors", str(vec), "--output", str(out), "--seed", str(SEED))
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "PASS" in text and "mismatches 0" in text and "inputs.classes" in text
    f = PRESETS[fmt]
    xin = x.astype(ml_dtypes.bfloat16) if input_format == "bf16" else x
    q = quantize(xin, f, metric=select_metric(f))
    with np.load(out) as z:
        assert z["rtl_headers"].shape == (2, 3, 2) and z["rtl_codes"].shape == (2, 3, 2, 32)
        np.testing.assert_array_equal(z["rtl_headers"], q.headers)
        np.testing.assert_array_equal(z["rtl_codes"], q.codes)
        np.testing.assert_array_equal(z["golden_headers"], q.headers)
        np.testing.assert_array_equal(z["golden_codes"], q.codes)
        assert str(z["input_format"]) == input_format and str(z["format"]) == f.to_string()
        assert (f.split_header(z["rtl_headers"][1, 2, 1].astype(np.int64))[0] == f.scale.nan_code)


def test_encode_generated_stimulus(capsys) -> None:
    assert _verify("--unit", "encode", "--format", "mxfp4_e2m1", "--sim", "icarus", "--lanes", "8", "--blocks", "6",
                   "--seed", str(SEED)) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and f"--seed {SEED}" in out and "reset after" in out
