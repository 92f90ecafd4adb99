// fastdit trace-diff A.jsonl B.jsonl: exit 0 when every paired record matches,
// 1 on divergence, 2 on bad input.
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "trace/trace_diff.h"

namespace fastdit::cli {

void add_trace_diff_command(CLI::App& app) {
  struct Args {
    std::string a, b;
    trace::DiffOptions options;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("trace-diff", "compare two activation traces and name the first divergence");
  cmd->add_option("a", args->a, "trace JSONL (e.g. fastdit's)")->required();
  cmd->add_option("b", args->b, "trace JSONL (e.g. the reference's)")->required();
  cmd->add_option("--rtol", args->options.rtol, "relative tolerance")->capture_default_str();
  cmd->add_option("--atol", args->options.atol, "absolute tolerance")->capture_default_str();
  cmd->callback([args] {
    const auto a = trace::read_trace(args->a);
    const auto b = trace::read_trace(args->b);
    FASTDIT_CHECK(!a.empty(), args->a, ": no trace records (an empty trace matches nothing)");
    FASTDIT_CHECK(!b.empty(), args->b, ": no trace records (an empty trace matches nothing)");
    const auto report = trace::diff_traces(a, b, args->options);
    FASTDIT_CHECK(report.pairs > 0, "no records in common between ", args->a, " (", a.size(), " records) and ",
                  args->b, " (", b.size(), " records)");
    FASTDIT_CHECK(report.compared > 0, args->a, " and ", args->b, ": the ", report.pairs,
                  " paired record(s) share no stat (abs_mean, sum, min, max, mean, std) and no shape: "
                  "nothing to compare, so no match can be claimed");
    trace::print_report(std::cout, report, args->options);
    exit_code() = report.first ? 1 : 0;
  });
}

}  // namespace fastdit::cli
