"""Generic cocotb stream testbench: any manifest-described unit, mismatches shown as raw field values."""

from __future__ import annotations

from typing import Any

import cocotb
import numpy as np

from .bench import run_regression


def describe_fields(inputs: dict[str, np.ndarray], aux: dict[str, np.ndarray], meta: dict[str, Any], t: int,
                    lane: int) -> str:
    """Input fields of beat ``t`` as integers (the transaction index is the beat index)."""
    return ", ".join(f"{name}={np.asarray(arr[t]).tolist()}" for name, arr in inputs.items())


@cocotb.test()
async def stream_regression(dut: Any) -> None:
    """Every beat of the vector file, random gaps and backpressure, outputs compared bit-exactly."""
    await run_regression(dut, describe_fields)
