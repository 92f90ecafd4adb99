#!/usr/bin/env bash
# Installs what fastdit needs to build and test from Debian packages. Safe to rerun:
# it installs only what is missing. python3-torch (1.13, CPU; about 48 MB to download and
# 90 s to install with its dependencies) is for the Python package's torch tests.
# --perf-report adds headless Chromium and its fonts, which scripts/perf-report.sh and the
# report check of tests/cli/perf.sh use.
set -euo pipefail

packages=(build-essential cmake ccache g++ clang libclang-rt-14-dev libomp-dev libopenblas-dev
          nlohmann-json3-dev libcli11-dev libgtest-dev googletest libbenchmark-dev
          python3 libdlpack-dev python3-numpy python3-torch)
[[ ${1:-} == --perf-report ]] && packages+=(chromium fonts-dejavu-core)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  echo "installing: ${missing[*]}" >&2
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
