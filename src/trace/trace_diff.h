// Pairs the records of two activation traces by (module, tensor, step, occurrence) and
// finds the first whose shape or stats differ beyond tolerance.
#pragma once

#include <iosfwd>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fastdit::trace {

struct TraceRecord {
  std::string module;
  std::string tensor;
  int64_t step = 0;
  int64_t occurrence = 0;  // how many earlier records share module, tensor and step
  nlohmann::ordered_json json;
  size_t line = 0;
};
// A trace file (a regular file of at most kMaxTraceBytes), or JSON lines from memory:
// records are objects of at most kMaxTraceLineBytes and kMaxTraceDepth nesting with string
// module and tensor, an integer step, numeric (or null) stats and an integer shape list.
inline constexpr size_t kMaxTraceBytes = size_t{1} << 30;
inline constexpr size_t kMaxTraceLineBytes = size_t{1} << 20;
inline constexpr size_t kMaxTraceDepth = 32;
std::vector<TraceRecord> read_trace(const std::string& path);
std::vector<TraceRecord> parse_trace(std::string_view text, const std::string& source);

struct DiffOptions {
  double rtol = 1e-4;
  double atol = 0.0;
};

struct StatDivergence {
  std::string stat;
  double a = 0, b = 0;
  double excess = 0;  // |a - b| / (atol + rtol * scale); > 1 means diverged
};

struct PairDiff {
  const TraceRecord* a = nullptr;
  const TraceRecord* b = nullptr;
  bool shape_differs = false;
  std::vector<StatDivergence> stats;  // every compared stat
  double worst = 0;                   // largest excess (infinite for shape differences)
  size_t compared = 0;                // stats and shapes both records hold
  bool diverged() const { return worst > 1.0; }
};

struct DiffReport {
  size_t pairs = 0;
  size_t only_a = 0, only_b = 0;
  std::optional<PairDiff> first;  // in A's order
  std::vector<PairDiff> worst;    // the largest divergences, worst first
  size_t diverged = 0;
  size_t compared = 0;  // stats and shapes compared over every pair: 0 means nothing was judged
};

// sum and mean are judged against the tensor's magnitude (abs_mean, times numel for
// sum when the shape is recorded), since a mean-zero output (a norm's, say) has a sum
// that is pure cancellation noise.
DiffReport diff_traces(const std::vector<TraceRecord>& a, const std::vector<TraceRecord>& b,
                       const DiffOptions& options);
void print_report(std::ostream& out, const DiffReport& report, const DiffOptions& options);

}  // namespace fastdit::trace
