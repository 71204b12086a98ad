"""DecodeUnit and ElementDecoder (nxfp_hw.rtl) against the golden model, bit for bit (spec 7, 9)."""

from __future__ import annotations

import os
import random
import re
from fractions import Fraction

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Elaboratable, Module, Signal, Value
from amaranth.sim import Simulator

import nxfp_hw.rtl.decode as decode_mod
from nxfp_hw.formats import PRESETS, parse_format
from nxfp_hw.golden.decode import decode_bits
from nxfp_hw.rtl.decode import DECODE_DEFAULT_CUTS, DECODE_POSITIONS, DecodeUnit
from nxfp_hw.rtl.element_decode import ElementDecoder
from nxfp_hw.rtl.pipeline import PipelineRegister

# Units that fail validation in __init__ are collected later and warn as never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")

OUT_WIDTH = {"fp32": 32, "bf16": 16, "fp16": 16}


def seed_for(test: str) -> int:
    seed = int(os.environ.get("NXFP_SEED", "0")) or random.randrange(1, 2**31)
    print(f"{test}: seed {seed} (set NXFP_SEED={seed} to repeat)")
    return seed


def pack_input(unit: DecodeUnit, header: int, codes: list[int]) -> int:
    """The input payload as one integer, using the offsets of the unit's own layout."""
    layout = unit.i.payload.shape()
    codes_field = layout["codes"]
    w = codes_field.shape.elem_shape.width if hasattr(codes_field.shape.elem_shape, "width") else None
    w = unit.fmt.element_width if w is None else w
    word = header << layout["header"].offset
    for n, c in enumerate(codes):
        word |= c << (codes_field.offset + n * w)
    return word


def unpack_output(unit: DecodeUnit, word: int) -> list[int]:
    field = unit.o.payload.shape()["values"]
    width = OUT_WIDTH[unit.out]
    mask = (1 << width) - 1
    return [(word >> (field.offset + n * width)) & mask for n in range(unit.lanes)]


def exhaustive_beats(fmt, lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (header, code) pair, as beats of ``lanes`` codes: headers (beats,), codes (beats, lanes)."""
    codes = np.arange(1 << fmt.element_width, dtype=np.uint16)
    codes = np.resize(codes, -(-codes.size // lanes) * lanes).reshape(-1, lanes)
    headers = np.arange(1 << fmt.header_bits, dtype=np.uint16)
    return np.repeat(headers, len(codes)), np.tile(codes, (len(headers), 1))


def run_combinational(unit: DecodeUnit, headers: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Drive each beat into a pipeline=0 unit and read the outputs without clock ticks."""
    assert unit.latency == 0
    sim = Simulator(unit)
    got = np.zeros(codes.shape, dtype=np.int64)

    async def bench(ctx) -> None:
        ctx.set(unit.i.valid, 1)
        ctx.set(unit.o.ready, 1)
        payload_in = Value.cast(unit.i.payload)
        payload_out = Value.cast(unit.o.payload)
        for b in range(len(headers)):
            ctx.set(payload_in, pack_input(unit, int(headers[b]), [int(c) for c in codes[b]]))
            assert ctx.get(unit.o.valid) == 1 and ctx.get(unit.i.ready) == 1
            got[b] = unpack_output(unit, ctx.get(payload_out))

    sim.add_testbench(bench)
    sim.run()
    return got


def check_exhaustive(fmt, out: str, lanes: int) -> None:
    unit = DecodeUnit(fmt, lanes=lanes, out=out, pipeline="none")
    headers, codes = exhaustive_beats(fmt, lanes)
    want = decode_bits(fmt, headers, codes, out=out).astype(np.int64)
    got = run_combinational(unit, headers, codes)
    bad = np.argwhere(got != want)
    if bad.size:
        lines = [f"header {int(headers[b]):#x} code {int(codes[b, n]):#x}: got {got[b, n]:#x} want {want[b, n]:#x}"
                 for b, n in bad[:8]]
        pytest.fail(f"{fmt.label} -> {out}: {len(bad)} mismatches\n" + "\n".join(lines))


def run_streaming(unit: DecodeUnit, headers: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """One beat per cycle into a pipelined unit with ``o.ready`` high: every output arrives exactly
    ``latency`` cycles after its beat, in order."""
    sim = Simulator(unit)
    sim.add_clock(1e-8)
    got = np.zeros(codes.shape, dtype=np.int64)
    nbeats = len(headers)

    async def bench(ctx) -> None:
        ctx.set(unit.o.ready, 1)
        payload_in = Value.cast(unit.i.payload)
        payload_out = Value.cast(unit.o.payload)
        out = 0
        for cycle in range(nbeats + unit.latency + 1):
            ctx.set(unit.i.valid, cycle < nbeats)
            if cycle < nbeats:
                ctx.set(payload_in, pack_input(unit, int(headers[cycle]), [int(c) for c in codes[cycle]]))
                assert ctx.get(unit.i.ready)
            if ctx.get(unit.o.valid):
                assert cycle == out + unit.latency, f"beat {out} left at cycle {cycle}, latency {unit.latency}"
                got[out] = unpack_output(unit, ctx.get(payload_out))
                out += 1
            await ctx.tick()
        assert out == nbeats, f"{out} of {nbeats} beats came out"

    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("name,lanes", [("nxfp4", 16), ("mxfp4_e2m1", 16), ("mxfp8_e4m3", 32), ("nxfp6", 32)])
def test_exhaustive_fp32(name: str, lanes: int) -> None:
    """Every header x every code of the preset, fp32 output."""
    check_exhaustive(PRESETS[name], "fp32", lanes)


@pytest.mark.parametrize("out", ["bf16", "fp16"])
def test_exhaustive_half_outputs(out: str) -> None:
    """Every header x code of nxfp4 into bf16/fp16: overflow to Inf and subnormal results."""
    check_exhaustive(PRESETS["nxfp4"], out, 16)


@pytest.mark.parametrize(
    "spec,out",
    [
        ("elem=E2M1|E1M2|E3M0,scale=UE5M1,cr=pm,k=16", "fp32"),  # selector value 3 is out of range
        ("elem=E2M1,scale=UE6M2,cr=5|-5|7,k=16", "fp16"),  # recycle option 3 is out of range
        ("elem=E3M2,scale=E7M0,cr=pm,k=8", "bf16"),
    ],
)
def test_exhaustive_custom_formats(spec: str, out: str) -> None:
    fmt = parse_format(spec)
    check_exhaustive(fmt, out, min(fmt.k, 1 << fmt.element_width))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxint8", "nxfp5"])
@pytest.mark.parametrize("out", ["fp32", "fp16"])
def test_exhaustive_other_presets(name: str, out: str) -> None:
    check_exhaustive(PRESETS[name], out, 32)


def test_mxint8_and_e5m2_spot_checks() -> None:
    """The two-complement and Inf/NaN paths on all their codes for a few scales (fast subset)."""
    for name in ("mxint8", "mxfp8_e5m2"):
        fmt = PRESETS[name]
        unit = DecodeUnit(fmt, lanes=32, pipeline="none")
        codes = np.arange(256, dtype=np.uint16).reshape(-1, 32)
        headers = np.repeat(np.array([0, 1, 100, 127, 200, 254, 255], dtype=np.uint16), len(codes))
        codes = np.tile(codes, (7, 1))
        want = decode_bits(fmt, headers, codes).astype(np.int64)
        assert np.array_equal(run_combinational(unit, headers, codes), want), name


# Formats and outputs that exercise every lane datapath: per-block exponent candidates without and
# with subnormal/overflow logic (nxfp4, mxfp4 -> fp32), a per-lane exponent adder (mxfp8 -> fp32) and
# the rounding path (mxfp4 -> fp16, round_to_ieee with its cut hook).
DATAPATHS = [("nxfp4", "fp32"), ("mxfp4_e2m1", "fp32"), ("nxfp4", "fp16"), ("mxfp8_e4m3", "fp32"),
             ("mxfp4_e2m1", "fp16")]
CUT_SETS = ["none", "in", "product", "norm", "out", "product,out", "all"]


@pytest.mark.parametrize("cuts", CUT_SETS)
@pytest.mark.parametrize("name,out", DATAPATHS)
def test_cut_sets_bit_exact(name: str, out: str, cuts: str) -> None:
    """Every header x every code streamed through the unit with each set of register positions:
    bit-exact, latency = number of registers, one beat per cycle."""
    fmt = PRESETS[name]
    lanes = 8
    unit = DecodeUnit(fmt, lanes=lanes, out=out, pipeline=cuts)
    assert unit.latency == len(unit.cuts)
    headers, codes = exhaustive_beats(fmt, lanes)
    if fmt.element_width == 8:  # 256 headers x 32 beats: keep a stride of the headers
        keep = np.isin(headers, np.arange(0, 256, 7))
        headers, codes = headers[keep], codes[keep]
    want = decode_bits(fmt, headers, codes, out=out).astype(np.int64)
    got = run_streaming(unit, headers, codes) if unit.latency else run_combinational(unit, headers, codes)
    bad = np.argwhere(got != want)
    if bad.size:
        b = tuple(bad[0])
        pytest.fail(f"{fmt.label} -> {out}, cuts {unit.cuts}: {len(bad)} mismatches, first: header "
                    f"{int(headers[b[0]]):#x} code {int(codes[b]):#x} got {got[b]:#x} want {want[b]:#x}")


@pytest.mark.parametrize("name,out", [("nxfp4", "fp32"), ("nxfp4", "fp16"), ("mxfp4_e2m1", "fp32"),
                                      ("mxfp4_e2m1", "fp16"), ("mxfp8_e5m2", "bf16"), ("mxint8", "fp32")])
def test_arithmetic_lanes(monkeypatch, name: str, out: str) -> None:
    """Formats too wide for the lane lookup table decode the element arithmetically: forced here."""
    monkeypatch.setattr(decode_mod, "TABLE_MAX_BITS", 0)
    assert DecodeUnit(PRESETS[name], lanes=1)._lane.table is None
    check_exhaustive(PRESETS[name], out, 16 if PRESETS[name].element_width == 4 else 32)


def test_datapath_choices() -> None:
    """Which lane datapath each preset gets (docs/timing.md): exact with per-block exponent candidates
    for the 4- and 6-bit presets into fp32, a per-lane exponent adder for 8-bit minifloats, rounding
    only where products can be inexact."""
    plan = {(n, o): DecodeUnit(PRESETS[n], lanes=1, out=o)._exact for n in PRESETS for o in ("fp32", "bf16", "fp16")}
    assert plan[("nxfp4", "fp32")] == {"subnormal": False, "overflow": False, "candidates": True}
    assert plan[("mxfp4_e2m1", "fp32")] == {"subnormal": True, "overflow": True, "candidates": True}
    assert plan[("mxfp8_e4m3", "fp32")] == {"subnormal": True, "overflow": True, "candidates": False}
    assert plan[("mxfp4_e2m1", "fp16")] is None and plan[("mxfp8_e4m3", "bf16")] is None
    assert all(plan[(n, o)] is not None for n in PRESETS for o in ("fp32",))
    assert all(plan[(n, "fp16")] is not None for n in ("nxfp4", "nxfp5", "nxfp6"))


class _ElementOnly(Elaboratable):
    def __init__(self, fmt) -> None:
        self.dec = ElementDecoder(fmt)
        self.code = Signal(fmt.element_width)
        self.sel = Signal(max(fmt.selector_bits, 1))
        self.rec = Signal(max(fmt.recycle_bits, 1))
        self.out = Signal(self.dec.layout)

    def elaborate(self, platform) -> Module:
        m = Module()
        m.d.comb += self.out.eq(self.dec.decode(m, self.code, selector=self.sel, recycle=self.rec))
        return m


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_element_decoder_matches_tables(name: str) -> None:
    """sign, sig * 2^(exp + exp_base) and the flags reproduce ``fmt.element_table`` exactly."""
    fmt = PRESETS[name]
    dut = _ElementOnly(fmt)
    sim = Simulator(dut)
    errors: list[str] = []

    async def bench(ctx) -> None:
        for c in range(len(fmt.elements)):
            for r in range(max(fmt.recycle_options, 1)):
                table = fmt.element_table(c, r)
                ctx.set(dut.sel, c)
                ctx.set(dut.rec, r)
                for code in range(1 << fmt.element_width):
                    ctx.set(dut.code, code)
                    o = dut.out
                    sign, sig, exp = ctx.get(o.sign), ctx.get(o.sig), ctx.get(o.exp)
                    nan, inf, zero = ctx.get(o.is_nan), ctx.get(o.is_inf), ctx.get(o.is_zero)
                    v = float(table[code])
                    if np.isnan(v):
                        ok = nan and not inf and not zero
                    elif np.isinf(v):
                        ok = inf and not nan and not zero and sign == int(v < 0)
                    else:
                        mag = Fraction(sig) * Fraction(2) ** (exp + dut.dec.exp_base)
                        ok = (not nan and not inf and zero == (v == 0) and mag == abs(Fraction(v))
                              and sign == int(np.signbit(v)))
                    if not ok:
                        errors.append(f"cand {c} opt {r} code {code:#x} value {v}: sign {sign} sig {sig} exp {exp} "
                                      f"nan {nan} inf {inf} zero {zero}")

    sim.add_testbench(bench)
    sim.run()
    assert not errors, f"{len(errors)} errors, first: " + "; ".join(errors[:4])


def _stream_run(unit, beats: list[int], rng: random.Random, cycles_limit: int,
                p_valid: float, p_ready: float) -> tuple[list[int], list[int]]:
    """Random valid/ready around ``unit``: returns (payloads accepted at i, payloads delivered at o).

    Also asserts the output stream rule: while ``o.valid`` and not ``o.ready`` the beat is held.
    """
    sim = Simulator(unit)
    sim.add_clock(1e-8)
    accepted: list[int] = []
    delivered: list[int] = []

    async def bench(ctx) -> None:
        pin, pout = Value.cast(unit.i.payload), Value.cast(unit.o.payload)
        pending = list(beats)
        holding = False
        stalled: int | None = None
        for _ in range(cycles_limit):
            if not holding and pending and rng.random() < p_valid:
                ctx.set(pin, pending[0])
                holding = True
            ctx.set(unit.i.valid, holding)
            ctx.set(unit.o.ready, rng.random() < p_ready)
            in_xfer = holding and ctx.get(unit.i.ready)
            o_valid, o_ready, o_data = ctx.get(unit.o.valid), ctx.get(unit.o.ready), ctx.get(pout)
            if stalled is not None:
                assert o_valid and o_data == stalled, "output beat changed or vanished while stalled"
            stalled = o_data if o_valid and not o_ready else None
            if o_valid and o_ready:
                delivered.append(o_data)
            await ctx.tick()
            if in_xfer:
                accepted.append(pending.pop(0))
                holding = False
            if not pending and not holding and len(delivered) == len(beats):
                break

    sim.add_testbench(bench)
    sim.run()
    return accepted, delivered


@pytest.mark.parametrize("pipeline", [1, 2, 3, "in", "norm", "product,out", "in,norm", "all"])
@pytest.mark.parametrize("name", ["nxfp4", "mxfp4_e2m1"])
def test_backpressure_no_drop_no_duplicate(name: str, pipeline) -> None:
    """Random valid/ready: every accepted beat comes out once, in order, decoded right."""
    fmt = PRESETS[name]
    rng = random.Random(seed_for(f"test_backpressure_no_drop_no_duplicate[{name}-{pipeline}]"))
    unit = DecodeUnit(fmt, lanes=4, pipeline=pipeline)
    nbeats = 120
    headers = [rng.randrange(1 << fmt.header_bits) for _ in range(nbeats)]
    codes = [[rng.randrange(16) for _ in range(4)] for _ in range(nbeats)]
    beats = [pack_input(unit, h, c) for h, c in zip(headers, codes, strict=True)]
    accepted, delivered = _stream_run(unit, beats, rng, 4000, p_valid=0.7, p_ready=0.5)
    assert accepted == beats
    assert len(delivered) == nbeats, f"{len(delivered)} beats delivered for {nbeats} accepted"
    want = decode_bits(fmt, np.array(headers, dtype=np.uint16), np.array(codes, dtype=np.uint16))
    for b, word in enumerate(delivered):
        assert unpack_output(unit, word) == [int(x) for x in want[b]], f"beat {b}"


@pytest.mark.parametrize("pipeline", [1, 2, 4, "in,norm", "all"])
def test_latency_and_full_rate(pipeline) -> None:
    """With o.ready high, beat t is valid at the output exactly ``latency`` cycles later, one per cycle."""
    fmt = PRESETS["mxfp4_e2m1"]
    unit = DecodeUnit(fmt, lanes=2, pipeline=pipeline)
    assert unit.initiation_interval == 1
    assert unit.latency == (pipeline if isinstance(pipeline, int) else len(pipeline.split(",")) if pipeline != "all"
                            else 4)
    pipeline = unit.latency
    sim = Simulator(unit)
    sim.add_clock(1e-8)
    nbeats = 10
    beats = [pack_input(unit, 127, [t % 16, (t + 5) % 16]) for t in range(nbeats)]
    seen: list[tuple[int, int]] = []

    async def bench(ctx) -> None:
        ctx.set(unit.o.ready, 1)
        for cycle in range(nbeats + pipeline + 2):
            ctx.set(unit.i.valid, cycle < nbeats)
            if cycle < nbeats:
                ctx.set(Value.cast(unit.i.payload), beats[cycle])
                assert ctx.get(unit.i.ready)
            if ctx.get(unit.o.valid):
                seen.append((cycle, ctx.get(Value.cast(unit.o.payload))))
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    assert [c for c, _ in seen] == [t + pipeline for t in range(nbeats)]
    want = decode_bits(fmt, np.full(nbeats, 127, dtype=np.uint16),
                       np.array([[t % 16, (t + 5) % 16] for t in range(nbeats)], dtype=np.uint16))
    assert [unpack_output(unit, w) for _, w in seen] == [[int(x) for x in row] for row in want]


def test_pipeline_register_random_handshake() -> None:
    """PipelineRegister alone (4 stages, narrow payload): no beat dropped, duplicated or reordered."""
    rng = random.Random(seed_for("test_pipeline_register_random_handshake"))
    reg = PipelineRegister(12, stages=4)
    beats = [rng.randrange(1 << 12) for _ in range(300)]
    accepted, delivered = _stream_run(reg, beats, rng, 5000, p_valid=0.6, p_ready=0.6)
    assert accepted == beats and delivered == beats


def test_parameters_and_attributes() -> None:
    fmt = PRESETS["nxfp4"]
    unit = DecodeUnit(fmt, lanes=8, out="bf16", pipeline=2)
    assert unit.unit_kind == "decode" and unit.formats == {"a": fmt} and unit.lanes == 8
    assert unit.pipeline_positions == DECODE_POSITIONS == ("in", "product", "norm", "out")
    assert unit.cuts == unit.pipeline == ("product", "out")
    assert unit.latency == 2 and unit.initiation_interval == 1
    assert unit.config == {"unit": "decode", "format": fmt.to_string(), "lanes": 8, "out": "bf16",
                           "pipeline": ["product", "out"]}
    assert unit.module_name == "nxfp_decode_nxfp4_l8_bf16_pa"  # bit mask of the positions in datapath order
    assert DecodeUnit(fmt).lanes == 32
    default = DecodeUnit(fmt)
    assert default.cuts == DECODE_DEFAULT_CUTS and default.latency == len(DECODE_DEFAULT_CUTS)
    # A count takes the first n of out, product, norm, in; names in any order come out in datapath order.
    assert DecodeUnit(fmt, pipeline=1).cuts == ("out",)
    assert DecodeUnit(fmt, pipeline=3).cuts == ("product", "norm", "out")
    assert DecodeUnit(fmt, pipeline="out, in").cuts == ("in", "out")
    assert DecodeUnit(fmt, pipeline=["norm"]).cuts == ("norm",)
    assert DecodeUnit(fmt, pipeline="all").cuts == DECODE_POSITIONS and DecodeUnit(fmt, pipeline="all").latency == 4
    assert DecodeUnit(fmt, pipeline="none").latency == 0 and DecodeUnit(fmt, pipeline=0).module_name.endswith("_p0")
    assert DecodeUnit(fmt, pipeline="2").cuts == ("product", "out")
    with pytest.raises(ValueError, match=r"pipeline: no register position 'middle'.*in, product, norm, out"):
        DecodeUnit(fmt, pipeline="product,middle")
    with pytest.raises(ValueError, match=r"pipeline: expected a register count in 0\.\.4"):
        DecodeUnit(fmt, pipeline=5)
    with pytest.raises(TypeError, match="pipeline"):
        DecodeUnit(fmt, pipeline=True)
    with pytest.raises(ValueError, match="lanes"):
        DecodeUnit(fmt, lanes=3)
    with pytest.raises(ValueError, match="lanes"):
        DecodeUnit(fmt, lanes=64)
    with pytest.raises(TypeError, match="lanes"):
        DecodeUnit(fmt, lanes=2.0)
    with pytest.raises(ValueError, match="out"):
        DecodeUnit(fmt, out="fp64")
    with pytest.raises(ValueError, match="pipeline"):
        DecodeUnit(fmt, pipeline=-1)
    with pytest.raises(TypeError, match="fmt"):
        DecodeUnit("nxfp4")
    with pytest.raises(ValueError, match="stages"):
        PipelineRegister(8, stages=-1)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_verilog_conversion(name: str) -> None:
    """Every preset converts to Verilog deterministically, under its own module name."""
    unit = DecodeUnit(PRESETS[name], lanes=2, pipeline=1)  # 2 lanes keep the test fast; lanes are copies
    text = verilog.convert(unit, name=unit.module_name, emit_src=False)
    assert f"module {unit.module_name}(" in text
    assert text == verilog.convert(DecodeUnit(PRESETS[name], lanes=2, pipeline=1), name=unit.module_name,
                                   emit_src=False)


@pytest.mark.parametrize(("name", "pipeline"), [("mxfp8_e4m3", 0), ("nxfp4", 2), ("mxfp4_e2m1", "all"),
                                              ("mxfp8_e4m3", "all")])
def test_no_net_assembled_from_parts(name: str, pipeline) -> None:
    """Icarus speed guard: no wire of the emitted decode unit is driven slice by slice.

    A struct Signal assembled from several drivers (all lanes' products, one lane's fields) is one
    net in Icarus, re-sent to every reader on each partial update; that made the 32-lane unit
    simulate at a few cycles per second. Each such driver shows up as ``assign name[hi:lo] = ...``
    (escaped names end with a space); yosys's own ``$`` wires are not named Signals.
    """
    unit = DecodeUnit(parse_format(name), lanes=8, pipeline=pipeline)
    text = verilog.convert(unit, name=unit.module_name, emit_src=False)
    pattern = r"^\s*assign\s+(\\[^$\s]\S* |[A-Za-z_]\w*)\[[0-9:]+\]\s*="
    partial = sorted({m.group(1).strip() for m in re.finditer(pattern, text, re.M)})
    assert partial == [], f"wires driven slice by slice: {partial[:10]}"
