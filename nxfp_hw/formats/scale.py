"""Shared-scale formats: OCP ``E8M0`` and NanoMantissa ``UEaMb`` (spec 3)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["ScaleFormat", "parse_scale"]

_SCALE_RE = re.compile(r"^U?E(\d+)M(\d+)$")


@dataclass(frozen=True)
class ScaleFormat:
    """Unsigned scale ``2**(E - bias) * (1 + M / 2**mbits)``; the all-ones code is NaN.

    ``E8M0`` is the ``mbits = 0`` member; ``bias = 2**(ebits-1) - 1``.
    """

    ebits: int
    mbits: int

    def __post_init__(self) -> None:
        if not 1 <= self.ebits <= 8 or not 0 <= self.mbits <= 3 or self.ebits + self.mbits > 8:
            raise ValueError(
                f"scale format UE{self.ebits}M{self.mbits} out of range: need ebits 1..8, mbits 0..3, ebits+mbits <= 8"
            )

    @property
    def name(self) -> str:
        return "E8M0" if (self.ebits, self.mbits) == (8, 0) else f"UE{self.ebits}M{self.mbits}"

    def __str__(self) -> str:
        return self.name

    @property
    def width(self) -> int:
        return self.ebits + self.mbits

    @property
    def bias(self) -> int:
        return 2 ** (self.ebits - 1) - 1

    @property
    def nan_code(self) -> int:
        """The all-ones code."""
        return (1 << self.width) - 1

    @property
    def max_code(self) -> int:
        """Largest non-NaN code."""
        return self.nan_code - 1

    @cached_property
    def _values(self) -> np.ndarray:
        codes = np.arange(1 << self.width, dtype=np.int64)
        exp = (codes >> self.mbits) - self.bias
        man = codes & ((1 << self.mbits) - 1)
        vals = np.ldexp(((1 << self.mbits) + man).astype(np.float64), exp - self.mbits)
        vals[self.nan_code] = np.nan
        vals.setflags(write=False)
        return vals

    def code_values(self) -> np.ndarray:
        """float64 value of every code (NaN for the all-ones code). Monotonic in the code."""
        return self._values

    def exponent_of(self, code: np.ndarray | int) -> np.ndarray:
        """Unbiased exponent ``E - bias`` of a code."""
        return (np.asarray(code) >> self.mbits) - self.bias

    def mantissa_of(self, code: np.ndarray | int) -> np.ndarray:
        """NanoMantissa field ``M`` of a code."""
        return np.asarray(code) & ((1 << self.mbits) - 1)


def parse_scale(text: str) -> ScaleFormat:
    """Parse ``E8M0`` or ``UEaMb`` (``EaMb`` accepted too)."""
    m = _SCALE_RE.match(text.strip().upper())
    if not m:
        raise ValueError(f"scale format {text!r} is not of the form E8M0 or UEaMb (e.g. UE5M1)")
    return ScaleFormat(int(m.group(1)), int(m.group(2)))
