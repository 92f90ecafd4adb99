#!/usr/bin/env bash
# LTX-2's fused attention projections on the GPU machine, with binaries built on the CPU
# machine (scripts/prebuilt-env.sh, as gpu-prebuilt-check.sh does):
#   1. the op harness's norm and qkv_norm_rope cases on CUDA against the CPU (rms_norm reads
#      the column ranges of a fused q|k|v projection in place; qkv_norm_rope with per-head
#      tables and split-half pairs, LTX-2's self-attention, in each of its kernels), and the
#      harness's --perf lines for LTX-2's video self-attention glue: the one pass against the
#      separate norms, rotations and value copy it replaces;
#   2. every LTX-2 parity case on CUDA: float32 with separate and with fused projections,
#      bfloat16 (fused, the CUDA default);
#   3. the LTX-2 FP8 parity forwards (fused: to_qkv / to_kv in FP8) from test_cuda_fp8;
#   4. the 19B forward benchmark definition (bench/configs/ltx2-19b-forward.json: fused, the
#      CUDA default) with --components, then the same workload built from the config with
#      --fuse off, the separate projections, for the before / after in one session.
# LTX2_GPU_STEPS picks steps (comma list of harness,parity,fp8,bench; default all: about
# eight minutes, so two calls under a ten-minute limit: harness,parity,fp8 then bench).
# Logs and JSON records land in $OUT (tarred into $OUT/ltx2-gpu-logs.tar.gz), a summary last.
# Make the tarball here:  bash scripts/ltx2-gpu-check.sh --pack .dev/bins.tar.xz  (the tarball
#                         gpu-prebuilt-check.sh and fp8-gpu-check.sh use)
# Run there:              bash scripts/ltx2-gpu-check.sh .dev/bins.tar.xz
set -uo pipefail
cd "$(dirname "$0")/.."

source scripts/prebuilt-env.sh
prebuilt_start /tmp/fastdit-ltx2-logs /tmp/fastdit-ltx2-prebuilt "$@"
nvidia-smi --query-gpu=name,driver_version,power.limit,memory.total --format=csv,noheader | tee "$logs/gpu.txt"

want() { [[ ,${LTX2_GPU_STEPS:-harness,parity,fp8,bench}, == *,$1,* ]]; }

if want harness; then
  for filter in rms_norm layer_norm qkv_norm_rope; do  # (layer_norm also takes add_layer_norm's cases)
    step "harness-$filter" 60 "$bin/fastdit_backend_ops" --filter "$filter"
    grep -E "^FAIL|^PASS" "$logs/harness-$filter.log" | head -20
  done
  step harness-perf-ltx2 60 "$bin/fastdit_backend_ops" --perf --filter "LTX-2 video"
  cat "$logs/harness-perf-ltx2.log"
fi

parity() {
  local failed=0 total=0
  for dir in tests/fixtures/ltx2/*/; do
    [[ -f $dir/outputs.safetensors ]] || continue
    for mode in "float32|--fuse off" "fused|--fuse on" "bfloat16|--dtype bfloat16"; do
      local label=${mode%%|*} flags=${mode#*|} line
      total=$((total + 1))
      # shellcheck disable=SC2086
      if line=$(timeout 60 "$bin/fastdit" parity "${dir%/}" --device cuda $flags 2>&1 | tail -1) && [[ $line == PASS* ]]; then
        echo "PASS ${dir%/} $label: $line"
      else
        failed=$((failed + 1))
        echo "FAIL ${dir%/} $label: $line"
      fi
    done
  done
  echo "ltx2 parity on cuda: $((total - failed)) of $total passed"
  [[ $failed == 0 ]]
}
if want parity; then
  start=$SECONDS
  parity >"$logs/parity.log" 2>&1
  summary+=("parity: exit $? in $((SECONDS - start)) s")
  grep -E "^FAIL|parity on cuda" "$logs/parity.log"
fi

if want fp8 && [[ -x $bin/test_cuda_fp8 ]]; then
  step test_cuda_fp8-loads 240 "$bin/test_cuda_fp8" --gtest_filter='CudaFp8Load.*'
  grep -E "FAILED|PASSED|Failure|ltx2" "$logs/test_cuda_fp8-loads.log" | head -30
fi

if want bench; then
  step bench-definition 240 "$bin/fastdit" bench --config bench/configs/ltx2-19b-forward.json --components \
    --json "$logs/bench-definition.json"
  grep -E "median|throughput|peak|components" "$logs/bench-definition.log"
  shape=(--config tests/fixtures/ltx2/keys/LTX-2.config.json --random-weights --device cuda --dtype bfloat16
         --frames 121 --height 512 --width 768 --text-len 1024 --batch 1 --vae-stride 8,32,32 --warmup 3 --iters 20
         --components)
  step bench-fuse-off 240 "$bin/fastdit" bench "${shape[@]}" --fuse off --json "$logs/bench-fuse-off.json"
  grep -E "median|throughput|peak|components" "$logs/bench-fuse-off.log"
fi

printf '%s\n' "${summary[@]}" | tee "$logs/summary.txt"
tar czf "/tmp/ltx2-gpu-logs.tar.gz" -C "$logs" . && mv /tmp/ltx2-gpu-logs.tar.gz "$logs/"
