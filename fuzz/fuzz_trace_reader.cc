// libFuzzer target: arbitrary bytes through the activation-trace reader (JSON lines) and,
// when both halves parse, through the diff and its report. A fastdit::Error is the expected
// answer to bad bytes; anything else (a crash, a sanitizer report, a leak, another
// exception) is a finding, and so is a trace that diverges from itself.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string_view>

#include "core/error.h"
#include "trace/trace_diff.h"

namespace {

void diff_and_print(const std::vector<fastdit::trace::TraceRecord>& a,
                    const std::vector<fastdit::trace::TraceRecord>& b) {
  const fastdit::trace::DiffOptions options;
  const auto report = fastdit::trace::diff_traces(a, b, options);
  std::ostringstream sink;
  fastdit::trace::print_report(sink, report, options);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // The whole input as one trace, diffed with itself: every record pairs with itself.
  try {
    const auto records = fastdit::trace::parse_trace(text, "fuzz-input");
    const auto self = fastdit::trace::diff_traces(records, records, {});
    if (self.diverged != 0 || self.pairs != records.size()) __builtin_trap();
    diff_and_print(records, records);
  } catch (const fastdit::Error&) {
  }
  // Split at the first form feed (or the middle): two traces against each other.
  const size_t cut = text.find('\f') != std::string_view::npos ? text.find('\f') : size / 2;
  try {
    const auto a = fastdit::trace::parse_trace(text.substr(0, cut), "fuzz-a");
    const auto b = fastdit::trace::parse_trace(text.substr(std::min(size, cut + 1)), "fuzz-b");
    diff_and_print(a, b);
  } catch (const fastdit::Error&) {
  }
  return 0;
}
