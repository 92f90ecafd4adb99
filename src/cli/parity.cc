// fastdit parity <case>: runs a parity case through the production loader and compares
// every output head with its reference, one line per head. Last line: PASS/FAIL
// rel_l2=<worst head> max_abs=<worst head>; exit 0 only on PASS (1 on FAIL, 2 on bad input).
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli/common.h"
#include "parity/parity_case.h"

namespace fastdit::cli {

namespace {

std::string scientific(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3e", v);
  return buf;
}

int run_parity(const std::string& case_dir, const RunOptions& run, const ParallelRun& parallel) {
  const LoadOptions load = parallel.load_options(run, false);
  const ParityResult r =
      run_parity_case(case_dir, load.device, load.dtype, load.fuse_projections, load.sequence_parallel, load.precision);
  const std::string ranks = parallel.world_size() > 1 ? " x " + std::to_string(parallel.world_size()) + " ranks" : "";
  std::cout << "case      " << case_dir << "\n"
            << "model     " << r.model_type << " on " << load.device.str() << ranks << " in " << dtype_name(load.dtype)
            << (load.precision == Precision::Fp8 ? " (precision fp8)" : "") << "\n";
  std::istringstream heads(head_lines(r));
  for (std::string line; std::getline(heads, line);) std::cout << "head      " << line << "\n";
  if (!r.divergence_report.empty()) std::cout << r.divergence_report;
  if (r.first_divergence) std::cout << "first divergent module: " << *r.first_divergence << "\n";
  std::string failed;
  for (const HeadResult& h : r.heads)
    if (!h.pass) failed += (failed.empty() ? "" : ",") + h.name;
  std::cout << (r.pass ? "PASS" : "FAIL") << " rel_l2=" << scientific(r.rel_l2)
            << " max_abs=" << scientific(r.max_abs) << (r.pass ? "" : " heads=" + failed)
            << (r.first_divergence ? " first_divergence=" + *r.first_divergence : "") << std::endl;
  return r.pass ? 0 : 1;
}

}  // namespace

void add_parity_command(CLI::App& app) {
  auto case_dir = std::make_shared<std::string>();
  auto run = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand("parity", "run a parity case and compare with the reference output");
  cmd->add_option("case", *case_dir, "parity case directory")->required();
  add_run_options(*cmd, *run);
  cmd->callback([case_dir, run] {
    exit_code() = run_parallel(*run, [&](ParallelRun& parallel) { return run_parity(*case_dir, *run, parallel); });
  });
}

}  // namespace fastdit::cli
