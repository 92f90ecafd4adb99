// libFuzzer target: arbitrary bytes as a normalized benchmark record (`perf check REC`) or,
// when the first byte is '#', as a cohort file of the baseline store (JSON lines), and a
// record that parsed through the gate against an empty store and its printout. A
// fastdit::Error is the expected answer to bad bytes; anything else (a crash, a sanitizer
// report, a leak, another exception) is a finding, and so is a metric the reader let through
// that is not finite.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"
#include "perf/baseline_store.h"
#include "perf/check.h"
#include "perf/record.h"

namespace {

void require_sane(const fastdit::perf::PerfRecord& record) {
  for (const auto& [name, value] : record.metrics)
    if (!std::isfinite(value) || value < 0) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    if (!text.empty() && text.front() == '#') {
      const auto records = fastdit::perf::BaselineStore::read_cohort_text(std::string(text.substr(1)), "fuzz-cohort");
      for (const auto& record : records) require_sane(record);
      const auto window = fastdit::perf::baseline_window(records, 5);
      const auto medians = fastdit::perf::metric_medians(window);
      for (const auto& [name, value] : medians)
        if (!std::isfinite(value)) __builtin_trap();
      return 0;
    }
    const fastdit::perf::PerfRecord record = fastdit::perf::parse_record_text(text, "fuzz-record");
    require_sane(record);
    const fastdit::perf::BaselineStore store("/nonexistent/fastdit-fuzz-store");
    const auto result = fastdit::perf::check_record(record, store, {});
    volatile size_t sink = fastdit::perf::format_check(record, result).size();
    (void)sink;
  } catch (const fastdit::Error&) {
  }
  return 0;
}
