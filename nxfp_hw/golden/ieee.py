"""Exact value -> IEEE bit pattern, rounded once to nearest-even (spec 7, 8).

Values are handed over exactly as ``(-1)**sign * mantissa * 2**exponent`` with an
unbounded non-negative integer ``mantissa`` (``int64`` or object arrays of Python ints),
so results never suffer double rounding, whatever the target precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BF16", "FP16", "FP32", "IEEE_FORMATS", "IeeeFormat", "bit_length", "dyadic_parts", "ieee_format",
           "round_to_bits"]

# int64 mantissas below this bound take the fast int64 path; larger ones go through Python ints.
_INT64_SAFE = 1 << 52


@dataclass(frozen=True)
class IeeeFormat:
    """An IEEE 754 binary interchange-style format (``ebits`` exponent, ``mbits`` fraction bits)."""

    name: str
    ebits: int
    mbits: int

    @property
    def width(self) -> int:
        return 1 + self.ebits + self.mbits

    @property
    def bias(self) -> int:
        return (1 << (self.ebits - 1)) - 1

    @property
    def emin(self) -> int:
        """Unbiased exponent of the smallest normal number."""
        return 1 - self.bias

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        return np.uint32 if self.width == 32 else np.uint16

    @property
    def inf_bits(self) -> int:
        """Bit pattern of +Inf (OR the sign bit in for -Inf)."""
        return ((1 << self.ebits) - 1) << self.mbits

    @property
    def sign_bit(self) -> int:
        return 1 << (self.width - 1)

    @property
    def nan_bits(self) -> int:
        """Canonical quiet NaN: positive, exponent all ones, fraction MSB set (0x7FC00000 for fp32)."""
        return self.inf_bits | (1 << (self.mbits - 1))


FP32 = IeeeFormat("fp32", 8, 23)
BF16 = IeeeFormat("bf16", 8, 7)
FP16 = IeeeFormat("fp16", 5, 10)
IEEE_FORMATS: dict[str, IeeeFormat] = {f.name: f for f in (FP32, BF16, FP16)}


def ieee_format(name: str | IeeeFormat) -> IeeeFormat:
    """``"fp32"``, ``"bf16"`` or ``"fp16"`` (or an :class:`IeeeFormat`) -> :class:`IeeeFormat`."""
    if isinstance(name, IeeeFormat):
        return name
    try:
        return IEEE_FORMATS[str(name).lower()]
    except KeyError:
        raise ValueError(f"output format must be one of {', '.join(IEEE_FORMATS)}, got {name!r}") from None


def _as_int_array(a) -> np.ndarray:
    """int64 when every value is safely small, else an object array of Python ints."""
    a = np.asarray(a)
    if a.dtype == object:
        return a
    if a.dtype.kind not in "iu":
        raise TypeError(f"mantissa must be an integer array, got dtype {a.dtype}")
    if a.size and (int(a.max()) >= _INT64_SAFE or int(a.min()) < 0):
        return a.astype(object)
    return a.astype(np.int64)


def bit_length(a) -> np.ndarray:
    """``int.bit_length`` of every non-negative integer (int64 or object array) as int64."""
    a = np.asarray(a)
    est = np.frexp(a.astype(np.float64))[1].astype(np.int64)  # may be one too large after float rounding
    if a.dtype == object:
        too_big = (est > 0) & (a < np.left_shift(np.ones_like(a), np.maximum(est - 1, 0).astype(object)))
    else:
        too_big = (est > 0) & (a < np.left_shift(np.int64(1), np.clip(est - 1, 0, 62)))
    return est - too_big.astype(np.int64)


def dyadic_parts(values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ``(sign, mantissa, exponent)`` int64 arrays of finite float64 values.

    ``value == (-1)**sign * mantissa * 2**exponent`` with ``mantissa`` odd (or 0, then
    ``exponent`` is 0); ``sign`` is the sign bit (so -0.0 has sign 1).
    """
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise ValueError("dyadic_parts needs finite values")
    sign = np.signbit(v).astype(np.int64)
    frac, exp = np.frexp(np.abs(v))
    man = np.ldexp(frac, 53).astype(np.int64)
    exp = exp.astype(np.int64) - 53
    tz = np.where(man == 0, 0, bit_length(man & -man) - 1)
    return sign, man >> tz, np.where(man == 0, 0, exp + tz)


def round_to_bits(sign, mantissa, exponent, fmt: str | IeeeFormat) -> np.ndarray:
    """Bit patterns of ``(-1)**sign * mantissa * 2**exponent`` rounded once to nearest-even.

    Arrays broadcast. Subnormal results are kept, magnitudes beyond the largest finite
    number round to Inf, non-zero values that round to zero keep their sign. ``mantissa``
    is a non-negative integer array (int64, or object for arbitrary precision);
    ``exponent`` and ``sign`` (0/1) are int64-compatible.
    """
    f = ieee_format(fmt)
    sign, mantissa, exponent = np.broadcast_arrays(np.asarray(sign), _as_int_array(mantissa), np.asarray(exponent))
    sign = sign.astype(np.int64)
    exponent = exponent.astype(np.int64)
    big = mantissa.dtype == object
    nbits = bit_length(mantissa)
    # Bits dropped: keep mbits+1 significant bits, but never go below the subnormal quantum.
    qmin = f.emin - f.mbits
    shift = np.maximum(nbits - (f.mbits + 1), qmin - exponent)
    # Guard-bit shift, clamped so that everything below the guard position is sticky.
    gshift = np.clip(shift - 1, 0, nbits + 1)
    if big:
        one = np.ones_like(mantissa)
        gs = gshift.astype(object)
        guarded = mantissa >> gs
        sticky = (mantissa & ((one << gs) - 1)) != 0
        guarded = guarded.astype(np.int64)  # at most mbits + 3 bits now
        small = np.where(shift <= 0, mantissa, 0).astype(np.int64)  # shift <= 0 means < mbits + 2 bits
        exact = small << np.maximum(-shift, 0)
    else:
        guarded = mantissa >> gshift
        sticky = (mantissa & ((np.int64(1) << gshift) - 1)) != 0
        exact = mantissa << np.clip(-shift, 0, 62)
    rounded = guarded >> 1
    guard = guarded & 1
    rounded = rounded + (guard & (sticky | (rounded & 1)).astype(np.int64))
    q = np.where(shift > 0, rounded, exact)
    qexp = exponent + shift
    # (qexp - qmin) << mbits + q encodes normals and subnormals alike; a carry out of the
    # significand bumps the exponent field by itself.
    mag = np.where(q == 0, 0, ((qexp - qmin) << f.mbits) + q)
    mag = np.where(mag >= f.inf_bits, f.inf_bits, mag)
    return ((sign << (f.width - 1)) | mag).astype(f.dtype)
