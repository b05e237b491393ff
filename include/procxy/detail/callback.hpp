// procxy/detail/callback.hpp — std::function (and procxy::notify) across the process boundary.
//
// A function crosses as a placeholder: the sender registers it in its connection's callback
// registry (this codec_context) and writes its id; the receiver builds a std::function that
// sends `invoke` (or `notify`) frames naming that id, and holds the registration alive through a
// shared remote_callback handle. When the receiver's last copy is destroyed, the handle sends
// `release` and the sender drops the function. See docs/design.md "Callbacks".
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "procxy/detail/codec.hpp"
#include "procxy/detail/connection.hpp"
#include "procxy/future.hpp"

namespace procxy {

// A one-way callback: calling it sends the arguments and returns at once, without waiting for
// the function to run in the other process. Calls keep their order and their writes are
// coalesced; an exception the function throws goes to the owning side's error handler
// (spawn_options::on_callback_error; default: printed to stderr). For high-frequency progress
// reports and the like. Two-way callbacks are plain std::function.
template <class Sig>
class notify;
template <class... A>
class notify<void(A...)> {
 public:
  notify() = default;
  template <class F>
    requires(!std::is_same_v<std::decay_t<F>, notify> && std::is_invocable_v<F&, A...>)
  notify(F f) : fn_(std::move(f)) {}  // NOLINT: implicit, like std::function
  void operator()(A... a) const { fn_(std::forward<A>(a)...); }
  explicit operator bool() const noexcept { return static_cast<bool>(fn_); }
  const std::function<void(A...)>& function() const noexcept { return fn_; }

 private:
  std::function<void(A...)> fn_;
};

namespace detail {

struct reply_sink;

// The callback registry of one connection: the functions this side lent to the peer (local),
// and counters. Thread-safe.
class codec_context {
 public:
  // Runs a local function with arguments decoded from `args`; `reply` is null for notify.
  using local_fn = std::function<void(decoder& args, const reply_sink* reply)>;

  explicit codec_context(connection& conn) : conn_(conn) {}
  codec_context(const codec_context&) = delete;
  codec_context& operator=(const codec_context&) = delete;

  // Registers a function lent to the peer. Throws serialization_error past the limit.
  std::uint64_t add_local(local_fn f);
  // Handles invoke / notify / release frames (on the dispatch thread).
  void handle(frame& f);
  // Drops every local function (the peer is gone). Returns how many were dropped.
  std::size_t clear();
  // The peer dropped its last copy of `id` (or a send failed and nothing was lent).
  void release_local(std::uint64_t id);
  // Sends `release` for a remote function this side no longer holds. Never throws.
  void release_remote(std::uint64_t id) noexcept;

  connection& conn() noexcept { return conn_; }
  std::size_t local_live() const;
  std::size_t limit() const noexcept { return limit_; }
  void set_limit(std::size_t n) noexcept { limit_ = n; }  // before traffic
  // Where exceptions of one-way callbacks this side runs go (default: stderr).
  void set_error_handler(std::function<void(std::exception_ptr)> h) { on_error_ = std::move(h); }
  // Default timeout of two-way invocations this side makes (0: none).
  void set_invoke_timeout(std::chrono::milliseconds t) noexcept { invoke_timeout_ = t; }
  std::chrono::milliseconds invoke_timeout() const noexcept { return invoke_timeout_; }

  std::atomic<std::int64_t> remote_live{0};       // remote functions this side holds
  std::atomic<std::uint64_t> invocations_in{0};   // invoke + notify run here
  std::atomic<std::uint64_t> invocations_out{0};  // invoke + notify sent
  std::atomic<std::uint64_t> releases_in{0}, releases_out{0};
  std::atomic<std::uint64_t> unknown_invocations{0};  // invoke/notify of an id not registered here

 private:
  connection& conn_;
  std::size_t limit_ = 100'000;
  mutable std::mutex mu_;
  std::unordered_map<std::uint64_t, local_fn> local_;
  std::uint64_t next_id_ = 1;
  std::function<void(std::exception_ptr)> on_error_;
  std::chrono::milliseconds invoke_timeout_{0};
};

// Registrations made while building one frame: if the frame is never sent (an encoding error,
// too large), they are rolled back, so a failed call lends nothing.
class registration_scope {
 public:
  explicit registration_scope(codec_context* ctx) noexcept;
  ~registration_scope();
  registration_scope(const registration_scope&) = delete;
  registration_scope& operator=(const registration_scope&) = delete;
  void commit() noexcept { committed_ = true; }
  static void note(std::uint64_t id);

 private:
  codec_context* ctx_;
  registration_scope* outer_;
  std::vector<std::uint64_t> ids_;
  bool committed_ = false;
};

// A remote function held by this side; releases it when the last copy goes.
struct remote_callback {
  remote_callback(std::weak_ptr<connection> c, codec_context& ctx, std::uint64_t i) noexcept
      : conn(std::move(c)), id(i) {
    ctx.remote_live.fetch_add(1, std::memory_order_relaxed);
  }
  ~remote_callback();
  remote_callback(const remote_callback&) = delete;
  remote_callback& operator=(const remote_callback&) = delete;
  std::weak_ptr<connection> conn;
  std::uint64_t id;
};

std::shared_ptr<connection> lock_callback_connection(const remote_callback& r);

template <class R>
void decode_reply(state_base& st, message_kind kind, decoder& d, const reply_context& ctx);

// Runs a local function for an invoke/notify: decodes the arguments, calls, replies.
template <class R, class... A>
void run_local(const std::function<R(A...)>& fn, decoder& d, const reply_sink* reply);

// Calls a remote function: sends invoke and waits (two-way), or sends notify (one-way).
template <class R, class... A>
R call_remote(const remote_callback& ref, bool one_way, const A&... a);

template <class A>
constexpr bool check_callback_param() {
  static_assert(!(std::is_lvalue_reference_v<A> && !std::is_const_v<std::remove_reference_t<A>>),
                "procxy: a callback parameter is a non-const lvalue reference; the other process "
                "cannot write back into it. Take it by value or const reference");
  static_assert(!std::is_rvalue_reference_v<A>,
                "procxy: a callback parameter is an rvalue reference; take it by value");
  return true;
}

template <class R, class... A>
struct function_codec {
  static_assert((check_callback_param<A>() && ...));
  static_assert(!std::is_reference_v<R>, "procxy: a callback cannot return a reference");

  static void encode(encoder& e, const std::function<R(A...)>& f, bool one_way) {
    if (!f) {
      e.raw(std::uint8_t{0});
      return;
    }
    codec_context* ctx = e.context();
    if (ctx == nullptr)
      throw serialization_error(
          "procxy: a std::function can only cross as an argument or result of a proxied call "
          "(not as a constructor argument)");
    auto id = ctx->add_local([f](decoder& d, const reply_sink* reply) { run_local(f, d, reply); });
    registration_scope::note(id);
    e.raw(static_cast<std::uint8_t>(one_way ? 2 : 1));
    e.raw(id);
  }
  // Returns the tag (0 empty, 1 two-way, 2 one-way) and fills `f` with the remote caller.
  static std::uint8_t decode(decoder& d, std::function<R(A...)>& f) {
    auto tag = d.raw<std::uint8_t>();
    if (tag == 0) {
      f = nullptr;
      return 0;
    }
    if (tag > 2 || (tag == 2 && !std::is_void_v<R>))
      throw protocol_error("procxy: bad callback tag " + std::to_string(tag));
    auto id = d.raw<std::uint64_t>();
    codec_context* ctx = d.context();
    if (ctx == nullptr) throw protocol_error("procxy: a callback outside a proxied call");
    auto ref = std::make_shared<remote_callback>(ctx->conn().weak_from_this(), *ctx, id);
    bool one_way = tag == 2;
    f = [ref, one_way](A... a) -> R { return call_remote<R, std::remove_cvref_t<A>...>(*ref, one_way, a...); };
    return tag;
  }
};

template <class R, class... A>
struct codec_hook<std::function<R(A...)>> {
  static constexpr bool enabled = true;
  static constexpr std::size_t min_size = 1;
  static void encode(encoder& e, const std::function<R(A...)>& f) {
    function_codec<R, A...>::encode(e, f, false);
  }
  static void decode(decoder& d, std::function<R(A...)>& f) { function_codec<R, A...>::decode(d, f); }
};

template <class... A>
struct codec_hook<procxy::notify<void(A...)>> {
  static constexpr bool enabled = true;
  static constexpr std::size_t min_size = 1;
  static void encode(encoder& e, const procxy::notify<void(A...)>& f) {
    function_codec<void, A...>::encode(e, f.function(), true);
  }
  static void decode(decoder& d, procxy::notify<void(A...)>& f) {
    std::function<void(A...)> fn;
    function_codec<void, A...>::decode(d, fn);
    f = procxy::notify<void(A...)>(std::move(fn));
  }
};

}  // namespace detail
}  // namespace procxy
