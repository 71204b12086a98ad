"""Implementation policies of a block quantizer (spec 5 and the choices other implementations make).

Spec 5 fixes one way to cast floats into a block format. Hardware from other projects documents
other choices; a :class:`Policy` states them so the golden model reproduces such a unit bit for bit
(docs/golden.md "Policies"):

- ``rounding``: ties to the code whose LSB is 0 (``even``, spec 5.3) or to the larger magnitude
  (``away``, microxcaling's default ``round="nearest"``, spec 10);
- ``overflow``: an element beyond the largest level saturates (``saturate``, spec 5.3) or becomes
  Inf/NaN (``inf_nan``, the OCP FP8 non-saturating conversion): ``x / X`` rounding past the largest
  finite level (with an unbounded exponent, ties by ``rounding``) gives the Inf code of its sign
  where the element format has Inf (E5M2), else the NaN code of its sign (E4M3);
- ``nonfinite``: a NaN/Inf input makes the whole block NaN (``nan_header``, spec 5.1) or only its
  own element (``nan_elements``): the scale comes from the finite inputs, an Inf input gives the
  Inf code of its sign (or the NaN code of its sign), a NaN input the NaN code of its sign;
- ``scale_min_code``: the scale code is clamped from below (``max(rule's code, scale_min_code)``),
  the elements are rounded with the clamped scale;
- ``scale_offset``: the scale a unit *reports* is ``code + scale_offset`` (an integer, or
  ``"emax_elem"``: the shared exponent before the element's ``emax_elem`` is subtracted, i.e. a
  scale relative to the element bias); the header keeps the real code;
- ``nan_block_codes``: the element codes of a NaN-header block are 0 (``zero``, spec 5.1) or
  unspecified (``dont_care``: not compared);
- ``metric``: the block error that picks the (candidate, recycling option) pair of an adaptive format
  (spec 5.4): ``float64`` (the spec's) or ``hw`` (nxfp-hw's encoder's fixed-point metric); formats with
  one pair never consult it.

:data:`PRESETS` names the conventions: ``spec`` (this project's quantizer, spec 5), ``ocp`` (OCP
MX v1.0: spec 5 with don't-care elements in a NaN block), ``microxcaling`` (Microsoft's emulation
library defaults, as its ``mx_ops._quantize_mx`` computes them: ``round="nearest"`` is
``floor(|x| + 1/2)``, ties away from zero; ``saturate_normals=True``; the shared exponent clamped to
``[-127, 127]``, i.e. E8M0 codes 0..254; a NaN or Inf input makes the shared exponent, hence the
block, NaN; its float32 ``log2`` of spec 10 is not reproduced: the exact floor is used),
``nonsaturating`` (OCP FP8 non-saturating conversion: overflow to Inf/NaN) and ``nan_elements``
(NaN/Inf inputs as per-element NaN/Inf codes). No Amaranth, no cocotb; vectorised NumPy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UserError
from ..formats import BlockFormat

__all__ = ["PRESETS", "EncodedBlocks", "Policy", "PolicyError", "encode_blocks", "parse_policy"]

ROUNDING = ("even", "away")
OVERFLOW = ("saturate", "inf_nan")
NONFINITE = ("nan_header", "nan_elements")
NAN_BLOCK_CODES = ("zero", "dont_care")


class PolicyError(UserError, ValueError):
    """A policy that does not exist or does not apply to a format."""


@dataclass(frozen=True)
class Policy:
    """Implementation choices of a quantizer (module docstring); the defaults are spec 5."""

    name: str = "spec"
    rounding: str = "even"
    overflow: str = "saturate"
    nonfinite: str = "nan_header"
    scale_min_code: int = 0
    scale_offset: int | str = 0
    nan_block_codes: str = "zero"
    metric: str = "float64"

    def __post_init__(self) -> None:
        from .quantize import METRICS

        if self.metric not in METRICS:
            raise PolicyError(f"policy.metric: expected one of {', '.join(METRICS)}, got {self.metric!r}")
        for key, allowed in (("rounding", ROUNDING), ("overflow", OVERFLOW), ("nonfinite", NONFINITE),
                             ("nan_block_codes", NAN_BLOCK_CODES)):
            if getattr(self, key) not in allowed:
                raise PolicyError(f"policy.{key}: expected one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        if isinstance(self.scale_min_code, bool) or not isinstance(self.scale_min_code, int) or self.scale_min_code < 0:
            raise PolicyError(f"policy.scale_min_code: expected an integer >= 0, got {self.scale_min_code!r}")
        off = self.scale_offset
        if not (off == "emax_elem" or (isinstance(off, int) and not isinstance(off, bool))):
            raise PolicyError(f"policy.scale_offset: expected an integer or \"emax_elem\", got {off!r}")

    @property
    def is_spec(self) -> bool:
        """True when every element code and header equals spec 5's (the plain quantizer)."""
        return (self.rounding, self.overflow, self.nonfinite, self.scale_min_code) == ("even", "saturate",
                                                                                      "nan_header", 0)

    def check(self, fmt: BlockFormat) -> None:
        """``PolicyError`` when this policy cannot apply to ``fmt`` (naming the field)."""
        if self.scale_min_code > fmt.scale.max_code:
            raise PolicyError(f"policy.scale_min_code: {self.scale_min_code} is beyond the largest non-NaN scale code "
                              f"{fmt.scale.max_code} of {fmt.label}")
        for key, value, need in (("overflow", self.overflow, "inf_nan"), ("nonfinite", self.nonfinite, "nan_elements")):
            if value == need:
                bad = [e.name for e in fmt.elements if not (e.has_nan or e.has_inf)]
                if bad:
                    raise PolicyError(f"policy.{key}: {value} needs element formats with a NaN or Inf code; "
                                      f"{fmt.label} has {', '.join(bad)}")
        if self.scale_offset == "emax_elem" and len({fmt.emax_element(c, 0) for c in range(len(fmt.elements))}) > 1:
            raise PolicyError("policy.scale_offset: emax_elem differs between the element candidates of "
                              f"{fmt.label}; give an integer offset")

    def offset(self, fmt: BlockFormat) -> int:
        """The reported-scale offset as an integer for ``fmt``."""
        return int(fmt.emax_element(0, 0)) if self.scale_offset == "emax_elem" else int(self.scale_offset)

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, Policy] = {
    "spec": Policy("spec"),
    "ocp": Policy("ocp", nan_block_codes="dont_care"),
    "microxcaling": Policy("microxcaling", rounding="away", nan_block_codes="dont_care"),
    "nonsaturating": Policy("nonsaturating", overflow="inf_nan"),
    "nan_elements": Policy("nan_elements", nonfinite="nan_elements"),
}


def parse_policy(spec: str | Mapping[str, Any] | Policy | None, where: str = "policy") -> Policy:
    """A :class:`Policy` from a preset name, or a mapping ``{"preset": name, field: value, ...}``
    (fields override the preset; default preset ``spec``). ``PolicyError`` names the bad key."""
    if spec is None:
        return PRESETS["spec"]
    if isinstance(spec, Policy):
        return spec
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise PolicyError(f"{where}: unknown policy {spec!r}; presets: {', '.join(PRESETS)}")
        return PRESETS[spec]
    if not isinstance(spec, Mapping):
        raise PolicyError(f"{where}: expected a preset name or an object, got {type(spec).__name__}")
    fields = {f.name for f in dataclasses.fields(Policy)} - {"name"}
    unknown = sorted(set(spec) - fields - {"preset"})
    if unknown:
        raise PolicyError(f"{where}.{unknown[0]}: unknown policy field; fields: preset, {', '.join(sorted(fields))}")
    base = parse_policy(spec.get("preset", "spec"), f"{where}.preset")
    changes = {k: v for k, v in spec.items() if k != "preset"}
    try:
        name = base.name if not changes else f"{base.name}+" + ",".join(f"{k}={v}" for k, v in sorted(changes.items()))
        return dataclasses.replace(base, name=name, **changes)
    except PolicyError as exc:
        raise PolicyError(str(exc).replace("policy.", f"{where}.", 1)) from None


@dataclass(frozen=True)
class EncodedBlocks:
    """Blocks quantized under a policy: ``headers`` ``(n,)`` and ``codes`` ``(n, k)`` (int64) as the
    format stores them, ``scale`` ``(n,)`` the scale a unit reports (code + offset; the NaN code of a
    NaN block as is), and ``codes_care`` ``(n, k)`` bool: False where a code is unspecified."""

    headers: np.ndarray
    scale: np.ndarray
    codes: np.ndarray
    codes_care: np.ndarray


def _nan_code(elem, sign: np.ndarray) -> np.ndarray:
    """The NaN code of each sign: sign bit and all exponent and mantissa bits set."""
    return (sign.astype(np.int64) << (elem.width - 1)) | ((1 << (elem.width - 1)) - 1)


def _inf_or_nan_code(elem, sign: np.ndarray) -> np.ndarray:
    if elem.has_inf:  # E all ones, M = 0
        return (sign.astype(np.int64) << (elem.width - 1)) | (((1 << elem.ebits) - 1) << elem.mbits)
    return _nan_code(elem, sign)


def _overflow_bound(elem, max_elem: float, rounding: str, max_code: int) -> tuple[float, bool]:
    """``(midpoint between the largest level and the next one up, whether a tie there overflows)``."""
    emax = int(np.floor(np.log2(max_elem)))
    beyond = max_elem + 2.0 ** (emax - elem.mbits)
    # The next level up has an even significand LSB exactly when max's is odd.
    tie_over = rounding == "away" or (max_code & 1) == 1
    return (max_elem + beyond) / 2, tie_over


def encode_blocks(fmt: BlockFormat, x: np.ndarray, policy: Policy | str | Mapping[str, Any] | None = None,
                  metric: str | None = None) -> EncodedBlocks:
    """Quantize blocks ``x`` float64 ``(n, k)`` to ``fmt`` under ``policy`` (spec 5 as modified by it).

    With the ``spec`` policy this is exactly :func:`~nxfp_hw.golden.quantize.quantize_blocks`. The pair
    search (spec 5.4) compares block errors (``metric``, default the policy's) over the finite inputs,
    elements as the policy rounds them (an overflowed element counts as the largest level).
    """
    from .quantize import quantize_blocks

    pol = parse_policy(policy)
    pol.check(fmt)
    metric = metric or pol.metric
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != fmt.k:
        raise ValueError(f"x must have shape (n, {fmt.k}), got {x.shape}")
    nan_code = fmt.scale.nan_code
    if pol.is_spec:
        headers, codes = quantize_blocks(fmt, x, metric)
    else:
        headers, codes = _encode_general(fmt, x, pol, metric)
    scale_code = fmt.split_header(headers)[0].astype(np.int64)
    is_nan = scale_code == nan_code
    scale = np.where(is_nan, scale_code, scale_code + pol.offset(fmt))
    care = np.ones(x.shape, bool)
    if pol.nan_block_codes == "dont_care":
        care &= ~is_nan[:, None]
    return EncodedBlocks(headers.astype(np.int64), scale.astype(np.int64), codes.astype(np.int64), care)


def _encode_general(fmt: BlockFormat, x: np.ndarray, pol: Policy, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The quantizer loop of ``quantize_blocks`` with the policy's choices (any policy, spec included)."""
    from .quantize import _metric, _round_table, _round_to_table, _scale_trials

    n = x.shape[0]
    nan_code = fmt.scale.nan_code
    err_fn = _metric(metric)
    scale_values = fmt.scale.code_values()
    finite = np.isfinite(x)
    xs = np.where(finite, x, 0.0)
    amax = np.max(np.abs(xs), axis=1) if fmt.k else np.zeros(n)
    block_bad = ~np.all(finite, axis=1) if pol.nonfinite == "nan_header" else np.zeros(n, bool)
    amax = np.where(block_bad, 0.0, amax)
    best_err = np.full(n, np.inf)
    headers = np.zeros(n, dtype=np.int64)
    codes = np.zeros(x.shape, dtype=np.int64)
    for cand, elem in enumerate(fmt.elements):
        for rec in range(max(fmt.recycle_options, 1)):
            t = _round_table(fmt, cand, rec)
            if pol.rounding == "away":
                t = dataclasses.replace(t, tie_up=np.abs(t.values[1:]) > np.abs(t.values[:-1]))
            trials = [np.maximum(sc, pol.scale_min_code) for sc in _scale_trials(fmt, amax, t)]
            pair_err, pair_scale, pair_codes = np.full(n, np.inf), trials[0], None
            for sc in trials:  # largest scale first: strict < keeps ties at the larger scale
                scale = scale_values[sc][:, None]
                c, vals = _round_to_table(xs, scale, t)
                if pol.overflow == "inf_nan":
                    mid, tie_over = _overflow_bound(elem, t.max_elem, pol.rounding, int(t.codes[-1]))
                    lim = scale * mid  # exact: few significant bits
                    over = (np.abs(xs) > lim) | ((np.abs(xs) == lim) & tie_over)
                    c = np.where(over, _inf_or_nan_code(elem, np.signbit(xs)), c)
                err = err_fn(xs, vals * scale)
                better = err < pair_err
                pair_err = np.where(better, err, pair_err)
                pair_scale = np.where(better, sc, pair_scale)
                pair_codes = c if pair_codes is None else np.where(better[:, None], c, pair_codes)
            if pol.nonfinite == "nan_elements":
                signs = np.signbit(x)
                special = np.where(np.isnan(x), _nan_code(elem, signs), _inf_or_nan_code(elem, signs))
                pair_codes = np.where(finite, pair_codes, special)
            better = pair_err < best_err
            best_err = np.where(better, pair_err, best_err)
            headers = np.where(better, fmt.make_header(pair_scale, cand, rec), headers)
            codes = np.where(better[:, None], pair_codes, codes)
    headers = np.where(block_bad, fmt.make_header(nan_code, 0, 0), headers)
    codes = np.where(block_bad[:, None], 0, codes)
    return headers, codes
