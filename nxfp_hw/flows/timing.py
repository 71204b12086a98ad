"""Timing closure: choose the pipeline of a unit that meets a target clock with the least area
(``--target-mhz``; docs/timing.md "Target frequency").

Every unit names its register positions (``unit.pipeline_positions``, datapath order) and a pipeline
is a subset of them (``unit.cuts``). The registers of position ``p`` are named ``p_<field>`` (and
``p_valid``) in the Verilog, so after synthesis every flip-flop can be traced back to its position.

1. **Calibrate** (cached): run the flow on the unit with every position enabled, then measure the
   worst delay between every pair of register groups: each position, the registers at no position
   (``REG``), the input ports (``IN``), the flow control (``CTL``) and the output ports (``OUT``). On
   the asic flow OpenSTA reports these (``report_checks -from -to`` per pair); on ice40 they come
   from nextpnr's routed SDF through a small static timing analysis here (:func:`sdf_segments`).
   The same run gives the register bits of each position and the register overhead.
2. **No registers**: measured next; the answer if it meets the target, else the point that fits
   what merging a position saves (:func:`fit_merge_overhead`).
3. **Model**: with a pipeline ``S``, a stage runs from a register (or an input) through disabled
   positions to the next register (or an output); its delay is the sum of the merged segments minus
   the merge overhead per merged position (:func:`predict`). The period of ``S`` is its worst stage.
4. **Search**: of the pipelines predicted to meet the target, the one of least initiation interval,
   then fewest register bits, then least latency is confirmed by running the flow. A miss teaches
   the model the measured delay of the failing stage and the next candidate is tried; a pipeline
   that meets is then undercut by trying up to ``explore`` cheaper ones the model puts close. The
   all-positions run is a confirmed candidate: a target it misses cannot be met
   (:class:`TargetUnmet`, with the best Fmax found).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from . import area as area_mod
from .cache import cached

__all__ = ["CTL", "IN", "OUT", "REG", "TIMING_FLOWS", "Calibration", "Prediction", "TargetUnmet", "TimingClosure",
           "asic_calibration", "close_timing", "group_of_register", "ice40_calibration", "predict", "rank_candidates",
           "ice40_register_names", "sdf_segments", "stage_areas"]

#: Flows that report an Fmax, so a target frequency can be closed on them.
TIMING_FLOWS = ("asic", "ice40")
#: Register groups besides the positions: input ports, registers at no position (loop registers, counters),
#: flow control (the ``o__ready`` input and the output registers that drive the stall), output ports.
IN, REG, CTL, OUT = "@in", "@reg", "@ctl", "@out"
#: Cheaper pipelines tried after one meets the target, and how far above the target period their
#: predicted period may be (the model sums segments, so it tends to overestimate merged stages).
DEFAULT_EXPLORE = 2
EXPLORE_MARGIN = 0.12
#: Confirming flow runs before falling back to the calibrated (all positions) pipeline.
DEFAULT_MAX_RUNS = 5
# Up to 12 positions every subset is a candidate; beyond, the preference-order prefixes and their neighbours.
_MAX_ENUMERATED = 4096


class TargetUnmet(UserError):
    """The target frequency cannot be met on the flow; ``best_fmax_mhz`` is the best Fmax found."""

    def __init__(self, message: str, best_fmax_mhz: float | None) -> None:
        self.best_fmax_mhz = best_fmax_mhz
        super().__init__(message)


# --- the delay model -------------------------------------------------------------------------------

@dataclass
class Calibration:
    """Per-segment delays of a unit measured with every register position enabled.

    ``segments[s][g]`` is the worst delay in ns from a register of group ``s`` (or an input port,
    ``IN``) to a register of group ``g`` (or an output port, ``OUT``), clock-to-Q and setup included;
    ``register_overhead_ns`` is what a position saves when it is not a register; ``register_bits`` are
    the flip-flops of each position after synthesis (the area a position costs)."""

    flow: str
    module: str
    positions: tuple[str, ...]
    segments: dict[str, dict[str, float]]
    register_overhead_ns: float
    register_bits: dict[str, int]
    fmax_mhz: float | None = None
    target: dict[str, float] = field(default_factory=dict)
    merge_overhead_ns: float | None = None
    out_position: str | None = None

    @property
    def merge_ns(self) -> float:
        """What merging one position saves: fitted on the no-register run when there is one
        (:func:`fit_merge_overhead`), else the register overhead."""
        return self.register_overhead_ns if self.merge_overhead_ns is None else self.merge_overhead_ns

    def to_dict(self) -> dict[str, Any]:
        return {"flow": self.flow, "module": self.module, "positions": list(self.positions),
                "segments": self.segments, "register_overhead_ns": self.register_overhead_ns,
                "merge_overhead_ns": self.merge_overhead_ns, "out_position": self.out_position,
                "register_bits": self.register_bits, "fmax_mhz": self.fmax_mhz, "target": self.target}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(flow=d["flow"], module=d["module"], positions=tuple(d["positions"]),
                   segments={s: {g: float(v) for g, v in ends.items()} for s, ends in d["segments"].items()},
                   register_overhead_ns=float(d["register_overhead_ns"]),
                   register_bits={k: int(v) for k, v in d["register_bits"].items()},
                   fmax_mhz=d.get("fmax_mhz"), target=dict(d.get("target", {})),
                   merge_overhead_ns=d.get("merge_overhead_ns"), out_position=d.get("out_position"))

    def cost(self, cuts: Iterable[str]) -> int:
        """Register bits of the positions in ``cuts`` (the area a pipeline adds, in flip-flops)."""
        return sum(self.register_bits.get(p, 0) for p in cuts)


@dataclass(frozen=True)
class Prediction:
    """Predicted clock period of a pipeline and its worst stage (``path``: start, merged positions, end)."""

    period_ns: float
    path: tuple[str, ...]

    @property
    def fmax_mhz(self) -> float:
        return math.inf if self.period_ns <= 0 else 1000.0 / self.period_ns


def stage_key(path: Sequence[str]) -> tuple[str, str, frozenset[str]]:
    """Identity of a stage: its start and end groups and the positions merged into it."""
    return path[0], path[-1], frozenset(path[1:-1])


def predict(cal: Calibration, cuts: Iterable[str], facts: dict[tuple[str, str, frozenset[str]], float] | None = None,
            ) -> Prediction:
    """Worst stage delay of the pipeline ``cuts`` under the model of ``cal``.

    A stage runs from ``IN``, ``REG``, ``CTL`` or an enabled position to an enabled position, ``REG`` or
    ``OUT``, directly or through disabled positions: the sum of its segments minus ``cal.merge_ns`` per
    merged position. Data runs forward: a stage passes through a disabled position only from an earlier
    group (``IN``/``REG`` or a position before it) and on to a later one; the flow-control paths (``CTL``,
    and a position feeding an earlier one, such as a ready chain) end where they were measured, since
    the register they reach in the calibration is gone when its position is disabled. ``facts`` maps
    stages (:func:`stage_key`) to delays measured by flow runs; a stage is never predicted below its
    measured delay. Positions without registers in the calibration (removed by synthesis) are
    transparent: their logic is already part of their neighbours' segments."""
    enabled = set(cuts)
    unknown = enabled - set(cal.positions)
    if unknown:
        raise ValueError(f"predict: {sorted(unknown)} are not register positions of {cal.module}")
    order = {p: i for i, p in enumerate(cal.positions)}
    segs = cal.segments
    ov = cal.merge_ns
    facts = facts or {}
    memo: dict[str, tuple[float, tuple[str, ...]]] = {}

    def is_end(g: str, after: str | None) -> bool:
        """``g`` ends a stage that left position ``after`` (None: from IN/REG/CTL)."""
        if g in (REG, OUT):
            return True
        return g in enabled and (after is None or order[g] > order[after])

    def tail(p: str) -> tuple[float, tuple[str, ...]]:
        """Longest delay from the D side of disabled position ``p`` on to a stage end (``p`` merged)."""
        if p in memo:
            return memo[p]
        best: tuple[float, tuple[str, ...]] = (-math.inf, ())
        for g, d in segs.get(p, {}).items():
            if is_end(g, p):
                cand = (d - ov, (g,))
            elif g in order and g not in enabled and order[g] > order[p]:
                rest, path = tail(g)
                cand = (d - ov + rest, (g, *path))
            else:
                continue  # backward (control) paths end at the register that is gone
            if cand[0] > best[0]:
                best = cand
        memo[p] = best
        return best

    worst = Prediction(0.0, ())
    for s in (IN, REG, CTL, *(p for p in cal.positions if p in enabled)):
        for g, d in segs.get(s, {}).items():
            if g in (REG, OUT) or g in enabled:
                total, path = d, (s, g)
            elif s != CTL and g in order and (s in (IN, REG) or order[g] > order[s]):
                rest, tail_path = tail(g)
                if rest == -math.inf:
                    continue
                total, path = d + rest, (s, g, *tail_path)
            else:
                continue
            total = max(total, facts.get(stage_key(path), 0.0))
            if total > worst.period_ns:
                worst = Prediction(round(total, 4), path)
    # Measured stages still present in this pipeline, whatever the model says of them.
    for (s, g, merged), delay in facts.items():
        if (s in (IN, REG, CTL) or s in enabled) and (g in (REG, OUT) or g in enabled) and not (merged & enabled) \
                and delay > worst.period_ns:
            worst = Prediction(delay, (s, *sorted(merged, key=order.get), g))
    return worst


def stages(cal: Calibration, cuts: Iterable[str]) -> list[tuple[float, tuple[str, ...]]]:
    """Every stage of the pipeline ``cuts`` with its modelled delay (the paths :func:`predict` takes the
    worst of), for attributing a measured critical path to a stage."""
    enabled = set(cuts)
    order = {p: i for i, p in enumerate(cal.positions)}
    out: list[tuple[float, tuple[str, ...]]] = []

    def walk(path: tuple[str, ...], delay: float) -> None:
        node = path[-1]
        for g, d in cal.segments.get(node, {}).items():
            if g in (REG, OUT) or (g in enabled and (len(path) == 1 or order[g] > order[node])):
                out.append((delay + d, (*path, g)))
            elif g in order and g not in enabled and node != CTL and (node in (IN, REG) or order[g] > order[node]):
                walk((*path, g), delay + d - cal.merge_ns)

    for s in (IN, REG, CTL, *(p for p in cal.positions if p in enabled)):
        walk((s,), 0.0)
    return out


def fit_merge_overhead(cal: Calibration, none_period_ns: float) -> float:
    """The merge overhead that makes the model predict ``none_period_ns``, the measured period of the
    pipeline without registers. The model sums the worst path of each segment, and those rarely line up
    (nor does synthesis keep the segments apart), so what a merge really saves is more than the register
    overhead; fitted by bisection (the prediction falls as the overhead grows), never below 0."""
    def period(x: float) -> float:
        return predict(Calibration(**{**cal.__dict__, "merge_overhead_ns": x}), ()).period_ns

    if period(0.0) <= none_period_ns:
        return 0.0
    lo, hi = 0.0, max((d for ends in cal.segments.values() for d in ends.values()), default=0.0)
    if period(hi) > none_period_ns:
        return round(hi, 4)
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if period(mid) > none_period_ns else (lo, mid)
    return round(hi, 4)


@dataclass
class Candidate:
    """One pipeline the search considers."""

    cuts: tuple[str, ...]
    cost: int
    prediction: Prediction
    latency: int | None = None
    initiation_interval: int | None = None  # per block
    measured_mhz: float | None = None
    critical_path: tuple[str, str] | None = None

    def key(self) -> tuple:
        """Ranking: best throughput, then least area, then least latency, then fewest registers."""
        return (self.initiation_interval or 0, self.cost, self.latency or 0, len(self.cuts), self.cuts)


def enumerate_pipelines(positions: Sequence[str], preference: Sequence[str] | None = None) -> list[tuple[str, ...]]:
    """Every subset of ``positions`` (datapath order); for very many positions, the prefixes of
    ``preference`` and every pipeline one position away from them."""
    positions = tuple(positions)
    if 2 ** len(positions) <= _MAX_ENUMERATED:
        return [tuple(p for p, on in zip(positions, bits, strict=True) if on)
                for bits in itertools.product((False, True), repeat=len(positions))]
    pref = tuple(preference or positions)
    seen: set[frozenset[str]] = set()
    for n in range(len(pref) + 1):
        base = frozenset(pref[:n])
        seen.add(base)
        for p in positions:
            seen.add(base ^ {p})
    return [tuple(p for p in positions if p in s) for s in seen]


def rank_candidates(cal: Calibration, target_mhz: float, pipelines: Iterable[tuple[str, ...]],
                    facts: dict | None = None, margin: float = 0.0) -> list[Candidate]:
    """Pipelines predicted to meet ``target_mhz`` (within ``margin`` of the target period), each with its
    cost and prediction, cheapest first (the caller adds latency and initiation interval, which need the
    unit)."""
    target_ns = 1000.0 / target_mhz
    out = []
    for cuts in pipelines:
        pred = predict(cal, cuts, facts)
        if pred.period_ns <= target_ns * (1 + margin):
            out.append(Candidate(cuts=tuple(cuts), cost=cal.cost(cuts), prediction=pred))
    out.sort(key=lambda c: (c.cost, len(c.cuts), c.cuts))
    return out


# --- grouping registers by position ----------------------------------------------------------------

def group_of_register(name: str, positions: Sequence[str]) -> str:
    """The position a register belongs to (``<position>_<field>`` or ``<position>_valid``; the longest
    matching position name wins), or ``REG`` for a register at no position."""
    base = re.sub(r"\[\d+\]$", "", name.lstrip("\\"))
    best = ""
    for p in positions:
        if (base == p or base.startswith(p + "_")) and len(p) > len(best):
            best = p
    return best or REG


def classify_registers(names: dict[str, str], positions: Sequence[str]
                       ) -> tuple[dict[str, str], dict[str, str], str | None]:
    """Start and end group of every register (``{id: register name}``), and the position the output
    registers belong to.

    Yosys names a register that drives an output port after the port (``o__payload``, ``o__valid``), so
    a unit's last position, when it is the output register, shows up without registers of its own: the
    output registers are then that position. Otherwise they are at no position: data ends there
    (``REG``), and what starts there is flow control (``CTL``: the output valid drives the stall)."""
    group = {i: group_of_register(n, positions) for i, n in names.items()}
    outs = [i for i, n in names.items() if group[i] == REG and re.sub(r"\[\d+\]$", "", n).startswith("o__")]
    out_position = None
    if outs and positions and positions[-1] not in group.values():
        out_position = positions[-1]
    start, end = dict(group), dict(group)
    for i in outs:
        start[i] = out_position or CTL
        end[i] = out_position or REG
    return start, end, out_position


_ICE40_REG = re.compile(r"^dut\.(.+?)_SB_(?:DFF|MAC16)")


def group_of_point(point: str | None, flow: str, positions: Sequence[str], start: bool,
                   out_position: str | None = None) -> str | None:
    """The group of a critical-path start or end point as the flows report it (a register bit such as
    ``sum_s[3]``, a port, or an iCE40 cell such as ``dut.sum_s_SB_DFF_Q_3_DFFLC``); None when unknown.
    ``out_position`` is the position of the output registers (:func:`classify_registers`)."""
    if not point:
        return None
    if flow == "ice40":
        if not point.startswith("dut."):
            return IN if start else OUT  # harness registers stand for the unit's ports
        m = _ICE40_REG.match(point)
        if m is None:
            return None
        name = m.group(1)
    else:
        if re.fullmatch(r"_\d+_", point):
            return None
        name = re.sub(r"\[\d+\]$", "", point)
        # Ports are i__* (inputs, and the output i__ready), o__* (outputs, and the input o__ready) and rst;
        # the asic flow names a flip-flop after the net it drives, so o__payload/o__valid are registers.
        if start and (name.startswith("i__") or name == "rst"):
            return IN
        if start and name == "o__ready":
            return CTL
        if not start and name == "i__ready":
            return OUT
    group = group_of_register(name, positions)
    if group == REG and name.startswith("o__"):
        return out_position or (CTL if start else REG)
    return group


# --- asic calibration (OpenSTA) --------------------------------------------------------------------

_INSTANCE = re.compile(r"^\s*(\w+)\s+(\\?\S+)\s*\((.*?)\);", re.M | re.S)


def _asic_registers(netlist: str, sequential: set[str]) -> dict[str, str]:
    """``{instance: register name}`` of every flip-flop of a mapped netlist (the net its Q drives)."""
    regs = {}
    for m in _INSTANCE.finditer(netlist):
        if m.group(1) not in sequential:
            continue
        q = re.search(r"\.Q\(\s*\\?([^\s\[)]+)", m.group(3))
        regs[m.group(2).lstrip("\\")] = q.group(1) if q else m.group(2)
    return regs


def _tcl_list(items: Iterable[str]) -> str:
    return "{" + " ".join(items) + "}"


Measured = tuple[dict[str, dict[str, float]], float, dict[str, int], str | None]


def asic_calibration(workdir: Path, top: str, positions: Sequence[str], period_ns: float,
                     liberty: Path | None = None) -> Measured:
    """Segments, register overhead, register bits and output-register position (:func:`classify_registers`)
    of an asic flow run kept in ``workdir`` (its ``asic_netlist.v``, ``asic_ports.json`` and ``asic.sdc``):
    one OpenSTA ``report_checks -from -to`` per pair of groups."""
    liberty = Path(liberty or area_mod.osu018_liberty())
    sequential = {c for c, info in area_mod.liberty_cells(liberty).items() if info["sequential"]}
    netlist = (workdir / "asic_netlist.v").read_text()
    start_of, end_of, out_position = classify_registers(_asic_registers(netlist, sequential), positions)
    start_groups: dict[str, list[str]] = {}
    end_groups: dict[str, list[str]] = {}
    for inst in start_of:
        start_groups.setdefault(start_of[inst], []).append(inst)
        end_groups.setdefault(end_of[inst], []).append(inst)
    bits = {p: len(end_groups.get(p, [])) for p in positions}
    ports = json.loads((workdir / "asic_ports.json").read_text())["modules"][top]["ports"]
    ins = [n for n, p in ports.items() if p["direction"] == "input" and n not in ("clk", "o__ready")]
    starts = {g: f"[get_cells {_tcl_list(i)}]" for g, i in start_groups.items()}
    ends = {g: f"[get_cells {_tcl_list(i)}]" for g, i in end_groups.items()}
    if ins:
        starts[IN] = f"[get_ports {_tcl_list(ins)}]"
    if "o__ready" in ports:
        ctl = start_groups.get(CTL, [])
        starts[CTL] = (f"[concat [get_ports o__ready] [get_cells {_tcl_list(ctl)}]]" if ctl
                       else "[get_ports o__ready]")
    ends[OUT] = "[all_outputs]"
    lines = [f"read_liberty {liberty}", "read_verilog asic_netlist.v", f"link_design {top}", "read_sdc asic.sdc"]
    for s, s_obj in starts.items():
        for g, g_obj in ends.items():
            lines.append(f'puts "@@PAIR {s} {g}"')
            lines.append(f"report_checks -path_delay max -digits 4 -format end -from {s_obj} -to {g_obj}")
    lines += ['puts "@@OVERHEAD"',
              "report_checks -path_delay max -digits 4 -from [all_registers -clock_pins] "
              "-to [all_registers -data_pins]",
              "exit"]
    (workdir / "timing_pairs.tcl").write_text("\n".join(lines) + "\n")
    runner = area_mod._Runner(workdir, area_mod.DEFAULT_TIMEOUT_S)
    step = "timing calibration (OpenSTA report_checks per register group)"
    sta = area_mod._tool("sta", step)
    text = runner.run(step, [str(sta), "-no_init", "-no_splash", "-exit", "timing_pairs.tcl"], "timing_pairs.log")[1]
    if re.search(r"^Error", text, re.M):
        raise area_mod.FlowError(step, area_mod._last_error(text), workdir / "timing_pairs.log")
    body, _, overhead_text = text.partition("@@OVERHEAD")
    segments: dict[str, dict[str, float]] = {}
    for chunk in body.split("@@PAIR ")[1:]:
        head, _, rest = chunk.partition("\n")
        s, g = head.split()
        slack = re.search(r"\s(-?[0-9.]+)\s+\((?:MET|VIOLATED)\)", rest)
        if slack:
            segments.setdefault(s, {})[g] = round(period_ns - float(slack.group(1)), 4)
    cq = re.search(r"^\s*([0-9.]+)\s+[0-9.]+\s+[v^]\s+\S+/Q\s", overhead_text, re.M)
    setup = re.search(r"^\s*(-?[0-9.]+)\s+-?[0-9.]+\s+library setup time", overhead_text, re.M)
    overhead = (float(cq.group(1)) if cq else 0.3) + (abs(float(setup.group(1))) if setup else 0.2)
    return segments, round(overhead, 4), bits, out_position


def liberty_output_pins(path: Path) -> dict[str, set[str]]:
    """``{cell: output pin names}`` of a Liberty file."""
    text = Path(path).read_text()
    starts = [(m.start(), m.group(1)) for m in re.finditer(r"^\s*cell\s*\(\s*\"?([\w$]+)\"?\s*\)\s*{", text, re.M)]
    out: dict[str, set[str]] = {}
    for i, (pos, name) in enumerate(starts):
        body = text[pos:starts[i + 1][0] if i + 1 < len(starts) else len(text)]
        out[name] = set(re.findall(r"pin\s*\(\s*\"?(\w+)\"?\s*\)\s*{[^}]*?direction\s*:\s*output", body))
    return out


def stage_areas(workdir: Path, positions: Sequence[str], liberty: Path | None = None) -> dict[str, float]:
    """Combinational area (um^2) of each stage of an asic flow run kept in ``workdir`` (its
    ``asic_netlist.v``): the cells in the fan-in cone of each register group's flip-flops, up to the
    previous flip-flops or the inputs, keyed by the group the cone ends at (a position, ``REG``; the
    cone of the output ports is ``OUT``). Cones may share a few cells (the stall logic), so the stages do
    not add up exactly to the total; with every position enabled they give the area of each stage
    alone (e.g. the products and the adder tree of a dot engine)."""
    liberty = Path(liberty or area_mod.osu018_liberty())
    cells = area_mod.liberty_cells(liberty)
    outputs = liberty_output_pins(liberty)
    netlist = (workdir / "asic_netlist.v").read_text()
    driver: dict[str, tuple[str, str]] = {}
    inputs: dict[str, list[str]] = {}
    ctype: dict[str, str] = {}
    for m in _INSTANCE.finditer(netlist):
        kind, inst = m.group(1), m.group(2).lstrip("\\")
        if kind not in cells:
            continue
        ctype[inst] = kind
        for pin, net in re.findall(r"\.(\w+)\(\s*([^()]*?)\s*\)", m.group(3)):
            net = net.lstrip("\\").strip()
            if pin in outputs.get(kind, ()):
                driver[net] = (inst, pin)
            else:
                inputs.setdefault(inst, []).append(net)
    regs = {i: n for i, n in _asic_registers(netlist, {c for c, v in cells.items() if v["sequential"]}).items()}
    _, end_of, _ = classify_registers(regs, positions)
    ports = json.loads((workdir / "asic_ports.json").read_text())
    top = next(iter(ports["modules"]))
    outs = [n for n, p in ports["modules"][top]["ports"].items() if p["direction"] == "output"]
    seeds: dict[str, list[str]] = {}
    for inst, g in end_of.items():
        seeds.setdefault(g, []).extend(n for n in inputs.get(inst, []) if n != "clk")
    out_nets = [n for n in driver if re.sub(r"\[\d+\]$", "", n) in outs]
    seeds.setdefault(OUT, []).extend(out_nets)
    areas: dict[str, float] = {}
    for g, nets in seeds.items():
        seen: set[str] = set()
        stack = list(nets)
        total = 0.0
        while stack:
            net = stack.pop()
            drv = driver.get(net)
            if drv is None or drv[0] in seen or cells[ctype[drv[0]]]["sequential"]:
                continue
            seen.add(drv[0])
            total += cells[ctype[drv[0]]]["area"]
            stack.extend(inputs.get(drv[0], []))
        areas[g] = round(total, 1)
    return areas


# --- ice40 calibration (nextpnr SDF) ---------------------------------------------------------------

_SDF_TRIPLE = r"\((-?[0-9.]+)(?::(-?[0-9.]+):(-?[0-9.]+))?\)"


_SDF_CELL = re.compile(r"\(CELL\s*\(CELLTYPE\s+\"([^\"]*)\"\)\s*\(INSTANCE\s*([^)]*)\)(.*?)(?=\(CELL\s*\(CELLTYPE|\Z)",
                       re.S)


def _sdf_delay(text: str) -> float:
    """Largest typical value of the rise/fall triples that follow an SDF arc, in the file's unit."""
    vals = [float(m.group(2) or m.group(1)) for m in re.finditer(_SDF_TRIPLE, text)]
    return max(vals) if vals else 0.0


def _sdf_name(name: str) -> str:
    return name.replace("\\", "")


def sdf_segments(sdf_text: str, groups: Callable[[set[str]], tuple[dict[str, str], dict[str, str]]]
                 ) -> tuple[dict[str, dict[str, float]], dict[str, float], dict[str, int]]:
    """Worst delay between every pair of register groups of a routed design, from its SDF.

    The graph: ``INTERCONNECT`` arcs between pins and combinational ``IOPATH`` arcs inside cells. A
    cell with an ``IOPATH CLK ...`` arc launches there (clock-to-output delay); a pin with a
    ``SETUPHOLD`` check captures there (setup added). ``groups(register cells)`` gives the start and end
    group of each (cells left out are ignored). Returns the segments (ns), the median clock-to-output,
    setup and LUT delays (ns, keys ``clk_to_q``, ``setup``, ``logic``), and the register cells per end
    group."""
    scale = 1.0
    m = re.search(r"\(TIMESCALE\s+([0-9.]+)\s*(ps|ns)\)", sdf_text)
    if m:
        scale = float(m.group(1)) * (0.001 if m.group(2) == "ps" else 1.0)
    edges: dict[str, list[tuple[str, float]]] = {}
    launches: dict[str, tuple[str, float]] = {}  # output pin -> (cell, clk-to-out)
    setups: dict[str, tuple[str, float]] = {}  # input pin -> (cell, setup)
    cq_vals, su_vals, logic_vals = [], [], []
    for m in re.finditer(r"\(INTERCONNECT\s+(\S+)\s+(\S+)\s+(.*?)\)\s*$", sdf_text, re.M):
        edges.setdefault(_sdf_name(m.group(1)), []).append((_sdf_name(m.group(2)), _sdf_delay(m.group(3)) * scale))
    for cell in _SDF_CELL.finditer(sdf_text):
        inst = _sdf_name(cell.group(2).strip())
        if not inst:
            continue
        body = cell.group(3)
        for arc in re.finditer(r"\(IOPATH\s+(\(\w+\s+)?(\S+?)\)?\s+(\S+)\s+(.*?)\)\s*$", body, re.M):
            src, dst, delay = arc.group(2), arc.group(3), _sdf_delay(arc.group(4)) * scale
            if src == "CLK":
                launches[f"{inst}/{dst}"] = (inst, delay)
                cq_vals.append(delay)
            else:
                edges.setdefault(f"{inst}/{src}", []).append((f"{inst}/{dst}", delay))
                if cell.group(1) == "ICESTORM_LC" and src.startswith("I") and dst == "O":
                    logic_vals.append(delay)
        for chk in re.finditer(r"\(SETUP(?:HOLD)?\s+\((?:posedge|negedge)\s+(\w+)\)\s+\((?:posedge|negedge)\s+CLK\)\s+"
                               + _SDF_TRIPLE, body):
            if chk.group(1) == "CLK":
                continue
            setup = float(chk.group(3) or chk.group(2)) * scale
            pin = f"{inst}/{chk.group(1)}"
            setups[pin] = (inst, max(setup, setups.get(pin, (inst, 0.0))[1]))
            su_vals.append(setup)
    start_of, end_of = groups({inst for inst, _ in launches.values()} | {inst for inst, _ in setups.values()})
    cells_of: dict[str, set[str]] = {}
    for inst, g in end_of.items():
        cells_of.setdefault(g, set()).add(inst)
    start_groups: dict[str, list[str]] = {}
    for pin, (inst, _) in launches.items():
        if inst in start_of:
            start_groups.setdefault(start_of[inst], []).append(pin)
    end_group = {pin: end_of.get(inst) for pin, (inst, _) in setups.items()}
    order = _topological(edges)
    segments: dict[str, dict[str, float]] = {}
    for g, pins in start_groups.items():
        arrival = {pin: launches[pin][1] for pin in pins}
        for node in order:
            a = arrival.get(node)
            if a is None:
                continue
            for dst, d in edges.get(node, ()):
                if a + d > arrival.get(dst, -math.inf):
                    arrival[dst] = a + d
        for pin, (_, setup) in setups.items():
            e = end_group[pin]
            if e is not None and pin in arrival:
                total = arrival[pin] + setup
                if total > segments.setdefault(g, {}).get(e, -math.inf):
                    segments[g][e] = round(total, 4)
    med = {"clk_to_q": statistics.median(cq_vals) if cq_vals else 0.0,
           "setup": statistics.median(su_vals) if su_vals else 0.0,
           "logic": statistics.median(logic_vals) if logic_vals else 0.0}
    return segments, med, {g: len(c) for g, c in cells_of.items()}


def _topological(edges: dict[str, list[tuple[str, float]]]) -> list[str]:
    """Nodes of the combinational graph in topological order (a cycle's remaining nodes are dropped)."""
    indeg: dict[str, int] = {}
    for src, outs in edges.items():
        indeg.setdefault(src, 0)
        for dst, _ in outs:
            indeg[dst] = indeg.get(dst, 0) + 1
    ready = [n for n, d in indeg.items() if d == 0]
    order = []
    while ready:
        n = ready.pop()
        order.append(n)
        for dst, _ in edges.get(n, ()):
            indeg[dst] -= 1
            if indeg[dst] == 0:
                ready.append(dst)
    return order


def ice40_register_names(netlist: dict[str, Any], positions: Sequence[str]) -> dict[str, str]:
    """``{yosys cell: register name}`` for the flip-flops (and registered DSPs) of a synthesised iCE40
    harness (Yosys JSON), and for the LUT cells that feed a flip-flop's D input (nextpnr packs the two
    into one logic cell named after the LUT).

    A register's output bit often carries several names (the register, wires assigned from it,
    Yosys' private ``$n`` nets); the name that belongs to a register position wins, then any public one
    (Amaranth's ``$n`` suffix of a repeated name is dropped)."""
    mod = next((m for name, m in netlist.get("modules", {}).items() if name == "nxfp_ooc_wrap"), None)
    if mod is None:
        return {}
    names_of: dict[int, list[str]] = {}
    for net, info in mod.get("netnames", {}).items():
        for bit in info.get("bits", []):
            if isinstance(bit, int):
                names_of.setdefault(bit, []).append(net)

    def best(bit: int) -> str | None:
        found = []
        for net in names_of.get(bit, []):
            if not net.startswith("dut."):
                continue
            base = re.sub(r"\$\d+$", "", net[4:])
            if base and not base.startswith("$") and "$" not in base:
                found.append(base)
        ranked = sorted(found, key=lambda n: (group_of_register(n, positions) == REG, -len(n), n))
        return ranked[0] if ranked else None

    regs: dict[str, str] = {}
    d_bits: dict[int, str] = {}
    for cell, info in mod.get("cells", {}).items():
        kind, conn = info.get("type", ""), info.get("connections", {})
        if kind.startswith("SB_DFF") and conn.get("Q"):
            name = best(conn["Q"][0])
            if name:
                regs[cell] = name
                if conn.get("D") and isinstance(conn["D"][0], int):
                    d_bits[conn["D"][0]] = cell
        elif kind == "SB_MAC16" and conn.get("O"):
            name = next((n for n in (best(b) for b in conn["O"] if isinstance(b, int)) if n), None)
            if name:
                regs[cell] = name
    for cell, info in mod.get("cells", {}).items():
        out = info.get("connections", {}).get("O")
        if info.get("type") == "SB_LUT4" and out and out[0] in d_bits and d_bits[out[0]] in regs:
            regs[cell] = regs[d_bits[out[0]]]
    return regs


def ice40_calibration(sdf_path: Path, positions: Sequence[str], netlist_path: Path | None = None) -> Measured:
    """Segments, register overhead, register bits (flip-flop cells) and output-register position of a
    routed iCE40 harness. A unit cell (``dut.*``) is named after a register through the synthesised
    netlist (``netlist_path``, :func:`ice40_register_names`: nextpnr names a logic cell ``<cell>_LC`` or
    ``<cell>_DFFLC`` after the Yosys cell it holds), else through its own name (``_ICE40_REG``); the
    harness' input shift register stands for the inputs and its output register for the outputs."""
    found: dict[str, str | None] = {}
    known: dict[str, str] = {}
    if netlist_path is not None and Path(netlist_path).is_file():
        known = ice40_register_names(json.loads(Path(netlist_path).read_text()), positions)

    def register_of(cell: str) -> str | None:
        for suffix in ("_DFFLC", "_LC", "_DSP"):
            if cell.endswith(suffix) and cell[: -len(suffix)] in known:
                return known[cell[: -len(suffix)]]
        m = _ICE40_REG.match(cell)
        return m.group(1) if m else None

    def groups(cells: set[str]) -> tuple[dict[str, str], dict[str, str]]:
        names = {c: r for c in cells if c.startswith("dut.") and (r := register_of(c))}
        start_of, end_of, found["out"] = classify_registers(names, positions)
        for c in cells:
            if not c.startswith("dut."):
                (start_of if c.startswith("isr") else end_of)[c] = IN if c.startswith("isr") else OUT
        return start_of, end_of

    segments, med, cells = sdf_segments(Path(sdf_path).read_text(), groups)
    # A merged position keeps its LUT (packed with the flip-flop) and loses clock-to-output and setup.
    overhead = max(0.0, med["clk_to_q"] + med["setup"] - med["logic"])
    return segments, round(overhead, 4), {p: cells.get(p, 0) for p in positions}, found.get("out")


# --- flow runs, cached -----------------------------------------------------------------------------

def _digest() -> str:
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in ("area.py", "tools.py", "timing.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def _flow_opts(flow: str, target_mhz: float, ice40_device: str = "auto") -> dict[str, Any]:
    if flow == "asic":
        return {"period_ns": round(1000.0 / target_mhz, 6)}
    return {"freq_mhz": float(target_mhz), **({"ice40_device": ice40_device} if ice40_device != "auto" else {})}


@dataclass
class _Run:
    result: area_mod.AreaResult
    calibration: Calibration | None
    cached: bool


def _run_flow(verilog: str, module: str, flow: str, target_mhz: float, cache: Path, positions: Sequence[str],
              *, calibrate: bool, ice40_device: str = "auto") -> _Run:
    """The flow on one module at the target (cached by Verilog, flow, target, tools and flow sources);
    with ``calibrate`` also the per-segment delays."""
    opts = _flow_opts(flow, target_mhz, ice40_device)
    versions = {t: area_mod.tools.tool_version(t) for t in area_mod._FLOW_TOOLS[flow]}
    key = hashlib.sha256(json.dumps([hashlib.sha256(verilog.encode()).hexdigest(), module, flow, opts, versions,
                                     _digest(), calibrate, list(positions)], sort_keys=True).encode()).hexdigest()[:20]
    path = cache / "runs" / f"{key}.json"

    def compute() -> dict[str, Any]:
        workdir = cache / "work" / f"{module}_{key[:8]}"
        res = area_mod.run_area(verilog, module, flow, workdir=workdir, sdf=calibrate and flow == "ice40", **opts)
        cal = None
        if calibrate:
            if flow == "asic":
                segs, overhead, bits, out_pos = asic_calibration(workdir / "asic", module, positions,
                                                                 opts["period_ns"])
            else:
                device = str(res.figures.get("device", "up5k")).split("-")[0]
                segs, overhead, bits, out_pos = ice40_calibration(Path(res.logs["sdf"]), positions,
                                                                  workdir / "ice40" / f"ice40_{device}_wrap.json")
            cal = Calibration(flow=flow, module=module, positions=tuple(positions), segments=segs,
                              register_overhead_ns=overhead, register_bits=bits, fmax_mhz=res.figures.get("fmax_mhz"),
                              target=opts, out_position=out_pos)
        return {"result": res.to_dict(), "calibration": cal.to_dict() if cal else None}

    # computed once however many closures (sweep points on other workers) ask at the same time; a corrupt
    # entry is absent
    rec, hit = cached(path, compute, valid=lambda r: isinstance(r.get("result"), dict))
    return _Run(area_mod.AreaResult(**rec["result"]),
                Calibration.from_dict(rec["calibration"]) if rec.get("calibration") else None, hit)


# --- the search ------------------------------------------------------------------------------------

@dataclass
class TimingClosure:
    """The pipeline chosen for a target, the unit built with it, and how it was found."""

    unit: str
    flow: str
    target_mhz: float
    component: Any
    cuts: tuple[str, ...]
    positions: tuple[str, ...]
    fmax_mhz: float
    result: area_mod.AreaResult
    calibration: Calibration
    attempts: list[dict[str, Any]]

    def summary(self) -> str:
        enabled = ", ".join(self.cuts) or "none"
        runs = sum(1 for a in self.attempts if not a.get("cached"))
        comb = (" (combinational: its input-to-output delay plus a register's clock-to-Q and setup)"
                if str(self.result.figures.get("timing", "")).startswith("combinational") else "")
        return (f"Fmax achieved: {self.fmax_mhz:.1f} MHz{comb} on {self.flow} (target {self.target_mhz:g} MHz) with "
                f"pipeline registers at {enabled} ({len(self.cuts)} of {len(self.positions)} positions, "
                f"{self.calibration.cost(self.cuts)} register bits, latency {self.component.latency}); "
                f"{len(self.attempts)} configurations measured, {runs} flow runs")

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "flow": self.flow, "target_mhz": self.target_mhz, "cuts": list(self.cuts),
                "positions": list(self.positions), "fmax_mhz": self.fmax_mhz, "module": self.component.module_name,
                "register_bits": self.calibration.cost(self.cuts), "attempts": self.attempts,
                "calibration": self.calibration.to_dict()}


def close_timing(unit: str, fmt_a: Any, fmt_b: Any = None, *, target_mhz: float, flow: str = "asic",
                 ice40_device: str = "auto", cache_dir: Path | None = None, echo: Callable[[str], None] = print,
                 explore: int = DEFAULT_EXPLORE, max_runs: int = DEFAULT_MAX_RUNS, **unit_kwargs: Any) -> TimingClosure:
    """Choose the pipeline of ``unit`` that meets ``target_mhz`` on ``flow`` with the least area (module
    docstring), build it and return it with the Fmax achieved. ``unit_kwargs`` go to ``build_unit``
    (lanes, acc, guard_bits, out, input_format; not pipeline). ``TargetUnmet`` (a ``UserError``) names
    the best Fmax found when no pipeline meets the target; a missing tool is a ``FlowError``."""
    from .generate import build_unit, emit_verilog
    from .manifest import initiation_intervals

    if isinstance(target_mhz, bool) or not isinstance(target_mhz, int | float) or not (
            math.isfinite(target_mhz) and target_mhz > 0):
        raise UserError(f"target-mhz: expected a positive frequency in MHz, got {target_mhz!r}")
    if flow not in TIMING_FLOWS:
        raise UserError(f"flow: --target-mhz closes timing on {' or '.join(TIMING_FLOWS)}, got {flow!r}")
    if ice40_device not in area_mod.ICE40_DEVICES:
        raise UserError(f"ice40-device: expected one of {', '.join(area_mod.ICE40_DEVICES)}, got {ice40_device!r}")
    if "pipeline" in unit_kwargs:
        raise UserError("pipeline: --target-mhz chooses the pipeline; give --pipeline or --target-mhz, not both")
    for tool in area_mod._FLOW_TOOLS[flow]:  # a missing tool says how to install it, before any work
        area_mod._tool(tool, f"{flow} flow (--target-mhz)")
    cache = Path(cache_dir or area_mod.default_cache_dir() / "timing").resolve()

    def build(cuts: Sequence[str] | str) -> Any:
        comp = build_unit(unit, fmt_a, fmt_b, pipeline=cuts if isinstance(cuts, str) else tuple(cuts), **unit_kwargs)
        comp._MustUse__silence = True  # candidates are constructed to read their latency and interval
        return comp

    full = build("all")
    positions = tuple(full.pipeline_positions)
    echo(f"timing closure: {full.module_name} for {target_mhz:g} MHz on {flow}; calibrating with all "
         f"{len(positions)} register positions ({', '.join(positions) or 'none'})")
    t0 = time.monotonic()
    run = _run_flow(emit_verilog(full), full.module_name, flow, target_mhz, cache, positions, calibrate=True,
                    ice40_device=ice40_device)
    cal = run.calibration
    assert cal is not None
    full_fmax = effective_fmax(run.result, cal)
    echo(f"  all positions: Fmax {_mhz(full_fmax)}, {sum(cal.register_bits.values())} register bits "
         f"({'cached' if run.cached else f'{time.monotonic() - t0:.1f} s'})")
    attempts = [_attempt(tuple(full.cuts), full, None, run, full_fmax)]
    best = (tuple(full.cuts), full, run)
    facts: dict[tuple[str, str, frozenset[str]], float] = {}
    tried: set[tuple[str, ...]] = {tuple(full.cuts)}
    info: dict[tuple[str, ...], tuple[int, int] | None] = {}

    def unit_facts(c: Candidate) -> bool:
        """Fill latency and block interval; False for a pipeline the unit refuses."""
        if c.cuts not in info:
            try:
                comp = build(c.cuts)
                info[c.cuts] = (int(comp.latency), initiation_intervals(comp)[1])
            except UserError:
                info[c.cuts] = None
        if info[c.cuts] is None:
            return False
        c.latency, c.initiation_interval = info[c.cuts]
        return True

    def confirm(c: Candidate) -> tuple[bool, _Run, Any]:
        comp = build(c.cuts)
        t = time.monotonic()
        r = _run_flow(emit_verilog(comp), comp.module_name, flow, target_mhz, cache, positions, calibrate=False,
                      ice40_device=ice40_device)
        tried.add(c.cuts)
        fmax = effective_fmax(r.result, cal)
        ok = fmax is not None and fmax >= target_mhz
        predicted = "" if c.prediction.period_ns <= 0 else f"predicted {c.prediction.fmax_mhz:.1f} MHz, "
        echo(f"  {', '.join(c.cuts) or 'no registers'}: {predicted}measured {_mhz(fmax)} "
             f"({'meets' if ok else 'misses'}; {'cached' if r.cached else f'{time.monotonic() - t:.1f} s'})")
        attempts.append(_attempt(c.cuts, comp, c.prediction if c.prediction.period_ns > 0 else None, r, fmax))
        return ok, r, comp

    def learn(c: Candidate, r: _Run) -> None:
        """Record the measured delay of the failing stage, so no other pipeline is predicted faster there."""
        fig = r.result.figures
        fmax = effective_fmax(r.result, cal)
        if not fmax:
            return
        crit = 1000.0 / fmax
        s = group_of_point(fig.get("critical_path_from"), flow, positions, True, cal.out_position)
        g = group_of_point(fig.get("critical_path_to"), flow, positions, False, cal.out_position)
        path = _stage_between(cal, c.cuts, s, g) if s is not None and g is not None else None
        if path is None:
            path = c.prediction.path  # unattributed: the worst modelled stage of this pipeline
        if path:
            key = stage_key(path)
            facts[key] = max(facts.get(key, 0.0), float(crit))

    # Second calibration point: no registers at all. The cheapest pipeline if it meets; otherwise its
    # measured period fits what a merged position really saves.
    none = Candidate(cuts=(), cost=0, prediction=Prediction(0.0, ()))
    met = False
    if full.cuts and unit_facts(none):
        ok, r, comp = confirm(none)
        none_fmax = effective_fmax(r.result, cal)
        if ok:
            best, met = ((), comp, r), True
        elif none_fmax:
            cal.merge_overhead_ns = fit_merge_overhead(cal, 1000.0 / none_fmax)
            echo(f"  model: {len(cal.segments)} register groups, a merged position saves "
                 f"{cal.merge_ns:.3f} ns (register overhead {cal.register_overhead_ns:.3f} ns)")
    if not met and (full_fmax or 0) < target_mhz:
        found = max((a["fmax_mhz"] or 0 for a in attempts), default=0) or None
        logs = f" (logs in {Path(next(iter(run.result.logs.values()))).parent})" if run.result.logs else ""
        raise TargetUnmet(f"target-mhz: {target_mhz:g} MHz cannot be met on the {flow} flow: the best Fmax "
                          f"found is {_mhz(found)}, with every register position of {full.module_name} "
                          f"enabled{logs}", found)
    pipelines = enumerate_pipelines(positions, getattr(full, "pipeline_preference", None))
    runs = 0
    while not met and runs < max_runs:
        ranked = [c for c in rank_candidates(cal, target_mhz, pipelines, facts)
                  if c.cuts not in tried and unit_facts(c)]
        if not ranked:
            break
        c = min(ranked, key=Candidate.key)
        ok, r, comp = confirm(c)
        runs += 0 if r.cached else 1
        if ok:
            best, met = (c.cuts, comp, r), True
        else:
            learn(c, r)
    if not met:
        echo("  keeping every register position (the calibration run meets the target)")
    # Undercut: cheaper pipelines the model puts close to the target, the likeliest to meet first.
    best_ii = info.get(best[0], None) or (0, initiation_intervals(best[1])[1])
    for _ in range(explore if best[0] else 0):
        cheaper = [c for c in rank_candidates(cal, target_mhz, pipelines, facts, margin=EXPLORE_MARGIN)
                   if c.cuts not in tried and c.cost < cal.cost(best[0]) and unit_facts(c)
                   and (c.initiation_interval or 0) <= best_ii[1]]
        if not cheaper:
            break
        c = min(cheaper, key=lambda c: (c.prediction.period_ns, c.cost))
        ok, r, comp = confirm(c)
        if ok:
            best = (c.cuts, comp, r)
        else:
            learn(c, r)
    cuts, _, r = best
    comp = build(cuts)  # a fresh component for the caller to elaborate
    comp._MustUse__silence = False
    fmax = effective_fmax(r.result, cal)
    assert fmax is not None
    return TimingClosure(unit=unit, flow=flow, target_mhz=float(target_mhz), component=comp, cuts=tuple(cuts),
                         positions=positions, fmax_mhz=fmax, result=r.result, calibration=cal, attempts=attempts)


def _stage_between(cal: Calibration, cuts: Sequence[str], s: str, g: str) -> tuple[str, ...] | None:
    """The worst modelled stage of pipeline ``cuts`` from group ``s`` to group ``g``, if any."""
    found = [st for st in stages(cal, cuts) if st[1][0] == s and st[1][-1] == g]
    return max(found)[1] if found else None


def effective_fmax(result: area_mod.AreaResult, cal: Calibration) -> float | None:
    """The Fmax of a flow run as a clock target means it: a combinational configuration (asic flow,
    input-to-output delay) sits between the user's registers, so their clock-to-Q and setup
    (``cal.register_overhead_ns``) are added to its delay."""
    fig = result.figures
    if fig.get("fmax_mhz") is None:
        return None
    if str(fig.get("timing", "")).startswith("combinational") and fig.get("critical_path_ns"):
        return round(1000.0 / (float(fig["critical_path_ns"]) + cal.register_overhead_ns), 3)
    return float(fig["fmax_mhz"])


def _attempt(cuts: tuple[str, ...], comp: Any, pred: Prediction | None, run: _Run,
             fmax: float | None) -> dict[str, Any]:
    fig = run.result.figures
    return {"cuts": list(cuts), "module": comp.module_name, "latency": int(comp.latency),
            "predicted_mhz": None if pred is None else round(pred.fmax_mhz, 3),
            "predicted_stage": None if pred is None else list(pred.path),
            "fmax_mhz": fmax, "flow_fmax_mhz": fig.get("fmax_mhz"), "area_um2": fig.get("area_um2"),
            "luts": fig.get("luts"),
            "critical_path": [fig.get("critical_path_from"), fig.get("critical_path_to")], "cached": run.cached}


def _mhz(v: float | None) -> str:
    return "none (no clocked path)" if v is None else f"{v:.1f} MHz"
