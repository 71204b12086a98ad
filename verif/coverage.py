"""Functional coverage of the stimulus a DUT accepted and the results it produced.

Per block format (spec 2-4): element codes per candidate format, scale codes (the NaN code
included), AM selectors, (selector, recycling option) pairs of the headers (for an encoder: the
pairs its selection chose, spec 5.4), recycled values (the -0 code under every (candidate, option) pair), and
value classes per candidate (zero, subnormal, normal, max magnitude, negative, NaN, Inf, recycled,
most negative INT code). Per IEEE result stream: +-0, +-subnormal, normal, +-Inf, NaN.
Sampling is vectorised over transactions; bins are boolean arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nxfp_hw.formats import BlockFormat, ElementFormat

__all__ = ["ELEMENT_CLASSES", "RESULT_CLASSES", "FormatCoverage", "ResultCoverage", "element_classes"]

ELEMENT_CLASSES = ("zero", "subnormal", "normal", "max", "negative", "nan", "inf", "recycled", "int_min")
RESULT_CLASSES = ("+0", "-0", "+subnormal", "-subnormal", "normal", "+inf", "-inf", "nan")


def element_classes(elem: ElementFormat, recycling: bool) -> np.ndarray:
    """Boolean ``(len(ELEMENT_CLASSES), 2**w)``: which codes belong to which value class."""
    codes = np.arange(1 << elem.width)
    vals = elem.code_values()
    finite = np.isfinite(vals)
    out = np.zeros((len(ELEMENT_CLASSES), codes.size), dtype=bool)
    rec = np.zeros(codes.size, dtype=bool)
    if recycling and elem.negative_zero_code is not None:
        rec[elem.negative_zero_code] = True
    c = {name: i for i, name in enumerate(ELEMENT_CLASSES)}
    out[c["nan"]] = np.isnan(vals)
    out[c["inf"]] = np.isinf(vals)
    out[c["recycled"]] = rec
    out[c["zero"]] = finite & (vals == 0) & ~rec
    out[c["max"]] = finite & (np.abs(vals) == elem.max_value) & ~rec
    out[c["negative"]] = finite & np.signbit(vals) & (vals != 0) & ~rec
    if elem.is_int:
        out[c["int_min"]] = codes == 1 << (elem.width - 1)
        out[c["normal"]] = finite & (vals != 0)
    else:
        exp_field = (codes >> elem.mbits) & ((1 << elem.ebits) - 1)
        out[c["subnormal"]] = finite & (exp_field == 0) & (vals != 0)
        out[c["normal"]] = finite & (exp_field != 0)
    return out


class FormatCoverage:
    """Coverage bins of the headers and codes of one operand in one block format."""

    def __init__(self, fmt: BlockFormat, name: str = "a"):
        self.fmt, self.name = fmt, name
        n_cand, n_opt, n_codes = len(fmt.elements), max(fmt.recycle_options, 1), 1 << fmt.element_width
        self.codes = np.zeros((n_cand, n_codes), dtype=bool)
        self.scales = np.zeros(1 << fmt.scale.width, dtype=bool)
        self.selectors = np.zeros(n_cand, dtype=bool)
        self.recycled = np.zeros((n_cand, n_opt), dtype=bool)
        self.pairs = np.zeros((n_cand, n_opt), dtype=bool)
        self._classes = np.stack([element_classes(e, bool(fmt.recycling)) for e in fmt.elements])  # (C, K, W)
        self.classes = np.zeros(self._classes.shape[:2], dtype=bool)
        self.samples = 0

    def sample(self, headers: np.ndarray, codes: np.ndarray) -> None:
        """``headers`` shape ``(n,)``, ``codes`` shape ``(n, lanes)``: each header applies to its row."""
        h = np.asarray(headers, dtype=np.int64).reshape(-1)
        c = np.asarray(codes, dtype=np.int64).reshape(h.size, -1)
        if h.size == 0:
            return
        scale, sel, rec = self.fmt.split_header(h)
        sel = np.minimum(sel, len(self.fmt.elements) - 1)
        rec = np.minimum(rec, self.recycled.shape[1] - 1)
        self.samples += c.size
        self.scales[scale] = True
        self.selectors[sel] = True
        self.pairs[sel, rec] = True
        sel_b = np.broadcast_to(sel[:, None], c.shape)
        self.codes[sel_b, c] = True
        nz = self.fmt.elements[0].negative_zero_code
        if self.fmt.recycling and nz is not None:
            has = np.any(c == nz, axis=1)
            self.recycled[sel[has], rec[has]] = True
        for cand in range(len(self.fmt.elements)):
            seen = self.codes[cand]
            self.classes[cand] = np.any(self._classes[cand] & seen, axis=1)

    def bins(self) -> dict[str, tuple[int, int]]:
        """``{bin group: (hit, total)}``; only classes a format can produce are counted."""
        out: dict[str, tuple[int, int]] = {}
        for cand, elem in enumerate(self.fmt.elements):
            out[f"{self.name}.codes[{elem.name}]"] = (int(self.codes[cand].sum()), self.codes.shape[1])
            possible = np.any(self._classes[cand], axis=1)
            out[f"{self.name}.classes[{elem.name}]"] = (int((self.classes[cand] & possible).sum()), int(possible.sum()))
        out[f"{self.name}.scale_codes"] = (int(self.scales.sum()), self.scales.size)
        if len(self.fmt.elements) > 1:
            out[f"{self.name}.selectors"] = (int(self.selectors.sum()), self.selectors.size)
        if self.pairs.size > 1:
            out[f"{self.name}.pairs"] = (int(self.pairs.sum()), self.pairs.size)
        if self.fmt.recycling:
            out[f"{self.name}.recycled"] = (int(self.recycled.sum()), self.recycled.size)
        return out

    def missing_classes(self) -> dict[str, list[str]]:
        """Value classes a candidate can produce but the stimulus never hit."""
        out = {}
        for cand, elem in enumerate(self.fmt.elements):
            possible = np.any(self._classes[cand], axis=1)
            miss = [ELEMENT_CLASSES[i] for i in np.flatnonzero(possible & ~self.classes[cand])]
            if miss:
                out[elem.name] = miss
        return out


class ResultCoverage:
    """Classes of IEEE results seen (``fp32`` / ``fp16`` / ``bf16`` bit patterns)."""

    _LAYOUT = {"fp32": (32, 8, 23), "fp16": (16, 5, 10), "bf16": (16, 8, 7)}

    def __init__(self, kind: str = "fp32", name: str = "result"):
        self.kind, self.name = kind, name
        self.hits = np.zeros(len(RESULT_CLASSES), dtype=bool)
        self.samples = 0

    def sample(self, bits: np.ndarray) -> None:
        """Classify IEEE bit patterns; a kind that is not IEEE (codes, integers) has no classes and is skipped."""
        if self.kind not in self._LAYOUT:
            return
        width, eb, mb = self._LAYOUT[self.kind]
        b = np.asarray(bits, dtype=np.int64).reshape(-1)
        if b.size == 0:
            return
        self.samples += b.size
        sign = (b >> (width - 1)) & 1
        exp = (b >> mb) & ((1 << eb) - 1)
        man = b & ((1 << mb) - 1)
        top = (1 << eb) - 1
        conds = [
            (exp == 0) & (man == 0) & (sign == 0), (exp == 0) & (man == 0) & (sign == 1),
            (exp == 0) & (man != 0) & (sign == 0), (exp == 0) & (man != 0) & (sign == 1),
            (exp != 0) & (exp != top), (exp == top) & (man == 0) & (sign == 0),
            (exp == top) & (man == 0) & (sign == 1), (exp == top) & (man != 0),
        ]
        self.hits |= np.array([np.any(c) for c in conds])

    def bins(self) -> dict[str, tuple[int, int]]:
        if self.kind not in self._LAYOUT:
            return {}
        return {f"{self.name}.classes": (int(self.hits.sum()), self.hits.size)}

    def missing(self) -> list[str]:
        if self.kind not in self._LAYOUT:
            return []
        return [RESULT_CLASSES[i] for i in np.flatnonzero(~self.hits)]


def coverage_summary(*groups: FormatCoverage | ResultCoverage) -> dict[str, Any]:
    """JSON-ready ``{bin: [hit, total]}`` plus the missed classes, for reports and the CLI."""
    bins: dict[str, Any] = {}
    missed: dict[str, Any] = {}
    for g in groups:
        bins.update({k: list(v) for k, v in g.bins().items()})
        if isinstance(g, FormatCoverage):
            for elem, miss in g.missing_classes().items():
                missed[f"{g.name}.{elem}"] = miss
        elif g.missing():
            missed[g.name] = g.missing()
    return {"bins": bins, "missed": missed}


def format_summary(summary: dict[str, Any]) -> str:
    """``a.codes[E2M1] 16/16, ...`` on one line per group."""
    return ", ".join(f"{k} {h}/{t}" for k, (h, t) in summary["bins"].items())
