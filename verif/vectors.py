"""Stimulus and golden expectations for the decode, dot and encode regressions (launching-process side).

A :class:`VectorSet` is what a testbench consumes: input payload fields per beat (``in.<field>``),
expected output fields per transaction (``out.<field>``), auxiliary arrays for mismatch messages
(``aux.<name>``) and a JSON ``meta``. Expectations always come from the golden model
(``nxfp_hw.golden``), never from the RTL.

- decode: :func:`decode_exhaustive` feeds every (header, code) pair so that every lane sees every
  code (spec 7);
- dot: :func:`dot_directed` builds corner cases (spec 8: NaN/Inf, Inf*0, +Inf + -Inf, maximum
  magnitudes, subnormal and overflowing results, exact ties, cancellation, recycled codes, every
  selector), :func:`dot_mode_directed` reductions that tell the accumulation modes of spec 8.1
  apart (cancellation, ties at every rounding point, overflow brought back, signed zeros, leaving
  the ``exact`` window for a given ``guard_bits``), :func:`dot_random` seeded blocks from Gaussian,
  Student-t, MiniLM weights (through the golden quantizer) and raw random codes; :func:`dot_vectors`
  splits blocks into beats and computes the results of the unit's accumulation mode
  (:func:`~nxfp_hw.golden.dot.reduce_bits`); :func:`dot_mode_of` reads the mode from a manifest;
- encode: :func:`encode_directed` builds the blocks of spec 5's rules (zeros of both signs, NaN/Inf,
  subnormal inputs, float32 extremes, saturation, negatives rounding to zero, exact ties at every
  rounding midpoint and one ulp either side, exact scale boundaries and one ulp either side, pairs
  tied in the selection metric), :func:`encode_random` seeded Gaussian / Student-t / MiniLM blocks;
  :func:`encode_vectors` splits blocks into input beats (fp32 or bf16 bit patterns) and quantizes them
  with the golden model and the encoder's metric (:func:`encoder_metric`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from nxfp_hw.formats import BlockFormat
from nxfp_hw.golden.decode import decode_bits
from nxfp_hw.golden.dot import (
    ACC_MODES,
    DEFAULT_GUARD_BITS,
    block_dot_bits,
    block_exact_values,
    dot_accumulate_bits,
    exact_window,
    reduce_bits,
)

__all__ = ["BlockStream", "DISTRIBUTIONS", "ENCODE_DISTRIBUTIONS", "ENCODE_INPUTS", "VectorSet", "decode_exhaustive",
           "decode_vectors", "dot_directed", "dot_mode_directed", "dot_mode_of", "dot_near_cancel", "dot_random",
           "dot_vectors",
           "encode_directed", "encode_pairs", "encode_random", "encode_vectors", "encoder_metric", "load_vector_set",
           "pair_errors", "pair_format", "savez_atomic"]

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
    except OSError as exc:  # a full disk or a file size limit: one message naming the file
        from nxfp_hw.paths import write_error

        raise write_error(exc, path) from None
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


# --- dot: accumulation modes (spec 8.1) -----------------------------------------------------------
@dataclass(frozen=True)
class _Pow2Pair:
    """Products that are powers of two for one (selector a, selector b): exponent -> (code a, code b)."""

    sel_a: int
    sel_b: int
    pos: dict[int, tuple[int, int]]
    neg: dict[int, tuple[int, int]]


def _signed_pow2(fmt: BlockFormat, sel: int) -> tuple[dict[int, int], dict[int, int]]:
    """``({e: code of +2**e}, {e: code of -2**e})`` under selector ``sel`` (recycling option 0)."""
    table = fmt.element_table(sel, 0)
    pos: dict[int, int] = {}
    neg: dict[int, int] = {}
    for code in np.flatnonzero(np.isfinite(table) & (table != 0)):
        m, e = np.frexp(abs(table[code]))
        if m == 0.5:
            (neg if table[code] < 0 else pos).setdefault(int(e) - 1, int(code))
    return pos, neg


@cache
def _pow2_pairs(fa: BlockFormat, fb: BlockFormat) -> tuple[_Pow2Pair, ...]:
    out = []
    for sel_a in range(len(fa.elements)):
        pa, na = _signed_pow2(fa, sel_a)
        for sel_b in range(len(fb.elements)):
            pb, nb = _signed_pow2(fb, sel_b)
            pos: dict[int, tuple[int, int]] = {}
            neg: dict[int, tuple[int, int]] = {}
            for ea, ca in sorted(pa.items()):
                for eb, cb in sorted(pb.items()):
                    pos.setdefault(ea + eb, (ca, cb))
                for eb, cb in sorted(nb.items()):
                    neg.setdefault(ea + eb, (ca, cb))
            for ea, ca in sorted(na.items()):
                for eb, cb in sorted(pb.items()):
                    neg.setdefault(ea + eb, (ca, cb))
            out.append(_Pow2Pair(sel_a, sel_b, pos, neg))
    return tuple(out)


@cache
def _scale_sums(fa: BlockFormat, fb: BlockFormat) -> dict[int, tuple[int, int]]:
    """``{ta + tb: (scale code a, scale code b)}`` over the scale codes of value exactly ``2**t``, moderate first."""
    def pow2(fmt: BlockFormat) -> dict[int, int]:
        return {e: c for e in range(-200, 200) if (c := _scale_code(fmt, e)) is not None}

    sa, sb = pow2(fa), pow2(fb)
    out: dict[int, tuple[int, int]] = {}
    for ta in sorted(sa, key=abs):
        for tb in sorted(sb, key=abs):
            out.setdefault(ta + tb, (sa[ta], sb[tb]))
    return out


Terms = list[tuple[int, bool]]  # one product +-2**e per term: (e, negative)


def _offsets(pair: _Pow2Pair, terms: Terms) -> set[int]:
    """Every ``d`` such that the products ``2**(e_i - d)`` (with their signs) exist for ``pair``."""
    d: set[int] | None = None
    for e, negative in terms:
        here = {e - p for p in (pair.neg if negative else pair.pos)}
        d = here if d is None else d & here
    return d or set()


def _block_exponents(fa: BlockFormat, fb: BlockFormat, terms: Terms) -> set[int]:
    """Shifts ``E`` for which a block with the products ``+-2**(E + e_i)`` exists."""
    sums = _scale_sums(fa, fb)
    return {t + d for pair in _pow2_pairs(fa, fb) for d in _offsets(pair, terms) for t in sums}


def _place(fa: BlockFormat, fb: BlockFormat, terms: Terms) -> tuple[int, np.ndarray, int, np.ndarray] | None:
    """One block pair whose exact value is ``sum +-2**e_i`` (one lane per term, spread over the block)."""
    k = fa.k
    if len(terms) > k:
        return None
    sums = _scale_sums(fa, fb)
    lanes = np.linspace(0, k - 1, len(terms)).round().astype(int) if len(terms) > 1 else np.zeros(1, int)
    for pair in _pow2_pairs(fa, fb):
        for t in sums:
            if not all(e - t in (pair.neg if n else pair.pos) for e, n in terms):
                continue
            ca, cb = _zeros(k), _zeros(k)
            for lane, (e, negative) in zip(lanes, terms, strict=True):
                ca[lane], cb[lane] = (pair.neg if negative else pair.pos)[e - t]
            code_a, code_b = sums[t]
            return fa.make_header(code_a, pair.sel_a), ca, fb.make_header(code_b, pair.sel_b), cb
    return None


def _add_case(s: BlockStream, fa: BlockFormat, fb: BlockFormat, name: str, blocks: list[Terms | None], *,
              shift: tuple[int, int] | None = None) -> bool:
    """Append one reduction of blocks with chosen exact values (``None``: an all-zero block). With ``shift =
    (lo, hi)`` the exponents are relative to a common ``2**E``, ``E`` in ``lo..hi`` (nearest 0 first)."""
    e = 0
    if shift is not None:
        ok = set(range(shift[0], shift[1] + 1))
        for terms in blocks:
            if terms is not None:
                ok &= _block_exponents(fa, fb, terms)
        if not ok:
            return False
        e = min(ok, key=lambda x: (abs(x), x))
    placed = []
    k = fa.k
    zero = (fa.make_header(_scale_code(fa, 0) or 0), _zeros(k), fb.make_header(_scale_code(fb, 0) or 0), _zeros(k))
    for terms in blocks:
        if terms is None:
            placed.append(zero)
            continue
        b = _place(fa, fb, [(x + e, n) for x, n in terms])
        if b is None:
            return False
        placed.append(b)
    s.add(name, [b[0] for b in placed], np.stack([b[1] for b in placed]), [b[2] for b in placed],
          np.stack([b[3] for b in placed]))
    return True


def _max_value_blocks(fa: BlockFormat, fb: BlockFormat) -> list[tuple[int, int, np.ndarray, int, np.ndarray]]:
    """The largest positive and the most negative finite block values: ``(value units, ha, ca, hb, cb)``."""
    k = fa.k
    out = []
    for sel_a in range(len(fa.elements)):
        for sel_b in range(len(fb.elements)):
            ha, hb = fa.make_header(fa.scale.max_code, sel_a), fb.make_header(fb.scale.max_code, sel_b)
            for na in (False, True):
                ca = np.full(k, _max_code(fa, sel_a, negative=na))
                cb = np.full(k, _max_code(fb, sel_b))
                v = block_exact_values(fa, np.array([ha]), ca[None], fb, np.array([hb]), cb[None]).mag_signed[0]
                out.append((int(v), ha, ca, hb, cb))
    return [max(out, key=lambda b: b[0]), min(out, key=lambda b: b[0])]


def dot_mode_directed(fa: BlockFormat, fb: BlockFormat, rng: np.random.Generator, *,
                      guard_bits: int = DEFAULT_GUARD_BITS, max_window_blocks: int = 64,
                      searched: int = 2) -> BlockStream:
    """Reductions that only the right accumulation mode (spec 8.1) gets right, for every mode, plus the
    signed-zero and NaN/Inf corners of the modes; cases the format pair cannot express are skipped.

    Labels start with the mode they single out (``fp32:``, ``fused:``, ``exact:``; ``modes:`` for corners
    where all agree). Constructed cases use products that are powers of two; ``searched`` more per mode
    come from random dense blocks (rounding through the scales' nano-mantissas, which powers of two miss).
    Window cases (``exact window: ...``) take ``guard_bits``: reductions of the largest block value that
    just fit, just leave (NaN), and leave and come back (still NaN), when they need at most
    ``max_window_blocks`` blocks.
    """
    s = BlockStream.empty(fa.k)
    normal = (-96, 100)  # a common shift keeping every value a normal fp32 number

    def case(name: str, blocks: list[Terms | None], shift: tuple[int, int] | None = normal) -> None:
        _add_case(s, fa, fb, name, blocks, shift=shift)

    p, m = False, True
    # fp32 (two roundings per block) differs from fused and exact
    case("fp32: block rounding tie, [2^-24], [1 + 2^-24]", [[(-24, p)], [(0, p), (-24, p)]])
    case("fp32: block rounds away a cancelling tail, [1], [-1 + 2^-25]", [[(0, p)], [(0, m), (-25, p)]])
    case("fp32: subnormal block tie, [2^-149], [2^-150]", [[(-149, p)], [(-150, p)]], None)
    case("fp32: overflowing block after a negative one, [-2^127], [2^128]", [[(127, m)], [(128, p)]], None)
    tiny = (-175, -151)  # below half the smallest subnormal
    case("fp32: negative value rounding to zero (fp32 +0, fused/exact -0)", [[(0, m)]], tiny)
    # fused (one rounding per block) differs from fp32 and exact
    case("fused: tie only fused sees, [8], [-7 + 3*2^-24], [-2^-24]",
         [[(3, p)], [(2, m), (1, m), (0, m), (-23, p), (-24, p)], [(-24, m)]])
    case("fused: cancellation, [1], [2^-30], [-1 + 2^-25]", [[(0, p)], [(-30, p)], [(0, m), (-25, p)]])
    case("fused: subnormal ties, [2^-149], [2^-150], [-2^-150]", [[(-149, p)], [(-150, p)], [(-150, m)]], None)
    case("fused: overflow undone, then two half-ulp ties, [-2^127], [2^128], [2^103], [2^103]",
         [[(127, m)], [(128, p)], [(103, p)], [(103, p)]], None)
    # exact (one rounding per reduction) differs from fp32 and fused
    case("exact: cancellation big + small - big, [1], [2^-30], [-1]", [[(0, p)], [(-30, p)], [(0, m)]])
    case("exact: final rounding tie, [1], [2^-23], [2^-25], [2^-25]",
         [[(0, p)], [(-23, p)], [(-25, p)], [(-25, p)]])
    case("exact: two half-ulp blocks add up, [1], [2^-24], [2^-24]", [[(0, p)], [(-24, p)], [(-24, p)]])
    case("exact: overflow brought back by a later block, [2^128], [-2^127]", [[(128, p)], [(127, m)]], None)
    case("exact: -0 survives a zero block, [-2^-151 or less], [0] (fused +0)", [[(0, m)], None], tiny)
    case("exact: subnormal half ulps, [2^-150] x 2, [2^-149]", [[(-150, p)], [(-150, p)], [(-149, p)]], None)
    # corners where the modes agree
    case("modes: exact cancellation is +0, [-1], [1]", [[(0, m)], [(0, p)]])
    case("modes: zero blocks only", [None, None], None)
    _mode_specials(s, fa, fb)
    _window_cases(s, fa, fb, guard_bits, max_window_blocks)
    if searched:
        s.add_stream(_mode_search(fa, fb, rng, searched, guard_bits))
    return s


def _mode_search(fa: BlockFormat, fb: BlockFormat, rng: np.random.Generator, count: int, guard_bits: int,
                 pool: int = 768) -> BlockStream:
    """Random 2- and 3-block reductions (dense codes, nearby scales) on which one mode differs from both others."""
    ha, ca = random_blocks(fa, "codes", pool, rng)
    hb, cb = random_blocks(fb, "codes", pool, rng)
    ends = np.cumsum(rng.integers(2, 4, pool)) - 1
    last = np.zeros(pool, bool)
    last[ends[ends < pool]] = True
    last[-1] = True
    got = np.stack([reduce_bits(fa, ha, ca, fb, hb, cb, last, mode=m, guard_bits=guard_bits) for m in ACC_MODES])
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    out = BlockStream.empty(fa.k)
    for j, mode in enumerate(ACC_MODES):
        others = [i for i in range(len(ACC_MODES)) if i != j]
        hits = np.flatnonzero((got[j] != got[others[0]]) & (got[j] != got[others[1]]))
        for r in hits[:count]:
            sl = slice(starts[r], ends[r] + 1)
            out.add(f"{mode}: found by search", ha[sl], ca[sl], hb[sl], cb[sl])
    return out


def _mode_specials(s: BlockStream, fa: BlockFormat, fb: BlockFormat) -> None:
    """Inf and NaN blocks across a reduction, overflow then -Inf (fp32/fused NaN, exact -Inf)."""
    k = fa.k
    big = _max_value_blocks(fa, fb)[0]
    for side, fmt in (("a", fa), ("b", fb)):
        for sel in range(len(fmt.elements)):
            table = fmt.element_table(sel, 0)
            pinf, ninf, nan = (np.flatnonzero(table == np.inf), np.flatnonzero(table == -np.inf),
                               np.flatnonzero(np.isnan(table)))
            other = fb if side == "a" else fa
            one = _max_code(other)
            hdr = fmt.make_header(_scale_code(fmt, 0) or 0, sel)
            hdr_other = other.make_header(_scale_code(other, 0) or 0)

            def special(code: int, hdr=hdr, hdr_other=hdr_other, one=one, side=side) -> tuple:
                mine, theirs = _zeros(k), _zeros(k)
                mine[0], theirs[0] = code, one
                return (hdr, mine, hdr_other, theirs) if side == "a" else (hdr_other, theirs, hdr, mine)

            def add(name: str, blocks: list[tuple]) -> None:
                s.add(name, [b[0] for b in blocks], np.stack([b[1] for b in blocks]), [b[2] for b in blocks],
                      np.stack([b[3] for b in blocks]))

            label = f"({fmt.elements[sel].name} in {side})"
            if pinf.size and ninf.size:
                add(f"modes: +Inf block then -Inf block {label}", [special(pinf[0]), special(ninf[0])])
                add(f"modes: -Inf block then a finite block {label}", [special(ninf[0]), big[1:]])
                add(f"exact: overflowing block then -Inf (fp32/fused NaN) {label}", [big[1:], special(ninf[0])])
            if nan.size:
                add(f"modes: finite, NaN, finite blocks {label}", [big[1:], special(nan[0]), big[1:]])


def _window_cases(s: BlockStream, fa: BlockFormat, fb: BlockFormat, guard_bits: int, limit: int) -> None:
    """Reductions of the largest block values at the edges of the ``exact`` window of ``guard_bits``."""
    width = exact_window(fa, fb, guard_bits).width
    top, bottom = _max_value_blocks(fa, fb)

    def add(name: str, blocks: list[tuple]) -> None:
        s.add(name, [b[1] for b in blocks], np.stack([b[2] for b in blocks]), [b[3] for b in blocks],
              np.stack([b[4] for b in blocks]))

    fit_up = ((1 << (width - 1)) - 1) // top[0] if top[0] > 0 else 0
    fit_down = (1 << (width - 1)) // -bottom[0] if bottom[0] < 0 else 0
    g = f"guard bits {guard_bits}"
    if top[0] > 0 and 0 < fit_up < limit:
        add(f"exact window: {fit_up} largest blocks just fit ({g})", [top] * fit_up)
        add(f"exact window: {fit_up + 1} largest blocks leave it: NaN ({g})", [top] * (fit_up + 1))
        if bottom[0] < 0 and fit_up + 1 + (top[0] * (fit_up + 1)) // -bottom[0] < 2 * limit:
            back = (top[0] * (fit_up + 1)) // -bottom[0]
            add(f"exact window: out and back in ({fit_up + 1} largest, {back} most negative blocks): NaN ({g})",
                [top] * (fit_up + 1) + [bottom] * back)
    if bottom[0] < 0 and 0 < fit_down < limit:
        add(f"exact window: {fit_down} most negative blocks just fit ({g})", [bottom] * fit_down)
        add(f"exact window: {fit_down + 1} most negative blocks leave it: NaN ({g})", [bottom] * (fit_down + 1))


def dot_near_cancel(fa: BlockFormat, fb: BlockFormat, nreductions: int, rng: np.random.Generator) -> BlockStream:
    """Random reductions of 2..4 blocks in which a block is followed by its negation with a few lanes
    changed (and the same headers): the sums cancel to a small remainder, where the modes round apart."""
    k = fa.k
    s = BlockStream.empty(k)
    if nreductions <= 0:
        return s
    ha, ca = random_blocks(fa, "codes", nreductions, rng)
    hb, cb = random_blocks(fb, "codes", nreductions, rng)
    sel, rec = _header_sel_rec(fa, ha)
    for i in range(nreductions):
        neg = _negate_codes(fa, int(sel[i]), int(rec[i]), np.asarray(ca[i]))
        change = rng.random(k) < 2.0 / k
        neg = np.where(change, rng.integers(0, 1 << fa.element_width, k), neg)
        n = int(rng.integers(2, 5))
        rows = [0, 1] + [int(rng.integers(0, 2)) for _ in range(n - 2)]
        a_rows = np.stack([ca[i], neg])[rows]
        s.add("random near-cancelling blocks", np.full(n, ha[i]), a_rows, np.full(n, hb[i]), np.tile(cb[i], (n, 1)))
    return s


def _header_sel_rec(fmt: BlockFormat, headers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(selector, recycling option)`` of every header, clamped as the decoder does."""
    from nxfp_hw.golden.decode import decode_header

    hp = decode_header(fmt, np.asarray(headers))
    return hp.selector, hp.recycle


def _negate_codes(fmt: BlockFormat, sel: int, rec: int, codes: np.ndarray) -> np.ndarray:
    """Codes of the negated element values under (``sel``, ``rec``); a value without a negation is kept."""
    table = fmt.element_table(sel, rec)
    out = codes.copy()
    for j, c in enumerate(codes):
        v = table[int(c)]
        if np.isfinite(v):
            hits = np.flatnonzero(table == -v)
            if hits.size:
                out[j] = hits[0]
    return out


def dot_mode_of(manifest: dict[str, Any]) -> tuple[str, int]:
    """``(accumulation mode, guard bits)`` of a dot engine from its manifest: the ``accumulation`` object
    (or string), else ``config.accumulation`` / ``config.guard_bits``; ``fp32`` and 16 when absent."""
    acc = manifest.get("accumulation")
    config = manifest.get("config") or {}
    mode, guard = None, None
    if isinstance(acc, dict):
        mode, guard = acc.get("mode"), acc.get("guard_bits")
    elif isinstance(acc, str):
        mode = acc
    mode = mode or config.get("accumulation") or "fp32"
    guard = guard if guard is not None else config.get("guard_bits", DEFAULT_GUARD_BITS)
    if mode not in ACC_MODES:
        raise ValueError(f"manifest of {manifest.get('module', '?')}: accumulation mode {mode!r} is not one of "
                         f"{', '.join(ACC_MODES)}")
    if isinstance(guard, bool) or not isinstance(guard, int) or guard < 0:
        raise ValueError(f"manifest of {manifest.get('module', '?')}: guard_bits {guard!r} is not an integer >= 0")
    return mode, guard


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
                mode: str = "fp32", guard_bits: int = DEFAULT_GUARD_BITS, reset_prefix: int | None = None) -> VectorSet:
    """Beats of the block stream (``k/lanes`` per block pair; headers on the first beat of a block, random
    junk on the others, which the engine must ignore) with golden results of accumulation ``mode`` (spec 8,
    8.1; ``guard_bits`` of the ``exact`` window). ``aux`` also holds every block's fp32 result and exact value
    and every reduction's result in each mode (for mismatch messages)."""
    if mode not in ACC_MODES:
        raise ValueError(f"mode must be one of {', '.join(ACC_MODES)}, got {mode!r}")
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
    by_mode = np.stack([dot_accumulate_bits(block_results, blocks.last) if m == "fp32" else  # fp32: spec 8
                        reduce_bits(fa, blocks.ha, blocks.ca, fb, blocks.hb, blocks.cb, blocks.last, mode=m,
                                    guard_bits=guard_bits) for m in ACC_MODES], axis=1)
    results = by_mode[:, ACC_MODES.index(mode)].copy()
    values = block_exact_values(fa, blocks.ha, blocks.ca, fb, blocks.hb, blocks.cb)
    ends = np.flatnonzero(blocks.last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    if reset_prefix is None:  # stop in the middle of the second reduction (or the first)
        reset_prefix = int(min(nb * per - 1, (ends[0] + 1) * per + per // 2 + 1))
    aux = {"ha": blocks.ha, "ca": blocks.ca, "hb": blocks.hb, "cb": blocks.cb, "block_results": block_results,
           "block_values": np.array([str(int(v)) for v in values.mag_signed]), "mode_results": by_mode,
           "red_start": starts, "red_end": ends, "case": np.array(blocks.case)}
    meta = {"unit": "dot", "compare_field": "result", "kind": "fp32",
            "operands": {"a": ["aux.ha", "aux.ca"], "b": ["aux.hb", "aux.cb"]},
            "formats": {"a": fa.to_string(), "b": fb.to_string()}, "reset_prefix": reset_prefix,
            "blocks": nb, "beats_per_block": per, "accumulation": mode, "guard_bits": guard_bits,
            "modes": list(ACC_MODES), "value_lsb_exponent": values.lsb_exponent}
    return VectorSet(inputs, {"result": results}, aux, meta)


# --- encode ------------------------------------------------------------------------------------------
#: Input number formats of the encode unit: name -> (NumPy dtype name, bit-pattern dtype).
ENCODE_INPUTS = {"fp32": (np.float32, np.uint32), "bf16": (ml_dtypes.bfloat16, np.uint16)}
ENCODE_DISTRIBUTIONS = ("gaussian", "student_t", "minilm")


def encoder_metric(fmt: BlockFormat, select: str | None = None) -> str:
    """The golden selection metric of the encode unit (docs/encoder.md) under selection policy ``select``
    (default ``scaled``: ``"hw-scaled"``) when the block format has more than one (candidate, recycling option)
    pair, else ``"float64"`` (then the metric is never consulted and both give the same bits)."""
    from nxfp_hw.golden.select import select_metric

    return select_metric(fmt, select)


def encode_pairs(fmt: BlockFormat) -> list[tuple[int, int]]:
    """Every (candidate, recycling option) pair in the encoder's selection order (spec 5.4)."""
    return [(c, j) for c in range(len(fmt.elements)) for j in range(max(fmt.recycle_options, 1))]


def pair_format(fmt: BlockFormat, cand: int, option: int) -> BlockFormat:
    """The single-pair block format of one (candidate, recycling option) pair of ``fmt`` (same scale,
    ``k`` and rule; a fixed recycled value ``R`` without header bit): its quantization is what ``fmt``'s
    encoder computes for that pair before the selection."""
    from nxfp_hw.formats import parse_format

    text = f"elem={fmt.elements[cand].name},scale={fmt.scale.name},k={fmt.k},rule={fmt.rule}"
    if fmt.recycling:
        text += f",cr={float(fmt.recycling[cand][option])!r}"
    return parse_format(text)


def pair_errors(fmt: BlockFormat, x: np.ndarray, select: str | None = None) -> np.ndarray:
    """What the encoder under policy ``select`` (default: the default policy) compares, ``(n, pairs)``, for
    finite blocks ``x`` ``(n, k)`` (spec 5.4): policy ``scaled``'s keys, else the ``hw`` block error."""
    from nxfp_hw.golden.hw_metric import block_error_hw
    from nxfp_hw.golden.quantize import dequantize_exact, quantize
    from nxfp_hw.golden.select import scaled_pair_keys

    x = np.asarray(x, dtype=np.float64)
    if encoder_metric(fmt, select) == "hw-scaled":
        return scaled_pair_keys(fmt, x)[0]
    errs = [block_error_hw(x, dequantize_exact(quantize(x, pair_format(fmt, c, j)))) for c, j in encode_pairs(fmt)]
    return np.stack(errs, axis=1)


def _input_exact(v: np.ndarray, input_format: str) -> np.ndarray:
    """True where ``v`` (float64) is exactly representable in the input format."""
    dt = ENCODE_INPUTS[input_format][0]
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(v, np.float64).astype(dt).astype(np.float64) == v


def _ulp_step(v: float, direction: int, input_format: str) -> float:
    """The input-format neighbour of the positive finite ``v`` (``direction`` +1 up, -1 down)."""
    dt, bits = ENCODE_INPUTS[input_format]
    b = np.array([v], dtype=dt).view(bits).astype(np.int64) + direction
    return float(b.astype(bits).view(dt).astype(np.float64)[0])


def _directed_scale_codes(fmt: BlockFormat) -> list[int]:
    """A few scale codes: the smallest two, the one nearest 1.0, and the largest two."""
    vals = fmt.scale.code_values()[: fmt.scale.max_code + 1]
    one = int(np.argmin(np.abs(np.log2(vals))))
    return sorted({0, 1, one, fmt.scale.max_code - 1, fmt.scale.max_code})


def encode_directed(fmt: BlockFormat, rng: np.random.Generator, input_format: str = "fp32",
                    tie_search: int = 2048) -> tuple[np.ndarray, list[str]]:
    """Directed blocks of spec 5 (float64 ``(n, k)`` and a label per block): zeros of both signs, NaN and
    Inf, subnormal inputs, float32 extremes and saturation, negatives rounding to zero, exact ties at
    every rounding midpoint (and one input ulp either side) for every pair at a few scales, exact scale
    boundaries and one ulp either side, and blocks whose pairs tie in the selection metric."""
    k = fmt.k
    blocks: list[np.ndarray] = []
    cases: list[str] = []
    f32_max = float(np.finfo(np.float32).max)
    top_input = f32_max if input_format == "fp32" else float(ml_dtypes.finfo(ml_dtypes.bfloat16).max)

    def add(name: str, vals, *, fill: float | None = None) -> None:
        v = np.asarray(vals, dtype=np.float64).reshape(-1)
        if fill is None:
            row = np.resize(v, k)
        else:
            row = np.full(k, fill)
            row[: min(v.size, k)] = v[:k]
        blocks.append(row)
        cases.append(name)

    def noise(scale: float, n: int = k) -> np.ndarray:
        return rng.standard_normal(n) * scale

    add("all +0", [0.0])
    add("all -0", [-0.0])
    add("-0 and +0 with one value", np.where(np.arange(k) % 2 == 0, -0.0, 0.0) + np.eye(k)[3] * 1.5)
    add("NaN in block", np.where(np.arange(k) == rng.integers(k), np.nan, noise(1.0)))
    add("+Inf in block", np.where(np.arange(k) == rng.integers(k), np.inf, noise(1.0)))
    add("-Inf in block", np.where(np.arange(k) == rng.integers(k), -np.inf, noise(1e-3)))
    add("NaN, Inf and -0 only", [np.nan, np.inf, -np.inf], fill=-0.0)
    sub = np.ldexp(rng.integers(-(2**23) + 1, 2**23, k).astype(np.float64), -149)
    add("all subnormal inputs", sub)
    add("smallest subnormal", [2.0**-149, -(2.0**-149)], fill=0.0)
    add("subnormals under a small normal", np.concatenate([[2.0**-120], np.ldexp(rng.integers(-99, 99, k - 1), -149)]))
    add("float32 maximum", [top_input, -top_input, top_input / 3, 1.0])
    add("top scale saturation", [1e30, -3e29, 7e28, 1.0, -1e-30])
    add("negatives rounding to zero", np.concatenate([[1.0], -np.abs(noise(1e-4, k - 1))]))
    add("one large value, tiny rest", np.concatenate([[-6e3], noise(1e-6, k - 1)]))

    # Scale boundaries (spec 5.2): exactly at, one ulp below and one ulp above the largest amax of a scale.
    sv = fmt.scale.code_values()
    codes = _directed_scale_codes(fmt)
    groups: dict[float, tuple[int, int]] = {}
    for c, j in encode_pairs(fmt):
        groups.setdefault(fmt.max_element(c, j), (c, j))
    for maxe, (c, j) in groups.items():
        for code in codes:
            if fmt.rule == "ocp":
                bound = float(sv[code]) * 2.0 ** fmt.emax_element(c, j)
            else:
                bound = float(sv[code]) * maxe
            if not (2.0**-126 <= bound < top_input) or not _input_exact(np.array([bound]), input_format)[0]:
                continue
            rest = rng.uniform(-1, 1, k - 1) * bound
            for name, b in (("at", bound), ("one ulp below", _ulp_step(bound, -1, input_format)),
                            ("one ulp above", _ulp_step(bound, 1, input_format))):
                add(f"scale boundary {name} (max_elem {maxe:g}, scale code {code})",
                    np.concatenate([[b], rest])[rng.permutation(k)])

    # Exact ties at every rounding midpoint (spec 5.3), and one ulp either side, per pair and scale.
    for c, j in encode_pairs(fmt):
        table = fmt.element_table(c, j)
        levels = np.unique(table[np.isfinite(table)])
        mids = (levels[1:] + levels[:-1]) / 2
        for code in codes:
            x_scale = float(sv[code])
            top = x_scale * (2.0 ** fmt.emax_element(c, j) if fmt.rule == "ocp" else fmt.max_element(c, j))
            if not (2.0**-126 <= top < top_input):
                continue
            m = mids * x_scale
            m = m[_input_exact(m, input_format) & (m != 0)]
            if m.size == 0:
                continue
            for name, step in (("exact ties", 0), ("just above ties", 1), ("just below ties", -1)):
                vals = m if step == 0 else np.sign(m) * np.array([_ulp_step(abs(v), step, input_format) for v in m])
                vals = rng.permutation(vals)
                for start in range(0, vals.size, k - 1):  # the top value pins the scale
                    part = vals[start:start + k - 1]
                    add(f"{name} ({fmt.elements[c].name}, option {j}, scale code {code})",
                        np.concatenate([[top], part, np.zeros(k - 1 - part.size)]))

    # Pairs that tie in the selection metric (spec 5.4: ties go to the lowest selector, then option).
    if len(encode_pairs(fmt)) > 1 and tie_search:
        n = tie_search
        cand = rng.integers(-12, 13, (n, k)) * np.exp2(rng.integers(-4, 3, (n, 1)))
        cand *= rng.random((n, k)) < rng.uniform(0.1, 1.0, (n, 1))
        cand[:, 0] = np.where(cand[:, 0] == 0, 1.0, cand[:, 0])
        err = pair_errors(fmt, cand)
        best = err.min(axis=1, keepdims=True)
        tied = err == best
        mixed = tied.sum(axis=1) >= 2
        # prefer ties between different candidates, then ties that pair 0 does not win
        cands = np.array([c for c, _ in encode_pairs(fmt)])
        spans = np.array([np.unique(cands[t]).size > 1 for t in tied])
        score = mixed * (1 + 2 * spans + (~tied[:, 0]) + (tied.sum(axis=1) < tied.shape[1]))
        for i in np.argsort(-score, kind="stable")[:8]:
            if score[i] == 0:
                break
            who = [f"{fmt.elements[c].name}/{jj}" for (c, jj), t in zip(encode_pairs(fmt), tied[i], strict=True) if t]
            add(f"metric tie between pairs {', '.join(who)}", cand[i])
    return np.stack(blocks), cases


def encode_random(fmt: BlockFormat, n: int, rng: np.random.Generator,
                  distributions: tuple[str, ...] = ENCODE_DISTRIBUTIONS) -> tuple[np.ndarray, list[str]]:
    """``n`` random float64 blocks ``(n, k)``, split evenly over ``distributions`` (Gaussian with a
    per-block magnitude spread of 10^+-3, Student-t with 2 degrees of freedom, all-MiniLM-L6-v2 weights)."""
    per = [n // len(distributions) + (i < n % len(distributions)) for i in range(len(distributions))]
    xs, cases = [np.zeros((0, fmt.k))], []
    for dist, m in zip(distributions, per, strict=True):
        if m:
            xs.append(_floats(dist, m, fmt.k, rng))
            cases += [f"random {dist}"] * m
    return np.concatenate(xs), cases


def encode_vectors(fmt: BlockFormat, x: np.ndarray, lanes: int, *, input_format: str = "fp32",
                   cases: list[str] | None = None, reset_prefix: int | None = None,
                   select: str | None = None) -> VectorSet:
    """Encoder stimulus: blocks ``x`` ``(n, k)`` (rounded to the input format), ``k/lanes`` beats of bit
    patterns per block, with the golden packed output (spec 5, 6) of :func:`encoder_metric`.

    The expected array ``block`` is ``(n, 1 + k)``: the header, then every code (the DUT's ``header`` and
    ``codes`` fields side by side). ``aux`` holds the golden headers/codes and the case labels."""
    from nxfp_hw.golden.quantize import quantize

    if input_format not in ENCODE_INPUTS:
        raise ValueError(f"input_format must be one of {', '.join(ENCODE_INPUTS)}, got {input_format!r}")
    k = fmt.k
    if k % lanes:
        raise ValueError(f"lanes must divide k={k}, got {lanes}")
    dt, bits_dt = ENCODE_INPUTS[input_format]
    with np.errstate(over="ignore"):
        xin = np.asarray(x).reshape(-1, k).astype(dt)
    n = xin.shape[0]
    if n == 0:
        raise ValueError("encode_vectors: no blocks")
    q = quantize(xin, fmt, metric=encoder_metric(fmt, select))
    headers, codes = q.headers.reshape(n).astype(np.uint16), q.codes.reshape(n, k).astype(np.uint16)
    per = k // lanes
    if reset_prefix is None:  # stop in the middle of the second block (or after the first)
        reset_prefix = min(n * per - 1, per + per // 2 + 1)
    aux = {"headers": headers, "codes": codes, "case": np.array(cases if cases is not None else ["blocks"] * n)}
    meta = {"unit": "encode", "compare_field": "block", "compare_fields": ["header", "codes"], "kind": "code",
            "input": input_format, "metric": encoder_metric(fmt, select),
            "operands": {"a": ["got.header", "got.codes"]},
            "ieee_coverage": [["inputs", "in.values", input_format]], "formats": {"a": fmt.to_string()},
            "reset_prefix": int(reset_prefix), "blocks": n, "beats_per_block": per}
    block = np.concatenate([headers[:, None], codes], axis=1)
    return VectorSet({"values": xin.view(bits_dt).reshape(n * per, lanes)}, {"block": block}, aux, meta)
