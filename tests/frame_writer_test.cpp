// The channel's write side alone: a frame_writer over a scripted transport and a stand-in for
// the I/O thread. No connection, no process.
#include "procxy/detail/frame_writer.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "procxy/error.hpp"
#include "procxy/unique_fd.hpp"

namespace {

using namespace std::chrono_literals;
using procxy::detail::clock;
using procxy::detail::frame_writer;
using procxy::detail::hold;
using procxy::detail::no_deadline;
using procxy::detail::transport;

// A transport that records what is written and takes at most `room` bytes until given more.
class scripted_transport final : public transport {
 public:
  std::size_t write_some(const std::byte* p, std::size_t n) override {
    std::lock_guard lk(mu);
    ++writes;
    if (fail) throw procxy::terminated("peer gone");
    const std::size_t k = std::min(n, room);
    room -= k;
    out.append(reinterpret_cast<const char*>(p), k);
    return k;
  }
  // Records where each write that carried descriptors began, how much it took, and which.
  std::size_t write_with_descriptors(const std::byte* p, std::size_t n,
                                     std::span<const int> fds) override {
    std::size_t at;
    {
      std::lock_guard lk(mu);
      at = out.size();
    }
    const std::size_t k = write_some(p, n);
    std::lock_guard lk(mu);
    if (k > 0) fd_writes.push_back({at, k, std::vector<int>(fds.begin(), fds.end())});
    return k;
  }
  std::size_t read(std::byte*, std::size_t, bool&) override { return 0; }
  wait_result wait(bool, bool, wake_slot, time_point) override { return {}; }
  void wake(wake_slot) noexcept override {}
  void shutdown() noexcept override {}
  void shutdown_write() noexcept override {
    std::lock_guard lk(mu);
    write_shut_at = out.size();
  }
  void shutdown_read() noexcept override {}
  bool can_pass_descriptors() const noexcept override { return false; }
  bool writes_are_syscalls() const noexcept override { return true; }
  const char* name() const noexcept override { return "scripted"; }

  std::string written() {
    std::lock_guard lk(mu);
    return out;
  }
  void give(std::size_t n) {
    std::lock_guard lk(mu);
    room += n;
  }

  std::mutex mu;
  std::string out;
  std::size_t room = std::size_t(-1);
  int writes = 0;
  bool fail = false;
  std::size_t write_shut_at = std::size_t(-1);
  struct fd_write {
    std::size_t at, took;
    std::vector<int> fds;
  };
  std::vector<fd_write> fd_writes;
};

// The I/O thread as the writer sees it: counts wake-ups; `looks_at` is when it looks unwoken.
class fake_io final : public frame_writer::io_thread {
 public:
  void wake_for_writes() override {
    std::lock_guard lk(mu);
    ++wakes;
    cv.notify_all();
  }
  bool is_current() const noexcept override { return std::this_thread::get_id() == me.load(); }
  clock::time_point looks_again_at() const noexcept override { return looks_at.load(); }

  std::mutex mu;
  std::condition_variable cv;
  int wakes = 0;
  std::atomic<std::thread::id> me{};
  std::atomic<clock::time_point> looks_at{no_deadline};
};

std::span<const std::byte> bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

struct WriterTest : ::testing::Test {
  scripted_transport t;
  fake_io io;
  frame_writer w{t, io, std::chrono::microseconds(2000)};
};

TEST_F(WriterTest, AFrameNotHeldIsWrittenAtOnceInOrder) {
  w.enqueue(bytes("one"), hold::none);
  w.enqueue(bytes("two"), hold::none);
  EXPECT_EQ(t.written(), "onetwo");
  EXPECT_EQ(t.writes, 2);
  EXPECT_EQ(w.frames(), 2u);
  EXPECT_EQ(w.bytes(), 6u);
  EXPECT_EQ(w.write_calls(), 2u);
  EXPECT_EQ(w.due(), no_deadline);
}

TEST_F(WriterTest, HeldFramesWaitForCompanyAndGoOutTogether) {
  auto before = clock::now();
  w.enqueue(bytes("a"), hold::call);
  w.enqueue(bytes("b"), hold::call);
  EXPECT_EQ(t.written(), "");
  // Due a linger after the first was held.
  EXPECT_GE(w.due(), before + 2ms);
  EXPECT_LE(w.due(), clock::now() + 2ms);
  w.enqueue(bytes("c"), hold::none);  // carries them: one write
  EXPECT_EQ(t.written(), "abc");
  EXPECT_EQ(t.writes, 1);
  EXPECT_EQ(w.due(), no_deadline);
}

TEST_F(WriterTest, FlushWritesHeldFramesAndIsANoOpWhenNothingIsHeld) {
  w.flush();
  EXPECT_EQ(t.writes, 0);
  w.enqueue(bytes("x"), hold::one_way);
  w.flush();
  EXPECT_EQ(t.written(), "x");
  EXPECT_EQ(w.due(), no_deadline);
}

TEST_F(WriterTest, HeldOneWayFramesAreDueSooner) {
  auto before = clock::now();
  w.enqueue(bytes("call"), hold::call);
  const auto call_due = w.due();
  w.enqueue(bytes("event"), hold::one_way);
  EXPECT_LT(w.due(), call_due);
  EXPECT_GE(w.due(), before + frame_writer::oneway_delay);
  EXPECT_LE(w.due(), clock::now() + frame_writer::oneway_delay);
}

TEST_F(WriterTest, HoldingWakesTheIoThreadOnlyIfItWouldLookTooLate) {
  io.looks_at = clock::now() + 1ms;  // looks again soon: within the linger, not the delay
  w.enqueue(bytes("a"), hold::call);
  EXPECT_EQ(io.wakes, 0);
  w.enqueue(bytes("b"), hold::one_way);  // due in 0.5 ms: 1 ms is too late
  EXPECT_EQ(io.wakes, 1);
  w.enqueue(bytes("c"), hold::one_way);  // already held one-way: no second wake-up
  EXPECT_EQ(io.wakes, 1);
  w.flush();
  io.looks_at = no_deadline;  // asleep until woken
  w.enqueue(bytes("d"), hold::call);
  EXPECT_EQ(io.wakes, 2);
  w.enqueue(bytes("e"), hold::call);  // already held: no second wake-up
  EXPECT_EQ(io.wakes, 2);
}

TEST_F(WriterTest, HeldFramesGoOutWhenEnoughHaveGathered) {
  std::string chunk(1000, 'z');
  std::size_t sent = 0;
  while (t.written().empty()) {
    w.enqueue(bytes(chunk), hold::call);
    sent += chunk.size();
    ASSERT_LE(sent, frame_writer::flush_at + chunk.size());
  }
  EXPECT_GE(sent, frame_writer::flush_at);
  EXPECT_EQ(t.written().size(), sent);
}

TEST_F(WriterTest, AFullTransportPassesTheWriteToTheIoThreadAndNobodyWaits) {
  t.room = 4;
  w.enqueue(bytes("hello world"), hold::none);  // returns: the rest is the I/O thread's
  EXPECT_TRUE(w.blocked());
  EXPECT_EQ(io.wakes, 1);
  EXPECT_EQ(t.written(), "hell");
  w.enqueue(bytes("!"), hold::none);  // appends behind; the role is taken
  EXPECT_EQ(t.written(), "hell");
  t.give(100);
  std::thread as_io([&] {
    io.me = std::this_thread::get_id();
    w.continue_blocked();
  });
  as_io.join();
  EXPECT_FALSE(w.blocked());
  EXPECT_EQ(t.written(), "hello world!");
  w.continue_blocked();  // not blocked: nothing to do
  EXPECT_EQ(t.written(), "hello world!");
}

TEST_F(WriterTest, AHandedOffFrameIsWrittenByTheIoThreadWithWhatJoinsItMeanwhile) {
  w.enqueue(bytes("r1"), hold::handoff);  // the sender runs on; the I/O thread writes
  EXPECT_TRUE(w.blocked());
  EXPECT_EQ(io.wakes, 1);
  EXPECT_EQ(t.writes, 0);
  EXPECT_EQ(w.due(), no_deadline);        // not held: due at once, through the wake-up
  w.enqueue(bytes("r2"), hold::handoff);  // joins the queue: no second wake-up
  w.enqueue(bytes("r3"), hold::none);     // the role is taken: appended, not written here
  EXPECT_EQ(io.wakes, 1);
  EXPECT_EQ(t.writes, 0);
  std::thread as_io([&] {
    io.me = std::this_thread::get_id();
    w.continue_blocked();
  });
  as_io.join();
  EXPECT_FALSE(w.blocked());
  EXPECT_EQ(t.written(), "r1r2r3");
  EXPECT_EQ(t.writes, 1);
  // Nobody writing now: a frame not handed off is written by its sender again.
  w.enqueue(bytes("r4"), hold::none);
  EXPECT_EQ(t.written(), "r1r2r3r4");
  EXPECT_EQ(t.writes, 2);
}

TEST_F(WriterTest, TheIoThreadWritesWhatItHandsOffItselfAtOnce) {
  std::thread as_io([&] {
    io.me = std::this_thread::get_id();
    w.enqueue(bytes("own"), hold::handoff);
  });
  as_io.join();
  EXPECT_EQ(t.written(), "own");
  EXPECT_FALSE(w.blocked());
  EXPECT_EQ(io.wakes, 0);
}

TEST_F(WriterTest, TheIoThreadStaysTheWriterWhileTheTransportIsFull) {
  t.room = 2;
  w.enqueue(bytes("abcdef"), hold::none);
  ASSERT_TRUE(w.blocked());
  const int wakes = io.wakes;
  std::thread as_io([&] {
    io.me = std::this_thread::get_id();
    w.continue_blocked();  // full again at once: blocked, but it does not wake itself
    EXPECT_TRUE(w.blocked());
    t.give(100);
    w.continue_blocked();
  });
  as_io.join();
  EXPECT_EQ(io.wakes, wakes);
  EXPECT_EQ(t.written(), "abcdef");
}

TEST_F(WriterTest, ABoundedSenderWaitsAtHighWaterUntilTheQueueShrinks) {
  t.room = 0;
  std::string big(frame_writer::high_water, 'q');
  w.enqueue(bytes(big), hold::none);
  ASSERT_TRUE(w.blocked());
  w.enqueue(bytes("u"), hold::none);  // not bounded: never waits
  std::atomic<bool> sent{false};
  std::thread emitter([&] {
    w.enqueue(bytes("e"), hold::none, /*bounded=*/true);
    sent = true;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(sent.load());
  t.give(std::size_t(-1) / 2);
  io.me = std::this_thread::get_id();
  w.continue_blocked();
  emitter.join();
  EXPECT_TRUE(sent.load());
  EXPECT_EQ(t.written(), big + "ue");
}

TEST_F(WriterTest, CloseRefusesFramesAndReleasesABoundedSender) {
  t.room = 0;
  w.enqueue(bytes(std::string(frame_writer::high_water, 'q')), hold::none);
  std::atomic<int> outcome{0};
  std::thread emitter([&] {
    try {
      w.enqueue(bytes("e"), hold::none, true);
      outcome = 1;
    } catch (const procxy::terminated&) {
      outcome = 2;
    }
  });
  std::this_thread::sleep_for(20ms);
  w.close();
  emitter.join();
  EXPECT_EQ(outcome.load(), 2);
  EXPECT_THROW(w.enqueue(bytes("late"), hold::none), procxy::terminated);
  w.close();  // idempotent
}

TEST_F(WriterTest, AWriteErrorReachesTheWriterAndClosesTheQueue) {
  w.enqueue(bytes("x"), hold::call);
  t.fail = true;
  EXPECT_THROW(w.enqueue(bytes("y"), hold::none), procxy::terminated);
  EXPECT_THROW(w.enqueue(bytes("z"), hold::none), procxy::terminated);
  w.flush();    // never throws
  w.drain(1s);  // closed: returns at once
}

TEST_F(WriterTest, FlushSwallowsAWriteError) {
  w.enqueue(bytes("x"), hold::call);
  t.fail = true;
  w.flush();
  EXPECT_THROW(w.enqueue(bytes("y"), hold::none), procxy::terminated);
}

TEST_F(WriterTest, ShutdownWriteWaitsForTheQueue) {
  t.room = 3;
  w.enqueue(bytes("abcdef"), hold::none);
  w.shutdown_write();
  EXPECT_EQ(t.write_shut_at, std::size_t(-1));  // bytes still queued
  t.give(100);
  io.me = std::this_thread::get_id();
  w.continue_blocked();
  EXPECT_EQ(t.write_shut_at, 6u);
  scripted_transport t2;
  frame_writer idle{t2, io, 2ms};
  idle.shutdown_write();  // nothing queued: at once
  EXPECT_EQ(t2.write_shut_at, 0u);
}

TEST_F(WriterTest, DrainWaitsUntilEverythingIsWritten) {
  t.room = 1;
  w.enqueue(bytes("abc"), hold::none);
  std::thread as_io([&] {
    io.me = std::this_thread::get_id();
    std::this_thread::sleep_for(30ms);
    t.give(100);
    w.continue_blocked();
  });
  auto start = clock::now();
  w.drain(5s);
  EXPECT_EQ(t.written(), "abc");
  EXPECT_LT(clock::now() - start, 4s);
  as_io.join();
}

// Many senders, a transport that takes a few bytes at a time and is often full, and an I/O
// thread that continues whenever it is woken: every frame arrives whole, each sender's in order.
// ---- descriptors (docs/design.md "Descriptors") ------------------------------------------------

std::vector<procxy::unique_fd> open_null(int n) {
  std::vector<procxy::unique_fd> v;
  for (int i = 0; i < n; ++i) v.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  return v;
}
bool is_open(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

TEST_F(WriterTest, AFrameWithDescriptorsStartsAWriteThatCarriesThemAndClosesThemOnceSent) {
  auto b = open_null(2), d = open_null(1);
  const std::vector<int> b_fds{b[0].get(), b[1].get()}, d_fds{d[0].get()};
  w.enqueue(bytes("aa"), hold::call);
  w.enqueue(bytes("BB"), hold::call, false, &b);
  w.enqueue(bytes("cc"), hold::call);
  EXPECT_TRUE(b.empty());                         // taken by the writer
  EXPECT_TRUE(is_open(b_fds[0]));                 // held: not sent yet
  w.enqueue(bytes("DD"), hold::none, false, &d);  // flushes all four
  EXPECT_EQ(t.written(), "aaBBccDD");
  ASSERT_EQ(t.fd_writes.size(), 2u);
  EXPECT_EQ(t.fd_writes[0].at, 2u);  // BB begins its write, cc goes with it
  EXPECT_EQ(t.fd_writes[0].took, 4u);
  EXPECT_EQ(t.fd_writes[0].fds, b_fds);
  EXPECT_EQ(t.fd_writes[1].at, 6u);  // the write before DD stopped at its first byte
  EXPECT_EQ(t.fd_writes[1].took, 2u);
  EXPECT_EQ(t.fd_writes[1].fds, d_fds);
  for (int fd : b_fds) EXPECT_FALSE(is_open(fd));  // sent: this side's duplicates are closed
  EXPECT_FALSE(is_open(d_fds[0]));
}

TEST_F(WriterTest, DescriptorsWaitWithTheirFrameWhileTheTransportIsFull) {
  auto fds = open_null(1);
  const int fd = fds[0].get();
  t.room = 1;
  io.me = std::this_thread::get_id();  // this thread plays the I/O thread
  w.enqueue(bytes("xy"), hold::none);  // "x" fits; "y" waits
  w.enqueue(bytes("FD"), hold::none, false, &fds);
  EXPECT_EQ(t.written(), "x");
  EXPECT_TRUE(is_open(fd));
  t.give(1);
  w.continue_blocked();  // "y" only: the frame with descriptors begins a write of its own
  EXPECT_EQ(t.written(), "xy");
  EXPECT_TRUE(t.fd_writes.empty());
  EXPECT_TRUE(is_open(fd));
  t.give(1);
  w.continue_blocked();  // its first byte, with the descriptor
  EXPECT_EQ(t.written(), "xyF");
  ASSERT_EQ(t.fd_writes.size(), 1u);
  EXPECT_EQ(t.fd_writes[0].at, 2u);
  EXPECT_FALSE(is_open(fd));
  t.give(10);
  w.continue_blocked();
  EXPECT_EQ(t.written(), "xyFD");
  EXPECT_EQ(t.fd_writes.size(), 1u);  // the rest of the frame carries none
}

TEST_F(WriterTest, CloseClosesTheDescriptorsOfFramesNotSent) {
  auto fds = open_null(3);
  const int first = fds[0].get(), last = fds[2].get();
  w.enqueue(bytes("zz"), hold::call, false, &fds);  // held: nobody writes it now
  EXPECT_TRUE(is_open(first));
  w.close();
  EXPECT_FALSE(is_open(first));
  EXPECT_FALSE(is_open(last));
  EXPECT_EQ(t.written(), "");
  w.flush();  // nothing goes out after close, and nothing is sent with a closed descriptor
  EXPECT_TRUE(t.fd_writes.empty());
}

TEST_F(WriterTest, ConcurrentSendersKeepFramesWholeAndInOrder) {
  constexpr int senders = 4, per = 2000;
  t.room = 0;
  std::atomic<bool> done{false};
  std::thread as_io([&] {
    io.me = std::this_thread::get_id();
    unsigned seed = 7;
    while (!done.load() || w.blocked()) {
      {
        std::unique_lock lk(io.mu);
        io.cv.wait_for(lk, 200us);
      }
      seed = seed * 1103515245 + 12345;
      t.give(1 + (seed >> 16) % 64);
      w.continue_blocked();
      w.flush();
    }
  });
  std::vector<std::thread> ts;
  for (int s = 0; s < senders; ++s)
    ts.emplace_back([&, s] {
      for (int i = 0; i < per; ++i) {
        std::string f = "<" + std::to_string(s) + ":" + std::to_string(i) + ">";
        w.enqueue(bytes(f), i % 3 == 0 ? hold::call : hold::none, i % 5 == 0);
      }
    });
  for (auto& th : ts) th.join();
  done = true;
  as_io.join();
  w.flush();
  const std::string out = t.written();
  std::vector<int> next(senders, 0);
  std::size_t pos = 0, frames = 0;
  while (pos < out.size()) {
    ASSERT_EQ(out[pos], '<');
    auto colon = out.find(':', pos), end = out.find('>', pos);
    ASSERT_NE(end, std::string::npos);
    int s = std::stoi(out.substr(pos + 1, colon - pos - 1));
    int i = std::stoi(out.substr(colon + 1, end - colon - 1));
    EXPECT_EQ(i, next[s]++) << "sender " << s;
    pos = end + 1;
    ++frames;
  }
  EXPECT_EQ(frames, std::size_t{senders} * per);
  EXPECT_EQ(w.frames(), frames);
}

}  // namespace
