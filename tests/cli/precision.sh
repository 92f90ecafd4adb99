#!/usr/bin/env bash
# --precision on run, parity, bench and generate: fp8 on the CPU and a value other than bf16
# or fp8 are refused, each `error: ...` naming the flag, exit 2, before any model loads
# (fp8 with another dtype than bfloat16: tests/unit/test_fp8.cc). bf16, the default, given
# explicitly runs as without the flag. Needs no GPU.
# Usage: precision.sh <path to fastdit>
set -uo pipefail
fastdit=$1
root=${FASTDIT_SOURCE_DIR:?}
case_dir=$root/tests/fixtures/wan/t2v
config=$case_dir/transformer/config.json
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

expect_error() {  # expect_error TEXT COMMAND ARGS...
  local text=$1; shift
  local status=0
  "$fastdit" "$@" >/dev/null 2>"$work/err" || status=$?
  [[ $status == 2 ]] || fail "exit $status, expected 2, for: $* ($(cat "$work/err"))"
  grep -qF -- "$text" "$work/err" || fail "'$text' not in: $(cat "$work/err")"
}

bench=(bench --config "$config" --random-weights --frames 1 --height 16 --width 16 --json "$work/bench.json")
run=(run "$config" --random-weights --example 1,16,16 --output "$work/out.safetensors")
parity=(parity "$case_dir")
generate=(generate --config "$config" --random-weights --steps 1 --height 16 --width 16 --frames 1
          --output "$work/gen.safetensors")
for command in bench run parity generate; do
  declare -n args=$command
  expect_error "error: --precision fp8 needs a CUDA device" "${args[@]}" --device cpu --dtype bfloat16 --precision fp8
  expect_error "error: --precision fp16: expected bf16" "${args[@]}" --device cpu --precision fp16
done

"$fastdit" "${parity[@]}" --precision bf16 >"$work/with" 2>&1 || fail "parity --precision bf16: $(cat "$work/with")"
"$fastdit" "${parity[@]}" >"$work/without" 2>&1 || fail "parity: $(cat "$work/without")"
diff <(tail -1 "$work/with") <(tail -1 "$work/without") >/dev/null || fail "--precision bf16 changed the result"
echo "PASS"
