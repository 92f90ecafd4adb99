#include "trace/trace_diff.h"
#include "core/json_depth.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <map>
#include <ostream>
#include <tuple>

#include "core/error.h"

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
    diff.worst = std::max(diff.worst, excess);
  }
  return diff;
}
}  // namespace

std::vector<TraceRecord> read_trace(const std::string& path) {
  std::ifstream in(path);
  FASTDIT_CHECK(in.good(), path, ": cannot open trace");
  std::vector<TraceRecord> records;
  std::map<std::tuple<std::string, std::string, int64_t>, int64_t> seen;
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    check_json_depth(line, path + ":" + std::to_string(number));
    auto json = nlohmann::ordered_json::parse(line, nullptr, false);
    FASTDIT_CHECK(!json.is_discarded() && json.is_object(), path, ":", number, ": not a JSON object");
    FASTDIT_CHECK(json.contains("module") && json["module"].is_string() && json.contains("tensor") &&
                      json["tensor"].is_string(),
                  path, ":", number, ": record needs string keys 'module' and 'tensor'");
    TraceRecord r;
    r.module = json["module"];
    r.tensor = json["tensor"];
    if (json.contains("step")) {
      FASTDIT_CHECK(json["step"].is_number_integer(), path, ":", number, ": 'step' must be an integer");
      r.step = json["step"];
    }
    r.occurrence = seen[{r.module, r.tensor, r.step}]++;
    r.json = std::move(json);
    r.line = number;
    records.push_back(std::move(r));
  }
  return records;
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
