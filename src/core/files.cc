#include "core/files.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "core/error.h"

namespace fastdit {
namespace fs = std::filesystem;

namespace {

std::string errno_text(int error = errno) { return std::strerror(error); }

std::string named(std::string_view label, const fs::path& path) {
  return label.empty() ? path.string() : std::string(label) + " " + path.string();
}

// ---- inputs of this process -------------------------------------------------------

std::atomic<bool> g_tracking{false};
std::mutex g_inputs_mutex;
std::map<std::pair<dev_t, ino_t>, std::string>& inputs() {
  static std::map<std::pair<dev_t, ino_t>, std::string> files;
  return files;
}

void remember_input(const struct stat& st, const fs::path& path) {
  if (!g_tracking.load()) return;
  const std::lock_guard lock(g_inputs_mutex);
  inputs().emplace(std::pair(st.st_dev, st.st_ino), path.string());
}

// The input `st` is, or empty.
std::string input_named_by(const struct stat& st) {
  if (!g_tracking.load()) return {};
  const std::lock_guard lock(g_inputs_mutex);
  const auto it = inputs().find({st.st_dev, st.st_ino});
  return it == inputs().end() ? std::string() : it->second;
}

// ---- temporary files a signal removes ---------------------------------------------

// A slot is 0 free, 1 being filled, 2 a temporary file that exists or may exist. The
// handler reads only lock-free atomics and the path bytes of slots in state 2.
constexpr int kSlots = 32;
struct Slot {
  std::atomic<int> state{0};
  char path[PATH_MAX];
};
Slot g_slots[kSlots];
static_assert(std::atomic<int>::is_always_lock_free);

constexpr int kCleanupSignals[] = {SIGINT, SIGTERM, SIGHUP};

extern "C" void remove_temporaries_and_reraise(int signal_number) {
  for (Slot& slot : g_slots)
    if (slot.state.load() == 2) ::unlink(slot.path);
  struct sigaction action {};
  action.sa_handler = SIG_DFL;
  sigemptyset(&action.sa_mask);
  ::sigaction(signal_number, &action, nullptr);
  ::raise(signal_number);  // delivered on return, with the default disposition: the process ends by it
}

// Installs the handler for every cleanup signal whose disposition is the default one; a
// signal someone else handles (or ignores) is left to them.
void install_handlers_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (int signal_number : kCleanupSignals) {
      struct sigaction current {};
      if (::sigaction(signal_number, nullptr, &current) != 0) continue;
      if ((current.sa_flags & SA_SIGINFO) || current.sa_handler != SIG_DFL) continue;
      struct sigaction action {};
      action.sa_handler = remove_temporaries_and_reraise;
      sigemptyset(&action.sa_mask);
      for (int other : kCleanupSignals) sigaddset(&action.sa_mask, other);
      ::sigaction(signal_number, &action, nullptr);
    }
  });
}

int claim_slot(const std::string& path) {
  if (path.size() >= PATH_MAX) return -1;
  install_handlers_once();
  for (int i = 0; i < kSlots; ++i) {
    int expected = 0;
    if (!g_slots[i].state.compare_exchange_strong(expected, 1)) continue;
    std::memcpy(g_slots[i].path, path.c_str(), path.size() + 1);
    g_slots[i].state.store(2);
    return i;
  }
  return -1;  // more concurrent writes than slots: the destructor still cleans up on errors
}

void release_slot(int slot) {
  if (slot >= 0) g_slots[slot].state.store(0);
}

void sleep_for_test_hook() {
  const char* text = std::getenv("FASTDIT_TEST_WRITE_DELAY_MS");
  if (!text || !*text) return;
  char* end = nullptr;
  const long ms = std::strtol(text, &end, 10);
  if (end && *end == '\0' && ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(std::min(ms, 600000L)));
}

// Follows symbolic links to the file they name (which need not exist yet).
fs::path resolve_links(const fs::path& target, std::string_view label) {
  fs::path path = target;
  for (int hops = 0; hops < 40; ++hops) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return path;
    std::error_code error;
    const fs::path link = fs::read_symlink(path, error);
    FASTDIT_CHECK(!error, named(label, target), ": cannot read the symbolic link: ", error.message());
    path = link.is_absolute() ? link : path.parent_path() / link;
  }
  FASTDIT_FAIL(named(label, target), ": too many levels of symbolic links");
}

void write_all(int fd, const void* data, size_t bytes, const fs::path& path) {
  const char* next = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t written = ::write(fd, next, bytes);
    if (written < 0 && errno == EINTR) continue;
    FASTDIT_CHECK(written > 0, path.string(), ": write failed: ", errno_text());
    next += written;
    bytes -= static_cast<size_t>(written);
  }
}

}  // namespace

const char* file_kind(mode_t mode) {
  if (S_ISREG(mode)) return "regular file";
  if (S_ISDIR(mode)) return "directory";
  if (S_ISFIFO(mode)) return "FIFO";
  if (S_ISCHR(mode)) return "character device";
  if (S_ISBLK(mode)) return "block device";
  if (S_ISSOCK(mode)) return "socket";
  if (S_ISLNK(mode)) return "symbolic link";
  return "special file";
}

void require_regular_file(const fs::path& path) {
  struct stat st {};
  FASTDIT_CHECK(::stat(path.c_str(), &st) == 0, path.string(), ": cannot open: ", errno_text());
  FASTDIT_CHECK(S_ISREG(st.st_mode), path.string(), ": is a ", file_kind(st.st_mode), ", not a regular file");
}

int open_regular_file(const fs::path& path) {
  require_regular_file(path);  // a FIFO is refused before anything opens it
  // O_NONBLOCK still, for the file swapped for a FIFO between the stat and the open.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  FASTDIT_CHECK(fd >= 0, path.string(), ": cannot open: ", errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const int error = errno;
    ::close(fd);
    FASTDIT_CHECK(S_ISREG(st.st_mode), path.string(), ": is a ", file_kind(st.st_mode), ", not a regular file");
    FASTDIT_FAIL(path.string(), ": cannot stat: ", errno_text(error));
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  remember_input(st, path);
  return fd;
}

std::string read_regular_file(const fs::path& path, size_t max_bytes) {
  const int fd = open_regular_file(path);
  struct stat st {};
  ::fstat(fd, &st);
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    FASTDIT_FAIL(path.string(), ": is ", st.st_size, " bytes, more than the ", max_bytes, " this reader takes");
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t filled = 0;
  for (;;) {  // to the end, even when the file grew since the stat (up to the bound)
    if (filled == text.size()) {
      if (text.size() >= max_bytes) break;
      text.resize(std::min(max_bytes, std::max<size_t>(4096, 2 * text.size())));
    }
    const ssize_t got = ::read(fd, text.data() + filled, text.size() - filled);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int error = errno;
      ::close(fd);
      FASTDIT_FAIL(path.string(), ": read failed: ", errno_text(error));
    }
    if (got == 0) break;
    filled += static_cast<size_t>(got);
  }
  ::close(fd);
  text.resize(filled);
  return text;
}

void check_json_depth(std::string_view text, size_t max_depth, std::string_view source) {
  size_t depth = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      FASTDIT_CHECK(++depth <= max_depth, source, ": JSON nested deeper than ", max_depth, " levels");
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
}

void set_input_tracking(bool on) { g_tracking.store(on); }

void note_input_file(const fs::path& path) {
  struct stat st {};
  if (!path.empty() && ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) remember_input(st, path);
}

fs::path check_output_path(const fs::path& target, std::string_view label, bool may_be_input) {
  FASTDIT_CHECK(!target.empty(), named(label, target), ": empty path");
  FASTDIT_CHECK(target.has_filename(), named(label, target), ": names a directory, not a file");
  const fs::path resolved = resolve_links(target, label);
  struct stat st {};
  if (::stat(resolved.c_str(), &st) != 0) {
    FASTDIT_CHECK(errno == ENOENT, named(label, target), ": cannot write: ", errno_text());
    return resolved;  // a new file
  }
  FASTDIT_CHECK(S_ISREG(st.st_mode), named(label, target), ": is a ", file_kind(st.st_mode),
                ", not a regular file");
  if (!may_be_input) {
    const std::string input = input_named_by(st);
    FASTDIT_CHECK(input.empty(), named(label, target), ": is an input of this command (", input,
                  "); write the output to another file");
  }
  return resolved;
}

AtomicFile::AtomicFile(const fs::path& target, OutputOptions options) : label_(std::move(options.label)) {
  target_ = check_output_path(target, label_, options.may_be_input);
  if (options.create_parents && target_.has_parent_path()) {
    std::error_code error;
    fs::create_directories(target_.parent_path(), error);
    FASTDIT_CHECK(!error, named(label_, target), ": cannot make folder ", target_.parent_path().string(), ": ",
                  error.message());
  }
  temporary_ = target_.string() + ".tmp." + std::to_string(::getpid());
  slot_ = claim_slot(temporary_.string());
  ::unlink(temporary_.c_str());  // a stale one of an earlier process with this id
  fd_ = ::open(temporary_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
  if (fd_ < 0) {
    const int error = errno;
    release_slot(std::exchange(slot_, -1));
    FASTDIT_FAIL(named(label_, target), ": cannot create ", temporary_.string(), ": ", errno_text(error));
  }
  struct stat st {};
  if (::stat(target_.c_str(), &st) == 0) {  // keep what the replaced file had
    ::fchmod(fd_, st.st_mode & 07777);
    if (::geteuid() == 0 && ::fchown(fd_, st.st_uid, st.st_gid) != 0) {
    }
  }
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temporary_.c_str());
  release_slot(slot_);
}

void AtomicFile::write(const void* data, size_t bytes) {
  FASTDIT_CHECK(fd_ >= 0 && !committed_, temporary_.string(), ": write after commit");
  write_all(fd_, data, bytes, temporary_);
}

void AtomicFile::commit() {
  FASTDIT_CHECK(fd_ >= 0 && !committed_, temporary_.string(), ": committed twice");
  sleep_for_test_hook();
  FASTDIT_CHECK(::fsync(fd_) == 0, temporary_.string(), ": fsync failed: ", errno_text());
  const int fd = std::exchange(fd_, -1);
  FASTDIT_CHECK(::close(fd) == 0, temporary_.string(), ": close failed: ", errno_text());
  // The target may have changed since the constructor looked (a FIFO made meanwhile).
  check_output_path(target_, label_, true);
  FASTDIT_CHECK(::rename(temporary_.c_str(), target_.c_str()) == 0, temporary_.string(), ": cannot rename to ",
                target_.string(), ": ", errno_text());
  committed_ = true;
  release_slot(std::exchange(slot_, -1));
  const fs::path folder = target_.has_parent_path() ? target_.parent_path() : fs::path(".");
  const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);  // the rename itself durable; a failure here loses nothing written
    ::close(dir);
  }
}

void write_file_atomically(const fs::path& target, std::string_view text, OutputOptions options) {
  AtomicFile file(target, std::move(options));
  file.write(text);
  file.commit();
}

}  // namespace fastdit
