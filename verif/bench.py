"""The stream regression every testbench runs inside the simulator (cocotb side).

Parameters come from environment variables set by :mod:`sim.runner` callers (see
:func:`tb_params`); the stimulus and the golden expectations come from a vector file written by
:mod:`verif.vectors` in the launching process. The regression:

1. binds the DUT through its manifest (:class:`~verif.manifest_dut.ManifestDUT`) and resets it;
2. optionally drives a prefix of the stream with the output stalled, then resets in the middle of
   it (in-flight work must vanish: every later output is checked against a fresh golden stream);
3. drives every beat with random valid gaps, applies random backpressure on the output, and
   records every output transfer and any protocol violation;
4. compares every output bit pattern (:class:`~verif.scoreboard.Scoreboard`), samples functional
   coverage of the accepted stimulus and the results, writes the outputs and statistics to the
   output file, and fails the cocotb test on the first mismatch.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .manifest_dut import ManifestDUT
from .scoreboard import Scoreboard
from .stream import Backpressure, StreamDriver, StreamMonitor
from .vectors import load_vector_set, savez_atomic

__all__ = ["ENV", "TbParams", "run_regression", "tb_params"]

# Environment variables read by the testbenches.
ENV = {
    "manifest": "NXFP_TB_MANIFEST",  # path of the module's JSON manifest
    "vectors": "NXFP_TB_VECTORS",  # path of the .npz vector file (verif.vectors)
    "output": "NXFP_TB_OUTPUT",  # where to write outputs + statistics (.npz), optional
    "seed": "NXFP_TB_SEED",  # seed of the valid-gap and backpressure generators
    "gap": "NXFP_TB_GAP",  # probability of an idle gap before an input beat
    "stall": "NXFP_TB_STALL",  # probability of ready low on the output per cycle
    "reset_prefix": "NXFP_TB_RESET_PREFIX",  # beats driven before a mid-stream reset (-1: vector file default)
}
CLOCK_NS = 10


@dataclass(frozen=True)
class TbParams:
    manifest: Path
    vectors: Path
    output: Path | None
    seed: int
    gap: float
    stall: float
    reset_prefix: int


def tb_params() -> TbParams:
    """Read the testbench parameters from the environment (clear error if one is missing)."""
    missing = [ENV[k] for k in ("manifest", "vectors") if not os.environ.get(ENV[k])]
    if missing:
        raise RuntimeError(f"testbench parameters missing: set {', '.join(missing)} (sim.runner callers do)")
    out = os.environ.get(ENV["output"])
    return TbParams(
        manifest=Path(os.environ[ENV["manifest"]]),
        vectors=Path(os.environ[ENV["vectors"]]),
        output=Path(out) if out else None,
        seed=int(os.environ.get(ENV["seed"], "1")),
        gap=float(os.environ.get(ENV["gap"], "0.2")),
        stall=float(os.environ.get(ENV["stall"], "0.3")),
        reset_prefix=int(os.environ.get(ENV["reset_prefix"], "-1")),
    )


def _array(inputs: dict[str, np.ndarray], aux: dict[str, np.ndarray], name: str,
           got: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """``aux.<name>`` from the auxiliary arrays, ``got.<name>`` from the DUT's outputs, ``in.<name>`` or
    anything else from the inputs."""
    if name.startswith("aux."):
        return aux[name[4:]]
    if name.startswith("got."):
        return (got or {})[name[4:]]
    return inputs[name[3:] if name.startswith("in.") else name]


def _stack_fields(got: dict[str, np.ndarray], fields: list[str], n: int) -> np.ndarray:
    """Output fields side by side, one row per transaction (scalars as one column)."""
    return np.concatenate([np.asarray(got[f]).reshape(n, -1) for f in fields], axis=1)


def score_outputs(vs: Any, got: dict[str, np.ndarray], received: int, formats: dict[str, Any], module: str,
                  describe: Callable[[dict, dict, dict, int, int], str],
                  scoreboard: Callable[..., Scoreboard] = Scoreboard) -> tuple[Scoreboard, dict[str, Any]]:
    """Compare the received output fields ``got`` (``{field: array}``, ``received`` transactions) with the vector
    set's expectations and sample functional coverage: the scoreboard (first mismatch, counts) and the coverage
    summary. Shared by the cocotb path (:func:`run_regression`) and the compiled fast path (:mod:`verif.fast`)."""
    from .coverage import FormatCoverage, ResultCoverage, coverage_summary

    inputs, expected, aux, meta = vs.inputs, vs.expected, vs.aux, vs.meta
    field = meta["compare_field"]
    kind = meta.get("kind", "fp32")
    exp = expected[field]
    sb = scoreboard(exp, kind=kind, name=f"{module}.{field}",
                    describe=lambda t, lane: describe(inputs, aux, meta, t, lane))
    if not received:
        got_field = np.zeros((0,) + exp.shape[1:], dtype=np.int64)
    elif meta.get("compare_fields"):
        got_field = _stack_fields(got, list(meta["compare_fields"]), received)
    else:
        got_field = got[field]
    sb.check_all(got_field)

    cov_groups: list[Any] = []
    for op, fmt in formats.items():
        hk, ck = meta["operands"][op]
        cov = FormatCoverage(fmt, op)
        if received or not (hk.startswith("got.") or ck.startswith("got.")):
            cov.sample(_array(inputs, aux, hk, got), _array(inputs, aux, ck, got))
        cov_groups.append(cov)
    for name, arr, ieee_kind in meta.get("ieee_coverage", [[field, f"got.{field}", kind]]):
        rc = ResultCoverage(ieee_kind, name)
        rc.sample(got_field if arr == f"got.{field}" else _array(inputs, aux, arr, got))
        cov_groups.append(rc)
    return sb, coverage_summary(*cov_groups)


async def run_regression(dut: Any, describe: Callable[[dict, dict, dict, int, int], str], *,
                         scoreboard: Callable[..., Scoreboard] = Scoreboard) -> dict[str, Any]:
    """Run the vector file's stream through ``dut``; raise ``AssertionError`` on any mismatch.

    ``describe(inputs, aux, meta, transaction, lane)`` returns the decoded inputs of one output
    transaction for the mismatch message; ``scoreboard`` builds the comparing object (a subclass may
    word the mismatch for its unit). Returns the statistics it also writes to the output file.

    Vector-file ``meta`` keys read here: ``compare_field`` (the expected array), optionally
    ``compare_fields`` (output payload fields stacked column-wise into it, e.g. an encoder's
    ``header`` and ``codes``), ``kind``, ``operands`` (block-format coverage: arrays named ``in.*``
    (default), ``aux.*`` or ``got.*`` for the DUT's outputs), ``ieee_coverage`` (``[name, array,
    kind]`` triples of IEEE bit arrays to classify; default: the compared output) and ``reset_prefix``.
    """
    import cocotb
    from cocotb.triggers import RisingEdge
    from cocotb.utils import get_sim_time

    p = tb_params()
    vs = load_vector_set(p.vectors)
    inputs, expected, meta = vs.inputs, vs.expected, vs.meta
    mdut = ManifestDUT(dut, p.manifest)
    log = dut._log
    log.info("regression: %s, %s, seed %d (gap %.2f, stall %.2f)", p.vectors.name, mdut.manifest["module"],
             p.seed, p.gap, p.stall)
    field = meta["compare_field"]
    words = mdut.i.layout.pack_many(inputs)
    n_beats = len(words)
    exp = expected[field]
    n_out = exp.shape[0]

    rng = random.Random(p.seed)
    mdut.idle_inputs()
    mdut.start_clock(CLOCK_NS)
    driver = StreamDriver(mdut.clk, mdut.i.valid, mdut.i.payload, mdut.i.ready, width=mdut.i.layout.width,
                          gap_prob=p.gap, rng=random.Random(rng.getrandbits(32)))
    monitor = StreamMonitor(mdut.clk, mdut.o.valid, mdut.o.payload, mdut.o.ready, name="o")
    await mdut.reset(2)
    cocotb.start_soon(monitor.run())

    # Mid-stream reset: drive a prefix with the output stalled so results are in flight, then reset.
    prefix = p.reset_prefix if p.reset_prefix >= 0 else int(meta.get("reset_prefix", 0))
    prefix = min(prefix, n_beats)
    if prefix:
        mdut.o.ready.value = 0
        await driver.send(words[:prefix], max_cycles=4 * prefix + 8)
        driver.idle()
        monitor.enabled = False  # a reset may withdraw a stalled output
        await mdut.reset(2)
        monitor.enabled = True
        if monitor.words:
            raise AssertionError(f"{len(monitor.words)} outputs transferred while the output ready was low")

    t0 = time.perf_counter()
    cycle0 = get_sim_time("ns") / CLOCK_NS
    driver.sent = 0
    bp = Backpressure(mdut.clk, mdut.o.ready, stall_prob=p.stall, rng=random.Random(rng.getrandbits(32)))
    cocotb.start_soon(bp.run())
    await driver.send(words)
    # Drain: wait until every expected output arrived or no output for a long while.
    patience = 8 * (mdut.latency + 16) * max(1, int(1 / (1 - p.stall)))
    idle = 0
    last_count = len(monitor.words)
    while len(monitor.words) < n_out and idle < patience:
        await RisingEdge(mdut.clk)
        idle = idle + 1 if len(monitor.words) == last_count else 0
        last_count = len(monitor.words)
    for _ in range(mdut.latency + 8):  # catch unexpected extra outputs
        await RisingEdge(mdut.clk)
    cycles = get_sim_time("ns") / CLOCK_NS - cycle0
    wall = time.perf_counter() - t0

    got = mdut.o.layout.unpack_many(monitor.words)
    sb, coverage = score_outputs(vs, got, len(monitor.words), mdut.formats, mdut.manifest["module"], describe,
                                 scoreboard)
    stats = {
        "module": mdut.manifest["module"],
        "seed": p.seed,
        "beats": n_beats,
        "transactions": n_out,
        "values": int(exp.size),
        "received": sb.received,
        "mismatches": sb.mismatches,
        "missing": sb.missing,
        "extra": sb.extra,
        "first_mismatch": sb.first.message if sb.first else None,
        "protocol_errors": monitor.protocol_errors[:10],
        "cycles": int(cycles),
        "wall_seconds": wall,
        "input_gaps": driver.idle_cycles,
        "output_stalls": bp.stalls,
        "reset_prefix": prefix,
        "coverage": coverage,
        "passed": sb.passed and not monitor.protocol_errors,
    }
    log.info("%s", sb.report())
    log.info("cycles %d, wall %.2f s, %.0f values/s", cycles, wall, exp.size / max(wall, 1e-9))
    if p.output is not None:
        savez_atomic(p.output, {f"got.{field}": sb.got_array().astype(exp.dtype, copy=False),
                              f"expected.{field}": exp, "stats": np.array(json.dumps(stats))})
    if monitor.protocol_errors:
        raise AssertionError("stream protocol violated by the DUT: " + "; ".join(monitor.protocol_errors[:3]))
    if not sb.passed:
        raise AssertionError(sb.report())
    return stats
