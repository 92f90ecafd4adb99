// Files a command reads and writes, under one rule for both (DESIGN.md, "Errors").
//
// Inputs: a path must name a regular file (after symbolic links). A directory, FIFO,
// device or socket is "<path>: is a <kind>, not a regular file", found by stat before the
// file is opened and opened O_NONBLOCK, so a FIFO never blocks. Whole-file reads are
// bounded (a text file larger than the bound is an error naming it).
//
// Outputs: every file a command writes goes through AtomicFile (or write_file_atomically):
//   - an existing target that is a directory, FIFO, device or socket is refused
//     ("<flag> <path>: is a <kind>, not a regular file"); nothing is written through;
//   - a symbolic link is followed: the file it points to is replaced and the link stays;
//   - an existing target keeps its permission bits (and owner, when run as root);
//   - a target that is one of this command's inputs (same device and inode) is refused;
//   - the bytes go to <target>.tmp.<pid> in the target's folder, fsync'd, then renamed over
//     the target, so the target is whole or untouched. A SIGINT, SIGTERM or SIGHUP during
//     the write removes the temporary file and ends the process by that signal.
// Inputs are remembered only while input tracking is on (the CLI turns it on; the library
// and the C API leave it off, so a long-lived caller may rewrite what it read earlier).
//
// Test hook (test-only, never for production use): FASTDIT_TEST_WRITE_DELAY_MS=<ms> makes
// AtomicFile::commit sleep that long before it renames, so a test can signal a write.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

namespace fastdit {

// "regular file", "directory", "FIFO", "character device", "block device", "socket",
// "symbolic link" or "special file".
const char* file_kind(mode_t mode);

// The largest whole file read_regular_file reads by default (configs, definitions,
// records, indexes); a trace or a cohort file passes its own bound.
inline constexpr size_t kMaxTextFileBytes = size_t{64} << 20;

// Throws unless `path` names an existing regular file: "<path>: is a FIFO, not a regular
// file", "<path>: cannot open: No such file or directory".
void require_regular_file(const std::filesystem::path& path);

// Opens a regular file for reading (never blocks on a FIFO) and remembers it as an input.
// The caller owns the descriptor.
int open_regular_file(const std::filesystem::path& path);

// The whole of a regular file; larger than `max_bytes` is an error naming the file.
std::string read_regular_file(const std::filesystem::path& path, size_t max_bytes = kMaxTextFileBytes);

// Throws "<source>: JSON nested deeper than <max_depth> levels" when `text` (one JSON value;
// a JSON-lines reader calls it per line) opens more than max_depth arrays or objects at once; a reader calls it before it
// parses, so nothing recursive (dump, copy, compare) meets a hostile depth. Bytes inside
// strings do not count.
void check_json_depth(std::string_view text, size_t max_depth, std::string_view source);
// The bound for a JSON file with no tighter one of its own (config.json, args.json, headers):
// every real file nests under 10.
inline constexpr size_t kMaxJsonDepth = 64;

// Input tracking: when on, every file opened above (and every safetensors file mapped) is
// remembered by device and inode, and an output naming one of them is refused.
void set_input_tracking(bool on);
// Remembers `path` as an input now (no-op when tracking is off or the path is missing),
// for commands that know their inputs before they read them.
void note_input_file(const std::filesystem::path& path);

// What write checks of a target: its type, that it is no input. `label` (a flag such as
// "--output", or empty) leads the message. Returns the path to replace (symbolic links
// followed). Commands call it early, so a bad --output fails before the work.
std::filesystem::path check_output_path(const std::filesystem::path& target, std::string_view label = {},
                                        bool may_be_input = false);

struct OutputOptions {
  std::string label;           // the flag naming the target, for messages ("--output")
  bool create_parents = false;  // make missing parent folders
  bool may_be_input = false;    // an in-place update of a file this command read (a store)
};

// A file written whole or not at all (see the rule above).
class AtomicFile {
 public:
  explicit AtomicFile(const std::filesystem::path& target, OutputOptions options = {});
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();  // removes the temporary file unless committed

  void write(const void* data, size_t bytes);
  void write(std::string_view text) { write(text.data(), text.size()); }
  // fsync, rename over the target (its permission bits kept), fsync the folder.
  void commit();
  const std::filesystem::path& temporary_path() const { return temporary_; }

 private:
  std::filesystem::path target_;     // symbolic links resolved
  std::filesystem::path temporary_;
  std::string label_;
  int fd_ = -1;
  int slot_ = -1;  // in the signal handler's list of temporary files
  bool committed_ = false;
};

void write_file_atomically(const std::filesystem::path& target, std::string_view text, OutputOptions options = {});

}  // namespace fastdit
