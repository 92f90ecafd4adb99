// fastdit parity <case>: runs a parity case through the production loader and
// compares with the reference output (contract in DESIGN.md).
#include <cstdio>
#include <iostream>

#include "cli/common.h"
#include "loader/safetensors.h"
#include "loader/transformer_loader.h"

namespace fastdit::cli {

namespace {

struct ParityArgs {
  std::string case_dir;
  RunOptions run;
};

std::string format_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3e", v);
  return buf;
}

int run_parity(const ParityArgs& args) {
  namespace fs = std::filesystem;
  const fs::path dir = args.case_dir;
  FASTDIT_CHECK(fs::is_directory(dir), dir.string(), ": not a parity case directory");
  for (const char* f : {"inputs.safetensors", "outputs.safetensors"})
    FASTDIT_CHECK(fs::exists(dir / f), dir.string(), ": missing ", f);
  const Device device = args.run.parsed_device();
  const DType dtype = args.run.parsed_dtype();

  const SafetensorsFile outputs = SafetensorsFile::open(dir / "outputs.safetensors");
  FASTDIT_CHECK(outputs.contains("sample"), (dir / "outputs.safetensors").string(),
                ": no 'sample' tensor (the float32 reference output)");
  const Tensor reference = outputs.tensor("sample").to(DType::Float32);

  PreparedModel prepared = prepare_model(dir / "transformer", {device, dtype});
  DiTModel& model = prepared.model();
  const TensorMap inputs = read_model_inputs(dir / "inputs.safetensors", model, device);
  const Tensor out = model.forward(inputs).at("sample").to(Device::cpu(), DType::Float32);

  double bound = 1e-4;
  std::string bound_note = "float32 bound";
  if (dtype != DType::Float32) {
    bound = 1e-2;
    bound_note = "bf16 bound without a reference bf16 run";
    if (outputs.contains("sample_bf16")) {
      const double ref_bf16 = compare(outputs.tensor("sample_bf16"), reference).rel_l2;
      bound = std::max(1.5 * ref_bf16, 1e-3);
      bound_note = "1.5 x reference bf16 rel_l2 " + format_number(ref_bf16) + ", at least 1e-3";
    }
  }
  std::cout << "case      " << dir.string() << "\n"
            << "model     " << model.type_name() << " on " << device.str() << " in "
            << dtype_name(dtype) << "\n"
            << "output    " << shape_str(out.shape()) << "\n"
            << "bound     rel_l2 <= " << format_number(bound) << " (" << bound_note << ")\n";
  const Comparison c = compare(out, reference);
  const bool pass = c.rel_l2 <= bound;  // NaN fails
  std::cout << (pass ? "PASS" : "FAIL") << " rel_l2=" << format_number(c.rel_l2)
            << " max_abs=" << format_number(c.max_abs)
            << (pass ? "" : " bound=" + format_number(bound)) << std::endl;
  return pass ? 0 : 1;
}

}  // namespace

void add_parity_command(CLI::App& app) {
  auto args = std::make_shared<ParityArgs>();
  auto* cmd = app.add_subcommand("parity", "run a parity case and compare with the reference output");
  cmd->add_option("case", args->case_dir, "parity case directory")->required();
  add_run_options(*cmd, args->run);
  cmd->callback([args] { exit_code() = run_parity(*args); });
}

}  // namespace fastdit::cli
