#!/usr/bin/env bash
# Builds the library and the unit tests with AddressSanitizer + UndefinedBehaviorSanitizer
# (FASTDIT_SANITIZE=ON; CPU only) into build-asan/ and runs the CPU tests there: every
# sanitizer report ends its test as a failure (UBSan does not recover). Slow (about 3x a
# normal build and run), so CI leaves it to this script; the fuzzers (scripts/fuzz.sh) run
# under the same sanitizers in CI.
#   scripts/sanitize.sh [JOBS] [CTEST ARGS...]   e.g. scripts/sanitize.sh 2 -R Files
#   SANITIZE_TARGETS="test_files fastdit_cli" scripts/sanitize.sh 2 -R Files   builds only those
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${1:-$(nproc)}
shift || true
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFASTDIT_SANITIZE=ON -DFASTDIT_CUDA=OFF >/dev/null
# shellcheck disable=SC2086
cmake --build build-asan -j"$jobs" ${SANITIZE_TARGETS:+--target $SANITIZE_TARGETS}
# Leaks are reported at exit; OpenMP's and OpenBLAS's thread pools live until then by design.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Left out: the scaffold test (it rebuilds the library in a scratch tree without the
# sanitizers) and the Python package (an ASan library cannot be loaded into an uninstrumented
# python without preloading the runtime).
(cd build-asan && ctest --output-on-failure -j"$jobs" -LE "gpu|scratch-build" -E python_package "$@")
