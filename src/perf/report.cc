#include "perf/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace fastdit::perf {
namespace {

// Chart geometry, in CSS pixels; the page height follows from it.
constexpr int kChartWidth = 400, kChartHeight = 220;
constexpr int kLeft = 58, kRight = 14, kTop = 36, kBottom = 40;
constexpr int kChartsPerRow = 3, kChartGap = 16;
constexpr int kPageHeader = 130, kCohortHeader = 84, kPageFooter = 40;

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// How a record stands in its history: the colour of its point.
const char* point_class(const PerfRecord& r) {
  if (r.reseeded) return "reseed";
  if (r.comparison_status == "PASS") return "pass";
  if (r.comparison_status == "REGRESSION") return "regression";
  return "other";
}

struct Axis {
  double lo, hi;
  double y(double v) const { return kTop + (kChartHeight - kTop - kBottom) * (1 - (v - lo) / (hi - lo)); }
};

Axis value_axis(const std::vector<double>& values) {
  double lo = *std::min_element(values.begin(), values.end());
  double hi = *std::max_element(values.begin(), values.end());
  const double pad = hi > lo ? 0.1 * (hi - lo) : std::max(0.05 * std::fabs(hi), 1e-6);
  return {lo - pad, hi + pad};
}

double x_of(size_t index, size_t count) {
  const double width = kChartWidth - kLeft - kRight;
  return kLeft + (count == 1 ? width / 2 : width * static_cast<double>(index) / static_cast<double>(count - 1));
}

void draw_frame(std::ostringstream& svg, const MetricSpec& metric, const Axis& axis, const std::vector<PerfRecord>& history) {
  svg << "<text class=\"title\" x=\"" << kLeft << "\" y=\"16\">" << metric.name << "<tspan class=\"sub\"> "
      << escape(std::string(metric.meaning)) << ", " << (metric.better == Better::Lower ? "lower" : "higher")
      << " is better</tspan></text>\n";
  for (int k = 0; k < 4; ++k) {
    const double v = axis.lo + (axis.hi - axis.lo) * k / 3;
    const double y = axis.y(v);
    svg << "<line class=\"grid\" x1=\"" << kLeft << "\" x2=\"" << kChartWidth - kRight << "\" y1=\"" << y
        << "\" y2=\"" << y << "\"/><text class=\"tick\" x=\"" << kLeft - 6 << "\" y=\"" << y + 4
        << "\" text-anchor=\"end\">" << format_number(v) << "</text>\n";
  }
  const int bottom = kChartHeight - kBottom;
  svg << "<line class=\"axis\" x1=\"" << kLeft << "\" x2=\"" << kLeft << "\" y1=\"" << kTop << "\" y2=\"" << bottom
      << "\"/><line class=\"axis\" x1=\"" << kLeft << "\" x2=\"" << kChartWidth - kRight << "\" y1=\"" << bottom
      << "\" y2=\"" << bottom << "\"/>\n";
  svg << "<text class=\"tick\" x=\"" << kLeft << "\" y=\"" << bottom + 16 << "\">"
      << escape(history.front().timestamp.substr(0, 10)) << "</text><text class=\"tick\" x=\""
      << kChartWidth - kRight << "\" y=\"" << bottom + 16 << "\" text-anchor=\"end\">"
      << escape(history.back().timestamp.substr(0, 10)) << "</text><text class=\"tick\" x=\""
      << (kLeft + kChartWidth - kRight) / 2 << "\" y=\"" << bottom + 32 << "\" text-anchor=\"middle\">"
      << history.size() << " record(s), oldest to newest</text>\n";
}

// `baseline` is the median of the last `baseline_count` eligible records; `needed` is how
// many a comparison takes, so a calibrating cohort's line says it is not compared yet.
std::string render_chart(const MetricSpec& metric, const std::vector<PerfRecord>& history,
                         const std::optional<double>& baseline, int baseline_count, int needed) {
  const std::string name(metric.name);
  std::vector<double> values;
  for (const PerfRecord& r : history)
    if (const auto v = r.metric(name)) values.push_back(*v);
  if (baseline) values.push_back(*baseline);
  const Axis axis = value_axis(values);
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kChartWidth << "\" height=\"" << kChartHeight
      << "\" viewBox=\"0 0 " << kChartWidth << " " << kChartHeight << "\">\n";
  draw_frame(svg, metric, axis, history);
  std::ostringstream line, points;
  for (size_t i = 0; i < history.size(); ++i) {
    const PerfRecord& r = history[i];
    const auto v = r.metric(name);
    if (!v) continue;
    const double x = x_of(i, history.size()), y = axis.y(*v);
    line << x << "," << y << " ";
    points << "<circle class=\"" << point_class(r) << "\" cx=\"" << x << "\" cy=\"" << y << "\" r=\"4\"><title>"
           << escape(r.timestamp) << " commit " << escape(r.commit_sha.substr(0, 12)) << ": " << format_number(*v) << " "
           << (r.reseeded ? "reseed" : r.comparison_status.empty() ? "unchecked" : escape(r.comparison_status))
           << "</title></circle>\n";
  }
  svg << "<polyline class=\"history\" points=\"" << line.str() << "\"/>\n" << points.str();
  if (baseline) {
    const double y = axis.y(*baseline);
    svg << "<line class=\"median\" x1=\"" << kLeft << "\" x2=\"" << kChartWidth - kRight << "\" y1=\"" << y
        << "\" y2=\"" << y << "\"/><text class=\"median-label\" x=\"" << kChartWidth - kRight << "\" y=\"" << kTop - 6
        << "\" text-anchor=\"end\">" << (baseline_count < needed ? "calibrating" : "baseline")
        << ": median of last " << baseline_count << " = " << format_number(*baseline)
        << (baseline_count < needed ? " (" + std::to_string(needed) + " needed)" : "") << "</text>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}

std::string device_name(const PerfRecord& r) {
  const auto run = r.json.find("run");
  if (run == r.json.end() || !run->is_object()) return r.gpu_type;
  const auto name = run->find("device_name");
  return name != run->end() && name->is_string() ? name->get<std::string>() : r.gpu_type;
}

int chart_rows(int charts) { return (charts + kChartsPerRow - 1) / kChartsPerRow; }

// One cohort's section; adds its height to `height`.
std::string render_cohort(const std::vector<PerfRecord>& history, const BaselinePolicy& policy, int& height) {
  const PerfRecord& last = history.back();
  const std::vector<const PerfRecord*> window = baseline_window(history, policy.window);
  const std::map<std::string, double> medians = metric_medians(window);
  int eligible = 0, failed = 0;
  for (const PerfRecord& r : history) eligible += r.eligible(), failed += !r.success;
  std::ostringstream html;
  html << "<section class=\"cohort\">\n<h2>" << escape(last.benchmark_id) << " v" << last.benchmark_version << " · "
       << escape(last.gpu_type) << " · " << escape(last.model_id) << "</h2>\n<div class=\"meta\">"
       << escape(device_name(last)) << " · recipe "
       << escape(last.recipe_fingerprint) << " · hardware " << escape(last.hardware_profile_id) << " · software "
       << escape(last.software_profile_id) << "<br>" << history.size() << " records, " << eligible
       << " eligible for the baseline, " << failed << " failed run(s) · latest " << escape(last.timestamp)
       << " commit " << escape(last.commit_sha.substr(0, 12)) << "</div>\n<div class=\"charts\">\n";
  int charts = 0;
  for (const MetricSpec& metric : gated_metrics()) {
    const std::string name(metric.name);
    const bool any = std::any_of(history.begin(), history.end(), [&](const PerfRecord& r) { return r.metric(name).has_value(); });
    if (!any) continue;
    const auto median = medians.find(name);
    html << render_chart(metric, history,
                         median == medians.end() ? std::nullopt : std::optional<double>(median->second),
                         static_cast<int>(window.size()), policy.min_records);
    ++charts;
  }
  html << "</div>\n</section>\n";
  height += kCohortHeader + chart_rows(charts) * (kChartHeight + kChartGap);
  return html.str();
}

constexpr const char* kStyle = R"(
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 24px; width: 1232px; color: #222; background: #fff; }
h1 { font-size: 22px; margin: 0 0 6px 0; }
h2 { font-size: 16px; margin: 0 0 4px 0; }
p.summary { font-size: 13px; color: #444; margin: 0 0 10px 0; }
.legend span { margin-right: 14px; font-size: 12px; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 5px; margin-right: 4px; vertical-align: -1px; }
section.cohort { border-top: 1px solid #ccc; padding: 12px 0 4px 0; }
.meta { font: 11px "DejaVu Sans Mono", monospace; color: #555; margin-bottom: 8px; line-height: 16px; }
.charts { display: grid; grid-template-columns: repeat(3, 400px); gap: 16px; }
svg { background: #fafafa; border: 1px solid #e4e4e4; }
svg text { font-family: "DejaVu Sans", Arial, sans-serif; }
.title { font-size: 12px; font-weight: bold; fill: #222; }
.sub { font-weight: normal; fill: #666; font-size: 10px; }
.tick { font-size: 10px; fill: #666; }
.grid { stroke: #e6e6e6; }
.axis { stroke: #999; }
.history { fill: none; stroke: #aaa; stroke-width: 1.2; }
.median { stroke: #ff7f0e; stroke-width: 1.5; stroke-dasharray: 6 4; }
.median-label { font-size: 10px; fill: #c05f00; }
circle.pass { fill: #2ca02c; } circle.reseed { fill: #1f77b4; }
circle.regression { fill: #d62728; } circle.other { fill: #fff; stroke: #888; stroke-width: 1.5; }
)";

std::string legend() {
  return "<div class=\"legend\"><span><i class=\"dot\" style=\"background:#1f77b4\"></i>reseed</span>"
         "<span><i class=\"dot\" style=\"background:#2ca02c\"></i>PASS</span>"
         "<span><i class=\"dot\" style=\"background:#d62728\"></i>REGRESSION</span>"
         "<span><i class=\"dot\" style=\"border:1.5px solid #888;width:7px;height:7px\"></i>"
         "calibration, mismatch or unchecked (not in the baseline)</span>"
         "<span style=\"color:#c05f00\">- - - baseline median</span></div>\n";
}

}  // namespace

std::string render_report_html(const BaselineStore& store, const BaselinePolicy& policy) {
  std::vector<std::vector<PerfRecord>> cohorts;
  size_t records = 0;
  std::string newest;
  for (const auto& path : store.cohort_files()) {
    std::vector<PerfRecord> history = BaselineStore::read_cohort_file(path);
    if (history.empty()) continue;
    records += history.size();
    for (const PerfRecord& r : history) newest = std::max(newest, r.timestamp);
    cohorts.push_back(std::move(history));
  }
  FASTDIT_CHECK(!cohorts.empty(), store.root().string(), ": no records (no cohort file <benchmark_id>/*.jsonl "
                "with a record): run `fastdit bench --config bench/configs/<id>.json`, then seed the cohort with "
                "`fastdit perf reseed`");
  int height = kPageHeader + kPageFooter;
  std::ostringstream body;
  for (const auto& history : cohorts) body << render_cohort(history, policy, height);
  std::ostringstream html;
  html << "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
       << "<meta name=\"fastdit-page-height\" content=\"" << height << "\">\n"
       << "<title>fastdit performance history</title>\n<style>" << kStyle << "</style>\n</head>\n<body>\n"
       << "<h1>fastdit performance history</h1>\n<p class=\"summary\">" << cohorts.size() << " cohort(s), "
       << records << " record(s) from <code>" << escape(store.root().string()) << "</code>"
       << (newest.empty() ? "" : ", newest " + escape(newest)) << ". A cohort is one benchmark version under one "
       << "recipe, hardware and software profile; its baseline is the median of its last " << policy.window
       << " eligible records.</p>\n"
       << legend() << body.str() << "</body>\n</html>\n";
  return html.str();
}

}  // namespace fastdit::perf
