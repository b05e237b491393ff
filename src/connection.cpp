#include "procxy/detail/connection.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "procxy/detail/callback.hpp"
#include "procxy/detail/remote_error.hpp"

// The channel: framing, pending calls, deadlines, the reading and writing roles, the dispatch
// queue and the I/O thread. docs/design.md "Liveness" states the rule this file implements.

namespace procxy::detail {

namespace {

constexpr std::size_t read_chunk = 64 * 1024;
// A frame at least this big is read alone into its own buffer and handed over whole.
constexpr std::size_t adopt_at_least = std::size_t{1} << 20;
// After this long without traffic the I/O thread stops re-checking, every linger, a reading role
// held by another thread, and sleeps until woken (an idle proxy costs no CPU).
constexpr auto active_window = std::chrono::milliseconds(100);

bool trace_enabled() {
  const char* v = std::getenv("PROCXY_TRACE");
  return v != nullptr && v[0] != '\0' && v[0] != '0';
}

// The connections whose queued items this thread is running (innermost last): while it waits
// for anything, it keeps serving their queues (docs/design.md "Liveness: nested work").
thread_local std::vector<connection*> t_dispatching;

}  // namespace

std::exception_ptr endpoint::disconnected(std::exception_ptr cause) {
  if (cause) return cause;
  return std::make_exception_ptr(terminated("procxy: the peer closed the connection"));
}

connection::connection(std::unique_ptr<transport> t, std::shared_ptr<endpoint> ep, options o)
    : t_(std::move(t)),
      ep_(std::move(ep)),
      side_(o.s),
      opts_(o),
      trace_(trace_enabled()),
      writer_(*t_, io_link_, reading_linger),
      handoff_writes_(t_->writes_are_syscalls()),
      max_events_(o.max_events),
      drop_oldest_(o.drop_oldest) {
  rbuf_.reserve(read_chunk);
  callbacks_ = std::make_unique<codec_context>(*this);
  callbacks_->set_limit(o.max_callbacks);
  callbacks_->set_invoke_timeout(o.callback_timeout);
  if (o.on_callback_error) callbacks_->set_error_handler(o.on_callback_error);
  if (o.callback_executor) callbacks_->set_executor(o.callback_executor);
}

std::shared_ptr<connection> connection::create(std::unique_ptr<transport> t,
                                               std::shared_ptr<endpoint> ep, options o) {
  std::shared_ptr<connection> c(new connection(std::move(t), std::move(ep), o));
  // The hello goes first, before anything any thread can send (protocol.hpp).
  byte_buffer hello;
  encode_hello(hello);
  try {
    c->writer_.enqueue(hello.view(), hold::none);
  } catch (const terminated&) {
    // The peer is gone already (a child that died at once, e.g. its sandbox could not be set
    // up): as for a call, the reader sees EOF and fails everything with the real cause.
  }
  // The I/O thread keeps the connection alive until close() stops it.
  c->io_ = std::thread([c] { c->run_io(); });
  if (c->trace_) c->trace(std::string("transport: ") + c->t_->name());
  return c;
}

connection::~connection() {
  // Only the I/O thread itself can drop the last reference while it is joinable (its keepalive,
  // after close()): it is ending, so let it go.
  if (io_.joinable()) io_.detach();
}

void connection::trace(const std::string& text) const {
  std::fprintf(stderr, "procxy[%s %d] %s\n", side_ == side::parent ? "parent" : "child",
               static_cast<int>(::getpid()), text.c_str());
}

// ---- sending -----------------------------------------------------------------------------------

void connection::send(std::span<const std::byte> f, bool defer) {
  writer_.enqueue(f, defer ? hold::call : hold::none);
}

void connection::send_reply(byte_buffer& f) {
  const bool busy = handoff_writes_ && on_dispatch_thread() &&
                    e_batch_.size() + e_behind_ >= handoff_after_waiting;
  writer_.enqueue(f.view(), busy ? hold::handoff : hold::none, false, &f.descriptors());
}

void connection::send(byte_buffer& f, bool defer) {
  writer_.enqueue(f.view(), defer ? hold::call : hold::none, false, &f.descriptors());
}

void connection::send_one_way(byte_buffer& f) {
  writer_.enqueue(f.view(), on_dispatch_thread() && e_busy_ ? hold::one_way : hold::none,
                  /*bounded=*/true, &f.descriptors());
}

void connection::send_one_way(std::span<const std::byte> f) {
  // Inside a request on the dispatch thread (a method that emits, a callback that notifies):
  // coalesced, and written within oneway_delay by the I/O thread if the reply does not come
  // first. From anywhere else: at once.
  writer_.enqueue(f, on_dispatch_thread() && e_busy_ ? hold::one_way : hold::none,
                  /*bounded=*/true);
}

void connection::flush() { writer_.flush(); }

void connection::shutdown_write() noexcept { writer_.shutdown_write(); }

void connection::stop_reading() noexcept {
  read_stopped_.store(true, std::memory_order_release);
  t_->shutdown_read();
}

void connection::io_link::wake_for_writes() {
  std::lock_guard lk(c_.mu_);
  c_.wake_io();
}

bool connection::io_link::is_current() const noexcept {
  return std::this_thread::get_id() == c_.io_.get_id();
}

clock::time_point connection::io_link::looks_again_at() const noexcept {
  return from_rep(c_.io_wake_at_.load());
}

void connection::call(byte_buffer& f, state_ptr<state_base> st, reply_decoder decode,
                      clock::time_point deadline, const char* what, bool fatal_timeout, int retries,
                      std::chrono::milliseconds retry_timeout) {
  std::shared_ptr<pending_call::retry> again;
  // A call that carries descriptors is sent once: they are the callee's after the first attempt.
  if (retries > 0 && deadline != no_deadline && f.descriptors().empty()) {
    again = std::make_shared<pending_call::retry>();
    again->frame.append(f.data(), f.size());
    again->left = retries;
    again->timeout = retry_timeout;
  }
  std::uint64_t id;
  bool defer;
  {
    std::lock_guard lk(mu_);
    if (broken_) {
      auto e = broken_;
      st->fail(e);
      return;
    }
    st->driver_ = shared_from_this();
    const bool earliest = deadline < calls_.next_deadline();
    id = calls_.add(pending_call{st, decode, deadline, what, fatal_timeout, std::move(again),
                                 callbacks_->has_executor() && callbacks_->in_task(),
                                 deadline != no_deadline ? clock::now() : clock::time_point{},
                                 retry_timeout});
    // With this many calls already out, the peer is busy: hold the frame for the next flush
    // (a waiter, a batch of replies, 64 KiB, a continuation, or the I/O thread's linger).
    defer = calls_.size() > defer_after_in_flight;
    if (earliest && deadline < from_rep(io_wake_at_.load(std::memory_order_relaxed))) wake_io();
  }
  std::memcpy(f.data() + offsetof(frame_header, id), &id, sizeof id);
  try {
    send(f, defer);
  } catch (...) {
    // The peer is gone. Leave the call pending: the reader is about to see EOF and fail it
    // with the real cause (crash, exit code) rather than a bare EPIPE.
  }
}

void connection::check_size(byte_buffer& f, const char* what) const {
  if (f.descriptors().size() > opts_.max_descriptors) {
    const std::size_t n = f.descriptors().size();
    f.descriptors().clear();
    throw serialization_error(std::string("procxy: ") + what + ": a message of " +
                              std::to_string(n) +
                              " descriptors exceeds max_descriptors_per_message (" +
                              std::to_string(opts_.max_descriptors) + ")");
  }
  if (f.size() - header_size > opts_.max_message_size) {
    f.descriptors().clear();
    throw serialization_error(std::string("procxy: ") + what + ": a message of " +
                              std::to_string(f.size() - header_size) +
                              " bytes exceeds max_message_size (" +
                              std::to_string(opts_.max_message_size) + ")");
  }
}

// ---- reading -----------------------------------------------------------------------------------

bool connection::read_frames(std::vector<frame>& out) {
  // Compact: keep a partial frame at the front, make room for a chunk.
  if (rpos_ > 0) {
    rbuf_.consume_front(rpos_);
    rbase_ += rpos_;
    rpos_ = 0;
  }
  std::size_t have = rbuf_.size();
  std::size_t want = read_chunk;
  if (have >= header_size) {
    frame_header h;
    std::memcpy(&h, rbuf_.data(), header_size);
    std::size_t need = header_size + h.size;
    // A big frame is read exactly to its end, so that it is alone in the buffer and
    // extract_frames can hand the buffer over whole.
    if (h.size <= opts_.max_message_size && need > have) {
      if (h.size >= adopt_at_least) {
        want = need - have;
        rbuf_.reserve_exact(need);
      } else if (need > have + want) {
        want = need - have;
      }
    }
  }
  rbuf_.resize(have + want);
  bool reset = false;
  std::size_t n = 0;
  try {
    n = t_->read(rbuf_.data() + have, want, reset);
  } catch (const protocol_error&) {
    rbuf_.resize(have);
    disconnect(std::current_exception());
    return false;
  }
  if (n == 0) {
    rbuf_.resize(have);
    // EOF in the middle of a frame: the peer sent a truncated one. (A peer that exits with our
    // frames unread in its socket gives ECONNRESET instead of EOF: the same case.)
    if (have > 0 && !read_stopped_.load(std::memory_order_acquire))
      disconnect(std::make_exception_ptr(
          protocol_error("procxy: the peer closed the connection in the middle of a frame (" +
                         std::to_string(have) + " bytes of an incomplete frame)")));
    else
      disconnect(nullptr);
    return false;
  }
  rbuf_.resize(have + n);
  bump(bytes_received_, n);  // the reading role: one thread at a time
  try {
    t_->take_descriptors(fd_inbox_, false);
    extract_frames(out);
  } catch (const error&) {  // protocol_error; spawn_error for a hello that does not match
    disconnect(std::current_exception());  // the frames before the bad one are still routed
  }
  return true;
}

void connection::extract_frames(std::vector<frame>& out) {
  const std::size_t before = out.size();
  try {
    extract_frames_checked(out);
  } catch (const protocol_error&) {
    // Descriptors that no frame announced: a frame read with them (one that ends past where they
    // came) is not trusted either; frames before them are routed, as before a bad header.
    if (stray_from_ != no_stray) {
      while (out.size() > before &&
             out.back().start + header_size + out.back().header.size > stray_from_)
        out.pop_back();
      stray_from_ = no_stray;
    }
    throw;
  }
}

void connection::extract_frames_checked(std::vector<frame>& out) {
  // A big frame alone in the buffer (read_frames reads exactly up to its end) is handed over
  // whole: no second copy of a large argument while the child decodes it.
  if (greeted_ && rpos_ == 0 && rbuf_.size() >= header_size + adopt_at_least) {
    const frame_header h =
        check_frame_header(rbuf_.data(), opts_.max_message_size, opts_.max_descriptors);
    if (header_size + h.size == rbuf_.size()) {
      bump(frames_received_, 1);
      frame f;
      f.header = h;
      f.start = rbase_;
      claim_descriptors(rbase_, h.descriptors, f.fds);
      f.body.adopt(std::move(rbuf_), header_size, h.size);  // rbuf_ is left empty
      rbase_ += header_size + h.size;
      out.push_back(std::move(f));
      check_strays(rbase_);
      return;
    }
  }
  std::uint64_t at = rbase_ + rpos_;  // where the next frame starts in the stream
  rpos_ += decode_frames(
      rbuf_.data() + rpos_, rbuf_.size() - rpos_, opts_.max_message_size,
      [&](const frame_header& h, const std::byte* body) {
        bump(frames_received_, 1);
        const std::uint64_t start = std::exchange(at, at + header_size + h.size);
        if (!greeted_) {
          check_strays(start + 1);  // nothing may come with the hello
          check_hello(h, std::span<const std::byte>(body, h.size));
          greeted_ = true;
          return;
        }
        frame f;
        f.header = h;
        f.start = start;
        claim_descriptors(start, h.descriptors, f.fds);
        f.body.assign(body, h.size);
        out.push_back(std::move(f));
      },
      opts_.max_descriptors);
  check_strays(rbase_ + rpos_, rbuf_.size() > rpos_);
}

void connection::claim_descriptors(std::uint64_t at, std::size_t n, std::vector<unique_fd>& out) {
  check_strays(at);
  if (n == 0) return;
  // The shared-memory transport sends a frame's descriptors before its bytes, over the socket
  // beside the rings: they may not have been looked for yet.
  if (fd_inbox_.empty() || fd_inbox_.front().lo > at) {
    t_->take_descriptors(fd_inbox_, true);
    check_strays(at);
  }
  if (fd_inbox_.empty() || fd_inbox_.front().lo > at) {
    fd_inbox_.clear();
    throw protocol_error("procxy: a message announces " + std::to_string(n) +
                         " descriptors and none came with it");
  }
  auto& g = fd_inbox_.front();
  if (g.fds.size() != n) {
    const std::size_t k = g.fds.size();
    fd_inbox_.clear();
    throw protocol_error("procxy: a message announces " + std::to_string(n) + " descriptors and " +
                         std::to_string(k) + " came with it");
  }
  out = std::move(g.fds);
  fd_inbox_.pop_front();
}

void connection::check_strays(std::uint64_t at, bool incomplete) {
  if (fd_inbox_.empty()) return;
  const auto& g = fd_inbox_.front();
  // A group whose frame would start before `at` (every frame before it has been read), or, over
  // a transport that sends descriptors with their frame's first byte, one that came with bytes
  // past the start of a frame still `incomplete` at `at` (no frame starts inside another).
  const bool stray = g.hi <= at || (incomplete && g.lo > at && !t_->descriptors_precede_bytes());
  if (!stray) return;
  std::size_t n = 0;
  for (const auto& x : fd_inbox_) n += x.fds.size();
  stray_from_ = g.lo;
  fd_inbox_.clear();  // closes every one of them
  throw protocol_error("procxy: the peer sent " + std::to_string(n) +
                       " descriptors that no message announced");
}

void connection::check_hello(const frame_header& h, std::span<const std::byte> body) {
  const bool parent = side_ == side::parent;
  const std::string peer =
      parent ? "child " + std::to_string(opts_.peer_pid) : std::string("parent");
  if (h.kind != message_kind::hello || h.id != 0) {
    std::string text = "procxy: the " + peer + "'s first message is a " + to_string(h.kind) +
                       ", not hello: it speaks an older protocol than " +
                       std::to_string(protocol_version) + " (this process: " + build_id() + ")";
    if (parent) throw spawn_error(text);
    throw protocol_error(text);
  }
  auto peer_hello = decode_hello(body);
  if (trace_)
    trace("recv hello: protocol " + std::to_string(peer_hello.version) + " (" + peer_hello.build +
          ")");
  auto text = hello_mismatch(peer_hello, peer);
  if (text.empty()) return;
  if (parent) throw spawn_error(text);
  throw protocol_error(text);
}

void connection::disconnect(std::exception_ptr cause) {
  bool io_done = false;
  {
    std::lock_guard lk(mu_);
    if (disconnected_) return;
    disconnected_ = true;  // nobody reads any more
    io_done = disconnect_handled_ = io_done_;
    disconnect_cause_ = cause;
    wake_io();  // the I/O thread runs the policy (never a user's thread)
    cv_.notify_all();
    e_cv_.notify_all();
  }
  if (io_done) handle_disconnect(cause);  // after close(): nobody else will
}

void connection::handle_disconnect(std::exception_ptr cause) {
  std::exception_ptr e;
  try {
    e = ep_->disconnected(cause);
  } catch (...) {
    e = std::current_exception();
  }
  if (!e) e = std::make_exception_ptr(terminated("procxy: the peer closed the connection"));
  break_with(e);
  std::vector<state_ptr<state_base>> doomed;
  {
    std::lock_guard lk(mu_);
    doomed.swap(doomed_);
    e = broken_;
  }
  for (auto& st : doomed) st->fail(e);
  {
    // The child read the parent's shutdown before the EOF that follows it: the dispatch thread
    // runs it (the object's destructor, on the object thread) and stops then.
    std::lock_guard lk(mu_);
    if (side_ == side::child && shutdown_queued_) {
      wake_dispatch_thread();
      return;
    }
  }
  stop();
}

void connection::route(std::vector<frame>& batch, std::unique_lock<std::mutex>& lk) {
  bool queued = false;
  std::vector<frame> dropped_frames;
  std::vector<std::shared_ptr<void>> dropped_tasks;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    auto& f = batch[i];
    const message_kind k = f.header.kind;
    // A reply completes where it was read, unless (parent) a one-way request the peer sent
    // before it is still queued or running: every callback, event and property update the
    // child sent before a reply is handled before the reply's future is ready. A run of replies
    // completes in one unlocked stretch (only this thread, the reader, queues one-way items).
    if (is_reply(k) && (side_ == side::child || oneway_ahead_ == 0)) {
      std::size_t end = i + 1;
      while (end < batch.size() && is_reply(batch[end].header.kind)) ++end;
      // Their calls leave the table under this one lock; they complete unlocked.
      run_calls_.clear();
      std::uint64_t stray = 0;  // a reply to nothing pending: the peer's protocol error
      for (std::size_t j = i; j < end; ++j) {
        const auto id = batch[j].header.id;
        run_calls_.push_back(calls_.take(id));
        if (!run_calls_.back() && !calls_.forget_late(id) && !broken_) {
          stray = id;  // late replies to timed-out calls and replies after a failure are dropped
          end = j + 1;
          break;
        }
      }
      lk.unlock();
      for (std::size_t j = i; j < end; ++j)
        if (auto& pc = run_calls_[j - i]) complete_taken(*pc, batch[j]);
      run_calls_.clear();
      if (stray != 0)
        disconnect(std::make_exception_ptr(protocol_error(
            "procxy: reply to request #" + std::to_string(stray) + " that is not pending")));
      lk.lock();
      i = end - 1;
      continue;
    }
    const bool one_way = side_ == side::parent && !is_reply(k) && k != message_kind::invoke;
    std::unique_ptr<pending_call> taken;
    if (is_reply(k)) {
      // Received, so no longer pending: neither a deadline nor the peer's death can fail it now
      // (a call that completed before a crash keeps its result).
      if (auto pc = calls_.take(f.header.id))
        taken = std::make_unique<pending_call>(std::move(*pc));
    }
    if (k == message_kind::shutdown) shutdown_queued_ = true;
    queue_.push_back(item{std::move(f), {}, one_way, std::move(taken)});
    if (one_way) ++oneway_ahead_;
    queued = true;
    if (k == message_kind::event) {
      events_peak_ =
          std::max(events_peak_, events_pending_.fetch_add(1, std::memory_order_acq_rel) + 1);
      if (drop_oldest_ && max_events_ > 0 &&
          events_pending_.load(std::memory_order_relaxed) > max_events_ &&
          drop_oldest_event(dropped_frames, dropped_tasks)) {
        events_pending_.fetch_sub(1, std::memory_order_acq_rel);
        events_dropped_.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
  batch.clear();
  if (queued) {
    wake_dispatch_thread();
    if (e_is_elsewhere_.load(std::memory_order_acquire)) {
      lk.unlock();
      wake_elsewhere();
      lk.lock();
    }
  }
  if (!dropped_frames.empty() || !dropped_tasks.empty()) {
    lk.unlock();
    dropped_tasks.clear();  // the arguments of dropped events: may release callbacks
    for (auto& f : dropped_frames) {
      try {
        ep_->discard(f, *this);
      } catch (const protocol_error&) {
        disconnect(std::current_exception());
      }
    }
    lk.lock();
  }
}

bool connection::drop_oldest_event(std::vector<frame>& frames,
                                   std::vector<std::shared_ptr<void>>& tasks) {
  if (auto t = callbacks_->take_oldest_event()) {  // handed to the executor, not started
    tasks.push_back(std::move(t));
    return true;
  }
  for (auto it = queue_.begin(); it != queue_.end(); ++it)
    if (!it->task && it->f.header.kind == message_kind::event) {
      frames.push_back(std::move(it->f));
      if (it->one_way) --oneway_ahead_;
      queue_.erase(it);
      return true;
    }
  return false;
}

void connection::event_done() {
  // No lock per event: a reader paused by a full queue (events_full) is woken once, when the
  // count comes down to the low mark, so it reads a batch while E works through the rest.
  std::size_t n = events_pending_.load(std::memory_order_relaxed);
  do {
    if (n == 0) return;
  } while (!events_pending_.compare_exchange_weak(n, n - 1, std::memory_order_acq_rel));
  if (max_events_ == 0 || n - 1 != events_low_mark()) return;
  std::lock_guard lk(mu_);  // a reader that saw the queue full is waiting, or will see n - 1
  cv_.notify_all();
  e_cv_.notify_all();
  wake_io();
}

void connection::complete(frame& f) {
  std::optional<pending_call> pc;
  {
    std::lock_guard lk(mu_);
    pc = calls_.take(f.header.id);
    if (!pc) {
      if (calls_.forget_late(f.header.id)) return;  // late reply to a timed-out call
      if (broken_) return;                          // failed already; nothing waits for it
    }
  }
  if (!pc) {
    disconnect(std::make_exception_ptr(protocol_error(
        "procxy: reply to request #" + std::to_string(f.header.id) + " that is not pending")));
    return;
  }
  complete_taken(*pc, f);
}

void connection::complete_taken(pending_call& pc, frame& f) {
  // With a user executor, one-way callbacks the child sent before this reply may still be
  // queued there: the reply completes behind them (ordering rule 3 of docs/design.md
  // "Callbacks"). Not for a call made from one of those tasks: it would wait for itself. Once
  // the executor is closed (terminate), those callbacks were dropped, and the reply fails with
  // terminated as it would have behind them (close() empties the backlog, so a reply read just
  // before terminate and completed just after it otherwise slipped past with its value).
  if (!pc.in_task && callbacks_->has_executor() &&
      (callbacks_->backlog() || callbacks_->closed())) {
    auto self = shared_from_this();
    auto cell = std::make_shared<std::pair<pending_call, frame>>(std::move(pc), std::move(f));
    callbacks_->post_task(
        [self, cell](bool closed) {
          if (closed)
            cell->first.st->fail(
                std::make_exception_ptr(terminated("procxy: the proxy was terminated")));
          else
            self->finish(cell->first, cell->second);
          self->wake_waiters();
        },
        true);
    // The state completes on the executor's thread; readers poll the wake-up fd whenever an
    // executor is set (lead_read), and the task wakes them when done.
    return;
  }
  finish(pc, f);
}

void connection::finish(pending_call& pc, frame& f) {
  byte_reader r(f.body.view());
  try {
    decoder d(r, callbacks_.get(), &f.fds);
    pc.decode(*pc.st, f.header.kind, d, reply_context{pc.what, opts_.peer_pid});
    if (!r.at_end()) throw protocol_error("procxy: trailing bytes after a reply");
  } catch (const protocol_error&) {
    // Failed by the I/O thread once the policy ran (the child killed and reaped), like every
    // other pending call: whoever sees the failure sees its consequences too.
    {
      std::lock_guard lk(mu_);
      doomed_.push_back(pc.st);
    }
    disconnect(std::current_exception());
  } catch (...) {
    pc.st->fail(std::current_exception());
  }
}

// ---- the reading role --------------------------------------------------------------------------

bool connection::e_prefers_reading() const {
  // The child's object thread reads whenever it is idle (a call costs one read, no hop); the
  // parent's dispatch thread reads while the child sends requests (each callback runs where it
  // was read).
  return side_ == side::child || e_reads_requests_;
}

void connection::note_batch(const std::vector<frame>& batch, bool by_e, bool& replies) {
  bool requests = false;
  replies = false;
  for (auto& f : batch) (is_reply(f.header.kind) ? replies : requests) = true;
  if (side_ == side::parent) {
    if (requests)
      e_reads_requests_ = true;
    else if (by_e && replies)
      e_reads_requests_ = false;  // a batch of replies alone hands reading back to the callers
  }
}

void connection::release_role(bool replies) {
  const bool e = on_dispatch_thread();
  reading_ = false;
  reader_polls_ = false;
  reader_is_io_ = false;
  // Wake whoever's reply was routed and whoever waits for the role. The dispatch thread reading
  // for deferring callers wakes them only for a reply (a wake-up per callback would cost a
  // context switch each).
  if (!e || replies || role_waiters_ > 0) cv_.notify_all();
  if (e_idle_ && e_prefers_reading()) e_cv_.notify_all();
  if (io_deep_.load(std::memory_order_relaxed)) io_cv_.notify_all();
}

bool connection::lead_read(std::unique_lock<std::mutex>& lk, clock::time_point deadline,
                           bool with_wakeup) {
  reading_ = true;
  reader_polls_ = with_wakeup;
  const bool e = on_dispatch_thread();
  const bool many_out = side_ == side::parent && calls_.size() > defer_after_in_flight;
  // The batch's storage is reused from read to read (a fresh vector grown to a thousand frames
  // per read was a tenth of the parent's time with many calls in flight: allocation, page
  // faults, the heap trimmed and grown again).
  std::vector<frame> batch = std::move(spare_batch_);
  lk.unlock();
  flush();  // held-back calls go out before this thread blocks
  try {
    extract_frames(batch);
  } catch (const protocol_error&) {
    disconnect(std::current_exception());
  }
  if (batch.empty()) {
    // Many calls out: let the child (if it shares this CPU) write several replies before this
    // thread reads, instead of being woken, and switching, once per reply. At most one yield
    // per read; with a CPU of its own the child is unaffected and the yield returns at once.
    if (many_out) ::sched_yield();
    bool ready = true;
    if (with_wakeup || deadline != no_deadline) {
      try {
        ready = t_->wait(true, false, transport::wake_slot::reader, deadline).readable;
      } catch (const std::exception&) {
        disconnect(std::current_exception());
        ready = false;
      }
    }
    if (ready) read_frames(batch);
  }
  last_activity_.store(clock::now().time_since_epoch().count(), std::memory_order_relaxed);
  lk.lock();
  reader_polls_ = false;
  // Route while still holding the role: a waiter whose reply is in this batch must not find the
  // role free, take it, and block in read() for a reply that was already read.
  bool replies = false;
  note_batch(batch, e, replies);
  const bool got = !batch.empty();
  if (got) route(batch, lk);
  if (replies) {  // the peer finished something: send it what we held back (ack clocking)
    lk.unlock();
    flush();
    lk.lock();
  }
  keep_batch(batch);
  release_role(replies);
  return got;
}

void connection::keep_batch(std::vector<frame>& batch) {
  batch.clear();
  if (batch.capacity() <= max_kept_batch && batch.capacity() > spare_batch_.capacity())
    spare_batch_ = std::move(batch);
}

bool connection::serve_other_roles() {
  bool ran = false;
  auto roles = t_dispatching;  // drain_queue pushes and pops on it
  for (connection* x : roles) {
    if (x == this) continue;
    std::unique_lock lk(x->mu_);
    if (!x->e_has_work()) continue;  // this thread holds x's dispatch role
    x->drain_queue(lk);
    ran = true;
  }
  return ran;
}

void connection::set_elsewhere(std::weak_ptr<connection> w, bool on) {
  std::lock_guard lk(elsewhere_mu_);
  e_elsewhere_ = std::move(w);
  e_is_elsewhere_.store(on, std::memory_order_release);
}

void connection::wake_elsewhere() {
  std::shared_ptr<connection> c;
  {
    std::lock_guard lk(elsewhere_mu_);
    c = e_elsewhere_.lock();
  }
  if (c) c->wake_waiters();
}

bool connection::wait(state_base& st, clock::time_point deadline) {
  std::unique_lock lk(mu_);
  const bool e = on_dispatch_thread();
  ++waiters_;
  if (e) ++e_nested_waits_;
  // A callback running on the user's executor that waits here: the executor is blocked in it,
  // so the callbacks the child invokes meanwhile run here, as the child's object thread runs
  // nested calls while it waits (docs/design.md "Callbacks").
  const bool runs_tasks = callbacks_->has_executor() && callbacks_->in_task();
  codec_context::task_waiter tw(*callbacks_, runs_tasks);
  // This thread may be running requests of other connections (a callback of proxy A that waits
  // for a call of proxy B): it keeps serving them while it waits here, and their new work wakes
  // it here (docs/design.md "Liveness: nested work").
  std::vector<std::pair<connection*, std::weak_ptr<connection>>> others;
  for (connection* x : t_dispatching) {
    if (x == this) continue;
    std::weak_ptr<connection> prev;
    {
      std::lock_guard g(x->elsewhere_mu_);
      prev = x->e_elsewhere_;
    }
    others.emplace_back(x, std::move(prev));
  }
  if (!others.empty()) {
    lk.unlock();
    for (auto& [x, prev] : others) x->set_elsewhere(weak_from_this(), true);
    lk.lock();
  }
  // E waits for a request it made (a callback it invokes in the child, a call from a listener):
  // that request goes out now, before E runs anything nested that could let later requests of
  // other threads overtake it.
  if (e && side_ == side::parent) {
    lk.unlock();
    flush();
    lk.lock();
  }
  clock::time_point expired_at = clock::time_point::min();
  for (;;) {
    if (st.is_ready()) break;
    if (runs_tasks && callbacks_->has_unstarted()) {
      lk.unlock();
      callbacks_->run_unstarted();
      lk.lock();
      continue;
    }
    auto now = clock::now();
    if (st.call_deadline <= now && st.call_deadline != expired_at) {
      expired_at = st.call_deadline;  // once per deadline (a retry sets a new one)
      expire_deadlines(lk);
      continue;
    }
    if (deadline <= now) break;
    // Past its deadline and still not ready: another thread is failing it (the I/O thread's
    // expiry, or the policy of a fatal timeout). Wait for that; never block in a read for it.
    const bool past = st.call_deadline <= now;
    auto until = past ? deadline : std::min(deadline, st.call_deadline);
    if (e && e_has_work()) {
      drain_queue(lk);  // nested: a request that arrived while E waits runs here
      continue;
    }
    if (!others.empty()) {
      const auto seq = wake_seq_;
      lk.unlock();
      bool ran = serve_other_roles();
      lk.lock();
      // Work queued on another connection after we looked there woke us while we were not
      // yet waiting: look again rather than sleep through it.
      if (ran || seq != wake_seq_) continue;
    }
    if (!past && !reading_ && !disconnected_ && !defer_to_dispatch(e) && !events_full()) {
      // A plain blocking read is the fast path. Poll with the wake-up slot whenever another
      // thread may complete what this reader waits for, or give it work.
      const bool with_wakeup = !others.empty() || callbacks_->has_executor() ||
                               (side_ == side::parent ? (e || !queue_.empty() || e_busy_)
                                                      : (e && (!calls_.empty() || e_has_work())));
      lead_read(lk, until, with_wakeup);
      continue;
    }
    const auto seq = wake_seq_;
    lk.unlock();
    flush();
    lk.lock();
    // Re-check: while unlocked, the reader may have queued work for E (a nested request, or E's
    // own reply behind one) and let go of the role and taken it again, or a callback may have
    // been posted for this executor-blocked task to run (wake_waiters): their notify came
    // before this wait.
    if (st.is_ready() || (e && e_has_work()) || seq != wake_seq_) continue;
    const bool defer = defer_to_dispatch(e) || past;
    if (!past && !reading_ && !disconnected_ && !events_full()) {
      if (!defer) continue;  // take the role
      want_read_ = true;     // the dispatch thread reads for us (callbacks are flowing)
      wake_dispatch_thread();
    }
    if (!defer) ++role_waiters_;
    if (until == no_deadline)
      cv_.wait(lk);
    else
      cv_.wait_until(lk, until);
    if (!defer) --role_waiters_;
  }
  --waiters_;
  if (e) --e_nested_waits_;
  if (!others.empty()) {
    lk.unlock();
    for (auto& [x, prev] : others) x->set_elsewhere(prev, !prev.expired());
    lk.lock();
  }
  return st.is_ready();
}

void connection::wake_waiters() {
  std::lock_guard lk(mu_);
  ++wake_seq_;
  wake_dispatch_thread();  // and the reader, if it polls
  cv_.notify_all();
}

bool connection::defer_to_dispatch(bool e) const {
  return !e && side_ == side::parent && e_reads_requests_ && !e_busy_ && !stopping_ &&
         !disconnected_;
}

void connection::continuation_attached() {
  flush();
  std::lock_guard lk(mu_);
  want_read_ = true;  // someone must read for it now, not after the linger
  wake_io();
}

// ---- the dispatch thread -----------------------------------------------------------------------

void connection::run_dispatch_loop() {
  e_thread_.store(std::this_thread::get_id(), std::memory_order_release);
  std::unique_lock lk(mu_);
  while (!stopping_) {
    if (e_has_work()) {
      drain_queue(lk);
      continue;
    }
    if (!reading_ && !disconnected_ && e_prefers_reading() && !events_full()) {
      const bool with_wakeup =
          side_ == side::parent || !calls_.empty() || callbacks_->has_executor();
      lead_read(lk, no_deadline, with_wakeup);
      continue;
    }
    e_idle_ = true;
    e_cv_.wait(lk);
    e_idle_ = false;
  }
  // Whatever is still queued will never run. Replies that arrived are not lost when the peer
  // died or broke the protocol later (their calls completed in the child: a completed call
  // survives a crash of the next one); when this side ended the connection (terminate, close)
  // they fail like every other call in flight.
  std::vector<item> replies;
  for (auto* q : {&e_batch_, &queue_}) {  // in order: what E had taken comes first
    for (auto& it : *q)
      if (it.reply_to) replies.push_back(std::move(it));
    q->clear();
  }
  oneway_ahead_ = 0;
  std::exception_ptr ended_here = broken_;
  if (ended_here) {
    try {
      std::rethrow_exception(ended_here);
    } catch (const terminated&) {
    } catch (...) {
      ended_here = nullptr;  // the peer's doing
    }
  } else {
    ended_here = std::make_exception_ptr(terminated("procxy: the connection was closed"));
  }
  lk.unlock();
  for (auto& it : replies) {
    if (ended_here)
      it.reply_to->st->fail(ended_here);
    else
      finish(*it.reply_to, it.f);
  }
  if (!replies.empty()) {
    std::lock_guard g(mu_);
    cv_.notify_all();
  }
  flush();
  callbacks_->clear();  // the dispatch loop is over: nothing lent can run any more
  ep_->dispatch_exit();
}

void connection::drain_queue(std::unique_lock<std::mutex>& lk) {
  const bool outer = !e_busy_;
  e_busy_ = true;
  t_dispatching.push_back(this);
  // Items move from queue_ to e_batch_ (E's own, no lock) a run at a time, so E takes mu_ once
  // per run, not per item. A nested drain (E waits inside an item) runs what is left of the
  // run first: the order is the order of queue_. With drop_oldest, a run is one item (only
  // queue_ is searched for the oldest event).
  for (;;) {
    if (e_batch_.empty()) {
      if (queue_.empty() || (stopping_ && outer)) break;
      const std::size_t n = drop_oldest_ ? 1 : std::min(queue_.size(), e_batch_max);
      for (std::size_t i = 0; i < n; ++i) {
        e_batch_.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      e_behind_ = queue_.size();
    } else if (stopping_ && outer) {
      break;
    }
    lk.unlock();
    std::size_t one_way_done = 0;
    while (!e_batch_.empty()) {
      item it = std::move(e_batch_.front());
      e_batch_.pop_front();
      run_item(it);
      if (it.one_way) ++one_way_done;
      e_done_.push_back(std::move(it));
      if (after_item_waiting_.load(std::memory_order_acquire) ||
          (outer && stopping_seen_.load(std::memory_order_acquire)))
        break;
    }
    lk.lock();
    oneway_ahead_ -= std::min(oneway_ahead_, one_way_done);
    // Run items are destroyed under the lock, as one at a time were: what they release (a
    // call's state, the last reference to an exception the caller has caught) is ordered with
    // the caller's next use of the connection.
    e_done_.clear();
    run_after_items(lk);
  }
  run_after_items(lk);  // queued by another thread while the last item ran
  t_dispatching.pop_back();
  if (outer) e_busy_ = false;
}

void connection::run_after_items(std::unique_lock<std::mutex>& lk) {
  while (!after_item_.empty()) {
    std::vector<std::function<void()>> after;
    after.swap(after_item_);
    after_item_waiting_.store(false, std::memory_order_relaxed);
    lk.unlock();
    for (auto& f : after) f();
    lk.lock();
  }
}

void connection::after_current_item(std::function<void()> f) {
  {
    // Any thread: while E runs an item (a call in the child), `f` runs right after it, so the
    // reply of the call in progress goes out first.
    std::lock_guard lk(mu_);
    if (e_busy_ && !stopping_) {
      after_item_.push_back(std::move(f));
      after_item_waiting_.store(true, std::memory_order_release);
      return;
    }
  }
  f();
}

void connection::run_item(item& it) {
  if (it.task) {
    it.task();
    return;
  }
  if (is_callback_message(it.f.header.kind)) {
    try {
      callbacks_->handle(it.f);
    } catch (const protocol_error&) {
      disconnect(std::current_exception());
    }
    return;
  }
  if (is_reply(it.f.header.kind)) {
    if (it.reply_to)
      complete_taken(*it.reply_to, it.f);
    else
      complete(it.f);
    std::lock_guard lk(mu_);
    if (reading_ && reader_polls_) wake_reader();  // the reader may be waiting for this reply
    cv_.notify_all();                              // or a caller that left reading to this thread
    return;
  }
  try {
    ep_->handle(std::move(it.f), *this);
  } catch (const protocol_error&) {
    disconnect(std::current_exception());
  }
}

void connection::post(std::function<void()> f, bool allow_inline) {
  if (allow_inline && on_dispatch_thread()) {
    f();
    return;
  }
  {
    std::lock_guard lk(mu_);
    if (stopping_) return;  // the proxy is gone: its continuations never run
    queue_.push_back(item{frame{}, std::move(f), false, nullptr});
    wake_dispatch_thread();
  }
  if (e_is_elsewhere_.load(std::memory_order_acquire)) wake_elsewhere();
}

void connection::wake_reader() {  // mu_ held, reading_ && reader_polls_
  t_->wake(reader_is_io_ ? transport::wake_slot::io : transport::wake_slot::reader);
}

void connection::wake_dispatch_thread() {  // mu_ held
  e_cv_.notify_all();
  if (e_nested_waits_ > 0) cv_.notify_all();  // E waits for a reply in wait()
  if (reading_ && reader_polls_) wake_reader();
}

void connection::wake_io() {  // mu_ held
  io_cv_.notify_all();
  if (io_polls_) t_->wake(transport::wake_slot::io);
}

void connection::stop() {
  std::lock_guard lk(mu_);
  stopping_ = true;
  stopping_seen_.store(true, std::memory_order_release);
  cv_.notify_all();
  wake_dispatch_thread();
  wake_io();
}

void connection::close(std::chrono::milliseconds drain) {
  if (drain.count() > 0) writer_.drain(drain);
  writer_.close();  // nothing more goes out; an emitter held by backpressure gives up
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
    stopping_seen_.store(true, std::memory_order_release);
    io_stop_ = true;
    cv_.notify_all();
    wake_dispatch_thread();
    wake_io();
  }
  t_->shutdown();
  std::lock_guard cl(close_mu_);
  if (io_.joinable() && std::this_thread::get_id() != io_.get_id()) io_.join();
}

// ---- the I/O thread ----------------------------------------------------------------------------

bool connection::io_should_read(clock::time_point now, bool kept) const {
  if (reading_ || disconnected_ || stopping_ || io_stop_ || events_full()) return false;
  if (want_read_) return true;
  if (e_idle_ && e_prefers_reading()) return false;  // the dispatch thread is about to read
  if (role_waiters_ > 0) return false;               // a waiter takes it
  if (kept) return waiters_ == 0;  // it read the last batch: it goes on while nobody waits
  return now - from_rep(last_activity_.load(std::memory_order_relaxed)) >= reading_linger;
}

void connection::run_io() {
  std::unique_lock lk(mu_);
  bool keep = false;  // the I/O thread read the last batch and nobody else wants the role
  std::vector<frame> batch;
  while (!io_stop_) {
    expire_deadlines(lk);  // first: an expiry may disconnect (a fatal timeout)
    if (disconnected_ && !disconnect_handled_) {
      disconnect_handled_ = true;
      auto cause = disconnect_cause_;
      lk.unlock();
      handle_disconnect(cause);
      lk.lock();
      continue;
    }
    if (!timed_out_.empty()) {
      auto names = std::move(timed_out_);
      timed_out_.clear();
      lk.unlock();
      for (const char* w : names) ep_->call_timed_out(w);
      lk.lock();
      continue;
    }
    auto now = clock::now();
    const auto flush_due = writer_.due();
    if (flush_due <= now) {
      lk.unlock();
      flush();
      lk.lock();
      continue;
    }
    const bool want_write = writer_.blocked();
    bool read = false;
    if (io_should_read(now, keep)) {
      read = true;
      reading_ = true;
      reader_polls_ = true;
      reader_is_io_ = true;
      want_read_ = false;
    }
    keep = false;
    if (!read && !want_write) {
      auto wake = std::min(calls_.next_deadline(), flush_due);
      const auto last = from_rep(last_activity_.load(std::memory_order_relaxed));
      if (!disconnected_ && !stopping_) {
        if (!reading_)
          wake =
              std::min(wake, std::max(last + reading_linger, now + std::chrono::microseconds(100)));
        else if (now - last < active_window)
          wake =
              std::min(wake, now + reading_linger);  // the holder may let go with nobody after it
      }
      // seq_cst store, then due() again: a frame held meanwhile either saw this time (and
      // wakes this thread, through mu_) or is seen here (frame_writer::enqueue).
      io_wake_at_.store(wake.time_since_epoch().count());
      if (writer_.due() < flush_due) continue;
      // Not looking again within a linger: whoever frees the role must wake this thread.
      io_deep_.store(wake > now + reading_linger, std::memory_order_relaxed);
      if (wake == no_deadline)
        io_cv_.wait(lk);
      else
        io_cv_.wait_until(lk, wake);
      io_deep_.store(false, std::memory_order_relaxed);
      continue;
    }
    auto until = std::min(calls_.next_deadline(), flush_due);
    io_wake_at_.store(until.time_since_epoch().count());  // as above
    until = std::min(until, writer_.due());
    io_polls_ = true;
    lk.unlock();
    batch.clear();  // the I/O thread's own, reused
    transport::wait_result r;
    if (read) {
      try {
        extract_frames(batch);
      } catch (const protocol_error&) {
        disconnect(std::current_exception());
      }
    }
    if (batch.empty()) {
      try {
        r = t_->wait(read, want_write, transport::wake_slot::io, until);
      } catch (const std::exception&) {
        disconnect(std::current_exception());
      }
      if (r.writable) writer_.continue_blocked();
      if (read && r.readable) read_frames(batch);
    }
    if (read && !batch.empty())
      last_activity_.store(clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    lk.lock();
    io_polls_ = false;
    if (read) {
      bool replies = false;
      note_batch(batch, false, replies);
      const bool got = !batch.empty();
      if (got) route(batch, lk);
      if (replies) {
        lk.unlock();
        flush();
        lk.lock();
      }
      keep = got;
      release_role(replies);
    }
  }
  io_wake_at_.store(no_deadline_rep, std::memory_order_relaxed);
  io_done_ = true;
  const bool handle = disconnected_ && !disconnect_handled_;
  disconnect_handled_ = true;
  auto cause = disconnect_cause_;
  lk.unlock();
  if (handle) handle_disconnect(cause);
}

void connection::expire_deadlines(std::unique_lock<std::mutex>& lk) {
  auto [expired, resend] = calls_.expire(clock::now(), /*retry=*/!broken_);
  if (expired.empty() && resend.empty()) return;
  lk.unlock();
  for (auto& r : resend) {
    calls_retried_.fetch_add(1, std::memory_order_relaxed);
    if (tracing()) trace("timeout: sending an idempotent call again");
    try {
      send(r->frame.view());
    } catch (...) {
      // The peer is gone: the reader sees EOF and fails the call with the real cause.
    }
  }
  std::exception_ptr fatal;
  const char* timed_out = nullptr;
  for (auto& pc : expired) {
    if (pc.fatal_timeout) {
      fatal = std::make_exception_ptr(spawn_error(std::string("procxy: ") + pc.what +
                                                  " did not complete within start_timeout"));
      std::lock_guard g(mu_);
      doomed_.push_back(pc.st);  // failed after the policy killed the child (handle_disconnect)
    } else {
      calls_timed_out_.fetch_add(1, std::memory_order_relaxed);
      const char* attempts = pc.again ? " (and so did each of its retries)" : "";
      // The configured timeout: the deadline was set when the call was made, a little before it
      // was queued, so deadline - issued is a little short (it said "98 ms" for 100 under load).
      const auto limit =
          pc.limit.count() > 0
              ? pc.limit
              : std::chrono::round<std::chrono::milliseconds>(pc.deadline - pc.issued);
      pc.st->fail(std::make_exception_ptr(
          timeout_error(std::string("procxy: ") + pc.what + " timed out after " +
                        std::to_string(limit.count()) + " ms" + attempts)));
      timed_out = pc.what;
    }
  }
  if (fatal) disconnect(fatal);
  lk.lock();
  if (timed_out) {  // the endpoint's policy (kill_child) runs on the I/O thread
    timed_out_.push_back(timed_out);
    wake_io();
  }
  cv_.notify_all();
}

void connection::break_with(std::exception_ptr e) {
  std::vector<pending_call> failed;
  {
    std::lock_guard lk(mu_);
    if (!broken_) broken_ = e;
    e = broken_;
    failed = calls_.take_all();
    cv_.notify_all();
    wake_dispatch_thread();
  }
  for (auto& pc : failed) pc.st->fail(e);
}

std::size_t connection::calls_out() const {
  std::lock_guard lk(mu_);
  return calls_.size();
}

bool connection::broken() const {
  std::lock_guard lk(mu_);
  return static_cast<bool>(broken_);
}

std::exception_ptr connection::broken_reason() const {
  std::lock_guard lk(mu_);
  return broken_;
}

std::vector<std::string> connection::calls_in_flight() const {
  std::vector<const char*> whats;
  {
    std::lock_guard lk(mu_);
    whats = calls_.in_flight();
  }
  return {whats.begin(), whats.end()};
}

channel_stats connection::stats() const {
  channel_stats s;
  s.frames_sent = writer_.frames();
  s.frames_received = frames_received_.load();
  s.bytes_sent = writer_.bytes();
  s.bytes_received = bytes_received_.load();
  s.write_syscalls = writer_.write_calls();
  s.calls_timed_out = calls_timed_out_.load();
  s.calls_retried = calls_retried_.load();
  s.callbacks_lent = callbacks_->local_live();
  s.callbacks_held = callbacks_->remote_live.load();
  s.callback_invocations_in = callbacks_->invocations_in.load();
  s.callback_invocations_out = callbacks_->invocations_out.load();
  s.callback_releases_in = callbacks_->releases_in.load();
  s.callback_releases_out = callbacks_->releases_out.load();
  s.events_received = events_received.load();
  s.events_dropped = events_dropped_.load();
  {
    std::lock_guard lk(mu_);
    s.events_queued_peak = events_peak_;
  }
  s.event_subscriptions_sent = event_subscriptions_sent.load();
  s.property_updates = property_updates.load();
  std::lock_guard lk(mu_);
  s.pending_calls = calls_.size();
  return s;
}

}  // namespace procxy::detail
