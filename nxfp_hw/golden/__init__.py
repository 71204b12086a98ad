"""Golden model: vectorised NumPy quantize, pack, decode and dot product (spec 5-8).

The quantizer is ``nxfp_hw.golden.quantize.quantize`` (not re-exported here, so that the
name ``nxfp_hw.golden.quantize`` stays the module).

Nothing here imports Amaranth or cocotb; the RTL and the testbenches are checked against it.
"""

from .decode import decode_bits, decode_values
from .dot import (
    ACC_MODES,
    DEFAULT_GUARD_BITS,
    block_dot_bits,
    block_exact_values,
    dot_accumulate_bits,
    exact_sum_bits,
    exact_window,
    reduce_bits,
)
from .pack import pack_blocks, pack_split, unpack_blocks, unpack_split
from .quantize import QuantizedTensor, dequantize, dequantize_exact

__all__ = [
    "ACC_MODES",
    "DEFAULT_GUARD_BITS",
    "QuantizedTensor",
    "block_dot_bits",
    "block_exact_values",
    "decode_bits",
    "decode_values",
    "dequantize",
    "dequantize_exact",
    "dot_accumulate_bits",
    "exact_sum_bits",
    "exact_window",
    "pack_blocks",
    "pack_split",
    "reduce_bits",
    "unpack_blocks",
    "unpack_split",
]
