"""Area and timing of a Verilog module with open tools (docs/area.md).

Four flows, each a pure function of (Verilog, top, options) that keeps every tool log in its work
directory and returns an :class:`AreaResult`:

- ``generic``: Yosys ``synth`` to its internal gate library, ``stat -tech cmos``: cells by type and
  a CMOS transistor estimate (technology independent, no timing).
- ``asic``: Yosys mapped to the OSU 0.18 um standard cells (Debian ``qflow-tech-osu018``), area in
  um^2 from the Liberty, then OpenSTA on the mapped netlist: critical path and Fmax.
- ``ice40``: ``synth_ice40`` counts (LUT4, carry, DFF, SB_MAC16, RAM) and a placed-and-routed Fmax
  from ``nextpnr-ice40`` (UP5K, falling back to HX8K when the design does not fit).
- ``xilinx``: ``synth_xilinx`` (7 series) counts: LUTs by size, CARRY4, DSP48E1, FFs (no P&R).

Errors (a missing tool, a failing step, an unparsable report) raise :class:`FlowError`, whose
message names the step and the log file that was kept.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ToolError
from ..interrupts import Terminated, stopping
from . import tools

__all__ = ["FLOWS", "AreaResult", "FlowError", "default_cache_dir", "liberty_cells", "osu018_liberty", "run_area",
           "run_flows"]

FLOWS = ("generic", "asic", "ice40", "xilinx")

OSU018_DIR = Path("/usr/share/qflow/tech/osu018")
DEFAULT_PERIOD_NS = 10.0
DEFAULT_ICE40_FREQ_MHZ = 50.0
DEFAULT_TIMEOUT_S = 3600.0
# nextpnr-ice40 routes the units here in well under a minute; longer means a stuck router.
DEFAULT_PNR_TIMEOUT_S = 180.0
_ICE40_SEEDS = (1, 2, 3)

# ICE40 targets tried in order: (nextpnr device flag, package, synth_ice40 extra options).
# HX8K has no SB_MAC16, so the fallback is synthesised without -dsp.
_ICE40_DEVICES = (("up5k", "sg48", ("-dsp",)), ("hx8k", "ct256", ()))
# Logic cells (one LUT4 + one flip-flop each) of those devices: a unit needing more LUT4s or flip-flops
# than this cannot fit, and is not put through the harness synthesis and place and route.
_ICE40_LOGIC_CELLS = {"up5k": 5280, "hx8k": 7680}
ICE40_DEVICES = ("auto", *(d for d, _, _ in _ICE40_DEVICES))


class FlowError(ToolError):
    """A flow step failed (CLI exit status 3); ``step`` and ``log`` (the kept log, if any) say where to look."""

    def __init__(self, step: str, message: str, log: Path | None = None) -> None:
        self.step = step
        self.log = log
        self.timed_out = False
        super().__init__(f"{step}: {message}" + (f" (log: {log})" if log is not None else ""))


@dataclass
class AreaResult:
    """Figures of one flow on one module, with provenance (tool versions, commands, logs)."""

    flow: str
    top: str
    figures: dict[str, Any]
    tools: dict[str, str]
    commands: list[str] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {"flow": self.flow, "top": self.top, "figures": self.figures, "tools": self.tools,
                "commands": self.commands, "logs": self.logs, "notes": self.notes, "seconds": round(self.seconds, 3)}


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/nxfp-hw`` (``~/.cache/nxfp-hw``): the report's and ``--target-mhz``'s caches."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nxfp-hw"


# --- tools -------------------------------------------------------------------------------------

def _tool(name: str, step: str) -> Path:
    """Path of tool ``name``; a missing tool becomes a FlowError naming the step and the apt package."""
    try:
        return tools.find_tool(name)
    except tools.ToolNotFound as exc:
        raise FlowError(step, str(exc)) from None


def osu018_liberty() -> Path:
    """The OSU 0.18 um standard-cell Liberty file of Debian's ``qflow-tech-osu018``."""
    libs = sorted(OSU018_DIR.glob("**/*.lib")) if OSU018_DIR.is_dir() else []
    if not libs:
        raise FlowError("asic liberty", f"no .lib under {OSU018_DIR}; install with: apt-get install qflow-tech-osu018")
    return libs[0]


def liberty_cells(path: Path) -> dict[str, dict[str, Any]]:
    """``{cell: {"area": float, "sequential": bool, "pins": {pin: direction}}}`` from a Liberty file (cells,
    area, ff/latch groups, pin directions)."""
    text = Path(path).read_text()
    starts = [(m.start(), m.group(1)) for m in re.finditer(r"^\s*cell\s*\(\s*\"?([\w$]+)\"?\s*\)\s*{", text, re.M)]
    cells: dict[str, dict[str, Any]] = {}
    for i, (pos, name) in enumerate(starts):
        body = text[pos:starts[i + 1][0] if i + 1 < len(starts) else len(text)]
        area = re.search(r"\barea\s*:\s*([0-9.eE+-]+)", body)
        cells[name] = {"area": float(area.group(1)) if area else 0.0,
                       "sequential": re.search(r"^\s*(ff|latch)\s*\(", body, re.M) is not None,
                       "pins": dict(re.findall(r"\bpin\s*\(\s*\"?(\w+)\"?\s*\)\s*{\s*direction\s*:\s*(\w+)", body))}
    return cells


class _Runner:
    """Runs the tool commands of one flow in ``workdir``, one log file per step."""

    def __init__(self, workdir: Path, timeout: float) -> None:
        self.workdir = workdir
        self.timeout = timeout
        self.commands: list[str] = []
        self.logs: dict[str, str] = {}

    def run(self, step: str, argv: list[str], log_name: str, *, check: bool = True,
            timeout: float | None = None) -> tuple[int, str]:
        """Run ``argv`` with its output in ``log_name``; ``(returncode, log text)``. A timeout is a
        FlowError with ``timed_out`` set; ``check`` makes a non-zero exit one too."""
        log = self.workdir / log_name
        self.commands.append(shlex.join(argv))
        self.logs[step] = str(log)
        limit = self.timeout if timeout is None else min(timeout, self.timeout)
        if stopping():  # SIGINT/SIGTERM arrived (another thread of a parallel report): start nothing new
            raise Terminated()
        try:
            with open(log, "w") as fh:
                proc = subprocess.run(argv, cwd=self.workdir, stdout=fh, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, timeout=limit)
        except subprocess.TimeoutExpired:
            err = FlowError(step, f"timed out after {limit:g} s", log)
            err.timed_out = True
            raise err from None
        except OSError as exc:
            raise FlowError(step, f"could not run {argv[0]}: {exc}", log) from None
        text = log.read_text(errors="replace")
        if check and proc.returncode != 0:
            tool = Path(argv[0]).name
            raise FlowError(step, f"{tool} exited with status {proc.returncode}: {_last_error(text)}", log)
        return proc.returncode, text

    def yosys(self, step: str, script: str, name: str) -> str:
        """Run a Yosys script (kept as ``name.ys``); returns the log text."""
        ys = self.workdir / f"{name}.ys"
        ys.write_text(script)
        return self.run(step, [str(_tool("yosys", step)), "-s", ys.name], f"{name}.log")[1]


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errs = [ln for ln in lines if "ERROR" in ln or "Error" in ln or "error:" in ln]
    return (errs[-1] if errs else lines[-1] if lines else "no output")[:400]


def _read_json(path: Path, step: str, log: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FlowError(step, f"could not read {path.name}: {exc}", log) from None


def _stat_module(stat: dict[str, Any], step: str, log: Path) -> dict[str, Any]:
    """The whole-design entry of a ``stat -json`` report (the design is flattened)."""
    design = stat.get("design") or next(iter(stat.get("modules", {}).values()), None)
    if not design or "num_cells_by_type" not in design:
        raise FlowError(step, "stat report has no cell counts", log)
    return design


def _sum(counts: dict[str, int], pred: Callable[[str], bool]) -> int:
    return sum(n for cell, n in counts.items() if pred(cell))


def _read_script(src: Path) -> str:
    return f"read_verilog -sv {src.name}\n"


# --- flows -------------------------------------------------------------------------------------

def _generic(src: Path, top: str, run: _Runner, opts: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    step = "generic synthesis (yosys synth/abc/stat -tech cmos)"
    # dfflegalize to plain D flip-flops (reset and enable become gates) so every cell has a CMOS cost.
    script = (_read_script(src) + f"synth -flatten -top {top}\n"
              "dfflegalize -cell $_DFF_P_ 01 -cell $_DFF_N_ 01 -cell $_DLATCH_P_ 01 -cell $_DLATCH_N_ 01\n"
              "abc\nopt_clean\ntee -q -o generic_stat.json stat -json -tech cmos\n")
    run.yosys(step, script, "generic")
    log = Path(run.logs[step])
    design = _stat_module(_read_json(run.workdir / "generic_stat.json", step, log), step, log)
    counts = dict(sorted(design["num_cells_by_type"].items()))
    tr = str(design.get("estimated_num_transistors", ""))
    match = re.fullmatch(r"(\d+)(\+?)", tr)
    if match is None:
        raise FlowError(step, f"no transistor estimate in the stat report (got {tr!r})", log)
    figures = {
        "cells": int(design["num_cells"]),
        "cells_by_type": counts,
        "ffs": _sum(counts, lambda c: "DFF" in c),
        "latches": _sum(counts, lambda c: "DLATCH" in c),
        "transistors": int(match.group(1)),
        "transistors_complete": not match.group(2),
    }
    notes = [] if not match.group(2) else ["some cells have no CMOS cost: the transistor count is a lower bound"]
    return figures, notes


_STA_SCRIPT = """\
read_liberty {liberty}
read_verilog {netlist}
link_design {top}
{clock}
set_input_delay 0 -clock {clk_name} [{inputs}]
set_output_delay 0 -clock {clk_name} [all_outputs]
report_checks -path_delay max -digits 4 -group_count 1
report_tns
exit
"""


def _abc_script(period_ns: float) -> str:
    """Yosys' own ``abc -D`` script for Liberty mapping, plus ABC's fanout buffering and gate sizing
    towards the target period (without them, high-fanout nets dominate the critical path)."""
    d = f"{period_ns * 1000:g}"
    return ("+strash;&get,-n;&fraig,-x;&put;scorr;dc2;dretime;strash;&get,-n;&dch,-f;"
            f"&nf,-D,{d};&put;buffer,-p;upsize,-D,{d};dnsize,-D,{d}")


def _asic(src: Path, top: str, run: _Runner, opts: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    liberty = Path(opts.get("liberty") or osu018_liberty())
    lib = liberty_cells(liberty)
    period = float(opts.get("period_ns") or DEFAULT_PERIOD_NS)
    step = "asic synthesis (yosys dfflibmap/abc -liberty)"
    script = (_read_script(src) + f"synth -flatten -top {top}\n"
              f"dfflibmap -liberty {liberty}\nabc -liberty {liberty} -script {_abc_script(period)}\nopt_clean\n"
              f"tee -q -o asic_stat.json stat -json\nstat -liberty {liberty}\n"
              # OpenSTA reads plain structural Verilog: one-bit nets, no x constants, no concatenations.
              "setundef -zero\nsplitnets -ports\nopt_clean -purge\n"
              "write_json asic_ports.json\nwrite_verilog -noattr -noexpr -nohex -nodec asic_netlist.v\n")
    text = run.yosys(step, script, "asic_synth")
    log = Path(run.logs[step])
    design = _stat_module(_read_json(run.workdir / "asic_stat.json", step, log), step, log)
    counts = dict(sorted(design["num_cells_by_type"].items()))
    unmapped = sorted(c for c in counts if c not in lib)
    if unmapped:
        raise FlowError(step, f"cells not mapped to the Liberty library: {', '.join(unmapped)}", log)
    area = re.findall(r"Chip area for (?:module|top module) '\\?[^']*':\s*([0-9.]+)", text)
    if not area:
        raise FlowError(step, "no 'Chip area' line in the stat -liberty output", log)
    ffs = _sum(counts, lambda c: lib[c]["sequential"])
    ports = _ports(run.workdir / "asic_ports.json", top, step, log)
    has_clk = "clk" in ports and ports["clk"][0] == "input"

    sta_step = "asic timing (OpenSTA)"
    sta = _tool("sta", sta_step)
    combinational = ffs == 0 or not has_clk
    if combinational:
        clock = f"create_clock -name vclk -period {period}"
        clk_name, inputs = "vclk", "all_inputs"
    else:
        clock = f"create_clock -name clk -period {period} [get_ports clk]"
        clk_name, inputs = "clk", "delete_from_list [all_inputs] [get_ports clk]"
    (run.workdir / "asic.sdc").write_text(f"{clock}\nset_input_delay 0 -clock {clk_name} [{inputs}]\n"
                                          f"set_output_delay 0 -clock {clk_name} [all_outputs]\n")
    tcl = _STA_SCRIPT.format(liberty=liberty, netlist="asic_netlist.v", top=top, clock=clock, clk_name=clk_name,
                             inputs=inputs)
    (run.workdir / "asic_sta.tcl").write_text(tcl)
    sta_text = run.run(sta_step, [str(sta), "-no_init", "-no_splash", "-exit", "asic_sta.tcl"], "asic_sta.log")[1]
    sta_log = Path(run.logs[sta_step])
    if re.search(r"^Error", sta_text, re.M):
        raise FlowError(sta_step, _last_error(sta_text), sta_log)
    figures: dict[str, Any] = {
        "cells": int(design["num_cells"]),
        "cells_by_type": counts,
        "ffs": ffs,
        "area_um2": float(area[-1]),
        "liberty": liberty.name,
        "target_period_ns": period,
        "timing": "combinational (input to output)" if combinational else "clocked (clk)",
    }
    notes = []
    if combinational:
        notes.append("no clocked path: critical_path_ns is the worst input-to-output delay (virtual clock, "
                     "zero input/output delay)")
    if "No paths found" in sta_text:
        figures.update(critical_path_ns=None, fmax_mhz=None, critical_path_from=None, critical_path_to=None)
        notes.append("OpenSTA found no constrained path")
        return figures, notes
    slack = re.search(r"^\s*(-?[0-9.]+)\s+slack \((?:MET|VIOLATED)\)", sta_text, re.M)
    start = re.search(r"^Startpoint:\s*(\S+)", sta_text, re.M)
    end = re.search(r"^Endpoint:\s*(\S+)", sta_text, re.M)
    if not (slack and start and end):
        raise FlowError(sta_step, "could not parse slack/startpoint/endpoint from report_checks", sta_log)
    crit = round(period - float(slack.group(1)), 4)
    if crit <= 0:
        raise FlowError(sta_step, f"non-positive critical path {crit} ns", sta_log)
    netlist = (run.workdir / "asic_netlist.v").read_text()
    figures.update(critical_path_ns=crit, fmax_mhz=round(1000.0 / crit, 3),
                   critical_path_from=_register_name(netlist, start.group(1)),
                   critical_path_to=_register_name(netlist, end.group(1)))
    return figures, notes


def _register_name(netlist: str, point: str) -> str:
    """A timing start/end point as a reader knows it: a port stays as is, a flip-flop instance becomes the
    register bit its Q output drives (``acc[3]``), when that net has a name from the source."""
    match = re.search(rf"^\s*\w+\s+{re.escape(point)}\s*\((.*?)\);", netlist, re.M | re.S)
    q = re.search(r"\.Q\(\s*\\?([^\s)]+)\s*(\[\d+\])?\s*\)", match.group(1)) if match else None
    if q is None or re.fullmatch(r"_\d+_", q.group(1)):
        return point
    return q.group(1) + (q.group(2) or "")


def _ports(path: Path, top: str, step: str, log: Path) -> dict[str, tuple[str, int]]:
    """``{port: (direction, width)}`` of module ``top`` from a Yosys ``write_json`` netlist."""
    data = _read_json(path, step, log)
    mod = data.get("modules", {}).get(top)
    if mod is None:
        raise FlowError(step, f"module {top!r} not in the netlist", log)
    return {name: (p["direction"], len(p["bits"])) for name, p in mod.get("ports", {}).items()}


def _wrapper(top: str, ports: dict[str, tuple[str, int]]) -> str:
    """Verilog of an out-of-context harness for ``top``: every input driven from a serial shift
    register, every output captured into a register that shifts out on one pin (so a unit with
    hundreds of ports fits a small package, and every unit path is register to register)."""
    ins = [(n, w) for n, (d, w) in ports.items() if d == "input" and n != "clk"]
    outs = [(n, w) for n, (d, w) in ports.items() if d == "output"]
    ni, no = max(1, sum(w for _, w in ins)), max(1, sum(w for _, w in outs))
    conns, pos = [], 0
    if "clk" in ports:
        conns.append(".clk(clk)")
    for n, w in ins:
        conns.append(f".{n}(isr[{pos + w - 1}:{pos}])")
        pos += w
    pos = 0
    for n, w in outs:
        conns.append(f".{n}(ov[{pos + w - 1}:{pos}])")
        pos += w
    ishift = "si" if ni == 1 else f"{{isr[{ni - 2}:0], si}}"
    oshift = "1'b0" if no == 1 else f"{{osr[{no - 2}:0], 1'b0}}"
    return (f"module nxfp_ooc_wrap(input clk, input si, input ld, output so);\n"
            f"  reg [{ni - 1}:0] isr = 0;\n  reg [{no - 1}:0] osr = 0;\n  wire [{no - 1}:0] ov;\n"
            f"  always @(posedge clk) isr <= {ishift};\n"
            f"  always @(posedge clk) osr <= ld ? ov : {oshift};\n"
            f"  assign so = osr[{no - 1}];\n"
            f"  {top} dut ({', '.join(conns)});\nendmodule\n")


def _ice40_counts(counts: dict[str, int]) -> dict[str, Any]:
    return {
        "luts": _sum(counts, lambda c: c == "SB_LUT4"),
        "carries": _sum(counts, lambda c: c == "SB_CARRY"),
        "ffs": _sum(counts, lambda c: c.startswith("SB_DFF")),
        "dsps": _sum(counts, lambda c: c == "SB_MAC16"),
        "rams": _sum(counts, lambda c: c.startswith("SB_RAM") or c == "SB_SPRAM256KA"),
        "cells": sum(counts.values()),
        "cells_by_type": counts,
    }


def _ice40(src: Path, top: str, run: _Runner, opts: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    freq = float(opts.get("freq_mhz") or DEFAULT_ICE40_FREQ_MHZ)
    pnr_timeout = float(opts.get("pnr_timeout") or DEFAULT_PNR_TIMEOUT_S)
    nextpnr = _tool("nextpnr-ice40", "ice40 place and route (nextpnr-ice40)")
    notes: list[str] = []
    choice = opts.get("ice40_device") or "auto"
    devices = _ICE40_DEVICES if choice == "auto" else tuple(d for d in _ICE40_DEVICES if d[0] == choice)
    for attempt, (device, package, synth_opts) in enumerate(devices):
        step = f"ice40 synthesis (yosys synth_ice40 {' '.join(synth_opts)})".replace(" )", ")")
        tag = f"ice40_{device}"
        # Unit alone: the resource counts.
        script = (_read_script(src) + f"synth_ice40 {' '.join(synth_opts)} -top {top}\n"
                  f"tee -q -o {tag}_stat.json stat -json\nwrite_json {tag}_ports.json\n")
        run.yosys(step, script, f"{tag}_synth")
        log = Path(run.logs[step])
        counts = dict(sorted(_stat_module(_read_json(run.workdir / f"{tag}_stat.json", step, log), step,
                                          log)["num_cells_by_type"].items()))
        ports = _ports(run.workdir / f"{tag}_ports.json", top, step, log)
        need = max(_sum(counts, lambda c: c == "SB_LUT4"), _sum(counts, lambda c: c.startswith("SB_DFF")))
        if need > _ICE40_LOGIC_CELLS[device]:  # cannot fit: skip the harness and place and route
            over = f"the unit alone needs {need} logic cells, the device has {_ICE40_LOGIC_CELLS[device]}"
            later = [d for d, _, _ in devices[attempt + 1:]]
            if later and need > max(_ICE40_LOGIC_CELLS[d] for d in later):  # no DSP there: never fewer LUTs
                device = max(later, key=_ICE40_LOGIC_CELLS.__getitem__)
                over = f"the unit alone needs {need} logic cells, the device has {_ICE40_LOGIC_CELLS[device]}"
                later = []
            if later:
                notes.append(f"does not fit iCE40 {device.upper()} ({over}); retried on "
                             f"{devices[attempt + 1][0].upper()}")
                continue
            raise FlowError(f"ice40 place and route (nextpnr-ice40 --{device})",
                            f"does not fit iCE40 {device.upper()}: {over}", log)
        # Unit inside the register harness: placed and routed for Fmax.
        wrap = run.workdir / "ice40_wrap.v"
        wrap.write_text(_wrapper(top, ports))
        wstep = f"ice40 harness synthesis (yosys synth_ice40 {device})"
        run.yosys(wstep, _read_script(src) + f"read_verilog {wrap.name}\n"
                  f"synth_ice40 {' '.join(synth_opts)} -top nxfp_ooc_wrap -json {tag}_wrap.json\n", f"{tag}_wrap_synth")
        pstep = f"ice40 place and route (nextpnr-ice40 --{device})"
        rc, text, seed = _ice40_pnr(run, nextpnr, device, package, tag, freq, pnr_timeout, pstep, notes,
                                    sdf=bool(opts.get("sdf")))
        plog = Path(run.logs[pstep])
        if rc != 0:
            over = _ice40_overuse(text) or (text if rc is None else "")
            if over and attempt + 1 < len(devices):
                notes.append(f"does not fit iCE40 {device.upper()} ({over}); retried on "
                             f"{devices[attempt + 1][0].upper()}")
                continue
            raise FlowError(pstep, f"nextpnr-ice40 failed: {over or _last_error(text)}", plog)
        report = _read_json(run.workdir / f"{tag}_pnr.json", pstep, plog)
        fmax = _ice40_fmax(report, text)
        if fmax is None:
            raise FlowError(pstep, "no Fmax for the clock in the nextpnr report", plog)
        figures = _ice40_counts(counts)
        util = report.get("utilization", {})
        figures.update(
            device=f"{device}-{package}", seed=seed, fmax_mhz=round(fmax, 3), critical_path_ns=round(1000.0 / fmax, 4),
            target_freq_mhz=freq, logic_cells_placed=util.get("ICESTORM_LC", {}).get("used"),
            timing="register harness (unit inputs and outputs registered; all paths register to register)",
        )
        figures.update(_ice40_path(report))
        if not synth_opts:
            figures["dsps_note"] = "HX8K has no SB_MAC16: synthesised without -dsp"
        notes.append("fmax from nextpnr on the unit wrapped in a serial-in/serial-out register harness "
                     "(counts are of the unit alone)")
        return figures, notes
    raise AssertionError("unreachable")


def _ice40_pnr(run: _Runner, nextpnr: Path, device: str, package: str, tag: str, freq: float, pnr_timeout: float,
               step: str, notes: list[str], *, sdf: bool = False) -> tuple[int | None, str, int]:
    """nextpnr on the harness, ``(returncode, log text, seed)``; ``returncode`` None when every seed timed out.
    With ``sdf`` the routed delays are also written to ``<tag>_pnr.sdf`` (logged as ``sdf``; read by
    ``timing.calibrate``).

    nextpnr 0.4's routers can loop forever on one arc for a given placement; another placement seed
    usually routes, so a timeout retries with the next seed."""
    for seed in _ICE40_SEEDS:
        argv = [str(nextpnr), f"--{device}", "--package", package, "--json", f"{tag}_wrap.json", "--freq",
                f"{freq:g}", "--report", f"{tag}_pnr.json", "--seed", str(seed), "--timing-allow-fail"]
        if sdf:
            argv += ["--sdf", f"{tag}_pnr.sdf"]
            run.logs["sdf"] = str(run.workdir / f"{tag}_pnr.sdf")
        try:
            rc, text = run.run(step, argv, f"{tag}_pnr_seed{seed}.log", check=False, timeout=pnr_timeout)
            return rc, text, seed
        except FlowError as exc:
            if not exc.timed_out:
                raise
            notes.append(f"nextpnr on {device.upper()} with seed {seed} did not finish routing within "
                         f"{pnr_timeout:g} s")
    return None, f"routing did not finish within {pnr_timeout:g} s for seeds {_ICE40_SEEDS}", seed


def _ice40_overuse(text: str) -> str:
    """``"ICESTORM_LC 6000/5280, ..."`` for every over-used resource in a nextpnr log, or ``""``."""
    found = re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)", text, re.M)
    over = [f"{name} {used}/{avail}" for name, used, avail in found if int(used) > int(avail)]
    if not over and re.search(r"Unable to (?:find a placement location|place cell)", text):
        over = ["placement failed"]
    return ", ".join(dict.fromkeys(over))


# nextpnr names the global clock net after the port: "clk$SB_IO_IN_$glb_clk". Other "clocks" such as
# "$PACKER_GND_NET_$glb_clk" (the grounded CLK pin of an unregistered SB_MAC16) are not ours.
_ICE40_CLK = re.compile(r"clk(\$.*)?")


def _ice40_fmax(report: dict[str, Any], text: str) -> float | None:
    for name, data in report.get("fmax", {}).items():
        if _ICE40_CLK.fullmatch(name) and "achieved" in data:
            return float(data["achieved"])
    found = re.findall(r"Max frequency for clock\s+'clk(?:\$[^']*)?':\s*([0-9.]+) MHz", text)
    return float(found[-1]) if found else None


def _ice40_path(report: dict[str, Any]) -> dict[str, Any]:
    """Where the clock's critical path starts and ends, and what it is made of.

    nextpnr 0.4 writes the launching register as the ``to`` cell of the ``clk-to-q`` step (its ``from``
    is an unrelated cell). Logic steps ending on ``O`` are LUT levels, on ``COUT`` carry-chain cells.
    ``critical_path_harness_luts`` counts LUT levels in cells outside the unit (the harness' ``isr``/``osr``
    registers and output mux, not ``dut.*``; the ``$nextpnr_*`` carry feed-through cells are the unit's)."""
    for path in report.get("critical_paths", []):
        steps = path.get("path", [])
        ends = [str(path.get(k, "")).removeprefix("posedge ").removeprefix("negedge ") for k in ("from", "to")]
        if not (steps and all(_ICE40_CLK.fullmatch(e) for e in ends)):
            continue
        launch = next((s for s in steps if s.get("type") == "clk-to-q"), None)
        start = launch.get("to", {}).get("cell") if launch else steps[0].get("from", {}).get("cell")
        figures: dict[str, Any] = {"critical_path_from": start, "critical_path_to": steps[-1].get("to", {}).get("cell")}
        if any("type" in s for s in steps):
            logic = [s for s in steps if s.get("type") == "logic"]
            luts = [s for s in logic if s.get("to", {}).get("port") == "O"]
            figures.update(
                critical_path_lut_levels=len(luts),
                critical_path_carry_cells=sum(1 for s in logic if s.get("to", {}).get("port") == "COUT"),
                critical_path_routing_ns=round(sum(float(s.get("delay", 0)) for s in steps
                                                   if s.get("type") == "routing"), 3),
                critical_path_harness_luts=sum(1 for s in luts if not str(s.get("to", {}).get("cell", ""))
                                               .startswith(("dut.", "$nextpnr"))),
            )
        return figures
    return {}


def _xilinx(src: Path, top: str, run: _Runner, opts: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    step = "xilinx synthesis (yosys synth_xilinx)"
    script = (_read_script(src) + f"synth_xilinx -flatten -noiopad -top {top}\n"
              "tee -q -o xilinx_stat.json stat -json\n")
    run.yosys(step, script, "xilinx")
    log = Path(run.logs[step])
    counts = dict(sorted(_stat_module(_read_json(run.workdir / "xilinx_stat.json", step, log), step,
                                      log)["num_cells_by_type"].items()))
    lut_sizes = {c: n for c, n in counts.items() if re.fullmatch(r"LUT[1-6]", c)}
    figures = {
        "luts": sum(lut_sizes.values()),
        "luts_by_size": lut_sizes,
        "srls": _sum(counts, lambda c: c.startswith("SRL")),
        "lutrams": _sum(counts, lambda c: c.startswith("RAM") and not c.startswith("RAMB")),
        "carries": _sum(counts, lambda c: c in ("CARRY4", "CARRY8")),
        "muxfs": _sum(counts, lambda c: c.startswith("MUXF")),
        "dsps": _sum(counts, lambda c: c.startswith("DSP48")),
        "brams": _sum(counts, lambda c: c.startswith("RAMB")),
        "ffs": _sum(counts, lambda c: c in ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")),
        "cells": sum(counts.values()),
        "cells_by_type": counts,
        "family": "xc7",
    }
    return figures, ["no place and route: counts only; registers absorbed into DSP48E1 are not counted as FFs"]


_FLOW_FUNCS = {"generic": _generic, "asic": _asic, "ice40": _ice40, "xilinx": _xilinx}
_FLOW_TOOLS = {"generic": ("yosys",), "asic": ("yosys", "sta"), "ice40": ("yosys", "nextpnr-ice40"),
               "xilinx": ("yosys",)}


def run_area(verilog: str | Path, top: str, flow: str, *, workdir: Path, liberty: Path | None = None,
             period_ns: float | None = None, freq_mhz: float | None = None, pnr_timeout: float | None = None,
             timeout: float = DEFAULT_TIMEOUT_S, sdf: bool = False, ice40_device: str = "auto") -> AreaResult:
    """Run one flow on module ``top``.

    ``verilog`` is a ``Path`` to a Verilog file or the Verilog text itself (written to the work
    directory). Logs, scripts and netlists go to ``workdir/<flow>/``, which the run holds locked (a
    second run on the same work directory and flow waits for it, so each run reads only its own
    files). ``period_ns`` is the ASIC
    clock target (ABC sizes gates towards it), ``freq_mhz`` the nextpnr target, ``pnr_timeout`` the
    time after which a nextpnr run counts as unroutable on that device, ``timeout`` the limit of any step,
    ``sdf`` (ice40) also writes nextpnr's routed delays as SDF (its path is ``logs["sdf"]``),
    ``ice40_device`` picks the iCE40 (``auto``: UP5K, then HX8K when the unit does not fit; ``up5k``; ``hx8k``).
    """
    if flow not in _FLOW_FUNCS:
        raise FlowError("flow selection", f"unknown flow {flow!r}; expected one of {', '.join(FLOWS)}")
    if ice40_device not in ICE40_DEVICES:
        raise FlowError("flow selection", f"ice40 device: expected one of {', '.join(ICE40_DEVICES)}, "
                        f"got {ice40_device!r}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", top):
        raise FlowError("flow selection", f"top module name {top!r} is not a Verilog identifier")
    wd = Path(workdir) / flow
    wd.mkdir(parents=True, exist_ok=True)
    with open(Path(workdir) / f".{flow}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _run_area_locked(verilog, top, flow, wd, timeout, {"liberty": liberty, "period_ns": period_ns,
                                "freq_mhz": freq_mhz, "pnr_timeout": pnr_timeout, "sdf": sdf,
                                "ice40_device": ice40_device})


def _run_area_locked(verilog: str | Path, top: str, flow: str, wd: Path, timeout: float,
                     opts: dict[str, Any]) -> AreaResult:
    if isinstance(verilog, Path):
        if not verilog.is_file():
            raise FlowError("read verilog", f"no such file: {verilog}")
        text = verilog.read_text()
    else:
        text = verilog
    src = wd / f"{top}.v"
    if not src.exists() or src.read_text() != text:
        src.write_text(text)
    versions = {}
    for name in _FLOW_TOOLS[flow]:
        _tool(name, f"{flow} flow")
        versions[name] = tools.tool_version(name)
    runner = _Runner(wd, timeout)
    t0 = time.monotonic()
    figures, notes = _FLOW_FUNCS[flow](src, top, runner, opts)
    return AreaResult(flow=flow, top=top, figures=figures, tools=versions, commands=runner.commands,
                      logs=runner.logs, notes=notes, seconds=time.monotonic() - t0)


def run_flows(verilog: str | Path, top: str, flows: list[str], *, workdir: Path, **kwargs: Any) -> list[AreaResult]:
    """``run_area`` for each flow in order (same work directory, one subdirectory per flow)."""
    return [run_area(verilog, top, f, workdir=workdir, **kwargs) for f in flows]
