#include "procxy/detail/connection.hpp"
#include "procxy/detail/callback.hpp"

#include "procxy/detail/remote_error.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstddef>
#include <cstring>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace procxy::detail {

namespace {

constexpr std::size_t read_chunk = 64 * 1024;
// How long the parent's dispatch thread leaves the socket to callers after the last activity
// before it reads in the background again (to notice EOF of an idle child). Keeping it out of
// poll() while calls flow is what makes a plain call cost no thread hop (docs/design.md).
constexpr auto background_linger = std::chrono::milliseconds(2);

bool trace_enabled() {
  const char* v = std::getenv("PROCXY_TRACE");
  return v != nullptr && v[0] != '\0' && v[0] != '0';
}

int poll_timeout_ms(clock::time_point deadline) {
  if (deadline == no_deadline) return -1;
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now()).count();
  if (left <= 0) return 0;
  return left > 1'000'000 ? 1'000'000 : static_cast<int>(left);
}

}  // namespace

const char* to_string(message_kind k) noexcept {
  switch (k) {
    case message_kind::construct: return "construct";
    case message_kind::call: return "call";
    case message_kind::reply_value: return "reply";
    case message_kind::reply_error: return "error";
    case message_kind::shutdown: return "shutdown";
    case message_kind::invoke: return "invoke";
    case message_kind::notify: return "notify";
    case message_kind::release: return "release";
    case message_kind::event: return "event";
    case message_kind::subscribe: return "subscribe";
    case message_kind::properties: return "properties";
    case message_kind::dispose: return "dispose";
  }
  return "unknown";
}

connection::connection(int fd, side s, std::size_t max_message_size)
    : fd_(fd),
      wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      side_(s),
      max_message_size_(max_message_size),
      trace_(trace_enabled()) {
  if (wake_fd_ < 0) {
    int e = errno;
    ::close(fd_);
    throw std::system_error(e, std::system_category(), "procxy: eventfd");
  }
  rbuf_.reserve(read_chunk);
  callbacks_ = std::make_unique<codec_context>(*this);
}

connection::~connection() {
  ::close(fd_);
  ::close(wake_fd_);
}

void connection::close_socket() noexcept {
  // Shut down, never close: a reader or writer may be inside read()/send() on the descriptor,
  // and a closed number could be reused by an unrelated open. Shutting down wakes them with
  // EOF/EPIPE; the descriptor itself is closed by the destructor.
  ::shutdown(fd_, SHUT_RDWR);
}

void connection::shutdown_write() noexcept { ::shutdown(fd_, SHUT_WR); }

void connection::trace(const std::string& text) const {
  std::fprintf(stderr, "procxy[%s %d] %s\n", side_ == side::parent ? "parent" : "child",
               static_cast<int>(::getpid()), text.c_str());
}

// ---- sending -----------------------------------------------------------------------------------

void connection::write_all(const std::byte* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd_, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    write_syscalls_.fetch_add(1, std::memory_order_relaxed);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        // The peer is not reading because it is writing to us and nobody here reads (every
        // caller is still sending). Make sure someone reads, then wait for room.
        request_read();
        pollfd pf{fd_, POLLOUT, 0};
        ::poll(&pf, 1, -1);
        continue;
      }
      // EPIPE/ECONNRESET: the peer is gone; the reader reports the disconnect with its cause.
      throw terminated(std::string("procxy: the connection to the ") +
                       (side_ == side::parent ? "child" : "parent") + " is closed (" +
                       std::strerror(errno) + ")");
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

void connection::request_read() {
  std::lock_guard lk(mu_);
  want_read_ = true;
  wake_dispatch_thread();
}

void connection::send(std::span<const std::byte> f) { send(f, false); }

void connection::send(std::span<const std::byte> f, bool defer) {
  frames_sent_.fetch_add(1, std::memory_order_relaxed);
  bytes_sent_.fetch_add(f.size(), std::memory_order_relaxed);
  if (on_dispatch_thread() && e_corked_) {  // e_corked_ is E's own: test the thread first
    corked_.append(f.data(), f.size());
    if (corked_.size() >= read_chunk) flush_corked();
    return;
  }
  std::unique_lock lk(wmu_);
  wpending_.append(f.data(), f.size());
  if (writing_) return;  // the thread that is writing sends these bytes next, in order
  if (defer && wpending_.size() < read_chunk) return;  // a flush trigger sends them (design.md)
  drain_writes(lk);
}

void connection::send_one_way(std::span<const std::byte> f) {
  const bool e = on_dispatch_thread() && e_corked_;
  std::unique_lock lk(wmu_);
  if (!flusher_enabled_) {  // the parent: no flusher thread, the usual flush triggers
    lk.unlock();
    send(f, /*defer=*/true);
    return;
  }
  frames_sent_.fetch_add(1, std::memory_order_relaxed);
  bytes_sent_.fetch_add(f.size(), std::memory_order_relaxed);
  if (e && !corked_.empty()) {  // the dispatch thread's held-back frames go first, in order
    wpending_.append(corked_.data(), corked_.size());
    corked_.clear();
  }
  wpending_.append(f.data(), f.size());
  if (writing_) return;  // the writing thread sends these bytes next
  // Inside a method (the object thread working through a batch) frames are coalesced until the
  // reply, 64 KiB or the flusher's half millisecond; a lone emit from elsewhere goes out now.
  if (!e || wpending_.size() >= read_chunk) {
    drain_writes(lk);
    return;
  }
  if (deferred_since_ == no_deadline) {
    deferred_since_ = clock::now();
    // A flusher already in a timed wait finds this when it wakes (within half a millisecond);
    // waking it for every call that emits would cost a context switch per call.
    if (flusher_asleep_) flush_cv_.notify_one();
  }
  if (!flusher_started_) {  // started on first need: most children never defer a frame
    flusher_started_ = true;
    lk.unlock();
    std::thread([self = shared_from_this()] { self->run_flusher(); }).detach();
  }
}

void connection::enable_flusher() {
  std::lock_guard lk(wmu_);
  flusher_enabled_ = true;
}

void connection::run_flusher() {
  std::unique_lock lk(wmu_);
  while (!flusher_stop_) {
    if (wpending_.empty() || writing_ || deferred_since_ == no_deadline) {
      flusher_asleep_ = true;
      flush_cv_.wait(lk);
      flusher_asleep_ = false;
      continue;
    }
    auto due = deferred_since_ + std::chrono::microseconds(500);
    if (clock::now() < due) {
      flush_cv_.wait_until(lk, due);
      continue;
    }
    try {
      drain_writes(lk);
    } catch (...) {
      break;  // the peer is gone
    }
  }
}

void connection::flush() {
  if (on_dispatch_thread()) flush_corked();
  std::unique_lock lk(wmu_);
  if (writing_ || wpending_.empty()) return;
  drain_writes(lk);
}

void connection::drain_writes(std::unique_lock<std::mutex>& lk) {
  writing_ = true;
  try {
    while (!wpending_.empty()) {
      std::swap(wpending_, wspare_);
      lk.unlock();
      write_all(wspare_.data(), wspare_.size());
      wspare_.clear();
      lk.lock();
    }
    writing_ = false;
    deferred_since_ = no_deadline;
  } catch (...) {
    if (!lk.owns_lock()) lk.lock();
    writing_ = false;
    wpending_.clear();
    wspare_.clear();
    throw;
  }
}

void connection::flush_corked() {
  if (corked_.empty()) return;
  try {
    std::unique_lock lk(wmu_);
    wpending_.append(corked_.data(), corked_.size());  // send() counted these frames already
    if (!writing_) drain_writes(lk);
  } catch (const terminated&) {
    // The peer is gone; the reader will see EOF and fail what is pending.
  }
  corked_.clear();
}

void connection::call(byte_buffer& f, state_ptr<state_base> st, reply_decoder decode,
                      clock::time_point deadline, const char* what, bool fatal_timeout,
                      int retries, std::chrono::milliseconds retry_timeout) {
  std::shared_ptr<pending_call::retry> again;
  if (retries > 0 && deadline != no_deadline) {
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
    id = next_id_++;
    st->driver_ = shared_from_this();
    st->call_id = id;
    st->call_deadline = deadline;
    pending_.emplace(id, pending_call{st, decode, deadline, what, fatal_timeout, std::move(again),
                                      callbacks_->has_executor() && callbacks_->in_task()});
    // With this many calls already out, the peer is busy: hold the frame for the next flush
    // (a waiter, a batch of replies, 64 KiB, a continuation, or the dispatch thread's linger).
    defer = pending_.size() > defer_after_in_flight;
    if (deadline < next_deadline_) {
      next_deadline_ = deadline;
      if (e_polling_) wake_dispatch_thread();
    }
  }
  std::memcpy(f.data() + offsetof(frame_header, id), &id, sizeof id);
  try {
    send(f.view(), defer);
  } catch (...) {
    // The peer is gone. Leave the call pending: the reader is about to see EOF and fail it
    // with the real cause (crash, exit code) rather than a bare EPIPE.
  }
}

void connection::check_size(const byte_buffer& f, const char* what) const {
  if (f.size() - header_size > max_message_size_)
    throw serialization_error(std::string("procxy: ") + what + ": a message of " +
                              std::to_string(f.size() - header_size) +
                              " bytes exceeds max_message_size (" +
                              std::to_string(max_message_size_) + ")");
}

// ---- reading -----------------------------------------------------------------------------------

bool connection::read_batch(clock::time_point deadline, bool with_wakeup, std::vector<frame>& out) {
  extract_frames(out);
  if (!out.empty()) return true;
  if (deadline != no_deadline || with_wakeup) {
    pollfd p[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    int r = ::poll(p, with_wakeup ? 2 : 1, poll_timeout_ms(deadline));
    if (r < 0 && errno != EINTR) throw std::system_error(errno, std::system_category(), "poll");
    if (r <= 0) return false;
    if (with_wakeup && (p[1].revents & POLLIN)) {
      std::uint64_t v;
      [[maybe_unused]] auto n = ::read(wake_fd_, &v, sizeof v);
      if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR))) return true;
    }
  }
  // Compact: keep a partial frame at the front, make room for a chunk.
  if (rpos_ > 0) {
    rbuf_.consume_front(rpos_);
    rpos_ = 0;
  }
  std::size_t have = rbuf_.size();
  std::size_t want = read_chunk;
  if (have >= header_size) {
    frame_header h;
    std::memcpy(&h, rbuf_.data(), header_size);
    std::size_t need = header_size + h.size;
    if (h.size <= max_message_size_ && need > have + want) want = need - have;
  }
  rbuf_.reserve(have + want);
  rbuf_.resize(have + want);
  ssize_t n;
  do {
    n = ::read(fd_, rbuf_.data() + have, want);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    rbuf_.resize(have);
    if (n == 0 || errno == ECONNRESET || errno == EBADF || errno == ENOTCONN) {
      // EOF in the middle of a frame: the peer sent a truncated one. (A peer that exits with
      // our frames unread in its socket gives ECONNRESET instead of EOF: the same case.)
      if (have > 0 && (n == 0 || errno == ECONNRESET))
        disconnect(std::make_exception_ptr(protocol_error(
            "procxy: the peer closed the connection in the middle of a frame (" +
            std::to_string(have) + " bytes of an incomplete frame)")));
      else
        disconnect(nullptr);
      return true;
    }
    disconnect(std::make_exception_ptr(
        protocol_error(std::string("procxy: read failed: ") + std::strerror(errno))));
    return true;
  }
  rbuf_.resize(have + static_cast<std::size_t>(n));
  bytes_received_.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
  try {
    extract_frames(out);
  } catch (const protocol_error&) {
    disconnect(std::current_exception());
  }
  return true;
}

frame_header check_frame_header(const std::byte* in, std::size_t max_message_size) {
  frame_header h;
  std::memcpy(&h, in, header_size);
  auto k = static_cast<std::uint8_t>(h.kind);
  if (k == 0 || k > max_message_kind)
    throw protocol_error("procxy: unknown message kind " + std::to_string(k));
  if (h.flags != 0 || h.reserved != 0) throw protocol_error("procxy: reserved header bits are set");
  if (h.size > max_message_size)
    throw protocol_error("procxy: message of " + std::to_string(h.size) +
                         " bytes exceeds max_message_size " + std::to_string(max_message_size));
  return h;
}

void connection::extract_frames(std::vector<frame>& out) {
  rpos_ += decode_frames(rbuf_.data() + rpos_, rbuf_.size() - rpos_, max_message_size_,
                         [&](const frame_header& h, const std::byte* body) {
                           frame f;
                           f.header = h;
                           f.body.append(body, h.size);
                           frames_received_.fetch_add(1, std::memory_order_relaxed);
                           out.push_back(std::move(f));
                         });
}

void connection::disconnect(std::exception_ptr cause) {
  {
    std::lock_guard lk(mu_);
    if (disconnected_) return;
    disconnected_ = true;
  }
  std::exception_ptr e = cause;
  if (on_disconnect) {
    e = on_disconnect(cause);
  } else if (!e) {
    e = std::make_exception_ptr(terminated("procxy: the peer closed the connection"));
  }
  break_with(e);
  stop();
  callbacks_->clear();  // the peer is gone: nothing it held can be called any more
}

void connection::route(std::vector<frame>& batch, std::unique_lock<std::mutex>& lk) {
  bool queued = false;
  std::vector<frame> dropped_frames;
  std::vector<std::shared_ptr<void>> dropped_tasks;
  for (auto& f : batch) {
    if (is_reply(f.header.kind) && queue_.empty() && !e_busy_) {
      lk.unlock();
      complete(f);
      lk.lock();
    } else {
      const bool ev = f.header.kind == message_kind::event;
      queue_.push_back(item{std::move(f), {}});
      queued = true;
      if (ev) {
        events_peak_ = std::max(events_peak_, ++events_pending_);
        if (drop_oldest_ && max_events_ > 0 && events_pending_ > max_events_ &&
            drop_oldest_event(dropped_frames, dropped_tasks)) {
          --events_pending_;
          events_dropped_.fetch_add(1, std::memory_order_relaxed);
        }
      }
    }
  }
  batch.clear();
  if (queued && !on_dispatch_thread()) wake_dispatch_thread();
  if (!dropped_frames.empty() || !dropped_tasks.empty()) {
    lk.unlock();
    dropped_tasks.clear();  // the arguments of dropped events: may release callbacks
    for (auto& f : dropped_frames) {
      try {
        if (handler_) handler_->discard(f, *this);
      } catch (const protocol_error&) {
        disconnect(std::current_exception());
      }
    }
    lk.lock();
  }
}

bool connection::drop_oldest_event(std::vector<frame>& frames, std::vector<std::shared_ptr<void>>& tasks) {
  if (auto t = callbacks_->take_oldest_event()) {  // handed to the executor, not started
    tasks.push_back(std::move(t));
    return true;
  }
  for (auto it = queue_.begin(); it != queue_.end(); ++it)
    if (!it->task && it->f.header.kind == message_kind::event) {
      frames.push_back(std::move(it->f));
      queue_.erase(it);
      return true;
    }
  return false;
}

void connection::event_done() {
  std::lock_guard lk(mu_);
  if (events_pending_ > 0) --events_pending_;
  if (max_events_ > 0 && events_pending_ + 1 >= max_events_) {  // reading may resume
    cv_.notify_all();
    e_cv_.notify_all();
  }
}

void connection::complete(frame& f) {
  pending_call pc;
  {
    std::lock_guard lk(mu_);
    auto it = pending_.find(f.header.id);
    if (it == pending_.end()) {
      if (expired_.erase(f.header.id) != 0) return;  // late reply to a timed-out call
      if (broken_) return;                            // failed already; nothing waits for it
    } else {
      pc = std::move(it->second);
      pending_.erase(it);
    }
  }
  if (!pc.st) {
    disconnect(std::make_exception_ptr(protocol_error(
        "procxy: reply to request #" + std::to_string(f.header.id) + " that is not pending")));
    return;
  }
  // With a user executor, one-way callbacks the child sent before this reply may still be
  // queued there: the reply completes behind them (ordering rule 3 of docs/design.md
  // "Callbacks"). Not for a call made from one of those tasks: it would wait for itself.
  if (!pc.in_task && callbacks_->has_executor() && callbacks_->backlog()) {
    auto self = shared_from_this();
    auto cell = std::make_shared<std::pair<pending_call, frame>>(std::move(pc), std::move(f));
    callbacks_->post_task(
        [self, cell](bool closed) {
          if (closed)
            cell->first.st->fail(std::make_exception_ptr(terminated("procxy: the proxy was terminated")));
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
    decoder d(r, callbacks_.get());
    pc.decode(*pc.st, f.header.kind, d, reply_context{pc.what, peer_pid_});
    if (!r.at_end()) throw protocol_error("procxy: trailing bytes after a reply");
  } catch (const protocol_error&) {
    pc.st->fail(std::current_exception());
    disconnect(std::current_exception());
  } catch (...) {
    pc.st->fail(std::current_exception());
  }
}

// ---- the reading role --------------------------------------------------------------------------

bool connection::lead_read(std::unique_lock<std::mutex>& lk, clock::time_point deadline) {
  reading_ = true;
  bool e = on_dispatch_thread();
  e_polling_ = e;
  // A plain blocking read() is the fast path. Poll with the wake-up eventfd whenever another
  // thread may complete what this reader waits for: E with queued replies, a timer, a stop.
  // (The child's own outgoing calls may get continuations posted to its object thread.)
  // With a user executor, replies and callbacks also complete on the executor's thread.
  const bool with_wakeup = (e && side_ == side::parent) || !queue_.empty() || e_busy_ ||
                           callbacks_->has_executor() ||
                           (side_ == side::child && !pending_.empty());
  lk.unlock();
  flush();  // held-back calls and replies go out before this thread blocks
  std::vector<frame> batch;
  bool got = false;
  try {
    got = read_batch(deadline, with_wakeup, batch);
  } catch (...) {
    lk.lock();
    reading_ = false;
    e_polling_ = false;
    cv_.notify_all();
    throw;
  }
  last_activity_.store(clock::now().time_since_epoch().count(), std::memory_order_relaxed);
  lk.lock();
  e_polling_ = false;
  // Route while still holding the role: a waiter whose reply is in this batch must not find the
  // role free, take it, and block in read() for a reply that was already read.
  bool replies = false, requests = false;
  for (auto& f : batch) (is_reply(f.header.kind) ? replies : requests) = true;
  if (side_ == side::parent) {
    // While the child sends requests (callbacks), the dispatch thread that runs them reads too,
    // so each runs where it was read: no hop from a caller's thread. A batch of replies alone
    // hands reading back to the callers.
    if (requests)
      e_reads_requests_ = true;
    else if (e && replies)
      e_reads_requests_ = false;
  }
  if (!batch.empty()) route(batch, lk);
  if (replies) {  // the peer finished something: send it what we held back (ack clocking)
    lk.unlock();
    flush();
    lk.lock();
  }
  reading_ = false;
  // Hand the reading role over to whoever waits for it, and wake whoever's reply was routed. The
  // dispatch thread reading for deferring callers wakes them only for a reply (a wake-up per
  // callback would cost a context switch each).
  if (!e || replies || role_waiters_ > 0) cv_.notify_all();
  return got;
}

bool connection::wait(state_base& st, clock::time_point deadline) {
  std::unique_lock lk(mu_);
  const bool e = on_dispatch_thread();
  ++waiters_;
  // A callback running on the user's executor that waits here: the executor is blocked in it,
  // so the callbacks the child invokes meanwhile run here, as the child's object thread runs
  // nested calls while it waits (docs/design.md "Callbacks: threads").
  const bool runs_tasks = callbacks_->has_executor() && callbacks_->in_task();
  codec_context::task_waiter tw(*callbacks_, runs_tasks);
  // E waits for a request it made (a callback it invokes in the child, a call from a listener):
  // that request goes out now, before E runs anything nested that could let later requests of
  // other threads overtake it.
  if (e && side_ == side::parent) {
    lk.unlock();
    flush();
    lk.lock();
  }
  for (;;) {
    if (st.is_ready()) break;
    if (runs_tasks && callbacks_->has_unstarted()) {
      lk.unlock();
      callbacks_->run_unstarted();
      lk.lock();
      continue;
    }
    auto now = clock::now();
    if (st.call_deadline <= now) {
      expire_deadlines(lk);
      continue;
    }
    if (deadline <= now) break;
    auto until = std::min(deadline, st.call_deadline);
    if (e && !queue_.empty()) {
      drain_queue(lk);  // nested: a request that arrived while E waits runs here
      continue;
    }
    if (!reading_ && !disconnected_ && !defer_to_dispatch(e) && !events_full()) {
      lead_read(lk, until);
      continue;
    }
    lk.unlock();
    flush();
    lk.lock();
    // Re-check: while unlocked, the reader may have queued work for E (a nested request, or E's
    // own reply behind one) and let go of the role and taken it again; its notify came before
    // this wait.
    if (st.is_ready() || (e && !queue_.empty())) continue;
    const bool defer = defer_to_dispatch(e);
    if (!reading_ && !disconnected_ && !events_full()) {
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
  if (waiters_ == 0 && background_read_wanted() && !reading_) wake_dispatch_thread();
  return st.is_ready();
}

void connection::wake_waiters() {
  std::lock_guard lk(mu_);
  wake_dispatch_thread();  // and the reader, if it polls
  cv_.notify_all();
}

bool connection::defer_to_dispatch(bool e) const {
  return !e && side_ == side::parent && e_reads_requests_ && !e_busy_ && !stopping_;
}

bool connection::background_read_wanted() const {
  if (disconnected_ || stopping_) return false;
  if (side_ == side::child) return true;
  if (want_read_) return true;     // a blocked writer or a continuation needs a reader now
  if (e_reads_requests_) return true;  // callbacks are flowing: run each where it is read
  if (waiters_ > 0) return false;  // a waiter reads
  // Otherwise read once the callers have left the socket alone for a while: this notices EOF
  // of an idle child and completes discarded futures, without racing callers in a busy loop.
  auto last = clock::time_point(clock::duration(last_activity_.load(std::memory_order_relaxed)));
  return clock::now() - last >= background_linger;
}

void connection::run_dispatch_loop() {
  set_dispatch_thread(std::this_thread::get_id());
  std::unique_lock lk(mu_);
  while (!stopping_) {
    if (!queue_.empty()) {
      drain_queue(lk);
      continue;
    }
    expire_deadlines(lk);
    if (!reading_ && background_read_wanted() && !events_full()) {
      want_read_ = false;
      try {
        lead_read(lk, next_deadline_);
      } catch (const std::exception&) {
        // poll/read failures disconnect; nothing else is expected here.
      }
      continue;
    }
    auto wake = next_deadline_;
    if (side_ == side::parent) {
      if (!reading_) {
        auto last = clock::time_point(clock::duration(last_activity_.load(std::memory_order_relaxed)));
        wake = std::min(wake, last + background_linger);
      } else {
        // A caller reads now. Look again after one linger: it may let go of the role without
        // anybody else waiting, and then only this thread would notice a child that dies while
        // idle. (Waking the dispatch thread each time a caller lets go costs a context switch
        // per call: 1.22x instead of 1.08x the raw ping-pong on one CPU.)
        wake = std::min(wake, clock::now() + background_linger);
      }
    }
    if (wake == no_deadline)
      e_cv_.wait(lk);
    else
      e_cv_.wait_until(lk, wake);
  }
  // Whatever is still queued will never run: complete replies, drop requests and tasks.
  while (!queue_.empty()) queue_.pop_front();
  lk.unlock();
  flush_corked();
  if (auto f = std::move(on_dispatch_exit)) f();
}

void connection::drain_queue(std::unique_lock<std::mutex>& lk) {
  bool outer = !e_busy_;
  e_busy_ = true;
  e_corked_ = true;
  while (!queue_.empty() && !(stopping_ && outer)) {
    item it = std::move(queue_.front());
    queue_.pop_front();
    lk.unlock();
    run_item(it);
    lk.lock();
  }
  if (outer) {
    e_busy_ = false;
    lk.unlock();
    flush_corked();
    e_corked_ = false;
    lk.lock();
  }
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
    complete(it.f);
    std::lock_guard lk(mu_);
    if (reading_) wake_dispatch_thread();  // the reader may be the thread waiting for this reply
    cv_.notify_all();                      // or a caller that left reading to this thread
    return;
  }
  if (!handler_) {
    disconnect(std::make_exception_ptr(protocol_error(
        std::string("procxy: unexpected ") + to_string(it.f.header.kind) + " message")));
    return;
  }
  try {
    handler_->handle(std::move(it.f), *this);
  } catch (const protocol_error&) {
    disconnect(std::current_exception());
  }
}

void connection::post(std::function<void()> f, bool allow_inline) {
  if (allow_inline && on_dispatch_thread()) {
    f();
    return;
  }
  std::lock_guard lk(mu_);
  if (stopping_) return;  // the proxy is gone: its continuations never run
  queue_.push_back(item{frame{}, std::move(f)});
  wake_dispatch_thread();
}

void connection::wake_dispatch_thread() {  // mu_ held
  e_cv_.notify_all();
  if (reading_) {  // whoever reads may be in poll() on the eventfd
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  }
}

void connection::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
    cv_.notify_all();
    wake_dispatch_thread();
  }
  std::lock_guard wl(wmu_);
  flusher_stop_ = true;
  flush_cv_.notify_all();
}

void connection::expire_deadlines(std::unique_lock<std::mutex>& lk) {
  auto now = clock::now();
  if (next_deadline_ > now) return;
  std::vector<pending_call> expired;
  std::vector<std::shared_ptr<pending_call::retry>> resend;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.deadline <= now) {
      expired_.insert(it->first);
      expired.push_back(std::move(it->second));
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
  // Idempotent calls with retries left go out again under a new id (a late reply to the old id
  // is dropped like any late reply); the others fail.
  for (auto it = expired.begin(); it != expired.end();) {
    auto& pc = *it;
    if (!pc.again || pc.again->left == 0 || broken_) {
      ++it;
      continue;
    }
    --pc.again->left;
    std::uint64_t id = next_id_++;
    pc.deadline = now + pc.again->timeout;
    pc.st->call_id = id;
    pc.st->call_deadline = pc.deadline;
    std::memcpy(pc.again->frame.data() + offsetof(frame_header, id), &id, sizeof id);
    resend.push_back(pc.again);
    pending_.emplace(id, std::move(pc));
    it = expired.erase(it);
  }
  clock::time_point next = no_deadline;
  for (auto& [id, pc] : pending_) next = std::min(next, pc.deadline);
  next_deadline_ = next;
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
      fatal = std::make_exception_ptr(
          spawn_error(std::string("procxy: ") + pc.what + " did not complete within start_timeout"));
      pc.st->fail(fatal);
    } else {
      calls_timed_out_.fetch_add(1, std::memory_order_relaxed);
      const char* attempts = pc.again ? " (and so did each of its retries)" : "";
      pc.st->fail(std::make_exception_ptr(
          timeout_error(std::string("procxy: ") + pc.what + " timed out" + attempts)));
      timed_out = pc.what;
    }
  }
  if (fatal) disconnect(fatal);
  if (timed_out && on_call_timeout) on_call_timeout(timed_out);
  lk.lock();
  cv_.notify_all();
}

void connection::break_with(std::exception_ptr e) {
  std::unordered_map<std::uint64_t, pending_call> failed;
  {
    std::lock_guard lk(mu_);
    if (!broken_) broken_ = e;
    e = broken_;
    failed.swap(pending_);
    cv_.notify_all();
    wake_dispatch_thread();
  }
  for (auto& [id, pc] : failed) pc.st->fail(e);
}

bool connection::broken() const {
  std::lock_guard lk(mu_);
  return static_cast<bool>(broken_);
}

std::exception_ptr connection::broken_reason() const {
  std::lock_guard lk(mu_);
  return broken_;
}

connection_stats connection::stats() const {
  connection_stats s;
  s.frames_sent = frames_sent_.load();
  s.frames_received = frames_received_.load();
  s.bytes_sent = bytes_sent_.load();
  s.bytes_received = bytes_received_.load();
  s.write_syscalls = write_syscalls_.load();
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
  s.pending_calls = pending_.size();
  return s;
}

}  // namespace procxy::detail
