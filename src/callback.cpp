// The callback registry: lending functions to the peer, running them when it invokes them,
// releasing them when it lets go; and the handles of the peer's functions held here.
#include <cstdio>
#include <exception>
#include <stdexcept>

#include "procxy/detail/callback.hpp"
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

std::uint64_t codec_context::add_local(local_fn f) {
  std::lock_guard lk(mu_);
  if (local_.size() >= limit_)
    throw serialization_error("procxy: this side already lends " + std::to_string(local_.size()) +
                              " callbacks to the other process, the limit (spawn_options::"
                              "max_callbacks); the call was not sent");
  auto id = next_id_++;
  local_.emplace(id, std::move(f));
  return id;
}

void codec_context::release_local(std::uint64_t id) {
  local_fn dropped;  // destroyed outside the lock: it may hold handles of the peer's functions
  std::lock_guard lk(mu_);
  auto it = local_.find(id);
  if (it == local_.end()) return;  // released twice, or never lent: nothing to do
  dropped = std::move(it->second);
  local_.erase(it);
}

std::size_t codec_context::clear() {
  std::unordered_map<std::uint64_t, local_fn> dropped;
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
  try {
    byte_buffer buf;
    build_frame(buf, message_kind::release, 0, [&](encoder& e) {
      e.raw(std::uint32_t{1});
      e.raw(id);
    });
    if (conn_.tracing()) conn_.trace("send release of callback #" + std::to_string(id));
    conn_.send(buf.view(), /*defer=*/true);
    releases_out.fetch_add(1, std::memory_order_relaxed);
  } catch (...) {
    // The peer is gone; its registry went with it.
  }
}

void codec_context::handle(frame& f) {
  byte_reader r(f.body.view());
  decoder d(r, this);
  if (f.header.kind == message_kind::release) {
    auto n = d.count(sizeof(std::uint64_t));
    for (std::size_t i = 0; i < n; ++i) {
      release_local(d.raw<std::uint64_t>());
      releases_in.fetch_add(1, std::memory_order_relaxed);
    }
    expect_end(d);
    return;
  }
  const bool two_way = f.header.kind == message_kind::invoke;
  auto id = d.raw<std::uint64_t>();
  local_fn fn;
  {
    std::lock_guard lk(mu_);
    auto it = local_.find(id);
    if (it != local_.end()) fn = it->second;
  }
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
    fn(d, &reply);  // replies with the result or the exception
    return;
  }
  try {
    fn(d, nullptr);
  } catch (const protocol_error&) {
    throw;
  } catch (...) {
    auto e = std::current_exception();
    if (on_error_) {
      on_error_(e);
    } else {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        std::fprintf(stderr, "procxy: a one-way callback threw: %s\n", ex.what());
      } catch (...) {
        std::fprintf(stderr, "procxy: a one-way callback threw a non-standard exception\n");
      }
    }
  }
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
  if (!c) throw terminated("procxy: the process that owns this callback is gone (its proxy was destroyed)");
  if (auto e = c->broken_reason()) std::rethrow_exception(e);
  return c;
}

}  // namespace procxy::detail
