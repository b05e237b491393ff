// procxy/options.hpp — how a child is started and how its calls behave.
//
//   auto calc = procxy::spawn<Calculator>({.call_timeout = 5s, .env = {{"LANG", "C"}}}, 4);
//
// Every field has a default that works; designated initializers name only what you change.
#pragma once

#include <chrono>
#include <cstddef>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "procxy/sandbox.hpp"

namespace procxy {

enum class spawn_mode {
  // Start the current executable again (/proc/self/exe) with posix_spawn; the child calls
  // procxy::init() from main and serves the object. Safe in multi-threaded parents. Default.
  reexec,
  // Start `spawn_options::executable`, a worker binary built with procxy that registers the
  // class (PROCXY_CLASS) and its constructor (PROCXY_CONSTRUCTOR) and calls procxy::init().
  executable,
  // fork() without exec: the fastest start, but the child is a copy of a possibly multi-threaded
  // parent. Only the forking thread exists in the child; locks held by other threads at the time
  // of the fork (malloc's, iostreams', your own) stay locked forever. Use it only from parents
  // that are single-threaded when they spawn, or that know what they are doing.
  fork,
};

enum class env_mode {
  merge,    // the parent's environment, with `env` entries added or overriding
  replace,  // only the entries in `env`
};

// What happens to the child when a call times out (after its retries, if any).
enum class timeout_policy {
  // The call fails with timeout_error; the child keeps running and its late reply is dropped.
  // Default: a timeout is the caller's deadline, not proof of a hang, and killing would destroy
  // the object's state and fail unrelated calls (docs/design.md "Timeouts").
  keep_child,
  // The call fails with timeout_error, the child is killed (SIGKILL: a hung call would never
  // reach the destructor) and reaped, and every other pending and later call fails with
  // procxy::terminated. For isolating code that can hang.
  kill_child,
};

// How a child ended; passed to spawn_options::on_exit.
// What happens when a child emits events faster than the parent's listeners consume them.
enum class event_overflow {
  // The parent stops reading the channel until its listeners caught up; the child's emit()
  // blocks once the socket buffer is full. Nothing is lost.
  block_emitter,
  // The oldest events not yet started are dropped (stats().events_dropped counts them).
  drop_oldest,
};

// What carries the bytes between parent and child (docs/design.md "Shared-memory transport").
enum class transport_kind {
  // shared_memory where it can be set up (a memfd), else socket. PROCXY_TRANSPORT=socket or
  // PROCXY_TRANSPORT=shared_memory in the parent's environment chooses instead (the test suite
  // runs over both this way).
  automatic,
  // An AF_UNIX socketpair: every message is a system call each way.
  socket,
  // Two rings in memory both processes map, with a futex to sleep on: a message costs a copy,
  // and a system call only when the receiver sleeps. The socket stays, to see the peer's death.
  shared_memory,
};

struct exit_info {
  int pid = -1;
  int exit_code = -1;  // >= 0 when the child exited (exit, _exit, return from main)
  int signal = 0;      // > 0 when a signal killed it
  // The proxy ended it: terminate(), the proxy's destruction, timeout_policy::kill_child, or a
  // protocol error. False when the child died or exited on its own.
  bool requested = false;
  // The object asked to be disposed of (procxy::this_child().dispose()); the proxy then ended
  // the child as terminate() does (requested is true as well).
  bool disposed = false;
  std::string description;  // "exited with code 3", "was killed by signal 11 (SIGSEGV)"
};

// Options of one call, for proxy<T>::with(...) (see proxy.hpp).
struct call_options {
  // Overrides spawn_options::call_timeout for these calls (negative: keep the proxy's; 0: none).
  std::chrono::milliseconds timeout{-1};
  // The calls are idempotent: after a timeout, send them again up to this many times (each with
  // the full timeout) before failing with timeout_error. Never done unless asked: a call that
  // timed out may still run in the child, so a re-sent call can run more than once.
  int retries = 0;
};

struct spawn_options {
  // A call that has not completed after this long fails with timeout_error (0 = no limit).
  // The child is kept and the late reply dropped (docs/design.md, "Timeouts").
  std::chrono::milliseconds call_timeout{0};
  timeout_policy on_timeout = timeout_policy::keep_child;
  // The child must have constructed the object within this long, or every call fails with
  // spawn_error and the child is killed (0 = no limit).
  std::chrono::milliseconds start_timeout{std::chrono::seconds(30)};
  // terminate(): how long the object's destructor may take before SIGTERM, then SIGKILL.
  std::chrono::milliseconds terminate_grace{std::chrono::seconds(2)};

  spawn_mode mode = spawn_mode::reexec;
  transport_kind transport = transport_kind::automatic;
  // Size of each of the two shared-memory rings (bytes; rounded up to a power of two between
  // 4 KiB and 1 GiB). A message larger than a ring streams through it in pieces.
  std::size_t shared_memory_ring = std::size_t{256} << 10;
  std::filesystem::path executable{};  // for spawn_mode::executable
  // A shared library to load into the child before it serves (procxy's modulePath): the class,
  // its description and PROCXY_CONSTRUCTOR live there; the parent needs only the declaration and
  // PROCXY_INTERFACE. The child is the procxy-host executable (`executable` if set, else
  // $PROCXY_HOST, else procxy-host on PATH), in the default mode or spawn_mode::executable.
  std::filesystem::path module{};
  std::vector<std::string> args{};  // extra argv entries after argv[0]
  std::map<std::string, std::string> env{};
  env_mode environment = env_mode::merge;
  std::filesystem::path working_directory{};  // empty: the parent's

  // Record the child's stack at every throw and attach it, symbolized, to exceptions that reach
  // the parent (remote_info::backtrace()). Also on when PROCXY_BACKTRACE=1 is in the child's
  // environment. Costs a stack walk per throw in the child (docs/design.md "Backtraces"). Where
  // the child cannot record stacks (procxy configured without libbacktrace, or a program linked
  // with a static C++ runtime) the backtrace is a one-line "(no backtrace: <why>)".
  bool backtrace = false;

  // Runs exactly once when the child has ended, for whatever reason, after it was reaped and
  // after every pending call failed; on the proxy's dispatch thread. It may call terminate() or
  // destroy the proxy. Not run for a proxy that never started (spawn threw).
  std::function<void(const exit_info&)> on_exit{};

  // Keep the last this-many bytes the child writes to stderr and append them to the message of
  // child_crashed (and of spawn_error when the child dies before constructing the object). The
  // child's stderr then goes through a pipe and is copied to the parent's stderr as it arrives,
  // by one extra thread per proxy. 0: the child inherits the parent's stderr directly.
  std::size_t capture_stderr = 0;

  // Callbacks (std::function / procxy::notify arguments and results; docs/design.md
  // "Callbacks"). Each side lends at most this many functions the other side still holds; a call
  // that would lend more fails with serialization_error and lends nothing.
  std::size_t max_callbacks = 100'000;
  // Timeout of a two-way callback invocation, both ways (negative: call_timeout; 0: none).
  std::chrono::milliseconds callback_timeout{-1};
  // Receives the exceptions of one-way callbacks (procxy::notify) run in this process, on the
  // dispatch thread. Default: printed to stderr.
  std::function<void(std::exception_ptr)> on_callback_error{};
  // Where the callbacks the child invokes in this process run. Default (empty): the proxy's
  // dispatch thread. Set, each invocation is handed to this function as a task to run later —
  // one at a time and in the order given (a serial executor: a GUI event loop's post, an Asio
  // strand, a single worker thread). The child's calls to the parent then wait for that
  // executor, and so does the completion of a call behind one-way callbacks sent before its
  // reply. A thread that runs the executor must not block on a call of this proxy that makes
  // the child invoke a callback: it would wait for itself (up to callback_timeout).
  // docs/design.md "Callbacks: threads".
  std::function<void(std::function<void()>)> callback_executor{};

  // Events (procxy::event members; docs/design.md "Events: backpressure"): at most this many
  // received events wait for their listeners (0: no bound). Past it, event_overflow decides.
  std::size_t max_queued_events = 10'000;
  event_overflow on_event_overflow = event_overflow::block_emitter;

  // Largest message either side accepts (frame body, bytes). Larger → protocol_error.
  std::size_t max_message_size = std::size_t{256} << 20;
  // Most descriptors (procxy::unique_fd values) one message may carry, either way; at most 253
  // (the kernel's SCM_MAX_FD), else spawn_error. More on send: serialization_error for that
  // call, nothing sent or leaked; more from the peer: protocol_error (docs/design.md
  // "Descriptors").
  std::size_t max_descriptors_per_message = 64;

  // Confines the child: resource limits, no_new_privs, a seccomp profile, namespaces, Landlock
  // (procxy/sandbox.hpp; docs/design.md "Sandbox"). Nothing by default. PROCXY_SANDBOX=strict or
  // PROCXY_SANDBOX=read_files in the parent's environment applies that profile (with
  // no_new_privs and no core dumps) to every spawn whose sandbox is left empty.
  sandbox_options sandbox{};
};

}  // namespace procxy
