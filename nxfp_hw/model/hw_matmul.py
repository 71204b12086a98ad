"""Hardware-exact matrix products: every output is one reduction of the dot engine (spec 8, 8.1).

``hw_matmul(x, w, act_fmt, mode)`` computes ``y[r, c] = dot(x[r, :], w[c, :])`` the way a generated
``DotEngine(fmt_a=act_fmt, fmt_b=w.fmt, acc=mode)`` does: the activation row is cast to ``act_fmt`` as the
generated encoder casts it (the golden quantizer with the metric of the encoder's default selection policy,
:func:`activation_metric`: ``"hw-scaled"`` for NxFP, docs/encoder.md), the weight
row is already quantized (:func:`quantize_weight`), the blocks of ``k`` elements are multiplied and
summed exactly per block, and the block values ``v_j = S_j * Xa_j * Xb_j`` are accumulated in block
order in the chosen mode. Results are bit for bit those of :func:`nxfp_hw.golden.dot.reduce_bits` on
the same codes (``tests/test_model_hw_matmul.py`` checks this on seeded samples); the reduction
dimension is the block axis, one reduction per output, ``last`` on its final block.

Why it is exact (docs/model_accuracy.md, "the fast matmul"):

1. **Block values through BLAS in float64.** Every decoded element ``a_i * Xa`` is exact in float64
   (:func:`~nxfp_hw.golden.quantize.dequantize_exact`). Within one block pair, every product
   ``(a_i Xa)(b_i Xb)`` and every partial sum of products, in any order and with or without fused
   multiply-adds, is ``P * Xa * Xb`` with ``P`` an integer multiple of ``2**exact_sum_lsb_exponent``
   and ``|P| <= k * max|a_i b_i|``, i.e. fewer than ``exact_sum_bits - 1`` bits; times the scale
   significands (``max_man`` of :func:`~nxfp_hw.golden.dot.scale_bounds`, ``mbits + 1`` bits each) an
   integer of at most ``exact_sum_bits - 1 + bits(max_man_a) + bits(max_man_b)`` bits times a power of
   two inside the float64 range. When that is at most 53 (:func:`blas_exact`: 43 bits for
   ``mxfp8_e4m3`` x ``mxfp8_e4m3``, the widest pair of the default sweep) every float64 operation of a
   batched ``matmul`` over the ``k`` lanes of one block is exact, so ``v_j`` comes out exact whatever
   order BLAS adds in. Pairs that do not fit (E5M2 x E5M2: 70 bits) are refused, not approximated.
2. **``fp32``**: ``r_j = float32(v_j + 0.0)`` is the one RNE of spec 8 (a float64 -> float32 cast rounds
   to nearest even, keeps subnormals, overflows to Inf; ``+ 0.0`` turns an exact-zero ``-0`` sum into
   ``+0``); ``acc = float32(acc + r_j)`` in block order from ``+0.0``, NumPy float32 adds.
3. **``fused``**: ``acc = RNE_fp32(acc + v_j)``. ``acc + v_j`` is formed as the float64 pair
   ``(s, e)`` of TwoSum (``s + e`` exactly, Knuth), ``s`` is replaced by its round-to-odd neighbour
   when ``e != 0`` (the neighbour of ``s`` towards ``e`` if the last significand bit of ``s`` is
   even), and the cast to float32 of that round-to-odd value is the correct RNE of the exact sum
   because 53 >= 24 + 2 (Boldo and Melquiond, "Emulation of FMA and correctly rounded sums: proved
   algorithms using rounding to odd", IEEE TC 2008).
4. **``exact``**: the block values of a reduction summed exactly, rounded once. Fast path: a double-double
   sum (``hi`` by TwoSum, its errors TwoSum'ed into ``lo``); if no error of ``lo`` was lost, ``hi + lo`` is
   the exact sum and TwoSum, round to odd and the float32 cast round it once. Otherwise (a reduction
   spanning more than about 100 bits) the limbs: each ``v_j = t_j * 2**E_j`` (``|t_j| < 2**53`` from
   ``frexp``) is split into 24-bit pieces added into int64 limbs of 24 bits on a grid anchored at the
   reduction's smallest ``E_j`` (at most ``nblocks`` pieces of < 2**48 per limb: no int64 overflow below
   2**15 blocks), carries are propagated, and the magnitude's top two limbs with a sticky bit of everything
   below are rounded once to float32. The spec's window check cannot fire: ``nblocks <= 2**guard_bits``
   prefix sums of block values bounded by :func:`~nxfp_hw.golden.dot.exact_block_bound` stay inside the
   window by its construction.

Activations must be finite (a NaN/Inf block would give a NaN header; the model never produces one):
``ValueError`` otherwise. Bias, if any, is added by the caller in binary32 after the dot products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..formats import BlockFormat
from ..golden.dot import ACC_MODES, DEFAULT_GUARD_BITS, exact_sum_bits, exact_window, scale_bounds
from ..golden.quantize import QuantizedTensor, dequantize_exact, quantize
from ..golden.select import select_metric

__all__ = ["QuantizedMatrix", "activation_metric", "blas_exact", "block_values", "hw_matmul", "quantize_activations",
           "quantize_weight", "reduce_block_values"]

#: Elements of the float64 block-value array ``(nblocks, rows, cols)`` computed at once (32 MiB).
CHUNK_VALUES = 1 << 22
#: Limb width of the ``exact`` mode's integer accumulator.
LIMB_BITS = 24


@dataclass(frozen=True)
class QuantizedMatrix:
    """A weight matrix ``(rows, cols)`` quantized along ``cols`` (the reduction axis) in ``fmt``.

    ``values``: float64 ``(nblocks, cols_per_block = k, rows)``, the exact decoded elements laid out for
    a batched matmul (block ``j`` of every row is ``values[j]``); ``quantized``: the codes.
    """

    fmt: BlockFormat
    values: np.ndarray
    quantized: QuantizedTensor

    @property
    def shape(self) -> tuple[int, int]:
        return self.quantized.shape  # type: ignore[return-value]


def _bits(n: int) -> int:
    return int(n).bit_length()


def blas_exact(fmt_a: BlockFormat, fmt_b: BlockFormat) -> bool:
    """Whether float64 sums of one block pair's products are exact in every order (module doc, 1)."""
    sa, sb = scale_bounds(fmt_a), scale_bounds(fmt_b)
    width = exact_sum_bits(fmt_a, fmt_b) - 1 + _bits(sa.max_man) + _bits(sb.max_man)
    win = exact_window(fmt_a, fmt_b, 0)
    return width <= 53 and win.lsb_exponent >= -1074 and win.lsb_exponent + win.width <= 1023


def quantize_weight(w: np.ndarray, fmt: BlockFormat) -> QuantizedMatrix:
    """Quantize ``w`` ``(rows, cols)`` along ``cols`` (the golden quantizer, spec 5); ``cols % k == 0``."""
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"weight must be 2-D (rows, cols), got shape {w.shape}")
    q = quantize(w, fmt)
    vals = dequantize_exact(q).reshape(w.shape[0], -1, fmt.k)  # (rows, nblocks, k)
    if not np.all(np.isfinite(vals)):
        raise ValueError("weight holds NaN or Inf values")
    return QuantizedMatrix(fmt, np.ascontiguousarray(vals.transpose(1, 2, 0)), q)


def activation_metric(fmt: BlockFormat) -> str:
    """The golden quantizer's ``metric`` that reproduces the generated encoder of ``fmt`` under its default
    selection policy (``nxfp_hw.golden.select``): ``"hw-scaled"`` for NxFP, ``"float64"`` (never consulted) for MX."""
    return select_metric(fmt)


def quantize_activations(x: np.ndarray, fmt: BlockFormat) -> np.ndarray:
    """Cast ``x`` ``(rows, cols)`` to ``fmt`` as the generated encoder does (the golden quantizer with
    :func:`activation_metric`); exact decoded values, float64 ``(nblocks, rows, k)``. ``ValueError`` if ``x``
    is not finite."""
    x = np.asarray(x)
    if not np.all(np.isfinite(x)):
        raise ValueError("activations hold NaN or Inf values")
    vals = dequantize_exact(quantize(x, fmt, metric=activation_metric(fmt))).reshape(x.shape[0], -1, fmt.k)
    return np.ascontiguousarray(vals.transpose(1, 0, 2))


def block_values(xa: np.ndarray, w: QuantizedMatrix) -> np.ndarray:
    """Exact block values ``v[j, r, c] = S_j * Xa_j * Xb_j`` (float64 ``(nblocks, rows, cols)``) of
    activation blocks ``xa`` ``(nblocks, rows, k)`` against every weight row (module doc, 1)."""
    return np.matmul(xa, w.values) + 0.0  # + 0.0: an exact-zero sum is +0 (spec 8)


def _reduce_fp32(v: np.ndarray) -> np.ndarray:
    acc = np.zeros(v.shape[1:], np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for j in range(v.shape[0]):
            acc += v[j].astype(np.float32)
    return acc


def _reduce_fused(v: np.ndarray) -> np.ndarray:
    acc = np.zeros(v.shape[1:], np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for j in range(v.shape[0]):
            s, e = _two_sum(acc.astype(np.float64), v[j])
            acc = np.where(np.isinf(acc), acc, _round_to_odd(s, e).astype(np.float32))  # Inf stays Inf
    return acc


def _carry(limbs: np.ndarray) -> None:
    """Normalise ``limbs`` ``(n, q)`` in place: limbs ``0 .. q-2`` in ``[0, 2**24)``, the top one signed."""
    for i in range(limbs.shape[1] - 1):
        c = limbs[:, i] >> LIMB_BITS
        limbs[:, i] -= c << LIMB_BITS
        limbs[:, i + 1] += c


def _reduce_exact_limbs(v: np.ndarray) -> np.ndarray:
    """``exact`` by int64 limbs (module doc, 4): any reduction of fewer than 2**15 blocks."""
    nb = v.shape[0]
    if nb >= 1 << 15:
        raise ValueError(f"exact mode: {nb} blocks per reduction; the limb accumulator takes fewer than 2**15")
    shape = v.shape[1:]
    flat = v.reshape(nb, -1)
    n = flat.shape[1]
    m, ex = np.frexp(flat)
    t = np.ldexp(m, 53).astype(np.int64)  # v = t * 2**(ex - 53), |t| < 2**53, exact
    e = ex.astype(np.int64) - 53
    nz = t != 0
    big = np.iinfo(np.int64).max // 4
    base = np.where(nz, e, big).min(axis=0)
    top = np.where(nz, e, -big).max(axis=0)
    any_nz = nz.any(axis=0)
    base = np.where(any_nz, base, 0)
    span = np.where(any_nz, top - base, 0)
    q = int(span.max(initial=0) + 53 + 16) // LIMB_BITS + 3  # room for 53 bits, the carries of nb < 2**15
    limbs = np.zeros((n, q), np.int64)
    rows = np.arange(n)
    mask = (1 << LIMB_BITS) - 1
    for j in range(nb):
        s = np.where(nz[j], e[j] - base, 0)
        li, off = s // LIMB_BITS, s % LIMB_BITS
        u = np.abs(t[j])
        sign = np.where(t[j] < 0, -1, 1)
        for piece in range(3):  # 53 bits = three pieces of <= 24 bits, each < 2**48 once shifted
            c = (u >> (LIMB_BITS * piece)) & mask
            limbs[rows, li + piece] += sign * (c << off)
    _carry(limbs)
    neg = limbs[:, -1] < 0
    limbs[neg] = -limbs[neg]
    _carry(limbs)
    nonzero = limbs != 0
    h = q - 1 - np.argmax(nonzero[:, ::-1], axis=1)  # top non-zero limb (0 when the sum is 0)
    hi = limbs[rows, h]
    lo = np.where(h >= 1, limbs[rows, np.maximum(h - 1, 0)], 0)
    below = np.cumsum(nonzero, axis=1)  # non-zero limbs at or below each index
    sticky = np.where(h >= 2, below[rows, np.maximum(h - 2, 0)] > 0, False)
    # hi >= 1 gives >= 26 bits: the sticky bit lies below the guard bit of a 24-bit rounding.
    mant = ((hi << LIMB_BITS) + lo) * 2 + sticky
    val = np.ldexp(mant.astype(np.float64), base + LIMB_BITS * (h - 1) - 1)  # exact (< 2**50, in range)
    with np.errstate(over="ignore"):
        out = val.astype(np.float32)
    return np.where(neg, -out, out).reshape(shape)


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knuth's TwoSum: ``s = fl(a + b)`` and ``e`` with ``s + e == a + b`` exactly (no overflow)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _round_to_odd(s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """``RO_53(s + e)`` for ``s = RN(s + e)``: ``s``, or its neighbour towards ``e`` when ``e != 0`` and the
    last significand bit of ``s`` is even. ``s`` finite (an Inf accumulator is handled by the caller)."""
    bits = s.view(np.int64)
    step = np.where((e > 0) == (s > 0), 1, -1)  # +1 moves away from zero, -1 towards it (s != 0 when e != 0)
    return (bits + (((bits & 1) == 0) & (e != 0)) * step).view(np.float64)


def _reduce_exact(v: np.ndarray) -> np.ndarray:
    """``exact`` (module doc, 4): double-double sums (``hi`` by TwoSum, ``lo`` by TwoSum of the errors); where
    every error of ``lo`` was zero, ``hi + lo`` is the exact sum and is rounded once (TwoSum, round to odd,
    float32 cast); the other reductions (sums spanning more than about 100 bits) go through the limbs."""
    shape = v.shape[1:]
    flat = v.reshape(v.shape[0], -1)
    hi = np.zeros(flat.shape[1])
    lo = np.zeros(flat.shape[1])
    lost = np.zeros(flat.shape[1], bool)
    for j in range(flat.shape[0]):
        hi, e = _two_sum(hi, flat[j])
        lo, e2 = _two_sum(lo, e)
        lost |= e2 != 0
    s, e = _two_sum(hi, lo)
    with np.errstate(over="ignore"):
        out = (_round_to_odd(s, e) + 0.0).astype(np.float32)  # + 0.0: an exact zero sum is +0
    if lost.any():
        out[lost] = _reduce_exact_limbs(flat[:, lost])
    return out.reshape(shape)


def reduce_block_values(v: np.ndarray, mode: str = "fp32") -> np.ndarray:
    """Accumulate exact block values ``v`` float64 ``(nblocks, ...)`` along axis 0 in ``mode`` (spec 8.1);
    float32 ``(...)``. ``exact`` assumes the spec's window holds the reduction (module doc, 4)."""
    if mode not in ACC_MODES:
        raise ValueError(f"mode must be one of {', '.join(ACC_MODES)}, got {mode!r}")
    if mode == "fp32":
        return _reduce_fp32(v)
    if mode == "fused":
        return _reduce_fused(v)
    return _reduce_exact(v)


def hw_matmul(x: np.ndarray, w: QuantizedMatrix, act_fmt: BlockFormat, mode: str = "fp32", *,
              guard_bits: int = DEFAULT_GUARD_BITS, xa: np.ndarray | None = None) -> np.ndarray:
    """``x`` ``(rows, cols)`` times ``w.T`` as the dot engine computes it: float32 ``(rows, w.rows)``.

    ``xa`` (optional): the activations already cast by :func:`quantize_activations` (shared by several
    products of one input, as the Q, K and V projections share one encoder output).
    """
    if mode not in ACC_MODES:
        raise ValueError(f"mode must be one of {', '.join(ACC_MODES)}, got {mode!r}")
    if act_fmt.k != w.fmt.k:
        raise ValueError(f"block sizes differ: activations k={act_fmt.k}, weights k={w.fmt.k}")
    if not blas_exact(act_fmt, w.fmt):
        raise ValueError(f"{act_fmt.label} x {w.fmt.label}: block sums need more than 53 bits; "
                         "the float64 fast path would not be exact (use nxfp_hw.golden.dot.reduce_bits)")
    if xa is None:
        xa = quantize_activations(x, act_fmt)
    nb, rows, _ = xa.shape
    if nb != w.values.shape[0]:
        raise ValueError(f"reduction lengths differ: activations {nb} blocks, weights {w.values.shape[0]}")
    if mode == "exact" and nb > 1 << guard_bits:
        raise ValueError(f"exact mode: {nb} blocks exceed the window of guard_bits={guard_bits}")
    cols = w.values.shape[2]
    out = np.empty((rows, cols), np.float32)
    step = max(1, CHUNK_VALUES // max(1, nb * cols))
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        out[r0:r1] = reduce_block_values(block_values(xa[:, r0:r1], w), mode)
    return out
