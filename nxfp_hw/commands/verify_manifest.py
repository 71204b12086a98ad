"""``nxfp-hw verify --manifest FILE``: verify a module as it is on disk, from its manifest alone.

Two kinds of manifest (docs/verification.md "Verify your own RTL"):

- a description of a foreign unit (schema ``nxfp-hw-foreign/1``, written by hand or drafted by
  ``nxfp-hw manifest init``): :func:`verif.foreign.verify` elaborates its sources, generates the
  adapter, drives it and compares every output with the golden view the description names;
- a manifest nxfp-hw generated (``nxfp-hw-manifest/1``): the Verilog beside it is verified as it is
  (an edited copy included), never regenerated, with the unit's own testbench.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import UserError

__all__ = ["run_manifest"]

# Options that the manifest decides (they would contradict it).
_FROM_MANIFEST = (("unit", "--unit"), ("fmt", "--format"), ("fmt_b", "--format-b"), ("lanes", "--lanes"),
                  ("input_format", "--input-format"), ("acc", "--acc"), ("guard_bits", "--guard-bits"))


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"--manifest: {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"--manifest: {path}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                        f"{exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--manifest: {path}: cannot read it ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"--manifest: {path}: expected a JSON object")
    return data


def run_manifest(args: argparse.Namespace, run_generated: Any) -> int:
    """Dispatch on the manifest's schema; ``run_generated(args)`` is the unit regression of ``verify``."""
    path: Path = args.manifest
    for dest, opt in _FROM_MANIFEST:
        if getattr(args, dest, None) is not None:
            raise UserError(f"{opt}: not with --manifest (the manifest states it)")
    data = _read(path)
    if data.get("schema") == "nxfp-hw-manifest/1":
        return _run_generated(args, path, data, run_generated)
    return _run_foreign(args, path)


def _run_generated(args: argparse.Namespace, path: Path, data: dict[str, Any], run_generated: Any) -> int:
    from verif.regression import ModuleFiles

    from ..flows.manifest import load_manifest

    manifest = load_manifest(path, check_verilog=True)  # schema, config hash, ports against the Verilog
    verilog = path.parent / manifest["files"]["verilog"]
    module = ModuleFiles(manifest["module"], verilog, path, manifest)
    formats = manifest.get("formats", {})
    args.unit = manifest["unit"]
    args.fmt = formats["a"]["format_string"]
    args.fmt_b = formats["b"]["format_string"] if "b" in formats and args.unit == "dot" else None
    if args.unit == "encode":
        args.input_format = manifest.get("config", {}).get("input", "fp32")
        args.select = manifest.get("config", {}).get("select")  # the encoder's selection policy (default: none)
    args.module_files = module  # verify's run() uses these files as they are: no regeneration
    print(f"verify {path}: {module.name} as it is on disk ({verilog.name}), not regenerated")
    return int(run_generated(args))


def _run_foreign(args: argparse.Namespace, path: Path) -> int:
    from sim.runner import check_simulator
    from verif.coverage import format_summary
    from verif.foreign import DEFAULT_BLOCKS, verify
    from verif.regression import env_seed

    if getattr(args, "engine", "auto") == "fast":
        raise UserError(f"--engine fast: {path} describes a foreign unit, which only the cocotb path drives (its "
                        "adapter and timing models); use --engine cocotb or leave --engine out")
    if args.vectors is not None or args.output is not None:
        raise UserError("--vectors/--output: not yet for a foreign unit (its stimulus is the directed cases and "
                        "--blocks random blocks)")
    if args.blocks is not None and args.blocks < 0:
        raise UserError(f"--blocks: expected a number of random blocks >= 0, got {args.blocks}")
    for name in ("gap", "stall"):
        if not 0.0 <= getattr(args, name) < 1.0:
            raise UserError(f"--{name}: expected a probability in [0, 1), got {getattr(args, name)}")
    check_simulator(args.sim)
    build_root = args.build_dir.resolve() if args.build_dir else None  # else $NXFP_SIM_BUILD or build/sim
    seed = args.seed if args.seed is not None else env_seed()
    blocks = DEFAULT_BLOCKS if args.blocks is None else args.blocks

    def started(desc: Any, st: Any) -> None:
        timing = desc.timing + (f" (latency {desc.latency}" + (f", strobes {desc.valid_in}/{desc.valid_out}"
                                                              if desc.valid_in else "") + ")"
                                if desc.timing == "fixed_latency" else "")
        if desc.timing == "stream":
            timing += f" ({desc.valid_in}/{desc.ready_in or '-'} in, {desc.valid_out}/{desc.ready_out or '-'} out)"
        policy = f", policy {desc.policy.name}" if desc.unit == "convert" else ""
        fmts = " x ".join(f.label for f in desc.formats.values())
        print(f"verify {desc.top} ({path}) on {args.sim}: seed {seed} (reproduce with --seed {seed}), {desc.unit} "
              f"{fmts}{policy}, {timing}, {st.n} transactions")
        sys.stdout.flush()

    t0 = time.perf_counter()
    res = verify(path, args.sim, seed=seed, blocks=blocks, gap=args.gap, stall=args.stall, build_root=build_root,
                 waves=args.waves, progress=started, keep_run=bool(getattr(args, "keep_run", False)))
    wall = time.perf_counter() - t0
    st = res.stats
    build = "reused" if st.get("build_reused") else f"{st.get('build_seconds', 0.0):.1f} s"
    print(f"  build      {build} ({st.get('build_dir')})")
    print(f"  compared   {st.get('compared', 0)} values in {st.get('received', 0)}/{st.get('transactions', '?')} "
          f"transactions, {st.get('dont_care', 0)} don't care")
    print(f"  mismatches {st.get('mismatches', '?')}" + (f", X/Z {st['xz']}" if st.get("xz") else "")
          + (f", missing {st['missing']}" if st.get("missing") else "")
          + (f", unexpected {st['extra']}" if st.get("extra") else ""))
    print(f"  cycles     {st.get('cycles', 0)} simulated; wall time {wall:.1f} s total, "
          f"{st.get('wall_seconds', 0.0):.2f} s simulating")
    if st.get("coverage"):
        print(f"  coverage   {format_summary(st['coverage'])}")
    if res.passed:
        print("PASS: every output bit matches the golden model")
        return 0
    print(f"FAIL: {res.message}")
    if res.log is not None:
        print(f"  log {res.log}")
    return 1
