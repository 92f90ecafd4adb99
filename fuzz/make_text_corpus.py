#!/usr/bin/env python3
"""Writes the seed corpora of the text-format fuzzers from the committed test fixtures:

  fuzz/corpus/trace/             activation-trace JSON lines (fuzz_trace_reader; a form feed
                                 splits an input into the two traces it diffs)
  fuzz/corpus/bench_definition/  benchmark definitions naming "model.json" (fuzz_bench_definition)
  fuzz/corpus/perf_record/       normalized records, and cohort files as '#' + JSON lines
                                 (fuzz_perf_record)

Small on purpose (a few KB each): the fuzzer finds the rest. Python stdlib only.
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def write(corpus, name, text):
    folder = os.path.join(HERE, "corpus", corpus)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w", encoding="utf-8", newline="") as f:
        f.write(text)


def trace_seeds():
    with open(os.path.join(FIXTURES, "wan", "t2v", "trace.jsonl"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    head = "\n".join(lines[:6]) + "\n"
    write("trace", "valid_reference_head.jsonl", head)
    changed = [json.loads(line) for line in lines[:6]]
    changed[3]["abs_mean"] = changed[3]["abs_mean"] * 9
    write("trace", "pair_diverging.jsonl", head + "\f" + "\n".join(json.dumps(r) for r in changed) + "\n")
    write("trace", "pair_shape_differs.jsonl",
          '{"module": "m", "tensor": "out", "step": 0, "sum": 1.5, "abs_mean": 0.5, "shape": [1, 3]}\n\f'
          '{"module": "m", "tensor": "out", "step": 0, "sum": 1.5, "abs_mean": 0.5, "shape": [3, 1]}\n')
    write("trace", "valid_repeated_calls_and_nan.jsonl",
          '{"module": "blocks.0.attn1", "tensor": "out", "step": 1, "abs_mean": null, "sum": null}\n'
          '{"module": "blocks.0.attn1", "tensor": "out", "step": 1, "abs_mean": 0.25, "sum": -3e+38}\r\n'
          '\n   \n'
          '{"module": "blocks.0.attn1", "tensor": "out", "step": 2, "min": -1, "max": 1, "mean": 0, "std": 1,'
          ' "shape": [], "dtype": "torch.bfloat16"}\n')
    write("trace", "stats_less.jsonl", '{"module": "a", "tensor": "out"}\n{"module": "b", "tensor": "out", "step": 3}\n')
    write("trace", "bad_types.jsonl", '{"module": 3, "tensor": "out"}\n{"module": "m", "tensor": "t", "step": 1.5}\n'
          '{"module": "m", "tensor": "t", "shape": ["x"]}\n{"module": "m", "tensor": "t", "sum": "1"}\n')
    write("trace", "bad_nesting.jsonl", '{"module": "m", "tensor": "t", "x": ' + "[" * 40 + "]" * 40 + "}\n")


def definition_seeds():
    with open(os.path.join(FIXTURES, "perf", "tiny-wan-cpu-forward.json"), encoding="utf-8") as f:
        definition = json.load(f)
    definition["model"]["config"] = "model.json"
    definition["description"] = "seed"
    write("bench_definition", "valid_tiny_cpu.json", json.dumps(definition, indent=1))
    gpu = json.loads(json.dumps(definition))
    gpu["run"] = {"device": "cuda", "dtype": "bfloat16", "fuse": "on", "cuda_graph": True}
    gpu["shape"]["vae_stride"] = [4, 16, 16]
    gpu["thresholds"] = {"H100": {"max_latency_s": 3, "max_peak_memory_mb": None}, "default": {}}
    del gpu["regression_thresholds"]
    write("bench_definition", "valid_cuda_graph.json", json.dumps(gpu))
    bad = json.loads(json.dumps(definition))
    bad["steps"] = 0
    bad["unknown_key"] = 1
    write("bench_definition", "bad_steps_and_key.json", json.dumps(bad))
    missing = json.loads(json.dumps(definition))
    missing["model"]["config"] = "../missing.json"
    write("bench_definition", "bad_missing_config.json", json.dumps(missing))


def record_seeds():
    records = os.path.join(FIXTURES, "perf", "records")
    for name in ("pass", "failed_run", "static_breach"):
        with open(os.path.join(records, name + ".json"), encoding="utf-8") as f:
            write("perf_record", name + ".json", json.dumps(json.load(f)))
    with open(os.path.join(records, "pass.json"), encoding="utf-8") as f:
        record = json.load(f)
    record["metrics"]["latency_s"] = -1
    write("perf_record", "bad_negative_latency.json", json.dumps(record))
    baselines = os.path.join(FIXTURES, "perf", "baselines", "test-synthetic-forward")
    cohort = sorted(os.listdir(baselines))[-1]  # the short H200 cohort
    with open(os.path.join(baselines, cohort), encoding="utf-8") as f:
        write("perf_record", "cohort_h200.jsonl", "#" + f.read())


if __name__ == "__main__":
    trace_seeds()
    definition_seeds()
    record_seeds()
