#!/usr/bin/env bash
# The FP8 path's figures beside the reference's from the same call, and where its time goes,
# on the GPU machine with binaries built on the CPU machine (scripts/prebuilt-env.sh):
#   wan13    Wan2.1 1.3B at 81x480x832 (512 text tokens, random weights): fastdit bf16 and fp8
#            (--components), diffusers eager (bench/reference_wan.py), nvidia-smi clocks beside
#            each (as scripts/gpu-bench.sh does);
#   compile  diffusers torch.compile of the same forward (FP8_PROFILE_COMPILE: the variants, default
#            the 1.3B; FP8_PROFILE_COMPILE_S bounds each);
#   wan14    the same for Wan2.1 14B (fastdit bf16 and fp8, diffusers eager);
#   ncu      Nsight Compute, full set, clocks as they are: the 8-bit attention kernel and the bf16
#            flash kernel at [1, 32760, 12, 128] (test_cuda_attention_8bit's throughput case),
#            then one fp8 1.3B forward's first GEMMs, quantize and norm kernels; each report
#            exported as its details and raw CSV pages;
#   ltx2     LTX-2 19B forward in fp8 (bench/configs/ltx2-19b-forward-fp8.json) and bf16, then
#            diffusers eager (bench/reference_ltx2.py);
#   flux     FLUX.1-dev 1024² forward in bf16 and fp8 (CUDA graph; then --components), fastdit
#            generate's 28 steps in each, then diffusers eager + torch.compile + the 28-step
#            FluxPipeline (bench/reference_flux.py; FP8_PROFILE_FLUX_REF="" for eager alone);
#   attention8  test_attention_8bit and test_cuda_attention_8bit (rule, bounds, throughput);
#            the FP8 tests, the op harness's FP8 cases and fp8 against bf16 are
#            scripts/fp8-gpu-check.sh's;
#   harness  the op harness's cases whose labels hold each word of FP8_PROFILE_HARNESS (default
#            attention_8bit linear_fp8 quantize_fp8_rows), on CUDA against the CPU.
# FP8_PROFILE_STEPS picks steps (comma list; default wan13,ncu,ltx2). Logs, JSON records and the
# ncu CSVs land in $OUT/fp8-profile-logs.tgz, a summary last.
# Make the tarball here:  bash scripts/fp8-profile.sh --pack .dev/bins.tar.xz
# Run there:              FP8_PROFILE_STEPS=wan13,ncu bash scripts/fp8-profile.sh .dev/bins.tar.xz
#                         (carry .dev, .debs and .ref: diffusers' src/ in .ref/diffusers/src)
set -uo pipefail
cd "$(dirname "$0")/.."

source scripts/prebuilt-env.sh
prebuilt_start /tmp/fastdit-fp8-profile-logs /tmp/fastdit-fp8-profile-prebuilt "$@"
logs_apart fp8-profile-logs  # brought back as $OUT/fp8-profile-logs.tgz (prebuilt-env.sh)
nvidia-smi --query-gpu=name,driver_version,power.limit,memory.total --format=csv,noheader | tee "$logs/gpu.txt"
export PYTHONUNBUFFERED=1
ref=.ref/diffusers/src

want() { [[ ,${FP8_PROFILE_STEPS:-wan13,ncu,ltx2}, == *,$1,* ]]; }

source scripts/clocks.sh
# timed NAME SECONDS COMMAND...: step() (prebuilt-env.sh) with the clocks sampled (clocks.sh).
timed() { clocked "$1" step "$@"; }
show() { grep -E "$2" "$logs/$1.log" | head -"${3:-12}"; }

wan_bench() {  # VARIANT ITERS: fastdit bf16, fp8, then diffusers eager, one after the other
  local v=$1 iters=$2 p
  local args=(--config "tests/fixtures/wan/keys/$v.config.json" --random-weights --device cuda --dtype bfloat16
              --frames 81 --height 480 --width 832 --text-len 512 --warmup 2 --iters "$iters" --components)
  for p in bf16 fp8; do
    timed "fastdit-$v-$p" 300 "$bin/fastdit" bench "${args[@]}" --precision "$p" --json "$logs/fastdit-$v-$p.json"
    show "fastdit-$v-$p" "median|peak|components|attention|linear|quantize"
  done
  [[ ${FP8_PROFILE_WAN_REF:-1} == 1 ]] || return 0  # 0: the compile step's run gives eager too
  timed "diffusers-$v" 300 python3 bench/reference_wan.py --ref "$ref" --config "tests/fixtures/wan/keys/$v.config.json" \
    --frames 81 --height 480 --width 832 --text-len 512 --warmup 2 --iters "$iters" --json "$logs/diffusers-$v.json"
  show "diffusers-$v" "median|peak"
}

if want harness; then  # op-harness cases on CUDA against the CPU, by label (FP8_PROFILE_HARNESS)
  for filter in ${FP8_PROFILE_HARNESS:-attention_8bit linear_fp8 quantize_fp8_rows}; do
    step "harness-$filter" 120 "$bin/fastdit_backend_ops" --filter "$filter"
    show "harness-$filter" "^FAIL|^PASS" 20
  done
fi

if want attention8; then  # the 8-bit attention's tests: the quantize rule, the bounds, the throughput
  step test_attention_8bit 60 "$bin/test_attention_8bit"
  show test_attention_8bit "FAILED|PASSED"
  step test_cuda_attention_8bit 240 "$bin/test_cuda_attention_8bit"
  show test_cuda_attention_8bit "FAILED|PASSED|Failure|rel_l2|TOPS" 30
fi

want wan13 && wan_bench Wan2.1-T2V-1.3B 5


# ncu_step NAME KERNEL_REGEX SKIP COUNT COMMAND...: one report, exported as CSV pages.
ncu_step() {
  local name=$1 kernel=$2 skip=$3 count=$4
  shift 4
  step "ncu-$name" 240 ncu --set full --import-source no --clock-control none -k "regex:$kernel" --launch-skip "$skip" \
    -c "$count" -f -o "$logs/ncu-$name" "$@"
  ncu --import "$logs/ncu-$name.ncu-rep" --page details --csv >"$logs/ncu-$name-details.csv" 2>/dev/null
  ncu --import "$logs/ncu-$name.ncu-rep" --page raw --csv >"$logs/ncu-$name-raw.csv" 2>/dev/null
  grep -E '"(Duration|SM Frequency|Compute \(SM\) Throughput|Memory Throughput|Registers Per Thread|Achieved Occupancy|Issue Slots Busy|Warp Cycles Per Issued Instruction)"' \
    "$logs/ncu-$name-details.csv" | awk -F'","' '{ printf "   %-44.44s %-36s %s %s\n", $5, $(NF-2), $(NF-1), $NF }' | tr -d '"'
}
if want ncu && command -v ncu >/dev/null; then
  throughput=("$bin/test_cuda_attention_8bit" --gtest_filter='*ThroughputAtWanShape*')
  ncu_step attention8 attention_int8_kernel 2 1 "${throughput[@]}"
  ncu_step attention-bf16 flash_forward_sm90 2 1 "${throughput[@]}"
  forward=("$bin/fastdit" bench --config tests/fixtures/wan/keys/Wan2.1-T2V-1.3B.config.json --random-weights --device cuda
           --dtype bfloat16 --frames 81 --height 480 --width 832 --text-len 512 --warmup 0 --iters 1 --precision fp8)
  # Block 0's GEMMs come after the condition embedder's (bfloat16) ones: fourteen cover them.
  ncu_step gemm-fp8 'nvjet|xmma|gemm|cutlass' 0 14 "${forward[@]}"
  ncu_step quantize quantize_rows_kernel 0 6 "${forward[@]}"
  ncu_step norms 'normalize|norm_modulate|layer_norm' 0 3 "${forward[@]}"
fi

want wan14 && wan_bench Wan2.1-T2V-14B 3

if want compile; then  # FP8_PROFILE_COMPILE: the variants (default the 1.3B), each within FP8_PROFILE_COMPILE_S
  for v in ${FP8_PROFILE_COMPILE:-Wan2.1-T2V-1.3B}; do
    timed "diffusers-compile-$v" "${FP8_PROFILE_COMPILE_S:-420}" python3 bench/reference_wan.py --ref "$ref" \
      --config "tests/fixtures/wan/keys/$v.config.json" --frames 81 --height 480 --width 832 --text-len 512 \
      --warmup 2 --iters 3 --compile --json "$logs/diffusers-compile-$v.json"
    show "diffusers-compile-$v" "median|peak|compile"
  done
fi

if want ltx2; then
  for def in ltx2-19b-forward-fp8 ltx2-19b-forward; do
    timed "$def" 300 "$bin/fastdit" bench --config "bench/configs/$def.json" --components --json "$logs/$def.json"
    show "$def" "median|peak|components|attention|linear|quantize"
  done
  timed diffusers-ltx2 300 python3 bench/reference_ltx2.py --ref "$ref" --config tests/fixtures/ltx2/keys/LTX-2.config.json \
    --frames 16 --height 16 --width 24 --audio-frames 126 --text-len 1024 --warmup 3 --iters 20 --json "$logs/diffusers-ltx2.json"
  show diffusers-ltx2 "median|peak"
fi

if want flux; then
  flux=(--config tests/fixtures/flux/keys/FLUX.1-dev.config.json --random-weights --device cuda --dtype bfloat16
        --frames 1 --height 1024 --width 1024 --text-len 512 --warmup 3 --iters 10)
  for p in bf16 fp8; do
    timed "flux-$p" 200 "$bin/fastdit" bench "${flux[@]}" --cuda-graph --precision "$p" --json "$logs/flux-$p.json"
    show "flux-$p" "median|peak"
    step "flux-$p-components" 200 "$bin/fastdit" bench "${flux[@]}" --precision "$p" --components
    show "flux-$p-components" "median|components|attention|linear|quantize|concat|rope|norm|gelu" 30
    timed "flux-generate-$p" 200 "$bin/fastdit" generate --config tests/fixtures/flux/keys/FLUX.1-dev.config.json \
      --random-weights --preset flux1-dev --device cuda --dtype bfloat16 --cuda-graph --precision "$p" \
      --output "/tmp/flux-generate-$p.safetensors"
    tail -3 "$logs/flux-generate-$p.log"
  done
  timed diffusers-flux 420 python3 bench/reference_flux.py --ref "$ref" --config tests/fixtures/flux/keys/FLUX.1-dev.config.json \
    --height 1024 --width 1024 --text-len 512 --warmup 3 --iters 10 ${FP8_PROFILE_FLUX_REF---pipeline --compile} \
    --json "$logs/diffusers-flux.json"
  show diffusers-flux "median|peak|compile|FluxPipeline"
fi

printf '%s\n' "${summary[@]}" | tee "$logs/summary.txt"
pack_logs
