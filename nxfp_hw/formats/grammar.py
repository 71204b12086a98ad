"""The format-string grammar (documented in docs/formats.md).

    format  := base ("," option)*
    base    := preset-name | option
    option  := "elem=" ELEMENT ("|" ELEMENT)*        adaptive microexponent candidates
             | "scale=" (E8M0 | UEaMb)               NanoMantissa when b >= 1
             | "k=" INT                              block size, power of two 2..64
             | "cr=" ("none" | "pm" | "pm:" NUM | NUM ("|" NUM)* (";" NUM ("|" NUM)*)*)
             | "rule=" ("ocp" | "ceil" | "search" [":" INT])

``cr=pm`` is +-r with the per-format default r (one header bit); ``cr=pm:5`` is +-5;
``cr=5`` a single fixed value (no header bit); ``cr=5|-5|7|-7`` a per-block table (two
header bits); ``;`` separates per-candidate tables. Later options override earlier ones
and the preset's, so ``nxfp4,k=16`` is nxfp4 with 16-element blocks.
"""

from __future__ import annotations

import dataclasses

from .block import BlockFormat
from .element import parse_element
from .presets import PRESETS
from .scale import parse_scale

__all__ = ["parse_format", "FormatError"]


class FormatError(ValueError):
    """A format string could not be parsed or describes an invalid format."""


def _num(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise FormatError(f"{where}: {text!r} is not a number") from None


def _recycling(value: str, elements) -> tuple[tuple[float, ...], ...]:
    v = value.strip().lower()
    if v in ("none", "off", ""):
        return ()
    if v == "pm":
        return tuple((e.default_recycle_value, -e.default_recycle_value) for e in elements)
    if v.startswith("pm:"):
        r = abs(_num(v[3:], "cr=pm:<r>"))
        return tuple((r, -r) for _ in elements)
    groups = v.split(";")
    tables = [tuple(_num(x, "cr value") for x in g.split("|")) for g in groups]
    if len(tables) == 1:
        return tuple(tables[0] for _ in elements)
    if len(tables) != len(elements):
        raise FormatError(f"cr={value}: {len(tables)} ';'-separated tables for {len(elements)} element candidates")
    return tuple(tables)


def parse_format(text: str | BlockFormat) -> BlockFormat:
    """Parse a preset name or format string into a :class:`BlockFormat`.

    Raises :class:`FormatError` naming the offending part.
    """
    if isinstance(text, BlockFormat):
        return text
    if not isinstance(text, str) or not text.strip():
        raise FormatError("format must be a non-empty string (a preset name such as nxfp4, or key=value options)")
    tokens = [t.strip() for t in text.split(",")]
    base = None
    options: dict[str, str] = {}
    for i, tok in enumerate(tokens):
        if "=" not in tok:
            if i != 0:
                raise FormatError(f"format {text!r}: option {tok!r} is not key=value")
            if tok.lower() not in PRESETS:
                raise FormatError(
                    f"unknown format preset {tok!r}; presets: {', '.join(PRESETS)} (or key=value options)"
                )
            base = PRESETS[tok.lower()]
            continue
        key, _, value = tok.partition("=")
        key = key.strip().lower()
        if key not in ("elem", "scale", "k", "cr", "rule"):
            raise FormatError(f"format {text!r}: unknown option {key!r} (expected elem, scale, k, cr, rule)")
        options[key] = value.strip()
    if base is None and "elem" not in options:
        raise FormatError(f"format {text!r}: needs a preset name or elem=<EeMm|INTn>[|...]")
    try:
        elements = (
            tuple(parse_element(e) for e in options["elem"].split("|")) if "elem" in options else base.elements
        )
        scale = parse_scale(options["scale"]) if "scale" in options else (base.scale if base else parse_scale("E8M0"))
        if "k" in options:
            try:
                k = int(options["k"])
            except ValueError:
                raise FormatError(f"k={options['k']}: block size must be an integer") from None
        else:
            k = base.k if base else 32
        if "cr" in options:
            recycling = _recycling(options["cr"], elements)
        elif base is not None and "elem" not in options:
            recycling = base.recycling
        elif base is not None and base.recycling:
            recycling = _recycling("pm", elements)
        else:
            recycling = ()
        search_steps = base.search_steps if base else 3
        if "rule" in options:
            rule, _, steps = options["rule"].lower().partition(":")
            if steps:
                try:
                    search_steps = int(steps)
                except ValueError:
                    raise FormatError(f"rule={options['rule']}: search steps must be an integer") from None
        elif base is not None:
            rule = base.rule
        else:
            rule = "ceil" if scale.mbits > 0 else "ocp"
        fmt = BlockFormat(
            elements=elements, scale=scale, k=k, recycling=recycling, rule=rule, search_steps=search_steps
        )
    except FormatError:
        raise
    except ValueError as exc:
        raise FormatError(f"format {text!r}: {exc}") from None
    for preset in PRESETS.values():  # a string that spells out a preset is that preset (and keeps its name)
        if fmt == dataclasses.replace(preset, name=""):
            return preset
    return fmt
