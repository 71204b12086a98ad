"""Energy per operation from simulated switching activity (docs/area.md, "Energy per operation").

The ``power`` flow of one unit:

1. the ``asic`` flow (:func:`nxfp_hw.flows.area.run_area`): the netlist mapped to OSU 0.18 um cells and
   its Fmax from OpenSTA;
2. gate-level simulation of that netlist (:mod:`nxfp_hw.flows.gate_level`) under each workload
   (:data:`WORKLOADS`), streamed at full rate (no valid gaps, no backpressure) through the unit's cocotb
   testbench: every output is checked bit-exact against the golden model, and the wrapper samples every
   net once per cycle;
3. the toggles and time-high of every net over the stream window (:mod:`nxfp_hw.flows.activity`), set on
   every cell pin of the netlist (``sta::set_power_pin_activity``: the pin's net's toggles per clock
   cycle and duty), then OpenSTA's ``report_power`` at the unit's Fmax and at the reference clock;
4. energy per operation = power x window cycles x clock period / operations, split into internal,
   switching and leakage: pJ per multiply-accumulate (dot), per decoded value (decode), per encoded value
   (encode).

Limits (docs/area.md): zero-delay simulation (no glitches), no wire capacitance (no wire load, no
placement), no clock tree (the flip-flops' clock pins toggle twice a cycle, nothing drives them), one
corner (typical, 1.8 V, 25 C), the Liberty's internal-power tables as OpenSTA 2019 reads them.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..formats import BlockFormat, parse_format
from . import area as area_mod
from .activity import NetActivity, activity_from_samples
from .area import AreaResult, FlowError

__all__ = ["DEFAULT_BLOCKS", "REFERENCE_MHZ", "WORKLOADS", "EnergyFigures", "load_workload", "netlist_pins",
           "power_digest", "run_power", "run_power_build", "sta_power", "workload_vectors"]

WORKLOADS = ("minilm", "random", "zero")
DEFAULT_WORKLOADS = WORKLOADS
DEFAULT_BLOCKS = 64  # blocks per workload: 256 cycles of an 8-lane unit at full rate
REFERENCE_MHZ = 100.0
REDUCTION_BLOCKS = 8  # blocks per dot product of the dot engine's workloads (256 elements at k = 32)
DEFAULT_SEED = 2024
OP_NAMES = {"dot": "MAC", "decode": "value", "encode": "value"}
COMPONENTS = ("internal", "switching", "leakage", "total")


# --- workloads -----------------------------------------------------------------------------------

def _minilm_floats(n: int, rng: np.random.Generator) -> np.ndarray:
    from nxfp_hw.tensors import minilm_weights

    w = np.asarray(minilm_weights(), dtype=np.float64).reshape(-1)
    start = int(rng.integers(0, w.size - n))
    return w[start:start + n]


def workload_floats(name: str, nblocks: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The real-valued data of a workload, independent of the format (so every format sees the same
    numbers): ``(a, b)`` of shape ``(nblocks, k)``; ``b`` (the dot engine's second operand) is None for
    the ``random`` workload, whose codes are drawn directly.

    - ``minilm``: ``a`` = consecutive all-MiniLM-L6-v2 encoder weights from a seeded offset, ``b`` =
      activations drawn from a standard normal distribution (the scale of LayerNorm outputs);
    - ``random``: ``a`` = Gaussian blocks with a per-block magnitude spread of 10^+-3 (the encoder's
      input); the decode and dot units get uniformly random codes and headers instead;
    - ``zero``: all zeros."""
    rng = np.random.default_rng(seed)
    shape = (nblocks, k)
    if name == "minilm":
        return _minilm_floats(nblocks * k, rng).reshape(shape), rng.standard_normal(shape)
    if name == "random":
        return rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, (nblocks, 1)), None
    if name == "zero":
        return np.zeros(shape), np.zeros(shape)
    raise UserError(f"workload: unknown workload {name!r}; expected one of {', '.join(WORKLOADS)} or a .npz file")


def _random_codes(fmt: BlockFormat, nblocks: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Uniformly random codes under random finite headers (every selector and recycling option)."""
    scale = rng.integers(0, fmt.scale.nan_code, nblocks)  # codes below the NaN code
    headers = np.array([fmt.make_header(int(s), int(rng.integers(0, 1 << fmt.selector_bits)),
                                        int(rng.integers(0, 1 << fmt.recycle_bits))) for s in scale], np.uint16)
    return headers, rng.integers(0, 1 << fmt.element_width, (nblocks, fmt.k)).astype(np.uint16)


def _quantized(x: np.ndarray, fmt: BlockFormat) -> tuple[np.ndarray, np.ndarray]:
    from nxfp_hw.golden.quantize import quantize

    q = quantize(x, fmt)
    n = x.shape[0]
    return q.headers.reshape(n).astype(np.uint16), q.codes.reshape(n, fmt.k).astype(np.uint16)


def load_workload(path: Path, unit: str, k: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A user workload: ``.npy`` (or one-array ``.npz``) of floats ``(..., k)`` for decode/encode, an ``.npz``
    with float arrays ``a`` and ``b`` of one shape ``(..., k)`` for dot. ``UserError`` naming what is wrong."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"workload: cannot read {path} as .npy/.npz: {exc}") from None
    arrays = {"a": z} if isinstance(z, np.ndarray) else {n: z[n] for n in z.files}
    if unit == "dot":
        if set(arrays) != {"a", "b"}:
            raise UserError(f"workload: {path} for the dot engine must hold float arrays a and b, "
                            f"got {', '.join(sorted(arrays)) or 'none'}")
    elif len(arrays) != 1:
        raise UserError(f"workload: {path} must hold one float array, got {len(arrays)}")
    out = []
    for name, arr in sorted(arrays.items()):
        if arr.dtype.kind != "f":
            raise UserError(f"workload: array {name} of {path} has dtype {arr.dtype}, expected floats")
        if arr.ndim == 0 or arr.shape[-1] % k or arr.size == 0:
            raise UserError(f"workload: array {name} of {path} has shape {arr.shape}; the last axis must be a "
                            f"non-zero multiple of k={k}")
        if not np.isfinite(arr).all():
            raise UserError(f"workload: array {name} of {path} holds NaN or Inf")
        out.append(np.asarray(arr, np.float64).reshape(-1, k))
    if unit == "dot" and out[0].shape != out[1].shape:
        raise UserError(f"workload: arrays a and b of {path} differ in shape ({arrays['a'].shape} vs "
                        f"{arrays['b'].shape})")
    return out[0], (out[1] if unit == "dot" else None)


def workload_vectors(unit: str, fmt: BlockFormat, manifest: dict[str, Any], name: str, *, nblocks: int,
                     seed: int, data: tuple[np.ndarray, np.ndarray | None] | None = None,
                     fmt_b: BlockFormat | None = None) -> Any:
    """The :class:`verif.vectors.VectorSet` of workload ``name`` for ``unit`` in format ``fmt`` (the dot
    engine's second operand in ``fmt_b``, default ``fmt``), with golden expectations, no mid-stream reset.
    ``data`` overrides the floats."""
    from verif.vectors import BlockStream, decode_vectors, dot_mode_of, dot_vectors, encode_vectors

    lanes = int(manifest["lanes"])
    k = fmt.k
    rng = np.random.default_rng(seed + 1)
    fb = fmt_b or fmt
    a, b = data if data is not None else workload_floats(name, nblocks, k, seed)
    n = a.shape[0]
    if unit == "encode":
        return encode_vectors(fmt, a, lanes, reset_prefix=0)
    if name == "random" and data is None:
        ha, ca = _random_codes(fmt, n, rng)
        hb, cb = _random_codes(fb, n, rng)
    else:
        ha, ca = _quantized(a, fmt)
        hb, cb = _quantized(b if b is not None else a, fb)
    if unit == "decode":
        per = k // lanes
        return decode_vectors(fmt, np.repeat(ha, per), ca.reshape(n * per, lanes), reset_prefix=0)
    last = np.zeros(n, bool)
    last[REDUCTION_BLOCKS - 1::REDUCTION_BLOCKS] = True
    last[-1] = True
    stream = BlockStream.empty(k)
    stream.add(f"workload {name}", ha, ca, hb, cb, last)
    mode, guard = dot_mode_of(manifest)
    return dot_vectors(fmt, fb, lanes, stream, rng, mode=mode, guard_bits=guard, reset_prefix=0)


# --- netlist and OpenSTA -------------------------------------------------------------------------

_INSTANCE = re.compile(r"^\s*([A-Za-z_]\w*)\s+(\\\S+|[A-Za-z_][\w$]*)\s*\((.*?)\);", re.M | re.S)
_CONN = re.compile(r"\.(\w+)\s*\(\s*(.*?)\s*\)\s*(?:,|$)", re.S)


def liberty_pin_directions(path: Path) -> dict[str, dict[str, str]]:
    """``{cell: {pin: direction}}`` of a Liberty file."""
    return {cell: facts["pins"] for cell, facts in area_mod.liberty_cells(path).items()}


def netlist_pins(netlist_text: str, directions: dict[str, dict[str, str]]) -> list[tuple[str, str, str, str]]:
    """``(instance, pin, net, direction)`` of every connected pin of every cell instance of a Yosys
    structural netlist (nets named as :func:`nxfp_hw.flows.gate_level.netlist_nets` names them)."""
    pins = []
    for m in _INSTANCE.finditer(netlist_text):
        cell, inst = m.group(1), m.group(2).removeprefix("\\")
        if cell in ("module", "input", "output", "wire", "assign"):
            continue
        if cell not in directions:
            raise UserError(f"power: cell {cell} of instance {inst} is not in the Liberty file")
        for c in _CONN.finditer(m.group(3)):
            pin, net = c.group(1), c.group(2).strip().removeprefix("\\").strip()
            if not net or re.fullmatch(r"\d+'[bh][0-9a-fA-FxXzZ]+", net):
                continue  # unconnected, or a constant: no activity
            pins.append((inst, pin, net, directions[cell].get(pin, "input")))
    return pins


@dataclass
class EnergyFigures:
    """Power (W) of one clock and the energy per operation (pJ) it implies for a window of a workload."""

    clock_mhz: float
    power_w: dict[str, float]
    energy_pj: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"clock_mhz": round(self.clock_mhz, 3),
                "power_mw": {k: round(v * 1e3, 6) for k, v in self.power_w.items()},
                "energy_pj_per_op": {k: round(v, 6) for k, v in self.energy_pj.items()}}


_POWER_LINE = re.compile(r"^Total\s+([-0-9.eE+]+)\s+([-0-9.eE+]+)\s+([-0-9.eE+]+)\s+([-0-9.eE+]+)", re.M)


def sta_power(netlist: Path, top: str, pins: list[tuple[str, str, str, str]], activity: NetActivity,
              clocks_mhz: list[float], *, workdir: Path, tag: str, clocked: bool, clock_port: str = "clk",
              liberty: Path | None = None) -> list[dict[str, float]]:
    """OpenSTA ``report_power`` of ``netlist`` with every cell pin's activity from ``activity`` (its net's
    toggles per cycle and duty; clock pins keep OpenSTA's two transitions per period), once per clock in
    ``clocks_mhz``: ``[{internal, switching, leakage, total}]`` in W. Every net of a pin must have an
    activity (``UserError`` otherwise)."""
    liberty = Path(liberty or area_mod.osu018_liberty())
    per_net = activity.per_cycle()
    lines = []
    missing = set()
    for inst, pin, net, _direction in pins:
        if net == clock_port:
            continue
        if net not in per_net:
            missing.add(net)
            continue
        act, duty = per_net[net]
        lines.append(f"{inst}/{pin} {act:.6g} {duty:.6g}")
    if missing:
        raise UserError(f"power: the activity has no value for {len(missing)} nets of the netlist "
                        f"(e.g. {', '.join(sorted(missing)[:3])}): activity of another netlist?")
    period0 = 1000.0 / clocks_mhz[0]
    if clocked:
        clock = f"create_clock -name clk -period {{period}} [get_ports {clock_port}]"
        inputs = f"delete_from_list [all_inputs] [get_ports {clock_port}]"
    else:
        clock, inputs = "create_clock -name clk -period {period}", "all_inputs"
    script = [f"read_liberty {liberty}", f"read_verilog {netlist.name}", f"link_design {top}",
              clock.format(period=f"{period0:.6g}"),
              f"set_input_delay 0 -clock clk [{inputs}]", "set_output_delay 0 -clock clk [all_outputs]",
              "report_checks -path_delay max -group_count 1 > /dev/null",
              # Inputs without an activity of their own (none here) would default to 0.1 per cycle.
              "set_power_activity -input -activity 0 -duty 0",
              # One pass over every pin (a get_pins per pin takes minutes on a 50,000-cell netlist).
              f"set fh [open power_{tag}.act]",
              "while {[gets $fh line] >= 0} { set nxfp_a([lindex $line 0]) [lrange $line 1 2] }",
              "close $fh",
              "set nxfp_n 0",
              "foreach p [get_pins */*] {",
              "  set name [get_full_name $p]",
              "  if {[info exists nxfp_a($name)]} { sta::set_power_pin_activity $p {*}$nxfp_a($name); incr nxfp_n }",
              "}",
              "puts \"NXFP_PINS $nxfp_n\""]
    for mhz in clocks_mhz:
        script += [clock.format(period=f"{1000.0 / mhz:.6g}"), f"puts \"NXFP_POWER {mhz:.6g}\"",
                   "report_power -digits 8"]
    script.append("exit")
    (Path(workdir) / f"power_{tag}.act").write_text("\n".join(lines) + "\n")
    tcl = Path(workdir) / f"power_{tag}.tcl"
    tcl.write_text("\n".join(script) + "\n")
    run = area_mod._Runner(Path(workdir), area_mod.DEFAULT_TIMEOUT_S)
    step = f"power analysis (OpenSTA report_power, {tag})"
    sta = area_mod._tool("sta", step)
    text = run.run(step, [str(sta), "-no_init", "-no_splash", "-exit", tcl.name], f"power_{tag}.log")[1]
    log = Path(run.logs[step])
    if re.search(r"^Error", text, re.M):
        raise FlowError(step, area_mod._last_error(text), log)
    applied = re.search(r"^NXFP_PINS (\d+)", text, re.M)
    if applied is None or int(applied.group(1)) != len(lines):
        raise FlowError(step, f"OpenSTA found {applied.group(1) if applied else 'no'} of the {len(lines)} pins "
                        "given an activity", log)
    out = []
    for part in text.split("NXFP_POWER ")[1:]:
        m = _POWER_LINE.search(part)
        if m is None:
            raise FlowError(step, "no Total line in the report_power output", log)
        out.append(dict(zip(COMPONENTS, (float(v) for v in m.groups()), strict=True)))
    if len(out) != len(clocks_mhz):
        raise FlowError(step, f"expected {len(clocks_mhz)} power reports, found {len(out)}", log)
    return out


# --- the flow --------------------------------------------------------------------------------------

def _energy(power: dict[str, float], clock_mhz: float, cycles: float, ops: int) -> EnergyFigures:
    seconds = cycles / (clock_mhz * 1e6)
    energy = {k: power[k] * seconds / ops * 1e12 for k in COMPONENTS}
    return EnergyFigures(clock_mhz, power, energy)


def run_power(unit: str, fmt: BlockFormat | str, *, workdir: Path, build_root: Path | None = None,
              fmt_b: BlockFormat | None = None, lanes: int | None = None, pipeline: Any = None,
              acc: str | None = None, guard_bits: int | None = None, out: str = "fp32",
              input_format: str | None = None, config_hash: str | None = None,
              workloads: tuple[str, ...] = DEFAULT_WORKLOADS, workload_file: Path | None = None,
              blocks: int = DEFAULT_BLOCKS, seed: int = DEFAULT_SEED, simulator: str = "icarus",
              reference_mhz: float = REFERENCE_MHZ, period_ns: float | None = None,
              models: Path | None = None, asic: AreaResult | None = None) -> AreaResult:
    """The ``power`` flow of one unit (the dot engine's second operand in ``fmt_b``, default ``fmt``; the
    other options are those of ``generate.build_unit``; ``config_hash``, when given, must be the generated
    unit's: the power of another unit is refused): an :class:`AreaResult` whose figures
    hold, per workload, the energy per operation at Fmax and at ``reference_mhz`` (docs/area.md), and
    ``energy_pj_per_op`` (the first workload at the reference clock). ``asic`` reuses a finished asic run
    (its work directory holds the netlist). Raises ``UserError`` on bad input and when a gate-level run is
    not bit-exact (no energy from a wrong netlist)."""
    from verif.regression import prepare_module

    from .gate_level import cell_models, gate_level_module, run_gate_level

    t_start = time.monotonic()
    fmt = parse_format(fmt) if isinstance(fmt, str) else fmt
    if unit not in OP_NAMES:
        raise UserError(f"unit: unknown unit {unit!r}; expected one of {', '.join(OP_NAMES)}")
    if blocks < 1:
        raise UserError(f"blocks: expected a positive number of blocks, got {blocks}")
    if not reference_mhz > 0:
        raise UserError(f"reference clock: expected a positive frequency in MHz, got {reference_mhz}")
    names = list(workloads)
    for w in names:
        if w not in WORKLOADS:
            raise UserError(f"workload: unknown workload {w!r}; expected one of {', '.join(WORKLOADS)}")
    user_data = load_workload(workload_file, unit, fmt.k) if workload_file is not None else None
    if user_data is not None:
        names = ["file"] + names
    cell_models(models)  # a missing model file fails before any tool runs
    workdir = Path(workdir).resolve()
    root = Path(build_root).resolve() if build_root is not None else workdir / "sim"
    module = prepare_module(unit, fmt, (fmt_b or fmt) if unit == "dot" else None, lanes=lanes, pipeline=pipeline,
                            build_root=root, acc=acc, guard_bits=guard_bits, out=out, input_format=input_format)
    if config_hash is not None and module.manifest_data.get("config_hash") != config_hash:
        got = module.manifest_data.get("config_hash")
        raise UserError(f"power: the generated {module.name} has configuration {got}, expected {config_hash}")
    if asic is None:
        asic = area_mod.run_area(module.verilog, module.name, "asic", workdir=workdir, period_ns=period_ns)
    asic_dir = Path(next(iter(asic.logs.values()))).parent  # the asic flow's work directory
    fmax = asic.figures.get("fmax_mhz")
    gl = gate_level_module(module, asic_dir, workdir / "gate_level", models=models)
    nets = json.loads(gl.verilog.with_name(f"{gl.name}.nets.json").read_text())["nets"]
    netlist = asic_dir / "asic_netlist.v"
    pins = netlist_pins(netlist.read_text(), liberty_pin_directions(area_mod.osu018_liberty()))
    clocked = asic.figures.get("timing", "").startswith("clocked")
    clocks = [reference_mhz] + ([fmax] if fmax else [])
    results: dict[str, Any] = {}
    sim_seconds = sta_seconds = 0.0
    for w in names:
        data = user_data if w == "file" else None
        nb = data[0].shape[0] if data is not None else blocks
        vs = workload_vectors(unit, fmt, module.manifest_data, w, nblocks=nb, seed=seed, data=data, fmt_b=fmt_b)
        t0 = time.monotonic()
        run = run_gate_level(gl, vs, simulator, seed=seed, gap=0.0, stall=0.0, build_root=root / "gl",
                             tag=f"power-{w}")
        sim_seconds += time.monotonic() - t0
        if not run.passed:
            raise FlowError(f"gate-level simulation ({simulator}, workload {w})",
                            f"the netlist is not bit-exact against the golden model: {run.message}",
                            run.run_dir / "sim.log")
        if run.samples is None:
            raise FlowError(f"gate-level simulation ({simulator}, workload {w})", "the run wrote no net samples",
                            run.run_dir / "sim.log")
        act = activity_from_samples(run.samples, nets, module.manifest_data)
        ops = nb * fmt.k
        t0 = time.monotonic()
        reports = sta_power(netlist, module.name, pins, act, clocks, workdir=asic_dir, tag=w, clocked=clocked)
        sta_seconds += time.monotonic() - t0
        figs = [_energy(p, mhz, act.cycles, ops) for p, mhz in zip(reports, clocks, strict=True)]
        results[w] = {"ops": ops, "blocks": nb, "cycles": act.cycles, "bit_exact": True,
                      "vectors": int(run.stats.get("values", 0)), "activity": act.summary(),
                      "at_reference": figs[0].to_dict(), "at_fmax": figs[1].to_dict() if fmax else None}
        run.samples.unlink(missing_ok=True)  # tens of MB per run; the figures are kept
    head = results[names[0]]["at_reference"]["energy_pj_per_op"]
    figures: dict[str, Any] = {
        "op": OP_NAMES[unit],
        "energy_pj_per_op": head["total"],
        "energy_components_pj": {k: head[k] for k in ("internal", "switching", "leakage")},
        "energy_workload": names[0],
        "energy_pj_per_op_by_workload": {w: r["at_reference"]["energy_pj_per_op"]["total"] for w, r in results.items()},
        "reference_mhz": reference_mhz,
        "fmax_mhz": fmax,
        "area_um2": asic.figures.get("area_um2"),
        "simulator": simulator,
        "workloads": results,
        "gate_level_bit_exact": True,
        "sim_seconds": round(sim_seconds, 2),
        "sta_seconds": round(sta_seconds, 2),
    }
    notes = [f"energy per {OP_NAMES[unit]} from zero-delay gate-level simulation of the asic netlist ({simulator}) "
             f"and OpenSTA report_power; no wire load, no clock tree, typical corner (docs/area.md)"]
    return AreaResult(flow="power", top=module.name, figures=figures,
                      tools={**asic.tools, "sim": simulator}, commands=asic.commands, logs=asic.logs,
                      notes=notes, seconds=time.monotonic() - t_start)


def run_power_build(build: Any, *, workdir: Path, **options: Any) -> AreaResult:
    """:func:`run_power` of a :class:`nxfp_hw.flows.report.UnitBuild` (its generator configuration)."""
    c = build.config
    unit = c["unit"]
    fmt = parse_format(c.get("format") or c["format_a"])
    fmt_b = parse_format(c["format_b"]) if c.get("format_b") else None
    pipeline = c.get("pipeline")
    if isinstance(pipeline, list) and not pipeline:
        pipeline = "none"
    kw: dict[str, Any] = {"lanes": c.get("lanes"), "pipeline": pipeline, "fmt_b": fmt_b,
                          "config_hash": build.config_hash}
    if unit == "dot":
        kw.update(acc=c.get("accumulation"), guard_bits=c.get("guard_bits"))
    if unit == "decode" and c.get("out"):
        kw["out"] = c["out"]
    if unit == "encode" and c.get("input"):
        kw["input_format"] = c["input"]
    return run_power(unit, fmt, workdir=workdir, **kw, **options)


def power_digest() -> str:
    """Digest of the power flow's sources (gate-level wrapper, activity, OpenSTA script, workloads)."""
    import hashlib

    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in ("power.py", "activity.py", "gate_level.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]
