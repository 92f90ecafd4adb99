#!/usr/bin/env bash
# generate --cfg-parallel on CPU processes (the socket transport, the whole multi-process
# protocol): the Wan2.2 A14B loop (two experts, guidance 4 / 3) with the cond and uncond
# forwards on two rank groups equals the single-process loop bit for bit, and with --sp 2
# inside each group the --sp 2 loop bit for bit; rank 0 alone prints; a rank that fails or
# dies ends every rank with an error naming it; nonsense combinations are refused.
# Usage: cfg_parallel.sh <path to fastdit>
set -u
fastdit=$1
root=${FASTDIT_SOURCE_DIR:-.}
case_dir=$root/tests/fixtures/pipeline/wan22_a14b_tiny
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
export OMP_NUM_THREADS=1 FASTDIT_NCCL_TIMEOUT_S=20
port() { echo $((20000 + RANDOM % 12000)); }
base=(generate --model "$case_dir" --prompt-embeds "$case_dir/prompt_embeds.safetensors"
      --noise "$case_dir/noise.safetensors" --guidance 4 --guidance-2 3)
long=("${base[@]}" --negative-embeds "$case_dir/negative_prompt_embeds.safetensors")
run=("${long[@]}" --steps 6)

# The latents of two outputs: identical (bound 0) or within rel_l2 <bound>.
same() {
  python3 - "$1" "$2" "$3" <<'PY'
import array, json, math, struct, sys
def latents(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    begin, end = json.loads(data[8:8 + n])["latents"]["data_offsets"]
    return array.array("f", data[8 + n + begin:8 + n + end])
a, b, bound = latents(sys.argv[1]), latents(sys.argv[2]), float(sys.argv[3])
if len(a) != len(b): sys.exit("sizes differ")
if bound == 0: sys.exit(0 if a.tobytes() == b.tobytes() else "not bit-identical")
err = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)) / sum(y * y for y in b))
sys.exit(0 if err <= bound else f"rel_l2 {err} > {bound}")
PY
}

"$fastdit" "${run[@]}" --cfg-batching sequential --output "$tmp/one.safetensors" >"$tmp/out" 2>"$tmp/err" \
  || fail "single process: $(cat "$tmp/err")"
grep -q "transformer_2" "$tmp/err" || fail "the A14B loop never switched experts: $(cat "$tmp/err")"
"$fastdit" "${run[@]}" --cfg-parallel --output "$tmp/cfg.safetensors" >"$tmp/out" 2>"$tmp/err" \
  || fail "--cfg-parallel: $(cat "$tmp/out" "$tmp/err")"
same "$tmp/cfg.safetensors" "$tmp/one.safetensors" 0 || fail "--cfg-parallel differs from the single-process loop"
grep -q "CFG parallel, .*2 x 1 ranks (CFG-parallel)" "$tmp/out" || fail "--cfg-parallel summary: $(cat "$tmp/out")"
grep -q "^communication per step (rank 0): CFG exchange .* ms (1 collectives" "$tmp/out" \
  || fail "no communication line: $(cat "$tmp/out")"
[[ $(grep -c "^step " "$tmp/err") -eq 6 ]] || fail "ranks other than 0 printed progress: $(cat "$tmp/err")"

"$fastdit" "${run[@]}" --cfg-batching sequential --sp 2 --output "$tmp/sp2.safetensors" >"$tmp/out" 2>"$tmp/err" \
  || fail "--sp 2: $(cat "$tmp/out" "$tmp/err")"
grep -q "2 ranks (sequence parallel)" "$tmp/out" || fail "--sp 2 summary: $(cat "$tmp/out")"
same "$tmp/sp2.safetensors" "$tmp/one.safetensors" 1e-6 || fail "--sp 2 differs from the single-process loop"
"$fastdit" "${run[@]}" --cfg-parallel --sp 2 --output "$tmp/cfg_sp2.safetensors" >"$tmp/out" 2>"$tmp/err" \
  || fail "--cfg-parallel --sp 2: $(cat "$tmp/out" "$tmp/err")"
same "$tmp/cfg_sp2.safetensors" "$tmp/sp2.safetensors" 0 || fail "--cfg-parallel --sp 2 differs from --sp 2"
grep -q "2 x 2 ranks (CFG-parallel x sequence parallel)" "$tmp/out" || fail "summary: $(cat "$tmp/out")"
grep -q "^communication per step (rank 0): sequence parallel .* CFG exchange .*% of the step" "$tmp/out" \
  || fail "no communication line: $(cat "$tmp/out")"

# Ranks a launcher started (torchrun's variables), 2 x 2; rank 3 fails on its input.
p=$(port)
start=$SECONDS
for r in 1 2 3; do
  negative=$case_dir/negative_prompt_embeds.safetensors
  [[ $r -eq 3 ]] && negative=$tmp/missing.safetensors
  RANK=$r WORLD_SIZE=4 MASTER_PORT=$p "$fastdit" "${base[@]}" --steps 6 --negative-embeds "$negative" --cfg-parallel \
    --output "$tmp/launched.safetensors" >"$tmp/out$r" 2>&1 &
  pids[$r]=$!
done
RANK=0 WORLD_SIZE=4 MASTER_PORT=$p "$fastdit" "${run[@]}" --cfg-parallel --output "$tmp/launched.safetensors" \
  >"$tmp/out0" 2>&1; rc0=$?
for r in 1 2 3; do wait ${pids[$r]}; rcs[$r]=$?; done
[[ $rc0 -eq 2 && ${rcs[1]} -eq 2 && ${rcs[2]} -eq 2 && ${rcs[3]} -eq 2 ]] \
  || fail "failing rank: exits $rc0 ${rcs[*]}: $(cat "$tmp"/out?)"
grep -q "^error: rank 3 failed: .*missing.safetensors" "$tmp/out0" || fail "rank 0 said: $(cat "$tmp/out0")"
grep -q "^error: rank 3: .*missing.safetensors" "$tmp/out3" || fail "rank 3 said: $(cat "$tmp/out3")"
[[ ! -e $tmp/launched.safetensors ]] || fail "a failed run wrote its output"
(( SECONDS - start < 15 )) || fail "the failing rank took $((SECONDS - start)) s to end the run"

# A rank that dies (killed) in the middle of a long loop: the others end with its name.
p=$(port)
for r in 0 1 2 3; do
  RANK=$r WORLD_SIZE=4 MASTER_PORT=$p "$fastdit" "${long[@]}" --steps 5000 --cfg-parallel --sp 2 \
    --output "$tmp/long.safetensors" >"$tmp/out$r" 2>&1 &
  pids[$r]=$!
done
for _ in $(seq 100); do grep -q "^step 20/" "$tmp/out0" && break; sleep 0.1; done
grep -q "^step 20/" "$tmp/out0" || fail "the long run did not start: $(cat "$tmp"/out?)"
start=$SECONDS
kill -9 ${pids[2]}
for r in 0 1 3; do wait ${pids[$r]}; rcs[$r]=$?; done
wait ${pids[2]} 2>/dev/null
[[ ${rcs[0]} -eq 2 && ${rcs[1]} -eq 2 && ${rcs[3]} -eq 2 ]] || fail "dead rank: exits ${rcs[*]}: $(cat "$tmp"/out?)"
grep -q "^error: .*rank 2 exited without finishing" "$tmp/out0" || fail "rank 0 said: $(tail -3 "$tmp/out0")"
(( SECONDS - start < 15 )) || fail "the dead rank took $((SECONDS - start)) s to end the run"

# Nonsense combinations: one error line, exit 2, no rank started, nothing written.
refuse() {
  local want=$1 status=0
  shift
  "$@" --output "$tmp/bad.safetensors" >"$tmp/out" 2>"$tmp/err" || status=$?
  [[ $status -eq 2 ]] || fail "exit $status (want 2) for $*: $(cat "$tmp/out" "$tmp/err")"
  [[ $(grep -c "^error: " "$tmp/err") -eq 1 ]] && grep -q "^error: .*$want" "$tmp/err" \
    || fail "want one error with '$want' for $*: $(cat "$tmp/err")"
  [[ ! -e $tmp/bad.safetensors ]] || fail "wrote output for $*"
}
refuse "needs classifier-free guidance, but guidance_scale 1 <= 1" "$fastdit" generate --model "$case_dir" \
  --prompt-embeds "$case_dir/prompt_embeds.safetensors" --steps 6 --guidance 1 --cfg-parallel
refuse "--cfg-batching batched with --cfg-parallel" "$fastdit" "${run[@]}" --cfg-batching batched --cfg-parallel
refuse "at most 64 ranks in all" "$fastdit" "${run[@]}" --cfg-parallel --sp 40
refuse "cuda-graph" "$fastdit" "${run[@]}" --cfg-parallel --cuda-graph
refuse "launcher started 3 rank(s).*even number" env RANK=0 WORLD_SIZE=3 "$fastdit" "${run[@]}" --cfg-parallel
refuse "\-\-cfg-parallel --sp 2 takes 4 ranks but the launcher started 2" \
  env RANK=0 WORLD_SIZE=2 "$fastdit" "${run[@]}" --cfg-parallel --sp 2
flux=$root/tests/fixtures/flux/dev/transformer/config.json
if [[ -f $flux ]]; then
  refuse "FluxPipeline's guidance is distilled" "$fastdit" generate --config "$flux" --random-weights --steps 1 \
    --height 16 --width 16 --cfg-parallel
fi
echo "CFG-parallel CLI checks passed"
