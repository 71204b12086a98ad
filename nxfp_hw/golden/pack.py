"""Storage layouts of quantized blocks (spec 6).

Bit-vector layout (``pack_blocks``): one vector of ``H + k*w`` bits per block, header in
bits ``[0, H)``, element ``i`` in ``[H + i*w, H + (i+1)*w)``, each field LSB first;
serialised little-endian: bit ``j`` is bit ``j % 8`` of byte ``j // 8``. The last byte
is padded with zero bits (ignored when unpacking).

Split layout (``pack_split``): the headers as their own array (uint8 when ``H <= 8``, else
uint16), and the element codes of each row (all blocks along the last axis, in order)
packed contiguously little-endian as one bit stream, element ``j`` at bits
``[j*w, (j+1)*w)``, zero-padded to whole bytes (for 4-bit elements: the low nibble holds
the even element, as MX libraries store FP4).
"""

from __future__ import annotations

import numpy as np

from ..formats import BlockFormat

__all__ = ["block_bytes", "pack_blocks", "pack_split", "unpack_blocks", "unpack_split"]


def block_bytes(fmt: BlockFormat) -> int:
    """Bytes per block in the bit-vector layout: ``ceil((H + k*w) / 8)``."""
    return (fmt.block_bits + 7) // 8


def _as_codes(arr, bits: int, what: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.dtype.kind not in "ui":
        raise TypeError(f"{what} must be an integer array, got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() >= 1 << bits):
        bad = a[(a < 0) | (a >= 1 << bits)].flat[0]
        raise ValueError(f"{what} must fit in {bits} bits (0..{(1 << bits) - 1}), found {int(bad)}")
    return a.astype(np.uint64)


def _to_bits(values: np.ndarray, width: int) -> np.ndarray:
    """``(..., n)`` values -> ``(..., n*width)`` uint8 bits, each value LSB first."""
    shifts = np.arange(width, dtype=np.uint64)
    bits = ((values[..., None] >> shifts) & np.uint64(1)).astype(np.uint8)
    return bits.reshape(*values.shape[:-1], values.shape[-1] * width)


def _from_bits(bits: np.ndarray, width: int) -> np.ndarray:
    """``(..., n*width)`` bits -> ``(..., n)`` uint64 values (inverse of :func:`_to_bits`)."""
    b = bits.reshape(*bits.shape[:-1], bits.shape[-1] // width, width).astype(np.uint64)
    return (b << np.arange(width, dtype=np.uint64)).sum(axis=-1, dtype=np.uint64)


def _check_shapes(fmt: BlockFormat, headers: np.ndarray, codes: np.ndarray) -> None:
    if codes.ndim < 1 or codes.shape[-1] != fmt.k:
        raise ValueError(f"codes must have shape (..., nblocks, k={fmt.k}), got {codes.shape}")
    if headers.shape != codes.shape[:-1]:
        raise ValueError(
            f"headers shape {headers.shape} must equal the codes shape without its last axis, {codes.shape[:-1]}"
        )


def pack_blocks(fmt: BlockFormat, headers, codes) -> np.ndarray:
    """Pack ``headers (...,)`` and ``codes (..., k)`` into ``uint8 (..., block_bytes(fmt))`` (spec 6)."""
    h = _as_codes(headers, fmt.header_bits, "headers")
    c = _as_codes(codes, fmt.element_width, "codes")
    _check_shapes(fmt, h, c)
    nbits = block_bytes(fmt) * 8
    bits = np.zeros((*h.shape, nbits), dtype=np.uint8)
    bits[..., : fmt.header_bits] = _to_bits(h[..., None], fmt.header_bits)
    bits[..., fmt.header_bits : fmt.block_bits] = _to_bits(c, fmt.element_width)
    return np.packbits(bits, axis=-1, bitorder="little")


def unpack_blocks(fmt: BlockFormat, data) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_blocks`: ``uint8 (..., nbytes)`` -> ``(headers uint16 (...), codes uint16 (..., k))``."""
    d = np.asarray(data)
    if d.dtype != np.uint8:
        raise TypeError(f"packed blocks must be a uint8 array, got dtype {d.dtype}")
    if d.ndim < 1 or d.shape[-1] != block_bytes(fmt):
        raise ValueError(f"packed blocks must have shape (..., {block_bytes(fmt)}) for {fmt.label}, got {d.shape}")
    bits = np.unpackbits(d, axis=-1, bitorder="little")
    headers = _from_bits(bits[..., : fmt.header_bits], fmt.header_bits)[..., 0]
    codes = _from_bits(bits[..., fmt.header_bits : fmt.block_bits], fmt.element_width)
    return headers.astype(np.uint16), codes.astype(np.uint16)


def _split_bytes(fmt: BlockFormat, nblocks: int) -> int:
    return (nblocks * fmt.k * fmt.element_width + 7) // 8


def pack_split(fmt: BlockFormat, headers, codes) -> tuple[np.ndarray, np.ndarray]:
    """Split layout (spec 6): ``(headers uint8|uint16 (..., nblocks), elements uint8 (..., nbytes))``.

    ``headers (..., nblocks)``, ``codes (..., nblocks, k)``; ``nbytes = ceil(nblocks*k*w / 8)``.
    """
    h = _as_codes(headers, fmt.header_bits, "headers")
    c = _as_codes(codes, fmt.element_width, "codes")
    _check_shapes(fmt, h, c)
    if c.ndim < 2:
        raise ValueError(f"codes must have shape (..., nblocks, k), got {c.shape}")
    stream = c.reshape(*c.shape[:-2], -1)
    bits = _to_bits(stream, fmt.element_width)
    pad = (-bits.shape[-1]) % 8
    if pad:
        bits = np.concatenate([bits, np.zeros((*bits.shape[:-1], pad), dtype=np.uint8)], axis=-1)
    hdr_dtype = np.uint8 if fmt.header_bits <= 8 else np.uint16
    return h.astype(hdr_dtype), np.packbits(bits, axis=-1, bitorder="little")


def unpack_split(fmt: BlockFormat, headers, elements) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_split`: -> ``(headers uint16 (..., nblocks), codes uint16 (..., nblocks, k))``."""
    h = _as_codes(headers, fmt.header_bits, "headers")
    e = np.asarray(elements)
    if e.dtype != np.uint8:
        raise TypeError(f"packed elements must be a uint8 array, got dtype {e.dtype}")
    if h.ndim < 1:
        raise ValueError("headers must have shape (..., nblocks)")
    nblocks = h.shape[-1]
    want = (*h.shape[:-1], _split_bytes(fmt, nblocks))
    if e.shape != want:
        raise ValueError(f"packed elements must have shape {want} for headers {h.shape} in {fmt.label}, got {e.shape}")
    bits = np.unpackbits(e, axis=-1, bitorder="little")[..., : nblocks * fmt.k * fmt.element_width]
    codes = _from_bits(bits, fmt.element_width).reshape(*h.shape, fmt.k)
    return h.astype(np.uint16), codes.astype(np.uint16)
