#!/usr/bin/env bash
# Performance tracking through the CLI: `bench --config <definition>` writes a normalized
# record (the model-config form keeps working), `perf check` gives every status with its
# exit code on the synthetic fixtures, `perf reseed` seeds a store and rejects bad
# batches, `perf report` writes a static page (screenshot when Chromium is installed).
set -u
fastdit=$1
root=${FASTDIT_SOURCE_DIR:-.}
fixtures=$root/tests/fixtures/perf
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'r': r}))" "$@"; }
export OMP_NUM_THREADS=1  # steadier CPU timings on a shared machine

# The definition form: three records of the tiny CPU benchmark.
for i in 1 2 3 4; do
  "$fastdit" bench --config "$fixtures/tiny-wan-cpu-forward.json" --json "$tmp/run$i.json" >"$tmp/out" 2>"$tmp/err" \
    || fail "bench --config definition: $(cat "$tmp/out" "$tmp/err")"
done
grep -q "^benchmark test-tiny-wan-cpu-forward v1" "$tmp/out" || fail "no benchmark line: $(cat "$tmp/out")"
grep -q "^components attention" "$tmp/out" || fail "no component line: $(cat "$tmp/out")"
[[ $(field "$tmp/run1.json" "r['success'] and r['gpu_type'] == 'cpu' and r['metrics']['latency_s'] > 0") == True ]] \
  || fail "record fields: $(cat "$tmp/run1.json")"
[[ $(field "$tmp/run1.json" "r['recipe_fingerprint'].startswith('rcp-') and r['hardware_profile_id'].startswith('hw-')") == True ]] \
  || fail "no identity ids"
# A version where the CUDA backend is built (it registers one), "none" in a CPU-only build.
[[ -n $(field "$tmp/run1.json" "r['software_profile']['libraries']['cudnn']") ]] || fail "no cudnn entry in the software profile"
[[ $(field "$tmp/run1.json" "r['recipe_fingerprint'] == __import__('json').load(open('$tmp/run2.json'))['recipe_fingerprint']") == True ]] \
  || fail "two runs of one definition differ in recipe"

# A definition fixes its workload; a file that is neither kind is refused.
"$fastdit" bench --config "$fixtures/tiny-wan-cpu-forward.json" --frames 9 >/dev/null 2>"$tmp/err"; rc=$?
[[ $rc -eq 2 ]] && grep -q "^error: .*fixes --frames" "$tmp/err" || fail "override: exit $rc $(cat "$tmp/err")"
echo '{"hello": 1}' >"$tmp/neither.json"
"$fastdit" bench --config "$tmp/neither.json" >/dev/null 2>"$tmp/err"; rc=$?
[[ $rc -eq 2 ]] && grep -q "neither a benchmark definition" "$tmp/err" || fail "neither: exit $rc $(cat "$tmp/err")"

# The model-config form is unchanged; with --components its record splits the time per op,
# the 2-layer model's self-attention (8 tokens) apart from its cross-attention (6 text tokens).
(cd "$tmp" && "$fastdit" bench --config "$root/tests/fixtures/wan/t2v/transformer/config.json" --random-weights \
  --device cpu --dtype float32 --frames 5 --height 32 --width 32 --text-len 6 --iters 2 --components >"$tmp/out" 2>"$tmp/err") \
  || fail "bench --config model --random-weights: $(cat "$tmp/err")"
for line in "^WanTransformer3DModel on " "^median .* ms  min .* over 2 iters" "^throughput .* TFLOP/s" "^peak memory " "^record bench_record.json" "^components attention"; do
  grep -q "$line" "$tmp/out" || fail "model form lost '$line': $(cat "$tmp/out")"
done
[[ $(field "$tmp/bench_record.json" "r['benchmark'] == 'forward' and r['random_weights'] and len(r['times_ms']) == 2") == True ]] \
  || fail "model-form record: $(cat "$tmp/bench_record.json")"
[[ $(field "$tmp/bench_record.json" "(r['components_by_op']['attention']['calls'], r['components_by_op']['cross_attention']['calls'])") == "(2, 2)" ]] \
  || fail "per-op split: $(cat "$tmp/bench_record.json")"
grep -q "^  cross_attention .* 2 calls" "$tmp/err" || fail "no per-op lines: $(cat "$tmp/err")"

# check / reseed / check on a fresh store (an empty folder: a missing one is an error).
store=$tmp/store
mkdir "$store"
"$fastdit" perf check "$tmp/run1.json" --baselines "$store" >"$tmp/out"; rc=$?
[[ $rc -eq 0 ]] && grep -q "^status: CALIBRATION_NEEDED" "$tmp/out" || fail "empty store: exit $rc $(cat "$tmp/out")"
"$fastdit" perf reseed "$tmp"/run{1,2,3}.json --baselines "$store" --reason "first seed" --backup-dir "$tmp/backup" >"$tmp/out" \
  || fail "reseed: $(cat "$tmp/out")"
grep -q "first seed" "$tmp/out" && grep -q "3 eligible record(s)" "$tmp/out" || fail "reseed output: $(cat "$tmp/out")"
cohort=$(ls "$store"/test-tiny-wan-cpu-forward/v1_cpu_rcp-*.jsonl) || fail "no cohort file"
[[ $(wc -l <"$cohort") -eq 3 ]] || fail "cohort has $(wc -l <"$cohort") lines"
"$fastdit" perf check "$tmp/run4.json" --baselines "$store" --append >"$tmp/out"; rc=$?
[[ $rc -eq 0 ]] && grep -q "^status: PASS" "$tmp/out" && grep -q "(eligible for the baseline)" "$tmp/out" \
  || fail "check after seed: exit $rc $(cat "$tmp/out")"
[[ $(wc -l <"$cohort") -eq 4 ]] || fail "--append did not append"

# Every status on the synthetic records, with its exit code.
while read -r name code status; do
  "$fastdit" perf check "$fixtures/records/$name.json" --baselines "$fixtures/baselines" >"$tmp/out"; rc=$?
  [[ $rc -eq $code ]] && grep -q "^status: $status" "$tmp/out" || fail "$name: exit $rc, expected $code $status: $(cat "$tmp/out")"
done <<'CASES'
pass 0 PASS
within_absolute 0 PASS
latency_regression 1 REGRESSION
memory_regression 1 REGRESSION
static_breach 1 REGRESSION
new_hardware 0 CALIBRATION_NEEDED
h200_calibrating 0 CALIBRATION_NEEDED
recipe_changed 1 RECIPE_MISMATCH
failed_run 1 RUN_FAILED
CASES

# Reseed rejections exit 2 and leave the store alone.
cp -r "$fixtures/baselines" "$tmp/fixture_store"
before=$(cat "$tmp"/fixture_store/*/*.jsonl | md5sum)
r=$fixtures/records
while IFS='|' read -r files message; do
  # shellcheck disable=SC2086
  "$fastdit" perf reseed $files --baselines "$tmp/fixture_store" --reason test >/dev/null 2>"$tmp/err"; rc=$?
  [[ $rc -eq 2 ]] && grep -q "^error: reseed rejected: .*$message" "$tmp/err" || fail "reseed $files: exit $rc $(cat "$tmp/err")"
done <<CASES
$r/reseed_1.json $r/reseed_other_model.json|mixes model ids
$r/reseed_1.json $r/reseed_other_gpu.json|mixes GPU types
$r/reseed_1.json $r/pass.json|mixes cohorts
$r/reseed_1.json $r/reseed_outlier.json $r/reseed_2.json|does not agree
$r/failed_run.json|failed run
$r/reseed_1.json $r/reseed_1.json|already in the batch
$r/recipe_changed.json|bump benchmark_version
CASES
"$fastdit" perf reseed "$r/reseed_1.json" --baselines "$tmp/fixture_store" >/dev/null 2>&1; rc=$?
[[ $rc -eq 2 ]] || fail "reseed without --reason: exit $rc"
[[ $(cat "$tmp"/fixture_store/*/*.jsonl | md5sum) == "$before" ]] || fail "a rejected reseed changed the store"

# Bad input.
"$fastdit" perf check "$root/tests/fixtures/wan/t2v/transformer/config.json" >/dev/null 2>"$tmp/err"; rc=$?
[[ $rc -eq 2 ]] && grep -q "^error: .*result_schema_version" "$tmp/err" || fail "model config as record: exit $rc $(cat "$tmp/err")"
"$fastdit" perf check "$tmp/missing.json" >/dev/null 2>"$tmp/err"; rc=$?
[[ $rc -eq 2 ]] && grep -q "^error: .*cannot open" "$tmp/err" || fail "missing record: exit $rc $(cat "$tmp/err")"

# The report: a static page, and its screenshot where Chromium is installed.
"$fastdit" perf report --baselines "$fixtures/baselines" --output "$tmp/report/index.html" >/dev/null || fail "report"
grep -q "<svg" "$tmp/report/index.html" && ! grep -q "<script" "$tmp/report/index.html" || fail "report is not a static SVG page"
if chromium=$(command -v chromium || command -v chromium-browser); then
  bash "$root/scripts/screenshot.sh" "$tmp/report/index.html" "$tmp/report/report.png" >/dev/null 2>"$tmp/err" \
    || fail "screenshot: $(cat "$tmp/err")"
  [[ $(stat -c %s "$tmp/report/report.png") -gt 20000 ]] || fail "screenshot is suspiciously small"
else
  echo "chromium not installed (scripts/install-deps.sh --perf-report): report screenshot not checked"
fi
echo "perf CLI checks passed"
