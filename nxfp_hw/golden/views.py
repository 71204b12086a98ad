"""Public views of the golden model that a unit nxfp-hw did not generate can be held against.

A foreign unit rarely outputs exactly what spec 7/8 return: an MX dot-product datapath may give the
exact integer block sum and leave the scaling to software, a converter may report its scale as a
shared exponent. Each view below is one intermediate of the golden model, exact and documented
(docs/golden.md "Views"); all are vectorised over any batch shape, and integers that may pass 63
bits are NumPy object arrays of Python ints.

=========================  ======================================================================
view                       what
=========================  ======================================================================
``element_decode``         spec 7: IEEE bits of every element times its scale (``decode_bits``)
``element_values``         exact element values (scale-free) ``man * 2**lsb_exponent``, NaN/Inf flags
``element_products``       exact ``a_i * b_i`` per lane (scale-free), in units of ``2**lsb_exponent``
``exact_block_sum``        spec 8's ``S = sum a_i b_i`` (scale-free), its LSB exponent, NaN/Inf flags
``block_scale``            ``Xa * Xb = scale_man * 2**scale_exp`` of every block pair
``block_result``           ``RNE_fp32(S * Xa * Xb)``: the block result before accumulation (spec 8)
``reduction_result``       one fp32 result per reduction in an accumulation mode (spec 8.1)
``encoded_blocks``         spec 5's packed block under an implementation :class:`~.policies.Policy`
=========================  ======================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..formats import BlockFormat
from .decode import FINITE, INF, NAN, decode_bits, element_index, element_parts
from .dot import _block_parts, block_dot_bits, exact_sum_lsb_exponent, reduce_bits
from .policies import EncodedBlocks, encode_blocks

__all__ = ["ElementValues", "EncodedBlocks", "ExactSum", "Products", "ScaleProduct", "block_result", "block_scale",
           "element_decode", "element_products", "element_values", "encoded_blocks", "exact_block_sum",
           "reduction_result", "rescale"]

element_decode = decode_bits
block_result = block_dot_bits
reduction_result = reduce_bits
encoded_blocks = encode_blocks


def rescale(value: np.ndarray, lsb_exponent: int, to_lsb: int) -> tuple[np.ndarray, np.ndarray]:
    """``value * 2**lsb_exponent`` in units of ``2**to_lsb``: ``(object ints, exact)`` where ``exact`` is
    False for values not representable with that LSB (their low bits are dropped toward -inf)."""
    v = np.asarray(value).astype(object)
    d = lsb_exponent - to_lsb
    if d >= 0:
        return v * (1 << d), np.ones(v.shape, bool)
    out = v >> -d if v.size else v
    return out, np.asarray((out << -d) == v, dtype=bool) if v.size else np.ones(v.shape, bool)


@dataclass(frozen=True)
class ElementValues:
    """Exact scale-free element values ``value * 2**lsb_exponent`` (int64, signed) and their flags."""

    value: np.ndarray
    nan: np.ndarray
    inf: np.ndarray
    sign: np.ndarray
    lsb_exponent: int


def element_values(fmt: BlockFormat, headers, codes) -> ElementValues:
    """Every element's exact value without the block scale (spec 2, recycled values and the header's
    selector/recycling option included). Headers ``(...)``, codes ``(..., lanes)``. A NaN scale is not
    an element property: see :func:`block_scale`. Zeros (and -0) are 0; Inf elements flag ``inf``
    (value 0, its sign in ``sign``), NaN elements ``nan``."""
    _, idx = element_index(fmt, headers, codes)
    p = element_parts(fmt)
    kind, sign, man, exp = p.kind[idx], p.sign[idx], p.man[idx], p.exp[idx]
    mag = man << (exp - p.lsb_exponent)
    value = np.where(kind == FINITE, np.where(sign == 1, -mag, mag), 0)
    return ElementValues(value.astype(np.int64), kind == NAN, kind == INF, sign.astype(bool), p.lsb_exponent)


@dataclass(frozen=True)
class Products:
    """Exact ``a_i * b_i`` of every lane in units of ``2**lsb_exponent`` (object ints), with per-lane
    flags: ``nan`` (a NaN element, or Inf times 0), ``pinf``/``ninf`` (an Inf product of that sign)."""

    value: np.ndarray
    nan: np.ndarray
    pinf: np.ndarray
    ninf: np.ndarray
    lsb_exponent: int


def element_products(fmt_a: BlockFormat, ha, ca, fmt_b: BlockFormat, hb, cb) -> Products:
    """Lane products of block pairs, scale-free (spec 8 before the sum). Shapes as in ``block_result``."""
    va, vb = element_values(fmt_a, ha, ca), element_values(fmt_b, hb, cb)
    prod = va.value.astype(object) * vb.value.astype(object)
    inf = va.inf | vb.inf
    zero = ((va.value == 0) & ~va.inf & ~va.nan) | ((vb.value == 0) & ~vb.inf & ~vb.nan)
    nan = va.nan | vb.nan | (inf & zero)
    neg = va.sign ^ vb.sign
    pinf = inf & ~nan & ~neg
    ninf = inf & ~nan & neg
    prod = np.where(inf | nan, 0, prod)
    return Products(prod, nan, pinf, ninf, va.lsb_exponent + vb.lsb_exponent)


@dataclass(frozen=True)
class ExactSum:
    """Spec 8's exact block sum ``S = value * 2**lsb_exponent`` without the scales (object ints), and
    its flags: ``nan`` (NaN scale or element, ``Inf * 0``, ``+Inf + -Inf``), ``pinf``/``ninf``."""

    value: np.ndarray
    nan: np.ndarray
    pinf: np.ndarray
    ninf: np.ndarray
    lsb_exponent: int


def exact_block_sum(fmt_a: BlockFormat, ha, ca, fmt_b: BlockFormat, hb, cb) -> ExactSum:
    """``S = sum_i a_i * b_i`` of every block pair, exact and scale-free (spec 8). ``lsb_exponent`` is
    :func:`~nxfp_hw.golden.dot.exact_sum_lsb_exponent`; ``value`` is 0 where a flag is set."""
    p = _block_parts(fmt_a, ha, ca, fmt_b, hb, cb)
    flagged = p.nan | p.pinf | p.ninf
    value = np.where(flagged, 0, np.asarray(p.total).astype(object))
    return ExactSum(value, p.nan.copy(), p.pinf & ~p.nan, p.ninf & ~p.nan, exact_sum_lsb_exponent(fmt_a, fmt_b))


@dataclass(frozen=True)
class ScaleProduct:
    """``Xa * Xb = scale_man * 2**scale_exp`` (int64) of every block pair; ``nan`` where a scale is NaN.
    For power-of-two scales (E8M0) ``scale_man`` is 1 and ``scale_exp`` the sum of the unbiased exponents."""

    scale_man: np.ndarray
    scale_exp: np.ndarray
    nan: np.ndarray


def block_scale(fmt_a: BlockFormat, ha, fmt_b: BlockFormat, hb) -> ScaleProduct:
    from .decode import decode_header

    a, b = decode_header(fmt_a, ha), decode_header(fmt_b, hb)
    man = a.scale_man * b.scale_man
    exp = a.scale_exp + b.scale_exp
    tz = np.zeros(np.shape(man), np.int64)  # normalise the significand to odd (or 1)
    m = np.array(man, dtype=np.int64, copy=True)
    for _ in range(8):
        even = (m % 2 == 0) & (m > 1)
        m = np.where(even, m // 2, m)
        tz = tz + even
    return ScaleProduct(m, (exp + tz).astype(np.int64), a.scale_nan | b.scale_nan)
