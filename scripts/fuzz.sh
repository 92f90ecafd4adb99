#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into build-fuzz/ and fuzzes the safetensors reader
# for SECONDS (default 60) from the committed seeds in fuzz/corpus/safetensors. Exits
# non-zero on a finding (crash, sanitizer report, leak, exception other than
# fastdit::Error); the input that caused it is saved under build-fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFASTDIT_FUZZ=ON \
  -DFASTDIT_TESTS=OFF -DFASTDIT_CUDA=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz_safetensors_header
# New inputs go to the scratch corpus (the first dir); the committed seeds stay as they are.
mkdir -p build-fuzz/corpus/safetensors build-fuzz/artifacts
build-fuzz/fuzz/fuzz_safetensors_header -max_total_time="$seconds" -print_final_stats=1 \
  -artifact_prefix=build-fuzz/artifacts/ build-fuzz/corpus/safetensors fuzz/corpus/safetensors
