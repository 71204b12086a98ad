"""Sentence-embedding accuracy of all-MiniLM-L6-v2 under hardware-exact numerics (docs/model_accuracy.md).

A point is (weight format W, activation format A, accumulation mode). Every linear layer of the model
runs as :class:`~nxfp_hw.model.minilm.HardwareLinear` (weights quantized in W, activations cast to A by
the golden encoder, dot-engine accumulation in the mode); the embeddings of a fixed sentence set are
compared with those of the binary32 model:

- ``mean_cosine`` / ``worst_cosine``: cosine similarity of each sentence's embedding to its binary32
  embedding (both L2-normalised; 1 is identical), mean and minimum over the sentences;
- ``nn_agreement``: the share of sentences whose nearest neighbour (the other sentence of largest
  cosine similarity) is the same as in the binary32 model;
- ``similarity_mae``: mean absolute difference of the pairwise cosine similarities (i < j).

Everything is deterministic (no sampling): the same model files, sentences and point give the same
figures bit for bit. Results are cached as JSON keyed by the point, the sentences and the model files.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..formats import BlockFormat, parse_format
from ..golden.dot import ACC_MODES
from .blas import blas_threads
from .hw_matmul import activation_metric
from .minilm import HardwareLinear, MiniLM

__all__ = ["DEFAULT_ACTIVATIONS", "DEFAULT_MODES", "DEFAULT_WEIGHTS", "ModelPoint", "compare_embeddings",
           "default_points", "evaluate_point", "load_sentences", "reference_embeddings", "sweep"]

#: Weight formats of the default sweep (issue 15).
DEFAULT_WEIGHTS = ("nxfp4", "nxfp5", "nxfp6", "mxfp4_e2m1", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp8_e4m3")
#: Activation formats of the default sweep: ``same`` is the weight format.
DEFAULT_ACTIVATIONS = ("mxfp8_e4m3", "same")
DEFAULT_MODES = ACC_MODES
#: OpenBLAS threads during an evaluation (nxfp_hw.model.blas: faster on a loaded machine, fixed order).
BLAS_THREADS = 1
#: Version of the method: bump when a change alters figures (invalidates cached results).
METHOD_VERSION = 1


@dataclass(frozen=True)
class ModelPoint:
    """Figures of one (W, A, mode) point; see the module doc."""

    weights: str
    activations: str
    mode: str
    weight_bits: float
    activation_bits: float
    sentences: int
    tokens: int
    mean_cosine: float
    worst_cosine: float
    nn_agreement: float
    similarity_mae: float
    macs: int
    seconds: float
    sentences_digest: str
    #: the golden quantizer metric that cast the activations (the generated encoder's default policy)
    activation_metric: str = "float64"


def load_sentences(path: Path | None = None, *, limit: int | None = None, what: str = "--sentences") -> list[str]:
    """One sentence per non-blank line of ``path`` (default: the built-in set of 200, ``data/sentences.txt``).

    ``UserError`` naming ``what`` for a missing, unreadable, non-UTF-8 or empty file.
    """
    if path is None:
        text = resources.files("nxfp_hw.model").joinpath("data/sentences.txt").read_text(encoding="utf-8")
    else:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{what}: {path}: no such file" if not path.exists() else f"{what}: {path}: not a file")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"{what}: {path}: not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:
            raise UserError(f"{what}: {path}: cannot read ({exc.strerror})") from None
    sentences = [s.strip() for s in text.splitlines() if s.strip()]
    if not sentences:
        raise UserError(f"{what}: {path}: no sentences (the file is empty)")
    if limit is not None:
        sentences = sentences[:limit]
    if len(sentences) < 2:
        raise UserError(f"{what}: needs at least 2 sentences for nearest neighbours, got {len(sentences)}")
    return sentences


def _digest(sentences: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sentences).encode()).hexdigest()[:16]


def _model_digest(model: MiniLM) -> str:
    h = hashlib.sha256()
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        st = (model.model_dir / name).stat()
        h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def compare_embeddings(ref: np.ndarray, emb: np.ndarray) -> dict[str, float]:
    """``mean_cosine``, ``worst_cosine``, ``nn_agreement``, ``similarity_mae`` of normalised embeddings
    ``emb`` against ``ref`` (both ``(n, d)``, rows L2-normalised), computed in float64."""
    r, e = ref.astype(np.float64), emb.astype(np.float64)
    cos = np.sum(r * e, axis=1)
    sr, se = r @ r.T, e @ e.T
    n = sr.shape[0]
    np.fill_diagonal(sr, -np.inf)
    np.fill_diagonal(se, -np.inf)
    nn_agree = float(np.mean(np.argmax(sr, axis=1) == np.argmax(se, axis=1)))
    iu = np.triu_indices(n, 1)
    return {"mean_cosine": float(cos.mean()), "worst_cosine": float(cos.min()), "nn_agreement": nn_agree,
            "similarity_mae": float(np.mean(np.abs(sr[iu] - se[iu])))}


def reference_embeddings(model: MiniLM, sentences: Sequence[str], cache_dir: Path | None = None) -> np.ndarray:
    """The binary32 model's embeddings of ``sentences`` (cached as ``.npy`` under ``cache_dir``)."""
    path = None
    if cache_dir is not None:
        key = f"{METHOD_VERSION}-{_model_digest(model)}-{_digest(sentences)}"
        path = Path(cache_dir) / "model_accuracy" / f"reference-{key}.npy"
        if path.is_file():
            try:
                return np.load(path, allow_pickle=False)
            except (ValueError, OSError):
                pass  # a broken cache entry is recomputed
    with blas_threads(BLAS_THREADS):
        emb = model.embed(sentences)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, emb)
        tmp.replace(path)
    return emb


def _point_path(cache_dir: Path, model: MiniLM, sentences: Sequence[str], w: BlockFormat, a: BlockFormat,
                mode: str) -> Path:
    metric = activation_metric(a)
    # A float64-metric cast (every MX format) keeps the key it had before the metric was part of it.
    tail = "" if metric == "float64" else f"|{metric}"
    key = hashlib.sha256(f"{METHOD_VERSION}|{_model_digest(model)}|{_digest(sentences)}|{w.to_string()}|"
                         f"{a.to_string()}|{mode}{tail}".encode()).hexdigest()[:20]
    return Path(cache_dir) / "model_accuracy" / f"{key}.json"


def evaluate_point(model: MiniLM, sentences: Sequence[str], weights: str | BlockFormat,
                   activations: str | BlockFormat, mode: str = "fp32", *, reference: np.ndarray | None = None,
                   cache_dir: Path | None = None, linear: HardwareLinear | None = None) -> ModelPoint:
    """Figures of one point (module doc). ``activations="same"`` uses the weight format.

    ``linear``: a :class:`HardwareLinear` of the same weight format to reuse (its quantized weights).
    """
    if mode not in ACC_MODES:
        raise UserError(f"mode: unknown accumulation mode {mode!r}; expected one of {', '.join(ACC_MODES)}")
    w = parse_format(weights) if isinstance(weights, str) else weights
    a = w if activations == "same" else (parse_format(activations) if isinstance(activations, str) else activations)
    if a.k != w.k:
        raise UserError(f"activations: block size k={a.k} differs from the weights' k={w.k}")
    path = _point_path(cache_dir, model, sentences, w, a, mode) if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            return ModelPoint(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            pass
    if reference is None:
        reference = reference_embeddings(model, sentences, cache_dir)
    if linear is None or linear.weight_fmt != w:
        linear = HardwareLinear(w, a, mode)
    else:
        linear.act_fmt, linear.mode, linear.macs, linear._last_input = a, mode, 0, None
    ids = model.tokenize(sentences)
    t0 = time.perf_counter()
    with blas_threads(BLAS_THREADS):
        emb = model.embed_ids(ids, linear)
    seconds = time.perf_counter() - t0
    figures = compare_embeddings(reference, emb)
    point = ModelPoint(weights=w.label, activations=a.label, mode=mode, weight_bits=w.bits_per_element,
                       activation_bits=a.bits_per_element, sentences=len(sentences),
                       tokens=int(sum(len(t) for t in ids)), macs=linear.macs, seconds=round(seconds, 2),
                       sentences_digest=_digest(sentences), activation_metric=activation_metric(a), **figures)
    if path is not None:
        from ..flows.accuracy import write_text_atomic

        write_text_atomic(path, json.dumps(asdict(point), indent=1) + "\n")
    return point


def default_points(weights: Sequence[str] = DEFAULT_WEIGHTS, activations: Sequence[str] = DEFAULT_ACTIVATIONS,
                   modes: Sequence[str] = DEFAULT_MODES) -> list[tuple[str, str, str]]:
    """(W, A, mode) points of a sweep, W outermost; ``same`` activations equal to an explicit one are
    listed once."""
    out: list[tuple[str, str, str]] = []
    for w in weights:
        acts: list[str] = []
        for a in activations:
            name = w if a == "same" else a
            if name not in acts:
                acts.append(name)
        out += [(w, a, m) for a in acts for m in modes]
    return out


def sweep(model: MiniLM, sentences: Sequence[str], points: Sequence[tuple[str, str, str]], *,
          cache_dir: Path | None = None, progress: Callable[[ModelPoint], None] | None = None,
          reference: np.ndarray | None = None) -> list[ModelPoint]:
    """Every point, in order; consecutive points of one weight format share its quantized weights."""
    if reference is None:
        reference = reference_embeddings(model, sentences, cache_dir)
    results = []
    linear = None
    for w, a, m in points:
        wf = parse_format(w)
        if linear is None or linear.weight_fmt != wf:
            linear = HardwareLinear(wf, wf, m)
        p = evaluate_point(model, sentences, wf, a, m, reference=reference, cache_dir=cache_dir, linear=linear)
        results.append(p)
        if progress is not None:
            progress(p)
    return results
