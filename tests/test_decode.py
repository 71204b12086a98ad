"""Golden decode (spec 7) against an independent reference: Fractions and a Fraction-based RNE.

The reference helpers here (``ref_*``) are also used by tests/test_dot.py.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from fractions import Fraction
from functools import cache, lru_cache

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import seed as hyp_seed
from hypothesis import strategies as st

from nxfp_hw.formats import PRESETS, BlockFormat, FormatError, parse_format
from nxfp_hw.golden.decode import decode_bits, decode_values

SEED = int(os.environ.get("NXFP_SEED", "20240607"))
OUTS = {"fp32": (8, 23), "bf16": (8, 7), "fp16": (5, 10)}  # (exponent bits, fraction bits)

# --- independent reference --------------------------------------------------------------------
# An element or product is ("nan",) | ("inf", sign) | ("num", sign, Fraction magnitude).


def ref_header(fmt: BlockFormat, h: int) -> tuple[int, int, int]:
    """(scale code, candidate, recycle option) from the spec 4/6 layout, MSB..LSB
    [selector | CR option | scale]; out-of-range selector/option -> the last one (docs/golden.md)."""
    ncand = len(fmt.elements)
    nopt = len(fmt.recycling[0]) if fmt.recycling else 0
    sel_bits = (ncand - 1).bit_length()
    cr_bits = (nopt - 1).bit_length() if nopt else 0
    sw = fmt.scale.ebits + fmt.scale.mbits
    assert 0 <= h < 1 << (sel_bits + cr_bits + sw)
    scale = h & ((1 << sw) - 1)
    opt = (h >> sw) & ((1 << cr_bits) - 1)
    sel = h >> (sw + cr_bits)
    return scale, min(sel, ncand - 1), min(opt, max(nopt, 1) - 1)


def ref_scale(fmt: BlockFormat, code: int) -> Fraction | None:
    """Spec 3: 2**(E - bias) * (1 + M / 2**b); all-ones is NaN (None)."""
    a, b = fmt.scale.ebits, fmt.scale.mbits
    if code == (1 << (a + b)) - 1:
        return None
    return Fraction(2) ** ((code >> b) - (2 ** (a - 1) - 1)) * (1 + Fraction(code & ((1 << b) - 1), 2**b))


def ref_element(fmt: BlockFormat, cand: int, opt: int, code: int) -> tuple:
    """Spec 2 and 4 element value of ``code`` under (candidate, recycling option)."""
    el = fmt.elements[cand]
    w = el.width
    if el.is_int:
        v = code - (1 << w) if code >> (w - 1) else code
        return ("num", int(v < 0), Fraction(abs(v), 2 ** (w - 2)))
    e, m = el.ebits, el.mbits
    s, ef, mf = code >> (w - 1), (code >> m) & ((1 << e) - 1), code & ((1 << m) - 1)
    if code == 1 << (w - 1) and fmt.recycling:
        r = Fraction(fmt.recycling[cand][opt])
        return ("num", int(r < 0), abs(r))
    if (e, m) == (5, 2) and ef == 31:
        return ("inf", s) if mf == 0 else ("nan",)
    if (e, m) == (4, 3) and ef == 15 and mf == 7:
        return ("nan",)
    bias = 2 ** (e - 1) - 1
    if ef == 0:
        mag = Fraction(2) ** (1 - bias) * Fraction(mf, 2**m)
    else:
        mag = Fraction(2) ** (ef - bias) * (1 + Fraction(mf, 2**m))
    return ("num", s, mag)


def ref_decode(fmt: BlockFormat, h: int, code: int) -> tuple:
    """Exact decoded value (spec 7)."""
    scale_code, cand, opt = ref_header(fmt, h)
    x = ref_scale(fmt, scale_code)
    v = ref_element(fmt, cand, opt, code)
    if x is None or v[0] == "nan":
        return ("nan",)
    if v[0] == "inf":
        return v
    return ("num", v[1], v[2] * x)


@cache
def _ref_round_mag(mag: Fraction, ebits: int, mbits: int) -> int:
    if mag == 0:
        return 0
    bias = 2 ** (ebits - 1) - 1
    e = mag.numerator.bit_length() - mag.denominator.bit_length()  # floor(log2) or one more
    if Fraction(2) ** e > mag:
        e -= 1
    e = max(e, 1 - bias)
    q = round(mag / Fraction(2) ** (e - mbits))  # Fraction.__round__ is half-to-even
    if q == 2 ** (mbits + 1):
        q, e = q // 2, e + 1
    field = 0 if q < 2**mbits else e + bias
    if field >= 2**ebits - 1:
        return (2**ebits - 1) << mbits
    return (field << mbits) | (q & (2**mbits - 1))


def ref_round(v: tuple, out: str) -> int:
    """IEEE bits of an exact value, one RNE; canonical NaN; overflow to Inf."""
    eb, mb = OUTS[out]
    width = 1 + eb + mb
    if v[0] == "nan":
        return (((1 << eb) - 1) << mb) | (1 << (mb - 1))
    if v[0] == "inf":
        return (v[1] << (width - 1)) | (((1 << eb) - 1) << mb)
    return (v[1] << (width - 1)) | _ref_round_mag(v[2], eb, mb)


def ref_float(v: tuple) -> float:
    if v[0] == "nan":
        return float("nan")
    if v[0] == "inf":
        return -np.inf if v[1] else np.inf
    return -float(v[2]) if v[1] else float(v[2])


def same_floats(got: np.ndarray, ref: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    ok = ~np.isnan(ref)
    np.testing.assert_array_equal(got[ok], ref[ok])
    np.testing.assert_array_equal(np.signbit(got[ok]), np.signbit(ref[ok]))


def show_mismatch(fmt, headers, codes, got, ref, out) -> str:
    bad = np.argwhere(got != ref)[:5]
    return "; ".join(
        f"h={int(headers[i])} code={int(codes[i, j])}: got {int(got[i, j]):#x} want {int(ref[i, j]):#x} ({out})"
        for i, j in bad
    )


# --- exhaustive over presets ------------------------------------------------------------------


@lru_cache(maxsize=4)
def exhaustive_reference(name: str) -> list[list[tuple]]:
    fmt = PRESETS[name]
    return [[ref_decode(fmt, h, c) for c in range(1 << fmt.element_width)] for h in range(1 << fmt.header_bits)]


@pytest.mark.parametrize("out", list(OUTS))
@pytest.mark.parametrize("name", [n for n, f in PRESETS.items() if f.element_width <= 8])
def test_decode_bits_every_header_and_code(name: str, out: str) -> None:
    fmt = PRESETS[name]
    headers = np.arange(1 << fmt.header_bits, dtype=np.uint16)
    codes = np.broadcast_to(np.arange(1 << fmt.element_width, dtype=np.uint16), (headers.size, 1 << fmt.element_width))
    got = decode_bits(fmt, headers, codes, out=out)
    assert got.dtype == (np.uint32 if out == "fp32" else np.uint16)
    ref_vals = exhaustive_reference(name)
    ref = np.array([[ref_round(v, out) for v in row] for row in ref_vals], dtype=np.int64)
    assert np.array_equal(got.astype(np.int64), ref), show_mismatch(fmt, headers, codes, got, ref, out)


@pytest.mark.parametrize("name", [n for n, f in PRESETS.items() if f.element_width <= 8])
def test_decode_values_every_header_and_code(name: str) -> None:
    fmt = PRESETS[name]
    headers = np.arange(1 << fmt.header_bits, dtype=np.uint16)
    codes = np.broadcast_to(np.arange(1 << fmt.element_width, dtype=np.uint16), (headers.size, 1 << fmt.element_width))
    got = decode_values(fmt, headers, codes)
    ref = np.array([[ref_float(v) for v in row] for row in exhaustive_reference(name)])
    same_floats(got, ref)


def test_reference_rounding_agrees_with_struct() -> None:
    """Check the test's own RNE against CPython's binary32/binary16 packing (exact doubles only)."""
    rng = np.random.default_rng(SEED)
    print(f"seed={SEED}")
    xs = rng.integers(1, 1 << 20, 3000) * np.exp2(rng.integers(-180, 150, 3000).astype(np.float64))
    xs = np.concatenate([xs, np.exp2(np.arange(-160.0, 140.0)), [65504.0, 65520.0, 65519.99, 2.0**-25, 3 * 2.0**-26]])
    for x in xs:
        for out, fmt_char in (("fp32", "<f"), ("fp16", "<e")):
            try:
                want = int.from_bytes(struct.pack(fmt_char, x), "little")
            except OverflowError:
                want = 0x7F800000 if out == "fp32" else 0x7C00
            assert ref_round(("num", 0, Fraction(float(x))), out) == want, (x, out)


def test_ocp_decode_matches_ml_dtypes_at_unit_scale() -> None:
    dtypes = {"mxfp8_e4m3": ml_dtypes.float8_e4m3fn, "mxfp8_e5m2": ml_dtypes.float8_e5m2,
              "mxfp6_e3m2": ml_dtypes.float6_e3m2fn, "mxfp6_e2m3": ml_dtypes.float6_e2m3fn,
              "mxfp4_e2m1": ml_dtypes.float4_e2m1fn}
    for name, dt in dtypes.items():
        fmt = PRESETS[name]
        codes = np.arange(1 << fmt.element_width, dtype=np.uint16)[None, :]
        for out, odt in (("fp32", np.float32), ("bf16", ml_dtypes.bfloat16), ("fp16", np.float16)):
            got = decode_bits(fmt, np.array([127], np.uint16), codes, out=out)[0]
            ref = codes[0].astype(np.uint8).view(dt).astype(odt)  # exact: element values fit every output
            ref_bits = ref.view(np.uint32 if out == "fp32" else np.uint16)
            nan = np.isnan(ref.astype(np.float32))
            np.testing.assert_array_equal(got[~nan], ref_bits[~nan])
            assert np.all(got[nan] == {"fp32": 0x7FC00000, "bf16": 0x7FC0, "fp16": 0x7E00}[out])


# --- directed cases -----------------------------------------------------------------------------


def test_special_values() -> None:
    fmt = PRESETS["mxfp8_e5m2"]
    codes = np.array([[0x7C, 0xFC, 0x7D, 0x80, 0x00, 0x01]], np.uint16)
    got = decode_bits(fmt, np.array([127], np.uint16), codes)
    assert got.tolist() == [[0x7F800000, 0xFF800000, 0x7FC00000, 0x80000000, 0x00000000, 0x37800000]]
    got = decode_bits(fmt, np.array([255], np.uint16), codes)  # NaN scale beats everything
    assert np.all(got == 0x7FC00000)
    # E4M3 NaN code, both signs
    got = decode_bits(PRESETS["mxfp8_e4m3"], np.array([127], np.uint16), np.array([[0x7F, 0xFF, 0x7E]], np.uint16))
    assert got.tolist() == [[0x7FC00000, 0x7FC00000, 0x43E00000]]  # 448.0


def test_recycled_code_and_negative_zero() -> None:
    fmt = PRESETS["nxfp4"]
    unit = 15 << 1  # scale exponent 15 = bias -> 1.0, nano-mantissa 0
    h = np.array([unit, unit | 0x40, unit | 0x80, unit | 0xC0], np.uint16)
    vals = decode_values(fmt, h, np.full((4, 1), 8, np.uint16))[:, 0]
    assert vals.tolist() == [5.0, -5.0, 4.0, -4.0]
    off = parse_format("elem=E2M1,scale=UE5M1")
    v = decode_values(off, np.array([unit], np.uint16), np.array([[8]], np.uint16))[0, 0]
    assert v == 0 and np.signbit(v)
    assert decode_bits(off, np.array([unit], np.uint16), np.array([[8]], np.uint16), out="bf16")[0, 0] == 0x8000


def test_out_of_range_selector_and_option_use_the_last() -> None:
    fmt = parse_format("elem=E2M1|E1M2|E3M0,scale=UE5M1,cr=5|-5|7")
    assert fmt.selector_bits == 2 and fmt.recycle_bits == 2
    # selector 3 -> E3M0 (candidate 2); option 3 -> 7 (option 2)
    h = fmt.make_header(np.array([30, 30]), np.array([3, 2]), np.array([3, 2])).astype(np.uint16)
    codes = np.array([[8, 7, 1], [8, 7, 1]], np.uint16)
    vals = decode_values(fmt, h, codes)
    assert vals[0].tolist() == vals[1].tolist() == [7.0, 16.0, 0.25]


def test_wide_recycled_value_rounds_once() -> None:
    """A recycled value with 53 significant bits times a nano-mantissa scale needs > 64-bit products."""
    r = 5.0 + 2.0**-50
    # The grammar refuses such a value (the quantizer could not round to it exactly); decoding takes it.
    fmt = dataclasses.replace(parse_format("elem=E2M1,scale=UE5M3,cr=5"), recycling=((r,),))
    h = np.arange(255, dtype=np.uint16)
    codes = np.full((255, 1), 8, np.uint16)
    for out in OUTS:
        got = decode_bits(fmt, h, codes, out=out)[:, 0]
        ref = [ref_round(ref_decode(fmt, int(x), 8), out) for x in h]
        assert got.tolist() == ref, out


def test_bad_arguments() -> None:
    fmt = PRESETS["nxfp4"]
    with pytest.raises(ValueError, match="headers"):
        decode_bits(fmt, np.array([256]), np.zeros((1, 4), np.uint16))
    with pytest.raises(ValueError, match="codes"):
        decode_bits(fmt, np.array([0]), np.array([[16]]))
    with pytest.raises(ValueError, match="output format"):
        decode_bits(fmt, np.array([0]), np.zeros((1, 4), np.uint16), out="fp8")
    with pytest.raises(ValueError, match="do not match"):
        decode_bits(fmt, np.zeros(3, np.uint16), np.zeros((2, 4), np.uint16))
    with pytest.raises(TypeError, match="integer"):
        decode_values(fmt, np.zeros(1), np.zeros((1, 4), np.uint16))


def test_shapes_broadcast() -> None:
    fmt = PRESETS["mxfp4_e2m1"]
    h = np.array([[126, 127, 128]], np.uint16)  # (1, 3 blocks)
    c = np.tile(np.arange(16, dtype=np.uint16), (2, 3, 2))  # (2, 3, 32)
    got = decode_values(fmt, h, c)
    assert got.shape == (2, 3, 32)
    assert got[1, 2, 7] == 12.0 and got[0, 0, 15] == -3.0


# --- random format strings ---------------------------------------------------------------------

_BY_WIDTH: dict[int, list[str]] = {}
for _e in range(1, 6):
    for _m in range(0, 7):
        _BY_WIDTH.setdefault(1 + _e + _m, []).append(f"E{_e}M{_m}")


@st.composite
def format_strings(draw) -> str:
    width = draw(st.integers(3, 8))
    if draw(st.booleans()) and width >= 3:
        elems = [f"INT{width}"]
        cr = "none"
    else:
        elems = draw(st.lists(st.sampled_from(_BY_WIDTH[width]), min_size=1, max_size=3, unique=True))
        choices = ["none", "pm", "pm:0.375", "pm:100.5", "7.25", "5|-5|9|-9", "-0.1", "3.75|-0.625|96"]
        cr = draw(st.sampled_from(choices))
    a = draw(st.integers(1, 8))
    b = draw(st.integers(0, min(3, 8 - a)))
    scale = "E8M0" if (a, b) == (8, 0) else f"UE{a}M{b}"
    return f"elem={'|'.join(elems)},scale={scale},cr={cr}"


@hyp_seed(SEED)
@settings(max_examples=60, deadline=None)
@given(text=format_strings(), data=st.data())
def test_decode_random_formats(text: str, data) -> None:
    try:
        fmt = parse_format(text)
    except FormatError:
        reject()
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n = 64
    headers = rng.integers(0, 1 << fmt.header_bits, n).astype(np.uint16)
    codes = rng.integers(0, 1 << fmt.element_width, (n, 16)).astype(np.uint16)
    exact = [[ref_decode(fmt, int(headers[i]), int(codes[i, j])) for j in range(16)] for i in range(n)]
    same_floats(decode_values(fmt, headers, codes), np.array([[ref_float(v) for v in row] for row in exact]))
    for out in OUTS:
        got = decode_bits(fmt, headers, codes, out=out)
        ref = np.array([[ref_round(v, out) for v in row] for row in exact], dtype=np.int64)
        assert np.array_equal(got.astype(np.int64), ref), f"{text}: " + show_mismatch(fmt, headers, codes, got, ref,
                                                                                      out)
