#!/usr/bin/env bash
# --cuda-graph on bench, run and generate: what rules a capture out (a CPU device, the
# activation trace, sequence parallelism, bench's --components, a benchmark definition)
# is `error: ...` naming it, with exit 2, before any model loads. Needs no GPU.
# Usage: cuda_graph.sh <path to fastdit>
set -uo pipefail
fastdit=$1
root=${FASTDIT_SOURCE_DIR:?}
config=$root/tests/fixtures/wan/t2v/transformer/config.json
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

expect_error() {  # expect_error TEXT COMMAND ARGS...
  local text=$1; shift
  local status=0
  "$fastdit" "$@" >/dev/null 2>"$work/err" || status=$?
  [[ $status == 2 ]] || fail "exit $status, expected 2, for: $* ($(cat "$work/err"))"
  grep -q "^error: .*$text" "$work/err" || fail "'$text' not in: $(cat "$work/err")"
}

bench=(bench --config "$config" --random-weights --frames 1 --height 16 --width 16 --json "$work/bench.json")
run=(run "$config" --random-weights --example 1,16,16 --output "$work/out.safetensors")
generate=(generate --config "$config" --random-weights --steps 1 --height 16 --width 16 --frames 1
          --output "$work/gen.safetensors")
for command in bench run generate; do
  declare -n args=$command
  expect_error "--cuda-graph needs --device cuda (CUDA graphs replay GPU work), got --device cpu" \
    "${args[@]}" --device cpu --cuda-graph
  FASTDIT_TRACE_ACTIVATIONS=1 FASTDIT_TRACE_OUTPUT=$work/trace.jsonl \
    expect_error "--cuda-graph cannot run with the activation trace" "${args[@]}" --device cuda --cuda-graph
  expect_error "--cuda-graph with sequence parallelism over 2 ranks" "${args[@]}" --device cuda --sp 2 --cuda-graph
  unset -n args
done
expect_error "--components times kernels one by one" "${bench[@]}" --device cuda --cuda-graph --components
expect_error "--cuda-graph applies to the ad-hoc form" \
  bench --config "$root/bench/configs/wan2.1-t2v-1.3b-480p-forward.json" --cuda-graph --json "$work/def.json"
[[ ! -e $work/out.safetensors && ! -e $work/gen.safetensors && ! -e $work/bench.json ]] || fail "output written"
[[ ! -e $work/trace.jsonl ]] || fail "trace written"

# The flag's help says what it does.
"$fastdit" bench --help | grep -q -- "--cuda-graph" || fail "bench --help has no --cuda-graph"
echo "cuda_graph: ok"
