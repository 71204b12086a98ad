"""Encoder selection policies side by side (docs/encoder.md "Selection policies", issue 14): asic area
and Fmax of each policy's encoder against the MX encoder of the same element width, and the relative
MSE each policy gives on the all-MiniLM-L6-v2 weights and on a heavy-tailed activation-like tensor.

Used by ``benchmarks/bench_encoder.py`` (which records the figures) and by ``nxfp-hw report`` (one table
and one plot, accuracy loss versus area saved, from the recorded figures).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MX_BASELINE", "activation_tensor", "measure_encoder_area", "policy_accuracy", "policy_plot",
           "policy_rows", "policy_table", "recommendation"]

#: The MX encoder each NxFP encoder is held against (same element width).
MX_BASELINE = {"nxfp4": "mxfp4_e2m1", "nxfp5": "mxfp6_e3m2", "nxfp6": "mxfp6_e2m3"}


def activation_tensor(seed: int = 0) -> np.ndarray:
    """A heavy-tailed activation-like tensor: 4096 tokens x 384 channels of Student-t (3 degrees of
    freedom), 2 % of the channels scaled by 20 (outlier channels, as in transformer activations);
    float32, seeded, 1,572,864 values."""
    rng = np.random.default_rng(seed)
    x = rng.standard_t(3, size=(4096, 384)) * np.where(rng.random(384) < 0.02, 20.0, 1.0)
    return x.astype(np.float32)


def measure_encoder_area(fmt_name: str, select: str | None, lanes: int, cache: str | Path) -> dict[str, Any]:
    """asic area and Fmax of the encoder of ``fmt_name`` under ``select`` (``None``: the unit's default) at
    ``lanes`` lanes and its default pipeline; cached in ``cache`` by Verilog and tool versions."""
    from ..flows import area as area_mod
    from ..flows.accuracy import write_text_atomic
    from ..flows.generate import emit_verilog
    from ..formats import parse_format
    from ..rtl.encode import EncodeUnit

    t0 = time.monotonic()
    rec: dict[str, Any] = {"format": fmt_name, "select": select, "lanes": lanes}
    try:
        comp = EncodeUnit(parse_format(fmt_name), lanes=lanes, select=select)
        verilog = emit_verilog(comp)
        versions = {t: area_mod.tools.tool_version(t) for t in area_mod._FLOW_TOOLS["asic"]}
        key = hashlib.sha256(json.dumps([hashlib.sha256(verilog.encode()).hexdigest(), comp.module_name,
                                         versions], sort_keys=True).encode()).hexdigest()[:20]
        path = Path(cache) / "runs" / f"{key}.json"
        if path.is_file():
            rec.update(json.loads(path.read_text()), cached=True)
        else:
            res = area_mod.run_area(verilog, comp.module_name, "asic",
                                    workdir=Path(cache) / "work" / f"{comp.module_name}_{key[:8]}")
            fig = res.figures
            result = {"module": comp.module_name, "area_um2": fig["area_um2"], "fmax_mhz": fig.get("fmax_mhz"),
                      "cells": fig["cells"], "ffs": fig["ffs"], "latency": comp.latency,
                      "flow_seconds": round(res.seconds, 1), "tools": res.tools}
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, json.dumps(result, indent=1) + "\n")
            rec.update(result, cached=False)
    except Exception as exc:  # noqa: BLE001 - a failing configuration is recorded, the others go on
        rec["error"] = f"{type(exc).__name__}: {exc}"
    rec["seconds"] = round(time.monotonic() - t0, 1)
    return rec


def policy_accuracy(formats: list[str], policies: list[str]) -> dict[str, Any]:
    """Relative MSE (``sum (x - q)^2 / sum x^2``) of every policy, and of the float64 least-squared-error
    choice (spec 5.4), per format on the MiniLM weights and on :func:`activation_tensor`."""
    from ..formats import parse_format
    from ..golden.quantize import dequantize_exact, quantize
    from ..golden.select import select_metric
    from ..tensors import minilm_weights

    tensors = {"minilm": minilm_weights(), "activation": activation_tensor()}
    out: dict[str, Any] = {}
    for f in formats:
        fmt = parse_format(f)
        for tname, x in tensors.items():
            x64 = x.astype(np.float64)
            ref = float(np.sum(x64 * x64))
            figs = {}
            for p in ["float64", *policies]:
                metric = "float64" if p == "float64" else select_metric(fmt, p)
                y = dequantize_exact(quantize(x, fmt, metric=metric)).reshape(x.shape)
                figs[p] = float(np.sum((y - x64) ** 2) / ref)
            mx = parse_format(MX_BASELINE.get(f, f))
            y = dequantize_exact(quantize(x, mx)).reshape(x.shape)
            figs["mx"] = float(np.sum((y - x64) ** 2) / ref)
            out.setdefault(f, {})[tname] = figs
    return out


def policy_rows(formats: list[str], policies: list[str], area: dict[str, Any],
                accuracy: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (format, policy): area, its ratio to the MX encoder, Fmax, area saved against
    ``exact``, relative MSE on both tensors and the loss against ``exact`` and against float64."""
    rows = []
    for f in formats:
        mx = area.get(f"{MX_BASELINE.get(f, f)}:-", {})
        exact = area.get(f"{f}:exact", {})
        for p in policies:
            a = area.get(f"{f}:{p}", {})
            row: dict[str, Any] = {"format": f, "policy": p, "area_um2": a.get("area_um2"),
                                   "fmax_mhz": a.get("fmax_mhz"), "mx": MX_BASELINE.get(f),
                                   "mx_area_um2": mx.get("area_um2"), "mx_fmax_mhz": mx.get("fmax_mhz")}
            if a.get("area_um2") and mx.get("area_um2"):
                row["area_vs_mx"] = a["area_um2"] / mx["area_um2"]
            if a.get("area_um2") and exact.get("area_um2"):
                row["area_saved"] = 1 - a["area_um2"] / exact["area_um2"]
            for t, figs in accuracy.get(f, {}).items():
                row[f"rel_mse_{t}"] = figs.get(p)
                if figs.get(p) is not None:
                    row[f"loss_{t}"] = figs[p] / figs["exact"] - 1 if "exact" in figs else None
                    row[f"loss_f64_{t}"] = figs[p] / figs["float64"] - 1
                    row[f"vs_mx_{t}"] = figs[p] / figs["mx"]
            rows.append(row)
    return rows


def _f(v: Any, fmt: str, unit: str = "") -> str:
    return "-" if v is None else format(v, fmt) + unit


def policy_table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of :func:`policy_rows`."""
    lines = ["| format | policy | encoder um^2 | x MX | saved vs exact | Fmax MHz | rel. MSE MiniLM | "
             "loss vs float64 | rel. MSE activations | loss vs float64 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['format']} | `{r['policy']}` | {_f(r.get('area_um2'), ',.0f')} | {_f(r.get('area_vs_mx'), '.2f')} | "
            f"{_f(None if r.get('area_saved') is None else 100 * r['area_saved'], '.1f', ' %')} | "
            f"{_f(r.get('fmax_mhz'), '.1f')} | {_f(r.get('rel_mse_minilm'), '.6f')} | "
            f"{_f(None if r.get('loss_f64_minilm') is None else 100 * r['loss_f64_minilm'], '+.2f', ' %')} | "
            f"{_f(r.get('rel_mse_activation'), '.6f')} | "
            f"{_f(None if r.get('loss_f64_activation') is None else 100 * r['loss_f64_activation'], '+.2f', ' %')} |")
    mx = {(r["mx"], r.get("mx_area_um2"), r.get("mx_fmax_mhz")) for r in rows if r.get("mx")}
    for name, a, fm in sorted(mx, key=str):
        lines.append(f"| {name} (MX baseline) | - | {_f(a, ',.0f')} | 1.00 | - | {_f(fm, '.1f')} | | | | |")
    return "\n".join(lines)


def recommendation(rows: list[dict[str, Any]], tolerance: float = 0.01) -> tuple[dict[str, str], str]:
    """``({format: policy}, why)``: per format the smallest measured encoder whose relative MSE stays within
    ``tolerance`` (1 %, issue 14's accuracy goal) of the float64 least-error choice on both tensors, and why
    the generator's default is what it is."""
    from ..golden.select import DEFAULT_SELECT

    picks: dict[str, str] = {}
    parts = []
    safe_everywhere = None
    for f in dict.fromkeys(r["format"] for r in rows):
        mine = [r for r in rows if r["format"] == f and r.get("loss_f64_minilm") is not None]
        ok = [r for r in mine if r["loss_f64_minilm"] <= tolerance and (r.get("loss_f64_activation") or 0) <= tolerance]
        names = {r["policy"] for r in ok}
        safe_everywhere = names if safe_everywhere is None else safe_everywhere & names
        sized = [r for r in ok if r.get("area_um2")]
        if not sized:
            continue
        best = min(sized, key=lambda r: r["area_um2"])
        picks[f] = best["policy"]
        parts.append(f"for {f}, `{best['policy']}` ({best['area_um2']:,.0f} um^2, "
                     f"{best.get('area_vs_mx', float('nan')):.2f}x {best['mx']}, "
                     f"{100 * (best.get('area_saved') or 0):.0f} % below `exact`; MiniLM "
                     f"{100 * best['loss_f64_minilm']:+.2f} %, activations {100 * best['loss_f64_activation']:+.2f} %)")
    why = ("the smallest encoder within 1 % of the float64 least-error choice on both tensors is " + "; ".join(parts)
           if parts else "no measured policy stays within 1 % on both tensors")
    safe = sorted(safe_everywhere or [])
    if DEFAULT_SELECT in safe:
        def total_area(policy: str) -> float | None:
            areas = [r.get("area_um2") for r in rows if r["policy"] == policy]
            return sum(areas) if areas and all(areas) else None

        sized_safe = {p: a for p in safe if (a := total_area(p)) is not None}
        mine = [r for r in rows if r["policy"] == DEFAULT_SELECT and r.get("area_vs_mx")]
        ratios = ", ".join(f"{r['format']} {r['area_vs_mx']:.2f}x {r['mx']}" for r in mine)
        smallest = sized_safe and min(sized_safe, key=sized_safe.__getitem__) == DEFAULT_SELECT
        why += (f". The default is `{DEFAULT_SELECT}`: it stays within 1 % on every format and tensor"
                + (", and is the smallest such encoder measured on every format" if smallest else "")
                + (f" ({ratios})" if ratios else ""))
    else:
        why += f". The default `{DEFAULT_SELECT}` was not measured within 1 % on every format and tensor"
    return picks, why


def policy_plot(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Accuracy loss (relative MSE against ``exact``, %) versus area saved (against ``exact``, %) per policy
    and format, both tensors; ``None`` without matplotlib or figures."""
    pts = [r for r in rows if r.get("area_saved") is not None and r.get("loss_minilm") is not None]
    if not pts:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    markers = {"minilm": "o", "activation": "^"}
    for f in sorted({r["format"] for r in pts}):
        for t, mk in markers.items():
            sel = [r for r in pts if r["format"] == f and r.get(f"loss_{t}") is not None]
            xs = [100 * r["area_saved"] for r in sel]
            ys = [100 * r[f"loss_{t}"] for r in sel]
            ax.plot(xs, ys, mk, label=f"{f}, {'MiniLM weights' if t == 'minilm' else 'activations'}")
            if t == "minilm":
                for r, x, y in zip(sel, xs, ys, strict=True):
                    ax.annotate(r["policy"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("encoder area saved against `exact` (%, asic, 8 lanes)")
    ax.set_ylabel("relative MSE increase against `exact` (%)")
    ax.set_title("Encoder selection policies: accuracy loss vs area saved")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


#: Where ``benchmarks/bench_encoder.py`` records the figures the report shows.
RECORDED = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "encoder.json"


def policy_section(out_dir: Path, record: Path = RECORDED) -> tuple[dict[str, Any] | None, str, list[Path]]:
    """The report's "Encoder selection policies" part from the recorded benchmark: ``(data, markdown,
    files)`` (``select.png``, the accuracy loss versus area saved). Without a record, a note on how to make
    one."""
    from ..golden.select import DEFAULT_SELECT

    head = "\n## Encoder selection policies (docs/encoder.md)\n\n"
    if not record.is_file():
        return None, head + f"No recorded figures: run `benchmarks/bench_encoder.py` (writes {record.name}).\n", []
    data = json.loads(record.read_text())
    rows = data["rows"]
    picks, why = recommendation(rows)
    lines = [head.rstrip("\n"), "",
             f"8-lane encoders on the asic flow (OSU 0.18 um, default pipeline), area and MX ratio from one run "
             f"(`benchmarks/bench_encoder.py`, recorded in `benchmarks/results/{record.name}`); relative MSE "
             "= sum of squared errors / sum of squares on the all-MiniLM-L6-v2 encoder weights (10.6 M values) "
             "and on a heavy-tailed activation-like tensor (Student-t, 3 degrees of freedom, 2 % outlier channels "
             "x20; 1.6 M values); loss against the float64 least-squared-error choice of spec 5.4.", "",
             policy_table(rows), "",
             f"**Which policy to pick.** Per format, {why}."]
    files = []
    png = policy_plot(rows, out_dir / "select.png")
    if png is not None:
        files.append(png)
        lines += ["", "![accuracy loss versus area saved per selection policy](select.png)"]
    return {"rows": rows, "recommended": picks, "why": why, "default": DEFAULT_SELECT,
            "record": f"benchmarks/results/{record.name}"}, "\n".join(lines) + "\n", files
