"""The hardware encoder's fixed-point selection metric (nxfp_hw.golden.hw_metric, spec 5.4).

An independent reference computes every block error with exact rationals; the quantizer with
metric "hw" must pick, per block, the (candidate, recycling option) pair with the least such
error (ties to the lowest selector, then option). Seeds: NXFP_SEED overrides; printed.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np
import pytest

from nxfp_hw.formats import MX_PRESETS, PRESETS, BlockFormat
from nxfp_hw.golden.hw_metric import HW_FRAC_BITS, block_error_hw, hw_error_width, quantize_hw
from nxfp_hw.golden.quantize import METRICS, dequantize_exact, quantize

SEED = int(os.environ.get("NXFP_SEED", "20251124"))


def rng_for(test: str) -> np.random.Generator:
    print(f"{test}: seed {SEED} (set NXFP_SEED to change)")
    return np.random.default_rng([SEED, sum(map(ord, test))])


def reference_error(x: list[float], q: list[float], frac_bits: int = HW_FRAC_BITS) -> int:
    """Exact-rational evaluation of the metric's definition (docs/encoder.md)."""
    amax = max(abs(Fraction(v)) for v in x)
    a = -126
    if amax > 0:
        a = max(a, math.floor(math.log2(amax)))
        while Fraction(2) ** a > amax:
            a -= 1
        while Fraction(2) ** (a + 1) <= amax:
            a += 1
        a = max(a, -126)
    unit = Fraction(2) ** (a - frac_bits)
    total = 0
    for xv, qv in zip(x, q, strict=True):
        d = math.floor(abs(Fraction(xv)) / unit) - math.floor(abs(Fraction(qv)) / unit)
        total += d * d
    return total


def _blocks(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    x = rng.standard_normal((n, k)) * np.exp2(rng.integers(-140, 100, (n, 1)))
    x[0] = 0.0
    x[1, :] = np.ldexp(rng.integers(-(2**23), 2**23, k).astype(np.float64), -149)  # subnormal block
    return x.astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("name", ["nxfp4", "nxfp6", "mxfp8_e4m3"])
def test_block_error_matches_exact_reference(name):
    rng = rng_for(f"test_block_error_matches_exact_reference[{name}]")
    fmt = PRESETS[name]
    x = _blocks(rng, 24, fmt.k)
    q = dequantize_exact(quantize(x, fmt))
    got = block_error_hw(x, q)
    want = [reference_error(x[n].tolist(), q[n].tolist()) for n in range(x.shape[0])]
    assert got.tolist() == [float(w) for w in want]
    assert max(want) < 2 ** hw_error_width(fmt.k)  # the accumulator width of docs/encoder.md
    assert got[0] == 0.0


def test_metric_truncates_below_frac_bits():
    # One element 1.0 (A = 0): an error of 2^-9 is below the 8 fraction bits, 2^-8 counts once.
    x = np.array([[1.0, 0.5 + 2.0**-9, 0.5 + 2.0**-8, 0.0]])
    q = np.array([[1.0, 0.5, 0.5, 0.0]])
    assert HW_FRAC_BITS == 8
    assert block_error_hw(x, q).tolist() == [1.0]
    assert block_error_hw(x, q, frac_bits=9).tolist() == [1.0 + 4.0]


def _pair_formats(fmt: BlockFormat):
    """(selector, option, single-pair format that always uses that pair) for every pair of fmt."""
    for c, elem in enumerate(fmt.elements):
        for j in range(max(fmt.recycle_options, 1)):
            rec = ((fmt.recycling[c][j],),) if fmt.recycling else ()
            yield c, j, BlockFormat(elements=(elem,), scale=fmt.scale, k=fmt.k, recycling=rec, rule=fmt.rule)


@pytest.mark.parametrize("name", ["nxfp4", "nxfp5", "nxfp6"])
def test_quantize_hw_picks_least_hw_error(name):
    rng = rng_for(f"test_quantize_hw_picks_least_hw_error[{name}]")
    fmt = PRESETS[name]
    x = _blocks(rng, 200, fmt.k)
    x[2] = np.resize([0.0, 1.0, -2.0, 4.0], fmt.k)  # several pairs tie here
    errs, hdrs, codes = [], [], []
    for c, j, single in _pair_formats(fmt):
        q = quantize(x, single)
        errs.append([reference_error(a.tolist(), b.tolist()) for a, b in zip(x, dequantize_exact(q), strict=True)])
        sc, _, _ = single.split_header(q.headers)
        hdrs.append(fmt.make_header(sc, c, j))
        codes.append(q.codes)
    errs = np.array(errs, dtype=object)
    best = [min(range(len(errs)), key=lambda p, n=n: (errs[p][n], p)) for n in range(x.shape[0])]
    got = quantize_hw(x, fmt)
    want_h = np.array([hdrs[p][n] for n, p in enumerate(best)])
    want_c = np.array([codes[p][n] for n, p in enumerate(best)])
    np.testing.assert_array_equal(got.headers, want_h)
    np.testing.assert_array_equal(got.codes, want_c)
    assert sum(1 for n in range(x.shape[0]) if list(errs[:, n]).count(errs[best[n], n]) > 1) >= 2  # ties seen


@pytest.mark.parametrize("name", list(MX_PRESETS))
def test_single_pair_formats_ignore_the_metric(name):
    """MX formats have one (candidate, option) pair, so "hw" and "float64" agree bit for bit."""
    rng = rng_for(f"test_single_pair_formats_ignore_the_metric[{name}]")
    fmt = PRESETS[name]
    x = _blocks(rng, 64, fmt.k)
    a, b = quantize(x, fmt), quantize_hw(x, fmt)
    np.testing.assert_array_equal(a.headers, b.headers)
    np.testing.assert_array_equal(a.codes, b.codes)


def test_quantize_hw_leaves_metrics_unchanged():
    before = dict(METRICS)
    quantize_hw(np.zeros(32, np.float32), PRESETS["nxfp4"])
    assert METRICS == before
