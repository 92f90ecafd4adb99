// safetensors: zero-copy reading of one file or a sharded checkpoint, and atomic writing.
//
// A file is an 8-byte little-endian header length N, N bytes of JSON header, then the data
// section. Everything in the header is validated when the file is opened, before any tensor
// is handed out: a truncated file, a header that lies about lengths, offsets outside the data,
// overlapping tensors or a shape that disagrees with its bytes is a fastdit::Error that names
// the file and the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/files.h"
#include "core/tensor.h"

namespace fastdit {

// The reference implementation refuses headers above 100 MB; so do we.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

struct SafetensorsTensorInfo {
  std::string name;
  DType dtype = DType::Float32;
  Shape shape;
  uint64_t begin = 0;  // byte range [begin, end) within the data section
  uint64_t end = 0;
  uint64_t nbytes() const { return end - begin; }
};

using SafetensorsMetadata = std::map<std::string, std::string>;

class SafetensorsFile {
 public:
  // Maps the file and validates its header.
  static SafetensorsFile open(const std::filesystem::path& path);
  // Validates bytes someone else holds; `owner` keeps them alive for the tensors handed out
  // (may be null when the caller outlives them). `label` names the bytes in errors. The file
  // reader runs through here too, so fuzzing this covers it.
  static SafetensorsFile from_bytes(std::span<std::byte> bytes, std::shared_ptr<void> owner,
                                    std::string label);

  const std::string& label() const { return label_; }  // the path for opened files
  const std::vector<std::string>& names() const { return names_; }  // in header order
  bool contains(const std::string& name) const { return index_.contains(name); }
  const SafetensorsTensorInfo& info(const std::string& name) const;
  const std::vector<SafetensorsTensorInfo>& infos() const { return infos_; }  // header order
  const SafetensorsMetadata& metadata() const { return metadata_; }
  // A CPU tensor over the file's bytes (no copy; the mapping lives while the tensor does).
  // Data that is not aligned for its dtype is copied instead, since reading it in place
  // would be undefined behaviour.
  Tensor tensor(const std::string& name) const;

 private:
  std::string label_;
  std::shared_ptr<void> owner_;
  std::byte* data_section_ = nullptr;
  std::vector<SafetensorsTensorInfo> infos_;
  std::vector<std::string> names_;
  std::unordered_map<std::string, size_t> index_;
  SafetensorsMetadata metadata_;
};

// The tensors of a checkpoint that may span several files. `path` is one of
//  - a .safetensors file;
//  - a *.safetensors.index.json whose weight_map (name -> shard file) must agree exactly with
//    the shard headers;
//  - a directory: its *.safetensors.index.json when there is one, else all of its
//    *.safetensors files in name order, where no tensor name may appear twice.
class SafetensorsCheckpoint {
 public:
  static SafetensorsCheckpoint open(const std::filesystem::path& path);

  const std::vector<std::string>& names() const { return names_; }  // files in order
  bool contains(const std::string& name) const { return owner_of_.contains(name); }
  const SafetensorsTensorInfo& info(const std::string& name) const;
  Tensor tensor(const std::string& name) const;
  const std::filesystem::path& file_of(const std::string& name) const;
  const std::vector<SafetensorsFile>& files() const { return files_; }
  const std::vector<std::filesystem::path>& paths() const { return paths_; }
  // The path it was opened from, and the index json read (empty when there was none).
  const std::filesystem::path& source() const { return source_; }
  const std::filesystem::path& index_path() const { return index_path_; }

 private:
  std::filesystem::path source_;
  std::filesystem::path index_path_;
  std::vector<SafetensorsFile> files_;
  std::vector<std::filesystem::path> paths_;  // paths_[i] holds files_[i]
  std::vector<std::string> names_;
  std::unordered_map<std::string, size_t> owner_of_;  // name -> index into files_

  size_t file_index(const std::string& name) const;  // throws for unknown names
  void add_file(const std::filesystem::path& path);
  void add_indexed_files(const std::filesystem::path& index_path);
};

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Writes `tensors` in the given order (any device, dtype and strides; stored contiguous)
// with an 8-byte aligned data section, through AtomicFile (core/files.h): `path` is whole or
// untouched, a special file or an input of the command is refused.
void write_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                       const SafetensorsMetadata& metadata = {}, OutputOptions options = {});

}  // namespace fastdit
