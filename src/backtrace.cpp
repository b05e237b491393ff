// Backtraces at the throw point, for exceptions that cross to the parent (PROCXY_BACKTRACE=1 or
// spawn_options::backtrace).
//
// The stack at the throw point is gone by the time a catch block runs, so it must be recorded
// when the exception is thrown. This file defines __cxa_throw, the C++ runtime's entry point for
// every `throw` (Itanium C++ ABI): the executable's definition interposes on libstdc++'s, records
// the raw return addresses (Boost.Stacktrace's safe_dump_to: no allocation) when backtraces are
// enabled, and forwards to the real one found with dlsym(RTLD_NEXT). When they are disabled the
// cost of a throw grows by one relaxed atomic load. The definition is weak, so a program that
// brings its own interposer keeps it (procxy's backtraces are then empty).
//
// Symbolization (function, file:line) happens only when the exception is reported, with Boost.
// Stacktrace's libbacktrace backend; libbacktrace ships with GCC (libgcc-12-dev). See
// docs/design.md "Backtraces" for the measured cost.
#define BOOST_STACKTRACE_USE_BACKTRACE
#include <cxxabi.h>
#include <dlfcn.h>

#include <atomic>
#include <boost/stacktrace.hpp>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <sstream>
#include <typeinfo>

#include "crash.hpp"
#include "procxy/detail/remote_error.hpp"

namespace procxy::detail {

namespace {

std::atomic<bool> g_enabled{false};

struct throw_record {
  const std::type_info* type = nullptr;
  std::size_t frames = 0;
  boost::stacktrace::frame::native_frame_ptr_t addr[64];
};
thread_local throw_record t_last;

}  // namespace

void enable_throw_backtraces(bool on) noexcept { g_enabled.store(on, std::memory_order_relaxed); }
bool throw_backtraces_enabled() noexcept { return g_enabled.load(std::memory_order_relaxed); }

void record_throw(const std::type_info* type) noexcept {
  auto& r = t_last;
  r.type = type;
  // skip 2: safe_dump_to's own frame and __cxa_throw
  r.frames = boost::stacktrace::safe_dump_to(2, r.addr, sizeof r.addr);
}

std::string take_throw_backtrace(const std::type_info* type) {
  auto& r = t_last;
  if (r.frames == 0 || type == nullptr || r.type == nullptr || *r.type != *type) return {};
  auto st = boost::stacktrace::stacktrace::from_dump(r.addr, r.frames * sizeof r.addr[0]);
  r.frames = 0;
  std::ostringstream out;
  std::size_t i = 0;
  for (const auto& f : st) {
    std::string name = f.name();
    out << (i < 10 ? " " : "") << i << "# " << (name.empty() ? "??" : name);
    auto file = f.source_file();
    if (!file.empty()) out << " at " << file << ':' << f.source_line();
    out << '\n';
    ++i;
    // procxy's invoker names the method in its template arguments (and the method itself may be
    // inlined into it); what lies below is procxy's dispatch loop, noise for the reader.
    if (name.find("procxy::detail::invoke") != std::string::npos) break;
  }
  return out.str();
}

// Crash reports (src/crash.cpp) symbolize in the parent, on whichever I/O thread saw the child
// die. Boost.Stacktrace keeps one libbacktrace state per thread, and a state is never freed: for
// a test binary with 5 MB of DWARF, each new thread took 120 ms and kept 23 MB. So this uses one
// process-wide libbacktrace state, made on first use, under a lock (crashes are rare).
std::vector<symbol_info> symbolize_address(std::uintptr_t pc) {
  std::vector<symbol_info> out;
#if defined(BOOST_STACKTRACE_USE_BACKTRACE)
  struct lib {
    static void ignore(void*, const char*, int) {}
    static std::string demangle(const char* name) {
      int status = 0;
      char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
      std::string s = status == 0 && d ? d : name;
      std::free(d);
      return s;
    }
    static int full(void* data, std::uintptr_t, const char* file, int line, const char* function) {
      if (function != nullptr || file != nullptr)
        static_cast<std::vector<symbol_info>*>(data)->push_back(
            {function ? demangle(function) : std::string(), file ? file : "", line});
      return 0;
    }
    static void sym(void* data, std::uintptr_t pc, const char* name, std::uintptr_t value, std::uintptr_t size) {
      // Only a symbol that contains the address: past its end lies a function without one (a
      // static function of a stripped library), which the nearest symbol would misname.
      if (name != nullptr && (size == 0 || pc - value < size)) *static_cast<std::string*>(data) = demangle(name);
    }
  };
  static std::mutex mu;
  std::lock_guard lk(mu);
  static ::backtrace_state* state = ::backtrace_create_state(nullptr, 1, &lib::ignore, nullptr);
  if (state == nullptr) return out;
  ::backtrace_pcinfo(state, pc, &lib::full, &lib::ignore, &out);
  // The function that contains the address (the last level; the others were inlined into it) by
  // its symbol, where there is one: DWARF often has only the short name ("segfault"), the symbol
  // the qualified one with its parameters. Without DWARF, the symbol is all there is.
  std::string name;
  ::backtrace_syminfo(state, pc, &lib::sym, &lib::ignore, &name);
  if (!name.empty()) {
    if (out.empty()) out.emplace_back();
    out.back().function = std::move(name);
  }
#else
  boost::stacktrace::frame f(reinterpret_cast<const void*>(pc));
  std::string name = f.name();
  if (!name.empty()) out.push_back({name, f.source_file(), static_cast<int>(f.source_line())});
#endif
  return out;
}

}  // namespace procxy::detail

namespace __cxxabiv1 {

extern "C" __attribute__((weak)) void __cxa_throw(void* obj, std::type_info* type, void (*dest)(void*)) {
  using real_t = void (*)(void*, std::type_info*, void (*)(void*));
  static const real_t real = reinterpret_cast<real_t>(::dlsym(RTLD_NEXT, "__cxa_throw"));
  if (procxy::detail::g_enabled.load(std::memory_order_relaxed)) procxy::detail::record_throw(type);
  if (real == nullptr) std::abort();  // statically linked C++ runtime: nothing to forward to
  real(obj, type, dest);
  __builtin_unreachable();
}

}  // namespace __cxxabiv1
