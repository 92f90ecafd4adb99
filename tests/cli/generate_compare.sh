#!/usr/bin/env bash
# generate --compare through the binary: the final latents against a reference file's, with
# rel_l2, max_abs, cosine and PSNR printed and, with --max-rel-l2, PASS/FAIL as the exit code.
# The same seed twice gives the same latents (rel_l2 0, cosine 1, PSNR inf); another seed
# worse figures; a reference of another shape or a missing one is `error: ...`, exit 2, before
# any step. run --compare prints the same figures. A 50-step random-weights run with
# classifier-free guidance (the shape of scripts/fp8-generate-check.sh's, at a tiny size)
# keeps its latents finite. Usage: generate_compare.sh <path to fastdit>
set -uo pipefail
fastdit=$1
root=${FASTDIT_SOURCE_DIR:?}
source "$root/tests/cli/support.bash"
config=$root/tests/fixtures/pipeline/wan_t2v_tiny/transformer/config.json
# One CPU thread: the same seed then gives the same latents bit for bit (threaded sums may
# split differently from run to run).
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
gen=("$fastdit" generate --config "$config" --random-weights --frames 5 --width 32 --guidance 3)
figures='rel_l2=[^ ]* max_abs=[^ ]* cosine=[^ ]* psnr=[^ ]* dB'

# The reference, then the same run compared with it: exact, with and without a bound.
expect 0 reference "${gen[@]}" --steps 4 --height 32 --seed 7 --output "$tmp/ref.safetensors"
expect 0 "same seed" "${gen[@]}" --steps 4 --height 32 --seed 7 --compare "$tmp/ref.safetensors" --max-rel-l2 0
grep -qx "latents rel_l2=0.000e+00 max_abs=0.000e+00 cosine=1 psnr=inf dB vs $tmp/ref.safetensors" "$tmp/out" \
  || fail "same seed, not exact: $(cat "$tmp/out")"
tail -n 1 "$tmp/out" | grep -qx "PASS rel_l2=0.000e+00 max_abs=0.000e+00 cosine=1 psnr=inf dB bound=0.000e+00 vs $tmp/ref.safetensors" \
  || fail "same seed, no PASS line: $(tail -n 1 "$tmp/out")"
grep -q "^wrote " "$tmp/out" && fail "--compare without --output wrote a file: $(cat "$tmp/out")"
[[ $(ls "$tmp") == $'out\nref.safetensors' ]] || fail "stray files: $(ls "$tmp")"
# Without --max-rel-l2 the figures are printed and not judged.
expect 0 "no bound" "${gen[@]}" --steps 4 --height 32 --seed 8 --compare "$tmp/ref.safetensors"
grep -q "^latents $figures vs " "$tmp/out" || fail "no figures: $(cat "$tmp/out")"
grep -qE "^(PASS|FAIL)" "$tmp/out" && fail "judged without a bound: $(cat "$tmp/out")"

# Another seed: worse on every figure; FAIL and exit 1 under a bound it misses. --output and
# --compare together write the latents and compare them.
expect 1 "other seed" "${gen[@]}" --steps 4 --height 32 --seed 8 --compare "$tmp/ref.safetensors" --max-rel-l2 0.01 \
  --output "$tmp/other.safetensors"
grep -q "^wrote $tmp/other.safetensors: latents " "$tmp/out" || fail "other seed: not written: $(cat "$tmp/out")"
tail -n 1 "$tmp/out" | grep -q "^FAIL $figures bound=1.000e-02 vs " || fail "other seed: $(tail -n 1 "$tmp/out")"
python3 - "$tmp/out" <<'PY' || fail "other seed, figures not worse: $(cat "$tmp/out")"
import math, re, sys
line = next(l for l in open(sys.argv[1]) if l.startswith("latents rel_l2="))
v = {k: float(x) for k, x in re.findall(r"(\w+)=([-+0-9.eEinfa]+)", line)}
ok = v["rel_l2"] > 0.1 and v["max_abs"] > 0 and v["cosine"] < 0.99 and math.isfinite(v["psnr"]) and v["psnr"] < 40
sys.exit(0 if ok else 1)
PY

# Bad input: exit 2, `error:` naming the file (and both shapes), before any step.
expect 2 "shape mismatch" "${gen[@]}" --steps 4 --height 48 --seed 7 --compare "$tmp/ref.safetensors"
grep -qx "error: --compare $tmp/ref.safetensors: the reference latents \[1, 4, 2, 4, 4\] do not match this run's latents \[1, 4, 2, 6, 4\]" \
  "$tmp/out" || fail "shape mismatch message: $(cat "$tmp/out")"
grep -q "^step " "$tmp/out" && fail "shape mismatch found after the steps: $(cat "$tmp/out")"
expect 2 "missing reference" "${gen[@]}" --steps 4 --height 32 --compare "$tmp/missing.safetensors"
grep -q "^error: $tmp/missing.safetensors: " "$tmp/out" || fail "missing reference: $(cat "$tmp/out")"
python3 -c "
import json, struct, sys
h = json.dumps({'a': {'dtype': 'F32', 'shape': [1], 'data_offsets': [0, 4]},
                'b': {'dtype': 'F32', 'shape': [1], 'data_offsets': [4, 8]}}).encode()
open(sys.argv[1], 'wb').write(struct.pack('<Q', len(h)) + h + bytes(8))" "$tmp/two.safetensors"
expect 2 "no latents tensor" "${gen[@]}" --steps 4 --height 32 --compare "$tmp/two.safetensors"
grep -q "^error: $tmp/two.safetensors: expected one tensor or one named 'latents'" "$tmp/out" \
  || fail "no latents tensor: $(cat "$tmp/out")"
expect 2 "neither output nor compare" "${gen[@]}" --steps 4 --height 32
grep -q "^error: generate: give --output, --compare or both" "$tmp/out" || fail "no output: $(cat "$tmp/out")"
expect 2 "bound without compare" "${gen[@]}" --steps 4 --height 32 --output "$tmp/x.safetensors" --max-rel-l2 0.1
grep -q "^error: generate: --max-rel-l2 bounds --compare" "$tmp/out" || fail "bound alone: $(cat "$tmp/out")"
expect 2 "NaN bound" "${gen[@]}" --steps 4 --height 32 --compare "$tmp/ref.safetensors" --max-rel-l2 nan
grep -q "^error: --max-rel-l2 nan: expected a finite bound >= 0" "$tmp/out" || fail "NaN bound: $(cat "$tmp/out")"
expect 2 "output is the reference" "${gen[@]}" --steps 4 --height 32 --compare "$tmp/ref.safetensors" \
  --output "$tmp/ref.safetensors"
grep -q "^error: --output $tmp/ref.safetensors: is an input of this command" "$tmp/out" \
  || fail "output over the reference: $(cat "$tmp/out")"
[[ ! -e $tmp/x.safetensors ]] || fail "written on bad input"

# run --compare prints the same figures per head and on its verdict line.
wan=$root/tests/fixtures/wan/t2v
expect 0 "run --compare" "$fastdit" run "$wan/transformer" --inputs "$wan/inputs.safetensors" \
  --compare "$wan/outputs.safetensors" --max-rel-l2 1e-3
grep -q "^head sample $figures$" "$tmp/out" || fail "run --compare head line: $(cat "$tmp/out")"
tail -n 1 "$tmp/out" | grep -q "^PASS $figures bound=1.000e-03 vs " || fail "run --compare: $(tail -n 1 "$tmp/out")"

# 50 steps of the wan2.1-t2v-1.3b preset (UniPC, shift 3, CFG 3) on random weights stay finite
# (--strict fails on a NaN or Inf).
expect 0 "50 steps finite" "${gen[@]}" --preset wan2.1-t2v-1.3b --height 32 --strict --seed 3 --output "$tmp/fifty.safetensors"
echo "generate_compare: ok"
