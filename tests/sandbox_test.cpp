// spawn_options::sandbox: each layer stops what it should, with the outcome docs/design.md's table
// gives it ("Errors and failures"), in every spawn mode; what cannot be applied fails the spawn.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <new>
#include <string>
#include <system_error>

#include "procxy/procxy.hpp"
#include "sandbox/untrusted.hpp"
#include "sanitizers.hpp"

using namespace std::chrono_literals;
using sandbox_test::Untrusted;

namespace {

constexpr bool under_sanitizer = sanitized_build;
// ThreadSanitizer starts its background thread in every child of a fork, and both a user
// namespace (unshare) and Landlock (which confines the calling thread only) need a
// single-threaded process: under TSan such a sandbox fails the spawn, saying so.
constexpr const char* tsan_forks_threads =
    "ThreadSanitizer starts a thread in every forked child; a user namespace and Landlock need a "
    "single-threaded child (the spawn fails with spawn_error saying so)";

// The pid a child sees in its own PID namespace: small (init is 1, the server next; under TSan
// the init's own TSan thread takes a pid too), and not the one the parent knows.
void expect_own_pid_namespace(procxy::proxy<Untrusted>& u) {
  int inside = u.own_pid().get();
  EXPECT_NE(inside, u.pid());
  EXPECT_GE(inside, 2);
  EXPECT_LE(inside, 4);
}

procxy::sandbox_options strict(procxy::on_blocked_syscall on = procxy::on_blocked_syscall::kill) {
  return {.syscalls = procxy::syscall_profile::strict, .on_blocked = on};
}

// The crash a sandbox kill gives: child_crashed by SIGSYS, naming the call.
void expect_blocked(procxy::future<int> f, const std::string& call) {
  try {
    int v = f.get();
    FAIL() << "the call returned " << v << " (" << std::strerror(v) << ")";
  } catch (const procxy::child_crashed& e) {
    EXPECT_EQ(e.signal(), SIGSYS) << e.what();
    EXPECT_NE(std::string(e.what()).find("blocked by the sandbox: " + call), std::string::npos)
        << e.what();
    // Not contradicted by the crash context's guess about a SIGSYS from outside.
    EXPECT_EQ(std::string(e.what()).find("comes from outside"), std::string::npos) << e.what();
  }
}

// A directory of the test's own, removed at the end.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::string t = (std::filesystem::temp_directory_path() / "procxy-sandbox-XXXXXX").string();
    path = ::mkdtemp(t.data());
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// A TCP listener on 127.0.0.1 (an ephemeral port), so that a refused connect is the sandbox's
// doing.
struct listener {
  int fd = -1;
  int port = 0;
  listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd, 8);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~listener() { ::close(fd); }
};

TEST(Sandbox, TheStrictProfileServesCalls) {
  auto u = procxy::spawn<Untrusted>({.sandbox = strict()});
  EXPECT_EQ(u.add(20, 22).get(), 42);
  EXPECT_EQ(u.allocate(64).get(), 64u);  // memory, a thread's heap
}

TEST(Sandbox, StrictKillsAChildThatOpensAFileNamingTheCall) {
  auto u = procxy::spawn<Untrusted>({.sandbox = strict()});
  u.started().get();
  expect_blocked(u.open_file("/etc/passwd"), "openat");
  EXPECT_THROW(u.add(1, 2).get(), procxy::child_crashed);  // later calls
}

TEST(Sandbox, StrictWithFailReturnsEpermToTheMethodAndKeepsServing) {
  auto u = procxy::spawn<Untrusted>({.sandbox = strict(procxy::on_blocked_syscall::fail)});
  EXPECT_EQ(u.open_file("/etc/passwd").get(), EPERM);
  EXPECT_EQ(u.connect_local(1).get(), EPERM);
  EXPECT_EQ(u.fork_child().get(), EPERM);
  EXPECT_EQ(u.exec_true().get(), EPERM);
  EXPECT_EQ(u.add(1, 2).get(), 3);
}

TEST(Sandbox, StrictKillsConnect) {
  listener l;
  EXPECT_EQ(procxy::spawn<Untrusted>().connect_local(l.port).get(), 0);  // the listener works
  auto u = procxy::spawn<Untrusted>({.sandbox = strict()});
  expect_blocked(u.connect_local(l.port), "socket");
}

TEST(Sandbox, StrictKillsFork) {
  auto u = procxy::spawn<Untrusted>({.sandbox = strict()});
  expect_blocked(u.fork_child(), "clone");
}

TEST(Sandbox, StrictKillsExec) {
  auto u = procxy::spawn<Untrusted>({.sandbox = strict()});
  expect_blocked(u.exec_true(), "execve");
}

TEST(Sandbox, StrictKillsSignallingAnotherProcess) {
  auto u = procxy::spawn<Untrusted>({.sandbox = strict()});
  expect_blocked(u.signal_process(static_cast<int>(::getpid())), "kill");
}

TEST(Sandbox, ReadFilesReadsButCannotWrite) {
  temp_dir d;
  auto u = procxy::spawn<Untrusted>({.sandbox = {.syscalls = procxy::syscall_profile::read_files}});
  EXPECT_EQ(u.open_file("/etc/passwd").get(), 0);
  expect_blocked(u.write_file((d.path / "f").string()), "openat");
}

TEST(Sandbox, AllowListAddsCallsToTheProfile) {
  listener l;
  auto u = procxy::spawn<Untrusted>({.sandbox = {.syscalls = procxy::syscall_profile::strict,
                                                 .allow_syscalls = {"socket", "connect"}}});
  EXPECT_EQ(u.connect_local(l.port).get(), 0);
}

TEST(Sandbox, DenyListBlocksACallTheProfileAllows) {
  auto u = procxy::spawn<Untrusted>(
      {.sandbox = {.deny_syscalls = {"uname"}}});  // unrestricted otherwise
  EXPECT_EQ(u.open_file("/etc/passwd").get(), 0);
  expect_blocked(u.call_uname(), "uname");
}

TEST(Sandbox, UnknownSystemCallNamesFailTheSpawn) {
  EXPECT_THROW(procxy::spawn<Untrusted>({.sandbox = {.deny_syscalls = {"no_such_call"}}}),
               procxy::spawn_error);
  EXPECT_THROW(procxy::spawn<Untrusted>({.sandbox = {.allow_syscalls = {"socket"}}}),
               procxy::spawn_error);
}

TEST(Sandbox, BacktracesWithAStrictKillProfileFailTheSpawn) {
  EXPECT_THROW(procxy::spawn<Untrusted>({.backtrace = true, .sandbox = strict()}),
               procxy::spawn_error);
}

// A crash handler whose calls the profile blocks keeps its outcome: the crash, not a sandbox kill.
TEST(Sandbox, ACrashHandlersBlockedCallsFailInsteadOfKilling) {
  if (under_tsan)
    GTEST_SKIP() << "ThreadSanitizer runs signal handlers with every signal blocked, SIGSYS "
                    "included (the case of the next test)";
  auto u = procxy::spawn<Untrusted>({.capture_stderr = 4096, .sandbox = strict()});
  try {
    u.crash_with_handler(false).get();
    FAIL() << "no crash";
  } catch (const procxy::child_crashed& e) {
    EXPECT_EQ(e.signal(), SIGSEGV) << e.what();
    EXPECT_EQ(std::string(e.what()).find("blocked by the sandbox"), std::string::npos) << e.what();
    EXPECT_NE(e.stderr_tail().find("crash handler: maps refused"), std::string::npos) << e.what();
  }
}

// A handler that blocks SIGSYS cannot be answered: the kernel ends the child by SIGSYS at its
// first blocked call, and the message says what happened without naming the call.
TEST(Sandbox, ABlockedCallWhileSigsysIsBlockedEndsTheChildSayingSo) {
  auto u = procxy::spawn<Untrusted>({.sandbox = strict()});
  try {
    u.crash_with_handler(true).get();
    FAIL() << "no crash";
  } catch (const procxy::child_crashed& e) {
    EXPECT_EQ(e.signal(), SIGSYS) << e.what();
    EXPECT_NE(std::string(e.what()).find("while SIGSYS was blocked"), std::string::npos)
        << e.what();
  }
}

TEST(Sandbox, AbortUnderStrictIsAnOrdinaryCrash) {
  auto u = procxy::spawn<Untrusted>({.sandbox = strict()});
  try {
    u.abort_now().get();
    FAIL() << "no crash";
  } catch (const procxy::child_crashed& e) {
    EXPECT_EQ(e.signal(), SIGABRT) << e.what();
  }
}

TEST(Sandbox, AddressSpaceLimitThrowsBadAllocInTheCaller) {
  if (under_sanitizer)
    GTEST_SKIP() << "ASan and TSan reserve terabytes of shadow address space, so any "
                    "RLIMIT_AS leaves the child no room to run";
  auto u =
      procxy::spawn<Untrusted>({.sandbox = {.limits = {.address_space = std::size_t{512} << 20}}});
  EXPECT_EQ(u.allocate(16).get(), 16u);
  EXPECT_THROW(u.allocate(1024).get(), std::bad_alloc);
  EXPECT_EQ(u.allocate(16).get(), 16u);  // the child lives on
}

TEST(Sandbox, CpuLimitEndsTheChildNamingTheLimit) {
  auto u = procxy::spawn<Untrusted>({.sandbox = {.limits = {.cpu = 1s}}});
  auto start = std::chrono::steady_clock::now();
  try {
    u.spin(30).get();
    FAIL() << "the spin returned";
  } catch (const procxy::child_crashed& e) {
    EXPECT_EQ(e.signal(), SIGXCPU) << e.what();
    EXPECT_NE(std::string(e.what()).find("CPU limit (1 s of CPU time over the child's whole life"),
              std::string::npos)
        << e.what();
    EXPECT_EQ(std::string(e.what()).find("comes from outside"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
}

// A SIGKILL from outside to a child that has a CPU limit but did not use it is not blamed on it.
TEST(Sandbox, ASigkillFromOutsideIsNotBlamedOnTheCpuLimit) {
  auto u = procxy::spawn<Untrusted>({.sandbox = {.limits = {.cpu = 30s}}});
  ASSERT_EQ(u.add(1, 2).get(), 3);
  ::kill(u.pid(), SIGKILL);
  try {
    u.add(1, 2).get();
    FAIL() << "the call returned";
  } catch (const procxy::child_crashed& e) {
    EXPECT_EQ(e.signal(), SIGKILL) << e.what();
    EXPECT_EQ(std::string(e.what()).find("CPU limit"), std::string::npos) << e.what();
  }
}

TEST(Sandbox, FileSizeLimitFailsTheWriteWithEfbig) {
  temp_dir d;
  auto u = procxy::spawn<Untrusted>({.sandbox = {.limits = {.file_size = 1024}}});
  EXPECT_EQ(u.write_bytes((d.path / "small").string(), 512).get(), 0);
  EXPECT_EQ(u.write_bytes((d.path / "big").string(), 4096).get(), EFBIG);
  EXPECT_EQ(u.add(1, 2).get(), 3);
}

TEST(Sandbox, LandlockAllowsOnlyTheListedPaths) {
  temp_dir inside, outside;
  auto u = procxy::spawn<Untrusted>(
      {.sandbox = {.filesystem = std::vector<procxy::path_rule>{{inside.path, true}}}});
  EXPECT_EQ(u.write_file((inside.path / "ok").string()).get(), 0);
  EXPECT_EQ(u.write_file((outside.path / "no").string()).get(), EACCES);
  EXPECT_EQ(u.open_file("/etc/passwd").get(), EACCES);
  EXPECT_TRUE(std::filesystem::exists(inside.path / "ok"));
  EXPECT_FALSE(std::filesystem::exists(outside.path / "no"));
}

TEST(Sandbox, LandlockReadOnlyRuleRefusesWrites) {
  temp_dir d;
  {
    auto u = procxy::spawn<Untrusted>();
    EXPECT_EQ(u.write_file((d.path / "f").string()).get(), 0);
  }
  auto u = procxy::spawn<Untrusted>(
      {.sandbox = {.filesystem = std::vector<procxy::path_rule>{{d.path, false}}}});
  EXPECT_EQ(u.open_file((d.path / "f").string()).get(), 0);
  EXPECT_EQ(u.write_file((d.path / "f").string()).get(), EACCES);
  EXPECT_EQ(u.write_file((d.path / "g").string()).get(), EACCES);
}

TEST(Sandbox, ALayerThatCannotBeSetUpFailsTheSpawnSayingWhy) {
  auto u = procxy::spawn<Untrusted>(
      {.sandbox = {.filesystem = std::vector<procxy::path_rule>{{"/no/such/procxy/path", false}}}});
  try {
    u.started().get();
    FAIL() << "the child started";
  } catch (const procxy::spawn_error& e) {
    EXPECT_NE(std::string(e.what()).find("sandbox could not be set up"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("/no/such/procxy/path"), std::string::npos) << e.what();
  }
  EXPECT_THROW(u.add(1, 2).get(), procxy::spawn_error);
}

TEST(Sandbox, NetworkNamespaceHasNoNetwork) {
  listener l;
  auto u = procxy::spawn<Untrusted>({.sandbox = {.namespaces = {.network = true}}});
  EXPECT_EQ(u.connect_local(l.port).get(), ENETUNREACH);
}

TEST(Sandbox, UserNamespaceKeepsTheChildsUid) {
  auto u = procxy::spawn<Untrusted>(
      {.sandbox = {.namespaces = {.user = true, .mounts = true, .ipc = true}}});
  EXPECT_EQ(u.uid().get(), static_cast<int>(::getuid()));
  EXPECT_EQ(u.add(1, 2).get(), 3);
}

TEST(Sandbox, PidNamespaceHidesOtherProcessesAndCrashesKeepTheirSignal) {
  auto u = procxy::spawn<Untrusted>({.sandbox = {.namespaces = {.pids = true}}});
  expect_own_pid_namespace(u);
  EXPECT_EQ(u.signal_process(static_cast<int>(::getpid())).get(), ESRCH);
  try {
    u.abort_now().get();
    FAIL() << "no crash";
  } catch (const procxy::child_crashed& e) {
    EXPECT_EQ(e.signal(), SIGABRT) << e.what();
  }
}

TEST(Sandbox, PidNamespaceChildTerminatesCleanly) {
  std::promise<procxy::exit_info> exited;
  {
    auto u = procxy::spawn<Untrusted>(
        {.on_exit = [&](const procxy::exit_info& i) { exited.set_value(i); },
         .sandbox = {.namespaces = {.pids = true}}});
    EXPECT_EQ(u.add(1, 2).get(), 3);
  }
  auto info = exited.get_future().get();
  EXPECT_EQ(info.exit_code, 0) << info.description;
}

TEST(Sandbox, AllLayersTogether) {
  if (under_tsan) GTEST_SKIP() << tsan_forks_threads;  // Landlock after the PID namespace's fork
  temp_dir d;
  procxy::sandbox_options s{
      .limits = {.address_space = under_sanitizer ? 0 : std::size_t{1} << 30,
                 .cpu = 30s,
                 .open_files = 64,
                 .file_size = 1 << 20,
                 .processes = 64,
                 .no_core_dumps = true},
      .syscalls = procxy::syscall_profile::read_files,
      .on_blocked = procxy::on_blocked_syscall::fail,
      .namespaces = {.network = true, .mounts = true, .ipc = true, .pids = true},
      .filesystem = std::vector<procxy::path_rule>{{d.path, false}, {"/etc/passwd", false}}};
  auto u = procxy::spawn<Untrusted>({.sandbox = s});
  EXPECT_EQ(u.add(1, 2).get(), 3);
  EXPECT_EQ(u.open_file("/etc/passwd").get(), 0);
  EXPECT_EQ(u.open_file("/etc/hostname").get(), EACCES);
  EXPECT_EQ(u.write_file((d.path / "f").string()).get(), EPERM);  // seccomp refuses before Landlock
  EXPECT_EQ(u.fork_child().get(), EPERM);
}

// The same sandbox in each spawn mode.
class SandboxModes : public testing::TestWithParam<procxy::spawn_mode> {};

TEST_P(SandboxModes, EveryLayerIsAppliedBeforeTheObjectServes) {
  if (under_tsan && GetParam() == procxy::spawn_mode::fork) GTEST_SKIP() << tsan_forks_threads;
  procxy::spawn_options o{.mode = GetParam(),
                          .sandbox = {.syscalls = procxy::syscall_profile::strict,
                                      .namespaces = {.network = true, .pids = true}}};
  if (GetParam() == procxy::spawn_mode::executable) o.executable = PROCXY_SANDBOX_WORKER;
  auto u = procxy::spawn<Untrusted>(o);
  EXPECT_EQ(u.add(1, 2).get(), 3);
  expect_own_pid_namespace(u);
  expect_blocked(u.open_file("/etc/passwd"), "openat");
}

INSTANTIATE_TEST_SUITE_P(Sandbox, SandboxModes,
                         testing::Values(procxy::spawn_mode::reexec, procxy::spawn_mode::executable,
                                         procxy::spawn_mode::fork),
                         [](const auto& p) {
                           switch (p.param) {
                             case procxy::spawn_mode::reexec: return std::string("Reexec");
                             case procxy::spawn_mode::executable: return std::string("Executable");
                             default: return std::string("Fork");
                           }
                         });

TEST(Sandbox, ProcxySandboxVariableAppliesAProfileToSpawnsWithoutOne) {
  ::setenv("PROCXY_SANDBOX", "strict", 1);
  auto u = procxy::spawn<Untrusted>();
  EXPECT_EQ(u.add(1, 2).get(), 3);
  expect_blocked(u.open_file("/etc/passwd"), "openat");
  ::setenv("PROCXY_SANDBOX", "loose", 1);
  EXPECT_THROW(procxy::spawn<Untrusted>(), procxy::spawn_error);
  ::unsetenv("PROCXY_SANDBOX");
}

}  // namespace

namespace {
// A big argument is held once while the child reads and decodes it (the read buffer becomes the
// frame's body, no copy): 180 MiB decodes under a 512 MiB address-space limit, where the copy
// made it need ~540 MiB and the child aborted in procxy's reader (a newcomer's trial: a 200 MB
// document under 512 MiB).
// A process's address space now, in bytes (VmSize in /proc/<pid>/status).
std::size_t address_space_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmSize:", 0) == 0) return std::stoull(line.substr(7)) * 1024;
  ADD_FAILURE() << "no VmSize for " << pid;
  return 0;
}

TEST(Sandbox, ABigArgumentIsHeldOnceWhileTheChildDecodesIt) {
  if (under_sanitizer) GTEST_SKIP() << "the sanitizers reserve terabytes of address space";
  // What a served child maps before the argument comes (libraries, thread stacks, malloc's
  // arenas), measured in a twin. The limit leaves room for the message held once plus the string
  // decoded from it (2x), with slack for a malloc arena or two more, but not for a second copy of
  // the message (3x).
  const std::size_t big = std::size_t{192} << 20;
  std::size_t base = 0;
  {
    auto twin = procxy::spawn<Untrusted>();
    EXPECT_EQ(twin.length("warm").get(), 4u);
    base = address_space_of(twin.pid());
  }
  auto u = procxy::spawn<Untrusted>({.sandbox = {.limits = {.address_space = base + big * 5 / 2}}});
  const std::string s(big, 'x');
  EXPECT_EQ(u.length(s).get(), s.size());
}
}  // namespace
