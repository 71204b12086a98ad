"""Throughput of the hardware-exact matmul (nxfp_hw.model.hw_matmul) against the golden dot model.

Usage: .venv/bin/python benchmarks/bench_model.py [--rows N] [--golden-outputs M] [--seed S] [--out PATH]

For each (activations, weights) pair and accumulation mode it times ``hw_matmul`` of a seeded Gaussian
``(rows, 384)`` activation matrix against a ``(1536, 384)`` weight matrix (the shape of MiniLM's first
feed-forward layer; the weights are quantized once, outside the timing; the activation cast is inside)
and reports MAC/s in wall time and per CPU second, with one OpenBLAS thread (nxfp_hw.model.blas). It
then times ``nxfp_hw.golden.dot.reduce_bits`` on ``M`` of the same outputs, checks they are bit-identical
and reports the speedup per CPU second. Also the binary32 GEMM of the same shape, for scale. Results:
benchmarks/results/model_matmul.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nxfp_hw.flows.accuracy import write_text_atomic  # noqa: E402
from nxfp_hw.formats import parse_format  # noqa: E402
from nxfp_hw.golden.dot import ACC_MODES, reduce_bits  # noqa: E402
from nxfp_hw.golden.quantize import quantize  # noqa: E402
from nxfp_hw.model.blas import blas_threads  # noqa: E402
from nxfp_hw.model.hw_matmul import hw_matmul, quantize_weight  # noqa: E402

PAIRS = (("mxfp8_e4m3", "nxfp4"), ("nxfp4", "nxfp4"), ("mxfp8_e4m3", "mxfp8_e4m3"))


def _timed(fn, *args, **kwargs):
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--golden-outputs", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "model_matmul.json")
    args = ap.parse_args()
    print(f"seed {args.seed}")
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((args.rows, 384)).astype(np.float32)
    w = (rng.standard_normal((1536, 384)) * 0.05).astype(np.float32)
    macs = x.shape[0] * w.shape[0] * w.shape[1]
    rows = []
    with blas_threads(1):
        _, sw, sc = _timed(np.matmul, x, w.T)
        base = {"what": "binary32 GEMM (np.matmul float32)", "macs": macs, "seconds": round(sw, 4),
                "cpu_seconds": round(sc, 4), "mac_per_s": macs / sw, "mac_per_cpu_s": macs / sc}
        for act, wgt in PAIRS:
            fa, fb = parse_format(act), parse_format(wgt)
            wq = quantize_weight(w, fb)
            qa = quantize(x, fa)
            n = args.golden_outputs
            r, c = rng.integers(0, x.shape[0], n), rng.integers(0, w.shape[0], n)
            nb = qa.headers.shape[1]
            last = np.tile(np.arange(nb) == nb - 1, n)
            golden_args = (fa, qa.headers[r].reshape(-1), qa.codes[r].reshape(-1, 32), fb,
                           wq.quantized.headers[c].reshape(-1), wq.quantized.codes[c].reshape(-1, 32), last)
            for mode in ACC_MODES:
                y, tw, tc = _timed(hw_matmul, x, wq, fa, mode)
                g, gw, gc = _timed(reduce_bits, *golden_args, mode=mode)
                same = bool(np.array_equal(y[r, c].view(np.uint32), g))
                row = {"activations": act, "weights": wgt, "mode": mode, "macs": macs, "seconds": round(tw, 3),
                       "cpu_seconds": round(tc, 3), "mac_per_s": macs / tw, "mac_per_cpu_s": macs / tc,
                       "golden_outputs": n, "golden_cpu_seconds": round(gc, 3),
                       "golden_mac_per_cpu_s": n * 384 / gc, "speedup_vs_golden_cpu": (macs / tc) / (n * 384 / gc),
                       "bit_exact_on_sample": same}
                rows.append(row)
                print(f"{act:>11} x {wgt:<11} {mode:<6} {macs / tw / 1e6:8.0f} MMAC/s wall {macs / tc / 1e6:8.0f} "
                      f"MMAC/CPU-s  golden {n * 384 / gc / 1e6:6.2f} MMAC/CPU-s  x{row['speedup_vs_golden_cpu']:.0f}"
                      f"  bit-exact {same}", flush=True)
    print(f"binary32 GEMM {base['mac_per_s'] / 1e6:.0f} MMAC/s wall, {base['mac_per_cpu_s'] / 1e6:.0f} MMAC/CPU-s")
    record = {"benchmark": "model_matmul", "rows": args.rows, "shape": [args.rows, 384, 1536], "seed": args.seed,
              "numpy": np.__version__, "python": platform.python_version(), "machine": platform.machine(),
              "cpus": os.cpu_count(), "load_average": os.getloadavg(), "blas_threads": 1, "binary32": base,
              "results": rows}
    write_text_atomic(args.out, json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
