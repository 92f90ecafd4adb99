#!/usr/bin/env bash
# Sequence-parallel (--sp) checks on a machine with 2 or 4 GPUs (nvidia-h200-x2 / -x4).
#   scripts/sp-check.sh [build] [nccl] [parity] [equal] [time]     (no argument: all)
#   build   configure and build build-gpu/fastdit and the NCCL test with CUDA and NCCL
#           (incremental; the build folder scripts/gpu-check.sh uses)
#   nccl    tests/gpu/test_nccl_communicator: the collectives, and a rank that dies, fails
#           or stalls inside a collective ending every rank with an error in seconds
#   parity  every Wan parity case with --sp 2 in bfloat16, two of them in float32 and with
#           --sp 4 (2 heads over 4 ranks: the gathered-keys path)
#   equal   Wan2.1 1.3B and 14B, random weights, 81x480x832, bfloat16: the SP=2 and SP=4
#           outputs equal SP=1 within rel_l2 2e-3 (after test_cuda_shard_invariance: a
#           rank's kernels give the whole sequence's numbers for its rows and heads)
#   time    Wan2.1 14B at 81x720x1280: forward time at SP=1, 2, 4 (1 warmup, 2 timed), the
#           speedups (goal: SP=2 >= 1.9x, SP=4 >= 3.5x) and the communication share
# A stage that would not fit in SP_CHECK_BUDGET_S (default 540 s, the device tool's
# command limit less margin) is skipped with a note: run it in a second call on the warm
# machine. Every command runs under a timeout inside that budget.
# Output: $OUT/sp-check.log (every step, timed) and $OUT/sp-check.json (the summary);
# without $OUT, build-gpu/sp-check/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-$PWD/build-gpu/sp-check}
mkdir -p "$out"
log=$out/sp-check.log
: >"$log"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
results=$work/results.tsv  # stage, step, status, seconds, detail
: >"$results"
budget=${SP_CHECK_BUDGET_S:-540}
stages=("$@")
[[ ${#stages[@]} -gt 0 ]] || stages=(build nccl parity equal time)
export PATH=/usr/local/cuda/bin:$PATH
# NVLink multicast stays off on these machines (KINDS.md); a hang ends in 2 minutes.
export NCCL_NVLS_ENABLE=0 NCCL_DEBUG=${NCCL_DEBUG:-WARN} FASTDIT_NCCL_TIMEOUT_S=${FASTDIT_NCCL_TIMEOUT_S:-120}
fastdit=build-gpu/fastdit
cases=tests/fixtures/wan
configs=tests/fixtures/wan/keys
gpus=$(nvidia-smi -L 2>/dev/null | wc -l || true)

say() { echo "$*" | tee -a "$log"; }
left() { echo $((budget - SECONDS)); }

# step STAGE NAME COMMAND...: runs the command under the remaining budget, logs its output
# and how long it took; a failing step is recorded and the script goes on.
step() {
  local stage=$1 name=$2 start=$SECONDS rc=0
  shift 2
  say "== $stage/$name: $*"
  if (($(left) < 20)); then
    say "== $stage/$name: skipped (budget)"
    printf '%s\t%s\tskipped\t0\t\n' "$stage" "$name" >>"$results"
    return 0
  fi
  timeout -k 10 "$(left)" "$@" 2>&1 | tee "$work/last.out" | sed -u 's/^/   /' | tee -a "$log" || rc=$?
  local took=$((SECONDS - start)) detail
  detail=$(grep -E "^(PASS|FAIL)|^median|^sequence parallel|^error|^\[  (PASSED|FAILED|SKIPPED) " "$work/last.out" |
    head -3 | tr '\n\t' '  ' || true)
  say "== $stage/$name: $([[ $rc -eq 0 ]] && echo ok || echo "FAILED (exit $rc)") in ${took} s  $detail"
  printf '%s\t%s\t%s\t%s\t%s\n' "$stage" "$name" "$rc" "$took" "$detail" >>"$results"
}

# A stage starts only when its usual time still fits.
fits() {
  local stage=$1 seconds=$2
  if (($(left) < seconds)); then
    say "== $stage: skipped, needs about $seconds s and $(left) s are left; run it again on its own"
    printf '%s\t-\tskipped\t0\tbudget\n' "$stage" >>"$results"
    return 1
  fi
}

source scripts/device-deps.sh

stage_build() {
  # NCCL from the toolkit, else PyTorch's wheel.
  if [[ ! -e /usr/local/cuda/include/nccl.h && -z ${NCCL_ROOT:-} ]]; then
    NCCL_ROOT=$(python3 -c 'import nvidia.nccl as n; print(list(n.__path__)[0])' 2>/dev/null || true)
    export NCCL_ROOT
    say "NCCL_ROOT=${NCCL_ROOT:-none}"
  fi
  local generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  step build configure cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release
  grep -q "fastdit: NCCL /" "$log" || say "== build: NCCL was not found; --sp on cuda will refuse to run"
  step build fastdit cmake --build build-gpu -j"$(nproc)" --target fastdit_cli test_nccl_communicator test_cuda_shard_invariance
}

# One process per test, as CTest runs them: rank 0 lives in the test process, and a process
# that has initialised CUDA cannot fork ranks that use it.
stage_nccl() {
  local test
  for test in $(build-gpu/tests/test_nccl_communicator --gtest_list_tests | awk '/^[^ ]/ { s = $1 } /^  / { print s $1 }'); do
    step nccl "$test" build-gpu/tests/test_nccl_communicator --gtest_filter="$test"
  done
}

stage_parity() {
  for name in t2v t2v_batch2_sharded i2v flf2v ti2v_per_token t2v_original_layout; do
    step parity "$name-sp2-bf16" "$fastdit" parity "$cases/$name" --device cuda --dtype bfloat16 --sp 2
  done
  for name in t2v ti2v_per_token; do
    step parity "$name-sp2-fp32" "$fastdit" parity "$cases/$name" --device cuda --dtype float32 --sp 2
    ((gpus >= 4)) && step parity "$name-sp4-bf16" "$fastdit" parity "$cases/$name" --device cuda --dtype bfloat16 --sp 4
  done
  # The same ranks started by the usual launchers instead of --sp: mpirun (Open MPI or a
  # Hydra-based MPICH) and torchrun, each rank reading its rank and world from their variables.
  if command -v mpirun >/dev/null; then
    local mpi=(mpirun -np 2)
    if mpirun --version 2>&1 | grep -q "Open MPI"; then
      mpi+=(--allow-run-as-root --oversubscribe -x NCCL_NVLS_ENABLE -x FASTDIT_NCCL_TIMEOUT_S -x LD_LIBRARY_PATH)
    else
      mpi+=(-genv NCCL_NVLS_ENABLE 0)
    fi
    say "mpirun: $(mpirun --version 2>&1 | head -1)"
    step parity "t2v-mpirun2-bf16" "${mpi[@]}" "$fastdit" parity "$cases/t2v" --device cuda --dtype bfloat16
  else
    say "== parity: no mpirun on this machine"
  fi
  if command -v torchrun >/dev/null; then
    step parity "t2v-torchrun2-bf16" torchrun --nproc-per-node 2 --no-python "$fastdit" parity "$cases/t2v" \
      --device cuda --dtype bfloat16
  fi
  return 0
}

# rel_l2 printed by `run --compare` in the step just run.
last_rel_l2() { sed -n 's/.*rel_l2=\([^ ]*\).*/\1/p' "$work/last.out" | head -1; }

stage_equal() {
  # Why the bound can be this tight: a rank's kernels give bit-for-bit the whole sequence's
  # numbers for its rows and heads (GEMM algorithm per n, k; per-head attention; per-row
  # norms and rotation), so SP only changes what the math itself splits.
  step equal shard-invariance build-gpu/tests/test_cuda_shard_invariance
  for model in 1.3B 14B; do
    local config=$configs/Wan2.1-T2V-$model.config.json reference=$work/wan-$model-sp1.safetensors
    local run=("$fastdit" run "$config" --random-weights --seed 0 --example 81,480,832 --device cuda --dtype bfloat16)
    step equal "$model-sp1" "${run[@]}" --output "$reference"
    for sp in 2 4; do
      ((sp <= gpus)) || continue
      step equal "$model-sp$sp" "${run[@]}" --sp $sp --compare "$reference" --max-rel-l2 2e-3
    done
  done
}

stage_time() {
  for sp in 1 2 4; do
    ((sp <= gpus)) || continue
    step time "14B-720p-sp$sp" "$fastdit" bench --config "$configs/Wan2.1-T2V-14B.config.json" --random-weights \
      --frames 81 --height 720 --width 1280 --warmup 1 --iters 2 --device cuda --dtype bfloat16 --sp $sp \
      --json "$work/time-sp$sp.json"
  done
  # SP_CHECK_NCCL_CHANNELS=N: SP=2 once more with NCCL held to at least N channels, to see
  # whether the all-to-all is bandwidth-bound by NCCL's own channel choice.
  if [[ -n ${SP_CHECK_NCCL_CHANNELS:-} ]]; then
    step time "14B-720p-sp2-channels$SP_CHECK_NCCL_CHANNELS" env NCCL_MIN_NCHANNELS="$SP_CHECK_NCCL_CHANNELS" \
      NCCL_MIN_P2P_NCHANNELS="$SP_CHECK_NCCL_CHANNELS" "$fastdit" bench --config "$configs/Wan2.1-T2V-14B.config.json" \
      --random-weights --frames 81 --height 720 --width 1280 --warmup 1 --iters 2 --device cuda --dtype bfloat16 --sp 2 \
      --json "$work/time-sp2-channels.json"
  fi
}

say "sp-check: stages ${stages[*]}; $gpus GPU(s); budget $budget s; $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader 2>&1 | tee -a "$log" || true
nvidia-smi topo -m 2>&1 | tee -a "$log" || true
git log -1 --format='commit %h %s' 2>/dev/null | tee -a "$log" || true
declare -A usual=([build]=120 [nccl]=60 [parity]=120 [equal]=150 [time]=150)
[[ -x $fastdit ]] || usual[build]=300
for stage in "${stages[@]}"; do
  [[ -n ${usual[$stage]:-} ]] || { say "unknown stage '$stage' (build, nccl, parity, equal, time)"; exit 2; }
  stage_start=$SECONDS
  if fits "$stage" "${usual[$stage]}"; then
    "stage_$stage"
    say "== $stage: $((SECONDS - stage_start)) s"
  fi
done

# The summary: every step, the equality bounds, and the timings with speedups.
python3 - "$results" "$work" "$out/sp-check.json" <<'PY' | tee -a "$log"
import json, os, re, sys
results, work, target = sys.argv[1:]
steps = []
for line in open(results):
    stage, name, status, seconds, detail = (line.rstrip("\n").split("\t") + [""] * 5)[:5]
    steps.append({"stage": stage, "step": name, "status": "ok" if status == "0" else status if status == "skipped" else f"exit {status}",
                  "seconds": int(seconds or 0), "detail": detail.strip()})
timing = {}
for sp in (1, 2, 4):
    path = os.path.join(work, f"time-sp{sp}.json")
    if os.path.exists(path):
        record = json.load(open(path))
        timing[sp] = {"median_ms": record["median_ms"], "times_ms": record["times_ms"],
                      "sequence_parallel": record.get("sequence_parallel"), "peak_memory_bytes": record["peak_memory_bytes"]}
goals = {2: 1.9, 4: 3.5}
for sp, entry in timing.items():
    if 1 in timing and sp != 1:
        entry["speedup"] = timing[1]["median_ms"] / entry["median_ms"]
        entry["speedup_goal"] = goals[sp]
        entry["meets_goal"] = entry["speedup"] >= goals[sp]
for s in steps:  # run --compare and parity lines: PASS/FAIL rel_l2=... max_abs=... [bound=...]
    for key in ("rel_l2", "max_abs", "bound"):
        match = re.search(key + r"=([-+0-9.eEnaif]+)", s["detail"])
        if match:
            s[key] = float(match.group(1))
failed = [s for s in steps if s["status"] not in ("ok", "skipped")]
summary = {"steps": steps, "timing_14b_720p": timing, "failed_steps": len(failed)}
json.dump(summary, open(target, "w"), indent=2)
for s in steps:
    print(f"{s['stage']:7} {s['step']:32} {s['status']:9} {s['seconds']:4d} s  {s['detail']}")
for sp, entry in sorted(timing.items()):
    share = (entry.get("sequence_parallel") or {}).get("comm_share")
    print(f"time    SP={sp}: median {entry['median_ms']:.0f} ms" +
          (f", speedup {entry['speedup']:.2f}x (goal {entry['speedup_goal']}x)" if "speedup" in entry else "") +
          (f", communication {100 * share:.1f}%" if share is not None else ""))
print(f"{len(failed)} failed step(s); summary {target}")
PY
awk -F'\t' '$3 != "0" && $3 != "skipped" { bad = 1 } END { exit bad }' "$results"
