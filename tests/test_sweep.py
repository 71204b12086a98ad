"""``nxfp-hw sweep`` on Dask (nxfp_hw.flows.sweep / engine / pareto / cache): a 2-worker LocalCluster reached by
its scheduler address, a killed worker, a failing point, the shared cache under concurrent sweeps, the Pareto
marking against brute force, and bad input refused with exit status 2 before any point runs.

The points are small decode units (2 and 4 lanes) on the generic (Yosys-only) flow with the accuracy on a small
tensor: a few seconds each."""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import signal
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from nxfp_hw.cli import main
from nxfp_hw.flows.pareto import non_dominated

needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed")
FORMATS = "mxfp4_e2m1,nxfp4"


def seed() -> int:
    s = int(os.environ.get("NXFP_SEED", "20250101"))
    print(f"NXFP_SEED={s}")
    return s


@pytest.fixture(scope="module")
def tensor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tensor") / "x.npy"
    np.save(path, np.random.default_rng(7).standard_normal(2048).astype(np.float32))
    return path


def _local_cluster(n: int = 2):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=logging.ERROR)
    return cluster, Client(cluster, set_as_default=False)


@pytest.fixture(scope="module")
def cluster():
    """A 2-worker LocalCluster; tests reach it by its scheduler address, as a remote cluster."""
    cl, client = _local_cluster()
    try:
        yield client
    finally:
        client.close()
        cl.close()


def sweep_args(tmp_path: Path, tensor: Path, *extra: str, formats: str = FORMATS) -> list[str]:
    return ["sweep", "--units", "decode", "--formats", formats, "--lanes", "2,4", "--flows", "generic",
            "--measure", "area,accuracy", "--tensor", str(tensor), "--out", str(tmp_path / "out"),
            "--cache", str(tmp_path / "cache"), *extra]


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


# --- Pareto ------------------------------------------------------------------------------------------

def brute_force(values: list[tuple[float, ...]], maximize: list[bool]) -> list[int]:
    def better_eq(a: tuple, b: tuple) -> bool:
        return all((x >= y) if mx else (x <= y) for x, y, mx in zip(a, b, maximize, strict=True))

    return [i for i, v in enumerate(values)
            if not any(better_eq(w, v) and w != v for j, w in enumerate(values) if j != i)]


@pytest.mark.parametrize("dims", [2, 3])
def test_non_dominated_matches_brute_force(dims: int) -> None:
    rng = np.random.default_rng(seed())
    for trial in range(200):
        n = int(rng.integers(0, 25))
        values = [tuple(float(v) for v in rng.integers(0, 6, dims)) for _ in range(n)]  # many ties
        maximize = [bool(b) for b in rng.integers(0, 2, dims)] if trial % 2 else [False] * dims
        assert non_dominated(values, maximize) == brute_force(values, maximize), (values, maximize)
    # a point equal to another is not dominated by it; each coordinate's direction counts
    assert non_dominated([(1, 1), (1, 1), (2, 0)]) == [0, 1, 2]
    assert non_dominated([(1, 4), (2, 5)], [True, True]) == [1] and non_dominated([(1, 4), (2, 5)]) == [0]


# --- bad input: exit 2 before any point runs ----------------------------------------------------------

@pytest.mark.parametrize(("content", "suffix", "needle"), [
    ("unit = ['decode']\n", ".toml", "sweep.toml: unknown field 'unit'"),
    ("units = ['mul']\n", ".toml", "sweep.toml: units: unknown unit 'mul'"),
    ("measure = ['area', 'power']\n", ".toml", "sweep.toml: measure: unknown measurement 'power'"),
    ("formats = ['nxfp9']\n", ".toml", "sweep.toml: formats:"),
    ("lanes = [0]\n", ".toml", "sweep.toml: lanes: expected an integer >= 1"),
    ("pipeline: [none]\ntarget_mhz: [100]\n", ".yaml", "sweep.yaml: target_mhz: a target clock chooses the pipeline"),
    ("acc = ['exact']\n", ".toml", "sweep.toml: acc: accumulation modes are the dot engine's"),
    ("seeds = [1]\n", ".toml", "sweep.toml: seeds: only meaningful with the regression measurement"),
    ("flows = ['vivado']\n", ".toml", "sweep.toml: flows: unknown flow 'vivado'"),
    ("measure = ['timing']\nflows = ['generic']\n", ".toml", "the timing measurement needs a flow with an Fmax"),
    ("pareto = ['area', 'energy']\n", ".toml", "sweep.toml: pareto: energy: this sweep measures none of energy_pj"),
    ("pareto = ['area', 'luts']\n", ".toml", "sweep.toml: pareto: unknown measure 'luts'"),
    ("lanes = [3]\nformats = ['nxfp4']\n", ".toml", "point decode nxfp4 l3: lanes: expected a divisor"),
    ("units: [decode]\nlanes: [8]\nbogus: 1\n", ".yaml", "sweep.yaml: unknown field 'bogus'"),
    ("units = [\n", ".toml", "not valid TOML"),
])
def test_bad_sweep_file(tmp_path: Path, capsys, content: str, suffix: str, needle: str) -> None:
    path = tmp_path / ("sweep" + suffix)
    path.write_text(content)
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert needle in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("argv", "needle"), [
    (["--units", "decode,mul"], "--units: unknown unit 'mul'"),
    (["--acc", "exact"], "--acc: accumulation modes are the dot engine's"),
    (["--pareto", "area"], "--pareto: expected two or three measures"),
    (["--pareto", "area,rel_mse,fmax_mhz,latency"], "--pareto: expected two or three measures"),
    (["--measure", "accuracy", "--pareto", "rel_mse,area"], "--pareto: area: this sweep measures none"),
    (["--measure", "accuracy", "--pareto", "rel_mse,transistors"], "--pareto: transistors needs the generic flow"),
    (["--cache", "/sys/nxfp-cache"], "--cache: cannot write in /sys"),
    (["--scheduler", "not an address"], "scheduler: 'not an address'"),
    (["--scheduler", "tcp://127.0.0.1:8786", "--workers", "2"], "give --scheduler or --workers, not both"),
])
def test_bad_options(tmp_path: Path, capsys, argv: list[str], needle: str) -> None:
    assert main(["sweep", "--formats", "nxfp4", "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"),
                 *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err, err


def test_unreachable_scheduler(tmp_path: Path, capsys) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = ["sweep", "--formats", "nxfp4", "--measure", "accuracy", "--out", str(tmp_path / "o"),
            "--cache", str(tmp_path / "c"), "--scheduler", f"tcp://127.0.0.1:{port}", "--connect-timeout", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"scheduler: cannot reach tcp://127.0.0.1:{port} within 1 s" in err, err
    assert not (tmp_path / "o" / "results.jsonl").exists()


def test_list_points(tmp_path: Path, capsys) -> None:
    assert main(["sweep", "--units", "decode,dot", "--formats", FORMATS, "--lanes", "4,8", "--acc", "fp32,exact",
                 "--list"]) == 0
    out = capsys.readouterr().out
    assert "12 points" in out  # decode: 2 formats x 2 lanes; dot: x 2 accumulation modes
    assert "dot nxfp4 l8 acc=exact" in out and "decode nxfp4 l8 acc" not in out


# --- on a cluster ------------------------------------------------------------------------------------

@needs_yosys
def test_sweep_on_scheduler_address_resume_and_pareto(tmp_path: Path, tensor: Path, cluster, capsys) -> None:
    argv = sweep_args(tmp_path, tensor, "--scheduler", cluster.scheduler.address, "--pareto", "transistors,rel_mse")
    assert main(argv) == 0
    cap = capsys.readouterr()
    out = tmp_path / "out"
    recs = records(out)
    assert len(recs) == 4 and len({r["id"] for r in recs}) == 4
    assert all(r["status"] == "ok" and r["cache"] == {"generic": "ran"} for r in recs)
    assert {(r["config"]["format"], r["config"]["lanes"]) for r in recs} == set(itertools.product(
        FORMATS.split(","), (2, 4)))
    workers = set(cluster.scheduler_info()["workers"])
    assert {r["worker"] for r in recs} <= workers
    for r in recs:
        assert (Path(r["log"]).parent.parent == out / "points") and Path(r["log"]).is_file()
        assert r["measures"]["transistors"] == r["flows"]["generic"]["figures"]["transistors"]
        assert r["measures"]["rel_mse"] > 0 and r["measures"]["lanes"] == r["config"]["lanes"]
    progress = [ln for ln in cap.err.splitlines() if " done, " in ln]
    assert len(progress) == 4 and progress[-1].startswith("[4/4 done, 0 running, 0 failed, ETA 0 s"), cap.err
    # the Pareto marking is the brute-force one, printed and plotted
    pareto = json.loads((out / "pareto.json").read_text())
    vals = [(p["transistors"], p["rel_mse"]) for p in pareto["points"]]
    front = {pareto["points"][i]["id"] for i in brute_force(vals, [False, False])}
    assert {p["id"] for p in pareto["points"] if p["front"]} == front
    assert "Pareto front (transistors, rel_mse)" in cap.out
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["ok"] == 4 and summary["ran"] == 4 and summary["pareto"]["front"] == len(front)

    # an existing results file is never replaced unasked; --resume runs only what is missing
    assert main(argv) == 2
    assert "pass --resume" in capsys.readouterr().err
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:40])  # a crash cut the 3rd line
    assert main([*argv, "--resume"]) == 0
    cap = capsys.readouterr()
    assert "resuming: 2 of 4 points" in cap.err and "2 run, 2 kept" in cap.out
    again = records(out)
    assert len(again) == 4 and {r["id"] for r in again} == {r["id"] for r in recs}
    assert sorted(r["cache"]["generic"] for r in again) == ["hit", "hit", "ran", "ran"]  # kept ones say "ran"
    assert main([*argv, "--force"]) == 0  # start over: every flow read from the shared cache
    assert all(r["cache"] == {"generic": "hit"} for r in records(out))
    other = [("2" if a == "2,4" else a) for a in argv]  # another sweep: never mixed into this file
    assert main([*other, "--resume"]) == 2
    assert "holds 2 point(s) that are not in this sweep" in capsys.readouterr().err
    assert len(records(out)) == 4


@needs_yosys
def test_failing_point_is_recorded_with_its_log_and_sweep_goes_on(tmp_path: Path, tensor: Path, cluster,
                                                                  capsys) -> None:
    def inject() -> None:  # on each worker: the nxfp4 unit fails to build
        import nxfp_hw.flows.report as rep

        real = getattr(rep, "_real_build_for_area", rep.build_for_area)
        rep._real_build_for_area = real

        def flaky(unit, fmt, *args, **kwargs):
            if fmt.label == "nxfp4":
                raise RuntimeError("synthetic build failure")
            return real(unit, fmt, *args, **kwargs)

        rep.build_for_area = flaky

    def restore() -> None:
        import nxfp_hw.flows.report as rep

        rep.build_for_area = rep._real_build_for_area

    cluster.run(inject)
    try:
        assert main(sweep_args(tmp_path, tensor, "--scheduler", cluster.scheduler.address)) == 1
    finally:
        cluster.run(restore)
    cap = capsys.readouterr()
    recs = {(r["config"]["format"], r["config"]["lanes"]): r for r in records(tmp_path / "out")}
    assert len(recs) == 4
    for lanes in (2, 4):
        bad, good = recs[("nxfp4", lanes)], recs[("mxfp4_e2m1", lanes)]
        assert bad["status"] == "failed" and "synthetic build failure" in bad["error"]
        assert bad["measures"]["rel_mse"] > 0  # measured before the build failed
        log = Path(bad["log"]).read_text()
        assert "Traceback" in log and "synthetic build failure" in log
        assert any("FAILED" in ln for ln in bad["log_tail"])
        assert good["status"] == "ok" and good["measures"]["transistors"] > 0
    assert "2 failed" in cap.out and "FAILED decode nxfp4 l2" in cap.out
    assert len([ln for ln in cap.err.splitlines() if ": FAILED" in ln]) == 2


@needs_yosys
def test_missing_tool_on_a_worker_is_refused_naming_it(tmp_path: Path, tensor: Path, cluster, capsys) -> None:
    path = os.environ["PATH"]
    cluster.run(lambda: os.environ.__setitem__("PATH", "/nonexistent"))
    try:
        assert main(sweep_args(tmp_path, tensor, "--scheduler", cluster.scheduler.address)) == 2
    finally:
        cluster.run(lambda p=path: os.environ.__setitem__("PATH", p))
    err = capsys.readouterr().err
    worker = sorted(cluster.scheduler_info()["workers"])[0]
    assert f"worker {worker}: the generic flow needs yosys: not found on PATH" in err, err
    assert not (tmp_path / "out" / "results.jsonl").exists()


@needs_yosys
def test_concurrent_sweeps_share_the_cache_without_double_runs(tmp_path: Path, tensor: Path, cluster) -> None:
    """Two sweeps of the same points on one cache at once: each flow result is computed once, by one of them."""
    from nxfp_hw.flows.engine import Engine
    from nxfp_hw.flows.sweep import make_spec, points_of, run_sweep

    spec = make_spec({"units": ["decode"], "formats": FORMATS.split(","), "lanes": [2, 4], "flows": ["generic"],
                      "measure": ["area", "accuracy"], "tensor": str(tensor)})
    points = points_of(spec)
    results: dict[str, object] = {}

    def one(name: str) -> None:
        with Engine(scheduler=cluster.scheduler.address) as engine:
            results[name] = run_sweep(spec, points, out=tmp_path / name, work=tmp_path / name / "points",
                                      cache=tmp_path / "cache", engine=engine, echo=lambda _: None)

    threads = [threading.Thread(target=one, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    statuses = [r["cache"]["generic"] for n in ("a", "b") for r in results[n].records]
    assert len(statuses) == 8 and all(r["status"] == "ok" for n in ("a", "b") for r in results[n].records)
    assert statuses.count("ran") == 4 and statuses.count("hit") == 4, statuses
    for p in points:  # both read the same figures
        a, b = ({r["id"]: r for r in results[n].records}[p.id]["measures"] for n in ("a", "b"))
        assert a == b
    area = tmp_path / "cache" / "area"  # four entries, their locks, no temporary file left
    assert len(list(area.glob("*.json"))) == 4
    assert all(p.name.endswith(".json.lock") for p in area.glob(".*"))


@needs_yosys
def test_killed_worker_loses_nothing_and_duplicates_nothing(tmp_path: Path, tensor: Path) -> None:
    """SIGKILL a busy worker when the first point finishes: its point is retried elsewhere (attempt 2) and
    every point is in the results exactly once."""
    from nxfp_hw.flows.engine import Engine
    from nxfp_hw.flows.sweep import make_spec, points_of, run_sweep

    spec = make_spec({"units": ["decode"], "formats": ["mxfp4_e2m1", "nxfp4", "mxfp6_e2m3"], "lanes": [2, 4],
                      "flows": ["generic"], "measure": ["area"]})
    points = points_of(spec)
    cl, client = _local_cluster()
    killed: list[int] = []

    def echo(line: str) -> None:
        if " done, " not in line or killed:
            return
        just_done = line.split(" on ", 1)[1].split()[0] if " on " in line else None
        busy = [w for w, ks in client.processing().items() if ks]
        busy = [w for w in busy if w != just_done] or busy  # the other one is mid-point
        pids = client.run(os.getpid, workers=busy[:1])
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    try:
        with Engine(scheduler=cl.scheduler_address) as engine:
            res = run_sweep(spec, points, out=tmp_path / "out", work=tmp_path / "points", cache=tmp_path / "cache",
                            engine=engine, echo=echo)
    finally:
        client.close()
        cl.close()
    assert killed
    recs = records(tmp_path / "out")
    assert sorted(r["id"] for r in recs) == sorted(p.id for p in points)  # none lost, none twice
    assert all(r["status"] == "ok" for r in recs) and not res.failed
    assert max(r["attempt"] for r in recs) == 2, [r["attempt"] for r in recs]


@needs_yosys
def test_report_runs_on_the_same_engine_at_a_scheduler_address(tmp_path: Path, tensor: Path, cluster,
                                                               capsys) -> None:
    argv = ["report", "--formats", "mxfp4_e2m1", "--units", "decode", "--flows", "generic", "--lanes", "2",
            "--tensor", str(tensor), "--out", str(tmp_path / "r"), "--cache", str(tmp_path / "c")]
    assert main([*argv, "--scheduler", cluster.scheduler.address]) == 0
    assert "[1/1] decode mxfp4_e2m1 generic ... " in capsys.readouterr().out
    (rec,) = json.loads((tmp_path / "r" / "report.json").read_text())["results"]
    assert rec["lanes"] == 2 and rec["flows"]["generic"]["figures"]["transistors"] > 0
    assert main([*argv, "--force", "--jobs", "2", "--scheduler", cluster.scheduler.address]) == 2
    assert "give --jobs or --scheduler, not both" in capsys.readouterr().err


@needs_yosys
def test_sigterm_stops_the_local_cluster_and_keeps_what_finished(tmp_path: Path) -> None:
    """SIGTERM mid-sweep: exit 143 with one line, no traceback, no worker or tool left running, the results file
    holds whole lines only (the finished points), and --resume then completes the sweep."""
    import subprocess
    import sys
    import time
    import uuid

    mark = uuid.uuid4().hex
    env = {**os.environ, "NXFP_TEST_MARK": mark}
    argv = [sys.executable, "-m", "nxfp_hw.cli", "sweep", "--units", "decode", "--formats", FORMATS,
            "--lanes", "2,4", "--flows", "generic", "--measure", "area", "--out", str(tmp_path / "out"),
            "--cache", str(tmp_path / "cache"), "--workers", "2"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (tmp_path / "out" / "points").is_dir():
        time.sleep(0.2)
    time.sleep(0.5)  # the workers are building the first units
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, (out, err)
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "nxfp-hw sweep: error: terminated", err
    time.sleep(0.5)
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if f"NXFP_TEST_MARK={mark}".encode() in Path(f"/proc/{pid}/environ").read_bytes():
                left.append(pid)
        except OSError:
            pass
    assert not left, left
    done = records(tmp_path / "out")  # every line whole
    assert len(done) < 4
    assert subprocess.run([*argv, "--resume"], env=env, capture_output=True, timeout=300).returncode == 0
    assert sorted(r["config"]["lanes"] for r in records(tmp_path / "out")) == [2, 2, 4, 4]
