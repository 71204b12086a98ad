"""Gate-level simulation of the asic flow's mapped netlist (docs/area.md, "Energy per operation").

The netlist OpenSTA times (``asic_netlist.v`` of :func:`nxfp_hw.flows.area.run_area` with ``flow="asic"``:
OSU 0.18 um cells, every port split into one-bit ports for OpenSTA) is simulated with the cells'
Verilog models from Debian's ``qflow-tech-osu018`` (``osu018_stdcells.v``) by the same cocotb
testbenches, vectors and scoreboard as the RTL. A wrapper module with the RTL's port names and widths
(:func:`wrapper_verilog`) reassembles the split ports, so the manifest-driven stream drivers bind to it
as they bind to the RTL; the simulated netlist is byte for byte the one that was timed and is powered.

The wrapper also samples every net of the netlist once per clock cycle (at the falling edge, when the
zero-delay simulation has settled) and writes one line of ``0``/``1`` characters per cycle into
``activity.bits`` in the run directory, the nets in the order of ``<wrapper>.nets.json``: the switching
activity of :mod:`nxfp_hw.flows.activity`, the same on Icarus and on Verilator. Simulation is zero-delay
(the models' ``specify`` delays are removed): one value per net per cycle, no glitches.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from . import area as area_mod

__all__ = ["ACTIVITY_SAMPLES", "GateLevelRun", "cell_models", "gate_level_module", "netlist_nets", "netlist_ports",
           "run_gate_level", "sampler_verilog", "wrapper_verilog", "zero_delay_models"]

CELL_MODELS_NAME = "osu018_stdcells.v"
ACTIVITY_SAMPLES = "activity.bits"
SAMPLE_CHUNK = 256  # nets per $fwrite
# The instance name of the netlist inside the wrapper: the scope of every net in the VCD.
DUT_INSTANCE = "dut"


def cell_models(path: Path | None = None) -> Path:
    """The OSU 0.18 um cells' Verilog models (``qflow-tech-osu018``); ``UserError`` naming the file if absent."""
    path = Path(path) if path is not None else area_mod.OSU018_DIR / CELL_MODELS_NAME
    if not path.is_file():
        raise UserError(f"gate-level simulation: cell models {path} not found; install with: "
                        "apt-get install qflow-tech-osu018")
    text = path.read_text(errors="replace")
    if "module DFFPOSX1" not in text:
        raise UserError(f"gate-level simulation: {path} holds no OSU 0.18 um cell models (no module DFFPOSX1)")
    return path


_PORT_BIT = re.compile(r"(\w+)\[(\d+)\]")


_SPECIFY = re.compile(r"^\s*specify\b.*?^\s*endspecify\b[^\n]*\n", re.M | re.S)


def zero_delay_models(path: Path) -> str:
    """The cell models without their ``specify`` blocks (path delays, timing checks): the simulation is
    zero-delay on both simulators, and Verilator 5.048 fails to compile the blocks' ``specparam``s."""
    text = Path(path).read_text(errors="replace")
    stripped = _SPECIFY.sub("", text)
    if stripped.count("endmodule") != text.count("endmodule") or "specify" in stripped.replace("endspecify", ""):
        raise UserError(f"gate-level simulation: could not remove the specify blocks of {path}")
    return stripped


def netlist_ports(ports_json: Path, top: str) -> dict[str, tuple[str, int]]:
    """``{port: (direction, bits)}`` of module ``top`` in a Yosys ``write_json`` file (split ports as
    ``name[i]``)."""
    try:
        mod = json.loads(Path(ports_json).read_text())["modules"][top]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"gate-level simulation: no ports of {top} in {ports_json} ({exc})") from None
    return {name: (p["direction"], len(p["bits"])) for name, p in mod.get("ports", {}).items()}


_DECL = re.compile(r"^\s*(?:wire|input|output|inout)\s+(\[\s*(\d+)\s*:\s*(\d+)\s*\]\s*)?"
                   r"(\\\S+|[A-Za-z_][\w$]*)\s*;", re.M)


def netlist_nets(netlist_text: str) -> list[str]:
    """Every one-bit net of a Yosys-written structural netlist (ports and wires), as the netlist names it
    (escaped identifiers without their backslash: ``acc[3]`` for ``\\acc[3] ``; bits of a vector
    declaration as ``name[i]``), in declaration order."""
    nets: list[str] = []
    for m in _DECL.finditer(netlist_text):
        name = m.group(4).removeprefix("\\")
        if m.group(1):
            hi, lo = int(m.group(2)), int(m.group(3))
            nets += [f"{name}[{i}]" for i in range(min(hi, lo), max(hi, lo) + 1)]
        else:
            nets.append(name)
    return list(dict.fromkeys(nets))


def _hier_ref(net: str, vectors: set[str]) -> str:
    """A hierarchical reference to ``net`` inside the netlist instance (escaped when it is no plain name)."""
    if net in vectors or re.fullmatch(r"[A-Za-z_][\w$]*", net):
        return f"{DUT_INSTANCE}.{net}"
    return f"{DUT_INSTANCE}.\\{net} "


def sampler_verilog(nets: list[str], vectors: set[str] = frozenset(), clock: str = "clk") -> str:
    """Verilog (inside the wrapper) that writes the value of every net in ``nets`` at each falling edge of
    ``clock``: one line per cycle, one character per net (``0``, ``1``, ``x``, ``z``), MSB first."""
    lines = ["  integer nxfp_activity_fd;", f"  initial nxfp_activity_fd = $fopen(\"{ACTIVITY_SAMPLES}\", \"w\");",
             f"  always @(negedge {clock}) begin"]
    for i in range(0, len(nets), SAMPLE_CHUNK):
        refs = ", ".join(_hier_ref(n, vectors) for n in nets[i:i + SAMPLE_CHUNK])
        lines.append(f"    $fwrite(nxfp_activity_fd, \"%b\", {{{refs}}});")
    lines += ["    $fwrite(nxfp_activity_fd, \"\\n\");", "  end"]
    return "\n".join(lines) + "\n"


def wrapper_verilog(top: str, wrapper: str, manifest: dict[str, Any], ports: dict[str, tuple[str, int]],
                    sampler: str = "") -> str:
    """A module ``wrapper`` with the manifest's ports (names, directions, widths) around the split-port
    netlist module ``top`` (instance ``dut``). ``UserError`` naming the port when the netlist does not
    have every bit of every manifest port with the same direction, or has ports the manifest lacks."""
    decls, conns, seen = [], [], set()
    for p in manifest["ports"]:
        name, width, direction = p["name"], int(p["width"]), p["direction"]
        decls.append(f"  {direction} {'' if width == 1 else f'[{width - 1}:0] '}{name};")
        if width == 1 and name in ports:
            bits = [(name, name)]
        else:
            bits = [(f"{name}[{i}]", f"{name}[{i}]") for i in range(width)]
        for net_port, expr in bits:
            if net_port not in ports:
                raise UserError(f"gate-level simulation: the netlist of {top} has no port {net_port} "
                                f"(manifest port {name}, {width} bits)")
            if ports[net_port][0] != direction:
                raise UserError(f"gate-level simulation: port {net_port} of the netlist is an {ports[net_port][0]}, "
                                f"the manifest says {direction}")
            seen.add(net_port)
            conns.append(f"    .\\{net_port} ({expr})" if "[" in net_port else f"    .{net_port}({expr})")
    extra = sorted(set(ports) - seen)
    if extra:
        raise UserError(f"gate-level simulation: the netlist of {top} has ports the manifest lacks: "
                        f"{', '.join(extra[:5])}")
    names = ", ".join(p["name"] for p in manifest["ports"])
    return (f"`timescale 1ns/1ps\nmodule {wrapper}({names});\n" + "\n".join(decls) + "\n"
            f"  {top} {DUT_INSTANCE} (\n" + ",\n".join(conns) + "\n  );\n" + sampler + "endmodule\n")


def gate_level_module(module: Any, asic_dir: Path, out_dir: Path, *, models: Path | None = None) -> Any:
    """A :class:`verif.regression.ModuleFiles` whose Verilog is the asic flow's netlist in ``asic_dir``
    (``asic_netlist.v`` + ``asic_ports.json``), the cell models and the wrapper, in one file under
    ``out_dir``; its manifest is the RTL module's (``module``, a ``ModuleFiles``)."""
    from verif.regression import ModuleFiles

    models = cell_models(models)
    top = module.name
    netlist = Path(asic_dir) / "asic_netlist.v"
    if not netlist.is_file():
        raise UserError(f"gate-level simulation: no mapped netlist {netlist} (run the asic flow first)")
    ports = netlist_ports(Path(asic_dir) / "asic_ports.json", top)
    wrapper = f"{top}_gl"
    netlist_text = netlist.read_text()
    nets = netlist_nets(netlist_text)
    vectors = {n for n in nets if re.search(rf"^\s*wire\s+\[[^]]*\]\s*{re.escape(n.split('[', 1)[0])}\s*;",
                                            netlist_text, re.M)} if "wire [" in netlist_text else set()
    clock = module.manifest_data["clock"]["name"]
    text = ("`timescale 1ns/1ps\n" + netlist_text + "\n"
            + wrapper_verilog(top, wrapper, module.manifest_data, ports, sampler_verilog(nets, vectors, clock))
            + "\n" + zero_delay_models(models))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    src = out_dir / f"{wrapper}.v"
    (out_dir / f"{wrapper}.nets.json").write_text(json.dumps({"top": top, "instance": DUT_INSTANCE,
                                                              "clock": clock, "nets": nets}) + "\n")
    if not src.is_file() or src.read_text() != text:
        tmp = src.with_name(f".{src.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, src)
    return ModuleFiles(wrapper, src, module.manifest, module.manifest_data)


@dataclass
class GateLevelRun:
    """One testbench run on the gate-level model."""

    passed: bool
    stats: dict[str, Any]
    message: str
    run_dir: Path
    samples: Path | None  # the per-cycle net values (``activity.bits``), None when the run wrote none
    build_seconds: float
    wall_seconds: float
    simulator: str


def run_gate_level(gl_module: Any, vectors: Any, simulator: str, *, seed: int, gap: float = 0.2, stall: float = 0.3,
                   build_root: Path, tag: str = "gl", reset_prefix: int | None = None,
                   testbench: str | None = None) -> GateLevelRun:
    """Drive ``vectors`` (a :class:`verif.vectors.VectorSet`) through the gate-level model on ``simulator``
    with the unit's cocotb testbench (:data:`verif.regression.TESTBENCHES`), bit-exact against the golden
    expectations; the run leaves the net samples (``activity.bits``) in its run directory. Never raises on
    a mismatch (see ``passed``)."""
    from sim.runner import build, run
    from verif.bench import ENV
    from verif.regression import TESTBENCHES

    sim_build = build(simulator, [gl_module.verilog], gl_module.name, build_root=Path(build_root))
    tb = testbench or TESTBENCHES[gl_module.manifest_data["unit"]]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    run_dir = sim_build.build_dir / "runs" / f"{worker}-{os.getpid()}-{tag}-{seed}"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    vec_path = vectors.save(run_dir.parent / f"{run_dir.name}.vectors.npz")
    out_path = run_dir.parent / f"{run_dir.name}.out.npz"
    out_path.unlink(missing_ok=True)
    env = {ENV["manifest"]: str(gl_module.manifest), ENV["vectors"]: str(vec_path), ENV["output"]: str(out_path),
           ENV["seed"]: str(seed), ENV["gap"]: str(gap), ENV["stall"]: str(stall),
           ENV["reset_prefix"]: str(-1 if reset_prefix is None else reset_prefix)}
    result = run(sim_build, tb, env=env, seed=seed, run_dir=run_dir, tag=tag)
    stats: dict[str, Any] = {}
    if out_path.is_file():
        with np.load(out_path, allow_pickle=False) as z:
            stats = json.loads(str(z["stats"]))
    passed = result.passed and bool(stats.get("passed"))
    if passed:
        vec_path.unlink(missing_ok=True)
    message = str(stats.get("first_mismatch") or "") or ("passed" if passed else result.summary())
    samples = run_dir / ACTIVITY_SAMPLES
    return GateLevelRun(passed, stats, message, run_dir, samples if samples.is_file() else None,
                        sim_build.build_seconds, result.wall_seconds, simulator)
