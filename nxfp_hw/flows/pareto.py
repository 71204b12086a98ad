"""Pareto fronts: the points no other point beats on every measure (docs/sweep.md "Pareto front").

A point dominates another when it is at least as good on every measure and strictly better on one;
"good" is smaller for a measure to minimise (area, energy, relative MSE) and larger for one to
maximise (Fmax, throughput, SQNR). Equal points do not dominate each other: both stay on the front.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["non_dominated", "pareto_front", "plot_front", "staircase"]


def non_dominated(points: Sequence[Sequence[float]], maximize: Sequence[bool] | None = None) -> list[int]:
    """Indices (in input order) of the points of ``points`` (each a tuple of n measures) that no other point
    dominates; ``maximize[j]`` marks measure ``j`` as larger-is-better (default: minimise every measure)."""
    if not points:
        return []
    n = len(points[0])
    signs = [-1.0 if m else 1.0 for m in (maximize or [False] * n)]
    if len(signs) != n or any(len(p) != n for p in points):
        raise ValueError("non_dominated: every point needs one value per measure")
    costs = [tuple(s * float(v) for s, v in zip(signs, p, strict=True)) for p in points]
    order = sorted(range(len(costs)), key=lambda i: costs[i])
    front: list[int] = []
    for i in order:  # lexicographic order: a point can only be dominated by one before it
        c = costs[i]
        if not any(all(a <= b for a, b in zip(costs[j], c, strict=True)) and costs[j] != c for j in front):
            front.append(i)
    return sorted(front)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated when both coordinates are to be minimised, sorted by x."""
    return sorted(non_dominated(points), key=lambda i: (points[i][0], points[i][1]))


def staircase(front: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """The step line through a 2-D front sorted by x (both measures minimised): x and y of its corners."""
    if not front:
        return [], []
    xs, ys = [front[0][0]], [front[0][1]]
    for x, y in front[1:]:
        xs += [x, x]
        ys += [ys[-1], y]
    return xs, ys


def plot_front(path: Path, values: Sequence[Sequence[float]], labels: Sequence[str], names: Sequence[str],
               front: Sequence[int], *, log: Sequence[bool] | None = None, title: str = "") -> Path:
    """A PNG of the points on the first two measures (a third one as the colour), every point labelled, the
    non-dominated ones (``front``) filled and named in bold. Written through a temporary file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    on = set(front)
    fig, ax = plt.subplots(figsize=(8.0, 5.6))
    xs, ys = [v[0] for v in values], [v[1] for v in values]
    colour: Any = [v[2] for v in values] if len(names) > 2 else None
    kw: dict[str, Any] = {"c": colour, "cmap": "viridis"} if colour is not None else {}
    sc = ax.scatter(xs, ys, s=[46 if i in on else 22 for i in range(len(values))],
                    edgecolors=["k" if i in on else "none" for i in range(len(values))], zorder=3, **kw)
    if colour is not None:
        fig.colorbar(sc, ax=ax).set_label(names[2], fontsize=8)
    for i, label in enumerate(labels):
        ax.annotate(label, (xs[i], ys[i]), textcoords="offset points", xytext=(4, 3), fontsize=6 if i not in on else 7,
                    fontweight="bold" if i in on else "normal", alpha=1.0 if i in on else 0.6)
    if len(names) == 2 and front:
        sx, sy = staircase(sorted((xs[i], ys[i]) for i in front))
        ax.plot(sx, sy, "k--", lw=1, label="Pareto front", zorder=2)
        ax.legend(fontsize=8)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis, is_log in zip((ax.xaxis, ax.yaxis), log or (False, False), strict=False):
        if is_log:
            (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(names[0], fontsize=9)
    ax.set_ylabel(names[1], fontsize=9)
    ax.margins(x=0.15, y=0.12)
    ax.set_title(title or f"Pareto front: {', '.join(names)} (bold: non-dominated)", fontsize=9)
    fig.tight_layout()
    from .report import _save

    _save(fig, path)
    plt.close(fig)
    return path
