"""cocotb regression of the dot-product engine (spec 8, 8.1) on Verilator and Icarus, against the golden model.

Each run: a mid-stream reset (results in flight must vanish), then the directed corner cases of
``verif.vectors.dot_directed`` (NaN headers and elements, Inf, Inf*0, +Inf + -Inf, maximum
magnitudes, subnormal and overflowing results, exact ties, cancellation, recycled codes, every
selector), the accumulation-mode cases of ``verif.vectors.dot_mode_directed`` (cases only the
engine's mode gets right; the ``exact`` window's edges for the engine's guard bits), seeded
random blocks (Gaussian, Student-t, MiniLM weights through the golden quantizer, raw codes) in
multi-block reductions and random near-cancelling reductions (``dot_near_cancel``), with random
valid gaps and backpressure. Expectations follow the mode and guard bits of the engine's manifest.
Seed: printed, ``NXFP_SEED`` overrides. Long sweeps are marked slow.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from nxfp_hw.formats import PRESETS
from nxfp_hw.golden.dot import ACC_MODES, block_dot_bits
from verif.regression import ModuleFiles, env_seed, prepare_module, run_vectors
from verif.tb_dot import prepare_dot_module
from verif.vectors import (
    VectorSet,
    dot_directed,
    dot_mode_directed,
    dot_mode_of,
    dot_near_cancel,
    dot_random,
    dot_vectors,
)

SEED = env_seed(11)
SIMULATORS = ["verilator", "icarus"]
RANDOM_BLOCKS = {"verilator": 48, "icarus": 16}
BUILD_ROOT = Path(os.environ.get("NXFP_SIM_BUILD", Path(__file__).resolve().parents[1] / "build" / "sim")).resolve()


def _rtl_has_modes() -> bool:
    """True once the dot engine takes ``acc=`` (spec 8.1 modes in the RTL)."""
    import inspect

    from nxfp_hw.rtl.dot import DotEngine

    return "acc" in inspect.signature(DotEngine).parameters


needs_modes = pytest.mark.skipif(not _rtl_has_modes(), reason="the dot engine RTL has no accumulation modes yet")


def setup_module() -> None:
    print(f"test_cocotb_dot: seed {SEED} (set NXFP_SEED to override), builds under {BUILD_ROOT}")


def _vectors(fa, fb, module: ModuleFiles, nblocks: int) -> VectorSet:
    """Directed, mode-directed and random blocks with the golden results of the module's accumulation mode."""
    mode, guard_bits = dot_mode_of(module.manifest_data)
    rng = np.random.default_rng(SEED)
    blocks = dot_directed(fa, fb, rng)
    blocks.add_stream(dot_mode_directed(fa, fb, rng, guard_bits=guard_bits))
    blocks.add_stream(dot_random(fa, fb, nblocks, rng))
    blocks.add_stream(dot_near_cancel(fa, fb, max(2, nblocks // 8), rng))
    return dot_vectors(fa, fb, module.manifest_data["lanes"], blocks, rng, mode=mode, guard_bits=guard_bits)


def _module(a: str, b: str, lanes: int | None = None, acc: str | None = None,
            guard_bits: int | None = None) -> ModuleFiles:
    return prepare_dot_module(PRESETS[a], PRESETS[b], lanes=lanes, acc=acc, guard_bits=guard_bits,
                              build_root=BUILD_ROOT)


def _run(a: str, b: str, simulator: str, nblocks: int, lanes: int | None = None, acc: str | None = None,
         guard_bits: int | None = None):
    fa, fb = PRESETS[a], PRESETS[b]
    module = _module(a, b, lanes, acc, guard_bits)
    if acc is not None:
        assert dot_mode_of(module.manifest_data)[0] == acc, "the manifest does not record the accumulation mode"
    vs = _vectors(fa, fb, module, nblocks)
    res = run_vectors(module, vs, simulator, seed=SEED, build_root=BUILD_ROOT, tag=f"dot-{a}-{b}")
    build = "reused" if res.build.reused else f"{res.build.build_seconds:.1f} s"
    print(f"{module.name} on {simulator}: seed {SEED}, accumulation {vs.meta['accumulation']} (guard bits "
          f"{vs.meta['guard_bits']}), {vs.meta['blocks']} blocks, {vs.values} results, "
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


# --- accumulation modes (spec 8.1) ---------------------------------------------------------------------
MODE_PAIRS = [("mxfp8_e4m3", "mxfp8_e4m3"), ("nxfp4", "nxfp4")]


@needs_modes
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("acc", [m for m in ACC_MODES if m != "fp32"])
@pytest.mark.parametrize("pair", MODE_PAIRS, ids="-".join)
def test_dot_regression_modes(pair: tuple[str, str], acc: str, simulator: str) -> None:
    """fused and exact engines (fp32 is test_dot_regression): directed mode cases and random blocks."""
    _run(*pair, simulator, RANDOM_BLOCKS[simulator], acc=acc)


@needs_modes
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("preset", ["mxfp4_e2m1", "nxfp6"])
def test_dot_regression_exact_window(preset: str, simulator: str) -> None:
    """guard_bits = 2: a few of the largest blocks leave the exact window (NaN), the edges just fit."""
    res, vs = _run(preset, preset, simulator, 8, acc="exact", guard_bits=2)
    cases = [str(vs.aux["case"][s]) for s in vs.aux["red_start"]]
    assert any("leave it: NaN" in c for c in cases) and any("just fit" in c for c in cases)


@needs_modes
@pytest.mark.parametrize("acc", ACC_MODES)
def test_dot_regression_modes_multi_beat(acc: str) -> None:
    """8 lanes: four beats per block pair in every mode (the fp32/fused loop spread over the beats)."""
    _run("nxfp6", "mxfp6_e3m2", "icarus", 16, lanes=8, acc=acc)


@needs_modes
def test_dot_regression_mixed_modes() -> None:
    _run("mxfp8_e5m2", "mxint8", "verilator", RANDOM_BLOCKS["verilator"], acc="fused")
    _run("mxfp8_e5m2", "mxint8", "verilator", RANDOM_BLOCKS["verilator"], acc="exact")


@pytest.mark.slow
@needs_modes
@pytest.mark.parametrize("lanes", [None, 8])
@pytest.mark.parametrize("acc", ACC_MODES)
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("preset", list(PRESETS))
def test_dot_regression_modes_sweep(preset: str, simulator: str, acc: str, lanes: int | None) -> None:
    _run(preset, preset, simulator, 256, lanes=lanes, acc=acc)


@needs_modes
def test_mutation_wrong_mode_is_caught() -> None:
    """Expectations of another mode must NOT match a fused engine: the mode cases tell them apart."""
    fmt = PRESETS["mxfp8_e4m3"]
    module = _module("mxfp8_e4m3", "mxfp8_e4m3", acc="fused")
    vs = _vectors(fmt, fmt, module, 8)
    for other in ("fp32", "exact"):
        wrong = vs.aux["mode_results"][:, ACC_MODES.index(other)].astype(np.uint32)
        assert (wrong != vs.expected["result"]).any()
        mutant = VectorSet(vs.inputs, {"result": wrong}, vs.aux, vs.meta)
        res = run_vectors(module, mutant, "verilator", seed=SEED, build_root=BUILD_ROOT, tag=f"dot-mutant-{other}")
        assert not res.passed and res.stats["mismatches"] >= 1, other


def test_mutation_fused_accumulation_is_caught() -> None:
    """Mutation check on the reference side: expectations from a float64 sum of block results with one
    final rounding instead of spec 8's per-block fp32 adds must NOT match the (fp32-mode) RTL."""
    fmt = PRESETS["mxfp8_e4m3"]
    module = prepare_module("dot", fmt, fmt, build_root=BUILD_ROOT)
    vs = _vectors(fmt, fmt, module, 8)
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


# --- nxfp-hw verify --acc ------------------------------------------------------------------------------
def _verify(*args: str) -> int:
    from nxfp_hw.cli import main

    return main(["verify", "--build-dir", str(BUILD_ROOT), *args])


@pytest.mark.parametrize("args,message", [
    (["--unit", "dot", "--acc", "kahan"], "--acc: expected one of fp32, fused, exact, got 'kahan'"),
    (["--unit", "decode", "--acc", "exact"], "--acc: only for --unit dot"),
    (["--unit", "dot", "--guard-bits", "4"], "--guard-bits: only with --acc exact"),
    (["--unit", "dot", "--acc", "fused", "--guard-bits", "4"], "--guard-bits: only with --acc exact"),
    (["--unit", "dot", "--acc", "exact", "--guard-bits", "-1"], "--guard-bits: expected an integer >= 0, got -1"),
    (["--unit", "encode", "--guard-bits", "2"], "--guard-bits: only for --unit dot"),
])
def test_verify_acc_arguments(args: list[str], message: str, capsys, monkeypatch) -> None:
    import verif.regression

    monkeypatch.setattr(verif.regression, "run_vectors", lambda *a, **k: pytest.fail("a simulation was started"))
    assert _verify(*args, "--format", "nxfp4", "--sim", "icarus") == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") <= 2, err


@needs_modes
def test_verify_acc_exact_run(capsys) -> None:
    assert _verify("--unit", "dot", "--format", "nxfp6", "--acc", "exact", "--guard-bits", "2", "--sim", "icarus",
                   "--blocks", "4", "--seed", str(SEED)) == 0
    out = capsys.readouterr().out
    assert "accumulation exact (guard bits 2)" in out and "PASS" in out, out
