"""The compiled fast path (verif/fast.py, sim/fast_tb.py) against the cocotb path, and the coverage goals.

- both engines, both simulators, the same vectors: identical outputs, mismatch counts and coverage; the
  fast path's cycles, gaps and stalls are identical on Icarus and Verilator (one xorshift32 per seed);
- exhaustive where cheap: every (header, code) on every lane, plus every code on every lane under every
  header class, of every preset's decode unit on Icarus (Verilator: nxfp4; all under ``-m slow``);
  every element-code pair of the dot engine in some lane for every preset pair, with every declared
  coverage goal hit;
- a mutated RTL is caught by the fast path with the same first-mismatch report as cocotb;
- a missed goal fails ``verify``; bad input (``--engine``, ``--waves``, a foreign unit, a vector set that
  does not fit the manifest) exits 2 before any simulation.

Seed: printed, ``NXFP_SEED`` overrides.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from nxfp_hw.cli import main
from nxfp_hw.commands.verify import DEFAULT_BLOCKS
from nxfp_hw.errors import UserError
from nxfp_hw.formats import PRESETS
from nxfp_hw.golden.select import SELECT_POLICIES, SelectError, check_select
from verif.coverage_goals import (
    decode_lane_sweep,
    dot_closure,
    dot_code_pairs,
    encode_closure,
    encode_regression_blocks,
    evaluate_goals,
    format_goals,
)
from verif.fast import check_vectors, choose_engine, pack_hex, unpack_hex
from verif.manifest_dut import PayloadLayout
from verif.regression import ModuleFiles, env_seed, prepare_module, run_vectors
from verif.vectors import (
    decode_exhaustive,
    decode_vectors,
    dot_directed,
    dot_mode_directed,
    dot_mode_of,
    dot_near_cancel,
    dot_random,
    dot_vectors,
    encode_directed,
    encode_random,
    encode_vectors,
)

SEED = env_seed(17)
SIMULATORS = ["verilator", "icarus"]
DECODE_PRESETS = [name for name, f in PRESETS.items() if f.element_width <= 8]
VERILATOR_DEFAULT = ["nxfp4"]  # the other presets' Verilator builds (40-60 s each) are in the slow tier
BUILD_ROOT = Path(os.environ.get("NXFP_SIM_BUILD", Path(__file__).resolve().parents[1] / "build" / "sim")).resolve()


def setup_module() -> None:
    print(f"test_fast_path: seed {SEED} (set NXFP_SEED to override), builds under {BUILD_ROOT}")


def _fast(module: ModuleFiles, vs, simulator: str, tag: str):
    from verif.fast import run_fast

    res = run_fast(module, vs, simulator, seed=SEED, build_root=BUILD_ROOT, tag=tag)
    st = res.stats
    print(f"{module.name} fast on {simulator}: seed {SEED}, {vs.values} values, {st['cycles']} cycles, build "
          f"{'reused' if res.build.reused else f'{res.build.build_seconds:.1f} s'}, sim {st['wall_seconds']:.2f} s")
    return res


def _decode_default(preset: str, lanes: int | None = None):
    fmt = PRESETS[preset]
    module = prepare_module("decode", fmt, lanes=lanes, build_root=BUILD_ROOT)
    n = module.manifest_data["lanes"]
    h, c = decode_exhaustive(fmt, n)
    h2, c2 = decode_lane_sweep(fmt, n, np.random.default_rng(SEED))
    return module, decode_vectors(fmt, np.concatenate([h, h2]), np.concatenate([c, c2]))


def _dot_default(a: str, b: str, nblocks: int = 48):
    """The stimulus of ``nxfp-hw verify --unit dot``: directed, mode-directed, random, near-cancel, every
    code pair, and the closure of what is still unhit."""
    fa, fb = PRESETS[a], PRESETS[b]
    module = prepare_module("dot", fa, fb, build_root=BUILD_ROOT)
    mode, guard = dot_mode_of(module.manifest_data)
    lanes = module.manifest_data["lanes"]
    rng = np.random.default_rng(SEED)
    blocks = dot_directed(fa, fb, rng)
    blocks.add_stream(dot_mode_directed(fa, fb, rng, guard_bits=guard))
    blocks.add_stream(dot_random(fa, fb, nblocks, rng))
    blocks.add_stream(dot_near_cancel(fa, fb, max(2, nblocks // 8), rng))
    blocks.add_stream(dot_code_pairs(fa, fb, rng))
    blocks.add_stream(dot_closure(fa, fb, blocks, rng, lanes=lanes, mode=mode, guard_bits=guard))
    return module, dot_vectors(fa, fb, lanes, blocks, rng, mode=mode, guard_bits=guard)


def _check_goals(vs, got) -> None:
    goals = evaluate_goals(vs, got)
    print("goals:", format_goals(goals))
    assert goals and all(g.passed for g in goals), format_goals(goals)


def _encode_select_cases() -> list[tuple[str, str]]:
    """(preset, policy) for every preset with several (candidate, option) pairs and every policy it takes."""
    cases = []
    for name, fmt in PRESETS.items():
        for policy in SELECT_POLICIES:
            try:
                check_select(policy, fmt)
            except SelectError:
                continue
            cases.append((name, policy))
    return cases


@pytest.mark.parametrize(("preset", "policy"), _encode_select_cases())
def test_encode_default_stimulus_reaches_goals(preset: str, policy: str) -> None:
    """The default encode regression (directed + random + closure blocks, as ``verify --unit encode``) reaches
    every encode goal under the golden expectations, for several seeds: in particular every (candidate,
    recycling option) pair is chosen for some block under the policy (was missed for nxfp4 at seed 1)."""
    fmt = PRESETS[preset]
    for seed in (SEED, SEED + 1, 1):
        rng = np.random.default_rng(seed)
        x, cases = encode_regression_blocks(fmt, rng, DEFAULT_BLOCKS["encode"] // 2, select=policy)
        vs = encode_vectors(fmt, x, fmt.k, cases=cases, select=policy)
        goals = evaluate_goals(vs, vs.expected["block"])
        assert all(g.passed for g in goals), f"seed {seed}: {format_goals(goals)}"


# --- the two engines agree ----------------------------------------------------------------------------
def test_engines_agree_dot() -> None:
    """Same dot vectors through cocotb and fast on both simulators: the same outputs, counts and coverage;
    the fast path's cycle-level behaviour is identical on the two simulators."""
    fa = PRESETS["nxfp4"]
    module = prepare_module("dot", fa, fa, build_root=BUILD_ROOT)
    rng = np.random.default_rng(SEED)
    blocks = dot_directed(fa, fa, rng)
    blocks.add_stream(dot_random(fa, fa, 32, rng))
    vs = dot_vectors(fa, fa, 32, blocks, rng)
    runs = {}
    for sim in SIMULATORS:
        runs[("fast", sim)] = _fast(module, vs, sim, "agree-dot")
        runs[("cocotb", sim)] = run_vectors(module, vs, sim, seed=SEED, build_root=BUILD_ROOT, tag="agree-dot")
    keys = ("values", "received", "mismatches", "missing", "extra", "coverage", "reset_prefix", "transactions")
    ref = runs[("cocotb", "icarus")]
    for (engine, sim), res in runs.items():
        assert res.passed, f"{engine} on {sim}: {res.message}"
        np.testing.assert_array_equal(res.got, ref.got)
        assert {k: res.stats[k] for k in keys} == {k: ref.stats[k] for k in keys}, (engine, sim)
    fi, fv = runs[("fast", "icarus")].stats, runs[("fast", "verilator")].stats
    assert (fi["cycles"], fi["input_gaps"], fi["output_stalls"]) == (fv["cycles"], fv["input_gaps"],
                                                                     fv["output_stalls"])
    assert fi["input_gaps"] > 0 and fi["output_stalls"] > 0


def test_engines_agree_encode_icarus() -> None:
    """The encoder (packed header + codes, its own scoreboard) on both engines: same outputs and coverage."""
    fmt = PRESETS["mxfp4_e2m1"]
    module = prepare_module("encode", fmt, lanes=8, build_root=BUILD_ROOT, input_format="fp32")
    rng = np.random.default_rng(SEED)
    x, cases = encode_directed(fmt, rng, "fp32")
    xr, cr = encode_random(fmt, 24, rng)
    xc, cc = encode_closure(fmt, x, rng)
    vs = encode_vectors(fmt, np.concatenate([x, xr, xc]), 8, cases=cases + cr + cc)
    fast = _fast(module, vs, "icarus", "agree-encode")
    ref = run_vectors(module, vs, "icarus", seed=SEED, build_root=BUILD_ROOT, tag="agree-encode")
    assert fast.passed and ref.passed, fast.message + ref.message
    np.testing.assert_array_equal(fast.got, ref.got)
    assert fast.stats["coverage"] == ref.stats["coverage"]
    _check_goals(vs, fast.got)


# --- exhaustive where cheap, every goal hit -----------------------------------------------------------
@pytest.mark.parametrize("preset", DECODE_PRESETS)
def test_decode_exhaustive_icarus_fast(preset: str) -> None:
    module, vs = _decode_default(preset)
    res = _fast(module, vs, "icarus", f"exh-{preset}")
    assert res.passed, res.message
    np.testing.assert_array_equal(res.got, vs.expected["values"])
    _check_goals(vs, res.got)


@pytest.mark.parametrize("preset", VERILATOR_DEFAULT)
def test_decode_exhaustive_verilator_fast(preset: str) -> None:
    module, vs = _decode_default(preset)
    res = _fast(module, vs, "verilator", f"exh-{preset}")
    assert res.passed, res.message
    _check_goals(vs, res.got)


@pytest.mark.slow
@pytest.mark.parametrize("preset", [p for p in DECODE_PRESETS if p not in VERILATOR_DEFAULT])
def test_decode_exhaustive_verilator_fast_all(preset: str) -> None:
    test_decode_exhaustive_verilator_fast(preset)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_dot_goals_icarus_fast(preset: str) -> None:
    module, vs = _dot_default(preset, preset)
    res = _fast(module, vs, "icarus", f"goals-{preset}")
    assert res.passed, res.message
    _check_goals(vs, res.got)


@pytest.mark.parametrize("pair", [("nxfp4", "mxfp8_e4m3"), ("mxfp8_e5m2", "mxfp6_e3m2")], ids="-".join)
def test_dot_goals_mixed_icarus_fast(pair: tuple[str, str]) -> None:
    module, vs = _dot_default(*pair)
    res = _fast(module, vs, "icarus", "goals-mixed")
    assert res.passed, res.message
    _check_goals(vs, res.got)


@pytest.mark.parametrize("preset", VERILATOR_DEFAULT)
def test_dot_goals_verilator_fast(preset: str) -> None:
    module, vs = _dot_default(preset, preset, nblocks=2048)
    res = _fast(module, vs, "verilator", f"goals-{preset}")
    assert res.passed, res.message
    _check_goals(vs, res.got)


@pytest.mark.slow
@pytest.mark.parametrize("preset", [p for p in PRESETS if p not in VERILATOR_DEFAULT])
def test_dot_goals_verilator_fast_all(preset: str) -> None:
    test_dot_goals_verilator_fast(preset)


def test_goals_unhit_without_closure() -> None:
    """The measured gap of the issue: random nxfp4 x mxfp8 blocks alone leave declared goals unhit (the
    closure's job), and a stimulus without NaN blocks misses the NaN result class."""
    fa, fb = PRESETS["mxfp8_e4m3"], PRESETS["mxfp8_e4m3"]
    rng = np.random.default_rng(SEED)
    vs = dot_vectors(fa, fb, 32, dot_random(fa, fb, 256, rng, distributions=("gaussian",)), rng)
    goals = {g.name: g for g in evaluate_goals(vs, vs.expected["result"])}
    assert not goals["dot.code_pairs"].passed
    assert "nan" in goals["dot.results"].missed and "+inf" in goals["dot.results"].missed
    assert goals["dot.results"].unreachable == {"-0": "the fp32 accumulation starts from +0.0 (spec 8): +0 + -0 = +0"}


# --- mutation: the same first-mismatch report ---------------------------------------------------------
NAN_FP32 = "23'h400000"


@pytest.mark.parametrize("simulator", [pytest.param("verilator", marks=pytest.mark.slow), "icarus"])
def test_mutation_caught_with_the_cocotb_report(simulator: str, tmp_path: Path) -> None:
    fmt = PRESETS["mxfp8_e4m3"]
    good = prepare_module("decode", fmt, build_root=BUILD_ROOT)
    text = good.verilog.read_text()
    assert NAN_FP32 in text, "mutation target not found: the NaN constant of the generated decode unit"
    mutated = tmp_path / good.verilog.name
    mutated.write_text(text.replace(NAN_FP32, "23'h400001"))
    module = ModuleFiles(good.name, mutated, good.manifest, good.manifest_data)
    h, c = decode_exhaustive(fmt, 32)
    rng = np.random.default_rng(SEED)
    pick = np.sort(rng.choice(h.size, 48 if simulator == "icarus" else 512, replace=False))
    vs = decode_vectors(fmt, h[pick], c[pick])
    fast = _fast(module, vs, simulator, "mutant")
    assert not fast.passed and fast.stats["mismatches"] > 0
    assert "expected 0x7fc00000 (nan), got 0x7fc00001 (nan)" in fast.message
    if simulator == "icarus":  # the cocotb path on the same mutant and vectors: the same report
        ref = run_vectors(module, vs, simulator, seed=SEED, build_root=BUILD_ROOT, tag="mutant")
        assert not ref.passed
        assert fast.stats["first_mismatch"] == ref.stats["first_mismatch"]
        assert fast.stats["mismatches"] == ref.stats["mismatches"]


# --- the command --------------------------------------------------------------------------------------
def _verify(*args: str) -> int:
    return main(["verify", "--build-dir", str(BUILD_ROOT), *args])


def test_verify_fast_engine_reports_goals(capsys) -> None:
    assert _verify("--unit", "dot", "--format", "mxfp4_e2m1", "--sim", "icarus", "--engine", "fast",
                   "--seed", str(SEED), "--blocks", "16") == 0
    out = capsys.readouterr().out
    assert "engine     fast" in out and "goals      dot.code_pairs 256/256" in out
    assert "PASS: every output bit matches the golden model, every coverage goal hit" in out


def test_verify_fails_on_a_missed_goal(capsys, monkeypatch) -> None:
    """Steering switched off: the default dot regression of mxfp8_e4m3 misses code pairs: exit 1."""
    import verif.coverage_goals as cg
    from verif.vectors import BlockStream

    monkeypatch.setattr(cg, "dot_code_pairs", lambda fa, fb, rng: BlockStream.empty(fa.k))
    assert _verify("--unit", "dot", "--format", "mxfp8_e4m3", "--sim", "icarus", "--engine", "fast",
                   "--seed", str(SEED), "--blocks", "8") == 1
    assert "FAIL: coverage goal missed: dot.code_pairs" in capsys.readouterr().out


def test_engine_bad_input(capsys, tmp_path: Path) -> None:
    assert _verify("--unit", "dot", "--format", "nxfp4", "--engine", "turbo") == 2
    assert "--engine: expected auto, cocotb or fast, got 'turbo'" in capsys.readouterr().err
    assert _verify("--unit", "dot", "--format", "nxfp4", "--engine", "fast", "--waves") == 2
    assert "--waves: only with --engine cocotb" in capsys.readouterr().err
    foreign = Path(__file__).resolve().parents[1] / "examples" / "foreign" / "mx_block_dot.json"
    assert _verify("--manifest", str(foreign), "--engine", "fast") == 2
    assert "only the cocotb path drives" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_auto_engine_by_size() -> None:
    assert choose_engine("auto", 19_999) == "cocotb"
    assert choose_engine("auto", 20_000) == "fast"
    assert choose_engine("auto", 2_000, beats=5_000) == "fast"  # a 5,000-block dot run
    assert choose_engine("auto", 2_000, beats=5_000, simulator="icarus") == "cocotb"  # 1.5x there
    assert choose_engine("auto", 10**6, waves=True) == "cocotb"
    with pytest.raises(UserError, match="--waves"):
        choose_engine("fast", 1, waves=True)


def test_vector_set_must_fit_the_manifest() -> None:
    fmt = PRESETS["nxfp4"]
    module = prepare_module("decode", fmt, build_root=BUILD_ROOT)
    h, c = decode_exhaustive(fmt, 16)  # 16 lanes against a 32-lane module
    with pytest.raises(UserError, match=r"input field 'codes' has shape \(256, 16\);.* takes 32 element"):
        check_vectors(decode_vectors(fmt, h, c), module.manifest_data)
    vs = decode_vectors(PRESETS["mxfp8_e4m3"], *decode_exhaustive(PRESETS["mxfp8_e4m3"], 32))
    with pytest.raises(UserError, match="wider than its 4 bits"):
        check_vectors(vs, module.manifest_data)


def test_hex_packing_round_trip() -> None:
    """Vectorised packing equals PayloadLayout.pack_many, and unpacking inverts it (X digits give -1)."""
    fmt = PRESETS["nxfp4"]
    module = prepare_module("dot", fmt, fmt, build_root=BUILD_ROOT)
    ports = {p["name"]: p for p in module.manifest_data["ports"]}
    layout = PayloadLayout(ports[module.manifest_data["streams"]["i"]["payload"]])
    rng = np.random.default_rng(SEED)
    fa = PRESETS["nxfp4"]
    vs = dot_vectors(fa, fa, 32, dot_random(fa, fa, 40, rng), rng)
    text = pack_hex(layout, vs.inputs)
    words = layout.pack_many(vs.inputs)
    assert text.decode().split() == [f"{w:0{-(-layout.width // 4)}x}" for w in words]
    got, n = unpack_hex(text + b"x" * (-(-layout.width // 4)) + b"\n", layout)
    assert n == len(words) + 1
    for name, arr in vs.inputs.items():
        np.testing.assert_array_equal(got[name][:-1].reshape(arr.shape), arr)
        assert np.all(got[name][-1] == -1)


def test_toolchain_without_coroutines_refused(monkeypatch) -> None:
    """Verilator's SystemVerilog testbench needs C++20 coroutines: a g++ without them is named, exit 2."""
    import subprocess

    import sim.fast_tb as ft

    class Failed:
        returncode = 1
        stderr = "cc1plus: error: unrecognized command-line option '-fcoroutines'"

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(UserError, match="g\\+\\+ cannot compile C\\+\\+20 coroutines"):
        ft.check_fast_toolchain("verilator")
    with pytest.raises(UserError, match="harness 'cpp' cannot run on icarus"):
        ft.build_fast("icarus", Path("x.v"), {}, build_root=BUILD_ROOT, harness="cpp")


@pytest.mark.slow
def test_sv_testbench_on_verilator_matches_cpp_harness() -> None:
    """The SystemVerilog testbench (--binary --timing) and the C++ harness on Verilator: the same cycles, gaps,
    stalls and outputs for the same seed."""
    from verif.fast import run_fast

    fa = PRESETS["nxfp4"]
    module = prepare_module("dot", fa, fa, build_root=BUILD_ROOT)
    rng = np.random.default_rng(SEED)
    blocks = dot_directed(fa, fa, rng)
    blocks.add_stream(dot_random(fa, fa, 256, rng))
    vs = dot_vectors(fa, fa, 32, blocks, rng)
    runs = [run_fast(module, vs, "verilator", seed=SEED, build_root=BUILD_ROOT, tag="harness", harness=h)
            for h in ("cpp", "sv")]
    keys = ("cycles", "input_gaps", "output_stalls", "received", "mismatches", "coverage")
    assert all(r.passed for r in runs), [r.message for r in runs]
    assert {k: runs[0].stats[k] for k in keys} == {k: runs[1].stats[k] for k in keys}
    np.testing.assert_array_equal(runs[0].got, runs[1].got)
