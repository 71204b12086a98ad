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
from ..golden.quantize import CHUNK_ELEMENTS, QuantizedTensor, dequantize_exact, quantize_blocks
from ..golden.select import select_metric
from ..paths import check_output_file, write_error
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
quantization noise ratio (SQNR, dB) and the storage cost in bits per element of both, over
the blocks whose input is finite and that decode finite (the others are counted as excluded).
Inputs: float16, bfloat16 (also a .npy of dtype |V2, as np.save writes ml_dtypes.bfloat16),
float32, float64, either byte order.
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
    p.add_argument("--select", metavar="POLICY",
                   help="choose each block's (candidate, recycling option) pair as the hardware encoder does under "
                        "this selection policy (exact, sq6, abs, hits, hits6, hits-abs; docs/encoder.md), bit for bit; "
                        "default: the float64 least squared error of spec 5.4")
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


class _Stats:
    """Running squared error and signal of one format over the blocks every format decodes finite."""

    def __init__(self) -> None:
        self.noise = 0.0
        self.signal = 0.0

    def add(self, x: np.ndarray, v: np.ndarray, keep: np.ndarray) -> None:
        err = v[keep] - x[keep]
        self.noise += float(np.dot(err, err))
        self.signal += float(np.dot(x[keep], x[keep]))

    def figures(self, n: int) -> tuple[float, float]:
        """(MSE, SQNR dB) over ``n`` elements."""
        mse = self.noise / n if n else float("nan")
        if not n:
            return mse, float("nan")
        sqnr = float("inf") if self.noise == 0 else (
            10 * np.log10(self.signal / self.noise) if self.signal > 0 else float("-inf"))
        return mse, float(sqnr)


def _decode_blocks(fmt: BlockFormat, headers: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """float32 values of blocks ``(n,)``/``(n, k)`` (spec 7; as :func:`dequantize`), returned as float64."""
    q = QuantizedTensor(fmt=fmt, shape=codes.shape, headers=headers[:, None], codes=codes[:, None, :])
    with np.errstate(over="ignore"):
        return dequantize_exact(q).astype(np.float32).astype(np.float64)


def quantize_streamed(x: np.ndarray, fmt: BlockFormat, *, store: bool = True, progress=None, metric: str = "float64"):
    """Quantize ``x`` to ``fmt``, decode it back and compare it with ``x``, one chunk of blocks at a time:
    the outputs and one chunk are all that is held (no float64 copy of the tensor, no decoded copy).

    Blocks run along the last axis; a last axis that is not a multiple of k is padded with zeros (the
    padding is neither written to ``values`` nor counted). Returns ``(headers, codes, values, stats,
    counted, excluded)`` (the arrays None unless ``store``): ``stats`` a :class:`_Stats` over the
    ``counted`` elements of the blocks whose input is finite and that decode finite, ``excluded`` the
    number of other blocks.
    """
    k = fmt.k
    shape = x.shape
    n_last = shape[-1]
    nbpr = -(-n_last // k)  # blocks per row
    total = (x.size // n_last) * nbpr
    headers = codes = values = flat_v = None
    if store:
        headers = np.empty(total, dtype=np.uint16)
        codes = np.empty((total, k), dtype=np.uint16)
        values = np.empty(shape, dtype=np.float32)
        flat_v = values.reshape(-1)
    flat_x = x.reshape(-1)  # a view of a contiguous input
    padded = n_last % k != 0
    stats = _Stats()
    counted = excluded = 0
    step = max(1, CHUNK_ELEMENTS // k)
    lane = np.arange(k)
    for start in range(0, total, step):
        stop = min(start + step, total)
        if padded:
            b = np.arange(start, stop)
            col = (b % nbpr)[:, None] * k + lane
            valid = col < n_last
            idx = (b // nbpr)[:, None] * n_last + np.minimum(col, n_last - 1)
            xb = np.where(valid, flat_x[idx], 0).astype(np.float64)
        else:
            valid = idx = None
            xb = flat_x[start * k:stop * k].reshape(-1, k).astype(np.float64)
        h, c = quantize_blocks(fmt, xb, metric)
        v = _decode_blocks(fmt, h, c)
        if store:
            headers[start:stop], codes[start:stop] = h, c
            if valid is None:
                flat_v[start * k:stop * k] = v.reshape(-1)
            else:
                flat_v[idx[valid]] = v[valid]
        keep_blk = np.isfinite(xb).all(axis=1) & np.isfinite(v).all(axis=1)
        keep = np.broadcast_to(keep_blk[:, None] if valid is None else keep_blk[:, None] & valid, xb.shape)
        stats.add(xb, v, keep)
        counted += int(np.count_nonzero(keep))
        excluded += int(keep_blk.size - np.count_nonzero(keep_blk))
        if progress is not None:
            progress(min(stop * k, x.size), x.size)
    if store:
        lead = shape[:-1]
        headers, codes = headers.reshape(*lead, nbpr), codes.reshape(*lead, nbpr, k)
    return headers, codes, values, stats, counted, excluded


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically: a temporary file in the same directory (mode from the umask, like any new file),
    renamed over ``path``; on any failure or signal the temporary file is removed."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(exc, path, "--output") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    fmt = parse_format(args.fmt)
    metric = "float64" if args.select is None else select_metric(fmt, args.select)
    baseline = None
    if args.baseline is None:
        baseline = mx_baseline_for(fmt)
    elif args.baseline.strip().lower() != "none":
        baseline = parse_format(args.baseline)
    out: Path = args.output
    check_output_file(out, "--output", force=args.force, suffix=".npz")

    x = load_tensor(args.input, args.name)
    if x.ndim == 0:
        raise UserError(f"--input {args.input}: a 0-d scalar cannot be split into blocks")
    if x.size == 0:
        raise UserError(f"--input {args.input}: the tensor is empty (shape {x.shape}); nothing to quantize")
    if x.shape[-1] % fmt.k and args.pad == "refuse":
        raise UserError(f"--input {args.input}: last axis has length {x.shape[-1]}, not a multiple of the block "
                        f"size k={fmt.k} of {fmt.label} (--pad zero pads each row with zeros)")
    x = np.ascontiguousarray(x)
    bar = _Progress(f"quantize {fmt.label}")
    try:
        headers, codes, values, stats, counted, excluded = quantize_streamed(x, fmt, progress=bar, metric=metric)
    finally:
        bar.close()
    n_pad = (-x.shape[-1]) % fmt.k
    rows = [(fmt.label, fmt.bits_per_element, *stats.figures(counted), excluded)]
    if baseline is not None:
        bar = _Progress(f"baseline {baseline.label}")
        try:
            _, _, _, b_stats, b_counted, b_excluded = quantize_streamed(x, baseline, store=False, progress=bar)
        finally:
            bar.close()
        rows.append((baseline.label, baseline.bits_per_element, *b_stats.figures(b_counted), b_excluded))

    _write_npz(out, {"headers": headers, "codes": codes, "values": values, "format": np.array(fmt.to_string())})

    n_nan = int(np.count_nonzero(headers == fmt.make_header(fmt.scale.nan_code, 0, 0)))
    print(f"input   {args.input}{f' [{args.name}]' if args.name else ''}: shape {x.shape}, {x.dtype}, "
          f"{x.size} elements")
    print(f"format  {fmt.label} ({fmt.to_string()}): {headers.size} blocks of k={fmt.k}"
          + (f", last axis padded by {n_pad}" if n_pad else "")
          + (f", {n_nan} NaN blocks (NaN/Inf input)" if n_nan else ""))
    print(f"output  {out}: headers {headers.shape}, codes {codes.shape}, values {values.shape}")
    if any(r[4] for r in rows):
        print("stats   over the blocks whose input is finite and that decode finite (excluded: NaN/Inf input, "
              "or a value beyond float32)")
    print()
    base_mse = rows[-1][2] if baseline is not None else None
    show_excluded = any(r[4] for r in rows)
    head = ("format", "bits/elem", "MSE", "rel. MSE", "SQNR dB") + (("excluded blocks",) if show_excluded else ())
    table = []
    for label, bpe, m, s, n_excl in rows:
        if base_mse is None or not np.isfinite(base_mse) or not np.isfinite(m):
            rel = "-"
        else:
            rel = f"{m / base_mse:.4f}" if base_mse > 0 else ("1.0000" if m == 0 else "-")
        table.append((label, f"{bpe:.3f}", f"{m:.6g}", rel, f"{s:.2f}") + ((str(n_excl),) if show_excluded else ()))
    widths = [max(len(r[i]) for r in [head, *table]) for i in range(len(head))]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return 0
