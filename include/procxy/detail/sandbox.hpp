// procxy/detail/sandbox.hpp — the sandbox's two halves (src/sandbox.cpp; docs/design.md "Sandbox").
//
// Parent: plan_sandbox() validates spawn_options::sandbox (or PROCXY_SANDBOX's profile) and
// encodes it for the child's environment; sandbox_report owns the read end of the report pipe,
// through which the child tells why its sandbox could not be set up, or which system call ended
// it. Child: apply_sandbox() sets every layer up before the object is constructed.
#pragma once

#include <chrono>
#include <string>

#include "procxy/sandbox.hpp"

namespace procxy {
struct spawn_options;
}

namespace procxy::detail {

// What a spawn hands its child: the environment variable's value, and what the parent needs to
// explain a death. `spec` empty: no sandbox (no report pipe, no variable).
struct sandbox_plan {
  std::string spec;
  sandbox_options effective;
};
// The sandbox of a spawn: o.sandbox, or when that is inactive the profile PROCXY_SANDBOX names
// in this process's environment ("strict", "read_files"). Throws spawn_error for what cannot be
// applied (an unknown system call name, allow_syscalls without a profile, backtraces that the
// profile would kill the child for, Landlock or seccomp missing from the kernel).
sandbox_plan plan_sandbox(const spawn_options& o);

// The environment variables that carry the plan and the report pipe's number to the child.
inline constexpr const char* sandbox_spec_env = "PROCXY_SANDBOX_SPEC";
inline constexpr const char* sandbox_fd_env = "PROCXY_SANDBOX_FD";

// The parent's end of the report pipe of one sandboxed child.
class sandbox_report {
 public:
  sandbox_report(int read_fd, sandbox_options effective);
  ~sandbox_report();
  sandbox_report(const sandbox_report&) = delete;
  sandbox_report& operator=(const sandbox_report&) = delete;
  // Why the child could not set its sandbox up ("unshare(CLONE_NEWUSER): Operation not
  // permitted"), or empty. Read once the child has exited.
  std::string setup_failure();
  // What the sandbox says of a death by `signal` (0: an exit): "blocked by the sandbox: openat
  // (...how to allow it)", "the sandbox's CPU limit (1 s of CPU time ...) was reached", or empty.
  // `cpu`: the CPU time the child used (a SIGKILL is the CPU limit's only if it used it up).
  std::string death_note(int signal, std::chrono::microseconds cpu);

 private:
  void drain();
  int fd_;
  sandbox_options effective_;
  bool drained_ = false;
  std::string setup_failure_;
  long blocked_syscall_ = -1;
};

// Child: applies the sandbox that PROCXY_SANDBOX_SPEC describes, if any (and removes both
// variables). Returns in the process that is to serve: with a PID namespace that is a new
// process, and the one init() started stays behind as a relay that ends as it does. On failure
// writes the reason to the report pipe and _exits: the parent reports spawn_error.
void apply_sandbox_from_environment();

}  // namespace procxy::detail
