#!/usr/bin/env bash
# Sequence parallelism through the CLI on CPU processes (the socket transport): the
# launcher of --sp, torchrun-style and mpirun-style environments, rank 0 alone printing,
# and failures ending every rank with an error instead of a hang.
set -u
fastdit=$1
root=${FASTDIT_SOURCE_DIR:-.}
cases=$root/tests/fixtures/wan
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
export OMP_NUM_THREADS=1 FASTDIT_NCCL_TIMEOUT_S=20
port() { echo $((20000 + RANDOM % 12000)); }  # below the ephemeral ports the OS hands out

# --sp starts the ranks itself; rank 0 alone prints. 45 tokens: 2 and 4 ranks pad, and
# the 2 heads split over 2 ranks only (3 and 4 gather keys instead).
for sp in 2 3 4; do
  "$fastdit" parity "$cases/ti2v_per_token" --sp $sp >"$tmp/out" 2>"$tmp/err" \
    || fail "parity --sp $sp: $(cat "$tmp/out" "$tmp/err")"
  [[ $(grep -c "^PASS" "$tmp/out") -eq 1 ]] || fail "parity --sp $sp: want one PASS line: $(cat "$tmp/out")"
  grep -q "x $sp ranks" "$tmp/out" || fail "parity --sp $sp: no rank count in $(cat "$tmp/out")"
done

# run: the output of 3 ranks equals one process's.
"$fastdit" run "$cases/i2v" --inputs "$cases/i2v/inputs.safetensors" --output "$tmp/one.safetensors" 2>"$tmp/err" \
  || fail "run: $(cat "$tmp/err")"
"$fastdit" run "$cases/i2v" --inputs "$cases/i2v/inputs.safetensors" --sp 3 --output "$tmp/three.safetensors" \
  --compare "$tmp/one.safetensors" --max-rel-l2 1e-6 >"$tmp/out" 2>"$tmp/err" || fail "run --sp 3: $(cat "$tmp/out" "$tmp/err")"
[[ $(grep -c "^PASS" "$tmp/out") -eq 1 && -f "$tmp/three.safetensors" ]] || fail "run --sp 3: $(cat "$tmp/out")"
[[ $(grep -c "^forward" "$tmp/err") -eq 1 ]] || fail "run --sp 3: ranks other than 0 printed: $(cat "$tmp/err")"

# Ranks started by another launcher: torchrun's and mpirun's variables.
p=$(port)
RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$p "$fastdit" parity "$cases/t2v" >"$tmp/out1" 2>&1 &
RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$p "$fastdit" parity "$cases/t2v" >"$tmp/out0" 2>&1 \
  || fail "torchrun-style rank 0: $(cat "$tmp/out0")"
wait $! || fail "torchrun-style rank 1: $(cat "$tmp/out1")"
grep -q "^PASS" "$tmp/out0" && [[ ! -s "$tmp/out1" ]] || fail "torchrun-style output: $(cat "$tmp/out0" "$tmp/out1")"
p=$(port)
OMPI_COMM_WORLD_RANK=1 OMPI_COMM_WORLD_SIZE=2 MASTER_PORT=$p "$fastdit" parity "$cases/t2v" --sp 2 >"$tmp/out1" 2>&1 &
OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=2 MASTER_PORT=$p "$fastdit" parity "$cases/t2v" --sp 2 >"$tmp/out0" 2>&1 \
  || fail "mpirun-style rank 0: $(cat "$tmp/out0")"
wait $! || fail "mpirun-style rank 1: $(cat "$tmp/out1")"

# A rank that fails ends the others with its error; rank 0 reports it.
p=$(port)
RANK=1 WORLD_SIZE=2 MASTER_PORT=$p "$fastdit" parity "$cases/missing" >"$tmp/out1" 2>&1 &
RANK=0 WORLD_SIZE=2 MASTER_PORT=$p "$fastdit" parity "$cases/t2v" >"$tmp/out0" 2>&1; rc=$?
wait $!; rc1=$?
[[ $rc -eq 2 && $rc1 -eq 2 ]] || fail "failing rank: exits $rc, $rc1: $(cat "$tmp/out0" "$tmp/out1")"
grep -q "^error: rank 1 failed: .*missing: not a parity case directory" "$tmp/out0" || fail "rank 0 said: $(cat "$tmp/out0")"
grep -q "^error: rank 1: .*missing: not a parity case directory" "$tmp/out1" || fail "rank 1 said: $(cat "$tmp/out1")"

# A rank whose peers never come gives up after FASTDIT_NCCL_TIMEOUT_S.
start=$SECONDS
FASTDIT_NCCL_TIMEOUT_S=1 RANK=1 WORLD_SIZE=2 MASTER_PORT=$(port) "$fastdit" parity "$cases/t2v" >"$tmp/out" 2>&1; rc=$?
[[ $rc -eq 2 ]] && grep -q "could not reach rank 0" "$tmp/out" || fail "lonely rank 1: exit $rc: $(cat "$tmp/out")"
FASTDIT_NCCL_TIMEOUT_S=1 RANK=0 WORLD_SIZE=3 MASTER_PORT=$(port) "$fastdit" parity "$cases/t2v" >"$tmp/out" 2>&1; rc=$?
[[ $rc -eq 2 ]] && grep -q "only 1 of 3 ranks joined.*missing rank(s) 1, 2" "$tmp/out" || fail "lonely rank 0: $(cat "$tmp/out")"
(( SECONDS - start < 10 )) || fail "timeouts took $((SECONDS - start)) s"

# Inconsistent settings are errors.
RANK=0 WORLD_SIZE=3 "$fastdit" parity "$cases/t2v" --sp 2 >"$tmp/out" 2>&1; rc=$?
[[ $rc -eq 2 ]] && grep -q "\-\-sp 2 but the launcher started 3" "$tmp/out" || fail "sp mismatch: $(cat "$tmp/out")"
RANK=0 WORLD_SIZE=2 MASTER_PORT=$(port) "$fastdit" parity "$cases/t2v" --device cuda:1 >"$tmp/out" 2>&1; rc=$?
[[ $rc -eq 2 ]] && grep -q "give --device cuda" "$tmp/out" || fail "explicit GPU index: $(cat "$tmp/out")"
echo "sequence-parallel CLI checks passed"
