#!/usr/bin/env bash
# On the GPU machine, with binaries built on the CPU machine (the same CUDA 13 toolkit builds
# sm_90a there) and carried as a tarball, so no device time goes to compiling:
#   1. the op harness: every op case on CUDA against the CPU (tests/ops/backend_ops.cc);
#   2. the CUDA device tests (allocator, poisoning, copies, attention backend choice);
#   3. every parity case under tests/fixtures on CUDA: float32, float32 with fused
#      projections, bfloat16;
#   4. the harness's --perf lines for attention (masked, grouped and plain on one kernel);
#   5. the bench definitions and reference scripts named in GPU_PREBUILT_BENCH (each a
#      "name|fastdit args|reference command" line; optional).
# GPU_PREBUILT_STEPS picks steps (comma list of harness,device,parity,attention,bench; default
# all); GPU_PREBUILT_HARNESS_FILTER limits the harness to one --filter; GPU_PREBUILT_FAMILIES
# the parity cases to some families (e.g. "flux wan"); GPU_PREBUILT_BENCH_S /
# GPU_PREBUILT_REF_S bound each bench / reference (150 / 200 s).
# Each step has its own time limit; a summary is printed last.
# Make the tarball here:  bash scripts/gpu-prebuilt-check.sh --pack .dev/bins.tar.xz
# Run there:              bash scripts/gpu-prebuilt-check.sh .dev/bins.tar.xz   (logs in $OUT)
set -uo pipefail
cd "$(dirname "$0")/.."

source scripts/prebuilt-env.sh
prebuilt_start /tmp/fastdit-gpu-logs /tmp/fastdit-prebuilt "$@"
nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv,noheader

want() { [[ ,${GPU_PREBUILT_STEPS:-harness,device,parity,attention,bench}, == *,$1,* ]]; }

if want harness; then
  step harness 150 "$bin/fastdit_backend_ops" ${GPU_PREBUILT_HARNESS_FILTER:+--filter "$GPU_PREBUILT_HARNESS_FILTER"}
  grep -E "^FAIL|^PASS" "$logs/harness.log" | head -40
fi
if want device; then
  for t in test_cuda_device test_cuda_graph; do
    [[ -x $bin/$t ]] && step "$t" 60 "$bin/$t" && true
    [[ -f $logs/$t.log ]] && grep -E "FAILED|PASSED" "$logs/$t.log" | head -10
  done
fi

parity_cases() {  # GPU_PREBUILT_FAMILIES: fixture folders to take (space list; default every one)
  local family
  for family in ${GPU_PREBUILT_FAMILIES:-*}; do
    for inputs in tests/fixtures/$family/*/inputs.safetensors; do
      [[ -f $inputs ]] || continue
      local dir=${inputs%/inputs.safetensors}
      [[ -f $dir/outputs.safetensors ]] && echo "$dir"
    done
  done
}
run_parity() {  # stops starting cases after GPU_PREBUILT_PARITY_S seconds (default 240)
  local failed=0 total=0 begin=$SECONDS
  for c in $(parity_cases); do
    if ((SECONDS - begin > ${GPU_PREBUILT_PARITY_S:-240})); then
      echo "STOPPED at $c: out of time"
      failed=$((failed + 1))
      break
    fi
    for mode in "float32|" "fused|--fuse on" "bfloat16|--dtype bfloat16"; do
      local label=${mode%%|*} flags=${mode#*|}
      total=$((total + 1))
      # shellcheck disable=SC2086
      if line=$(timeout 60 "$bin/fastdit" parity "$c" --device cuda $flags 2>&1 | tail -1) && [[ $line == PASS* ]]; then
        echo "PASS $c $label: $line"
      else
        failed=$((failed + 1))
        echo "FAIL $c $label: $line"
      fi
    done
  done
  echo "parity on cuda: $((total - failed)) of $total passed"
  [[ $failed == 0 ]]
}
if want parity; then
  start=$SECONDS
  run_parity >"$logs/parity.log" 2>&1
  summary+=("parity: exit $? in $((SECONDS - start)) s")
  grep -E "^FAIL|^STOPPED|parity on cuda" "$logs/parity.log" | head -40
fi

if want attention; then
  step attention-perf 90 "$bin/fastdit_backend_ops" --perf --filter "attention bfloat16 Wan 1.3B"
  cat "$logs/attention-perf.log"
fi

# Optional benches: GPU_PREBUILT_BENCH lines "name|fastdit bench arguments|reference command".
while want bench && IFS='|' read -r name args reference; do
  [[ -z $name ]] && continue
  # shellcheck disable=SC2086
  step "bench-$name" "${GPU_PREBUILT_BENCH_S:-150}" "$bin/fastdit" bench $args --json "$logs/bench-$name.json"
  grep -E "median|peak" "$logs/bench-$name.log" | head -4
  if [[ -n $reference && -d .ref ]]; then
    step "reference-$name" "${GPU_PREBUILT_REF_S:-200}" bash -c "$reference"
    tail -4 "$logs/reference-$name.log"
  fi
done <<<"${GPU_PREBUILT_BENCH:-}"

printf '%s\n' "${summary[@]}"
