"""Block formats: element candidates + shared scale + selector/recycling header (spec 1, 4, 6)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .element import ElementFormat
from .scale import ScaleFormat

__all__ = ["BlockFormat", "HeaderField", "SCALE_RULES"]

SCALE_RULES = ("ocp", "ceil", "search")


def _bits_for(count: int) -> int:
    """Selector bits for ``count`` choices: ``ceil(log2(count))``."""
    return (count - 1).bit_length()


def _fmt_num(x: float) -> str:
    return repr(float(x)).removesuffix(".0") if float(x).is_integer() else repr(float(x))


@dataclass(frozen=True)
class HeaderField:
    """A named bit range ``[offset, offset + width)`` of the block header (LSB = bit 0)."""

    name: str
    offset: int
    width: int

    def extract(self, header: np.ndarray) -> np.ndarray:
        return (np.asarray(header, dtype=np.int64) >> self.offset) & ((1 << self.width) - 1)


@dataclass(frozen=True)
class BlockFormat:
    """A block-scaled format; immutable and hashable.

    ``recycling[c]`` is the tuple of values the -0 code of candidate ``c`` can carry,
    one per recycling option (``()`` for every candidate when recycling is off).
    Option ``j`` is stored in the header's CR field as ``j``. The header is, MSB to
    LSB, ``[selector | CR option | scale exponent | nano-mantissa]``.
    """

    elements: tuple[ElementFormat, ...]
    scale: ScaleFormat
    k: int = 32
    recycling: tuple[tuple[float, ...], ...] = ()
    rule: str = "ocp"
    search_steps: int = 3
    name: str = ""

    def __post_init__(self) -> None:
        if not self.elements:
            raise ValueError("a block format needs at least one element format")
        widths = {e.width for e in self.elements}
        if len(widths) != 1:
            raise ValueError(
                "adaptive microexponent candidates must share one code width, got "
                + ", ".join(f"{e.name} ({e.width} bits)" for e in self.elements)
            )
        if len(set(self.elements)) != len(self.elements):
            raise ValueError("element candidates must be distinct")
        if self.k < 2 or self.k > 64 or self.k & (self.k - 1):
            raise ValueError(f"block size k must be a power of two in 2..64, got {self.k}")
        if self.rule not in SCALE_RULES:
            raise ValueError(f"scale rule must be one of {', '.join(SCALE_RULES)}, got {self.rule!r}")
        if not 1 <= self.search_steps <= 8:
            raise ValueError(f"search steps must be in 1..8, got {self.search_steps}")
        if self.recycling:
            if len(self.recycling) != len(self.elements):
                raise ValueError("recycling needs one value table per element candidate")
            sizes = {len(t) for t in self.recycling}
            if len(sizes) != 1 or 0 in sizes or sizes.pop() > 16:
                raise ValueError("recycling tables must all have the same number (1..16) of values")
            for elem, table in zip(self.elements, self.recycling, strict=True):
                if not elem.can_recycle:
                    raise ValueError(f"code recycling does not apply to {elem.name} (no negative-zero code)")
                finite = elem.code_values()[np.isfinite(elem.code_values())]
                for r in table:
                    if not np.isfinite(r) or r == 0:
                        raise ValueError(f"recycled value for {elem.name} must be finite and non-zero, got {r}")
                    if np.any(finite == r):
                        raise ValueError(f"recycled value {r} for {elem.name} is already a level of that format")
                if len(set(table)) != len(table):
                    raise ValueError(f"recycled values for {elem.name} must be distinct")

    # --- widths -------------------------------------------------------------------------
    @property
    def element_width(self) -> int:
        return self.elements[0].width

    @property
    def selector_bits(self) -> int:
        return _bits_for(len(self.elements))

    @property
    def recycle_options(self) -> int:
        """Number of recycling options per block (0 when recycling is off)."""
        return len(self.recycling[0]) if self.recycling else 0

    @property
    def recycle_bits(self) -> int:
        return _bits_for(self.recycle_options) if self.recycling else 0

    @property
    def header_bits(self) -> int:
        return self.selector_bits + self.recycle_bits + self.scale.width

    @property
    def block_bits(self) -> int:
        return self.header_bits + self.k * self.element_width

    @property
    def bits_per_element(self) -> float:
        """``w + H / k`` (spec 1)."""
        return self.element_width + self.header_bits / self.k

    # --- header layout (spec 6) -------------------------------------------------------
    @cached_property
    def header_fields(self) -> tuple[HeaderField, ...]:
        """Fields from LSB up: nano_mantissa, scale_exponent, recycle, selector (zero-width ones omitted)."""
        out = []
        pos = 0
        for name, width in (
            ("nano_mantissa", self.scale.mbits),
            ("scale_exponent", self.scale.ebits),
            ("recycle", self.recycle_bits),
            ("selector", self.selector_bits),
        ):
            if width:
                out.append(HeaderField(name, pos, width))
            pos += width
        return tuple(out)

    def field(self, name: str) -> HeaderField | None:
        return next((f for f in self.header_fields if f.name == name), None)

    def make_header(self, scale_code, selector=0, recycle=0) -> np.ndarray:
        """Assemble header codes from their parts (arrays broadcast)."""
        scale_code = np.asarray(scale_code, dtype=np.int64)
        sel_shift = self.scale.width + self.recycle_bits
        return (
            scale_code
            | (np.asarray(recycle, dtype=np.int64) << self.scale.width)
            | (np.asarray(selector, dtype=np.int64) << sel_shift)
        )

    def split_header(self, header) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(scale_code, selector, recycle_option)`` of header codes."""
        h = np.asarray(header, dtype=np.int64)
        scale_code = h & ((1 << self.scale.width) - 1)
        recycle = (h >> self.scale.width) & ((1 << self.recycle_bits) - 1)
        selector = h >> (self.scale.width + self.recycle_bits)
        return scale_code, selector, recycle

    # --- values --------------------------------------------------------------------------
    @cached_property
    def _tables(self) -> np.ndarray:
        n_cr = max(self.recycle_options, 1)
        out = np.empty((len(self.elements), n_cr, 1 << self.element_width), dtype=np.float64)
        for c, elem in enumerate(self.elements):
            for j in range(n_cr):
                vals = elem.code_values().copy()
                if self.recycling:
                    vals[elem.negative_zero_code] = self.recycling[c][j]
                out[c, j] = vals
        out.setflags(write=False)
        return out

    def element_table(self, candidate: int = 0, recycle: int = 0) -> np.ndarray:
        """float64 value of every element code under ``(candidate, recycling option)``."""
        return self._tables[candidate, recycle]

    def value_tables(self) -> np.ndarray:
        """All element tables, shape ``(candidates, max(recycle_options, 1), 2**w)``."""
        return self._tables

    def max_element(self, candidate: int = 0, recycle: int = 0) -> float:
        """``max_elem`` of spec 5.3: largest finite magnitude including the recycled value."""
        r = abs(self.recycling[candidate][recycle]) if self.recycling else 0.0
        return max(self.elements[candidate].max_value, r)

    def emax_element(self, candidate: int = 0, recycle: int = 0) -> int:
        return int(np.frexp(self.max_element(candidate, recycle))[1]) - 1

    @property
    def is_mx(self) -> bool:
        """True for a plain OCP-style format (one candidate, E8M0, no recycling)."""
        return len(self.elements) == 1 and self.scale.mbits == 0 and not self.recycling

    # --- identity --------------------------------------------------------------------------
    def to_string(self) -> str:
        """Canonical format string (grammar in docs/formats.md); parses back to an equal format."""
        parts = ["elem=" + "|".join(e.name for e in self.elements), f"scale={self.scale.name}", f"k={self.k}"]
        if self.recycling:
            default = tuple((e.default_recycle_value, -e.default_recycle_value) for e in self.elements)
            if self.recycling == default:
                parts.append("cr=pm")
            elif len(set(self.recycling)) == 1:
                parts.append("cr=" + "|".join(_fmt_num(v) for v in self.recycling[0]))
            else:
                parts.append("cr=" + ";".join("|".join(_fmt_num(v) for v in t) for t in self.recycling))
        parts.append(f"rule={self.rule}" + (f":{self.search_steps}" if self.rule == "search" else ""))
        return ",".join(parts)

    @property
    def label(self) -> str:
        """Preset name if any, else the canonical string."""
        return self.name or self.to_string()

    @property
    def config_hash(self) -> str:
        """Short stable hash of the canonical string."""
        return hashlib.sha256(self.to_string().encode()).hexdigest()[:10]

    @property
    def ident(self) -> str:
        """A Verilog-identifier-safe short name: the preset name or ``fmt_<hash>``."""
        return self.name if self.name else f"fmt_{self.config_hash}"

    def describe(self) -> dict:
        """JSON-ready parameters (for manifests and reports)."""
        return {
            "name": self.label,
            "format_string": self.to_string(),
            "elements": [e.name for e in self.elements],
            "element_width": self.element_width,
            "scale": self.scale.name,
            "scale_bias": self.scale.bias,
            "k": self.k,
            "recycling": [list(t) for t in self.recycling],
            "rule": self.rule,
            "header_bits": self.header_bits,
            "header_fields": {f.name: {"offset": f.offset, "width": f.width} for f in self.header_fields},
            "bits_per_element": self.bits_per_element,
        }

    def __str__(self) -> str:
        return self.label
