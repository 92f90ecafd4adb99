#include "distributed/launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <thread>
#include <vector>

#include "core/error.h"

namespace fastdit::distributed {

namespace {

std::optional<std::string> env(const char* name) {
  const char* value = std::getenv(name);
  if (!value || !*value) return std::nullopt;
  return std::string(value);
}

int env_int(const char* name, int fallback, int lo, int hi) {
  const auto text = env(name);
  if (!text) return fallback;
  char* end = nullptr;
  const long value = std::strtol(text->c_str(), &end, 10);
  FASTDIT_CHECK(end && *end == '\0' && value >= lo && value <= hi, name, "=", *text, ": expected an integer in [",
                lo, ", ", hi, "]");
  return static_cast<int>(value);
}


std::vector<std::string> own_arguments() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  for (size_t start = 0; start < all.size();) {
    const size_t end = all.find('\0', start);
    args.push_back(all.substr(start, end - start));
    start = end == std::string::npos ? all.size() : end + 1;
  }
  FASTDIT_CHECK(!args.empty(), "launcher: cannot read this program's arguments from /proc/self/cmdline");
  return args;
}

pid_t start_rank(int rank, int world_size, int port, const std::vector<std::string>& args) {
  const pid_t launcher = ::getpid();
  const pid_t pid = ::fork();
  FASTDIT_CHECK(pid >= 0, "launcher: fork: ", std::strerror(errno));
  if (pid > 0) return pid;
  // A rank never outlives its launcher (killed by a timeout, say), also one that died
  // before the request took effect.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != launcher) ::_exit(1);
  // The ranks meet on the port chosen here, not on one a variable of the launcher's own
  // environment names (FASTDIT_MASTER_PORT, or torchrun's one-port-up rule).
  ::unsetenv("FASTDIT_MASTER_PORT");
  ::unsetenv("TORCHELASTIC_RUN_ID");
  const std::string r = std::to_string(rank), w = std::to_string(world_size), p = std::to_string(port);
  ::setenv("RANK", r.c_str(), 1);
  ::setenv("LOCAL_RANK", r.c_str(), 1);
  ::setenv("WORLD_SIZE", w.c_str(), 1);
  ::setenv("LOCAL_WORLD_SIZE", w.c_str(), 1);
  ::setenv("MASTER_ADDR", "127.0.0.1", 1);
  ::setenv("MASTER_PORT", p.c_str(), 1);
  if (!std::getenv("OMP_NUM_THREADS")) {
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    ::setenv("OMP_NUM_THREADS", std::to_string(std::max(1u, cores / world_size)).c_str(), 1);
  }
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execv("/proc/self/exe", argv.data());
  std::cerr << "error: launcher: cannot start rank " << rank << ": " << std::strerror(errno) << "\n";
  ::_exit(127);
}

volatile sig_atomic_t g_stop_signal = 0;
void remember_signal(int signal) { g_stop_signal = signal; }

}  // namespace

// A port the kernel considers free right now (it may be taken before rank 0 binds it; the
// rendezvous then fails with an error naming it).
int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  FASTDIT_CHECK(fd >= 0, "launcher: socket: ", std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof addr;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size) == 0;
  ::close(fd);
  FASTDIT_CHECK(ok, "launcher: no free local port: ", std::strerror(errno));
  return ntohs(addr.sin_port);
}

std::optional<LaunchEnv> launch_env_from_environment() {
  // The launchers' own names for rank, world size and local rank: torchrun-style, Open MPI's
  // mpirun, and MPICH / Intel MPI (Hydra's PMI).
  struct Names {
    const char* rank;
    const char* size;
    const char* local;
  };
  static constexpr Names kLaunchers[] = {{"RANK", "WORLD_SIZE", "LOCAL_RANK"},
                                         {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
                                         {"PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"}};
  const Names* found = nullptr;
  for (const Names& names : kLaunchers)
    if (env(names.rank) || env(names.size)) {
      found = &names;
      break;
    }
  if (!found) return std::nullopt;
  const char* rank_name = found->rank;
  const char* size_name = found->size;
  const char* local_name = found->local;
  FASTDIT_CHECK(env(rank_name) && env(size_name), "launcher environment: ", rank_name, " and ", size_name,
                " must both be set");
  LaunchEnv launch;
  launch.world_size = env_int(size_name, 1, 1, 1 << 16);
  launch.rank = env_int(rank_name, 0, 0, launch.world_size - 1);
  launch.local_rank = env_int(local_name, launch.rank, 0, 1 << 16);
  launch.master_addr = env("MASTER_ADDR").value_or(launch.master_addr);
  // torchrun's agent already listens on MASTER_PORT (its TCPStore), so its workers meet one port up.
  const int torchrun = env("TORCHELASTIC_RUN_ID") ? 1 : 0;
  const int master_port = env_int("MASTER_PORT", launch.master_port, 1, 65535 - torchrun) + torchrun;
  launch.master_port = env_int("FASTDIT_MASTER_PORT", master_port, 1, 65535);
  return launch;
}

int launch_local_ranks(int world_size) {
  FASTDIT_CHECK(world_size >= 2, "launcher: needs at least 2 ranks, got ", world_size);
  const auto args = own_arguments();
  const int port = free_local_port();
  std::map<pid_t, int> running;
  for (int r = 0; r < world_size; ++r) running[start_rank(r, world_size, port, args)] = r;
  ::signal(SIGINT, remember_signal);
  ::signal(SIGTERM, remember_signal);

  using Clock = std::chrono::steady_clock;
  std::optional<Clock::time_point> kill_at;
  int first_code = 0, rank0_code = 0;
  while (!running.empty()) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      if (g_stop_signal || (kill_at && Clock::now() > *kill_at))
        for (const auto& [p, rank] : running) ::kill(p, g_stop_signal ? g_stop_signal : SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    const int rank = running.at(pid);
    running.erase(pid);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 2;
    if (WIFSIGNALED(status) && !g_stop_signal)
      std::cerr << "error: rank " << rank << " was killed by signal " << WTERMSIG(status) << " ("
                << strsignal(WTERMSIG(status)) << ")\n";
    if (rank == 0) rank0_code = code;
    if (code != 0 && first_code == 0) {
      first_code = code;
      kill_at = Clock::now() + std::chrono::seconds(30);
    }
  }
  return rank0_code != 0 ? rank0_code : first_code;
}

}  // namespace fastdit::distributed
