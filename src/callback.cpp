// The callback registry: lending functions to the peer, running them when it invokes them,
// releasing them when it lets go; and the handles of the peer's functions held here.
#include "procxy/detail/callback.hpp"

#include <cstdio>
#include <exception>
#include <stdexcept>
#include <vector>

#include "procxy/detail/method.hpp"

namespace procxy::detail {

namespace {
thread_local registration_scope* t_scope = nullptr;
}  // namespace

registration_scope::registration_scope(codec_context* ctx) noexcept : ctx_(ctx), outer_(t_scope) {
  t_scope = this;
}

registration_scope::~registration_scope() {
  t_scope = outer_;
  if (!committed_ && ctx_ != nullptr)
    for (auto id : ids_) ctx_->release_local(id);
}

void registration_scope::note(std::uint64_t id) {
  if (t_scope != nullptr) t_scope->ids_.push_back(id);
}

std::uint64_t codec_context::add_local(local_entry e) {
  std::lock_guard lk(mu_);
  if (local_.size() >= limit_)
    throw serialization_error("procxy: this side already lends " + std::to_string(local_.size()) +
                              " callbacks to the other process, the limit (spawn_options::"
                              "max_callbacks); the call was not sent");
  auto id = next_id_++;
  local_.emplace(id, std::move(e));
  return id;
}

codec_context::local_entry codec_context::find_local(std::uint64_t id) const {
  std::lock_guard lk(mu_);
  auto it = local_.find(id);
  return it == local_.end() ? local_entry{} : it->second;
}

void codec_context::release_local(std::uint64_t id) {
  local_entry dropped;  // destroyed outside the lock: it may hold handles of the peer's functions
  std::lock_guard lk(mu_);
  auto it = local_.find(id);
  if (it == local_.end()) return;  // released twice, or never lent: nothing to do
  dropped = std::move(it->second);
  local_.erase(it);
}

std::size_t codec_context::clear() {
  std::unordered_map<std::uint64_t, local_entry> dropped;
  {
    std::lock_guard lk(mu_);
    dropped.swap(local_);
  }
  return dropped.size();
}

std::size_t codec_context::local_live() const {
  std::lock_guard lk(mu_);
  return local_.size();
}

void codec_context::release_remote(std::uint64_t id) noexcept {
  if (conn_.broken()) return;  // the peer's registry is gone with it
  // Frames are queued in the order they were sent, and nothing is held back out of that order
  // (docs/design.md "Liveness"): a frame that hands this function back to its owner (tag 3),
  // sent before this release, is written before it.
  send_release(id);
}

void codec_context::send_release(std::uint64_t id) noexcept {
  if (conn_.broken()) return;
  try {
    byte_buffer buf;
    encode_release(buf, std::span<const std::uint64_t>(&id, 1));
    if (conn_.tracing()) conn_.trace("send release of callback #" + std::to_string(id));
    conn_.send(buf.view(), /*defer=*/true);
    releases_out.fetch_add(1, std::memory_order_relaxed);
  } catch (...) {
    // The peer is gone; its registry went with it.
  }
}

void codec_context::report_one_way_error(std::exception_ptr e) const noexcept {
  try {
    if (on_error_) {
      on_error_(e);
      return;
    }
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "procxy: a one-way callback threw: %s\n", ex.what());
  } catch (...) {
    std::fprintf(stderr, "procxy: a one-way callback threw a non-standard exception\n");
  }
}

void codec_context::handle(frame& f) {
  if (f.header.kind == message_kind::release) {
    auto ids = decode_release(f.body.view());
    const auto n = ids.size();
    releases_in.fetch_add(n, std::memory_order_relaxed);
    // Behind the executor's backlog: a deferred reply before it may hand one of these back.
    if (has_executor() && backlog()) {
      post_task(
          [this, ids = std::move(ids)](bool) {
            for (auto id : ids) release_local(id);
          },
          true);
      return;
    }
    for (auto id : ids) release_local(id);
    return;
  }
  const bool two_way = f.header.kind == message_kind::invoke;
  byte_reader r(f.body.view());
  decoder d(r, this, &f.fds);
  auto id = decode_target(d);
  local_entry fn = find_local(id);
  if (conn_.tracing())
    conn_.trace(std::string("recv ") + (two_way ? "invoke" : "notify") + " of callback #" +
                std::to_string(id));
  if (!fn) {
    // Never a crash and never a call of something else: only what this side lent can run.
    unknown_invocations.fetch_add(1, std::memory_order_relaxed);
    if (!two_way) return;
    reply_sink reply{conn_.shared_from_this(), f.header.id, "callback"};
    try {
      throw std::logic_error("procxy: no callback #" + std::to_string(id) +
                             " here (never lent through this connection, or already released)");
    } catch (...) {
      reply.current_exception();
    }
    return;
  }
  invocations_in.fetch_add(1, std::memory_order_relaxed);
  if (two_way) {
    reply_sink reply{conn_.shared_from_this(), f.header.id, "callback"};
    fn.run(fn.fn, d, &reply);  // replies with the result or the exception
  } else {
    fn.run(fn.fn, d, nullptr);  // exceptions go to report_one_way_error
  }
}

// ---- the user's executor -----------------------------------------------------------------------

namespace {
// The contexts whose tasks the calling thread is running (innermost last).
thread_local std::vector<const codec_context*> t_tasks;
}  // namespace

bool codec_context::in_task() const noexcept {
  for (auto* c : t_tasks)
    if (c == this) return true;
  return false;
}

std::shared_ptr<void> codec_context::take_oldest_event() {
  std::lock_guard lk(task_mu_);
  for (auto it = unstarted_.begin(); it != unstarted_.end(); ++it)
    if ((*it)->event) {
      auto t = std::move(*it);
      unstarted_.erase(it);
      t->claimed = true;
      if (t->ordered) backlog_.fetch_sub(1, std::memory_order_acq_rel);
      return t;
    }
  return nullptr;
}

void codec_context::post_task(std::function<void(bool)> task, bool ordered, bool event) {
  if (ordered) backlog_.fetch_add(1, std::memory_order_acq_rel);
  auto cell = std::make_shared<task_cell>(task_cell{std::move(task), ordered, event});
  {
    std::unique_lock lk(task_mu_);
    if (closed_) {
      // close() has run (the proxy is going): the task must never start, but whatever waits on
      // it (a deferred reply's future) must still fail now, not when the executor gets to it.
      cell->claimed = true;
      lk.unlock();
      run_task(cell->fn, cell->ordered);
      return;
    }
    unstarted_.push_back(cell);
  }
  // The task keeps the connection (and so this registry) alive until it has run.
  auto keep = conn_.shared_from_this();
  try {
    executor_([this, keep = std::move(keep), cell] {
      if (claim(*cell)) run_task(cell->fn, cell->ordered);
    });
  } catch (...) {
    if (claim(*cell) && ordered) backlog_.fetch_sub(1, std::memory_order_acq_rel);
    throw;
  }
  // A thread waiting inside a task may have to run this one (the executor is blocked in it).
  if (task_waiters_.load() > 0) conn_.wake_waiters();  // seq_cst: after the push above
}

bool codec_context::closed() const { return closed_.load(std::memory_order_acquire); }

bool codec_context::claim(task_cell& t) {
  std::lock_guard lk(task_mu_);
  if (t.claimed) return false;
  t.claimed = true;
  for (auto it = unstarted_.begin(); it != unstarted_.end(); ++it)
    if (it->get() == &t) {
      unstarted_.erase(it);
      break;
    }
  return true;
}

bool codec_context::has_unstarted() const {
  std::lock_guard lk(task_mu_);
  return !unstarted_.empty();
}

bool codec_context::run_unstarted() {
  bool ran = false;
  for (;;) {
    std::shared_ptr<task_cell> t;
    {
      std::lock_guard lk(task_mu_);
      if (unstarted_.empty()) return ran;
      t = std::move(unstarted_.front());
      unstarted_.pop_front();
      t->claimed = true;
    }
    run_task(t->fn, t->ordered);
    ran = true;
  }
}

void codec_context::run_task(const std::function<void(bool)>& task, bool ordered) {
  bool closed;
  {
    std::lock_guard lk(task_mu_);
    closed = closed_;
    if (!closed) ++running_tasks_;
  }
  if (closed) {
    try {
      task(true);
    } catch (...) {
    }
  } else {
    t_tasks.push_back(this);
    try {
      task(false);
    } catch (...) {
      report_one_way_error(std::current_exception());
    }
    t_tasks.pop_back();
    std::lock_guard lk(task_mu_);
    --running_tasks_;
    task_cv_.notify_all();
  }
  if (ordered) backlog_.fetch_sub(1, std::memory_order_acq_rel);
}

void codec_context::close() {
  int own = 0;
  for (auto* c : t_tasks) own += c == this ? 1 : 0;
  std::deque<std::shared_ptr<task_cell>> never;
  {
    std::unique_lock lk(task_mu_);
    closed_ = true;
    never.swap(unstarted_);
    for (auto& t : never) t->claimed = true;  // the executor will find them taken
  }
  // Tasks the executor has not started never run: each only fails what waits on it (a deferred
  // reply's future), here and now rather than whenever the executor gets to it.
  for (auto& t : never) run_task(t->fn, t->ordered);
  std::unique_lock lk(task_mu_);
  task_cv_.wait(lk, [&] { return running_tasks_ <= own; });
}

remote_callback::~remote_callback() {
  if (auto c = conn.lock()) {
    auto& ctx = c->callbacks();
    ctx.remote_live.fetch_sub(1, std::memory_order_relaxed);
    ctx.release_remote(id);
  }
}

std::shared_ptr<connection> lock_callback_connection(const remote_callback& r) {
  auto c = r.conn.lock();
  if (!c)
    throw terminated(
        "procxy: the process that owns this callback is gone (its proxy was destroyed)");
  if (auto e = c->broken_reason()) std::rethrow_exception(e);
  return c;
}

}  // namespace procxy::detail
