// A bound on how deep JSON input may nest, checked on the text before a parser builds it:
// nlohmann's dump, comparison and copies recurse once per level, so 100,000 nested arrays
// in a config would overflow the stack long after the parse succeeded.
#pragma once

#include <istream>
#include <string>
#include <string_view>

namespace fastdit {

inline constexpr int kMaxJsonDepth = 64;  // objects and arrays; every real file nests under 10

// Throws `<source>: JSON nested deeper than 64 levels` (strings are skipped, escapes honoured).
void check_json_depth(std::string_view text, const std::string& source);
// The rest of `in` as text, checked so.
std::string bounded_json_text(std::istream& in, const std::string& source);

}  // namespace fastdit
