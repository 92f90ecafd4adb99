#include "core/error.h"

#include <cstring>

namespace fastdit::detail {

void fail(const char* file, int line, std::string message) {
  const char* base = std::strrchr(file, '/');
  throw Error(std::move(message), concat(base ? base + 1 : file, ":", line));
}

}  // namespace fastdit::detail
