#!/usr/bin/env bash
# Regenerate the committed example sweep in docs/results/sweep/ (docs/sweep.md): the decode unit over lanes
# {4, 8, 16, 32} x the seven default formats (28 points), asic area and Fmax (OSU 0.18 um, default pipeline,
# 10 ns target) and accuracy on the all-MiniLM-L6-v2 weights, with the Pareto front of area, relative MSE and throughput.
# Runs on a LocalCluster (one worker per CPU; --workers N to change). The flows are cached in build/report-cache
# (override with NXFP_REPORT_CACHE), shared with scripts/make_report.sh; the points' work directories go to
# build/sweep-points. Extra arguments go to `nxfp-hw sweep`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
CACHE=${NXFP_REPORT_CACHE:-build/report-cache}
exec "$PYTHON" -m nxfp_hw.cli sweep --units decode --lanes 4,8,16,32 --measure area,accuracy --flows asic \
    --pareto area,rel_mse,throughput --out docs/results/sweep --work build/sweep-points --cache "$CACHE" --force "$@"
