"""Golden block dot product and accumulation (spec 8) against a Fraction / Python-int reference."""

from __future__ import annotations

import itertools
import os
from fractions import Fraction

import numpy as np
import pytest
from test_decode import ref_element, ref_header, ref_round, ref_scale

from nxfp_hw.formats import PRESETS, BlockFormat, parse_format
from nxfp_hw.golden.dot import (
    accumulate_bits,
    block_dot_bits,
    dot_accumulate_bits,
    dot_bits,
    exact_sum_bits,
    exact_sum_lsb_exponent,
)

SEED = int(os.environ.get("NXFP_SEED", "20240607"))
NAN32, PINF, NINF = 0x7FC00000, 0x7F800000, 0xFF800000
E4, E5 = PRESETS["mxfp8_e4m3"], PRESETS["mxfp8_e5m2"]


def ref_block_dot(fa: BlockFormat, ha: int, ca, fb: BlockFormat, hb: int, cb) -> int:
    """Spec 8, written straight from the text with exact Fractions."""
    sa, sel_a, opt_a = ref_header(fa, ha)
    sb, sel_b, opt_b = ref_header(fb, hb)
    xa, xb = ref_scale(fa, sa), ref_scale(fb, sb)
    if xa is None or xb is None:
        return NAN32
    total, infs, nan = Fraction(0), set(), False
    for a_code, b_code in zip(ca, cb, strict=True):
        a = ref_element(fa, sel_a, opt_a, int(a_code))
        b = ref_element(fb, sel_b, opt_b, int(b_code))
        if a[0] == "nan" or b[0] == "nan":
            nan = True
        elif a[0] == "inf" or b[0] == "inf":
            other = b if a[0] == "inf" else a
            if other[0] == "num" and other[2] == 0:
                nan = True
            else:
                infs.add(a[1] ^ b[1])
        else:
            total += (-1) ** (a[1] ^ b[1]) * a[2] * b[2]
    if nan or len(infs) == 2:
        return NAN32
    if infs:
        return ref_round(("inf", infs.pop()), "fp32")
    r = total * xa * xb
    return ref_round(("num", int(r < 0), abs(r)), "fp32")


def check(fa, ha, ca, fb, hb, cb) -> None:
    ha, hb = np.atleast_1d(np.asarray(ha, np.uint16)), np.atleast_1d(np.asarray(hb, np.uint16))
    ca, cb = np.atleast_2d(np.asarray(ca, np.uint16)), np.atleast_2d(np.asarray(cb, np.uint16))
    got = block_dot_bits(fa, ha, ca, fb, hb, cb)
    assert got.dtype == np.uint32 and got.shape == ha.shape
    for i in range(ha.size):
        want = ref_block_dot(fa, int(ha[i]), ca[i], fb, int(hb[i]), cb[i])
        assert int(got[i]) == want, (
            f"block {i}: got {int(got[i]):#010x} ({got[i:i + 1].view(np.float32)[0]!r}), want {want:#010x} "
            f"({np.array([want], np.uint32).view(np.float32)[0]!r}); ha={int(ha[i])} ca={ca[i].tolist()} "
            f"hb={int(hb[i])} cb={cb[i].tolist()}"
        )


def code_of(fmt: BlockFormat, value: float, cand: int = 0, opt: int = 0) -> int:
    """The code whose element value is ``value`` (first match), via the reference."""
    for c in range(1 << fmt.element_width):
        v = ref_element(fmt, cand, opt, c)
        if v[0] == "num" and (-1) ** v[1] * v[2] == Fraction(value) and (value != 0 or v[1] == 0):
            return c
    raise AssertionError(f"{value} is not an element of {fmt}")


def max_code(fmt: BlockFormat) -> int:
    """A code of the largest finite magnitude of candidate 0."""
    vals = fmt.element_table(0, 0)
    return int(np.argmax(np.where(np.isfinite(vals), np.abs(vals), -1)))


def block(fmt: BlockFormat, values, cand: int = 0, opt: int = 0) -> list[int]:
    codes = [code_of(fmt, v, cand, opt) for v in values]
    return codes + [0] * (fmt.k - len(codes))


# --- directed cases -------------------------------------------------------------------------------


def test_all_zero_is_positive_zero() -> None:
    for f in PRESETS.values():
        got = block_dot_bits(f, np.array([100], np.uint16), np.zeros((1, 32), np.uint16),
                             f, np.array([3], np.uint16), np.zeros((1, 32), np.uint16))
        assert got.tolist() == [0]
    # -0 * +x products and a cancelling sum are an exact zero: +0.0 (docs/golden.md)
    f = PRESETS["mxfp4_e2m1"]
    check(f, 127, block(f, [-0.0, 1.5, -1.5]), f, 127, block(f, [3, 2, 2]))
    got = block_dot_bits(f, np.array([127]), np.array([block(f, [-0.0, 1.5])]),
                         f, np.array([127]), np.array([block(f, [3, -2])]))
    assert got.tolist() == [0xC0400000]  # -3.0


def test_nan_headers_and_elements() -> None:
    zeros = np.zeros((1, 32), np.uint16)
    for fa, fb in [(E4, E4), (PRESETS["nxfp4"], PRESETS["nxfp4"]), (E5, PRESETS["mxint8"])]:
        nan_a, nan_b = fa.scale.nan_code, fb.scale.nan_code
        assert block_dot_bits(fa, np.array([nan_a]), zeros, fb, np.array([0]), zeros).tolist() == [NAN32]
        assert block_dot_bits(fa, np.array([0]), zeros, fb, np.array([nan_b]), zeros).tolist() == [NAN32]
    # NaN element times zero is still NaN; E4M3 NaN both signs, E5M2 NaNs
    for code in (0x7F, 0xFF):
        check(E4, 127, [code] + [0] * 31, E4, 127, [0] * 32)
    for code in (0x7D, 0x7E, 0xFF):
        check(E5, 127, [0] * 31 + [code], E5, 127, [0x3C] * 32)
    c = np.zeros((1, 32), np.uint16)
    c[0, 5] = 0x7F
    assert block_dot_bits(E4, np.array([127]), c, E4, np.array([127]), zeros).tolist() == [NAN32]


def test_infinities() -> None:
    one, two, neg = code_of(E5, 1.0), code_of(E5, 2.0), code_of(E5, -1.0)
    pinf, ninf = 0x7C, 0xFC
    h = 127
    cases = {
        "inf*finite": ([pinf, one], [two, one], PINF),
        "inf*negative": ([pinf, one], [neg, one], NINF),
        "-inf*negative": ([ninf], [neg], PINF),
        "inf*0": ([pinf, one], [0, one], NAN32),
        "inf*-0": ([pinf], [0x80], NAN32),
        "+inf + -inf": ([pinf, ninf], [one, one], NAN32),
        "+inf + +inf": ([pinf, ninf], [one, neg], PINF),
        "inf*inf": ([pinf], [ninf], NINF),
        "inf + huge finite": ([pinf, 0x7B], [one, 0x7B], PINF),
        "inf and nan": ([pinf, 0x7E], [one, one], NAN32),
    }
    for name, (a, b, want) in cases.items():
        a, b = a + [0] * (32 - len(a)), b + [0] * (32 - len(b))
        got = block_dot_bits(E5, np.array([h]), np.array([a]), E5, np.array([h]), np.array([b]))
        assert got.tolist() == [want], name
        check(E5, h, a, E5, h, b)
    # Inf element with a tiny or a huge scale is still Inf
    check(E5, [0, 254], [[pinf] + [0] * 31] * 2, E5, [0, 254], [[one] * 32] * 2)


def test_max_magnitudes_overflow() -> None:
    for f in (E4, E5, PRESETS["mxfp6_e3m2"], PRESETS["mxint8"], PRESETS["nxfp4"], PRESETS["nxfp6"]):
        top = f.scale.max_code
        a = np.full((3, 32), max_code(f), np.uint16)
        hs = np.array([top, top - 40, 0], np.uint16)
        check(f, hs, a, f, hs, a)
    got = block_dot_bits(E4, np.array([254]), np.full((1, 32), 0x7E), E4, np.array([254]), np.full((1, 32), 0x7E))
    assert got.tolist() == [PINF]
    got = block_dot_bits(E4, np.array([254]), np.full((1, 32), 0x7E), E4, np.array([254]), np.full((1, 32), 0xFE))
    assert got.tolist() == [NINF]


def test_subnormal_and_underflow_results() -> None:
    f = PRESETS["mxfp6_e3m2"]
    # Xa * Xb = 2**(ea + eb - 254); products of small elements land in fp32's subnormal range
    for ea, eb in [(0, 0), (10, 0), (30, 5), (50, 50), (100, 0), (1, 1)]:
        rng = np.random.default_rng(SEED + ea)
        a = rng.integers(0, 64, (8, 32))
        b = rng.integers(0, 64, (8, 32))
        check(f, [ea] * 8, a, f, [eb] * 8, b)
    # 0.0625 * -0.0625 * 2**-127 * 2**-20 = -2**-155: below half the smallest subnormal -> -0.0
    got = block_dot_bits(f, np.array([0]), np.array([block(f, [0.0625])]), f, np.array([107]),
                         np.array([block(f, [-0.0625])]))
    assert got.tolist() == [0x80000000]
    # Xa * Xb = 2**-22 * 2**-127 = 2**-149 (one subnormal ulp): S = 1.5 and 2.5 are ties -> 2, 0.5 -> 0
    nx = PRESETS["mxfp4_e2m1"]
    ha, hb = 105, 0
    terms = {1.5: [(1.5, 1)], 2.5: [(2, 1), (0.5, 1)], 3.0: [(3, 1)], 0.5: [(0.5, 1)], 0.75: [(1.5, 0.5)]}
    for val, want in [(1.5, 2), (2.5, 2), (3.0, 3), (0.5, 0), (0.75, 1)]:
        a = block(nx, [t[0] for t in terms[val]])
        b = block(nx, [t[1] for t in terms[val]])
        got = block_dot_bits(nx, np.array([ha]), np.array([a]), nx, np.array([hb]), np.array([b]))
        assert got.tolist() == [want], val
        check(nx, ha, a, nx, hb, b)


def test_exact_ties_in_final_rounding() -> None:
    # fp32 ulp at 2**17 is 2**-6. Products: 256*256 = 2**16 (x2), 2**-4 * 2**-3 = 2**-7, 2**-9 * 2**-9 = 2**-18.
    cases = [
        ([256, 256, 2**-4], [256, 256, 2**-3], 2.0**17),  # tie, even below
        ([256, 256, 2**-4, 2**-3], [256, 256, 2**-3, 2**-3], 2.0**17 + 2**-5),  # tie, odd below -> up
        ([256, 256, 2**-4, 2**-9], [256, 256, 2**-3, 2**-9], 2.0**17 + 2**-6),  # tie + sticky far below -> up
        ([256, 256, -(2**-4)], [256, 256, 2**-3], 2.0**17 - 2**-7),  # below 2**17: ulp 2**-7, exact
        ([256, 256, -(2**-4), -(2**-9)], [256, 256, 2**-3, 2**-9], 2.0**17 - 2**-7),  # exact minus tiny
    ]
    for a, b, want in cases:
        got = block_dot_bits(E4, np.array([127]), np.array([block(E4, a)]), E4, np.array([127]),
                             np.array([block(E4, b)]))
        assert got.view(np.float32).tolist() == [np.float32(want)], (a, b)
        assert np.float32(want) == want  # the expected results are fp32 numbers themselves
        check(E4, 127, block(E4, a), E4, 127, block(E4, b))
    # the same ties through a nano-mantissa scale product: Xa*Xb = 1.5*1.5 = 2.25
    nx = parse_format("elem=E4M3,scale=UE5M1")
    h15 = (15 << 1) | 1
    check(nx, h15, block(nx, [256, 256, 2**-4]), nx, h15, block(nx, [256, 256, 2**-3]))


def test_e5m2_extreme_exponents() -> None:
    # 57344**2 * 32 plus 2**-32 contributions: an exact sum needs 70 bits
    mx, mn = 57344.0, 2.0**-16
    cases = [
        ([mx] * 32, [mx] * 32),
        ([mx, mn], [mx, mn]),
        ([mx, -mx, mn], [mx, mx, mn]),  # catastrophic cancellation leaves 2**-32
        ([2.0**15, 2.0**3, mn], [2.0**15, 2.0**3, mn]),  # tie at 2**30 plus a 2**-32 sticky -> up
        ([2.0**15, 2.0**3], [2.0**15, 2.0**3]),  # tie at 2**30 exactly -> down (even)
    ]
    for hs in [(127, 127), (0, 0), (254, 0), (254, 254), (60, 90)]:
        for a, b in cases:
            check(E5, hs[0], block(E5, a), E5, hs[1], block(E5, b))
    got = block_dot_bits(E5, np.array([127]), np.array([block(E5, [2.0**15, 2.0**3, mn])]), E5, np.array([127]),
                         np.array([block(E5, [2.0**15, 2.0**3, mn])]))
    assert got.view(np.float32)[0] == np.float32(2.0**30 + 2**7)
    got = block_dot_bits(E5, np.array([127]), np.array([block(E5, [mx, -mx, mn])]), E5, np.array([127]),
                         np.array([block(E5, [mx, mx, mn])]))
    assert got.view(np.float32)[0] == np.float32(2.0**-32)


def test_catastrophic_cancellation() -> None:
    a = [448, 2**-9, -448, 2**-9]
    b = [448, 2**-9, 448, 2**-9]
    got = block_dot_bits(E4, np.array([127]), np.array([block(E4, a)]), E4, np.array([127]),
                         np.array([block(E4, b)]))
    assert got.view(np.float32)[0] == np.float32(2.0**-17)
    check(E4, 127, block(E4, a), E4, 127, block(E4, b))


def test_recycled_codes_and_every_selector() -> None:
    rng = np.random.default_rng(SEED)
    print(f"seed={SEED}")
    for name in ("nxfp4", "nxfp5", "nxfp6"):
        f = PRESETS[name]
        # every (selector, option) pair on both sides, with many recycled codes
        sel_opt = list(itertools.product(range(2), range(2)))
        for (sa, oa), (sb, ob) in itertools.product(sel_opt, sel_opt):
            ha = f.make_header(rng.integers(10, 22, 4), sa, oa)
            hb = f.make_header(rng.integers(10, 22, 4), sb, ob)
            ca = rng.integers(0, 1 << f.element_width, (4, 32))
            cb = rng.integers(0, 1 << f.element_width, (4, 32))
            ca[:, ::3] = f.elements[0].negative_zero_code
            cb[:, ::5] = f.elements[0].negative_zero_code
            check(f, ha, ca, f, hb, cb)


def random_blocks(fmt: BlockFormat, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h = rng.integers(0, 1 << fmt.header_bits, n)
    if fmt.scale.width == 8 and fmt.header_bits == 8:
        h = np.where(rng.random(n) < 0.8, rng.integers(100, 150, n), h)  # mostly moderate scales
    return h.astype(np.uint16), rng.integers(0, 1 << fmt.element_width, (n, fmt.k)).astype(np.uint16)


PAIRS = [
    ("nxfp4", "mxfp8_e4m3"),
    ("mxfp8_e4m3", "mxfp8_e4m3"),
    ("mxfp8_e5m2", "mxfp8_e5m2"),
    ("mxint8", "mxfp6_e2m3"),
    ("nxfp5", "nxfp6"),
    ("mxfp4_e2m1", "mxint8"),
    ("nxfp6", "mxfp8_e5m2"),
]


@pytest.mark.parametrize("na,nb", PAIRS)
def test_random_block_pairs(na: str, nb: str) -> None:
    rng = np.random.default_rng([SEED, PAIRS.index((na, nb))])
    print(f"seed={SEED} pair={na}x{nb}")
    fa, fb = PRESETS[na], PRESETS[nb]
    ha, ca = random_blocks(fa, 60, rng)
    hb, cb = random_blocks(fb, 60, rng)
    check(fa, ha, ca, fb, hb, cb)


def test_random_custom_formats() -> None:
    rng = np.random.default_rng(SEED + 1)
    print(f"seed={SEED + 1}")
    formats = [
        ("elem=E1M6|E2M5|E3M4,scale=UE6M2,cr=pm,k=8", "elem=E5M6,scale=UE4M3,k=8"),
        ("elem=INT16,scale=UE8M0,k=4", "elem=E5M2,scale=UE5M3,k=4,cr=pm"),
        ("elem=E2M1,cr=0.3125,k=16", "elem=E3M0|E1M2,cr=3.75|-0.625|96;7|-7|9,k=16"),
        ("elem=E5M6,scale=UE4M3,k=32", "elem=E4M3,scale=UE4M3,k=32"),  # 61-bit sum, 66-bit scaled result
    ]
    for sa, sb in formats:
        fa, fb = parse_format(sa), parse_format(sb)
        ha, ca = random_blocks(fa, 40, rng)
        hb, cb = random_blocks(fb, 40, rng)
        check(fa, ha, ca, fb, hb, cb)
        # largest elements under every scale with nano-mantissa all ones: the widest scaled sums
        nano = (1 << fa.scale.mbits) - 1, (1 << fb.scale.mbits) - 1
        ha = np.arange(fa.scale.max_code - 2 * nano[0] - 1, fa.scale.max_code + 1)
        hb = np.arange(fb.scale.max_code - 2 * nano[1] - 1, fb.scale.max_code + 1)[: ha.size]
        ha = ha[: hb.size]
        check(fa, ha, np.full((ha.size, fa.k), max_code(fa)), fb, hb, np.full((ha.size, fb.k), max_code(fb)))


def test_batch_broadcast_and_argument_errors() -> None:
    f = PRESETS["mxfp4_e2m1"]
    rng = np.random.default_rng(SEED)
    ca = rng.integers(0, 16, (3, 5, 32))
    cb = rng.integers(0, 16, (5, 32))
    ha = rng.integers(120, 130, (3, 5))
    hb = rng.integers(120, 130, (5,))
    got = block_dot_bits(f, ha, ca, f, hb, cb)
    assert got.shape == (3, 5)
    for i in range(3):
        np.testing.assert_array_equal(got[i], block_dot_bits(f, ha[i], ca[i], f, hb, cb))
    with pytest.raises(ValueError, match="equal block sizes"):
        block_dot_bits(f, ha, ca, parse_format("mxfp4_e2m1,k=16"), hb, cb[:, :16])
    with pytest.raises(ValueError, match=r"\(\.\.\., 32\)"):
        block_dot_bits(f, ha, ca[..., :16], f, hb, cb)
    with pytest.raises(ValueError, match="headers"):
        block_dot_bits(f, np.array([256]), cb[:1], f, hb[:1], cb[:1])


# --- exact_sum_bits ------------------------------------------------------------------------------


def ref_accumulator(fa: BlockFormat, fb: BlockFormat) -> tuple[int, int]:
    """(lsb exponent, signed width), from the element tables by brute force over value pairs."""
    def finite(f):
        vals = set()
        for c in range(len(f.elements)):
            for o in range(max(len(f.recycling[0]) if f.recycling else 0, 1)):
                for code in range(1 << f.element_width):
                    v = ref_element(f, c, o, code)
                    if v[0] == "num" and v[2] != 0:
                        vals.add((-1) ** v[1] * v[2])
        return vals

    va, vb = finite(fa), finite(fb)
    lsb = min(Fraction(abs(x.numerator) & -abs(x.numerator), x.denominator) for x in va) * min(
        Fraction(abs(x.numerator) & -abs(x.numerator), x.denominator) for x in vb)
    products = [x * y / lsb for x in (min(va), max(va)) for y in (min(vb), max(vb))]
    hi, lo = max(products) * fa.k, min(products) * fa.k
    assert hi.denominator == 1 and lo.denominator == 1
    width = 2
    while not (-(2 ** (width - 1)) <= lo and hi <= 2 ** (width - 1) - 1):
        width += 1
    return lsb.numerator.bit_length() - lsb.denominator.bit_length(), width


@pytest.mark.parametrize("na,nb", list(itertools.combinations_with_replacement(PRESETS, 2)))
def test_exact_sum_bits_presets(na: str, nb: str) -> None:
    fa, fb = PRESETS[na], PRESETS[nb]
    lsb, width = ref_accumulator(fa, fb)
    assert exact_sum_lsb_exponent(fa, fb) == lsb
    assert exact_sum_bits(fa, fb) == width == exact_sum_bits(fb, fa)


def test_exact_sum_bits_hand_values() -> None:
    # E2M1: levels up to 6 in steps of 0.5 -> 12 units; 12*12*32 = 4608 < 2**13 -> 13 bits + sign
    assert exact_sum_bits(PRESETS["mxfp4_e2m1"], PRESETS["mxfp4_e2m1"]) == 14
    # INT8: -2 = -128 units of 2**-6; (-128)**2 * 32 = 2**19 -> needs 21 bits signed
    assert exact_sum_bits(PRESETS["mxint8"], PRESETS["mxint8"]) == 21
    # E5M2: 57344 = 7 * 2**13, lsb 2**-16 -> 7 * 2**29 units; 49 * 2**58 * 32 -> 69 bits + sign
    assert exact_sum_bits(E5, E5) == 70 and exact_sum_lsb_exponent(E5, E5) == -32
    # E2M1 with R = 8 times INT4 (-2 .. 1.75), k = 4: sums span -512 .. 448 units -> exactly 10 bits
    assert exact_sum_bits(parse_format("elem=E2M1,cr=8,k=4"), parse_format("elem=INT4,k=4")) == 10
    for sa, sb in [("elem=E2M1,cr=7,k=4", "elem=INT4,k=4"), ("elem=E3M0,cr=-12,k=64", "elem=E1M2,cr=-4,k=64")]:
        fa, fb = parse_format(sa), parse_format(sb)
        assert (exact_sum_lsb_exponent(fa, fb), exact_sum_bits(fa, fb)) == ref_accumulator(fa, fb)


# --- accumulation ---------------------------------------------------------------------------------


def loop_accumulate(results: np.ndarray, last: np.ndarray) -> list[int]:
    out, acc = [], np.float32(0.0)
    for r, end in zip(results.view(np.float32), last, strict=True):
        acc = np.float32(acc + r)
        if end:
            out.append(0x7FC00000 if np.isnan(acc) else int(np.array([acc]).view(np.uint32)[0]))
            acc = np.float32(0.0)
    return out


def test_accumulate_matches_float32_loop() -> None:
    rng = np.random.default_rng(SEED)
    print(f"seed={SEED}")
    n = 3000
    vals = (rng.standard_normal(n) * np.exp2(rng.integers(-30, 30, n))).astype(np.float32)
    bits = vals.view(np.uint32).copy()
    special = rng.integers(0, n, 40)
    bits[special[:10]] = 0x80000000  # -0
    bits[special[10:14]] = 0x7FC12345  # NaN payloads
    bits[special[14:18]] = 0xFFC00001
    bits[special[18:24]] = PINF
    bits[special[24:30]] = NINF
    bits[special[30:]] = 0x00000001  # subnormals
    last = rng.random(n) < 0.05
    last[-1] = True
    last[:3] = [True, False, True]  # a one-block reduction first
    with np.errstate(invalid="ignore", over="ignore"):
        want = loop_accumulate(bits, last)
        got = dot_accumulate_bits(bits, last)
    assert got.tolist() == want


def test_accumulate_details() -> None:
    with np.errstate(invalid="ignore"):
        # a lone -0 block result accumulates to +0 (start +0.0)
        assert dot_accumulate_bits(np.array([0x80000000], np.uint32), [True]).tolist() == [0]
        # order matters: (2**24 + 1) + 1 != 2**24 + (1 + 1)
        big, one = np.float32(2**24).view(np.uint32), np.float32(1).view(np.uint32)
        assert dot_accumulate_bits(np.array([big, one, one], np.uint32), [0, 0, 1]).view(np.float32)[0] == 2**24
        assert dot_accumulate_bits(np.array([one, one, big], np.uint32), [0, 0, 1]).view(np.float32)[0] == 2**24 + 2
        assert dot_accumulate_bits(np.array([PINF, NINF], np.uint32), [0, 1]).tolist() == [NAN32]
        assert dot_accumulate_bits(np.array([0xFFFFFFFF, one], np.uint32), [0, 1]).tolist() == [NAN32]
        assert dot_accumulate_bits(np.zeros(0, np.uint32), np.zeros(0, bool)).tolist() == []
    with pytest.raises(ValueError, match="incomplete"):
        dot_accumulate_bits(np.array([one, one], np.uint32), [1, 0])
    with pytest.raises(ValueError, match="equal length"):
        dot_accumulate_bits(np.array([one, one], np.uint32), [1])
    with pytest.raises(TypeError, match="uint32"):
        accumulate_bits(np.ones((2, 3), np.float32))


def test_dot_bits_over_blocks() -> None:
    rng = np.random.default_rng(SEED + 2)
    print(f"seed={SEED + 2}")
    fa, fb = PRESETS["nxfp4"], PRESETS["mxfp8_e4m3"]
    ha, ca = random_blocks(fa, 4 * 6, rng)
    hb, cb = random_blocks(fb, 4 * 6, rng)
    ha, ca, hb, cb = ha.reshape(4, 6), ca.reshape(4, 6, 32), hb.reshape(4, 6), cb.reshape(4, 6, 32)
    got = dot_bits(fa, ha, ca, fb, hb, cb)
    assert got.shape == (4,)
    for i in range(4):
        blocks = np.array([ref_block_dot(fa, int(ha[i, j]), ca[i, j], fb, int(hb[i, j]), cb[i, j]) for j in range(6)],
                          np.uint32)
        with np.errstate(invalid="ignore", over="ignore"):
            assert int(got[i]) == loop_accumulate(blocks, np.arange(6) == 5)[0]
