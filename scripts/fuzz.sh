#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into build-fuzz/ (the sources they reach instrumented,
# AddressSanitizer + UBSan: fuzz/CMakeLists.txt) and fuzzes each target for SECONDS (default
# 12, so CI spends about a minute) from its committed seeds in fuzz/corpus/<corpus>/. Exits
# non-zero on a finding (crash, sanitizer report, leak, exception other than
# fastdit::Error); the input that caused it is saved under build-fuzz/artifacts/.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (targets: the names below; default all)
#   FUZZ_BUILD_ONLY=1 scripts/fuzz.sh          builds and stops
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-12}
shift || true
# target:corpus folder:largest input (bytes; text formats get room for long lines and nesting)
targets=(
  fuzz_safetensors_header:safetensors:4096
  fuzz_trace_reader:trace:65536
  fuzz_bench_definition:bench_definition:16384
  fuzz_perf_record:perf_record:65536
  fuzz_config_reader:config_reader:16384
  fuzz_model_args:model_args:16384
)
selected=()
for entry in "${targets[@]}"; do
  name=${entry%%:*}
  if (($# == 0)) || [[ " $* " == *" $name "* ]]; then selected+=("$entry"); fi
done
((${#selected[@]})) || { echo "no such fuzz target: $* (known: ${targets[*]%%:*})" >&2; exit 2; }

# -O1 with line tables only (-g1): the instrumented library compiles much faster than at -O2 -g
# (CI builds it cold), and sanitizer reports still name file and line.
CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DFASTDIT_FUZZ=ON \
  -DFASTDIT_TESTS=OFF -DFASTDIT_CUDA=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${selected[@]%%:*}"
[[ -z ${FUZZ_BUILD_ONLY:-} ]] || exit 0
mkdir -p build-fuzz/artifacts
for entry in "${selected[@]}"; do
  IFS=: read -r name corpus max_len <<<"$entry"
  echo "== $name: $seconds s from fuzz/corpus/$corpus"
  # New inputs go to the scratch corpus (the first dir); the committed seeds stay as they are.
  mkdir -p "build-fuzz/corpus/$corpus"
  "build-fuzz/fuzz/$name" -max_total_time="$seconds" -max_len="$max_len" -print_final_stats=1 \
    -artifact_prefix="build-fuzz/artifacts/$name-" "build-fuzz/corpus/$corpus" "fuzz/corpus/$corpus"
done
