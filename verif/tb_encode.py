"""cocotb testbench of a block encoder (spec 5, 6), driven only through its manifest.

The vector file (``verif.vectors.encode_vectors``) holds ``k/lanes`` beats of input bit patterns per
block and the golden packed blocks (header, then every code; ``quantize`` with the encoder's metric).
The regression resets the encoder in the middle of a block, then drives every beat with random valid
gaps and backpressure. A mismatch names the block, its case, the input values as numbers, and the
expected and got header fields and codes decoded into element values.
"""

from __future__ import annotations

import functools
from typing import Any

import cocotb
import ml_dtypes
import numpy as np

from nxfp_hw.formats import BlockFormat, parse_format

from .bench import run_regression, tb_params
from .manifest_dut import load_manifest_json
from .scoreboard import Mismatch, Scoreboard, describe_elements, describe_header

MAX_LANES_SHOWN = 6

__all__ = ["EncodeScoreboard", "block_inputs", "describe_block_mismatch", "describe_encode", "encode_regression"]


def block_inputs(inputs: dict[str, np.ndarray], meta: dict[str, Any], block: int) -> np.ndarray:
    """float64 input values of one block, from its beats' bit patterns."""
    per = int(meta["beats_per_block"])
    bits = np.asarray(inputs["values"][block * per:(block + 1) * per]).reshape(-1)
    if meta.get("input") == "bf16":
        return bits.astype(np.uint16).view(ml_dtypes.bfloat16).astype(np.float64)
    return bits.astype(np.uint32).view(np.float32).astype(np.float64)


def describe_encode(inputs: dict[str, np.ndarray], aux: dict[str, np.ndarray], meta: dict[str, Any], block: int,
                    lane: int) -> str:
    """Case label and input values of one block (lane 0 is the header, lane ``i`` code ``i - 1``)."""
    x = block_inputs(inputs, meta, block)
    case = str(aux["case"][block]) if "case" in aux and block < len(aux["case"]) else "?"
    finite = x[np.isfinite(x)]
    amax = float(np.max(np.abs(finite))) if finite.size else float("nan")
    where = "header" if lane == 0 else f"element {lane - 1} = {x[lane - 1]!r}"
    return (f"block {block} (case: {case}), {meta.get('input', 'fp32')} inputs, amax {amax!r}, first difference "
            f"in {where}:\n    x = {np.array2string(x, precision=9, max_line_width=110, separator=', ')}")


def describe_block_mismatch(fmt: BlockFormat, block: int, expected: np.ndarray, got: np.ndarray, *,
                            name: str = "encode") -> str:
    """Expected vs got packed block (header, then codes): header fields and the differing codes decoded."""
    eh, gh = int(expected[0]), int(got[0])
    ec, gc = np.asarray(expected[1:], np.int64), np.asarray(got[1:], np.int64)
    bad = np.flatnonzero(ec != gc)
    lines = [f"{name} mismatch at block {block}: header {'matches' if eh == gh else 'differs'}, "
             f"{bad.size} of {ec.size} codes differ"]
    lines.append(f"  expected {describe_header(fmt, eh)}")
    if eh != gh:
        lines.append(f"  got      {describe_header(fmt, gh)}")
    for i in bad[:MAX_LANES_SHOWN]:
        lines.append(f"  element {i}: expected {describe_elements(fmt, eh, [ec[i]])[1:-1]}, "
                     f"got {describe_elements(fmt, gh, [gc[i]])[1:-1]}")
    if bad.size > MAX_LANES_SHOWN:
        lines.append(f"  ... {bad.size - MAX_LANES_SHOWN} more differing elements")
    if eh != gh or bad.size:
        lines.append(f"  expected codes {describe_elements(fmt, eh, ec)}")
        lines.append(f"  got codes      {describe_elements(fmt, gh, gc)}")
    return "\n".join(lines)


class EncodeScoreboard(Scoreboard):
    """:class:`Scoreboard` over packed blocks (header + ``k`` codes per transaction) whose first-mismatch
    message decodes header fields and codes (:func:`describe_block_mismatch`) instead of showing floats."""

    def __init__(self, expected: np.ndarray, *, fmt: BlockFormat, **kwargs: Any):
        super().__init__(expected, **kwargs)
        self.fmt = fmt

    def check(self, got: Any) -> bool:
        had_first = self.first is not None
        ok = super().check(got)
        if had_first or self.first is None:
            return ok
        idx, row = self.first.index, self.got[-1]
        if idx >= self.expected_count:
            header = int(row[0])
            msg = (f"{self.name}: unexpected block {idx} (only {self.expected_count} expected): got "
                   f"{describe_header(self.fmt, header)}, codes {describe_elements(self.fmt, header, row[1:])}")
        else:
            msg = describe_block_mismatch(self.fmt, idx, self.expected[idx], row, name=self.name)
            if self.describe is not None:
                msg += "\n  inputs: " + self.describe(idx, self.first.lane)
        self.first = Mismatch(self.first.index, self.first.lane, self.first.expected, self.first.got, msg)
        return ok


@cocotb.test()
async def encode_regression(dut: Any) -> None:
    """Mid-stream reset, then every beat of the vector file, random gaps and backpressure, bit-exact."""
    manifest = load_manifest_json(tb_params().manifest)
    fmt = parse_format(manifest["formats"]["a"]["format_string"])
    await run_regression(dut, describe_encode, scoreboard=functools.partial(EncodeScoreboard, fmt=fmt))
