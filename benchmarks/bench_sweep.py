#!/usr/bin/env python3
"""Scale of the sweep engine: one 24-point sweep on 1 and 2 local workers and on a 2-worker cluster of separate
processes, against the same points measured in a plain loop.

The points: decode units of six formats x lanes {1, 2, 4, 8} on the generic (Yosys-only) flow, each from a
cold cache (a new cache directory per run), so every point builds its unit and runs Yosys (1-3 s each). Runs:

- ``loop``: ``measure_point`` called in this process, one point after the other: no engine at all;
- ``local-1``, ``local-2``: ``nxfp-hw sweep``'s engine on a Dask LocalCluster of 1 and 2 worker processes;
- ``cluster-2``: a ``dask scheduler`` and two ``dask worker`` processes started with the Dask command line, as
  a remote cluster would be, reached by the scheduler's address.

Each run is repeated ``--repeat`` times (default 2), the four runs interleaved, and its fastest round kept
(other jobs on a shared machine slow some rounds; every round's wall time is recorded). Recorded per run:
the start-up (cluster start or connection plus the worker checks), the sweep's wall time,
the time spent inside the points (their own ``seconds``), the speed-up over ``local-1``, and the engine's
overhead per point: ``(wall x workers - time inside the points) / points`` (scheduling, transfer, the results
file and progress lines, and idle workers at the end; the loop's figure is its own bookkeeping).

    .venv/bin/python benchmarks/bench_sweep.py [--quick]

Results: benchmarks/results/sweep.json (written atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nxfp_hw.flows.accuracy import write_text_atomic  # noqa: E402
from nxfp_hw.flows.engine import Engine  # noqa: E402
from nxfp_hw.flows.sweep import (  # noqa: E402
    SweepContext,
    check_workers,
    make_spec,
    measure_point,
    points_of,
    run_sweep,
)

RESULTS = ROOT / "benchmarks" / "results" / "sweep.json"
FORMATS = ["mxfp4_e2m1", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp8_e4m3", "nxfp4", "nxfp6"]
LANES = [1, 2, 4, 8]
DASK = Path(sys.executable).with_name("dask")


def sweep_spec(quick: bool):
    return make_spec({"units": ["decode"], "formats": FORMATS[:2] if quick else FORMATS, "lanes": LANES,
                      "flows": ["generic"], "measure": ["area"]})


def figures(name: str, workers: int, startup: float, wall: float, recs: list[dict]) -> dict:
    inside, n = sum(r.get("seconds", 0.0) for r in recs), len(recs)
    cpu = sum(r.get("cpu_seconds", 0.0) for r in recs)
    return {"run": name, "workers": workers, "points": n, "failed": sum(r["status"] != "ok" for r in recs),
            "startup_s": round(startup, 2), "wall_s": round(wall, 2), "inside_points_s": round(inside, 2),
            "cpu_s": round(cpu, 2), "cores_busy": round(cpu / wall, 2),
            "overhead_per_point_s": round((wall * workers - inside) / n, 3)}


def noop(*, echo) -> int:
    return 0


def engine_round_trip(tasks: int = 96) -> float:
    """Seconds per task of the engine itself: no-op tasks through a 2-worker LocalCluster."""
    with Engine(workers=2) as engine:
        engine.map(noop, [(f"warm{i}", (), {}) for i in range(4)], lambda _: None)
        t0 = time.monotonic()
        engine.map(noop, [(f"noop{i}", (), {}) for i in range(tasks)], lambda _: None)
        return (time.monotonic() - t0) / tasks


def run_loop(spec, points, tmp: Path) -> dict:
    ctx = SweepContext.of(spec, cache=tmp / "cache-loop", work=tmp / "work-loop")
    t0 = time.monotonic()
    recs = [measure_point(p, ctx, echo=lambda _: None) for p in points]
    return figures("loop", 1, 0.0, time.monotonic() - t0, recs)


def run_engine(name: str, spec, points, tmp: Path, *, workers: int | None = None, scheduler: str | None = None) -> dict:
    cache, work = tmp / f"cache-{name}", tmp / f"work-{name}"
    t0 = time.monotonic()
    with Engine(workers=workers, scheduler=scheduler) as engine:
        if scheduler is not None:
            engine.client.wait_for_workers(2, timeout=60)
        check_workers(engine, spec, [(str(cache), "cache"), (str(work), "work")])
        n = len(engine.workers())
        startup = time.monotonic() - t0
        res = run_sweep(spec, points, out=tmp / f"out-{name}", work=work, cache=cache, engine=engine,
                        echo=lambda _: None)
    return figures(name, n, startup, res.wall_seconds, res.records)


def start_cluster(tmp: Path) -> tuple[str, list[subprocess.Popen]]:
    """``dask scheduler`` and two ``dask worker`` processes (1 thread each); the scheduler's address."""
    sched_file = tmp / "scheduler.json"
    logs = [open(tmp / f"{n}.log", "w") for n in ("scheduler", "worker0", "worker1")]  # noqa: SIM115
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(sched_file)], stdout=logs[0], stderr=subprocess.STDOUT)]
    deadline = time.monotonic() + 60
    while not sched_file.is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    address = json.loads(sched_file.read_text())["address"]
    for log in logs[1:]:
        procs.append(subprocess.Popen([str(DASK), "worker", address, "--nthreads", "1", "--nworkers", "1",
                                       "--no-dashboard", "--memory-limit", "0"], stdout=log,
                                      stderr=subprocess.STDOUT))
    return address, procs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 points instead of 24 (a check of the script)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="rounds of the four runs, interleaved; each run's best round is kept (default 2): "
                             "other jobs on a shared machine slow some rounds")
    args = parser.parse_args(argv)
    load_before = [round(x, 2) for x in os.getloadavg()]
    spec = sweep_spec(args.quick)
    points = points_of(spec)
    rounds: dict[str, list[dict]] = {}
    for _ in range(max(1, args.repeat)):
        with tempfile.TemporaryDirectory(prefix="nxfp-bench-sweep-") as tmp_name:  # a cold cache each round
            tmp = Path(tmp_name)
            rounds.setdefault("loop", []).append(run_loop(spec, points, tmp))
            rounds.setdefault("local-1", []).append(run_engine("local-1", spec, points, tmp, workers=1))
            rounds.setdefault("local-2", []).append(run_engine("local-2", spec, points, tmp, workers=2))
            address, procs = start_cluster(tmp)
            try:
                rounds.setdefault("cluster-2", []).append(run_engine("cluster-2", spec, points, tmp,
                                                                     scheduler=address))
            finally:
                for p in reversed(procs):
                    p.terminate()
                for p in reversed(procs):
                    try:
                        p.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        p.kill()
    rows = []
    for runs in rounds.values():
        best = dict(min(runs, key=lambda r: r["wall_s"]))
        best["wall_s_rounds"] = [r["wall_s"] for r in runs]
        rows.append(best)
    round_trip = engine_round_trip()
    base = next(r["wall_s"] for r in rows if r["run"] == "local-1")
    for r in rows:
        r["speedup_vs_local_1"] = round(base / r["wall_s"], 2)
    print(f"{len(points)} points (decode x {len(spec.formats)} formats x lanes {LANES}, generic flow, cold cache)")
    print(f"{'run':<10} {'workers':>7} {'startup s':>9} {'wall s':>7} {'in points s':>11} {'CPU s':>6} "
          f"{'cores busy':>10} {'speed-up':>8} {'overhead/point s':>16}")
    for r in rows:
        print(f"{r['run']:<10} {r['workers']:>7} {r['startup_s']:>9.2f} {r['wall_s']:>7.1f} "
              f"{r['inside_points_s']:>11.1f} {r['cpu_s']:>6.1f} {r['cores_busy']:>10.2f} "
              f"{r['speedup_vs_local_1']:>7.2f}x {r['overhead_per_point_s']:>16.3f}")
    walls = ", ".join(f"{r['run']} {r['wall_s_rounds']}" for r in rows)
    print(f"engine round trip of a no-op task (2-worker LocalCluster): {round_trip * 1000:.1f} ms; best of "
          f"{args.repeat} rounds; wall s of every round: {walls}")
    record = {
        "benchmark": "sweep", "points": len(points), "formats": list(spec.formats), "lanes": LANES,
        "unit": "decode", "flow": "generic",
        "environment": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
                        "load_average_before": load_before,
                        "load_average_after": [round(x, 2) for x in os.getloadavg()],
                        "dask": version("dask"), "distributed": version("distributed")},
        "repeat": args.repeat, "runs": rows, "engine_round_trip_ms": round(round_trip * 1000, 2),
    }
    if not args.quick:
        write_text_atomic(RESULTS, json.dumps(record, indent=2) + "\n")
        print(f"recorded to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
