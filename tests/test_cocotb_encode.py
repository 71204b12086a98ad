"""cocotb regression of the block encoder (spec 5, 6) on Verilator and Icarus, against the golden quantizer.

Each run: a reset in the middle of a block (the partly gathered block must vanish), then the directed
blocks of ``verif.vectors.encode_directed`` (zeros of both signs, NaN/Inf, subnormal inputs, float32
extremes, saturation, negatives rounding to zero, exact ties at every midpoint and one ulp either side,
exact scale boundaries and one ulp either side, pairs tied in the selection metric) and seeded random
blocks (Gaussian, Student-t, all-MiniLM-L6-v2 weights), ``k/lanes`` beats per block, with random valid
gaps and backpressure; every header and code is compared bit for bit with
``quantize(x, fmt, metric=encoder_metric(fmt))``. A round trip (RTL encoder -> RTL decoder) must give
the golden dequantized values. Seed: printed, ``NXFP_SEED`` overrides. Every preset runs on both simulators;
the Verilator runs beyond mxfp4_e2m1 and nxfp4 are marked slow.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from nxfp_hw.formats import PRESETS, BlockFormat
from nxfp_hw.golden.decode import decode_bits
from nxfp_hw.golden.quantize import dequantize, quantize
from nxfp_hw.golden.select import select_metric
from verif.regression import env_seed, prepare_module, run_vectors
from verif.vectors import (
    ENCODE_INPUTS,
    VectorSet,
    decode_vectors,
    encode_directed,
    encode_pairs,
    encode_random,
    encode_vectors,
    encoder_metric,
    pair_errors,
)

SEED = env_seed(13)
SIMULATORS = ["verilator", "icarus"]
LANES = 8  # k/lanes = 4 beats per block: the gather path and a reset inside a block are exercised
RANDOM_BLOCKS = {"verilator": 48, "icarus": 24}
BUILD_ROOT = Path(os.environ.get("NXFP_SIM_BUILD", Path(__file__).resolve().parents[1] / "build" / "sim")).resolve()


def setup_module() -> None:
    print(f"test_cocotb_encode: seed {SEED} (set NXFP_SEED to override), builds under {BUILD_ROOT}")


def _stimulus(fmt: BlockFormat, lanes: int, n_random: int, input_format: str, rng: np.random.Generator) -> VectorSet:
    x, cases = encode_directed(fmt, rng, input_format)
    xr, cr = encode_random(fmt, n_random, rng)
    return encode_vectors(fmt, np.concatenate([x, xr]), lanes, input_format=input_format, cases=cases + cr)


def _inputs(vs: VectorSet) -> np.ndarray:
    """The driven blocks as input-format arrays (from the beats' bit patterns), ``(n, k)``."""
    dt, bits = ENCODE_INPUTS[vs.meta["input"]]
    return vs.inputs["values"].astype(bits).view(dt).reshape(vs.meta["blocks"], -1)


def _check_nearest_and_scale(fmt: BlockFormat, x: np.ndarray, headers: np.ndarray, codes: np.ndarray) -> None:
    """Independent of the golden model: under the chosen header every finite block's elements are a
    nearest level of that pair (spec 5.3, saturating), and the scale is the one its rule gives (spec 5.2)."""
    x = x.astype(np.float64)
    ok = np.isfinite(x).all(axis=1)
    scale_code, sel, rec = (np.asarray(a, np.int64) for a in fmt.split_header(headers.astype(np.int64)))
    assert (scale_code[~ok] == fmt.scale.nan_code).all(), "blocks with NaN/Inf must get the NaN scale"
    sv = fmt.scale.code_values()
    amax = np.max(np.abs(np.where(ok[:, None], x, 0)), axis=1)
    for i in np.flatnonzero(ok):
        table = fmt.element_table(int(sel[i]), int(rec[i]))
        maxe = fmt.max_element(int(sel[i]), int(rec[i]))
        levels = table[np.isfinite(table) & (np.abs(table) <= maxe)] * sv[scale_code[i]]  # spec 2.2 INT clamp
        got = table[codes[i]] * sv[scale_code[i]]
        best = np.min(np.abs(x[i][:, None] - levels[None, :]), axis=1)
        assert np.all(np.abs(x[i] - got) <= best), f"block {i}: an element is not rounded to a nearest level"
        if fmt.rule == "ceil" and amax[i] > 0:
            c = scale_code[i]
            assert sv[c] * maxe >= amax[i] or c == fmt.scale.max_code, f"block {i}: scale too small"
            assert c == 0 or sv[c - 1] * maxe < amax[i], f"block {i}: scale not the smallest that covers amax"
        if fmt.rule == "ocp" and amax[i] > 0:
            want = np.frexp(amax[i])[1] - 1 - fmt.emax_element(int(sel[i]), int(rec[i]))
            want_code = int(np.clip(want + fmt.scale.bias, 0, fmt.scale.max_code))
            assert scale_code[i] == want_code, f"block {i}: OCP scale code {scale_code[i]}, expected {want_code}"


def _run(preset: str, simulator: str, *, lanes: int = LANES, input_format: str = "fp32", n_random: int | None = None):
    fmt = PRESETS[preset]
    module = prepare_module("encode", fmt, lanes=lanes, build_root=BUILD_ROOT, input_format=input_format)
    rng = np.random.default_rng(SEED)
    vs = _stimulus(fmt, module.manifest_data["lanes"], RANDOM_BLOCKS[simulator] if n_random is None else n_random,
                   input_format, rng)
    res = run_vectors(module, vs, simulator, seed=SEED, build_root=BUILD_ROOT, tag=f"encode-{preset}")
    build = "reused" if res.build.reused else f"{res.build.build_seconds:.1f} s"
    print(f"{module.name} on {simulator}: seed {SEED}, {vs.meta['blocks']} blocks, {res.stats.get('cycles')} cycles, "
          f"build {build}, sim {res.sim.wall_seconds:.1f} s, coverage {res.stats.get('coverage', {}).get('bins')}")
    assert res.passed, res.message
    assert res.stats["reset_prefix"] > 0
    x = _inputs(vs)
    q = quantize(x, fmt, metric=encoder_metric(fmt))  # an independent call on the driven values
    np.testing.assert_array_equal(res.got[:, 0], q.headers.reshape(-1))
    np.testing.assert_array_equal(res.got[:, 1:], q.codes.reshape(-1, fmt.k))
    _check_nearest_and_scale(fmt, x, res.got[:, 0], res.got[:, 1:])
    return res, vs


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("preset", ["mxfp4_e2m1", "nxfp4"])
def test_encode_regression(preset: str, simulator: str) -> None:
    res, _ = _run(preset, simulator)
    bins = res.stats["coverage"]["bins"]
    assert bins["inputs.classes"] == [8, 8], bins  # +-0, +-subnormal, normal, +-Inf, NaN inputs all driven
    if len(encode_pairs(PRESETS[preset])) > 1:
        assert bins["a.selectors"] == [2, 2], bins  # both candidates chosen by the selection


def test_encode_regression_bf16_input() -> None:
    """bf16 inputs on Icarus (a Verilator build of a second nxfp4 encoder would cost minutes)."""
    _run("nxfp4", "icarus", input_format="bf16")


# The other presets: every one on Icarus in the default suite (2-25 s each), on Verilator in the slow tier
# (a 30-150 s model build each).
OTHER_PRESETS = [p for p in PRESETS if p not in ("mxfp4_e2m1", "nxfp4")]


@pytest.mark.parametrize("preset", OTHER_PRESETS)
def test_encode_regression_other_presets_icarus(preset: str) -> None:
    _run(preset, "icarus")


@pytest.mark.slow
@pytest.mark.parametrize("preset", OTHER_PRESETS)
def test_encode_regression_other_presets_verilator(preset: str) -> None:
    _run(preset, "verilator")


@pytest.mark.slow
@pytest.mark.parametrize("lanes", [1, 32])
@pytest.mark.parametrize("preset", ["mxfp4_e2m1", "nxfp4"])
def test_encode_regression_lanes(preset: str, lanes: int) -> None:
    _run(preset, "verilator", lanes=lanes, n_random=256)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["nxfp5", "mxfp6_e2m3"])
def test_encode_regression_bf16_large(preset: str) -> None:
    _run(preset, "verilator", input_format="bf16", n_random=256)


@pytest.mark.parametrize("preset", ["mxfp4_e2m1", "nxfp4"])
def test_round_trip_encode_then_decode(preset: str) -> None:
    """RTL encoder output blocks fed to the RTL decode unit of the same format give the golden model's
    dequantized values: ``decode_bits`` of the golden ``quantize`` (spec 5 then spec 7)."""
    fmt = PRESETS[preset]
    res, vs = _run(preset, "verilator")
    headers, codes = res.got[:, 0].astype(np.uint16), res.got[:, 1:].astype(np.uint16)
    decoder = prepare_module("decode", fmt, build_root=BUILD_ROOT)
    d_lanes = decoder.manifest_data["lanes"]
    per = fmt.k // d_lanes
    dvs = decode_vectors(fmt, np.repeat(headers, per), codes.reshape(-1, d_lanes))
    q = quantize(_inputs(vs), fmt, metric=encoder_metric(fmt))
    golden = decode_bits(fmt, q.headers.reshape(-1), q.codes.reshape(-1, fmt.k)).reshape(-1, d_lanes)
    dvs.expected["values"] = golden  # the reference is the golden round trip, not the RTL's codes
    dres = run_vectors(decoder, dvs, "verilator", seed=SEED, build_root=BUILD_ROOT, tag=f"roundtrip-{preset}")
    assert dres.passed, dres.message
    np.testing.assert_array_equal(dres.got.reshape(-1), golden.reshape(-1))
    # which are the golden dequantized values rounded to float32 (NaN for blocks holding NaN/Inf)
    finite = np.isfinite(_inputs(vs).astype(np.float64)).all(axis=1)
    got_bits = dres.got.reshape(-1, fmt.k).astype(np.uint32)
    want = dequantize(q).reshape(-1, fmt.k).view(np.uint32)
    np.testing.assert_array_equal(got_bits[finite], want[finite])
    assert (got_bits[~finite] == 0x7FC00000).all()


def test_pair_ties_are_resolved_to_the_lowest_pair() -> None:
    """Golden side of spec 5.4 on the directed tie blocks: the chosen pair is the lowest-index pair of
    least error under the default policy (its keys computed per pair by verif.vectors.pair_errors)."""
    fmt = PRESETS["nxfp4"]
    x, cases = encode_directed(fmt, np.random.default_rng(SEED))
    ties = np.array(["metric tie" in c for c in cases])
    assert ties.sum() >= 4
    err = pair_errors(fmt, x[ties])
    want = np.argmax(err == err.min(axis=1, keepdims=True), axis=1)
    q = quantize(x[ties], fmt, metric=select_metric(fmt))
    _, sel, rec = fmt.split_header(q.headers.reshape(-1).astype(np.int64))
    pairs = encode_pairs(fmt)
    np.testing.assert_array_equal([pairs.index((int(s), int(r))) for s, r in zip(sel, rec, strict=True)], want)


def test_mutation_wrong_code_is_caught() -> None:
    """Reference mutation: one expected code flipped must fail with the block, the header fields, the
    differing element (expected vs got, decoded) and the input values in the message."""
    fmt = PRESETS["mxfp4_e2m1"]
    module = prepare_module("encode", fmt, lanes=LANES, build_root=BUILD_ROOT)
    rng = np.random.default_rng(SEED)
    x, cases = encode_directed(fmt, rng)
    vs = encode_vectors(fmt, x, LANES, cases=cases)
    blk = cases.index("negatives rounding to zero")
    vs.expected["block"][blk, 1 + 5] ^= 1
    res = run_vectors(module, vs, "icarus", seed=SEED, build_root=BUILD_ROOT, tag="encode-mutant")
    assert not res.passed and res.stats["mismatches"] == 1
    msg = res.message
    assert f"mismatch at block {blk}" in msg and "header matches, 1 of 32 codes differ" in msg, msg
    assert "element 5: expected" in msg and "scale E8M0" in msg and "negatives rounding to zero" in msg, msg
    assert repr(float(np.float32(x[blk, 5]))) in msg or "x = [" in msg, msg
