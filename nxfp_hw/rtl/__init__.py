"""Amaranth hardware units (architecture.md "Hardware units") and their shared arithmetic."""

from .decode import DecodeUnit
from .element_decode import ElementDecoder, HeaderDecoder, decode_header
from .float_round import IEEE_FORMATS, IeeeFormat, ieee_format, leading_zeros, round_to_ieee
from .pipeline import PipelineRegister, add_pipeline

__all__ = [
    "IEEE_FORMATS",
    "DecodeUnit",
    "ElementDecoder",
    "HeaderDecoder",
    "IeeeFormat",
    "PipelineRegister",
    "add_pipeline",
    "decode_header",
    "ieee_format",
    "leading_zeros",
    "round_to_ieee",
]
