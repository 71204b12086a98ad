"""cocotb regression of the dot-product engine (spec 8) on Verilator and Icarus, against the golden model.

Each run: a mid-stream reset (results in flight must vanish), then the directed corner cases of
``verif.vectors.dot_directed`` (NaN headers and elements, Inf, Inf*0, +Inf + -Inf, maximum
magnitudes, subnormal and overflowing results, exact ties, cancellation, recycled codes, every
selector) and seeded random blocks (Gaussian, Student-t, MiniLM weights through the golden
quantizer, raw codes) in multi-block reductions, with random valid gaps and backpressure.
Seed: printed, ``NXFP_SEED`` overrides. Long sweeps are marked slow.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from nxfp_hw.formats import PRESETS
from nxfp_hw.golden.dot import block_dot_bits
from verif.regression import env_seed, prepare_module, run_vectors
from verif.vectors import VectorSet, dot_directed, dot_random, dot_vectors

SEED = env_seed(11)
SIMULATORS = ["verilator", "icarus"]
RANDOM_BLOCKS = {"verilator": 48, "icarus": 16}
BUILD_ROOT = Path(os.environ.get("NXFP_SIM_BUILD", Path(__file__).resolve().parents[1] / "build" / "sim")).resolve()


def setup_module() -> None:
    print(f"test_cocotb_dot: seed {SEED} (set NXFP_SEED to override), builds under {BUILD_ROOT}")


def _vectors(fa, fb, lanes: int, nblocks: int) -> VectorSet:
    rng = np.random.default_rng(SEED)
    blocks = dot_directed(fa, fb, rng)
    blocks.add_stream(dot_random(fa, fb, nblocks, rng))
    return dot_vectors(fa, fb, lanes, blocks, rng)


def _run(a: str, b: str, simulator: str, nblocks: int, lanes: int | None = None):
    fa, fb = PRESETS[a], PRESETS[b]
    module = prepare_module("dot", fa, fb, lanes=lanes, build_root=BUILD_ROOT)
    vs = _vectors(fa, fb, module.manifest_data["lanes"], nblocks)
    res = run_vectors(module, vs, simulator, seed=SEED, build_root=BUILD_ROOT, tag=f"dot-{a}-{b}")
    build = "reused" if res.build.reused else f"{res.build.build_seconds:.1f} s"
    print(f"{module.name} on {simulator}: seed {SEED}, {vs.meta['blocks']} blocks, {vs.values} results, "
          f"{res.stats.get('cycles')} cycles, build {build}, sim {res.sim.wall_seconds:.1f} s")
    assert res.passed, res.message
    np.testing.assert_array_equal(res.got.reshape(-1), vs.expected["result"])
    assert res.stats["reset_prefix"] > 0
    return res, vs


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("preset", list(PRESETS))
def test_dot_regression(preset: str, simulator: str) -> None:
    _run(preset, preset, simulator, RANDOM_BLOCKS[simulator])


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_dot_regression_mixed_formats(simulator: str) -> None:
    _run("nxfp4", "mxfp4_e2m1", simulator, RANDOM_BLOCKS[simulator])


def test_dot_regression_multi_beat_blocks() -> None:
    """8 lanes: four beats per block pair, headers only on the first (junk on the others)."""
    _run("nxfp6", "nxfp6", "icarus", 16, lanes=8)


@pytest.mark.slow
@pytest.mark.parametrize("lanes", [4, 8, 16])
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("preset", list(PRESETS))
def test_dot_regression_lanes_sweep(preset: str, simulator: str, lanes: int) -> None:
    _run(preset, preset, simulator, 256, lanes=lanes)


@pytest.mark.slow
@pytest.mark.parametrize("pair", [("nxfp4", "mxfp4_e2m1"), ("mxfp8_e4m3", "mxfp8_e5m2"), ("nxfp6", "mxfp6_e3m2"),
                                  ("mxint8", "mxfp8_e4m3")])
def test_dot_regression_mixed_sweep(pair: tuple[str, str]) -> None:
    _run(*pair, "verilator", 1024)


def test_mutation_fused_accumulation_is_caught() -> None:
    """Mutation check on the reference side: expectations from a *fused* accumulation (float64 sum of
    block results, one final rounding) instead of spec 8's per-block fp32 adds must NOT match the RTL."""
    fmt = PRESETS["mxfp8_e4m3"]
    module = prepare_module("dot", fmt, fmt, build_root=BUILD_ROOT)
    vs = _vectors(fmt, fmt, module.manifest_data["lanes"], 8)
    aux = vs.aux
    r = aux["block_results"].view(np.float32).astype(np.float64)
    fused = np.array([np.float32(np.sum(r[s:e + 1])) if not np.isnan(r[s:e + 1]).any() else np.float32(np.nan)
                      for s, e in zip(aux["red_start"], aux["red_end"], strict=False)], dtype=np.float32)
    fused_bits = np.where(np.isnan(fused), np.uint32(0x7FC00000), fused.view(np.uint32))
    assert (fused_bits != vs.expected["result"]).any(), "the mutant must differ from spec 8 on the directed cases"
    vs.expected["result"] = fused_bits.astype(np.uint32)
    res = run_vectors(module, vs, "verilator", seed=SEED, build_root=BUILD_ROOT, tag="dot-mutant")
    assert not res.passed and res.stats["mismatches"] >= 1
    assert "accumulation" in res.message  # the first difference is one of the accumulation corner cases
    # the golden block results themselves are consistent with an independent call
    np.testing.assert_array_equal(aux["block_results"], block_dot_bits(fmt, aux["ha"], aux["ca"], fmt, aux["hb"],
                                                                        aux["cb"]))
