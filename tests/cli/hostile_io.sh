#!/usr/bin/env bash
# Hostile paths through every command that reads or writes files (DESIGN.md, "Errors"):
#   outputs: a FIFO, device, folder or input of the command is refused (exit 2, an error
#     naming the flag and the file) and left as it was; a symbolic link is followed and stays
#     a link; the permission bits of a replaced file are kept; no *.tmp.<pid> is left, not
#     even by a SIGTERM or SIGINT during the write (which then ends the process);
#   inputs: a FIFO, device or folder where a file is expected fails at once with
#     "<path>: is a <kind>, not a regular file" (never blocks); trace lines and depth are
#     bounded; an empty or stats-less trace matches nothing;
#   the perf gate: a missing baseline store, an empty report, nonsense metrics are errors.
# Every command runs under `timeout 20`: a hang is a failure.
set -u
fastdit=$1
root=${FASTDIT_SOURCE_DIR:-.}
source "$(dirname "$0")/support.bash"
export OMP_NUM_THREADS=1

# probe <code> <name> <text> <command...>: the command ends with <code> within 20 s, and
# its output holds <text> (fixed string; empty: not checked).
probe() {
  local code=$1 name=$2 text=$3
  shift 3
  timeout 20 "$@" >"$tmp/out" 2>&1
  local got=$?
  ((got == 124)) && fail "$name: still running after 20 s (hang)"
  ((got == code)) || fail "$name: exit $got, expected $code: $(tail -c 2000 "$tmp/out")"
  [[ -z $text ]] || grep -qF -- "$text" "$tmp/out" || fail "$name: no '$text' in: $(tail -c 2000 "$tmp/out")"
}
no_temporaries() {
  local left
  left=$(find "$tmp" -name '*.tmp.[0-9]*' | head -5)
  [[ -z $left ]] || fail "$1: temporary files left: $left"
}
mode() { stat -c %a "$1"; }

# A private copy of the tiny Wan case: nothing under tests/fixtures is ever a target.
case_dir=$tmp/case
cp -r "$root/tests/fixtures/wan/t2v" "$case_dir"
weights=$case_dir/transformer/diffusion_pytorch_model.safetensors
inputs=$case_dir/inputs.safetensors
run=("$fastdit" run "$case_dir" --inputs "$inputs")
gen=("$fastdit" generate --config "$case_dir/transformer/config.json" --random-weights --height 32 --width 32
     --frames 5 --steps 1)
# The tiny CPU benchmark, its definition copied too (a target below).
python3 - "$root/tests/fixtures/perf/tiny-wan-cpu-forward.json" "$tmp/definition.json" "$case_dir" <<'PY'
import json, sys
definition = json.load(open(sys.argv[1]))
definition["model"]["config"] = sys.argv[3] + "/transformer/config.json"
definition["warmups"], definition["iterations"], definition["components"] = 0, 1, False
open(sys.argv[2], "w").write(json.dumps(definition))
PY
bench=("$fastdit" bench --config "$tmp/definition.json")
report=("$fastdit" perf report --baselines "$root/tests/fixtures/perf/baselines")
before_weights=$(md5sum <"$weights")
before_inputs=$(md5sum <"$inputs")

# ---- outputs that are not regular files ----------------------------------------------
mkfifo "$tmp/fifo"
mkdir "$tmp/folder"
probe 2 "run --output FIFO" "error: --output $tmp/fifo: is a FIFO, not a regular file" "${run[@]}" --output "$tmp/fifo"
probe 2 "generate --output FIFO" "error: --output $tmp/fifo: is a FIFO, not a regular file" "${gen[@]}" --output "$tmp/fifo"
probe 2 "bench --json FIFO" "error: --json $tmp/fifo: is a FIFO, not a regular file" "${bench[@]}" --json "$tmp/fifo"
probe 2 "perf report --output FIFO" "error: --output $tmp/fifo: is a FIFO, not a regular file" \
  "${report[@]}" --output "$tmp/fifo"
probe 2 "trace output FIFO" "error: FASTDIT_TRACE_OUTPUT $tmp/fifo: is a FIFO, not a regular file" \
  env FASTDIT_TRACE_ACTIVATIONS=1 FASTDIT_TRACE_OUTPUT="$tmp/fifo" "${run[@]}" --output "$tmp/traced.safetensors"
[[ -p $tmp/fifo ]] || fail "the FIFO target is no longer a FIFO"
probe 2 "run --output folder" "error: --output $tmp/folder: is a directory, not a regular file" \
  "${run[@]}" --output "$tmp/folder"
probe 2 "generate --output folder" "error: --output $tmp/folder: is a directory" "${gen[@]}" --output "$tmp/folder"
[[ -d $tmp/folder && -z $(ls -A "$tmp/folder") ]] || fail "the folder target changed"
# A device node: a scratch one made with mknod (root only), else /dev/null itself, which a
# user cannot replace anyway. The real /dev/null must stay a character device either way.
if [[ $(id -u) -eq 0 ]] && mknod "$tmp/null" c 1 3 2>/dev/null; then
  device=$tmp/null
else
  echo "not root or no mknod here: the device cases use /dev/null itself (FIFOs and links are tested all the same)"
  device=/dev/null
fi
probe 2 "run --output device" "error: --output $device: is a character device, not a regular file" \
  "${run[@]}" --output "$device"
probe 2 "generate --output device" "error: --output $device: is a character device" "${gen[@]}" --output "$device"
probe 2 "bench --json device" "error: --json $device: is a character device" "${bench[@]}" --json "$device"
probe 2 "perf report --output device" "error: --output $device: is a character device" \
  "${report[@]}" --output "$device"
[[ -c $device ]] || fail "$device is no longer a character device"
[[ -c /dev/null ]] || fail "/dev/null is no longer a character device"
no_temporaries "special outputs"

# ---- an output that is an input of the command -----------------------------------------
probe 2 "run --output = checkpoint" "is an input of this command" "${run[@]}" --output "$weights"
probe 2 "run --output = --inputs" "error: --output $inputs: is an input of this command" "${run[@]}" --output "$inputs"
ln -s "$weights" "$tmp/weights_link.safetensors"
probe 2 "run --output = link to checkpoint" "is an input of this command" \
  "${run[@]}" --output "$tmp/weights_link.safetensors"
ln "$weights" "$tmp/weights_hardlink.safetensors"
probe 2 "run --output = hard link to checkpoint" "is an input of this command" \
  "${run[@]}" --output "$tmp/weights_hardlink.safetensors"
probe 2 "trace output = checkpoint" "error: FASTDIT_TRACE_OUTPUT $weights: is an input of this command" \
  env FASTDIT_TRACE_ACTIVATIONS=1 FASTDIT_TRACE_OUTPUT="$weights" "${run[@]}" --output "$tmp/traced.safetensors"
probe 2 "trace output = --inputs" "error: FASTDIT_TRACE_OUTPUT $inputs: is an input of this command" \
  env FASTDIT_TRACE_ACTIVATIONS=1 FASTDIT_TRACE_OUTPUT="$inputs" "${run[@]}" --output "$tmp/traced.safetensors"
probe 2 "generate --output = config" "is an input of this command" \
  "${gen[@]}" --output "$case_dir/transformer/config.json"
probe 2 "bench --json = definition" "is an input of this command" \
  "${bench[@]}" --json "$tmp/definition.json"
[[ $(md5sum <"$weights") == "$before_weights" && $(md5sum <"$inputs") == "$before_inputs" ]] \
  || fail "an input was overwritten"
no_temporaries "outputs that are inputs"

# ---- links and permissions ---------------------------------------------------------------
probe 0 "run --output new file" "" "${run[@]}" --output "$tmp/out.safetensors"
cp "$tmp/out.safetensors" "$tmp/private.safetensors" && chmod 600 "$tmp/private.safetensors"
echo stale >"$tmp/private.safetensors"
probe 0 "run --output 0600 file" "" "${run[@]}" --output "$tmp/private.safetensors"
[[ $(mode "$tmp/private.safetensors") == 600 ]] || fail "0600 output became $(mode "$tmp/private.safetensors")"
cmp -s "$tmp/private.safetensors" "$tmp/out.safetensors" || fail "the 0600 output was not rewritten"
mkdir "$tmp/elsewhere" && echo stale >"$tmp/elsewhere/real.safetensors" && chmod 640 "$tmp/elsewhere/real.safetensors"
ln -s elsewhere/real.safetensors "$tmp/link.safetensors"
probe 0 "run --output symlink" "" "${run[@]}" --output "$tmp/link.safetensors"
[[ -L $tmp/link.safetensors ]] || fail "the symbolic link was replaced by a file"
cmp -s "$tmp/elsewhere/real.safetensors" "$tmp/out.safetensors" || fail "the link's target was not rewritten"
[[ $(mode "$tmp/elsewhere/real.safetensors") == 640 ]] || fail "the link's target lost its 0640 mode"
ln -s elsewhere/new.safetensors "$tmp/dangling.safetensors"
probe 0 "run --output dangling symlink" "" "${run[@]}" --output "$tmp/dangling.safetensors"
[[ -L $tmp/dangling.safetensors && -f $tmp/elsewhere/new.safetensors ]] || fail "a dangling link's target was not made"
echo stale >"$tmp/report.html" && chmod 600 "$tmp/report.html"
ln -s report.html "$tmp/report_link.html"
probe 0 "perf report --output symlink" "" "${report[@]}" --output "$tmp/report_link.html"
[[ -L $tmp/report_link.html && $(mode "$tmp/report.html") == 600 ]] && grep -q "<svg" "$tmp/report.html" \
  || fail "perf report through a link: $(ls -l "$tmp"/report*)"
no_temporaries "links and permissions"

# ---- a signal during the write -------------------------------------------------------------
# signal_during_write <signal> <name> <target> <command...>: the write is held for 10 s
# (FASTDIT_TEST_WRITE_DELAY_MS, a test-only hook); the signal comes once its temporary file
# exists. The process must end by that signal and leave neither the temporary nor the target.
signal_during_write() {
  local signal=$1 name=$2 target=$3
  shift 3
  # SIGINT reset to its default: a background job of a script starts with it ignored.
  FASTDIT_TEST_WRITE_DELAY_MS=10000 python3 -c \
    'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
    "$@" >"$tmp/out" 2>&1 &
  local pid=$! waited=0
  until compgen -G "$target.tmp.*" >/dev/null; do
    ((waited++ < 200)) || { kill -KILL "$pid"; fail "$name: no temporary file of $target within 20 s"; }
    sleep 0.1
  done
  kill -"$signal" "$pid"
  waited=0
  while kill -0 "$pid" 2>/dev/null; do
    ((waited++ < 200)) || { kill -KILL "$pid"; fail "$name: still running 20 s after SIG$signal"; }
    sleep 0.1
  done
  wait "$pid"
  local rc=$? expected=$((128 + $(kill -l "$signal")))
  ((rc == expected)) || fail "$name: exit $rc, expected $expected (ended by SIG$signal): $(tail -c 1000 "$tmp/out")"
  ! compgen -G "$target.tmp.*" >/dev/null || fail "$name: left $(compgen -G "$target.tmp.*")"
  [[ ! -e $target ]] || fail "$name: wrote $target although interrupted"
}
signal_during_write TERM "SIGTERM in run" "$tmp/sig_run.safetensors" "${run[@]}" --output "$tmp/sig_run.safetensors"
signal_during_write INT "SIGINT in generate" "$tmp/sig_gen.safetensors" "${gen[@]}" --output "$tmp/sig_gen.safetensors"
signal_during_write TERM "SIGTERM in perf report" "$tmp/sig_report.html" "${report[@]}" --output "$tmp/sig_report.html"
no_temporaries "signals"

# ---- special files as inputs ----------------------------------------------------------------
make_model() {  # make_model <dir>: config and weights copied, either to be replaced
  mkdir -p "$1" && cp "$case_dir/transformer/config.json" "$weights" "$1/"
}
make_model "$tmp/fifo_config" && rm "$tmp/fifo_config/config.json" && mkfifo "$tmp/fifo_config/config.json"
probe 2 "FIFO config.json" "error: $tmp/fifo_config/config.json: is a FIFO, not a regular file" \
  "$fastdit" run "$tmp/fifo_config" --inputs "$inputs" --output "$tmp/x.safetensors"
make_model "$tmp/dir_config" && rm "$tmp/dir_config/config.json" && mkdir "$tmp/dir_config/config.json"
probe 2 "folder config.json" "error: $tmp/dir_config/config.json: is a directory, not a regular file" \
  "$fastdit" run "$tmp/dir_config" --inputs "$inputs" --output "$tmp/x.safetensors"
probe 2 "FIFO config.json, random weights" "is a FIFO, not a regular file" \
  "$fastdit" run "$tmp/fifo_config/config.json" --random-weights --example 1,16,16 --output "$tmp/x.safetensors"
fifo_weights=$tmp/fifo_weights/diffusion_pytorch_model.safetensors
make_model "$tmp/fifo_weights" && rm "$fifo_weights" && mkfifo "$fifo_weights"
probe 2 "FIFO weights" "error: $fifo_weights: is a FIFO, not a regular file" \
  "$fastdit" run "$tmp/fifo_weights" --inputs "$inputs" --output "$tmp/x.safetensors"
zero_weights=$tmp/zero_weights/diffusion_pytorch_model.safetensors
make_model "$tmp/zero_weights" && rm "$zero_weights" && ln -s /dev/zero "$zero_weights"
probe 2 "device weights" "error: $zero_weights: is a character device, not a regular file" \
  "$fastdit" run "$tmp/zero_weights" --inputs "$inputs" --output "$tmp/x.safetensors"
probe 2 "FIFO --inputs" "error: $tmp/fifo: is a FIFO, not a regular file" \
  "$fastdit" run "$case_dir" --inputs "$tmp/fifo" --output "$tmp/x.safetensors"
probe 2 "FIFO --args" "error: $tmp/fifo: is a FIFO, not a regular file" \
  "${run[@]}" --args "$tmp/fifo" --output "$tmp/x.safetensors"
probe 2 "FIFO --compare" "error: $tmp/fifo: is a FIFO, not a regular file" "${run[@]}" --compare "$tmp/fifo"
probe 2 "FIFO --prompt-embeds" "error: $tmp/fifo: is a FIFO, not a regular file" \
  "$fastdit" generate --model "$case_dir" --prompt-embeds "$tmp/fifo" --output "$tmp/x.safetensors"
probe 2 "FIFO bench definition" "error: $tmp/fifo: is a FIFO, not a regular file" "$fastdit" bench --config "$tmp/fifo"
probe 2 "FIFO perf record" "error: $tmp/fifo: is a FIFO, not a regular file" \
  "$fastdit" perf check "$tmp/fifo" --baselines "$root/tests/fixtures/perf/baselines"
probe 2 "FIFO inspect" "is a FIFO, not a regular file" "$fastdit" inspect "$tmp/fifo"
probe 2 "FIFO trace" "error: $tmp/fifo: is a FIFO, not a regular file" \
  "$fastdit" trace-diff "$tmp/fifo" "$case_dir/trace.jsonl"
probe 2 "device trace" "error: /dev/zero: is a character device, not a regular file" \
  "$fastdit" trace-diff /dev/zero "$case_dir/trace.jsonl"
probe 2 "folder trace" "error: $tmp/folder: is a directory, not a regular file" \
  "$fastdit" trace-diff "$case_dir/trace.jsonl" "$tmp/folder"
[[ -p $tmp/fifo ]] || fail "the FIFO input is no longer a FIFO"

# ---- traces that match nothing, or are too big for their reader -------------------------------
: >"$tmp/empty.jsonl"
probe 2 "empty trace" "error: $tmp/empty.jsonl: no trace records" \
  "$fastdit" trace-diff "$tmp/empty.jsonl" "$case_dir/trace.jsonl"
printf '{"module": "blocks.0", "tensor": "out", "step": 0}\n{"module": "blocks.1", "tensor": "out", "step": 0}\n' \
  >"$tmp/statless.jsonl"
probe 2 "stats-less trace" "nothing to compare" "$fastdit" trace-diff "$tmp/statless.jsonl" "$tmp/statless.jsonl"
python3 -c 'print("{\"module\": \"" + "m" * (2 << 20) + "\", \"tensor\": \"out\"}")' >"$tmp/long.jsonl"
probe 2 "trace line over 1 MiB" "error: $tmp/long.jsonl:1: line of" \
  "$fastdit" trace-diff "$tmp/long.jsonl" "$case_dir/trace.jsonl"
python3 -c 'print("{\"module\": \"m\", \"tensor\": \"t\", \"x\": " + "[" * 100000 + "]" * 100000 + "}")' \
  >"$tmp/deep.jsonl"
probe 2 "deeply nested trace" "error: $tmp/deep.jsonl:1: JSON nested deeper than" \
  "$fastdit" trace-diff "$tmp/deep.jsonl" "$case_dir/trace.jsonl"
printf '{"module": "m", "tensor": "t", "shape": ["x"], "sum": 1}\n' >"$tmp/badshape.jsonl"
probe 2 "trace with a text shape" "error: $tmp/badshape.jsonl:1: 'shape' must be" \
  "$fastdit" trace-diff "$tmp/badshape.jsonl" "$tmp/badshape.jsonl"
probe 0 "a trace matches itself" "all paired records match" \
  "$fastdit" trace-diff "$case_dir/trace.jsonl" "$case_dir/trace.jsonl"

# ---- the perf gate on bad setup and nonsense records ---------------------------------------------
records=$root/tests/fixtures/perf/records
probe 2 "perf check --baselines typo" "error: --baselines $tmp/typo: no such folder" \
  "$fastdit" perf check "$records/pass.json" --baselines "$tmp/typo"
probe 2 "perf reseed --baselines typo" "error: --baselines $tmp/typo: no such folder" \
  "$fastdit" perf reseed "$records/reseed_1.json" --baselines "$tmp/typo" --reason test
probe 2 "perf report --baselines typo" "error: --baselines $tmp/typo: no such folder" \
  "$fastdit" perf report --baselines "$tmp/typo" --output "$tmp/typo.html"
probe 2 "perf check --baselines file" "error: --baselines $inputs: is a regular file, not a folder" \
  "$fastdit" perf check "$records/pass.json" --baselines "$inputs"
[[ ! -e $tmp/typo ]] || fail "a mistyped --baselines was made"
mkdir "$tmp/empty_store"
probe 2 "perf report of no records" "error: $tmp/empty_store: no records" \
  "$fastdit" perf report --baselines "$tmp/empty_store" --output "$tmp/empty.html"
[[ ! -e $tmp/empty.html ]] || fail "perf report wrote a page of no records"
cp -r "$root/tests/fixtures/perf/baselines" "$tmp/store"
store_before=$(cat "$tmp"/store/*/*.jsonl | md5sum)
while IFS='|' read -r name edit message; do
  python3 - "$records/reseed_1.json" "$tmp/$name.json" "$edit" <<'PY'
import json, sys
record = json.load(open(sys.argv[1]))
exec(sys.argv[3], {}, {"r": record})
open(sys.argv[2], "w").write(json.dumps(record))
PY
  probe 2 "perf check $name" "$message" "$fastdit" perf check "$tmp/$name.json" --baselines "$tmp/store"
  probe 2 "perf reseed $name" "$message" \
    "$fastdit" perf reseed "$tmp/$name.json" --baselines "$tmp/store" --reason test --backup-dir "$tmp/backup"
done <<'CASES'
negative_latency|r["metrics"]["latency_s"] = -1|metric 'latency_s' is -1, not a positive finite number
zero_latency|r["metrics"]["latency_s"] = 0|metric 'latency_s' is 0, not a positive
text_latency|r["metrics"]["latency_s"] = "NaN"|metric 'latency_s' must be a number or null
missing_latency|r["metrics"]["latency_s"] = None|a successful run's record needs metrics.latency_s
negative_memory|r["metrics"]["peak_memory_mb"] = -5|metric 'peak_memory_mb' is -5, not a non-negative
negative_throughput|r["metrics"]["throughput_fps"] = -2|metric 'throughput_fps' is -2
zero_version|r["benchmark_version"] = 0|benchmark_version must be a positive integer
negative_tflops|r["metrics"]["tflops"] = -1|metric 'tflops' must be a non-negative
CASES
[[ $(cat "$tmp"/store/*/*.jsonl | md5sum) == "$store_before" ]] || fail "a rejected record changed the store"
printf '[%.0s' $(seq 1 5000) >"$tmp/deep_record.json"
probe 2 "deeply nested record" "JSON nested deeper than" "$fastdit" perf check "$tmp/deep_record.json" --baselines "$tmp/store"
no_temporaries "perf"
rm -rf "$tmp/backup"
echo "hostile I/O checks passed"
