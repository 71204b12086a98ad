"""Block dot product and fp32 accumulation (spec 8).

Per block pair, ``S = sum_i a_i * b_i`` is formed exactly as a fixed-point integer whose
LSB weighs ``2**exact_sum_lsb_exponent(fmt_a, fmt_b)``; ``r = RNE_fp32(S * Xa * Xb)`` is
the one rounding. Block results are then added in float32, in order, from +0.0.
"""

from __future__ import annotations

import numpy as np

from ..formats import BlockFormat
from .decode import FINITE, INF, NAN, element_index, element_parts
from .ieee import FP32, round_to_bits

__all__ = ["accumulate_bits", "block_dot_bits", "dot_accumulate_bits", "dot_bits", "exact_sum_bits",
           "exact_sum_lsb_exponent"]


def exact_sum_lsb_exponent(fmt_a: BlockFormat, fmt_b: BlockFormat) -> int:
    """Exponent of the LSB of the exact product sum: the smallest product exponent of the pair."""
    return element_parts(fmt_a).lsb_exponent + element_parts(fmt_b).lsb_exponent


def exact_sum_bits(fmt_a: BlockFormat, fmt_b: BlockFormat) -> int:
    """Two's complement width (sign included) of a fixed-point accumulator that holds any
    sum of ``k`` finite products ``a_i * b_i`` exactly, LSB ``2**exact_sum_lsb_exponent``.

    Every candidate and recycling option of both formats counts (the header picks per
    block). This is product width + alignment span + ``log2(k)`` + sign, computed tight
    from the extreme positive and negative products.
    """
    _check_k(fmt_a, fmt_b)
    a, b = element_parts(fmt_a), element_parts(fmt_b)
    most_positive = max(a.max_positive * b.max_positive, a.max_negative * b.max_negative)
    most_negative = max(a.max_positive * b.max_negative, a.max_negative * b.max_positive)
    k = fmt_a.k
    # n bits two's complement hold -2**(n-1) .. 2**(n-1) - 1.
    return max((k * most_positive).bit_length(), (k * most_negative - 1).bit_length()) + 1


def _check_k(fmt_a: BlockFormat, fmt_b: BlockFormat) -> None:
    if fmt_a.k != fmt_b.k:
        raise ValueError(f"dot product needs equal block sizes, got k={fmt_a.k} ({fmt_a}) and k={fmt_b.k} ({fmt_b})")


def block_dot_bits(fmt_a: BlockFormat, ha, ca, fmt_b: BlockFormat, hb, cb) -> np.ndarray:
    """fp32 bit pattern (uint32) of the dot product of every block pair (spec 8).

    ``ha``/``hb`` are headers of shape ``(...)``, ``ca``/``cb`` codes of shape ``(..., k)``;
    batch shapes broadcast. One RNE of the exact ``S * Xa * Xb``; subnormals kept, overflow
    to Inf. NaN header or element, ``Inf * 0`` or ``+Inf + -Inf`` -> 0x7FC00000. An exact
    zero sum gives +0.0; a non-zero result that underflows keeps its sign.
    """
    _check_k(fmt_a, fmt_b)
    k = fmt_a.k
    for name, c in (("ca", ca), ("cb", cb)):
        if np.ndim(c) < 1 or np.shape(c)[-1] != k:
            raise ValueError(f"{name} must have shape (..., {k}) (k elements per block), got {np.shape(c)}")
    hpa, ia = element_index(fmt_a, np.asarray(ha)[..., None], np.asarray(ca)[..., None, :])
    hpb, ib = element_index(fmt_b, np.asarray(hb)[..., None], np.asarray(cb)[..., None, :])
    pa, pb = element_parts(fmt_a), element_parts(fmt_b)
    kind_a, kind_b = pa.kind[ia][..., 0, :], pb.kind[ib][..., 0, :]
    sign_a, sign_b = pa.sign[ia][..., 0, :], pb.sign[ib][..., 0, :]
    man_a, man_b = pa.man[ia][..., 0, :], pb.man[ib][..., 0, :]
    exp_a, exp_b = pa.exp[ia][..., 0, :], pb.exp[ib][..., 0, :]
    nan_a, nan_b = hpa.scale_nan[..., 0, 0], hpb.scale_nan[..., 0, 0]

    # Specials (spec 8): NaN anywhere, Inf * 0, +Inf + -Inf.
    zero_a = (kind_a == FINITE) & (man_a == 0)
    zero_b = (kind_b == FINITE) & (man_b == 0)
    inf_prod = (kind_a == INF) | (kind_b == INF)
    prod_neg = (sign_a ^ sign_b).astype(bool)
    any_nan = (
        nan_a | nan_b
        | np.any((kind_a == NAN) | (kind_b == NAN), axis=-1)
        | np.any(((kind_a == INF) & zero_b) | ((kind_b == INF) & zero_a), axis=-1)
    )
    pos_inf = np.any(inf_prod & ~prod_neg, axis=-1)
    neg_inf = np.any(inf_prod & prod_neg, axis=-1)
    any_nan = any_nan | (pos_inf & neg_inf)

    # Exact fixed-point sum; Python ints when the accumulator or the scaled result could pass 62 bits.
    wide = exact_sum_bits(fmt_a, fmt_b) + fmt_a.scale.mbits + fmt_b.scale.mbits + 2 > 62
    man_prod = man_a * man_b  # each <= 53 bits only with odd recycled values; int64 for every level
    shift = exp_a + exp_b - exact_sum_lsb_exponent(fmt_a, fmt_b)
    if wide:
        terms = man_prod.astype(object) << shift.astype(object)
    else:
        terms = man_prod << shift
    terms = np.where(prod_neg, -terms, terms)
    total = terms.sum(axis=-1, dtype=terms.dtype)
    neg = total < 0
    scale_man = hpa.scale_man[..., 0, 0] * hpb.scale_man[..., 0, 0]
    mag = np.abs(total) * (scale_man.astype(object) if wide else scale_man)
    exp = exact_sum_lsb_exponent(fmt_a, fmt_b) + hpa.scale_exp[..., 0, 0] + hpb.scale_exp[..., 0, 0]
    bits = round_to_bits(neg.astype(np.int64), mag, exp, FP32).astype(np.uint32)
    bits = np.where(pos_inf, np.uint32(FP32.inf_bits), bits)
    bits = np.where(neg_inf, np.uint32(FP32.sign_bit | FP32.inf_bits), bits)
    return np.where(any_nan, np.uint32(FP32.nan_bits), bits).astype(np.uint32)


def accumulate_bits(block_results) -> np.ndarray:
    """Sum fp32 bit patterns along the last axis: ``acc = float32(acc + r)`` in order from +0.0.

    Returns uint32 bit patterns of shape ``block_results.shape[:-1]``; NaN -> 0x7FC00000.
    """
    r = np.asarray(block_results)
    if r.dtype != np.uint32:
        raise TypeError(f"block_results must be uint32 fp32 bit patterns, got dtype {r.dtype}")
    vals = np.concatenate([np.zeros(r.shape[:-1] + (1,), np.float32), r.view(np.float32)], axis=-1)
    # ufunc.accumulate is strictly sequential: out[j] = out[j-1] + in[j], each rounded to float32.
    with np.errstate(invalid="ignore", over="ignore"):  # +Inf + -Inf -> NaN and overflow are IEEE results here
        acc = np.add.accumulate(vals, axis=-1, dtype=np.float32)[..., -1]
    return np.where(np.isnan(acc), np.uint32(FP32.nan_bits), acc.view(np.uint32)).astype(np.uint32)


def dot_accumulate_bits(block_results, last) -> np.ndarray:
    """One fp32 result per reduction of a stream of block results (spec 8 default mode).

    ``block_results`` (uint32, 1-D) arrive in order; ``last`` (bool, same length) marks the
    final block of each reduction, which must close the stream. Each reduction starts from +0.0.
    """
    r = np.asarray(block_results)
    flags = np.asarray(last, dtype=bool)
    if r.ndim != 1 or flags.shape != r.shape:
        raise ValueError(f"block_results and last must be 1-D of equal length, got {r.shape} and {flags.shape}")
    if r.size == 0:
        return np.zeros(0, np.uint32)
    if not flags[-1]:
        raise ValueError("the last block result is not marked last: the final reduction is incomplete")
    ends = np.flatnonzero(flags)
    starts = np.concatenate([[0], ends[:-1] + 1])
    seg = np.concatenate([[0], np.cumsum(flags)[:-1]])
    pos = np.arange(r.size) - starts[seg]
    # Pad short reductions with -0.0, the identity of IEEE addition (x + -0.0 == x, also for x = +-0).
    grid = np.full((ends.size, int(pos.max()) + 1), np.float32(-0.0).view(np.uint32), dtype=np.uint32)
    grid[seg, pos] = r
    return accumulate_bits(grid)


def dot_bits(fmt_a: BlockFormat, ha, ca, fmt_b: BlockFormat, hb, cb) -> np.ndarray:
    """Dot products along the block axis: headers ``(..., nblocks)``, codes ``(..., nblocks, k)``.

    Block results (:func:`block_dot_bits`) are accumulated in fp32 in block order; uint32 ``(...)``.
    """
    return accumulate_bits(block_dot_bits(fmt_a, ha, ca, fmt_b, hb, cb))
