#!/usr/bin/env bash
# fastdit generate through the binary: a run on the tiny pipeline folder writes its latents
# with the sampling settings as metadata and prints progress lines; a random-weights run
# needs no files; bad input (preset, embeddings, model, settings) is `error: ...` with exit 2
# and writes nothing. Usage: generate.sh <path to fastdit>
set -uo pipefail
fastdit=$1
root=${FASTDIT_SOURCE_DIR:?}
case_dir=$root/tests/fixtures/pipeline/wan_t2v_tiny
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

embeds=(--prompt-embeds "$case_dir/prompt_embeds.safetensors"
        --negative-embeds "$case_dir/negative_prompt_embeds.safetensors")
small=(--height 48 --width 80 --frames 9 --steps 2)

# safetensors header of a written file: tensor names, shapes and metadata, via the stdlib.
header() {
  python3 - "$1" <<'PY'
import json, struct, sys
data = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
meta = header.pop("__metadata__", {})
for name, info in header.items():
    print(name, info["dtype"], info["shape"])
print(json.loads(meta["sampling"]))
PY
}

# A run from a preset, with seeded noise at a small size.
"$fastdit" generate --model "$case_dir" "${embeds[@]}" --preset wan2.1-t2v-1.3b "${small[@]}" --seed 7 \
  --output "$work/out.safetensors" >"$work/stdout" 2>"$work/stderr" || fail "generate exited $?: $(cat "$work/stderr")"
grep -q "^step 1/2  t=999" "$work/stderr" || fail "no progress line: $(cat "$work/stderr")"
grep -q "^step 2/2 " "$work/stderr" || fail "no last progress line: $(cat "$work/stderr")"
grep -q "^2 steps in .* s/step" "$work/stdout" || fail "no timing summary: $(cat "$work/stdout")"
header "$work/out.safetensors" >"$work/header" || fail "unreadable output"
grep -q "^latents F32 \[1, 4, 3, 6, 10\]$" "$work/header" || fail "wrong latents: $(cat "$work/header")"
grep -q "'guidance_scale': 3.0" "$work/header" || fail "preset guidance not used: $(cat "$work/header")"
grep -q "'flow_shift': 3.0" "$work/header" || fail "preset shift not recorded: $(cat "$work/header")"
grep -q "seed 7" "$work/header" || fail "seed not recorded: $(cat "$work/header")"
[[ $(ls "$work") == $'header\nout.safetensors\nstderr\nstdout' ]] || fail "stray files: $(ls "$work")"

# Same seed, same latents; the flag beats the preset.
"$fastdit" generate --model "$case_dir" "${embeds[@]}" --preset wan2.1-t2v-1.3b "${small[@]}" --seed 7 \
  --output "$work/again.safetensors" >/dev/null 2>&1 || fail "second run failed"
# (Within float32 noise: threaded GEMMs may sum in another order from run to run.)
python3 - "$work/out.safetensors" "$work/again.safetensors" <<'PY' || fail "same seed gave other latents"
import array, json, struct, sys
def latents(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    begin, end = json.loads(data[8:8 + n])["latents"]["data_offsets"]
    return array.array("f", data[8 + n + begin:8 + n + end])
a, b = latents(sys.argv[1]), latents(sys.argv[2])
sys.exit(0 if len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) <= 1e-5 else 1)
PY

# A random-weights model from a config alone: stand-in embeddings, no files needed.
"$fastdit" generate --config "$case_dir/transformer/config.json" --random-weights --height 32 --width 32 \
  --frames 5 --steps 2 --output "$work/random.safetensors" >/dev/null 2>"$work/stderr" \
  || fail "random-weights run exited $?: $(cat "$work/stderr")"
# (Through a file: grep -q would close the pipe early and pipefail would see python's broken pipe.)
header "$work/random.safetensors" >"$work/random_header" || fail "unreadable random-weights output"
grep -q "^latents F32 \[1, 4, 2, 4, 4\]$" "$work/random_header" || fail "random-weights latents: $(cat "$work/random_header")"

# A preset found through FASTDIT_PRESETS_DIR.
mkdir "$work/presets"
echo '{"steps": 1, "guidance_scale": 1.0}' >"$work/presets/mine.json"
FASTDIT_PRESETS_DIR=$work/presets "$fastdit" generate --model "$case_dir" \
  --prompt-embeds "$case_dir/prompt_embeds.safetensors" --noise "$case_dir/noise.safetensors" --preset mine \
  --output "$work/mine.safetensors" >/dev/null 2>"$work/stderr" || fail "preset by env dir: $(cat "$work/stderr")"
grep -q "^step 1/1 " "$work/stderr" || fail "preset steps not used"

# Bad input: exit 2, `error:` naming the problem, nothing written.
expect_error() {  # expect_error TEXT ARGS...
  local text=$1; shift
  local status=0
  "$fastdit" generate "$@" --output "$work/bad.safetensors" >/dev/null 2>"$work/err" || status=$?
  [[ $status == 2 ]] || fail "exit $status, expected 2, for: $* ($(cat "$work/err"))"
  grep -q "^error: .*$text" "$work/err" || fail "'$text' not in: $(cat "$work/err")"
  [[ ! -e $work/bad.safetensors ]] || fail "output written for: $*"
}
echo '{"steps": 4, "guidance": 5}' >"$work/typo.json"
echo '{"steps": 0}' >"$work/zero.json"
expect_error "no-such-preset: not found in .*known: .*wan2.1-t2v-1.3b" --model "$case_dir" "${embeds[@]}" \
  --preset no-such-preset
expect_error "typo.json: unknown config key(s) 'guidance'" --model "$case_dir" "${embeds[@]}" --preset "$work/typo.json"
expect_error "zero.json: steps must be positive" --model "$case_dir" "${embeds[@]}" --preset "$work/zero.json"
expect_error "missing.safetensors" --model "$case_dir" --prompt-embeds "$work/missing.safetensors"
expect_error "--prompt-embeds is required" --model "$case_dir"
expect_error "needs --negative-embeds" --model "$case_dir" --prompt-embeds "$case_dir/prompt_embeds.safetensors"
expect_error "switches to a transformer_2" --model "$case_dir" "${embeds[@]}" --preset wan2.2-t2v-a14b
expect_error "image or other conditioning" --model "$root/tests/fixtures/wan/i2v" "${embeds[@]}"
expect_error "frames 10 must be 1 + a multiple" --model "$case_dir" "${embeds[@]}" --frames 10
expect_error "no/such/model: no such file" --model "$work/no/such/model" "${embeds[@]}"
expect_error "do not match --frames/--height/--width" --model "$case_dir" "${embeds[@]}" \
  --noise "$case_dir/noise.safetensors" --frames 13
expect_error "cfg-batching both" --model "$case_dir" "${embeds[@]}" --cfg-batching both
echo "generate: ok"
