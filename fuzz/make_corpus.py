#!/usr/bin/env python3
"""Writes the seed corpus of the safetensors fuzzer into fuzz/corpus/safetensors/.

valid_* files must parse and bad_* files must be refused; the SafetensorsCorpus test in
tests/unit/test_safetensors.cc replays them with that expectation. Python stdlib only.
"""
import json
import os
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "safetensors")


def pack(header, data=b"", pad=True):
    """A safetensors file from a header (dict or raw text) and its data section."""
    text = header if isinstance(header, (str, bytes)) else json.dumps(header, separators=(",", ":"))
    text = text.encode() if isinstance(text, str) else text
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def valid_files():
    f32 = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
    every_dtype = [("F64", 8), ("F32", 4), ("BF16", 2), ("F16", 2), ("F8_E4M3", 1),
                   ("F8_E5M2", 1), ("I64", 8), ("I32", 4), ("I16", 2), ("I8", 1),
                   ("U64", 8), ("U32", 4), ("U16", 2), ("U8", 1), ("BOOL", 1)]
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for code, size in every_dtype:
        header["t_" + code.lower()] = entry(code, [2], offset, offset + 2 * size)
        offset += 2 * size
    header["scalar"] = entry("F32", [], offset, offset + 4)
    header["empty"] = entry("F32", [0, 4], offset + 4, offset + 4)
    return {
        "valid_empty_header": pack({}),
        "valid_f32_with_metadata": pack({"__metadata__": {"format": "pt"},
                                         "weight": entry("F32", [2, 3], 0, 24)}, f32),
        "valid_every_dtype": pack(header, bytes(range(offset + 4))),
        # An unpadded header puts the data at an odd address; a gap between tensors is allowed.
        "valid_unaligned_with_gap": pack({"a": entry("F32", [1], 0, 4),
                                          "b": entry("F16", [2], 8, 12)}, bytes(12), pad=False),
    }


def bad_files():
    weight = entry("F32", [2, 3], 0, 24)
    return {
        "bad_too_short": b"\x08\x00\x00\x00\x00",
        "bad_header_length_beyond_file": struct.pack("<Q", 4096) + b"{}",
        "bad_header_length_huge": struct.pack("<Q", 2**63) + b"{}      ",
        "bad_json": pack('{"weight": {"dtype": "F32",'),
        "bad_number_overflow": pack('{"w": 1e99999}'),
        "bad_header_not_object": pack("[1, 2, 3]"),
        "bad_trailing_garbage": pack('{} x'),
        "bad_duplicate_tensor": pack('{"w":%s,"w":%s}' % (json.dumps(weight), json.dumps(weight)),
                                     bytes(24)),
        "bad_metadata_not_string": pack({"__metadata__": {"step": 3}}),
        "bad_unknown_dtype": pack({"w": entry("F33", [2, 3], 0, 24)}, bytes(24)),
        "bad_negative_shape": pack({"w": entry("F32", [-2, 3], 0, 24)}, bytes(24)),
        "bad_float_shape": pack({"w": entry("F32", [2.0, 3], 0, 24)}, bytes(24)),
        "bad_overflowing_shape": pack({"w": entry("F32", [2**32, 2**32], 0, 0)}),
        "bad_offsets_beyond_data": pack({"w": weight}, bytes(20)),
        "bad_offsets_reversed": pack({"w": entry("F32", [0], 8, 4)}, bytes(8)),
        "bad_size_mismatch": pack({"w": entry("BF16", [2, 3], 0, 24)}, bytes(24)),
        "bad_overlap": pack({"a": weight, "b": entry("F32", [2, 3], 16, 40)}, bytes(40)),
        "bad_missing_offsets": pack({"w": {"dtype": "F32", "shape": [1]}}, bytes(4)),
        "bad_extra_key": pack({"w": dict(weight, extra=1)}, bytes(24)),
        "bad_not_utf8": pack(b'{"\xff": {}}'),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, content in {**valid_files(), **bad_files()}.items():
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(content)
    return 0


if __name__ == "__main__":
    sys.exit(main())
