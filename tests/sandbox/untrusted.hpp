// The object the sandbox tests confine: each method tries one thing a sandbox may forbid and
// returns 0 or the errno it met (so "the method sees the errno" is checkable), unless the sandbox
// ends the child first.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "procxy/procxy.hpp"

namespace sandbox_test {

class Untrusted {
 public:
  Untrusted() = default;
  int add(int a, int b) { return a + b; }
  int own_pid() { return static_cast<int>(::getpid()); }
  int uid() { return static_cast<int>(::getuid()); }
  int open_file(std::string path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    ::close(fd);
    return 0;
  }
  int write_file(std::string path) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return errno;
    int e = ::write(fd, "x", 1) == 1 ? 0 : errno;
    ::close(fd);
    return e;
  }
  // Writes `bytes` bytes to a new file (for the file-size limit).
  int write_bytes(std::string path, std::size_t bytes) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return errno;
    std::vector<char> data(bytes, 'x');
    ssize_t w = ::write(fd, data.data(), data.size());
    int e = w == static_cast<ssize_t>(bytes) ? 0 : (w < 0 ? errno : EFBIG);
    ::close(fd);
    return e;
  }
  int connect_local(int port) {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return errno;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int e = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 ? 0 : errno;
    ::close(s);
    return e;
  }
  int fork_child() {
    pid_t p = ::fork();
    if (p < 0) return errno;
    if (p == 0) _exit(0);
    ::waitpid(p, nullptr, 0);
    return 0;
  }
  int exec_true() {
    ::execl("/bin/true", "true", static_cast<char*>(nullptr));
    return errno;
  }
  int signal_process(int pid) { return ::kill(pid, 0) == 0 ? 0 : errno; }
  int call_uname() {
    utsname u;
    return ::uname(&u) == 0 ? 0 : errno;
  }
  // Allocates and touches `mib` MiB; returns what it touched (std::bad_alloc past RLIMIT_AS).
  std::size_t allocate(std::size_t mib) {
    std::vector<char> v(mib << 20);
    for (std::size_t i = 0; i < v.size(); i += 4096) v[i] = 1;
    return v.size() >> 20;
  }
  // Burns CPU for up to `seconds` of wall time.
  int spin(int seconds) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    volatile unsigned long x = 0;
    while (std::chrono::steady_clock::now() < end) x = x + 1;
    return static_cast<int>(x & 1);
  }
  // A crash handler like the one a crash report needs: on SIGSEGV it opens /proc/self/maps (a
  // call the strict profile blocks), writes what that gave to stderr, and dies by SIGSEGV.
  // `block_all`: the handler runs with every signal blocked (sa_mask full), SIGSYS included.
  void crash_with_handler(bool block_all) {
    struct sigaction sa {};
    sa.sa_handler = [](int) {
      int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
      const char* msg = fd >= 0 ? "crash handler: maps opened\n" : "crash handler: maps refused\n";
      [[maybe_unused]] auto n = ::write(2, msg, std::strlen(msg));
      if (fd >= 0) ::close(fd);
      ::signal(SIGSEGV, SIG_DFL);
      sigset_t segv;
      sigemptyset(&segv);
      sigaddset(&segv, SIGSEGV);
      ::sigprocmask(SIG_UNBLOCK, &segv, nullptr);
      ::raise(SIGSEGV);
    };
    if (block_all) sigfillset(&sa.sa_mask);
    ::sigaction(SIGSEGV, &sa, nullptr);
    ::raise(SIGSEGV);
  }
  void abort_now() { ::abort(); }
  std::size_t length(const std::string& s) { return s.size(); }
};
PROCXY_CLASS(Untrusted, add, own_pid, uid, open_file, write_file, write_bytes, connect_local,
             fork_child, exec_true, signal_process, call_uname, allocate, spin, crash_with_handler,
             abort_now, length);

}  // namespace sandbox_test
