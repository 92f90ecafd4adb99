// SHA-256 (FIPS 180-4), for the identity fingerprints of benchmark records: a recipe,
// hardware or software profile is named by the hash of its canonical JSON.
#pragma once

#include <string>
#include <string_view>

namespace fastdit::perf {

std::string sha256_hex(std::string_view bytes);  // 64 lowercase hex digits

}  // namespace fastdit::perf
