"""Element formats: sign-magnitude minifloats ``EeMm`` and two's complement ``INTn`` (spec 2)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["ElementFormat", "parse_element"]

_ELEMENT_RE = re.compile(r"^E(\d+)M(\d+)$|^INT(\d+)$")


@dataclass(frozen=True)
class ElementFormat:
    """One element format.

    ``ebits``/``mbits`` describe a minifloat ``EeMm`` (``is_int`` false); for ``INTn``
    ``ebits`` is 0 and ``mbits`` is ``n - 1`` (the magnitude bits), ``is_int`` true.
    All value tables are float64 indexed by the raw code (``0 .. 2**width - 1``).
    """

    ebits: int
    mbits: int
    is_int: bool = False

    def __post_init__(self) -> None:
        if self.is_int:
            if not 2 <= self.mbits + 1 <= 16:
                raise ValueError(f"INTn needs n in 2..16, got INT{self.mbits + 1}")
            if self.ebits != 0:
                raise ValueError("INTn has no exponent bits")
        else:
            if not 1 <= self.ebits <= 5:
                raise ValueError(f"element exponent bits must be in 1..5, got E{self.ebits}M{self.mbits}")
            if not 0 <= self.mbits <= 6:
                raise ValueError(f"element mantissa bits must be in 0..6, got E{self.ebits}M{self.mbits}")

    # --- identity -------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"INT{self.width}" if self.is_int else f"E{self.ebits}M{self.mbits}"

    def __str__(self) -> str:
        return self.name

    @property
    def width(self) -> int:
        """Code width in bits ``w = 1 + e + m`` (``n`` for ``INTn``)."""
        return 1 + self.ebits + self.mbits

    @property
    def bias(self) -> int:
        """Exponent bias ``2**(e-1) - 1`` (0 for ``INTn``)."""
        return 0 if self.is_int else 2 ** (self.ebits - 1) - 1

    @property
    def int_frac_bits(self) -> int:
        """``INTn`` implicit scale is ``2**-(n-2)`` (spec 2.2); 0 for minifloats."""
        return self.width - 2 if self.is_int else 0

    # --- special encodings (spec 2.1) -----------------------------------------------
    @property
    def has_inf(self) -> bool:
        """Only E5M2 encodes +-Inf (E = all ones, M = 0)."""
        return (self.ebits, self.mbits, self.is_int) == (5, 2, False)

    @property
    def has_nan(self) -> bool:
        """E5M2 (E all ones, M != 0) and E4M3 (E and M all ones) encode NaN."""
        return (self.ebits, self.mbits, self.is_int) in ((5, 2, False), (4, 3, False))

    @property
    def negative_zero_code(self) -> int | None:
        """The code of -0 (sign 1, rest 0), or None for ``INTn`` (no negative zero)."""
        return None if self.is_int else 1 << (self.width - 1)

    @property
    def can_recycle(self) -> bool:
        """Code recycling applies to sign-magnitude formats whose -0 is not special (spec 4)."""
        return not self.is_int

    # --- value tables ------------------------------------------------------------------
    @cached_property
    def _values(self) -> np.ndarray:
        codes = np.arange(1 << self.width, dtype=np.int64)
        if self.is_int:
            signed = np.where(codes >= 1 << (self.width - 1), codes - (1 << self.width), codes)
            vals = np.ldexp(signed.astype(np.float64), -self.int_frac_bits)
        else:
            sign = codes >> (self.width - 1)
            exp_field = (codes >> self.mbits) & ((1 << self.ebits) - 1)
            man = codes & ((1 << self.mbits) - 1)
            sig = np.where(exp_field > 0, (1 << self.mbits) + man, man).astype(np.float64)
            exp = np.maximum(exp_field, 1) - self.bias - self.mbits
            vals = np.ldexp(sig, exp.astype(np.int64))
            vals = np.where(sign == 1, -vals, vals)
            emax_field = (1 << self.ebits) - 1
            if self.has_inf:
                at_top = exp_field == emax_field
                vals = np.where(at_top & (man == 0), np.where(sign == 1, -np.inf, np.inf), vals)
                vals = np.where(at_top & (man != 0), np.nan, vals)
            elif self.has_nan:
                vals = np.where((exp_field == emax_field) & (man == (1 << self.mbits) - 1), np.nan, vals)
        vals.setflags(write=False)
        return vals

    def code_values(self) -> np.ndarray:
        """float64 value of every code (NaN/Inf for special codes, -0.0 for the -0 code)."""
        return self._values

    @cached_property
    def max_value(self) -> float:
        """Largest finite value ``max_elem``."""
        v = self._values
        return float(np.max(v[np.isfinite(v)]))

    @property
    def emax(self) -> int:
        """``emax_elem = floor(log2(max_elem))`` (spec 2.1)."""
        return int(np.frexp(self.max_value)[1]) - 1

    @cached_property
    def levels(self) -> np.ndarray:
        """Sorted distinct finite non-negative magnitudes (0 first)."""
        v = self._values
        out = np.unique(np.abs(v[np.isfinite(v)]))
        out.setflags(write=False)
        return out

    @cached_property
    def min_subnormal(self) -> float:
        """Smallest positive value."""
        return float(self.levels[1])

    @property
    def default_recycle_value(self) -> float:
        """Default magnitude ``r`` of the recycled code (spec 4): the measured table where it
        has an entry, otherwise one step past the largest level."""
        table = {"E2M1": 5.0, "E1M2": 4.0, "E3M0": 12.0, "E2M2": 8.0, "E3M1": 32.0, "E2M3": 8.0, "E3M2": 32.0}
        if self.name in table:
            return table[self.name]
        top = self.levels
        return float(top[-1] + (top[-1] - top[-2]))


def parse_element(text: str) -> ElementFormat:
    """Parse ``EeMm`` or ``INTn`` (case-insensitive)."""
    m = _ELEMENT_RE.match(text.strip().upper())
    if not m:
        raise ValueError(f"element format {text!r} is not of the form EeMm (e.g. E2M1) or INTn (e.g. INT8)")
    if m.group(3) is not None:
        n = int(m.group(3))
        return ElementFormat(0, n - 1, is_int=True)
    return ElementFormat(int(m.group(1)), int(m.group(2)))
