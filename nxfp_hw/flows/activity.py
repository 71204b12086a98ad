"""Switching activity of a netlist's nets from a gate-level simulation (docs/area.md, "Energy per operation").

Two sources, one result (:class:`NetActivity`: per net, toggles and cycles high over a window of clock
cycles, SAIF's TC and T1):

- :func:`activity_from_samples`: the per-cycle net values the gate-level wrapper writes
  (:mod:`nxfp_hw.flows.gate_level`, one line of ``0/1/x/z`` per cycle, one character per net), over the
  window from the first input transfer to the last output transfer of the stream;
- :func:`activity_from_vcd`: a VCD of the netlist from any simulator (the nets of one scope, value
  changes between two times, the period given).

Every problem with the file (missing, empty, truncated, a line of the wrong length, a net of the netlist
absent from the VCD, no transfer in the window) is a :class:`~nxfp_hw.errors.UserError` naming it: no
activity, hence no power figure, from a partial file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

__all__ = ["NetActivity", "activity_from_samples", "activity_from_vcd", "read_samples", "stream_window"]

_CODES = np.full(256, 255, np.uint8)
_CODES[ord("0")], _CODES[ord("1")] = 0, 1
_CODES[ord("x")] = _CODES[ord("X")] = _CODES[ord("z")] = _CODES[ord("Z")] = 2


@dataclass
class NetActivity:
    """Toggles and cycles-high of each net over ``cycles`` clock cycles (a SAIF-like TC / T1 per net)."""

    nets: list[str]
    toggles: np.ndarray  # int64 per net: value changes in the window
    high: np.ndarray  # float64 per net: cycles at 1 in the window
    cycles: float
    unknown: int = 0  # samples (net x cycle) that were x or z, counted as neither toggling nor high
    window: tuple[int, int] | None = None  # first and last cycle (samples) of the window

    def __post_init__(self) -> None:
        if not self.cycles > 0:
            raise UserError("activity: the window holds no clock cycle")

    def per_cycle(self) -> dict[str, tuple[float, float]]:
        """``{net: (toggles per clock cycle, fraction of time at 1)}``: OpenSTA's activity and duty."""
        act = self.toggles / self.cycles
        duty = np.clip(self.high / self.cycles, 0.0, 1.0)
        return {n: (float(a), float(d)) for n, a, d in zip(self.nets, act, duty, strict=True)}

    def summary(self) -> dict[str, float]:
        """Mean toggles per net per cycle, the share of nets that never toggle, cycles, unknown samples."""
        act = self.toggles / self.cycles
        return {"cycles": float(self.cycles), "nets": len(self.nets), "mean_toggle_rate": round(float(act.mean()), 6)
                if act.size else 0.0, "idle_nets": round(float((self.toggles == 0).mean()), 4) if act.size else 0.0,
                "unknown_samples": int(self.unknown)}


def read_samples(path: Path, n_nets: int) -> np.ndarray:
    """The per-cycle net values of ``path``: ``uint8 (cycles, n_nets)``, 0/1 and 2 for x/z."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"activity: cannot read {path}: {exc.strerror or exc}") from None
    if not raw:
        raise UserError(f"activity: {path} is empty (the simulation wrote no cycle)")
    if not raw.endswith(b"\n"):
        raise UserError(f"activity: {path} ends in the middle of a line (a truncated file)")
    width = n_nets + 1
    if len(raw) % width:
        lines = raw.split(b"\n")[:-1]
        bad = next(i for i, ln in enumerate(lines) if len(ln) != n_nets)
        raise UserError(f"activity: line {bad + 1} of {path} has {len(lines[bad])} values, the netlist has "
                        f"{n_nets} nets (a file of another netlist?)")
    codes = _CODES[np.frombuffer(raw, np.uint8).reshape(-1, width)]
    if (codes[:, -1] != 255).any() or (codes[:, :-1] == 255).any():
        raise UserError(f"activity: {path} holds characters other than 0, 1, x, z or lines of the wrong length")
    return codes[:, :-1]


def stream_window(samples: np.ndarray, nets: list[str], streams: dict, reset: str | None) -> tuple[int, int]:
    """First and last cycle of the measured window: from the first input transfer after the last reset
    cycle to the last output transfer (``valid`` and ``ready`` both 1 in the cycle's sample)."""
    col = {n: i for i, n in enumerate(nets)}

    def column(name: str) -> np.ndarray:
        if name not in col:
            raise UserError(f"activity: the netlist has no net {name} (stream handshake)")
        return samples[:, col[name]]

    start_after = 0
    if reset and reset in col:
        rst = np.flatnonzero(column(reset) == 1)
        start_after = int(rst[-1]) + 1 if rst.size else 0
    fire_i = np.flatnonzero((column(streams["i"]["valid"]) == 1) & (column(streams["i"]["ready"]) == 1))
    fire_o = np.flatnonzero((column(streams["o"]["valid"]) == 1) & (column(streams["o"]["ready"]) == 1))
    fire_i, fire_o = fire_i[fire_i >= start_after], fire_o[fire_o >= start_after]
    if not fire_i.size or not fire_o.size:
        raise UserError("activity: no input and output transfer after the reset in the samples (did the run "
                        "drive the stream?)")
    return int(fire_i[0]), int(fire_o[-1])


def activity_from_samples(path: Path, nets: list[str], manifest: dict) -> NetActivity:
    """Activity of every net over the stream window of a gate-level run (:func:`stream_window`).

    A toggle is a change between the samples of two consecutive cycles (the cycle before the window
    included, so the first cycle's changes count); x/z samples count neither as a toggle nor as high."""
    samples = read_samples(path, len(nets))
    reset = (manifest.get("reset") or {}).get("name")
    start, end = stream_window(samples, nets, manifest["streams"], reset)
    win = samples[max(start - 1, 0):end + 1]
    known = win < 2
    both = known[1:] & known[:-1]
    toggles = ((win[1:] != win[:-1]) & both).sum(axis=0, dtype=np.int64)
    body = samples[start:end + 1]
    high = (body == 1).sum(axis=0, dtype=np.int64).astype(np.float64)
    return NetActivity(list(nets), toggles, high, float(end - start + 1), int((body == 2).sum()), (start, end))


_TIMESCALE = re.compile(r"\$timescale\s+(\d+)\s*(s|ms|us|ns|ps|fs)\s+\$end", re.S)
_UNIT_NS = {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0, "ps": 1e-3, "fs": 1e-6}


def activity_from_vcd(path: Path, nets: list[str], *, scope: str, period_ns: float,
                      start_ns: float = 0.0, end_ns: float | None = None) -> NetActivity:
    """Activity of ``nets`` (one-bit signals of the VCD scope whose dotted path ends with ``scope``, e.g.
    ``top.dut``) between ``start_ns`` and ``end_ns`` (default: the last time in the file), in cycles of
    ``period_ns``. ``UserError`` when the file is no VCD, the scope or a net is missing, or nothing changes."""
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise UserError(f"activity: cannot read VCD {path}: {exc.strerror or exc}") from None
    head, sep, body = text.partition("$enddefinitions")
    if not sep:
        raise UserError(f"activity: {path} is not a VCD (no $enddefinitions)")
    ts = _TIMESCALE.search(head)
    unit_ns = int(ts.group(1)) * _UNIT_NS[ts.group(2)] if ts else 1.0
    # Header: the identifier code of every one-bit var in the wanted scope.
    stack: list[str] = []
    codes: dict[str, str] = {}
    found_scope = False
    for tok in re.finditer(r"\$(scope|upscope|var)\b(.*?)\$end", head, re.S):
        kind, rest = tok.group(1), tok.group(2).split()
        if kind == "scope":
            stack.append(rest[1] if len(rest) > 1 else "")
        elif kind == "upscope":
            stack.pop() if stack else None
        elif ".".join(stack).endswith(scope) and len(rest) >= 4:
            found_scope = True
            width, code, name = int(rest[1]), rest[2], rest[3].removeprefix("\\")
            if len(rest) > 4 and rest[4].startswith("["):
                name += rest[4]
            if width == 1:
                codes[name] = code
    if not found_scope:
        raise UserError(f"activity: VCD {path} has no signals in a scope {scope!r}")
    missing = [n for n in nets if n not in codes]
    if missing:
        raise UserError(f"activity: VCD {path} does not match the netlist: {len(missing)} of its {len(nets)} nets "
                        f"are not in scope {scope!r} (e.g. {', '.join(missing[:3])})")
    index = {c: i for i, c in enumerate(codes[n] for n in nets)}
    n = len(nets)
    value = np.full(n, 2, np.uint8)
    since = np.zeros(n)  # time (ns) of the net's last change, clipped to the window
    toggles = np.zeros(n, np.int64)
    high = np.zeros(n)
    t = 0.0
    changes = 0
    t_end = end_ns
    for line in body.split("\n"):
        line = line.strip()
        if not line or line.startswith("$"):
            continue
        c = line[0]
        if c == "#":
            t = int(line[1:]) * unit_ns
            continue
        if c in "01xzXZ":
            v, code = _CODES[ord(c)], line[1:]
        elif c in "bB":
            bits, _, code = line[1:].partition(" ")
            v = _CODES[ord(bits[-1])] if len(bits) == 1 else 255
        else:
            continue
        i = index.get(code)
        if i is None or v == 255:
            continue
        changes += 1
        if t_end is not None and t > t_end:
            continue
        tc = min(max(t, start_ns), t_end if t_end is not None else t)
        if value[i] == 1:
            high[i] += tc - since[i]
        if t > start_ns and value[i] < 2 and v < 2 and v != value[i]:
            toggles[i] += 1
        value[i], since[i] = v, tc
    last = t if t_end is None else t_end
    if changes == 0:
        raise UserError(f"activity: VCD {path} has no value change of the netlist's nets (an empty dump)")
    high += np.where(value == 1, last - np.maximum(since, start_ns), 0.0)
    cycles = (last - start_ns) / period_ns
    return NetActivity(list(nets), toggles, high / period_ns, cycles)
