// core/files.h: the input and output rule every command goes through.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "core/error.h"
#include "core/files.h"
#include "support/test_support.h"

namespace fastdit {
namespace {
namespace fs = std::filesystem;

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void put(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

mode_t mode_of(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  return st.st_mode & 07777;
}

size_t entries(const fs::path& dir) {
  return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

TEST(Files, InputsMustBeRegularFiles) {
  const fs::path dir = testing::temp_dir("files");
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
  EXPECT_EQ(error_of([&] { read_regular_file(dir / "fifo"); }), (dir / "fifo").string() + ": is a FIFO, not a regular file");
  EXPECT_EQ(error_of([&] { read_regular_file(dir); }), dir.string() + ": is a directory, not a regular file");
  EXPECT_EQ(error_of([] { read_regular_file("/dev/zero"); }), "/dev/zero: is a character device, not a regular file");
  EXPECT_NE(error_of([&] { read_regular_file(dir / "missing"); }).find("No such file"), std::string::npos);
  put(dir / "big", std::string(100, 'x'));
  EXPECT_NE(error_of([&] { read_regular_file(dir / "big", 64); }).find("more than the 64"), std::string::npos);
  EXPECT_EQ(read_regular_file(dir / "big", 100), std::string(100, 'x'));
  fs::create_symlink(dir / "big", dir / "link");
  EXPECT_EQ(read_regular_file(dir / "link").size(), 100u);
}

TEST(Files, JsonDepthIsBounded) {
  EXPECT_NO_THROW(check_json_depth(R"({"a": [[1, {"b": "[[[[[[[["}]]})", 4, "x"));
  EXPECT_EQ(error_of([] { check_json_depth("[[[[[", 4, "src"); }), "src: JSON nested deeper than 4 levels");
  EXPECT_NO_THROW(check_json_depth(R"(["\"[[[[[[["])", 1, "x"));  // an escaped quote stays in the string
}

TEST(Files, OutputsKeepModeAndLinks) {
  const fs::path dir = testing::temp_dir("files");
  put(dir / "private", "old");
  ASSERT_EQ(::chmod((dir / "private").c_str(), 0600), 0);
  write_file_atomically(dir / "private", "new");
  EXPECT_EQ(read_all(dir / "private"), "new");
  EXPECT_EQ(mode_of(dir / "private"), 0600u);

  fs::create_directory(dir / "real");
  put(dir / "real" / "target", "old");
  ASSERT_EQ(::chmod((dir / "real" / "target").c_str(), 0640), 0);
  fs::create_symlink("real/target", dir / "link");
  write_file_atomically(dir / "link", "through the link");
  EXPECT_TRUE(fs::is_symlink(dir / "link"));
  EXPECT_EQ(read_all(dir / "real" / "target"), "through the link");
  EXPECT_EQ(mode_of(dir / "real" / "target"), 0640u);
  EXPECT_EQ(entries(dir / "real"), 1u);  // the temporary went beside the target and is gone

  fs::create_symlink("real/new", dir / "dangling");
  write_file_atomically(dir / "dangling", "made");
  EXPECT_TRUE(fs::is_symlink(dir / "dangling"));
  EXPECT_EQ(read_all(dir / "real" / "new"), "made");
}

TEST(Files, OutputsRefuseSpecialFiles) {
  const fs::path dir = testing::temp_dir("files");
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
  fs::create_directory(dir / "folder");
  EXPECT_EQ(error_of([&] { write_file_atomically(dir / "fifo", "x", {.label = "--output"}); }),
            "--output " + (dir / "fifo").string() + ": is a FIFO, not a regular file");
  EXPECT_EQ(error_of([&] { write_file_atomically(dir / "folder", "x"); }),
            (dir / "folder").string() + ": is a directory, not a regular file");
  EXPECT_EQ(error_of([] { check_output_path("/dev/null", "--json"); }),
            "--json /dev/null: is a character device, not a regular file");
  fs::create_symlink("fifo", dir / "to_fifo");
  EXPECT_NE(error_of([&] { write_file_atomically(dir / "to_fifo", "x"); }).find("is a FIFO"), std::string::npos);
  EXPECT_TRUE(fs::is_fifo(dir / "fifo"));
  EXPECT_EQ(entries(dir), 3u);
}

TEST(Files, OutputsRefuseInputsWhileTracking) {
  const fs::path dir = testing::temp_dir("files");
  put(dir / "input", "keep me");
  fs::create_hard_link(dir / "input", dir / "hard");
  set_input_tracking(true);
  read_regular_file(dir / "input");
  const std::string refused = error_of([&] { write_file_atomically(dir / "hard", "x", {.label = "--output"}); });
  EXPECT_NE(refused.find("--output " + (dir / "hard").string() + ": is an input of this command"), std::string::npos)
      << refused;
  write_file_atomically(dir / "input", "updated in place", {.may_be_input = true});  // a store's append
  set_input_tracking(false);
  EXPECT_EQ(read_all(dir / "input"), "updated in place");
  EXPECT_EQ(read_all(dir / "hard"), "keep me");  // the rename broke the hard link, it did not write through
}

TEST(Files, AnUncommittedWriteLeavesNothing) {
  const fs::path dir = testing::temp_dir("files");
  put(dir / "out", "before");
  {
    AtomicFile file(dir / "out");
    file.write("half");
    EXPECT_TRUE(fs::exists(file.temporary_path()));
    EXPECT_EQ(file.temporary_path().string(), (dir / "out").string() + ".tmp." + std::to_string(::getpid()));
  }
  EXPECT_EQ(read_all(dir / "out"), "before");
  EXPECT_EQ(entries(dir), 1u);
  EXPECT_NE(error_of([&] { write_file_atomically(dir / "missing" / "out", "x"); }).find("missing"), std::string::npos);
  write_file_atomically(dir / "made" / "out", "x", {.create_parents = true});
  EXPECT_EQ(read_all(dir / "made" / "out"), "x");
}

}  // namespace
}  // namespace fastdit
