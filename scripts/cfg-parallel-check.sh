#!/usr/bin/env bash
# CFG-parallel (generate --cfg-parallel [--sp N]) checks on a machine with 2, 4 or 8 GPUs.
#   scripts/cfg-parallel-check.sh [build] [equal] [time1] [time2] [time4] [time8]   (no argument: all
#   that the GPU count allows)
#   build   build-gpu/fastdit with CUDA and NCCL (scripts/sp-check.sh build)
#   equal   Wan2.1 1.3B, random weights, 81x480x832, bfloat16, 4 steps of CFG: --cfg-parallel
#           equals one GPU's --cfg-batching sequential loop bit for bit, and (4 GPUs)
#           --cfg-parallel --sp 2 equals --sp 2 bit for bit
#   timeN   Wan2.1 14B at 81x720x1280, bfloat16, CFG (guidance 5), CFG_CHECK_STEPS steps
#           (default 50) on N GPUs: time1 one GPU (batched CFG), time2 --cfg-parallel,
#           time4 --cfg-parallel --sp 2 and --sp 4, time8 --cfg-parallel --sp 4 and --sp 8.
#           Each prints the seconds per step and the communication share per step.
# One 14B step with CFG takes about 21 s on one H200 (two 10.3 s forwards) and about 10.5 s
# CFG-parallel on 2, so 50 steps do not fit in the device tool's 600 s per command on 1 or 2
# GPUs: run time1 and time2 with CFG_CHECK_STEPS=20 (the speedups compare median seconds
# per step; 50 steps take 50 x that; pass time1's as CFG_CHECK_BASELINE_S_PER_STEP to a
# later call), time4 and time8 with the full 50. Every command
# runs under a timeout inside CFG_CHECK_BUDGET_S (default 540 s).
# Output: $OUT/cfg-parallel-check.log and $OUT/cfg-parallel-check.json (per run: GPUs, flags,
# s/step, communication ms/step and share, speedup over time1's s/step when it ran in
# the same call, or CFG_CHECK_BASELINE_S_PER_STEP); without $OUT, build-gpu/cfg-parallel-check/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-$PWD/build-gpu/cfg-parallel-check}
mkdir -p "$out"
log=$out/cfg-parallel-check.log
: >"$log"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
runs=$work/runs.tsv  # name, gpus, flags, rc, seconds, stdout file
: >"$runs"
budget=${CFG_CHECK_BUDGET_S:-540}
steps=${CFG_CHECK_STEPS:-50}
export PATH=/usr/local/cuda/bin:$PATH
export NCCL_NVLS_ENABLE=0 NCCL_DEBUG=${NCCL_DEBUG:-WARN} FASTDIT_NCCL_TIMEOUT_S=${FASTDIT_NCCL_TIMEOUT_S:-120}
fastdit=build-gpu/fastdit
configs=tests/fixtures/wan/keys
gpus=$(nvidia-smi -L 2>/dev/null | wc -l || true)
stages=("$@")
if [[ ${#stages[@]} -eq 0 ]]; then
  stages=(build equal time1)
  for n in 2 4 8; do ((gpus >= n)) && stages+=("time$n"); done
fi
say() { echo "$*" | tee -a "$log"; }
left() { echo $((budget - SECONDS)); }

# gen NAME GPUS ARGS...: one generate under the remaining budget; its stdout is kept.
gen() {
  local name=$1 n=$2 start=$SECONDS rc=0
  shift 2
  if ((n > gpus)); then
    say "== $name: skipped, needs $n GPUs ($gpus here)"
    return 0
  fi
  if (($(left) < 30)); then
    say "== $name: skipped (budget)"
    return 0
  fi
  say "== $name ($n GPU(s)): $fastdit generate $*"
  timeout -k 10 "$(left)" "$fastdit" generate "$@" --device cuda --dtype bfloat16 \
    --output "$work/$name.safetensors" >"$work/$name.out" 2>"$work/$name.err" || rc=$?
  sed 's/^/   /' "$work/$name.out" | tee -a "$log"
  tail -3 "$work/$name.err" | sed 's/^/   /' | tee -a "$log"
  say "== $name: $([[ $rc -eq 0 ]] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - start)) s"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$n" "$*" "$rc" "$((SECONDS - start))" >>"$runs"
}

# identical NAME A B: the latents of two runs are the same bytes.
identical() {
  local verdict
  verdict=$(python3 - "$work/$2.safetensors" "$work/$3.safetensors" <<'PY' 2>&1 || true
import json, struct, sys
def latents(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    begin, end = json.loads(data[8:8 + n])["latents"]["data_offsets"]
    return data[8 + n + begin:8 + n + end]
print("bit-identical" if latents(sys.argv[1]) == latents(sys.argv[2]) else "DIFFERENT")
PY
)
  say "== $1: $2 vs $3: $verdict"
  printf '%s\t-\t%s vs %s\t%s\t0\n' "$1" "$2" "$3" "$([[ $verdict == bit-identical ]] && echo 0 || echo 1)" >>"$runs"
}

small=(--config "$configs/Wan2.1-T2V-1.3B.config.json" --random-weights --frames 81 --height 480 --width 832
       --steps 4 --guidance 5)
big=(--config "$configs/Wan2.1-T2V-14B.config.json" --random-weights --frames 81 --height 720 --width 1280
     --steps "$steps" --guidance 5)

for stage in "${stages[@]}"; do
  case $stage in
    build) bash scripts/sp-check.sh build | tee -a "$log" ;;
    equal)
      gen eq-1gpu-seq 1 "${small[@]}" --cfg-batching sequential
      gen eq-cfg2 2 "${small[@]}" --cfg-parallel
      [[ -f $work/eq-cfg2.safetensors ]] && identical equal-cfg2 eq-1gpu-seq eq-cfg2
      if ((gpus >= 4)); then
        gen eq-sp2-seq 2 "${small[@]}" --cfg-batching sequential --sp 2
        gen eq-cfg2-sp2 4 "${small[@]}" --cfg-parallel --sp 2
        identical equal-cfg2-sp2 eq-sp2-seq eq-cfg2-sp2
      fi
      ;;
    time1) gen time-1gpu 1 "${big[@]}" ;;
    time2) gen time-2gpu-cfg 2 "${big[@]}" --cfg-parallel ;;
    time4)
      gen time-4gpu-cfg-sp2 4 "${big[@]}" --cfg-parallel --sp 2
      gen time-4gpu-sp4 4 "${big[@]}" --sp 4
      ;;
    time8)
      gen time-8gpu-cfg-sp4 8 "${big[@]}" --cfg-parallel --sp 4
      gen time-8gpu-sp8 8 "${big[@]}" --sp 8
      ;;
    *) say "unknown stage '$stage' (build, equal, time1, time2, time4, time8)"; exit 2 ;;
  esac
done

# The summary: s/step (median), the communication per step and its share, speedups.
python3 - "$runs" "$work" "$out/cfg-parallel-check.json" "${CFG_CHECK_BASELINE_S_PER_STEP:-}" <<'PY' | tee -a "$log"
import json, os, re, sys
runs, work, target, baseline = sys.argv[1:]
entries = []
for line in open(runs):
    name, gpus, flags, rc, seconds = (line.rstrip("\n").split("\t") + [""] * 5)[:5]
    e = {"run": name, "gpus": gpus, "flags": flags, "status": "ok" if rc == "0" else f"exit {rc}", "seconds": int(seconds or 0)}
    path = os.path.join(work, name + ".out")
    text = open(path).read() if os.path.exists(path) else ""
    m = re.search(r"(\d+) steps in ([0-9.]+) s: mean ([0-9.]+) s/step, median ([0-9.]+) s/step", text)
    if m:
        e.update(steps=int(m.group(1)), total_s=float(m.group(2)), mean_s_per_step=float(m.group(3)),
                 median_s_per_step=float(m.group(4)))
    m = re.search(r"^communication per step \(rank 0\): (.*)$", text, re.M)
    if m:
        e["communication"] = m.group(1)
        share = re.search(r"total ([0-9.]+) ms = ([0-9.]+)% of the step", m.group(1))
        if share:
            e["comm_ms_per_step"], e["comm_share"] = float(share.group(1)), float(share.group(2)) / 100
    entries.append(e)
base = next((e["median_s_per_step"] for e in entries if e["run"] == "time-1gpu" and "median_s_per_step" in e), None)
if base is None and baseline:
    base = float(baseline)
goals = {"2": 1.9, "8": 7.0}
for e in entries:
    if base and "median_s_per_step" in e and e["run"].startswith("time-") and e["run"] != "time-1gpu":
        e["speedup"] = base / e["median_s_per_step"]
        if e["gpus"] in goals and "cfg" in e["run"]:
            e["speedup_goal"] = goals[e["gpus"]]
json.dump({"runs": entries, "baseline_s_per_step": base}, open(target, "w"), indent=2)
for e in entries:
    line = f"{e['run']:20} {e['gpus']:>2} GPU(s) {e['status']:8}"
    if "median_s_per_step" in e:
        line += f" {e['median_s_per_step']:.3f} s/step (median of {e['steps']})"
    if "speedup" in e:
        line += f", {e['speedup']:.2f}x" + (f" (goal {e['speedup_goal']}x)" if "speedup_goal" in e else "")
    if "comm_share" in e:
        line += f", communication {e['comm_ms_per_step']:.1f} ms/step = {100 * e['comm_share']:.1f}%"
    if e["flags"].count(" vs "):
        line += f" {e['flags']}"
    print(line)
print(f"summary {target}")
PY
awk -F'\t' '$4 != "0" { bad = 1 } END { exit bad }' "$runs"
