"""Selection policies of the block encoder: how a block's (element candidate, recycling option) pair
is chosen (spec 5.4, docs/encoder.md "Selection policies").

Spec 5.4 keeps the pair with the least block error and lets a hardware encoder use a documented
fixed-point metric, offered bit for bit by the golden model. Each policy here is such a documented
choice, named for the CLI (``--select``) and for :class:`nxfp_hw.rtl.encode.EncodeUnit`:

``exact``
    The least fixed-point squared error :func:`~nxfp_hw.golden.hw_metric.block_error_hw`
    (``F = 8`` fraction bits below the block's largest exponent) over every (candidate, option) pair;
    ties to the lowest selector, then option. The encoder's original choice; metric ``"hw"``.
``sq6``
    The same with ``F = 6``: narrower differences and squares. Metric ``"hw-sq6"``.
``abs``
    The least sum of ``|D|`` (``F = 8``): no squarer. Metric ``"hw-abs"``.
``hits``
    Recycling decided from the rounding alone, error only per candidate. For every candidate the
    block is rounded with each recycling option; the option kept is the one whose recycled value
    ``R`` the most elements round to (ties to the lowest option). The candidate is the one with the
    least ``hw`` error (``F = 8``, squares) of its *symmetric* rounding, every element rounded as by
    the option whose ``R`` has its sign (for the ``+-r`` presets: the table with ``|R|`` on both signs);
    ties to the lowest selector. Hardware: one error path per candidate instead of per pair, two hit
    counters, one held code set plus a hit bit per element per candidate. Needs a format with at
    least two recycling options per candidate. Name ``"hw-hits"`` in
    :data:`nxfp_hw.golden.quantize.METRICS`' place (:data:`SELECTIONS`).
``hits6``
    ``hits`` with ``F = 6``. Name ``"hw-hits6"``.
``hits-abs``
    ``hits`` with the sum of ``|D|`` (``F = 8``) as the candidate's error: no squarer. Name ``"hw-hits-abs"``.
``scaled``
    The least fixed-point squared error over every pair, like ``exact``, but each pair's error is
    measured in its own scale's units instead of the block's largest input's: with ``e`` the
    exponent of the pair's scale (``field - bias_s``) and ``t`` that of the candidate's largest
    magnitude (``floor(log2 max_elem)``), the unit is ``u = 2^(e + t - F)`` with ``F`` the element width
    plus 3 (:func:`scaled_frac_bits`: 7 for nxfp4, 8 for nxfp5, 9 for nxfp6),
    ``xf = min(floor(|x| / u), 2^Wx - 1)``, ``yf = floor(|X*q| / u)``, ``D = min(|xf - yf|, 2^Wd - 1)``
    and the pair's error ``sum D^2`` in units ``u^2``; pairs are compared exactly on ``error * u^2``
    (ties to the lowest selector, then option). ``Wx`` and ``Wd`` (:func:`scaled_geometry`) only clip
    elements beyond the top level (a block whose scale saturates). Hardware: ``xf`` is the rounding's
    own aligned value (no per-element shifter), ``yf`` a constant shift of ``level * (2^b + M)``, and
    ``|D|`` is narrow (5 bits for nxfp4 instead of 10). Where the recycling options are ``+r``/``-r``
    (:func:`scaled_delta_plan`: every preset) one error path per candidate serves both options: the error
    of the *symmetric* rounding (each element rounded as by the option whose ``R`` has its sign) plus, for
    each element rounding to ``|R|`` with the sign whose ``R`` the option lacks, ``delta^2 - 2 delta |D|``
    (``delta``: the distance from ``|R|`` to that element's level without ``R``, in units; ``|D|`` clipped as
    above), so that element counts ``(delta - |D|)^2``, its distance to that level: the option's own error
    exactly unless the element lies beyond ``|R|`` (a block whose scale saturates). Where ``|R|`` lies above the
    candidate's top level (:func:`scaled_hits_by_count`: nxfp4's E1M2, every candidate of nxfp5 and nxfp6) such
    hits are the rare elements beyond that level, and each counts ``floor(delta^2 / 2)`` instead (the expected
    value of ``delta^2 - 2 delta |D|`` for ``|D|`` spread evenly below ``delta / 2``): a count per option, no sum
    of ``|D|``. Name ``"hw-scaled"``.

Single-pair formats (every MX preset) have nothing to select: every policy gives the same bits there,
and asking for one by name is refused (:func:`check_select`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import UserError
from ..formats import BlockFormat
from .hw_metric import block_error_hw

__all__ = ["DEFAULT_SELECT", "SCALED_GUARD_BITS", "SELECTIONS", "SELECT_POLICIES", "ScaledGeometry",
           "SelectError", "SelectPolicy", "check_select", "quantize_blocks_hits", "quantize_blocks_scaled",
           "scale_fields", "scaled_delta_constants", "scaled_delta_plan", "scaled_frac_bits", "scaled_geometry",
           "scaled_hits_by_count", "scaled_pair_keys", "scaled_unit_span", "select_metric"]


class SelectError(UserError, ValueError):
    """An unknown selection policy, or one the block format cannot use."""


@dataclass(frozen=True)
class SelectPolicy:
    """One documented way to choose a block's (candidate, recycling option) pair (module doc).

    ``metric``: the golden name (``quantize(..., metric=...)``); ``error``: ``"square"`` or ``"abs"``;
    ``frac_bits``: ``F`` of the fixed-point metric (``None``: by format, :meth:`frac_bits_for`);
    ``recycling``: ``"error"`` (every option measured) or ``"hits"`` (the option from the count of elements
    rounding to ``R``); ``units``: ``"block"`` (the unit ``2^(A - F)`` of the block's largest input,
    :mod:`.hw_metric`) or ``"scale"`` (each pair's own scale, policy ``scaled``)."""

    name: str
    metric: str
    error: str
    frac_bits: int | None
    recycling: str
    summary: str
    units: str = "block"

    def frac_bits_for(self, fmt: BlockFormat) -> int:
        """``F`` of this policy on ``fmt``: fixed, or (policy ``scaled``) :func:`scaled_frac_bits`."""
        return _resolve_frac_bits(fmt, self.frac_bits)


#: ``F`` of policy ``scaled`` is the element width plus this (docs/encoder.md "The default metric": every preset
#: stays within 0.5 % of the float64 choice on both measured tensors; one bit fewer costs up to 3 %).
SCALED_GUARD_BITS = 3


def _resolve_frac_bits(fmt: BlockFormat, frac_bits: int | None) -> int:
    """``frac_bits``, or policy ``scaled``'s own ``F`` of ``fmt`` when ``None``."""
    return scaled_frac_bits(fmt) if frac_bits is None else frac_bits


def _top_exp(fmt: BlockFormat, cand: int) -> int:
    """``t = floor(log2 max_elem)`` of candidate ``cand`` (its largest ``max_elem`` over the options)."""
    return int(np.floor(np.log2(max(fmt.max_element(cand, j) for j in range(max(fmt.recycle_options, 1))))))


def scaled_frac_bits(fmt: BlockFormat) -> int:
    """``F`` of policy ``scaled`` on ``fmt``: its element width plus :data:`SCALED_GUARD_BITS` (7 for nxfp4,
    8 for nxfp5, 9 for nxfp6). Narrower elements have coarser levels, so their errors need fewer bits."""
    return fmt.element_width + SCALED_GUARD_BITS

SELECT_POLICIES: dict[str, SelectPolicy] = {
    p.name: p for p in (
        SelectPolicy("exact", "hw", "square", 8, "error",
                     "least squared error (F=8) over every (candidate, recycling option) pair"),
        SelectPolicy("sq6", "hw-sq6", "square", 6, "error",
                     "least squared error with F=6 fraction bits over every pair"),
        SelectPolicy("abs", "hw-abs", "abs", 8, "error", "least sum of |error| (F=8, no squarer) over every pair"),
        SelectPolicy("hits", "hw-hits", "square", 8, "hits",
                     "recycling option by the count of elements rounding to R; candidate by least "
                     "squared error (F=8) of its symmetric rounding"),
        SelectPolicy("hits6", "hw-hits6", "square", 6, "hits", "hits with F=6 fraction bits"),
        SelectPolicy("hits-abs", "hw-hits-abs", "abs", 8, "hits", "hits with the sum of |error| (F=8, no squarer)"),
        SelectPolicy("scaled", "hw-scaled", "square", None, "error",
                     f"least squared error over every pair, each in its own scale's units (F = element width + "
                     f"{SCALED_GUARD_BITS} bits below the candidate's top level)", units="scale"),
    )
}
#: The policy of a unit built without ``select`` (docs/encoder.md says why): as accurate as ``exact`` (better on
#: nxfp6) with a cheaper error path.
DEFAULT_SELECT = "scaled"


def check_select(name: str, fmt: BlockFormat, argument: str = "--select") -> SelectPolicy:
    """The policy ``name`` for ``fmt``; :class:`SelectError` naming ``argument`` when ``name`` is unknown,
    when ``fmt`` has a single (candidate, option) pair (nothing to select), or when the policy needs
    recycling options the format lacks."""
    if name not in SELECT_POLICIES:
        raise SelectError(f"{argument}: unknown selection policy {name!r}; choose from {', '.join(SELECT_POLICIES)}")
    policy = SELECT_POLICIES[name]
    options = max(fmt.recycle_options, 1)
    if len(fmt.elements) * options == 1:
        raise SelectError(f"{argument} {name}: format {fmt.label} has one element candidate and no recycling "
                          "option, so there is nothing to select")
    if name == "scaled" and fmt.rule == "search":
        raise SelectError(f"{argument} {name}: format {fmt.label} uses scale rule 'search'; policy 'scaled' "
                          "needs 'ocp' or 'ceil'")
    if policy.recycling == "hits" and options < 2:
        raise SelectError(f"{argument} {name}: policy {name!r} chooses between recycling options, and format "
                          f"{fmt.label} has {'none' if not fmt.recycling else 'a single fixed R'}")
    return policy


def select_metric(fmt: BlockFormat, select: str | None = None) -> str:
    """The golden ``metric`` name of the encoder of ``fmt`` under policy ``select`` (default
    :data:`DEFAULT_SELECT`); ``"float64"`` for single-pair formats, where no metric is consulted."""
    if len(fmt.elements) * max(fmt.recycle_options, 1) == 1:
        if select is not None:
            check_select(select, fmt)
        return "float64"
    return check_select(select or DEFAULT_SELECT, fmt).metric


def quantize_blocks_hits(fmt: BlockFormat, x: np.ndarray, frac_bits: int = 8,
                         error: str = "square") -> tuple[np.ndarray, np.ndarray]:
    """Policy ``hits`` on blocks ``x`` float64 ``(n, k)``: ``(headers (n,), codes (n, k))`` int64 (module doc).

    Per candidate, every option is rounded as spec 5.2-5.3 ask (its own scale); ``hits[j]`` counts the
    elements whose code is the recycled code; the option kept is the first with the most hits. The
    candidate's error is ``block_error_hw`` of the symmetric rounding: a positive element rounded as by
    the first option whose ``R`` is positive, a negative one (sign bit set) as by the first whose ``R`` is
    negative (option 0 when there is none). Least error wins, ties to the lowest selector."""
    from .quantize import _round_table, _scale_ceil, _scale_ocp

    if fmt.rule == "search":
        raise SelectError(f"--select hits: format {fmt.label} uses scale rule 'search'; hits needs 'ocp' or 'ceil'")
    n = x.shape[0]
    scale_values = fmt.scale.code_values()
    with np.errstate(invalid="ignore"):
        amax = np.max(np.abs(x), axis=1) if x.shape[1] else np.zeros(n)
    bad = ~np.isfinite(amax)
    xs = np.where(bad[:, None], 0.0, x)
    amax = np.where(bad, 0.0, amax)
    from .quantize import _round_to_table

    best_err = np.full(n, np.inf)
    best_hdr = np.zeros(n, dtype=np.int64)
    best_codes = np.zeros(x.shape, dtype=np.int64)
    for cand in range(len(fmt.elements)):
        rcode = fmt.elements[cand].negative_zero_code
        opt_codes, opt_q, hits = [], [], []
        scales = []
        for rec in range(fmt.recycle_options):
            t = _round_table(fmt, cand, rec)
            sc = _scale_ocp(fmt, amax, t) if fmt.rule == "ocp" else _scale_ceil(fmt, amax, t)
            scale = scale_values[sc][:, None]
            codes, vals = _round_to_table(xs, scale, t)
            opt_codes.append(codes)
            opt_q.append(vals * scale)
            hits.append(np.sum(codes == rcode, axis=1))
            scales.append(sc)
        hits_a = np.stack(hits)
        opt = np.argmax(hits_a, axis=0)  # the first of the most hits
        rs = [float(r) for r in fmt.recycling[cand]]
        j_pos = next((j for j, r in enumerate(rs) if r > 0), 0)
        j_neg = next((j for j, r in enumerate(rs) if r < 0), 0)
        q_sym = np.where(np.signbit(xs), opt_q[j_neg], opt_q[j_pos])
        err = block_error_hw(xs, q_sym, frac_bits=frac_bits, error=error)
        codes = np.take_along_axis(np.stack(opt_codes), opt[None, :, None].repeat(x.shape[1], axis=2), axis=0)[0]
        sc = np.choose(opt, scales)
        better = (err < best_err) | (cand == 0)  # strict: ties keep the lower selector
        best_err = np.where(better, err, best_err)
        best_hdr = np.where(better, fmt.make_header(sc, cand, opt), best_hdr)
        best_codes = np.where(better[:, None], codes, best_codes)
    best_hdr = np.where(bad, fmt.make_header(fmt.scale.nan_code, 0, 0), best_hdr)
    best_codes = np.where(bad[:, None], 0, best_codes)
    return best_hdr, best_codes


@dataclass(frozen=True)
class ScaledGeometry:
    """Fixed-point geometry of policy ``scaled`` for one element candidate (module doc).

    ``frac``: fraction bits of the rounding midpoints (the encoder's rounding works on
    ``y = floor(|x| * 2^(frac + b - e))``, ``width`` bits and an overflow flag); ``top_exp``: ``t``;
    ``shift``: ``F - t - frac - b``, so ``xf = floor(y * 2^shift)`` (``shift > 0``: the alignment keeps
    ``shift`` more bits); ``x_width``: ``Wx = width + shift``; ``d_width``: ``Wd``, the bits of the
    largest ``|D|`` of an element inside the candidate's range (the half gap between levels or the
    overhang beyond a sign's top level, at the largest ``2^b + M``), plus one for the floors; with a
    :func:`scaled_delta_plan` only the symmetric rounding's levels count (the one rounding measured)."""

    frac: int
    width: int
    top_exp: int
    shift: int
    x_width: int
    d_width: int


@functools.lru_cache(maxsize=64)
def scaled_geometry(fmt: BlockFormat, cand: int, frac_bits: int | None = None) -> ScaledGeometry:
    """The :class:`ScaledGeometry` of candidate ``cand`` of ``fmt`` (shared by the golden model and the
    RTL encoder, so both clip at the same widths)."""
    frac_bits = _resolve_frac_bits(fmt, frac_bits)
    from .quantize import _round_table

    b = fmt.scale.mbits
    options = range(max(fmt.recycle_options, 1))
    tables = [_round_table(fmt, cand, j) for j in options]
    mids = {abs(Fraction(float(m))) for t in tables for m in t.mids}
    frac = max([q.denominator.bit_length() - 1 for q in mids] + [0])
    p_max = (1 << (b + 1)) - 1  # the largest 2^b + M
    width = (p_max * max(int(q * 2**frac) for q in mids)).bit_length()
    maxe = max(fmt.max_element(cand, j) for j in options)
    top_exp = _top_exp(fmt, cand)
    shift = frac_bits - top_exp - frac - b
    if fmt.rule == "ocp":  # OCP scales leave |x| / X below 2^(emax_elem + 1)
        reach = Fraction(2) ** (max(fmt.emax_element(cand, j) for j in options) + 1)
    else:
        reach = Fraction(maxe)
    plan = scaled_delta_plan(fmt, frac_bits)
    if plan is None:  # every pair measured on its own: both signs of every option's levels
        sides = [side for t in tables for side in (t.values[t.values >= 0], -t.values[t.values <= 0])]
    else:  # only the symmetric rounding is measured: each sign rounds with the option whose R has that sign
        jp, jn = plan[cand]
        sides = [tables[jp].values[tables[jp].values >= 0], -tables[jn].values[tables[jn].values <= 0]]
    gap = Fraction(0)
    for side in sides:
        lv = sorted({Fraction(float(v)) for v in side})
        gap = max([gap, reach - lv[-1]] + [(hi - lo) / 2 for lo, hi in zip(lv[:-1], lv[1:], strict=True)])
    d_units = gap * p_max / 2**b * Fraction(2) ** (frac_bits - top_exp)
    d_width = (int(d_units) + 1).bit_length()
    return ScaledGeometry(frac, width, top_exp, shift, width + shift, d_width)


def scaled_delta_plan(fmt: BlockFormat, frac_bits: int | None = None) -> tuple[tuple[int, int], ...] | None:
    """Whether policy ``scaled`` measures the recycling options of every candidate from one symmetric
    rounding plus a correction (module doc, "one error path per candidate"): per candidate ``(option with
    +R, option with -R)``, or ``None`` (every pair measured on its own). It applies when every candidate
    has two options ``+r``/``-r`` of one ``max_elem``, the levels without ``R`` next to ``|R|`` lie at one
    distance (or ``|R|`` is above the top level), and ``|R|`` and those levels are whole numbers of the
    metric's unit at every NanoMantissa value (so ``yf`` needs no floor there)."""
    frac_bits = _resolve_frac_bits(fmt, frac_bits)
    if not fmt.recycling or fmt.recycle_options != 2:
        return None
    b = fmt.scale.mbits
    plan = []
    for c in range(len(fmt.elements)):
        rs = [float(r) for r in fmt.recycling[c]]
        if rs[0] != -rs[1] or fmt.max_element(c, 0) != fmt.max_element(c, 1):
            return None
        r, lo, hi = _recycled_neighbours(fmt, c)
        if hi is not None and hi - r != r - lo:
            return None
        top = _top_exp(fmt, c)
        for v in (r, lo) if hi is None else (r, lo, hi):
            for p in range(1 << b, 1 << (b + 1)):
                if (v * p * Fraction(2) ** (frac_bits - top - b)).denominator != 1:
                    return None
        plan.append((0, 1) if rs[0] > 0 else (1, 0))
    return tuple(plan)


def scaled_hits_by_count(fmt: BlockFormat, cand: int) -> bool:
    """Whether policy ``scaled`` (with a :func:`scaled_delta_plan`) charges each hit an option of candidate
    ``cand`` cannot code ``floor(delta^2 / 2)`` (its expected extra error, ``|D|`` spread evenly below
    ``delta / 2``) instead of the exact ``delta^2 - 2 delta |D|``: when ``|R|`` lies above the candidate's top
    level, where the hits are the rare elements beyond that level (module doc)."""
    return _recycled_neighbours(fmt, cand)[2] is None


def _recycled_neighbours(fmt: BlockFormat, cand: int) -> tuple[Fraction, Fraction, Fraction | None]:
    """``(|R|, the largest level below it, the smallest above it or None)`` of candidate ``cand`` (levels
    without ``R``, option 0's ``R``)."""
    r = Fraction(abs(float(fmt.recycling[cand][0])))
    mags = sorted({abs(Fraction(float(v))) for v in fmt.elements[cand].code_values() if np.isfinite(v)})
    return r, max(v for v in mags if v < r), min((v for v in mags if v > r), default=None)


def scaled_delta_constants(fmt: BlockFormat, cand: int, frac_bits: int | None = None) -> tuple[int, ...]:
    """For a format with a :func:`scaled_delta_plan`: candidate ``cand``'s ``delta`` in metric units at every
    ``2^b + M`` (the distance from ``|R|`` to the levels without ``R`` next to it). The RTL encoder builds its
    correction from these."""
    frac_bits = _resolve_frac_bits(fmt, frac_bits)
    b = fmt.scale.mbits
    r, lo, _hi = _recycled_neighbours(fmt, cand)
    unit = Fraction(2) ** (frac_bits - _top_exp(fmt, cand) - b)
    return tuple(int((r - lo) * p * unit) for p in range(1 << b, 1 << (b + 1)))


def scale_fields(fmt: BlockFormat, pairs: list[tuple[int, int]]) -> np.ndarray:
    """The scale exponent fields (``code >> mbits``) the scale rule gives the (candidate, option) ``pairs``
    of ``fmt`` over every finite block: ``(len(pairs), points)``, one column per class of ``amax``. Exact:
    the codes change only at the rule's thresholds, and every threshold and its float neighbours are tried."""
    from .quantize import _round_table, _scale_ceil, _scale_ocp

    sf = fmt.scale
    tables = [_round_table(fmt, c, j) for c, j in pairs]
    values = sf.code_values()[: sf.max_code + 1]
    points = [0.0, 2.0**-149, float(np.finfo(np.float64).max)]
    for t in tables:
        for v in values * t.max_elem:
            points += [v, np.nextafter(v, 0.0), np.nextafter(v, np.inf)]
        points += [float(2.0**e) for e in range(-149, 128)]
    amax = np.unique(np.array(points, dtype=np.float64))
    return np.stack([(_scale_ocp(fmt, amax, t) if fmt.rule == "ocp" else _scale_ceil(fmt, amax, t)) >> sf.mbits
                     for t in tables])


def scaled_unit_span(fmt: BlockFormat, frac_bits: int | None = None) -> int:
    """The largest difference, over every finite block, between the unit exponents of two pairs of
    policy ``scaled`` (``field + t``: the hardware shifts a pair's error left by twice its difference
    to the least before comparing), from :func:`scale_fields`."""
    frac_bits = _resolve_frac_bits(fmt, frac_bits)
    pairs = [(c, j) for c in range(len(fmt.elements)) for j in range(max(fmt.recycle_options, 1))]
    tops = np.array([scaled_geometry(fmt, c, frac_bits).top_exp for c, _ in pairs])[:, None]
    units = scale_fields(fmt, pairs) + tops
    return int(np.max(units - units.min(axis=0)))


def scaled_pair_keys(fmt: BlockFormat, x: np.ndarray, frac_bits: int | None = None
                     ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Policy ``scaled`` on blocks ``x`` float64 ``(n, k)``, every (candidate, option) pair in selection order:
    ``(keys, headers, codes, bad)``: ``keys`` ``(n, pairs)`` float64 holding the exact integers
    ``error * 4^(unit - least unit)`` (below ``2^53``), per pair its headers ``(n,)`` and codes ``(n, k)``,
    and ``bad`` the blocks holding NaN or Inf (their keys are meaningless)."""
    frac_bits = _resolve_frac_bits(fmt, frac_bits)
    from .quantize import _round_table, _round_to_table, _scale_ceil, _scale_ocp

    if fmt.rule == "search":
        raise SelectError(f"--select scaled: format {fmt.label} uses scale rule 'search'; scaled needs 'ocp' or 'ceil'")
    n = x.shape[0]
    sf = fmt.scale
    scale_values = sf.code_values()
    with np.errstate(invalid="ignore"):
        amax = np.max(np.abs(x), axis=1) if x.shape[1] else np.zeros(n)
    bad = ~np.isfinite(amax)
    xs = np.where(bad[:, None], 0.0, x)
    amax = np.where(bad, 0.0, amax)
    ax = np.abs(xs)
    neg = np.signbit(xs)
    plan = scaled_delta_plan(fmt, frac_bits)
    pairs = []  # (header, codes, error, unit exponent)
    for cand in range(len(fmt.elements)):
        geo = scaled_geometry(fmt, cand, frac_bits)
        dmax = 2.0**geo.d_width - 1
        opts = []  # per option: header, codes, element values, signed D, unit, scale
        for rec in range(max(fmt.recycle_options, 1)):
            t = _round_table(fmt, cand, rec)
            sc = _scale_ocp(fmt, amax, t) if fmt.rule == "ocp" else _scale_ceil(fmt, amax, t)
            scale = scale_values[sc][:, None]
            codes, vals = _round_to_table(xs, scale, t)
            unit = (sc >> sf.mbits) - sf.bias + geo.top_exp - frac_bits  # u = 2^unit
            sh = -unit[:, None]
            xf = np.minimum(np.floor(np.ldexp(ax, sh)), 2.0**geo.x_width - 1)
            yf = np.floor(np.ldexp(np.abs(vals * scale), sh))  # vals * scale: exact (few significant bits)
            opts.append((fmt.make_header(sc, cand, rec), codes, vals, xf - yf, unit, scale))
        if plan is None:  # every pair measured on its own
            for hdr, codes, _, d, unit, _ in opts:
                dc = np.minimum(np.abs(d), dmax).astype(np.int64)
                pairs.append((hdr, codes, np.sum(dc * dc, axis=1), unit))
            continue
        # One symmetric rounding (each element rounded as by the option whose R has its sign), corrected for
        # the hits (elements rounding to R) an option cannot code: + (delta^2 - 2 delta |D|) each.
        jp, jn = plan[cand]
        r = abs(float(fmt.recycling[cand][jp]))
        d = np.where(neg, opts[jn][3], opts[jp][3])
        dc = np.minimum(np.abs(d), dmax)
        e_sym = np.sum(dc.astype(np.int64) ** 2, axis=1)
        rcode = fmt.elements[cand].negative_zero_code
        hit = np.where(neg, opts[jn][1], opts[jp][1]) == rcode
        low = np.abs(np.where(neg, opts[jp][2], opts[jn][2]))  # the level without R of each element
        delta = np.ldexp(np.abs(r - low) * opts[jp][5], -opts[jp][4][:, None])  # exact
        if scaled_hits_by_count(fmt, cand):  # |R| above the top level: floor(delta^2 / 2) per uncodable hit
            corr = np.where(hit, np.floor(delta * delta / 2), 0).astype(np.int64)
        else:  # dc^2 + corr = (delta - dc)^2, the distance to the level without R
            corr = np.where(hit, delta * delta - 2 * delta * dc, 0).astype(np.int64)
        unit = opts[jp][4]
        for j, (hdr, codes, *_rest) in enumerate(opts):
            uncodable = neg if j == jp else ~neg  # hits of the sign whose R the option lacks
            pairs.append((hdr, codes, e_sym + np.sum(np.where(uncodable, corr, 0), axis=1), unit))
    low = np.min([u for *_, u in pairs], axis=0)
    keys = np.stack([np.ldexp(err.astype(np.float64), 2 * (unit - low)) for _, _, err, unit in pairs], axis=1)
    return keys, [p[0] for p in pairs], [p[1] for p in pairs], bad


def quantize_blocks_scaled(fmt: BlockFormat, x: np.ndarray,
                           frac_bits: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Policy ``scaled`` on blocks ``x`` float64 ``(n, k)``: ``(headers (n,), codes (n, k))`` int64 (module
    doc): every pair rounded as spec 5.2-5.3 ask, its error in its own scale's units, the least
    ``error * u^2`` wins, ties to the lowest selector, then option."""
    frac_bits = _resolve_frac_bits(fmt, frac_bits)
    keys, headers, codes, bad = scaled_pair_keys(fmt, x, frac_bits)
    best = np.argmin(keys, axis=1)  # the first of the least: ties to the lowest selector, then option
    rows = np.arange(x.shape[0])
    best_hdr = np.stack(headers, axis=1)[rows, best]
    best_codes = np.stack(codes, axis=1)[rows, best]
    sf = fmt.scale
    best_hdr = np.where(bad, fmt.make_header(sf.nan_code, 0, 0), best_hdr)
    best_codes = np.where(bad[:, None], 0, best_codes)
    return np.asarray(best_hdr, dtype=np.int64), np.asarray(best_codes, dtype=np.int64)


#: Selections that are not a least-error search over every pair: golden name -> ``f(fmt, x) -> (headers, codes)``
#: (:func:`nxfp_hw.golden.quantize.quantize_blocks` hands these names over).
SELECTIONS: dict[str, Callable[[BlockFormat, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "hw-hits": quantize_blocks_hits,
    "hw-hits6": functools.partial(quantize_blocks_hits, frac_bits=6),
    "hw-hits-abs": functools.partial(quantize_blocks_hits, error="abs"),
    "hw-scaled": quantize_blocks_scaled,
}
