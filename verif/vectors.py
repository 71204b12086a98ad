"""Stimulus and golden expectations for the decode and dot regressions (launching-process side).

A :class:`VectorSet` is what a testbench consumes: input payload fields per beat (``in.<field>``),
expected output fields per transaction (``out.<field>``), auxiliary arrays for mismatch messages
(``aux.<name>``) and a JSON ``meta``. Expectations always come from the golden model
(``nxfp_hw.golden``), never from the RTL.

- decode: :func:`decode_exhaustive` feeds every (header, code) pair so that every lane sees every
  code (spec 7);
- dot: :func:`dot_directed` builds corner cases (spec 8: NaN/Inf, Inf*0, +Inf + -Inf, maximum
  magnitudes, subnormal and overflowing results, exact ties, cancellation, recycled codes, every
  selector), :func:`dot_random` seeded blocks from Gaussian, Student-t, MiniLM weights (through
  the golden quantizer) and raw random codes; :func:`dot_vectors` splits blocks into beats and
  computes the block results and their fp32 accumulation.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from nxfp_hw.formats import BlockFormat
from nxfp_hw.golden.decode import decode_bits
from nxfp_hw.golden.dot import block_dot_bits, dot_accumulate_bits

__all__ = ["BlockStream", "DISTRIBUTIONS", "VectorSet", "decode_exhaustive", "decode_vectors", "dot_directed",
           "dot_random", "dot_vectors", "load_vector_set", "savez_atomic"]

DISTRIBUTIONS = ("gaussian", "student_t", "minilm", "codes")


@dataclass
class VectorSet:
    """Inputs per beat, expected outputs per transaction, auxiliary arrays and metadata."""

    inputs: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]
    aux: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def beats(self) -> int:
        return len(next(iter(self.inputs.values())))

    @property
    def values(self) -> int:
        """Number of expected output values (lanes x transactions)."""
        return int(self.expected[self.meta["compare_field"]].size)

    def save(self, path: Path) -> Path:
        """Write an ``.npz`` atomically (temporary file in the same directory, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"in.{k}": v for k, v in self.inputs.items()}
        arrays |= {f"out.{k}": v for k, v in self.expected.items()}
        arrays |= {f"aux.{k}": v for k, v in self.aux.items()}
        arrays["meta"] = np.array(json.dumps(self.meta))
        return savez_atomic(path, arrays)


def savez_atomic(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """``np.savez`` to a temporary file beside ``path``, then rename: never a partial file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_vector_set(path: Path) -> VectorSet:
    with np.load(path, allow_pickle=False) as z:
        return VectorSet({k[3:]: z[k] for k in z.files if k.startswith("in.")},
                         {k[4:]: z[k] for k in z.files if k.startswith("out.")},
                         {k[4:]: z[k] for k in z.files if k.startswith("aux.")}, json.loads(str(z["meta"])))


# --- decode ------------------------------------------------------------------------------------------
def decode_exhaustive(fmt: BlockFormat, lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """Every header with every code, each lane seeing every code (spec 7).

    Beat ``(r, h, q)`` carries header ``h`` and on lane ``j`` the code ``(q*lanes + j + h + r*H) mod C``
    (``H`` headers, ``C`` codes): for each header the ``ceil(C/lanes)`` beats cover all codes, and over
    the headers (and ``ceil(C/H)`` rotations ``r``) every lane sees every code.
    """
    n_h, n_c = 1 << fmt.header_bits, 1 << fmt.element_width
    per_header = -(-n_c // lanes)
    rotations = -(-n_c // n_h)
    r, h, q = np.meshgrid(np.arange(rotations), np.arange(n_h), np.arange(per_header), indexing="ij")
    r, h, q = r.reshape(-1), h.reshape(-1), q.reshape(-1)
    j = np.arange(lanes)
    codes = (q[:, None] * lanes + j[None, :] + h[:, None] + r[:, None] * n_h) % n_c
    return h.astype(np.uint16), codes.astype(np.uint16)


def decode_vectors(fmt: BlockFormat, headers: np.ndarray, codes: np.ndarray, *, out: str = "fp32",
                   reset_prefix: int = 4) -> VectorSet:
    """Decode stimulus (headers ``(n,)``, codes ``(n, lanes)``) with golden ``values`` (spec 7)."""
    headers = np.asarray(headers, dtype=np.uint16).reshape(-1)
    codes = np.asarray(codes, dtype=np.uint16).reshape(headers.size, -1)
    expected = decode_bits(fmt, headers, codes, out=out)
    meta = {"unit": "decode", "compare_field": "values", "kind": out, "operands": {"a": ["header", "codes"]},
            "formats": {"a": fmt.to_string()}, "reset_prefix": reset_prefix}
    return VectorSet({"header": headers, "codes": codes}, {"values": expected}, {}, meta)


# --- dot: block streams -----------------------------------------------------------------------------
@dataclass
class BlockStream:
    """Block pairs in stream order; ``last[i]`` closes a reduction; ``case`` labels each block."""

    ha: np.ndarray
    ca: np.ndarray
    hb: np.ndarray
    cb: np.ndarray
    last: np.ndarray
    case: list[str]

    @classmethod
    def empty(cls, k: int) -> BlockStream:
        z = np.zeros(0, np.uint16)
        return cls(z, np.zeros((0, k), np.uint16), z.copy(), np.zeros((0, k), np.uint16), np.zeros(0, bool), [])

    def __len__(self) -> int:
        return int(self.ha.size)

    def add(self, name: str, ha, ca, hb, cb, last=None) -> None:
        """Append blocks (one reduction unless ``last`` says otherwise)."""
        ca, cb = np.atleast_2d(ca), np.atleast_2d(cb)
        n = ca.shape[0]
        ha = np.broadcast_to(np.asarray(ha), (n,))
        hb = np.broadcast_to(np.asarray(hb), (n,))
        if last is None:
            last = np.zeros(n, bool)
            last[-1] = True
        self.ha = np.concatenate([self.ha, ha.astype(np.uint16)])
        self.hb = np.concatenate([self.hb, hb.astype(np.uint16)])
        self.ca = np.concatenate([self.ca, ca.astype(np.uint16)])
        self.cb = np.concatenate([self.cb, cb.astype(np.uint16)])
        self.last = np.concatenate([self.last, np.asarray(last, bool)])
        self.case += [name] * n

    def extend(self, other: BlockStream) -> None:
        self.add_stream(other)

    def add_stream(self, other: BlockStream) -> None:
        if len(other):
            self.ha = np.concatenate([self.ha, other.ha])
            self.hb = np.concatenate([self.hb, other.hb])
            self.ca = np.concatenate([self.ca, other.ca])
            self.cb = np.concatenate([self.cb, other.cb])
            self.last = np.concatenate([self.last, other.last])
            self.case += other.case


def _code_of(fmt: BlockFormat, value: float, sel: int = 0, rec: int = 0) -> int | None:
    table = fmt.element_table(sel, rec)
    hits = np.flatnonzero(table == value)
    if value == 0:
        hits = np.flatnonzero((table == 0) & ~np.signbit(table))
    return int(hits[0]) if hits.size else None


def _scale_code(fmt: BlockFormat, exp: int) -> int | None:
    """Scale code whose value is exactly ``2**exp`` (None if out of range)."""
    vals = fmt.scale.code_values()
    hits = np.flatnonzero(vals == 2.0**exp)
    return int(hits[0]) if hits.size else None


def _pow2_exponents(fmt: BlockFormat, sel: int = 0) -> dict[int, int]:
    """``{e: code}`` of the positive element values that are exact powers of two."""
    table = fmt.element_table(sel, 0)
    out: dict[int, int] = {}
    for code in np.flatnonzero(np.isfinite(table) & (table > 0)):
        m, e = np.frexp(table[code])
        if m == 0.5:
            out.setdefault(int(e) - 1, int(code))
    return out


def _max_code(fmt: BlockFormat, sel: int = 0, rec: int = 0, negative: bool = False) -> int:
    table = fmt.element_table(sel, rec)
    fin = np.where(np.isfinite(table), table, 0.0)
    return int(np.argmin(fin) if negative else np.argmax(fin))


def _min_pos_code(fmt: BlockFormat, sel: int = 0) -> int:
    table = fmt.element_table(sel, 0)
    fin = np.where(np.isfinite(table) & (table > 0), table, np.inf)
    return int(np.argmin(fin))


def _zeros(k: int) -> np.ndarray:
    return np.zeros(k, np.int64)


def _random_headers(fmt: BlockFormat, n: int, rng: np.random.Generator, *, nan: bool = False,
                    mid: bool = False) -> np.ndarray:
    """Random headers: any selector and recycling option; scale codes anywhere (or near 2**0 with ``mid``)."""
    sel = rng.integers(0, 1 << fmt.selector_bits, n) if fmt.selector_bits else np.zeros(n, np.int64)
    rec = rng.integers(0, 1 << fmt.recycle_bits, n) if fmt.recycle_bits else np.zeros(n, np.int64)
    top = fmt.scale.nan_code if nan else fmt.scale.max_code
    if mid:
        one = fmt.scale.bias << fmt.scale.mbits
        spread = 6 << fmt.scale.mbits
        scale = np.clip(rng.integers(one - spread, one + spread + 1, n), 0, fmt.scale.max_code)
    else:
        scale = rng.integers(0, top + 1, n)
    return fmt.make_header(scale, sel, rec).astype(np.uint16)


def _search(fa: BlockFormat, fb: BlockFormat, rng: np.random.Generator, want: str, count: int,
            tries: int = 4096) -> BlockStream:
    """Random sparse block pairs whose golden result falls in class ``want`` (subnormal, overflow, ...)."""
    k = fa.k
    out = BlockStream.empty(k)
    ha = _random_headers(fa, tries, rng)
    hb = _random_headers(fb, tries, rng)
    ca = rng.integers(0, 1 << fa.element_width, (tries, k))
    cb = rng.integers(0, 1 << fb.element_width, (tries, k))
    keep = rng.random((tries, k)) < 2.0 / k  # sparse: a few products per block
    ca = np.where(keep, ca, 0)
    r = block_dot_bits(fa, ha, ca, fb, hb, cb).astype(np.int64)
    exp, man = (r >> 23) & 0xFF, r & 0x7FFFFF
    cls = {"subnormal": (exp == 0) & (man != 0), "overflow": (exp == 0xFF) & (man == 0)}[want]
    for i in np.flatnonzero(cls)[:count]:
        out.add(f"{want} result", ha[i], ca[i], hb[i], cb[i])
    return out


def dot_directed(fa: BlockFormat, fb: BlockFormat, rng: np.random.Generator) -> BlockStream:
    """Directed corner cases of spec 8 for the pair ``(fa, fb)``; cases a format cannot express are skipped."""
    k = fa.k
    s = BlockStream.empty(k)
    one_a = fa.make_header(_scale_code(fa, 0) or 0)
    one_b = fb.make_header(_scale_code(fb, 0) or 0)
    rand_a = lambda: rng.integers(0, 1 << fa.element_width, k)  # noqa: E731
    rand_b = lambda: rng.integers(0, 1 << fb.element_width, k)  # noqa: E731

    # All-zero blocks (random headers), and a zero times anything.
    s.add("all zero", _random_headers(fa, 1, rng)[0], _zeros(k), _random_headers(fb, 1, rng)[0], _zeros(k))
    s.add("zero x random", one_a, _zeros(k), one_b, rand_b())
    # NaN headers (spec 3): the whole block is NaN, whatever the codes.
    s.add("NaN header a", fa.make_header(fa.scale.nan_code), rand_a(), one_b, rand_b())
    s.add("NaN header b", one_a, rand_a(), fb.make_header(fb.scale.nan_code), rand_b())
    s.add("NaN header a, zero codes", fa.make_header(fa.scale.nan_code), _zeros(k), one_b, _zeros(k))
    # NaN and Inf elements (E4M3 NaN, E5M2 +-Inf / NaN), Inf * 0, +Inf + -Inf.
    for side, fmt in (("a", fa), ("b", fb)):
        for sel, elem in enumerate(fmt.elements):
            table = fmt.element_table(sel, 0)
            hdr = fmt.make_header(_scale_code(fmt, 0) or 0, sel)
            other_one = _code_of(fb if side == "a" else fa, 1.0) or 1
            nan_codes = np.flatnonzero(np.isnan(table))
            pinf, ninf = np.flatnonzero(table == np.inf), np.flatnonzero(table == -np.inf)
            ones = np.full(k, other_one)

            def put(name: str, mine: np.ndarray, theirs: np.ndarray, side: str = side, elem=elem, hdr=hdr) -> None:
                if side == "a":
                    s.add(f"{name} ({elem.name} in a)", hdr, mine, one_b, theirs)
                else:
                    s.add(f"{name} ({elem.name} in b)", one_a, theirs, hdr, mine)

            if nan_codes.size:
                mine = _zeros(k)
                mine[rng.integers(k)] = nan_codes[0]
                put("NaN element", mine, ones)
                put("NaN element x 0", mine, _zeros(k))
            if pinf.size:
                mine = _zeros(k)
                mine[0] = pinf[0]
                put("+Inf element", mine, ones)
                mine2 = mine.copy()
                mine2[0] = ninf[0]
                put("-Inf element", mine2, ones)
                put("Inf x 0", mine, _zeros(k))
                both = _zeros(k)
                both[0], both[1] = pinf[0], ninf[0]
                put("+Inf + -Inf", both, ones)
    # Maximum magnitudes: largest elements with the largest scales (overflow), and alternating signs.
    for sel_a in range(len(fa.elements)):
        for sel_b in range(len(fb.elements)):
            ma, mb = _max_code(fa, sel_a), _max_code(fb, sel_b)
            ha_max = fa.make_header(fa.scale.max_code, sel_a)
            hb_max = fb.make_header(fb.scale.max_code, sel_b)
            s.add("max magnitude, max scale", ha_max, np.full(k, ma), hb_max, np.full(k, mb))
            s.add("max magnitude, scale 1", fa.make_header(_scale_code(fa, 0) or 0, sel_a), np.full(k, ma),
                  fb.make_header(_scale_code(fb, 0) or 0, sel_b), np.full(k, mb))
            alt = np.where(np.arange(k) % 2 == 0, ma, _max_code(fa, sel_a, negative=True))
            s.add("max magnitude, alternating signs", ha_max, alt, hb_max, np.full(k, mb))
            # smallest scales, smallest elements (underflow towards zero / subnormal)
            s.add("min magnitude, min scale", fa.make_header(0, sel_a), np.full(k, _min_pos_code(fa, sel_a)),
                  fb.make_header(0, sel_b), np.full(k, _min_pos_code(fb, sel_b)))
    # Results that round to subnormal or overflow, found by searching random sparse blocks.
    s.add_stream(_search(fa, fb, rng, "subnormal", 4))
    s.add_stream(_search(fa, fb, rng, "overflow", 4))
    _ties_and_cancellation(fa, fb, s)
    # Recycled codes under every (selector, recycling option) pair.
    for side, fmt in (("a", fa), ("b", fb)):
        nz = fmt.elements[0].negative_zero_code
        if not fmt.recycling or nz is None:
            continue
        for sel in range(len(fmt.elements)):
            for rec in range(fmt.recycle_options):
                hdr = fmt.make_header(_scale_code(fmt, 0) or 0, sel, rec)
                mine = np.where(rng.random(k) < 0.5, nz, rng.integers(0, 1 << fmt.element_width, k))
                if side == "a":
                    s.add(f"recycled codes a (sel {sel}, option {rec})", hdr, mine, one_b, rand_b())
                else:
                    s.add(f"recycled codes b (sel {sel}, option {rec})", one_a, rand_a(), hdr, mine)
    # Every selector value (the undefined ones included) and recycling option, on both sides.
    for sel in range(1 << fa.selector_bits):
        for rec in range(1 << fa.recycle_bits):
            s.add(f"selector a={sel}, option {rec}", fa.make_header(_random_headers(fa, 1, rng, mid=True)[0] &
                                                                      fa.scale.nan_code, sel, rec),
                  rand_a(), _random_headers(fb, 1, rng, mid=True)[0], rand_b())
    for sel in range(1 << fb.selector_bits):
        for rec in range(1 << fb.recycle_bits):
            s.add(f"selector b={sel}, option {rec}", _random_headers(fa, 1, rng, mid=True)[0], rand_a(),
                  fb.make_header(_random_headers(fb, 1, rng, mid=True)[0] & fb.scale.nan_code, sel, rec), rand_b())
    return s


def _single_product_block(fa: BlockFormat, fb: BlockFormat, exp: int, negative: bool = False,
                          lane: int = 0) -> tuple[int, np.ndarray, int, np.ndarray] | None:
    """A block pair whose exact result is ``+-2**exp`` (one non-zero product), or None if not expressible."""
    k = fa.k
    ea, eb = _pow2_exponents(fa), _pow2_exponents(fb)
    if not ea or not eb:
        return None
    sa_codes = {e: c for e in range(-160, 160) if (c := _scale_code(fa, e)) is not None}
    sb_codes = {e: c for e in range(-160, 160) if (c := _scale_code(fb, e)) is not None}
    for xa, ca_code in ea.items():
        for xb, cb_code in eb.items():
            rest = exp - xa - xb
            for sa, ha in sa_codes.items():
                if rest - sa in sb_codes:
                    ca, cb = _zeros(k), _zeros(k)
                    ca[lane], cb[lane] = ca_code, cb_code
                    if negative:
                        neg = _code_of(fa, -(2.0**xa))
                        if neg is None:
                            return None
                        ca[lane] = neg
                    return fa.make_header(ha), ca, fb.make_header(sb_codes[rest - sa]), cb
    return None


def _ties_and_cancellation(fa: BlockFormat, fb: BlockFormat, s: BlockStream) -> None:
    """Exact ties in the block rounding and in the fp32 accumulation; catastrophic cancellation."""
    k = fa.k

    def reduction(name: str, parts: list[tuple[int, bool]]) -> None:
        blocks = [_single_product_block(fa, fb, e, neg) for e, neg in parts]
        if any(b is None for b in blocks):
            return
        s.add(name, [b[0] for b in blocks], np.stack([b[1] for b in blocks]), [b[2] for b in blocks],
              np.stack([b[3] for b in blocks]))

    # fp32 accumulation ties: 1 + 2**-24 stays 1 (even); (1 + 2**-23) + 2**-24 goes up to 1 + 2**-22.
    reduction("accumulation tie to even (down)", [(0, False), (-24, False)])
    reduction("accumulation tie to even (up)", [(0, False), (-23, False), (-24, False)])
    reduction("accumulation cancellation", [(20, False), (20, True), (-20, False)])
    reduction("accumulation absorption", [(20, False), (-20, False), (20, True)])
    # Ties inside one block's rounding: products 2**e, 2**(e-23), 2**(e-24) in one block.
    ea, eb = _pow2_exponents(fa), _pow2_exponents(fb)
    prods: dict[int, tuple[int, int]] = {}
    for xa, ca in ea.items():
        for xb, cb in eb.items():
            prods.setdefault(xa + xb, (ca, cb))
    if prods:
        top = max(prods)
        hdr_a, hdr_b = fa.make_header(_scale_code(fa, 0) or 0), fb.make_header(_scale_code(fb, 0) or 0)
        for name, offsets in (("block tie to even (down)", (0, -24)), ("block tie to even (up)", (0, -23, -24)),
                              ("block rounding just above tie", (0, -24, -30))):
            if all(top + o in prods for o in offsets):
                ca, cb = _zeros(k), _zeros(k)
                for lane, o in enumerate(offsets):
                    ca[lane], cb[lane] = prods[top + o]
                s.add(name, hdr_a, ca, hdr_b, cb)
        # Catastrophic cancellation inside a block: +max*max - max*max + min*min.
        ma, mb = _max_code(fa), _max_code(fb)
        na = _max_code(fa, negative=True)
        ca, cb = _zeros(k), _zeros(k)
        ca[:3] = (ma, na, _min_pos_code(fa))
        cb[:3] = (mb, mb, _min_pos_code(fb))
        s.add("block cancellation", hdr_a, ca, hdr_b, cb)


# --- dot: random blocks -----------------------------------------------------------------------------
@cache
def _minilm() -> np.ndarray:
    from nxfp_hw.tensors import minilm_weights

    return minilm_weights()


def _floats(dist: str, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    if dist == "gaussian":
        return rng.standard_normal((n, k)) * 10.0 ** rng.uniform(-3, 3, (n, 1))
    if dist == "student_t":
        return rng.standard_t(2.0, (n, k)) * 10.0 ** rng.uniform(-2, 2, (n, 1))
    if dist == "minilm":
        w = _minilm()
        starts = rng.integers(0, (w.size - k) // k, n) * k
        return w[starts[:, None] + np.arange(k)[None, :]].astype(np.float64)
    raise ValueError(f"unknown distribution {dist!r}; expected one of {', '.join(DISTRIBUTIONS)}")


def random_blocks(fmt: BlockFormat, dist: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random blocks of ``fmt`` from distribution ``dist`` (quantized by the golden model, or raw codes)."""
    if dist == "codes":
        return _random_headers(fmt, n, rng, mid=True), rng.integers(0, 1 << fmt.element_width, (n, fmt.k))
    from nxfp_hw.golden.quantize import quantize

    q = quantize(_floats(dist, n, fmt.k, rng), fmt)
    return q.headers.reshape(n), q.codes.reshape(n, fmt.k)


def dot_random(fa: BlockFormat, fb: BlockFormat, nblocks: int, rng: np.random.Generator,
               distributions: tuple[str, ...] = DISTRIBUTIONS, max_reduction: int = 4) -> BlockStream:
    """``nblocks`` random block pairs, split evenly over ``distributions``, in reductions of 1..``max_reduction``."""
    s = BlockStream.empty(fa.k)
    per = [nblocks // len(distributions) + (i < nblocks % len(distributions)) for i in range(len(distributions))]
    for dist, n in zip(distributions, per, strict=False):
        if n == 0:
            continue
        ha, ca = random_blocks(fa, dist, n, rng)
        hb, cb = random_blocks(fb, dist, n, rng)
        last = np.zeros(n, bool)
        pos = -1
        while pos < n - 1:
            pos = min(pos + int(rng.integers(1, max_reduction + 1)), n - 1)
            last[pos] = True
        s.add(f"random {dist}", ha, ca, hb, cb, last)
    return s


def dot_vectors(fa: BlockFormat, fb: BlockFormat, lanes: int, blocks: BlockStream, rng: np.random.Generator, *,
                reset_prefix: int | None = None) -> VectorSet:
    """Beats of the block stream (``k/lanes`` per block pair; headers on the first beat of a block, random
    junk on the others, which the engine must ignore) with golden results (spec 8)."""
    k = fa.k
    if k % lanes:
        raise ValueError(f"lanes must divide k={k}, got {lanes}")
    if len(blocks) == 0 or not blocks.last[-1]:
        raise ValueError("the block stream must be non-empty and end with a last block")
    per = k // lanes
    nb = len(blocks)
    first = np.zeros((nb, per), bool)
    first[:, 0] = True

    def beat_headers(h: np.ndarray, fmt: BlockFormat) -> np.ndarray:
        junk = rng.integers(0, 1 << fmt.header_bits, (nb, per))
        return np.where(first, h[:, None], junk).reshape(-1).astype(np.uint16)

    last = np.zeros((nb, per), bool)
    last[:, -1] = blocks.last
    inputs = {
        "a_header": beat_headers(blocks.ha, fa),
        "a_codes": blocks.ca.reshape(nb * per, lanes),
        "b_header": beat_headers(blocks.hb, fb),
        "b_codes": blocks.cb.reshape(nb * per, lanes),
        "last": last.reshape(-1).astype(np.uint8),
    }
    block_results = block_dot_bits(fa, blocks.ha, blocks.ca, fb, blocks.hb, blocks.cb)
    results = dot_accumulate_bits(block_results, blocks.last)
    ends = np.flatnonzero(blocks.last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    if reset_prefix is None:  # stop in the middle of the second reduction (or the first)
        reset_prefix = int(min(nb * per - 1, (ends[0] + 1) * per + per // 2 + 1))
    aux = {"ha": blocks.ha, "ca": blocks.ca, "hb": blocks.hb, "cb": blocks.cb, "block_results": block_results,
           "red_start": starts, "red_end": ends, "case": np.array(blocks.case)}
    meta = {"unit": "dot", "compare_field": "result", "kind": "fp32",
            "operands": {"a": ["aux.ha", "aux.ca"], "b": ["aux.hb", "aux.cb"]},
            "formats": {"a": fa.to_string(), "b": fb.to_string()}, "reset_prefix": reset_prefix,
            "blocks": nb, "beats_per_block": per}
    return VectorSet(inputs, {"result": results}, aux, meta)
