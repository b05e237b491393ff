// Backtraces at the throw point, for exceptions that cross to the parent (PROCXY_BACKTRACE=1 or
// spawn_options::backtrace).
//
// The stack at the throw point is gone by the time a catch block runs, so it must be recorded
// when the exception is thrown. This file defines __cxa_throw, the C++ runtime's entry point for
// every `throw` (Itanium C++ ABI): the executable's definition interposes on libstdc++'s, records
// the raw return addresses (Boost.Stacktrace's safe_dump_to: no allocation) when backtraces are
// enabled, and forwards to the real one found with dlsym(RTLD_NEXT). When they are disabled the
// cost of a throw grows by one relaxed atomic load. The definition is weak, so a program that
// brings its own interposer, or links the C++ runtime statically, keeps that one (procxy's
// backtraces are then a note saying why; see the end of this file).
//
// Symbolization (function, file:line) happens only when the exception is reported, with Boost.
// Stacktrace's libbacktrace backend; libbacktrace ships with GCC (libgcc-12-dev). See
// docs/design.md "Backtraces" for the measured cost.
//
// PROCXY_WITH_LIBBACKTRACE=0 (CMake: PROCXY_BACKTRACE=OFF, or AUTO without libbacktrace): Boost.
// Stacktrace's no-op backend (every stack is empty), no __cxa_throw at all, and a requested
// backtrace is the note. docs/design.md "Packaging".
#if PROCXY_WITH_LIBBACKTRACE
#define BOOST_STACKTRACE_USE_BACKTRACE
#else
#define BOOST_STACKTRACE_USE_NOOP
#endif
#include <cxxabi.h>
#include <dlfcn.h>

#include <atomic>
#include <boost/stacktrace.hpp>
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

// Never inlined, so that the frames above the thrower are always this one and the hook: clang
// inlined it into the hook, and skipping 2 then dropped the throwing function itself.
[[gnu::noinline]] void record_throw(const std::type_info* type) noexcept {
  auto& r = t_last;
  r.type = type;
  // skip 2: this function's frame (safe_dump_to skips its own) and the __cxa_throw hook's
  r.frames = boost::stacktrace::safe_dump_to(2, r.addr, sizeof r.addr);
}

std::string take_throw_backtrace(const std::type_info* type) {
  if (const char* why = throw_backtrace_unavailable_reason(); *why != '\0')
    return std::string("(no backtrace: ") + why + ")\n";
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
    static void sym(void* data, std::uintptr_t pc, const char* name, std::uintptr_t value,
                    std::uintptr_t size) {
      // Only a symbol that contains the address: past its end lies a function without one (a
      // static function of a stripped library), which the nearest symbol would misname.
      if (name != nullptr && (size == 0 || pc - value < size))
        *static_cast<std::string*>(data) = demangle(name);
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

#if PROCXY_WITH_LIBBACKTRACE

// The hook, under its own (hidden) name so that throw_backtrace_unavailable_reason can tell
// whether the __cxa_throw in use is this one; __cxa_throw below is a weak alias of it.
extern "C" [[noreturn, gnu::visibility("hidden")]] void procxy_detail_cxa_throw(
    void* obj, std::type_info* type, void (*dest)(void*)) {
  using real_t = void (*)(void*, std::type_info*, void (*)(void*));
  static const real_t real = reinterpret_cast<real_t>(::dlsym(RTLD_NEXT, "__cxa_throw"));
  if (procxy::detail::g_enabled.load(std::memory_order_relaxed)) procxy::detail::record_throw(type);
  // Not reached with a null `real`: this definition is in use only when the runtime's is in a
  // shared object loaded after it (see g_pull_runtime_throw), which RTLD_NEXT finds.
  if (real == nullptr) std::terminate();
  real(obj, type, dest);
  __builtin_unreachable();
}

namespace __cxxabiv1 {
extern "C" void __cxa_throw(void* obj, std::type_info* type, void (*dest)(void*))
    __attribute__((weak, alias("procxy_detail_cxa_throw")));
}  // namespace __cxxabiv1

namespace {
// A statically linked C++ runtime (-static-libstdc++, -static) must replace the weak definition
// above rather than leave it with nothing to forward to. Its __cxa_throw sits in the archive
// member that also defines __cxa_rethrow (libstdc++'s eh_throw.o, libc++abi's cxa_exception.o),
// and the linker pulls a member only for a symbol still undefined, never to override a weak one.
// This reference makes every link that contains this file pull that member, whose strong
// __cxa_throw then wins: the hook is not used, throws behave as without procxy, and backtraces
// are unavailable (tests/static_runtime). With a shared runtime it binds there and changes nothing.
[[gnu::used]] void (*const g_pull_runtime_throw)() = &__cxxabiv1::__cxa_rethrow;
}  // namespace

const char* procxy::detail::throw_backtrace_unavailable_reason() noexcept {
  // The address of __cxa_throw is that of the definition the link or the dynamic loader chose.
  if (&__cxxabiv1::__cxa_throw == &procxy_detail_cxa_throw) return "";
  return "procxy's __cxa_throw hook is not the one in use: this program links the C++ runtime "
         "statically or brings its own __cxa_throw";
}

#else

const char* procxy::detail::throw_backtrace_unavailable_reason() noexcept {
  return "procxy was built without libbacktrace (CMake option PROCXY_BACKTRACE)";
}

#endif
