#!/usr/bin/env bash
# fastdit vs diffusers on one GPU, same shapes, same run: Wan2.1 1.3B (and 14B with
# GPU_CHECK_14B=1) at 81x480x832 with 512 text tokens, bf16, random weights; the load
# time of a saved 1.3B diffusers checkpoint; an Nsight Compute profile of the attention,
# GEMM and norm kernels (GPU_CHECK_NCU=1); torch.compile last (GPU_CHECK_COMPILE=1).
# Usage: gpu-bench.sh <fastdit> <log dir>
set -uo pipefail
fastdit=$1
logs=$2
cd "$(dirname "$0")/.."
keys=tests/fixtures/wan/keys
shape=(--frames 81 --height 480 --width 832 --text-len 512)
ref=.ref/diffusers/src
export FASTDIT_COMMIT=${FASTDIT_COMMIT:-unknown}

source scripts/clocks.sh  # clocked <name> <command...>

bench_pair() {  # <variant> [reference extra args...]
  local v=$1
  shift
  echo "== $v fastdit"
  clocked "fastdit-$v" "$fastdit" bench --config "$keys/$v.config.json" --random-weights --device cuda \
    --dtype bfloat16 "${shape[@]}" --warmup 2 --iters 5 --components --json "$logs/fastdit-$v.json"
  if [[ -d $ref ]]; then
    echo "== $v diffusers"
    clocked "diffusers-$v" python3 bench/reference_wan.py --ref "$ref" --config "$keys/$v.config.json" \
      "${shape[@]}" --warmup 2 --iters 5 --json "$logs/diffusers-$v.json" "$@"
  fi
}

# Benchmark records for the baseline store (bench/baselines): each definition N times.
bench_records() {  # <definition id>
  for i in $(seq 1 "${GPU_CHECK_RECORDS:-0}"); do
    echo "== record $1 run $i"
    "$fastdit" bench --config "bench/configs/$1.json" --json "$logs/record-$1-$i.json" 2>/dev/null | grep -E "median|peak"
  done
}

bench_pair Wan2.1-T2V-1.3B --save-checkpoint /tmp/wan13b
bench_records wan2.1-t2v-1.3b-480p-forward
[[ ${GPU_CHECK_14B:-0} == 1 ]] && bench_pair Wan2.1-T2V-14B
[[ ${GPU_CHECK_14B:-0} == 1 ]] && bench_records wan2.1-t2v-14b-480p-forward
# The denoising loop: 50 steps with CFG at 480x832x81 (issue "Denoising runtime").
if [[ ${GPU_CHECK_GENERATE:-0} == 1 ]]; then
  echo "== generate Wan2.1-T2V-1.3B 50 steps CFG"
  "$fastdit" generate --config "$keys/Wan2.1-T2V-1.3B.config.json" --random-weights --preset wan2.1-t2v-1.3b \
    --height 480 --width 832 --frames 81 --steps 50 --device cuda --dtype bfloat16 \
    --output /tmp/wan13b_latents.safetensors 2>&1 | tail -3
fi
if [[ -d /tmp/wan13b ]]; then
  echo "== load: diffusers"
  python3 bench/reference_wan.py --ref "$ref" --config "$keys/Wan2.1-T2V-1.3B.config.json" \
    --frames 1 --height 16 --width 16 --text-len 8 --warmup 0 --iters 1 --load-checkpoint /tmp/wan13b \
    --json "$logs/diffusers-load.json" | grep "from_pretrained"
  echo "== load: fastdit"
  "$fastdit" bench /tmp/wan13b --device cuda --dtype bfloat16 --frames 1 --height 16 --width 16 \
    --text-len 8 --warmup 1 --iters 1 --json "$logs/fastdit-load.json" 2>&1 | grep -E "loaded|median"
fi
# The activation-trace hook point costs nothing when off: the same forward from a build
# without it (FASTDIT_FORWARD_HOOKS=OFF), interleaved with the normal build, 3 rounds.
if [[ ${GPU_CHECK_HOOKS:-0} == 1 ]]; then
  cmake -S . -B build-nohooks -G Ninja -DCMAKE_BUILD_TYPE=Release -DFASTDIT_TESTS=OFF \
    -DFASTDIT_FORWARD_HOOKS=OFF >/dev/null && cmake --build build-nohooks -j"$(nproc)" --target fastdit_cli >/dev/null
  for round in 1 2 3; do
    for build in with-hooks no-hooks; do
      bin=$fastdit
      [[ $build == no-hooks ]] && bin=build-nohooks/fastdit
      echo "== hooks round $round $build"
      "$bin" bench --config "$keys/Wan2.1-T2V-1.3B.config.json" --random-weights --device cuda --dtype bfloat16 \
        "${shape[@]}" --warmup 1 --iters 5 --json "$logs/hooks-$build-$round.json" 2>/dev/null | grep median
    done
  done
fi
# Nsight Compute on the 1.3B forward (GPU_CHECK_NCU=1), full metric set, clocks left as
# they are (--clock-control none: ncu would otherwise pin them to base): the first two
# self-attention kernels, the nine GEMMs after the condition embedder's four (block 0's
# q|k|v, output, cross q, cross k|v, output, FFN up and down in two token pieces) and the
# first two norms. Duration, throughput, occupancy and register lines
# are printed; the whole CSV is kept as ncu-1.3b.csv.
if [[ ${GPU_CHECK_NCU:-0} == 1 ]] && command -v ncu >/dev/null; then
  echo "== ncu Wan2.1-T2V-1.3B (attention, GEMM, norm kernels of one forward)"
  : >"$logs/ncu-1.3b.csv"
  for selection in 'regex:flash_forward_sm90 0 2' 'regex:nvjet|xmma|gemm|cutlass 4 9' 'regex:normalize_rows 0 2'; do
    read -r kernel skip count <<<"$selection"
    ncu --set full --clock-control none -k "$kernel" --launch-skip "$skip" -c "$count" --csv --page details \
      "$fastdit" bench --config "$keys/Wan2.1-T2V-1.3B.config.json" --random-weights --device cuda --dtype bfloat16 \
      "${shape[@]}" --warmup 0 --iters 1 2>/dev/null | grep -E '^"' >>"$logs/ncu-1.3b.csv"
  done
  grep -E '"(Duration|Compute \(SM\) Throughput|DRAM Throughput|Achieved Occupancy|Registers Per Thread|Grid Size)"' \
    "$logs/ncu-1.3b.csv" | awk -F'","' '{ printf "%-60.60s %-32s %s %s\n", $5, $(NF-2), $(NF-1), $NF }' | tr -d '"' | head -90
fi
if [[ -d $ref && ${GPU_CHECK_COMPILE:-0} == 1 ]]; then
  echo "== Wan2.1-T2V-1.3B diffusers torch.compile"
  python3 bench/reference_wan.py --ref "$ref" --config "$keys/Wan2.1-T2V-1.3B.config.json" "${shape[@]}" \
    --warmup 2 --iters 5 --compile --json "$logs/diffusers-compile-Wan2.1-T2V-1.3B.json"
fi
