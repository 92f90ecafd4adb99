#!/usr/bin/env bash
# Regenerates the performance history page of the repository: bench/report/index.html
# from bench/baselines/, and bench/report/report.png, its screenshot, for people who read
# the repository without opening the page. Usage: scripts/perf-report.sh [build dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
"$build/fastdit" perf report --baselines bench/baselines --output bench/report/index.html
bash scripts/screenshot.sh bench/report/index.html bench/report/report.png
echo "screenshot bench/report/report.png"
