// Resource hygiene: thousands of children started, crashed and terminated leave the parent with
// exactly the descriptors, threads and child processes it had; and a child holds no descriptor of
// the parent's but stdio, its channel and its crash pipe, in every spawn mode.
//
// The cycle count comes from PROCXY_HYGIENE_CYCLES (default 1000; sanitizer runs use fewer). The
// time per cycle is printed for information only; nothing here asserts on speed.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "procxy/procxy.hpp"
#include "procxy/proxy.hpp"
#include "sanitizers.hpp"
#ifdef PROCXY_TEST_WORKER
#include "greeter.hpp"
#endif

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using clk = std::chrono::steady_clock;

namespace {

class Probe {
 public:
  int ping(int n) { return n; }
  void crash() {
    rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);  // a thousand aborts must not write core files
    std::abort();
  }
  int slow(int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
  }
  int child_pid() const { return static_cast<int>(::getpid()); }
  // fd number -> readlink target, as the child itself sees them (the listing's own directory
  // descriptor included: it is reported under "self_listing").
  std::map<int, std::string> open_fds() const {
    std::map<int, std::string> out;
    DIR* d = ::opendir("/proc/self/fd");
    if (d == nullptr) return out;
    const int own = ::dirfd(d);
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      int fd = std::atoi(e->d_name);
      std::error_code ec;
      out[fd] = fd == own ? std::string("self_listing")
                          : fs::read_symlink(fs::path("/proc/self/fd") / e->d_name, ec).string();
    }
    ::closedir(d);
    return out;
  }
};
PROCXY_CLASS(Probe, ping, crash, slow, child_pid, open_fds);

int cycles_from_env() {
  const char* v = std::getenv("PROCXY_HYGIENE_CYCLES");
  int n = v ? std::atoi(v) : 0;
  return n > 0 ? n : 1000;
}

// Entries of a /proc directory, not counting the descriptor used to read it when the directory is
// /proc/self/fd.
std::size_t count_entries(const char* path) {
  DIR* d = ::opendir(path);
  if (d == nullptr) return 0;
  const std::string own = std::to_string(::dirfd(d));
  const bool fd_dir = std::string(path) == "/proc/self/fd";
  std::size_t n = 0;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    if (fd_dir && own == e->d_name) continue;
    ++n;
  }
  ::closedir(d);
  return n;
}

// Our child processes, zombies included. /proc/<pid>/task/<tid>/children is not available on
// every kernel (CONFIG_PROC_CHILDREN; it is missing on the CI VM), and waitid(P_ALL, WNOHANG |
// WNOWAIT) only says whether some child exists or has exited, not how many. So: every process
// whose parent (field 4 of /proc/<pid>/stat, the thread-group id of the parent) is us. A zombie
// keeps its /proc entry and its parent until it is reaped, so an unreaped child is counted too.
std::size_t count_children() {
  const std::string self = std::to_string(::getpid());
  std::size_t n = 0;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return 0;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream in(std::string("/proc/") + e->d_name + "/stat");
    std::string stat;
    if (!std::getline(in, stat)) continue;  // exited meanwhile
    auto paren = stat.rfind(')');           // the command name may contain spaces and ')'
    if (paren == std::string::npos) continue;
    std::istringstream rest(stat.substr(paren + 1));
    std::string state, ppid;
    rest >> state >> ppid;
    if (ppid == self) ++n;
  }
  ::closedir(d);
  return n;
}

struct resources {
  std::size_t fds = 0, threads = 0, children = 0;
  bool operator==(const resources&) const = default;
};
std::ostream& operator<<(std::ostream& os, const resources& r) {
  return os << "{fds " << r.fds << ", threads " << r.threads << ", children " << r.children << "}";
}
resources measure() {
  return {count_entries("/proc/self/fd"), count_entries("/proc/self/task"), count_children()};
}

// The starting point of a batch. A thread is created and joined first, because some runtimes
// start a helper thread of their own on the first pthread_create (ThreadSanitizer's background
// thread); procxy is not involved in it.
resources baseline() {
  std::thread([] {}).join();
  return measure();
}

// Descriptors and children must be back exactly and at once: terminate() reaps the child and
// joins the dispatch thread before it returns. Threads get a bounded moment, for a kernel reason
// only: pthread_join returns when the exiting thread clears its tid (in mm_release), slightly
// before the kernel removes it from /proc/self/task (release_task). A thread that is really
// leaked stays, and fails the check.
void expect_back_to(const resources& start, const char* batch) {
  resources now = measure();
  auto until = clk::now() + 2s;
  while (now.threads != start.threads && clk::now() < until) {
    std::this_thread::sleep_for(1ms);
    now.threads = count_entries("/proc/self/task");
  }
  EXPECT_EQ(now.fds, start.fds) << batch << ": descriptors leaked; start " << start << ", now "
                                << now;
  EXPECT_EQ(now.children, start.children)
      << batch << ": child processes left unreaped; start " << start << ", now " << now;
  EXPECT_EQ(now.threads, start.threads)
      << batch << ": threads leaked; start " << start << ", now " << now;
}

void report_time(const char* what, int n, clk::duration took) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(took).count();
  std::cout << "[ hygiene  ] " << what << ": " << n << " cycles in " << us / 1000 << " ms, "
            << (n > 0 ? us / n : 0) << " us per cycle\n";
}

TEST(Hygiene, SpawnCallTerminateCyclesLeaveNoDescriptorThreadOrChild) {
  const int n = cycles_from_env();
  const resources start = baseline();
  auto t0 = clk::now();
  for (int i = 0; i < n; ++i) {
    auto p = procxy::spawn<Probe>();
    ASSERT_EQ(p.ping(i).get(), i) << "cycle " << i;
  }  // ~proxy: terminate, reap, join
  report_time("spawn, call, terminate", n, clk::now() - t0);
  expect_back_to(start, "spawn/terminate cycles");
}

TEST(Hygiene, CrashCyclesLeaveNoDescriptorThreadOrChild) {
  const int n = cycles_from_env();
  const resources start = baseline();
  auto t0 = clk::now();
  for (int i = 0; i < n; ++i) {
    auto p = procxy::spawn<Probe>();
    auto f = p.crash();
    ASSERT_EQ(f.wait_for(10s), std::future_status::ready) << "cycle " << i;
    try {
      f.get();
      FAIL() << "cycle " << i << ": crash() returned";
    } catch (const procxy::child_crashed& e) {
      ASSERT_EQ(e.signal(), SIGABRT) << "cycle " << i << ": " << e.what();
    }
  }
  report_time("spawn, abort in a call, destroy", n, clk::now() - t0);
  expect_back_to(start, "crash cycles");
}

// terminate() while calls are pending, in three variants (by cycle number):
//   0: the child is done with the pending calls quickly; they may complete or fail with
//      terminated, and the child then exits by itself on the shutdown frame.
//   1: another thread is blocked in get() on a slow call (it may hold the reading role).
//   2: the child is stuck in a long call: the destructor cannot run, so terminate escalates to
//      SIGTERM after terminate_grace (short here).
TEST(Hygiene, TerminateWithPendingCallsCyclesLeaveNoDescriptorThreadOrChild) {
  const int n = std::max(1, cycles_from_env() / 5);
  const resources start = baseline();
  auto t0 = clk::now();
  for (int i = 0; i < n; ++i) {
    const int variant = i % 3;
    auto p = procxy::spawn<Probe>({.terminate_grace = 20ms});
    ASSERT_EQ(p.ping(0).get(), 0);
    std::vector<procxy::future<int>> pending;
    std::thread waiter;
    std::exception_ptr waited;
    if (variant == 2) pending.push_back(p.slow(60'000));
    if (variant == 1) {
      auto slow = p.slow(60'000);
      waiter = std::thread([&waited, f = std::move(slow)]() mutable {
        if (f.wait_for(10s) == std::future_status::ready) waited = f.try_get().error();
      });
    }
    for (int k = 0; k < 4; ++k) pending.push_back(p.ping(k));
    p.terminate();
    for (auto& f : pending) {
      ASSERT_TRUE(f.ready()) << "cycle " << i
                             << ": a pending call was still pending after terminate()";
      auto r = f.try_get();
      if (r.has_value()) continue;  // completed before terminate(): fine
      try {
        std::rethrow_exception(r.error());
      } catch (const procxy::terminated&) {
      } catch (const std::exception& e) {
        FAIL() << "cycle " << i << ": expected terminated, got " << e.what();
      }
    }
    if (waiter.joinable()) {
      waiter.join();
      ASSERT_TRUE(waited) << "cycle " << i << ": the slow call did not fail";
      EXPECT_THROW(std::rethrow_exception(waited), procxy::terminated) << "cycle " << i;
    }
    EXPECT_FALSE(p.running());
  }
  report_time("spawn, pending calls, terminate", n, clk::now() - t0);
  expect_back_to(start, "terminate-with-pending cycles");
}

// ---- descriptors the child inherits
// ---------------------------------------------------------------

// Descriptors the parent opens without O_CLOEXEC (the mistake closefrom in the child is there
// for), kept open for the test's duration.
struct leaky_descriptors {
  std::vector<int> fds;
  std::set<std::string> targets;  // their readlink targets: what must not show up in the child
  fs::path file;
  leaky_descriptors() {
    file = fs::temp_directory_path() / ("procxy-hygiene-" + std::to_string(::getpid()));
    { std::ofstream(file) << "x"; }
    add(::open(file.c_str(), O_RDONLY));
    add(::open("/dev/null", O_WRONLY));
    int p[2];
    if (::pipe(p) == 0) {
      add(p[0]);
      add(p[1]);
    }
    add(::socket(AF_INET, SOCK_DGRAM, 0));
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0) {
      add(sv[0]);
      add(sv[1]);
    }
    add(::dup2(fds.front(), 200));  // a high number too
  }
  ~leaky_descriptors() {
    for (int fd : fds) ::close(fd);
    fs::remove(file);
  }
  void add(int fd) {
    if (fd < 0) return;
    fds.push_back(fd);
    std::error_code ec;
    targets.insert(fs::read_symlink("/proc/self/fd/" + std::to_string(fd), ec).string());
  }
};

// Lists another process's descriptors from the outside (we are its parent and its owner).
std::map<int, std::string> fds_of(int pid) {
  std::map<int, std::string> out;
  const fs::path dir = "/proc/" + std::to_string(pid) + "/fd";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::error_code ec2;
    out[std::atoi(e.path().filename().c_str())] = fs::read_symlink(e.path(), ec2).string();
  }
  return out;
}

std::string show(const std::map<int, std::string>& fds) {
  std::string s;
  for (const auto& [fd, target] : fds) s += "  " + std::to_string(fd) + " -> " + target + "\n";
  return s;
}

// What a child may hold: stdio (whatever it is: the test runner's pipes, a terminal), its channel
// (a socket; fd 3 when exec'd), the write end of its crash pipe (where its crash handler reports:
// fd 4, or 5 over shared memory, when exec'd), and its own descriptors, which are all anonymous
// inodes (its connection's wake-up eventfd, its parent's pidfd) or the directory it lists.
// Nothing else, and none of the parent's deliberately leaked descriptors.
void expect_only_stdio_and_channel(const std::map<int, std::string>& fds,
                                   const leaky_descriptors& leaked, bool channel_is_fd_3,
                                   const char* how) {
  SCOPED_TRACE(how);
  for (int std_fd : {0, 1, 2})
    EXPECT_TRUE(fds.count(std_fd)) << "stdio fd " << std_fd << " missing\n" << show(fds);
  int sockets = 0, pipes = 0;
  for (const auto& [fd, target] : fds) {
    if (fd <= 2) continue;
    EXPECT_FALSE(leaked.targets.count(target))
        << "the child holds the parent's fd " << fd << " -> " << target << "\n"
        << show(fds);
    if (target.rfind("socket:", 0) == 0) {
      ++sockets;
      if (channel_is_fd_3) {
        EXPECT_EQ(fd, 3) << "a socket other than the channel\n" << show(fds);
      }
      continue;
    }
    if (target.rfind("pipe:", 0) == 0) {
      ++pipes;
      if (channel_is_fd_3) {
        EXPECT_TRUE(fd == 4 || fd == 5) << "a pipe other than the crash pipe\n" << show(fds);
      }
      continue;
    }
    EXPECT_TRUE(target.rfind("anon_inode:", 0) == 0 || target == "self_listing")
        << "unexpected fd " << fd << " -> " << target << "\n"
        << show(fds);
  }
  EXPECT_EQ(sockets, 1) << "the channel, and no other socket\n" << show(fds);
  EXPECT_EQ(pipes, 1) << "the crash pipe, and no other pipe\n" << show(fds);
}

// Each test also has a sibling proxy running: its end of its channel (opened CLOEXEC by procxy)
// must not reach the new child either.
TEST(Hygiene, ReexecChildHoldsOnlyStdioAndItsChannel) {
  leaky_descriptors leaked;
  auto sibling = procxy::spawn<Probe>();
  ASSERT_EQ(sibling.ping(1).get(), 1);
  auto p = procxy::spawn<Probe>();
  auto own = p.open_fds().get();
  expect_only_stdio_and_channel(own, leaked, true, "as the child lists itself");
  expect_only_stdio_and_channel(fds_of(p.pid()), leaked, true, "as the parent sees it");
  EXPECT_EQ(own.at(3).rfind("socket:", 0), 0u) << show(own);
}

TEST(Hygiene, ForkChildHoldsOnlyStdioAndItsChannel) {
  // The sibling proxy makes this parent multi-threaded, and a TSan runtime refuses to start
  // threads in a child forked from a multi-threaded process (die_after_fork). The normal and
  // ASan builds run this test.
  if (under_tsan)
    GTEST_SKIP() << "ThreadSanitizer cannot run a fork child of a multi-threaded parent";
  leaky_descriptors leaked;
  auto sibling = procxy::spawn<Probe>();
  ASSERT_EQ(sibling.ping(1).get(), 1);
  auto p = procxy::spawn<Probe>({.mode = procxy::spawn_mode::fork});
  auto own = p.open_fds().get();
  // fork without exec does not move the channel to fd 3; any number is fine.
  expect_only_stdio_and_channel(own, leaked, false, "as the child lists itself");
  expect_only_stdio_and_channel(fds_of(p.pid()), leaked, false, "as the parent sees it");
}

// ---- descriptors that cross (docs/design.md "Descriptors")
// ----------------------------------------

procxy::unique_fd memfd_of(const std::string& text) {
  procxy::unique_fd fd(::memfd_create("procxy-hygiene", MFD_CLOEXEC));
  if (::write(fd.get(), text.data(), text.size()) < 0) return {};
  return fd;
}

struct WithFd {  // a descriptor, then a part that may fail to encode
  procxy::unique_fd fd;
  std::variant<int, std::deque<int>> rest;
};

class FdProbe {
 public:
  int ping(int n) { return n; }
  std::size_t take(std::vector<procxy::unique_fd> v) { return v.size(); }
  std::size_t take_slowly(std::vector<procxy::unique_fd> v, int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return v.size();
  }
  std::size_t take_and_crash(std::vector<procxy::unique_fd>) {
    rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    std::abort();
  }
  std::vector<procxy::unique_fd> give(int n) {
    std::vector<procxy::unique_fd> v;
    for (int i = 0; i < n; ++i) v.push_back(memfd_of("x"));
    return v;
  }
  std::vector<procxy::unique_fd> give_slowly(int n, int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return give(n);
  }
  // Replies with descriptors, and dies a moment later, whether or not the reply was read.
  std::vector<procxy::unique_fd> give_and_crash(int n) {
    std::thread([] {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      rlimit no_core{0, 0};
      ::setrlimit(RLIMIT_CORE, &no_core);
      std::abort();
    }).detach();
    return give(n);
  }
  int take_with(WithFd w) { return w.fd ? 1 : 0; }
};
PROCXY_CLASS(FdProbe, ping, take, take_slowly, take_and_crash, give, give_slowly, give_and_crash,
             take_with);

std::vector<procxy::unique_fd> memfds(int n) {
  std::vector<procxy::unique_fd> v;
  for (int i = 0; i < n; ++i) v.push_back(memfd_of("y"));
  return v;
}

// The parent's descriptor count is measured with the proxy alive: a leak of a descriptor that
// crossed shows while the channel runs, and again once it is gone.
TEST(Hygiene, DescriptorsOfRepliesThatArriveAfterTheirTimeoutAreClosed) {
  auto p = procxy::spawn<FdProbe>();
  ASSERT_EQ(p.ping(0).get(), 0);
  const resources start = baseline();
  for (int i = 0; i < 5; ++i) {
    auto f = p.with_timeout(20ms).give_slowly(8, 150);
    EXPECT_THROW(f.get(), procxy::timeout_error);
  }
  // The late replies (8 descriptors each) have arrived once a later call returns.
  std::this_thread::sleep_for(200ms);
  ASSERT_EQ(p.ping(1).get(), 1);
  expect_back_to(start, "late replies with descriptors");
  // And the descriptors of calls that timed out in the other direction reached the child.
  auto slow = p.with_timeout(20ms).take_slowly(memfds(8), 150);
  EXPECT_THROW(slow.get(), procxy::timeout_error);
  std::this_thread::sleep_for(200ms);
  ASSERT_EQ(p.ping(2).get(), 2);
  expect_back_to(start, "timed-out calls with descriptors");
}

TEST(Hygiene, ACrashMidTransferLeaksNoDescriptor) {
  const resources start = baseline();
  const int n = std::max(1, cycles_from_env() / 20);
  for (int i = 0; i < n; ++i) {
    auto p = procxy::spawn<FdProbe>();
    std::vector<procxy::future<std::size_t>> sent;
    if (i % 2 == 0) {
      // The child dies reading a call with descriptors, more queued behind it.
      for (int k = 0; k < 4; ++k) sent.push_back(p.take_and_crash(memfds(16)));
    } else {
      // The child dies right after replying with descriptors (read or not).
      auto f = p.give_and_crash(16);
      ASSERT_EQ(f.wait_for(10s), std::future_status::ready) << "cycle " << i;
    }
    for (auto& f : sent) ASSERT_EQ(f.wait_for(10s), std::future_status::ready) << "cycle " << i;
  }
  expect_back_to(start, "crashes with descriptors in flight");
}

TEST(Hygiene, TerminateWithDescriptorsInFlightLeaksNone) {
  const resources start = baseline();
  const int n = std::max(1, cycles_from_env() / 20);
  for (int i = 0; i < n; ++i) {
    auto p = procxy::spawn<FdProbe>({.terminate_grace = 20ms});
    ASSERT_EQ(p.ping(0).get(), 0);
    std::vector<procxy::future<std::size_t>> out;
    std::vector<procxy::future<std::vector<procxy::unique_fd>>> back;
    out.push_back(p.take_slowly(memfds(8), i % 2 == 0 ? 5 : 60'000));
    for (int k = 0; k < 8; ++k) out.push_back(p.take(memfds(8)));
    for (int k = 0; k < 4; ++k) back.push_back(p.give(8));
    p.terminate();  // replies with descriptors may still come, or be cut: all closed
    for (auto& f : out) EXPECT_TRUE(f.ready());
    for (auto& f : back) EXPECT_TRUE(f.ready());
  }
  expect_back_to(start, "terminate with descriptors in flight");
}

TEST(Hygiene, DescriptorsOfAReplyAfterTerminateAreClosed) {
  const resources start = baseline();
  {
    auto p = procxy::spawn<FdProbe>({.terminate_grace = 2s});
    ASSERT_EQ(p.ping(0).get(), 0);
    // The reply is written while terminate() waits for the child to run its destructor.
    auto late = p.give_slowly(32, 100);
    std::this_thread::sleep_for(20ms);
    p.terminate();
    ASSERT_TRUE(late.ready());
    EXPECT_THROW(late.get(), procxy::terminated);
  }
  expect_back_to(start, "a reply with descriptors after terminate");
}

TEST(Hygiene, AnEncodeFailureHalfwayClosesTheDescriptorsEncodedBeforeIt) {
  auto p = procxy::spawn<FdProbe>();
  ASSERT_EQ(p.ping(0).get(), 0);
  const resources start = baseline();
  for (int i = 0; i < 10; ++i) {
    WithFd w{memfd_of("z"), 0};
    try {  // a valueless variant: serialization_error after the descriptor was encoded
      w.rest.emplace<1>(std::numeric_limits<std::size_t>::max());
    } catch (const std::length_error&) {
    }
    ASSERT_TRUE(w.rest.valueless_by_exception());
    auto f = p.take_with(std::move(w));
    EXPECT_THROW(f.get(), procxy::serialization_error);
  }
  expect_back_to(start, "calls that failed to encode after a descriptor");
  // Over the limit: refused before anything is sent.
  auto over = p.take(memfds(65));
  EXPECT_THROW(over.get(), procxy::serialization_error);
  expect_back_to(start, "a call over max_descriptors_per_message");
  EXPECT_EQ(p.take(memfds(64)).get(), 64u);
  expect_back_to(start, "a call of 64 descriptors");
}

#ifdef PROCXY_TEST_WORKER
// The worker binary (tests/worker) serves Greeter, which cannot list descriptors: the parent
// reads /proc/<child>/fd from the outside.
TEST(Hygiene, WorkerExecutableChildHoldsOnlyStdioAndItsChannel) {
  leaky_descriptors leaked;
  auto sibling = procxy::spawn<Probe>();
  ASSERT_EQ(sibling.ping(1).get(), 1);
  auto g = procxy::spawn<worker_demo::Greeter>(
      {.mode = procxy::spawn_mode::executable, .executable = PROCXY_TEST_WORKER},
      std::string("Hi"));
  EXPECT_EQ(g.greet("x").get(), "Hi, x");  // constructed and serving: its own fds are open
  expect_only_stdio_and_channel(fds_of(g.pid()), leaked, true, "as the parent sees it");
}
#endif

}  // namespace
