// src/crash.hpp — crash context (private to the library; docs/design.md "Crash reports").
//
// In the child: a handler for the crash signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) that
// writes the stack of the thread that crashed, as (module, offset) pairs, to a pipe the parent
// made at spawn, then lets the signal kill the process as it would have without it.
// In the parent: reading that report after the child was reaped, symbolizing it, and naming the
// calls that were in flight, for child_crashed's message.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace procxy::detail {

// ---- the child ---------------------------------------------------------------------------------

// Installs the crash handler (on an alternate signal stack for the calling thread, the object
// thread) and makes it report to `fd`, the write end of the crash pipe. Called once by serve();
// never in the parent process.
void install_crash_handler(int fd) noexcept;

// Keeps a copy of the executable file mappings for the handler, which reads /proc/self/maps at
// the crash but may not be allowed to once a sandbox is applied. Called before applying one.
void remember_mappings();

// While `*unwritten` is true (replies the object thread handed to the I/O thread, not yet
// written: frame_writer hold::handoff), the handler lets that thread write them before the
// process dies, for at most 100 ms: calls that completed before a crash keep their values.
// nullptr: nothing to wait for.
void crash_handler_waits_for(const std::atomic<bool>* unwritten) noexcept;

// Makes the handler report for this process: the sandbox's PID namespace serves from a fork of
// the process that installed it (a fork of the object's own is otherwise never reported).
void crash_handler_follows_fork() noexcept;

// ---- the parent --------------------------------------------------------------------------------

// What the child's handler wrote, read without blocking (the child is dead and reaped, so all of
// it is in the pipe), at most 64 KiB.
std::string read_crash_report(int fd);

// The crash context for child_crashed's message: `stack` gets the symbolized stack (empty when
// there is none); the return value is the sentence to append after the exit status ("its stack
// ... :\n 0# ..." or "no stack: ..."), empty when the child exited normally without a report.
// `pid` is the child's, `signal` the one that killed it (0 if it exited).
std::string describe_crash(const std::string& report, int pid, int signal, std::string& stack);

// " while C::m was in flight" / " with 3 calls in flight (oldest first): C::m, C::n (x2)" /
// " while no call was in flight".
std::string describe_calls_in_flight(const std::vector<std::string>& names);

// One level of a symbolized address (src/backtrace.cpp): the innermost function first, then the
// functions it was inlined into. Empty strings where nothing is known.
struct symbol_info {
  std::string function;  // demangled
  std::string file;
  int line = 0;
};
// Symbolizes an address of this process with the symbolizer of exception backtraces. Empty when
// nothing is known. Thread-safe; the first call in a process loads the debug information.
std::vector<symbol_info> symbolize_address(std::uintptr_t pc);

}  // namespace procxy::detail
