// Each subcommand registers itself on the root CLI11 app. A command's callback
// throws fastdit::Error for bad input; main() turns that into "error: ..." and exit 2.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "core/error.h"

namespace fastdit::cli {

// The exit code of the command that ran (0 when none set one).
int& exit_code();

void add_inspect_command(CLI::App& app);
void add_keys_command(CLI::App& app);
void add_scaffold_command(CLI::App& app);
void add_parity_command(CLI::App& app);
void add_run_command(CLI::App& app);
void add_trace_diff_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_perf_command(CLI::App& app);

}  // namespace fastdit::cli
