// procxy/detail/frame_writer.hpp — the write side of a channel: one ordered queue of frames,
// the writing role, holding frames back for company, and backpressure for one-way senders.
//
// Any thread may send. Frames go out in the order they were queued. The thread that queues a
// frame while nobody writes takes the writing role and writes; while it writes, others only
// append (they never wait for the writer). When the transport is full the role passes to the
// I/O thread, which continues when the transport is writable: no user thread ever waits for the
// peer to read (docs/design.md "Liveness", point 2). A frame may be held back for company (a
// call past 8 in flight, a one-way frame of a method still running): it goes out with the next
// frame that is not held, at the next flush, or by the I/O thread when due().
//
// The writer knows the transport and the I/O thread (through `io_thread`), nothing else of the
// connection: it is tested alone (tests/frame_writer_test.cpp).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <vector>

#include "procxy/detail/buffer.hpp"
#include "procxy/detail/clock.hpp"
#include "procxy/detail/transport.hpp"

namespace procxy::detail {

// Adds to a statistics counter that only one thread at a time changes (under a lock or a role):
// a plain load and store, no locked read-modify-write; readers on other threads see a value.
inline void bump(std::atomic<std::uint64_t>& counter, std::uint64_t n) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// How long a frame may wait for company: not at all, a linger (calls past 8 in flight,
// releases), or oneway_delay (one-way frames of the dispatch thread inside a request).
// `handoff` waits for nothing either: when nobody writes, the writing role goes to the I/O
// thread at once, so the sender (the child's object thread with more calls already read) runs
// on while the I/O thread writes, and the replies it finishes meanwhile join that write.
enum class hold { none, call, one_way, handoff };

class frame_writer {
 public:
  // The thread that finishes writes the transport could not take and writes held frames when
  // they are due. Given to the writer at construction; it outlives the writer.
  class io_thread {
   public:
    virtual ~io_thread() = default;
    // Makes the I/O thread look at the writer again (blocked(), due()). Called with no lock of
    // the writer held.
    virtual void wake_for_writes() = 0;
    virtual bool is_current() const noexcept = 0;
    // When the I/O thread looks again without being woken; no_deadline if only when woken.
    virtual clock::time_point looks_again_at() const noexcept = 0;
  };

  // Held one-way frames go out within this long; held calls within `linger`.
  static constexpr auto oneway_delay = std::chrono::microseconds(500);
  // A bounded (one-way) sender waits while this much is queued and not yet written.
  static constexpr std::size_t high_water = std::size_t{1} << 20;
  // Held frames go out at once when this much has gathered.
  static constexpr std::size_t flush_at = 64 * 1024;

  frame_writer(transport& t, io_thread& io, std::chrono::microseconds linger);
  frame_writer(const frame_writer&) = delete;
  frame_writer& operator=(const frame_writer&) = delete;

  // Queues one complete frame and writes it now unless `h` lets it wait for company (then the
  // I/O thread writes it by due() if nobody flushes first). `bounded`: wait while high_water
  // bytes are queued and unwritten (a one-way sender faster than the peer reads). Never waits
  // for the peer otherwise. Throws terminated once the writer is closed (or the transport
  // failed); a write error of the transport is thrown to the thread that hit it.
  // `fds`: the descriptors the frame carries (docs/design.md "Descriptors"), taken here and
  // closed once they are sent with the frame's first byte (or when the writer closes).
  void enqueue(std::span<const std::byte> frame, hold h, bool bounded = false,
               std::vector<unique_fd>* fds = nullptr);
  // Writes out everything held back. Never throws, never waits for the peer.
  void flush() noexcept;
  // The I/O thread: the transport is writable again; continue the write it could not take.
  void continue_blocked() noexcept;
  // The transport was full: the I/O thread holds the writing role and waits for writability.
  bool blocked() const noexcept { return blocked_.load(std::memory_order_acquire); }
  // When held frames must go out (no_deadline: none held). Any thread, no lock.
  clock::time_point due() const noexcept;
  // Shuts the transport's write side once everything queued is written.
  void shutdown_write() noexcept;
  // Waits up to `d` until everything queued is written (or the writer closed).
  void drain(std::chrono::milliseconds d);
  // Refuses every later frame (terminated) and releases bounded senders; closes the descriptors
  // of frames not yet sent. Idempotent.
  void close() noexcept;

  // True from a hold::handoff frame until the queue it joined is written (or the writer
  // closed): frames a sender handed off are not yet in the transport. Read by the child's crash
  // handler (a lock-free atomic: async-signal-safe).
  const std::atomic<bool>& handed_off() const noexcept { return handed_off_; }

  std::uint64_t frames() const noexcept { return frames_.load(std::memory_order_relaxed); }
  std::uint64_t bytes() const noexcept { return bytes_.load(std::memory_order_relaxed); }
  std::uint64_t write_calls() const noexcept {
    return write_calls_.load(std::memory_order_relaxed);
  }

 private:
  std::size_t queued_bytes() const noexcept {  // mu_ held
    return pending_.size() + (out_.size() - off_);
  }
  // Writes until nothing is queued or the transport is full (then the I/O thread goes on).
  // mu_ held on entry and exit; the caller has just taken the writing role (writing_).
  void drain_writes(std::unique_lock<std::mutex>& lk);

  transport& t_;
  io_thread& io_;
  const clock::duration linger_;

  std::mutex mu_;
  std::condition_variable cv_;        // the queue emptied or shrank below high_water; closed
  bool writing_ = false;              // someone holds the writing role (out_)
  std::atomic<bool> blocked_{false};  // the transport is full: the I/O thread holds the role
  bool closed_ = false;               // the peer is gone or close() ran: frames are refused
  bool shut_write_ = false;           // shut the write side down once the queue is empty
  int full_waiters_ = 0;              // bounded senders waiting for the queue to shrink
  // Bytes go out in this order: out_[off_..], then pending_.
  byte_buffer pending_, out_;
  std::size_t off_ = 0;
  // Descriptors of queued frames: each leaves with the write that starts at `at`, the position
  // of its frame in the stream of bytes queued (enqueued_ counts them all).
  struct descriptor_mark {
    std::uint64_t at;
    std::vector<unique_fd> fds;
  };
  std::deque<descriptor_mark> marks_;
  std::uint64_t enqueued_ = 0;
  // Held frames waiting since (no_deadline: none); whether they include one-way frames (due
  // sooner). Written under mu_, read by the I/O thread without it.
  std::atomic<clock::rep> held_since_{no_deadline_rep};
  std::atomic<bool> oneway_held_{false};
  std::atomic<bool> handed_off_{false};

  std::atomic<std::uint64_t> frames_{0}, bytes_{0}, write_calls_{0};
};

}  // namespace procxy::detail
