"""Block decode: element code + block header -> number (spec 7).

Every element value and scale value is an exact dyadic rational ``(-1)**s * man * 2**exp``;
the decoder multiplies them exactly and rounds once (RNE) to the output format.
Header fields are taken as the bits say (docs/golden.md): a selector or recycling option
beyond the last one defined selects the last one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..formats import BlockFormat, ScaleFormat
from .ieee import dyadic_parts, ieee_format, round_to_bits

__all__ = ["ElementParts", "HeaderParts", "decode_bits", "decode_header", "decode_values", "element_parts",
           "element_index"]

FINITE, INF, NAN = 0, 1, 2


@dataclass(frozen=True)
class ElementParts:
    """Exact parts of every element code of a block format, each shape ``(candidates, options, 2**w)``.

    ``kind`` is 0 finite, 1 Inf, 2 NaN; finite values are ``(-1)**sign * man * 2**exp``
    (int64, ``man`` odd or 0). Zeros and specials carry ``man = 0`` and
    ``exp = lsb_exponent``, the smallest exponent of any non-zero finite code, so that
    ``exp - lsb_exponent >= 0`` everywhere (the alignment shift of an exact accumulator).
    """

    kind: np.ndarray
    sign: np.ndarray
    man: np.ndarray
    exp: np.ndarray
    lsb_exponent: int

    @property
    def max_positive(self) -> int:
        """Largest finite value in units of ``2**lsb_exponent`` (as a Python int)."""
        return self._extreme(0)

    @property
    def max_negative(self) -> int:
        """Largest finite magnitude among negative values, in units of ``2**lsb_exponent``."""
        return self._extreme(1)

    def _extreme(self, sign: int) -> int:
        sel = (self.kind == FINITE) & (self.sign == sign) & (self.man > 0)
        if not sel.any():
            return 0
        return max(int(m) << int(e - self.lsb_exponent) for m, e in zip(self.man[sel], self.exp[sel], strict=True))


@lru_cache(maxsize=64)
def element_parts(fmt: BlockFormat) -> ElementParts:
    """Exact parts of ``fmt.value_tables()`` (recycled codes included); cached per format."""
    table = fmt.value_tables()
    kind = np.where(np.isnan(table), NAN, np.where(np.isinf(table), INF, FINITE)).astype(np.int64)
    sign, man, exp = dyadic_parts(np.where(kind == FINITE, table, 0.0))
    sign = np.where(kind == INF, np.signbit(table), sign).astype(np.int64)
    nonzero = man > 0
    lsb = int(exp[nonzero].min()) if nonzero.any() else 0
    exp = np.where(nonzero, exp, lsb)
    for a in (kind, sign, man, exp):
        a.setflags(write=False)
    return ElementParts(kind, sign, man, exp, lsb)


@dataclass(frozen=True)
class HeaderParts:
    """Decoded header fields (arrays shaped like the headers).

    Scale value ``scale_man * 2**scale_exp`` (``scale_man`` has ``mbits + 1`` bits);
    ``selector``/``recycle`` are already clamped to the defined candidates/options.
    """

    scale_nan: np.ndarray
    scale_man: np.ndarray
    scale_exp: np.ndarray
    selector: np.ndarray
    recycle: np.ndarray


def _scale_parts(scale: ScaleFormat, code: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(is_nan, man, exp)`` with value ``man * 2**exp`` (spec 3)."""
    man = (1 << scale.mbits) + scale.mantissa_of(code)
    exp = scale.exponent_of(code) - scale.mbits
    return code == scale.nan_code, man, exp


def _check_codes(name: str, a, width: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array (uint16), got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= 1 << width):
        raise ValueError(f"{name} must hold {width}-bit codes (0..{(1 << width) - 1}), got values "
                         f"{int(arr.min())}..{int(arr.max())}")
    return arr


def decode_header(fmt: BlockFormat, headers) -> HeaderParts:
    """Split header codes into scale, selector and recycling option (spec 4, 6).

    Raises ValueError for codes wider than ``fmt.header_bits``.
    """
    h = _check_codes("headers", headers, fmt.header_bits)
    scale_code, selector, recycle = fmt.split_header(h)
    nan, man, exp = _scale_parts(fmt.scale, scale_code)
    selector = np.minimum(selector, len(fmt.elements) - 1)
    recycle = np.minimum(recycle, max(fmt.recycle_options, 1) - 1)
    return HeaderParts(nan, man, exp, selector, recycle)


def element_index(fmt: BlockFormat, headers, codes) -> tuple[HeaderParts, tuple[np.ndarray, ...]]:
    """Header parts (with a trailing lane axis) and the index into ``element_parts(fmt)`` arrays.

    ``headers`` has shape ``(..., nblocks)``, ``codes`` ``(..., nblocks, lanes)``; they broadcast.
    """
    hp = decode_header(fmt, headers)
    c = _check_codes("codes", codes, fmt.element_width)
    if c.ndim < 1:
        raise ValueError("codes must have a trailing lane axis: shape (..., nblocks, lanes)")
    try:
        shape = np.broadcast_shapes(hp.selector.shape + (1,), c.shape)
    except ValueError:
        raise ValueError(f"headers of shape {hp.selector.shape} do not match codes of shape {c.shape}; "
                         "expected headers (..., nblocks) and codes (..., nblocks, lanes)") from None
    hp = HeaderParts(*(np.broadcast_to(a[..., None], shape) for a in
                       (hp.scale_nan, hp.scale_man, hp.scale_exp, hp.selector, hp.recycle)))
    return hp, (hp.selector, hp.recycle, np.broadcast_to(c, shape))


def decode_values(fmt: BlockFormat, headers, codes) -> np.ndarray:
    """float64 value of every element (spec 7): element value times the block scale.

    Exact whenever the recycled value has at most 49 significant bits (always for the
    format levels). NaN for a NaN header or NaN element, +-Inf for Inf elements, -0.0 for
    the -0 code.
    """
    hp, idx = element_index(fmt, headers, codes)
    elem = fmt.value_tables()[idx]
    scale = np.ldexp(hp.scale_man.astype(np.float64), hp.scale_exp)
    return np.where(hp.scale_nan, np.nan, elem * scale)


def decode_bits(fmt: BlockFormat, headers, codes, out: str = "fp32") -> np.ndarray:
    """IEEE bit patterns of every element (spec 7): uint32 for ``fp32``, uint16 for ``bf16``/``fp16``.

    One round-to-nearest-even from the exact product, overflow to +-Inf, subnormals kept,
    sign of zero kept; NaN header or element -> canonical quiet NaN (0x7FC00000, 0x7FC0, 0x7E00).
    """
    f = ieee_format(out)
    hp, idx = element_index(fmt, headers, codes)
    parts = element_parts(fmt)
    kind, sign = parts.kind[idx], parts.sign[idx]
    bits = round_to_bits(sign, parts.man[idx] * hp.scale_man, parts.exp[idx] + hp.scale_exp, f)
    bits = np.where(kind == INF, (sign << (f.width - 1)) | f.inf_bits, bits)
    return np.where((kind == NAN) | hp.scale_nan, f.nan_bits, bits).astype(f.dtype)
