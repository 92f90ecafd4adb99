#!/usr/bin/env bash
# Hostile configs, settings and inputs through the binary: each case must end with exit 2 and
# an `error:` line naming the file or flag (or the right result where the input is valid),
# never a crash (exit >= 128), a hang (timeout 20) or unbounded memory (ulimit -v).
# Usage: hostile_config.sh <path to fastdit>
set -uo pipefail
fastdit=$1
root=${FASTDIT_SOURCE_DIR:?}
source "$root/tests/cli/support.bash"
wan=$root/tests/fixtures/wan/t2v
pipe=$root/tests/fixtures/pipeline/wan_t2v_tiny
failures=0

# probe <code> <name> <pattern> <command...>: exit code, an `error:` line (code 2) holding the
# pattern (grep -E) and no crash, within 20 s.
probe() {
  local code=$1 name=$2 pattern=$3
  shift 3
  timeout 20 "$@" >"$tmp/out" 2>&1
  local got=$?
  if ((got != code)); then
    echo "FAIL $name: exit $got, expected $code: $(tail -c 1500 "$tmp/out")"; ((failures++)); return
  fi
  if ((code == 2)) && ! grep -qE "^error: .*($pattern)" "$tmp/out"; then
    echo "FAIL $name: no 'error: ...$pattern' line: $(tail -c 1500 "$tmp/out")"; ((failures++)); return
  fi
  if ((code != 2)) && [[ -n $pattern ]] && ! grep -qE "$pattern" "$tmp/out"; then
    echo "FAIL $name: no '$pattern': $(tail -c 1500 "$tmp/out")"; ((failures++)); return
  fi
}

# config <src config.json> <dst dir> key=json...: a copy of a config with keys replaced.
config() {
  python3 - "$@" <<'PY'
import json, os, sys
src, dst = sys.argv[1], sys.argv[2]
c = json.load(open(src))
for kv in sys.argv[3:]:
    k, v = kv.split("=", 1)
    c[k] = json.loads(v)
os.makedirs(dst, exist_ok=True)
json.dump(c, open(os.path.join(dst, "config.json"), "w"))
PY
}
# deep <file> <prefix> <suffix>: JSON nested 100,000 levels.
deep() { python3 -c "import sys; n=100000; open(sys.argv[1],'w').write(sys.argv[2] + '['*n + ']'*n + sys.argv[3])" "$@"; }
# tensors <src safetensors> <dst> <python expression over `t` (name -> (dtype, shape, bytes))>
tensors() {
  python3 - "$@" <<'PY'
import json, struct, sys
src, dst, edit = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(src, "rb").read()
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n]); header.pop("__metadata__", None)
t = {k: (v["dtype"], v["shape"], data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in header.items()}
exec(edit)
out, blob = {}, b""
for k, (dtype, shape, raw) in t.items():
    out[k] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
    blob += raw
h = json.dumps(out).encode()
open(dst, "wb").write(struct.pack("<Q", len(h)) + h + blob)
PY
}
small=(--example 1,16,16 --output "$tmp/o.safetensors")
wan_cfg=$wan/transformer/config.json

# ---- sizes that overflow int64 (every family) -------------------------------------------
config "$wan_cfg" "$tmp/ffn" ffn_dim=4611686018427387904
probe 2 ffn_dim_random "ffn_dim = 4611686018427387904" "$fastdit" run "$tmp/ffn/config.json" --random-weights "${small[@]}"
probe 2 ffn_dim_bench "ffn_dim = 4611686018427387904" "$fastdit" bench --config "$tmp/ffn/config.json" --random-weights \
  --device cpu --dtype float32 --frames 1 --height 16 --width 16 --warmup 0 --iters 1 --json "$tmp/b.json"
mkdir -p "$tmp/ffn_ckpt" && cp "$wan/transformer/diffusion_pytorch_model.safetensors" "$tmp/ffn_ckpt/"
cp "$tmp/ffn/config.json" "$tmp/ffn_ckpt/"
probe 2 ffn_dim_checkpoint "ffn_dim = 4611686018427387904" "$fastdit" run "$tmp/ffn_ckpt" --inputs "$wan/inputs.safetensors" \
  --output "$tmp/o.safetensors"
config "$wan_cfg" "$tmp/heads" num_attention_heads=2147483648 attention_head_dim=2147483648
probe 2 heads_x_head_dim "num_attention_heads = 2147483648 x attention_head_dim = 2147483648" \
  "$fastdit" run "$tmp/heads/config.json" --random-weights "${small[@]}"
for family in sd3/sd3 stable_audio/base flux/dev; do
  config "$root/tests/fixtures/$family/transformer/config.json" "$tmp/$family" \
    num_attention_heads=2147483648 attention_head_dim=2147483648
  probe 2 "heads_$family" "num_attention_heads = 2147483648 x attention_head_dim = 2147483648" \
    "$fastdit" run "$tmp/$family/config.json" --random-weights "${small[@]}"
  config "$root/tests/fixtures/$family/transformer/config.json" "$tmp/$family-ffn" num_layers=4611686018427387904
  probe 2 "layers_$family" "num_layers = 4611686018427387904" "$fastdit" run "$tmp/$family-ffn/config.json" --random-weights "${small[@]}"
done

# ---- deeply nested JSON ------------------------------------------------------------------
mkdir -p "$tmp/deep"
deep "$tmp/deep/config.json" '{"_class_name": "WanTransformer3DModel", "ffn_dim": ' '}'
probe 2 deep_config "nested deeper than" "$fastdit" run "$tmp/deep/config.json" --random-weights "${small[@]}"
probe 2 deep_config_inspect "nested deeper than" "$fastdit" inspect "$tmp/deep/config.json"
deep "$tmp/deep/args.json" '{"x": ' '}'
probe 2 deep_args "nested deeper than" "$fastdit" run "$wan/transformer" --inputs "$wan/inputs.safetensors" \
  --args "$tmp/deep/args.json" --output "$tmp/o.safetensors"
deep "$tmp/deep/bench.json" '{"benchmark_id": "x", "model": ' '}'
probe 2 deep_bench_definition "nested deeper than" "$fastdit" bench --config "$tmp/deep/bench.json"
deep "$tmp/deep/trace.jsonl" '{"module": "a", "tensor": "out", "step": 0, "abs_mean": ' '}'
probe 2 deep_trace_line "nested deeper than" "$fastdit" trace-diff "$tmp/deep/trace.jsonl" "$wan/trace.jsonl"

# ---- memory bounds -----------------------------------------------------------------------
config "$wan_cfg" "$tmp/wan14b" num_attention_heads=40 attention_head_dim=128 ffn_dim=13824 num_layers=40 \
  in_channels=16 out_channels=16 text_dim=4096 freq_dim=256 rope_max_seq_len=1024
# An AddressSanitizer build reserves terabytes of shadow address space at start, which
# ulimit -v forbids: there the bound is checked against the machine's free memory alone, at a
# shape that needs more than any CPU machine has (the same check, the same error).
asan=0
ldd "$fastdit" 2>/dev/null | grep -q libasan && asan=1
limit() { if ((asan)); then echo "true"; else echo "ulimit -v $1"; fi; }
probe 2 wan14b_cpu "needs ~.* GiB, cpu has .* GiB \(free" bash -c \
  "$(limit 4000000)"'; exec "$0" run "$1" --random-weights --example 81,4096,4096 --output "$2"' \
  "$fastdit" "$tmp/wan14b/config.json" "$tmp/o.safetensors"
config "$wan_cfg" "$tmp/layers" num_layers=1000000000
probe 2 num_layers_1e9 "num_layers = 1000000000" "$fastdit" run "$tmp/layers/config.json" --random-weights "${small[@]}"
probe 2 activations_ulimit "a forward of WanTransformer3DModel .* needs ~" bash -c \
  "$(limit 2000000)"'; exec "$0" run "$1" --random-weights --example '"$( ((asan)) && echo 81,65536,65536 || echo 81,8192,8192)"' --output "$2"' \
  "$fastdit" "$wan_cfg" "$tmp/o.safetensors"
probe 2 steps_1e9 "steps 1000000000 is more than 10000" "$fastdit" generate --config "$wan_cfg" --random-weights \
  --steps 1000000000 --height 16 --width 16 --frames 1 --output "$tmp/g.safetensors"

# ---- NaN and Inf -------------------------------------------------------------------------
tensors "$wan/inputs.safetensors" "$tmp/nan.safetensors" \
  'import struct; d, s, raw = t["hidden_states"]; t["hidden_states"] = (d, s, struct.pack("<f", float("nan")) + raw[4:])'
probe 0 nan_input_warns "warning: output 'sample' has 720 non-finite values" \
  "$fastdit" run "$wan/transformer" --inputs "$tmp/nan.safetensors" --output "$tmp/o.safetensors"
probe 2 nan_input_strict "--strict" "$fastdit" run "$wan/transformer" --inputs "$tmp/nan.safetensors" \
  --output "$tmp/strict.safetensors" --strict
[[ ! -e $tmp/strict.safetensors ]] || { echo "FAIL nan_input_strict: wrote its output"; ((failures++)); }
gen=(generate --model "$pipe" --prompt-embeds "$pipe/prompt_embeds.safetensors"
     --negative-embeds "$pipe/negative_prompt_embeds.safetensors" --height 48 --width 80 --frames 9 --steps 1)
probe 2 guidance_inf "guidance" "$fastdit" "${gen[@]}" --guidance inf --output "$tmp/g.safetensors"
probe 2 guidance_nan "guidance" "$fastdit" "${gen[@]}" --guidance nan --output "$tmp/g.safetensors"
config "$wan_cfg" "$tmp/eps" eps=-1
probe 2 eps_negative "eps = -1 must be a positive finite number" "$fastdit" run "$tmp/eps/config.json" --random-weights "${small[@]}"

# ---- nonsensical settings ----------------------------------------------------------------
run_wan=(run "$wan/transformer" --inputs "$wan/inputs.safetensors" --output "$tmp/o.safetensors")
probe 2 sp_zero "--sp" "$fastdit" "${run_wan[@]}" --sp 0
probe 2 sp_1000 "--sp" "$fastdit" "${run_wan[@]}" --sp 1000
tensors "$wan/inputs.safetensors" "$tmp/int.safetensors" \
  'import struct; d, s, raw = t["hidden_states"]; t["hidden_states"] = ("I32", s, struct.pack("<%di" % (len(raw) // 4), *range(len(raw) // 4)))'
probe 2 integer_hidden_states "input 'hidden_states' must be a floating-point" "$fastdit" run "$wan/transformer" \
  --inputs "$tmp/int.safetensors" --output "$tmp/o.safetensors"
probe 2 bench_frames "frames 10 must be 1 \+ a multiple" "$fastdit" bench --config "$wan_cfg" --random-weights \
  --device cpu --dtype float32 --frames 10 --height 16 --width 16 --warmup 0 --iters 1 --json "$tmp/b.json"
probe 2 bench_height "height x width 20x16" "$fastdit" bench --config "$wan_cfg" --random-weights \
  --device cpu --dtype float32 --frames 1 --height 20 --width 16 --warmup 0 --iters 1 --json "$tmp/b.json"
probe 2 run_example_frames "--example: frames 10" "$fastdit" run "$wan_cfg" --random-weights --example 10,16,16 \
  --output "$tmp/o.safetensors"
probe 2 seed_with_noise "--seed and --noise are exclusive" "$fastdit" "${gen[@]}" --noise "$pipe/noise.safetensors" \
  --seed 3 --output "$tmp/g.safetensors"
probe 2 model_random_weights "--random-weights .* does not go with --model" "$fastdit" "${gen[@]}" --random-weights \
  --output "$tmp/g.safetensors"

# ---- messages that must name the right thing ---------------------------------------------
config "$wan_cfg" "$tmp/minus" num_layers=-1
probe 2 num_layers_negative "num_layers = -1 must lie in" "$fastdit" run "$tmp/minus/config.json" --random-weights "${small[@]}"
config "$wan_cfg" "$tmp/cls" _class_name=5
probe 2 class_name_number "'_class_name' must be a string" "$fastdit" run "$tmp/cls/config.json" --random-weights "${small[@]}"
tensors "$wan/inputs.safetensors" "$tmp/zero.safetensors" \
  'd, s, raw = t["hidden_states"]; t["hidden_states"] = (d, [1, 4, 0, 6, 10], b"")'
probe 2 zero_size_input "input 'hidden_states' .* is empty" "$fastdit" run "$wan/transformer" \
  --inputs "$tmp/zero.safetensors" --output "$tmp/o.safetensors"
if [[ ${FASTDIT_WITH_CUDA:?} == OFF ]]; then  # a build without CUDA says so (CMake tells the tests which build this is)
  probe 2 cuda_not_built "--device cuda: device type cuda is not available in this build \(fastdit was built without CUDA\)" \
    "$fastdit" "${run_wan[@]}" --device cuda
elif [[ ! -e /dev/nvidia0 ]]; then
  probe 2 cuda_without_gpu "--device cuda: no CUDA device is available" "$fastdit" "${run_wan[@]}" --device cuda
fi
tensors "$pipe/prompt_embeds.safetensors" "$tmp/rank2.safetensors" \
  'k = next(iter(t)); d, s, raw = t[k]; t[k] = (d, s[1:], raw)'
probe 2 rank2_prompt "rank2.safetensors: prompt embeddings must be" "$fastdit" generate --model "$pipe" \
  --prompt-embeds "$tmp/rank2.safetensors" --guidance 1 --height 48 --width 80 --frames 9 --steps 1 \
  --output "$tmp/g.safetensors"
probe 2 unknown_command "unknown command 'bogus'" "$fastdit" bogus
probe 2 parse_error_prefixed "run: " "$fastdit" run
probe 2 max_rel_l2_nan "--max-rel-l2 nan" "$fastdit" "${run_wan[@]}" --compare "$wan/outputs.safetensors" --max-rel-l2 nan

((failures == 0)) || fail "$failures case(s) failed"
echo "PASS hostile_config"
