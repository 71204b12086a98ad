"""``nxfp-hw quantize``: quantize a tensor file to a block format and compare with an MX baseline."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..formats import BlockFormat, mx_baseline_for, parse_format
from ..golden.quantize import dequantize, quantize
from ..tensors import load_tensor

DESCRIPTION = """\
Quantize a float tensor (float16, bfloat16, float32 or float64) to a block format by direct
cast (spec section 5): blocks of k consecutive elements along the LAST axis share one header
(scale exponent, nano-mantissa, and for NxFP the element-format selector and recycling bit).

The output .npz holds:
  headers  uint16 (..., nblocks)     one header code per block; bits MSB..LSB =
                                     [selector | recycle option | scale exponent | nano-mantissa]
  codes    uint16 (..., nblocks, k)  raw element codes, w bits each (sign-magnitude EeMm or
                                     two's complement INTn), exactly what the hardware stores
  values   float32, input shape       the decoded value of every element (element x scale,
                                     rounded to float32; NaN for NaN blocks)
  format   str                        the canonical format string (parse it back with --format)

It prints the mean squared error, the MSE relative to the baseline format, the signal to
quantization noise ratio (SQNR, dB) and the storage cost in bits per element of both.
"""

EPILOG = """\
inputs: .npy (one array); .npz (the array --name, or the only one); .safetensors (the tensor
--name, or without it every floating tensor with >= 2 dimensions, flattened and concatenated in
sorted name order: the weight matrices of a model).

examples:
  nxfp-hw quantize --format nxfp4 --input weights.npy --output w_nxfp4.npz
  nxfp-hw quantize -f "elem=E2M1,scale=UE5M3" -i model.safetensors -o w.npz --baseline mxfp4_e2m1
  nxfp-hw quantize -f nxfp4,k=16 -i acts.npz --name layer3 -o a.npz --pad zero --force
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize",
        help="quantize a tensor file to a block format (headers, element codes, decoded values)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--format", "-f", dest="fmt", required=True, metavar="FORMAT",
                   help="preset (mxfp4_e2m1, nxfp4, ...; see `nxfp-hw formats`) or format string (docs/formats.md)")
    p.add_argument("--input", "-i", required=True, type=Path, metavar="FILE",
                   help="input tensor: .npy, .npz or .safetensors")
    p.add_argument("--name", "-n", metavar="NAME", help="array/tensor name inside a .npz or .safetensors file")
    p.add_argument("--output", "-o", required=True, type=Path, metavar="FILE.npz", help="output file (.npz)")
    p.add_argument("--baseline", "-b", metavar="FORMAT",
                   help="format to compare against (default: the MX format of the same element width, "
                        "e.g. mxfp4_e2m1 for 4-bit elements); 'none' to skip")
    p.add_argument("--pad", choices=("refuse", "zero"), default="refuse",
                   help="last axis not a multiple of k: refuse (default), or pad each row with zeros "
                        "to a multiple of k (the padding is quantized but not written to values)")
    p.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    p.set_defaults(func=run)


class _Progress:
    """A one-line text progress bar on stderr, shown only once a job has run for ``delay`` seconds."""

    def __init__(self, label: str, delay: float = 1.0, width: int = 30) -> None:
        self.label, self.delay, self.width = label, delay, width
        self.start = time.monotonic()
        self.last = 0.0
        self.shown = self.shown_before = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        tty = sys.stderr.isatty()
        if now - self.start < self.delay or (now - self.last < (0.1 if tty else 2.0) and done < total):
            return
        self.last = now
        self.shown_before, self.shown = self.shown, True
        frac = done / total if total else 1.0
        bar = "#" * int(frac * self.width)
        sys.stderr.write(
            ("\r" if tty else "\n" if self.shown_before else "")
            + f"{self.label} [{bar:<{self.width}}] {frac:4.0%}  {done / 1e6:.1f}/{total / 1e6:.1f} M elements"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _quantize_with_progress(x: np.ndarray, fmt: BlockFormat, pad: str, label: str):
    bar = _Progress(label)
    try:
        return quantize(x, fmt, pad=pad, progress=bar)
    finally:
        bar.close()


def _stats(x: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """(MSE, SQNR dB) over the elements whose input is finite."""
    x64 = x.astype(np.float64)
    finite = np.isfinite(x64)
    err = values.astype(np.float64)[finite] - x64[finite]
    noise = float(np.sum(err * err))
    signal = float(np.sum(x64[finite] ** 2))
    n = max(int(finite.sum()), 1)
    sqnr = float("inf") if noise == 0 else (10 * np.log10(signal / noise) if signal > 0 else float("-inf"))
    return noise / n, sqnr


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically: a temporary file in the same directory, renamed over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    fmt = parse_format(args.fmt)
    baseline = None
    if args.baseline is None:
        baseline = mx_baseline_for(fmt)
    elif args.baseline.strip().lower() != "none":
        baseline = parse_format(args.baseline)
    out: Path = args.output
    if out.suffix.lower() != ".npz":
        raise UserError(f"--output {out}: the output must be a .npz file")
    if not out.parent.is_dir():
        raise UserError(f"--output {out}: directory {out.parent} does not exist")
    if out.exists() and not args.force:
        raise UserError(f"--output {out} exists; use --force to overwrite it")

    x = load_tensor(args.input, args.name)
    if x.ndim == 0:
        raise UserError(f"--input {args.input}: a 0-d scalar cannot be split into blocks")
    q = _quantize_with_progress(x, fmt, args.pad, f"quantize {fmt.label}")
    values = dequantize(q)
    mse, sqnr = _stats(x, values)
    rows = [(fmt.label, fmt.bits_per_element, mse, sqnr)]
    if baseline is not None:
        qb = _quantize_with_progress(x, baseline, "zero", f"baseline {baseline.label}")
        rows.append((baseline.label, baseline.bits_per_element, *_stats(x, dequantize(qb))))

    _write_npz(out, {"headers": q.headers, "codes": q.codes, "values": values, "format": np.array(fmt.to_string())})

    n_nan = int(np.count_nonzero(q.headers == fmt.make_header(fmt.scale.nan_code, 0, 0)))
    print(f"input   {args.input}{f' [{args.name}]' if args.name else ''}: shape {x.shape}, {x.dtype}, "
          f"{x.size} elements")
    print(f"format  {fmt.label} ({fmt.to_string()}): {q.headers.size} blocks of k={fmt.k}"
          + (f", last axis padded by {q.pad}" if q.pad else "")
          + (f", {n_nan} NaN blocks (NaN/Inf input)" if n_nan else ""))
    print(f"output  {out}: headers {q.headers.shape}, codes {q.codes.shape}, values {values.shape}")
    print()
    base_mse = rows[-1][2] if baseline is not None else None
    head = ("format", "bits/elem", "MSE", "rel. MSE", "SQNR dB")
    table = []
    for label, bpe, m, s in rows:
        rel = "-" if base_mse is None else (f"{m / base_mse:.4f}" if base_mse > 0 else ("1.0000" if m == 0 else "inf"))
        table.append((label, f"{bpe:.3f}", f"{m:.6g}", rel, f"{s:.2f}"))
    widths = [max(len(r[i]) for r in [head, *table]) for i in range(len(head))]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return 0
