// The parent's side of a child: starting it (posix_spawn / fork), watching and reaping it, and
// the proxy_core that ties the process to its connection and dispatch thread.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "procxy/detail/core.hpp"
#include "procxy/detail/method.hpp"
#include "procxy/detail/serve.hpp"

extern char** environ;

namespace procxy::detail {

namespace {

std::string g_program_name = "procxy-child";

constexpr int channel_fd_in_child = 3;

[[noreturn]] void throw_errno(const std::string& what, int e) {
  throw spawn_error("procxy: " + what + ": " + std::strerror(e));
}

struct fd_guard {
  int fd = -1;
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

}  // namespace

void set_program_name(const char* argv0) { g_program_name = argv0; }
const char* program_name() noexcept { return g_program_name.c_str(); }

// Owns a child pid through a pidfd: signals go to the right process even after the pid is reused,
// and reaping happens exactly once, by whichever thread gets there first.
class child_process {
 public:
  child_process(pid_t pid, int pidfd) : pid_(pid), pidfd_(pidfd) {}
  ~child_process() {
    if (!reaped()) {
      kill(SIGKILL);
      wait_exit(-1);
    }
    ::close(pidfd_);
  }
  pid_t pid() const noexcept { return pid_; }

  bool reaped() {
    std::lock_guard lk(mu_);
    return reaped_;
  }
  // Waits up to timeout_ms (-1: forever) for the child to exit and reaps it. True if it exited.
  bool wait_exit(int timeout_ms) {
    for (;;) {
      {
        std::lock_guard lk(mu_);
        if (reaped_) return true;
        if (try_reap_locked()) return true;
      }
      if (timeout_ms == 0) return false;
      pollfd p{pidfd_, POLLIN, 0};
      int r = ::poll(&p, 1, timeout_ms);
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) {
        std::lock_guard lk(mu_);
        return reaped_ || try_reap_locked();
      }
      timeout_ms = 0;  // readable: the next round reaps
    }
  }
  bool alive() { return !wait_exit(0); }
  void kill(int sig) {
    std::lock_guard lk(mu_);
    if (!reaped_) ::syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0);
  }
  // "exited with code 3" / "was killed by signal 11 (SIGSEGV)"; exit_code/signal out.
  std::string describe(int& exit_code, int& signal) {
    std::lock_guard lk(mu_);
    exit_code = -1;
    signal = 0;
    if (!reaped_) return "is still running";
    if (info_.si_code == CLD_EXITED) {
      exit_code = info_.si_status;
      return "exited with code " + std::to_string(exit_code);
    }
    signal = info_.si_status;
    const char* abbrev = ::sigabbrev_np(signal);
    return "was killed by signal " + std::to_string(signal) + " (SIG" + (abbrev ? abbrev : "?") + ")";
  }

 private:
  bool try_reap_locked() {
    siginfo_t info{};
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_), &info,
                 WEXITED | WNOHANG) != 0) {
      if (errno == ECHILD) {  // reaped elsewhere (SIGCHLD set to SIG_IGN): status unknown
        reaped_ = true;
        info_.si_code = CLD_EXITED;
        info_.si_status = -1;
        return true;
      }
      return false;
    }
    if (info.si_pid == 0) return false;
    info_ = info;
    reaped_ = true;
    return true;
  }
  pid_t pid_;
  int pidfd_;
  std::mutex mu_;
  bool reaped_ = false;
  siginfo_t info_{};
};

namespace {

std::vector<std::string> build_env(const spawn_options& o, std::size_t max_msg) {
  std::vector<std::string> env;
  auto ours = [](std::string_view kv) { return kv.rfind("PROCXY_CHANNEL_FD=", 0) == 0 ||
                                               kv.rfind("PROCXY_PARENT_PID=", 0) == 0 ||
                                               kv.rfind("PROCXY_MAX_MESSAGE=", 0) == 0; };
  if (o.environment == env_mode::merge) {
    for (char** e = environ; e && *e; ++e) {
      std::string_view kv(*e);
      auto eq = kv.find('=');
      std::string key(kv.substr(0, eq));
      if (ours(kv) || o.env.count(key)) continue;
      env.emplace_back(kv);
    }
  }
  for (const auto& [k, v] : o.env) {
    if (k.empty() || k.find('=') != std::string::npos)
      throw spawn_error("procxy: bad environment variable name '" + k + "'");
    env.push_back(k + "=" + v);
  }
  env.push_back("PROCXY_CHANNEL_FD=" + std::to_string(channel_fd_in_child));
  env.push_back("PROCXY_PARENT_PID=" + std::to_string(::getpid()));
  env.push_back("PROCXY_MAX_MESSAGE=" + std::to_string(max_msg));
  return env;
}

// Takes ownership of a just-started child through a pidfd. Nobody else can have reaped it yet
// (it is our unwaited child), so the pid still names it.
std::unique_ptr<child_process> adopt_child(pid_t pid) {
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    int e = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    throw_errno("pidfd_open", e);
  }
  ::fcntl(pidfd, F_SETFD, FD_CLOEXEC);
  return std::make_unique<child_process>(pid, pidfd);
}

std::unique_ptr<child_process> spawn_exec(const spawn_options& o, int child_fd) {
  std::string exe = o.mode == spawn_mode::reexec ? std::string("/proc/self/exe") : o.executable.string();
  if (o.mode == spawn_mode::executable && exe.empty())
    throw spawn_error("procxy: spawn_mode::executable needs spawn_options::executable");
  std::string argv0 = o.mode == spawn_mode::reexec ? std::string(program_name()) : exe;
  std::vector<std::string> args{argv0};
  args.insert(args.end(), o.args.begin(), o.args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  auto env = build_env(o, o.max_message_size);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  // dup2(x, x) would keep FD_CLOEXEC set, so make sure the source is not already fd 3.
  fd_guard moved;
  if (child_fd == channel_fd_in_child) {
    moved.fd = ::fcntl(child_fd, F_DUPFD_CLOEXEC, 10);
    if (moved.fd < 0) throw_errno("fcntl", errno);
    child_fd = moved.fd;
  }
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
  // The child inherits stdio and its channel only, whatever the parent forgot to mark CLOEXEC.
  posix_spawn_file_actions_addclosefrom_np(&fa, channel_fd_in_child + 1);
  if (!o.working_directory.empty())
    posix_spawn_file_actions_addchdir_np(&fa, o.working_directory.c_str());
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, exe.c_str(), &fa, &at, argv.data(), envp.data());
  if (rc != 0) throw_errno("cannot start '" + exe + "'", rc);
  return adopt_child(pid);
}

std::unique_ptr<child_process> spawn_fork(const spawn_options& o, int parent_fd, int child_fd) {
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork", errno);
  if (pid == 0) {
    ::close(parent_fd);
    if (!o.working_directory.empty() && ::chdir(o.working_directory.c_str()) != 0) _exit(127);
    for (const auto& [k, v] : o.env) ::setenv(k.c_str(), v.c_str(), 1);
    _exit(serve(child_fd, o.max_message_size, parent));
  }
  return adopt_child(pid);
}

void decode_construct_reply(state_base& st, message_kind kind, decoder& d, const char* what) {
  if (kind == message_kind::reply_value) {
    static_cast<state<void>&>(st).set_value();
    return;
  }
  auto cause = decode_remote_error(d, what);
  try {
    try {
      std::rethrow_exception(cause);
    } catch (...) {
      std::throw_with_nested(
          spawn_error(std::string("procxy: the constructor of ") + what + " threw in the child"));
    }
  } catch (...) {
    st.fail(std::current_exception());
  }
}

}  // namespace

std::shared_ptr<proxy_core> proxy_core::start(const spawn_options& opts, byte_buffer& construct,
                                              const char* class_name) {
  std::shared_ptr<proxy_core> core(new proxy_core());
  core->opts_ = opts;
  core->class_name_ = class_name;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) throw_errno("socketpair", errno);
  fd_guard parent_end{sv[0]}, child_end{sv[1]};
  core->child_ = opts.mode == spawn_mode::fork ? spawn_fork(opts, sv[0], sv[1])
                                               : spawn_exec(opts, sv[1]);
  ::close(child_end.release());
  core->conn_ = std::make_shared<connection>(parent_end.release(), connection::side::parent,
                                             opts.max_message_size);
  std::weak_ptr<proxy_core> weak = core;
  core->conn_->on_disconnect = [weak](std::exception_ptr cause) -> std::exception_ptr {
    auto c = weak.lock();
    if (!c) return std::make_exception_ptr(terminated("procxy: the proxy was destroyed"));
    return c->on_disconnect(cause);
  };
  core->dispatch_ = std::thread([conn = core->conn_] { conn->run_dispatch_loop(); });
  core->conn_->set_dispatch_thread(core->dispatch_.get_id());

  core->started_ = state_ptr<state<void>>(new state<void>());
  core->conn_->call(construct, state_ptr<state_base>(core->started_), &decode_construct_reply,
                    core->deadline_for(opts.start_timeout), class_name, /*fatal_timeout=*/true);
  return core;
}

proxy_core::~proxy_core() { terminate(); }

int proxy_core::pid() const noexcept { return child_ ? child_->pid() : -1; }

bool proxy_core::running() const { return child_ && child_->alive(); }

future<void> proxy_core::started() { return make_future(started_); }

std::exception_ptr proxy_core::on_disconnect(std::exception_ptr cause) {
  if (cause) {  // protocol error or start timeout: the child cannot be trusted any more
    child_->kill(SIGKILL);
    child_->wait_exit(-1);
    return cause;
  }
  // Never take terminate_mu_ here: terminate() holds it while it joins this very thread.
  if (terminating_.load(std::memory_order_acquire)) return std::make_exception_ptr(terminated("procxy: the proxy was terminated"));
  // A child whose constructor threw exits by itself; its error is the constructor's.
  bool start_failed = started_->is_ready() && started_->error();
  if (!child_->wait_exit(5000)) {
    child_->kill(SIGKILL);
    child_->wait_exit(-1);
    if (start_failed) return started_->error();
    return std::make_exception_ptr(
        protocol_error("procxy: the child closed its channel but kept running; it was killed"));
  }
  int code = -1, sig = 0;
  std::string how = child_->describe(code, sig);
  if (start_failed) return started_->error();
  std::string who = std::string("procxy: child ") + std::to_string(child_->pid()) + " (" +
                    class_name_ + ") " + how;
  if (!started_->is_ready())
    return std::make_exception_ptr(spawn_error(
        who + " before constructing the object (does its main() call procxy::init(argc, argv) "
              "first?)"));
  return std::make_exception_ptr(child_crashed(who, code, sig));
}

void proxy_core::terminate() {
  std::lock_guard lk(terminate_mu_);
  if (terminated_ || !conn_) return;
  terminated_ = true;
  terminating_.store(true, std::memory_order_release);
  conn_->break_with(std::make_exception_ptr(terminated("procxy: the proxy was terminated")));
  if (child_->alive()) {
    try {
      byte_buffer buf;
      build_frame(buf, message_kind::shutdown, 0, [](encoder&) {});
      conn_->send(buf.view());
    } catch (...) {
      // already gone; the waits below reap it
    }
    conn_->shutdown_write();
    int grace = static_cast<int>(opts_.terminate_grace.count());
    if (!child_->wait_exit(grace)) {
      child_->kill(SIGTERM);
      if (!child_->wait_exit(grace)) {
        child_->kill(SIGKILL);
        child_->wait_exit(-1);
      }
    }
  }
  child_->wait_exit(-1);
  conn_->stop();
  conn_->close_socket();
  if (dispatch_.joinable()) {
    if (std::this_thread::get_id() == dispatch_.get_id())
      dispatch_.detach();  // terminated from its own callback: it exits when that returns
    else
      dispatch_.join();
  }
}

}  // namespace procxy::detail
