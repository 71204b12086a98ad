"""Design-space sweeps (docs/sweep.md): a declarative grid of unit configurations, each point measured as one
task of the sweep engine (``nxfp_hw.flows.engine``) with its own work directory, the results streamed into a
JSON-lines table as they finish, and the Pareto front of any two or three measures.

The axes multiply into points: units x formats x lanes x (pipelines or target clocks) x accumulation modes
(the dot engine's; the other units take one point). ``flows``, ``measure`` and ``seeds`` say what is measured
at every point: the flows run on the point's unit one after the other (the power flow reads the asic
netlist of the same point), the accuracy is that of its format, one regression runs per seed.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import UserError
from ..formats import FormatError, parse_format

__all__ = ["AXES", "MEASUREMENTS", "MEASURES", "OPTIONS", "Point", "SweepContext", "SweepSpec", "check_workers",
           "make_spec", "measure_point", "points_of", "read_results", "read_sweep_file", "resolve_measures",
           "worker_needs"]

MEASUREMENTS = ("area", "timing", "accuracy", "regression", "energy")
AREA_FLOWS = ("generic", "asic", "ice40", "xilinx")
TIMING_FLOWS = ("asic", "ice40")
SIMULATORS = ("icarus", "verilator")
DEFAULT_MEASURE = ("area", "accuracy")
DEFAULT_LANES = 8  # like the report: min(8, k) unless the sweep says
RESULTS_NAME = "results.jsonl"
SCHEMA = "nxfp-hw-sweep/1"
# Axes (lists; a single value is a list of one) and options (single values) of a sweep file.
AXES = ("units", "formats", "lanes", "pipeline", "target_mhz", "acc", "flows", "seeds", "measure")
OPTIONS = ("period", "freq", "target_flow", "tensor", "tensor_name", "blocks", "sim", "pareto")

# measure -> (what provides it: a flow or a measurement, larger is better)
MEASURES: dict[str, tuple[str, bool]] = {
    "transistors": ("generic", False), "cells": ("generic", False),
    "area_um2": ("asic", False), "fmax_mhz": ("asic", True), "critical_path_ns": ("asic", False),
    "throughput": ("asic", True),
    "ice40_luts": ("ice40", False), "ice40_fmax_mhz": ("ice40", True), "xilinx_luts": ("xilinx", False),
    "energy_pj": ("power", False),
    "rel_mse": ("accuracy", False), "sqnr_db": ("accuracy", True), "bits_per_element": ("accuracy", False),
    "latency": ("unit", False), "register_positions": ("unit", False), "lanes": ("unit", True),
}
# short names: "area" is the first area measure the sweep takes
ALIASES = {"area": ("area_um2", "transistors", "ice40_luts", "xilinx_luts"), "energy": ("energy_pj",),
           "accuracy": ("rel_mse",), "mse": ("rel_mse",), "fmax": ("fmax_mhz", "ice40_fmax_mhz"),
           "timing": ("fmax_mhz", "ice40_fmax_mhz")}


# --- the sweep description -------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: the axes, what is measured at every point, and the options of the measurements."""

    units: tuple[str, ...] = ("decode",)
    formats: tuple[str, ...] = ()
    lanes: tuple[int | None, ...] = (None,)
    pipeline: tuple[str | None, ...] = (None,)
    target_mhz: tuple[float | None, ...] = (None,)
    acc: tuple[str | None, ...] = (None,)
    flows: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (1,)
    measure: tuple[str, ...] = DEFAULT_MEASURE
    period: float | None = None
    freq: float | None = None
    target_flow: str = "asic"
    tensor: str | None = None
    tensor_name: str | None = None
    blocks: int | None = None
    sim: str = "icarus"
    pareto: tuple[str, ...] = ()

    def settings(self) -> dict[str, Any]:
        """What every point measures and how: part of each point's identity."""
        out: dict[str, Any] = {"flows": list(self.flows), "measure": list(self.measure),
                               "period": self.period, "freq": self.freq}
        if any(t is not None for t in self.target_mhz):
            out["target_flow"] = self.target_flow
        if "accuracy" in self.measure:
            out.update(tensor=self.tensor, tensor_name=self.tensor_name)
        if "regression" in self.measure:
            out.update(seeds=list(self.seeds), blocks=self.blocks, sim=self.sim)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def read_sweep_file(path: Path) -> dict[str, Any]:
    """The fields of a sweep file (``.toml``, ``.yaml``/``.yml``); ``UserError`` naming the file when it cannot
    be read or parsed."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"sweep file: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise UserError(f"sweep file: {path}: expected a .toml, .yaml or .yml file")
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - tomllib.TOMLDecodeError, yaml.YAMLError
        raise UserError(f"sweep file: {path}: not valid {suffix[1:].upper()}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"sweep file: {path}: expected a table of fields ({', '.join(AXES + OPTIONS)})")
    return data


def make_spec(values: Mapping[str, Any], origin: Mapping[str, str] | None = None) -> SweepSpec:
    """Validate sweep fields (from a file and the command line) into a ``SweepSpec``. ``origin[field]`` is how
    the message names a field (``--lanes``, ``sweep.toml: lanes``); every error is a ``UserError`` naming it."""
    from .generate import UNIT_BUILDERS
    from .manifest import ACC_MODES
    from .report import DEFAULT_FORMATS, REPORT_FLOWS

    origin = dict(origin or {})

    def name(key: str) -> str:
        return origin.get(key, key)

    for key in values:
        if key not in AXES + OPTIONS:
            where = origin.get("", "sweep")
            raise UserError(f"{where}: unknown field {key!r}; the axes are {', '.join(AXES)} and the options "
                            f"{', '.join(OPTIONS)}")

    def listed(key: str) -> list[Any] | None:
        v = values.get(key)
        if v is None:
            return None
        v = list(v) if isinstance(v, list | tuple) else [v]
        if not v:
            raise UserError(f"{name(key)}: expected at least one value")
        return v

    def choice(key: str, items: list[Any], allowed: Sequence[str], what: str, default_ok: bool = False) -> list[Any]:
        out = []
        for item in items:
            if default_ok and item in (None, "default"):
                out.append(None)
                continue
            if not isinstance(item, str) or item not in allowed:
                raise UserError(f"{name(key)}: unknown {what} {item!r}; expected one of {', '.join(allowed)}"
                                + (" or default" if default_ok else ""))
            out.append(item)
        return out

    def number(key: str, item: Any, *, integer: bool, low: float, high: float = math.inf) -> Any:
        ok = isinstance(item, int | float) and not isinstance(item, bool) and (not integer or isinstance(item, int))
        if not ok or not (low <= item <= high) or (not integer and not math.isfinite(item)):
            kind = "an integer" if integer else "a number"
            rng = f" >= {low:g}" if high == math.inf else f" in {low:g}..{high:g}"
            raise UserError(f"{name(key)}: expected {kind}{rng}, got {item!r}")
        return item

    kw: dict[str, Any] = {}
    units = listed("units")
    if units is not None:
        kw["units"] = tuple(dict.fromkeys(choice("units", units, sorted(UNIT_BUILDERS), "unit")))
    formats = listed("formats") or list(DEFAULT_FORMATS)
    for f in formats:
        if not isinstance(f, str):
            raise UserError(f"{name('formats')}: expected a preset or a format string, got {f!r}")
        try:
            parse_format(f)
        except FormatError as exc:
            raise UserError(f"{name('formats')}: {exc}") from None
    kw["formats"] = tuple(dict.fromkeys(formats))
    lanes = listed("lanes")
    if lanes is not None:
        kw["lanes"] = tuple(dict.fromkeys(None if v == "default" else number("lanes", v, integer=True, low=1)
                                          for v in lanes))
    pipeline, target = listed("pipeline"), listed("target_mhz")
    if pipeline is not None and target is not None:
        raise UserError(f"{name('target_mhz')}: a target clock chooses the pipeline; give {name('pipeline')} or "
                        f"{name('target_mhz')}, not both")
    if pipeline is not None:
        for v in pipeline:
            if isinstance(v, bool) or not isinstance(v, str | int):
                raise UserError(f"{name('pipeline')}: expected a count, 'none', 'all', register position names or "
                                f"'default', got {v!r}")
        kw["pipeline"] = tuple(dict.fromkeys(None if v == "default" else str(v) for v in pipeline))
    if target is not None:
        kw["target_mhz"] = tuple(dict.fromkeys(float(number("target_mhz", v, integer=False, low=1e-9))
                                               for v in target))
    acc = listed("acc")
    if acc is not None:
        if "dot" not in kw.get("units", SweepSpec.units):
            raise UserError(f"{name('acc')}: accumulation modes are the dot engine's; only meaningful with the dot "
                            "unit in units")
        kw["acc"] = tuple(dict.fromkeys(choice("acc", acc, ACC_MODES, "accumulation mode", default_ok=True)))
    measure = listed("measure")
    kw["measure"] = tuple(dict.fromkeys(choice("measure", measure, MEASUREMENTS, "measurement"))) \
        if measure is not None else DEFAULT_MEASURE
    hardware = {"area", "timing", "energy"} & set(kw["measure"])
    flows = listed("flows")
    if flows is not None:
        flows = choice("flows", flows, REPORT_FLOWS, "flow")
        if not hardware:
            raise UserError(f"{name('flows')}: only meaningful with the area, timing or energy measurement "
                            f"({name('measure')})")
    else:
        flows = ["asic"] if {"area", "timing"} & hardware else []
    if "energy" in hardware and "power" not in flows:
        flows.append("power")
    if "area" in hardware and not set(flows) & set(AREA_FLOWS):
        raise UserError(f"{name('flows')}: the area measurement needs an area flow ({', '.join(AREA_FLOWS)})")
    if "timing" in hardware and not set(flows) & set(TIMING_FLOWS):
        raise UserError(f"{name('flows')}: the timing measurement needs a flow with an Fmax "
                        f"({' or '.join(TIMING_FLOWS)})")
    kw["flows"] = tuple(dict.fromkeys(flows))
    seeds = listed("seeds")
    if seeds is not None:
        if "regression" not in kw["measure"]:
            raise UserError(f"{name('seeds')}: only meaningful with the regression measurement ({name('measure')})")
        kw["seeds"] = tuple(dict.fromkeys(number("seeds", s, integer=True, low=0, high=(1 << 32) - 1)
                                          for s in seeds))
    for key in ("period", "freq"):
        if values.get(key) is not None:
            kw[key] = float(number(key, values[key], integer=False, low=1e-9))
    if values.get("target_flow") is not None:
        kw["target_flow"] = choice("target_flow", [values["target_flow"]], TIMING_FLOWS, "flow")[0]
        if "target_mhz" not in kw:
            raise UserError(f"{name('target_flow')}: only meaningful with {name('target_mhz')}")
    if "target_mhz" in kw and kw.get("target_flow", "asic") == "asic" and "period" in kw:
        raise UserError(f"{name('period')}: a target clock sets the asic flow's period (1000 / F ns); give one or "
                        "the other")
    for key in ("tensor", "tensor_name"):
        if values.get(key) is not None:
            if not isinstance(values[key], str) or not values[key]:
                raise UserError(f"{name(key)}: expected a path, got {values[key]!r}" if key == "tensor"
                                else f"{name(key)}: expected a name, got {values[key]!r}")
            if "accuracy" not in kw["measure"]:
                raise UserError(f"{name(key)}: only meaningful with the accuracy measurement ({name('measure')})")
            kw[key] = str(Path(values[key]).absolute()) if key == "tensor" else values[key]
    if "tensor_name" in kw and "tensor" not in kw:
        raise UserError(f"{name('tensor_name')}: only meaningful with {name('tensor')}")
    for key in ("blocks", "sim"):
        if values.get(key) is not None and "regression" not in kw["measure"]:
            raise UserError(f"{name(key)}: only meaningful with the regression measurement ({name('measure')})")
    if values.get("blocks") is not None:
        kw["blocks"] = number("blocks", values["blocks"], integer=True, low=1)
    if values.get("sim") is not None:
        kw["sim"] = choice("sim", [values["sim"]], SIMULATORS, "simulator")[0]
    spec = SweepSpec(**kw)
    pareto = listed("pareto")
    if pareto is not None:
        spec = SweepSpec(**{**kw, "pareto": tuple(resolve_measures(spec, pareto, name("pareto")))})
    return spec


def available_measures(spec: SweepSpec) -> list[str]:
    """The measures every point of ``spec`` has (those of its flows and measurements)."""
    have = set(spec.flows) | set(spec.measure)
    if spec.flows or "regression" in spec.measure:
        have.add("unit")
    return [m for m, (src, _) in MEASURES.items() if src in have]


def resolve_measures(spec: SweepSpec, names: Sequence[str], option: str = "pareto") -> list[str]:
    """Measure names (``area``, ``rel_mse``, ...) as the columns of the results: two or three measures the
    sweep takes (aliases resolved). ``UserError`` naming ``option`` otherwise."""
    if not 2 <= len(names) <= 3:
        raise UserError(f"{option}: expected two or three measures, got {len(names)}")
    have = available_measures(spec)
    out = []
    for n in names:
        if not isinstance(n, str):
            raise UserError(f"{option}: expected measure names, got {n!r}")
        if n in ALIASES:
            found = next((m for m in ALIASES[n] if m in have), None)
            if found is None:
                raise UserError(f"{option}: {n}: this sweep measures none of {', '.join(ALIASES[n])} (measure and "
                                "flows decide)")
            n = found
        elif n not in MEASURES:
            raise UserError(f"{option}: unknown measure {n!r}; expected one of {', '.join([*ALIASES, *MEASURES])}")
        elif n not in have:
            src = MEASURES[n][0]
            what = f"the {src} flow" if src not in MEASUREMENTS and src != "unit" else f"the {src} measurement"
            raise UserError(f"{option}: {n} needs {what}, which this sweep does not run")
        if n in out:
            raise UserError(f"{option}: {n} given twice")
        out.append(n)
    return out


# --- points ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    """One configuration of a sweep: a task with its own work directory (``id``: a digest of the
    configuration and of what is measured, stable across runs: the key of ``--resume``)."""

    unit: str
    format: str
    lanes: int
    pipeline: str | None = None
    target_mhz: float | None = None
    acc: str | None = None
    id: str = ""

    def config(self) -> dict[str, Any]:
        return {"unit": self.unit, "format": self.format, "lanes": self.lanes, "pipeline": self.pipeline,
                "target_mhz": self.target_mhz, "acc": self.acc}

    def label(self, axes: Sequence[str] = ("unit", "format", "lanes", "pipeline", "target_mhz", "acc")) -> str:
        """``decode nxfp4 l8 p=none acc=exact @200MHz``: the configuration, limited to ``axes``."""
        parts = []
        for axis in axes:
            v = getattr(self, axis)
            if axis in ("unit", "format"):
                parts.append(parse_format(v).label if axis == "format" else v)
            elif axis == "lanes":
                parts.append(f"l{v}")
            elif v is not None:
                parts.append(f"@{v:g}MHz" if axis == "target_mhz" else f"{'p' if axis == 'pipeline' else axis}={v}")
        return " ".join(parts)


def points_of(spec: SweepSpec) -> list[Point]:
    """Every point of the grid, in axis order, deduplicated (the accumulation axis is the dot engine's only)."""
    out: dict[str, Point] = {}
    settings = spec.settings()
    for unit, fmt_text, lanes, pipe, target, acc in itertools.product(
            spec.units, spec.formats, spec.lanes, spec.pipeline, spec.target_mhz, spec.acc):
        fmt = parse_format(fmt_text)
        p = Point(unit=unit, format=fmt_text, lanes=min(DEFAULT_LANES, fmt.k) if lanes is None else lanes,
                  pipeline=pipe, target_mhz=target, acc=acc if unit == "dot" else None)
        ident = json.dumps({**p.config(), "format": fmt.to_string(), **settings}, sort_keys=True)
        p = Point(**{**p.config(), "id": hashlib.sha256(ident.encode()).hexdigest()[:12]})
        out.setdefault(p.id, p)
    return list(out.values())


def varying_axes(points: Sequence[Point]) -> list[str]:
    """The configuration axes that take more than one value in ``points`` (for short labels)."""
    axes = ("unit", "format", "lanes", "pipeline", "target_mhz", "acc")
    return [a for a in axes if len({getattr(p, a) for p in points}) > 1] or ["format"]


def check_points(points: Sequence[Point]) -> None:
    """Construct every point's unit once (cheap: no elaboration), so bad lanes, pipelines or accumulation
    modes are refused before any point runs; the ``UserError`` names the point."""
    from .generate import build_unit

    for p in points:
        try:
            comp = build_unit(p.unit, parse_format(p.format), None, lanes=p.lanes, pipeline=p.pipeline,
                              acc=p.acc)
        except UserError as exc:
            raise UserError(f"point {p.label()}: {exc}") from None
        comp._MustUse__silence = True  # constructed to check the options only


# --- what a worker runs ----------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepContext:
    """Where a point's work and cache go, and how it is measured (sent to the workers with each point)."""

    cache: str
    work: str
    flows: tuple[str, ...]
    measure: tuple[str, ...]
    seeds: tuple[int, ...] = (1,)
    blocks: int | None = None
    sim: str = "icarus"
    period: float | None = None
    freq: float | None = None
    target_flow: str = "asic"
    tensor: str | None = None
    tensor_name: str | None = None

    @classmethod
    def of(cls, spec: SweepSpec, *, cache: Path, work: Path) -> SweepContext:
        return cls(cache=str(Path(cache).absolute()), work=str(Path(work).absolute()), flows=spec.flows,
                   measure=spec.measure, seeds=spec.seeds, blocks=spec.blocks, sim=spec.sim, period=spec.period,
                   freq=spec.freq, target_flow=spec.target_flow, tensor=spec.tensor, tensor_name=spec.tensor_name)


@functools.lru_cache(maxsize=2)
def _tensor(path: str | None, name: str | None) -> tuple[Any, str, str]:
    """(values, label, digest) of the accuracy tensor, loaded once per worker process."""
    from .accuracy import default_tensor, tensor_digest

    if path is None:
        x, label = default_tensor()
    else:
        from ..tensors import load_tensor

        x, label = load_tensor(Path(path), name, what="tensor"), Path(path).name + (f":{name}" if name else "")
    return x, label, tensor_digest(x)


def _fresh_workdir(path: Path) -> tuple[Path, int]:
    """The point's work directory, emptied; ``(path, attempt)``. A directory left by an earlier attempt (a worker
    that died) is moved aside first, so tools it started and that still run never write into the new one."""
    attempt = 1
    if path.exists():
        try:
            attempt = int((path / "attempt").read_text()) + 1
        except (OSError, ValueError):
            attempt = 2
        aside = path.with_name(f".{path.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        path.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)
    path.mkdir(parents=True)
    (path / "attempt").write_text(f"{attempt}\n")
    return path, attempt


def _flow_measures(flows: Mapping[str, Mapping[str, Any]], build: Any) -> dict[str, Any]:
    from .report import POWER_FLOW, throughput

    def fig(flow: str, key: str) -> Any:
        return (flows.get(flow) or {}).get("figures", {}).get(key)

    m: dict[str, Any] = {}
    pairs = {"generic": [("transistors", "transistors"), ("cells", "cells")],
             "asic": [("area_um2", "area_um2"), ("fmax_mhz", "fmax_mhz"), ("critical_path_ns", "critical_path_ns")],
             "ice40": [("ice40_luts", "luts"), ("ice40_fmax_mhz", "fmax_mhz")], "xilinx": [("xilinx_luts", "luts")],
             POWER_FLOW: [("energy_pj", "energy_pj_per_op")]}
    for flow, names in pairs.items():
        if "figures" in (flows.get(flow) or {}):
            m.update({ours: fig(flow, theirs) for ours, theirs in names})
    if "figures" in (flows.get("asic") or {}):
        m["throughput"] = throughput(build, fig("asic", "fmax_mhz"))
    return m


def measure_point(point: Point, ctx: SweepContext, *, echo: Callable[[str], None]) -> dict[str, Any]:
    """Measure one point in its own work directory ``<work>/<id>`` (the engine's task). Never raises for a
    failure of the point itself: the record says ``status: failed``, the error and the log (``point.log``, and
    each flow's and regression's own log that it names)."""
    from .cache import entry_lock

    with entry_lock(Path(ctx.work) / point.id):  # another sweep sharing --work waits for this point
        return _measure_point_locked(point, ctx, echo)


def _measure_point_locked(point: Point, ctx: SweepContext, echo: Callable[[str], None]) -> dict[str, Any]:
    t0, cpu0 = time.monotonic(), _cpu_seconds()
    work, attempt = _fresh_workdir(Path(ctx.work) / point.id)
    log_path = work / "point.log"
    record: dict[str, Any] = {"id": point.id, "label": point.label(), "config": point.config(), "status": "ok",
                              "measures": {}, "attempt": attempt, "started": round(time.time(), 3)}
    with open(log_path, "a") as fh:
        def log(line: str) -> None:
            fh.write(f"{time.strftime('%H:%M:%S')} {line}\n")
            fh.flush()

        log(f"point {point.id}: {point.label()} (attempt {attempt}, pid {os.getpid()})")
        try:
            _measure(point, ctx, record, work, log)
        except Exception as exc:  # noqa: BLE001 - the point is recorded as failed; the sweep goes on
            record.setdefault("error", str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}")
            log(traceback.format_exc())
        if "error" in record:
            record["status"] = "failed"
            log(f"FAILED: {record['error']}")
    record["seconds"] = round(time.monotonic() - t0, 3)
    record["cpu_seconds"] = round(_cpu_seconds() - cpu0, 3)  # this process and the tools it ran
    record["log"] = str(log_path)
    if record["status"] == "failed":
        record["log_tail"] = log_path.read_text().splitlines()[-15:]
    from .engine import worker_address

    record["worker"] = worker_address()
    echo(f"{point.label()}: {record['status']} in {record['seconds']:.1f} s")
    return record


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the tools a point runs)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _measure(point: Point, ctx: SweepContext, record: dict[str, Any], work: Path, log: Callable[[str], None]) -> None:
    from .accuracy import accuracy_of
    from .report import _BUILD_LOCK, build_for_area, run_flows_cached, unit_build

    fmt = parse_format(point.format)
    m = record["measures"]
    cache = Path(ctx.cache)
    if "accuracy" in ctx.measure:
        x, label, digest = _tensor(ctx.tensor, ctx.tensor_name)
        acc = accuracy_of(fmt, x, label=label, cache_dir=cache, digest=digest)
        m.update(rel_mse=acc.relative_mse, sqnr_db=acc.sqnr_db if math.isfinite(acc.sqnr_db) else None,
                 bits_per_element=acc.bits_per_element)
        log(f"accuracy on {label}: relative MSE {acc.relative_mse:.4g}")
    if not ctx.flows and "regression" not in ctx.measure:
        return
    unit_kw: dict[str, Any] = {"lanes": point.lanes, **({"acc": point.acc} if point.acc else {})}
    flow_opts: dict[str, Any] = {"period_ns": ctx.period, "freq_mhz": ctx.freq}
    pipeline: Any = point.pipeline
    if point.target_mhz is not None:
        from .timing import close_timing

        closure = close_timing(point.unit, fmt, None, target_mhz=point.target_mhz, flow=ctx.target_flow,
                               cache_dir=cache / "timing", echo=log, **unit_kw)
        log(closure.summary())
        build = unit_build(closure.component)
        pipeline = ",".join(closure.cuts) or "none"
        record["timing_closure"] = {"flow": ctx.target_flow, "target_mhz": point.target_mhz,
                                    "fmax_mhz": closure.fmax_mhz, "cuts": list(closure.cuts)}
        flow_opts["period_ns" if ctx.target_flow == "asic" else "freq_mhz"] = (
            round(1000.0 / point.target_mhz, 6) if ctx.target_flow == "asic" else point.target_mhz)
    else:
        with _BUILD_LOCK:  # a worker with several threads elaborates one unit at a time
            build = build_for_area(point.unit, fmt, None, pipeline=pipeline, **unit_kw)
    record["facts"] = build.facts()
    m.update(latency=build.latency, lanes=build.lanes,
             register_positions=len(build.pipeline.get("enabled", [])) if build.pipeline else 0)
    if ctx.flows:
        flows, status = run_flows_cached(build, ctx.flows, cache, flow_opts, work / "flows", log, point.label())
        record["flows"] = {f: {k: v for k, v in r.items() if k in ("figures", "tools", "notes", "error")}
                           for f, r in flows.items()}
        record["cache"] = status
        m.update(_flow_measures(flows, build))
        failed = [f for f, r in flows.items() if "error" in r]
        if failed:
            record["error"] = f"{failed[0]} flow: {flows[failed[0]]['error']}"
    if "regression" in ctx.measure:
        _regression(point, fmt, pipeline, unit_kw, ctx, record, work, log)


def _regression(point: Point, fmt: Any, pipeline: Any, unit_kw: dict[str, Any], ctx: SweepContext,
                record: dict[str, Any], work: Path, log: Callable[[str], None]) -> None:
    """``nxfp-hw verify --manifest`` of the point's generated unit (the exact configuration measured), on the
    compiled fast path, once per seed; each run's output in ``regression_seed<S>.log``."""
    from .generate import build_unit, generate
    from .report import _BUILD_LOCK

    with _BUILD_LOCK:
        gen = generate(build_unit(point.unit, fmt, None, pipeline=pipeline, **unit_kw), work / "rtl", force=True)
    runs = []
    for seed in ctx.seeds:
        rlog = work / f"regression_seed{seed}.log"
        cmd = [sys.executable, "-m", "nxfp_hw.cli", "verify", "--manifest", str(gen.manifest), "--engine", "fast",
               "--sim", ctx.sim, "--seed", str(seed), "--build-dir", str(work / "sim")]
        if ctx.blocks is not None:
            cmd += ["--blocks", str(ctx.blocks)]
        t0 = time.monotonic()
        with open(rlog, "w") as fh:
            status = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
        runs.append({"seed": seed, "passed": status == 0, "exit_status": status, "log": str(rlog),
                     "seconds": round(time.monotonic() - t0, 3)})
        log(f"regression seed {seed}: exit {status} ({time.monotonic() - t0:.1f} s; {rlog.name})")
    record["regression"] = runs
    record["measures"]["regression_passed"] = sum(r["passed"] for r in runs)
    bad = next((r for r in runs if not r["passed"]), None)
    if bad is not None and "error" not in record:
        why = "a mismatch against the golden model" if bad["exit_status"] == 1 else f"exit {bad['exit_status']}"
        record["error"] = f"regression seed {bad['seed']}: {why} (log: {bad['log']})"


# --- checks of the workers ---------------------------------------------------------------------------

def worker_needs(spec: SweepSpec) -> list[tuple[str, str]]:
    """``(tool, what needs it)`` for every external tool the measurements of ``spec`` run."""
    from .area import _FLOW_TOOLS

    needs: list[tuple[str, str]] = []
    for flow in spec.flows:
        needs += [(t, f"the {flow} flow") for t in _FLOW_TOOLS.get(flow, ("yosys", "sta", "iverilog"))]
    if any(t is not None for t in spec.target_mhz):
        needs += [(t, f"target_mhz (the {spec.target_flow} flow)") for t in _FLOW_TOOLS[spec.target_flow]]
    if "regression" in spec.measure:
        needs += [(t, f"the regression ({spec.sim})") for t in (("iverilog", "vvp") if spec.sim == "icarus"
                                                                 else ("verilator",))]
    return list(dict.fromkeys(needs))


def check_worker(version: str, needs: Sequence[tuple[str, str]], dirs: Sequence[tuple[str, str]],
                 files: Sequence[tuple[str, str]]) -> list[str]:
    """Run on each worker before any point: the problems that would make every point fail there (another
    nxfp-hw, a missing tool, a directory it cannot write, a file it cannot read)."""
    from ..paths import check_output_dir
    from .tools import ToolNotFound, find_tool

    problems = []
    if version != __version__:
        problems.append(f"nxfp-hw {__version__} (this machine has {version}): workers need the same environment")
    for tool, why in needs:
        try:
            find_tool(tool)
        except ToolNotFound as exc:
            problems.append(f"{why} needs {exc}")
    for path, option in dirs:
        try:
            check_output_dir(Path(path), option)
        except UserError as exc:
            problems.append(str(exc))
    for path, option in files:
        if not os.access(path, os.R_OK):
            problems.append(f"{option}: cannot read {path}")
    return problems


def check_workers(engine: Any, spec: SweepSpec, dirs: Sequence[tuple[str, str]]) -> None:
    """``check_worker`` on every worker of ``engine``: one ``UserError`` naming the workers and what they lack."""
    files = [(spec.tensor, "tensor")] if spec.tensor and "accuracy" in spec.measure else []
    try:
        found = engine.run_on_workers(check_worker, __version__, worker_needs(spec), list(dirs), files)
    except Exception as exc:  # noqa: BLE001 - a worker without nxfp-hw cannot even run the check
        raise UserError(f"workers: cannot run nxfp-hw on the workers ({type(exc).__name__}: {exc}); workers need "
                        "the same environment (docs/sweep.md)") from None
    bad = {w: p for w, p in sorted(found.items()) if p}
    if bad:
        raise UserError("; ".join(f"worker {w}: {', '.join(p)}" for w, p in bad.items()))


# --- the results table -----------------------------------------------------------------------------

def read_results(path: Path) -> list[dict[str, Any]]:
    """The records of a results file (a line cut short by a crash is skipped)."""
    out = []
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "id" in rec:
            out.append(rec)
    return out


class ResultsFile:
    """The JSON-lines table: one record per finished point, appended, flushed and synced as it arrives."""

    def __init__(self, path: Path, keep: Sequence[dict[str, Any]] = ()) -> None:
        from .accuracy import write_text_atomic

        self.path = Path(path)
        write_text_atomic(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep))
        self.fh = open(self.path, "a")  # noqa: SIM115 - closed by close()

    def append(self, record: dict[str, Any]) -> None:
        self.fh.write(json.dumps(record, sort_keys=True, default=_json_default) + "\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# --- the sweep ------------------------------------------------------------------------------------

def _points(n: int) -> str:
    return f"{n} point{'' if n == 1 else 's'}"


@dataclass
class SweepResult:
    """What ``run_sweep`` measured and wrote."""

    records: list[dict[str, Any]]
    files: list[Path]
    ran: int
    resumed: int
    wall_seconds: float
    front: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") != "ok"]


def run_sweep(spec: SweepSpec, points: Sequence[Point], *, out: Path, work: Path, cache: Path, engine: Any,
              resume: bool = False, echo: Callable[[str], None] | None = None) -> SweepResult:
    """Measure ``points`` on ``engine`` (entered), streaming each record into ``<out>/results.jsonl`` as it
    finishes, then write ``sweep.json`` (and the Pareto outputs when ``spec.pareto``). With ``resume`` the points
    already ``ok`` in an existing results file are kept and not run again (failed ones are); otherwise the file
    starts empty. The caller has checked the paths and the workers."""
    from .accuracy import write_text_atomic
    from .engine import Progress

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS_NAME
    ids = [p.id for p in points]
    keep: dict[str, dict[str, Any]] = {}
    if resume:
        keep = {r["id"]: r for r in read_results(results_path) if r.get("status") == "ok" and r["id"] in ids}
    todo = [p for p in points if p.id not in keep]
    ctx = SweepContext.of(spec, cache=cache, work=work)
    progress = Progress(len(points), skipped=len(keep), echo=echo)
    if keep:
        progress.echo(f"resuming: {len(keep)} of {len(points)} points already measured in {results_path}")
    progress.echo(f"sweep: {_points(len(todo))} on {engine.describe()}; results stream to {results_path}")
    table = ResultsFile(results_path, list(keep.values()))
    records = dict(keep)

    def finished(outcome: Any) -> None:
        point = outcome.args[0]
        rec = outcome.value
        if outcome.error is not None:
            rec = {"id": point.id, "label": point.label(), "config": point.config(), "status": "failed",
                   "error": f"engine: {outcome.error}", "measures": {}}
        for item in [rec, *rec.get("regression", [])]:  # logs named as the user named --work
            if str(item.get("log", "")).startswith(ctx.work + os.sep):
                item["log"] = str(Path(work) / item["log"][len(ctx.work) + 1:])
        table.append(rec)
        records[rec["id"]] = rec
        where = "" if outcome.worker == "local" else f" on {outcome.worker}"
        if rec["status"] == "ok":
            flows = ", ".join(f"{f} {'cached' if s == 'hit' else s}" for f, s in (rec.get("cache") or {}).items())
            text = f"{rec['label']}: ok in {rec.get('seconds', 0):.1f} s{where}" + (f" ({flows})" if flows else "")
        else:
            log = f" (log: {rec['log']})" if rec.get("log") else ""
            text = f"{rec['label']}: FAILED{where}: {str(rec.get('error')).splitlines()[0]}{log}"
        progress.finished(text, failed=rec["status"] != "ok", running=engine.running())

    t0 = time.monotonic()
    try:
        engine.map(measure_point, [(p.id, (p, ctx), {}) for p in todo], finished, heartbeat=progress.heartbeat)
    finally:
        table.close()
    wall = time.monotonic() - t0
    ordered = [records[i] for i in ids if i in records]
    result = SweepResult(records=ordered, files=[results_path], ran=len(todo), resumed=len(keep), wall_seconds=wall)
    summary: dict[str, Any] = {
        "schema": SCHEMA, "generator": {"name": "nxfp-hw", "version": __version__}, "spec": spec.to_dict(),
        "engine": engine.describe(), "points": len(points), "ok": len(ordered) - len(result.failed),
        "failed": [r["label"] for r in result.failed], "ran": len(todo), "resumed": len(keep),
        "wall_seconds": round(wall, 3),
        "point_seconds": round(sum(records[p.id].get("seconds", 0.0) for p in todo if p.id in records), 3),
        "results": RESULTS_NAME}
    if spec.pareto:
        result.front, files, summary["pareto"] = pareto_outputs(ordered, points, spec.pareto, out)
        result.files += files
    write_text_atomic(out / "sweep.json", json.dumps(summary, indent=1, default=_json_default) + "\n")
    result.files.append(out / "sweep.json")
    return result


def pareto_outputs(records: Sequence[dict[str, Any]], points: Sequence[Point], measures: Sequence[str],
                   out: Path) -> tuple[list[dict[str, Any]], list[Path], dict[str, Any]]:
    """Mark the non-dominated points on ``measures`` among the points measured: ``pareto.md`` (every point,
    the front marked), ``pareto.json`` and ``pareto.png``. Returns the front's rows, the files and a summary."""
    from .accuracy import write_text_atomic
    from .pareto import non_dominated, plot_front

    maximize = [MEASURES[m][1] for m in measures]
    rows = [r for r in records if r.get("status") == "ok"
            and all(isinstance(r["measures"].get(m), int | float) for m in measures)]
    values = [[float(r["measures"][m]) for m in measures] for r in rows]
    front = set(non_dominated(values, maximize))
    axes = varying_axes(points)
    labels = [Point(**r["config"]).label(axes) for r in rows]
    table = [{"id": r["id"], "label": labels[i], "config": r["config"], "front": i in front,
              **{m: r["measures"][m] for m in measures}} for i, r in enumerate(rows)]
    table.sort(key=lambda t: (not t["front"], *[(-t[m] if mx else t[m]) for m, mx in zip(measures, maximize,
                                                                                         strict=True)]))
    what = ", ".join(f"{m} ({'larger' if mx else 'smaller'} is better)" for m, mx in zip(measures, maximize,
                                                                                          strict=True))
    md = [f"# Pareto front: {', '.join(measures)}\n",
          f"{len(front)} of {len(rows)} points are not dominated on {what}; a point dominates another when it is at "
          "least as good on every measure and better on one. Generated by `nxfp-hw sweep --pareto` (docs/sweep.md)."
          "\n", "| front | configuration | " + " | ".join(measures) + " |", "|---|---|" + "---|" * len(measures)]
    md += [f"| {'*' if t['front'] else ''} | {t['label']} | " + " | ".join(f"{t[m]:.4g}" for m in measures) + " |"
           for t in table]
    files = [out / "pareto.md", out / "pareto.json"]
    write_text_atomic(files[0], "\n".join(md) + "\n")
    write_text_atomic(files[1], json.dumps({"measures": list(measures), "maximize": maximize, "points": table},
                                           indent=1, default=_json_default) + "\n")
    if rows:
        logs = [min(v[j] for v in values) > 0 and max(v[j] for v in values) > 10 * min(v[j] for v in values)
                for j in range(len(measures))]
        files.append(plot_front(out / "pareto.png", values, labels, measures, sorted(front), log=logs,
                                title=f"{len(front)} non-dominated of {len(rows)} points (bold, ringed)"))
    return [t for t in table if t["front"]], files, {"measures": list(measures), "front": len(front),
                                                     "points": len(rows)}
