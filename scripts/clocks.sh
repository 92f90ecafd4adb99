# Sourced by the GPU scripts (gpu-bench.sh, fp8-profile.sh).
# clocked <name> <command...>: runs the command while nvidia-smi samples the SM clock, power
# and temperature every 100 ms into $logs/clocks-<name>.csv, then prints their medians over
# the samples taken under load (utilization >= 90 %): a sustained forward runs at the clock
# the power limit allows, not the boost clock a short kernel benchmark sees. Returns the
# command's status.
clocked() {
  local name=$1 sampler=
  shift
  if command -v nvidia-smi >/dev/null; then
    local reasons=clocks_event_reasons.active  # the older drivers' name: clocks_throttle_reasons.active
    nvidia-smi --query-gpu=$reasons --format=csv >/dev/null 2>&1 || reasons=clocks_throttle_reasons.active
    nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu,$reasons \
      --format=csv,noheader,nounits -lms 100 >"$logs/clocks-$name.csv" 2>/dev/null &
    sampler=$!
  fi
  "$@"
  local status=$?
  if [[ -n $sampler ]]; then
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null
    python3 - "$logs/clocks-$name.csv" "$name" <<'PY'
import statistics, sys
rows = [[f.strip() for f in line.split(",")] for line in open(sys.argv[1]) if line.count(",") >= 6]
busy = [r for r in rows if r[5].isdigit() and int(r[5]) >= 90]
if busy:
    med = lambda i: statistics.median(float(r[i]) for r in busy)
    reasons = sorted({r[6] for r in busy})
    print(f"clocks {sys.argv[2]}: {len(busy)} busy samples of {len(rows)}, median SM {med(1):.0f} MHz, "
          f"memory {med(2):.0f} MHz, power {med(3):.0f} W, {med(4):.0f} C, throttle reasons {' '.join(reasons)}")
PY
  fi
  return $status
}
