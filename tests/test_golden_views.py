"""Golden views (nxfp_hw.golden.views) and implementation policies (nxfp_hw.golden.policies), held
against the existing golden model and against independent re-implementations of each policy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nxfp_hw.formats import parse_format
from nxfp_hw.golden import block_dot_bits, decode_values
from nxfp_hw.golden.ieee import FP32, round_to_bits
from nxfp_hw.golden.policies import PRESETS, Policy, PolicyError, _encode_general, encode_blocks, parse_policy
from nxfp_hw.golden.quantize import quantize_blocks
from nxfp_hw.golden.views import (
    block_scale,
    element_products,
    element_values,
    exact_block_sum,
    rescale,
)
from verif.regression import env_seed

SEED = env_seed(12)
PAIRS = [("mxfp4_e2m1", "mxfp4_e2m1"), ("nxfp4", "mxfp8_e4m3"), ("mxfp8_e5m2", "mxfp8_e5m2"), ("mxint8", "nxfp6")]


def _blocks(fmt, n, rng):
    h = rng.integers(0, 1 << fmt.header_bits, n)
    c = rng.integers(0, 1 << fmt.element_width, (n, fmt.k))
    return h, c


@pytest.mark.parametrize("fa,fb", PAIRS)
def test_views_agree_with_block_dot(fa, fb):
    print(f"seed {SEED}")
    rng = np.random.default_rng(SEED)
    fa, fb = parse_format(fa), parse_format(fb)
    ha, ca = _blocks(fa, 400, rng)
    hb, cb = _blocks(fb, 400, rng)
    s = exact_block_sum(fa, ha, ca, fb, hb, cb)
    p = element_products(fa, ha, ca, fb, hb, cb)
    flagged = s.nan | s.pinf | s.ninf
    assert p.lsb_exponent == s.lsb_exponent
    # the products sum to S wherever the block is finite
    assert (p.value.sum(axis=-1)[~flagged] == s.value[~flagged]).all()
    # a block is NaN when a lane is NaN, or the scale is, or +Inf meets -Inf
    sc = block_scale(fa, ha, fb, hb)
    assert (s.nan == (p.nan.any(-1) | sc.nan | (p.pinf.any(-1) & p.ninf.any(-1)))).all()
    # S * Xa * Xb rounded once is the block result of spec 8
    mag = np.abs(s.value) * sc.scale_man.astype(object)
    bits = round_to_bits((s.value < 0).astype(np.int64), mag, s.lsb_exponent + sc.scale_exp, FP32)
    golden = block_dot_bits(fa, ha, ca, fb, hb, cb)
    assert (bits[~flagged].astype(np.uint32) == golden[~flagged]).all()
    assert (golden[s.nan] == FP32.nan_bits).all()


@pytest.mark.parametrize("name", ["mxfp4_e2m1", "nxfp4", "mxfp8_e4m3", "mxint8"])
def test_element_values_times_scale_is_decode(name):
    rng = np.random.default_rng(SEED)
    fmt = parse_format(name)
    h, c = _blocks(fmt, 200, rng)
    v = element_values(fmt, h, c)
    sc = block_scale(fmt, h, fmt, np.full_like(h, fmt.make_header(fmt.scale.bias << fmt.scale.mbits)))  # * 1
    want = decode_values(fmt, h, c)
    ok = ~(v.nan | v.inf) & ~sc.nan[:, None]
    got = np.ldexp(v.value.astype(np.float64) * sc.scale_man[:, None], v.lsb_exponent + sc.scale_exp[:, None])
    assert np.array_equal(got[ok], want[ok])


def test_rescale():
    v, ok = rescale(np.array([3, -4, 5]), -2, -4)
    assert v.tolist() == [12, -16, 20] and ok.all()
    v, ok = rescale(np.array([3, -4, 5]), -2, -1)
    assert v.tolist() == [1, -2, 2] and ok.tolist() == [False, True, False]


# --- policies -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mxfp4_e2m1", "nxfp4", "mxfp8_e4m3", "mxfp8_e5m2", "mxint8", "nxfp6",
                                  "elem=E2M1,scale=UE6M2,rule=search"])
def test_general_path_with_spec_policy_is_quantize(name):
    """The policy quantizer's own loop, with spec choices, gives quantize_blocks' bits."""
    rng = np.random.default_rng(SEED)
    fmt = parse_format(name)
    x = rng.standard_normal((200, fmt.k)) * np.exp(rng.uniform(-6, 6, (200, 1)))
    x[3, 4], x[5, 0], x[7] = np.nan, -np.inf, 0.0
    h, c = quantize_blocks(fmt, x)
    h2, c2 = _encode_general(fmt, x, PRESETS["spec"], "float64")
    assert np.array_equal(h, h2) and np.array_equal(c, c2)


def _mx_reference(x: np.ndarray, fmt, *, away: bool) -> np.ndarray:
    """Independent scalar re-implementation of an MX cast (microxcaling's ``_quantize_mx`` idea): shared
    exponent ``floor(log2 amax) - emax_elem`` (exact), each element rounded on its own binade grid
    (``floor(v + 1/2)`` = ties away, or ties to even), saturating. Returns the dequantized values."""
    elem = fmt.elements[0]
    emin = 1 - elem.bias
    out = np.zeros_like(x)
    for b, row in enumerate(x):
        amax = float(np.max(np.abs(row)))
        shared = (math.frexp(amax)[1] - 1 - fmt.emax_element(0, 0)) if amax else -127
        shared = max(shared, -127)
        for i, v in enumerate(row):
            a = abs(v) / 2.0 ** shared
            e = max(math.frexp(a)[1] - 1, emin) if a else emin
            q = a / 2.0 ** (e - elem.mbits)
            r = math.floor(q + 0.5) if away else round(q)  # Python round: ties to even
            val = min(r * 2.0 ** (e - elem.mbits), elem.max_value)
            out[b, i] = math.copysign(val, v) * 2.0 ** shared
    return out


@pytest.mark.parametrize("name", ["mxfp4_e2m1", "mxfp8_e4m3", "mxfp6_e3m2"])
@pytest.mark.parametrize("preset", ["spec", "microxcaling"])
def test_rounding_against_reference(name, preset):
    print(f"seed {SEED}")
    rng = np.random.default_rng(SEED)
    fmt = parse_format(name)
    # values on a grid of quarter element steps: many exact ties
    x = rng.integers(-64, 65, (64, fmt.k)) / 8.0 * 2.0 ** rng.integers(-3, 4, (64, 1))
    enc = encode_blocks(fmt, x, preset)
    scale = fmt.scale.code_values()[fmt.split_header(enc.headers)[0]][:, None]
    got = fmt.element_table(0, 0)[enc.codes] * scale
    want = _mx_reference(x, fmt, away=preset == "microxcaling")
    assert np.array_equal(got, want)


def test_ties_away_from_zero_mxfp4():
    fmt = parse_format("mxfp4_e2m1")
    x = np.zeros((1, 32))
    x[0, :6] = [6.0, 2.5, -2.5, 0.25, -0.25, 5.0]  # scale 1: ties 2|3, 0|0.5, 4|6
    even = encode_blocks(fmt, x, "spec").codes[0, :6]
    away = encode_blocks(fmt, x, {"rounding": "away"}).codes[0, :6]
    table = fmt.element_table(0, 0)
    assert table[even].tolist() == [6.0, 2.0, -2.0, 0.0, -0.0, 4.0]
    assert table[away].tolist() == [6.0, 3.0, -3.0, 0.5, -0.5, 6.0]


def test_overflow_to_nan_and_inf():
    e4m3, e5m2 = parse_format("mxfp8_e4m3"), parse_format("mxfp8_e5m2")
    x = np.zeros((1, 32))
    x[0, :4] = [500.0, 464.0, -470.0, 448.0]  # scale 1 (floor(log2 500) = 8 = emax_elem)
    sat = encode_blocks(e4m3, x, "spec").codes[0, :4]
    assert sat.tolist() == [0x7E, 0x7E, 0xFE, 0x7E]
    assert encode_blocks(e4m3, x, "nonsaturating").codes[0, :4].tolist() == [0x7F, 0x7E, 0xFF, 0x7E]
    away = encode_blocks(e4m3, x, {"overflow": "inf_nan", "rounding": "away"}).codes[0, :4]
    assert away.tolist() == [0x7F, 0x7F, 0xFF, 0x7E]
    y = np.zeros((1, 32))
    y[0, :3] = [61440.0, -57344.0, -61441.0]  # tie between 57344 (odd code) and 65536: to even = Inf
    assert encode_blocks(e5m2, y, "spec").codes[0, :3].tolist() == [0x7B, 0xFB, 0xFB]
    assert encode_blocks(e5m2, y, "nonsaturating").codes[0, :3].tolist() == [0x7C, 0xFB, 0xFC]


def test_nan_elements_policy():
    fmt = parse_format("mxfp8_e4m3")
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((3, 32))
    x[0, 3], x[0, 7], x[1, 0], x[2, :] = np.nan, -np.inf, np.inf, np.nan
    enc = encode_blocks(fmt, x, "nan_elements")
    finite = np.where(np.isfinite(x), x, 0.0)
    h, c = quantize_blocks(fmt, finite)
    assert np.array_equal(enc.headers, h)
    assert np.array_equal(enc.codes[np.isfinite(x)], c[np.isfinite(x)])
    assert enc.codes[0, 3] == 0x7F and enc.codes[0, 7] == 0xFF and enc.codes[1, 0] == 0x7F
    assert (enc.codes[2] == 0x7F).all() and enc.headers[2] == 0  # all non-finite: smallest scale
    spec = encode_blocks(fmt, x, "spec")
    assert (spec.headers[:3] == fmt.scale.nan_code).all() and (spec.codes == 0).all()
    ocp = encode_blocks(fmt, x, "ocp")
    assert not ocp.codes_care.any() and spec.codes_care.all()


def test_scale_clamp_and_offset():
    fmt = parse_format("mxfp8_e4m3")
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((50, 32)) * 2.0 ** rng.integers(-30, 10, (50, 1))
    spec = encode_blocks(fmt, x, "spec")
    clamped = encode_blocks(fmt, x, {"scale_min_code": 110, "scale_offset": "emax_elem"})
    assert np.array_equal(clamped.headers, np.maximum(spec.headers, 110))
    keep = spec.headers >= 110
    assert np.array_equal(clamped.codes[keep], spec.codes[keep])
    assert np.array_equal(clamped.scale, clamped.headers + 8)
    # a clamped block: every element is x / X rounded to E4M3 (to nearest even, saturating)
    import ml_dtypes

    low = np.flatnonzero(~keep)
    assert low.size
    ref = (x[low] / 2.0 ** (110 - 127)).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    assert np.array_equal(clamped.codes[low], ref)


@pytest.mark.parametrize("spec,message", [
    ("nope", "policy: unknown policy 'nope'; presets: spec, ocp"),
    ({"rounding": "up"}, "policy.rounding: expected one of even, away, got 'up'"),
    ({"roundng": "away"}, "policy.roundng: unknown policy field"),
    ({"preset": "x"}, "policy.preset: unknown policy 'x'"),
    ({"scale_min_code": -1}, "policy.scale_min_code: expected an integer >= 0"),
    ({"scale_offset": "bias"}, "policy.scale_offset: expected an integer or \"emax_elem\""),
    (3, "policy: expected a preset name or an object, got int"),
    ({"metric": "l1"}, "policy.metric: expected one of float64, hw"),
])
def test_parse_policy_errors(spec, message):
    with pytest.raises(PolicyError) as exc:
        parse_policy(spec)
    assert str(exc.value).startswith(message)


def test_policy_not_applicable():
    with pytest.raises(PolicyError, match=r"policy.overflow: inf_nan needs element formats with a NaN or Inf code; "
                                          r"mxfp4_e2m1 has E2M1"):
        encode_blocks(parse_format("mxfp4_e2m1"), np.zeros((1, 32)), "nonsaturating")
    with pytest.raises(PolicyError, match="policy.scale_min_code: 300"):
        Policy(scale_min_code=300).check(parse_format("mxfp4_e2m1"))
    assert parse_policy({"preset": "microxcaling", "scale_offset": 8}).name == "microxcaling+scale_offset=8"


def test_metric_policy_picks_pairs_like_quantize() -> None:
    """An adaptive format's pair choice follows the policy's metric, bit for bit as quantize_blocks."""
    fmt = parse_format("nxfp4")
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((300, 32)) * np.exp(rng.uniform(-3, 3, (300, 1)))
    for metric in ("float64", "hw"):
        h, c = quantize_blocks(fmt, x, metric)
        for pol in ({"metric": metric}, {"metric": metric, "scale_min_code": 0, "rounding": "even",
                                          "nan_block_codes": "dont_care"}):
            enc = encode_blocks(fmt, x, pol)
            assert np.array_equal(enc.headers, h) and np.array_equal(enc.codes, c)
        h2, c2 = _encode_general(fmt, x, parse_policy({"metric": metric}), metric)
        assert np.array_equal(h2, h) and np.array_equal(c2, c)
