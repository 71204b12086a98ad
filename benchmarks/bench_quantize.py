"""Throughput and peak memory of the golden quantizer (spec 5) on a large Gaussian tensor.

Usage: .venv/bin/python benchmarks/bench_quantize.py [--elements N] [--seed S] [--output PATH]

For each format it times ``quantize`` (elements/s) and measures the peak of NumPy allocations
during the call (tracemalloc), then times a simple per-level NumPy baseline in the same run
(scale from a float log2 or a float ``ceil`` search, then the nearest level found by looping over
the levels and keeping the closest; ties are not resolved as the spec says, so "agree", the share
of equal values, is a sanity check slightly below 1). The baseline runs on at most
``--baseline-elements`` elements and is reported in elements/s as well. Results are printed as a
table and written to benchmarks/results/quantize.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nxfp_hw.formats import PRESETS, BlockFormat  # noqa: E402
from nxfp_hw.golden.quantize import dequantize, quantize  # noqa: E402

FORMATS = ("mxfp4_e2m1", "mxfp8_e4m3", "nxfp4")


def _nearest_level(y: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Nearest finite level of ``table`` to each ``y``, by a loop over the levels (ties: first level)."""
    levels = np.unique(table[np.isfinite(table)])
    best = np.full(y.shape, np.inf)
    out = np.zeros_like(y)
    for v in levels:
        d = np.abs(y - v)
        closer = d < best
        best = np.where(closer, d, best)
        out = np.where(closer, v, out)
    return out


def baseline_quantize(x: np.ndarray, fmt: BlockFormat) -> np.ndarray:
    """Per-level baseline, returns values. MX (``ocp``): X = 2^(floor(float log2 amax) - emax). Others
    (``ceil``): for every (candidate, recycling option) the smallest scale with scale * max_elem >= amax,
    nearest level per element, the pair with the least block squared error kept."""
    blocks = x.reshape(-1, fmt.k).astype(np.float64)
    amax = np.abs(blocks).max(axis=1, keepdims=True)
    if fmt.rule == "ocp":
        with np.errstate(divide="ignore"):
            e = np.floor(np.log2(np.where(amax > 0, amax, 1.0))) - fmt.emax_element(0, 0)
        scale = np.exp2(np.clip(e, -127, 127))
        return (_nearest_level(blocks / scale, fmt.element_table(0, 0)) * scale).reshape(x.shape)
    sv = fmt.scale.code_values()[: fmt.scale.max_code + 1]
    best_err = np.full(amax.shape, np.inf)
    best = np.zeros_like(blocks)
    for c in range(len(fmt.elements)):
        for r in range(max(1, fmt.recycle_options)):
            code = np.minimum(np.searchsorted(sv * fmt.max_element(c, r), amax), sv.size - 1)
            scale = sv[code]
            vals = _nearest_level(blocks / scale, fmt.element_table(c, r)) * scale
            err = np.sum((vals - blocks) ** 2, axis=1, keepdims=True)
            better = err < best_err
            best_err = np.where(better, err, best_err)
            best = np.where(better, vals, best)
    return best.reshape(x.shape)


def measure(fn, *args) -> tuple[float, float, float, object]:
    """(wall seconds, CPU seconds, peak traced MiB, result) of one call (CPU time is the robust
    figure on a shared machine)."""
    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn(*args)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return secs, cpu, peak / 2**20, result


def _cli_peak_rss(args: list[str]) -> tuple[int, float]:
    """(peak RSS in bytes, wall seconds) of one ``nxfp-hw`` run in a child process (``wait4`` rusage)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nxfp_hw.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"nxfp-hw {' '.join(args)} failed: {proc.stderr.read().decode()}")
    return usage.ru_maxrss * 1024, time.perf_counter() - t0


def cli_memory(n: int, seed: int, fmt: str = "nxfp4") -> dict:
    """Peak memory of ``nxfp-hw quantize`` (with its MX baseline) beyond the input and the outputs, per
    element: (peak RSS of a run on ``n`` float32 elements - peak RSS of a run on 32 elements - input bytes
    - output bytes) / n. The outputs are the uint16 codes and headers and the float32 values."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-quantize-") as tmp:
        d = Path(tmp)
        np.save(d / "small.npy", np.random.default_rng(seed).standard_normal(32, dtype=np.float32))
        base_rss, _ = _cli_peak_rss(["quantize", "-f", fmt, "-i", str(d / "small.npy"), "-o", str(d / "s.npz")])
        np.save(d / "x.npy", np.random.default_rng(seed).standard_normal(n, dtype=np.float32))
        rss, secs = _cli_peak_rss(["quantize", "-f", fmt, "-i", str(d / "x.npy"), "-o", str(d / "q.npz")])
        k = PRESETS[fmt].k
        inputs, outputs = 4 * n, 2 * n + 4 * n + 2 * (n // k)
        return {"format": fmt, "elements": n, "seconds": round(secs, 2), "peak_rss_MiB": round(rss / 2**20),
                "startup_rss_MiB": round(base_rss / 2**20), "input_MiB": round(inputs / 2**20),
                "output_MiB": round(outputs / 2**20),
                "bytes_per_element_beyond_io": round((rss - base_rss - inputs - outputs) / n, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elements", type=int, default=1 << 24, help="tensor size (default 16 M = 2^24)")
    ap.add_argument("--baseline-elements", type=int, default=1 << 21, help="elements for the baseline (default 2 M)")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("NXFP_SEED", "0")))
    ap.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "quantize.json")
    ap.add_argument("--cli-memory", type=int, metavar="N", default=None,
                    help="only measure the peak memory of `nxfp-hw quantize` on N float32 elements (with its MX "
                         "baseline) beyond input and outputs; written to results/quantize_cli_memory.json")
    args = ap.parse_args(argv)
    if args.cli_memory is not None:
        rows = [cli_memory(args.cli_memory - args.cli_memory % 32, args.seed)]
        for r in rows:
            print(f"nxfp-hw quantize -f {r['format']} on {r['elements']} float32 elements: {r['seconds']} s, peak RSS "
                  f"{r['peak_rss_MiB']} MiB (startup {r['startup_rss_MiB']} MiB, input {r['input_MiB']} MiB, "
                  f"outputs {r['output_MiB']} MiB): {r['bytes_per_element_beyond_io']} bytes/element beyond them")
        out = args.output.with_name("quantize_cli_memory.json")
        out.write_text(json.dumps({"benchmark": "quantize CLI memory", "numpy": np.__version__,
                                   "python": platform.python_version(), "results": rows}, indent=2) + "\n")
        print(f"wrote {out}")
        return 0
    n = args.elements - args.elements % 32
    print(f"bench_quantize: {n} Gaussian float32 elements, seed {args.seed}", flush=True)
    x = np.random.default_rng(args.seed).standard_normal(n, dtype=np.float32)
    nb = min(n, args.baseline_elements - args.baseline_elements % 32)
    rows = []
    for name in FORMATS:
        fmt = PRESETS[name]
        quantize(x[: fmt.k * 1024], fmt)  # warm the per-format tables
        secs, cpu, peak, q = measure(quantize, x, fmt)
        b_secs, b_cpu, b_peak, b_vals = measure(baseline_quantize, x[:nb], fmt)
        agree = float(np.mean(dequantize(quantize(x[:nb], fmt)) == b_vals.astype(np.float32)))
        rows.append({
            "format": name,
            "elements": n,
            "seconds": round(secs, 3),
            "elements_per_s": round(n / secs),
            "cpu_seconds": round(cpu, 3),
            "elements_per_cpu_s": round(n / cpu),
            "peak_traced_MiB": round(peak, 1),
            "peak_bytes_per_element": round(peak * 2**20 / n, 2),
            "baseline_elements": nb,
            "baseline_seconds": round(b_secs, 3),
            "baseline_elements_per_s": round(nb / b_secs),
            "baseline_cpu_seconds": round(b_cpu, 3),
            "baseline_elements_per_cpu_s": round(nb / b_cpu),
            "baseline_peak_traced_MiB": round(b_peak, 1),
            "speedup_vs_baseline_cpu": round((n / cpu) / (nb / b_cpu), 2),
            "baseline_value_agreement": round(agree, 6),
        })
        r = rows[-1]
        print(f"  {name}: {r['elements_per_s'] / 1e6:.2f} M el/s ({r['elements_per_cpu_s'] / 1e6:.2f} per CPU-s), "
              f"peak {r['peak_traced_MiB']} MiB", flush=True)
    maxrss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    head = ("format", "M el/s", "M el/cpu-s", "wall s", "peak MiB", "baseline M el/cpu-s", "speedup", "agree")
    table = [(r["format"], f"{r['elements_per_s'] / 1e6:.2f}", f"{r['elements_per_cpu_s'] / 1e6:.2f}",
              f"{r['seconds']:.2f}", f"{r['peak_traced_MiB']:.0f}", f"{r['baseline_elements_per_cpu_s'] / 1e6:.2f}",
              f"{r['speedup_vs_baseline_cpu']:.1f}x", f"{r['baseline_value_agreement']:.4f}") for r in rows]
    widths = [max(len(t[i]) for t in [head, *table]) for i in range(len(head))]
    print()
    print("  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)))
    for t in table:
        print("  ".join(c.rjust(w) for c, w in zip(t, widths, strict=True)))
    print(f"\nprocess max RSS {maxrss_mib:.0f} MiB (input tensor {x.nbytes / 2**20:.0f} MiB)")
    record = {
        "benchmark": "quantize",
        "elements": n,
        "seed": args.seed,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "max_rss_MiB": round(maxrss_mib),
        "results": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
