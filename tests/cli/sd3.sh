#!/usr/bin/env bash
# SD3 through the CLI and the registry alone: every case passes `fastdit parity` in float32
# and bfloat16, and a traced run of the dual-attention case diffs clean against the
# reference tracer's trace with `fastdit trace-diff`.
set -u
fastdit=$1
root=${FASTDIT_SOURCE_DIR:-.}
cases=$root/tests/fixtures/sd3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

for name in sd3 sd35_medium sd35_odd_size sd3_batch2; do
  for dtype in float32 bfloat16; do
    "$fastdit" parity "$cases/$name" --dtype $dtype >"$tmp/out" 2>&1 || fail "$name $dtype: $(cat "$tmp/out")"
    tail -n 1 "$tmp/out" | grep -q "^PASS rel_l2=" || fail "$name $dtype: $(tail -n 1 "$tmp/out")"
  done
done

FASTDIT_TRACE_ACTIVATIONS=1 FASTDIT_TRACE_STATS=abs_mean,sum,min,max,mean,std,shape,dtype \
  FASTDIT_TRACE_OUTPUT=$tmp/ours.jsonl "$fastdit" parity "$cases/sd35_medium" >"$tmp/out" 2>&1 \
  || fail "traced parity run failed: $(cat "$tmp/out")"
"$fastdit" trace-diff "$tmp/ours.jsonl" "$cases/sd35_medium/trace.jsonl" --rtol 1e-4 >"$tmp/diff" \
  || fail "traces differ: $(cat "$tmp/diff")"
grep -q "all paired records match" "$tmp/diff" || fail "unexpected diff output: $(cat "$tmp/diff")"
echo "SD3 CLI checks passed"
