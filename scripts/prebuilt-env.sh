# Sourced by the scripts that run prebuilt binaries on the GPU machine (gpu-prebuilt-check.sh,
# fp8-gpu-check.sh), from the repository root.
#   pack_binaries OUT: the binaries those scripts run (those built), stripped, into one tarball.
#   use_binaries TARBALL DIR: unpacks them into DIR and sets up what they need to run there:
#     the Debian libraries of .debs/ (device-deps.sh), the CUDA toolkit's and PyTorch's wheels'
#     libraries, FASTDIT_SOURCE_DIR; says which libraries are missing.
#   prebuilt_start: both of the above as a script's first step (below).
#   logs_apart NAME / pack_logs: the logs written apart and brought back as one tarball.
#   step NAME SECONDS COMMAND...: runs the command into $logs/NAME.log under a time limit and
#     records "NAME: exit S in T s" in the summary array.
pack_binaries() {
  local out=$1 stage
  mkdir -p "$(dirname "$out")"
  stage=$(mktemp -d)
  cp build/fastdit build/tests/fastdit_backend_ops "$stage/"
  for t in test_cuda_device test_cuda_graph test_cuda_fp8 test_fp8 test_cuda_attention_8bit test_attention_8bit; do
    [[ -x build/tests/$t ]] && cp "build/tests/$t" "$stage/"
  done
  strip "$stage"/*
  tar cJf "$out" -C "$stage" .
  rm -rf "$stage"
  ls -la "$out"
}

use_binaries() {
  local tarball=$1 dir=$2 wheels missing
  rm -rf "$dir" && mkdir -p "$dir" && tar xJf "$tarball" -C "$dir"
  source scripts/device-deps.sh
  export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  wheels=$(python3 -c 'import nvidia, os; print(" ".join(sorted(os.path.join(p, d, "lib") for p in nvidia.__path__ for d in os.listdir(p))))' 2>/dev/null)
  for d in $wheels; do [[ -d $d ]] && LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d; done
  export FASTDIT_SOURCE_DIR=$PWD
  missing=$(ldd "$dir/fastdit" | grep "not found")
  [[ -n $missing ]] && echo "missing libraries: $missing"
  return 0
}

# prebuilt_start DEFAULT_LOGS BIN_DIR ARGS...: `--pack OUT` packs and exits; else unpacks the
# tarball ARGS[0] into BIN_DIR (use_binaries) and sets `logs` ($OUT, else DEFAULT_LOGS) and `bin`.
prebuilt_start() {
  local default_logs=$1
  bin=$2
  shift 2
  if [[ ${1:-} == --pack ]]; then
    pack_binaries "$2"
    exit 0
  fi
  logs=${OUT:-$default_logs}
  mkdir -p "$logs"
  use_binaries "$1" "$bin"
}

# logs_apart NAME: the device tool brings back at most eight files from $OUT, so the logs go to
# /tmp/NAME instead and pack_logs tars them into one $OUT/NAME.tgz at the end (Nsight Compute
# .ncu-rep reports left out; export their CSV pages). Call after prebuilt_start.
logs_apart() {
  out=$logs
  logs_name=$1
  logs=/tmp/$1
  rm -rf "$logs" && mkdir -p "$logs"
}
pack_logs() {
  tar czf "$out/$logs_name.tgz" --exclude='*.ncu-rep' -C "$logs" .
  ls -la "$out"
}

summary=()
step() {
  local name=$1 seconds=$2 start=$SECONDS
  shift 2
  timeout "$seconds" "$@" >"$logs/$name.log" 2>&1
  local status=$?
  summary+=("$name: exit $status in $((SECONDS - start)) s")
  echo "== $name: exit $status in $((SECONDS - start)) s"
  return $status
}
