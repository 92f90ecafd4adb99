#!/usr/bin/env bash
# Sets up and runs every test that needs no GPU (CTest labels unit and parity, the Python
# package's tests among them, and a short libFuzzer run). This is what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
bash scripts/python-env.sh
(cd build && ctest --output-on-failure -j"$(nproc)" -LE gpu)
if [[ -x scripts/fuzz.sh ]]; then bash scripts/fuzz.sh 15; fi  # 15 s per target
