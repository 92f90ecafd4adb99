#!/usr/bin/env bash
# Same-run speed comparison of two fastdit builds on one GPU: runs `fastdit bench ARGS` with
# binary A, then B, then A, then B (ROUNDS pairs, default 2), so clock and temperature drift
# over the run falls on both alike, and prints every median and each binary's best median.
#   scripts/bench-compare.sh OLD_FASTDIT NEW_FASTDIT LABEL BENCH_ARGS...
# Records go to $OUT (or /tmp) as bench-compare-LABEL-{a,b}-N.json.
set -uo pipefail
[[ $# -ge 4 ]] || { echo "usage: $0 OLD_FASTDIT NEW_FASTDIT LABEL BENCH_ARGS..." >&2; exit 2; }
old=$1 new=$2 label=$3
shift 3
logs=${OUT:-/tmp}
rounds=${ROUNDS:-2}
median() { sed -n 's/^median \([0-9.]*\) ms.*/\1/p' "$1" | head -1; }
declare -A best
for ((i = 1; i <= rounds; ++i)); do
  for side in a b; do
    bin=$old
    [[ $side == b ]] && bin=$new
    log=$logs/bench-compare-$label-$side-$i.log
    if ! timeout "${BENCH_COMPARE_S:-180}" "$bin" bench "$@" --json "$logs/bench-compare-$label-$side-$i.json" >"$log" 2>&1; then
      echo "$label $side round $i: FAILED ($(tail -1 "$log"))"
      continue
    fi
    m=$(median "$log")
    echo "$label $side round $i: median $m ms ($(grep -m1 "peak memory" "$log"))"
    if [[ -n $m ]] && awk -v m="$m" -v b="${best[$side]:-}" 'BEGIN { exit !(b == "" || m + 0 < b + 0) }'; then
      best[$side]=$m
    fi
  done
done
echo "$label best median: a (old) ${best[a]:-none} ms, b (new) ${best[b]:-none} ms"
