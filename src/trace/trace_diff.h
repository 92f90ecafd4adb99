// Pairs the records of two activation traces by (module, tensor, step, occurrence) and
// finds the first whose shape or stats differ beyond tolerance.
#pragma once

#include <iosfwd>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
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
std::vector<TraceRecord> read_trace(const std::string& path);

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
  bool diverged() const { return worst > 1.0; }
};

struct DiffReport {
  size_t pairs = 0;
  size_t only_a = 0, only_b = 0;
  std::optional<PairDiff> first;  // in A's order
  std::vector<PairDiff> worst;    // the largest divergences, worst first
  size_t diverged = 0;
};

// sum and mean are judged against the tensor's magnitude (abs_mean, times numel for
// sum when the shape is recorded), since a mean-zero output (a norm's, say) has a sum
// that is pure cancellation noise.
DiffReport diff_traces(const std::vector<TraceRecord>& a, const std::vector<TraceRecord>& b,
                       const DiffOptions& options);
void print_report(std::ostream& out, const DiffReport& report, const DiffOptions& options);

}  // namespace fastdit::trace
