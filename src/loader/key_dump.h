// Key dumps: a model's state-dict surface (name, shape, load dtype) as JSON, without weights.
// tools/reference/dump_*_keys.py write them from the official class; `fastdit keys --json`
// writes ours in the same layout, one parameter per line, so the two compare with `diff`:
//   {
//    "class_name": "...", ...header fields...,
//    "num_tensors": N,
//    "num_parameters": M,
//    "parameters": [
//    ["name", [d0, d1], "bfloat16"],
//    ...
//    ]
//   }
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <ostream>
#include <vector>

#include "loader/transformer_loader.h"

namespace fastdit {

// The "parameters" rows of a dump, in its order; a malformed file, row or dtype and a name
// listed twice are errors that name the file and the row.
std::vector<CheckpointTensor> read_key_dump(const std::filesystem::path& path);
// `header` (an object) first, then num_tensors, num_parameters and the rows.
void write_key_dump(std::ostream& out, nlohmann::ordered_json header, const std::vector<CheckpointTensor>& rows);

}  // namespace fastdit
