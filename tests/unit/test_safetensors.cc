#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "loader/safetensors.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

namespace fs = std::filesystem;
using testing::temp_dir;

// A tensor of `dtype` whose bytes count up from `seed`, so any misplaced byte shows.
Tensor patterned(const Shape& shape, DType dtype, uint8_t seed) {
  Tensor t = Tensor::empty(shape, dtype);
  auto* bytes = static_cast<uint8_t*>(t.data_ptr());
  for (size_t i = 0; i < t.nbytes(); ++i) bytes[i] = static_cast<uint8_t>(seed + i);
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.contiguous().data_ptr(), b.contiguous().data_ptr(), a.nbytes()) == 0;
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// A raw file: little-endian header length, the header text as given, then the data.
void write_raw(const fs::path& path, const std::string& header, size_t data_bytes) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(uint64_t(header.size()) >> (8 * i));
  write_bytes(path, bytes + header + std::string(data_bytes, '\x01'));
}

std::string entry(const std::string& dtype, const std::string& shape, uint64_t begin,
                  uint64_t end) {
  return "{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(begin) + "," + std::to_string(end) + "]}";
}

// Runs `action`, expects a fastdit::Error whose message contains every one of `needles`.
void expect_error(const std::function<void()>& action, const std::vector<std::string>& needles) {
  try {
    action();
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const auto& needle : needles)
      EXPECT_NE(message.find(needle), std::string::npos)
          << "message: " << message << "\nmissing: " << needle;
    return;
  }
  ADD_FAILURE() << "no fastdit::Error thrown";
}

void expect_open_error(const fs::path& path, std::vector<std::string> needles) {
  needles.push_back(path.string());
  expect_error([&] { SafetensorsFile::open(path); }, needles);
}

TEST(Safetensors, RoundTripEveryDtype) {
  const fs::path path = temp_dir("st") / "all.safetensors";
  NamedTensors tensors;
  for (int code = 0; code <= static_cast<int>(DType::Bool); ++code)
    tensors.emplace_back(std::string("t.") + dtype_name(DType(code)),
                         patterned({3, 5}, DType(code), uint8_t(code)));
  tensors.emplace_back("scalar", patterned({}, DType::Float32, 7));
  tensors.emplace_back("empty", Tensor::empty({0, 4}, DType::BFloat16));
  tensors.emplace_back("transposed", patterned({4, 6}, DType::Float32, 9).transpose(0, 1));
  write_safetensors(path, tensors, {{"format", "pt"}, {"note", "round trip"}});

  const SafetensorsFile file = SafetensorsFile::open(path);
  ASSERT_EQ(file.names().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, expected] = tensors[i];
    EXPECT_EQ(file.names()[i], name);
    EXPECT_EQ(file.info(name).dtype, expected.dtype()) << name;
    EXPECT_EQ(file.info(name).shape, expected.shape()) << name;
    EXPECT_TRUE(same_bytes(file.tensor(name), expected)) << name;
  }
  EXPECT_EQ(file.metadata(), (SafetensorsMetadata{{"format", "pt"}, {"note", "round trip"}}));
}

TEST(Safetensors, HeaderIsSpacePaddedToEightBytes) {
  const fs::path path = temp_dir("st") / "pad.safetensors";
  write_safetensors(path, {{"w", patterned({3}, DType::Float16, 1)}});
  const std::string bytes = read_bytes(path);
  uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, bytes.data(), 8);
  EXPECT_EQ((8 + header_bytes) % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + header_bytes + 6);
  const std::string header = bytes.substr(8, header_bytes);
  EXPECT_EQ(header.substr(0, header.find_last_not_of(' ') + 1),
            R"({"w":{"dtype":"F16","shape":[3],"data_offsets":[0,6]}})");
}

TEST(Safetensors, TensorsBorrowTheMappingAndOutliveTheFile) {
  const fs::path path = temp_dir("st") / "borrow.safetensors";
  const Tensor expected = patterned({8, 8}, DType::Float32, 3);
  write_safetensors(path, {{"w", expected}});
  Tensor borrowed;
  {
    const SafetensorsFile file = SafetensorsFile::open(path);
    borrowed = file.tensor("w");
    EXPECT_EQ(borrowed.data_ptr(), file.tensor("w").data_ptr()) << "expected zero copy";
  }
  fs::remove(path);
  EXPECT_TRUE(same_bytes(borrowed, expected));
  borrowed.copy_(Tensor::zeros({8, 8}, DType::Float32));  // copy-on-write, never the file
  EXPECT_EQ(borrowed.to_float_vector()[0], 0.0f);
}

TEST(Safetensors, UnalignedDataIsCopiedAligned) {
  const fs::path path = temp_dir("st") / "unaligned.safetensors";
  // A 54-byte header puts the data at offset 62, so byte 1 of it is not 4-byte aligned.
  write_raw(path, "{\"w\":" + entry("F32", "[2]", 1, 9) + "}", 9);
  const Tensor w = SafetensorsFile::open(path).tensor("w");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w.data_ptr()) % 4, 0u);
  EXPECT_EQ(w.numel(), 2);
}

TEST(Safetensors, WriteFailureLeavesNothingBehind) {
  const fs::path dir = temp_dir("st");
  const fs::path path = dir / "out.safetensors";
  write_safetensors(path, {{"w", patterned({2}, DType::Float32, 1)}});
  const std::string before = read_bytes(path);
  expect_error([&] { write_safetensors(path, {{"a", Tensor()}}); }, {path.string(), "'a'"});
  expect_error(
      [&] {
        write_safetensors(path, {{"a", Tensor::scalar(1)}, {"a", Tensor::scalar(2)}});
      },
      {path.string(), "'a'", "twice"});
  expect_error([&] { write_safetensors(dir / "missing_dir" / "x.safetensors", {}); },
               {"missing_dir"});
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
}

TEST(Safetensors, RejectsTruncatedFiles) {
  const fs::path dir = temp_dir("st");
  write_bytes(dir / "empty.safetensors", "");
  expect_open_error(dir / "empty.safetensors", {"0 bytes", "too short"});
  write_bytes(dir / "five.safetensors", std::string("\x10\0\0\0\0", 5));
  expect_open_error(dir / "five.safetensors", {"5 bytes", "too short"});
  const fs::path good = dir / "good.safetensors";
  write_safetensors(good, {{"w", patterned({4}, DType::Float32, 1)}});
  const std::string bytes = read_bytes(good);
  write_bytes(dir / "cut_data.safetensors", bytes.substr(0, bytes.size() - 1));
  expect_open_error(dir / "cut_data.safetensors", {"'w'", "beyond the data section"});
  write_bytes(dir / "cut_header.safetensors", bytes.substr(0, 20));
  expect_open_error(dir / "cut_header.safetensors", {"header length", "runs past the end"});
}

TEST(Safetensors, RejectsHeaderLengthBeyondFileOrLimit) {
  const fs::path dir = temp_dir("st");
  std::string huge(8, '\xff');
  write_bytes(dir / "huge.safetensors", huge + "{}");
  expect_open_error(dir / "huge.safetensors", {"header length", "limit"});
  std::string lying(8, '\0');
  lying[1] = 1;  // 256 bytes of header claimed, 2 present
  write_bytes(dir / "lying.safetensors", lying + "{}");
  expect_open_error(dir / "lying.safetensors", {"header length 256", "runs past the end"});
}

TEST(Safetensors, RejectsBadJson) {
  const fs::path dir = temp_dir("st");
  write_raw(dir / "json.safetensors", "{\"w\": {\"dtype\":", 0);
  expect_open_error(dir / "json.safetensors", {"not valid JSON"});
  write_raw(dir / "array.safetensors", "[1, 2]", 0);
  expect_open_error(dir / "array.safetensors", {"must be a JSON object"});
  write_raw(dir / "dup.safetensors",
            "{\"w\":" + entry("F32", "[1]", 0, 4) + ",\"w\":" + entry("F32", "[1]", 4, 8) + "}", 8);
  expect_open_error(dir / "dup.safetensors", {"duplicate key 'w'"});
  write_raw(dir / "meta.safetensors", R"({"__metadata__": {"step": 3}})", 0);
  expect_open_error(dir / "meta.safetensors", {"__metadata__", "'step'", "must be a string"});
}

TEST(Safetensors, RejectsBadTensorEntries) {
  const fs::path dir = temp_dir("st");
  const std::string name = "blocks.0.attn1.to_q.weight";
  const auto check = [&](const std::string& file, const std::string& tensor_entry,
                         size_t data_bytes, std::vector<std::string> needles) {
    write_raw(dir / file, "{\"" + name + "\":" + tensor_entry + "}", data_bytes);
    needles.push_back("tensor '" + name + "'");
    expect_open_error(dir / file, needles);
  };
  check("dtype.safetensors", entry("F33", "[2]", 0, 8), 8, {"unknown dtype \"F33\"", "BF16"});
  check("negative.safetensors", entry("F32", "[-2, 3]", 0, 24), 24, {"non-negative integers"});
  check("float.safetensors", entry("F32", "[2.5]", 0, 10), 10, {"non-negative integers"});
  check("overflow.safetensors", entry("F32", "[4294967296, 4294967296]", 0, 0), 0,
        {"too large for 64-bit sizes"});
  check("beyond.safetensors", entry("F32", "[4]", 0, 16), 12,
        {"data_offsets [0, 16)", "data section of 12 bytes"});
  check("reversed.safetensors", entry("F32", "[0]", 8, 4), 8, {"begin after end"});
  check("size.safetensors", entry("BF16", "[64, 64]", 0, 4096), 4096,
        {"data_offsets [0, 4096) hold 4096 bytes but bfloat16[64, 64] needs 8192"});
  check("missing.safetensors", R"({"dtype":"F32","shape":[1]})", 4, {"missing 'data_offsets'"});
  check("extra.safetensors", R"({"dtype":"F32","shape":[],"data_offsets":[0,4],"x":1})", 4,
        {"unexpected key 'x'"});
  check("not_object.safetensors", "[1]", 0, {"expected an object"});
}

TEST(Safetensors, RejectsOverlappingTensorsButAllowsGaps) {
  const fs::path dir = temp_dir("st");
  write_raw(dir / "overlap.safetensors",
            "{\"a\":" + entry("F32", "[4]", 0, 16) + ",\"b\":" + entry("F32", "[4]", 12, 28) + "}",
            28);
  expect_open_error(dir / "overlap.safetensors", {"'a' [0, 16)", "'b' [12, 28)", "overlap"});
  write_raw(dir / "gap.safetensors",
            "{\"a\":" + entry("F32", "[1]", 0, 4) + ",\"b\":" + entry("F32", "[1]", 8, 12) +
                ",\"c\":" + entry("F32", "[0]", 2, 2) + "}",
            16);
  EXPECT_EQ(SafetensorsFile::open(dir / "gap.safetensors").names().size(), 3u);
}

TEST(Safetensors, UnknownTensorAndMissingFileNameThePath) {
  const fs::path path = temp_dir("st") / "one.safetensors";
  write_safetensors(path, {{"w", Tensor::scalar(1)}});
  expect_error([&] { SafetensorsFile::open(path).tensor("nope"); }, {path.string(), "'nope'"});
  expect_open_error(path.parent_path() / "absent.safetensors", {"cannot open"});
  expect_open_error(path.parent_path(), {"not a regular file"});
}

// Two shards of a checkpoint: a.weight, a.bias in part 1, b.weight in part 2.
fs::path write_shards(bool with_index) {
  const fs::path dir = temp_dir("ckpt");
  write_safetensors(dir / "model-00001-of-00002.safetensors",
                    {{"a.weight", patterned({4, 2}, DType::Float32, 1)},
                     {"a.bias", patterned({4}, DType::Float32, 2)}});
  write_safetensors(dir / "model-00002-of-00002.safetensors",
                    {{"b.weight", patterned({2, 2}, DType::BFloat16, 3)}});
  write_bytes(dir / "config.json", "{}");
  if (with_index)
    write_bytes(dir / "model.safetensors.index.json", R"({
      "metadata": {"total_size": 56},
      "weight_map": {"a.weight": "model-00001-of-00002.safetensors",
                     "a.bias": "model-00001-of-00002.safetensors",
                     "b.weight": "model-00002-of-00002.safetensors"}})");
  return dir;
}

void expect_two_shards(const SafetensorsCheckpoint& checkpoint, const fs::path& dir) {
  EXPECT_EQ(checkpoint.names(), (std::vector<std::string>{"a.weight", "a.bias", "b.weight"}));
  EXPECT_EQ(checkpoint.file_of("a.bias"), dir / "model-00001-of-00002.safetensors");
  EXPECT_EQ(checkpoint.file_of("b.weight"), dir / "model-00002-of-00002.safetensors");
  EXPECT_EQ(checkpoint.info("b.weight").dtype, DType::BFloat16);
  EXPECT_TRUE(same_bytes(checkpoint.tensor("a.weight"), patterned({4, 2}, DType::Float32, 1)));
  expect_error([&] { checkpoint.info("c"); }, {"'c'"});
}

TEST(SafetensorsCheckpoint, ShardedDirectoryWithIndex) {
  const fs::path dir = write_shards(true);
  const auto checkpoint = SafetensorsCheckpoint::open(dir);
  EXPECT_EQ(checkpoint.index_path(), dir / "model.safetensors.index.json");
  expect_two_shards(checkpoint, dir);
  expect_two_shards(SafetensorsCheckpoint::open(dir / "model.safetensors.index.json"), dir);
}

TEST(SafetensorsCheckpoint, ShardedDirectoryWithoutIndex) {
  const fs::path dir = write_shards(false);
  const auto checkpoint = SafetensorsCheckpoint::open(dir);
  EXPECT_TRUE(checkpoint.index_path().empty());
  expect_two_shards(checkpoint, dir);
}

TEST(SafetensorsCheckpoint, SingleFile) {
  const fs::path dir = write_shards(false);
  const auto checkpoint = SafetensorsCheckpoint::open(dir / "model-00002-of-00002.safetensors");
  EXPECT_EQ(checkpoint.names(), std::vector<std::string>{"b.weight"});
  EXPECT_EQ(checkpoint.files().size(), 1u);
}

TEST(SafetensorsCheckpoint, DuplicateNamesAcrossFiles) {
  const fs::path dir = write_shards(false);
  write_safetensors(dir / "extra.safetensors", {{"a.bias", Tensor::scalar(0)}});
  expect_error([&] { SafetensorsCheckpoint::open(dir); },
               {"'a.bias'", "extra.safetensors", "model-00001-of-00002.safetensors"});
}

void write_index(const fs::path& dir, const nlohmann::json& weight_map) {
  write_bytes(dir / "model.safetensors.index.json",
              nlohmann::json{{"weight_map", weight_map}}.dump());
}

TEST(SafetensorsCheckpoint, IndexMustAgreeWithShards) {
  const fs::path dir = write_shards(false);
  const std::string index = (dir / "model.safetensors.index.json").string();
  const std::string part1 = "model-00001-of-00002.safetensors";
  const std::string part2 = "model-00002-of-00002.safetensors";
  const nlohmann::json good = {{"a.weight", part1}, {"a.bias", part1}, {"b.weight", part2}};

  nlohmann::json missing_file = good;
  missing_file["b.weight"] = "model-00003-of-00003.safetensors";
  write_index(dir, missing_file);
  expect_error([&] { SafetensorsCheckpoint::open(dir); },
               {index, "model-00003-of-00003.safetensors", "'b.weight'", "does not exist"});

  nlohmann::json missing_tensor = good;
  missing_tensor["c.weight"] = part2;
  write_index(dir, missing_tensor);
  expect_error([&] { SafetensorsCheckpoint::open(dir); },
               {index, "'c.weight'", part2, "has no such tensor"});

  nlohmann::json unlisted = good;
  unlisted.erase("a.bias");
  write_index(dir, unlisted);
  expect_error([&] { SafetensorsCheckpoint::open(dir); },
               {index, "'a.bias'", part1, "not listed in the index"});

  nlohmann::json wrong_shard = good;
  wrong_shard["a.bias"] = part2;
  write_index(dir, wrong_shard);
  expect_error([&] { SafetensorsCheckpoint::open(dir); },
               {index, "'a.bias'", "listed in shard '" + part2 + "'", part1});

  write_index(dir, {{"a.weight", "../elsewhere.safetensors"}});
  expect_error([&] { SafetensorsCheckpoint::open(dir); },
               {index, "'a.weight'", "beside the index"});

  write_bytes(dir / "model.safetensors.index.json", R"({"weight_map": [1]})");
  expect_error([&] { SafetensorsCheckpoint::open(dir); }, {index, "weight_map"});
}

TEST(SafetensorsCheckpoint, BadPaths) {
  const fs::path dir = temp_dir("ckpt");
  expect_error([&] { SafetensorsCheckpoint::open(dir / "nothing"); },
               {(dir / "nothing").string(), "no such file"});
  expect_error([&] { SafetensorsCheckpoint::open(dir); },
               {dir.string(), "no .safetensors files"});
  write_bytes(dir / "broken.safetensors", "\x02");
  expect_error([&] { SafetensorsCheckpoint::open(dir); },
               {(dir / "broken.safetensors").string(), "too short"});
}

// The fuzzer's seed corpus (fuzz/make_corpus.py): valid_* must parse, bad_* must be refused
// with a fastdit::Error, and nothing may fail any other way.
TEST(SafetensorsCorpus, SeedsParseOrFailCleanly) {
  const fs::path corpus = testing::source_path("fuzz/corpus/safetensors");
  int seen = 0;
  for (const auto& item : fs::directory_iterator(corpus)) {
    const std::string name = item.path().filename().string();
    std::string bytes = read_bytes(item.path());
    std::span<std::byte> view(reinterpret_cast<std::byte*>(bytes.data()), bytes.size());
    bool parsed = false;
    try {
      const auto file = SafetensorsFile::from_bytes(view, nullptr, name);
      for (const auto& tensor : file.names())
        EXPECT_EQ(file.tensor(tensor).nbytes(), file.info(tensor).nbytes());
      parsed = true;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
    if (name.starts_with("valid_") || name.starts_with("bad_")) {
      EXPECT_EQ(parsed, name.starts_with("valid_")) << name;
    }
    ++seen;
  }
  EXPECT_GE(seen, 20);
}

}  // namespace
}  // namespace fastdit
