"""``nxfp-hw report``: accuracy versus hardware cost of the decode, dot and encode units across formats
(docs/area.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError
from ..flows.area import default_cache_dir
from ..flows.report import DEFAULT_ENCODE_FORMATS, DEFAULT_FLOWS, DEFAULT_FORMATS, DEFAULT_UNITS
from ..paths import check_output_dir
from .generate import add_pipeline_arguments
from .options import csv_list, positive_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="sweep formats x units x flows: area, Fmax, throughput and accuracy (md, json, png)",
        description="Measure the decode and dot units (and the encode unit, with --units) of every format with "
                    "the area flows, the accuracy of every format on a tensor (default: all-MiniLM-L6-v2 "
                    "weights), and write report.md, report.json, area.png and pareto.png. Results are "
                    "cached by configuration hash: a rerun is fast.")
    p.add_argument("--formats", type=csv_list, default=None,
                   help=f"comma-separated presets (default {','.join(DEFAULT_FORMATS)})")
    p.add_argument("--format", dest="extra_formats", action="append", default=[],
                   help="one more format (a preset or a format string, which may contain commas); repeatable; "
                        "without --formats only these are swept")
    p.add_argument("--units", type=csv_list, default=list(DEFAULT_UNITS),
                   help="comma-separated units: decode, dot, encode (default decode,dot)")
    p.add_argument("--encode-formats", type=csv_list, default=None,
                   help="comma-separated presets of the encode unit (default: the same as the other units; "
                        f"scripts/make_report.sh uses {','.join(DEFAULT_ENCODE_FORMATS)})")
    p.add_argument("--flows", type=csv_list, default=list(DEFAULT_FLOWS),
                   help=f"comma-separated flows (default {','.join(DEFAULT_FLOWS)})")
    p.add_argument("--encode-flows", type=csv_list, default=None,
                   help="comma-separated flows of the encode unit, a subset of --flows (default: all of them; "
                        "scripts/make_report.sh leaves out ice40, which no 8-lane encoder fits)")
    p.add_argument("--tensor", type=Path, help="accuracy tensor (.npy/.npz/.safetensors; default: MiniLM weights)")
    p.add_argument("--tensor-name", help="array/tensor name inside --tensor")
    p.add_argument("--lanes", type=positive_int, help="lanes of every unit (default 8, or k if smaller)")
    add_pipeline_arguments(p, what="every unit")
    p.add_argument("--period", type=positive_float, help="ASIC target clock period in ns (default 10)")
    p.add_argument("--freq", type=positive_float, help="iCE40 nextpnr target frequency in MHz (default 50)")
    p.add_argument("--out", type=Path, default=Path("nxfp-report"), help="output directory (default ./nxfp-report)")
    p.add_argument("--cache", type=Path, default=None, help="cache directory (default $XDG_CACHE_HOME/nxfp-hw)")
    p.add_argument("--jobs", "-j", type=positive_int, default=None,
                   help="configurations measured in parallel on a Dask LocalCluster of this many worker processes "
                        "(default 1: in this process; docs/sweep.md)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="measure the configurations on the workers of this Dask scheduler (tcp://host:8786; "
                        "docs/sweep.md); --cache must then be a directory every worker can write")
    p.add_argument("--force", action="store_true", help="replace an existing report in --out")
    p.add_argument("--model-accuracy", action="store_true",
                   help="add all-MiniLM-L6-v2 sentence-embedding accuracy under hardware-exact numerics per format "
                        "(nxfp-hw model-eval; about a minute per uncached point; docs/model_accuracy.md)")
    p.add_argument("--model-sentences", type=positive_int, default=None,
                   help="with --model-accuracy: use the first N built-in sentences (default all 200)")
    p.set_defaults(func=run)


def _check_units(args: argparse.Namespace, formats: list[str]) -> None:
    """Construct every (unit, format) once, so that bad lanes, pipeline or accumulation options are refused
    before any accuracy or flow runs (instead of a report of FAILED rows)."""
    from ..flows.generate import build_unit
    from ..flows.report import DEFAULT_REPORT_LANES, UNITS
    from ..formats import parse_format

    for u in args.units:
        if u not in UNITS:
            raise UserError(f"units: unknown unit {u!r}; expected one of {', '.join(UNITS)}")
    fmts = {u: [parse_format(f) for f in (args.encode_formats if u == "encode" and args.encode_formats else formats)]
            for u in args.units}
    for unit, unit_fmts in fmts.items():
        for fmt in unit_fmts:
            lanes = min(DEFAULT_REPORT_LANES, fmt.k) if args.lanes is None else args.lanes
            opts = {"acc": args.acc, "guard_bits": args.guard_bits} if unit == "dot" else {}
            comp = build_unit(unit, fmt, None, lanes=lanes, pipeline=args.pipeline, **opts)
            comp._MustUse__silence = True  # constructed to check the options only


def run(args: argparse.Namespace) -> int:
    from ..flows.report import run_report
    from ..tensors import load_tensor

    tensor = label = None
    if args.tensor is not None:
        tensor = load_tensor(args.tensor, args.tensor_name, what="--tensor")
        label = args.tensor.name + (f":{args.tensor_name}" if args.tensor_name else "")
    elif args.tensor_name:
        raise UserError("tensor-name: only meaningful with --tensor")
    if args.jobs is not None and args.scheduler is not None:
        raise UserError("jobs: the workers of --scheduler are its own; give --jobs or --scheduler, not both")
    if args.scheduler is not None:
        from ..flows.engine import check_scheduler_address

        check_scheduler_address(args.scheduler)
    args.jobs = args.jobs or 1
    formats = (args.formats or ([] if args.extra_formats else list(DEFAULT_FORMATS))) + args.extra_formats
    _check_units(args, formats)
    if args.model_accuracy:
        from ..model.minilm import check_model_dir, default_model_dir

        check_model_dir(default_model_dir(), "--model-accuracy")
    elif args.model_sentences is not None:
        raise UserError("model-sentences: only meaningful with --model-accuracy")
    check_output_dir(args.out, "--out")
    check_output_dir(args.cache or default_cache_dir(), "--cache")
    result = run_report(formats=formats, units=args.units, flows=args.flows, tensor=tensor, tensor_label=label,
                        out_dir=args.out, cache_dir=args.cache or default_cache_dir(), jobs=args.jobs, force=args.force,
                        scheduler=args.scheduler,
                        lanes=args.lanes, pipeline=args.pipeline, encode_formats=args.encode_formats,
                        encode_flows=args.encode_flows, acc=args.acc, guard_bits=args.guard_bits,
                        period_ns=args.period, freq_mhz=args.freq)
    if args.model_accuracy:
        result.files.extend(_model_accuracy(args, result))
    for path in result.files:
        print(f"wrote {path}")
    if result.failures:
        print(f"{len(result.failures)} configuration(s) failed (listed in report.md):")
        for line in result.failures:
            print(f"  {line}")
        return 1
    return 0


def _model_accuracy(args: argparse.Namespace, result) -> list[Path]:
    """Append the model-accuracy section (nxfp_hw.model.report.model_section) to report.md and report.json."""
    import json

    from ..flows.accuracy import write_text_atomic
    from ..flows.report import _json_default
    from ..model.report import model_section

    section, md, files = model_section(result.data, args.out, args.cache or default_cache_dir(), acc=args.acc,
                                       sentences=args.model_sentences)
    if section is not None:
        result.data["model_accuracy"] = section
        report_md = args.out / "report.md"
        write_text_atomic(report_md, report_md.read_text() + md)
        write_text_atomic(args.out / "report.json", json.dumps(result.data, indent=1, default=_json_default) + "\n")
    return files
