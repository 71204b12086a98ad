"""amaranth.sim tests of the block dot-product engine (nxfp_hw.rtl.dot) against the golden model (spec 8, 9).

Every stream is checked twice: the RTL against ``golden.dot`` (block results accumulated in
float32) and, for the directed cases, the golden block results against an independent
``fractions.Fraction`` reference built from the format value tables.
"""

from __future__ import annotations

import gc
import math
import os
from fractions import Fraction

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from nxfp_hw.formats import PRESETS, BlockFormat, parse_format
from nxfp_hw.golden.decode import NAN, element_parts
from nxfp_hw.golden.dot import block_dot_bits, block_exact_values, dot_accumulate_bits, exact_window, reduce_bits
from nxfp_hw.rtl.dot import ACC_MODES, POSITIONS, DotEngine, dot_exact_window

CANONICAL_NAN = 0x7FC00000


def _seed(default: int) -> int:
    seed = int(os.environ.get("NXFP_SEED", default))
    print(f"seed={seed} (set NXFP_SEED to override)")
    return seed


# --- independent reference: exact rationals, one RNE to binary32 --------------------------------
def _fraction_to_fp32(q: Fraction) -> int:
    """RNE binary32 bits of an exact rational (subnormals kept, overflow to Inf, zero -> +0)."""
    if q == 0:
        return 0
    sign = 0x80000000 if q < 0 else 0
    q = abs(q)
    e = q.numerator.bit_length() - q.denominator.bit_length()
    if Fraction(2) ** e > q:
        e -= 1
    e = max(e, -126)  # subnormal results share the exponent of the smallest normal
    scaled = q / Fraction(2) ** (e - 23)  # significand in units of the result's LSB
    n = math.floor(scaled)
    rem = scaled - n
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and n % 2):
        n += 1
    if n == 1 << 24:
        n, e = n >> 1, e + 1
    if e > 127:
        return sign | 0x7F800000
    if n < 1 << 23:  # subnormal (or rounded up to the smallest normal above)
        return sign | n
    return sign | ((e + 127) << 23) | (n - (1 << 23))


def _fraction_block_dot(fa: BlockFormat, ha: int, ca: np.ndarray, fb: BlockFormat, hb: int, cb: np.ndarray) -> int:
    def block(fmt: BlockFormat, h: int, codes: np.ndarray) -> tuple[list[float], Fraction | None]:
        scale_code, sel, rec = (int(x) for x in fmt.split_header(h))
        sel = min(sel, len(fmt.elements) - 1)
        rec = min(rec, max(fmt.recycle_options, 1) - 1)
        vals = [float(v) for v in fmt.element_table(sel, rec)[codes]]
        sv = float(fmt.scale.code_values()[scale_code])
        return vals, None if math.isnan(sv) else Fraction(sv)

    va, xa = block(fa, ha, ca)
    vb, xb = block(fb, hb, cb)
    if xa is None or xb is None:
        return CANONICAL_NAN
    prods = []
    for x, y in zip(va, vb, strict=True):
        if math.isnan(x) or math.isnan(y) or (math.isinf(x) and y == 0) or (math.isinf(y) and x == 0):
            return CANONICAL_NAN
        prods.append(x * y if math.isinf(x) or math.isinf(y) else Fraction(x) * Fraction(y))
    infs = {p for p in prods if isinstance(p, float)}
    if len(infs) == 2:
        return CANONICAL_NAN
    if infs:
        return 0x7F800000 if infs.pop() > 0 else 0xFF800000
    return _fraction_to_fp32(sum(prods, Fraction(0)) * xa * xb)


def _fp32_sum(results: list[int]) -> int:
    acc = np.float32(0.0)
    for r in results:
        acc = np.float32(acc + np.uint32(r).view(np.float32))
    return CANONICAL_NAN if np.isnan(acc) else int(np.float32(acc).view(np.uint32))


# --- stimulus --------------------------------------------------------------------------------------
def _random_blocks(fmt: BlockFormat, n: int, rng: np.random.Generator, *, special_rate: float = 0.0,
                   nan_scale_rate: float = 0.0, scale_spread: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Headers (n,) and codes (n, k): every selector/recycle value, scales near 1, specials rare."""
    sc = fmt.scale
    exp_code = np.clip(sc.bias + rng.integers(-scale_spread, scale_spread + 1, n), 0, (1 << sc.ebits) - 1)
    scale = (exp_code << sc.mbits) | rng.integers(0, 1 << sc.mbits, n)
    scale = np.where(scale == sc.nan_code, sc.max_code, scale)
    scale = np.where(rng.random(n) < nan_scale_rate, sc.nan_code, scale)
    sel = rng.integers(0, 1 << fmt.selector_bits, n)
    rec = rng.integers(0, 1 << fmt.recycle_bits, n)
    headers = fmt.make_header(scale, sel, rec)
    codes = rng.integers(0, 1 << fmt.element_width, (n, fmt.k))
    kind = element_parts(fmt).kind[np.minimum(sel, len(fmt.elements) - 1)[:, None],
                                   np.minimum(rec, max(fmt.recycle_options, 1) - 1)[:, None], codes]
    keep = rng.random((n, 1)) < special_rate  # blocks allowed to keep their NaN/Inf codes
    bad = (kind != 0) & ~keep
    while bad.any():
        codes[bad] = rng.integers(0, 1 << fmt.element_width, int(bad.sum()))
        kind = element_parts(fmt).kind[np.minimum(sel, len(fmt.elements) - 1)[:, None],
                                       np.minimum(rec, max(fmt.recycle_options, 1) - 1)[:, None], codes]
        bad = (kind != 0) & ~keep
    return headers.astype(np.uint16), codes.astype(np.uint16)


def _beats(dut: DotEngine, ha, ca, hb, cb, last, junk: np.random.Generator) -> list:
    """Payload constants, ``k / lanes`` beats per block; headers and ``last`` on the beats the
    engine must ignore (not a block's first / final beat) carry random junk."""
    lanes, nb = dut.lanes, dut.beats_per_block
    layout = dut.i.payload.shape()
    out = []
    for j in range(len(ha)):
        for t in range(nb):
            first, end = t == 0, t == nb - 1
            out.append(layout.const({
                "a_header": int(ha[j]) if first else int(junk.integers(0, 1 << dut.formats["a"].header_bits)),
                "b_header": int(hb[j]) if first else int(junk.integers(0, 1 << dut.formats["b"].header_bits)),
                "a_codes": [int(c) for c in ca[j, t * lanes:(t + 1) * lanes]],
                "b_codes": [int(c) for c in cb[j, t * lanes:(t + 1) * lanes]],
                "last": int(last[j]) if end else int(junk.integers(0, 2)),
            }))
    return out


def _simulate(dut: DotEngine, ha, ca, hb, cb, last, *, rng: np.random.Generator | None = None,
              valid_prob: float = 1.0, ready_prob: float = 1.0, trace: dict | None = None,
              prefix: list | None = None) -> list[int]:
    """Drive the blocks and return every output result.

    ``rng`` randomises ``i.valid`` (a presented beat stays until taken) and ``o.ready``.
    ``prefix``: payload beats sent first, then one reset cycle, then the blocks; outputs
    seen before the reset go to ``trace["before_reset"]``. ``trace`` also gets the cycles
    of input and output transfers of the main stream.
    """
    junk = rng or np.random.default_rng(0)
    phases = ([prefix] if prefix is not None else []) + [_beats(dut, ha, ca, hb, cb, last, junk)]
    expected = int(np.sum(last))
    out: list[int] = []
    trace = {} if trace is None else trace
    top = Module()
    top.domains.sync = cd = ClockDomain()
    top.submodules.dut = dut

    async def bench(ctx):
        cycle = 0
        for phase, beats in enumerate(phases):
            if phase:  # reset between the prefix and the main stream
                trace["before_reset"] = list(out)
                out.clear()
                ctx.set(dut.i.valid, 0)
                ctx.set(cd.rst, 1)
                await ctx.tick()
                ctx.set(cd.rst, 0)
                cycle = 0
            main = phase == len(phases) - 1
            idx, presenting = 0, False
            limit = 20 * len(beats) / max(min(valid_prob, ready_prob), 0.05) + 50
            while cycle < limit and not (idx == len(beats) and (not main or len(out) == expected)):
                presenting = presenting or (idx < len(beats) and (rng is None or rng.random() < valid_prob))
                ready = rng is None or rng.random() < ready_prob
                ctx.set(dut.i.valid, presenting)
                if presenting:
                    ctx.set(dut.i.payload, beats[idx])
                ctx.set(dut.o.ready, ready)
                if ctx.get(dut.o.valid) and ready:
                    out.append(ctx.get(dut.o.payload.result))
                    trace.setdefault("out_cycles", []).append(cycle)
                if presenting and ctx.get(dut.i.ready):
                    trace.setdefault("in_cycles", []).append(cycle) if main else None
                    idx, presenting = idx + 1, False
                await ctx.tick()
                cycle += 1
        # a few idle cycles: nothing more may come out
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 1)
        for _ in range(dut.latency + 2):
            if ctx.get(dut.o.valid):
                out.append(ctx.get(dut.o.payload.result))
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def _expected(fa: BlockFormat, ha, ca, fb: BlockFormat, hb, cb, last) -> list[int]:
    blocks = block_dot_bits(fa, ha, ca, fb, hb, cb)
    return [int(x) for x in dot_accumulate_bits(blocks, last)]


def _check(fa, ha, ca, fb, hb, cb, last, got: list[int]) -> None:
    want = _expected(fa, ha, ca, fb, hb, cb, last)
    assert len(got) == len(want), f"got {len(got)} results, expected {len(want)}"
    bad = [n for n, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    if bad:
        lines = [f"reduction {n}: got {got[n]:08x} ({np.uint32(got[n]).view(np.float32)!r}), "
                 f"want {want[n]:08x} ({np.uint32(want[n]).view(np.float32)!r})" for n in bad[:8]]
        pytest.fail(f"{len(bad)} of {len(want)} reductions wrong:\n" + "\n".join(lines))


# --- random streams over preset pairs ---------------------------------------------------------------
PAIRS = [
    ("nxfp4", "nxfp4"),
    ("mxfp4_e2m1", "mxfp4_e2m1"),
    ("mxfp8_e4m3", "mxfp8_e4m3"),
    ("mxfp8_e5m2", "mxfp8_e5m2"),
    ("nxfp4", "mxfp8_e4m3"),
]


@pytest.mark.parametrize("lanes_div", [1, 4], ids=["lanes_k", "lanes_k_over_4"])
@pytest.mark.parametrize(("name_a", "name_b"), PAIRS, ids=[f"{a}-x-{b}" for a, b in PAIRS])
def test_random_stream(name_a: str, name_b: str, lanes_div: int) -> None:
    seed = _seed(1000 + PAIRS.index((name_a, name_b)) * 10 + lanes_div)
    rng = np.random.default_rng(seed)
    fa, fb = PRESETS[name_a], PRESETS[name_b]
    n = 60 if lanes_div == 1 else 24
    ha, ca = _random_blocks(fa, n, rng, special_rate=0.05, nan_scale_rate=0.02)
    hb, cb = _random_blocks(fb, n, rng, special_rate=0.05, nan_scale_rate=0.02)
    last = rng.random(n) < 0.35
    last[-1] = True
    dut = DotEngine(fa, fb, lanes=fa.k // lanes_div)
    got = _simulate(dut, ha, ca, hb, cb, last, rng=rng, valid_prob=0.8, ready_prob=0.6)
    _check(fa, ha, ca, fb, hb, cb, last, got)


@pytest.mark.parametrize("mode", ACC_MODES)
@pytest.mark.parametrize(("name_a", "name_b"), [("mxfp8_e5m2", "mxfp8_e5m2"), ("nxfp4", "mxfp8_e4m3")])
def test_random_extreme_scales(name_a: str, name_b: str, mode: str) -> None:
    """Scales over the whole range: overflow to Inf, subnormal and underflowing results, every mode."""
    rng = np.random.default_rng(_seed(4242 + ACC_MODES.index(mode)))
    fa, fb = PRESETS[name_a], PRESETS[name_b]
    n = 40
    ha, ca = _random_blocks(fa, n, rng, scale_spread=127)
    hb, cb = _random_blocks(fb, n, rng, scale_spread=127)
    last = np.ones(n, dtype=bool)
    last[::3] = False
    last[-1] = True
    got = _simulate(DotEngine(fa, fb, lanes=fa.k // 2, acc=mode), ha, ca, hb, cb, last, rng=rng, valid_prob=0.9,
                    ready_prob=0.8)
    _check_mode(fa, ha, ca, fb, hb, cb, last, got, mode)


@pytest.mark.parametrize("pipeline", [0, 1, 2, 3, "none", "all", "sum,acc_add", "block,acc_align,acc_norm"])
def test_pipeline_cuts(pipeline) -> None:
    """fp32 mode with counts and named cut sets: bit-exact, and the latency the engine states."""
    rng = np.random.default_rng(_seed(77 + hash(str(pipeline)) % 1000))
    fa = fb = PRESETS["nxfp4"]
    n = 12
    ha, ca = _random_blocks(fa, n, rng)
    hb, cb = _random_blocks(fb, n, rng)
    last = rng.random(n) < 0.4
    last[-1] = True
    dut = DotEngine(fa, fb, lanes=8, pipeline=pipeline)
    loop = sum(c.startswith("acc_") for c in dut.cuts)
    assert dut.latency == len(dut.cuts) + 1 and dut.loop_cycles == loop + 1
    got = _simulate(dut, ha, ca, hb, cb, last, rng=rng, valid_prob=0.7, ready_prob=0.5)
    _check(fa, ha, ca, fb, hb, cb, last, got)


def _check_mode(fa, ha, ca, fb, hb, cb, last, got: list[int], mode: str, guard_bits: int = 16) -> None:
    want = [int(x) for x in reduce_bits(fa, ha, ca, fb, hb, cb, last, mode=mode, guard_bits=guard_bits)]
    assert len(got) == len(want), f"got {len(got)} results, expected {len(want)}"
    bad = [n for n, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    assert not bad, f"{mode}: {len(bad)} of {len(want)} reductions wrong: " + ", ".join(
        f"#{n} got {got[n]:08x} want {want[n]:08x}" for n in bad[:6])


MODE_PAIRS = [("nxfp4", "nxfp4"), ("mxfp4_e2m1", "mxfp4_e2m1"), ("mxfp8_e4m3", "nxfp4")]


@pytest.mark.parametrize("pipeline", [None, pytest.param("none", marks=pytest.mark.slow),
                                      pytest.param(2, marks=pytest.mark.slow)])
@pytest.mark.parametrize("lanes_div", [1, 4], ids=["lanes_k", "lanes_k_over_4"])
@pytest.mark.parametrize("mode", ACC_MODES)
@pytest.mark.parametrize(("name_a", "name_b"), MODE_PAIRS, ids=[f"{a}-x-{b}" for a, b in MODE_PAIRS])
def test_modes_random(name_a: str, name_b: str, mode: str, lanes_div: int, pipeline) -> None:
    """Every accumulation mode against its golden reduction (spec 8.1), random gaps and backpressure."""
    seed = _seed(500 + MODE_PAIRS.index((name_a, name_b)) * 100 + ACC_MODES.index(mode) * 10 + lanes_div)
    rng = np.random.default_rng(seed)
    fa, fb = PRESETS[name_a], PRESETS[name_b]
    n = 24
    ha, ca = _random_blocks(fa, n, rng, special_rate=0.04, nan_scale_rate=0.02, scale_spread=20)
    hb, cb = _random_blocks(fb, n, rng, special_rate=0.04, nan_scale_rate=0.02, scale_spread=20)
    last = rng.random(n) < 0.3
    last[-1] = True
    dut = DotEngine(fa, fb, lanes=fa.k // lanes_div, acc=mode, pipeline=pipeline)
    got = _simulate(dut, ha, ca, hb, cb, last, rng=rng, valid_prob=0.8, ready_prob=0.7)
    _check_mode(fa, ha, ca, fb, hb, cb, last, got, mode)


@pytest.mark.parametrize(("name_a", "name_b"), MODE_PAIRS + [("mxfp8_e5m2", "mxint8")])
def test_exact_window_matches_golden(name_a: str, name_b: str) -> None:
    fa, fb = PRESETS[name_a], PRESETS[name_b]
    for g in (0, 3, 16):
        w = dot_exact_window(fa, fb, g)
        ref = exact_window(fa, fb, g)
        assert (w.lsb_exponent, w.width) == (ref.lsb_exponent, ref.width)
        assert DotEngine(fa, fb, acc="exact", guard_bits=g).accumulator_width == w.width


@pytest.mark.parametrize("guard_bits", [0, 1, 2])
def test_exact_window_overflow_gives_nan(guard_bits: int) -> None:
    """Large blocks of one sign: as many as fit stay finite; one more leaves the window (NaN) even
    when a negative block brings the sum back inside; the next reduction starts clean."""
    f = PRESETS["nxfp4"]
    k = f.k
    big = f.make_header((30 << 1) | 1, 0, 0)  # scale 1.5 * 2^15, E2M1
    codes = np.full((1, k), 0x7, np.uint16)  # 6.0, the E2M1 maximum
    value = int(block_exact_values(f, np.array([big]), codes, f, np.array([big]), codes).mag_signed[0])
    half = 1 << (exact_window(f, f, guard_bits).width - 1)
    fits = (half - 1) // value  # this many blocks stay inside [-half, half)
    assert fits >= 1 << guard_bits
    n = fits + (fits + 2) + 1
    ha = np.full(n, big, np.uint16)
    ca = np.repeat(codes, n, axis=0)
    ca[2 * fits + 1] = 0xF  # -6.0: the overflowing reduction's last block brings its sum back inside
    last = np.zeros(n, bool)
    last[[fits - 1, 2 * fits + 1, n - 1]] = True
    got = _simulate(DotEngine(f, lanes=k, acc="exact", guard_bits=guard_bits), ha, ca, ha, ca, last)
    _check_mode(f, ha, ca, f, ha, ca, last, got, "exact", guard_bits)
    assert got[0] != CANONICAL_NAN and got[1] == CANONICAL_NAN and got[2] != CANONICAL_NAN


@pytest.mark.parametrize("name", ["nxfp4", "mxfp4_e2m1"])
def test_exact_long_reductions(name: str) -> None:
    """Long reductions of mixed signs and wide scales: carries cross every carry-save segment,
    sums change sign, the resolution and the negation look ahead over many segments."""
    f = PRESETS[name]
    rng = np.random.default_rng(_seed(8080 + len(name)))
    n = 90
    ha, ca = _random_blocks(f, n, rng, scale_spread=40)
    hb, cb = _random_blocks(f, n, rng, scale_spread=40)
    last = np.zeros(n, bool)
    last[[14, 29, 59, n - 1]] = True
    got = _simulate(DotEngine(f, lanes=f.k, acc="exact", pipeline="none"), ha, ca, hb, cb, last)
    _check_mode(f, ha, ca, f, hb, cb, last, got, "exact")


def test_modes_differ_on_cancellation() -> None:
    """big + tiny - big: fp32 loses the tiny block twice over, fused keeps it, exact keeps it."""
    f = PRESETS["nxfp4"]
    k = f.k
    one = f.make_header(15 << 1)
    big, tiny = f.make_header(30 << 1), f.make_header(2 << 1)
    ha = np.array([big, tiny, big], np.uint16)
    hb = np.array([one, one, one], np.uint16)
    ca = np.array([[0x7] * k, [0x1] + [0] * (k - 1), [0xF] * k], np.uint16)
    cb = np.array([[0x2] * k, [0x2] * k, [0x2] * k], np.uint16)
    last = np.array([False, False, True])
    results = {}
    for mode in ACC_MODES:
        results[mode] = _simulate(DotEngine(f, lanes=k // 4, acc=mode), ha, ca, hb, cb, last)
        _check_mode(f, ha, ca, f, hb, cb, last, results[mode], mode)
    assert results["fp32"] == [0] and results["exact"] != [0] and results["fused"] == [0]


def test_other_formats_small_k() -> None:
    """INT8 and a user format (k=8, three candidates, 4-entry recycling table) through a 2-lane engine."""
    rng = np.random.default_rng(_seed(31))
    fa = parse_format("mxint8,k=8")
    fb = parse_format("elem=E2M1|E1M2|E3M0,scale=UE4M2,k=8,cr=5|-5|2.75|-0.125")
    n = 16
    ha, ca = _random_blocks(fa, n, rng, scale_spread=30)
    hb, cb = _random_blocks(fb, n, rng, scale_spread=6)
    last = rng.random(n) < 0.3
    last[-1] = True
    got = _simulate(DotEngine(fa, fb, lanes=2), ha, ca, hb, cb, last, rng=rng, valid_prob=0.9, ready_prob=0.7)
    _check(fa, ha, ca, fb, hb, cb, last, got)


# --- directed corner cases (each block its own reduction, so every block result is visible) ---------
def _directed_nxfp4_e4m3() -> tuple[BlockFormat, BlockFormat, list[tuple[int, list[int], int, list[int]]]]:
    fa, fb = PRESETS["nxfp4"], PRESETS["mxfp8_e4m3"]
    k = fa.k
    one_a = fa.make_header(15 << 1)  # UE5M1: 2^0 * 1.0
    one_b = fb.make_header(127)
    nan_a = fa.make_header(fa.scale.nan_code)
    e4m3_nan = 0x7F
    cases = [
        (one_a, [0] * k, one_b, [0] * k),  # all zero
        (nan_a, [0] * k, one_b, [0] * k),  # NaN header A
        (one_a, [1] * k, fb.make_header(255), [0x38] * k),  # NaN header B
        (one_a, [2] * k, one_b, [0x38] * 31 + [e4m3_nan]),  # NaN element
        (one_a, [0x8] * k, one_b, [0x38] * k),  # recycled code, option +r (E2M1: +5)
        (fa.make_header(15 << 1, 0, 1), [0x8] * k, one_b, [0x38] * k),  # option -r
        (fa.make_header(15 << 1, 1, 0), [0x8] + [0x7] * 31, one_b, [0x38] * k),  # selector 1 (E1M2), R=+4
        (fa.make_header(15 << 1, 1, 1), [0x8] + [0xF] * 31, one_b, [0xB8] * k),  # selector 1, R=-4, negated
        (fa.make_header(30 << 1 | 1), [0x7] * k, fb.make_header(254), [0x7E] * k),  # max magnitudes: overflow
        (fa.make_header(0), [1] * k, fb.make_header(0), [1] * k),  # deepest underflow: +0 result
        (fa.make_header(0), [0x9] * k, fb.make_header(100), [1] * k),  # subnormal / tiny negative results
        (fa.make_header(1), [0x7] * k, fb.make_header(0), [0x7E] * k),  # 86016 * 1.5 * 2^-142: near the normal boundary
        (one_a, [0x7] * 16 + [0xF] * 16, one_b, [0x7E] * k),  # exact cancellation -> +0
        (fa.make_header(0), [0x2] + [0x0] * 31, fb.make_header(0), [0x02] + [0] * 31),  # 2^-8 * 2^-142: tie -> +0
        (fa.make_header(0), [0x3] + [0x0] * 31, fb.make_header(0), [0x02] + [0] * 31),  # 1.5 * 2^-150 -> 2^-149
        (fa.make_header(15 << 1 | 1), [0x6] * k, fb.make_header(127 + 120), [0x7E] * k),  # large finite
    ]
    # Ties at the binary32 rounding point: 16 * 6 * 256 = 24576 (ulp 2^-9) plus half an ulp
    # (0.5 * 2^-9) -> ties to even (down); plus 1.5 ulp (1.5 * 2^-9... as 3 * 2^-10) -> up to 2 ulp.
    big = [0x7] * 16 + [0] * 16, [0x78] * 16 + [0] * 16
    cases.append((one_a, big[0][:16] + [0x1] + [0] * 15, one_b, big[1][:16] + [0x01] + [0] * 15))
    cases.append((one_a, big[0][:16] + [0x3] + [0] * 15, one_b, big[1][:16] + [0x01] + [0] * 15))
    return fa, fb, [(int(h1), c1, int(h2), c2) for h1, c1, h2, c2 in cases]


def _run_directed(fa: BlockFormat, fb: BlockFormat, cases, lanes: int) -> None:
    ha = np.array([c[0] for c in cases], dtype=np.uint16)
    ca = np.array([c[1] for c in cases], dtype=np.uint16)
    hb = np.array([c[2] for c in cases], dtype=np.uint16)
    cb = np.array([c[3] for c in cases], dtype=np.uint16)
    golden = [int(x) for x in block_dot_bits(fa, ha, ca, fb, hb, cb)]
    reference = [_fraction_block_dot(fa, int(ha[j]), ca[j], fb, int(hb[j]), cb[j]) for j in range(len(cases))]
    assert golden == reference, [f"{j}: golden {g:08x} fraction {r:08x}"
                                 for j, (g, r) in enumerate(zip(golden, reference, strict=True)) if g != r]
    last = np.ones(len(cases), dtype=bool)
    got = _simulate(DotEngine(fa, fb, lanes=lanes), ha, ca, hb, cb, last)
    # Each block is its own reduction: +0.0 + r, so -0.0 block results come out as +0.0.
    want = [_fp32_sum([r]) for r in reference]
    assert [f"{g:08x}" for g in got] == [f"{w:08x}" for w in want]


def test_directed_mixed_nxfp4_e4m3() -> None:
    fa, fb, cases = _directed_nxfp4_e4m3()
    _run_directed(fa, fb, cases, lanes=32)


def test_directed_e5m2_specials() -> None:
    """Inf elements, Inf*0, +Inf + -Inf, NaN elements, extreme scales, a 2^24+1 tie (E5M2 x E5M2)."""
    f = PRESETS["mxfp8_e5m2"]
    k = f.k
    one = int(f.make_header(127))
    pinf, ninf, nan, one_e = 0x7C, 0xFC, 0x7D, 0x3C
    max_e = 0x7B  # 57344
    cases = [
        (one, [pinf] + [0] * 31, one, [one_e] + [0] * 31),  # +Inf
        (one, [pinf] + [0] * 31, one, [0xBC] + [0] * 31),  # -Inf (sign of the product)
        (one, [pinf] + [0] * 31, one, [0] * k),  # Inf * 0 -> NaN
        (one, [0x80] * k, one, [ninf] + [one_e] * 31),  # -0 * -Inf -> NaN
        (one, [pinf, ninf] + [0] * 30, one, [one_e, one_e] + [0] * 30),  # +Inf + -Inf -> NaN
        (one, [pinf, pinf] + [0] * 30, one, [one_e, one_e] + [0] * 30),  # +Inf + +Inf = +Inf
        (one, [nan] + [one_e] * 31, one, [one_e] * k),  # NaN element
        (one, [max_e] * k, one, [max_e] * k),  # 32 * 57344^2 exact, finite
        (int(f.make_header(254)), [max_e] * k, int(f.make_header(254)), [max_e] * k),  # overflow -> +Inf
        (int(f.make_header(0)), [1] * k, int(f.make_header(0)), [0x81] * k),  # underflow -> -0
        (one, [max_e] + [1] * 31, one, [max_e] + [1] * 31),  # huge + tiny (2^-32 terms): exact then round
        (one, [0x6C] + [0x04] + [0] * 30, one, [0x3C] + [0x3C] + [0] * 30),  # 2^12 + 2^-14: sticky only
        (one, [0x6C] * 16 + [0xEC] * 16, one, [one_e] * k),  # 16 * 2^12 - 16 * 2^12: exact +0
    ]
    # 2^24 + 1 is a binary32 tie: ties to even gives 2^24; 2^24 + 3 ties up to 2^24 + 4.
    two12 = 0x6C  # 2^12 in E5M2 (E = 27)
    cases.append((one, [two12] + [0x3C] + [0] * 30, one, [two12] + [0x3C] + [0] * 30))
    cases.append((one, [two12] + [0x3E] + [0] * 30, one, [two12] + [0x40] + [0] * 30))
    _run_directed(f, f, cases, lanes=k // 4)


def test_directed_every_selector_and_recycle() -> None:
    """Every (selector, recycle) value of nxfp4 including each recycled code, alone and mixed."""
    f = PRESETS["nxfp4"]
    k = f.k
    cases = []
    codes = list(range(16)) * 2
    for sel in range(1 << f.selector_bits):
        for rec in range(1 << f.recycle_bits):
            h = int(f.make_header((15 << 1) | (sel & 1), sel, rec))
            cases.append((h, codes, h, codes[::-1]))
            cases.append((h, [8] * k, int(f.make_header(17 << 1)), [8] * k))
    _run_directed(f, f, cases, lanes=k // 4)


def test_multi_block_accumulation_order() -> None:
    """Block results added in fp32 in order: 2^25 + 1 + 1 - 2^25 = 0 in fp32 (exactly 2 in reals)."""
    f = PRESETS["mxfp8_e5m2"]
    k = f.k
    one = int(f.make_header(127))
    big = int(f.make_header(127 + 10))
    e = [0x3C] + [0] * (k - 1)  # element 1.0 in lane 0
    ha = np.array([big, one, one, big], dtype=np.uint16)
    ca = np.array([[0x60] + [0] * (k - 1), e, e, [0xE0] + [0] * (k - 1)], dtype=np.uint16)  # +-2^9 * 2^20 = 2^29
    hb = np.array([big, one, one, big], dtype=np.uint16)
    cb = np.array([e, e, e, e], dtype=np.uint16)
    last = np.array([False, False, False, True])
    blocks = block_dot_bits(f, ha, ca, f, hb, cb)
    vals = blocks.view(np.float32)
    assert vals[1] == vals[2] == 1.0 and vals[0] == -vals[3] and vals[0] >= 2.0**25  # stimulus is as intended
    got = _simulate(DotEngine(f, lanes=k), ha, ca, hb, cb, last)
    assert got == [0]
    assert got == _expected(f, ha, ca, f, hb, cb, last)


# --- protocol -----------------------------------------------------------------------------------------
def _expected_input_cycles(n_blocks: int, nb: int, loop_cycles: int) -> list[int]:
    """Cycles at which an always-valid input is taken: a block's final beat waits for the loop."""
    cycles, t, last_end = [], 0, -(10**6)
    for _ in range(n_blocks):
        for beat in range(nb):
            if beat == nb - 1:
                t = max(t, last_end + loop_cycles)
                last_end = t
            cycles.append(t)
            t += 1
    return cycles


@pytest.mark.parametrize("mode", ACC_MODES)
@pytest.mark.parametrize("pipeline", [None, "none", 4])
def test_latency_and_initiation_interval(mode: str, pipeline) -> None:
    """Full-rate input: the engine takes beats as its initiation interval says and answers after
    exactly ``latency`` cycles; ``exact`` takes one block per cycle at lanes = k."""
    f = PRESETS["mxfp4_e2m1"]
    rng = np.random.default_rng(_seed(5))
    n = 8
    ha, ca = _random_blocks(f, n, rng)
    hb, cb = _random_blocks(f, n, rng)
    last = np.array([False, True] * 4)
    for lanes in (32, 8):
        dut = DotEngine(f, lanes=lanes, acc=mode, pipeline=pipeline)
        trace: dict = {}
        got = _simulate(dut, ha, ca, hb, cb, last, trace=trace)
        _check_mode(f, ha, ca, f, hb, cb, last, got, mode)
        nb = 32 // lanes
        assert dut.block_interval == max(nb, dut.loop_cycles)
        assert dut.initiation_interval == dut.block_interval / nb
        assert trace["in_cycles"] == _expected_input_cycles(n, nb, dut.loop_cycles)
        if mode == "exact":
            assert dut.loop_cycles == 1 and trace["in_cycles"] == list(range(n * nb))
        last_beats = [trace["in_cycles"][(j + 1) * nb - 1] for j in range(n) if last[j]]
        assert [o - i for o, i in zip(trace["out_cycles"], last_beats, strict=True)] == [dut.latency] * 4


def test_bad_parameters() -> None:
    f = PRESETS["nxfp4"]
    with pytest.raises(ValueError, match="acc"):
        DotEngine(f, acc="kahan")
    with pytest.raises(ValueError, match="guard_bits"):
        DotEngine(f, acc="exact", guard_bits=-1)
    with pytest.raises(ValueError, match="pipeline: no register position 'acc_add'"):
        DotEngine(f, acc="exact", pipeline="acc_add")
    with pytest.raises(ValueError, match="pipeline"):
        DotEngine(f, pipeline=len(POSITIONS["fp32"]) + 1)


def test_reset_mid_stream() -> None:
    """Reset inside a block and inside a reduction: the partial sum, beat count and accumulator are dropped."""
    f = PRESETS["nxfp4"]
    rng = np.random.default_rng(_seed(9))
    dut = DotEngine(f, lanes=8)  # 4 beats per block
    ph, pc = _random_blocks(f, 3, rng)
    qh, qc = _random_blocks(f, 3, rng)
    # prefix: block 0 closes a reduction, block 1 opens one, block 2 is cut after 2 of its 4 beats
    prefix = _beats(dut, ph, pc, qh, qc, np.array([True, False, True]), rng)[:10]
    n = 5
    ha, ca = _random_blocks(f, n, rng)
    hb, cb = _random_blocks(f, n, rng)
    last = np.array([False, True, False, False, True])
    trace: dict = {}
    got = _simulate(dut, ha, ca, hb, cb, last, prefix=prefix, trace=trace)
    first = _expected(f, ph[:1], pc[:1], f, qh[:1], qc[:1], np.array([True]))
    assert trace["before_reset"] in ([], first)  # the finished reduction may or may not get out in time
    _check(f, ha, ca, f, hb, cb, last, got)


# --- construction ---------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="block size k"):
        DotEngine(PRESETS["nxfp4"], parse_format("nxfp4,k=16"))
    with pytest.raises(ValueError, match="lanes must divide"):
        DotEngine(PRESETS["nxfp4"], lanes=3)
    with pytest.raises(ValueError, match="pipeline"):
        DotEngine(PRESETS["nxfp4"], pipeline=12)
    with pytest.raises(TypeError, match="fmt_b"):
        DotEngine(PRESETS["nxfp4"], "nxfp4")  # type: ignore[arg-type]
    gc.collect()


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_attributes() -> None:
    fa, fb = PRESETS["nxfp4"], PRESETS["mxfp8_e4m3"]
    dut = DotEngine(fa, fb, lanes=8, pipeline=2)  # the two most useful fp32 cuts: block, sum
    assert dut.unit_kind == "dot"
    assert dut.formats == {"a": fa, "b": fb}
    assert dut.cuts == ("sum", "block") and dut.config["pipeline"] == ["sum", "block"]
    assert (dut.lanes, dut.latency, dut.initiation_interval, dut.block_interval) == (8, 3, 1, 4)
    assert dut.module_name == "nxfp_dot_nxfp4_x_mxfp8_e4m3_l8_p48"  # bits 3 (sum) and 6 (block)
    exact = DotEngine(fa, fb, lanes=32, acc="exact", guard_bits=8, pipeline="none")
    assert exact.module_name == "nxfp_dot_nxfp4_x_mxfp8_e4m3_l32_exact_g8_p0"
    assert (exact.latency, exact.block_interval, exact.config["guard_bits"]) == (2, 1, 8)
    fused = DotEngine(fa, fb, lanes=32, acc="fused", pipeline="acc_add,acc_norm")
    assert (fused.loop_cycles, fused.block_interval, fused.initiation_interval) == (3, 3, 3)
    assert dut.config["lanes"] == 8 and dut.config["format_b"] == fb.to_string()
    assert DotEngine(fa).formats["b"] is fa and DotEngine(fa).lanes == 32
    assert element_parts(fa).kind.max() < NAN  # nxfp4 has no special codes
    del dut
    gc.collect()  # unelaborated components warn when collected; do it under this test's filter


# --- Verilog ------------------------------------------------------------------------------------------
LINT_CASES = [(a, b, div, p) for a, b in PAIRS for div in (1, 4) for p in (0, 3)]


def _lint(dut: DotEngine, tmp_path) -> None:
    import subprocess

    from amaranth.back import verilog

    from nxfp_hw.flows.generate import lint_waivers_text
    from nxfp_hw.flows.tools import find_tool, verilator_env

    text = verilog.convert(dut, name=dut.module_name, emit_src=False)
    assert "/work/" not in text and "(* src" not in text  # no machine paths
    src = tmp_path / f"{dut.module_name}.v"
    src.write_text(text)
    waivers = tmp_path / "waivers.vlt"
    waivers.write_text(lint_waivers_text())
    run = subprocess.run([str(find_tool("verilator")), "--lint-only", "-Wall", str(waivers), str(src)],
                         capture_output=True, text=True, env=verilator_env(), timeout=600)
    assert run.returncode == 0 and "%Warning" not in run.stderr, run.stderr[-4000:]


@pytest.mark.parametrize(("name_a", "name_b", "div", "pipeline"), [("nxfp4", "mxfp8_e4m3", 4, 3),
                                                                  ("mxfp8_e5m2", "mxfp8_e5m2", 1, 0)])
def test_verilog_lint(name_a: str, name_b: str, div: int, pipeline: int, tmp_path) -> None:
    fa, fb = PRESETS[name_a], PRESETS[name_b]
    _lint(DotEngine(fa, fb, lanes=fa.k // div, pipeline=pipeline), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(("name_a", "name_b", "div", "pipeline"), LINT_CASES)
def test_verilog_lint_all_presets(name_a: str, name_b: str, div: int, pipeline: int, tmp_path) -> None:
    fa, fb = PRESETS[name_a], PRESETS[name_b]
    _lint(DotEngine(fa, fb, lanes=fa.k // div, pipeline=pipeline), tmp_path)
