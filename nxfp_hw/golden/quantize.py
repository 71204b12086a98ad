"""Direct-cast quantization of float tensors into block formats (spec 5), and its inverse.

Blocks run along the last axis. Everything is vectorised over blocks and elements; the
only Python loops run over element candidates, recycling options, search steps and
chunks of the input. Comparisons that decide a rounding are exact: the input ``x`` is
compared against ``X * midpoint`` (an exact float64 product, checked once per format)
instead of the rounded quotient ``x / X``, which is only used as a first guess.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import ml_dtypes
import numpy as np

from ..errors import UserError
from ..formats import BlockFormat
from ..formats.grammar import significant_bits as _significant_bits
from .hw_metric import HW_METRICS

__all__ = [
    "METRICS",
    "QuantizeInputError",
    "QuantizeTypeError",
    "QuantizedTensor",
    "block_error_float64",
    "dequantize",
    "dequantize_exact",
    "quantize",
    "quantize_blocks",
]

#: Input dtypes accepted by :func:`quantize` (all convert to float64 exactly).
INPUT_DTYPES = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16), np.dtype(np.float32), np.dtype(np.float64))

#: Blocks are processed in chunks of about this many elements (bounds peak memory).
CHUNK_ELEMENTS = 1 << 19

#: Blocks with ``amax >= 2**ERROR_RESCALE_EXP`` have their error measured on the block scaled by a power
#: of two, so that it cannot overflow float64 (see :func:`quantize_blocks`).
ERROR_RESCALE_EXP = 500


class QuantizeInputError(UserError, ValueError):
    """The input cannot be blocked as asked (e.g. last axis not a multiple of ``k``)."""


class QuantizeTypeError(UserError, TypeError):
    """The input array has a dtype the quantizer does not take."""


@dataclass(frozen=True)
class QuantizedTensor:
    """A tensor in a block format (spec 5, 6).

    ``headers``: uint16 ``(..., nblocks)``; ``codes``: uint16 ``(..., nblocks, k)``;
    ``shape``: the original shape; ``pad``: zeros appended to the last axis (``pad="zero"``).
    """

    fmt: BlockFormat
    shape: tuple[int, ...]
    headers: np.ndarray
    codes: np.ndarray
    pad: int = 0


# --- per-format rounding tables ------------------------------------------------------------------


@dataclass(frozen=True)
class _RoundTable:
    """Sorted distinct finite values of one (candidate, recycling option) table.

    ``values[i]`` has code ``codes[i]`` (0 is the +0 code); ``mids[i]`` is the midpoint of
    ``values[i]`` and ``values[i+1]``; ``tie_up[i]`` says a tie at ``mids[i]`` goes up.
    ``neg_zero`` is the -0 code when a negative value rounding to 0 keeps its sign, else -1.
    """

    values: np.ndarray
    codes: np.ndarray
    mids: np.ndarray
    tie_up: np.ndarray
    zero_index: int
    neg_zero: int
    max_elem: float
    emax_elem: int


@lru_cache(maxsize=64)
def _round_table(fmt: BlockFormat, cand: int, rec: int) -> _RoundTable:
    """Build the rounding table of spec 5.3 for one (candidate, recycling option)."""
    table = fmt.element_table(cand, rec)
    elem = fmt.elements[cand]
    codes = np.arange(table.size)
    keep = np.isfinite(table)
    if elem.is_int:  # spec 2.2: symmetric clamp, the most negative code is never produced
        keep &= codes != 1 << (elem.width - 1)
    recycling = bool(fmt.recycling)
    if not recycling and elem.negative_zero_code is not None:
        keep &= codes != elem.negative_zero_code  # -0 shares the value 0; chosen by sign below
    vals = table[keep]
    order = np.argsort(vals, kind="stable")
    vals = vals[order] + 0.0  # -0.0 -> +0.0 (only +0 can remain here)
    cds = codes[keep][order]
    if np.unique(vals).size != vals.size:
        raise ValueError(f"{fmt}: element table {elem.name} has duplicate values")
    exact = [Fraction(float(v)) for v in vals]
    mids_q = [(a + b) / 2 for a, b in zip(exact[:-1], exact[1:], strict=True)]
    # Exactness (spec 5.3 "compared exactly"): X * mid must be exact in float64. Scales carry
    # at most 1 + 3 significant bits, so a midpoint of <= 49 bits is enough.
    bad = [float(m) for m in mids_q if _significant_bits(m) > 49]
    if bad:
        raise QuantizeInputError(
            f"format {fmt}: element values of {elem.name} (recycled value included) need more than 49 "
            f"significant bits at the rounding midpoints {bad[:3]}; use dyadic values with fewer bits"
        )
    mids = np.array([float(m) for m in mids_q], dtype=np.float64)
    lsb_lo = cds[:-1] & 1
    lsb_hi = cds[1:] & 1
    smaller_up = np.abs(vals[1:]) < np.abs(vals[:-1])
    # ties to the code whose LSB is 0; if both LSBs agree, to the smaller magnitude
    tie_up = np.where(lsb_lo != lsb_hi, lsb_hi == 0, smaller_up)
    zero_index = int(np.flatnonzero(vals == 0)[0])
    neg_zero = elem.negative_zero_code if (not recycling and elem.negative_zero_code is not None) else -1
    for arr in (vals, cds, mids, tie_up):
        arr.setflags(write=False)
    return _RoundTable(vals, cds.astype(np.int64), mids, tie_up, zero_index, neg_zero,
                       fmt.max_element(cand, rec), fmt.emax_element(cand, rec))


def _round_to_table(x: np.ndarray, scale: np.ndarray, t: _RoundTable) -> tuple[np.ndarray, np.ndarray]:
    """Round ``x / scale`` to the table (spec 5.3). ``x`` ``(n, k)`` float64, ``scale`` ``(n, 1)``.

    Returns ``(codes int64, values float64)`` where ``values`` is the element value (not scaled).
    """
    last = t.mids.size  # index of the largest value (tables always hold >= 2 values)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        idx = np.searchsorted(t.mids, x / scale)  # a guess, off by at most one: fixed exactly below
    lo = np.maximum(idx - 1, 0)
    t_lo = scale * t.mids[lo]  # exact products (checked in _round_table)
    idx = idx - ((idx > 0) & ((x < t_lo) | ((x == t_lo) & ~t.tie_up[lo])))
    hi = np.minimum(idx, last - 1)
    t_hi = scale * t.mids[hi]
    idx = idx + ((idx < last) & ((x > t_hi) | ((x == t_hi) & t.tie_up[hi])))
    codes = t.codes[idx]
    if t.neg_zero >= 0:
        codes = np.where((idx == t.zero_index) & np.signbit(x), t.neg_zero, codes)
    return codes, t.values[idx]


# --- scale rules (spec 5.2) ---------------------------------------------------------------------


def _scale_ocp(fmt: BlockFormat, amax: np.ndarray, t: _RoundTable) -> np.ndarray:
    """``X = 2^(floor(log2 amax) - emax_elem)``, clamped to the power-of-two codes; 0 -> code 0."""
    sf = fmt.scale
    _, e = np.frexp(amax)  # amax = m * 2^e, m in [0.5, 1): floor(log2 amax) = e - 1 exactly
    top_field = sf.max_code >> sf.mbits  # largest exponent field whose M = 0 code is not NaN
    field = np.clip(e.astype(np.int64) - 1 - t.emax_elem + sf.bias, 0, top_field)
    return np.where(amax > 0, field << sf.mbits, 0)


def _scale_ceil(fmt: BlockFormat, amax: np.ndarray, t: _RoundTable) -> np.ndarray:
    """Smallest code with ``scale * max_elem >= amax`` (exact products), clamped to max_code."""
    sf = fmt.scale
    reach = sf.code_values()[: sf.max_code + 1] * t.max_elem  # exact: few significant bits each
    return np.minimum(np.searchsorted(reach, amax, side="left"), sf.max_code)


def _scale_trials(fmt: BlockFormat, amax: np.ndarray, t: _RoundTable) -> list[np.ndarray]:
    """Scale codes the rule tries for one (candidate, recycling option), largest first (spec 5.2):
    OCP's one, or the ceil rule's smallest sufficient code and ``search_steps`` codes below it."""
    if fmt.rule == "ocp":
        return [_scale_ocp(fmt, amax, t)]
    top = _scale_ceil(fmt, amax, t)
    steps = fmt.search_steps if fmt.rule == "search" else 0
    return [np.maximum(top - j, 0) for j in range(steps + 1)]


# --- error metrics (spec 5.4) ---------------------------------------------------------------------


def block_error_float64(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Block squared error in float64: ``d_i = x_i - q_i`` and ``d_i**2`` rounded to float64,
    summed by a pairwise tree over the block (pairs (0,1), (2,3), ... then pairs of sums).

    ``x``, ``q``: float64 ``(n, k)`` with ``k`` a power of two. Returns ``(n,)``.
    """
    s = np.square(x - q)
    while s.shape[-1] > 1:
        s = s[:, 0::2] + s[:, 1::2]
    return s[:, 0]


#: Block error metrics: name -> f(x (n, k) float64, dequantized (n, k) float64) -> (n,) errors.
#: A hardware encoder's fixed-point metric ("hw") plugs in here, bit for bit (spec 5.4).
METRICS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "float64": block_error_float64,
    **HW_METRICS,
}


def _metric(name: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """The metric ``name``, or None for a selection that is not a least-error search (golden/select.py)."""
    from .select import SELECTIONS  # builds on this module

    if name in SELECTIONS:
        return None
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(
            f"unknown error metric {name!r}; available: {', '.join([*METRICS, *SELECTIONS])}") from None


# --- the quantizer ------------------------------------------------------------------------------------


def quantize_blocks(fmt: BlockFormat, x: np.ndarray, metric: str = "float64") -> tuple[np.ndarray, np.ndarray]:
    """Quantize blocks ``x`` float64 ``(n, k)`` (spec 5). Returns ``(headers (n,), codes (n, k))`` int64.

    For every (candidate, recycling option) pair the scale rule picks a scale (``search``:
    the ``ceil`` code and ``fmt.search_steps`` smaller codes, least error, ties to the larger
    scale), then the pair with the least block error wins; ties go to the lowest selector,
    then the lowest recycling option.
    """
    err_fn = _metric(metric)
    if err_fn is None:
        from .select import SELECTIONS

        return SELECTIONS[metric](fmt, x)
    n = x.shape[0]
    scale_values = fmt.scale.code_values()
    with np.errstate(invalid="ignore"):
        amax = np.max(np.abs(x), axis=1) if x.shape[1] else np.zeros(n)
    bad = ~np.isfinite(amax)  # NaN or +-Inf anywhere in the block (NaN propagates through max)
    xs = np.where(bad[:, None], 0.0, x)
    amax = np.where(bad, 0.0, amax)
    # Extreme finite blocks (|x| >= 2^ERROR_RESCALE_EXP, beyond any float32): the squared errors would
    # overflow float64 to Inf and tie every candidate, so the errors of those blocks are measured on the
    # block scaled by 2^-floor(log2 amax) (exact: a power of two), which ranks the candidates as the
    # unscaled error would without overflow. Other blocks are measured as they are.
    big = amax >= 2.0**ERROR_RESCALE_EXP
    err_shift = np.where(big, -np.frexp(amax)[1] + 1, 0)[:, None] if big.any() else None
    x_err = xs if err_shift is None else np.ldexp(xs, err_shift)

    best_err = np.full(n, np.inf)
    best_hdr = np.zeros(n, dtype=np.int64)
    best_codes = np.zeros(x.shape, dtype=np.int64)
    for cand in range(len(fmt.elements)):
        for rec in range(max(fmt.recycle_options, 1)):
            t = _round_table(fmt, cand, rec)
            trials = _scale_trials(fmt, amax, t)
            pair_err = np.full(n, np.inf)
            pair_scale = trials[0]
            pair_codes = None
            for j, sc in enumerate(trials):  # largest scale first: strict < keeps ties at the larger scale
                scale = scale_values[sc][:, None]
                codes, vals = _round_to_table(xs, scale, t)
                q = vals * scale
                err = err_fn(x_err, q if err_shift is None else np.ldexp(q, err_shift))
                better = (err < pair_err) | (j == 0)  # the first trial stands even if its error is Inf
                pair_err = np.where(better, err, pair_err)
                pair_scale = np.where(better, sc, pair_scale)
                pair_codes = codes if pair_codes is None else np.where(better[:, None], codes, pair_codes)
            better = (pair_err < best_err) | ((cand == 0) & (rec == 0))  # strict: ties keep the earlier pair
            best_err = np.where(better, pair_err, best_err)
            best_hdr = np.where(better, fmt.make_header(pair_scale, cand, rec), best_hdr)
            best_codes = np.where(better[:, None], pair_codes, best_codes)
    best_hdr = np.where(bad, fmt.make_header(fmt.scale.nan_code, 0, 0), best_hdr)
    best_codes = np.where(bad[:, None], 0, best_codes)
    return best_hdr, best_codes


def _as_float_array(x) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind == "f" and not arr.dtype.isnative:  # big-endian float arrays: same values
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype not in INPUT_DTYPES:
        raise QuantizeTypeError(
            f"cannot quantize an array of dtype {arr.dtype}; expected float16, bfloat16, float32 or float64"
        )
    if arr.ndim == 0:
        raise QuantizeInputError("cannot quantize a 0-d array: blocks run along the last axis")
    return arr


def quantize(
    x,
    fmt: BlockFormat,
    *,
    metric: str = "float64",
    pad: str = "refuse",
    progress: Callable[[int, int], None] | None = None,
) -> QuantizedTensor:
    """Quantize ``x`` (float16/bfloat16/float32/float64, blocks along the last axis) to ``fmt`` (spec 5).

    ``pad="refuse"``: the last axis must be a multiple of ``fmt.k``; ``pad="zero"``: it is
    padded with zeros to the next multiple (stripped again by :func:`dequantize`).
    ``progress(done_elements, total_elements)`` is called after each chunk.
    """
    if pad not in ("refuse", "zero"):
        raise ValueError(f"pad must be 'refuse' or 'zero', got {pad!r}")
    _metric(metric)
    arr = _as_float_array(x)
    shape = tuple(arr.shape)
    k = fmt.k
    n_last = shape[-1]
    n_pad = (-n_last) % k
    if n_pad and pad == "refuse":
        raise QuantizeInputError(
            f"last axis has length {n_last}, not a multiple of the block size k={k} of {fmt.label} "
            f"(pad with zeros with pad='zero' / --pad zero, or choose k dividing {n_last})"
        )
    lead = shape[:-1]
    nblocks = (n_last + n_pad) // k
    rows = arr.reshape(int(np.prod(lead, dtype=np.int64)), n_last)
    total_blocks = rows.shape[0] * nblocks
    headers = np.empty(total_blocks, dtype=np.uint16)
    codes = np.empty((total_blocks, k), dtype=np.uint16)
    if n_pad:
        padded = np.zeros((rows.shape[0], n_last + n_pad), dtype=arr.dtype)
        padded[:, :n_last] = rows
        rows = padded
    flat = rows.reshape(total_blocks, k)  # a view unless padded
    step = max(1, CHUNK_ELEMENTS // k)
    for start in range(0, total_blocks, step):
        stop = min(start + step, total_blocks)
        h, c = quantize_blocks(fmt, flat[start:stop].astype(np.float64), metric)
        headers[start:stop] = h
        codes[start:stop] = c
        if progress is not None:
            progress(stop * k, total_blocks * k)
    return QuantizedTensor(
        fmt=fmt,
        shape=shape,
        headers=headers.reshape(*lead, nblocks),
        codes=codes.reshape(*lead, nblocks, k),
        pad=n_pad,
    )


def dequantize_exact(q: QuantizedTensor) -> np.ndarray:
    """float64 value of every element (exact: element * scale has few significant bits), original shape.

    NaN header or NaN element -> NaN; Inf elements -> +-Inf (spec 7).
    """
    fmt = q.fmt
    scale_code, sel, rec = fmt.split_header(q.headers)
    tables = fmt.value_tables()
    vals = tables[sel[..., None], rec[..., None], q.codes.astype(np.int64)]
    scale = fmt.scale.code_values()[scale_code][..., None]
    with np.errstate(invalid="ignore"):
        out = vals * scale
    out = np.where(np.isnan(out), np.nan, out)  # one NaN, positive
    out = out.reshape(*q.shape[:-1], q.codes.shape[-2] * fmt.k)
    return out[..., : q.shape[-1]] if q.pad else out


def dequantize(q: QuantizedTensor) -> np.ndarray:
    """float32 value of every element, original shape: the exact value rounded to nearest even,
    overflow to +-Inf, subnormals kept, NaN as 0x7FC00000 (spec 7)."""
    with np.errstate(over="ignore"):
        return dequantize_exact(q).astype(np.float32)
