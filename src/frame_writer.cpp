#include "procxy/detail/frame_writer.hpp"

#include "procxy/error.hpp"

// The write side of a channel (frame_writer.hpp). docs/design.md "Liveness", points 2 and 4.

namespace procxy::detail {

frame_writer::frame_writer(transport& t, io_thread& io, std::chrono::microseconds linger)
    : t_(t), io_(io), linger_(linger) {}

void frame_writer::enqueue(std::span<const std::byte> f, hold h, bool bounded,
                           std::vector<unique_fd>* fds) {
  bool wake = false;
  {
    std::unique_lock lk(mu_);
    if (bounded && queued_bytes() >= high_water) {
      // Backpressure: the peer reads slower than this side emits (the parent stops reading
      // while its listeners are behind, block_emitter). Wait until the I/O thread has written
      // the queue down, so an emitter cannot grow this process's memory without bound.
      ++full_waiters_;
      cv_.wait(lk, [&] { return closed_ || queued_bytes() < high_water; });
      --full_waiters_;
    }
    if (closed_) throw terminated("procxy: the connection is closed");
    bump(frames_, 1);
    bump(bytes_, f.size());
    if (fds != nullptr && !fds->empty()) marks_.push_back({enqueued_, std::move(*fds)});
    enqueued_ += f.size();
    pending_.append(f.data(), f.size());
    if (writing_) return;  // the holder of the writing role sends these bytes next, in order
    if (h == hold::handoff && !io_.is_current()) {
      // The I/O thread takes the role as it does when the transport is full (blocked()): it
      // finds the transport writable at once and drains the queue.
      writing_ = true;
      handed_off_.store(true);
      blocked_.store(true, std::memory_order_release);
      lk.unlock();
      io_.wake_for_writes();
      return;
    }
    if (h == hold::none || h == hold::handoff || pending_.size() >= flush_at) {
      writing_ = true;
      drain_writes(lk);
      return;
    }
    // Held for company (docs/design.md "Liveness", point 4); the I/O thread is the one that is
    // always there, so it must look by the time they are due.
    clock::time_point now{};
    if (held_since_.load(std::memory_order_relaxed) == no_deadline_rep) {
      now = clock::now();
      // seq_cst, as the I/O thread's store of when it looks again and its load of due(): one
      // of the two sees the other (no held frame waits for a sleeper that missed it).
      held_since_.store(now.time_since_epoch().count());
      wake = io_.looks_again_at() > now + linger_;
    }
    if (h == hold::one_way && !oneway_held_.exchange(true)) {
      // An I/O thread that looks again within the delay anyway picks these up; waking it for
      // every call that emits would cost a context switch each.
      if (now == clock::time_point{}) now = clock::now();
      wake = wake || io_.looks_again_at() > now + oneway_delay;
    }
  }
  if (wake) io_.wake_for_writes();
}

void frame_writer::flush() noexcept {
  std::unique_lock lk(mu_);
  // After close() nothing more goes out (a held frame's descriptors are closed by then).
  if (writing_ || pending_.empty() || closed_) return;
  writing_ = true;
  try {
    drain_writes(lk);
  } catch (...) {
    // The peer is gone; the reader sees EOF and fails what is pending.
  }
}

void frame_writer::drain_writes(std::unique_lock<std::mutex>& lk) {
  for (;;) {
    if (off_ == out_.size()) {
      out_.clear();
      off_ = 0;
      if (pending_.empty()) break;
      std::swap(pending_, out_);
      held_since_.store(no_deadline_rep, std::memory_order_relaxed);
      oneway_held_.store(false, std::memory_order_relaxed);
    }
    // A frame with descriptors starts a write of its own, which carries them; the write before
    // it stops at its first byte.
    std::size_t len = out_.size() - off_;
    std::vector<int> fds;
    if (!marks_.empty()) {
      const std::uint64_t pos = enqueued_ - queued_bytes();
      std::size_t next = 0;
      if (marks_.front().at == pos) {
        for (auto& fd : marks_.front().fds) fds.push_back(fd.get());
        next = 1;
      }
      if (marks_.size() > next && marks_[next].at - pos < len)
        len = static_cast<std::size_t>(marks_[next].at - pos);
    }
    lk.unlock();
    std::size_t n = 0;
    try {
      n = fds.empty() ? t_.write_some(out_.data() + off_, len)
                      : t_.write_with_descriptors(out_.data() + off_, len, fds);
    } catch (...) {
      lk.lock();
      writing_ = false;
      handed_off_.store(false);
      closed_ = true;
      pending_.clear();
      out_.clear();
      off_ = 0;
      marks_.clear();
      cv_.notify_all();
      throw;
    }
    bump(write_calls_, 1);  // the writing role: one thread at a time
    lk.lock();
    if (n > 0 && !fds.empty()) marks_.pop_front();  // sent: this side's duplicates are closed
    if (n == 0) {
      // The transport is full: the peer reads (its I/O thread always does), but not right now.
      // The I/O thread keeps the writing role and goes on when there is room; this thread
      // returns at once (docs/design.md "Liveness": no user thread waits for the peer).
      blocked_.store(true, std::memory_order_release);
      if (!io_.is_current()) {
        lk.unlock();
        io_.wake_for_writes();
        lk.lock();
      }
      return;
    }
    off_ += n;
    if (full_waiters_ > 0 && queued_bytes() < high_water) cv_.notify_all();
  }
  writing_ = false;
  handed_off_.store(false);
  if (closed_) marks_.clear();
  if (shut_write_) t_.shutdown_write();
  cv_.notify_all();
}

void frame_writer::continue_blocked() noexcept {
  std::unique_lock lk(mu_);
  if (!blocked_.load(std::memory_order_acquire)) return;
  blocked_.store(false, std::memory_order_release);
  try {
    drain_writes(lk);  // keeps the role: writing_ is still set
  } catch (...) {
    // The peer is gone; the reader sees EOF.
  }
}

clock::time_point frame_writer::due() const noexcept {
  auto since = held_since_.load();
  if (since == no_deadline_rep) return no_deadline;
  auto at = from_rep(since);
  return oneway_held_.load() ? at + oneway_delay : at + linger_;
}

void frame_writer::shutdown_write() noexcept {
  std::lock_guard lk(mu_);
  shut_write_ = true;
  if (!writing_ && pending_.empty()) t_.shutdown_write();
}

void frame_writer::drain(std::chrono::milliseconds d) {
  std::unique_lock lk(mu_);
  cv_.wait_for(lk, d, [&] { return closed_ || (!writing_ && pending_.empty()); });
}

void frame_writer::close() noexcept {
  std::lock_guard lk(mu_);
  closed_ = true;  // nothing more goes out; a sender held by backpressure gives up
  handed_off_.store(false);
  if (!writing_) marks_.clear();  // else the writer may be sending them; the destructor closes
  cv_.notify_all();
}

}  // namespace procxy::detail
