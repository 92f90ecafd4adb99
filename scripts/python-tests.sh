#!/usr/bin/env bash
# The Python package's tests: python/tests (unittest; torch is required), or the folder
# given first (python/gpu_tests on the GPU machine), with the venv's interpreter
# (scripts/python-env.sh), else $FASTDIT_PYTHON or Debian's python3; this tree's package
# first on the path. CTest runs it (label unit) with FASTDIT_LIBRARY set to the build's
# libfastdit.so. Further arguments go to unittest (e.g. -k Cases).
set -euo pipefail
cd "$(dirname "$0")/.."
folder=python/tests
if [[ $# -gt 0 && -d $1 ]]; then folder=$1; shift; fi
python=${FASTDIT_PYTHON:-.venv/bin/python}
[[ -x $python ]] || python=/usr/bin/python3
export PYTHONPATH=$PWD/python:$PWD/python/tests${PYTHONPATH:+:$PYTHONPATH}
exec "$python" -m unittest discover -s "$folder" -t "$folder" -v "$@"
