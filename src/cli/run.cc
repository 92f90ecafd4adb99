// fastdit run <model> --inputs in.safetensors --output out.safetensors: one forward.
#include <iostream>

#include "cli/common.h"
#include "loader/safetensors.h"
#include "loader/transformer_loader.h"

namespace fastdit::cli {

namespace {
struct RunArgs {
  std::string model_dir, inputs, output;
  RunOptions run;
};

void run_model(const RunArgs& args) {
  const Device device = args.run.parsed_device();
  PreparedModel prepared = prepare_model(args.model_dir, args.run.load_options(true));
  const TensorMap inputs = read_model_inputs(args.inputs, prepared.model(), device);
  const TensorMap outputs = prepared.model().forward(inputs);
  std::vector<std::pair<std::string, Tensor>> named;
  for (const auto& [name, tensor] : outputs) named.emplace_back(name, tensor.to(Device::cpu()));
  write_safetensors(args.output, named);
  for (const auto& [name, tensor] : named) std::cerr << "wrote " << name << " " << tensor.str() << "\n";
}
}  // namespace

void add_run_command(CLI::App& app) {
  auto args = std::make_shared<RunArgs>();
  auto* cmd = app.add_subcommand("run", "run one forward of a model on named inputs");
  cmd->add_option("model", args->model_dir, "model or transformer directory")->required();
  cmd->add_option("--inputs", args->inputs, "safetensors with the forward's inputs")->required();
  cmd->add_option("--output", args->output, "safetensors to write ('sample')")->required();
  add_run_options(*cmd, args->run);
  cmd->callback([args] { run_model(*args); });
}

}  // namespace fastdit::cli
