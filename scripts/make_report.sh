#!/usr/bin/env bash
# Regenerate the committed default report in docs/results/ (report.md, report.json, area.png, pareto.png):
# every default format for the decode, dot and encode units, all four flows (no iCE40 for the encoder: only
# the MX 4-bit one fits an iCE40, docs/area.md), accuracy on the all-MiniLM-L6-v2 weights. Results are cached by configuration hash in
# build/report-cache (override with NXFP_REPORT_CACHE), so a rerun after a change only measures what changed.
# --model-accuracy adds all-MiniLM-L6-v2 under hardware-exact numerics (docs/model_accuracy.md; about a minute per
# format on first run, cached after). Extra arguments go to `nxfp-hw report` (e.g. --jobs 2, --flows generic,asic, --encode-formats mxfp4_e2m1,nxfp4).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
CACHE=${NXFP_REPORT_CACHE:-build/report-cache}
exec "$PYTHON" -m nxfp_hw.cli report --out docs/results --cache "$CACHE" --force \
    --units decode,dot,encode \
    --encode-flows generic,asic,xilinx --model-accuracy "$@"
