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

#include <stdexcept>
#include <string>
#include <sys/types.h>

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
// both are -1/0 when the child's status could not be read.
class child_crashed : public error {
 public:
  child_crashed(const std::string& what, int exit_code, int signal)
      : error(error_kind::child_crashed, what), exit_code_(exit_code), signal_(signal) {}
  int exit_code() const noexcept { return exit_code_; }
  int signal() const noexcept { return signal_; }

 private:
  int exit_code_;
  int signal_;
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

// An exception of a type procxy does not rebuild, thrown by the child's object.
// `type_name()` is the demangled dynamic type, `what()` its message.
class remote_error : public error {
 public:
  remote_error(std::string type_name, const std::string& message)
      : error(error_kind::remote, message), type_name_(std::move(type_name)) {}
  const std::string& type_name() const noexcept { return type_name_; }

 private:
  std::string type_name_;
};

}  // namespace procxy
