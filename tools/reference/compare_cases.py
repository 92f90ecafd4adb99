#!/usr/bin/env python3
"""Compares two parity fixture folders (e.g. the shipped one and one remade by make_cases.py)
file by file and tensor by tensor.

    compare_cases.py <shipped folder> <remade folder> [--cases a,b]

For every case folder of the first: each .safetensors file tensor by tensor (names, dtype,
shape, then `identical` or the max abs difference) and its metadata; each .json file
(config.json, the shard index, keys dumps) as JSON; trace.jsonl record by record (module,
tensor, step, shape, dtype equal; max abs difference of the numeric stats); files only in one
side. Then manifest.json case by case, key by key, and keys/ if present. Needs numpy alone
(safetensors files are read directly), so it runs anywhere.

Exit status 0 when every tensor, config and trace record is identical; 1 otherwise. The
manifest and the outputs' metadata describe how a file was made (generator, check wording,
torch version), so their differences are listed as notes and do not count.
"""

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_, "BF16": np.uint16}


def read_safetensors(path):
    """({name: (dtype string, shape, numpy array as float64 or raw)}, metadata)."""
    data = Path(path).read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    metadata = header.pop("__metadata__", {})
    body = data[8 + size:]
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        raw = np.frombuffer(body[begin:end], dtype=DTYPES[entry["dtype"]]).reshape(entry["shape"])
        if entry["dtype"] == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = (entry["dtype"], list(entry["shape"]), raw)
    return tensors, metadata


class Report:
    def __init__(self):
        self.failures = 0
        self.notes = 0

    def same(self, what):
        print(f"  identical  {what}")

    def differ(self, what, how):
        self.failures += 1
        print(f"  DIFFERS    {what}: {how}")

    def note(self, what, how):
        self.notes += 1
        print(f"  note       {what}: {how}")


def compare_safetensors(a_path, b_path, rel, report, metadata_is_note=True):
    a, a_meta = read_safetensors(a_path)
    b, b_meta = read_safetensors(b_path)
    for name in sorted(set(a) | set(b)):
        what = f"{rel}:{name}"
        if name not in b or name not in a:
            report.differ(what, "only in " + ("the first" if name in a else "the second"))
            continue
        (a_dtype, a_shape, a_val), (b_dtype, b_shape, b_val) = a[name], b[name]
        if (a_dtype, a_shape) != (b_dtype, b_shape):
            report.differ(what, f"{a_dtype}{a_shape} vs {b_dtype}{b_shape}")
        elif a_val.tobytes() == b_val.tobytes():
            report.same(f"{what} {a_dtype}{a_shape}")
        else:
            diff = np.abs(a_val.astype(np.float64) - b_val.astype(np.float64))
            scale = np.abs(a_val.astype(np.float64)).max() or 1.0
            report.differ(what, f"max abs diff {diff.max():.3e} (max |value| {scale:.3e}), "
                                f"{int((diff > 0).sum())} of {diff.size} elements")
    if a_meta != b_meta:
        keys = sorted(k for k in set(a_meta) | set(b_meta) if a_meta.get(k) != b_meta.get(k))
        how = "; ".join(f"{k}: {a_meta.get(k)!r} -> {b_meta.get(k)!r}" for k in keys)
        (report.note if metadata_is_note else report.differ)(f"{rel} metadata", how)


def json_diff(a, b, path=""):
    """[(path, a value, b value)] where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in json_diff(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in json_diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [(path or ".", a, b)]


def compare_json(a_path, b_path, rel, report):
    diffs = json_diff(json.loads(Path(a_path).read_text()), json.loads(Path(b_path).read_text()))
    if diffs:
        report.differ(rel, "; ".join(f"{p}: {x!r} -> {y!r}" for p, x, y in diffs[:8]))
    else:
        report.same(rel + (" (bytes too)" if Path(a_path).read_bytes() == Path(b_path).read_bytes() else ""))


def compare_trace(a_path, b_path, rel, report):
    a = [json.loads(line) for line in Path(a_path).read_text().splitlines() if line.strip()]
    b = [json.loads(line) for line in Path(b_path).read_text().splitlines() if line.strip()]
    if len(a) != len(b):
        report.differ(rel, f"{len(a)} vs {len(b)} records")
        return
    worst, worst_at = 0.0, None
    for i, (x, y) in enumerate(zip(a, b)):
        if sorted(x) != sorted(y) or any(x[k] != y[k] for k in x if not isinstance(x[k], float)):
            report.differ(rel, f"record {i} differs in its keys or labels: {x} vs {y}")
            return
        for k, v in x.items():
            if isinstance(v, float) and abs(v - y[k]) > worst:
                worst, worst_at = abs(v - y[k]), f"record {i} {x['module']} {x['tensor']} {k}"
    if worst_at is None:
        report.same(f"{rel} ({len(a)} records)")
    else:
        report.differ(rel, f"{len(a)} records, max abs stat diff {worst:.3e} at {worst_at}")


def compare_folder(a_dir, b_dir, rel, report):
    a_files = {p.relative_to(a_dir).as_posix() for p in a_dir.rglob("*") if p.is_file()}
    b_files = {p.relative_to(b_dir).as_posix() for p in b_dir.rglob("*") if p.is_file()}
    for name in sorted(a_files | b_files):
        what = f"{rel}/{name}"
        if name not in a_files or name not in b_files:
            report.differ(what, "only in " + ("the first" if name in a_files else "the second"))
        elif name.endswith(".safetensors"):
            compare_safetensors(a_dir / name, b_dir / name, what, report)
        elif name.endswith(".json"):
            compare_json(a_dir / name, b_dir / name, what, report)
        elif name.endswith(".jsonl"):
            compare_trace(a_dir / name, b_dir / name, what, report)
        elif (a_dir / name).read_bytes() == (b_dir / name).read_bytes():
            report.same(what)
        else:
            report.differ(what, "bytes differ")


def compare_manifest(a_path, b_path, cases, report):
    a, b = json.loads(Path(a_path).read_text()), json.loads(Path(b_path).read_text())
    for key in sorted((set(a) | set(b)) - {"cases"}):
        if a.get(key) != b.get(key):
            report.note(f"manifest {key}", f"{a.get(key)!r} -> {b.get(key)!r}")
    for name in cases:
        entry_a, entry_b = a["cases"].get(name), b["cases"].get(name)
        if entry_a is None or entry_b is None:
            report.note(f"manifest case {name}", "only in " + ("the first" if entry_b is None else "the second"))
            continue
        diffs = json_diff(entry_a, entry_b)
        if not diffs:
            report.same(f"manifest case {name}")
        for path, x, y in diffs:
            if isinstance(x, float) and isinstance(y, float):
                report.note(f"manifest {name}{path}", f"{x!r} -> {y!r} (abs diff {abs(x - y):.2e})")
            else:
                report.note(f"manifest {name}{path}", f"{x!r} -> {y!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path, help="fixture folder (e.g. tests/fixtures/<family>)")
    parser.add_argument("second", type=Path, help="fixture folder to compare with (e.g. a remade one)")
    parser.add_argument("--cases", help="comma list of case names (default: the first's manifest cases)")
    args = parser.parse_args()
    for folder in (args.first, args.second):
        if not (folder / "manifest.json").is_file():
            sys.exit(f"error: {folder} holds no manifest.json")
    manifest = json.loads((args.first / "manifest.json").read_text())
    cases = args.cases.split(",") if args.cases else list(manifest["cases"])
    report = Report()
    for name in cases:
        print(f"{name}:")
        if not (args.second / name).is_dir():
            report.differ(name, f"no case folder in {args.second}")
            continue
        compare_folder(args.first / name, args.second / name, name, report)
    if (args.first / "keys").is_dir() and (args.second / "keys").is_dir():
        print("keys:")
        compare_folder(args.first / "keys", args.second / "keys", "keys", report)
    print("manifest.json:")
    compare_manifest(args.first / "manifest.json", args.second / "manifest.json", cases, report)
    verdict = "IDENTICAL" if not report.failures else f"{report.failures} DIFFERENCES"
    print(f"{args.first} vs {args.second}: {verdict} (tensors, configs, traces); {report.notes} notes "
          f"(manifest, metadata)")
    sys.exit(1 if report.failures else 0)


if __name__ == "__main__":
    main()
