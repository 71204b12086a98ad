"""round_to_ieee (nxfp_hw.rtl.float_round) against an exact Fraction reference (spec 7, 8)."""

from __future__ import annotations

import os
import random
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Signal, signed
from amaranth.sim import Simulator

from nxfp_hw.rtl.float_round import IEEE_FORMATS, leading_zeros, round_to_ieee

# name: (ebits, mbits, canonical NaN)
FORMATS = {"fp32": (8, 23, 0x7FC00000), "bf16": (8, 7, 0x7FC0), "fp16": (5, 10, 0x7E00)}


def seed_for(test: str) -> int:
    seed = int(os.environ.get("NXFP_SEED", "0")) or random.randrange(1, 2**31)
    print(f"{test}: seed {seed} (set NXFP_SEED={seed} to repeat)")
    return seed


def ref_round(out: str, sign: int, mag: int, exp: int, nan: int = 0, inf: int = 0) -> int:
    """Independent exact RNE of ``(-1)^sign * mag * 2^exp`` into an IEEE format."""
    ebits, mbits, qnan = FORMATS[out]
    width = 1 + ebits + mbits
    bias = 2 ** (ebits - 1) - 1
    sbit = sign << (width - 1)
    inf_bits = ((1 << ebits) - 1) << mbits
    if nan:
        return qnan
    if inf:
        return sbit | inf_bits
    if mag == 0:
        return sbit
    v = Fraction(mag) * Fraction(2) ** exp
    e = max(mag.bit_length() - 1 + exp, 1 - bias)  # exponent of the binade (subnormals share 1-bias)
    q = v / Fraction(2) ** (e - mbits)  # in units of the last place
    n = q.numerator // q.denominator
    rem = q - n
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and n % 2 == 1):
        n += 1
    if n == 2 ** (mbits + 1):
        n, e = n // 2, e + 1
    if e > bias:
        return sbit | inf_bits
    if n < 2**mbits:
        return sbit | n
    return sbit | ((e + bias) << mbits) | (n - 2**mbits)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
def test_reference_matches_numpy() -> None:
    """The test's reference agrees with NumPy / ml_dtypes casts of exactly representable float64 values."""
    for out, dt in (("fp32", np.float32), ("fp16", np.float16), ("bf16", ml_dtypes.bfloat16)):
        utype = np.uint32 if out == "fp32" else np.uint16
        for mag in range(0, 256, 3):
            for exp in range(-170, 130, 7):
                for sign in (0, 1):
                    x = np.copysign(np.float64(mag * 2.0**exp), -1.0 if sign else 1.0)
                    want = int(np.array([x]).astype(dt).view(utype)[0])
                    assert ref_round(out, sign, mag, exp) == want, (out, sign, mag, exp)


class _Rounder(Elaboratable):
    def __init__(self, mag_width: int, exp_width: int, out: str) -> None:
        self.sign = Signal()
        self.mag = Signal(mag_width)
        self.exp = Signal(signed(exp_width))
        self.nan = Signal()
        self.inf = Signal()
        self.out = out
        self.bits = Signal(IEEE_FORMATS[out].width)

    def elaborate(self, platform) -> Module:
        m = Module()
        m.d.comb += self.bits.eq(
            round_to_ieee(
                m, sign=self.sign, magnitude=self.mag, exponent=self.exp, fmt=self.out, is_nan=self.nan, is_inf=self.inf
            )
        )
        return m


def run_vectors(out: str, mag_width: int, exp_width: int, vectors: list[tuple[int, int, int, int, int]]) -> None:
    """Drive every ``(sign, mag, exp, nan, inf)`` through one rounder and compare with ``ref_round``."""
    dut = _Rounder(mag_width, exp_width, out)
    sim = Simulator(dut)
    failures: list[str] = []

    async def bench(ctx) -> None:
        for sign, mag, exp, nan, inf in vectors:
            ctx.set(dut.sign, sign)
            ctx.set(dut.mag, mag)
            ctx.set(dut.exp, exp)
            ctx.set(dut.nan, nan)
            ctx.set(dut.inf, inf)
            got = ctx.get(dut.bits)
            want = ref_round(out, sign, mag, exp, nan, inf)
            if got != want:
                failures.append(f"{out} sign={sign} mag={mag:#x} exp={exp} nan={nan} inf={inf}: "
                                f"got {got:#x} want {want:#x}")

    sim.add_testbench(bench)
    sim.run()
    assert not failures, f"{len(failures)} mismatches, first: " + "; ".join(failures[:5])


@pytest.mark.parametrize(
    "out,exps",
    [
        ("fp16", range(-34, 11)),  # below the smallest subnormal .. past 65504
        ("bf16", [*range(-142, -125), *range(-3, 3), *range(118, 128)]),
        ("fp32", [*range(-160, -140), *range(-6, 4), *range(116, 125)]),
        pytest.param("fp32", range(-160, 125), marks=pytest.mark.slow, id="fp32-full"),
    ],
)
def test_exhaustive_8bit_magnitudes(out: str, exps) -> None:
    vectors = [(s, mag, e, 0, 0) for e in exps for mag in range(256) for s in ((e + mag) & 1,)]
    run_vectors(out, 8, 10, vectors)


@pytest.mark.parametrize("out", ["fp32", "bf16", "fp16"])
def test_random_wide_magnitudes(out: str) -> None:
    rng = random.Random(seed_for(f"test_random_wide_magnitudes[{out}]"))
    width = 48
    vectors = []
    for _ in range(1500):
        nbits = rng.randint(1, width)
        mag = rng.getrandbits(nbits)
        if rng.random() < 0.2:  # halfway and near-halfway patterns stress the tie rule
            keep = rng.randint(1, nbits)
            mag = (mag >> (nbits - keep) << (nbits - keep)) | (1 << max(nbits - keep - 1, 0))
        exp = rng.randint(-230, 150)
        vectors.append((rng.getrandbits(1), mag, exp, 0, 0))
    top = (1 << width) - 1
    vectors += [(1, 0, 5, 0, 0), (0, 0, -500, 0, 0), (1, top, -1000, 0, 0), (0, top, 900, 0, 0), (0, top, -24, 0, 0)]
    vectors += [(s, 12345, 3, nan, inf) for s in (0, 1) for nan in (0, 1) for inf in (0, 1)]
    run_vectors(out, width, 11, vectors)


def test_leading_zeros_all_widths() -> None:
    class _Lzc(Elaboratable):
        def __init__(self, width: int) -> None:
            self.x = Signal(width)
            self.count = Signal(8)
            self.zero = Signal()

        def elaborate(self, platform) -> Module:
            m = Module()
            count, zero = leading_zeros(self.x)
            m.d.comb += [self.count.eq(count), self.zero.eq(zero)]
            return m

    for width in (1, 2, 3, 5, 8, 13, 32, 37):
        dut = _Lzc(width)
        sim = Simulator(dut)
        values = [0, 1, (1 << width) - 1] + [1 << b for b in range(width)] + [(1 << b) | 1 for b in range(width)]

        async def bench(ctx, dut=dut, width=width, values=values) -> None:
            for x in values:
                ctx.set(dut.x, x)
                assert ctx.get(dut.zero) == (x == 0), (width, x)
                if x:
                    assert ctx.get(dut.count) == width - x.bit_length(), (width, x)

        sim.add_testbench(bench)
        sim.run()
