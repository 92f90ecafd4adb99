#!/usr/bin/env bash
# Sets up fastdit on a fresh machine and runs the main job on the shipped example.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
bash scripts/python-env.sh  # .venv/bin/python imports fastdit
build/fastdit parity tests/fixtures/wan/t2v
