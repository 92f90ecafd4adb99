#!/usr/bin/env bash
# FP8 against bf16 over a whole denoising run on the GPU machine, with binaries built on the
# CPU machine (scripts/prebuilt-env.sh), in about six minutes:
#   1. generate: Wan2.1 T2V 1.3B (random weights), 81x480x832, 50 UniPC steps with
#      classifier-free guidance 3 (the wan2.1-t2v-1.3b preset), bf16 then fp8 from the same
#      seed, each step timed (CUDA graph replays; a run whose capture fails is rerun eagerly);
#      the fp8 run's final latents compared with the bf16 run's (`generate --compare`: rel_l2,
#      max_abs, cosine, PSNR; measured, not judged). Non-finite latents are named as such.
#   2. bench14b: Wan2.1 T2V 14B (random weights), one forward at 81x720x1280, 512 text tokens,
#      in bf16 and in fp8: median time and peak memory.
# FP8_GEN_STEPS picks the parts (default "generate,bench14b"; one part a call keeps each call
# near three minutes). FP8_GEN_CUDA_GRAPH=0 runs the generates eagerly. Logs land in $OUT with
# a summary (rewritten after every step, so a run cut short still has one) and, last, one
# tarball of them all (fp8-generate-logs.tar.gz); the latents stay in a scratch folder.
# Make the tarball here:  bash scripts/fp8-generate-check.sh --pack .dev/bins.tar.xz  (the same
#                         tarball as gpu-prebuilt-check.sh's and fp8-gpu-check.sh's)
# Run there:              OUT=<dir> bash scripts/fp8-generate-check.sh .dev/bins.tar.xz
set -uo pipefail
cd "$(dirname "$0")/.."

source scripts/prebuilt-env.sh
prebuilt_start /tmp/fastdit-fp8-generate-logs /tmp/fastdit-fp8-generate-prebuilt "$@"
parts=",${FP8_GEN_STEPS:-generate,bench14b},"
export FASTDIT_PRESETS_DIR=$PWD/presets  # the binaries are not beside this tree's presets/
work=/tmp/fastdit-fp8-generate-latents
rm -rf "$work" && mkdir -p "$work"
nvidia-smi --query-gpu=name,driver_version,power.limit,memory.total --format=csv,noheader | tee "$logs/gpu.txt"

notes=()
note() { notes+=("$*"); echo "$*"; }
write_summary() { printf '%s\n' "${summary[@]}" "${notes[@]}" >"$logs/summary.txt"; }

# The generate's timing line ("50 steps in T s: mean …") and whether its latents were finite.
report_generate() {
  local name=$1 log=$logs/$1.log
  local timing
  timing=$(grep -m1 -E "^[0-9]+ steps in " "$log") && note "$name: $timing"
  if grep -q "non-finite values" "$log"; then
    note "$name: LATENTS NOT FINITE: $(grep -m1 'non-finite values' "$log") (random weights blew up over the steps)"
  fi
}

# generate_run NAME ARGS...: the generate with --cuda-graph (unless FP8_GEN_CUDA_GRAPH=0), and
# eagerly as NAME-eager when that fails for any reason but the time limit.
generate_run() {
  local name=$1 status
  shift
  if [[ ${FP8_GEN_CUDA_GRAPH:-1} == 1 ]]; then
    step "$name" 240 "$bin/fastdit" generate "$@" --cuda-graph
    status=$?
    write_summary
    if ((status == 0 || status == 124)); then  # 124: the time limit, which an eager run would hit too
      report_generate "$name"
      return $status
    fi
    note "$name: exit $status with --cuda-graph ($(grep -m1 '^error:' "$logs/$name.log")); rerunning eagerly"
    name=$name-eager
  fi
  step "$name" 240 "$bin/fastdit" generate "$@"
  status=$?
  report_generate "$name"
  write_summary
  return $status
}

if [[ $parts == *,generate,* ]]; then
  gen=(--config tests/fixtures/wan/keys/Wan2.1-T2V-1.3B.config.json --random-weights --preset wan2.1-t2v-1.3b
       --frames 81 --height 480 --width 832 --steps 50 --seed 1024 --device cuda --dtype bfloat16)
  generate_run gen-wan1.3b-bf16 "${gen[@]}" --precision bf16 --output "$work/bf16.safetensors"
  if [[ -s $work/bf16.safetensors ]]; then
    generate_run gen-wan1.3b-fp8 "${gen[@]}" --precision fp8 --output "$work/fp8.safetensors" \
      --compare "$work/bf16.safetensors"
    for log in "$logs"/gen-wan1.3b-fp8*.log; do
      line=$(grep -m1 "^latents rel_l2=" "$log") && note "fp8 vs bf16 final latents (50 steps, same seed): ${line#latents }"
    done
    if grep -qE "^latents rel_l2=nan" "$logs"/gen-wan1.3b-fp8*.log; then
      note "fp8 vs bf16: NaN figures: one of the runs has non-finite latents (see the lines above)"
    fi
  else
    note "gen-wan1.3b-bf16 wrote no latents: the fp8 run and its comparison are skipped"
  fi
  write_summary
fi

if [[ $parts == *,bench14b,* ]]; then
  wan14=(--config tests/fixtures/wan/keys/Wan2.1-T2V-14B.config.json --random-weights --device cuda --dtype bfloat16
         --frames 81 --height 720 --width 1280 --text-len 512 --warmup 1 --iters 2)
  for precision in bf16 fp8; do
    step "bench-wan14b-$precision" 240 "$bin/fastdit" bench "${wan14[@]}" --precision "$precision" \
      --json "$logs/bench-wan14b-$precision.json"
    grep -E "median|peak|throughput" "$logs/bench-wan14b-$precision.log" | head -4
    write_summary
  done
  peak() { sed -n 's/^peak memory \([0-9.]*\) MiB.*/\1/p' "$logs/bench-wan14b-$1.log" | head -1; }
  median() { sed -n 's/^median \([0-9.]*\) ms.*/\1/p' "$logs/bench-wan14b-$1.log" | head -1; }
  note "Wan 14B 81x720x1280 one forward: peak memory bf16 $(peak bf16) MiB, fp8 $(peak fp8) MiB;" \
       "median bf16 $(median bf16) ms, fp8 $(median fp8) ms"
  write_summary
fi

cat "$logs/summary.txt"
tar czf "$work/fp8-generate-logs.tar.gz" -C "$logs" . && mv "$work/fp8-generate-logs.tar.gz" "$logs/"
