"""The compiled fast path of a regression: the same vectors and golden expectations as the cocotb path,
streamed through a generated testbench (:mod:`sim.fast_tb`): SystemVerilog on Icarus, its C++ twin on Verilator
(or the SystemVerilog one under ``--binary --timing``).

The launching process packs the input payload words into a hex file (vectorised NumPy, from the
manifest's field offsets), the testbench drives them with random valid gaps and backpressure and logs
every output transfer, and the launching process unpacks the logged words and hands them to the same
comparison and coverage code the cocotb testbench runs (:func:`verif.bench.score_outputs`, the unit's
scoreboard and mismatch description). :func:`run_fast` returns a
:class:`~verif.regression.RegressionResult` with the same statistics as :func:`verif.regression.run_vectors`.

:func:`choose_engine` picks the engine of ``nxfp-hw verify --engine auto``: the fast path from
:data:`AUTO_FAST_VALUES` compared values (or, on Verilator, :data:`AUTO_FAST_BEATS` input beats) on, cocotb
below (and always for ``--waves``).
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nxfp_hw.errors import UserError
from sim.fast_tb import FAST_TOP, build_fast, run_fast_sim
from sim.runner import SimBuild, SimResult, _safe, default_build_root

from .bench import score_outputs
from .manifest_dut import PayloadLayout
from .regression import ModuleFiles, RegressionResult
from .scoreboard import Scoreboard
from .vectors import VectorSet

__all__ = ["AUTO_FAST_BEATS", "AUTO_FAST_VALUES", "ENGINES", "check_vectors", "choose_engine", "pack_hex", "run_fast",
           "unpack_hex"]

ENGINES = ("auto", "cocotb", "fast")
#: ``--engine auto`` runs the fast path from this many compared values on (the cocotb path below: its
#: start-up is shorter and, on Verilator, its model may already be built).
AUTO_FAST_VALUES = 20_000
AUTO_FAST_BEATS = 4096  # ... or this many input beats (a dot run of 5,000 blocks has ~2,000 results)
_CHUNK = 8192  # rows per vectorised packing step
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_NIBBLE = np.full(256, 255, np.uint8)
_NIBBLE[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16)
_NIBBLE[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)


def choose_engine(requested: str, values: int, *, beats: int = 0, waves: bool = False,
                  simulator: str = "verilator") -> str:
    """``cocotb`` or ``fast`` for ``--engine requested`` (``auto``: by the number of compared values, and on
    Verilator, where the fast path gains 40-90x instead of Icarus's 1.5x, also by the number of beats)."""
    if requested not in ENGINES:
        raise UserError(f"--engine: expected one of {', '.join(ENGINES)}, got {requested!r}")
    if requested == "fast" and waves:
        raise UserError("--waves: only with --engine cocotb (the fast path records no waveforms; replay the seed "
                        "with --engine cocotb --waves to debug)")
    if requested != "auto":
        return requested
    big = values >= AUTO_FAST_VALUES or (simulator == "verilator" and beats >= AUTO_FAST_BEATS)
    return "fast" if big and not waves else "cocotb"


# --- payload words as hex lines ----------------------------------------------------------------------
def pack_hex(layout: PayloadLayout, arrays: Mapping[str, np.ndarray]) -> bytes:
    """One hex line per beat (``ceil(width/4)`` digits, MSB first) of the payload words of ``arrays``
    (the fields of :meth:`PayloadLayout.pack_many`), built without a Python loop over beats."""
    n = len(next(iter(arrays.values())))
    digits = -(-layout.width // 4)
    if any(layout[name].width > 62 for name in arrays):  # wide fields: Python integers
        return b"".join(f"{w:0{digits}x}\n".encode() for w in layout.pack_many(arrays))
    vals = {}
    for name, arr in arrays.items():
        spec = layout[name]
        a = np.asarray(arr).astype(np.int64).reshape(n, -1)
        if a.shape[1] != spec.count:
            raise ValueError(f"field {name!r}: expected {spec.count} elements per beat, got {a.shape[1]}")
        if a.size and (a.min() < 0 or a.max() > spec.mask):
            raise ValueError(f"field {name!r}: values must fit {spec.width} bits, got {a.min()}..{a.max()}")
        vals[name] = a
    n_chunks = -(-digits // 16)  # 64-bit words of the payload, LSB word first
    d = np.arange(digits)
    word_of, shift_of = d // 16, (4 * (d % 16)).astype(np.uint64)
    out = []
    for lo in range(0, n, _CHUNK):
        m = min(n, lo + _CHUNK) - lo
        words = np.zeros((m, n_chunks + 1), np.uint64)
        for name, a in vals.items():
            spec = layout[name]
            for i in range(spec.count):
                off = spec.offset + i * spec.stride
                c, sh = divmod(off, 64)
                v = a[lo:lo + m, i].astype(np.uint64)
                words[:, c] |= v << np.uint64(sh)
                if sh + spec.width > 64:
                    words[:, c + 1] |= v >> np.uint64(64 - sh)
        nib = ((words[:, word_of] >> shift_of) & np.uint64(15))[:, ::-1]
        text = np.empty((m, digits + 1), np.uint8)
        text[:, :digits] = _HEX[nib]
        text[:, digits] = ord("\n")
        out.append(text.tobytes())
    return b"".join(out)


def unpack_hex(data: bytes, layout: PayloadLayout) -> tuple[dict[str, np.ndarray], int]:
    """``({field: int64 array}, rows)`` from hex lines of payload words; a row with X/Z digits gives -1 in
    every field (shown as such by the scoreboard)."""
    digits = -(-layout.width // 4)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    n = len(lines)
    if n and all(len(ln) == digits for ln in lines):
        text = np.frombuffer(b"".join(lines), np.uint8).reshape(n, digits)
    else:  # unexpected widths: right-align each line
        text = np.full((n, digits), ord("0"), np.uint8)
        for i, ln in enumerate(lines):
            ln = ln.strip()[-digits:]
            text[i, digits - len(ln):] = np.frombuffer(ln, np.uint8)
    nib = _NIBBLE[text]
    bad = np.any(nib == 255, axis=1)
    nib = np.where(nib == 255, 0, nib)[:, ::-1].astype(np.uint64)  # LSB digit first
    n_chunks = -(-digits // 16)
    nib = np.concatenate([nib, np.zeros((n, n_chunks * 16 - digits + 16), np.uint64)], axis=1)
    words = (nib.reshape(n, n_chunks + 1, 16) << (np.uint64(4) * np.arange(16, dtype=np.uint64))).sum(
        axis=2, dtype=np.uint64)  # 64-bit words of each payload, LSB word first (disjoint bits: sum = or)
    out: dict[str, np.ndarray] = {}
    for name, spec in layout.fields.items():
        if spec.width > 62:
            ints = [int(ln, 16) if not b else -1 for ln, b in zip(lines, bad, strict=True)]
            vals = np.array([spec.unpack(w) if w >= 0 else ([-1] * spec.count if spec.is_array else -1)
                             for w in ints], dtype=object)
        else:
            vals = np.empty((n, spec.count), np.int64)
            mask = np.uint64((1 << spec.width) - 1)
            for i in range(spec.count):
                c, sh = divmod(spec.offset + i * spec.stride, 64)
                v = words[:, c] >> np.uint64(sh)
                if sh + spec.width > 64:
                    v |= words[:, c + 1] << np.uint64(64 - sh)
                vals[:, i] = (v & mask).astype(np.int64)
            vals[bad] = -1
            if not spec.is_array:
                vals = vals.reshape(n)
        out[name] = vals
    return out, n


# --- checks ------------------------------------------------------------------------------------------
def check_vectors(vs: VectorSet, manifest: Mapping[str, Any], what: str = "vector set") -> None:
    """``UserError`` unless the vector set fits the module's manifest: every input field exists with the lanes
    (element count) and widths of the manifest, and the expected outputs have the manifest's element count."""
    ports = {p["name"]: p for p in manifest["ports"]}
    li = PayloadLayout(ports[manifest["streams"]["i"]["payload"]])
    lo = PayloadLayout(ports[manifest["streams"]["o"]["payload"]])
    n = vs.beats
    for name, arr in vs.inputs.items():
        if name not in li.fields:
            raise UserError(f"{what}: input field {name!r} is not in {manifest['module']}'s manifest (fields: "
                            f"{', '.join(li.fields)})")
        spec, a = li.fields[name], np.asarray(arr)
        per = int(np.prod(a.shape[1:], dtype=np.int64)) if a.ndim > 1 else 1
        if a.shape[0] != n or per != spec.count:
            raise UserError(f"{what}: input field {name!r} has shape {a.shape}; {manifest['module']} takes "
                            f"{spec.count} element(s) per beat ({n} beats)")
        if a.size and (a.min() < 0 or int(a.max()) > spec.mask):
            raise UserError(f"{what}: input field {name!r} holds {a.min()}..{a.max()}, wider than its {spec.width} "
                            f"bits in {manifest['module']}'s manifest")
    meta = vs.meta
    fields = meta.get("compare_fields") or [meta["compare_field"]]
    want = sum(lo[f].count for f in fields if f in lo.fields)
    missing = [f for f in fields if f not in lo.fields]
    exp = np.asarray(vs.expected[meta["compare_field"]])
    got = int(np.prod(exp.shape[1:], dtype=np.int64)) if exp.ndim > 1 else 1
    if missing or got != want:
        raise UserError(f"{what}: expected outputs {exp.shape} do not match {manifest['module']}'s output fields "
                        f"({', '.join(f'{k}[{v.count}]' for k, v in lo.fields.items())})")


# --- the run -----------------------------------------------------------------------------------------
def _unit_hooks(manifest: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[Callable[..., str], Callable[..., Any]]:
    """The describe function and scoreboard factory of the unit's cocotb testbench."""
    unit = manifest["unit"]
    if unit == "decode":
        from .tb_decode import describe_decode

        return describe_decode, Scoreboard
    if unit == "dot":
        from .tb_dot import check_mode, describe_dot

        try:
            check_mode(dict(manifest), dict(meta))
        except AssertionError as exc:
            raise UserError(f"vector set: {exc}") from None
        return describe_dot, Scoreboard
    if unit == "encode":
        from nxfp_hw.formats import parse_format

        from .tb_encode import EncodeScoreboard, describe_encode

        fmt = parse_format(manifest["formats"]["a"]["format_string"])
        return describe_encode, functools.partial(EncodeScoreboard, fmt=fmt)
    raise UserError(f"--engine fast: unit {unit!r} has no fast-path testbench (decode, dot and encode do); use "
                    "--engine cocotb")


def run_fast(module: ModuleFiles, vectors: VectorSet, simulator: str, *, seed: int, gap: float = 0.2,
             stall: float = 0.3, build_root: Path | None = None, tag: str = "", reset_prefix: int | None = None,
             keep: bool = False, harness: str | None = None) -> RegressionResult:
    """Drive ``vectors`` through ``module`` on ``simulator`` with the compiled testbench; never raises on a
    mismatch (see ``passed``). The run directory (stimulus, logged outputs, events, log) is removed after a
    passing run unless ``keep``; a failing run keeps it and the vector file beside it. ``harness``: Verilator's
    ``cpp`` (default) or ``sv`` testbench (:func:`sim.fast_tb.build_fast`)."""
    import time

    from nxfp_hw.formats import parse_format

    manifest = module.manifest_data
    check_vectors(vectors, manifest)
    describe, scoreboard = _unit_hooks(manifest, vectors.meta)
    root = (build_root or default_build_root()).resolve()
    fb = build_fast(simulator, module.verilog, manifest, build_root=root, harness=harness)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    run_dir = fb.build_dir / "runs" / _safe(f"{worker}-{os.getpid()}-{tag or 'run'}-{seed}")
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    ports = {p["name"]: p for p in manifest["ports"]}
    li = PayloadLayout(ports[manifest["streams"]["i"]["payload"]])
    lo = PayloadLayout(ports[manifest["streams"]["o"]["payload"]])

    n_beats = vectors.beats
    prefix = int(vectors.meta.get("reset_prefix", 0)) if reset_prefix is None or reset_prefix < 0 else reset_prefix
    prefix = min(prefix, n_beats)
    field = vectors.meta["compare_field"]
    exp = vectors.expected[field]
    n_out = int(exp.shape[0])
    t_pack = time.perf_counter()
    stim = run_dir / "stim.hex"
    try:  # interrupted (SIGINT/SIGTERM stop the simulator with the command): no run directory left behind
        words = pack_hex(li, vectors.inputs)
        line = len(words) // max(n_beats, 1)
        stim.write_bytes(words[:prefix * line] + words)
        pack_seconds = time.perf_counter() - t_pack
        latency = int(manifest.get("latency", 0))
        patience = 8 * (latency + 16) * max(1, int(1 / (1 - stall)))
        fr = run_fast_sim(fb, stim, run_dir, beats=n_beats, prefix=prefix, expect=n_out, seed=seed, gap=gap,
                          stall=stall, patience=patience)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise

    t_cmp = time.perf_counter()
    data = fr.out_path.read_bytes() if fr.out_path.is_file() else b""
    got, received = unpack_hex(data, lo)
    formats = {k: parse_format(v["format_string"]) for k, v in manifest.get("formats", {}).items()}
    sb, coverage = score_outputs(vectors, got, received, formats, manifest["module"], describe, scoreboard)
    compare_seconds = time.perf_counter() - t_cmp
    passed = fr.ok and sb.passed and not fr.protocol_errors
    stats: dict[str, Any] = {
        "module": manifest["module"], "engine": "fast", "seed": seed, "beats": n_beats, "transactions": n_out,
        "values": int(exp.size), "received": sb.received, "mismatches": sb.mismatches, "missing": sb.missing,
        "extra": sb.extra, "first_mismatch": sb.first.message if sb.first else None,
        "protocol_errors": list(fr.protocol_errors[:10]), "cycles": fr.cycles, "wall_seconds": fr.wall_seconds,
        "input_gaps": fr.gaps, "output_stalls": fr.stalls, "reset_prefix": prefix, "coverage": coverage,
        "passed": passed, "pack_seconds": pack_seconds, "compare_seconds": compare_seconds,
    }
    failures: list[tuple[str, str]] = []
    if fr.errors:
        failures.append(("fast", "; ".join(fr.errors)))
    if fr.protocol_errors:
        failures.append(("fast", "stream protocol violated by the DUT: " + "; ".join(fr.protocol_errors[:3])))
    if not sb.passed:
        failures.append(("fast", sb.report()))
    sim = SimResult(passed, 1, tuple(failures), run_dir / "results.xml", fr.log, run_dir, None, fr.wall_seconds,
                    fr.cycles * 10.0, 0 if fr.ok else 1, ("fast_regression",))
    build = SimBuild(simulator, FAST_TOP, (module.verilog,), fb.build_dir, False, fb.build_seconds, fb.reused)
    got_field = sb.got_array().astype(exp.dtype, copy=False) if sb.received else None
    if passed and not keep:
        shutil.rmtree(run_dir, ignore_errors=True)
        try:
            run_dir.parent.rmdir()
        except OSError:
            pass
    elif not passed:
        vectors.save(run_dir.parent / f"{run_dir.name}.vectors.npz")
    else:
        stim.unlink(missing_ok=True)
    return RegressionResult(passed, stats, got_field, exp, sim, build)
