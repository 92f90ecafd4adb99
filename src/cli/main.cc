#include <cstdlib>
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "core/files.h"

namespace fastdit::cli {
int& exit_code() {
  static int code = 0;
  return code;
}
}  // namespace fastdit::cli

int main(int argc, char** argv) {
  // An output that is one of the command's inputs is refused (core/files.h).
  fastdit::set_input_tracking(true);
  CLI::App app{"fastdit: native inference engine for diffusion transformers"};
  app.require_subcommand(1);
  fastdit::cli::add_inspect_command(app);
  fastdit::cli::add_keys_command(app);
  fastdit::cli::add_scaffold_command(app);
  fastdit::cli::add_parity_command(app);
  fastdit::cli::add_run_command(app);
  fastdit::cli::add_trace_diff_command(app);
  fastdit::cli::add_bench_command(app);
  fastdit::cli::add_generate_command(app);
  fastdit::cli::add_perf_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  } catch (const fastdit::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    if (std::getenv("FASTDIT_DEBUG") && !e.where().empty()) std::cerr << "  at " << e.where() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  return fastdit::cli::exit_code();
}
