// Descriptors as values (docs/design.md "Descriptors"): procxy::unique_fd crosses as a parameter,
// a result, a callback or event argument, inside structs and containers, over either transport
// (this binary runs twice: socket.* and shm.*). Each kind the issue names (file, pipe, socket,
// eventfd, memfd, pidfd) is used through the descriptor the other side received; received
// descriptors are close-on-exec; the per-message limit holds both ways.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "procxy/procxy.hpp"
#include "serial_executor.hpp"

using namespace std::chrono_literals;

namespace {

// Everything readable from `fd` until EOF (from offset 0 for a regular file or memfd).
std::string read_all(int fd) {
  std::string out;
  char buf[256];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

procxy::unique_fd memfd_with(const std::string& text) {
  procxy::unique_fd fd(::memfd_create("procxy-test", MFD_CLOEXEC));
  if (!fd) throw std::system_error(errno, std::system_category(), "memfd_create");
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    throw std::runtime_error("short write");
  ::lseek(fd.get(), 0, SEEK_SET);
  return fd;
}

bool cloexec(int fd) { return (::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0; }

// What /proc says a descriptor is: "pipe:[...]", "socket:[...]", "anon_inode:[eventfd]",
// "/memfd:name (deleted)", "anon_inode:[pidfd]", a path.
std::string kind_of(int fd) {
  char buf[256];
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  const ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("?");
}

// The pid a pidfd refers to, from /proc/self/fdinfo (-1 if it is not a pidfd).
int pid_of_pidfd(int fd) {
  std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
  std::string key;
  while (in >> key) {
    if (key == "Pid:") {
      int pid = -1;
      in >> pid;
      return pid;
    }
  }
  return -1;
}

struct Labelled {  // a plain aggregate carrying a descriptor
  procxy::unique_fd fd;
  std::string label;
};

class Files {
 public:
  // Parameters: the child writes into what it was given.
  void write_to(procxy::unique_fd out, const std::string& text) {
    if (::write(out.get(), text.data(), text.size()) < 0) throw std::runtime_error("write");
  }  // the child's copy closes here
  void write_to_ref(const procxy::unique_fd& out, const std::string& text) {
    if (::write(out.get(), text.data(), text.size()) < 0) throw std::runtime_error("write");
  }
  // Results.
  procxy::unique_fd make_memfd(const std::string& text) { return memfd_with(text); }
  Labelled make_labelled(const std::string& text) { return {memfd_with(text), "label:" + text}; }
  std::vector<procxy::unique_fd> make_many(int n) {
    std::vector<procxy::unique_fd> v;
    for (int i = 0; i < n; ++i) v.push_back(memfd_with(std::to_string(i)));
    return v;
  }
  std::optional<procxy::unique_fd> maybe(bool engaged) {
    if (!engaged) return std::nullopt;
    return memfd_with("engaged");
  }
  // Structs and containers as parameters.
  std::string read_labelled(Labelled l) { return l.label + "=" + read_all(l.fd.get()); }
  std::vector<Labelled> swap_labels(std::vector<Labelled> v) {  // a vector of move-only structs
    for (std::size_t i = 0; i + 1 < v.size(); i += 2) std::swap(v[i].label, v[i + 1].label);
    return v;
  }
  std::string read_each(std::vector<procxy::unique_fd> v) {
    std::string out;
    for (auto& fd : v) out += read_all(fd.get()) + ";";
    return out;
  }
  std::size_t count(std::vector<procxy::unique_fd> v) { return v.size(); }
  std::size_t count_slowly(std::vector<procxy::unique_fd> v, int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return v.size();
  }
  bool is_empty(procxy::unique_fd fd) { return !fd; }
  // What the child sees of a received descriptor.
  std::string kind(procxy::unique_fd fd) { return kind_of(fd.get()); }
  bool received_cloexec(procxy::unique_fd fd) { return cloexec(fd.get()); }
  // Kinds, used through the received descriptor.
  std::uint64_t eventfd_take(procxy::unique_fd efd) {
    std::uint64_t v = 0;
    if (::read(efd.get(), &v, sizeof v) != sizeof v) throw std::runtime_error("eventfd read");
    return v;
  }
  void eventfd_add(procxy::unique_fd efd, std::uint64_t n) {
    if (::write(efd.get(), &n, sizeof n) != sizeof n) throw std::runtime_error("eventfd write");
  }
  std::string socket_echo_upper(procxy::unique_fd sock) {
    char buf[64];
    const ssize_t n = ::read(sock.get(), buf, sizeof buf);
    if (n <= 0) throw std::runtime_error("socket read");
    std::string s(buf, static_cast<std::size_t>(n));
    for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (::write(sock.get(), s.data(), s.size()) < 0) throw std::runtime_error("socket write");
    return s;
  }
  procxy::unique_fd own_pidfd() {
    return procxy::unique_fd(static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0)));
  }
  int pid_of(procxy::unique_fd pidfd) { return pid_of_pidfd(pidfd.get()); }
  int my_pid() { return static_cast<int>(::getpid()); }
  std::string read_file(procxy::unique_fd f) { return read_all(f.get()); }
  // Callbacks and events.
  void hand_back(const std::function<void(procxy::unique_fd)>& cb, const std::string& text) {
    cb(memfd_with(text));
  }
  std::string ask_for(const std::function<procxy::unique_fd()>& cb) {
    procxy::unique_fd fd = cb();
    return read_all(fd.get());
  }
  void emit_memfd(const std::string& text) { got.emit(memfd_with(text)); }
  procxy::event<procxy::unique_fd> got;
};
PROCXY_CLASS(Files, write_to, write_to_ref, make_memfd, make_labelled, make_many, maybe,
             read_labelled, swap_labels, read_each, count, count_slowly, is_empty, kind,
             received_cloexec, eventfd_take, eventfd_add, socket_echo_upper, own_pidfd, pid_of,
             my_pid, read_file, hand_back, ask_for, emit_memfd, got);

struct pipe_pair {
  procxy::unique_fd r, w;
  pipe_pair() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw std::system_error(errno, std::system_category(), "pipe");
    r.reset(p[0]);
    w.reset(p[1]);
  }
};

TEST(Descriptors, APipeWriteEndMovedToTheChildIsWrittenIntoAndOursIsClosed) {
  auto p = procxy::spawn<Files>();
  pipe_pair pp;
  p.write_to(std::move(pp.w), "through the pipe").get();
  EXPECT_FALSE(pp.w);  // moved into the call
  // The child wrote and closed its descriptor; ours was closed when the call was made: EOF.
  EXPECT_EQ(read_all(pp.r.get()), "through the pipe");
}

TEST(Descriptors, AConstReferenceParameterSendsADuplicateAndTheCallerKeepsItsOwn) {
  auto p = procxy::spawn<Files>();
  pipe_pair pp;
  p.write_to_ref(pp.w, "one,").get();
  p.write_to_ref(pp.w, "two").get();
  ASSERT_TRUE(pp.w);
  EXPECT_EQ(::fcntl(pp.w.get(), F_GETFD) >= 0, true);
  pp.w.reset();
  EXPECT_EQ(read_all(pp.r.get()), "one,two");
}

TEST(Descriptors, AResultMemfdIsReadByTheParentAndIsCloseOnExec) {
  auto p = procxy::spawn<Files>();
  procxy::unique_fd fd = p.make_memfd("made in the child").get();
  ASSERT_TRUE(fd);
  EXPECT_TRUE(cloexec(fd.get()));
  EXPECT_NE(kind_of(fd.get()).find("memfd:procxy-test"), std::string::npos) << kind_of(fd.get());
  EXPECT_EQ(read_all(fd.get()), "made in the child");
}

TEST(Descriptors, DescriptorsTheChildReceivesAreCloseOnExec) {
  auto p = procxy::spawn<Files>();
  procxy::unique_fd inheritable(::memfd_create("no-cloexec", 0));
  ASSERT_FALSE(cloexec(inheritable.get()));
  EXPECT_TRUE(p.received_cloexec(std::move(inheritable)).get());
}

TEST(Descriptors, InsideAStructBothWays) {
  auto p = procxy::spawn<Files>();
  Labelled l = p.make_labelled("abc").get();
  EXPECT_EQ(l.label, "label:abc");
  ASSERT_TRUE(l.fd);
  EXPECT_EQ(read_all(l.fd.get()), "abc");
  EXPECT_EQ(p.read_labelled(Labelled{memfd_with("xyz"), "mine"}).get(), "mine=xyz");
}

TEST(Descriptors, InAVectorOfStructsBothWays) {
  auto p = procxy::spawn<Files>();
  std::vector<Labelled> v;
  v.push_back({memfd_with("first"), "a"});
  v.push_back({memfd_with("second"), "b"});
  auto back = p.swap_labels(std::move(v)).get();
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].label, "b");
  EXPECT_EQ(read_all(back[0].fd.get()), "first");
  EXPECT_EQ(back[1].label, "a");
  EXPECT_EQ(read_all(back[1].fd.get()), "second");
}

TEST(Descriptors, InsideAVectorAndAnOptionalBothWays) {
  auto p = procxy::spawn<Files>();
  std::vector<procxy::unique_fd> v = p.make_many(5).get();
  ASSERT_EQ(v.size(), 5u);
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(read_all(v[static_cast<std::size_t>(i)].get()), std::to_string(i));
  std::vector<procxy::unique_fd> mine;
  mine.push_back(memfd_with("a"));
  mine.push_back(memfd_with("b"));
  mine.push_back(memfd_with("c"));
  EXPECT_EQ(p.read_each(std::move(mine)).get(), "a;b;c;");
  auto some = p.maybe(true).get();
  ASSERT_TRUE(some && *some);
  EXPECT_EQ(read_all(some->get()), "engaged");
  EXPECT_FALSE(p.maybe(false).get().has_value());
}

TEST(Descriptors, AnEmptyUniqueFdCrossesAsEmpty) {
  auto p = procxy::spawn<Files>();
  EXPECT_TRUE(p.is_empty(procxy::unique_fd()).get());
  EXPECT_FALSE(p.is_empty(memfd_with("x")).get());
}

TEST(Descriptors, AsTheArgumentOfACallbackTheChildCalls) {
  auto p = procxy::spawn<Files>();
  std::string seen;
  bool was_cloexec = false;
  p.hand_back(
       [&](procxy::unique_fd fd) {
         was_cloexec = cloexec(fd.get());
         seen = read_all(fd.get());
       },
       "via a callback")
      .get();
  EXPECT_EQ(seen, "via a callback");
  EXPECT_TRUE(was_cloexec);
}

TEST(Descriptors, AsTheResultOfACallbackTheChildCalls) {
  auto p = procxy::spawn<Files>();
  EXPECT_EQ(p.ask_for([] { return memfd_with("the parent's answer"); }).get(),
            "the parent's answer");
}

TEST(Descriptors, AsAnEventArgument) {
  auto p = procxy::spawn<Files>();
  std::string seen;
  bool was_cloexec = false;
  auto sub = p.got().on([&](const procxy::unique_fd& fd) {
    was_cloexec = cloexec(fd.get());
    seen = read_all(fd.get());
  });
  p.emit_memfd("an event's descriptor").get();  // listeners ran before the reply completes
  EXPECT_EQ(seen, "an event's descriptor");
  EXPECT_TRUE(was_cloexec);
}

// With a callback_executor the arguments wait, boxed, for the executor's thread: the descriptor
// waits with them, and is the listener's or callback's when it runs.
TEST(Descriptors, ThroughACallbackExecutorToCallbacksAndListeners) {
  procxy_test::serial_executor ex;
  auto p = procxy::spawn<Files>({.callback_executor = ex.post()});
  std::string from_callback, from_event;
  std::thread::id callback_thread, listener_thread;
  auto sub = p.got().on([&](const procxy::unique_fd& fd) {
    listener_thread = std::this_thread::get_id();
    from_event = read_all(fd.get());
  });
  p.hand_back(
       [&](procxy::unique_fd fd) {
         callback_thread = std::this_thread::get_id();
         from_callback = read_all(fd.get());
       },
       "to the executor")
      .get();
  p.emit_memfd("an event, to the executor").get();
  EXPECT_EQ(from_callback, "to the executor");
  EXPECT_EQ(from_event, "an event, to the executor");
  EXPECT_EQ(callback_thread, ex.id());
  EXPECT_EQ(listener_thread, ex.id());
}

TEST(Descriptors, AnEventfdIsSharedWithTheChild) {
  auto p = procxy::spawn<Files>();
  procxy::unique_fd efd(::eventfd(0, EFD_CLOEXEC));
  ASSERT_TRUE(efd);
  std::uint64_t five = 5;
  ASSERT_EQ(::write(efd.get(), &five, sizeof five), static_cast<ssize_t>(sizeof five));
  EXPECT_EQ(p.kind(efd.dup()).get(), "anon_inode:[eventfd]");
  EXPECT_EQ(p.eventfd_take(efd.dup()).get(), 5u);  // the child read our counter
  p.eventfd_add(efd.dup(), 7).get();
  std::uint64_t v = 0;
  ASSERT_EQ(::read(efd.get(), &v, sizeof v), static_cast<ssize_t>(sizeof v));
  EXPECT_EQ(v, 7u);  // and added to it
}

TEST(Descriptors, ASocketEndTalksToTheParent) {
  auto p = procxy::spawn<Files>();
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  procxy::unique_fd mine(sv[0]), theirs(sv[1]);
  ASSERT_EQ(::write(mine.get(), "hello", 5), 5);
  EXPECT_EQ(p.socket_echo_upper(std::move(theirs)).get(), "HELLO");
  char buf[16] = {};
  ASSERT_EQ(::read(mine.get(), buf, sizeof buf), 5);
  EXPECT_EQ(std::string(buf, 5), "HELLO");
}

TEST(Descriptors, APidfdCrossesBothWays) {
  auto p = procxy::spawn<Files>();
  const int child = p.my_pid().get();
  procxy::unique_fd theirs = p.own_pidfd().get();
  ASSERT_TRUE(theirs);
  EXPECT_EQ(kind_of(theirs.get()), "anon_inode:[pidfd]");
  EXPECT_EQ(pid_of_pidfd(theirs.get()), child);
  procxy::unique_fd ours(static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0)));
  ASSERT_TRUE(ours);
  EXPECT_EQ(p.pid_of(std::move(ours)).get(), static_cast<int>(::getpid()));
}

TEST(Descriptors, AFileOpenedByThePathOnlyTheParentCanSee) {
  auto p = procxy::spawn<Files>();
  char path[] = "/tmp/procxy-fd-test-XXXXXX";
  procxy::unique_fd f(::mkostemp(path, O_CLOEXEC));
  ASSERT_TRUE(f);
  ASSERT_EQ(::write(f.get(), "on disk", 7), 7);
  ::lseek(f.get(), 0, SEEK_SET);
  ::unlink(path);  // the child cannot open it by name any more
  EXPECT_EQ(p.read_file(std::move(f)).get(), "on disk");
}

// The per-message limit (spawn_options::max_descriptors_per_message), both directions: more on
// send fails that call with serialization_error (nothing sent, the proxy keeps working); a
// child's result over it fails the call the same way, from the child.
TEST(Descriptors, MoreThanTheLimitOnSendIsASerializationError) {
  auto p = procxy::spawn<Files>({.max_descriptors_per_message = 3});
  std::vector<procxy::unique_fd> four;
  for (int i = 0; i < 4; ++i) four.push_back(memfd_with("x"));
  auto f = p.count(std::move(four));
  EXPECT_THROW(f.get(), procxy::serialization_error);
  std::vector<procxy::unique_fd> three;
  for (int i = 0; i < 3; ++i) three.push_back(memfd_with("x"));
  EXPECT_EQ(p.count(std::move(three)).get(), 3u);
}

TEST(Descriptors, MoreThanTheLimitInTheChildsResultIsASerializationErrorThere) {
  auto p = procxy::spawn<Files>({.max_descriptors_per_message = 3});
  EXPECT_EQ(p.make_many(3).get().size(), 3u);
  try {
    p.make_many(4).get();
    FAIL() << "four descriptors crossed a limit of three";
  } catch (const procxy::serialization_error& e) {
    EXPECT_NE(std::string(e.what()).find("max_descriptors_per_message (3)"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(p.make_many(2).get().size(), 2u);  // and it keeps serving
}

// Its descriptors were the child's after the first attempt: an idempotent call that carries
// descriptors times out without being sent again.
TEST(Descriptors, ACallCarryingDescriptorsIsNotRetried) {
  auto p = procxy::spawn<Files>();
  std::vector<procxy::unique_fd> v;
  v.push_back(memfd_with("r"));
  auto f = p.with({.timeout = 50ms, .retries = 2}).count_slowly(std::move(v), 300);
  EXPECT_THROW(f.get(), procxy::timeout_error);
  EXPECT_EQ(p.stats().calls_retried, 0u);
  auto g = p.with({.timeout = 50ms, .retries = 2}).count_slowly({}, 300);  // none: retried
  EXPECT_THROW(g.get(), procxy::timeout_error);
  EXPECT_EQ(p.stats().calls_retried, 2u);
}

TEST(Descriptors, ALimitPastTheKernelsFailsTheSpawn) {
  EXPECT_THROW(procxy::spawn<Files>({.max_descriptors_per_message = 254}), procxy::spawn_error);
}

TEST(Descriptors, ManyCallsWithDescriptorsInFlightEachGetTheirOwn) {
  auto p = procxy::spawn<Files>();
  std::vector<procxy::future<std::string>> out;
  for (int i = 0; i < 200; ++i) out.push_back(p.read_file(memfd_with("n" + std::to_string(i))));
  for (int i = 0; i < 200; ++i)
    EXPECT_EQ(out[static_cast<std::size_t>(i)].get(), "n" + std::to_string(i));
}

}  // namespace
