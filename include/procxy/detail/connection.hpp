// procxy/detail/connection.hpp — one end of a framed, bidirectional channel.
//
// The connection is symmetric: both the parent and the child own one. It sends frames
// (thread-safe, writes coalesced under contention), matches replies to pending requests, and
// hands incoming requests to its dispatch thread ("E"): the object's thread in the child, the
// proxy's dispatch thread in the parent. See docs/design.md "Threads" for the reading rules
// (leader/follower: a thread waiting for a reply reads the socket itself, so a plain call costs
// one write and one read per side with no thread hop).
//
// The connection works over any connected stream fd: a socketpair between processes, or between
// two threads in one process (the tests use that).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "procxy/detail/buffer.hpp"
#include "procxy/detail/codec.hpp"
#include "procxy/detail/wire.hpp"
#include "procxy/future.hpp"

namespace procxy::detail {

using clock = std::chrono::steady_clock;
inline constexpr clock::time_point no_deadline = clock::time_point::max();

struct frame {
  frame_header header;
  byte_buffer body;
};

class connection;

// Receives the requests (non-reply frames) of a connection, on its dispatch thread.
class request_handler {
 public:
  virtual ~request_handler() = default;
  virtual void handle(frame&& f, connection& c) = 0;
  // An event frame dropped by backpressure (drop_oldest): decode and discard its arguments.
  virtual void discard(frame& /*f*/, connection& /*c*/) {}
};

// Completes `st` from a reply body: reply_value carries the value, reply_error an error payload
// (typed; see method.hpp).
// `what` names the call ("Calculator::add"), `peer_pid` the process that replied.
struct reply_context {
  const char* what;
  int peer_pid;
};
// A decoder must consume the whole body and call expect_end() *before* completing `st`: a reply
// with trailing bytes is a protocol_error for that call too, not a success.
using reply_decoder = void (*)(state_base& st, message_kind kind, decoder& body, const reply_context& ctx);
inline void expect_end(decoder& d) {
  if (!d.reader().at_end()) throw protocol_error("procxy: trailing bytes after a reply");
}

// Calls beyond this many in flight are held for the next flush instead of written one by one.
inline constexpr std::size_t defer_after_in_flight = 8;

struct connection_stats {
  std::uint64_t frames_sent = 0;
  std::uint64_t frames_received = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
  std::uint64_t write_syscalls = 0;
  std::size_t pending_calls = 0;
  std::uint64_t calls_timed_out = 0;  // failed with timeout_error
  std::uint64_t calls_retried = 0;    // idempotent calls sent again after a timeout
  // Callbacks (docs/design.md "Callbacks"): functions this side lent that the peer still holds,
  // functions of the peer this side holds, invocations run here / sent, release messages.
  std::size_t callbacks_lent = 0;
  std::int64_t callbacks_held = 0;
  std::uint64_t callback_invocations_in = 0;
  std::uint64_t callback_invocations_out = 0;
  std::uint64_t callback_releases_in = 0;
  std::uint64_t callback_releases_out = 0;
  // Events (docs/design.md "Events"): delivered to the listeners, dropped by drop_oldest
  // backpressure (never delivered), subscribe/unsubscribe messages sent, property updates
  // received.
  std::uint64_t events_received = 0;
  std::uint64_t events_dropped = 0;
  std::size_t events_queued_peak = 0;  // most events waiting for listeners at once
  // Listeners per event ("Job::progress" → count), for the events the parent has looked at.
  std::map<std::string, std::size_t> event_listeners;
  std::uint64_t event_subscriptions_sent = 0;
  std::uint64_t property_updates = 0;
};

class connection final : public driver, public std::enable_shared_from_this<connection> {
 public:
  enum class side { parent, child };

  // Takes ownership of `fd` (a connected stream socket, CLOEXEC).
  connection(int fd, side s, std::size_t max_message_size);
  ~connection() override;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  // Set before any traffic: who handles requests, and which thread is the dispatch thread.
  void set_handler(request_handler* h) noexcept { handler_ = h; }
  void set_dispatch_thread(std::thread::id id) noexcept { e_thread_.store(id, std::memory_order_release); }
  bool on_dispatch_thread() const noexcept {
    return std::this_thread::get_id() == e_thread_.load(std::memory_order_acquire);
  }

  // Called once, on the thread that found the disconnect, with its cause (EOF: nullptr, or a
  // protocol_error). Returns the error pending and later calls fail with.
  std::function<std::exception_ptr(std::exception_ptr cause)> on_disconnect;

  // Sends a request frame (header already in `frame`, id filled in here) and registers `st` to
  // be completed by the reply. If the connection is broken, `st` fails at once with its reason.
  // `fatal_timeout`: expiry breaks the connection with a spawn_error (the construct call).
  // `retries` > 0 (idempotent calls only): on expiry the frame is sent again, as a new request
  // with a new deadline `retry_timeout` later, up to that many times, before the call fails.
  void call(byte_buffer& frame, state_ptr<state_base> st, reply_decoder decode,
            clock::time_point deadline, const char* what, bool fatal_timeout = false,
            int retries = 0, std::chrono::milliseconds retry_timeout = {});

  // Called (outside locks, on the thread that noticed) after a call finally timed out, with its
  // name. The proxy uses it for timeout_policy::kill_child.
  std::function<void(const char* what)> on_call_timeout;

  // Sends one complete frame (header + body). Thread-safe; concurrent senders are coalesced
  // into one write by whichever thread is writing.
  void send(std::span<const std::byte> frame);
  // `defer`: may be held for the next flush trigger instead of written now.
  void send(std::span<const std::byte> frame, bool defer);
  // One-way frames (events, notifications): after everything this thread sent before (the
  // dispatch thread's held-back output included), coalesced, and written within about half a
  // millisecond by run_flusher() even if the sender sends nothing more.
  void send_one_way(std::span<const std::byte> frame);
  // The child: one-way frames deferred inside a method are written by a flusher thread (started
  // on the first such frame, detached; it keeps the connection alive and ends after stop()).
  void enable_flusher();
  // Writes out everything held back (deferred calls; E's coalesced replies when called on E).
  void flush();

  // Runs the dispatch loop on the calling thread (which becomes the dispatch thread) until
  // stop() or a disconnect. `background_reads`: whether this loop also reads the socket when no
  // caller is waiting (parent) — the child's object thread always reads when it is idle.
  void run_dispatch_loop();
  // The child: run (on the object thread) before each reply is built — the property snapshot.
  std::function<void()> before_reply;
  // Run by run_dispatch_loop on the dispatch thread as its very last step (set before the loop).
  std::function<void()> on_dispatch_exit;
  // Makes run_dispatch_loop return after the item it is running. Thread-safe, idempotent.
  void stop();

  // Fails every pending call with `e` and refuses new ones (first reason wins). Thread-safe.
  void break_with(std::exception_ptr e);
  bool broken() const;
  std::exception_ptr broken_reason() const;
  // Shuts the socket down (wakes any reader with EOF, any writer with EPIPE); the descriptor is
  // closed when the connection is destroyed. Idempotent.
  void close_socket() noexcept;
  // Half-closes: no more frames will be sent by this side.
  void shutdown_write() noexcept;

  std::size_t max_message_size() const noexcept { return max_message_size_; }
  // The callback registry of this connection (detail/callback.hpp).
  codec_context& callbacks() noexcept { return *callbacks_; }
  // The process at the other end (for error reports); set once before traffic.
  void set_peer_pid(int pid) noexcept { peer_pid_ = pid; }
  int peer_pid() const noexcept { return peer_pid_; }
  // Throws serialization_error if `frame` (header included) is larger than the peer accepts.
  void check_size(const byte_buffer& frame, const char* what) const;

  // Events (parent): at most `max` received events queued or running (0: no bound). Past it,
  // `drop_oldest` drops the oldest not yet started (counted), else nobody reads the socket until
  // listeners caught up, so the child's emit blocks (docs/design.md "Events: backpressure").
  void set_event_limit(std::size_t max, bool drop_oldest) noexcept {
    max_events_ = max;
    drop_oldest_ = drop_oldest;
  }
  // An event counted on arrival has been handled (its listeners ran, or it was discarded).
  void event_done();

  // Counted by the event layer (event_hub.hpp, parent_handler), reported by stats().
  std::atomic<std::uint64_t> events_received{0}, event_subscriptions_sent{0}, property_updates{0};

  // Wakes every thread waiting for a reply or reading (a state completed, or work arrived,
  // outside the reading path: the user's callback executor).
  void wake_waiters();

  connection_stats stats() const;
  bool tracing() const noexcept { return trace_; }
  // Prints one trace line (PROCXY_TRACE=1): "procxy[parent 123] <text>".
  void trace(const std::string& text) const;

  // driver
  bool wait(state_base& st, clock::time_point deadline) override;
  void post(std::function<void()> f, bool allow_inline) override;
  void continuation_attached() override {
    flush();
    request_read();
  }

 private:
  struct pending_call {
    state_ptr<state_base> st;
    reply_decoder decode;
    clock::time_point deadline;
    const char* what;
    bool fatal_timeout;
    struct retry {
      byte_buffer frame;
      int left;
      std::chrono::milliseconds timeout;
    };
    std::shared_ptr<retry> again;  // idempotent calls only
    bool in_task = false;          // made from a callback running on the user's executor
  };
  struct item {  // one unit of work for the dispatch thread
    frame f;
    std::function<void()> task;  // set for posted tasks, else `f` is a frame
  };

  // Reads what is available (waiting until `deadline` at most) and returns the complete frames.
  // Caller holds the reading role. Returns false on timeout with nothing read.
  bool read_batch(clock::time_point deadline, bool with_wakeup, std::vector<frame>& out);
  void extract_frames(std::vector<frame>& out);
  // Routes frames in order: replies complete directly when nothing is queued for E; everything
  // else goes through E's queue. Caller does not hold the reading role. Takes mu_.
  void route(std::vector<frame>& batch, std::unique_lock<std::mutex>& lk);
  void complete(frame& f);
  // Decodes the reply `f` into `pc`'s state (complete() finds `pc`, or defers this behind the
  // executor's backlog).
  void finish(pending_call& pc, frame& f);
  void run_item(item& it);
  // Runs queued items on E until the queue is empty. lk held on entry and exit.
  void drain_queue(std::unique_lock<std::mutex>& lk);
  void disconnect(std::exception_ptr cause);
  void expire_deadlines(std::unique_lock<std::mutex>& lk);
  void wake_dispatch_thread();
  void flush_corked();
  void write_all(const std::byte* p, std::size_t n);
  // Writes wpending_ until it stays empty. wmu_ held on entry and exit; sets writing_.
  void drain_writes(std::unique_lock<std::mutex>& lk);
  // Takes the reading role, reads once, routes. lk held on entry and exit.
  bool lead_read(std::unique_lock<std::mutex>& lk, clock::time_point deadline);
  bool background_read_wanted() const;
  bool events_full() const noexcept {  // mu_ held
    return max_events_ > 0 && !drop_oldest_ && events_pending_ >= max_events_;
  }
  // drop_oldest: takes the oldest event not started yet (mu_ held); it is destroyed by the caller
  // after unlocking (destroying its arguments may release callbacks).
  bool drop_oldest_event(std::vector<frame>& dropped_frames, std::vector<std::shared_ptr<void>>& dropped_tasks);
  // Whether a waiting caller leaves reading to the dispatch thread (callbacks are flowing).
  bool defer_to_dispatch(bool on_e) const;
  // Asks the dispatch thread to read now (a blocked writer, or a continuation was attached).
  void request_read();

  const int fd_;
  const int wake_fd_;  // eventfd: wakes E out of poll()
  const side side_;
  const std::size_t max_message_size_;
  const bool trace_;
  request_handler* handler_ = nullptr;
  int peer_pid_ = -1;
  std::unique_ptr<codec_context> callbacks_;
  std::atomic<std::thread::id> e_thread_{};

  // --- write side
  std::mutex wmu_;
  bool writing_ = false;
  byte_buffer wpending_, wspare_;
  std::condition_variable flush_cv_;  // the flusher: one-way frames are waiting
  clock::time_point deferred_since_ = no_deadline;  // under wmu_
  bool flusher_stop_ = false;                       // under wmu_
  bool flusher_enabled_ = false;                    // under wmu_: the child
  bool flusher_started_ = false;                    // under wmu_
  bool flusher_asleep_ = true;                      // under wmu_: in its untimed wait
  void run_flusher();
  byte_buffer corked_;   // E's own output while it works through a batch
  bool e_corked_ = false;  // touched by E only

  // --- read side: rbuf_ is touched only by the thread holding the reading role
  byte_buffer rbuf_;
  std::size_t rpos_ = 0;

  // --- shared state, under mu_
  mutable std::mutex mu_;
  std::condition_variable cv_;    // waiters: a reply was routed, or the reading role is free
  std::condition_variable e_cv_;  // the dispatch thread: work queued, read wanted, stop
  bool reading_ = false;
  bool e_polling_ = false;  // E holds the reading role inside poll() (wake it via wake_fd_)
  bool e_busy_ = false;     // E is running queued items
  bool stopping_ = false;
  bool want_read_ = false;
  bool e_reads_requests_ = false;  // parent: the peer is sending requests; E reads (see lead_read)
  int role_waiters_ = 0;           // waiters asleep until the reading role is free
  int waiters_ = 0;
  std::deque<item> queue_;
  std::unordered_map<std::uint64_t, pending_call> pending_;
  std::unordered_set<std::uint64_t> expired_;  // timed out: a late reply is dropped, not an error
  std::uint64_t next_id_ = 1;
  clock::time_point next_deadline_ = no_deadline;
  std::atomic<clock::rep> last_activity_{0};
  std::exception_ptr broken_;
  bool disconnected_ = false;
  std::size_t events_pending_ = 0;  // event frames routed and not yet done
  std::size_t events_peak_ = 0;
  std::size_t max_events_ = 0;
  bool drop_oldest_ = false;
  std::atomic<std::uint64_t> events_dropped_{0};

  std::atomic<std::uint64_t> frames_sent_{0}, frames_received_{0}, bytes_sent_{0},
      bytes_received_{0}, write_syscalls_{0}, calls_timed_out_{0}, calls_retried_{0};
};

// Builds a frame in `out`: header (id 0, filled by call()) followed by whatever `body` encodes.
// `ctx`: the connection's callback registry, for bodies that may carry functions.
template <class F>
void build_frame(byte_buffer& out, message_kind kind, std::uint64_t id, F&& body,
                 codec_context* ctx = nullptr) {
  out.clear();
  out.extend(header_size);
  encoder enc(out, ctx);
  body(enc);
  frame_header h;
  h.kind = kind;
  h.id = id;
  std::size_t n = out.size() - header_size;
  if (n > 0xffffffffu) throw serialization_error("procxy: message body exceeds 4 GiB");
  h.size = static_cast<std::uint32_t>(n);
  std::memcpy(out.data(), &h, header_size);
}

}  // namespace procxy::detail
