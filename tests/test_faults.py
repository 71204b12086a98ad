"""Fault injection through the real CLI (issue 11): every class of bad input, bad path, signal, race and
broken tool environment ends in one line naming the problem, the documented exit status (2 usage, 3 tool,
143 SIGTERM), no traceback, no partial or temporary file, and no process left running.

Each test runs ``python -m nxfp_hw.cli`` in a subprocess, as a user would. A full disk is simulated with
RLIMIT_FSIZE (a write past the limit fails with EFBIG, as ENOSPC would, and needs no mount or root); an
unwritable directory is ``/sys`` (read-only to everyone, root included) or a chmod-ed one for other users.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from nxfp_hw.formats import parse_format
from nxfp_hw.golden.quantize import quantize

CLI = [sys.executable, "-m", "nxfp_hw.cli"]
REPO = Path(__file__).resolve().parents[1]


def cli(*args: object, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300,
        preexec_fn=None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONPATH", str(REPO))
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, env=full_env, cwd=cwd,
                          timeout=timeout, stdin=subprocess.DEVNULL, preexec_fn=preexec_fn)


def refused(proc: subprocess.CompletedProcess, *needles: str, status: int = 2) -> str:
    """Assert exit ``status`` with exactly one line on stderr (argparse adds its usage line) holding every
    needle, and no traceback; returns the error line."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == status, (proc.returncode, proc.stdout[-2000:], proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    assert len(errors) == 1, proc.stderr
    assert len(lines) == 1 or lines[0].startswith("usage:") or lines[0].startswith("  ..."), proc.stderr
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


def files_in(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture()
def tensor(tmp_path: Path) -> Path:
    x = np.random.default_rng(5).standard_normal((4, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return tmp_path / "x.npy"


# --- corrupt and unusual input files ----------------------------------------------------------------

def _corrupt_npz_files(d: Path) -> dict[str, Path]:
    x = np.random.default_rng(1).standard_normal((8, 32)).astype(np.float32)
    files = {}
    with zipfile.ZipFile(d / "not_npy.npz", "w") as z:  # a member that is not an .npy
        z.writestr("x.npy", b"this is not an array")
    files["member not .npy"] = d / "not_npy.npz"
    np.savez_compressed(d / "deflate.npz", x=x)
    raw = bytearray((d / "deflate.npz").read_bytes())
    start = raw.index(b"x.npy") + 5 + 40
    raw[start:start + 200] = bytes(200)  # zeros inside the compressed stream
    (d / "deflate.npz").write_bytes(bytes(raw))
    files["corrupt deflate stream"] = d / "deflate.npz"
    np.savez(d / "full.npz", x=x)
    raw = (d / "full.npz").read_bytes()
    (d / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    files["truncated"] = d / "truncated.npz"
    (d / "empty.npz").write_bytes(b"")
    files["empty file"] = d / "empty.npz"
    return files


def test_corrupt_npz_in_quantize_and_verify(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for what, path in _corrupt_npz_files(inputs).items():
        proc = cli("quantize", "-f", "nxfp4", "-i", path, "-o", out_dir / "q.npz")
        refused(proc, "--input", path.name)
        proc = cli("verify", "--unit", "decode", "-f", "nxfp4", "--sim", "icarus", "--vectors", path,
                   "--build-dir", tmp_path / "build")
        refused(proc, "--vectors", path.name)
        assert files_in(out_dir) == [], what
    assert not (tmp_path / "build" / "sim").exists()  # refused before any generation


def test_directories_fifos_and_empty_tensors(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.npy")
    (tmp_path / "dir.npy").mkdir()
    np.save(tmp_path / "empty.npy", np.zeros((0, 32), np.float32))
    np.savez(tmp_path / "empty_q.npz", headers=np.zeros((0,), np.uint16), codes=np.zeros((0, 32), np.uint16))
    refused(cli("quantize", "-f", "nxfp4", "-i", tmp_path / "fifo.npy", "-o", tmp_path / "q.npz"), "not a regular file")
    refused(cli("quantize", "-f", "nxfp4", "-i", tmp_path / "dir.npy", "-o", tmp_path / "q.npz"), "is a directory")
    refused(cli("quantize", "-f", "nxfp4", "-i", tmp_path / "empty.npy", "-o", tmp_path / "q.npz"), "empty")
    refused(cli("verify", "--unit", "decode", "-f", "nxfp4", "--sim", "icarus", "--vectors", tmp_path / "empty_q.npz",
                "--build-dir", tmp_path / "b"), "--vectors", "no blocks")
    assert not (tmp_path / "q.npz").exists() and not (tmp_path / "b" / "sim").exists()


def test_big_endian_and_bfloat16_npy_accepted(tmp_path: Path) -> None:
    x = np.random.default_rng(2).standard_normal((2, 32))
    np.save(tmp_path / "be.npy", x.astype(">f4"))
    np.save(tmp_path / "bf.npy", x.astype(ml_dtypes.bfloat16))  # written as |V2 by np.save
    assert np.load(tmp_path / "bf.npy").dtype == np.dtype("V2")
    for name, ref in (("be", x.astype(np.float32)), ("bf", x.astype(ml_dtypes.bfloat16))):
        proc = cli("quantize", "-f", "nxfp4", "-i", tmp_path / f"{name}.npy", "-o", tmp_path / f"{name}_q.npz")
        assert proc.returncode == 0, proc.stderr
        with np.load(tmp_path / f"{name}_q.npz") as z:
            q = quantize(ref, parse_format("nxfp4"))
            assert np.array_equal(z["headers"], q.headers) and np.array_equal(z["codes"], q.codes)


def test_quantize_statistics_over_finite_blocks(tmp_path: Path) -> None:
    x = np.random.default_rng(3).standard_normal((4, 64)).astype(np.float32)
    x[1, 5] = np.nan
    x[2, 40] = np.inf
    np.save(tmp_path / "x.npy", x)
    proc = cli("quantize", "-f", "nxfp4", "-i", tmp_path / "x.npy", "-o", tmp_path / "q.npz")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no RuntimeWarning
    rows = {ln.split()[0]: ln.split() for ln in proc.stdout.splitlines() if ln.startswith(("nxfp4 ", "mxfp4_e2m1 "))}
    for fmt in ("nxfp4", "mxfp4_e2m1"):
        mse, rel, sqnr, excluded = rows[fmt][2], rows[fmt][3], rows[fmt][4], rows[fmt][5]
        assert np.isfinite(float(mse)) and np.isfinite(float(sqnr)) and rel != "inf" and excluded == "2"
    finite = np.isfinite(x.reshape(-1, 32)).all(axis=1)
    with np.load(tmp_path / "q.npz") as z:
        v = z["values"].reshape(-1, 32)
    mse = float(np.mean((v[finite].astype(np.float64) - x.reshape(-1, 32)[finite]) ** 2))
    assert float(rows["nxfp4"][2]) == pytest.approx(mse, rel=1e-5)
    assert oct(os.stat(tmp_path / "q.npz").st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("fmt", ["nxfp4", "mxfp4_e2m1", "mxfp8_e4m3", "mxint8", "elem=E2M1|E1M2,scale=UE5M1,cr=pm,"
                                 "rule=search:2"])
def test_extreme_finite_inputs_saturate(tmp_path: Path, fmt: str) -> None:
    f = parse_format(fmt)
    sign = np.where(np.arange(f.k) % 3 == 0, -1.0, 1.0)
    bigs = (1e100, 1e154, 1e200, 1.7e308)  # one block (row) each
    np.save(tmp_path / "x.npy", np.array([big * sign * np.linspace(0.25, 1, f.k) for big in bigs]))
    proc = cli("quantize", "-f", fmt, "-i", tmp_path / "x.npy", "-o", tmp_path / "q.npz", "--baseline", "none")
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "q.npz") as z:
        headers, codes = z["headers"][:, 0], z["codes"][:, 0]
    assert (headers != 0).all() and (headers != f.make_header(f.scale.nan_code, 0, 0)).all(), headers
    assert (headers == headers[0]).all() and (codes == codes[0]).all()  # saturated alike, whatever the magnitude


# --- seeds and option values: refused before any work ------------------------------------------------

@pytest.mark.parametrize("argv", [["--seed", "-1"], ["--seed", "abc"], ["--seed", "1_0"], ["--seed", str(1 << 40)]])
def test_bad_seeds(tmp_path: Path, argv: list[str]) -> None:
    refused(cli("verify", "--unit", "decode", "-f", "nxfp4", "--sim", "icarus", "--build-dir", tmp_path / "b", *argv),
            "--seed")
    refused(cli("run", "--out", tmp_path / "run", "--skip-verify", *argv), "--seed")
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("value", ["abc", "-5", "9" * 30])
def test_bad_env_seed(tmp_path: Path, value: str) -> None:
    proc = cli("verify", "--unit", "decode", "-f", "nxfp4", "--sim", "icarus", "--build-dir", tmp_path / "b",
               env={"NXFP_SEED": value})
    refused(proc, "NXFP_SEED")
    assert not (tmp_path / "b" / "sim").exists()


@pytest.mark.parametrize("argv", [
    ["report", "--lanes", "3"], ["report", "--pipeline", "-1"], ["report", "--period", "-5"],
    ["report", "--period", "inf"], ["report", "--jobs", "0"], ["report", "--units", "decode,nope"],
    ["run", "--flows", "foo"], ["run", "--lanes", "3"], ["run", "--pipeline", "-1"],
    ["area", "--unit", "dot", "-f", "nxfp4", "--flow", "generic", "--period", "inf"],
    ["area", "--unit", "dot", "-f", "nxfp4", "--flow", "generic", "--lanes", "3"],
    ["generate", "--unit", "encode", "-f", "elem=INT16", "--out", "gen"],
    ["generate", "--unit", "dot", "-f", "nxfp4", "--lanes", "0", "--out", "gen"],
    ["formats", "-f", ""], ["formats", "-f", "nxfp4,cr=0.1"], ["formats", "-f", "nxfp4,k=1_6"],
    ["formats", "-f", "nxfp4,k=\u0661\u0666"], ["formats", "-f", "nxfp4,rule=ocp:5"],
    ["quantize", "-f", "nxfp4", "-i", "x.npy", "-o", "q.npz", "--baseline", "elem=E9M9"],
    ["sweep", "--lanes", "3"], ["sweep", "--units", "decode,nope"], ["sweep", "--pareto", "area,luts"],
])
def test_options_checked_before_work(tmp_path: Path, argv: list[str]) -> None:
    np.save(tmp_path / "x.npy", np.ones((1, 32), np.float32))
    extra = {"report": ["--out", "rep", "--cache", "cache"], "run": ["--out", "run"],
             "sweep": ["--out", "sw", "--cache", "cache"]}.get(argv[0], [])
    line = refused(cli(*argv, *extra, cwd=tmp_path))
    assert len(line) < 600
    assert files_in(tmp_path) == ["x.npy"]  # nothing generated, measured or written


def test_long_format_string_is_not_echoed(tmp_path: Path) -> None:
    line = refused(cli("formats", "-f", "x" * 120_000), "--format", "120000 characters")
    assert len(line) < 600


# --- destinations: files where directories go, unwritable, full ---------------------------------------

def test_paths_that_are_files_or_missing(tmp_path: Path, tensor: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("user file")
    cases = [
        (["quantize", "-f", "nxfp4", "-i", tensor, "-o", blocker / "q.npz"], "--output"),
        (["quantize", "-f", "nxfp4", "-i", tensor, "-o", tmp_path / "nodir" / "q.npz"], "--output"),
        (["quantize", "-f", "nxfp4", "-i", tensor, "-o", tmp_path], "--output"),
        (["generate", "--unit", "decode", "-f", "nxfp4", "--out", blocker], "out"),
        (["generate", "--unit", "decode", "-f", "nxfp4", "--out", blocker / "sub"], "--out"),
        (["area", "--unit", "decode", "-f", "nxfp4", "--flow", "generic", "--workdir", blocker], "--workdir"),
        (["area", "--unit", "decode", "-f", "nxfp4", "--flow", "generic", "--json", tmp_path / "nodir" / "a.json"],
         "--json"),
        (["verify", "--unit", "decode", "-f", "nxfp4", "--sim", "icarus", "--build-dir", blocker], "--build-dir"),
        (["verify", "--unit", "decode", "-f", "nxfp4", "--sim", "icarus", "--vectors", tensor, "--output",
          blocker / "o.npz", "--build-dir", tmp_path / "b"], "--output"),
        (["report", "--out", blocker, "--cache", tmp_path / "c"], "--out"),
        (["report", "--out", tmp_path / "r", "--cache", blocker], "--cache"),
        (["run", "--out", blocker / "x"], "--out"),
    ]
    before = files_in(tmp_path)
    for argv, option in cases:
        refused(cli(*argv), option)
        assert files_in(tmp_path) == before, argv
    assert blocker.read_text() == "user file"


def test_unwritable_destinations(tmp_path: Path, tensor: Path) -> None:
    ro = Path("/sys")  # read-only for every user, root included
    if os.access(ro, os.W_OK) and os.geteuid() != 0:
        pytest.skip("/sys is writable here")
    cases = [
        ["quantize", "-f", "nxfp4", "-i", tensor, "-o", ro / "q.npz"],
        ["generate", "--unit", "decode", "-f", "nxfp4", "--out", ro / "gen"],
        ["area", "--unit", "decode", "-f", "nxfp4", "--flow", "generic", "--workdir", ro / "wd"],
        ["verify", "--unit", "decode", "-f", "nxfp4", "--sim", "icarus", "--build-dir", ro / "b"],
        ["report", "--out", ro / "rep", "--cache", tmp_path / "c"],
    ]
    for argv in cases:
        refused(cli(*argv), "cannot write in /sys")
    assert files_in(tmp_path) == ["x.npy"]


def _limit_file_size(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_leaves_nothing(tmp_path: Path) -> None:
    """A write that runs out of room (RLIMIT_FSIZE: EFBIG, like ENOSPC) after the work is done: one line,
    no partial output, no temporary file, an existing output untouched."""
    np.save(tmp_path / "x.npy", np.random.default_rng(4).standard_normal((64, 1024)).astype(np.float32))
    (tmp_path / "q.npz").write_bytes(b"previous result")
    proc = cli("quantize", "-f", "nxfp4", "-i", tmp_path / "x.npy", "-o", tmp_path / "q.npz", "--force",
               preexec_fn=_limit_file_size(100_000))
    refused(proc, "q.npz", "too large")
    assert files_in(tmp_path) == ["q.npz", "x.npy"]
    assert (tmp_path / "q.npz").read_bytes() == b"previous result"
    proc = cli("generate", "--unit", "dot", "-f", "nxfp4", "--lanes", "8", "--out", tmp_path / "gen",
               preexec_fn=_limit_file_size(20_000))
    refused(proc, "too large")
    assert files_in(tmp_path) == ["q.npz", "x.npy"]


# --- signals ------------------------------------------------------------------------------------------

def _spawn(*args: object, cwd: Path | None = None) -> subprocess.Popen:
    env = {**os.environ}
    env.setdefault("PYTHONPATH", str(REPO))
    return subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=cwd, stdin=subprocess.DEVNULL)


def _descendants(pid: int) -> list[int]:
    from nxfp_hw.interrupts import _descendants

    return _descendants(pid)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_quantize_leaves_no_temporary_file(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(6).standard_normal(1 << 23).astype(np.float32))
    proc = _spawn("quantize", "-f", "nxfp4", "-i", tmp_path / "x.npy", "-o", tmp_path / "q.npz")
    time.sleep(2.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("quantize finished before the signal")
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "terminated" in err.splitlines()[-1]
    assert files_in(tmp_path) == ["x.npy"]


def test_sigterm_generate_keeps_previous_output_whole(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    assert cli("generate", "--unit", "decode", "-f", "mxfp4_e2m1", "--out", out).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = _spawn("generate", "--unit", "encode", "-f", "mxint8", "--lanes", "8", "--out", out, "--force")
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("generate finished before the signal")
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert files_in(tmp_path) == sorted(["gen", *(f"gen/{n}" for n in before)])  # no temporary directory
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_sigterm_area_stops_yosys(tmp_path: Path) -> None:
    if shutil.which("yosys") is None:
        pytest.skip("yosys not installed")
    proc = _spawn("area", "--unit", "dot", "-f", "nxfp4", "--lanes", "8", "--flow", "asic", "--workdir",
                  tmp_path / "wd")
    children: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        children = _descendants(proc.pid)
        if children:
            time.sleep(0.5)  # let yosys start its own children (abc)
            children = _descendants(proc.pid)
            break
        time.sleep(0.1)
    if not children:
        proc.kill()
        pytest.skip("no tool process seen")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err, err
    time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)]


def test_broken_pipe_is_one_line(tmp_path: Path) -> None:
    proc = _spawn("verify", "--unit", "decode", "-f", "mxfp4_e2m1", "--sim", "icarus", "--build-dir", tmp_path / "b",
                  "--seed", "1")
    first = proc.stdout.readline()
    assert first.startswith("verify ")
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read()
    proc.wait(timeout=300)
    assert proc.returncode == 2 and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("  ... ")]  # no heartbeat
    assert lines == ["nxfp-hw verify: error: standard output was closed (broken pipe); stopped"]


# --- concurrency and tool environments ------------------------------------------------------------------

def _area(workdir: Path, unit: str, fmt: str, out: Path) -> subprocess.Popen:
    return _spawn("area", "--unit", unit, "-f", fmt, "--lanes", "1", "--flow", "generic", "--workdir", workdir,
                  "--json", out)


def test_concurrent_area_runs_on_one_workdir(tmp_path: Path) -> None:
    if shutil.which("yosys") is None:
        pytest.skip("yosys not installed")
    designs = [("decode", "mxfp4_e2m1"), ("decode", "nxfp4"), ("decode", "nxfp4")]  # two alike: the same files
    solo = {}
    for i, (unit, fmt) in enumerate(designs[:2]):
        p = _area(tmp_path / f"solo{i}", unit, fmt, tmp_path / f"solo{i}.json")
        assert p.wait(timeout=300) == 0, p.stderr.read()
        solo[fmt] = json.loads((tmp_path / f"solo{i}.json").read_text())["flows"]["generic"]["figures"]
    assert solo["mxfp4_e2m1"] != solo["nxfp4"]
    for rnd in range(2):
        procs = [_area(tmp_path / "shared", u, f, tmp_path / f"r{rnd}_{i}.json") for i, (u, f) in enumerate(designs)]
        for p in procs:
            assert p.wait(timeout=300) == 0, p.stderr.read()
        for i, (_, fmt) in enumerate(designs):
            got = json.loads((tmp_path / f"r{rnd}_{i}.json").read_text())["flows"]["generic"]["figures"]
            assert got == solo[fmt], (rnd, fmt)


def test_missing_tool_is_exit_3(tmp_path: Path) -> None:
    proc = cli("area", "--unit", "decode", "-f", "mxfp4_e2m1", "--flow", "generic", "--workdir", tmp_path / "wd",
               env={"PATH": str(tmp_path / "empty")})
    refused(proc, "yosys", "apt-get install yosys", status=3)


def test_verify_keeps_no_run_directory_of_a_passing_run(tmp_path: Path) -> None:
    proc = cli("verify", "--unit", "decode", "-f", "mxfp4_e2m1", "--sim", "icarus", "--build-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not [p for p in tmp_path.rglob("runs") if any(p.iterdir())]
    proc = cli("verify", "--unit", "decode", "-f", "mxfp4_e2m1", "--sim", "icarus", "--build-dir", tmp_path,
               "--keep-run")
    assert proc.returncode == 0, proc.stderr
    assert [p for p in tmp_path.rglob("runs/*") if p.is_dir()]


def test_verilator_build_self_sufficient_and_never_poisoned(tmp_path: Path) -> None:
    """A build that fails (a broken compiler on PATH) exits 3 with one line and leaves nothing make could
    take as up to date; the next build in the same directory, on a PATH without any `python`, succeeds."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    for compiler in ("g++", "c++"):  # the wheel's makefile calls c++
        (fake / compiler).write_text("#!/bin/sh\necho 'c++: internal compiler error (injected)' >&2\nexit 1\n")
        (fake / compiler).chmod(0o755)
    system_path = os.pathsep.join(p for p in ("/usr/local/bin", "/usr/bin", "/bin") if Path(p).is_dir())
    no_python = [p for p in system_path.split(os.pathsep) if (Path(p) / "python").exists()]
    if no_python:
        pytest.skip(f"a `python` is on the system PATH ({no_python[0]})")
    build = tmp_path / "build"
    args = ("verify", "--unit", "decode", "-f", "mxfp4_e2m1", "--sim", "verilator", "--lanes", "32",
            "--build-dir", build, "--seed", "3")
    refused(cli(*args, env={"PATH": f"{fake}{os.pathsep}{system_path}"}), "verilator build", status=3)
    build_dirs = [p for p in (build / "sim").iterdir() if p.name.startswith("verilator-")]
    assert build_dirs and all(sorted(q.name for q in d.iterdir()) == ["build.log"] for d in build_dirs)
    proc = cli(*args, env={"PATH": system_path})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "PASS" in proc.stdout


def test_sigterm_verify_stops_the_simulator_and_leaves_no_run(tmp_path: Path) -> None:
    if shutil.which("vvp") is None:
        pytest.skip("icarus not installed")
    proc = _spawn("verify", "--unit", "dot", "-f", "mxfp4_e2m1", "--sim", "icarus", "--blocks", "3000", "--seed", "2",
                  "--build-dir", tmp_path)
    assert proc.stdout.readline().startswith("verify ")  # stimulus ready: the simulation starts now
    children: list[int] = []
    deadline = time.monotonic() + 60
    while not children and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        children = _descendants(proc.pid)
    if not children:
        proc.kill()
        pytest.skip("no simulator process seen")
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("verify finished before the signal")
    assert proc.returncode == 143 and "Traceback" not in err, err
    time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)]
    assert [p for p in tmp_path.rglob("runs/*")] == []
