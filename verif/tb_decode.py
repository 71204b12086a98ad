"""cocotb testbench of a decode unit (spec 7), driven only through its manifest.

Run by :mod:`sim.runner` with the parameters of :mod:`verif.bench` (``NXFP_TB_*`` variables);
the vector file (``verif.vectors.decode_vectors``) holds the stimulus and golden values.
"""

from __future__ import annotations

from typing import Any

import cocotb
import numpy as np

from nxfp_hw.formats import parse_format

from .bench import run_regression
from .scoreboard import describe_elements, describe_header, show_bits


def describe_decode(inputs: dict[str, np.ndarray], aux: dict[str, np.ndarray], meta: dict[str, Any], beat: int,
                    lane: int) -> str:
    """Header fields and the element code/value of one decoded lane."""
    fmt = parse_format(meta["formats"]["a"])
    header = int(inputs["header"][beat])
    code = int(inputs["codes"][beat][lane])
    return (f"beat {beat}: {describe_header(fmt, header)}; lane {lane} code "
            f"{describe_elements(fmt, header, [code])[1:-1]}")


@cocotb.test()
async def decode_regression(dut: Any) -> None:
    """Every beat of the vector file through the decode unit, random gaps and backpressure, bit-exact."""
    await run_regression(dut, describe_decode)


__all__ = ["decode_regression", "describe_decode", "show_bits"]
