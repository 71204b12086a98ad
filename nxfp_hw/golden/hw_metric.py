"""The hardware encoder's fixed-point block error metric (spec 5.4), bit for bit.

Spec 5.4 lets a hardware encoder pick the (candidate, recycling option) pair of a block by a
documented fixed-point error instead of the float64 squared error. The metric ``"hw"``:

- ``A = max(floor(log2(amax)), -126)``: the exponent of the block's largest magnitude (for
  float32/bfloat16 inputs, the biased exponent field of ``amax`` minus 127, a subnormal or zero
  ``amax`` counting as field 1);
- per element, both magnitudes are truncated to ``F = HW_FRAC_BITS`` fraction bits below
  ``2^A``: ``xf = floor(|x| * 2^(F-A))``, ``yf = floor(|X*q| * 2^(F-A))``, and
  ``D = xf - yf`` (``X*q`` never has the opposite sign of ``x``: 0 is always nearer);
- the block error is ``sum D^2``, an exact integer.

Bounds (``|X*q - x| <= |x| < 2^(A+1)``): ``xf < 2^(F+1)``, ``yf < 2^(F+2)``,
``|D| <= 2^(F+1)``, so ``D`` fits ``F+3`` signed bits, ``D^2 < 2^(2F+3)`` and the sum of
``k`` squares fits ``2F + 3 + log2(k)`` unsigned bits (33 bits for F=12, k=32). The selection
keeps the least error, ties to the lowest selector, then the lowest recycling option (the
iteration order of :func:`nxfp_hw.golden.quantize.quantize_blocks`).
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["HW_ERRORS", "HW_FRAC_BITS", "HW_METRICS", "block_error_hw", "hw_error_width", "quantize_hw"]

#: Fraction bits ``F`` of the metric below the block's largest exponent (docs/encoder.md).
HW_FRAC_BITS = 8

#: Lower limit of the alignment exponent ``A`` (float32's smallest normal exponent).
HW_MIN_EXPONENT = -126


#: Per-element error terms: ``"square"`` (``D^2``, the default) or ``"abs"`` (``|D|``: no squarer).
HW_ERRORS = ("square", "abs")


def hw_error_width(k: int, frac_bits: int = HW_FRAC_BITS, error: str = "square") -> int:
    """Unsigned bits of the block error accumulator: ``2F + 3 + log2(k)`` (``"abs"``: ``F + 2 + log2(k)``)."""
    if error not in HW_ERRORS:
        raise ValueError(f"error must be one of {', '.join(HW_ERRORS)}, got {error!r}")
    term = 2 * frac_bits + 3 if error == "square" else frac_bits + 2
    return term + (k - 1).bit_length()


def block_error_hw(x: np.ndarray, q: np.ndarray, frac_bits: int = HW_FRAC_BITS, error: str = "square") -> np.ndarray:
    """Fixed-point block error of spec 5.4 (module doc). ``x``, ``q``: float64 ``(n, k)``, ``q``
    the dequantized block (``X * element``), both finite. ``error="abs"`` sums ``|D|`` instead of
    ``D^2`` (the selection policy ``abs``, docs/encoder.md). Returns ``(n,)`` float64 holding exact
    integers (below ``2^53`` for ``frac_bits <= 20``)."""
    if error not in HW_ERRORS:
        raise ValueError(f"error must be one of {', '.join(HW_ERRORS)}, got {error!r}")
    ax = np.abs(x)
    aq = np.abs(q)
    amax = np.max(ax, axis=1) if x.shape[1] else np.zeros(x.shape[0])
    _, e = np.frexp(amax)  # amax = m * 2^e, m in [0.5, 1): floor(log2 amax) = e - 1 (0 -> e = 0)
    a = np.maximum(e.astype(np.int64) - 1, HW_MIN_EXPONENT)
    shift = (frac_bits - a)[:, None]
    xf = np.floor(np.ldexp(ax, shift)).astype(np.int64)  # exact: a power-of-two scaling in float64
    yf = np.floor(np.ldexp(aq, shift)).astype(np.int64)
    d = xf - yf
    return np.sum(d * d if error == "square" else np.abs(d), axis=1).astype(np.float64)


#: The fixed-point metrics of the encoder's selection policies (nxfp_hw.golden.select), by the name
#: :data:`nxfp_hw.golden.quantize.METRICS` knows them under: ``hw`` (``F = 8``, squares), ``hw-sq6``
#: (``F = 6``), ``hw-abs`` (``F = 8``, ``|D|``).
HW_METRICS = {
    "hw": block_error_hw,
    "hw-sq6": functools.partial(block_error_hw, frac_bits=6),
    "hw-abs": functools.partial(block_error_hw, error="abs"),
}


def quantize_hw(x, fmt, **kwargs):
    """``quantize(x, fmt, metric="hw", ...)``: the golden model of the hardware encoder under policy ``exact``."""
    from .quantize import quantize

    return quantize(x, fmt, metric="hw", **kwargs)
