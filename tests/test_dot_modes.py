"""Accumulation modes of the golden dot product (spec 8.1) against a Fraction reference.

``fp32``, ``fused`` and ``exact`` (:func:`nxfp_hw.golden.dot.reduce_bits`) are checked against
reductions written straight from the spec with exact Fractions; the ``exact`` window
(:func:`exact_window`) is checked by brute force over every element and scale value of small
formats. Seeded: the seed is printed, ``NXFP_SEED`` overrides it.
"""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import pytest
from test_decode import ref_element, ref_header, ref_round, ref_scale
from test_dot import NAN32, NINF, PINF, ref_block_dot

from nxfp_hw.formats import PRESETS, BlockFormat, parse_format
from nxfp_hw.golden.dot import (
    ACC_MODES,
    DEFAULT_GUARD_BITS,
    block_dot_bits,
    block_exact_values,
    dot_accumulate_bits,
    exact_block_bound,
    exact_sum_lsb_exponent,
    exact_window,
    reduce_bits,
    scale_bounds,
)

SEED = int(os.environ.get("NXFP_SEED", "20240611"))
E4, E5 = PRESETS["mxfp8_e4m3"], PRESETS["mxfp8_e5m2"]


# --- independent reference ------------------------------------------------------------------------
# A block value is ("nan",) | ("inf", sign) | ("num", Fraction).
def ref_block_value(fa: BlockFormat, ha: int, ca, fb: BlockFormat, hb: int, cb) -> tuple:
    """Exact ``S * Xa * Xb`` of one block pair with spec 8's NaN/Inf rules, from the spec text."""
    sa, sel_a, opt_a = ref_header(fa, ha)
    sb, sel_b, opt_b = ref_header(fb, hb)
    xa, xb = ref_scale(fa, sa), ref_scale(fb, sb)
    if xa is None or xb is None:
        return ("nan",)
    total, infs, nan = Fraction(0), set(), False
    for a_code, b_code in zip(ca, cb, strict=True):
        a, b = ref_element(fa, sel_a, opt_a, int(a_code)), ref_element(fb, sel_b, opt_b, int(b_code))
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
        return ("nan",)
    if infs:
        return ("inf", infs.pop())
    return ("num", total * xa * xb)


def ref_rne(x: Fraction) -> int:
    """fp32 bits of a non-zero exact value (one RNE, overflow to Inf, underflow keeps the sign); 0 -> +0.0."""
    return 0 if x == 0 else ref_round(("num", int(x < 0), abs(x)), "fp32")


def bits_value(bits: int) -> Fraction:
    """Exact value of finite fp32 bits."""
    e, f = (bits >> 23) & 0xFF, bits & 0x7FFFFF
    frac = Fraction(f, 1 << 23)
    mag = frac * Fraction(2) ** -126 if e == 0 else (1 + frac) * Fraction(2) ** (e - 127)
    return -mag if bits >> 31 else mag


def ref_reduce(mode: str, fa: BlockFormat, ha, ca, fb: BlockFormat, hb, cb, last, guard_bits: int) -> list[int]:
    """Spec 8 / 8.1, one block at a time: float32 adds (fp32), exact add + RNE (fused), Fraction sum (exact)."""
    lsb, width = exact_window(fa, fb, guard_bits)
    unit = Fraction(2) ** lsb
    out: list[int] = []
    acc32, acc = np.float32(0.0), 0  # fp32 mode / fused mode (bits)
    total, flags, left = Fraction(0), set(), False  # exact mode
    for i in range(len(last)):
        v = ref_block_value(fa, int(ha[i]), ca[i], fb, int(hb[i]), cb[i])
        if mode == "fp32":
            r = np.array([ref_block_dot(fa, int(ha[i]), ca[i], fb, int(hb[i]), cb[i])], np.uint32).view(np.float32)[0]
            with np.errstate(invalid="ignore", over="ignore"):
                acc32 = np.float32(acc32 + r)
        elif mode == "fused":
            acc_nan = (acc & 0x7FFFFFFF) > 0x7F800000
            acc_inf = (acc & 0x7FFFFFFF) == 0x7F800000
            if acc_nan or v[0] == "nan":
                acc = NAN32
            elif v[0] == "inf":
                acc = NAN32 if acc_inf and (acc >> 31) != v[1] else (NINF if v[1] else PINF)
            elif not acc_inf:
                acc = ref_rne(bits_value(acc) + v[1])
        else:
            if v[0] == "num":
                total += v[1]
                units = total / unit
                assert units.denominator == 1, "a block value is not a multiple of the window LSB"
                left |= not -(2 ** (width - 1)) <= units <= 2 ** (width - 1) - 1
            else:
                flags.add(v[0] if v[0] == "nan" else f"inf{v[1]}")
        if last[i]:
            if mode == "fp32":
                out.append(NAN32 if np.isnan(acc32) else int(np.array([acc32]).view(np.uint32)[0]))
                acc32 = np.float32(0.0)
            elif mode == "fused":
                out.append(acc)
                acc = 0
            else:
                if left or "nan" in flags or {"inf0", "inf1"} <= flags:
                    out.append(NAN32)
                elif flags:
                    out.append(NINF if "inf1" in flags else PINF)
                else:
                    out.append(ref_rne(total))
                total, flags, left = Fraction(0), set(), False
    return out


def show(bits) -> str:
    return ", ".join(f"{int(b):#010x} ({np.array([b], np.uint32).view(np.float32)[0]!r})" for b in bits)


def check_modes(fa, ha, ca, fb, hb, cb, last, guard_bits: int = DEFAULT_GUARD_BITS, modes=ACC_MODES) -> dict:
    ha, hb = np.asarray(ha, np.uint16), np.asarray(hb, np.uint16)
    ca, cb = np.asarray(ca, np.uint16), np.asarray(cb, np.uint16)
    last = np.asarray(last, bool)
    got = {}
    for mode in modes:
        g = reduce_bits(fa, ha, ca, fb, hb, cb, last, mode=mode, guard_bits=guard_bits)
        want = ref_reduce(mode, fa, ha, ca, fb, hb, cb, last, guard_bits)
        assert g.dtype == np.uint32 and g.shape == (int(last.sum()),)
        bad = np.flatnonzero(g != np.array(want, np.uint32))
        assert bad.size == 0, (f"mode {mode}, guard bits {guard_bits}: reduction {bad[0]} got {show(g[bad[:1]])}, "
                               f"want {show([want[bad[0]]])} ({bad.size} of {g.size} differ)")
        got[mode] = g
    return got


# --- building blocks with chosen exact values ---------------------------------------------------------
def pow2_code(fmt: BlockFormat, e: int, negative: bool = False) -> int:
    """Code of ``+-2**e`` (candidate 0, no recycling)."""
    table = fmt.element_table(0, 0)
    hits = np.flatnonzero(table == (-(2.0**e) if negative else 2.0**e))
    assert hits.size, f"{'-' if negative else ''}2**{e} is not an element of {fmt}"
    return int(hits[0])


def one_header(fmt: BlockFormat, e: int = 0) -> int:
    """Header with scale ``2**e`` (selector 0, option 0)."""
    code = int(np.flatnonzero(fmt.scale.code_values() == 2.0**e)[0])
    return int(fmt.make_header(code))


def stream_of(fmt: BlockFormat, blocks: list[tuple[int, list[tuple[int, bool]]]]) -> tuple[np.ndarray, ...]:
    """``fmt x fmt`` blocks with chosen exact values: each block ``(s, terms)`` has the scale product
    ``2**s`` and one product ``+-2**e`` per term ``(e, negative)`` (powers of two of candidate 0)."""
    table = fmt.element_table(0, 0)
    exps = sorted(int(np.log2(v)) for v in table if np.isfinite(v) and v > 0 and 2.0 ** int(np.log2(v)) == v)
    n, k = len(blocks), fmt.k
    ha, hb = np.zeros(n, np.uint16), np.zeros(n, np.uint16)
    ca, cb = np.zeros((n, k), np.uint16), np.zeros((n, k), np.uint16)
    for i, (s, terms) in enumerate(blocks):
        ha[i], hb[i] = one_header(fmt, s // 2), one_header(fmt, s - s // 2)
        for lane, (e, neg) in enumerate(terms):
            ea = next(x for x in exps if e - s - x in exps)
            ca[i, lane], cb[i, lane] = pow2_code(fmt, ea, neg), pow2_code(fmt, e - s - ea)
    return ha, ca, hb, cb


# --- exact_window ----------------------------------------------------------------------------------
def ref_window(fa: BlockFormat, fb: BlockFormat, guard_bits: int) -> tuple[int, int, Fraction]:
    """(lsb exponent, width, largest finite |S * Xa * Xb|) by brute force over element and scale values."""

    def elements(f: BlockFormat) -> set[Fraction]:
        vals = set()
        for c in range(len(f.elements)):
            for o in range(max(len(f.recycling[0]) if f.recycling else 0, 1)):
                for code in range(1 << f.element_width):
                    v = ref_element(f, c, o, code)
                    if v[0] == "num" and v[2] != 0:
                        vals.add((-1) ** v[1] * v[2])
        return vals

    def scales(f: BlockFormat) -> list[tuple[int, int]]:
        """(integer significand with mbits + 1 bits, exponent) of every non-NaN scale."""
        out = []
        for code in range((1 << f.scale.width) - 1):
            x = ref_scale(f, code)
            top = x.numerator.bit_length() - x.denominator.bit_length()  # floor(log2 x) or one more
            top -= Fraction(2) ** top > x
            e = top - f.scale.mbits
            man = x / Fraction(2) ** e
            assert man.denominator == 1
            out.append((int(man), e))
        return out

    def valuation(x: Fraction) -> int:
        n, d = abs(x.numerator), x.denominator
        return (n & -n).bit_length() - d.bit_length()

    va, vb = elements(fa), elements(fb)
    sa, sb = scales(fa), scales(fb)
    prods = {x * y for x in va for y in vb}
    xs_a = {Fraction(m) * Fraction(2) ** e for m, e in sa}
    xs_b = {Fraction(m) * Fraction(2) ** e for m, e in sb}
    lsb = min(valuation(p) for p in prods) + min(valuation(x) for x in xs_a) + min(valuation(x) for x in xs_b)
    elem_lsb = min(valuation(p) for p in prods)
    max_s = fa.k * max(abs(p) for p in prods) / Fraction(2) ** elem_lsb
    assert max_s.denominator == 1
    span = (max(e for _, e in sa) - min(e for _, e in sa)) + (max(e for _, e in sb) - min(e for _, e in sb))
    bound = (int(max_s) * max(m for m, _ in sa) * max(m for m, _ in sb)) << span
    actual = fa.k * max(abs(p) for p in prods) * max(xs_a) * max(xs_b)
    return lsb, bound.bit_length() + guard_bits + 1, actual


SMALL_PAIRS = [
    ("elem=E2M1,scale=UE2M1,k=2", "elem=INT4,scale=UE3M0,k=2"),
    ("elem=E3M0|E1M2,cr=3.75|-0.625;7|-7,scale=UE2M2,k=4", "elem=E2M1,scale=UE1M1,k=4"),
    ("elem=E2M2,scale=UE3M1,k=8,cr=pm", "elem=E3M2,scale=UE2M0,k=8"),
    ("nxfp4", "nxfp4"),
    ("mxfp4_e2m1", "mxint8"),
]


@pytest.mark.parametrize("sa,sb", SMALL_PAIRS)
def test_exact_window_brute_force(sa: str, sb: str) -> None:
    fa, fb = (PRESETS[s] if s in PRESETS else parse_format(s) for s in (sa, sb))
    for g in (0, 1, 3, 16):
        lsb, width, actual = ref_window(fa, fb, g)
        assert exact_window(fa, fb, g) == (lsb, width)
        assert exact_window(fa, fb, g) == exact_window(fb, fa, g)
        assert actual <= exact_block_bound(fa, fb) * Fraction(2) ** lsb  # the bound covers every block
    # 2**G blocks of the largest value of either sign stay inside the window (G = 0..3)
    ha, ca, hb, cb = _max_blocks(fa, fb)
    big = block_exact_values(fa, ha, ca, fb, hb, cb)
    assert max(abs(int(x)) for x in big.mag_signed) * Fraction(2) ** big.lsb_exponent == actual
    for g in range(4):
        ha, ca, hb, cb = (np.repeat(x, 1 << g, axis=0) for x in _max_blocks(fa, fb))
        last = np.zeros(ha.size, bool)
        last[(1 << g) - 1::1 << g] = True
        got = reduce_bits(fa, ha, ca, fb, hb, cb, last, mode="exact", guard_bits=g)
        assert NAN32 not in got.tolist(), g


def _max_blocks(fa: BlockFormat, fb: BlockFormat) -> tuple[np.ndarray, ...]:
    """Two blocks: the largest finite |value| (first) and its most negative counterpart, top scales."""
    best = []
    for neg in (False, True):
        cands = []
        for sel_a in range(len(fa.elements)):
            for sel_b in range(len(fb.elements)):
                for ra in range(max(fa.recycle_options, 1)):
                    for rb in range(max(fb.recycle_options, 1)):
                        ta, tb = fa.element_table(sel_a, ra), fb.element_table(sel_b, rb)
                        ta, tb = np.where(np.isfinite(ta), ta, 0), np.where(np.isfinite(tb), tb, 0)
                        prod = ta[:, None] * tb[None, :]
                        i, j = np.unravel_index(np.argmin(prod) if neg else np.argmax(prod), prod.shape)
                        cands.append((abs(prod[i, j]), fa.make_header(fa.scale.max_code, sel_a, ra), i,
                                      fb.make_header(fb.scale.max_code, sel_b, rb), j))
        best.append(max(cands, key=lambda c: c[0]))
    k = fa.k
    return (np.array([b[1] for b in best], np.uint16), np.array([[b[2]] * k for b in best], np.uint16),
            np.array([b[3] for b in best], np.uint16), np.array([[b[4]] * k for b in best], np.uint16))


def test_exact_window_presets() -> None:
    # E8M0: exponents -127..127 on both sides, scale significand 1 -> span 508; max|S| from exact_sum_bits
    for name, f in PRESETS.items():
        sb = scale_bounds(f)
        assert sb.min_exp == -f.scale.bias - f.scale.mbits, name
        assert sb.max_exp == (f.scale.max_code >> f.scale.mbits) - f.scale.bias - f.scale.mbits, name
        assert sb.max_man == ((1 << (f.scale.mbits + 1)) - 1 if f.scale.mbits else 1), name
    assert exact_window(E4, E4) == (-18 - 254, 41 + 508 + 16 + 1)
    assert exact_window(E4, E4, 0).width == 41 + 508 + 1
    nx = PRESETS["nxfp4"]  # UE5M1: exponents -16..15, significand <= 3; E2M1 x E2M1 x 32 -> 4608 units (13 bits)
    assert exact_window(nx, nx) == (exact_sum_lsb_exponent(nx, nx) - 32, (4608 * 9 << 62).bit_length() + 17)
    with pytest.raises(ValueError, match="guard_bits"):
        exact_window(nx, nx, -1)
    with pytest.raises(ValueError, match="guard_bits"):
        exact_window(nx, nx, True)


def test_exact_window_matches_rtl() -> None:
    """The RTL computes the window itself (rtl/dot.py): both must give the same numbers."""
    rtl = pytest.importorskip("nxfp_hw.rtl.dot")
    if not hasattr(rtl, "dot_exact_window"):
        pytest.skip("the RTL has no dot_exact_window")
    pairs = [(PRESETS[a], PRESETS[b]) for a, b in [("mxfp8_e4m3", "mxfp8_e5m2"), ("nxfp4", "nxfp6"),
                                                    ("mxint8", "nxfp5"), ("mxfp4_e2m1", "mxfp4_e2m1")]]
    pairs += [tuple(parse_format(s) for s in p) for p in SMALL_PAIRS if p[0] not in PRESETS]
    for fa, fb in pairs:
        for g in (0, 2, 16):
            w = rtl.dot_exact_window(fa, fb, g)
            assert (w.lsb_exponent, w.width) == exact_window(fa, fb, g), (fa, fb, g)


# --- block_exact_values -----------------------------------------------------------------------------
def test_block_exact_values_against_reference() -> None:
    rng = np.random.default_rng(SEED)
    print(f"seed={SEED} (NXFP_SEED overrides)")
    for fa, fb in [(E4, E5), (PRESETS["nxfp5"], PRESETS["nxfp6"]), (PRESETS["mxint8"], PRESETS["mxfp4_e2m1"])]:
        ha, ca = random_stream_blocks(fa, 80, rng)
        hb, cb = random_stream_blocks(fb, 80, rng)
        v = block_exact_values(fa, ha, ca, fb, hb, cb)
        assert v.lsb_exponent == exact_window(fa, fb).lsb_exponent
        for i in range(ha.size):
            want = ref_block_value(fa, int(ha[i]), ca[i], fb, int(hb[i]), cb[i])
            flags = (bool(v.nan[i]), bool(v.pinf[i]), bool(v.ninf[i]))
            if want[0] == "nan":
                assert flags == (True, False, False) and v.mag_signed[i] == 0
            elif want[0] == "inf":
                assert flags == (False, not want[1], bool(want[1])) and v.mag_signed[i] == 0
            else:
                assert flags == (False, False, False)
                assert int(v.mag_signed[i]) * Fraction(2) ** v.lsb_exponent == want[1], i
    # +Inf and -Inf in one block: nan only
    pinf, ninf, one = 0x7C, 0xFC, pow2_code(E5, 0)
    v = block_exact_values(E5, np.array([127]), np.array([[pinf, ninf] + [0] * 30]), E5, np.array([127]),
                           np.array([[one, one] + [0] * 30]))
    assert (bool(v.nan[0]), bool(v.pinf[0]), bool(v.ninf[0])) == (True, False, False)


# --- directed cases -----------------------------------------------------------------------------------
def modes_of(fmt: BlockFormat, blocks, last=None, guard_bits: int = DEFAULT_GUARD_BITS) -> dict[str, list[int]]:
    ha, ca, hb, cb = stream_of(fmt, blocks)
    if last is None:
        last = np.zeros(len(blocks), bool)
        last[-1] = True
    got = check_modes(fmt, ha, ca, fmt, hb, cb, last, guard_bits)
    return {m: g.tolist() for m, g in got.items()}


def f32(x: float) -> int:
    return int(np.array([x], np.float32).view(np.uint32)[0])


def test_directed_modes_differ() -> None:
    """Cases where the modes must give different bits (E4M3 x E4M3: products 2**-18 .. 2**16 in one block)."""
    # big + small - big: fp32 and fused lose the small block, exact keeps it
    r = modes_of(E4, [(0, [(8, False)]), (-30, [(-22, False)]), (0, [(8, True)])])
    assert r == {"fp32": [0], "fused": [0], "exact": [f32(2.0**-22)]}
    # cancellation in a block's tail: r = RNE(-1 + 2**-25) = -1 in fp32; fused keeps the tail
    r = modes_of(E4, [(0, [(0, False)]), (-8, [(0, True), (-25, False)])])
    assert r == {"fp32": [0], "fused": [f32(2.0**-25)], "exact": [f32(2.0**-25)]}
    # block rounding tie in fp32: [2**-24], [1 + 2**-24]: fp32 rounds the block down to 1, then 1 + 2**-24 -> 1
    r = modes_of(E4, [(-24, [(-24, False)]), (-8, [(0, False), (-24, False)])])
    assert r == {"fp32": [f32(1.0)], "fused": [f32(1 + 2.0**-23)], "exact": [f32(1 + 2.0**-23)]}
    # accumulation ties in fp32 and fused (down to even twice); exact adds the two halves
    r = modes_of(E4, [(0, [(0, False)]), (-24, [(-24, False)]), (-24, [(-24, False)])])
    assert r == {"fp32": [f32(1.0)], "fused": [f32(1.0)], "exact": [f32(1 + 2.0**-23)]}
    # final rounding tie in exact: 1 + 2**-23 + 2**-24 (odd below) -> up to 1 + 2**-22
    r = modes_of(E4, [(0, [(0, False)]), (-23, [(-23, False)]), (-25, [(-25, False)]), (-25, [(-25, False)])])
    assert r == {"fp32": [f32(1 + 2.0**-23)], "fused": [f32(1 + 2.0**-23)], "exact": [f32(1 + 2.0**-22)]}
    # a tie only fused sees: [8], [-7 + 3 * 2**-24] (fp32 rounds the block to -7), [-2**-24]
    r = modes_of(E4, [(0, [(3, False)]), (-6, [(2, True), (1, True), (0, True), (-23, False), (-24, False)]),
                      (-24, [(-24, True)])])
    assert r == {"fp32": [f32(1 - 2.0**-24)], "fused": [f32(1 + 2.0**-22)], "exact": [f32(1 + 2.0**-23)]}
    # subnormal ties: [2**-149], [2**-150], [-2**-150]: fused rounds 1.5 ulp up to 2 ulp, twice
    r = modes_of(E4, [(-149, [(-149, False)]), (-150, [(-150, False)]), (-150, [(-150, True)])])
    assert r == {"fp32": [1], "fused": [2], "exact": [1]}


def test_directed_overflow_and_zero_signs() -> None:
    big = f32(2.0**127)
    # a block above the fp32 maximum, brought back by a later negative block
    r = modes_of(E4, [(120, [(128, False)]), (120, [(127, True)])])
    assert r == {"fp32": [PINF], "fused": [PINF], "exact": [big]}
    # ... by an earlier one: fused survives too
    r = modes_of(E4, [(120, [(127, True)]), (120, [(128, False)])])
    assert r == {"fp32": [PINF], "fused": [big], "exact": [big]}
    # ... and two half-ulp blocks after it: ties in fused, exact adds them
    r = modes_of(E4, [(120, [(127, True)]), (120, [(128, False)]), (100, [(103, False)]), (100, [(103, False)])])
    assert r == {"fp32": [PINF], "fused": [big], "exact": [f32(2.0**127 + 2.0**104)]}
    # a negative value that rounds to zero: fp32 adds -0 to +0 (= +0); fused and exact round once (-0)
    r = modes_of(E4, [(-160, [(-160, True)])])
    assert r == {"fp32": [0], "fused": [0x80000000], "exact": [0x80000000]}
    # then an exact-zero block: fused -0 + (+0) = +0; exact still sums to -2**-160 -> -0
    ha, ca, hb, cb = stream_of(E4, [(-160, [(-160, True)]), (0, [(0, False)])])
    ca[1] = 0  # all zero: exact zero block value
    got = check_modes(E4, ha, ca, E4, hb, cb, [False, True])
    assert {m: g.tolist() for m, g in got.items()} == {"fp32": [0], "fused": [0], "exact": [0x80000000]}
    # exact cancellation of non-zero values is +0 in every mode
    assert modes_of(E4, [(0, [(0, True)]), (0, [(0, False)])]) == {m: [0] for m in ACC_MODES}
    # Inf then a finite block / NaN / Inf of the other sign, per mode
    pinf, ninf, one = 0x7C, 0xFC, pow2_code(E5, 0)
    z = [0] * 31
    h = np.full(2, one_header(E5), np.uint16)
    for second, want in [([one] + z, PINF), ([0x7E] + z, NAN32), ([ninf] + z, NAN32), ([pinf] + z, PINF)]:
        got = check_modes(E5, h, np.array([[pinf] + z, second]), E5, h, np.array([[one] + z, [one] + z]),
                          [False, True])
        assert all(g.tolist() == [want] for g in got.values()), (second[0], got)
    # overflow in fp32 / fused, then -Inf: Inf + -Inf = NaN there; exact has a finite sum and the -Inf flag
    hb_top = np.array([E5.make_header(E5.scale.max_code)] * 2, np.uint16)
    got = check_modes(E5, hb_top, np.array([[0x7B] * 32, [ninf] + z]), E5, hb_top,
                      np.array([[0x7B] * 32, [one] + z]), [False, True])
    assert {m: g.tolist() for m, g in got.items()} == {"fp32": [NAN32], "fused": [NAN32], "exact": [NINF]}


def test_exact_window_overflow() -> None:
    """A prefix sum outside the window is NaN, even when later blocks bring the sum back."""
    for fmt in (PRESETS["nxfp4"], E4):
        (ha, hb), (ca, cb) = _top_blocks(fmt)
        lsb, width = exact_window(fmt, fmt, 1)
        m = int(block_exact_values(fmt, ha[:1], ca[:1], fmt, hb[:1], cb[:1]).mag_signed[0])
        fit = ((1 << (width - 1)) - 1) // m
        assert 2 <= fit < 64
        for n, want_nan in [(fit, False), (fit + 1, True)]:
            idx = np.zeros(n, int)
            last = np.arange(n) == n - 1
            got = check_modes(fmt, ha[idx], ca[idx], fmt, hb[idx], cb[idx], last, guard_bits=1)
            assert (got["exact"][0] == NAN32) == want_nan, (fmt, n)
            # the fp32 modes do not have the window
            assert got["fp32"][0] != NAN32
        # out and back: fit + 1 positive blocks, then as many negative ones: exact NaN, the sum being 0
        idx = np.array([0] * (fit + 1) + [1] * (fit + 1))
        last = np.arange(idx.size) == idx.size - 1
        got = check_modes(fmt, ha[idx], ca[idx], fmt, hb[idx], cb[idx], last, guard_bits=1)
        assert got["exact"].tolist() == [NAN32]
        # the same with the negative blocks first (the window is two's complement: -2**(w-1) fits)
        idx = idx[::-1].copy()
        got = check_modes(fmt, ha[idx], ca[idx], fmt, hb[idx], cb[idx], last, guard_bits=1)
        assert got["exact"].tolist() == [NAN32]
        # with a large guard the same stream is exact
        assert reduce_bits(fmt, ha[idx], ca[idx], fmt, hb[idx], cb[idx], last, mode="exact").tolist() == [0]


def _top_blocks(fmt: BlockFormat) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Block pairs of the largest positive value and its exact negation (top scales, candidate 0)."""
    table = np.where(np.isfinite(fmt.element_table(0, 0)), fmt.element_table(0, 0), 0)
    top, neg = int(np.argmax(table)), int(np.flatnonzero(table == -table.max())[0])
    h = np.full(2, fmt.make_header(fmt.scale.max_code), np.uint16)
    k = fmt.k
    return (h, h), (np.array([[top] * k, [neg] * k], np.uint16), np.array([[top] * k] * 2, np.uint16))


# --- random --------------------------------------------------------------------------------------------
def random_stream_blocks(fmt: BlockFormat, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random blocks with nearby scales (accumulation interacts), some extreme scales and NaN headers."""
    centre = fmt.scale.bias << fmt.scale.mbits
    spread = 3 << fmt.scale.mbits
    scale = np.clip(centre + rng.integers(-spread, spread + 1, n), 0, fmt.scale.max_code)
    wild = rng.random(n) < 0.1
    scale = np.where(wild, rng.integers(0, fmt.scale.nan_code + 1, n), scale)
    sel = rng.integers(0, 1 << fmt.selector_bits, n) if fmt.selector_bits else np.zeros(n, int)
    rec = rng.integers(0, 1 << fmt.recycle_bits, n) if fmt.recycle_bits else np.zeros(n, int)
    codes = rng.integers(0, 1 << fmt.element_width, (n, fmt.k))
    codes = np.where(rng.random((n, fmt.k)) < rng.uniform(0.05, 1.0, (n, 1)), codes, 0)  # sparse blocks too
    return fmt.make_header(scale, sel, rec).astype(np.uint16), codes.astype(np.uint16)


def random_last(n: int, rng: np.random.Generator, longest: int = 6) -> np.ndarray:
    last = np.zeros(n, bool)
    pos = -1
    while pos < n - 1:
        pos = min(pos + int(rng.integers(1, longest + 1)), n - 1)
        last[pos] = True
    return last


PAIRS = [("mxfp8_e4m3", "mxfp8_e4m3"), ("mxfp8_e5m2", "mxfp8_e5m2"), ("nxfp4", "mxfp8_e4m3"), ("nxfp6", "nxfp5"),
         ("mxint8", "mxfp6_e2m3"), ("mxfp4_e2m1", "mxfp4_e2m1")]


@pytest.mark.parametrize("na,nb", PAIRS)
def test_random_modes(na: str, nb: str) -> None:
    seed = [SEED, PAIRS.index((na, nb))]
    print(f"seed={seed} (NXFP_SEED overrides the first part)")
    rng = np.random.default_rng(seed)
    fa, fb = PRESETS[na], PRESETS[nb]
    n = 90
    ha, ca = random_stream_blocks(fa, n, rng)
    hb, cb = random_stream_blocks(fb, n, rng)
    if na == nb and fa.elements[0].name.startswith("E"):  # near-cancelling neighbours: negate a's signs
        flip = rng.random(n) < 0.3
        sign = 1 << (fa.element_width - 1)
        ca[1:] = np.where(flip[1:, None], ca[:-1] ^ sign, ca[1:])
        ha[1:], hb[1:], cb[1:] = (np.where(flip[1:], ha[:-1], ha[1:]), np.where(flip[1:], hb[:-1], hb[1:]),
                                  np.where(flip[1:, None], cb[:-1], cb[1:]))
        ca[1:] = np.where(flip[1:, None] & (rng.random((n - 1, fa.k)) < 0.1), rng.integers(0, 1 << fa.element_width,
                                                                                          (n - 1, fa.k)), ca[1:])
    for g in (DEFAULT_GUARD_BITS, 1):
        got = check_modes(fa, ha, ca, fb, hb, cb, random_last(n, rng), guard_bits=g)
    assert got["fp32"].size > 10


def large_codes(fmt: BlockFormat, n: int, rng: np.random.Generator) -> np.ndarray:
    """Random codes of large magnitude, mostly positive (sums drift towards the window's edge); some random."""
    table = fmt.element_table(0, 0)
    fin = np.where(np.isfinite(table), table, 0)
    pos, neg = np.flatnonzero(fin >= fin.max() / 2), np.flatnonzero(fin <= fin.min() / 2)
    codes = np.where(rng.random((n, fmt.k)) < 0.95, rng.choice(pos, (n, fmt.k)), rng.choice(neg, (n, fmt.k)))
    return np.where(rng.random((n, fmt.k)) < 0.1, rng.integers(0, 1 << fmt.element_width, (n, fmt.k)),
                    codes).astype(np.uint16)


def test_random_small_guard_custom_formats() -> None:
    """Narrow scales and few guard bits: random reductions leave the window now and then."""
    rng = np.random.default_rng(SEED + 7)
    print(f"seed={SEED + 7} (NXFP_SEED overrides)")
    for sa, sb in [("elem=E2M1,scale=UE2M1,k=4", "elem=INT4,scale=UE3M0,k=4"),
                   ("elem=E3M2,scale=UE3M2,k=8,cr=pm", "elem=E2M3,scale=UE2M1,k=8")]:
        fa, fb = parse_format(sa), parse_format(sb)
        n = 120
        ha = fa.make_header(rng.integers(fa.scale.max_code - 1, fa.scale.max_code + 1, n)).astype(np.uint16)
        hb = fb.make_header(rng.integers(fb.scale.max_code - 1, fb.scale.max_code + 1, n)).astype(np.uint16)
        ca, cb = large_codes(fa, n, rng), large_codes(fb, n, rng)
        nans = 0
        for g in (0, 1, 2):
            got = check_modes(fa, ha, ca, fb, hb, cb, random_last(n, rng, 24), guard_bits=g)
            nans += int((got["exact"] == NAN32).sum())
        assert nans > 0


def test_fp32_mode_is_the_spec8_default() -> None:
    rng = np.random.default_rng(SEED + 3)
    print(f"seed={SEED + 3} (NXFP_SEED overrides)")
    fa, fb = PRESETS["nxfp4"], PRESETS["mxfp8_e5m2"]
    ha, ca = random_stream_blocks(fa, 300, rng)
    hb, cb = random_stream_blocks(fb, 300, rng)
    last = random_last(300, rng)
    want = dot_accumulate_bits(block_dot_bits(fa, ha, ca, fb, hb, cb), last)
    np.testing.assert_array_equal(reduce_bits(fa, ha, ca, fb, hb, cb, last), want)
    np.testing.assert_array_equal(reduce_bits(fa, ha, ca, fb, hb, cb, last, mode="fp32", guard_bits=0), want)
    # one-block reductions: every mode rounds once from the same exact value (only the zero sign may differ)
    ones = np.ones(300, bool)
    got = {m: reduce_bits(fa, ha, ca, fb, hb, cb, ones, mode=m) for m in ACC_MODES}
    np.testing.assert_array_equal(got["fused"], got["exact"])
    same = got["fp32"] == got["fused"]
    assert np.all(same | (got["fused"] == 0x80000000))


def test_reduce_bits_arguments() -> None:
    f = PRESETS["mxfp4_e2m1"]
    h, c = np.zeros(2, np.uint16), np.zeros((2, 32), np.uint16)
    with pytest.raises(ValueError, match="mode"):
        reduce_bits(f, h, c, f, h, c, [0, 1], mode="kahan")
    with pytest.raises(ValueError, match="guard_bits"):
        reduce_bits(f, h, c, f, h, c, [0, 1], mode="exact", guard_bits=-2)
    with pytest.raises(ValueError, match="incomplete"):
        reduce_bits(f, h, c, f, h, c, [1, 0], mode="fused")
    with pytest.raises(ValueError, match="ca must have shape"):
        reduce_bits(f, h, c[:, :16], f, h, c, [0, 1])
    with pytest.raises(ValueError, match="equal block sizes"):
        reduce_bits(f, h, c, parse_format("mxfp4_e2m1,k=16"), h, c[:, :16], [0, 1])
    for mode in ACC_MODES:
        assert reduce_bits(f, h[:0], c[:0], f, h[:0], c[:0], np.zeros(0, bool), mode=mode).tolist() == []


# --- the regression's directed mode cases (verif.vectors) ------------------------------------------------
@pytest.mark.parametrize("na,nb", [("mxfp8_e4m3", "mxfp8_e4m3"), ("mxfp8_e5m2", "mxint8"), ("mxfp4_e2m1", "nxfp6"),
                                   ("nxfp4", "nxfp4")])
def test_mode_directed_cases_single_out_their_mode(na: str, nb: str) -> None:
    from verif.vectors import dot_mode_directed, dot_vectors

    rng = np.random.default_rng(SEED)
    print(f"seed={SEED} (NXFP_SEED overrides)")
    fa, fb = PRESETS[na], PRESETS[nb]
    for g in (DEFAULT_GUARD_BITS, 1):
        s = dot_mode_directed(fa, fb, rng, guard_bits=g)
        ends = np.flatnonzero(s.last)
        got = {m: reduce_bits(fa, s.ha, s.ca, fb, s.hb, s.cb, s.last, mode=m, guard_bits=g) for m in ACC_MODES}
        seen = dict.fromkeys(ACC_MODES, 0)
        for i, e in enumerate(ends):
            name = s.case[e]
            mode = name.split(":")[0]
            if mode in ACC_MODES:
                mine = got[mode][i]
                assert all(mine != got[o][i] for o in ACC_MODES if o != mode), name
                seen[mode] += 1
        assert seen["exact"] >= 3
        if na.startswith("mx") and nb.startswith("mx"):
            assert seen["fp32"] >= 3 and seen["fused"] >= 2, seen
        window = [s.case[e] for e in ends if s.case[e].startswith("exact window")]
        if g == 1:
            assert any("leave it: NaN" in w for w in window) and any("just fit" in w for w in window)
            assert got["exact"][[s.case[e].endswith(": NaN (guard bits 1)") for e in ends]].tolist() == [NAN32] * sum(
                "NaN (guard bits 1)" in w for w in window)
        else:
            assert not window
        for mode in ACC_MODES:
            vs = dot_vectors(fa, fb, fa.k, s, rng, mode=mode, guard_bits=g)
            np.testing.assert_array_equal(vs.expected["result"], got[mode])
            assert vs.meta["accumulation"] == mode and vs.meta["guard_bits"] == g
            np.testing.assert_array_equal(vs.aux["mode_results"], np.stack([got[m] for m in ACC_MODES], axis=1))


def test_dot_mode_of_manifest() -> None:
    from verif.vectors import dot_mode_of

    assert dot_mode_of({}) == ("fp32", DEFAULT_GUARD_BITS)
    assert dot_mode_of({"config": {"accumulation": "fused"}}) == ("fused", DEFAULT_GUARD_BITS)
    assert dot_mode_of({"config": {"accumulation": "exact", "guard_bits": 3}}) == ("exact", 3)
    assert dot_mode_of({"accumulation": {"mode": "exact", "guard_bits": 2, "accumulator_width": 9},
                        "config": {"accumulation": "exact", "guard_bits": 2}}) == ("exact", 2)
    assert dot_mode_of({"accumulation": {"mode": "fp32", "guard_bits": None}}) == ("fp32", DEFAULT_GUARD_BITS)
    with pytest.raises(ValueError, match="kahan"):
        dot_mode_of({"config": {"accumulation": "kahan"}})


def test_near_cancel_reductions() -> None:
    from verif.vectors import dot_near_cancel

    rng = np.random.default_rng(SEED + 11)
    print(f"seed={SEED + 11} (NXFP_SEED overrides)")
    s = dot_near_cancel(E4, E4, 60, rng)
    assert int(s.last.sum()) == 60 and s.last[-1]
    check = {m: reduce_bits(E4, s.ha, s.ca, E4, s.hb, s.cb, s.last, mode=m) for m in ACC_MODES}
    assert (check["fp32"] != check["fused"]).any() and (check["fused"] != check["exact"]).any()
    got = check_modes(E4, s.ha[:40], s.ca[:40], E4, s.hb[:40], s.cb[:40], np.r_[s.last[:39], True])
    assert got["fp32"].size >= 10
