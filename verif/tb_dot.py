"""cocotb testbench of a dot-product engine (spec 8, 8.1), driven only through its manifest.

The vector file (``verif.vectors.dot_vectors``) holds the beats (headers on the first beat of each
block, ``last`` on the final beat of each reduction) and the golden results of the engine's
accumulation mode; the regression also resets the engine in the middle of a stream and checks every
result after it. The mode and guard bits of the vectors must be the manifest's (checked first).

:func:`prepare_dot_module` (launching side) generates an engine of a given accumulation mode.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cocotb
import numpy as np

from nxfp_hw.formats import BlockFormat, parse_format

from .bench import run_regression, tb_params
from .scoreboard import describe_elements, describe_header, show_bits, show_exact

if TYPE_CHECKING:
    from .regression import ModuleFiles

MAX_BLOCKS_SHOWN = 4


def describe_dot(inputs: dict[str, np.ndarray], aux: dict[str, np.ndarray], meta: dict[str, Any], red: int,
                 lane: int) -> str:
    """Every block pair of reduction ``red`` decoded: headers, element values, golden block result and
    exact value, and what each accumulation mode gives for the reduction."""
    fa, fb = parse_format(meta["formats"]["a"]), parse_format(meta["formats"]["b"])
    start, end = int(aux["red_start"][red]), int(aux["red_end"][red])
    mode = meta.get("accumulation", "fp32")
    lines = [f"reduction {red} = blocks {start}..{end} (case: {aux['case'][start]}), accumulation {mode}"
             + (f" (guard bits {meta.get('guard_bits')})" if mode == "exact" else "")]
    if "mode_results" in aux and red < len(aux["mode_results"]):
        lines.append("  golden by mode: " + ", ".join(
            f"{m} {show_bits(int(b))}" for m, b in zip(meta.get("modes", []), aux["mode_results"][red], strict=False)))
    lsb = meta.get("value_lsb_exponent")
    for blk in range(start, min(end, start + MAX_BLOCKS_SHOWN - 1) + 1):
        ha, hb = int(aux["ha"][blk]), int(aux["hb"][blk])
        exact = f", exact {show_exact(int(aux['block_values'][blk]), int(lsb))}" if "block_values" in aux else ""
        lines.append(f"  block {blk}: golden block result {show_bits(int(aux['block_results'][blk]))}{exact}")
        lines.append(f"    a: {describe_header(fa, ha)}; elements {describe_elements(fa, ha, aux['ca'][blk])}")
        lines.append(f"    b: {describe_header(fb, hb)}; elements {describe_elements(fb, hb, aux['cb'][blk])}")
    if end - start + 1 > MAX_BLOCKS_SHOWN:
        lines.append(f"  ... {end - start + 1 - MAX_BLOCKS_SHOWN} more blocks")
    return "\n".join(lines)


def check_mode(manifest: dict[str, Any], meta: dict[str, Any]) -> None:
    """The vectors' accumulation mode and guard bits must be the engine's (``AssertionError`` otherwise)."""
    from .vectors import dot_mode_of

    mode, guard = dot_mode_of(manifest)
    want_mode, want_guard = meta.get("accumulation", "fp32"), int(meta.get("guard_bits", guard))
    if mode != want_mode or (mode == "exact" and guard != want_guard):
        raise AssertionError(f"vector file computed for accumulation {want_mode} (guard bits {want_guard}), but "
                             f"{manifest.get('module')} accumulates in {mode} (guard bits {guard})")


@cocotb.test()
async def dot_regression(dut: Any) -> None:
    """Mid-stream reset, then every beat of the vector file, random gaps and backpressure, bit-exact."""
    p = tb_params()
    with np.load(p.vectors, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
    check_mode(json.loads(Path(p.manifest).read_text()), meta)
    await run_regression(dut, describe_dot)


def prepare_dot_module(fmt_a: BlockFormat, fmt_b: BlockFormat, *, lanes: int | None = None,
                       pipeline: Any = None, acc: str | None = None, guard_bits: int | None = None,
                       build_root: Path | None = None) -> ModuleFiles:
    """``verif.regression.prepare_module`` for a dot engine with accumulation ``acc`` and ``guard_bits``
    (None: the engine's defaults), reusing an identical earlier generation under ``build_root``."""
    from . import regression

    return regression.prepare_module("dot", fmt_a, fmt_b, lanes=lanes, pipeline=pipeline, build_root=build_root,
                                     acc=acc, guard_bits=guard_bits)


__all__ = ["check_mode", "describe_dot", "dot_regression", "prepare_dot_module"]
