// procxy/error.hpp — the closed set of errors procxy itself reports.
//
// Every failure that is procxy's own (not an exception thrown by your object) is a `procxy::error`
// with a `kind()` you can switch on:
//
//   try { calc.add(1, 2).get(); }
//   catch (const procxy::child_crashed& e) { log(e.what(), e.signal()); }
//   catch (const procxy::error& e) { if (e.kind() == procxy::error_kind::timeout) ... }
//
// Exceptions thrown by the child's object are re-thrown as themselves when they are standard
// exception types, and as `remote_error` otherwise (see docs/design.md, "Errors").
#pragma once

#include <sys/types.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace procxy {

enum class error_kind {
  spawn,          // the child could not be started or its constructor threw
  timeout,        // a call or the start did not complete in time
  child_crashed,  // the child died (signal or exit) while the call was pending or before it
  terminated,     // the proxy was terminated (or moved from) before the call completed
  protocol,       // the peer sent a malformed, oversized or unexpected message
  serialization,  // a value could not be encoded (too large) or decoded
  remote,         // the child's method threw an exception of a non-standard type
};

// Human-readable name of a kind ("timeout", "child_crashed", ...).
const char* to_string(error_kind k) noexcept;

class error : public std::runtime_error {
 public:
  error(error_kind k, const std::string& what) : std::runtime_error(what), kind_(k) {}
  error_kind kind() const noexcept { return kind_; }

 private:
  error_kind kind_;
};

class spawn_error : public error {
 public:
  explicit spawn_error(const std::string& what) : error(error_kind::spawn, what) {}
};

class timeout_error : public error {
 public:
  explicit timeout_error(const std::string& what) : error(error_kind::timeout, what) {}
};

// The child died. Exactly one of exit_code() >= 0 or signal() > 0 holds when known;
// both are -1/0 when the child's status could not be read. what() names the calls that were in
// flight and, when a crash signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) killed it, the
// child's stack where it crashed (docs/design.md "Crash reports").
class child_crashed : public error {
 public:
  child_crashed(const std::string& what, int exit_code, int signal, std::string stderr_tail = {},
                std::string backtrace = {})
      : error(error_kind::child_crashed, what),
        exit_code_(exit_code),
        signal_(signal),
        stderr_tail_(std::move(stderr_tail)),
        backtrace_(std::move(backtrace)) {}
  int exit_code() const noexcept { return exit_code_; }
  int signal() const noexcept { return signal_; }
  // The last bytes of the child's stderr (spawn_options::capture_stderr), also in what().
  const std::string& stderr_tail() const noexcept { return stderr_tail_; }
  // The child's symbolized stack where it crashed (one frame a line, as remote_info::backtrace()),
  // also in what(); empty when there is none (an exit, SIGKILL, a signal from outside).
  const std::string& backtrace() const noexcept { return backtrace_; }

 private:
  int exit_code_;
  int signal_;
  std::string stderr_tail_;
  std::string backtrace_;
};

class terminated : public error {
 public:
  explicit terminated(const std::string& what) : error(error_kind::terminated, what) {}
};

class protocol_error : public error {
 public:
  explicit protocol_error(const std::string& what) : error(error_kind::protocol, what) {}
};

class serialization_error : public error {
 public:
  explicit serialization_error(const std::string& what) : error(error_kind::serialization, what) {}
};

// Where an exception thrown by the child's object came from. Every exception that crosses from
// the child carries one: rebuilt standard and registered types are thrown as `remote<E>` (derived
// from E and remote_info), others as remote_error (also a remote_info).
//
//   try { calc.divide(1, 0).get(); }
//   catch (const std::domain_error& e) {                  // the type thrown in the child
//     if (auto* r = procxy::remote_info_of(e)) log(r->pid(), r->method(), r->backtrace());
//   }
class remote_info {
 public:
  remote_info() = default;
  remote_info(int pid, std::string method, std::string type_name, std::string backtrace)
      : pid_(pid),
        method_(std::move(method)),
        type_name_(std::move(type_name)),
        backtrace_(std::move(backtrace)) {}
  virtual ~remote_info() = default;
  // The child's process id.
  int pid() const noexcept { return pid_; }
  // The method that threw, as "Class::method" (the class name for a constructor).
  const std::string& method() const noexcept { return method_; }
  // The demangled dynamic type of the exception object in the child.
  const std::string& type_name() const noexcept { return type_name_; }
  // The child's symbolized stack at the throw point when backtraces are on
  // (spawn_options::backtrace or PROCXY_BACKTRACE=1), else empty; "(no backtrace: <why>)" when
  // they are on but the child cannot record stacks (spawn_options::backtrace says when).
  const std::string& backtrace() const noexcept { return backtrace_; }

 private:
  int pid_ = -1;
  std::string method_, type_name_, backtrace_;
};

// A rebuilt exception of type E (standard or registered with PROCXY_EXCEPTION) that came from the
// child: catch it as E; its remote_info is reachable with remote_info_of().
template <class E>
class remote final : public E, public remote_info {
 public:
  template <class... A>
  explicit remote(remote_info info, A&&... a)
      : E(std::forward<A>(a)...), remote_info(std::move(info)) {}
};

// The remote_info of an exception that came from a child, or null.
inline const remote_info* remote_info_of(const std::exception& e) noexcept {
  return dynamic_cast<const remote_info*>(&e);
}

// An exception of a type procxy does not rebuild (not standard, not registered), thrown by the
// child's object. `type_name()` is the demangled dynamic type; what() says which method threw
// what: "my_error thrown by Calculator::divide in child 1234: <its what()>".
class remote_error : public error, public remote_info {
 public:
  remote_error(remote_info info, const std::string& what)
      : error(error_kind::remote, what), remote_info(std::move(info)) {}
};

}  // namespace procxy
