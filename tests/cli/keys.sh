#!/usr/bin/env bash
# fastdit keys: the native surface from a config alone agrees with every shipped reference
# key dump (tools/reference/dump_keys.py with the family's spec) and with an original-layout checkpoint through
# the mapping; its --json dump has the scripts' exact row layout; a dump with a missing, an
# extra, a mis-shaped or a wrongly kept dtype row is listed by name with exit 1; bad input
# is exit 2.
set -u
fastdit=$1
root=${FASTDIT_SOURCE_DIR:-.}
source "$(dirname "$0")/support.bash"

wan=$root/tests/fixtures/wan/keys
sd3=$root/tests/fixtures/sd3/keys
ltx2=$root/tests/fixtures/ltx2/keys

expect 0 table "$fastdit" keys "$wan/Wan2.1-T2V-1.3B.config.json"
head -n 1 "$tmp/out" | grep -q "^model    WanTransformer3DModel from .*: 825 parameters in float32" \
  || fail "table header: $(head -n 1 "$tmp/out")"
grep -q "^blocks.29.ffn.net.2.weight  *float32  \[1536, 8960\]$" "$tmp/out" || fail "table row missing"
grep -q "^total: 825 tensors, 1418996800 parameters (1.4B)$" "$tmp/out" || fail "table total: $(tail -n 3 "$tmp/out")"

for dump in "$wan"/*.keys.json "$sd3"/*.keys.json "$ltx2"/*.keys.json; do
  config=${dump%.keys.json}.config.json
  for fuse in off on; do
    expect 0 "$(basename "$dump") fuse $fuse" "$fastdit" keys "$config" --against "$dump" --dtype bfloat16 --fuse $fuse
    tail -n 1 "$tmp/out" | grep -q "^AGREE " || fail "$dump fuse $fuse: $(tail -n 1 "$tmp/out")"
  done
done

# Our dump's rows are the reference dump's rows, line for line.
expect 0 json "$fastdit" keys "$wan/Wan2.1-I2V-14B-480P.config.json" --json --dtype bfloat16
cp "$tmp/out" "$tmp/ours.json"
diff <(sed -n '/"parameters"/,$p' "$tmp/ours.json") <(sed -n '/"parameters"/,$p' "$wan/Wan2.1-I2V-14B-480P.keys.json") \
  >"$tmp/diff" || fail "--json rows differ from the reference dump: $(head -n 20 "$tmp/diff")"
expect 0 "own dump" "$fastdit" keys "$wan/Wan2.1-I2V-14B-480P.config.json" --against "$tmp/ours.json" --dtype bfloat16

# An original-layout checkpoint (WanModel names) reaches the diffusers surface through the
# model's own mapping rules.
case=$root/tests/fixtures/wan/t2v_original_layout
expect 0 "original layout" "$fastdit" keys "$case" --against "$case/transformer/diffusion_pytorch_model.safetensors"
tail -n 1 "$tmp/out" | grep -q "^AGREE 69 parameters filled by 69 tensors$" || fail "original layout: $(tail -n 1 "$tmp/out")"

# A dump with one row dropped, one renamed, one reshaped and one kept dtype changed.
python3 - "$wan/Wan2.1-T2V-1.3B.keys.json" "$tmp/broken.json" <<'EOF'
import json, sys
dump = json.load(open(sys.argv[1]))
rows = {row[0]: row for row in dump["parameters"]}
del rows["blocks.3.attn2.norm_k.weight"]
rows["blocks.4.attn1.to_qq.weight"] = ["blocks.4.attn1.to_qq.weight", *rows.pop("blocks.4.attn1.to_q.weight")[1:]]
rows["blocks.5.ffn.net.0.proj.weight"][1] = [8960, 1535]
rows["blocks.6.norm2.weight"][2] = "bfloat16"
dump["parameters"] = list(rows.values())
json.dump(dump, open(sys.argv[2], "w"))
EOF
config=$wan/Wan2.1-T2V-1.3B.config.json
expect 1 differ "$fastdit" keys "$config" --against "$tmp/broken.json" --dtype bfloat16
tail -n 1 "$tmp/out" | grep -q "^DIFFER missing=2 extra=1 mismatched=2$" || fail "differ: $(cat "$tmp/out")"
for name in "parameter 'blocks.3.attn2.norm_k.weight' \[1536\]" "parameter 'blocks.4.attn1.to_q.weight'" \
    "checkpoint tensor 'blocks.4.attn1.to_qq.weight' has no parameter" \
    "'blocks.5.ffn.net.0.proj.weight' has shape \[8960, 1535\] but parameter 'blocks.5.ffn.net.0.proj.weight' expects \[8960, 1536\]" \
    "parameter 'blocks.6.norm2.weight' loads as float32 but the dump gives 'blocks.6.norm2.weight' bfloat16"; do
  grep -q "$name" "$tmp/out" || fail "differ does not list $name: $(cat "$tmp/out")"
done
# Without --dtype the dump's dtypes are not compared (a checkpoint's are storage dtypes).
expect 1 "differ, dtypes not compared" "$fastdit" keys "$config" --against "$tmp/broken.json"
tail -n 1 "$tmp/out" | grep -q "^DIFFER missing=2 extra=1 mismatched=1$" || fail "no --dtype: $(tail -n 1 "$tmp/out")"

# A merge (--fuse on) whose piece has the wrong width is a mismatch of the fused parameter.
python3 - "$config" "${config%.config.json}.keys.json" "$tmp/narrow_k.json" <<'EOF'
import json, sys
dump = json.load(open(sys.argv[2]))
for row in dump["parameters"]:
    if row[0] == "blocks.0.attn1.to_k.weight":
        row[1] = [1536, 1000]
json.dump(dump, open(sys.argv[3], "w"))
EOF
expect 1 "fused piece" "$fastdit" keys "$config" --against "$tmp/narrow_k.json" --fuse on
grep -q "'blocks.0.attn1.to_k.weight' \[1536, 1000\] cannot form rows of parameter 'blocks.0.attn1.to_qkv.weight'" \
  "$tmp/out" || fail "fused piece: $(cat "$tmp/out")"

# Bad input: exit 2 with an error line naming what and where.
echo '{"parameters": [["a", [2], "float32"], ["b", "x", "float32"]]}' >"$tmp/bad_row.json"
echo '{"parameters": [["a", [2], "float32"], ["a", [2], "float32"]]}' >"$tmp/twice.json"
echo '{"parameters": [["a", [2], "complex"]]}' >"$tmp/bad_dtype.json"
echo 'not json' >"$tmp/not.json"
for bad in "no_such_dir:$tmp/absent:no such file" "not json:$tmp/not.json:not valid JSON" \
    "bad row:$tmp/bad_row.json:parameters\[1\]: the shape" "twice:$tmp/twice.json:'a' is listed twice" \
    "bad dtype:$tmp/bad_dtype.json:parameters\[0\]: "; do
  IFS=: read -r name path message <<<"$bad"
  expect 2 "$name" "$fastdit" keys "$config" --against "$path"
  grep -q "^error: .*$message" "$tmp/out" || fail "$name: $(cat "$tmp/out")"
done
expect 2 "no config" "$fastdit" keys "$tmp/absent"
grep -q "^error: .*absent" "$tmp/out" || fail "no config: $(cat "$tmp/out")"
expect 2 "bad dtype flag" "$fastdit" keys "$config" --dtype int8
grep -q "^error: --dtype int8" "$tmp/out" || fail "bad --dtype: $(cat "$tmp/out")"
expect 2 "json with against" "$fastdit" keys "$config" --json --against "$tmp/ours.json"
echo "keys CLI checks passed"
