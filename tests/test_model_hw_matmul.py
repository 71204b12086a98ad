"""The fast hardware-exact matmul (nxfp_hw.model.hw_matmul) against the golden dot model, bit for bit.

Every output of ``hw_matmul`` must equal ``nxfp_hw.golden.dot.reduce_bits`` on the same codes, in every
accumulation mode. Data spans many binades (so block values need rounding, the modes differ and scales
vary per block) and includes exact cancellations and underflow. Seed: printed, ``NXFP_SEED`` overrides.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from nxfp_hw.formats import parse_format
from nxfp_hw.golden.dot import ACC_MODES, reduce_bits
from nxfp_hw.golden.quantize import quantize
from nxfp_hw.model import hw_matmul as hm

SEED = int(os.environ.get("NXFP_SEED", "20261129"))

PAIRS = [("mxfp8_e4m3", "nxfp4"), ("mxfp8_e4m3", "mxfp8_e4m3"), ("nxfp5", "nxfp5"), ("mxfp6_e3m2", "mxfp6_e3m2"),
         ("mxfp4_e2m1", "mxfp4_e2m1"), ("nxfp6", "nxfp6"), ("mxfp6_e2m3", "mxfp8_e4m3")]


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    print(f"test_model_hw_matmul: seed {SEED} (set NXFP_SEED to change)")
    return np.random.default_rng(SEED)


def _data(rng: np.random.Generator, rows: int, cols: int, spread: float) -> np.ndarray:
    x = rng.standard_normal((rows, cols)) * np.exp2(rng.uniform(-spread, spread, (rows, cols)))
    x[rng.random((rows, cols)) < 0.05] = 0.0
    return x.astype(np.float32)


def _golden(fa, qa, fb, qb) -> np.ndarray:
    """``reduce_bits`` of every (activation row, weight row) pair: one reduction each."""
    rows, nb = qa.headers.shape
    cols = qb.headers.shape[0]
    k = fa.k
    ha = np.repeat(qa.headers[:, None], cols, axis=1).reshape(-1)
    ca = np.repeat(qa.codes[:, None], cols, axis=1).reshape(-1, k)
    hb = np.tile(qb.headers[None], (rows, 1, 1)).reshape(-1)
    cb = np.tile(qb.codes[None], (rows, 1, 1, 1)).reshape(-1, k)
    last = np.tile(np.arange(nb) == nb - 1, rows * cols)
    return {m: reduce_bits(fa, ha, ca, fb, hb, cb, last, mode=m).reshape(rows, cols) for m in ACC_MODES}


def _mismatch(name: str, got: np.ndarray, want: np.ndarray) -> str:
    bad = np.argwhere(got.view(np.uint32) != want)
    r, c = bad[0]
    return (f"{name}: {len(bad)} mismatches, first at {(r, c)}: got {got[r, c]!r} "
            f"({got.view(np.uint32)[r, c]:#010x}), golden {want[r, c].view(np.float32)!r} ({want[r, c]:#010x})")


@pytest.mark.parametrize("act,wgt", PAIRS)
def test_hw_matmul_matches_golden(rng, act, wgt):
    fa, fb = parse_format(act), parse_format(wgt)
    x, w = _data(rng, 6, 128, 12.0), _data(rng, 5, 128, 12.0)
    # exact cancellation: the second weight row is the first one negated on the second half
    w[1] = w[0]
    w[1, 64:] = -w[0, 64:]
    x[1, 64:] = x[1, :64]
    wq = hm.quantize_weight(w, fb)
    golden = _golden(fa, quantize(x, fa, metric=hm.activation_metric(fa)), fb, wq.quantized)
    for mode in ACC_MODES:
        got = hm.hw_matmul(x, wq, fa, mode)
        assert got.dtype == np.float32 and got.shape == (6, 5)
        assert np.array_equal(got.view(np.uint32), golden[mode]), _mismatch(f"{act} x {wgt} {mode}", got,
                                                                               golden[mode])


def test_exact_limbs_match_golden(rng):
    """The limb accumulator (the exact mode's fallback for very wide sums) alone, on the widest data."""
    fa = fb = parse_format("mxfp8_e4m3")
    x, w = _data(rng, 4, 256, 40.0), _data(rng, 6, 256, 40.0)
    wq = hm.quantize_weight(w, fb)
    want = _golden(fa, quantize(x, fa), fb, wq.quantized)["exact"]
    v = hm.block_values(hm.quantize_activations(x, fa), wq)
    got = hm._reduce_exact_limbs(v)
    assert np.array_equal(got.view(np.uint32), want), _mismatch("limbs", got, want)


def test_modes_differ_on_wide_data(rng):
    """The check above can fail: on wide data the three modes give different bits somewhere."""
    fa = fb = parse_format("mxfp8_e4m3")
    x, w = _data(rng, 8, 256, 30.0), _data(rng, 8, 256, 30.0)
    wq = hm.quantize_weight(w, fb)
    out = {m: hm.hw_matmul(x, wq, fa, m).view(np.uint32) for m in ACC_MODES}
    assert not np.array_equal(out["fp32"], out["exact"])
    assert not np.array_equal(out["fp32"], out["fused"])


def test_signed_zero_and_underflow():
    """An exact zero sum is +0 in every mode; a non-zero block value below the binary32 range keeps its sign."""
    f = parse_format("mxfp8_e4m3")
    x = np.zeros((2, 64), np.float32)
    x[0, 0], x[0, 1] = 1.0, -1.0
    x[1, 0] = -2.0 ** -120
    w = np.zeros((1, 64), np.float32)
    w[0, 0] = w[0, 1] = 1.0
    w[0, 32] = 2.0 ** -120
    wq = hm.quantize_weight(w, f)
    golden = _golden(f, quantize(x, f), f, wq.quantized)
    for mode in ACC_MODES:
        got = hm.hw_matmul(x, wq, f, mode).view(np.uint32)
        assert np.array_equal(got, golden[mode]), mode
        assert got[0, 0] == 0


def test_refuses_inexact_pairs_and_bad_input():
    f = parse_format("mxfp8_e5m2")
    assert hm.blas_exact(parse_format("mxfp8_e4m3"), parse_format("mxfp8_e4m3"))
    assert not hm.blas_exact(f, f)
    wq = hm.quantize_weight(np.ones((2, 32), np.float32), f)
    with pytest.raises(ValueError, match="more than 53 bits"):
        hm.hw_matmul(np.ones((1, 32), np.float32), wq, f)
    g = parse_format("nxfp4")
    wq = hm.quantize_weight(np.ones((2, 32), np.float32), g)
    with pytest.raises(ValueError, match="mode must be one of"):
        hm.hw_matmul(np.ones((1, 32), np.float32), wq, g, "fp16")
    with pytest.raises(ValueError, match="NaN or Inf"):
        hm.hw_matmul(np.full((1, 32), np.nan, np.float32), wq, g)


def test_activation_metric_is_the_encoders():
    """Activations are cast as the generated encoder casts them: its default policy's metric."""
    assert hm.activation_metric(parse_format("nxfp4")) == "hw-scaled"
    assert hm.activation_metric(parse_format("mxfp8_e4m3")) == "float64"
