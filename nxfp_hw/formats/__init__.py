"""Number formats: element, scale and block formats, presets and the format-string parser."""

from .block import SCALE_RULES, BlockFormat, HeaderField
from .element import ElementFormat, parse_element
from .grammar import FormatError, parse_format
from .presets import MX_PRESETS, NXFP_PRESETS, PRESETS, mx_baseline_for
from .scale import ScaleFormat, parse_scale

__all__ = [
    "SCALE_RULES",
    "BlockFormat",
    "ElementFormat",
    "FormatError",
    "HeaderField",
    "MX_PRESETS",
    "NXFP_PRESETS",
    "PRESETS",
    "ScaleFormat",
    "mx_baseline_for",
    "parse_element",
    "parse_format",
    "parse_scale",
]
