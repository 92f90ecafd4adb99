// Where and with what a benchmark ran: the hardware and software profiles whose hashes
// put a record in its cohort, and the commit and time that place it in history.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/device.h"

namespace fastdit::perf {

// Sorted keys, no whitespace: equal content gives equal text, so equal hashes.
std::string canonical_json(const nlohmann::json& value);
// "<prefix>-" + the first 16 hex digits of sha256(canonical_json(value)).
std::string fingerprint_id(std::string_view prefix, const nlohmann::json& value);

// {device_type, device_name} (+ logical_cores on the CPU, where the core count is the
// hardware).
nlohmann::json hardware_profile(Device device);
// The compiler, build flags and library versions. Libraries a backend of this build
// does not register (cuda_driver, cuda_runtime, cudnn, nccl without CUDA) read "none".
// On the CPU it also holds the OpenMP thread count, which decides CPU speed.
nlohmann::json software_profile(Device device);
// A short name for the accelerator, for people and for grouping: the first word of the
// device name that holds a digit ("NVIDIA H100 80GB HBM3" -> "H100"); "cpu" on the CPU.
std::string gpu_type(Device device, const std::string& device_name);

// FASTDIT_COMMIT when set, else `git rev-parse HEAD` in `dir`, else "unknown".
std::string source_commit(const std::filesystem::path& dir);
std::string utc_timestamp();  // 2025-01-31T12:00:00Z

}  // namespace fastdit::perf
