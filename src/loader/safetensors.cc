#include "loader/safetensors.h"

#include "core/files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_set>
#include <utility>

namespace fastdit {

namespace {

using Json = nlohmann::ordered_json;  // keeps the header's order, which is the file order

// Shapes, offsets and sizes must fit in int64 (Shape's element type).
constexpr uint64_t kMaxSize = std::numeric_limits<int64_t>::max();

std::string errno_text() { return std::strerror(errno); }

struct FileDescriptor {
  int fd;
  explicit FileDescriptor(int fd) : fd(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
};

// A JSON value short enough for an error message: scalars and flat arrays are printed
// (cut at 80 characters), anything else is named by its type. Never recursive, so a
// deeply nested hostile header cannot overflow the stack here.
std::string brief(const Json& value) {
  const bool flat_array = value.is_array() && value.size() <= 16 &&
                          std::none_of(value.begin(), value.end(), [](const Json& v) {
                            return v.is_structured();
                          });
  if (value.is_structured() && !flat_array)
    return value.is_array() ? detail::concat("an array of ", value.size(), " elements")
                            : std::string("an object");
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  return text;
}

// nlohmann's errors start with "[json.exception.parse_error.101] " and may quote a long
// token of raw, possibly binary bytes; keep the useful part and make it printable.
std::string parse_error_text(const Json::exception& e) {
  std::string_view text = e.what();
  if (const auto close = text.find("] "); text.starts_with("[json.") && close != text.npos)
    text.remove_prefix(close + 2);
  std::string printable;
  for (const char c : text.substr(0, 200)) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f) {
      printable += c;
    } else {
      printable += "\\x";
      printable += "0123456789abcdef"[byte >> 4];
      printable += "0123456789abcdef"[byte & 15];
    }
  }
  return text.size() > 200 ? printable + "..." : printable;
}

// Parses a JSON document, rejecting duplicate keys in any object (the DOM would silently
// keep one of them, so a header could say two things about one tensor).
Json parse_json_strict(std::string_view text, const std::string& what) {
  check_json_depth(text, kMaxJsonDepth, what);
  std::vector<std::unordered_set<std::string>> open_objects;
  const Json::parser_callback_t reject_duplicates = [&](int depth, Json::parse_event_t event,
                                                        Json& parsed) {
    if (event == Json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == Json::parse_event_t::object_end) {
      open_objects.pop_back();
    } else if (event == Json::parse_event_t::key) {
      const auto& key = parsed.get_ref<const std::string&>();
      FASTDIT_CHECK(open_objects.back().insert(key).second, what, ": duplicate key '", key,
                    "'", depth == 1 ? "" : " in a nested object");
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), reject_duplicates);
  } catch (const Json::exception& e) {  // parse_error, or out_of_range for huge numbers
    FASTDIT_FAIL(what, " is not valid JSON: ", parse_error_text(e));
  }
}

void check_length_prefix(size_t file_bytes, const std::string& label) {
  FASTDIT_CHECK(file_bytes >= 8, label, ": ", file_bytes,
                " bytes is too short for a safetensors file (it starts with an 8-byte header "
                "length)");
}

uint64_t read_u64_le(const std::byte* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<uint64_t>(p[i]);
  return value;
}

SafetensorsMetadata parse_metadata(const Json& value, const std::string& label) {
  FASTDIT_CHECK(value.is_object(), label,
                ": __metadata__ must be an object of string values, found ", brief(value));
  SafetensorsMetadata metadata;
  for (const auto& [key, item] : value.items()) {
    FASTDIT_CHECK(item.is_string(), label, ": __metadata__ entry '", key,
                  "' must be a string, found ", brief(item));
    metadata.emplace(key, item.get<std::string>());
  }
  return metadata;
}

std::optional<uint64_t> as_size(const Json& value) {
  if (!value.is_number_unsigned() || value.get<uint64_t>() > kMaxSize) return std::nullopt;
  return value.get<uint64_t>();
}

// Returns the tensor's byte count. Fails unless the product of all dims (counting 0 as 1,
// as the strides do) times the dtype size fits in int64, so no later size or stride
// computation can overflow.
uint64_t parse_shape(const Json& value, DType dtype, Shape& shape, const std::string& where) {
  const std::string expected = "shape must be an array of non-negative integers, found ";
  FASTDIT_CHECK(value.is_array(), where, expected, brief(value));
  uint64_t extent_bytes = dtype_size(dtype);
  bool empty = false;
  for (const Json& dim : value) {
    const auto size = as_size(dim);
    FASTDIT_CHECK(size.has_value(), where, expected, brief(value));
    shape.push_back(static_cast<int64_t>(*size));
    empty = empty || *size == 0;
    const bool overflow =
        __builtin_mul_overflow(extent_bytes, std::max<uint64_t>(*size, 1), &extent_bytes);
    FASTDIT_CHECK(!overflow && extent_bytes <= kMaxSize, where, "shape ", brief(value), " of ",
                  dtype_name(dtype), " is too large for 64-bit sizes");
  }
  return empty ? 0 : extent_bytes;
}

std::string known_dtype_codes() {
  std::string codes;
  for (int i = 0; i <= static_cast<int>(DType::Bool); ++i)  // Bool is the last DType
    codes += detail::concat(i ? ", " : "", safetensors_dtype_code(static_cast<DType>(i)));
  return codes;
}

SafetensorsTensorInfo parse_tensor_entry(const std::string& label, const std::string& name,
                                         const Json& entry, uint64_t data_bytes) {
  const std::string where = detail::concat(label, ": tensor '", name, "': ");
  FASTDIT_CHECK(entry.is_object(), where,
                "expected an object with dtype, shape and data_offsets, found ", brief(entry));
  for (const auto& [key, unused] : entry.items())
    FASTDIT_CHECK(key == "dtype" || key == "shape" || key == "data_offsets", where,
                  "unexpected key '", key, "' (expected dtype, shape and data_offsets)");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    FASTDIT_CHECK(entry.contains(key), where, "missing '", key, "'");

  SafetensorsTensorInfo info;
  info.name = name;
  const Json& dtype = entry["dtype"];
  const auto parsed_dtype =
      dtype.is_string() ? dtype_from_safetensors_code(dtype.get_ref<const std::string&>())
                        : std::nullopt;
  FASTDIT_CHECK(parsed_dtype.has_value(), where, "unknown dtype ", brief(dtype), " (known: ",
                known_dtype_codes(), ")");
  info.dtype = *parsed_dtype;
  const uint64_t needed = parse_shape(entry["shape"], info.dtype, info.shape, where);

  const Json& offsets = entry["data_offsets"];
  const bool pair = offsets.is_array() && offsets.size() == 2 && as_size(offsets[0]) &&
                    as_size(offsets[1]);
  FASTDIT_CHECK(pair, where, "data_offsets must be [begin, end] with non-negative integers, found ",
                brief(offsets));
  info.begin = offsets[0].get<uint64_t>();
  info.end = offsets[1].get<uint64_t>();
  const std::string range = detail::concat("data_offsets [", info.begin, ", ", info.end, ")");
  FASTDIT_CHECK(info.begin <= info.end, where, range, " begin after end");
  FASTDIT_CHECK(info.end <= data_bytes, where, range, " end beyond the data section of ",
                data_bytes, " bytes");
  FASTDIT_CHECK(info.nbytes() == needed, where, range, " hold ", info.nbytes(), " bytes but ",
                dtype_name(info.dtype), shape_str(info.shape), " needs ", needed);
  return info;
}

// Tensors may leave gaps (the format allows it) but never share bytes.
void check_no_overlap(const std::string& label, const std::vector<SafetensorsTensorInfo>& infos) {
  std::vector<const SafetensorsTensorInfo*> by_offset;
  for (const auto& info : infos)
    if (info.nbytes() > 0) by_offset.push_back(&info);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* b) {
    return std::pair(a->begin, a->end) < std::pair(b->begin, b->end);
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const auto& prev = *by_offset[i - 1];
    const auto& next = *by_offset[i];
    FASTDIT_CHECK(next.begin >= prev.end, label, ": tensors '", prev.name, "' [", prev.begin,
                  ", ", prev.end, ") and '", next.name, "' [", next.begin, ", ", next.end,
                  ") overlap");
  }
}

}  // namespace

SafetensorsFile SafetensorsFile::from_bytes(std::span<std::byte> bytes, std::shared_ptr<void> owner,
                                            std::string label) {
  check_length_prefix(bytes.size(), label);
  const uint64_t header_bytes = read_u64_le(bytes.data());
  FASTDIT_CHECK(header_bytes <= kSafetensorsMaxHeaderBytes, label, ": header length ",
                header_bytes, " exceeds the limit of ", kSafetensorsMaxHeaderBytes, " bytes");
  FASTDIT_CHECK(header_bytes <= bytes.size() - 8, label, ": header length ", header_bytes,
                " runs past the end of the file (", bytes.size(), " bytes; truncated?)");
  const std::string_view header_text(reinterpret_cast<const char*>(bytes.data()) + 8,
                                     header_bytes);
  const Json header = parse_json_strict(header_text, label + ": header");
  FASTDIT_CHECK(header.is_object(), label, ": header must be a JSON object, found ",
                brief(header));

  SafetensorsFile file;
  file.label_ = std::move(label);
  file.owner_ = std::move(owner);
  file.data_section_ = bytes.data() + 8 + header_bytes;
  const uint64_t data_bytes = bytes.size() - 8 - header_bytes;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      file.metadata_ = parse_metadata(entry, file.label_);
      continue;
    }
    file.index_.emplace(name, file.infos_.size());
    file.infos_.push_back(parse_tensor_entry(file.label_, name, entry, data_bytes));
    file.names_.push_back(name);
  }
  check_no_overlap(file.label_, file.infos_);
  return file;
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  const std::string label = path.string();
  const FileDescriptor file(open_regular_file(path));  // a FIFO or device is refused, never opened
  struct stat st {};
  FASTDIT_CHECK(::fstat(file.fd, &st) == 0, label, ": cannot stat: ", errno_text());
  const auto size = static_cast<size_t>(st.st_size);
  check_length_prefix(size, label);  // before mmap, which refuses empty files
  // Private and writable: a caller writing into a borrowed tensor gets copy-on-write pages
  // instead of a crash, and the file is never modified. MAP_NORESERVE keeps a huge
  // checkpoint from being charged against swap for pages that are never written.
  void* base =
      ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, file.fd, 0);
  FASTDIT_CHECK(base != MAP_FAILED, label, ": cannot map ", size, " bytes: ", errno_text());
  std::shared_ptr<void> mapping(base, [size](void* p) { ::munmap(p, size); });
  return from_bytes(std::span(static_cast<std::byte*>(base), size), std::move(mapping), label);
}

const SafetensorsTensorInfo& SafetensorsFile::info(const std::string& name) const {
  const auto it = index_.find(name);
  FASTDIT_CHECK(it != index_.end(), label_, ": no tensor '", name, "' (the file has ",
                infos_.size(), " tensors)");
  return infos_[it->second];
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsTensorInfo& meta = info(name);
  std::byte* data = data_section_ + meta.begin;
  if (reinterpret_cast<uintptr_t>(data) % dtype_size(meta.dtype) == 0)
    return Tensor::from_blob(data, meta.shape, meta.dtype, Device::cpu(), owner_);
  Tensor copy = Tensor::empty(meta.shape, meta.dtype);
  std::memcpy(copy.data_ptr(), data, meta.nbytes());
  return copy;
}


namespace {

constexpr std::string_view kIndexSuffix = ".safetensors.index.json";

// A shard named by an index lives beside it: no absolute paths, no climbing out.
bool is_plain_relative(const std::filesystem::path& shard) {
  if (shard.empty() || shard.is_absolute()) return false;
  return std::none_of(shard.begin(), shard.end(), [](const auto& part) { return part == ".."; });
}

// weight_map of an index json: tensor name -> shard file name.
std::map<std::string, std::string> read_weight_map(const std::filesystem::path& index_path) {
  const std::string label = index_path.string();
  const Json index = parse_json_strict(read_regular_file(index_path), label);
  FASTDIT_CHECK(index.is_object() && index.contains("weight_map") &&
                    index["weight_map"].is_object(),
                label,
                ": expected an object with a \"weight_map\" object (tensor name -> shard file)");
  std::map<std::string, std::string> shard_of;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    FASTDIT_CHECK(shard.is_string() && is_plain_relative(shard.get<std::string>()), label,
                  ": weight_map entry for tensor '", name,
                  "' must be a file name beside the index, found ", brief(shard));
    shard_of.emplace(name, shard.get<std::string>());
  }
  FASTDIT_CHECK(!shard_of.empty(), label, ": weight_map is empty");
  return shard_of;
}

}  // namespace

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  FASTDIT_CHECK(fs::exists(status), path.string(), ": no such file or directory");
  SafetensorsCheckpoint checkpoint;
  checkpoint.source_ = path;
  if (!fs::is_directory(status)) {
    if (path.extension() == ".json")
      checkpoint.add_indexed_files(path);
    else
      checkpoint.add_file(path);
    return checkpoint;
  }
  std::vector<fs::path> indexes, files;
  for (const auto& entry : fs::directory_iterator(path)) {
    const std::string name = entry.path().filename().string();
    if (name.ends_with(kIndexSuffix)) indexes.push_back(entry.path());
    if (name.ends_with(".safetensors")) files.push_back(entry.path());
  }
  std::sort(indexes.begin(), indexes.end());
  std::sort(files.begin(), files.end());
  FASTDIT_CHECK(indexes.size() <= 1, path.string(), ": ", indexes.size(), " index files (",
                indexes[0].filename().string(), ", ", indexes[1].filename().string(),
                ", ...); name the one to use");
  if (indexes.size() == 1) {
    checkpoint.add_indexed_files(indexes[0]);
    return checkpoint;
  }
  FASTDIT_CHECK(!files.empty(), path.string(), ": no .safetensors files in this directory");
  for (const auto& file : files) checkpoint.add_file(file);
  return checkpoint;
}

void SafetensorsCheckpoint::add_file(const std::filesystem::path& path) {
  SafetensorsFile file = SafetensorsFile::open(path);
  for (const std::string& name : file.names()) {
    const auto [it, added] = owner_of_.emplace(name, files_.size());
    FASTDIT_CHECK(added, "tensor '", name, "' is in both ", paths_[it->second].string(), " and ",
                  path.string());
    names_.push_back(name);
  }
  files_.push_back(std::move(file));
  paths_.push_back(path);
}

// The index and the shard headers must agree exactly: a stale index is how a checkpoint
// silently loses or doubles weights.
void SafetensorsCheckpoint::add_indexed_files(const std::filesystem::path& index_path) {
  const std::string label = index_path.string();
  const std::map<std::string, std::string> shard_of = read_weight_map(index_path);
  std::map<std::string, std::string> first_tensor_of_shard;  // sorted shard names
  for (const auto& [name, shard] : shard_of) first_tensor_of_shard.emplace(shard, name);
  const std::filesystem::path dir = index_path.parent_path();
  for (const auto& [shard, name] : first_tensor_of_shard)
    FASTDIT_CHECK(std::filesystem::is_regular_file(dir / shard), label, ": shard '", shard,
                  "' (listed for tensor '", name, "') does not exist at ",
                  (dir / shard).string());
  index_path_ = index_path;
  for (const auto& [shard, unused] : first_tensor_of_shard) add_file(dir / shard);

  for (const auto& [name, shard] : shard_of) {
    const auto it = owner_of_.find(name);
    FASTDIT_CHECK(it != owner_of_.end(), label, ": tensor '", name, "' is listed in shard '",
                  shard, "' but that file has no such tensor");
    FASTDIT_CHECK(paths_[it->second] == dir / shard, label, ": tensor '", name,
                  "' is listed in shard '", shard, "' but it is in ",
                  paths_[it->second].string());
  }
  for (const auto& [name, file_index] : owner_of_)
    FASTDIT_CHECK(shard_of.contains(name), paths_[file_index].string(), ": tensor '", name,
                  "' is not listed in the index ", label);
}

size_t SafetensorsCheckpoint::file_index(const std::string& name) const {
  const auto it = owner_of_.find(name);
  FASTDIT_CHECK(it != owner_of_.end(), source_.string(), ": no tensor '", name,
                "' (the checkpoint has ", names_.size(), " tensors)");
  return it->second;
}

const SafetensorsTensorInfo& SafetensorsCheckpoint::info(const std::string& name) const {
  return files_[file_index(name)].info(name);
}

Tensor SafetensorsCheckpoint::tensor(const std::string& name) const {
  return files_[file_index(name)].tensor(name);
}

const std::filesystem::path& SafetensorsCheckpoint::file_of(const std::string& name) const {
  return paths_[file_index(name)];
}

namespace {

// The header the reference writes: __metadata__ first, then the tensors in order with
// consecutive offsets, padded with spaces so that the data section starts 8-byte aligned.
std::string safetensors_header(const NamedTensors& tensors, const SafetensorsMetadata& metadata,
                               const std::string& label) {
  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    FASTDIT_CHECK(name != "__metadata__" && !header.contains(name), label, ": tensor name '",
                  name, "' is reserved or given twice");
    FASTDIT_CHECK(tensor.defined(), label, ": tensor '", name, "' is undefined");
    Json entry = Json::object();
    entry["dtype"] = safetensors_dtype_code(tensor.dtype());
    entry["shape"] = tensor.shape();
    entry["data_offsets"] = Json::array({offset, offset + tensor.nbytes()});
    header[name] = std::move(entry);
    offset += tensor.nbytes();
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const Json::type_error&) {
    FASTDIT_FAIL(label, ": tensor names and metadata must be valid UTF-8");
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace

void write_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                       const SafetensorsMetadata& metadata, OutputOptions options) {
  const std::string label = path.string();
  const std::string header = safetensors_header(tensors, metadata, label);
  std::vector<Tensor> host;  // converted before the file exists, so a failure leaves nothing
  host.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) host.push_back(tensor.to(Device::cpu()).contiguous());

  AtomicFile file(path, std::move(options));
  uint8_t length_prefix[8];
  for (int i = 0; i < 8; ++i) length_prefix[i] = static_cast<uint8_t>(header.size() >> (8 * i));
  file.write(length_prefix, sizeof length_prefix);
  file.write(header.data(), header.size());
  for (const Tensor& tensor : host)
    if (tensor.nbytes() > 0) file.write(tensor.data_ptr(), tensor.nbytes());
  file.commit();
}

}  // namespace fastdit
