#include "perf/environment.h"

#include <omp.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <sstream>
#include <thread>

#include "core/library_versions.h"
#include "core/tensor.h"
#include "perf/sha256.h"

namespace fastdit::perf {
namespace {

std::string compiler() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("gcc ") + __VERSION__;
#else
  return "unknown";
#endif
}

// The compile-time choices that change generated code.
nlohmann::json build_flags() {
  nlohmann::json flags;
#ifdef __OPTIMIZE__
  flags["optimized"] = true;
#else
  flags["optimized"] = false;
#endif
#ifdef NDEBUG
  flags["assertions"] = false;
#else
  flags["assertions"] = true;
#endif
#ifdef FASTDIT_WITH_CUDA
  flags["cuda_backend"] = true;
#else
  flags["cuda_backend"] = false;
#endif
#ifdef FASTDIT_NO_FORWARD_HOOKS
  flags["forward_hooks"] = false;
#else
  flags["forward_hooks"] = true;
#endif
  std::string isa;
#ifdef __AVX2__
  isa += "avx2 ";
#endif
#ifdef __FMA__
  isa += "fma ";
#endif
#ifdef __AVX512F__
  isa += "avx512f ";
#endif
  flags["host_isa"] = isa.empty() ? "baseline" : isa.substr(0, isa.size() - 1);
  return flags;
}

std::string shell_quoted(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

}  // namespace

std::string canonical_json(const nlohmann::json& value) { return value.dump(); }

std::string fingerprint_id(std::string_view prefix, const nlohmann::json& value) {
  return std::string(prefix) + "-" + sha256_hex(canonical_json(value)).substr(0, 16);
}

nlohmann::json hardware_profile(Device device) {
  nlohmann::json profile{{"device_type", device.is_cpu() ? "cpu" : "cuda"},
                         {"device_name", describe_device(device)}};
  if (device.is_cpu()) profile["logical_cores"] = std::thread::hardware_concurrency();
  return profile;
}

nlohmann::json software_profile(Device device) {
  nlohmann::json libraries{{"cuda_driver", "none"}, {"cuda_runtime", "none"}, {"cudnn", "none"}, {"nccl", "none"}};
  for (const auto& [name, version] : library_versions()) libraries[name] = version;
  nlohmann::json profile{{"compiler", compiler()}, {"build", build_flags()}, {"libraries", libraries}};
  if (device.is_cpu()) profile["openmp_threads"] = omp_get_max_threads();
  return profile;
}

std::string gpu_type(Device device, const std::string& device_name) {
  if (device.is_cpu()) return "cpu";
  std::istringstream words(device_name);
  for (std::string word; words >> word;)
    if (word.find_first_of("0123456789") != std::string::npos) return word;
  return device_name;
}

std::string source_commit(const std::filesystem::path& dir) {
  if (const char* commit = std::getenv("FASTDIT_COMMIT"); commit && *commit) return commit;
  const std::string command = "git -C " + shell_quoted(dir.empty() ? "." : dir.string()) + " rev-parse HEAD 2>/dev/null";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
  char line[128] = {};
  if (!pipe || !std::fgets(line, sizeof line, pipe.get())) return "unknown";
  std::string commit = line;
  while (!commit.empty() && std::isspace(static_cast<unsigned char>(commit.back()))) commit.pop_back();
  return commit.empty() ? "unknown" : commit;
}

std::string utc_timestamp() {
  const std::time_t t = std::time(nullptr);
  std::tm parts{};
  gmtime_r(&t, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return text;
}

}  // namespace fastdit::perf
