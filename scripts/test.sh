#!/usr/bin/env bash
# Sets up and runs every test that needs no GPU (CTest labels unit and parity, the Python
# package's tests among them, and a short libFuzzer run). This is what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH=/usr/local/cuda/bin:$PATH  # as build.sh finds it, for the scratch tree too
fi
# A compiler cache: the scaffold test's scratch tree (tests/cli/scaffold.sh) compiles the library
# once more, with the main build's settings when a launcher is set, so nearly every object of it
# is a hit (CCACHE_BASEDIR makes the two trees' paths alike).
if command -v ccache >/dev/null; then
  export CMAKE_CXX_COMPILER_LAUNCHER=${CMAKE_CXX_COMPILER_LAUNCHER:-ccache}
  export CMAKE_CUDA_COMPILER_LAUNCHER=${CMAKE_CUDA_COMPILER_LAUNCHER:-ccache} CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
fi
bash scripts/build.sh
bash scripts/python-env.sh
(cd build && ctest --output-on-failure -j"$(nproc)" -LE gpu)
if [[ -x scripts/fuzz.sh ]]; then bash scripts/fuzz.sh 15; fi  # 15 s per target
