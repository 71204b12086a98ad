"""Exact fixed-point sum of element products for the dot engine (spec 8).

Every finite element value of a block format is an integer multiple of ``2^lsb_exp`` (the
LSB of its finest code, recycled values included), so a product ``a_i * b_i`` is an integer
multiple of ``2^(lsb_a + lsb_b)``. The engine multiplies the small integer significands,
shifts the product left by the sum of the two exponents (both counted from the formats'
LSBs) into a two's complement word wide enough for ``k`` products, and adds the lanes with a
balanced tree: no bit is ever dropped, so the block sum ``S`` is exact.

Widths come from the exact element tables (golden ``element_parts``), not from field
widths, so recycled values and adaptive candidates are covered.
"""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import C, Cat, Module, Mux, Signal, Value, signed

from ..formats import BlockFormat
from ..golden.decode import element_parts

__all__ = ["adder_tree", "align_product", "lane_bound", "prefix_add"]


def lane_bound(fmt_a: BlockFormat, fmt_b: BlockFormat) -> int:
    """Largest ``|a_i * b_i|`` of finite elements, in units of ``2^exact_sum_lsb_exponent`` (spec 8).

    Every candidate and recycling option counts; the block total of ``k`` such products fits
    ``exact_sum_bits(fmt_a, fmt_b)`` bits (golden model).
    """
    pa, pb = element_parts(fmt_a), element_parts(fmt_b)
    return max(pa.max_positive, pa.max_negative) * max(pb.max_positive, pb.max_negative)


def align_product(
    m: Module,
    *,
    sign: Value,
    sig_a: Value,
    sig_b: Value,
    shift: Value,
    drop: int = 0,
    width: int,
    name: str = "prod",
) -> Signal:
    """Signed ``(-1)^sign * sig_a * sig_b * 2^(shift - drop)`` as a ``signed(width)`` signal (spec 8).

    ``sig_a``, ``sig_b`` are unsigned integer significands and ``shift`` the unsigned sum of
    both exponents counted from the decoders' exponent bases; ``drop`` low bits of the shifted
    product are known to be zero (the pair's smallest product exponent lies ``drop`` above the
    sum of the bases). The caller guarantees the product fits ``width``.
    """
    sig_a, sig_b, shift = Value.cast(sig_a), Value.cast(sig_b), Value.cast(shift)
    prod = Signal(len(sig_a) + len(sig_b), name=f"{name}_sig")
    m.d.comb += prod.eq(sig_a * sig_b)
    mag = Signal(width - 1, name=f"{name}_mag")
    m.d.comb += mag.eq((prod << shift)[drop: drop + width - 1])
    out = Signal(signed(width), name=f"{name}_fix")
    m.d.comb += out.eq(Mux(sign, -mag, mag))
    return out


def adder_tree(m: Module, terms: list[Value], *, bound: int, name: str = "tree",
               cut: Callable[[list[Value]], list[Value]] | None = None) -> Signal:
    """Balanced exact sum of signed ``terms``, each of magnitude at most ``bound``.

    Each level is one bit wider than the one below (up to the width the final sum needs), so
    nothing overflows and little logic is wasted. Returns a signed signal. ``cut`` (optional) is
    a register position halfway up the tree: it is called with the partial sums of that level
    and returns them (registered or not).
    """
    if not terms:
        raise ValueError("adder_tree needs at least one term")
    level = [Value.cast(t) for t in terms]
    cut_depth = (max(len(level) - 1, 0).bit_length() + 1) // 2
    depth = 0
    if cut is not None and cut_depth == 0:
        level = cut(level)
    while len(level) > 1:
        depth += 1
        width = (bound << depth).bit_length() + 1
        nxt: list[Value] = []
        for n in range(0, len(level) - 1, 2):
            s = Signal(signed(width), name=f"{name}_l{depth}_{n // 2}")
            m.d.comb += s.eq(level[n] + level[n + 1])
            nxt.append(s)
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        if cut is not None and depth == cut_depth:
            level = cut(level)
    out = Signal(signed((bound * len(terms)).bit_length() + 1), name=f"{name}_sum")
    m.d.comb += out.eq(level[0])
    return out


def prefix_add(m: Module, a: Value, b: Value, *, cin: Value | int = 0, name: str = "padd") -> Signal:
    """``a + b + cin`` as an unsigned ``max(len(a), len(b)) + 1``-bit signal, built as a Sklansky
    parallel-prefix adder: ``log2(width)`` levels of generate/propagate logic instead of the ripple
    chain a synthesis tool may keep for a plain ``+`` (the long carry chains of the ``exact``
    accumulator's resolution)."""
    a, b, cin = Value.cast(a), Value.cast(b), Value.cast(cin)
    width = max(len(a), len(b))
    a = a.as_unsigned() if len(a) == width else Cat(a, C(0, width - len(a)))
    b = b.as_unsigned() if len(b) == width else Cat(b, C(0, width - len(b)))
    p = [a[i] ^ b[i] for i in range(width)]
    # Bit -1 is the carry in: generate = cin, propagate = 0.
    gen: list[Value] = [cin[0]] + [a[i] & b[i] for i in range(width)]
    prop: list[Value] = [C(0, 1)] + p
    n = width + 1
    step = 1
    while step < n:
        g2, p2 = list(gen), list(prop)
        for i in range(n):
            if i & step:  # Sklansky: combine with the last position of the lower block
                j = (i & ~(step - 1)) - 1
                g2[i] = gen[i] | (prop[i] & gen[j])
                p2[i] = prop[i] & prop[j]
        level_g = Signal(n, name=f"{name}_g{step}")
        level_p = Signal(n, name=f"{name}_p{step}")
        m.d.comb += [level_g.eq(Cat(*g2)), level_p.eq(Cat(*p2))]
        gen, prop = [level_g[i] for i in range(n)], [level_p[i] for i in range(n)]
        step <<= 1
    out = Signal(width + 1, name=f"{name}_sum")
    m.d.comb += out.eq(Cat(*(p[i] ^ gen[i] for i in range(width)), gen[width]))
    return out
