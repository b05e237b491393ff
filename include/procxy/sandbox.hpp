// procxy/sandbox.hpp — confining a child that runs code you do not trust (spawn_options::sandbox).
//
//   auto p = procxy::spawn<Parser>({.sandbox = {.limits = {.address_space = 1ull << 30, .cpu =
//   10s},
//                                               .syscalls = procxy::syscall_profile::strict}});
//
// Every layer is applied in the child before the object is constructed, in every spawn mode, in
// this order: namespaces, resource limits, no_new_privs, Landlock, the seccomp filter
// (docs/design.md "Sandbox"). A layer the kernel refuses fails the spawn with spawn_error; the
// child never runs the object unsandboxed. A default-constructed sandbox_options applies nothing.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace procxy {

// setrlimit in the child (soft = hard). 0 leaves a limit as the child inherited it.
struct resource_limits {
  // Address space (RLIMIT_AS, bytes). An allocation past it throws std::bad_alloc in the child,
  // which reaches the caller as it always does. The child's own threads, the shared-memory rings
  // and glibc's per-thread heaps need some too: allow at least ~256 MiB.
  std::size_t address_space = 0;
  // CPU time of the child (RLIMIT_CPU, whole seconds). Past it the child gets SIGXCPU and every
  // pending call fails with child_crashed naming the limit (SIGKILL a second later if the child
  // ignores SIGXCPU).
  std::chrono::seconds cpu{0};
  // Open descriptors (RLIMIT_NOFILE): procxy's channel needs about a dozen.
  std::size_t open_files = 0;
  // Largest file the child may write (RLIMIT_FSIZE, bytes). A write past it fails with EFBIG
  // (the child ignores SIGXFSZ).
  std::size_t file_size = 0;
  // Processes of the child's user (RLIMIT_NPROC). The kernel does not apply it to root: the
  // seccomp profiles are what stops a child from forking.
  std::size_t processes = 0;
  // RLIMIT_CORE = 0: a crashing child leaves no core file.
  bool no_core_dumps = false;
};

// Which system calls the child may make once it serves (a seccomp-BPF filter, libseccomp).
enum class syscall_profile {
  // No filter, unless deny_syscalls names calls to block.
  unrestricted,
  // Pure computation: memory, threads, futexes, time, and I/O on the descriptors the child
  // already holds (its channel). Nothing that opens, connects, forks, execs or signals another
  // process. docs/design.md "Sandbox" lists it.
  strict,
  // strict, plus opening files read-only, stat, readlink, listing directories.
  read_files,
};

// What a call the filter blocks does.
enum class on_blocked_syscall {
  // The child ends: every pending call fails with child_crashed whose message names the call
  // ("blocked by the sandbox: openat"). Default.
  kill,
  // The call fails with EPERM, which the method sees (errno, or std::system_error).
  fail,
};

// Namespaces (unshare in the child; the kernel must allow unprivileged user namespaces unless the
// parent is root). Any of network, mounts, ipc, pids creates a user namespace first.
struct namespace_options {
  bool user = false;     // a new user namespace: the child's uid and gid are mapped to the parent's
  bool network = false;  // a new network namespace: no interface but a loopback that is down
  bool mounts = false;   // a private copy of the mount table: nothing propagates either way
  bool ipc = false;      // System V IPC and POSIX message queues of its own
  bool pids = false;  // a PID namespace: the child sees no other process (its pid there is 2 or so)
};

// Landlock: a path the child may use, and how.
struct path_rule {
  std::filesystem::path path;  // a file or a directory (then everything beneath it)
  bool writable = false;       // false: read and execute only
};

struct sandbox_options {
  resource_limits limits{};
  // PR_SET_NO_NEW_PRIVS: execve can no longer grant privileges (setuid bits, file capabilities).
  // Always set when syscalls or filesystem is.
  bool no_new_privs = false;
  syscall_profile syscalls = syscall_profile::unrestricted;
  on_blocked_syscall on_blocked = on_blocked_syscall::kill;
  // Calls added to the profile (by name, as in `man 2`: "socket", "connect"); not with
  // syscall_profile::unrestricted.
  std::vector<std::string> allow_syscalls{};
  // Calls blocked even if the profile allows them (with unrestricted: a blocklist).
  std::vector<std::string> deny_syscalls{};
  namespace_options namespaces{};
  // Landlock (engaged: the child may use these paths only, as each rule says; anything else
  // fails with EACCES). Needs Landlock in the kernel (Linux 5.13+).
  std::optional<std::vector<path_rule>> filesystem{};

  // Whether any layer is asked for.
  bool active() const noexcept {
    const auto& n = namespaces;
    const auto& l = limits;
    return no_new_privs || syscalls != syscall_profile::unrestricted || !deny_syscalls.empty() ||
           !allow_syscalls.empty() || n.user || n.network || n.mounts || n.ipc || n.pids ||
           filesystem.has_value() || l.address_space || l.cpu.count() || l.open_files ||
           l.file_size || l.processes || l.no_core_dumps;
  }
};

}  // namespace procxy
