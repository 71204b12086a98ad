#!/usr/bin/env python3
"""Regenerate the committed reference RTL in rtl_out/ (see rtl_out/README.md).

Usage: .venv/bin/python scripts/refresh_rtl_out.py [--out rtl_out] [--prune]

Each module goes to ``rtl_out/<module>/`` (``.v``, ``.json`` manifest, ``.core``, ``.vlt``); a previous
generation of the same module is replaced. Directories of modules no longer in the set are listed,
and removed only with ``--prune`` (and only when they hold nothing but generated files).
tests/test_generate.py fails when rtl_out/ differs from a fresh generation.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nxfp_hw.flows.generate import _is_previous_generation, generate, reference_units  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "rtl_out", help="reference directory (default rtl_out/)")
    parser.add_argument("--prune", action="store_true", help="remove module directories no longer in the set")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    names = []
    for unit in reference_units():
        start = time.perf_counter()
        result = generate(unit, args.out / unit.module_name)
        names.append(result.name)
        print(f"{result.name:<48} {time.perf_counter() - start:6.2f} s")
    for old in sorted(p for p in args.out.iterdir() if p.is_dir() and p.name not in names):
        files = list(old.iterdir())
        ours = all(_is_previous_generation(f, old.name) for f in files)
        if args.prune and ours:
            for f in files:
                f.unlink()
            old.rmdir()
            print(f"removed stale {old.name}/")
        else:
            hint = "run with --prune to remove it" if ours else "it holds other files; left alone"
            print(f"stale directory {old.name}/ is not in the reference set ({hint})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
