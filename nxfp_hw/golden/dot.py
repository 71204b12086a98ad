"""Block dot product and the accumulation modes (spec 8, 8.1).

Per block pair, ``S = sum_i a_i * b_i`` is formed exactly as a fixed-point integer whose
LSB weighs ``2**exact_sum_lsb_exponent(fmt_a, fmt_b)``; ``r = RNE_fp32(S * Xa * Xb)`` is
the one rounding. Block results are then added in float32, in order, from +0.0 (mode
``fp32``). :func:`reduce_bits` also gives the ``fused`` mode (the accumulator joins the exact
``S * Xa * Xb`` before one rounding per block) and the ``exact`` mode (every block value of a
reduction summed in the fixed-point window of :func:`exact_window`, rounded once at the end).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from ..formats import BlockFormat
from .decode import FINITE, INF, NAN, decode_header, element_index, element_parts
from .ieee import FP32, round_to_bits

__all__ = ["ACC_MODES", "DEFAULT_GUARD_BITS", "BlockValues", "ExactWindow", "ScaleBounds", "accumulate_bits",
           "block_dot_bits", "block_exact_values", "dot_accumulate_bits", "dot_bits", "exact_block_bound",
           "exact_sum_bits", "exact_sum_lsb_exponent", "exact_window", "reduce_bits", "scale_bounds"]

#: Accumulation modes of spec 8.1, by name (``fp32`` is spec 8's default).
ACC_MODES = ("fp32", "fused", "exact")
#: Guard bits ``G`` of the ``exact`` mode's window: exact for up to ``2**G`` blocks per reduction.
DEFAULT_GUARD_BITS = 16


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


class _BlockParts(NamedTuple):
    """Exact parts of every block pair: ``S`` (signed, LSB ``2**exact_sum_lsb_exponent``), the product of the
    scale significands, both scale exponents and the special flags (``nan`` includes ``+Inf + -Inf``)."""

    total: np.ndarray
    scale_man: np.ndarray
    scale_exp_a: np.ndarray
    scale_exp_b: np.ndarray
    nan: np.ndarray
    pinf: np.ndarray
    ninf: np.ndarray


def _block_parts(fmt_a: BlockFormat, ha, ca, fmt_b: BlockFormat, hb, cb) -> _BlockParts:
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
    scale_man = hpa.scale_man[..., 0, 0] * hpb.scale_man[..., 0, 0]
    return _BlockParts(total, scale_man.astype(object) if wide else scale_man, hpa.scale_exp[..., 0, 0],
                       hpb.scale_exp[..., 0, 0], any_nan, pos_inf, neg_inf)


def block_dot_bits(fmt_a: BlockFormat, ha, ca, fmt_b: BlockFormat, hb, cb) -> np.ndarray:
    """fp32 bit pattern (uint32) of the dot product of every block pair (spec 8).

    ``ha``/``hb`` are headers of shape ``(...)``, ``ca``/``cb`` codes of shape ``(..., k)``;
    batch shapes broadcast. One RNE of the exact ``S * Xa * Xb``; subnormals kept, overflow
    to Inf. NaN header or element, ``Inf * 0`` or ``+Inf + -Inf`` -> 0x7FC00000. An exact
    zero sum gives +0.0; a non-zero result that underflows keeps its sign.
    """
    p = _block_parts(fmt_a, ha, ca, fmt_b, hb, cb)
    neg = p.total < 0
    mag = np.abs(p.total) * p.scale_man
    exp = exact_sum_lsb_exponent(fmt_a, fmt_b) + p.scale_exp_a + p.scale_exp_b
    bits = round_to_bits(neg.astype(np.int64), mag, exp, FP32).astype(np.uint32)
    bits = np.where(p.pinf, np.uint32(FP32.inf_bits), bits)
    bits = np.where(p.ninf, np.uint32(FP32.sign_bit | FP32.inf_bits), bits)
    return np.where(p.nan, np.uint32(FP32.nan_bits), bits).astype(np.uint32)


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


def _segments(last: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(starts, ends, reduction of each block, position of each block in its reduction)``."""
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    seg = np.concatenate([[0], np.cumsum(last)[:-1]]).astype(np.int64)
    return starts, ends, seg, np.arange(last.size) - starts[seg]


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
    _, ends, seg, pos = _segments(flags)
    # Pad short reductions with -0.0, the identity of IEEE addition (x + -0.0 == x, also for x = +-0).
    grid = np.full((ends.size, int(pos.max()) + 1), np.float32(-0.0).view(np.uint32), dtype=np.uint32)
    grid[seg, pos] = r
    return accumulate_bits(grid)


def dot_bits(fmt_a: BlockFormat, ha, ca, fmt_b: BlockFormat, hb, cb) -> np.ndarray:
    """Dot products along the block axis: headers ``(..., nblocks)``, codes ``(..., nblocks, k)``.

    Block results (:func:`block_dot_bits`) are accumulated in fp32 in block order; uint32 ``(...)``.
    """
    return accumulate_bits(block_dot_bits(fmt_a, ha, ca, fmt_b, hb, cb))


# --- accumulation modes (spec 8.1) ------------------------------------------------------------------
class ScaleBounds(NamedTuple):
    """Extremes of the scale value ``scale_man * 2**scale_exp`` over the non-NaN scale codes (integer
    ``scale_man`` with ``mbits + 1`` bits, as :func:`~nxfp_hw.golden.decode.decode_header` gives it)."""

    min_exp: int
    max_exp: int
    max_man: int


@lru_cache(maxsize=64)
def scale_bounds(fmt: BlockFormat) -> ScaleBounds:
    """Smallest and largest ``scale_exp`` and largest ``scale_man`` of ``fmt``'s non-NaN scale codes."""
    hp = decode_header(fmt, fmt.make_header(np.arange(fmt.scale.max_code + 1)))
    return ScaleBounds(int(hp.scale_exp.min()), int(hp.scale_exp.max()), int(hp.scale_man.max()))


class ExactWindow(NamedTuple):
    """The ``exact`` mode's two's complement accumulator: LSB ``2**lsb_exponent``, ``width`` bits with sign."""

    lsb_exponent: int
    width: int


def exact_block_bound(fmt_a: BlockFormat, fmt_b: BlockFormat) -> int:
    """Bound on ``|S * Xa * Xb|`` of one finite block pair, in units of the window LSB (spec 8.1):
    ``max|S| * max_man_a * max_man_b << (exponent span of a + exponent span of b)``."""
    _check_k(fmt_a, fmt_b)
    a, b = element_parts(fmt_a), element_parts(fmt_b)
    most_positive = max(a.max_positive * b.max_positive, a.max_negative * b.max_negative)
    most_negative = max(a.max_positive * b.max_negative, a.max_negative * b.max_positive)
    sa, sb = scale_bounds(fmt_a), scale_bounds(fmt_b)
    span = (sa.max_exp - sa.min_exp) + (sb.max_exp - sb.min_exp)
    return (fmt_a.k * max(most_positive, most_negative) * sa.max_man * sb.max_man) << span


def _check_guard_bits(guard_bits: int) -> int:
    if isinstance(guard_bits, bool) or not isinstance(guard_bits, int | np.integer) or guard_bits < 0:
        raise ValueError(f"guard_bits must be a non-negative integer, got {guard_bits!r}")
    return int(guard_bits)


def exact_window(fmt_a: BlockFormat, fmt_b: BlockFormat, guard_bits: int = DEFAULT_GUARD_BITS) -> ExactWindow:
    """The ``exact`` mode's accumulator (spec 8.1), exact for any reduction of up to ``2**guard_bits`` blocks.

    ``lsb_exponent = exact_sum_lsb_exponent + min_scale_exp_a + min_scale_exp_b``;
    ``width = exact_block_bound.bit_length() + guard_bits + 1`` (sign included).
    """
    guard_bits = _check_guard_bits(guard_bits)
    sa, sb = scale_bounds(fmt_a), scale_bounds(fmt_b)
    lsb = exact_sum_lsb_exponent(fmt_a, fmt_b) + sa.min_exp + sb.min_exp
    return ExactWindow(lsb, exact_block_bound(fmt_a, fmt_b).bit_length() + guard_bits + 1)


@dataclass(frozen=True)
class BlockValues:
    """Exact ``S * Xa * Xb`` of every block pair: ``mag_signed * 2**lsb_exponent`` (int64, or object
    arrays of Python ints when the window passes 62 bits); 0 where a flag is set. ``nan`` covers a NaN
    header or element, ``Inf * 0`` and ``+Inf + -Inf`` in one block; ``pinf``/``ninf`` only without ``nan``."""

    mag_signed: np.ndarray
    nan: np.ndarray
    pinf: np.ndarray
    ninf: np.ndarray
    lsb_exponent: int


def block_exact_values(fmt_a: BlockFormat, ha, ca, fmt_b: BlockFormat, hb, cb) -> BlockValues:
    """Exact value of every block pair (spec 8) in units of the ``exact_window`` LSB, with NaN/Inf flags.

    Shapes as in :func:`block_dot_bits`.
    """
    p = _block_parts(fmt_a, ha, ca, fmt_b, hb, cb)
    sa, sb = scale_bounds(fmt_a), scale_bounds(fmt_b)
    win = exact_window(fmt_a, fmt_b, 0)
    finite = ~(p.nan | p.pinf | p.ninf)
    shift = np.where(finite, (p.scale_exp_a - sa.min_exp) + (p.scale_exp_b - sb.min_exp), 0).astype(np.int64)
    if win.width > 62:
        value = (p.total.astype(object) * p.scale_man.astype(object)) << shift.astype(object)
    else:
        value = (p.total.astype(np.int64) * p.scale_man.astype(np.int64)) << shift
    value = np.where(finite, value, 0).astype(value.dtype)
    return BlockValues(value, p.nan.copy(), p.pinf & ~p.nan, p.ninf & ~p.nan, win.lsb_exponent)


def _reduce_exact(v: BlockValues, last: np.ndarray, win: ExactWindow) -> np.ndarray:
    """``exact`` mode: one fixed-point sum per reduction, NaN when a prefix sum leaves the window."""
    starts, ends, seg, _ = _segments(last)
    cum = np.cumsum(v.mag_signed.astype(object))
    base = np.concatenate([[0], cum[ends[:-1]]]).astype(object)
    prefix = cum - base[seg]
    top = 1 << (win.width - 1)
    outside = ((prefix >= top) | (prefix < -top)).astype(bool)
    left = np.logical_or.reduceat(outside, starts)
    nan, pinf, ninf = (np.logical_or.reduceat(f.astype(bool), starts) for f in (v.nan, v.pinf, v.ninf))
    total = prefix[ends]
    bits = round_to_bits((total < 0).astype(np.int64), np.abs(total), win.lsb_exponent, FP32).astype(np.uint32)
    bits = np.where(pinf, np.uint32(FP32.inf_bits), bits)
    bits = np.where(ninf, np.uint32(FP32.sign_bit | FP32.inf_bits), bits)
    return np.where(nan | (pinf & ninf) | left, np.uint32(FP32.nan_bits), bits).astype(np.uint32)


def _fused_step(acc: np.ndarray, value: np.ndarray, nan: np.ndarray, pinf: np.ndarray, ninf: np.ndarray,
                lsb: int) -> np.ndarray:
    """``RNE_fp32(acc + value * 2**lsb)`` with spec 8's NaN/Inf rules; an exact zero sum is +0.0."""
    a = acc.astype(np.int64)
    a_neg = ((a >> 31) & 1).astype(bool)
    field, frac = (a >> 23) & 0xFF, a & 0x7FFFFF
    a_nan = (field == 0xFF) & (frac != 0)
    a_inf = (field == 0xFF) & (frac == 0)
    a_man = np.where(field == 0xFF, 0, np.where(field == 0, frac, frac | (1 << 23)))
    a_exp = np.maximum(field, 1) - (FP32.bias + FP32.mbits)  # weight of the significand's LSB
    e0 = np.minimum(a_exp, lsb)
    total = (np.where(a_neg, -a_man, a_man).astype(object) << (a_exp - e0).astype(object)) + (
        value.astype(object) << (lsb - e0).astype(object))
    bits = round_to_bits((total < 0).astype(np.int64), np.abs(total), e0, FP32).astype(np.uint32)
    b_inf = pinf | ninf
    bits = np.where(b_inf, np.where(ninf, np.uint32(FP32.sign_bit | FP32.inf_bits), np.uint32(FP32.inf_bits)), bits)
    bits = np.where(a_inf & ~b_inf, acc, bits)
    is_nan = a_nan | nan | (a_inf & b_inf & (a_neg != ninf))
    return np.where(is_nan, np.uint32(FP32.nan_bits), bits).astype(np.uint32)


def _reduce_fused(v: BlockValues, last: np.ndarray) -> np.ndarray:
    """``fused`` mode: ``acc = RNE_fp32(acc + S * Xa * Xb)`` per block, all reductions advanced together."""
    _, ends, seg, pos = _segments(last)
    acc = np.zeros(ends.size, np.uint32)
    order = np.argsort(pos, kind="stable")
    bounds = np.searchsorted(pos[order], np.arange(int(pos.max()) + 2))
    for j in range(int(pos.max()) + 1):
        idx = order[bounds[j]:bounds[j + 1]]
        red = seg[idx]
        acc[red] = _fused_step(acc[red], v.mag_signed[idx], v.nan[idx], v.pinf[idx], v.ninf[idx], v.lsb_exponent)
    return acc


def reduce_bits(fmt_a: BlockFormat, ha, ca, fmt_b: BlockFormat, hb, cb, last, *, mode: str = "fp32",
                guard_bits: int = DEFAULT_GUARD_BITS) -> np.ndarray:
    """One fp32 result (uint32) per reduction of a block stream in accumulation ``mode`` (spec 8.1).

    Headers ``(n,)``, codes ``(n, k)``, ``last`` bool ``(n,)`` closing each reduction (the final block
    must carry it). ``fp32``: :func:`dot_accumulate_bits` of :func:`block_dot_bits`. ``fused``:
    ``acc = RNE_fp32(acc + S * Xa * Xb)`` from +0.0, an exact zero sum is +0.0, a non-zero sum keeps its
    sign when it rounds to zero. ``exact``: the sum of the block values in the :func:`exact_window`
    of ``guard_bits``, rounded once (exact zero -> +0.0); canonical NaN if any prefix sum leaves the
    window. NaN/Inf flags follow spec 8 in every mode; NaN is 0x7FC00000.
    """
    if mode not in ACC_MODES:
        raise ValueError(f"mode must be one of {', '.join(ACC_MODES)}, got {mode!r}")
    guard_bits = _check_guard_bits(guard_bits)
    _check_k(fmt_a, fmt_b)
    k = fmt_a.k
    flags = np.asarray(last, dtype=bool)
    n = flags.size
    for name, arr, shape in (("ha", ha, (n,)), ("hb", hb, (n,)), ("ca", ca, (n, k)), ("cb", cb, (n, k))):
        if np.shape(arr) != shape:
            raise ValueError(f"{name} must have shape {shape} (last has {n} blocks, k={k}), got {np.shape(arr)}")
    if flags.ndim != 1:
        raise ValueError(f"last must be 1-D, got shape {flags.shape}")
    if n == 0:
        return np.zeros(0, np.uint32)
    if not flags[-1]:
        raise ValueError("the last block is not marked last: the final reduction is incomplete")
    if mode == "fp32":
        return dot_accumulate_bits(block_dot_bits(fmt_a, ha, ca, fmt_b, hb, cb), flags)
    values = block_exact_values(fmt_a, ha, ca, fmt_b, hb, cb)
    if mode == "fused":
        return _reduce_fused(values, flags)
    return _reduce_exact(values, flags, exact_window(fmt_a, fmt_b, guard_bits))
