#!/usr/bin/env python3
"""Fills the scaffolded 'toy' family as a porter would, one step at a time.

    fill_linear_model.py <source root> modules   declares the one layer (proj_out)
    fill_linear_model.py <source root> forward   writes the forward: sample = proj_out(hidden_states)

Each edit replaces text the scaffold wrote; text that is not there is an error, so a
template change that breaks this walkthrough fails the test instead of passing it.
"""
import sys
from pathlib import Path

CLASS = "ToyTransformerModel"
EDITS = {
    "modules": [
        ("src/models/dits/toy.h", "  ParamNameMapping mapping_;\n",
         "  ParamNameMapping mapping_;\n  nn::ReplicatedLinear* proj_out_;\n"),
        ("src/models/dits/toy.cc", ': DiTModel("ToyTransformerModel"), config_(std::move(config)) {}\n',
         ': DiTModel("ToyTransformerModel"), config_(std::move(config)) {\n'
         '  proj_out_ = add_module<nn::ReplicatedLinear>("proj_out", config_.in_channels, config_.out_channels);\n'
         '}\n'),
    ],
    "forward": [
        ("src/models/dits/toy.cc",
         f"TensorMap {CLASS}::run(const TensorMap&, const ArgMap&) {{\n"
         f'  FASTDIT_FAIL("{CLASS}: forward is not ported yet (src/models/dits/toy.cc)");\n}}\n',
         f"TensorMap {CLASS}::run(const TensorMap& inputs, const ArgMap&) {{\n"
         "  const Tensor& x = inputs.at(\"hidden_states\");\n"
         "  return {{\"sample\", proj_out_->forward(ops::cast(x, proj_out_->weight->value.dtype()))}};\n}\n"),
    ],
}


def main(root, step):
    for path, old, new in EDITS[step]:
        file = Path(root) / path
        text = file.read_text()
        if text.count(old) != 1:
            sys.exit(f"{file}: the scaffold's text to replace is not there once:\n{old}")
        file.write_text(text.replace(old, new))


if __name__ == "__main__":
    main(*sys.argv[1:])
