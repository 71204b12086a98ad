"""Format library: element/scale tables (spec 2, 3), presets (spec 4), the format-string grammar."""

from __future__ import annotations

import dataclasses
import itertools
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from nxfp_hw.formats import PRESETS, ElementFormat, FormatError, ScaleFormat, parse_format

OCP_DTYPES = {
    "E4M3": ml_dtypes.float8_e4m3fn,
    "E5M2": ml_dtypes.float8_e5m2,
    "E3M2": ml_dtypes.float6_e3m2fn,
    "E2M3": ml_dtypes.float6_e2m3fn,
    "E2M1": ml_dtypes.float4_e2m1fn,
}


def spec_minifloat(code: int, e: int, m: int) -> float:
    """Spec 2.1 formula, written out independently of the library (finite codes only)."""
    s, ef, mf = code >> (e + m), (code >> m) & ((1 << e) - 1), code & ((1 << m) - 1)
    bias = 2 ** (e - 1) - 1
    if ef == 0:
        mag = Fraction(2) ** (1 - bias) * Fraction(mf, 2**m)
    else:
        mag = Fraction(2) ** (ef - bias) * (1 + Fraction(mf, 2**m))
    return float(-mag if s else mag) if mag else (-0.0 if s else 0.0)


def same_bits(a: np.ndarray, b: np.ndarray) -> None:
    """Equal values including the sign of zero, NaN at the same positions."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(a)
    np.testing.assert_array_equal(a[ok], b[ok])
    np.testing.assert_array_equal(np.signbit(a[ok]), np.signbit(b[ok]))


@pytest.mark.parametrize("name", list(OCP_DTYPES))
def test_ocp_element_tables_match_ml_dtypes(name: str) -> None:
    elem = parse_format(f"elem={name}").elements[0]
    codes = np.arange(1 << elem.width, dtype=np.uint8)
    ref = codes.view(OCP_DTYPES[name]).astype(np.float64)
    same_bits(elem.code_values(), ref)


@pytest.mark.parametrize("e,m", [(e, m) for e in range(1, 6) for m in range(0, 7) if (e, m) not in ((5, 2), (4, 3))])
def test_finite_minifloats_match_spec_formula(e: int, m: int) -> None:
    elem = ElementFormat(e, m)
    ref = [spec_minifloat(c, e, m) for c in range(1 << (1 + e + m))]
    same_bits(elem.code_values(), ref)
    assert np.all(np.isfinite(elem.code_values())), "spec 2.1: only E5M2 and E4M3 have special codes"


def test_spec_level_examples() -> None:
    # spec 2.1 examples, literally
    for name, levels in {
        "E2M1": [0, 0.5, 1, 1.5, 2, 3, 4, 6],
        "E1M2": [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5],
        "E3M0": [0, 0.25, 0.5, 1, 2, 4, 8, 16],
    }.items():
        elem = parse_format(f"elem={name}").elements[0]
        np.testing.assert_array_equal(elem.levels, levels)
        np.testing.assert_array_equal(elem.code_values()[: 1 << (elem.width - 1)], levels)
    assert parse_format("elem=E5M2").elements[0].max_value == 57344
    assert parse_format("elem=E4M3").elements[0].max_value == 448


def test_e4m3_e5m2_specials() -> None:
    e4 = parse_format("elem=E4M3").elements[0].code_values()
    assert np.flatnonzero(np.isnan(e4)).tolist() == [0x7F, 0xFF]
    e5 = parse_format("elem=E5M2").elements[0].code_values()
    assert np.flatnonzero(np.isnan(e5)).tolist() == [0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF]
    assert e5[0x7C] == np.inf and e5[0xFC] == -np.inf


@pytest.mark.parametrize("n", [2, 4, 8, 16])
def test_int_tables(n: int) -> None:
    elem = parse_format(f"elem=INT{n}").elements[0]
    ref = [((c - (1 << n)) if c >= 1 << (n - 1) else c) / 2 ** (n - 2) for c in range(1 << n)]
    np.testing.assert_array_equal(elem.code_values(), ref)
    if n == 8:  # OCP MXINT8: -2 .. 1.984375
        assert elem.code_values().min() == -2 and elem.code_values().max() == 1.984375


def test_e8m0_matches_ml_dtypes() -> None:
    vals = ScaleFormat(8, 0).code_values()
    ref = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e8m0fnu).astype(np.float64)
    same_bits(vals, ref)
    assert np.isnan(vals[255]) and vals[127] == 1.0 and vals[0] == 2.0**-127


@pytest.mark.parametrize("a,b", [(5, 1), (6, 2), (5, 3), (7, 1), (4, 2), (1, 1)])
def test_uexmy_scale_table(a: int, b: int) -> None:
    vals = ScaleFormat(a, b).code_values()
    bias = 2 ** (a - 1) - 1
    for code in range((1 << (a + b)) - 1):
        ref = Fraction(2) ** ((code >> b) - bias) * (1 + Fraction(code & ((1 << b) - 1), 2**b))
        assert vals[code] == ref, (a, b, code)
    assert np.isnan(vals[-1])
    assert np.all(np.diff(vals[:-1]) > 0)


# spec 4 table: (elements, scale, header bits, bits/elem, selector/recycle/scale-exponent/nano widths)
SPEC_PRESETS = {
    "mxfp8_e4m3": (["E4M3"], "E8M0", 8, 8.25, (0, 0, 8, 0)),
    "mxfp8_e5m2": (["E5M2"], "E8M0", 8, 8.25, (0, 0, 8, 0)),
    "mxfp6_e3m2": (["E3M2"], "E8M0", 8, 6.25, (0, 0, 8, 0)),
    "mxfp6_e2m3": (["E2M3"], "E8M0", 8, 6.25, (0, 0, 8, 0)),
    "mxfp4_e2m1": (["E2M1"], "E8M0", 8, 4.25, (0, 0, 8, 0)),
    "mxint8": (["INT8"], "E8M0", 8, 8.25, (0, 0, 8, 0)),
    "nxfp4": (["E2M1", "E1M2"], "UE5M1", 8, 4.25, (1, 1, 5, 1)),
    "nxfp5": (["E2M2", "E3M1"], "UE5M1", 8, 5.25, (1, 1, 5, 1)),
    "nxfp6": (["E2M3", "E3M2"], "UE5M1", 8, 6.25, (1, 1, 5, 1)),
}
SPEC_R = {"E2M1": 5.0, "E1M2": 4.0, "E2M2": 8.0, "E3M1": 32.0, "E2M3": 8.0, "E3M2": 32.0}


@pytest.mark.parametrize("name", list(SPEC_PRESETS))
def test_presets_match_spec_table(name: str) -> None:
    elems, scale, hbits, bpe, widths = SPEC_PRESETS[name]
    f = PRESETS[name]
    assert [e.name for e in f.elements] == elems
    assert f.scale.name == scale and f.k == 32
    assert f.header_bits == hbits and f.bits_per_element == bpe
    # header order MSB..LSB: [selector | CR | scale exponent | nano-mantissa] (spec 4, 6)
    offsets, pos = {}, 0
    for field, w in zip(("nano_mantissa", "scale_exponent", "recycle", "selector"), widths[::-1], strict=True):
        if w:
            offsets[field] = (pos, w)
        pos += w
    assert {fl.name: (fl.offset, fl.width) for fl in f.header_fields} == offsets
    if widths[1]:
        assert f.recycling == tuple((SPEC_R[e], -SPEC_R[e]) for e in elems)
    else:
        assert f.recycling == ()
    assert parse_format(name) is f and parse_format(name.upper()) is f


def test_header_split_and_make() -> None:
    f = PRESETS["nxfp4"]
    h = np.arange(256)
    scale, sel, rec = f.split_header(h)
    np.testing.assert_array_equal(sel, h >> 7)
    np.testing.assert_array_equal(rec, (h >> 6) & 1)
    np.testing.assert_array_equal(scale, h & 63)
    np.testing.assert_array_equal(f.make_header(scale, sel, rec), h)


ROUND_TRIP = [
    "elem=E2M1,scale=UE6M2",
    "elem=E2M1,scale=UE7M1",
    "elem=E2M1|E1M2",
    "elem=E2M1|E1M2|E3M0",
    "elem=E2M1,scale=E7M0,cr=pm",
    "nxfp4,k=64",
    "nxfp4,k=2",
    "nxfp4,cr=none",
    "nxfp5,rule=search:4",
    "elem=E4M3,cr=pm,scale=UE6M1",
    "elem=E2M1,cr=5",
    "elem=E2M1,cr=pm:7",
    "elem=E2M1,cr=5|-5|7|-7",
    "elem=E2M1|E1M2,cr=5|-5;4.5|-4.5",
    "elem=E2M1,cr=0.75|-8.25",
    "elem=INT8,scale=UE5M3",
    "elem=int4,k=16,rule=ceil",
    "elem=E1M6|E2M5|E3M4|E4M3|E5M2,scale=UE8M0",
    "elem=E5M6,scale=UE4M3,k=8",
]


@pytest.mark.parametrize("text", ROUND_TRIP + list(PRESETS))
def test_format_string_round_trip(text: str) -> None:
    f = parse_format(text)
    g = parse_format(f.to_string())
    # equal in every field but the preset name (a canonical string carries no name)
    assert dataclasses.replace(g, name="") == dataclasses.replace(f, name="")
    assert g.to_string() == f.to_string() and g.config_hash == f.config_hash


def test_format_string_semantics() -> None:
    f = parse_format("elem=E2M1|E1M2|E3M0")
    assert f.selector_bits == 2 and f.header_bits == 10 and f.rule == "ocp"
    f = parse_format("elem=E2M1,cr=5|-5|7|-7,scale=UE5M1")
    assert f.recycle_bits == 2 and f.header_bits == 8 and f.rule == "ceil"
    assert f.element_table(0, 2)[8] == 7.0 and f.element_table(0, 3)[8] == -7.0
    assert parse_format("elem=E2M1,cr=5").recycle_bits == 0
    assert parse_format("nxfp4,k=16").k == 16 and parse_format("nxfp4,cr=none").header_bits == 7
    assert parse_format("nxfp4,elem=E2M1").recycling == ((5.0, -5.0),)
    assert parse_format("elem=E2M1,cr=pm:7").recycling == ((7.0, -7.0),)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("nxfp9", "unknown format preset"),
        ("", "non-empty"),
        ("elem=E2M1,foo=3", "unknown option"),
        ("elem=E2M1,k", "not key=value"),
        ("scale=UE5M1", "needs a preset name or elem"),
        ("elem=E2X1", "not of the form"),
        ("elem=E6M1", "exponent bits"),
        ("elem=E2M7", "mantissa bits"),
        ("elem=INT1", "INTn"),
        ("elem=INT17", "INTn"),
        ("elem=E2M1,scale=UE6M3", "out of range"),
        ("elem=E2M1,scale=UE5M4", "out of range"),
        ("elem=E2M1,scale=E9M0", "out of range"),
        ("elem=E2M1,scale=F8", "not of the form"),
        ("elem=E2M1,k=24", "power of two"),
        ("elem=E2M1,k=128", "power of two"),
        ("elem=E2M1,k=1", "power of two"),
        ("elem=E2M1,k=x", "integer"),
        ("elem=E2M1|E2M2", "share one code width"),
        ("elem=E2M1|E2M1", "distinct"),
        ("elem=INT8,cr=pm", "does not apply"),
        ("elem=INT4,cr=3", "does not apply"),
        ("elem=E2M1,cr=6", "already a level"),
        ("elem=E2M1,cr=-1.5", "already a level"),
        ("elem=E2M1,cr=0", "non-zero"),
        ("elem=E2M1,cr=inf", "finite"),
        ("elem=E2M1,cr=5|5", "distinct"),
        ("elem=E2M1,cr=abc", "not a number"),
        ("elem=E2M1|E1M2,cr=5;4;3", "tables"),
        ("elem=E2M1,rule=best", "scale rule"),
        ("elem=E2M1,rule=search:x", "integer"),
        ("elem=E2M1,rule=search:9", "search steps"),
    ],
)
def test_format_errors(text: str, needle: str) -> None:
    with pytest.raises(FormatError) as info:
        parse_format(text)
    assert needle.lower() in str(info.value).lower(), str(info.value)


def test_format_error_is_value_error() -> None:
    assert issubclass(FormatError, ValueError)
    with pytest.raises(FormatError):
        parse_format(None)  # type: ignore[arg-type]


def test_all_same_width_candidate_sets_parse() -> None:
    by_width: dict[int, list[str]] = {}
    for e, m in itertools.product(range(1, 6), range(0, 7)):
        by_width.setdefault(1 + e + m, []).append(f"E{e}M{m}")
    for w, names in by_width.items():
        f = parse_format("elem=" + "|".join(names) + ",cr=pm")
        assert f.element_width == w and f.selector_bits == (len(names) - 1).bit_length()
        assert parse_format(f.to_string()) == f
