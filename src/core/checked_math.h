// Integer sizes that cannot wrap. Shapes come from configs and files someone else wrote:
// every product of their dims goes through these, so a size past int64 is an error that
// says which, never a negative or truncated shape.
#pragma once

#include <cstdint>
#include <optional>

namespace fastdit {

// a * b and a + b, or nothing when the result leaves int64.
inline std::optional<int64_t> checked_mul(int64_t a, int64_t b) {
  int64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out)) return std::nullopt;
  return out;
}
inline std::optional<int64_t> checked_add(int64_t a, int64_t b) {
  int64_t out = 0;
  if (__builtin_add_overflow(a, b, &out)) return std::nullopt;
  return out;
}

}  // namespace fastdit
