#!/usr/bin/env bash
# The trace through the CLI: a traced parity run diffs clean against the reference tracer's
# records; a perturbed record is a divergence (exit 1); bad input exits 2.
set -u
fastdit=$1
root=${FASTDIT_SOURCE_DIR:-.}
case_dir=$root/tests/fixtures/wan/t2v
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

FASTDIT_TRACE_ACTIVATIONS=1 FASTDIT_TRACE_STATS=abs_mean,sum,min,max,mean,std,shape,dtype \
  FASTDIT_TRACE_OUTPUT=$tmp/sub/ours_'<pid>'.jsonl "$fastdit" parity "$case_dir" >"$tmp/out" 2>"$tmp/err" \
  || fail "traced parity run failed: $(cat "$tmp/out" "$tmp/err")"
grep -q "activation trace attached to" "$tmp/err" || fail "no attach log line"
ours=$(ls "$tmp"/sub/ours_*.jsonl) || fail "trace file not written"
"$fastdit" trace-diff "$ours" "$case_dir/trace.jsonl" --rtol 1e-4 >"$tmp/diff" || fail "traces differ: $(cat "$tmp/diff")"
grep -q "all paired records match" "$tmp/diff" || fail "unexpected diff output"

sed 's/"module": "blocks.1.ffn", "tensor": "out", "step": 0, "abs_mean": \([0-9.]*\)/"module": "blocks.1.ffn", "tensor": "out", "step": 0, "abs_mean": 9\1/' \
  "$case_dir/trace.jsonl" >"$tmp/bad.jsonl"
"$fastdit" trace-diff "$ours" "$tmp/bad.jsonl" >"$tmp/diff"; rc=$?
[[ $rc -eq 1 ]] || fail "perturbed trace: exit $rc, expected 1"
grep -q "first divergence: blocks.1.ffn " "$tmp/diff" || fail "did not name blocks.1.ffn: $(cat "$tmp/diff")"

echo '{"module": 3}' >"$tmp/broken.jsonl"
"$fastdit" trace-diff "$ours" "$tmp/broken.jsonl" 2>"$tmp/err"; rc=$?
[[ $rc -eq 2 ]] && grep -q "^error: .*broken.jsonl:1" "$tmp/err" || fail "bad trace: exit $rc $(cat "$tmp/err")"
FASTDIT_TRACE_ACTIVATIONS=1 FASTDIT_TRACE_STATS=bogus "$fastdit" parity "$case_dir" >/dev/null 2>"$tmp/err"; rc=$?
[[ $rc -eq 2 ]] && grep -q "bogus" "$tmp/err" || fail "bad stat: exit $rc $(cat "$tmp/err")"
echo "trace CLI checks passed"
