"""cocotb testbench of a dot-product engine (spec 8), driven only through its manifest.

The vector file (``verif.vectors.dot_vectors``) holds the beats (headers on the first beat of each
block, ``last`` on the final beat of each reduction) and the golden results; the regression also
resets the engine in the middle of a stream and checks every result after it.
"""

from __future__ import annotations

from typing import Any

import cocotb
import numpy as np

from nxfp_hw.formats import parse_format

from .bench import run_regression
from .scoreboard import describe_elements, describe_header, show_bits

MAX_BLOCKS_SHOWN = 4


def describe_dot(inputs: dict[str, np.ndarray], aux: dict[str, np.ndarray], meta: dict[str, Any], red: int,
                 lane: int) -> str:
    """Every block pair of reduction ``red`` decoded: headers, element values, golden block result."""
    fa, fb = parse_format(meta["formats"]["a"]), parse_format(meta["formats"]["b"])
    start, end = int(aux["red_start"][red]), int(aux["red_end"][red])
    lines = [f"reduction {red} = blocks {start}..{end} (case: {aux['case'][start]})"]
    for blk in range(start, min(end, start + MAX_BLOCKS_SHOWN - 1) + 1):
        ha, hb = int(aux["ha"][blk]), int(aux["hb"][blk])
        lines.append(f"  block {blk}: golden block result {show_bits(int(aux['block_results'][blk]))}")
        lines.append(f"    a: {describe_header(fa, ha)}; elements {describe_elements(fa, ha, aux['ca'][blk])}")
        lines.append(f"    b: {describe_header(fb, hb)}; elements {describe_elements(fb, hb, aux['cb'][blk])}")
    if end - start + 1 > MAX_BLOCKS_SHOWN:
        lines.append(f"  ... {end - start + 1 - MAX_BLOCKS_SHOWN} more blocks")
    return "\n".join(lines)


@cocotb.test()
async def dot_regression(dut: Any) -> None:
    """Mid-stream reset, then every beat of the vector file, random gaps and backpressure, bit-exact."""
    await run_regression(dut, describe_dot)


__all__ = ["describe_dot", "dot_regression"]
