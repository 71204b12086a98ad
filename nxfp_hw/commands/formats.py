"""``nxfp-hw formats``: the table of presets."""

from __future__ import annotations

import argparse
import json

from ..formats import PRESETS, parse_format


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("formats", help="list the preset formats (or describe one format string)",
                       description="Print every preset with its element candidates, scale, header and bits/element.")
    p.add_argument("--format", "-f", dest="fmt", help="describe this preset or format string instead")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    fmts = [parse_format(args.fmt)] if args.fmt is not None else list(PRESETS.values())
    if args.json:
        print(json.dumps([f.describe() for f in fmts], indent=2))
        return 0
    head = ("format", "elements", "scale", "k", "recycling", "rule", "header", "bits/elem")
    rows = []
    for f in fmts:
        cr = "off" if not f.recycling else "; ".join("|".join(f"{v:g}" for v in t) for t in f.recycling)
        rows.append((f.label, "|".join(e.name for e in f.elements), f.scale.name, str(f.k), cr, f.rule,
                     f"{f.header_bits} b", f"{f.bits_per_element:.3f}"))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return 0
