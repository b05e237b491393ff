// Crash context (src/crash.hpp; docs/design.md "Crash reports").
//
// The child's half is a signal handler, so it may use only async-signal-safe functions: no
// malloc, no stdio, no locks. Everything it needs is static; it formats numbers itself and
// writes with write(2) to a non-blocking pipe, so it can neither allocate nor hang on the parent.
// The parent's half runs on the I/O thread after the child was reaped (the failure policy).
#include "crash.hpp"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <unwind.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "process.hpp"

extern char** environ;

namespace procxy::detail {

namespace {

// ---- the child: the handler --------------------------------------------------------------------

constexpr int crash_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
constexpr std::size_t signal_count = sizeof crash_signals / sizeof crash_signals[0];
constexpr std::size_t max_frames = 64;
// Frames above the one that crashed (this handler, the unwinder, the kernel's signal trampoline)
// that the unwinder reports first and the report skips.
constexpr std::size_t handler_frames = 16;

int g_fd = -1;
pid_t g_pid = 0;  // the process that installed it: a process the object forks inherits the handler
struct sigaction g_previous[signal_count];
// 0: no report yet; 1: a thread is writing one; 2: written. A lock-free atomic int is
// async-signal-safe.
std::atomic<int> g_reporting{0};
// Replies handed to the I/O thread and not yet written (crash_handler_waits_for).
std::atomic<const std::atomic<bool>*> g_unwritten{nullptr};

struct raw_frame {
  std::uintptr_t addr;  // the instruction: the faulting one, or a return address minus one
  bool exact;           // the interrupted instruction itself (the frame the signal hit)
};
raw_frame g_frames[max_frames + handler_frames];
std::size_t g_frame_count = 0;
bool g_frame_mapped[max_frames];

// The report is built here and written in pieces; nothing lives on the (alternate) stack.
char g_out[8192];
std::size_t g_out_len = 0;
// /proc/self/maps is read through this, a line at a time (a line is at most a path longer).
char g_maps[16384];

void flush_out() noexcept {
  std::size_t off = 0;
  while (off < g_out_len) {
    ssize_t n = ::write(g_fd, g_out + off, g_out_len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // full or gone: the pipe is non-blocking, never wait
    off += static_cast<std::size_t>(n);
  }
  g_out_len = 0;
}
void put(const char* s, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    if (g_out_len == sizeof g_out) flush_out();
    g_out[g_out_len++] = s[i];
  }
}
void put(const char* s) noexcept {
  std::size_t n = 0;
  while (s[n] != '\0') ++n;
  put(s, n);
}
void put_hex(std::uintptr_t v) noexcept {
  char buf[2 + 2 * sizeof v];
  std::size_t i = sizeof buf;
  do {
    buf[--i] = "0123456789abcdef"[v & 0xf];
    v >>= 4;
  } while (v != 0);
  buf[--i] = 'x';
  buf[--i] = '0';
  put(buf + i, sizeof buf - i);
}
void put_dec(long v) noexcept {
  char buf[24];
  std::size_t i = sizeof buf;
  const bool neg = v < 0;
  unsigned long u = neg ? 0UL - static_cast<unsigned long>(v) : static_cast<unsigned long>(v);
  do {
    buf[--i] = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u != 0);
  if (neg) buf[--i] = '-';
  put(buf + i, sizeof buf - i);
}

struct unwind_state {
  std::size_t n = 0;
};
_Unwind_Reason_Code collect_frame(_Unwind_Context* ctx, void* arg) {
  auto& u = *static_cast<unwind_state*>(arg);
  if (u.n == sizeof g_frames / sizeof g_frames[0]) return _URC_END_OF_STACK;
  int before = 0;
  const std::uintptr_t ip = _Unwind_GetIPInfo(ctx, &before);
  if (ip == 0) return _URC_END_OF_STACK;
  // A return address points after the call: the call itself is one byte earlier (symbolizing
  // the return address can name the next line, or the next function after a noreturn call).
  g_frames[u.n++] = {before ? ip : ip - 1, before != 0};
  return _URC_NO_REASON;
}
_Unwind_Reason_Code stop_at_once(_Unwind_Context*, void*) { return _URC_NORMAL_STOP; }

// Parses a hex number at s[i...], advancing i.
std::uintptr_t parse_hex(const char* s, std::size_t n, std::size_t& i) noexcept {
  std::uintptr_t v = 0;
  for (; i < n; ++i) {
    const char c = s[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) break;
    v = v << 4 | static_cast<std::uintptr_t>(d);
  }
  return v;
}
void skip_field(const char* s, std::size_t n, std::size_t& i) noexcept {
  while (i < n && s[i] != ' ') ++i;
  while (i < n && s[i] == ' ') ++i;
}

// One line of /proc/self/maps: "start-end perms offset dev inode   path". Writes a frame line
// for every frame inside this mapping: "frame <i> <addr> <exact> <file offset> <dev> <inode>
// <path>".
void match_mapping(const char* line, std::size_t n) noexcept {
  std::size_t i = 0;
  const std::uintptr_t start = parse_hex(line, n, i);
  if (i >= n || line[i] != '-') return;
  ++i;
  const std::uintptr_t end = parse_hex(line, n, i);
  skip_field(line, n, i);  // the end's rest, then perms
  skip_field(line, n, i);
  const std::uintptr_t offset = parse_hex(line, n, i);
  while (i < n && line[i] == ' ') ++i;
  const std::size_t dev_at = i;
  skip_field(line, n, i);  // dev
  const std::size_t inode_at = i;
  skip_field(line, n, i);  // inode, then the padding before the path
  const std::size_t path_at = i;
  std::size_t dev_len = dev_at;
  while (dev_len < n && line[dev_len] != ' ') ++dev_len;
  std::size_t inode_len = inode_at;
  while (inode_len < n && line[inode_len] != ' ') ++inode_len;
  for (std::size_t f = 0; f < g_frame_count; ++f) {
    const std::uintptr_t a = g_frames[f].addr;
    if (g_frame_mapped[f] || a < start || a >= end) continue;
    g_frame_mapped[f] = true;
    put("frame ");
    put_dec(static_cast<long>(f));
    put(" ");
    put_hex(a);
    put(g_frames[f].exact ? " 1 " : " 0 ");
    put_hex(a - start + offset);
    put(" ");
    put(line + dev_at, dev_len - dev_at);
    put(" ");
    put(line + inode_at, inode_len - inode_at);
    put(" ");
    put(line + path_at, n - path_at);
    put("\n");
  }
}

// The executable file mappings, read before a sandbox that may forbid opening /proc/self/maps
// (seccomp's strict profile, Landlock): one line each, as /proc/self/maps has them. Under the
// strict profile no file can be mapped afterwards (nothing can be opened), so the copy stays
// true; under read_files a library loaded after the sandbox is missing from it (its frames
// print as addresses).
char* g_snapshot = nullptr;
std::size_t g_snapshot_len = 0;

// Matches each complete line of text[0, n) against the frames; returns the bytes consumed (up to
// the last newline).
std::size_t match_lines(const char* text, std::size_t n) noexcept {
  std::size_t begin = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (text[i] != '\n') continue;
    match_mapping(text + begin, i - begin);
    begin = i + 1;
  }
  return begin;
}

void report_modules() noexcept {
  // Under a sandbox, the copy, without trying to open: a blocked open inside this handler is
  // answered with EPERM only while SIGSYS is deliverable, and some runtimes (TSan) run handlers
  // with every signal blocked, so the kernel would end the child by SIGSYS instead.
  if (g_snapshot != nullptr) {
    match_lines(g_snapshot, g_snapshot_len);
    return;
  }
  int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  std::size_t have = 0;
  for (;;) {
    ssize_t r = ::read(fd, g_maps + have, sizeof g_maps - have);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    have += static_cast<std::size_t>(r);
    const std::size_t begin = match_lines(g_maps, have);
    if (begin == 0 && have == sizeof g_maps) {  // a line longer than the buffer: drop it
      have = 0;
      continue;
    }
    for (std::size_t i = begin; i < have; ++i) g_maps[i - begin] = g_maps[i];
    have -= begin;
  }
  ::close(fd);
}

void write_report(int sig, siginfo_t* info, void* ucontext) noexcept {
  // First what happened, written at once: if walking a broken stack faults again, the parent
  // still learns that the handler ran and why.
  put("procxy-crash 1\nsignal ");
  put_dec(sig);
  put(" code ");
  put_dec(info->si_code);
  put(" sender ");
  put_dec(info->si_code <= 0 ? static_cast<long>(info->si_pid) : 0L);
  put(" addr ");
  put_hex(reinterpret_cast<std::uintptr_t>(info->si_addr));
  put(" tid ");
  put_dec(::syscall(SYS_gettid));
  put(" self ");  // its pid as it sees it (in a PID namespace, not the one the parent knows)
  put_dec(static_cast<long>(::getpid()));
  put("\n");
  flush_out();

  unwind_state u;
  _Unwind_Backtrace(&collect_frame, &u);
  // Skip this handler's own frames: the first exact frame is the one the signal interrupted.
  std::size_t first = 0;
  while (first < u.n && !g_frames[first].exact) ++first;
  if (first == u.n) {
    // The unwinder did not cross the signal frame: start from the interrupted instruction.
    first = 0;
    std::uintptr_t pc = 0;
#if defined(__x86_64__)
    pc =
        static_cast<std::uintptr_t>(static_cast<ucontext_t*>(ucontext)->uc_mcontext.gregs[REG_RIP]);
#elif defined(__aarch64__)
    pc = static_cast<std::uintptr_t>(static_cast<ucontext_t*>(ucontext)->uc_mcontext.pc);
#else
    (void)ucontext;
#endif
    u.n = pc != 0 ? 1 : 0;
    g_frames[0] = {pc, true};
  }
  g_frame_count = std::min(u.n - first, max_frames);
  for (std::size_t i = 0; i < g_frame_count; ++i) {
    g_frames[i] = g_frames[first + i];
    g_frame_mapped[i] = false;
  }
  put("frames ");
  put_dec(static_cast<long>(g_frame_count));
  put("\n");
  report_modules();
  for (std::size_t f = 0; f < g_frame_count; ++f) {
    if (g_frame_mapped[f]) continue;
    put("frame ");
    put_dec(static_cast<long>(f));
    put(" ");
    put_hex(g_frames[f].addr);
    put(g_frames[f].exact ? " 1\n" : " 0\n");
  }
  put("end\n");
  flush_out();
}

void on_crash_signal(int sig, siginfo_t* info, void* ucontext) {
  const int saved_errno = errno;
  std::size_t which = 0;
  while (which < signal_count && crash_signals[which] != sig) ++which;
  int idle = 0;
  if (::getpid() != g_pid) {
    // A process the object forked (without exec) inherited this handler and the pipe: its
    // crash is not the child's, and must not be reported as the child's.
  } else if (g_reporting.compare_exchange_strong(idle, 1)) {
    write_report(sig, info, ucontext);
    // The I/O thread runs on while this one is here: let it write the replies of the calls
    // that completed before this one crashed (a bounded wait: the I/O thread may be the one
    // that crashed, or be stuck behind a lock the crashed code holds).
    if (const std::atomic<bool>* unwritten = g_unwritten.load()) {
      timespec step{0, 100'000};
      for (int i = 0; i < 1000 && unwritten->load(); ++i) ::nanosleep(&step, nullptr);
    }
    g_reporting.store(2);
  } else if (idle == 1) {
    // Another thread crashed first and is reporting: let it finish (it ends the process), but
    // never wait for ever.
    timespec ms{0, 1'000'000};
    for (int i = 0; i < 2000 && g_reporting.load() == 1; ++i) ::nanosleep(&ms, nullptr);
  }
  // Hand the signal to what was there before (the default action: the process dies of it, and
  // its exit status says so). A fault with a handler of the program's own: return, and the
  // faulting instruction runs again and reaches that handler with the real siginfo. Anything
  // else (abort(), raise(), kill(2), or the default action): send it again; it is blocked here,
  // so it arrives as soon as this handler returns.
  const struct sigaction& prev = g_previous[which < signal_count ? which : 0];
  ::sigaction(sig, &prev, nullptr);
  const bool has_handler = (prev.sa_flags & SA_SIGINFO) != 0
                               ? prev.sa_sigaction != nullptr
                               : prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN;
  const bool fault = info->si_code > 0 && sig != SIGABRT;
  if (!(fault && has_handler)) ::syscall(SYS_tgkill, ::getpid(), ::syscall(SYS_gettid), sig);
  errno = saved_errno;
}

}  // namespace

void crash_handler_follows_fork() noexcept { g_pid = ::getpid(); }

void crash_handler_waits_for(const std::atomic<bool>* unwritten) noexcept {
  g_unwritten.store(unwritten);
}

void remember_mappings() {
  std::ifstream maps("/proc/self/maps");
  std::string line, kept;
  while (std::getline(maps, line)) {
    // "start-end perms offset dev inode   path": executable and backed by a file.
    const auto perms = line.find(' ');
    if (perms == std::string::npos || line.size() < perms + 4 || line[perms + 3] != 'x') continue;
    if (line.find(" /") == std::string::npos) continue;
    kept += line;
    kept += '\n';
  }
  if (kept.empty()) return;
  delete[] g_snapshot;  // never read concurrently: the sandbox is applied once, before serving
  g_snapshot = new char[kept.size()];
  std::memcpy(g_snapshot, kept.data(), kept.size());
  g_snapshot_len = kept.size();
}

void install_crash_handler(int fd) noexcept {
  if (fd < 0) return;
  // Once per process. In a child forked (fork mode) by a child that is itself served by procxy,
  // what is installed already is the outer child's: replaced, its chain kept (below).
  g_fd = fd;
  g_pid = ::getpid();
  g_reporting.store(0);
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);  // programs the child execs do not inherit it
  // The unwinder's first use initialises itself (a pthread_once, the binding of its symbols): do
  // that here, in a safe context, not in the handler. One frame is enough (a whole walk touched
  // the unwind tables of every module on the stack: ~80 KiB more resident per child).
  _Unwind_Backtrace(&stop_at_once, nullptr);
  // An alternate stack for this thread (the object thread), so that a stack overflow in a
  // method can still be reported. A thread that has one already (a sanitizer's) keeps it.
  stack_t current{};
  if (::sigaltstack(nullptr, &current) == 0 && (current.ss_flags & SS_DISABLE) != 0) {
    const long page = ::sysconf(_SC_PAGESIZE);
    const long min = ::sysconf(_SC_MINSIGSTKSZ);
    std::size_t size = std::size_t{64} << 10;
    if (min > 0) size = std::max(size, static_cast<std::size_t>(min) + (std::size_t{32} << 10));
    size = (size + static_cast<std::size_t>(page) - 1) & ~(static_cast<std::size_t>(page) - 1);
    // One guard page below it: overflowing the alternate stack faults instead of writing over
    // whatever lies below.
    void* p = ::mmap(nullptr, size + static_cast<std::size_t>(page), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (p != MAP_FAILED) {
      ::mprotect(p, static_cast<std::size_t>(page), PROT_NONE);
      stack_t ss{};
      ss.ss_sp = static_cast<char*>(p) + page;
      ss.ss_size = size;
      ::sigaltstack(&ss, nullptr);
    }
  }
  struct sigaction sa {};
  sa.sa_sigaction = &on_crash_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  for (int s : crash_signals) sigaddset(&sa.sa_mask, s);  // a crash inside the handler kills
  for (std::size_t i = 0; i < signal_count; ++i) {
    struct sigaction old {};
    ::sigaction(crash_signals[i], &sa, &old);
    // Our own handler (inherited through fork) is not something to hand the signal on to: that
    // would raise it again for ever. What it handed on to stays in g_previous.
    if ((old.sa_flags & SA_SIGINFO) == 0 || old.sa_sigaction != &on_crash_signal)
      g_previous[i] = old;
  }
}

// ---- the parent: reading and symbolizing ----------------------------------------------------

namespace {

struct report_frame {
  bool seen = false;  // a line of the report described it (a cut report has holes)
  std::uintptr_t addr = 0;
  bool exact = false;
  bool mapped = false;
  std::uintptr_t offset = 0;  // in the module's file
  std::string dev;            // "fd:01"
  std::uint64_t inode = 0;
  std::string path;
};

struct parsed_report {
  bool valid = false;  // the handler ran
  bool complete = false;
  int signal = 0;
  long code = 0;
  long sender = 0;
  std::uintptr_t addr = 0;
  long tid = 0;
  long self = 0;  // the child's own view of its pid (0: not reported)
  std::vector<report_frame> frames;
};

// The child is not trusted: anything malformed ends the parse, and what was read stands.
parsed_report parse(const std::string& text) {
  parsed_report r;
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != "procxy-crash 1") return r;
  if (!std::getline(in, line)) return r;
  {
    std::istringstream l(line);
    std::string k1, k2, k3, k4, k5;
    l >> k1 >> r.signal >> k2 >> r.code >> k3 >> r.sender >> k4 >> std::hex >> r.addr >> std::dec >>
        k5 >> r.tid;
    if (!l || k1 != "signal" || k2 != "code" || k3 != "sender" || k4 != "addr" || k5 != "tid")
      return r;
    r.valid = true;
    std::string k6;  // "self <pid>": absent from older reports
    long self = 0;
    if (l >> k6 >> self && k6 == "self") r.self = self;
  }
  while (std::getline(in, line)) {
    std::istringstream l(line);
    std::string kind;
    l >> kind;
    if (kind == "end") {
      r.complete = true;
      break;
    }
    if (kind == "frames") {
      std::size_t n = 0;
      l >> n;
      if (!l || n > max_frames) break;
      r.frames.resize(n);
      continue;
    }
    if (kind != "frame") break;
    std::size_t i = 0;
    int exact = 0;
    report_frame f;
    l >> i >> std::hex >> f.addr >> std::dec >> exact;
    if (!l || i >= r.frames.size()) break;
    f.exact = exact != 0;
    f.seen = true;
    if (l >> std::hex >> f.offset >> std::dec >> f.dev >> f.inode) {
      l >> std::ws;
      std::getline(l, f.path);
      f.mapped = true;
    }
    r.frames[i] = std::move(f);
  }
  return r;
}

// A mapping of this (the parent) process.
struct own_mapping {
  std::uintptr_t start = 0, end = 0, offset = 0;
  std::string dev;
  std::uint64_t inode = 0;
};
std::vector<own_mapping> own_mappings() {
  std::vector<own_mapping> out;
  int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  std::string text;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream l(line);
    own_mapping m;
    char dash = 0;
    std::string perms;
    l >> std::hex >> m.start >> dash >> m.end >> perms >> m.offset >> std::dec >> m.dev >> m.inode;
    if (l && m.inode != 0) out.push_back(std::move(m));
  }
  return out;
}

// The address in this process of byte `offset` of the file (dev, inode), if this process maps
// that part of it.
bool own_address(const std::vector<own_mapping>& maps, const report_frame& f,
                 std::uintptr_t& addr) {
  for (const auto& m : maps) {
    if (m.inode != f.inode || m.dev != f.dev) continue;
    if (f.offset < m.offset || f.offset - m.offset >= m.end - m.start) continue;
    addr = m.start + (f.offset - m.offset);
    return true;
  }
  return false;
}

// The file `path` is still the one the child had mapped (same device and inode).
bool same_file(const report_frame& f) {
  struct stat st {};
  if (f.path.empty() || f.path.front() != '/' || ::stat(f.path.c_str(), &st) != 0 ||
      !S_ISREG(st.st_mode))
    return false;
  unsigned maj = 0, min = 0;
  if (std::sscanf(f.dev.c_str(), "%x:%x", &maj, &min) != 2) return false;
  return st.st_ino == f.inode && ::major(st.st_dev) == maj && ::minor(st.st_dev) == min;
}

// The ELF virtual address of a file offset (what addr2line and objdump take), from the file's
// program headers; false when the file is not an ELF object of this machine's class.
bool file_offset_to_vaddr(const std::string& path, std::uintptr_t offset, std::uintptr_t& vaddr) {
  // The path comes from the child: never wait in open() (a FIFO put there after same_file()).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return false;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return false;
  }
  bool found = false;
  ElfW(Ehdr) eh{};
  if (::pread(fd, &eh, sizeof eh, 0) == static_cast<ssize_t>(sizeof eh) &&
      std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 && eh.e_phentsize == sizeof(ElfW(Phdr)) &&
      eh.e_phnum < 256) {
    for (unsigned i = 0; i < eh.e_phnum && !found; ++i) {
      ElfW(Phdr) ph{};
      if (::pread(fd, &ph, sizeof ph, static_cast<off_t>(eh.e_phoff + i * sizeof ph)) !=
          static_cast<ssize_t>(sizeof ph))
        break;
      if (ph.p_type != PT_LOAD || offset < ph.p_offset || offset - ph.p_offset >= ph.p_filesz)
        continue;
      vaddr = static_cast<std::uintptr_t>(offset - ph.p_offset + ph.p_vaddr);
      found = true;
    }
  }
  ::close(fd);
  return found;
}

std::string hex(std::uintptr_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(v));
  return buf;
}

// addr2line, if it is installed, for the addresses (ELF virtual addresses) of a module this
// process does not have. Bounded: killed at `deadline` (`late` is then set). One entry per
// address (empty: unknown).
std::vector<std::vector<symbol_info>> run_addr2line(const std::string& path,
                                                    const std::vector<std::uintptr_t>& vaddrs,
                                                    std::chrono::steady_clock::time_point deadline,
                                                    bool& late) {
  std::vector<std::vector<symbol_info>> out(vaddrs.size());
  late = false;
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return out;
  std::vector<std::string> args{"addr2line", "-a", "-f", "-C", "-i", "-e", path};
  for (auto v : vaddrs) args.push_back(hex(v));
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  posix_spawnattr_t at;
  posix_spawnattr_init(&at);
  reset_signals(at);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, "addr2line", &fa, &at, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  ::close(p[1]);
  if (rc != 0) {
    ::close(p[0]);
    return out;
  }
  std::string text;
  bool finished = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd pf{p[0], POLLIN, 0};
    int r = ::poll(&pf, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    char buf[4096];
    ssize_t n = ::read(p[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      finished = n == 0;
      break;
    }
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > (std::size_t{1} << 20)) break;
  }
  ::close(p[0]);
  if (!finished) {
    ::kill(pid, SIGKILL);
    late = std::chrono::steady_clock::now() >= deadline;
  }
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  if (!finished) return out;
  // "-a -f -i": per address, its line "0x...", then function and file:line per inlining level.
  std::istringstream in(text);
  std::string line;
  std::size_t i = 0;
  bool started = false;
  while (std::getline(in, line)) {
    if (line.rfind("0x", 0) == 0) {
      if (started) ++i;
      started = true;
      if (i >= out.size()) break;
      continue;
    }
    if (!started) continue;
    std::string where;
    if (!std::getline(in, where)) break;
    symbol_info s;
    if (line != "??") s.function = line;
    auto colon = where.rfind(':');
    if (colon != std::string::npos && where.compare(0, 2, "??") != 0) {
      s.file = where.substr(0, colon);
      s.line = std::atoi(where.c_str() + colon + 1);
    }
    if (!s.function.empty() || !s.file.empty()) out[i].push_back(std::move(s));
  }
  return out;
}

const char* signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev ? abbrev : "?";
}

bool is_crash_signal(int sig) {
  return std::find(std::begin(crash_signals), std::end(crash_signals), sig) !=
         std::end(crash_signals);
}

std::string symbolize_stack(const parsed_report& r) {
  const auto maps = own_mappings();
  // addr2line reads the module's whole DWARF: ~0.1 s for the test worker on an idle machine,
  // over 2 s on a loaded one. The pending calls fail only after this, so it is bounded.
  constexpr auto addr2line_budget = std::chrono::seconds(5);
  const auto deadline = std::chrono::steady_clock::now() + addr2line_budget;
  std::string notes;
  std::vector<std::vector<symbol_info>> syms(r.frames.size());
  std::vector<std::string> where(r.frames.size());  // module+0xvaddr, for frames not resolved
  // Modules this process does not map, by path: (frame index, ELF address) for addr2line.
  std::map<std::string, std::vector<std::pair<std::size_t, std::uintptr_t>>> foreign;
  for (std::size_t i = 0; i < r.frames.size(); ++i) {
    const auto& f = r.frames[i];
    if (!f.seen) continue;
    if (!f.mapped || f.path.empty()) {
      where[i] = hex(f.addr) + " (not in a mapped file)";
      continue;
    }
    std::uintptr_t own = 0;
    const bool mapped_here = own_address(maps, f, own);
    if (mapped_here) syms[i] = symbolize_address(own);
    std::uintptr_t vaddr = f.offset;
    const bool elf = same_file(f) && file_offset_to_vaddr(f.path, f.offset, vaddr);
    where[i] = f.path + "+" + hex(vaddr) + (elf ? "" : " (file offset)");
    // addr2line only for modules this process does not have: for one it has, it would know
    // no more than libbacktrace, and where there is no symbol it names the nearest one before.
    if (!mapped_here && elf) foreign[f.path].push_back({i, vaddr});
  }
  for (const auto& [path, frames] : foreign) {
    std::vector<std::uintptr_t> vaddrs;
    for (const auto& fr : frames) vaddrs.push_back(fr.second);
    bool late = false;
    auto found = run_addr2line(path, vaddrs, deadline, late);
    if (late)
      notes += "    (addr2line did not finish within " + std::to_string(addr2line_budget.count()) +
               " s for " + path + ": its frames are shown as module+address)\n";
    for (std::size_t k = 0; k < frames.size(); ++k) syms[frames[k].first] = std::move(found[k]);
  }
  std::ostringstream out;
  for (std::size_t i = 0; i < r.frames.size(); ++i) {
    if (!r.frames[i].seen) continue;
    out << (i < 10 ? " " : "") << i << "# ";
    bool invoker = false;
    if (syms[i].empty() || syms[i].front().function.empty()) {
      out << "?? in " << where[i] << '\n';
    }
    for (std::size_t level = 0; level < syms[i].size(); ++level) {
      const auto& s = syms[i][level];
      if (s.function.empty() && level == 0) continue;  // printed as ?? above
      if (level > 0) out << "    inlined into ";
      out << (s.function.empty() ? std::string("??") : s.function);
      if (!s.file.empty())
        out << " at " << s.file << ':' << s.line;
      else if (level == 0)
        out << " in " << where[i];
      out << '\n';
      if (s.function.find("procxy::detail::invoke") != std::string::npos ||
          s.function.find("procxy::detail::register_constructor") != std::string::npos)
        invoker = true;
    }
    // procxy's invoker names the method in its template arguments (the method itself is often
    // inlined into it), its constructor maker the class; what lies below is procxy's dispatch
    // loop, noise for the reader.
    if (invoker) break;
  }
  return out.str() + notes;
}

}  // namespace

std::string read_crash_report(int fd) {
  std::string out;
  if (fd < 0) return out;
  char buf[4096];
  while (out.size() < (std::size_t{64} << 10)) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF, or EAGAIN: a descendant holds the pipe, but the child wrote all
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

std::string describe_crash(const std::string& report, int pid, int signal, std::string& stack) {
  stack.clear();
  const parsed_report r = parse(report);
  const std::string caught = r.valid ? std::string("SIG") + signal_name(r.signal) : std::string();
  const std::string thread = "thread " + std::to_string(r.tid);
  // Who "itself" is: the pid it reported seeing (a PID namespace's server is not the pid the
  // parent knows), else the parent's.
  const long self = r.self > 0 ? r.self : pid;
  std::string what;
  if (r.valid) {
    if (r.code > 0)  // the kernel's: a fault of the instruction that ran
      what = "its stack at the fault (" + caught + " at address " + hex(r.addr) + ", " + thread +
             "):\n";
    else if (r.sender == self && r.signal == SIGABRT)
      what = "its stack when it aborted (" + thread + "):\n";
    else if (r.sender == self)
      what = "its stack where it raised " + caught + " (" + thread + "):\n";
    else
      what = caught + " was sent by process " + std::to_string(r.sender) +
             " (kill(2), not a fault); the stack of " + thread + " when it arrived:\n";
    stack = symbolize_stack(r);
    if (r.frames.empty() && r.complete) stack = "    (no frame could be read)\n";
    if (!r.complete)
      stack += "    (the report ends here: the handler failed while walking the stack)\n";
  }
  if (signal > 0) {
    const std::string name = std::string("SIG") + signal_name(signal);
    if (r.valid && r.signal == signal) return "; " + what + stack;
    if (signal == SIGKILL)
      return "; no stack is available: SIGKILL cannot be caught, so the child could not report "
             "one. It came from outside the child's code (kill(2), the OOM killer, a "
             "supervisor): this is expected, not a failure of procxy";
    if (!is_crash_signal(signal))
      return "; no stack is available: procxy's crash handler catches only SIGSEGV, SIGBUS, "
             "SIGFPE, SIGILL and SIGABRT, and " +
             name +
             " usually comes from outside the "
             "child's code (kill(2), a supervisor): this is expected, not a failure of procxy";
    return "; no stack is available: procxy's handler for " + name +
           " did not report (the "
           "object may have installed its own handler, or the thread that crashed had no stack "
           "left to run it on)";
  }
  if (r.valid)  // procxy's handler ran, then another handler ended the process with an exit code
    return "; procxy's crash handler had caught " + caught +
           " first, and another handler (a "
           "sanitizer's, the program's own) then ended the process; " +
           what + stack;
  return {};
}

std::string describe_calls_in_flight(const std::vector<std::string>& names) {
  if (names.empty()) return " while no call was in flight";
  if (names.size() == 1) return " while " + names.front() + " was in flight";
  // Distinct names in the order of their first call, each with its count.
  std::vector<std::pair<std::string, std::size_t>> distinct;
  for (const auto& n : names) {
    auto it =
        std::find_if(distinct.begin(), distinct.end(), [&](const auto& d) { return d.first == n; });
    if (it == distinct.end())
      distinct.emplace_back(n, 1);
    else
      ++it->second;
  }
  std::string s = " with " + std::to_string(names.size()) + " calls in flight (oldest first): ";
  constexpr std::size_t shown = 8;
  for (std::size_t i = 0; i < distinct.size() && i < shown; ++i) {
    if (i > 0) s += ", ";
    s += distinct[i].first;
    if (distinct[i].second > 1) s += " (x" + std::to_string(distinct[i].second) + ")";
  }
  if (distinct.size() > shown)
    s += " and " + std::to_string(distinct.size() - shown) + " more methods";
  return s;
}

}  // namespace procxy::detail
