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
import math
from fractions import Fraction

from .block import BlockFormat
from .element import parse_element
from .presets import PRESETS
from .scale import parse_scale

__all__ = ["parse_format", "FormatError"]


class FormatError(ValueError):
    """A format string could not be parsed or describes an invalid format. ``text`` is the string (the
    CLI names the argument that held it)."""

    text: str | None = None


#: Longest piece of a format string quoted in a message (a 100 KB argument is not echoed in full).
_QUOTE_MAX = 60


def _q(text: str) -> str:
    """``repr`` of ``text``, shortened to its start and its length when long."""
    if len(text) <= _QUOTE_MAX:
        return repr(text)
    return f"{text[:_QUOTE_MAX]!r}... ({len(text)} characters)"


def _num(text: str, where: str) -> float:
    # float() takes Unicode digits and "1_6"; a format string is written in plain ASCII
    if text.isascii() and "_" not in text:
        try:
            return float(text)
        except ValueError:
            pass
    raise FormatError(f"{where}: {_q(text)} is not a number")


def _int(text: str, where: str) -> int:
    t = text.strip()
    if not (t.isascii() and t.isdigit()):
        raise FormatError(f"{where}: {_q(text)} is not an integer (ASCII digits 0-9)")
    return int(t)


def significant_bits(q: Fraction) -> int:
    """Bits from the leading to the last one of a dyadic rational (0 for 0, 10**6 for a non-dyadic one:
    never exact in binary)."""
    if q == 0:
        return 0
    num, den = abs(q.numerator), q.denominator
    if den & (den - 1):
        return 10**6
    while num % 2 == 0:
        num //= 2
    return num.bit_length()


def _check_recycled(fmt: BlockFormat) -> None:
    """Recycled values must keep the quantizer's rounding exact (spec 5.3): every midpoint between two
    neighbouring element values has at most 49 significant bits (so ``scale * midpoint`` is exact)."""
    for cand in range(len(fmt.elements)):
        for rec in range(max(fmt.recycle_options, 1)):
            table = fmt.element_table(cand, rec)
            vals = sorted({Fraction(float(v)) for v in table if math.isfinite(v)})
            for a, b in zip(vals[:-1], vals[1:], strict=True):
                if significant_bits((a + b) / 2) > 49:
                    bad = list(dict.fromkeys(float(v) for t in fmt.recycling for v in t))
                    raise FormatError(
                        f"cr: recycled value(s) {', '.join(f'{v:g}' for v in bad)} are not short binary fractions: "
                        f"the quantizer rounds exactly only between values with few significant bits (such as 5, "
                        f"0.375, 1.5)")


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
        raise FormatError(f"cr={_q(value)}: {len(tables)} ';'-separated tables for {len(elements)} element "
                          "candidates")
    return tuple(tables)


def parse_format(text: str | BlockFormat) -> BlockFormat:
    """Parse a preset name or format string into a :class:`BlockFormat`.

    Raises :class:`FormatError` naming the offending part (its ``text`` is the whole string).
    """
    if isinstance(text, BlockFormat):
        return text
    try:
        return _parse(text)
    except FormatError as exc:
        exc.text = text if isinstance(text, str) else None
        raise


def _parse(text: str) -> BlockFormat:
    if not isinstance(text, str) or not text.strip():
        raise FormatError("format must be a non-empty string (a preset name such as nxfp4, or key=value options)")
    tokens = [t.strip() for t in text.split(",")]
    base = None
    options: dict[str, str] = {}
    for i, tok in enumerate(tokens):
        if "=" not in tok:
            if i != 0:
                raise FormatError(f"format {_q(text)}: option {_q(tok)} is not key=value")
            if tok.lower() not in PRESETS:
                raise FormatError(
                    f"unknown format preset {_q(tok)}; presets: {', '.join(PRESETS)} (or key=value options)"
                )
            base = PRESETS[tok.lower()]
            continue
        key, _, value = tok.partition("=")
        key = key.strip().lower()
        if key not in ("elem", "scale", "k", "cr", "rule"):
            raise FormatError(f"format {_q(text)}: unknown option {_q(key)} (expected elem, scale, k, cr, rule)")
        options[key] = value.strip()
    if base is None and "elem" not in options:
        raise FormatError(f"format {_q(text)}: needs a preset name or elem=<EeMm|INTn>[|...]")
    try:
        elements = (
            tuple(parse_element(e) for e in options["elem"].split("|")) if "elem" in options else base.elements
        )
        scale = parse_scale(options["scale"]) if "scale" in options else (base.scale if base else parse_scale("E8M0"))
        if "k" in options:
            k = _int(options["k"], "k (block size)")
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
            rule, colon, steps = options["rule"].lower().partition(":")
            if colon:
                if rule != "search":
                    raise FormatError(f"rule={_q(options['rule'])}: a step count applies to rule=search only")
                search_steps = _int(steps, "rule=search:<steps>")
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
        raise FormatError(f"format {_q(text)}: {str(exc)[:300]}") from None
    if fmt.recycling:
        _check_recycled(fmt)
    for preset in PRESETS.values():  # a string that spells out a preset is that preset (and keeps its name)
        if fmt == dataclasses.replace(preset, name=""):
            return preset
    return fmt
