"""cocotb regression of the decode unit (spec 7) on Verilator and Icarus, against the golden model.

Default suite: every preset with elements of at most 8 bits; Verilator runs the exhaustive sweep
(every header with every code, every lane seeing every code), Icarus (an event-driven simulator
that is ~100x slower on the combinational decode netlist) a seeded sample of that sweep. The
exhaustive Icarus sweep and other lane counts are marked slow. A Verilog mutation of the
generated module must make the regression fail (docs/verification.md, "Mutation check").
Seed: printed, ``NXFP_SEED`` overrides.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from nxfp_hw.formats import PRESETS
from verif.regression import ModuleFiles, env_seed, prepare_module, run_vectors
from verif.vectors import decode_exhaustive, decode_vectors

SEED = env_seed(7)
DECODE_PRESETS = [name for name, f in PRESETS.items() if f.element_width <= 8]
SIMULATORS = ["verilator", "icarus"]
ICARUS_SAMPLE_BEATS = 24
BUILD_ROOT = Path(os.environ.get("NXFP_SIM_BUILD", Path(__file__).resolve().parents[1] / "build" / "sim")).resolve()


def setup_module() -> None:
    print(f"test_cocotb_decode: seed {SEED} (set NXFP_SEED to override), builds under {BUILD_ROOT}")


def _sample(fmt, lanes: int, beats: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A seeded sample of the exhaustive sweep that always holds a NaN-scale header and the largest scale."""
    h, c = decode_exhaustive(fmt, lanes)
    scale = h & fmt.scale.nan_code
    must = [int(np.flatnonzero(scale == fmt.scale.nan_code)[0]), int(np.flatnonzero(scale == fmt.scale.max_code)[0])]
    pick = np.concatenate([must, rng.choice(h.size, beats - len(must), replace=False)])
    return h[pick], c[pick]


def _run(preset: str, simulator: str, lanes: int | None = None, exhaustive: bool = True):
    fmt = PRESETS[preset]
    module = prepare_module("decode", fmt, lanes=lanes, build_root=BUILD_ROOT)
    n_lanes = module.manifest_data["lanes"]
    rng = np.random.default_rng(SEED)
    h, c = decode_exhaustive(fmt, n_lanes) if exhaustive else _sample(fmt, n_lanes, ICARUS_SAMPLE_BEATS, rng)
    vs = decode_vectors(fmt, h, c)
    res = run_vectors(module, vs, simulator, seed=SEED, build_root=BUILD_ROOT, tag=f"decode-{preset}")
    print(f"{module.name} on {simulator}: seed {SEED}, {vs.values} values, {res.stats.get('cycles')} cycles, "
          f"build {'reused' if res.build.reused else f'{res.build.build_seconds:.1f} s'}, "
          f"sim {res.sim.wall_seconds:.1f} s")
    assert res.passed, res.message
    np.testing.assert_array_equal(res.got, vs.expected["values"])
    return res


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("preset", DECODE_PRESETS)
def test_decode_regression(preset: str, simulator: str) -> None:
    res = _run(preset, simulator, exhaustive=simulator == "verilator")
    if simulator == "verilator":  # the exhaustive sweep hits every code, scale, selector and recycled value
        bins = res.stats["coverage"]["bins"]
        assert all(hit == total for key, (hit, total) in bins.items() if not key.startswith("values")), bins


@pytest.mark.slow
@pytest.mark.parametrize("lanes", [1, 8, 16])
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("preset", DECODE_PRESETS)
def test_decode_regression_lanes_sweep(preset: str, simulator: str, lanes: int) -> None:
    _run(preset, simulator, lanes=lanes, exhaustive=lanes > 1)


@pytest.mark.slow
@pytest.mark.parametrize("preset", DECODE_PRESETS)
def test_decode_exhaustive_icarus(preset: str) -> None:
    _run(preset, "icarus", exhaustive=True)


NAN_FP32 = "23'h400000"  # the fraction of 0x7FC00000, the canonical NaN's constant in the generated Verilog


def test_mutation_nan_constant_is_caught(tmp_path: Path) -> None:
    """Mutation check: change the canonical NaN the decode unit emits; the regression must fail on it."""
    fmt = PRESETS["mxfp8_e4m3"]
    good = prepare_module("decode", fmt, build_root=BUILD_ROOT)
    text = good.verilog.read_text()
    assert NAN_FP32 in text, "mutation target not found: the NaN constant of the generated decode unit"
    mutated = tmp_path / good.verilog.name
    mutated.write_text(text.replace(NAN_FP32, "23'h400001"))  # 0x7FC00001: still a NaN, not canonical
    module = ModuleFiles(good.name, mutated, good.manifest, good.manifest_data)
    h, c = _sample(fmt, 32, 4, np.random.default_rng(SEED))
    res = run_vectors(module, decode_vectors(fmt, h, c), "icarus", seed=SEED, build_root=BUILD_ROOT,
                      tag="decode-mutant")
    assert not res.passed
    assert res.stats["mismatches"] > 0
    assert "expected 0x7fc00000 (nan), got 0x7fc00001 (nan)" in res.message
    assert "scale E8M0 = nan" in res.message
