#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>
#include <utility>

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
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // Usage errors read as every other error: `error: ...`, exit 2.
    std::string commands;
    for (const CLI::App* sub : std::as_const(app).get_subcommands([](const CLI::App*) { return true; }))
      commands += (commands.empty() ? "" : ", ") + sub->get_name();
    const bool no_command = argc < 2 || std::string_view(argv[1]).starts_with("-");
    if (app.get_subcommands().empty() && !no_command)
      std::cerr << "error: unknown command '" << argv[1] << "' (commands: " << commands << ")\n";
    else if (app.get_subcommands().empty())
      std::cerr << "error: give a command (" << commands << "); fastdit --help says more\n";
    else
      std::cerr << "error: " << app.get_subcommands().front()->get_name() << ": " << e.what() << "\n";
    return 2;
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
