// libFuzzer target: arbitrary bytes as a benchmark definition (bench/configs/<id>.json), and
// what a bench run asks of a definition that parsed: its limits for a device name and the
// forward it describes. A fastdit::Error is the expected answer to bad bytes; anything else
// (a crash, a sanitizer report, a leak, another exception) is a finding.
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "core/error.h"
#include "perf/definition.h"

namespace {

// A folder holding the model config a definition names ("config": "model.json"), made once.
std::filesystem::path definition_path() {
  static const std::filesystem::path path = [] {
    const auto dir = std::filesystem::temp_directory_path() / ("fastdit_fuzz_definition_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "model.json") << R"({"_class_name": "WanTransformer3DModel"})";
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(std::filesystem::temp_directory_path() /
                                      ("fastdit_fuzz_definition_" + std::to_string(::getpid())),
                                  ignored);
    });
    return dir / "definition.json";
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const fastdit::perf::BenchmarkDefinition def = fastdit::perf::parse_benchmark_definition(text, definition_path());
    volatile size_t sink = def.limits_for("NVIDIA H100 80GB HBM3").gpu_key.size();
    sink = sink + def.limits_for("").gpu_key.size();
    const auto spec = def.forward_bench_spec(false);
    sink = sink + static_cast<size_t>(spec.steps);
  } catch (const fastdit::Error&) {
  }
  return 0;
}
