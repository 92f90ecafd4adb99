#!/usr/bin/env bash
# fastdit inspect: the shipped example as a dir and as one file prints the config and the
# tensor table; broken or missing input is `error: <path> ...` with exit 2 and no output
# files. Usage: inspect.sh <path to fastdit>
set -euo pipefail
fastdit=$1
example=${FASTDIT_SOURCE_DIR:?}/examples/tiny_wan
weights=$example/transformer/diffusion_pytorch_model.safetensors
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
expect_in() {  # expect_in FILE TEXT...
  local file=$1; shift
  for text in "$@"; do grep -qF -- "$text" "$file" || fail "'$text' not in $file: $(cat "$file")"; done
}

"$fastdit" inspect "$example" > "$work/dir.out" || fail "inspect of the example dir exited $?"
expect_in "$work/dir.out" '"_class_name": "WanTransformer3DModel"' '"num_layers": 2' \
  'blocks.1.ffn.net.2.weight' 'patch_embedding.weight' '[32, 4, 1, 2, 2]' 'scale_shift_table' \
  'total: 69 tensors, 37488 parameters (37.5K), 149952 bytes' 'float32: 69 tensors'
[[ $(grep -A1 '^{' "$work/dir.out" | sed -n 2p) == *'"_class_name"'* ]] || fail "_class_name is not the first key"
first_line() { grep -n -m1 -- "$1" "$work/dir.out" | cut -d: -f1; }
(( $(first_line '^blocks\.0\.') < $(first_line '^blocks\.1\.') &&
   $(first_line '^blocks\.1\.') < $(first_line '^condition_embedder\.') )) ||
  fail "table not in name order"

"$fastdit" inspect "$weights" > "$work/file.out" || fail "inspect of the weights file exited $?"
expect_in "$work/file.out" 'proj_out.weight' '[16, 32]' 'total: 69 tensors'
grep -q '_class_name' "$work/file.out" && fail "a single file printed a config"

# Broken input: truncated data, a header length beyond the file, a config that is not JSON,
# a missing path.
cases=$work/cases
mkdir "$cases"
head -c 100000 "$weights" > "$cases/truncated.safetensors"
python3 - "$weights" "$cases/lying.safetensors" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(struct.pack("<Q", len(data)) + data[8:])
PY
mkdir -p "$cases/bad_config/transformer"
cp "$weights" "$cases/bad_config/transformer/"
echo '{"_class_name": "WanTransformer3DModel",' > "$cases/bad_config/transformer/config.json"
listing() { find "$cases" -printf "%p %s %T@\n" | sort; }
before=$(listing)
for path in "$cases/truncated.safetensors" "$cases/lying.safetensors" "$cases/bad_config" \
            "$cases/no/such/model"; do
  status=0
  "$fastdit" inspect "$path" > "$work/out" 2> "$work/err" || status=$?
  [[ $status == 2 ]] || fail "inspect $path exited $status, expected 2"
  expect_in "$work/err" "error: $path"
done
expect_in "$work/err" "no such file or directory"
[[ $(listing) == "$before" ]] || fail "inspect wrote into $cases"
echo "inspect: ok"
