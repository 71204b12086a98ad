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

Single-pair formats (every MX preset) have nothing to select: every policy gives the same bits there,
and asking for one by name is refused (:func:`check_select`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..formats import BlockFormat
from .hw_metric import block_error_hw

__all__ = ["DEFAULT_SELECT", "SELECTIONS", "SELECT_POLICIES", "SelectError", "SelectPolicy", "check_select",
           "quantize_blocks_hits", "select_metric"]


class SelectError(UserError, ValueError):
    """An unknown selection policy, or one the block format cannot use."""


@dataclass(frozen=True)
class SelectPolicy:
    """One documented way to choose a block's (candidate, recycling option) pair (module doc).

    ``metric``: the golden name (``quantize(..., metric=...)``); ``error``: ``"square"`` or ``"abs"``;
    ``frac_bits``: ``F`` of the fixed-point metric; ``recycling``: ``"error"`` (every option measured)
    or ``"hits"`` (the option from the count of elements rounding to ``R``)."""

    name: str
    metric: str
    error: str
    frac_bits: int
    recycling: str
    summary: str


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
    )
}
#: The policy of a unit built without ``select`` (docs/encoder.md says why).
DEFAULT_SELECT = "exact"


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


#: Selections that are not a least-error search over every pair: golden name -> ``f(fmt, x) -> (headers, codes)``
#: (:func:`nxfp_hw.golden.quantize.quantize_blocks` hands these names over).
SELECTIONS: dict[str, Callable[[BlockFormat, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "hw-hits": quantize_blocks_hits,
    "hw-hits6": functools.partial(quantize_blocks_hits, frac_bits=6),
    "hw-hits-abs": functools.partial(quantize_blocks_hits, error="abs"),
}
