"""``nxfp-hw sweep``: a design-space sweep on Dask, results streamed to a JSON-lines table, and the Pareto front
of any two or three measures (docs/sweep.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import UserError
from .options import csv_list, positive_float, positive_int, seed


def _csv_of(convert: Any) -> Any:
    """argparse type: a comma-separated list of ``convert(item)``."""
    def parse(text: str) -> list[Any]:
        return [convert(t) for t in csv_list(text)]
    return parse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="design-space sweep on Dask (formats x units x lanes x pipeline/target x acc): area, timing, "
                      "accuracy, regression, energy per point; JSON-lines results; Pareto front",
        description="Measure every point of a grid of unit configurations, each as one task on a Dask cluster (a "
                    "LocalCluster by default, or --scheduler), with a shared content-hash cache. Results stream "
                    "into OUT/results.jsonl as points finish; progress on stderr. The axes come from a sweep file "
                    "(.toml/.yaml) and/or the options below (an option replaces the file's axis). docs/sweep.md.")
    p.add_argument("file", nargs="?", type=Path, help="sweep file (.toml, .yaml or .yml)")
    axes = p.add_argument_group("axes (each a comma-separated list; the points are their product)")
    axes.add_argument("--units", type=csv_list, help="decode, dot, encode (default decode)")
    axes.add_argument("--formats", type=csv_list, help="presets (default: the report's seven formats)")
    axes.add_argument("--format", dest="extra_formats", action="append", default=[],
                      help="one more format (a preset or a format string, which may contain commas); repeatable")
    axes.add_argument("--lanes", type=_csv_of(positive_int), help="lanes (default 8, or k if smaller)")
    axes.add_argument("--pipeline", action="append",
                      help="one pipeline setting: a count, none, all, register position names, or default; "
                           "repeatable (a setting may contain commas)")
    axes.add_argument("--target-mhz", type=_csv_of(lambda t: positive_float(t, "a positive frequency in MHz")),
                      help="target clocks: each point's pipeline is chosen to meet it (instead of --pipeline)")
    axes.add_argument("--acc", type=csv_list, help="accumulation modes of the dot engine: fp32, fused, exact")
    axes.add_argument("--flows", type=csv_list, help="flows run at every point: generic, asic, ice40, xilinx, power "
                                                     "(default asic for area/timing; energy adds power)")
    axes.add_argument("--seeds", type=_csv_of(seed), help="seeds of the regression, one run each (default 1)")
    axes.add_argument("--measure", type=csv_list,
                      help="what to measure: area, timing, accuracy, regression, energy (default area,accuracy)")
    opts = p.add_argument_group("measurement options")
    opts.add_argument("--period", type=positive_float, help="ASIC target clock period in ns (default 10)")
    opts.add_argument("--freq", type=positive_float, help="iCE40 nextpnr target frequency in MHz (default 50)")
    opts.add_argument("--target-flow", choices=("asic", "ice40"), help="flow --target-mhz closes timing on (asic)")
    opts.add_argument("--tensor", help="accuracy tensor (.npy/.npz/.safetensors; default: MiniLM weights); the "
                                       "workers read it, so on a farm it must be on a shared path")
    opts.add_argument("--tensor-name", help="array/tensor name inside --tensor")
    opts.add_argument("--blocks", type=positive_int, help="random blocks of each regression (default: the unit's)")
    opts.add_argument("--sim", choices=("icarus", "verilator"), help="simulator of the regression (default icarus)")
    p.add_argument("--pareto", type=csv_list, metavar="M1,M2[,M3]",
                   help="mark, print and plot the non-dominated points on two or three measures (area, energy, "
                        "rel_mse, fmax_mhz, throughput, ...; docs/sweep.md)")
    where = p.add_argument_group("where it runs")
    where.add_argument("--out", type=Path, default=Path("nxfp-sweep"),
                       help="output directory: results.jsonl, sweep.json, pareto.* (default ./nxfp-sweep)")
    where.add_argument("--work", type=Path, help="work directories of the points (default OUT/points; on a farm a "
                                                 "path every worker can write)")
    where.add_argument("--cache", type=Path, help="shared result cache (default $XDG_CACHE_HOME/nxfp-hw; on a farm a "
                                                  "path every worker can write)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://host:8786")
    where.add_argument("--workers", type=positive_int,
                       help="worker processes of the LocalCluster (default: one per CPU)")
    where.add_argument("--connect-timeout", type=positive_float, default=10.0,
                       help="seconds to reach --scheduler and find a worker there (default 10)")
    again = where.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="keep the points already measured in OUT/results.jsonl and run the others (and the "
                            "failed ones again)")
    again.add_argument("--force", action="store_true", help="start over: replace OUT/results.jsonl")
    p.add_argument("--list", action="store_true", help="print the points and exit")
    p.set_defaults(func=run)


# command-line option -> sweep field
_FIELDS = {"units": "units", "formats": "formats", "lanes": "lanes", "pipeline": "pipeline",
           "target_mhz": "target_mhz", "acc": "acc", "flows": "flows", "seeds": "seeds", "measure": "measure",
           "period": "period", "freq": "freq", "target_flow": "target_flow", "tensor": "tensor",
           "tensor_name": "tensor_name", "blocks": "blocks", "sim": "sim", "pareto": "pareto"}


def spec_of(args: argparse.Namespace) -> Any:
    """The sweep of the file and the options (an option replaces the file's field); ``UserError`` naming the
    option or the file's field."""
    from ..flows.sweep import make_spec, read_sweep_file

    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if args.file is not None:
        values = read_sweep_file(args.file)
        origin = {"": args.file.name, **{k: f"{args.file.name}: {k}" for k in values}}
    if args.formats is not None or args.extra_formats:  # --format alone sweeps only those, as in report
        args.formats = [*(args.formats or []), *args.extra_formats]
    for dest, key in _FIELDS.items():
        v = getattr(args, dest)
        if v is not None:
            values[key] = v
            origin[key] = "--" + dest.replace("_", "-")
    return make_spec(values, origin)


def run(args: argparse.Namespace) -> int:
    from ..flows.area import default_cache_dir
    from ..flows.engine import Engine
    from ..flows.sweep import RESULTS_NAME, check_points, check_workers, points_of, run_sweep
    from ..paths import check_output_dir

    if args.scheduler is not None and args.workers is not None:
        raise UserError("workers: the workers of --scheduler are its own; give --scheduler or --workers, not both")
    spec = spec_of(args)
    points = points_of(spec)
    check_points(points)
    if args.list:
        for p in points:
            print(f"{p.id}  {p.label()}")
        print(f"{len(points)} point{'' if len(points) == 1 else 's'}; each measures {', '.join(spec.measure)}"
              + (f" with the {', '.join(spec.flows)} flow(s)" if spec.flows else ""))
        return 0
    out = args.out
    cache = args.cache or default_cache_dir()
    work = args.work or out / "points"
    check_output_dir(out, "--out")
    results = out / RESULTS_NAME
    if results.exists() and not (args.resume or args.force):
        raise UserError(f"out: {results} exists; pass --resume to finish that sweep (its measured points are kept) "
                        "or --force to start over")
    if args.resume:
        from ..flows.sweep import read_results

        if not results.is_file():
            raise UserError(f"resume: {results} does not exist; nothing to resume")
        other = {r["id"] for r in read_results(results)} - {p.id for p in points}
        if other:
            raise UserError(f"resume: {results} holds {len(other)} point(s) that are not in this sweep (another "
                            "sweep, or changed measurements or options); give another --out, or --force to start "
                            "over")
    check_output_dir(cache, "--cache")
    check_output_dir(work, "--work")
    if spec.tensor is not None and not Path(spec.tensor).is_file():
        raise UserError(f"{'--tensor' if args.tensor else 'tensor'}: {spec.tensor} does not exist")
    with Engine(scheduler=args.scheduler, workers=args.workers, connect_timeout=args.connect_timeout) as engine:
        check_workers(engine, spec, [(str(Path(cache).absolute()), "cache"), (str(Path(work).absolute()), "work")])
        result = run_sweep(spec, points, out=out, work=work, cache=cache, engine=engine, resume=args.resume)
    if spec.pareto:
        _print_front(result.front, spec.pareto)
    for path in result.files:
        print(f"wrote {path}")
    print(f"{len(points)} point{'' if len(points) == 1 else 's'}: {len(points) - len(result.failed)} ok, "
          f"{len(result.failed)} failed; "
          f"{result.ran} run, {result.resumed} kept from the earlier run; {result.wall_seconds:.1f} s")
    for rec in result.failed:
        print(f"  FAILED {rec['label']}: {str(rec.get('error')).splitlines()[0]}"
              + (f" (log: {rec['log']})" if rec.get("log") else ""))
    return 1 if result.failed else 0


def _print_front(front: list[dict[str, Any]], measures: tuple[str, ...]) -> None:
    if not front:
        print("Pareto front: no point has every measure")
        return
    print(f"Pareto front ({', '.join(measures)}): {len(front)} non-dominated point(s)")
    width = max(len(t["label"]) for t in front)
    print("  " + "configuration".ljust(width) + "".join(f"  {m:>14}" for m in measures))
    for t in front:
        print("  " + t["label"].ljust(width) + "".join(f"  {t[m]:>14.5g}" for m in measures))
