// src/process.hpp — process control for the parent (private to the library): starting a child
// (posix_spawn of this executable or of a worker executable, or fork), owning it through a pidfd,
// reaping it, and capturing its stderr. It knows nothing of the channel's protocol: it hands the
// parent's end of a socketpair to whoever speaks over it (proxy_core, src/spawn.cpp).
#pragma once

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstring>  // sigabbrev_np
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "procxy/detail/sandbox.hpp"
#include "procxy/options.hpp"

namespace procxy::detail {

// Owns a descriptor until release(): closed on every path that does not hand it on.
struct fd_guard {
  int fd = -1;
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

// Throws spawn_error("procxy: <what>: <strerror(e)>").
[[noreturn]] void throw_errno(const std::string& what, int e);

// Makes a posix_spawn start its program with no signal blocked and every disposition at its
// default, whatever the spawning thread had (children and addr2line, src/crash.cpp).
void reset_signals(posix_spawnattr_t& at);

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
  // The CPU time (user + system) the reaped child used, its reaped descendants included.
  std::chrono::microseconds cpu_time() {
    std::lock_guard lk(mu_);
    return cpu_;
  }
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
    return "was killed by signal " + std::to_string(signal) + " (SIG" + (abbrev ? abbrev : "?") +
           ")";
  }

 private:
  bool try_reap_locked() {
    siginfo_t info{};
    // The raw system call: its fifth argument is the CPU time the child used (its own and that
    // of the children it reaped), which says whether a sandbox's CPU limit can have killed it.
    rusage ru{};
    if (::syscall(SYS_waitid, P_PIDFD, pidfd_, &info, WEXITED | WNOHANG, &ru) != 0) {
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
    cpu_ = std::chrono::seconds(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           std::chrono::microseconds(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    reaped_ = true;
    return true;
  }
  pid_t pid_;
  int pidfd_;
  std::mutex mu_;
  bool reaped_ = false;
  siginfo_t info_{};
  std::chrono::microseconds cpu_{0};
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

// A started child: its process, the parent's end of its channel (owned by the caller from now
// on), its stderr capture (null unless spawn_options::capture_stderr) and its crash pipe.
struct launched_child {
  std::shared_ptr<child_process> process;
  int channel_fd = -1;
  std::shared_ptr<stderr_capture> err;
  int crash_fd = -1;  // the read end of the crash pipe (src/crash.hpp), owned by the caller too
  std::shared_ptr<sandbox_report>
      sandbox;  // null unless spawn_options::sandbox (or PROCXY_SANDBOX)
};
// Starts a child as `o` says (mode, executable, args, env, cwd, stderr capture). Throws
// spawn_error when it cannot be started.
// With shm_fd >= 0 (a memfd from shm::create, shm_ring bytes per ring) the child gets it as
// fd 4 and speaks over the shared-memory transport; the caller keeps its own descriptor.
launched_child launch_child(const spawn_options& o, int shm_fd = -1, std::size_t shm_ring = 0);

// The callback timeout in effect (callback_timeout, or call_timeout when that is negative).
std::chrono::milliseconds callback_timeout(const spawn_options& o);

}  // namespace procxy::detail
