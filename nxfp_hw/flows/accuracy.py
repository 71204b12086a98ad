"""Accuracy of a block format on a tensor: relative MSE and SQNR of quantize -> dequantize (spec 4, 5, 7).

``relative_mse = mean((x - dequantize(quantize(x)))^2) / mean(x^2)`` in float64 over every element of
the tensor (the figure spec 4 quotes for the presets), ``sqnr_db = -10 log10(relative_mse)``. The
default tensor is every encoder weight matrix of all-MiniLM-L6-v2 (10.6 M values). Results are cached
as small JSON files keyed by (canonical format string, tensor digest).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..formats import BlockFormat
from ..paths import write_error

__all__ = ["Accuracy", "accuracy_of", "default_tensor", "measure_accuracy", "tensor_digest"]


@dataclass(frozen=True)
class Accuracy:
    """Quantization error of one format on one tensor."""

    format: str
    format_string: str
    bits_per_element: float
    relative_mse: float
    sqnr_db: float
    values: int
    tensor: str
    tensor_digest: str


def tensor_digest(x: np.ndarray) -> str:
    """Short SHA-256 over dtype, shape and bytes of ``x`` (the cache key of its accuracy figures)."""
    arr = np.ascontiguousarray(x)
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()[:16]


def default_tensor() -> tuple[np.ndarray, str]:
    """The all-MiniLM-L6-v2 encoder weights (spec 4 measurement set) and their label."""
    from ..tensors import minilm_weights

    return minilm_weights(), "all-MiniLM-L6-v2 encoder weights"


def measure_accuracy(x: np.ndarray, fmt: BlockFormat) -> tuple[float, float]:
    """``(relative_mse, sqnr_db)`` of quantize -> dequantize of ``x`` in ``fmt`` (blocks along the last
    axis, zero-padded to a multiple of k; the padding is not counted)."""
    from ..golden.quantize import dequantize, quantize

    x = np.asarray(x)
    if x.size == 0:
        raise UserError("accuracy: the tensor is empty")
    if x.ndim == 0:
        x = x.reshape(1)
    xf = x.astype(np.float64)
    if not np.all(np.isfinite(xf)):
        raise UserError("accuracy: the tensor holds NaN or Inf values; relative MSE needs finite values")
    power = float(np.mean(xf * xf))
    if power == 0.0:
        raise UserError("accuracy: the tensor is all zeros; relative MSE is undefined")
    y = dequantize(quantize(x, fmt, pad="zero")).astype(np.float64)
    rel = float(np.mean((xf - y) ** 2)) / power
    sqnr = math.inf if rel == 0.0 else -10.0 * math.log10(rel)
    return rel, sqnr


def accuracy_of(fmt: BlockFormat, x: np.ndarray | None = None, *, label: str | None = None,
                cache_dir: Path | None = None, digest: str | None = None) -> Accuracy:
    """Accuracy of ``fmt`` on ``x`` (default: the MiniLM weights), cached under ``cache_dir/accuracy``.

    ``digest`` may be passed when the caller already hashed ``x`` (hashing 10 M values costs ~0.1 s).
    """
    if x is None:
        x, default_label = default_tensor()
        label = label or default_label
    digest = digest or tensor_digest(x)
    key = hashlib.sha256(f"{fmt.to_string()}|{digest}".encode()).hexdigest()[:20]

    def compute() -> dict:
        rel, sqnr = measure_accuracy(x, fmt)
        return asdict(Accuracy(format=fmt.label, format_string=fmt.to_string(), bits_per_element=fmt.bits_per_element,
                               relative_mse=rel, sqnr_db=sqnr, values=int(np.asarray(x).size),
                               tensor=label or "tensor", tensor_digest=digest))

    if cache_dir is None:
        return Accuracy(**compute())
    from .cache import cached

    fields = {f.name for f in dataclasses.fields(Accuracy)}
    data, _ = cached(Path(cache_dir) / "accuracy" / f"{key}.json", compute,  # a broken entry is recomputed
                     valid=lambda d: set(d) == fields and d.get("format_string") == fmt.to_string()
                     and d.get("tensor_digest") == digest)
    return Accuracy(**{**data, "format": fmt.label, "tensor": label or data.get("tensor", "")})


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a written report is as readable as any file
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(exc, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
