#!/usr/bin/env bash
# The LongCat fixture run on the GPU machine (one call): key dump of the released config and
# every parity case, from the official code (SDPA-patched by the spec), into $OUT/longcat.tgz.
#   bash tools/reference/longcat_device.sh <LongCat-Video checkout> <diffusers src/> <commit> <out dir>
set -euo pipefail
ref=$1 diffusers=$2 commit=$3 out=$4
work=$(mktemp -d)
spec=tools/reference/specs/longcat.py
python3 tools/reference/dump_keys.py --ref "$ref" --ref "$diffusers" --ref-commit "$commit" --spec $spec \
  --out "$work/longcat/keys"
python3 tools/reference/make_cases.py --ref "$ref" --ref "$diffusers" --ref-commit "$commit" --spec $spec \
  --out "$work/longcat"
tar czf "$out/longcat.tgz" -C "$work" longcat
