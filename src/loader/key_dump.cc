#include "loader/key_dump.h"

#include <fstream>
#include <set>

#include "core/files.h"

namespace fastdit {

namespace {

Shape row_shape(const nlohmann::json& dims, const std::string& where) {
  FASTDIT_CHECK(dims.is_array(), where, ": the shape must be a list of sizes");
  Shape shape;
  for (const auto& d : dims) {
    FASTDIT_CHECK(d.is_number_integer() && d.get<int64_t>() >= 0, where, ": shape entry ", d.dump(),
                  " is not a size");
    shape.push_back(d.get<int64_t>());
  }
  return shape;
}

}  // namespace

std::vector<CheckpointTensor> read_key_dump(const std::filesystem::path& path) {
  const std::string text = read_regular_file(path);
  check_json_depth(text, kMaxJsonDepth, path.string());
  nlohmann::json dump;
  try {
    dump = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    FASTDIT_FAIL(path.string(), ": not valid JSON: ", e.what());
  }
  FASTDIT_CHECK(dump.is_object() && dump.contains("parameters") && dump["parameters"].is_array(), path.string(),
                ": not a key dump (expected an object with a \"parameters\" list of [name, shape, dtype])");
  std::vector<CheckpointTensor> rows;
  std::set<std::string> seen;
  for (size_t i = 0; i < dump["parameters"].size(); ++i) {
    const auto& row = dump["parameters"][i];
    const std::string where = detail::concat(path.string(), ": parameters[", i, "]");
    FASTDIT_CHECK(row.is_array() && row.size() == 3 && row[0].is_string() && row[2].is_string(), where,
                  ": expected [name, shape, dtype], got ", row.dump());
    CheckpointTensor tensor{row[0].get<std::string>(), row_shape(row[1], where), DType::Float32, ""};
    try {
      tensor.dtype = parse_dtype(row[2].get<std::string>());
    } catch (const Error& e) {
      FASTDIT_FAIL(where, ": ", e.what());
    }
    FASTDIT_CHECK(seen.insert(tensor.name).second, where, ": '", tensor.name, "' is listed twice");
    rows.push_back(std::move(tensor));
  }
  return rows;
}

void write_key_dump(std::ostream& out, nlohmann::ordered_json header, const std::vector<CheckpointTensor>& rows) {
  int64_t count = 0;
  for (const auto& row : rows) count += shape_numel(row.shape);
  header["num_tensors"] = rows.size();
  header["num_parameters"] = count;
  // Python's json.dumps(indent=1) for the header, then one row per line in its default
  // separators: the reference scripts' exact layout.
  const std::string head = header.dump(1);
  out << head.substr(0, head.size() - 2) << ",\n \"parameters\": [\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    out << " [" << nlohmann::json(rows[i].name).dump() << ", [";
    for (size_t d = 0; d < rows[i].shape.size(); ++d) out << (d ? ", " : "") << rows[i].shape[d];
    out << "], \"" << dtype_name(rows[i].dtype) << "\"]" << (i + 1 < rows.size() ? "," : "") << "\n";
  }
  out << " ]\n}\n";
}

}  // namespace fastdit
