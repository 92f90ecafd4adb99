#include "trace/trace_diff.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <map>
#include <ostream>
#include <tuple>

#include "core/error.h"
#include "core/files.h"

namespace fastdit::trace {

namespace {
using Key = std::tuple<std::string, std::string, int64_t, int64_t>;
Key key_of(const TraceRecord& r) { return {r.module, r.tensor, r.step, r.occurrence}; }

double number(const nlohmann::ordered_json& v) {
  return v.is_number() ? v.get<double>() : NAN;  // null (NaN written by JSON) stays NaN
}

std::optional<double> numel_of(const nlohmann::ordered_json& record) {
  auto it = record.find("shape");
  if (it == record.end() || !it->is_array()) return std::nullopt;
  double n = 1;
  for (const auto& d : *it) n *= d.get<double>();
  return n;
}

double scale_for(const std::string& stat, double a, double b, const TraceRecord& ra, const TraceRecord& rb) {
  double scale = std::max(std::fabs(a), std::fabs(b));
  if ((stat == "sum" || stat == "mean") && ra.json.contains("abs_mean") && rb.json.contains("abs_mean")) {
    double magnitude = std::max(std::fabs(number(ra.json["abs_mean"])), std::fabs(number(rb.json["abs_mean"])));
    if (stat == "sum") {
      const auto n = numel_of(ra.json);
      if (!n) return scale;
      magnitude *= *n;
    }
    scale = std::max(scale, magnitude);
  }
  return scale;
}

PairDiff compare_pair(const TraceRecord& a, const TraceRecord& b, const DiffOptions& options) {
  PairDiff diff{&a, &b};
  if (a.json.contains("shape") && b.json.contains("shape") && a.json["shape"] != b.json["shape"]) {
    diff.shape_differs = true;
    diff.worst = INFINITY;
  }
  if (a.json.contains("shape") && b.json.contains("shape")) ++diff.compared;
  for (const char* stat : {"abs_mean", "sum", "min", "max", "mean", "std"}) {
    if (!a.json.contains(stat) || !b.json.contains(stat)) continue;
    const double x = number(a.json[stat]), y = number(b.json[stat]);
    const double allowed = options.atol + options.rtol * scale_for(stat, x, y, a, b);
    double excess;
    if (std::isnan(x) || std::isnan(y)) {
      excess = std::isnan(x) && std::isnan(y) ? 0 : INFINITY;
    } else {
      excess = allowed > 0 ? std::fabs(x - y) / allowed : (x == y ? 0 : INFINITY);
    }
    diff.stats.push_back({stat, x, y, excess});
    ++diff.compared;
    diff.worst = std::max(diff.worst, excess);
  }
  return diff;
}
}  // namespace

namespace {
const char* const kComparedStats[] = {"abs_mean", "sum", "min", "max", "mean", "std"};
}  // namespace

std::vector<TraceRecord> parse_trace(std::string_view text, const std::string& source) {
  std::vector<TraceRecord> records;
  std::map<std::tuple<std::string, std::string, int64_t>, int64_t> seen;
  size_t number = 0;
  for (size_t begin = 0; begin < text.size();) {
    size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(begin, end - begin);
    begin = end + 1;
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    FASTDIT_CHECK(line.size() <= kMaxTraceLineBytes, source, ":", number, ": line of ", line.size(),
                  " bytes, more than the ", kMaxTraceLineBytes, " a trace record may have");
    check_json_depth(line, kMaxTraceDepth, source + ":" + std::to_string(number));
    auto json = nlohmann::ordered_json::parse(line, nullptr, false);
    FASTDIT_CHECK(!json.is_discarded() && json.is_object(), source, ":", number, ": not a JSON object");
    FASTDIT_CHECK(json.contains("module") && json["module"].is_string() && json.contains("tensor") &&
                      json["tensor"].is_string(),
                  source, ":", number, ": record needs string keys 'module' and 'tensor'");
    TraceRecord r;
    r.module = json["module"];
    r.tensor = json["tensor"];
    if (json.contains("step")) {
      FASTDIT_CHECK(json["step"].is_number_integer(), source, ":", number, ": 'step' must be an integer");
      r.step = json["step"];
    }
    for (const char* stat : kComparedStats)
      FASTDIT_CHECK(!json.contains(stat) || json[stat].is_number() || json[stat].is_null(), source, ":", number,
                    ": '", stat, "' must be a number (or null for NaN)");
    if (json.contains("shape")) {
      const auto& shape = json["shape"];
      FASTDIT_CHECK(shape.is_array() && shape.size() <= 64 &&
                        std::all_of(shape.begin(), shape.end(),
                                    [](const auto& d) { return d.is_number_integer() && d.template get<int64_t>() >= 0; }),
                    source, ":", number, ": 'shape' must be a list of at most 64 non-negative integers");
    }
    r.occurrence = seen[{r.module, r.tensor, r.step}]++;
    r.json = std::move(json);
    r.line = number;
    records.push_back(std::move(r));
  }
  return records;
}

std::vector<TraceRecord> read_trace(const std::string& path) {
  return parse_trace(read_regular_file(path, kMaxTraceBytes), path);
}

DiffReport diff_traces(const std::vector<TraceRecord>& a, const std::vector<TraceRecord>& b,
                       const DiffOptions& options) {
  std::map<Key, const TraceRecord*> by_key;
  for (const auto& r : b) by_key[key_of(r)] = &r;
  DiffReport report;
  std::vector<PairDiff> diverged;
  for (const auto& r : a) {
    auto it = by_key.find(key_of(r));
    if (it == by_key.end()) {
      ++report.only_a;
      continue;
    }
    ++report.pairs;
    PairDiff diff = compare_pair(r, *it->second, options);
    report.compared += diff.compared;
    if (!diff.diverged()) continue;
    ++report.diverged;
    if (!report.first) report.first = diff;
    diverged.push_back(std::move(diff));
  }
  report.only_b = b.size() - report.pairs;
  std::stable_sort(diverged.begin(), diverged.end(),
                   [](const PairDiff& x, const PairDiff& y) { return x.worst > y.worst; });
  if (diverged.size() > 10) diverged.resize(10);
  report.worst = std::move(diverged);
  return report;
}

namespace {
std::string label(const TraceRecord& r) {
  std::string s = r.module + " [" + r.tensor + "] step " + std::to_string(r.step);
  if (r.occurrence) s += " call " + std::to_string(r.occurrence);
  return s;
}
}  // namespace

void print_report(std::ostream& out, const DiffReport& report, const DiffOptions& options) {
  out << "paired " << report.pairs << " records (" << report.only_a << " only in A, " << report.only_b
      << " only in B); tolerance rtol=" << options.rtol << " atol=" << options.atol << "\n";
  if (!report.first) {
    out << "all paired records match\n";
    return;
  }
  const PairDiff& f = *report.first;
  out << "first divergence: " << label(*f.a) << " (A line " << f.a->line << ", B line " << f.b->line << ")\n";
  if (f.shape_differs) out << "  shape  A " << f.a->json["shape"].dump() << "  B " << f.b->json["shape"].dump() << "\n";
  out << std::setprecision(9);
  for (const auto& s : f.stats)
    out << "  " << std::left << std::setw(9) << s.stat << " A " << std::setw(16) << s.a << " B " << std::setw(16)
        << s.b << (s.excess > 1 ? "  <-- " : "  ") << "x" << std::setprecision(3) << s.excess
        << " of tolerance" << std::setprecision(9) << "\n";
  out << report.diverged << " diverged record(s); worst:\n";
  for (const auto& d : report.worst) {
    const StatDivergence* top = nullptr;
    for (const auto& s : d.stats)
      if (!top || s.excess > top->excess) top = &s;
    out << "  " << std::left << std::setw(48) << label(*d.a);
    if (d.shape_differs) out << " shape " << d.a->json["shape"].dump() << " vs " << d.b->json["shape"].dump();
    else if (top) out << " " << top->stat << " " << top->a << " vs " << top->b << " (x" << std::setprecision(3) << top->excess << ")" << std::setprecision(9);
    out << "\n";
  }
}

}  // namespace fastdit::trace
