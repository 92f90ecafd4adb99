#!/usr/bin/env bash
# On the GPU machine, from a fresh copy of the tree: configure and build fastdit with CUDA,
# run the gpu tests (CTest label gpu, with the errors and throughputs they print), the
# attention tests once more against PyTorch's newer cuDNN when it is there, and then
# the unit tests. Logs go to $OUT (the device tool's output folder) when set, else to
# build-gpu/logs; a short summary is printed last.
#
# Build dependencies the machine lacks come from .debs/ (scripts/device-deps.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
logs=${OUT:-$PWD/build-gpu/logs}
mkdir -p "$logs"
export PATH=/usr/local/cuda/bin:$PATH
jobs=$(nproc)

torch_cudnn=$(python3 -c 'import nvidia.cudnn as c; print(list(c.__path__)[0])' 2>/dev/null)
{
  grep PRETTY_NAME /etc/os-release
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  which cmake ninja nvcc g++
  cmake --version | head -1
  nvcc --version | tail -1
  ls /usr/include/nlohmann /usr/include/CLI /usr/lib/x86_64-linux-gnu/libopenblas* \
     /usr/lib/x86_64-linux-gnu/libgtest* /usr/lib/x86_64-linux-gnu/libcudnn.so* 2>&1 | head -20
  echo "PyTorch's cuDNN: ${torch_cudnn:-none}"
} >"$logs/env.log" 2>&1
cat "$logs/env.log"

source scripts/device-deps.sh

flags=()
generator=() keep_going=(-- -k)
if command -v ninja >/dev/null; then generator=(-G Ninja) keep_going=(-- -k 0); fi
if ! cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "${flags[@]}" >"$logs/configure.log" 2>&1; then
  tail -40 "$logs/configure.log"
  echo "== configure FAILED"
  exit 1
fi
grep "fastdit:" "$logs/configure.log"

# Keep going past a failing target so the test binaries still get built and run.
start=$SECONDS
cmake --build build-gpu -j"$jobs" "${keep_going[@]}" >"$logs/build.log" 2>&1
build_status=$?
echo "== build: exit $build_status in $((SECONDS - start)) s"
grep -E "error|FAILED" "$logs/build.log" | head -30

(cd build-gpu && ctest -L gpu -V --timeout 300) >"$logs/gpu-tests.log" 2>&1
gpu_status=$?

cudnn_status=skipped
if [[ -n $torch_cudnn && -d $torch_cudnn/lib && -x build-gpu/tests/test_cuda_device ]]; then
  { LD_LIBRARY_PATH=$torch_cudnn/lib:${LD_LIBRARY_PATH:-} build-gpu/tests/test_cuda_device \
      --gtest_filter='CudaAttention.*' &&
    LD_LIBRARY_PATH=$torch_cudnn/lib:${LD_LIBRARY_PATH:-} build-gpu/tests/fastdit_backend_ops \
      --filter '[cudnn]'; } >"$logs/cudnn-torch.log" 2>&1
  cudnn_status=$?
fi

unit_status=0
if [[ ${GPU_CHECK_UNIT:-1} != 0 ]]; then  # CI runs these too; GPU_CHECK_UNIT=0 saves device time
  (cd build-gpu && ctest -LE gpu -j"$jobs" --output-on-failure --timeout 300) >"$logs/unit-tests.log" 2>&1
  unit_status=$?
fi

# The benchmark: fastdit and, when the reference source is carried (.ref), diffusers on
# the same shapes in the same run. GPU_CHECK_BENCH=0 skips it; GPU_CHECK_14B=1 adds 14B.
bench_status=skipped
if [[ ${GPU_CHECK_BENCH:-1} != 0 && -x build-gpu/fastdit ]]; then
  bash scripts/gpu-bench.sh build-gpu/fastdit "$logs" >"$logs/bench.log" 2>&1
  bench_status=$?
fi

echo "== gpu test output (numbers)"
# Throughputs, then the errors of the larger cases (every case is in gpu-tests.log).
grep -E "^[0-9]+: (attention|linear|cuDNN runtime|parity|bandwidth) " "$logs/gpu-tests.log" | sed 's/^[0-9]*: //' |
  grep -E "TFLOP|GB/s|refused|runtime|Sq333 Sk333 D128|linear (float32|bfloat16) +x\[3, 77|parity" | head -80
grep -B2 -A8 "Failure" "$logs/gpu-tests.log" | head -40
echo "== gpu tests: exit $gpu_status"
grep -E "tests passed|tests failed|\(Failed\)|\(Subprocess|Timeout|\*\*\*" "$logs/gpu-tests.log" | head -30
echo "== attention on PyTorch's cuDNN ($torch_cudnn): exit $cudnn_status"
grep -E "PASSED|FAILED|SKIPPED|cuDNN runtime" "$logs/cudnn-torch.log" 2>/dev/null | head -10
if [[ ${GPU_CHECK_UNIT:-1} != 0 ]]; then
  echo "== unit tests: exit $unit_status"
  grep -E "tests passed|tests failed|\(Failed\)" "$logs/unit-tests.log" | head -20
else
  echo "== unit tests: skipped (GPU_CHECK_UNIT=0)"
fi
echo "== benchmark: exit $bench_status"
grep -E "^(==|median|throughput|peak|diffusers|load|clocks|components)" "$logs/bench.log" 2>/dev/null | head -40
exit $(( build_status || gpu_status || unit_status ))
