// The sandbox (include/procxy/detail/sandbox.hpp; docs/design.md "Sandbox"): the parent plans and
// validates it and reads the child's report; the child sets the layers up before it serves, in
// this order: namespaces, resource limits, no_new_privs, Landlock, seccomp.
#include "procxy/detail/sandbox.hpp"

#include <fcntl.h>
#include <linux/landlock.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "procxy/detail/codec.hpp"
#include "procxy/error.hpp"
#include "procxy/options.hpp"

// Landlock access rights newer than Debian 12's kernel headers (Linux 6.1); values from the
// kernel's UAPI (ABI 3 and 5).
// si_code of a SIGSYS raised by SECCOMP_RET_TRAP (glibc hides the name from C++ without
// _GNU_SOURCE's full set on some versions).
#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif

namespace procxy::detail {

namespace {

// What crosses to the child (the procxy codec, hex in an environment variable).
struct wire_spec {
  std::uint64_t address_space = 0, cpu = 0, open_files = 0, file_size = 0, processes = 0;
  bool no_core_dumps = false, no_new_privs = false;
  std::uint8_t profile = 0, on_blocked = 0;
  std::vector<std::string> allow, deny;
  bool ns_user = false, ns_network = false, ns_mounts = false, ns_ipc = false, ns_pids = false;
  bool landlock = false;
  std::vector<std::string> paths;
  std::vector<std::uint8_t> writable;
};

// Report records, child to parent: 'S' + u32 system call number (the call that ended the child),
// 'E' + u16 length + text (why the sandbox could not be set up).
constexpr char report_blocked = 'S';
constexpr char report_setup = 'E';

std::string to_hex(const byte_buffer& b) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  s.reserve(b.size() * 2);
  for (std::size_t i = 0; i < b.size(); ++i) {
    auto v = static_cast<unsigned>(b.data()[i]);
    s += digits[v >> 4];
    s += digits[v & 15];
  }
  return s;
}

std::vector<std::byte> from_hex(const char* s) {
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::vector<std::byte> out;
  std::size_t n = std::strlen(s);
  if (n % 2) return {};
  for (std::size_t i = 0; i < n; i += 2) {
    int hi = nib(s[i]), lo = nib(s[i + 1]);
    if (hi < 0 || lo < 0) return {};
    out.push_back(static_cast<std::byte>(hi * 16 + lo));
  }
  return out;
}

long landlock_abi() {
  return ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
}

}  // namespace

// ---- parent ----------------------------------------------------------------------------------

sandbox_plan plan_sandbox(const spawn_options& o) {
  sandbox_options s = o.sandbox;
  if (!s.active()) {
    const char* v = std::getenv("PROCXY_SANDBOX");
    if (v == nullptr || *v == '\0') return {};
    if (std::strcmp(v, "strict") == 0) {
      s.syscalls = syscall_profile::strict;
    } else if (std::strcmp(v, "read_files") == 0) {
      s.syscalls = syscall_profile::read_files;
    } else {
      throw spawn_error(std::string("procxy: PROCXY_SANDBOX is '") + v +
                        "'; it must be 'strict' or 'read_files' (or unset)");
    }
    s.no_new_privs = true;
    s.limits.no_core_dumps = true;
  }
  const bool filtered = s.syscalls != syscall_profile::unrestricted || !s.deny_syscalls.empty();
  if (!s.allow_syscalls.empty() && s.syscalls == syscall_profile::unrestricted)
    throw spawn_error(
        "procxy: sandbox allow_syscalls needs a syscall profile (strict or read_files): "
        "with syscall_profile::unrestricted everything is allowed already");
  auto check_names = [](const std::vector<std::string>& names, const char* list) {
    for (const auto& n : names)
      if (::seccomp_syscall_resolve_name(n.c_str()) == __NR_SCMP_ERROR)
        throw spawn_error(std::string("procxy: sandbox ") + list + " names '" + n +
                          "', which is no system call of this architecture");
  };
  check_names(s.allow_syscalls, "allow_syscalls");
  check_names(s.deny_syscalls, "deny_syscalls");
  for (const auto& a : s.allow_syscalls)
    for (const auto& d : s.deny_syscalls)
      if (a == d)
        throw spawn_error("procxy: sandbox lists '" + a +
                          "' in both allow_syscalls and deny_syscalls");
  if (filtered && o.backtrace && s.syscalls == syscall_profile::strict &&
      s.on_blocked == on_blocked_syscall::kill)
    throw spawn_error(
        "procxy: backtraces are symbolized by reading the executable, which "
        "syscall_profile::strict "
        "forbids (the child would be killed at its first exception): use "
        "syscall_profile::read_files, "
        "on_blocked_syscall::fail, or no backtrace");
  if (filtered && ::prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0 && errno == EINVAL)
    throw spawn_error(
        "procxy: the sandbox asks for a seccomp filter and this kernel has no seccomp");
  if (s.filesystem) {
    if (landlock_abi() < 1)
      throw spawn_error(
          std::string("procxy: the sandbox has filesystem rules and Landlock is not available "
                      "in this kernel (landlock_create_ruleset: ") +
          std::strerror(errno) + ")");
    for (const auto& r : *s.filesystem)
      if (r.path.empty()) throw spawn_error("procxy: a sandbox filesystem rule has an empty path");
  }
  if (filtered || s.filesystem) s.no_new_privs = true;

  wire_spec w;
  w.address_space = s.limits.address_space;
  w.cpu = static_cast<std::uint64_t>(s.limits.cpu.count() > 0 ? s.limits.cpu.count() : 0);
  w.open_files = s.limits.open_files;
  w.file_size = s.limits.file_size;
  w.processes = s.limits.processes;
  w.no_core_dumps = s.limits.no_core_dumps;
  w.no_new_privs = s.no_new_privs;
  w.profile = static_cast<std::uint8_t>(s.syscalls);
  w.on_blocked = static_cast<std::uint8_t>(s.on_blocked);
  w.allow = s.allow_syscalls;
  w.deny = s.deny_syscalls;
  const auto& n = s.namespaces;
  w.ns_network = n.network;
  w.ns_mounts = n.mounts;
  w.ns_ipc = n.ipc;
  w.ns_pids = n.pids;
  w.ns_user = n.user || n.network || n.mounts || n.ipc || n.pids;
  if (s.filesystem) {
    w.landlock = true;
    for (const auto& r : *s.filesystem) {
      w.paths.push_back(r.path.string());
      w.writable.push_back(r.writable ? 1 : 0);
    }
  }
  byte_buffer buf;
  encoder e(buf);
  e(w);
  return {to_hex(buf), std::move(s)};
}

sandbox_report::sandbox_report(int read_fd, sandbox_options effective)
    : fd_(read_fd), effective_(std::move(effective)) {}

sandbox_report::~sandbox_report() { ::close(fd_); }

void sandbox_report::drain() {
  if (drained_) return;
  drained_ = true;
  std::string bytes;
  char buf[512];
  for (;;) {  // the child is gone: everything it wrote is in the pipe
    ssize_t r = ::read(fd_, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    bytes.append(buf, static_cast<std::size_t>(r));
  }
  std::size_t i = 0;
  while (i < bytes.size()) {
    if (bytes[i] == report_blocked && i + 5 <= bytes.size()) {
      std::uint32_t nr;
      std::memcpy(&nr, bytes.data() + i + 1, 4);
      blocked_syscall_ = nr;
      i += 5;
    } else if (bytes[i] == report_setup && i + 3 <= bytes.size()) {
      std::uint16_t len;
      std::memcpy(&len, bytes.data() + i + 1, 2);
      if (i + 3 + len > bytes.size()) break;
      setup_failure_.assign(bytes, i + 3, len);
      i += 3 + len;
    } else {
      break;  // the child wrote something else: say nothing rather than guess
    }
  }
}

std::string sandbox_report::setup_failure() {
  drain();
  return setup_failure_;
}

std::string sandbox_report::death_note(int signal, std::chrono::microseconds used) {
  drain();
  if (blocked_syscall_ >= 0) {
    char* name =
        ::seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, static_cast<int>(blocked_syscall_));
    std::string n = name ? name : "system call " + std::to_string(blocked_syscall_);
    std::free(name);
    return "blocked by the sandbox: " + n +
           " (sandbox_options: on_blocked = on_blocked_syscall::fail makes such a call fail with "
           "EPERM instead; allow_syscalls, or the read_files profile for opening files, allows "
           "it)";
  }
  const bool filtered =
      effective_.syscalls != syscall_profile::unrestricted || !effective_.deny_syscalls.empty();
  if (signal == SIGSYS && filtered)
    return "a system call the sandbox blocks was made while SIGSYS was blocked (in a signal "
           "handler "
           "that blocks every signal, such as some crash handlers), so the kernel ended the child "
           "before it could name the call";
  const auto cpu = effective_.limits.cpu.count();
  // SIGKILL comes at the hard limit, a second past the soft one, to a child that survived
  // SIGXCPU: the limit's only if the child used that much CPU time.
  if (cpu > 0 && (signal == SIGXCPU || (signal == SIGKILL && used >= effective_.limits.cpu)))
    return std::string(signal == SIGXCPU ? "" : "most likely ") + "the sandbox's CPU limit (" +
           std::to_string(cpu) +
           " s of CPU time over the child's whole life, not per call) was reached";
  return {};
}

// ---- child -----------------------------------------------------------------------------------

namespace {

int g_report_fd = -1;

// Ends the child after telling the parent why its sandbox could not be set up.
[[noreturn]] void setup_failed(const std::string& what, int err = 0) {
  std::string text = err ? what + ": " + std::strerror(err) : what;
  if (text.size() > 4000) text.resize(4000);
  std::string rec(1, report_setup);
  auto len = static_cast<std::uint16_t>(text.size());
  rec.append(reinterpret_cast<const char*>(&len), 2);
  rec += text;
  if (g_report_fd >= 0) [[maybe_unused]]
    auto n = ::write(g_report_fd, rec.data(), rec.size());
  std::fprintf(stderr, "procxy: the sandbox could not be set up: %s\n", text.c_str());
  _exit(125);
}

int thread_count() {
  FILE* f = std::fopen("/proc/self/status", "re");
  if (!f) return -1;
  char line[256];
  int n = -1;
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, "Threads:", 8) == 0) n = std::atoi(line + 8);
  std::fclose(f);
  return n;
}

std::string threads_hint() {
  int n = thread_count();
  if (n <= 1) return {};
  return " (this child already has " + std::to_string(n) +
         " threads before it serves, started by a static initialiser or a sanitizer runtime; the "
         "kernel needs a single-threaded process here)";
}

void write_file(const char* path, const std::string& s) {
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) setup_failed(std::string("open ") + path, errno);
  ssize_t w = ::write(fd, s.data(), s.size());
  int e = errno;
  ::close(fd);
  if (w != static_cast<ssize_t>(s.size())) setup_failed(std::string("write ") + path, e);
}

// The process init() started, with a PID namespace: it stays outside the namespace, forwards
// termination signals to the serving process and ends as it does (the parent's pidfd names it).
[[noreturn]] void relay(pid_t server, pid_t init_pid, int init_pipe) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM})
    sigaddset(&set, s);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  if (init_pipe > 3) ::close_range(3, static_cast<unsigned>(init_pipe - 1), 0);
  ::close_range(static_cast<unsigned>(init_pipe + 1), ~0U, 0);
  ::prctl(PR_SET_NAME, "procxy-relay", 0, 0, 0);
  for (;;) {
    // A SIGCHLD can be missed (seen: a server that is a zombie while this waits, ~1 teardown in
    // 30 under load), so the wait is bounded: every 50 ms the server is looked at anyway.
    siginfo_t si;
    const timespec every{0, 50'000'000};
    int sig = ::sigtimedwait(&set, &si, &every);
    if (sig < 0 && errno != EAGAIN) continue;
    if (sig > 0 && sig != SIGCHLD) {
      ::kill(server, sig);
      continue;
    }
    int st = 0;
    ::waitpid(init_pid, nullptr, WNOHANG);
    if (::waitpid(server, &st, WNOHANG) != server) continue;
    ::close(init_pipe);  // the namespace's init ends, and with it anything left inside
    // Reap it (it ends at once on the pipe's EOF): left a zombie, it would be handed to the
    // system's init, which in a container may never reap it.
    while (::waitpid(init_pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(st)) _exit(WEXITSTATUS(st));
    const int s = WTERMSIG(st);
    rlimit none{0, 0};
    ::setrlimit(RLIMIT_CORE, &none);  // the serving process's death, not a core of this relay
    ::signal(s, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, s);
    ::sigprocmask(SIG_UNBLOCK, &one, nullptr);
    ::kill(::getpid(), s);
    _exit(128 + s);
  }
}

void enter_namespaces(const wire_spec& w) {
  if (!w.ns_user) return;
  const uid_t uid = ::geteuid();
  const gid_t gid = ::getegid();
  if (::unshare(CLONE_NEWUSER) != 0) {
    int e = errno;
    setup_failed("a new user namespace (unshare(CLONE_NEWUSER)) was refused: " +
                 std::string(std::strerror(e)) + threads_hint());
  }
  // The child keeps its identity: its uid and gid map to the parent's, and nothing else exists.
  write_file("/proc/self/setgroups", "deny");
  write_file("/proc/self/uid_map", std::to_string(uid) + " " + std::to_string(uid) + " 1");
  write_file("/proc/self/gid_map", std::to_string(gid) + " " + std::to_string(gid) + " 1");
  int flags = (w.ns_network ? CLONE_NEWNET : 0) | (w.ns_mounts ? CLONE_NEWNS : 0) |
              (w.ns_ipc ? CLONE_NEWIPC : 0) | (w.ns_pids ? CLONE_NEWPID : 0);
  if (flags != 0 && ::unshare(flags) != 0)
    setup_failed("unshare of the network/mount/IPC/PID namespaces", errno);
  if (w.ns_mounts && ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    setup_failed("making the mount namespace private (mount MS_REC|MS_PRIVATE /)", errno);
  if (!w.ns_pids) return;
  // The first process in a PID namespace is its init, which ignores the signals it has no handler
  // for (abort() would not end it): that is a process of its own that only waits, and the server
  // is the second. It ends when this process does (the pipe's EOF), and the namespace with it.
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) setup_failed("pipe2", errno);
  pid_t init_pid = ::fork();
  if (init_pid < 0) setup_failed("fork (the PID namespace's init)", errno);
  if (init_pid == 0) {
    ::signal(SIGCHLD, SIG_IGN);  // orphans are reaped by the kernel
    ::prctl(PR_SET_NAME, "procxy-init", 0, 0, 0);
    if (p[0] > 0) ::close_range(0, static_cast<unsigned>(p[0] - 1), 0);
    ::close_range(static_cast<unsigned>(p[0] + 1), ~0U, 0);
    char c;
    while (::read(p[0], &c, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  pid_t server = ::fork();
  if (server < 0) setup_failed("fork (the PID namespace's server)", errno);
  if (server == 0) {
    ::close(p[0]);
    ::close(p[1]);
    return;
  }
  ::close(p[0]);
  relay(server, init_pid, p[1]);
}

void set_limit(int resource, std::uint64_t soft, std::uint64_t hard, const char* name) {
  rlimit r{static_cast<rlim_t>(soft), static_cast<rlim_t>(hard)};
  if (::setrlimit(resource, &r) != 0) setup_failed(std::string("setrlimit(") + name + ")", errno);
}

void apply_limits(const wire_spec& w) {
  if (w.address_space) set_limit(RLIMIT_AS, w.address_space, w.address_space, "RLIMIT_AS");
  if (w.cpu) set_limit(RLIMIT_CPU, w.cpu, w.cpu + 1, "RLIMIT_CPU");  // SIGXCPU, then SIGKILL
  if (w.open_files) set_limit(RLIMIT_NOFILE, w.open_files, w.open_files, "RLIMIT_NOFILE");
  if (w.file_size) {
    ::signal(SIGXFSZ, SIG_IGN);  // a write past the limit fails with EFBIG instead of killing
    set_limit(RLIMIT_FSIZE, w.file_size, w.file_size, "RLIMIT_FSIZE");
  }
  if (w.processes) set_limit(RLIMIT_NPROC, w.processes, w.processes, "RLIMIT_NPROC");
  if (w.no_core_dumps) set_limit(RLIMIT_CORE, 0, 0, "RLIMIT_CORE");
}

void apply_landlock(const wire_spec& w) {
  if (!w.landlock) return;
  const long abi = landlock_abi();
  if (abi < 1) setup_failed("Landlock is not available (landlock_create_ruleset)", errno);
  if (int n = thread_count(); n > 1)
    setup_failed("Landlock confines the calling thread only" + threads_hint());
  std::uint64_t all = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;  // ABI 1: bits 0-12
  if (abi >= 2) all |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) all |= LANDLOCK_ACCESS_FS_TRUNCATE;
  if (abi >= 5) all |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
  const std::uint64_t read_only =
      LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
  const std::uint64_t file_rights = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                                    LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |
                                    LANDLOCK_ACCESS_FS_IOCTL_DEV;
  landlock_ruleset_attr attr{};
  attr.handled_access_fs = all;
  int rs = static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0));
  if (rs < 0) setup_failed("landlock_create_ruleset", errno);
  for (std::size_t i = 0; i < w.paths.size(); ++i) {
    const std::string& path = w.paths[i];
    int fd = ::open(path.c_str(), O_PATH | O_CLOEXEC);
    if (fd < 0) setup_failed("Landlock rule for '" + path + "'", errno);
    struct stat st {};
    ::fstat(fd, &st);
    landlock_path_beneath_attr pb{};
    pb.allowed_access = (i < w.writable.size() && w.writable[i] ? all : read_only) & all;
    if (!S_ISDIR(st.st_mode)) pb.allowed_access &= file_rights;
    pb.parent_fd = fd;
    if (::syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) != 0)
      setup_failed("landlock_add_rule for '" + path + "'", errno);
    ::close(fd);
  }
  if (::syscall(SYS_landlock_restrict_self, rs, 0) != 0)
    setup_failed("landlock_restrict_self", errno);
  ::close(rs);
}

// ---- seccomp ---------------------------------------------------------------------------------

// The SIGSYS handler's view of the registers: the system call's arguments and its result.
#if defined(__x86_64__)
greg_t& sys_arg(ucontext_t* uc, int i) {
  static constexpr int regs[] = {REG_RDI, REG_RSI, REG_RDX, REG_R10, REG_R8, REG_R9};
  return uc->uc_mcontext.gregs[regs[i]];
}
greg_t& sys_result(ucontext_t* uc) { return uc->uc_mcontext.gregs[REG_RAX]; }
#define PROCXY_SANDBOX_HAS_TRAP 1
#elif defined(__aarch64__)
unsigned long long& sys_arg(ucontext_t* uc, int i) { return uc->uc_mcontext.regs[i]; }
unsigned long long& sys_result(ucontext_t* uc) { return uc->uc_mcontext.regs[0]; }
#define PROCXY_SANDBOX_HAS_TRAP 1
#endif

bool g_fail_mode = false;  // on_blocked_syscall::fail

bool same(const char* a, const char* b) {
  if (a == nullptr) return false;
  while (*a && *a == *b) ++a, ++b;
  return *a == *b;
}

#ifdef PROCXY_SANDBOX_HAS_TRAP
// SECCOMP_RET_TRAP lands here, on the thread that made the call (which did not run). Decides:
// emulate it (fstat spelt newfstatat), fail it with an errno, or report it and end the child.
void on_sigsys(int, siginfo_t* si, void* ctx) {
  const int saved = errno;
  auto* uc = static_cast<ucontext_t*>(ctx);
  auto set_result = [&](long v) {
    sys_result(uc) = static_cast<std::remove_reference_t<decltype(sys_result(uc))>>(v);
  };
  auto sysarg = [&](int i) { return static_cast<long>(sys_arg(uc, i)); };
  if (si->si_code == SYS_SECCOMP) {
    const int nr = si->si_syscall;
#ifdef SYS_newfstatat
    // glibc's fstat(fd) is newfstatat(fd, "", AT_EMPTY_PATH): answered with the real fstat.
    if (nr == SYS_newfstatat && (sysarg(3) & AT_EMPTY_PATH) != 0 &&
        same(reinterpret_cast<const char*>(sysarg(1)), "")) {
      long r = ::syscall(SYS_fstat, sysarg(0), sysarg(2));
      set_result(r < 0 ? -errno : r);
      errno = saved;
      return;
    }
#endif
    // The sandbox owns SIGSYS: taking it over fails.
    if (nr == SYS_rt_sigaction && static_cast<int>(sysarg(0)) == SIGSYS) {
      set_result(-EPERM);
      errno = saved;
      return;
    }
    // A crash handler at work (a synchronous fatal signal is blocked where the call was made):
    // its calls fail, so that its report degrades instead of turning into a sandbox kill.
    bool crashing = false;
    for (int s : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP})
      if (sigismember(&uc->uc_sigmask, s) == 1) crashing = true;
    // glibc's malloc reads this file once, the first time a thread's heap shrinks; it copes
    // with failing to.
    const char* path = nullptr;
#ifdef SYS_open
    if (nr == SYS_open) path = reinterpret_cast<const char*>(sysarg(0));
#endif
    if (nr == SYS_openat) path = reinterpret_cast<const char*>(sysarg(1));
    if (same(path, "/proc/sys/vm/overcommit_memory")) {
      set_result(-EACCES);
      errno = saved;
      return;
    }
    if (crashing || g_fail_mode) {
      set_result(-EPERM);
      errno = saved;
      return;
    }
    char rec[5];
    rec[0] = report_blocked;
    const auto unr = static_cast<std::uint32_t>(nr);
    std::memcpy(rec + 1, &unr, 4);
    if (g_report_fd >= 0) [[maybe_unused]]
      auto n = ::write(g_report_fd, rec, sizeof rec);
  }
  // End the child by SIGSYS: a call the filter traps, made while SIGSYS is blocked (as it is in
  // its own handler), makes the kernel restore the default action and deliver it.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::syscall(SYS_rt_sigaction, SIGSYS, &dfl, nullptr, sizeof(sigset_t));
  _exit(128 + SIGSYS);  // not reached
}
#endif

struct seccomp_rule {
  std::uint32_t action;
  std::vector<scmp_arg_cmp> args;
};
using rule_map = std::map<int, std::vector<seccomp_rule>>;

int resolve(const char* name) { return ::seccomp_syscall_resolve_name(name); }

// Argument `i` compared with `a` (for SCMP_CMP_MASKED_EQ: masked with `a`, compared with `b`).
// libseccomp's SCMP_A0.. macros are C compound literals, which C++ compilers warn about.
scmp_arg_cmp arg(unsigned i, scmp_compare op, scmp_datum_t a, scmp_datum_t b = 0) {
  scmp_arg_cmp c{};
  c.arg = i;
  c.op = op;
  c.datum_a = a;
  c.datum_b = b;
  return c;
}

void add(rule_map& m, const char* name, std::uint32_t action = SCMP_ACT_ALLOW,
         std::vector<scmp_arg_cmp> args = {}) {
  int nr = resolve(name);
  if (nr == __NR_SCMP_ERROR || nr < 0) return;  // not a call of this architecture
  m[nr].push_back({action, std::move(args)});
}

rule_map profile_rules(syscall_profile p) {
  rule_map m;
  if (p == syscall_profile::unrestricted) return m;
  const pid_t self = ::getpid();
  // Memory.
  for (const char* n :
       {"brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "msync", "membarrier"})
    add(m, n);
  // Threads and waiting: a new thread, never a new process (clone3's flags are in memory a
  // filter cannot read: it fails with ENOSYS and glibc falls back to clone).
  const std::uint64_t ns_flags = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
                                 CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;
  add(m, "clone", SCMP_ACT_ALLOW,
      {arg(0, SCMP_CMP_MASKED_EQ, CLONE_THREAD | ns_flags, CLONE_THREAD)});
  add(m, "clone3", SCMP_ACT_ERRNO(ENOSYS));
  for (const char* n : {"futex",      "futex_waitv",     "set_robust_list",
                        "rseq",       "set_tid_address", "exit",
                        "exit_group", "sched_yield",     "sched_getaffinity",
                        "getpid",     "gettid",          "getppid",
                        "getuid",     "geteuid",         "getgid",
                        "getegid",    "getrandom",       "uname",
                        "getrusage",  "sysinfo",         "getcpu",
                        "times"})
    add(m, n);
  // Signals: its own handlers and masks; signals to itself only. SIGSYS is the sandbox's.
  for (const char* n : {"rt_sigprocmask", "rt_sigreturn", "sigaltstack", "rt_sigsuspend",
                        "rt_sigtimedwait", "pause", "restart_syscall"})
    add(m, n);
  add(m, "rt_sigaction", SCMP_ACT_ALLOW, {arg(0, SCMP_CMP_NE, SIGSYS)});
  add(m, "rt_sigaction", SCMP_ACT_ALLOW, {arg(1, SCMP_CMP_EQ, 0)});
  add(m, "kill", SCMP_ACT_ALLOW, {arg(0, SCMP_CMP_EQ, static_cast<scmp_datum_t>(self))});
  add(m, "tgkill", SCMP_ACT_ALLOW, {arg(0, SCMP_CMP_EQ, static_cast<scmp_datum_t>(self))});
  // Time.
  for (const char* n :
       {"clock_gettime", "clock_getres", "gettimeofday", "time", "nanosleep", "clock_nanosleep"})
    add(m, n);
  // I/O on descriptors it holds (its channel, stdio): no call that opens or names a path.
  for (const char* n :
       {"read",         "write",         "readv",       "writev",     "pread64",     "pwrite64",
        "lseek",        "close",         "close_range", "dup",        "dup3",        "fcntl",
        "fstat",        "pipe",          "pipe2",       "sendto",     "recvfrom",    "sendmsg",
        "recvmsg",      "shutdown",      "poll",        "ppoll",      "select",      "pselect6",
        "epoll_create", "epoll_create1", "epoll_ctl",   "epoll_wait", "epoll_pwait", "epoll_pwait2",
        "eventfd2"})
    add(m, n);
  add(m, "ioctl", SCMP_ACT_ALLOW, {arg(1, SCMP_CMP_EQ, TCGETS)});  // isatty
  add(m, "ioctl", SCMP_ACT_ALLOW, {arg(1, SCMP_CMP_EQ, TIOCGWINSZ)});
  add(m, "prlimit64", SCMP_ACT_ALLOW, {arg(2, SCMP_CMP_EQ, 0)});  // reading a limit, not setting it
  add(m, "getrlimit");
  add(m, "prctl", SCMP_ACT_ALLOW, {arg(0, SCMP_CMP_EQ, PR_SET_NAME)});
  add(m, "prctl", SCMP_ACT_ALLOW, {arg(0, SCMP_CMP_EQ, PR_GET_NAME)});
  if (p == syscall_profile::read_files) {
    // Opening read-only (no write access, no create, no truncate; O_TMPFILE needs write access).
    const scmp_datum_t write_bits = O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND;
    add(m, "open", SCMP_ACT_ALLOW, {arg(1, SCMP_CMP_MASKED_EQ, write_bits, 0)});
    add(m, "openat", SCMP_ACT_ALLOW, {arg(2, SCMP_CMP_MASKED_EQ, write_bits, 0)});
    add(m, "openat2", SCMP_ACT_ERRNO(ENOSYS));  // its flags are in memory: glibc's open uses openat
    for (const char* n :
         {"newfstatat", "stat", "lstat", "statx", "fstatfs", "statfs", "readlink", "readlinkat",
          "getdents", "getdents64", "access", "faccessat", "faccessat2", "getcwd", "fadvise64"})
      add(m, n);
  }
  return m;
}

void apply_seccomp(const wire_spec& w) {
  const auto profile = static_cast<syscall_profile>(w.profile);
  if (profile == syscall_profile::unrestricted && w.deny.empty()) return;
#ifndef PROCXY_SANDBOX_HAS_TRAP
  setup_failed("the seccomp sandbox is not implemented for this architecture");
#else
  g_fail_mode = static_cast<on_blocked_syscall>(w.on_blocked) == on_blocked_syscall::fail;
  const std::uint32_t blocked = g_fail_mode ? SCMP_ACT_ERRNO(EPERM) : SCMP_ACT_TRAP;
  rule_map m = profile_rules(profile);
  for (const auto& n : w.allow) m[resolve(n.c_str())] = {{SCMP_ACT_ALLOW, {}}};
  for (const auto& n : w.deny) {
    const int nr = resolve(n.c_str());
    if (profile == syscall_profile::unrestricted)
      m[nr] = {{blocked, {}}};
    else
      m.erase(nr);  // falls to the default action: blocked
  }
  // Whatever else is allowed, SIGSYS stays the sandbox's: installing a handler for it traps
  // (the handler answers EPERM; inside the handler the trap is how the child ends). In the strict
  // profile fstat spelt newfstatat traps too, and the handler answers it.
  const std::uint32_t default_action =
      profile == syscall_profile::unrestricted ? SCMP_ACT_ALLOW : blocked;
  {
    auto& v = m[resolve("rt_sigaction")];
    const bool allowed = profile == syscall_profile::unrestricted ? v.empty() : !v.empty();
    v.clear();
    if (allowed) {
      v.push_back({SCMP_ACT_ALLOW, {arg(0, SCMP_CMP_NE, SIGSYS)}});
      v.push_back({SCMP_ACT_ALLOW, {arg(1, SCMP_CMP_EQ, 0)}});
    } else if (profile == syscall_profile::unrestricted) {
      v.push_back({blocked, {}});
    }
    v.push_back({SCMP_ACT_TRAP, {arg(0, SCMP_CMP_EQ, SIGSYS), arg(1, SCMP_CMP_NE, 0)}});
  }
  if (profile == syscall_profile::strict && !m.count(resolve("newfstatat")))
    add(m, "newfstatat", SCMP_ACT_TRAP);

  struct sigaction sa {};
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (::sigaction(SIGSYS, &sa, nullptr) != 0) setup_failed("sigaction(SIGSYS)", errno);
  sigset_t sys;
  sigemptyset(&sys);
  sigaddset(&sys, SIGSYS);
  ::sigprocmask(SIG_UNBLOCK, &sys, nullptr);

  scmp_filter_ctx ctx = ::seccomp_init(default_action);
  if (ctx == nullptr) setup_failed("seccomp_init failed");
  auto check = [&](int rc, const std::string& what) {
    if (rc < 0) {
      ::seccomp_release(ctx);
      setup_failed(what, -rc);
    }
  };
  check(::seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS),
        "seccomp_attr_set(BADARCH)");
  check(::seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1), "seccomp_attr_set(TSYNC)");
  check(::seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, w.no_new_privs ? 1 : 0),
        "seccomp_attr_set(NNP)");
  for (const auto& [nr, rules] : m) {
    for (const auto& r : rules) {
      if (r.action == default_action) continue;  // libseccomp refuses a rule that changes nothing
      check(::seccomp_rule_add_array(ctx, r.action, nr, static_cast<unsigned>(r.args.size()),
                                     r.args.data()),
            "seccomp_rule_add for system call " + std::to_string(nr));
    }
  }
  check(::seccomp_load(ctx), "seccomp_load");
  ::seccomp_release(ctx);
#endif
}

}  // namespace

void apply_sandbox_from_environment() {
  const char* spec = std::getenv(sandbox_spec_env);
  const char* fdv = std::getenv(sandbox_fd_env);
  if (spec == nullptr) return;
  g_report_fd = fdv ? std::atoi(fdv) : -1;
  wire_spec w;
  try {
    auto bytes = from_hex(spec);
    byte_reader r(std::span<const std::byte>(bytes.data(), bytes.size()));
    decoder d(r);
    d(w);
    if (bytes.empty() || !r.at_end()) throw protocol_error("trailing bytes");
  } catch (const std::exception& e) {
    setup_failed(std::string("the sandbox description from the parent is malformed (") + e.what() +
                 ")");
  }
  ::unsetenv(sandbox_spec_env);
  ::unsetenv(sandbox_fd_env);
  if (g_report_fd >= 0) ::fcntl(g_report_fd, F_SETFD, FD_CLOEXEC);
  enter_namespaces(w);  // may fork: returns in the process that serves
  apply_limits(w);
  if (w.no_new_privs && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    setup_failed("prctl(PR_SET_NO_NEW_PRIVS)", errno);
  apply_landlock(w);
  apply_seccomp(w);
}

}  // namespace procxy::detail
