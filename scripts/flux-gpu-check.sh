#!/usr/bin/env bash
# On the GPU machine, from the repository root with .ref/ (diffusers src/) and .debs/ carried:
# write the Flux pipeline cases with diffusers FluxPipeline (make_pipeline_cases.py), build
# fastdit and the graph test, then every Flux case through `fastdit parity` on cuda (float32
# fused and unfused, bfloat16), the pipeline cases through `fastdit generate` on cuda (eager and
# CUDA graph) against their latents, and the Flux CUDA-graph tests. Logs and the fixture
# (flux_pipeline.tgz: unpack into tests/fixtures/pipeline) go to $OUT, else build-gpu/logs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/build-gpu/logs}; mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
S=$SECONDS
( python3 tools/reference/make_pipeline_cases.py --ref .ref/diffusers/src \
    --ref-commit 58eb52c0803ea9af3abec60841c2a093bdf1f951 --wan-cases tests/fixtures/wan \
    --flux-cases tests/fixtures/flux --out tests/fixtures/pipeline --cases flux_dev_tiny flux_schnell_tiny \
    > $OUT/fixture.log 2>&1
  echo "fixture rc=$? at $((SECONDS - S)) s" >> $OUT/fixture.log
  tar czf $OUT/flux_pipeline.tgz -C tests/fixtures/pipeline flux_dev_tiny flux_schnell_tiny manifest.json ) &
fixture=$!
source scripts/device-deps.sh
cmake -G Ninja -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release > $OUT/build.log 2>&1
timeout "${FLUX_BUILD_TIMEOUT:-600}" cmake --build build-gpu --target fastdit_cli test_cuda_graph >> $OUT/build.log 2>&1
echo "== build rc=$? at $((SECONDS - S)) s"; grep -E "error|FAILED" $OUT/build.log | head -8
wait $fixture; tail -12 $OUT/fixture.log
F=build-gpu/fastdit
{
for c in dev schnell_batch2 dev_deep_odd ids_3d dev_original_layout schnell_original_layout; do
  for run in "float32 off" "float32 on" "bfloat16 on"; do set -- $run
    echo "$c cuda $1 fuse=$2: $(timeout 20 $F parity tests/fixtures/flux/$c --device cuda --dtype $1 --fuse $2 2>&1 | tail -1)"
  done
done
for c in flux_dev_tiny flux_schnell_tiny; do P=tests/fixtures/pipeline/$c
  a=$(python3 -c "import json;j=json.load(open('$P/sampling.json'));print(j['steps'],j['guidance_scale'],j['height'],j['width'])")
  set -- $a
  for g in "" "--cuda-graph"; do
    timeout 30 $F generate --model $P --prompt-embeds $P/prompt_embeds.safetensors --pooled-embeds $P/pooled_prompt_embeds.safetensors \
      --noise $P/noise.safetensors --steps $1 --guidance $2 --height $3 --width $4 --device cuda --dtype float32 $g \
      --output /tmp/$c.safetensors > /tmp/gen.log 2>&1 || tail -3 /tmp/gen.log
    python3 -c "
from safetensors.torch import load_file as l; a=l('/tmp/$c.safetensors')['latents'].double(); b=l('$P/outputs.safetensors')['latents'].double()
print('pipeline $c cuda f32 $g rel_l2', float((a-b).norm()/b.norm()))"
  done
done
timeout 40 build-gpu/tests/test_cuda_graph --gtest_filter='*flux*:*Flux*' 2>&1 | grep -E "^\[  |OK|FAILED|Failure|error" | head -20
} 2>&1 | tee $OUT/parity.log
echo "== done at $((SECONDS - S)) s"
