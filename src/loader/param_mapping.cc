#include "loader/param_mapping.h"

#include "core/error.h"

namespace fastdit {

ParamNameMapping& ParamNameMapping::add(Rule rule) {
  try {
    rule.pattern = std::regex(rule.pattern_text, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    FASTDIT_FAIL("invalid name-mapping pattern '", rule.pattern_text, "': ", e.what());
  }
  rules_.push_back(std::move(rule));
  return *this;
}

ParamNameMapping& ParamNameMapping::rename(const std::string& pattern, std::string replacement) {
  return add({pattern, {}, Kind::Rename, {{std::move(replacement), -1}}});
}

ParamNameMapping& ParamNameMapping::reshape(const std::string& pattern, std::string replacement) {
  return add({pattern, {}, Kind::Reshape, {{std::move(replacement), -1}}});
}

ParamNameMapping& ParamNameMapping::ignore(const std::string& pattern, const char*) {
  return add({pattern, {}, Kind::Ignore, {}});
}

ParamNameMapping& ParamNameMapping::merge(const std::string& pattern, std::string replacement,
                                          int64_t index, int64_t total) {
  FASTDIT_CHECK(total > 0 && index >= 0 && index < total, "merge rule '", pattern, "': index ",
                index, " of ", total);
  return add({pattern, {}, Kind::Merge, {{std::move(replacement), -1}}, index, total});
}

ParamNameMapping& ParamNameMapping::split(const std::string& pattern,
                                          std::vector<std::pair<std::string, int64_t>> targets) {
  FASTDIT_CHECK(!targets.empty(), "split rule '", pattern, "' has no targets");
  for (const auto& [name, rows] : targets)
    FASTDIT_CHECK(rows > 0, "split rule '", pattern, "': target '", name, "' takes ", rows, " rows");
  return add({pattern, {}, Kind::Split, std::move(targets)});
}

ParamNameMapping& ParamNameMapping::reorder_rows(const std::string& pattern, std::string replacement,
                                                 std::vector<int64_t> block_rows, std::vector<int64_t> order) {
  FASTDIT_CHECK(!block_rows.empty() && block_rows.size() == order.size(), "reorder rule '", pattern, "': ",
                block_rows.size(), " blocks, ", order.size(), " places");
  std::vector<bool> taken(order.size(), false);
  for (int64_t place : order) {
    FASTDIT_CHECK(place >= 0 && place < static_cast<int64_t>(order.size()) && !taken[place], "reorder rule '",
                  pattern, "': the order is not a permutation of the ", order.size(), " blocks");
    taken[place] = true;
  }
  std::vector<std::pair<std::string, int64_t>> targets;
  for (int64_t rows : block_rows) targets.emplace_back(replacement, rows);
  ParamNameMapping& self = split(pattern, std::move(targets));
  rules_.back().target_places = std::move(order);
  return self;
}

ParamNameMapping& ParamNameMapping::extend(const ParamNameMapping& other) {
  rules_.insert(rules_.end(), other.rules_.begin(), other.rules_.end());
  return *this;
}

ParamNameMapping& ParamNameMapping::then(ParamNameMapping next) {
  if (next_) {
    ParamNameMapping chained = *next_;
    chained.then(std::move(next));
    next_ = std::make_shared<const ParamNameMapping>(std::move(chained));
  } else {
    next_ = std::make_shared<const ParamNameMapping>(std::move(next));
  }
  return *this;
}

namespace {
bool is_plain(const MappedPiece& p) { return p.merge_total == 1 && p.rows < 0; }
}  // namespace

std::vector<MappedPiece> ParamNameMapping::apply(const std::string& checkpoint_name) const {
  std::vector<MappedPiece> first = apply_rules(checkpoint_name);
  if (!next_) return first;
  std::vector<MappedPiece> out;
  for (const auto& piece : first) {
    for (auto second : next_->apply(piece.param)) {
      FASTDIT_CHECK(is_plain(piece) || is_plain(second), "name mapping of '", checkpoint_name,
                    "': both stages merge or split");
      if (!is_plain(piece)) {
        MappedPiece combined = piece;
        combined.param = second.param;
        second = combined;
      }
      second.reshape = second.reshape || piece.reshape;
      out.push_back(std::move(second));
    }
  }
  return out;
}

std::vector<MappedPiece> ParamNameMapping::apply_rules(const std::string& checkpoint_name) const {
  std::smatch match;
  for (const auto& rule : rules_) {
    if (!std::regex_match(checkpoint_name, match, rule.pattern)) continue;
    std::vector<MappedPiece> pieces;
    int64_t row = 0;
    for (size_t i = 0; i < rule.targets.size(); ++i) {
      const auto& [replacement, rows] = rule.targets[i];
      MappedPiece piece;
      piece.param = match.format(replacement);
      piece.reshape = rule.kind == Kind::Reshape;
      if (!rule.target_places.empty()) {  // the pieces tile one parameter in this order
        piece.merge_index = rule.target_places[i];
        piece.merge_total = static_cast<int64_t>(rule.targets.size());
      }
      if (rule.kind == Kind::Merge) {
        piece.merge_index = rule.merge_index;
        piece.merge_total = rule.merge_total;
      }
      if (rule.kind == Kind::Split) {
        piece.checkpoint_row = row;
        piece.rows = rows;
        row += rows;
      }
      pieces.push_back(std::move(piece));
    }
    return pieces;
  }
  return {MappedPiece{checkpoint_name}};
}

}  // namespace fastdit
