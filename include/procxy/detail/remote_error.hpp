// procxy/detail/remote_error.hpp — exceptions on the wire.
//
// error_payload (body of a reply_error frame):
//   u8  code        which type to rebuild (exception_code in src/error.cpp), or `other`
//   str type_name   demangled dynamic type of the thrown object
//   str what        its what()
//   str backtrace   the child's symbolized stack at the throw point, or empty
//   then, by code:
//     system_error  i32 value, u8 category (generic, system, other), str category name
//     registered    u64 type id, u32 n, n bytes of payload (the PROCXY_EXCEPTION members)
#pragma once

#include <cstdint>
#include <exception>
#include <string>
#include <typeinfo>

#include "procxy/detail/codec.hpp"
#include "procxy/error.hpp"

namespace procxy::detail {

// Encodes the exception currently being handled (call from inside a catch block).
void encode_current_exception(encoder& e);
// Rebuilds the exception a reply_error carries: standard and registered types as remote<E>,
// others as procxy::remote_error. `method` names the call, `pid` the child, for remote_info.
std::exception_ptr decode_remote_error(decoder& d, const char* method, int pid = -1);
// Demangles a type name from typeid(...).name().
std::string demangle(const char* mangled);

// A type registered with PROCXY_EXCEPTION (procxy/exception.hpp).
struct exception_entry {
  const std::type_info* type = nullptr;
  const std::type_info* rebuilt_type = nullptr;  // remote<E>: passed on as E
  void (*encode)(const std::exception& ex, encoder& e) = nullptr;
  std::exception_ptr (*decode)(decoder& d, remote_info&& info, std::string&& what) = nullptr;
};
// Registers at static-initialisation time; returns the wire id (hash of the mangled name).
std::uint64_t register_exception_entry(const exception_entry& e);

// Backtraces at the throw point (src/backtrace.cpp). When enabled, every throw on any thread
// records the raw return addresses of its stack; encode_current_exception symbolizes the record
// of the exception being handled if it was thrown on the same thread.
void enable_throw_backtraces(bool on) noexcept;
bool throw_backtraces_enabled() noexcept;
// The symbolized stack of the last throw on this thread if it threw an object of `type`, else "";
// when this program cannot record stacks, a one-line note "(no backtrace: <reason>)".
std::string take_throw_backtrace(const std::type_info* type);
// Why this program cannot record the stack at a throw, or "" when it can: procxy built without
// libbacktrace (CMake option PROCXY_BACKTRACE), or procxy's __cxa_throw hook not the definition in
// use (a statically linked C++ runtime, or the program's own interposer).
const char* throw_backtrace_unavailable_reason() noexcept;

}  // namespace procxy::detail
