"""Bit-exact tests of the fp32 accumulation adder (nxfp_hw.rtl.accumulate.fp32_add) against numpy float32."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest
from amaranth.sim import Simulator

from nxfp_hw.rtl.accumulate import FP32Adder

CANONICAL_NAN = 0x7FC00000


def _seed(default: int) -> int:
    seed = int(os.environ.get("NXFP_SEED", default))
    print(f"seed={seed} (set NXFP_SEED to override)")
    return seed


def _reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numpy float32 addition (IEEE RNE) with every NaN made canonical."""
    fa = a.astype(np.uint32).view(np.float32)
    fb = b.astype(np.uint32).view(np.float32)
    with np.errstate(all="ignore"):
        s = fa + fb
    bits = s.view(np.uint32).copy()
    bits[np.isnan(s)] = CANONICAL_NAN
    return bits


def _run(a: np.ndarray, b: np.ndarray, *, registered: bool = False) -> np.ndarray:
    dut = FP32Adder(registered=registered)
    out = np.zeros(len(a), dtype=np.uint32)

    async def bench(ctx):
        for n, (x, y) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
            ctx.set(dut.a, x)
            ctx.set(dut.b, y)
            if registered:
                await ctx.tick()
            out[n] = ctx.get(dut.s)

    sim = Simulator(dut)
    if registered:
        sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out


def _check(a: np.ndarray, b: np.ndarray, got: np.ndarray) -> None:
    want = _reference(a, b)
    bad = np.nonzero(got != want)[0]
    if len(bad):
        lines = []
        for n in bad[:10]:
            fa, fb = np.uint32(a[n]).view(np.float32), np.uint32(b[n]).view(np.float32)
            fg, fw = np.uint32(got[n]).view(np.float32), np.uint32(want[n]).view(np.float32)
            lines.append(f"{a[n]:08x}({fa!r}) + {b[n]:08x}({fb!r}) = {got[n]:08x}({fg!r}), want {want[n]:08x}({fw!r})")
        pytest.fail(f"{len(bad)} of {len(a)} sums wrong:\n" + "\n".join(lines))


def _edge_values() -> np.ndarray:
    """~60 special and edge binary32 patterns (both signs)."""
    positive = [
        0x00000000,  # +0
        0x00000001,  # smallest subnormal
        0x00000002,
        0x00000003,
        0x003FFFFF,
        0x00400000,
        0x007FFFFF,  # largest subnormal
        0x00800000,  # smallest normal
        0x00800001,
        0x00FFFFFF,
        0x01000000,
        0x33800000,  # 2^-24: half an ulp of 1.0
        0x33800001,
        0x34000000,  # 2^-23: one ulp of 1.0
        0x3F7FFFFF,  # just below 1
        0x3F800000,  # 1
        0x3F800001,  # 1 + ulp
        0x3F800002,
        0x3FC00000,  # 1.5
        0x40000000,  # 2
        0x4B000000,  # 2^23
        0x4B000001,
        0x4B7FFFFF,
        0x7F000000,  # 2^127
        0x7F7FFFFE,
        0x7F7FFFFF,  # max finite
        0x7F800000,  # Inf
        0x7FC00000,  # quiet NaN
        0x7F800001,  # signalling NaN pattern
        0x7FFFFFFF,
    ]
    values = np.array(positive, dtype=np.uint32)
    return np.concatenate([values, values | np.uint32(0x80000000)])


def test_edge_pairs_exhaustive() -> None:
    vals = _edge_values()
    a, b = np.meshgrid(vals, vals, indexing="ij")
    a, b = a.ravel(), b.ravel()
    _check(a, b, _run(a, b))


def test_random_full_range() -> None:
    rng = np.random.default_rng(_seed(2024))
    n = 3000
    a = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    b = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    _check(a, b, _run(a, b))


def test_random_close_exponents() -> None:
    """Operands within a few binades (cancellation, carries, ties) and subnormal sums."""
    rng = np.random.default_rng(_seed(7))
    n = 3000
    a = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    delta = rng.integers(-(30 << 23), 30 << 23, n)
    b = ((a.astype(np.int64) & 0x7FFFFFFF) + delta).clip(0, 0x7F7FFFFF).astype(np.uint32)
    b |= rng.integers(0, 2, n, dtype=np.uint32) << np.uint32(31)
    # a quarter of the pairs in the subnormal / smallest-normal range
    low = rng.random(n) < 0.25
    a[low] &= np.uint32(0x80FFFFFF)
    b[low] &= np.uint32(0x80FFFFFF)
    _check(a, b, _run(a, b))


def test_registered_variant() -> None:
    vals = _edge_values()[::3]
    a, b = np.meshgrid(vals, vals, indexing="ij")
    a, b = a.ravel(), b.ravel()
    _check(a, b, _run(a, b, registered=True))


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_rejects_bad_parameter() -> None:
    with pytest.raises(TypeError, match="registered") as info:
        FP32Adder(registered=1)  # type: ignore[arg-type]
    del info
    gc.collect()  # the half-built component warns when collected; do it under this test's filter
