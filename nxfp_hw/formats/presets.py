"""Preset block formats (spec 4): the OCP MX formats and this project's NxFP formats."""

from __future__ import annotations

from .block import BlockFormat
from .element import ElementFormat, parse_element
from .scale import ScaleFormat

__all__ = ["PRESETS", "MX_PRESETS", "NXFP_PRESETS", "mx_baseline_for"]

E8M0 = ScaleFormat(8, 0)
UE5M1 = ScaleFormat(5, 1)


def _mx(name: str, elem: str) -> BlockFormat:
    return BlockFormat(elements=(parse_element(elem),), scale=E8M0, k=32, rule="ocp", name=name)


def _nx(name: str, *elems: str) -> BlockFormat:
    cands: tuple[ElementFormat, ...] = tuple(parse_element(e) for e in elems)
    recycling = tuple((e.default_recycle_value, -e.default_recycle_value) for e in cands)
    return BlockFormat(elements=cands, scale=UE5M1, k=32, recycling=recycling, rule="ceil", name=name)


MX_PRESETS: dict[str, BlockFormat] = {
    f.name: f
    for f in (
        _mx("mxfp8_e4m3", "E4M3"),
        _mx("mxfp8_e5m2", "E5M2"),
        _mx("mxfp6_e3m2", "E3M2"),
        _mx("mxfp6_e2m3", "E2M3"),
        _mx("mxfp4_e2m1", "E2M1"),
        _mx("mxint8", "INT8"),
    )
}

NXFP_PRESETS: dict[str, BlockFormat] = {
    f.name: f for f in (_nx("nxfp4", "E2M1", "E1M2"), _nx("nxfp5", "E2M2", "E3M1"), _nx("nxfp6", "E2M3", "E3M2"))
}

PRESETS: dict[str, BlockFormat] = {**MX_PRESETS, **NXFP_PRESETS}


def mx_baseline_for(fmt: BlockFormat) -> BlockFormat:
    """The MX preset with the same element width (the natural baseline to compare against)."""
    by_width = {4: "mxfp4_e2m1", 6: "mxfp6_e2m3", 8: "mxfp8_e4m3"}
    return MX_PRESETS[by_width.get(fmt.element_width, "mxfp4_e2m1")]
