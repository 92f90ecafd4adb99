#!/usr/bin/env bash
# On the GPU machine: the Python package on CUDA and the official diffusers pipelines with
# fastdit's drop-in transformers. Builds build-gpu/libfastdit.so with CUDA (the folder
# gpu-check.sh builds; run after it in one call and only the C API links), makes .venv from
# the machine's python3 (torch 2.11), runs the package's tests (python/tests on the CPU and
# python/gpu_tests on cuda), then tools/reference/compare_pipelines.py: WanPipeline at
# 480x832x81 (random Wan2.1 1.3B, 10 steps, CFG) and StableDiffusion3Pipeline on a tiny
# model, diffusers' transformer against fastdit's, latents and per-step times side by side.
# Needs .ref/diffusers (diffusers' source) and .debs (scripts/fetch-device-debs.sh, with
# libdlpack-dev). Logs to $OUT (else build-gpu/logs). GPU_PY_FP32=wan,sd3 judges both
# families against diffusers' float32 pipeline (default sd3: Wan's costs ~2 minutes more).
set -uo pipefail
cd "$(dirname "$0")/.."
logs=${OUT:-$PWD/build-gpu/logs}
mkdir -p "$logs"
export PATH=/usr/local/cuda/bin:$PATH
source scripts/device-deps.sh

start=$SECONDS
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release >"$logs/py-configure.log" 2>&1 &&
  cmake --build build-gpu -j"$(nproc)" --target fastdit_capi >"$logs/py-build.log" 2>&1
build_status=$?
echo "== libfastdit.so build: exit $build_status in $((SECONDS - start)) s"
grep -E "fastdit:" "$logs/py-configure.log"
grep -E "error|FAILED" "$logs/py-build.log" | head -20
[[ $build_status == 0 ]] || exit 1

export FASTDIT_LIBRARY=$PWD/build-gpu/libfastdit.so
export PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH}
rm -rf .venv
FASTDIT_SYSTEM_PYTHON=$(command -v python3) bash scripts/python-env.sh
# A python3 that is itself a venv gives a new venv its base interpreter's packages, not its own.
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  export FASTDIT_PYTHON=$(command -v python3)
  echo "== .venv does not see this machine's torch: tests run with $FASTDIT_PYTHON"
fi
python=${FASTDIT_PYTHON:-.venv/bin/python}
"$python" -c 'import torch; print("torch", torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'

bash scripts/python-tests.sh python/tests >"$logs/py-tests-cpu.log" 2>&1
cpu_status=$?
bash scripts/python-tests.sh python/gpu_tests >"$logs/py-tests-cuda.log" 2>&1
cuda_status=$?
for log in py-tests-cpu py-tests-cuda; do
  echo "== $log: $(tail -1 "$logs/$log.log")"
  grep -E "^(FAIL|ERROR):|Error:" "$logs/$log.log" | head -10
done

work=$(mktemp -d /tmp/fastdit-pipelines.XXXX)
"$python" tools/reference/compare_pipelines.py --diffusers-src .ref/diffusers/src --work "$work" \
  --fp32-reference "${GPU_PY_FP32:-sd3}" --record "$logs/pipelines.json" 2>&1 | tee "$logs/pipelines.log" |
  grep -vE "Warning|warn\(" 
pipeline_status=${PIPESTATUS[0]}
rm -rf "$work"
echo "== pipelines: exit $pipeline_status; total $((SECONDS - start)) s"
exit $(( cpu_status || cuda_status || pipeline_status ))
