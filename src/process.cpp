// Process control (src/process.hpp): starting, owning, reaping a child; its stderr.
#include "process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "procxy/detail/serve.hpp"
#include "procxy/error.hpp"

extern char** environ;

namespace procxy::detail {

[[noreturn]] void throw_errno(const std::string& what, int e) {
  throw spawn_error("procxy: " + what + ": " + std::strerror(e));
}

void reset_signals(posix_spawnattr_t& at) {
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

namespace {

std::string g_program_name = "procxy-child";

constexpr int channel_fd_in_child = 3;
constexpr int shm_fd_in_child = 4;  // when the transport is shared memory
// The write end of the crash pipe (src/crash.hpp): the next number after the channel's (and the
// rings'); then, when there is a sandbox, its report pipe (src/sandbox.cpp); then nothing.
constexpr int crash_fd_in_child(bool shm) {
  return shm ? shm_fd_in_child + 1 : channel_fd_in_child + 1;
}
constexpr int report_fd_in_child(bool shm) { return crash_fd_in_child(shm) + 1; }
constexpr int last_fixed_fd = report_fd_in_child(true);

}  // namespace

void set_program_name(const char* argv0) { g_program_name = argv0; }
const char* program_name() noexcept { return g_program_name.c_str(); }

std::chrono::milliseconds callback_timeout(const spawn_options& o) {
  return o.callback_timeout.count() < 0 ? o.call_timeout : o.callback_timeout;
}

namespace {

std::vector<std::string> build_env(const spawn_options& o, std::size_t max_msg,
                                   std::size_t shm_ring, const std::string& sandbox_spec) {
  std::vector<std::string> env;
  auto ours = [](std::string_view kv) {
    return kv.rfind("PROCXY_CHANNEL_FD=", 0) == 0 || kv.rfind("PROCXY_PARENT_PID=", 0) == 0 ||
           kv.rfind("PROCXY_MAX_MESSAGE=", 0) == 0 || kv.rfind("PROCXY_SHM_FD=", 0) == 0 ||
           kv.rfind("PROCXY_SHM_RING=", 0) == 0 || kv.rfind("PROCXY_CRASH_FD=", 0) == 0 ||
           kv.rfind("PROCXY_MAX_CALLBACKS=", 0) == 0 || kv.rfind("PROCXY_MAX_FDS=", 0) == 0 ||
           kv.rfind("PROCXY_CALLBACK_TIMEOUT_MS=", 0) == 0 || kv.rfind("PROCXY_MODULE=", 0) == 0 ||
           kv.rfind("PROCXY_SANDBOX_SPEC=", 0) == 0 || kv.rfind("PROCXY_SANDBOX_FD=", 0) == 0;
  };
  if (o.environment == env_mode::merge) {
    for (char** e = environ; e && *e; ++e) {
      std::string_view kv(*e);
      auto eq = kv.find('=');
      std::string key(kv.substr(0, eq));
      if (ours(kv) || o.env.count(key) || (o.backtrace && key == "PROCXY_BACKTRACE")) continue;
      env.emplace_back(kv);
    }
  }
  for (const auto& [k, v] : o.env) {
    if (k.empty() || k.find('=') != std::string::npos)
      throw spawn_error("procxy: bad environment variable name '" + k + "'");
    env.push_back(k + "=" + v);
  }
  if (o.backtrace) env.push_back("PROCXY_BACKTRACE=1");
  env.push_back("PROCXY_CHANNEL_FD=" + std::to_string(channel_fd_in_child));
  env.push_back("PROCXY_PARENT_PID=" + std::to_string(::getpid()));
  env.push_back("PROCXY_MAX_MESSAGE=" + std::to_string(max_msg));
  if (shm_ring > 0) {
    env.push_back("PROCXY_SHM_FD=" + std::to_string(shm_fd_in_child));
    env.push_back("PROCXY_SHM_RING=" + std::to_string(shm_ring));
  }
  env.push_back("PROCXY_CRASH_FD=" + std::to_string(crash_fd_in_child(shm_ring > 0)));
  env.push_back("PROCXY_MAX_CALLBACKS=" + std::to_string(o.max_callbacks));
  env.push_back("PROCXY_MAX_FDS=" + std::to_string(o.max_descriptors_per_message));
  env.push_back("PROCXY_CALLBACK_TIMEOUT_MS=" + std::to_string(callback_timeout(o).count()));
  if (!o.module.empty())  // absolute: the child may run in another working directory
    env.push_back("PROCXY_MODULE=" + std::filesystem::absolute(o.module).string());
  if (!sandbox_spec.empty()) {
    env.push_back(std::string(sandbox_spec_env) + "=" + sandbox_spec);
    env.push_back(std::string(sandbox_fd_env) + "=" +
                  std::to_string(report_fd_in_child(shm_ring > 0)));
  }
  return env;
}

// Takes ownership of a just-started child through a pidfd. Nobody else can have reaped it yet
// (it is our unwaited child), so the pid still names it.
std::shared_ptr<child_process> adopt_child(pid_t pid) {
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    int e = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    throw_errno("pidfd_open", e);
  }
  ::fcntl(pidfd, F_SETFD, FD_CLOEXEC);
  return std::make_shared<child_process>(pid, pidfd);
}

// The executable that loads spawn_options::module: `executable`, $PROCXY_HOST, or procxy-host on
// PATH.
std::filesystem::path module_host(const spawn_options& o) {
  if (!o.executable.empty()) return o.executable;
  if (const char* h = std::getenv("PROCXY_HOST"); h && *h) return h;
  if (const char* path = std::getenv("PATH")) {
    std::string_view rest = path;
    while (!rest.empty()) {
      auto colon = rest.find(':');
      std::filesystem::path dir(std::string(rest.substr(0, colon)));
      rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
      auto candidate = (dir.empty() ? std::filesystem::path(".") : dir) / "procxy-host";
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  }
  throw spawn_error(
      "procxy: spawn_options::module needs the procxy-host executable (installed "
      "with procxy): put it on PATH, set PROCXY_HOST, or name it in "
      "spawn_options::executable");
}

std::shared_ptr<child_process> spawn_exec(const spawn_options& o, int child_fd, int stderr_fd,
                                          int shm_fd, std::size_t shm_ring, int crash_fd,
                                          int report_fd, const std::string& sandbox_spec) {
  const bool self = o.mode == spawn_mode::reexec && o.module.empty();
  std::string exe = self               ? std::string("/proc/self/exe")
                    : o.module.empty() ? o.executable.string()
                                       : module_host(o).string();
  if (o.mode == spawn_mode::executable && exe.empty())
    throw spawn_error("procxy: spawn_mode::executable needs spawn_options::executable");
  std::string argv0 = self ? std::string(program_name()) : exe;
  std::vector<std::string> args{argv0};
  args.insert(args.end(), o.args.begin(), o.args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const bool shm = shm_fd >= 0;
  const int last = report_fd >= 0 ? report_fd_in_child(shm) : crash_fd_in_child(shm);
  auto env = build_env(o, o.max_message_size, shm ? shm_ring : 0, sandbox_spec);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_t at;
  posix_spawnattr_init(&at);
  struct cleanup {
    posix_spawn_file_actions_t* fa;
    posix_spawnattr_t* at;
    ~cleanup() {
      posix_spawn_file_actions_destroy(fa);
      posix_spawnattr_destroy(at);
    }
  } c{&fa, &at};
  posix_spawn_file_actions_adddup2(&fa, child_fd, channel_fd_in_child);
  if (shm_fd >= 0) posix_spawn_file_actions_adddup2(&fa, shm_fd, shm_fd_in_child);
  posix_spawn_file_actions_adddup2(&fa, crash_fd, crash_fd_in_child(shm));
  if (report_fd >= 0) posix_spawn_file_actions_adddup2(&fa, report_fd, report_fd_in_child(shm));
  if (stderr_fd >= 0) posix_spawn_file_actions_adddup2(&fa, stderr_fd, 2);
  // The child inherits stdio, its channel, its crash pipe and its sandbox's report pipe only,
  // whatever the parent forgot to mark CLOEXEC.
  posix_spawn_file_actions_addclosefrom_np(&fa, last + 1);
  if (!o.working_directory.empty())
    posix_spawn_file_actions_addchdir_np(&fa, o.working_directory.c_str());
  reset_signals(at);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, exe.c_str(), &fa, &at, argv.data(), envp.data());
  if (rc != 0) throw_errno("cannot start '" + exe + "'", rc);
  return adopt_child(pid);
}

std::shared_ptr<child_process> spawn_fork(const spawn_options& o, int parent_fd, int child_fd,
                                          int stderr_fd, int shm_fd, std::size_t shm_ring,
                                          int crash_fd, int report_fd,
                                          const std::string& sandbox_spec) {
  if (!o.module.empty())
    throw spawn_error(
        "procxy: spawn_options::module needs a host executable to load it: use the "
        "default mode or spawn_mode::executable, not spawn_mode::fork");
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork", errno);
  if (pid == 0) {
    ::close(parent_fd);
    if (stderr_fd >= 0 && ::dup2(stderr_fd, 2) < 0) _exit(127);
    // Keep stdio and the channel only, as posix_spawn's closefrom does: without exec, CLOEXEC
    // closes nothing, and a sibling proxy's channel kept open here would hide its EOF.
    if (::dup2(child_fd, channel_fd_in_child) < 0) _exit(127);
    if (shm_fd >= 0 && ::dup2(shm_fd, shm_fd_in_child) < 0) _exit(127);
    const bool shm = shm_fd >= 0;
    const int crash = crash_fd_in_child(shm);
    if (::dup2(crash_fd, crash) < 0) _exit(127);
    if (report_fd >= 0 && ::dup2(report_fd, report_fd_in_child(shm)) < 0) _exit(127);
    ::close_range(static_cast<unsigned>((report_fd >= 0 ? report_fd_in_child(shm) : crash) + 1),
                  ~0U, 0);
    if (!o.working_directory.empty() && ::chdir(o.working_directory.c_str()) != 0) _exit(127);
    if (o.environment == env_mode::replace) ::clearenv();
    for (const auto& [k, v] : o.env) ::setenv(k.c_str(), v.c_str(), 1);
    if (o.backtrace) ::setenv("PROCXY_BACKTRACE", "1", 1);
    ::setenv("PROCXY_MAX_CALLBACKS", std::to_string(o.max_callbacks).c_str(), 1);
    ::setenv("PROCXY_MAX_FDS", std::to_string(o.max_descriptors_per_message).c_str(), 1);
    ::setenv("PROCXY_CALLBACK_TIMEOUT_MS", std::to_string(callback_timeout(o).count()).c_str(), 1);
    if (!sandbox_spec.empty()) {
      ::setenv(sandbox_spec_env, sandbox_spec.c_str(), 1);
      ::setenv(sandbox_fd_env, std::to_string(report_fd_in_child(shm)).c_str(), 1);
    }
    _exit(serve(channel_fd_in_child, shm ? shm_fd_in_child : -1, shm_ring, o.max_message_size,
                parent, crash));
  }
  return adopt_child(pid);
}

}  // namespace

namespace {

// A close-on-exec copy of `fd` numbered at least 10, so that the dup2s to the child's fixed
// numbers (3 to 6) neither clobber one another nor dup2 a descriptor onto itself (which would
// keep FD_CLOEXEC set).
int above_fixed_numbers(int fd, fd_guard& keep) {
  if (fd < 0 || fd > last_fixed_fd) return fd;
  keep.fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 10);
  if (keep.fd < 0) throw_errno("fcntl", errno);
  return keep.fd;
}

}  // namespace

launched_child launch_child(const spawn_options& o, int shm_fd, std::size_t shm_ring) {
  // The sandbox (src/sandbox.cpp), validated first: what cannot be applied fails spawn().
  auto plan = plan_sandbox(o);
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    throw_errno("socketpair", errno);
  fd_guard parent_end{sv[0]}, child_end{sv[1]};
  fd_guard moved_channel, moved_shm;
  const int child_fd = above_fixed_numbers(sv[1], moved_channel);
  shm_fd = above_fixed_numbers(shm_fd, moved_shm);
  fd_guard err_read, err_write;
  if (o.capture_stderr > 0) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw_errno("pipe2", errno);
    err_read.fd = p[0];
    err_write.fd = p[1];
  }
  fd_guard moved_err;
  const int err_fd = above_fixed_numbers(err_write.fd, moved_err);
  // The crash pipe (src/crash.hpp): the child's handler writes its report, the parent reads it
  // once the child is reaped. Both ends non-blocking: the handler must never wait, and the parent
  // reads only what is there (a grandchild may hold the write end open).
  fd_guard crash_read, crash_write, moved_crash;
  {
    int p[2];
    if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) throw_errno("pipe2", errno);
    crash_read.fd = p[0];
    crash_write.fd = p[1];
  }
  const int crash_fd = above_fixed_numbers(crash_write.fd, moved_crash);
  // The sandbox's report pipe: its read end never blocks either.
  fd_guard report_read, report_write, moved_report;
  if (!plan.spec.empty()) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw_errno("pipe2", errno);
    report_read.fd = p[0];
    report_write.fd = p[1];
    ::fcntl(p[0], F_SETFL, O_NONBLOCK);
  }
  const int report_fd = above_fixed_numbers(report_write.fd, moved_report);
  launched_child l;
  l.process =
      o.mode == spawn_mode::fork
          ? spawn_fork(o, sv[0], child_fd, err_fd, shm_fd, shm_ring, crash_fd, report_fd, plan.spec)
          : spawn_exec(o, child_fd, err_fd, shm_fd, shm_ring, crash_fd, report_fd, plan.spec);
  ::close(child_end.release());
  l.crash_fd = crash_read.release();
  if (report_write.fd >= 0) {
    ::close(report_write.release());
    l.sandbox = std::make_shared<sandbox_report>(report_read.release(), std::move(plan.effective));
  }
  if (err_write.fd >= 0) {
    ::close(err_write.release());
    l.err = std::make_shared<stderr_capture>(err_read.release(), o.capture_stderr);
  }
  l.channel_fd = parent_end.release();
  return l;
}

}  // namespace procxy::detail
