"""Launch a regression from Python (pytest, the ``verify`` command, benchmarks).

:func:`prepare_module` generates a unit's Verilog and manifest once per configuration under a build
root (reused afterwards, also across pytest-xdist workers); :func:`run_vectors` writes a vector
file, builds (or reuses) the simulation model, runs the cocotb testbench and returns the outputs
and statistics the testbench wrote.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nxfp_hw.errors import UserError
from nxfp_hw.formats import BlockFormat
from sim.runner import SimBuild, SimResult, _locked, _safe, build, default_build_root, run

from .bench import ENV
from .vectors import VectorSet

__all__ = ["ModuleFiles", "RegressionResult", "TESTBENCHES", "env_seed", "prepare_module", "run_vectors"]

TESTBENCHES = {"decode": "verif.tb_decode", "dot": "verif.tb_dot", "encode": "verif.tb_encode"}


class SeedError(UserError, ValueError):
    """``$NXFP_SEED`` is not a seed."""


def env_seed(default: int | None = None) -> int:
    """``$NXFP_SEED`` if set, else ``default``, else a fresh random seed (print it!)."""
    text = os.environ.get("NXFP_SEED")
    if text:
        try:
            value = int(text.strip(), 0)
        except ValueError:
            value = -1
        if not (text.strip().isascii() and 0 <= value < 1 << 32):
            raise SeedError(f"NXFP_SEED: expected a seed between 0 and {(1 << 32) - 1}, got {text[:40]!r}")
        return value
    return default if default is not None else random.SystemRandom().randrange(1 << 31)


@dataclass(frozen=True)
class ModuleFiles:
    """A generated module on disk: its Verilog and manifest (and the manifest as a dict)."""

    name: str
    verilog: Path
    manifest: Path
    manifest_data: dict


def prepare_module(unit: str, fmt_a: BlockFormat, fmt_b: BlockFormat | None = None, *, lanes: int | None = None,
                   out: str = "fp32", pipeline: Any = None, build_root: Path | None = None,
                   input_format: str | None = None, acc: str | None = None,
                   guard_bits: int | None = None, select: str | None = None) -> ModuleFiles:
    """Generate the unit into ``<build_root>/rtl/<module>`` unless an identical generation is there
    (``input_format``: the encode unit's fp32/bf16 input; ``acc``/``guard_bits``: the dot engine's
    accumulation mode, None for its defaults; ``select``: the encoder's selection policy)."""
    from nxfp_hw.flows.generate import build_unit, generate, generator_digest
    from nxfp_hw.flows.manifest import config_hash

    component = build_unit(unit, fmt_a, fmt_b, lanes=lanes, pipeline=pipeline, out=out,
                           input_format=input_format, acc=acc, guard_bits=guard_bits, select=select)
    root = (build_root or default_build_root()).resolve()
    out_dir = root / "rtl" / component.module_name
    manifest = out_dir / f"{component.module_name}.json"
    stamp = out_dir / ".generator_digest"  # the generator sources this output came from
    with _locked(root / ".locks" / f"rtl-{component.module_name}.lock"):
        if manifest.is_file() and stamp.is_file() and stamp.read_text() == generator_digest():
            data = json.loads(manifest.read_text())
            verilog = out_dir / data["files"]["verilog"]
            if data.get("config_hash") == config_hash(component.config) and verilog.is_file():
                component._MustUse__used = True  # built only for its name and config: not an unused design
                return ModuleFiles(component.module_name, verilog, manifest, data)
        gen = generate(component, out_dir, force=True)
        stamp.write_text(generator_digest())
    return ModuleFiles(gen.name, gen.verilog, gen.manifest, gen.manifest_data)


@dataclass
class RegressionResult:
    """What one regression run produced."""

    passed: bool
    stats: dict[str, Any]
    got: np.ndarray | None  # RTL outputs of the compared field, (transactions, lanes)
    expected: np.ndarray
    sim: SimResult
    build: SimBuild

    @property
    def message(self) -> str:
        if self.stats.get("first_mismatch"):
            return str(self.stats["first_mismatch"])
        return self.sim.summary()


def run_vectors(module: ModuleFiles, vectors: VectorSet, simulator: str, *, seed: int, gap: float = 0.2,
                stall: float = 0.3, waves: bool = False, build_root: Path | None = None,
                testbench: str | None = None, tag: str = "", reset_prefix: int | None = None) -> RegressionResult:
    """Drive ``vectors`` through ``module`` on ``simulator``; never raises on a mismatch (see ``passed``)."""
    root = (build_root or default_build_root()).resolve()
    sim_build = build(simulator, [module.verilog], module.name, build_root=root / "sim", waves=waves)
    tb = testbench or TESTBENCHES[module.manifest_data["unit"]]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    run_dir = sim_build.build_dir / "runs" / _safe(f"{worker}-{os.getpid()}-{tag or 'run'}-{seed}")
    run_dir.mkdir(parents=True, exist_ok=True)
    vec_path = vectors.save(run_dir.parent / f"{run_dir.name}.vectors.npz")
    out_path = run_dir.parent / f"{run_dir.name}.out.npz"
    out_path.unlink(missing_ok=True)
    env = {ENV["manifest"]: str(module.manifest), ENV["vectors"]: str(vec_path), ENV["output"]: str(out_path),
           ENV["seed"]: str(seed), ENV["gap"]: str(gap), ENV["stall"]: str(stall),
           ENV["reset_prefix"]: str(-1 if reset_prefix is None else reset_prefix)}
    try:
        result = run(sim_build, tb, env=env, seed=seed, run_dir=run_dir, tag=tag)
    except KeyboardInterrupt:  # SIGINT/SIGTERM: an interrupted run leaves nothing behind
        shutil.rmtree(run_dir, ignore_errors=True)
        vec_path.unlink(missing_ok=True)
        out_path.unlink(missing_ok=True)
        raise
    field = vectors.meta["compare_field"]
    expected = vectors.expected[field]
    got = None
    stats: dict[str, Any] = {}
    if out_path.is_file():
        with np.load(out_path, allow_pickle=False) as z:
            stats = json.loads(str(z["stats"]))
            got = z[f"got.{field}"]
    passed = result.passed and bool(stats.get("passed"))
    if passed:
        vec_path.unlink(missing_ok=True)  # keep the vectors of failing runs for reproduction
    return RegressionResult(passed, stats, got, expected, result, sim_build)
