// procxy/detail/connection.hpp — one end of a framed, bidirectional channel.
//
// The connection is symmetric: both the parent and the child own one. It sends frames (any
// thread, never blocking: what the transport cannot take now is left to the I/O thread), matches
// replies to pending requests, and hands incoming requests to its dispatch thread ("E": the
// object's thread in the child, the proxy's dispatch thread in the parent).
//
// Liveness (docs/design.md "Liveness"): each connection owns an I/O thread that never runs user
// code. Any thread may hold the reading role (a caller waiting for its reply, an idle dispatch
// thread: no thread hop on the common path), but a holder gives the role back before it runs any
// user code, and whenever the role has been free for `linger` the I/O thread takes it. A write
// that the transport cannot take completely is finished by the I/O thread: no user thread ever
// waits for the peer to read.
//
// The connection works over any transport (transport.hpp): a socketpair between processes, or
// between two threads in one process (the tests use that).
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
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "procxy/detail/buffer.hpp"
#include "procxy/detail/call_table.hpp"
#include "procxy/detail/codec.hpp"
#include "procxy/detail/frame_writer.hpp"
#include "procxy/detail/protocol.hpp"
#include "procxy/detail/transport.hpp"
#include "procxy/future.hpp"
#include "procxy/stats.hpp"

namespace procxy::detail {

// A received frame's body. Most frames (calls of small arguments, replies, events) fit inline:
// no allocation per frame on the reader, no free on the dispatch thread.
class frame_body {
 public:
  void assign(const std::byte* p, std::size_t n) {
    size_ = n;
    offset_ = 0;
    if (n <= inline_size) {
      if (n != 0) std::memcpy(small_, p, n);
      return;
    }
    big_.clear();
    big_.append(p, n);
  }
  // Takes `buf` whole, the body being its bytes [offset, offset + n), n > inline_size: a big
  // frame read alone into the read buffer is handed over, not copied, so a message is held once
  // while it is decoded, not twice.
  void adopt(byte_buffer&& buf, std::size_t offset, std::size_t n) noexcept {
    big_ = std::move(buf);
    offset_ = offset;
    size_ = n;
  }
  std::span<const std::byte> view() const noexcept {
    return {size_ <= inline_size ? small_ : big_.data() + offset_, size_};
  }
  std::size_t size() const noexcept { return size_; }

 private:
  static constexpr std::size_t inline_size = 40;
  std::size_t size_ = 0;
  std::size_t offset_ = 0;  // of the body in big_ (adopt)
  std::byte small_[inline_size];
  byte_buffer big_;
};

struct frame {
  frame_header header;
  frame_body body;
  // The descriptors that came with it (header.descriptors of them), taken by the values that
  // refer to them; those left are closed with the frame (docs/design.md "Descriptors").
  std::vector<unique_fd> fds;
  std::uint64_t start = 0;  // where it began in the byte stream (the reader's)
};

class connection;

// What the owner of a connection does for it: the parent's proxy core or the child's server.
// Given to the connection at construction. Each hook says which thread runs it.
class endpoint {
 public:
  virtual ~endpoint() = default;
  // A request frame (not a reply, not a callback message), on the dispatch thread.
  virtual void handle(frame&& f, connection& c) = 0;
  // An event frame dropped by backpressure (drop_oldest): decode and discard its arguments.
  virtual void discard(frame& /*f*/, connection& /*c*/) {}
  // The channel failed: `cause` is null at EOF, else the protocol_error (or start timeout). Runs
  // once, on the I/O thread, never on a user's thread. Returns what pending and later calls
  // fail with (reaping the child, its stderr tail: the failure policy lives here).
  virtual std::exception_ptr disconnected(std::exception_ptr cause);
  // A call finally timed out (after its retries), on the I/O thread.
  virtual void call_timed_out(const char* /*what*/) {}
  // Before the dispatch thread sends a reply or an event (the child's property snapshot).
  virtual void before_reply() {}
  // The dispatch loop's last step, on the dispatch thread (the parent's on_exit).
  virtual void dispatch_exit() {}
};

// Calls beyond this many in flight are held for the next flush instead of written one by one.
inline constexpr std::size_t defer_after_in_flight = 8;
// How long the reading role may stay free before the I/O thread takes it (docs/design.md
// "Liveness"): long enough that a caller between two calls takes it back itself.
inline constexpr auto reading_linger = std::chrono::milliseconds(2);

class connection final : public driver, public std::enable_shared_from_this<connection> {
 public:
  enum class side { parent, child };
  struct options {
    side s = side::parent;
    std::size_t max_message_size = std::size_t{256} << 20;
    // Descriptors one frame may carry, either way (docs/design.md "Descriptors").
    std::size_t max_descriptors = 64;
    // Events (parent): at most `max_events` received events queued or running (0: no bound).
    // Past it, `drop_oldest` drops the oldest not yet started (counted), else nobody reads
    // the channel until listeners caught up, so the child's emit blocks (docs/design.md
    // "Events: backpressure"). A dispatch thread waiting for a reply lifts the bound.
    std::size_t max_events = 0;
    bool drop_oldest = false;
    int peer_pid = -1;  // the process at the other end (for error reports)
    // Callbacks (detail/callback.hpp): how many functions this side lends at most, the timeout
    // of two-way invocations it makes (0: none), where exceptions of one-way callbacks run here
    // go (empty: stderr), and the user's serial executor for them (empty: the dispatch thread).
    std::size_t max_callbacks = 100'000;
    std::chrono::milliseconds callback_timeout{0};
    std::function<void(std::exception_ptr)> on_callback_error{};
    std::function<void(std::function<void()>)> callback_executor{};
  };

  // Starts the I/O thread; close() stops it (the owner must call it).
  static std::shared_ptr<connection> create(std::unique_ptr<transport> t,
                                            std::shared_ptr<endpoint> ep, options o);
  ~connection() override;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  bool on_dispatch_thread() const noexcept {
    return std::this_thread::get_id() == e_thread_.load(std::memory_order_acquire);
  }

  // Sends a request frame (header already in `frame`, id filled in here) and registers `st` to
  // be completed by the reply. If the connection is broken, `st` fails at once with its reason.
  // `fatal_timeout`: expiry breaks the connection with a spawn_error (the construct call).
  // `retries` > 0 (idempotent calls only): on expiry the frame is sent again, as a new request
  // with a new deadline `retry_timeout` later, up to that many times, before the call fails.
  // `retry_timeout` is also the timeout `deadline` came from, named by timeout_error.
  // Never blocks on the peer.
  void call(byte_buffer& frame, state_ptr<state_base> st, reply_decoder decode,
            clock::time_point deadline, const char* what, bool fatal_timeout = false,
            int retries = 0, std::chrono::milliseconds retry_timeout = {});

  // Sends one complete frame (header + body). Thread-safe, never blocks on the peer: frames are
  // queued in order and written by whichever thread holds the writing role (the I/O thread when
  // the transport is full). Throws terminated if the connection is closed.
  void send(std::span<const std::byte> frame) { send(frame, false); }
  // `defer`: may be held for the next flush trigger (a waiter, a batch of replies, 64 KiB, or
  // the I/O thread within `linger`) instead of written now: calls past 8 in flight.
  void send(std::span<const std::byte> frame, bool defer);
  // The same for a frame built in `frame`, with the descriptors it carries (taken).
  void send(byte_buffer& frame, bool defer = false);
  // A reply of the dispatch thread. Written at once; when E has 8 or more requests already
  // read and waiting (many calls in flight), the write goes to the I/O thread instead, so E
  // runs the next request while the I/O thread writes, and the replies E finishes meanwhile
  // join that write (docs/design.md "Liveness", point 3). Over a transport whose writes cost
  // no system call (shared memory), always written by E.
  void send_reply(byte_buffer& frame);
  // True while replies handed to the I/O thread are not yet written (the crash handler waits).
  const std::atomic<bool>& replies_handed_off() const noexcept { return writer_.handed_off(); }
  // One-way frames (events, notifications): in order with everything this connection sent
  // before. From the dispatch thread inside a request they are coalesced and written within
  // about half a millisecond by the I/O thread (or with the reply, if that comes first); from
  // any other thread they are written at once. Backpressure: while 1 MiB is queued and not yet
  // written (the peer reads slower than this side emits), the sender waits.
  void send_one_way(std::span<const std::byte> frame);
  void send_one_way(byte_buffer& frame);
  // Writes out everything held back. Never throws, never blocks on the peer.
  void flush();
  // On the dispatch thread inside a request: runs `f` right after that request's item (after
  // its reply was sent), before the next one. Anywhere else: runs `f` now.
  void after_current_item(std::function<void()> f);
  void run_after_items(std::unique_lock<std::mutex>& lk);  // mu_ held; E's

  // Runs the dispatch loop on the calling thread (which becomes the dispatch thread) until
  // stop() or a disconnect. In the child it reads the channel itself whenever it is idle.
  void run_dispatch_loop();
  // Makes run_dispatch_loop return after the item it is running. Thread-safe, idempotent.
  void stop();
  // Stops everything: the dispatch loop (as stop()), the transport (shut down: wakes every
  // reader and writer) and the I/O thread, which is joined unless called on it. After
  // `drain` (if > 0) spent waiting for queued frames to be written. Idempotent.
  void close(std::chrono::milliseconds drain = {});
  // Half-closes: no more frames will be sent by this side (after those queued).
  void shutdown_write() noexcept;
  // Nothing more from the peer matters (terminate(), after break_with): every reader returns
  // now, a thread blocked in a read for a call that has just failed included, and the channel
  // ends as at EOF (never a protocol error for a frame cut short).
  void stop_reading() noexcept;

  // Fails every pending call with `e` and refuses new ones (first reason wins). Thread-safe.
  void break_with(std::exception_ptr e);
  bool broken() const;
  // Calls sent and not yet completed (a pool's measure of load).
  std::size_t calls_out() const;
  std::exception_ptr broken_reason() const;
  // What the calls in flight are ("Class::method"), oldest first: the endpoint's disconnected()
  // names them in child_crashed (they are failed after it). Thread-safe.
  std::vector<std::string> calls_in_flight() const;
  // The channel is unusable (EOF, protocol error): the I/O thread runs the endpoint's
  // disconnected() and fails everything pending. Any thread; first cause wins.
  void disconnect(std::exception_ptr cause);

  std::size_t max_message_size() const noexcept { return opts_.max_message_size; }
  // The callback registry of this connection (detail/callback.hpp).
  codec_context& callbacks() noexcept { return *callbacks_; }
  // The process at the other end (for error reports).
  int peer_pid() const noexcept { return opts_.peer_pid; }
  // Throws serialization_error if `frame` (header included) is larger than the peer accepts, or
  // carries more descriptors than max_descriptors (its descriptors are closed then).
  void check_size(byte_buffer& frame, const char* what) const;
  std::size_t max_descriptors() const noexcept { return opts_.max_descriptors; }
  // The endpoint's before_reply(), on the dispatch thread only.
  void before_reply() {
    if (on_dispatch_thread()) ep_->before_reply();
  }

  // An event counted on arrival has been handled (its listeners ran, or it was discarded).
  void event_done();

  // Counted by the event layer (event_hub.hpp, parent endpoint), reported by stats().
  std::atomic<std::uint64_t> events_received{0}, event_subscriptions_sent{0}, property_updates{0};

  // Wakes every thread waiting for a reply or reading (a state completed, or work arrived,
  // outside the reading path: the user's callback executor).
  void wake_waiters();

  channel_stats stats() const;
  bool tracing() const noexcept { return trace_; }
  // Prints one trace line (PROCXY_TRACE=1): "procxy[parent 123] <text>".
  void trace(const std::string& text) const;
  const transport& transport_used() const noexcept { return *t_; }

  // driver
  bool wait(state_base& st, clock::time_point deadline) override;
  void post(std::function<void()> f, bool allow_inline) override;
  void continuation_attached() override;

 private:
  connection(std::unique_ptr<transport> t, std::shared_ptr<endpoint> ep, options o);
  struct item {  // one unit of work for the dispatch thread
    frame f;
    std::function<void()> task;              // set for posted tasks, else `f` is a frame
    bool one_way = false;                    // counted in oneway_ahead_ (replies wait behind it)
    std::unique_ptr<pending_call> reply_to;  // a reply's call, taken out of calls_ when queued
  };

  // A FIFO of items in one vector: pop_front moves a read index, the storage is reused once
  // emptied (no allocation per item in steady state, unlike a deque's nodes).
  class item_queue {
   public:
    bool empty() const noexcept { return head_ == v_.size(); }
    std::size_t size() const noexcept { return v_.size() - head_; }
    item& front() noexcept { return v_[head_]; }
    void push_back(item&& it) {
      if (head_ > 0 && head_ == v_.size()) clear();
      if (head_ >= 64 && v_.size() == v_.capacity() && head_ * 2 >= v_.size()) compact();
      v_.push_back(std::move(it));
    }
    void pop_front() {  // the caller has moved front() out: nothing is left to destroy late
      if (++head_ == v_.size()) clear();
    }
    auto begin() noexcept { return v_.begin() + static_cast<std::ptrdiff_t>(head_); }
    auto end() noexcept { return v_.end(); }
    void erase(std::vector<item>::iterator it) { v_.erase(it); }
    void clear() noexcept {
      v_.clear();
      head_ = 0;
    }

   private:
    void compact() {
      v_.erase(v_.begin(), v_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
    std::vector<item> v_;
    std::size_t head_ = 0;
  };

  // ---- reading (docs/design.md "Liveness: the reading role")
  // Takes the reading role (free on entry), reads once, routes, gives it back. lk held on entry
  // and exit. `with_wakeup`: poll the transport with the reader's wake slot (someone else may
  // complete what this reader waits for); else a plain blocking read.
  bool lead_read(std::unique_lock<std::mutex>& lk, clock::time_point deadline, bool with_wakeup);
  // Reads what the transport has (blocking) and appends the complete frames. Caller holds the
  // role. Returns false at EOF or on a protocol error (disconnect() was called).
  bool read_frames(std::vector<frame>& out);
  void extract_frames(std::vector<frame>& out);
  void extract_frames_checked(std::vector<frame>& out);
  // Descriptors (docs/design.md "Descriptors"): gives the frame starting at stream position
  // `at` the group announced for it; throws protocol_error for a group no frame announced, a
  // count that differs, or a frame whose descriptors never came (every stray is closed).
  void claim_descriptors(std::uint64_t at, std::size_t n, std::vector<unique_fd>& out);
  // Groups that only a frame starting before `at` could have claimed are strays (and, when a
  // frame starting at `at` is `incomplete`, those that came with its later bytes). The reading
  // role's; throws protocol_error (the inbox closed).
  void check_strays(std::uint64_t at, bool incomplete = false);
  // The first frame read: the peer's hello (protocol.hpp). Throws spawn_error (parent) or
  // protocol_error (child) when it is missing or does not match.
  void check_hello(const frame_header& h, std::span<const std::byte> body);
  // Routes frames in order: replies complete directly unless a one-way request is ahead of them
  // (parent); everything else goes through E's queue. mu_ held.
  void route(std::vector<frame>& batch, std::unique_lock<std::mutex>& lk);
  // Keeps a read batch's storage for the next reader (mu_ held, the batch routed).
  void keep_batch(std::vector<frame>& batch);
  static constexpr std::size_t max_kept_batch = 4096;
  // Gives the reading role back and tells whoever should take it next. mu_ held.
  void release_role(bool read_replies);
  void complete(frame& f);
  void complete_taken(pending_call& pc, frame& f);  // pc already out of calls_
  void finish(pending_call& pc, frame& f);
  void run_item(item& it);
  // Runs queued items on E until the queue is empty. lk held on entry and exit.
  void drain_queue(std::unique_lock<std::mutex>& lk);
  // Whether E has items to run (queued, or taken and not yet run). E only, mu_ held.
  bool e_has_work() const noexcept { return !queue_.empty() || !e_batch_.empty(); }
  void expire_deadlines(std::unique_lock<std::mutex>& lk);
  void wake_dispatch_thread();  // mu_ held
  void wake_io();               // mu_ held
  void wake_reader();           // mu_ held, the role holder polls
  // Counts a batch's replies and requests (the parent's dispatch thread reads while requests
  // flow). mu_ held.
  void note_batch(const std::vector<frame>& batch, bool by_e, bool& replies);
  // Where this connection's dispatch thread waits while it serves this queue nested.
  void set_elsewhere(std::weak_ptr<connection> w, bool on);
  void wake_elsewhere();
  clock::time_point deferred_due() const;
  // Whether the I/O thread should take the free reading role now (`kept`: it read the last
  // batch itself, so no linger). mu_ held.
  bool io_should_read(clock::time_point now, bool kept) const;
  // Whether the idle dispatch thread should read (child: always; parent: while callbacks flow).
  bool e_prefers_reading() const;      // mu_ held
  bool events_full() const noexcept {  // mu_ held
    return max_events_ > 0 && !drop_oldest_ &&
           events_pending_.load(std::memory_order_acquire) >= max_events_ && e_nested_waits_ == 0;
  }
  // Where event_done wakes a reader paused by events_full(): a quarter below the bound (for
  // small bounds, one below).
  std::size_t events_low_mark() const noexcept {
    return max_events_ >= 16 ? max_events_ - max_events_ / 4 : max_events_ - 1;
  }
  bool drop_oldest_event(std::vector<frame>& dropped_frames,
                         std::vector<std::shared_ptr<void>>& dropped_tasks);
  // Whether a waiting caller leaves reading to the dispatch thread (callbacks are flowing).
  bool defer_to_dispatch(bool on_e) const;
  // The waits of the dispatch threads of other connections that this thread is serving.
  bool serve_other_roles();

  // ---- the I/O thread
  void run_io();
  // Runs the endpoint's disconnected() and fails what is pending (I/O thread).
  void handle_disconnect(std::exception_ptr cause);

  // ---- writing: frame_writer (the I/O thread as the writer sees it)
  class io_link final : public frame_writer::io_thread {
   public:
    explicit io_link(connection& c) : c_(c) {}
    void wake_for_writes() override;
    bool is_current() const noexcept override;
    clock::time_point looks_again_at() const noexcept override;

   private:
    connection& c_;
  };

  const std::unique_ptr<transport> t_;
  const std::shared_ptr<endpoint> ep_;
  const side side_;
  const options opts_;
  const bool trace_;
  std::unique_ptr<codec_context> callbacks_;
  std::atomic<std::thread::id> e_thread_{};
  std::thread io_;
  std::mutex close_mu_;

  // --- write side (its own lock; never taken with mu_ held, except by the I/O thread's
  // wake-up through io_link, which takes mu_ with no writer lock held)
  io_link io_link_{*this};
  frame_writer writer_;

  // --- read side: rbuf_ is touched only by the thread holding the reading role
  byte_buffer rbuf_;
  std::size_t rpos_ = 0;
  std::uint64_t rbase_ = 0;                // the stream position of rbuf_[0]
  std::deque<descriptor_group> fd_inbox_;  // received, not yet matched to a frame
  static constexpr std::uint64_t no_stray = ~std::uint64_t{0};
  std::uint64_t stray_from_ = no_stray;  // check_strays threw: frames from here are suspect
  bool greeted_ = false;                 // the peer's hello was read (by the reading role's holder)
  std::atomic<bool> read_stopped_{false};  // stop_reading() ran
  std::vector<frame> spare_batch_;         // under mu_: storage for the next reader's batch
  std::vector<std::optional<pending_call>> run_calls_;  // route()'s run of replies (the role's)

  // --- shared state, under mu_
  mutable std::mutex mu_;
  std::condition_variable cv_;     // waiters: a reply was routed, or the reading role is free
  std::condition_variable e_cv_;   // the dispatch thread: work queued, role free, stop
  std::condition_variable io_cv_;  // the I/O thread
  bool reading_ = false;
  bool reader_polls_ = false;  // the role holder waits in transport::wait (wake it there)
  bool reader_is_io_ = false;  // the role holder is the I/O thread (its own wake slot)
  bool io_polls_ = false;      // the I/O thread waits in transport::wait
  // When the I/O thread looks again unwoken (seq_cst: pairs with frame_writer's held frames).
  std::atomic<clock::rep> io_wake_at_{no_deadline_rep};
  std::atomic<bool> io_deep_{false};  // the I/O thread sleeps until woken (nothing to watch)
  bool e_busy_ = false;               // E is running queued items
  bool e_idle_ = false;               // E waits for work in run_dispatch_loop
  int e_nested_waits_ = 0;            // E waits for a reply (events backpressure is lifted)
  bool stopping_ = false;
  bool shutdown_queued_ = false;            // a shutdown frame was routed to E (child)
  std::atomic<bool> stopping_seen_{false};  // stopping_, for E between the items of a run
  // Taken from queue_ by E a run at a time; only the thread holding E's role touches it.
  item_queue e_batch_;
  std::size_t e_behind_ = 0;   // E's: how many were left in queue_ when it took e_batch_
  const bool handoff_writes_;  // send_reply may hand the write to the I/O thread
  // E hands its replies to the I/O thread while at least this many requests wait behind the
  // one that finished (send_reply); with fewer it writes each itself.
  static constexpr std::size_t handoff_after_waiting = 8;
  std::vector<item> e_done_;  // items of the current run that have run (E only; freed under mu_)
  static constexpr std::size_t e_batch_max = 32;
  std::atomic<bool> after_item_waiting_{false};  // after_item_ is not empty (E looks between items)
  bool io_stop_ = false;
  bool want_read_ = false;
  bool e_reads_requests_ = false;  // parent: the peer is sending requests; E reads (see wait)
  int role_waiters_ = 0;           // waiters asleep until the reading role is free
  int waiters_ = 0;
  std::size_t oneway_ahead_ = 0;  // one-way items queued or running on E (replies wait)
  item_queue queue_;
  call_table calls_;  // the calls in flight (ids, deadlines, retries)
  std::atomic<clock::rep> last_activity_{0};
  std::exception_ptr broken_;
  bool disconnected_ = false;  // nobody reads any more
  bool disconnect_handled_ = false;
  bool io_done_ = false;                       // the I/O thread has ended (close())
  std::vector<state_ptr<state_base>> doomed_;  // fail once the disconnect policy ran
  std::exception_ptr disconnect_cause_;
  std::vector<const char*> timed_out_;             // for the endpoint's call_timed_out (I/O thread)
  std::vector<std::function<void()>> after_item_;  // under mu_ (after_current_item)
  std::atomic<std::size_t> events_pending_{0};     // event frames routed and not yet done (no lock)
  std::size_t events_peak_ = 0;
  std::size_t max_events_ = 0;
  bool drop_oldest_ = false;
  std::atomic<std::uint64_t> events_dropped_{0};
  // Another connection whose wait this connection's dispatch thread is in (nested serving):
  // work queued here wakes the waiters there.
  std::mutex elsewhere_mu_;
  std::weak_ptr<connection> e_elsewhere_;
  std::atomic<bool> e_is_elsewhere_{false};
  std::uint64_t wake_seq_ = 0;  // under mu_: wake_waiters() calls (no lost wake-up, see wait)

  std::atomic<std::uint64_t> frames_received_{0}, bytes_received_{0}, calls_timed_out_{0},
      calls_retried_{0};

  friend class connection_test_access;
};

}  // namespace procxy::detail
