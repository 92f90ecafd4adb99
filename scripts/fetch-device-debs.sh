#!/usr/bin/env bash
# Run HERE (the build machine, Debian): downloads the Debian packages fastdit builds and
# tests against into .debs/ (git-ignored), for machines that lack them and cannot reach a
# package registry — the GPU machine. scripts/gpu-check.sh unpacks them there; device
# runs carry the folder (carry: [".debs"]).
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(libopenblas0 libopenblas0-pthread libopenblas-dev libopenblas-pthread-dev
          libgfortran5 libquadmath0 nlohmann-json3-dev libcli11-dev libgtest-dev googletest libdlpack-dev)
mkdir -p .debs
cd .debs
apt-get download "${packages[@]}"
ls -l
