// Errors: one exception type for everything a user can get wrong (bad files, bad
// configs, bad shapes) and one check macro that carries file and line.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace fastdit {

class Error : public std::runtime_error {
 public:
  Error(std::string message, std::string where = {})
      : std::runtime_error(std::move(message)), where_(std::move(where)) {}
  // "file.cc:123" of the check that failed; empty for errors raised by hand.
  const std::string& where() const { return where_; }

 private:
  std::string where_;
};

namespace detail {
template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}
[[noreturn]] void fail(const char* file, int line, std::string message);
}  // namespace detail

}  // namespace fastdit

// FASTDIT_CHECK(cond, "what ", value, " where") throws fastdit::Error with the
// concatenated message when cond is false.
#define FASTDIT_CHECK(cond, ...)                                                   \
  do {                                                                             \
    if (!(cond)) [[unlikely]]                                                      \
      ::fastdit::detail::fail(__FILE__, __LINE__,                                  \
                              ::fastdit::detail::concat("" __VA_OPT__(, ) __VA_ARGS__)); \
  } while (0)

#define FASTDIT_FAIL(...) \
  ::fastdit::detail::fail(__FILE__, __LINE__, ::fastdit::detail::concat(__VA_ARGS__))
