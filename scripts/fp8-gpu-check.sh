#!/usr/bin/env bash
# The FP8 precision path on the GPU machine, with binaries built on the CPU machine (as
# scripts/gpu-prebuilt-check.sh does), in about three minutes:
#   1. test_cuda_fp8: the quantize kernel bit for bit against the CPU rule, the FP8 GEMM
#      against the exact emulation (both ways of applying the scales), Wan's block GEMM
#      shapes at m = 32760 (accuracy against the float32 product, TFLOP/s of FP8 and bf16),
#      fp8 loads and every marking family's parity cases' forwards in fp8 (38 cases);
#   2. the op harness's linear cases on CUDA (linear, linear_gelu: the default path is
#      unchanged; linear_fp8, quantize_fp8_rows against the CPU emulation);
#   3. test_attention_8bit / test_cuda_attention_8bit: the 8-bit attention's quantize kernels bit
#      for bit against the CPU rule, the kernel against float32 attention within the stated
#      bounds (Wan's [1, 32760, 12, 128] among the cases) and its throughput;
#   4. a Wan 1.3B forward at 81x480x832 in bf16 and in fp8 (random weights), with the
#      per-op split and peak memory, and fp8 with the bfloat16 attention (FASTDIT_FP8_ATTENTION=off);
#   5. the same forward's output in fp8 against bf16 (run --compare, bound 0.1);
#   6. with FP8_CHECK_14B=1, a Wan 14B forward in fp8 as well.
# Logs and JSON records land in $OUT/fp8-gpu-logs.tgz, with a summary last.
# Make the tarball here:  bash scripts/fp8-gpu-check.sh --pack .dev/bins.tar.xz  (the same tarball as
#                         gpu-prebuilt-check.sh's: scripts/prebuilt-env.sh packs both)
# Run there:              bash scripts/fp8-gpu-check.sh .dev/bins.tar.xz
set -uo pipefail
cd "$(dirname "$0")/.."

source scripts/prebuilt-env.sh
prebuilt_start /tmp/fastdit-fp8-logs /tmp/fastdit-fp8-prebuilt "$@"
logs_apart fp8-gpu-logs  # brought back as $OUT/fp8-gpu-logs.tgz (prebuilt-env.sh)
nvidia-smi --query-gpu=name,driver_version,power.limit,memory.total --format=csv,noheader | tee "$logs/gpu.txt"

step test_fp8 30 "$bin/test_fp8"
grep -E "FAILED|PASSED|rel_l2" "$logs/test_fp8.log" | head -10
step test_cuda_fp8 200 "$bin/test_cuda_fp8"
grep -E "FAILED|PASSED|Failure|unavailable|worst|TFLOP|fp8:|FP8 e4m3" "$logs/test_cuda_fp8.log" | head -60
step test_attention_8bit 60 "$bin/test_attention_8bit"
grep -E "FAILED|PASSED|rel_l2" "$logs/test_attention_8bit.log" | head -12
step test_cuda_attention_8bit 240 "$bin/test_cuda_attention_8bit"
grep -E "FAILED|PASSED|Failure|rel_l2|TOPS|Expected|actual" "$logs/test_cuda_attention_8bit.log" | head -40
for filter in linear quantize_fp8_rows; do
  step "harness-$filter" 60 "$bin/fastdit_backend_ops" --filter "$filter"
  grep -E "^FAIL|^PASS" "$logs/harness-$filter.log" | head -20
done

wan=(--config tests/fixtures/wan/keys/Wan2.1-T2V-1.3B.config.json --random-weights --device cuda --dtype bfloat16
     --frames 81 --height 480 --width 832 --text-len 512 --warmup 2 --iters 5 --components)
for precision in bf16 fp8; do
  step "bench-wan1.3b-$precision" 150 "$bin/fastdit" bench "${wan[@]}" --precision "$precision" \
    --json "$logs/bench-wan1.3b-$precision.json"
  grep -E "median|peak|throughput|components" "$logs/bench-wan1.3b-$precision.log" | head -12
done
# fp8 GEMMs with the bfloat16 attention: what the 8-bit attention adds, measured apart.
FASTDIT_FP8_ATTENTION=off step bench-wan1.3b-fp8-bf16-attention 150 "$bin/fastdit" bench "${wan[@]}" --precision fp8 \
  --json "$logs/bench-wan1.3b-fp8-bf16-attention.json"
grep -E "median|peak" "$logs/bench-wan1.3b-fp8-bf16-attention.log" | head -4

# Optional (FP8_CHECK_14B=1, a minute or two more): Wan 14B in fp8, its time and peak memory
# (the FP8 block weights bring it near 15 GB).
if [[ ${FP8_CHECK_14B:-0} == 1 ]]; then
  wan14=("${wan[@]}")
  wan14[1]=tests/fixtures/wan/keys/Wan2.1-T2V-14B.config.json
  step bench-wan14b-fp8 240 "$bin/fastdit" bench "${wan14[@]}" --precision fp8 --json "$logs/bench-wan14b-fp8.json"
  grep -E "median|peak|throughput|components" "$logs/bench-wan14b-fp8.log" | head -6
fi

# The whole forward at full size, fp8 against bf16 from the same random weights and inputs
# (what a user runs on a checkpoint: README, --precision), against the stated forward bound.
run_args=(tests/fixtures/wan/keys/Wan2.1-T2V-1.3B.config.json --random-weights --example 81,480,832 --device cuda
          --dtype bfloat16)
step run-wan1.3b-bf16 120 "$bin/fastdit" run "${run_args[@]}" --output "$logs/wan1.3b-bf16.safetensors"
step run-wan1.3b-fp8-compare 120 "$bin/fastdit" run "${run_args[@]}" --precision fp8 \
  --compare "$logs/wan1.3b-bf16.safetensors" --max-rel-l2 0.1
tail -3 "$logs/run-wan1.3b-fp8-compare.log"

printf '%s\n' "${summary[@]}" | tee "$logs/summary.txt"
pack_logs
