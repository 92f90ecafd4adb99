// Checkpoint name → native parameter mapping. Ordered regex rules, the first whose
// pattern matches the whole checkpoint name wins; a name no rule matches maps to
// itself. A rule renames, merges several checkpoint tensors into one parameter
// (concatenated along dim 0 in index order) or splits one tensor into several
// parameters (row ranges along dim 0). The loader records every piece it moved, so
// the reverse mapping is exact.
#pragma once

#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace fastdit {

// Where one piece of a checkpoint tensor goes.
struct MappedPiece {
  std::string param;
  int64_t merge_index = 0;      // place among the pieces merged into `param`
  int64_t merge_total = 1;      // how many pieces `param` is made of
  int64_t checkpoint_row = 0;   // first row of the piece in the checkpoint tensor
  int64_t rows = -1;            // rows taken; -1 = all
  bool reshape = false;         // whole tensor, shape differing from the parameter's by size-1 dims
};

class ParamNameMapping {
 public:
  // Replacements use $1, $2 ... for the pattern's groups.
  ParamNameMapping& rename(const std::string& pattern, std::string replacement);
  ParamNameMapping& merge(const std::string& pattern, std::string replacement, int64_t index,
                          int64_t total);
  // A rename whose tensor may differ from the parameter's shape by size-1 dims only
  // ([F, 1] checkpoint, [F] parameter); the reverse writes the checkpoint's shape back.
  ParamNameMapping& reshape(const std::string& pattern, std::string replacement);
  // Checkpoint tensors the model does not read (a buffer it derives itself); they load
  // into nothing and are not written back. `reason` is documentation only.
  ParamNameMapping& ignore(const std::string& pattern, const char* reason);
  // Each target takes `rows` consecutive rows of the checkpoint tensor, in order.
  ParamNameMapping& split(const std::string& pattern,
                          std::vector<std::pair<std::string, int64_t>> targets);
  // One checkpoint tensor into one parameter with its row blocks reordered: block i
  // (block_rows[i] consecutive rows, in checkpoint order) becomes block order[i] of the
  // parameter (order a permutation). Black Forest Labs' final_layer.adaLN_modulation.1
  // holds (shift, scale) where diffusers' norm_out.linear holds (scale, shift): {D, D}, {1, 0}.
  ParamNameMapping& reorder_rows(const std::string& pattern, std::string replacement,
                                 std::vector<int64_t> block_rows, std::vector<int64_t> order);
  // Appends another mapping's rules after this one's.
  ParamNameMapping& extend(const ParamNameMapping& other);
  // A second stage applied to every name this one produces (e.g. a layout rename, then
  // a merge into fused parameters). Only one of the two stages may merge or split.
  ParamNameMapping& then(ParamNameMapping next);

  std::vector<MappedPiece> apply(const std::string& checkpoint_name) const;
  size_t size() const { return rules_.size(); }

 private:
  enum class Kind { Rename, Reshape, Merge, Split, Ignore };
  struct Rule {
    std::string pattern_text;
    std::regex pattern;
    Kind kind;
    std::vector<std::pair<std::string, int64_t>> targets;  // replacement, rows (split)
    int64_t merge_index = 0, merge_total = 1;
    std::vector<int64_t> target_places{};  // reorder_rows: each target's merge index
  };
  ParamNameMapping& add(Rule rule);
  std::vector<MappedPiece> apply_rules(const std::string& checkpoint_name) const;
  std::vector<Rule> rules_;
  std::shared_ptr<const ParamNameMapping> next_;
};

// One piece the loader moved: rows [checkpoint_row, +rows) of a checkpoint tensor
// became rows [param_row, +rows) of a parameter.
struct PieceRecord {
  std::string checkpoint_name;
  Shape checkpoint_shape;
  DType checkpoint_dtype;
  int64_t checkpoint_row;
  std::string param;
  int64_t param_row;
  int64_t rows;
};

}  // namespace fastdit
