// Starting children: modes, options (env, cwd, args), start failures, fd hygiene, no orphans.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "greeter.hpp"
#include "procxy/procxy.hpp"
#include "procxy/proxy.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

class Probe {
 public:
  Probe() = default;
  explicit Probe(int fail_with) {
    if (fail_with == 1) throw std::invalid_argument("bad constructor argument");
    if (fail_with == 2) std::this_thread::sleep_for(std::chrono::seconds(5));
  }
  std::string env(const std::string& name) const {
    const char* v = std::getenv(name.c_str());
    return v ? v : "<unset>";
  }
  std::string cwd() const { return fs::current_path().string(); }
  std::vector<std::string> argv() const {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    std::vector<std::string> out;
    std::string arg;
    while (std::getline(in, arg, '\0')) out.push_back(arg);
    return out;
  }
  std::vector<std::string> open_fds() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
      std::error_code ec;
      out.push_back(e.path().filename().string() + " -> " +
                    fs::read_symlink(e.path(), ec).string());
    }
    return out;
  }
  int child_pid() const { return static_cast<int>(::getpid()); }
  int parent() const { return static_cast<int>(::getppid()); }
  void busy(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }
  // Whether this process maps the shared-memory transport's rings (memfd "procxy-ring").
  bool maps_rings() const {
    std::ifstream in("/proc/self/maps");
    std::string line;
    while (std::getline(in, line))
      if (line.find("procxy-ring") != std::string::npos) return true;
    return false;
  }
};
PROCXY_CLASS(Probe, env, cwd, argv, open_fds, child_pid, parent, busy, maps_rings);

TEST(Spawn, ReexecIsTheDefaultAndRunsThisExecutable) {
  auto p = procxy::spawn<Probe>();
  EXPECT_EQ(p.parent().get(), ::getpid());
  auto args = p.argv().get();
  ASSERT_FALSE(args.empty());
}

// ps, top and pkill see a re-executed child under the parent's program name, not "exe".
TEST(Spawn, AReexecutedChildIsNamedLikeItsParentInPs) {
  auto p = procxy::spawn<Probe>();
  p.started().get();
  auto comm = [](int pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/comm");
    std::string s;
    std::getline(f, s);
    return s;
  };
  EXPECT_EQ(comm(p.pid()), comm(static_cast<int>(::getpid())));
  EXPECT_NE(comm(p.pid()), "exe");
}

TEST(Spawn, EnvironmentIsMergedByDefault) {
  ::setenv("PROCXY_TEST_INHERITED", "from-parent", 1);
  auto p = procxy::spawn<Probe>({.env = {{"PROCXY_TEST_ADDED", "added"}, {"PATH", "/nowhere"}}});
  EXPECT_EQ(p.env("PROCXY_TEST_INHERITED").get(), "from-parent");
  EXPECT_EQ(p.env("PROCXY_TEST_ADDED").get(), "added");
  EXPECT_EQ(p.env("PATH").get(), "/nowhere");
  EXPECT_EQ(p.env("PROCXY_CHANNEL_FD").get(), "<unset>");  // procxy's own variables are gone
}

TEST(Spawn, EnvironmentCanBeReplaced) {
  ::setenv("PROCXY_TEST_INHERITED", "from-parent", 1);
  auto p =
      procxy::spawn<Probe>({.env = {{"ONLY", "this"}}, .environment = procxy::env_mode::replace});
  EXPECT_EQ(p.env("PROCXY_TEST_INHERITED").get(), "<unset>");
  EXPECT_EQ(p.env("ONLY").get(), "this");
}

TEST(Spawn, WorkingDirectoryAndExtraArguments) {
  auto dir = fs::temp_directory_path();
  auto p = procxy::spawn<Probe>({.args = {"--alpha", "two words"}, .working_directory = dir});
  EXPECT_EQ(fs::path(p.cwd().get()), fs::canonical(dir));
  auto args = p.argv().get();
  ASSERT_EQ(args.size(), 3u);
  EXPECT_EQ(args[1], "--alpha");
  EXPECT_EQ(args[2], "two words");
}

TEST(Spawn, ForkModeServesWithoutExec) {
  auto p = procxy::spawn<Probe>({.mode = procxy::spawn_mode::fork});
  EXPECT_EQ(p.parent().get(), ::getpid());
  EXPECT_NE(p.child_pid().get(), ::getpid());
  EXPECT_EQ(p.env("HOME").get(), std::getenv("HOME") ? std::getenv("HOME") : "<unset>");
}

TEST(Spawn, DedicatedWorkerExecutable) {
  auto g = procxy::spawn<worker_demo::Greeter>(
      {.mode = procxy::spawn_mode::executable, .executable = PROCXY_TEST_WORKER},
      std::string("Hello"));
  EXPECT_EQ(g.greet("procxy").get(), "Hello, procxy");
  EXPECT_NE(g.binary().get().find("procxy_test_worker"), std::string::npos);
}

TEST(Spawn, WorkerWithoutTheConstructorFailsWithSpawnErrorNamingItAndTheFix) {
  auto g = procxy::spawn<worker_demo::Greeter>(
      {.mode = procxy::spawn_mode::executable, .executable = PROCXY_TEST_WORKER}, "Hi",
      3);  // the worker registered Greeter(std::string) only
  try {
    g.started().get();
    FAIL() << "no exception";
  } catch (const procxy::spawn_error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("no constructor worker_demo::Greeter(std::string, int)"), std::string::npos)
        << what;
    EXPECT_NE(what.find("the constructor never ran"), std::string::npos) << what;
    EXPECT_NE(what.find("PROCXY_CONSTRUCTOR(Class, argument types...)"), std::string::npos) << what;
    EXPECT_EQ(what.find("threw"), std::string::npos) << what;
  }
  EXPECT_THROW(g.greet("x").get(), procxy::spawn_error);
}

// String literals, char buffers, const char* and string_view all cross as a string and find the
// worker's PROCXY_CONSTRUCTOR(Greeter, std::string).
TEST(Spawn, WorkerConstructorTakesAnyStringLikeArgument) {
  const procxy::spawn_options worker{.mode = procxy::spawn_mode::executable,
                                     .executable = PROCXY_TEST_WORKER};
  auto literal = procxy::spawn<worker_demo::Greeter>(worker, "Hello");
  EXPECT_EQ(literal.greet("literal").get(), "Hello, literal");
  char buffer[16] = "Hey";  // a buffer longer than its text: only the text crosses
  auto buf = procxy::spawn<worker_demo::Greeter>(worker, buffer);
  EXPECT_EQ(buf.greet("buffer").get(), "Hey, buffer");
  const char* pointer = "Hi";
  auto ptr = procxy::spawn<worker_demo::Greeter>(worker, pointer);
  EXPECT_EQ(ptr.greet("pointer").get(), "Hi, pointer");
  auto view =
      procxy::spawn<worker_demo::Greeter>(worker, std::string_view("Yo there").substr(0, 2));
  EXPECT_EQ(view.greet("view").get(), "Yo, view");
}

// The same in the default (re-exec) mode, for a constructor taking const char* and one taking
// std::string_view: the child builds the argument back as the constructor wants it.
class Named {
 public:
  explicit Named(const char* name) : name_(name) {}
  Named(std::string_view first, int n) : name_(std::string(first) + "#" + std::to_string(n)) {}
  std::string name() const { return name_; }

 private:
  std::string name_;
};
PROCXY_CLASS(Named, name);

TEST(Spawn, StringLiteralsAsConstructorArguments) {
  auto a = procxy::spawn<Named>({}, "db.sqlite");
  EXPECT_EQ(a.name().get(), "db.sqlite");
  auto b = procxy::spawn<Named>({}, "first", 2);
  EXPECT_EQ(b.name().get(), "first#2");
  char buffer[8] = {'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'};  // no NUL: stops at the end
  auto c = procxy::spawn<Named>({}, buffer, 1);
  EXPECT_EQ(c.name().get(), "abcdefgh#1");
}

TEST(Spawn, MissingExecutableThrowsSpawnErrorAtOnce) {
  EXPECT_THROW(procxy::spawn<Probe>({.mode = procxy::spawn_mode::executable,
                                     .executable = "/nonexistent/procxy-worker"}),
               procxy::spawn_error);
}

// An executable that is not a procxy worker (here /bin/true) exits before constructing: the
// error guesses the cause; one killed by a signal before constructing gets no such guess.
TEST(Spawn, AnExecutableThatExitsBeforeServingGetsTheInitHintAndASignalDoesNot) {
  auto p =
      procxy::spawn<Probe>({.mode = procxy::spawn_mode::executable, .executable = "/bin/true"});
  try {
    p.started().get();
    FAIL() << "started";
  } catch (const procxy::spawn_error& e) {
    EXPECT_NE(std::string(e.what()).find("does its main() call procxy::init(argc, argv) first?"),
              std::string::npos)
        << e.what();
  }
  auto q = procxy::spawn<Probe>({.mode = procxy::spawn_mode::executable,
                                 .executable = "/bin/sh",
                                 .args = {"-c", "kill -TERM $$"}});
  try {
    q.started().get();
    FAIL() << "started";
  } catch (const procxy::spawn_error& e) {
    EXPECT_NE(std::string(e.what()).find("SIGTERM"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("procxy::init"), std::string::npos) << e.what();
  }
}

TEST(Spawn, ThrowingConstructorFailsEveryCallWithSpawnErrorNestingTheCause) {
  auto p = procxy::spawn<Probe>({}, 1);
  auto pending = p.child_pid();  // sent before the constructor ran
  try {
    p.started().get();
    FAIL() << "no exception";
  } catch (const procxy::spawn_error& e) {
    try {
      std::rethrow_if_nested(e);
      FAIL() << "nothing nested";
    } catch (const std::invalid_argument& cause) {
      EXPECT_STREQ(cause.what(), "bad constructor argument");
    }
  }
  EXPECT_THROW(pending.get(), procxy::spawn_error);
  EXPECT_THROW(p.child_pid().get(), procxy::spawn_error);
}

TEST(Spawn, StartTimeoutKillsTheChildAndFailsWithSpawnError) {
  auto t0 = std::chrono::steady_clock::now();
  auto p = procxy::spawn<Probe>({.start_timeout = 200ms}, 2);  // constructor sleeps 5 s
  EXPECT_THROW(p.started().get(), procxy::spawn_error);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_THROW(p.child_pid().get(), procxy::spawn_error);
  EXPECT_FALSE(p.running());
}

TEST(Spawn, ChildInheritsNoParentDescriptorsButStdioAndItsChannel) {
  int leaked = ::open("/etc/hostname", O_RDONLY);  // deliberately without O_CLOEXEC
  ASSERT_GE(leaked, 0);
  auto p = procxy::spawn<Probe>();
  auto fds = p.open_fds().get();
  ::close(leaked);
  for (const auto& f : fds) EXPECT_EQ(f.find("/etc/hostname"), std::string::npos) << f;
  // 0, 1, 2, the channel (3), the crash pipe (4 or 5), and the child's own: the transport's two
  // eventfds (reader and I/O thread wake-ups) and the parent's pidfd; plus the directory
  // open_fds lists.
  EXPECT_LE(fds.size(), 9u);
}

// A parent that is SIGKILLed while owning children must not leave them running: an idle child
// sees EOF on its channel; a child stuck in a long call is ended by its parent watchdog.
void expect_child_exits_when_parent_is_killed(bool child_busy) {
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);  // orphans come to us, so we can reap them
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t middle = ::fork();
  ASSERT_GE(middle, 0);
  if (middle == 0) {
    ::close(pipefd[0]);
    auto p = procxy::spawn<Probe>();
    int child = p.child_pid().get();
    if (child_busy) {
      auto f = p.busy(60'000);  // never waited for
      std::this_thread::sleep_for(100ms);
    }
    [[maybe_unused]] auto n = ::write(pipefd[1], &child, sizeof child);
    for (;;) ::pause();
  }
  ::close(pipefd[1]);
  int grandchild = 0;
  ASSERT_EQ(::read(pipefd[0], &grandchild, sizeof grandchild),
            static_cast<ssize_t>(sizeof grandchild));
  ::close(pipefd[0]);
  ::kill(middle, SIGKILL);
  ::waitpid(middle, nullptr, 0);
  // The grandchild is now ours (subreaper); it must exit by itself within a few seconds.
  bool exited = false;
  for (int i = 0; i < 200 && !exited; ++i) {
    int status = 0;
    if (::waitpid(grandchild, &status, WNOHANG) == grandchild)
      exited = true;
    else
      std::this_thread::sleep_for(50ms);
  }
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  EXPECT_TRUE(exited) << "grandchild " << grandchild << " outlived its parent";
  if (!exited) ::kill(grandchild, SIGKILL);
}

TEST(Spawn, IdleChildExitsWhenItsParentIsKilled) {
  expect_child_exits_when_parent_is_killed(false);
}

TEST(Spawn, BusyChildExitsWhenItsParentIsKilled) { expect_child_exits_when_parent_is_killed(true); }

}  // namespace

// ---- the transport (options.hpp, transport_kind) ------------------------------------------------

// Restores an environment variable of the test process when it goes.
struct scoped_env {
  std::string name;
  std::optional<std::string> old;
  scoped_env(const char* n, const char* v) : name(n) {
    if (const char* o = std::getenv(n)) old = o;
    ::setenv(n, v, 1);
  }
  ~scoped_env() {
    if (old)
      ::setenv(name.c_str(), old->c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
};

TEST(Transport, TheKindAskedForIsUsedInEverySpawnMode) {
  for (auto mode : {procxy::spawn_mode::reexec, procxy::spawn_mode::fork}) {
    for (auto kind : {procxy::transport_kind::socket, procxy::transport_kind::shared_memory}) {
      SCOPED_TRACE(std::string(mode == procxy::spawn_mode::fork ? "fork, " : "reexec, ") +
                   (kind == procxy::transport_kind::socket ? "socket" : "shared_memory"));
      auto p = procxy::spawn<Probe>({.mode = mode, .transport = kind});
      EXPECT_EQ(p.maps_rings().get(), kind == procxy::transport_kind::shared_memory);
      EXPECT_EQ(p.env("PROCXY_SHM_FD").get(), "<unset>");  // init() removed it
    }
  }
}

TEST(Transport, AutomaticIsSharedMemoryUnlessProcxyTransportSaysOtherwise) {
  {
    scoped_env e("PROCXY_TRANSPORT", "");
    EXPECT_TRUE(procxy::spawn<Probe>().maps_rings().get());
  }
  {
    scoped_env e("PROCXY_TRANSPORT", "socket");
    EXPECT_FALSE(procxy::spawn<Probe>().maps_rings().get());
    // An explicit choice wins over the environment.
    EXPECT_TRUE(procxy::spawn<Probe>({.transport = procxy::transport_kind::shared_memory})
                    .maps_rings()
                    .get());
  }
}

// Where no sealed memfd of the ring's size can be made (here: a file-size limit below it, so its
// ftruncate fails with EFBIG), automatic falls back to the socket; shared memory asked for
// explicitly fails the spawn and says why.
TEST(Transport, AutomaticFallsBackToTheSocketWhereNoSharedMemoryCanBeMade) {
  scoped_env e("PROCXY_TRANSPORT", "");
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);  // else the failed ftruncate kills the test
  rlimit small = old;
  small.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  bool fell_back = false, refused = false;
  std::string why;
  try {
    fell_back = !procxy::spawn<Probe>().maps_rings().get();
    try {
      auto p = procxy::spawn<Probe>({.transport = procxy::transport_kind::shared_memory});
    } catch (const procxy::spawn_error& x) {
      refused = true;
      why = x.what();
    }
  } catch (...) {
    ::setrlimit(RLIMIT_FSIZE, &old);
    ::signal(SIGXFSZ, old_handler);
    throw;
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);
  EXPECT_TRUE(fell_back);
  EXPECT_TRUE(refused);
  EXPECT_NE(why.find("shared-memory transport cannot be set up"), std::string::npos) << why;
  EXPECT_TRUE(procxy::spawn<Probe>().maps_rings().get());  // and back once it can
}

TEST(Transport, AnUnknownProcxyTransportFailsTheSpawnSayingWhatIsAllowed) {
  scoped_env e("PROCXY_TRANSPORT", "carrier_pigeon");
  try {
    auto p = procxy::spawn<Probe>();
    FAIL() << "spawned";
  } catch (const procxy::spawn_error& x) {
    const std::string w = x.what();
    EXPECT_NE(w.find("carrier_pigeon"), std::string::npos) << w;
    EXPECT_NE(w.find("'socket' or 'shared_memory'"), std::string::npos) << w;
  }
}
