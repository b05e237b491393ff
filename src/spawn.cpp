// The parent's side of a child: starting it (posix_spawn / fork), watching and reaping it, and
// the proxy_core that ties the process to its connection and dispatch thread.
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
#include <condition_variable>
#include <cstdio>
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

// The child's stderr, when spawn_options::capture_stderr is set: a pipe read by one thread that
// copies everything to the parent's stderr as it arrives and keeps the last `keep` bytes.
class stderr_capture {
 public:
  stderr_capture(int read_fd, std::size_t keep)
      : fd_(read_fd), stop_fd_(::eventfd(0, EFD_CLOEXEC)), keep_(keep) {
    if (stop_fd_ < 0) {
      ::close(fd_);
      throw_errno("eventfd", errno);
    }
    thread_ = std::thread([this] { run(); });
  }
  ~stderr_capture() {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(stop_fd_, &one, sizeof one);
    thread_.join();
    ::close(fd_);
    ::close(stop_fd_);
  }
  // The kept bytes, once the pipe reached EOF or after `wait` (a grandchild may hold the pipe).
  std::string tail(std::chrono::milliseconds wait) {
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, wait, [&] { return eof_; });
    return tail_;
  }

 private:
  void run() {
    char buf[4096];
    for (;;) {
      pollfd p[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (p[1].revents & POLLIN) break;
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      for (ssize_t off = 0; off < n;) {  // forward to our stderr as it arrives
        ssize_t w = ::write(2, buf + off, static_cast<std::size_t>(n - off));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += w;
      }
      std::lock_guard lk(mu_);
      tail_.append(buf, static_cast<std::size_t>(n));
      if (tail_.size() > keep_) tail_.erase(0, tail_.size() - keep_);
    }
    std::lock_guard lk(mu_);
    eof_ = true;
    cv_.notify_all();
  }

  const int fd_;
  const int stop_fd_;
  const std::size_t keep_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string tail_;
  bool eof_ = false;
  std::thread thread_;
};

namespace {

std::chrono::milliseconds callback_timeout(const spawn_options& o) {
  return o.callback_timeout.count() < 0 ? o.call_timeout : o.callback_timeout;
}

std::vector<std::string> build_env(const spawn_options& o, std::size_t max_msg) {
  std::vector<std::string> env;
  auto ours = [](std::string_view kv) { return kv.rfind("PROCXY_CHANNEL_FD=", 0) == 0 ||
                                               kv.rfind("PROCXY_PARENT_PID=", 0) == 0 ||
                                               kv.rfind("PROCXY_MAX_MESSAGE=", 0) == 0 ||
                                               kv.rfind("PROCXY_MAX_CALLBACKS=", 0) == 0 ||
                                               kv.rfind("PROCXY_CALLBACK_TIMEOUT_MS=", 0) == 0; };
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
  env.push_back("PROCXY_MAX_CALLBACKS=" + std::to_string(o.max_callbacks));
  env.push_back("PROCXY_CALLBACK_TIMEOUT_MS=" + std::to_string(callback_timeout(o).count()));
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

std::shared_ptr<child_process> spawn_exec(const spawn_options& o, int child_fd, int stderr_fd) {
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
  if (stderr_fd >= 0) posix_spawn_file_actions_adddup2(&fa, stderr_fd, 2);
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

std::shared_ptr<child_process> spawn_fork(const spawn_options& o, int parent_fd, int child_fd,
                                          int stderr_fd) {
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork", errno);
  if (pid == 0) {
    ::close(parent_fd);
    if (stderr_fd >= 0 && ::dup2(stderr_fd, 2) < 0) _exit(127);
    // Keep stdio and the channel only, as posix_spawn's closefrom does: without exec, CLOEXEC
    // closes nothing, and a sibling proxy's channel kept open here would hide its EOF.
    if (child_fd != channel_fd_in_child && ::dup2(child_fd, channel_fd_in_child) < 0) _exit(127);
    ::close_range(channel_fd_in_child + 1, ~0U, 0);
    if (!o.working_directory.empty() && ::chdir(o.working_directory.c_str()) != 0) _exit(127);
    if (o.environment == env_mode::replace) ::clearenv();
    for (const auto& [k, v] : o.env) ::setenv(k.c_str(), v.c_str(), 1);
    if (o.backtrace) ::setenv("PROCXY_BACKTRACE", "1", 1);
    ::setenv("PROCXY_MAX_CALLBACKS", std::to_string(o.max_callbacks).c_str(), 1);
    ::setenv("PROCXY_CALLBACK_TIMEOUT_MS", std::to_string(callback_timeout(o).count()).c_str(), 1);
    _exit(serve(channel_fd_in_child, o.max_message_size, parent));
  }
  return adopt_child(pid);
}

void decode_construct_reply(state_base& st, message_kind kind, decoder& d, const reply_context& ctx) {
  const char* what = ctx.what;
  if (kind == message_kind::reply_value) {
    decode_reply_value<void>(d);
    static_cast<state<void>&>(st).set_value();
    return;
  }
  auto cause = decode_reply_error(d, what, ctx.peer_pid);
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

// Requests the child sends the parent: events, property updates, dispose.
// The parent's endpoint: requests the child sends (events, property updates, dispose) and the
// failure policy (docs/design.md "Threads": the I/O thread runs it, never a user's thread).
class parent_handler final : public endpoint {
 public:
  parent_handler(std::weak_ptr<proxy_core> core, bool kill_on_timeout, std::function<void()> on_exit)
      : core_(std::move(core)), kill_on_timeout_(kill_on_timeout), on_exit_(std::move(on_exit)) {}

  std::exception_ptr disconnected(std::exception_ptr cause) override {
    auto c = core_.lock();
    if (!c) return std::make_exception_ptr(terminated("procxy: the proxy was destroyed"));
    return c->on_disconnect(cause);
  }
  void call_timed_out(const char* what) override {
    if (!kill_on_timeout_) return;
    if (auto c = core_.lock()) c->kill_after_timeout(what);
  }
  void dispatch_exit() override {
    if (on_exit_) on_exit_();
  }

  void handle(frame&& f, connection& c) override {
    auto core = core_.lock();
    switch (f.header.kind) {
      case message_kind::event: {
        bool posted = false;
        try {
          if (core) posted = deliver(*core, f, c, false);
        } catch (...) {
          c.event_done();
          throw;
        }
        if (!posted) c.event_done();
        return;
      }
      case message_kind::properties: {
        auto values = decode_properties(f.body.view());
        if (core) core->events().set_properties(values);
        c.property_updates.fetch_add(1, std::memory_order_relaxed);
        if (c.tracing()) c.trace("recv properties");
        return;
      }
      case message_kind::dispose:
        if (c.tracing()) c.trace("recv dispose");
        decode_empty(f.header.kind, f.body.view());
        if (core) core->on_dispose();
        return;
      default:
        throw protocol_error(std::string("procxy: unexpected ") + to_string(f.header.kind) + " message");
    }
  }

  void discard(frame& f, connection& c) override {
    if (auto core = core_.lock()) deliver(*core, f, c, true);
  }

 private:
  static bool deliver(proxy_core& core, frame& f, connection& c, bool drop) {
    byte_reader r(f.body.view());
    decoder d(r, &c.callbacks());
    auto id = decode_target(d);
    auto ch = core.events().find(id);
    if (!ch)
      throw protocol_error("procxy: the child sent event #" + std::to_string(id) +
                           ", which the parent never listened to");
    if (c.tracing()) c.trace(std::string(drop ? "drop event " : "recv event ") + ch->name());
    if (drop) {
      ch->discard(d, c);
      return false;
    }
    return ch->deliver(d, c);
  }
  std::weak_ptr<proxy_core> core_;
  const bool kill_on_timeout_;
  std::function<void()> on_exit_;
};

std::shared_ptr<proxy_core> proxy_core::start(const spawn_options& opts, byte_buffer& construct,
                                              const char* class_name) {
  std::shared_ptr<proxy_core> core(new proxy_core());
  core->opts_ = opts;
  core->class_name_ = class_name;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) throw_errno("socketpair", errno);
  fd_guard parent_end{sv[0]}, child_end{sv[1]};
  fd_guard err_read, err_write;
  if (opts.capture_stderr > 0) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw_errno("pipe2", errno);
    err_read.fd = p[0];
    err_write.fd = p[1];
  }
  core->child_ = opts.mode == spawn_mode::fork ? spawn_fork(opts, sv[0], sv[1], err_write.fd)
                                               : spawn_exec(opts, sv[1], err_write.fd);
  ::close(child_end.release());
  if (err_write.fd >= 0) {
    ::close(err_write.release());
    core->stderr_ = std::make_shared<stderr_capture>(err_read.release(), opts.capture_stderr);
  }
  std::weak_ptr<proxy_core> weak = core;
  std::function<void()> on_exit;
  if (opts.on_exit) {
    // Captures what it needs by value: the core may be gone when the dispatch thread ends.
    on_exit = [child = core->child_, requested = core->exit_requested_, handler = opts.on_exit] {
      child->wait_exit(-1);  // reaped already on every path that stops the dispatch thread
      exit_info info;
      info.pid = child->pid();
      info.description = child->describe(info.exit_code, info.signal);
      const int who = requested->load(std::memory_order_acquire);
      info.requested = who == by_proxy || who == disposed;
      info.disposed = who == disposed;
      try {
        handler(info);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "procxy: the on_exit handler threw: %s\n", e.what());
      } catch (...) {
        std::fprintf(stderr, "procxy: the on_exit handler threw\n");
      }
    };
  }
  core->handler_ = std::make_shared<parent_handler>(weak, opts.on_timeout == timeout_policy::kill_child,
                                                    std::move(on_exit));
  connection::options co;
  co.s = connection::side::parent;
  co.max_message_size = opts.max_message_size;
  co.max_events = opts.max_queued_events;
  co.drop_oldest = opts.on_event_overflow == event_overflow::drop_oldest;
  co.peer_pid = core->child_->pid();
  co.max_callbacks = opts.max_callbacks;
  co.callback_timeout = callback_timeout(opts);
  co.on_callback_error = opts.on_callback_error;
  co.callback_executor = opts.callback_executor;
  core->conn_ = connection::create(make_socket_transport(parent_end.release()), core->handler_, co);
  // The thread keeps the handler alive: after terminate() from inside a callback it is detached
  // and may outlive the core by the rest of that callback.
  core->dispatch_ = std::thread([conn = core->conn_, h = core->handler_] { conn->run_dispatch_loop(); });

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
    mark_exit(true);
    child_->kill(SIGKILL);
    child_->wait_exit(-1);
    return cause;
  }
  // Never take terminate_mu_ here: terminate() holds it while it joins this very thread.
  if (terminating_.load(std::memory_order_acquire)) return std::make_exception_ptr(terminated("procxy: the proxy was terminated"));
  mark_exit(false);
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
  std::string tail = stderr_ ? stderr_->tail(std::chrono::milliseconds(1000)) : std::string();
  std::string note = tail.empty() ? std::string()
                                  : "; the last " + std::to_string(tail.size()) +
                                        " bytes it wrote to stderr:\n" + tail;
  if (!started_->is_ready())
    return std::make_exception_ptr(spawn_error(
        who + " before constructing the object (does its main() call procxy::init(argc, argv) "
              "first?)" + note));
  return std::make_exception_ptr(child_crashed(who + note, code, sig, std::move(tail)));
}

void proxy_core::kill_after_timeout(const char* what) {
  mark_exit(true);
  conn_->break_with(std::make_exception_ptr(
      terminated(std::string("procxy: the child was killed because ") + what +
                 " timed out (timeout_policy::kill_child)")));
  child_->kill(SIGKILL);  // the reader sees EOF; on_disconnect reaps
}

void proxy_core::on_dispose() {
  mark_exit(disposed);
  terminate("procxy: the object asked to be disposed of (this_child().dispose())");
}

void proxy_core::terminate(const char* reason) {
  // From the dispatch thread while another thread terminates (e.g. the on_exit handler, run on
  // the dispatch thread that terminate() is joining): that thread finishes the job.
  if (terminating_.load(std::memory_order_acquire) && conn_ && conn_->on_dispatch_thread()) return;
  std::lock_guard lk(terminate_mu_);
  if (terminated_ || !conn_) return;
  terminated_ = true;
  mark_exit(true);
  terminating_.store(true, std::memory_order_release);
  conn_->break_with(std::make_exception_ptr(terminated(reason ? reason : "procxy: the proxy was terminated")));
  // No callback starts on the user's executor from now on; those running finish first (their
  // calls of this proxy have just failed). No event listener runs again.
  conn_->callbacks().close();
  events_.clear();
  if (child_->alive()) {
    try {
      byte_buffer buf;
      encode_empty(buf, message_kind::shutdown);
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
  conn_->close();  // stops the dispatch loop and the I/O thread (joined)
  if (dispatch_.joinable()) {
    if (std::this_thread::get_id() == dispatch_.get_id())
      dispatch_.detach();  // terminated from its own callback: it exits when that returns
    else
      dispatch_.join();
  }
  conn_->callbacks().clear();  // none of the proxy's callbacks runs again
}

}  // namespace procxy::detail
