"""Declared coverage goals per unit, what a regression reached of them, and stimulus that closes them.

A goal is a set of bins every default regression must hit; bins a unit cannot produce are left out of
the goal with the reason (from the formats' ranges, or spec 8's "accumulation starts from +0.0"), so
a missed bin is always a real hole. The goals are evaluated in the launching process from the vector
set and the RTL's outputs, identically for the cocotb and the fast path (:func:`evaluate_goals`).

- decode (spec 7): ``lane_codes``: every code on every lane under every header class (selector x
  recycling option x scale kind: NaN code, code 0, largest code, any other); ``results``: every IEEE
  result class the format can produce (found by decoding every (header, code)); ``rounding``: every
  rounding case it can produce (exact, inexact, tie to even, overflow to Inf);
- dot (spec 8, 8.1): ``code_pairs``: every (A code, B code) pair in at least one lane; ``results``:
  every result class (+-0, +-subnormal, normal, +-Inf, NaN) the formats and the accumulation mode can
  produce; ``block_rounding``: the cases of the block's one rounding ``RNE(S * Xa * Xb)``;
  ``acc_rounding`` (fp32 mode): the cases of ``acc + r``;
- encode (spec 5): ``inputs``: every IEEE class of the inputs; ``pairs``: every (candidate, recycling
  option) pair chosen; ``rounding``: element quantization exact, inexact, tie (to the even level) and
  saturation at the largest level.

Rounding and block-level bins are counted on transactions whose RTL output matched the golden one.
:func:`dot_closure` and :func:`encode_closure` add directed stimulus for the bins a stimulus misses
(found by searching candidates with the golden model), so the default regressions reach every goal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nxfp_hw.formats import BlockFormat, parse_format

from .vectors import BlockStream, VectorSet

__all__ = ["GoalResult", "ROUNDING", "decode_lane_sweep", "dot_closure", "dot_code_pairs", "encode_closure",
           "encode_regression_blocks", "evaluate_goals", "format_goals", "goals_summary"]

RESULT_CLASSES = ("+0", "-0", "+subnormal", "-subnormal", "normal", "+inf", "-inf", "nan")
ROUNDING = ("exact", "inexact", "tie", "overflow")
_IEEE = {"fp32": (32, 8, 23), "fp16": (16, 5, 10), "bf16": (16, 8, 7)}


@dataclass
class GoalResult:
    """One goal: the bins declared (``total``), how many were hit, which were missed, and the bins left out
    of the goal because the unit cannot produce them (``unreachable``: bin -> reason)."""

    name: str
    hit: int
    total: int
    missed: list[str] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.hit == self.total


# --- classification helpers --------------------------------------------------------------------------
def result_classes(bits: np.ndarray, kind: str = "fp32") -> np.ndarray:
    """Index into :data:`RESULT_CLASSES` of every IEEE bit pattern."""
    width, eb, mb = _IEEE[kind]
    b = np.asarray(bits, np.int64).reshape(-1)
    sign, exp, man = (b >> (width - 1)) & 1, (b >> mb) & ((1 << eb) - 1), b & ((1 << mb) - 1)
    top = (1 << eb) - 1
    cls = np.full(b.shape, 4)
    cls[(exp == 0) & (man == 0)] = 0 + sign[(exp == 0) & (man == 0)]
    sub = (exp == 0) & (man != 0)
    cls[sub] = 2 + sign[sub]
    inf = (exp == top) & (man == 0)
    cls[inf] = 5 + sign[inf]
    cls[(exp == top) & (man != 0)] = 7
    return cls


def _values(bits: np.ndarray, kind: str) -> np.ndarray:
    b = np.asarray(bits).reshape(-1)
    if kind == "fp32":
        return b.astype(np.uint32).view(np.float32).astype(np.float64)
    if kind == "fp16":
        return b.astype(np.uint16).view(np.float16).astype(np.float64)
    return (b.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def rounding_cases(exact: np.ndarray, bits: np.ndarray, kind: str = "fp32") -> np.ndarray:
    """Index into :data:`ROUNDING` (or -1 for NaN/Inf operands) of IEEE results ``bits`` rounded (RNE) from
    float64 ``exact`` values (which must be exact): equal, a tie between the two neighbours, another
    inexact rounding, or a finite value that became Inf."""
    width, _, _ = _IEEE[kind]
    x = np.asarray(exact, np.float64).reshape(-1)
    b = np.asarray(bits, np.int64).reshape(-1)
    r = _values(b, kind)
    out = np.full(x.shape, -1)
    fin = np.isfinite(x)
    out[fin & (r == x)] = 0
    out[fin & np.isinf(r)] = 3
    rest = fin & np.isfinite(r) & (r != x)
    if rest.any():
        sign = 1 << (width - 1)
        mag = b[rest] & (sign - 1)
        away = np.abs(x[rest]) > np.abs(r[rest])
        nb_mag = np.where(away, mag + 1, np.maximum(mag - 1, 0))
        nb = np.where(x[rest] < 0, nb_mag | sign, nb_mag)
        other = _values(nb, kind)
        tie = np.abs(x[rest] - r[rest]) == np.abs(other - x[rest])
        out[np.flatnonzero(rest)] = np.where(tie, 2, 1)
    return out


def _exact_rounding(units: int, lsb: int, bits: int) -> int:
    """Rounding case of the fp32 RNE of the exact value ``units * 2**lsb`` (Python integers), given its result."""
    if (bits >> 23) & 0xFF == 0xFF:
        return 3 if (bits & 0x7FFFFF) == 0 and units and abs(units).bit_length() - 1 + lsb >= 127 else -1
    if units == 0:
        return 0
    mag = abs(units)
    e = max(mag.bit_length() - 1 + lsb, -126)  # exponent of the binade (subnormals: -126)
    half = e - 24  # exponent of half an ulp
    if lsb > half:
        return 0  # a multiple of the ulp
    q, rem = divmod(mag, 1 << (half - lsb))
    if rem:
        return 1
    return 2 if q & 1 else 0


def _fp32_exact(bits: int) -> tuple[int, int]:
    """``(units, lsb)`` of a finite fp32 bit pattern."""
    e, m = (bits >> 23) & 0xFF, bits & 0x7FFFFF
    units = (m | (1 << 23)) if e else m
    return (-units if bits >> 31 else units), (e if e else 1) - 150


# --- format ranges ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Range:
    min_elem: float  # smallest positive finite element value
    max_elem: float
    min_scale: float
    max_scale: float
    has_inf: bool
    has_nan: bool


def _range(fmt: BlockFormat) -> _Range:
    tables = [fmt.element_table(c, r) for c in range(len(fmt.elements)) for r in range(max(fmt.recycle_options, 1))]
    t = np.concatenate(tables)
    fin = np.abs(t[np.isfinite(t) & (t != 0)])
    s = fmt.scale.code_values()
    sf = s[np.isfinite(s) & (s > 0)]
    return _Range(float(fin.min()), float(fin.max()), float(sf.min()), float(sf.max()), bool(np.isinf(t).any()),
                  bool(np.isnan(t).any() or np.isnan(s).any()))


def dot_reachable(fa: BlockFormat, fb: BlockFormat, mode: str = "fp32") -> dict[str, dict[str, str]]:
    """``{goal: {bin: reason}}``: the bins of the dot goals this pair and mode cannot produce, with why."""
    ra, rb = _range(fa), _range(fb)
    min_prod = ra.min_elem * rb.min_elem * ra.min_scale * rb.min_scale
    max_block = fa.k * ra.max_elem * rb.max_elem * ra.max_scale * rb.max_scale
    ratio = fa.k * ra.max_elem * rb.max_elem / (ra.min_elem * rb.min_elem)
    inf_in = ra.has_inf or rb.has_inf
    out: dict[str, dict[str, str]] = {"results": {}, "block_rounding": {}, "acc_rounding": {}}
    tiny = f"the smallest non-zero |a*b*Xa*Xb| is {min_prod:.3g}"
    huge = f"the largest |S*Xa*Xb| is {max_block:.3g}"
    if min_prod >= 2.0**-126:
        for c in ("+subnormal", "-subnormal"):
            out["results"][c] = f"{tiny} >= 2^-126"
    if max_block < 2.0**128 and not inf_in:
        for c in ("+inf", "-inf"):
            out["results"][c] = f"{huge} < 2^128 and no element is Inf"
    if not (ra.has_nan or rb.has_nan or inf_in):
        out["results"]["nan"] = "no NaN scale or element code and no Inf element"
    if mode == "fp32":
        out["results"]["-0"] = "the fp32 accumulation starts from +0.0 (spec 8): +0 + -0 = +0"
    elif min_prod >= 2.0**-150:
        out["results"]["-0"] = f"{tiny}: no non-zero sum rounds to zero, and an exact zero sum is +0.0"
    if ratio < 2.0**26 and min_prod >= 2.0**-150:
        out["block_rounding"]["inexact"] = (f"S has at most {int(np.ceil(np.log2(ratio)))} significant bits "
                                            f"(<= 25) and {tiny}")
    if ratio <= 2.0**24 and min_prod >= 2.0**-150:
        out["block_rounding"]["tie"] = f"S has at most {int(np.ceil(np.log2(ratio)))} significant bits (<= 24)"
    if max_block < 2.0**128:
        out["block_rounding"]["overflow"] = f"{huge} < 2^128"
    if mode != "fp32":
        out["acc_rounding"] = {c: f"accumulation {mode} has no separate rounding of acc + r" for c in ROUNDING}
    else:
        out["acc_rounding"]["overflow"] = "left to the block rounding goal (an fp32 sum of Inf blocks is Inf)"
        if max_block / min_prod < 2.0**26:
            for c in ("inexact", "tie"):
                out["acc_rounding"][c] = f"block results span {max_block / min_prod:.3g} (< 2^26)"
    return out


# --- goals --------------------------------------------------------------------------------------------
def _goal(name: str, bins: list[str], hits: set[str], unreachable: dict[str, str]) -> GoalResult:
    declared = [b for b in bins if b not in unreachable]
    missed = [b for b in declared if b not in hits]
    return GoalResult(name, len(declared) - len(missed), len(declared), missed,
                      {b: r for b, r in unreachable.items() if b in bins})


def _decode_goals(vs: VectorSet, got: np.ndarray, ok: np.ndarray) -> list[GoalResult]:
    from nxfp_hw.golden.decode import decode_bits

    fmt = parse_format(vs.meta["formats"]["a"])
    kind = vs.meta.get("kind", "fp32")
    headers = np.asarray(vs.inputs["header"], np.int64)
    codes = np.asarray(vs.inputs["codes"], np.int64)
    n, lanes = codes.shape
    n_codes = 1 << fmt.element_width
    scale, sel, rec = (np.asarray(x, np.int64) for x in fmt.split_header(headers))
    kind_of = np.where(scale == fmt.scale.nan_code, 0, np.where(scale == 0, 1, np.where(scale == fmt.scale.max_code,
                                                                                        2, 3)))
    n_kinds = 4 if fmt.scale.max_code > 1 else 3
    cls = (sel * (1 << fmt.recycle_bits) + rec) * 4 + kind_of
    n_cls = (1 << fmt.selector_bits) * (1 << fmt.recycle_bits) * 4
    idx = (cls[:, None] * lanes + np.arange(lanes)[None, :]) * n_codes + codes
    seen = np.zeros(n_cls * lanes * n_codes, bool)
    seen[idx.reshape(-1)] = True
    want = np.zeros((n_cls, lanes, n_codes), bool)
    want[[c for c in range(n_cls) if c % 4 < n_kinds]] = True
    total = int(want.sum())
    hit = int((seen.reshape(want.shape) & want).sum())
    lane = GoalResult("decode.lane_codes", hit, total,
                      [] if hit == total else [f"{total - hit} (header class, lane, code) triples"])

    # every (header, code): what the format can produce
    all_h = np.arange(1 << fmt.header_bits)
    hh = np.repeat(all_h, n_codes)
    cc = np.tile(np.arange(n_codes), all_h.size)
    all_bits = decode_bits(fmt, hh.astype(np.uint16), cc.astype(np.uint16)[:, None], out=kind).reshape(-1)
    exact_all = _decode_exact(fmt, hh, cc)
    can_cls = set(np.unique(result_classes(all_bits, kind)).tolist())
    can_rnd = set(np.unique(rounding_cases(exact_all, all_bits, kind)).tolist()) - {-1}
    g = np.asarray(got, np.int64)[ok].reshape(-1)
    hit_cls = {RESULT_CLASSES[i] for i in np.unique(result_classes(g, kind))} if g.size else set()
    ex = _decode_exact(fmt, np.repeat(headers[ok], lanes), codes[ok].reshape(-1))
    hit_rnd = {ROUNDING[i] for i in np.unique(rounding_cases(ex, g, kind)) if i >= 0} if g.size else set()
    why = f"no (header, code) of {fmt.label} decodes to it ({kind})"
    return [lane,
            _goal("decode.results", list(RESULT_CLASSES), hit_cls,
                  {c: why for i, c in enumerate(RESULT_CLASSES) if i not in can_cls}),
            _goal("decode.rounding", list(ROUNDING), hit_rnd,
                  {c: why for i, c in enumerate(ROUNDING) if i not in can_rnd})]


def _decode_exact(fmt: BlockFormat, headers: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Exact float64 value of element ``code`` times the scale of ``header`` (NaN/Inf as such)."""
    scale, sel, rec = (np.asarray(x, np.int64) for x in fmt.split_header(headers))
    sel = np.minimum(sel, len(fmt.elements) - 1)
    rec = np.minimum(rec, max(fmt.recycle_options, 1) - 1)
    tables = np.stack([np.stack([fmt.element_table(c, r) for r in range(max(fmt.recycle_options, 1))])
                       for c in range(len(fmt.elements))])
    with np.errstate(invalid="ignore", over="ignore"):
        return tables[sel, rec, np.asarray(codes, np.int64)] * fmt.scale.code_values()[scale]


def _dot_goals(vs: VectorSet, got: np.ndarray, ok: np.ndarray) -> list[GoalResult]:
    meta, aux = vs.meta, vs.aux
    fa, fb = parse_format(meta["formats"]["a"]), parse_format(meta["formats"]["b"])
    mode = meta.get("accumulation", "fp32")
    unreachable = dot_reachable(fa, fb, mode)
    ca, cb = np.asarray(aux["ca"], np.int64), np.asarray(aux["cb"], np.int64)
    n_b = 1 << fb.element_width
    pairs = np.zeros((1 << fa.element_width) * n_b, bool)
    pairs[(ca * n_b + cb).reshape(-1)] = True
    n_pairs = pairs.size
    code_pairs = GoalResult("dot.code_pairs", int(pairs.sum()), n_pairs,
                            [] if pairs.all() else [f"{n_pairs - int(pairs.sum())} (A code, B code) pairs"])
    g = np.asarray(got, np.int64)[ok].reshape(-1)
    hit_cls = {RESULT_CLASSES[i] for i in np.unique(result_classes(g))} if g.size else set()

    starts, ends = np.asarray(aux["red_start"], np.int64), np.asarray(aux["red_end"], np.int64)
    good_blocks = np.zeros(len(ca), bool)
    for s, e in zip(starts[ok], ends[ok], strict=True):
        good_blocks[s:e + 1] = True
    lsb = int(meta["value_lsb_exponent"])
    br = np.asarray(aux["block_results"], np.int64)
    values = aux["block_values"]
    hit_block: set[str] = set()
    hit_acc: set[str] = set()
    for i in np.flatnonzero(good_blocks):
        if len(hit_block) == len(ROUNDING):
            break
        c = _exact_rounding(int(values[i]), lsb, int(br[i]))
        if c >= 0:
            hit_block.add(ROUNDING[c])
    if mode == "fp32":
        for s, e in zip(starts[ok], ends[ok], strict=True):
            if len(hit_acc) >= 3:
                break
            acc = 0
            for i in range(s, e + 1):
                r = int(br[i])
                if (acc >> 23) & 0xFF == 0xFF or (r >> 23) & 0xFF == 0xFF:
                    break
                (ua, la), (ur, lr) = _fp32_exact(acc), _fp32_exact(r)
                lo = min(la, lr)
                units = (ua << (la - lo)) + (ur << (lr - lo))
                total = np.float32(np.uint32(acc).view(np.float32)) + np.float32(np.uint32(r).view(np.float32))
                acc = int(np.float32(total).view(np.uint32))
                if i > s:  # the first add is +0.0 + r: always exact
                    c = _exact_rounding(units, lo, acc)
                    if c >= 0:
                        hit_acc.add(ROUNDING[c])
    return [code_pairs,
            _goal("dot.results", list(RESULT_CLASSES), hit_cls, unreachable["results"]),
            _goal("dot.block_rounding", list(ROUNDING), hit_block, unreachable["block_rounding"]),
            _goal("dot.acc_rounding", list(ROUNDING), hit_acc, unreachable["acc_rounding"])]


def _encode_goals(vs: VectorSet, got: np.ndarray, ok: np.ndarray) -> list[GoalResult]:
    meta, aux = vs.meta, vs.aux
    fmt = parse_format(meta["formats"]["a"])
    kind = meta.get("input", "fp32")
    per = int(meta["beats_per_block"])
    bits = np.asarray(vs.inputs["values"], np.int64).reshape(-1, per * vs.inputs["values"].shape[1])
    x = _values(bits, kind).reshape(bits.shape)
    hit_in = {RESULT_CLASSES[i] for i in np.unique(result_classes(bits[ok], kind))} if ok.any() else set()
    headers = np.asarray(aux["headers"], np.int64)[ok]
    codes = np.asarray(aux["codes"], np.int64)[ok]
    scale, sel, rec = (np.asarray(v, np.int64) for v in fmt.split_header(headers))
    pairs = {(int(s), int(r)) for s, r in zip(sel, rec, strict=True) if scale[0] is not None}
    from .vectors import encode_pairs

    all_pairs = [f"{s}/{r}" for s, r in encode_pairs(fmt)]
    hit_pairs = {f"{s}/{r}" for s, r in pairs}
    # element rounding: the chosen level against the input, among the pair's levels times the scale
    hit_rnd: set[str] = set()
    sv = fmt.scale.code_values()
    xo = x[ok]
    for s, r in pairs:
        rows = np.flatnonzero((sel == s) & (rec == r) & np.isfinite(sv[scale]))
        if rows.size == 0:
            continue
        table = fmt.element_table(s, r)
        levels = np.unique(table[np.isfinite(table)])
        sc = sv[scale[rows]][:, None]
        xs = xo[rows]
        fin = np.isfinite(xs)
        v = table[codes[rows]] * sc
        q = np.where(fin, xs, 0.0) / sc  # exact: scales are powers of two times short significands
        hit_rnd |= {"exact"} if np.any(fin & (v == xs)) else set()
        top = levels.max()
        if np.any(fin & (np.abs(q) > top)):
            hit_rnd.add("overflow")
        inside = fin & (np.abs(q) <= top) & (v != xs)
        if inside.any():
            qi = q[inside]
            hi_i = np.clip(np.searchsorted(levels, qi), 1, levels.size - 1)
            lo_v, hi_v = levels[hi_i - 1], levels[hi_i]
            tie = (qi - lo_v) == (hi_v - qi)
            if tie.any():
                hit_rnd.add("tie")
            if (~tie).any():
                hit_rnd.add("inexact")
    return [_goal("encode.inputs", list(RESULT_CLASSES), hit_in, {}),
            _goal("encode.pairs", all_pairs, hit_pairs, {}),
            _goal("encode.rounding", list(ROUNDING), hit_rnd, {})]


def evaluate_goals(vs: VectorSet, got: np.ndarray | None) -> list[GoalResult]:
    """The unit's goals (from ``vs.meta['unit']``) reached by a run whose RTL outputs were ``got`` (``None`` or
    fewer rows than expected: the missing transactions count as not reached). ``got = vs.expected[...]``
    predicts what a passing run reaches."""
    field_name = vs.meta["compare_field"]
    exp = np.asarray(vs.expected[field_name])
    g = np.zeros((0,) + exp.shape[1:], np.int64) if got is None else np.asarray(got)
    n = min(len(g), len(exp))
    ok = np.zeros(len(exp), bool)
    if n:
        same = np.asarray(g[:n], np.int64).reshape(n, -1) == exp[:n].astype(np.int64).reshape(n, -1)
        ok[:n] = same.all(axis=1)
    full = np.zeros(exp.shape, np.int64)
    full[:n] = np.asarray(g[:n], np.int64).reshape((n,) + exp.shape[1:])
    unit = vs.meta.get("unit")
    if unit == "decode":
        return _decode_goals(vs, full, ok)
    if unit == "dot":
        return _dot_goals(vs, full, ok)
    if unit == "encode":
        return _encode_goals(vs, full, ok)
    return []


def goals_summary(goals: list[GoalResult]) -> dict[str, Any]:
    """JSON-ready: ``{"goals": {name: [hit, total]}, "missed": {name: [...]}, "unreachable": {...}, "passed"}``."""
    return {"goals": {g.name: [g.hit, g.total] for g in goals},
            "missed": {g.name: g.missed for g in goals if g.missed},
            "unreachable": {g.name: g.unreachable for g in goals if g.unreachable},
            "passed": all(g.passed for g in goals)}


def format_goals(goals: list[GoalResult]) -> str:
    """``decode.lane_codes 8192/8192, decode.results 6/6, ...`` (missed bins in brackets)."""
    return ", ".join(f"{g.name} {g.hit}/{g.total}" + (f" [missed: {', '.join(g.missed)}]" if g.missed else "")
                     for g in goals)


# --- closure: stimulus for what is still unhit --------------------------------------------------------
def dot_code_pairs(fa: BlockFormat, fb: BlockFormat, rng: np.random.Generator) -> BlockStream:
    """Every (A code, B code) pair in one lane of some block (``ceil(Ca*Cb/k)`` blocks, one reduction each),
    under headers with mid-range scales and every selector and recycling option in turn."""
    from .vectors import _random_headers

    k = fa.k
    n_a, n_b = 1 << fa.element_width, 1 << fb.element_width
    idx = np.arange(-(-n_a * n_b // k) * k) % (n_a * n_b)
    idx = rng.permutation(idx.reshape(-1, k).T).T  # lanes shuffled within the sweep
    s = BlockStream.empty(k)
    n = idx.shape[0]
    ha, hb = _random_headers(fa, n, rng, mid=True), _random_headers(fb, n, rng, mid=True)
    s.add("code pairs sweep", ha, idx // n_b, hb, idx % n_b, np.ones(n, bool))
    return s


def dot_closure(fa: BlockFormat, fb: BlockFormat, blocks: BlockStream, rng: np.random.Generator, *,
                lanes: int | None = None, mode: str = "fp32", guard_bits: int | None = None,
                tries: int = 6) -> BlockStream:
    """Block pairs (single-block reductions) whose golden results hit the result classes and block rounding
    cases ``blocks`` does not, found by searching random candidates with the golden model (sparse and dense
    codes, scales from the whole range, the low end and the high end). Unreachable bins are not searched."""
    from nxfp_hw.golden.dot import DEFAULT_GUARD_BITS

    from .vectors import _random_headers, dot_vectors

    guard = DEFAULT_GUARD_BITS if guard_bits is None else guard_bits
    lanes = lanes or fa.k
    out = BlockStream.empty(fa.k)
    for _ in range(tries):
        both = BlockStream.empty(fa.k)
        both.add_stream(blocks)
        both.add_stream(out)
        vs = dot_vectors(fa, fb, lanes, both, np.random.default_rng(0), mode=mode, guard_bits=guard, reset_prefix=0)
        goals = {g.name: g for g in evaluate_goals(vs, vs.expected["result"])}
        want_cls = set(goals["dot.results"].missed)
        want_rnd = set(goals["dot.block_rounding"].missed)
        if not want_cls and not want_rnd:
            break
        n, k = 4096, fa.k
        ha, hb = _random_headers(fa, n, rng), _random_headers(fb, n, rng)
        low = rng.random(n) < 0.35
        high = ~low & (rng.random(n) < 0.5)
        for h, f, sel in ((ha, fa, low), (hb, fb, low)):
            sc, s_, r_ = f.split_header(h[sel])
            h[sel] = f.make_header(np.minimum(np.asarray(sc), rng.integers(0, 4, sel.sum())), s_, r_)
        for h, f, sel in ((ha, fa, high), (hb, fb, high)):
            sc, s_, r_ = f.split_header(h[sel])
            h[sel] = f.make_header(np.full(sel.sum(), f.scale.max_code) - rng.integers(0, 3, sel.sum()), s_, r_)
        density = np.where(rng.random(n) < 0.5, 2.0 / k, 1.0)[:, None]
        ca = np.where(rng.random((n, k)) < density, rng.integers(0, 1 << fa.element_width, (n, k)), 0)
        cb = rng.integers(0, 1 << fb.element_width, (n, k))
        cand = BlockStream.empty(k)
        cand.add("closure candidates", ha, ca, hb, cb, np.ones(n, bool))
        cv = dot_vectors(fa, fb, lanes, cand, np.random.default_rng(0), mode=mode, guard_bits=guard, reset_prefix=0)
        res_cls = result_classes(cv.expected["result"])
        lsb = int(cv.meta["value_lsb_exponent"])
        for i in range(n):
            c = RESULT_CLASSES[res_cls[i]]
            r = _exact_rounding(int(cv.aux["block_values"][i]), lsb, int(cv.aux["block_results"][i]))
            rc = ROUNDING[r] if r >= 0 else None
            if c in want_cls or rc in want_rnd:
                out.add(f"closure: {c} result" if c in want_cls else f"closure: {rc} block rounding",
                        ha[i], ca[i], hb[i], cb[i])
                want_cls.discard(c)
                want_rnd.discard(rc)
            if not want_cls and not want_rnd:
                break
    return out


def encode_closure(fmt: BlockFormat, x: np.ndarray, rng: np.random.Generator, input_format: str = "fp32",
                   select: str | None = None) -> tuple[np.ndarray, list[str]]:
    """Blocks for the encode goals ``x`` misses: an input of every IEEE class (+-0, +-subnormal, normal,
    +-Inf, NaN) in blocks of their own, and for every (candidate, recycling option) pair that the encoder
    under policy ``select`` chooses for no block of ``x``, a block it chooses that pair for (found among
    blocks decoded from that pair's codes, the recycled code among them). Ties and saturation come from
    the directed blocks."""
    k = fmt.k
    tiny = 1e-40 if input_format == "fp32" else 1e-39
    rows = [np.full(k, v) for v in (0.0, -0.0, tiny, -tiny, np.inf, -np.inf, np.nan)]
    mix = rng.standard_normal(k)
    mix[:3] = (tiny, -tiny, -0.0)
    rows.append(mix)
    cases = ["closure: input classes"] * len(rows)
    from .vectors import encode_pairs

    pairs = encode_pairs(fmt)
    if len(pairs) > 1:
        hit = _chosen_pairs(fmt, np.asarray(x, np.float64).reshape(-1, k), input_format, select)
        for c, j in pairs:
            if (c, j) in hit:
                continue
            block = _block_choosing_pair(fmt, c, j, rng, input_format, select)
            if block is not None:
                rows.append(block)
                cases.append(f"closure: pair {fmt.elements[c].name}/option {j}")
    return np.stack(rows), cases


def encode_regression_blocks(fmt: BlockFormat, rng: np.random.Generator, n_random: int, input_format: str = "fp32",
                             select: str | None = None) -> tuple[np.ndarray, list[str]]:
    """The default encode regression's blocks: the directed blocks of spec 5, ``n_random`` random blocks
    and the closure blocks for the goals those miss (``verify --unit encode`` without vector files)."""
    from .vectors import encode_directed, encode_random

    x, cases = encode_directed(fmt, rng, input_format)
    if n_random:
        xr, cr = encode_random(fmt, n_random, rng)
        x, cases = np.concatenate([x, xr]), cases + cr
    xc, cc = encode_closure(fmt, x, rng, input_format, select=select)
    return np.concatenate([x, xc]), cases + cc


def _chosen_pairs(fmt: BlockFormat, x: np.ndarray, input_format: str, select: str | None) -> set[tuple[int, int]]:
    """The (candidate, option) pairs the golden encoder (policy ``select``) chooses for the finite-scale
    blocks of ``x`` ``(n, k)``."""
    from nxfp_hw.golden.quantize import quantize

    from .vectors import ENCODE_INPUTS, encoder_metric

    if x.size == 0:
        return set()
    with np.errstate(over="ignore", invalid="ignore"):
        xin = x.astype(ENCODE_INPUTS[input_format][0])
    q = quantize(xin, fmt, metric=encoder_metric(fmt, select))
    scale, sel, rec = (np.asarray(v, np.int64).reshape(-1) for v in fmt.split_header(
        np.asarray(q.headers, np.int64).reshape(-1)))
    finite = scale != fmt.scale.nan_code
    return {(int(s), int(r)) for s, r in zip(sel[finite], rec[finite], strict=True)}


def _block_choosing_pair(fmt: BlockFormat, cand: int, option: int, rng: np.random.Generator, input_format: str,
                         select: str | None, tries: int = 8, batch: int = 256) -> np.ndarray | None:
    """A block (float64, exact in the input format) that the encoder under ``select`` codes with pair
    ``(cand, option)``: random codes of that pair (a quarter of them the recycled code, when it has one) at
    scales around 1, decoded, and the first block whose encoding uses the pair. ``None`` if no such block
    turns up (a pair that never wins; the goal then reports it missed)."""
    from nxfp_hw.golden.quantize import QuantizedTensor, dequantize_exact

    from .vectors import ENCODE_INPUTS

    k = fmt.k
    from nxfp_hw.golden.quantize import _round_table

    usable = _round_table(fmt, cand, option).codes  # the codes the quantizer can produce for this pair
    recycled = fmt.elements[cand].negative_zero_code if fmt.recycling else None
    sv = fmt.scale.code_values()
    finite = np.flatnonzero(np.isfinite(sv[: fmt.scale.max_code + 1]) & (sv[: fmt.scale.max_code + 1] > 2.0**-100)
                            & (sv[: fmt.scale.max_code + 1] < 2.0**100))
    dt = ENCODE_INPUTS[input_format][0]
    for _ in range(tries):
        codes = rng.choice(usable, (batch, k))
        if recycled is not None:
            codes = np.where(rng.random((batch, k)) < 0.25, recycled, codes)
        scales = rng.choice(finite, batch)
        headers = np.array([int(fmt.make_header(int(s), cand, option)) for s in scales], np.int64)
        q = QuantizedTensor(fmt, (batch, k), headers[:, None].astype(np.uint16), codes[:, None, :].astype(np.uint16))
        y = dequantize_exact(q).reshape(batch, k)
        with np.errstate(over="ignore", invalid="ignore"):
            exact = np.all(y.astype(dt).astype(np.float64) == y, axis=1)
        y = y[exact]
        for i in range(y.shape[0]):
            if (cand, option) in _chosen_pairs(fmt, y[i:i + 1], input_format, select):
                return y[i]
    return None


def decode_lane_sweep(fmt: BlockFormat, lanes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(headers, codes)``: for every header class (selector, recycling option, scale kind: NaN code, code 0,
    largest code, a random other code) ``C`` beats in which lane ``j`` of beat ``q`` carries code
    ``(q + j) mod C``: every code on every lane under every header class (the exhaustive sweep of
    :func:`verif.vectors.decode_exhaustive` gives every lane every code over all headers, not per class)."""
    n_codes = 1 << fmt.element_width
    q = np.arange(n_codes)
    codes = (q[:, None] + np.arange(lanes)[None, :]) % n_codes
    hs, cs = [], []
    for sel in range(1 << fmt.selector_bits):
        for rec in range(1 << fmt.recycle_bits):
            scales = [fmt.scale.nan_code, 0, fmt.scale.max_code]
            if fmt.scale.max_code > 1:
                scales.append(int(rng.integers(1, fmt.scale.max_code)))
            for sc in dict.fromkeys(scales):
                hs.append(np.full(n_codes, int(fmt.make_header(sc, sel, rec))))
                cs.append(codes)
    return np.concatenate(hs).astype(np.uint16), np.concatenate(cs).astype(np.uint16)
