// procxy/detail/callback.hpp — std::function (and procxy::notify) across the process boundary.
//
// A function crosses as a placeholder: the sender registers it in its connection's callback
// registry (this codec_context) and writes its id; the receiver builds a std::function that
// sends `invoke` (or `notify`) frames naming that id, and holds the registration alive through a
// shared remote_callback handle. When the receiver's last copy is destroyed, the handle sends
// `release` and the sender drops the function. See docs/design.md "Callbacks".
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
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
  requires(!std::is_same_v<std::decay_t<F>, notify> && std::is_invocable_v<F&, A...>) notify(F f)
      : fn_(std::move(f)) {}  // NOLINT: implicit, like std::function
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
  // Decodes the arguments of an invoke/notify from `args` and runs the function `fn` (a
  // std::function<R(A...)>) with them; `reply` is null for notify.
  using runner = void (*)(const std::shared_ptr<const void>& fn, decoder& args,
                          const reply_sink* reply);
  struct local_entry {
    std::shared_ptr<const void> fn;  // the std::function<R(A...)> lent
    runner run = nullptr;
    const std::type_info* type = nullptr;  // typeid(std::function<R(A...)>)
    explicit operator bool() const noexcept { return run != nullptr; }
  };
  // spawn_options::callback_executor: takes a task and runs it later, one at a time, in order.
  using executor_fn = std::function<void(std::function<void()>)>;

  explicit codec_context(connection& conn) : conn_(conn) {}
  codec_context(const codec_context&) = delete;
  codec_context& operator=(const codec_context&) = delete;

  // Registers a function lent to the peer. Throws serialization_error past the limit.
  std::uint64_t add_local(local_entry e);
  // The function lent as `id`, or an empty entry.
  local_entry find_local(std::uint64_t id) const;
  // Handles invoke / notify / release frames (on the dispatch thread).
  void handle(frame& f);
  // Drops every local function (the peer is gone). Returns how many were dropped.
  std::size_t clear();
  // The peer dropped its last copy of `id` (or a send failed and nothing was lent).
  void release_local(std::uint64_t id);
  // Sends `release` for a remote function this side no longer holds. Never throws. Off the
  // dispatch thread it is handed to that thread, so it cannot overtake a frame the dispatch
  // thread is still holding back that names the same function.
  void release_remote(std::uint64_t id) noexcept;

  connection& conn() noexcept { return conn_; }
  std::size_t local_live() const;
  std::size_t limit() const noexcept { return limit_; }
  void set_limit(std::size_t n) noexcept { limit_ = n; }  // before traffic
  // Where exceptions of one-way callbacks this side runs go (default: stderr).
  void set_error_handler(std::function<void(std::exception_ptr)> h) { on_error_ = std::move(h); }
  void report_one_way_error(std::exception_ptr e) const noexcept;
  // Default timeout of two-way invocations this side makes (0: none).
  void set_invoke_timeout(std::chrono::milliseconds t) noexcept { invoke_timeout_ = t; }
  std::chrono::milliseconds invoke_timeout() const noexcept { return invoke_timeout_; }

  // ---- the user's executor (parent only; docs/design.md "Callbacks: threads") ----
  void set_executor(executor_fn ex) { executor_ = std::move(ex); }  // before traffic
  bool has_executor() const noexcept { return static_cast<bool>(executor_); }
  // Hands `task` to the executor. `task(false)` runs it; `task(true)` is called instead once the
  // proxy is closed (a task must then only fail what waits on it). `ordered`: counted in the
  // backlog that replies wait behind (one-way callbacks, deferred replies and releases).
  void post_task(std::function<void(bool closed)> task, bool ordered, bool event = false);
  // Backpressure (drop_oldest): takes the oldest event task not started yet, or null. Destroy the
  // result outside the connection's lock.
  std::shared_ptr<void> take_oldest_event();
  // One-way callbacks (or deferred replies) handed to the executor and not finished yet.
  bool backlog() const noexcept { return backlog_.load(std::memory_order_acquire) > 0; }
  // Whether close() has run (the proxy is going): tasks posted now fail at once, never start.
  bool closed() const;
  // Whether the calling thread is running a task of this context.
  bool in_task() const noexcept;
  // Runs, on the calling thread, the tasks handed to the executor that have not started yet, in
  // order. For a thread that runs a task and waits for a call of this proxy: the serial executor
  // is blocked in it, so the callbacks that call needs run here (reentrancy to any depth).
  // Returns whether it ran any.
  bool run_unstarted();
  bool has_unstarted() const;
  // Marks, for its lifetime, a thread that waits inside a task (connection::wait): only then
  // does post_task have to wake the waiters.
  class task_waiter {
   public:
    task_waiter(codec_context& c, bool active) noexcept : c_(active ? &c : nullptr) {
      if (c_) c_->task_waiters_.fetch_add(1);  // seq_cst: pairs with post_task's load
    }
    ~task_waiter() {
      if (c_) c_->task_waiters_.fetch_sub(1);
    }
    task_waiter(const task_waiter&) = delete;
    task_waiter& operator=(const task_waiter&) = delete;

   private:
    codec_context* c_;
  };
  // No task starts after this; waits for those running (but not for the caller's own).
  void close();

  std::atomic<std::int64_t> remote_live{0};       // remote functions this side holds
  std::atomic<std::uint64_t> invocations_in{0};   // invoke + notify run here
  std::atomic<std::uint64_t> invocations_out{0};  // invoke + notify sent
  std::atomic<std::uint64_t> releases_in{0}, releases_out{0};
  std::atomic<std::uint64_t> unknown_invocations{0};  // invoke/notify of an id not registered here

 private:
  struct task_cell {
    std::function<void(bool)> fn;
    bool ordered;
    bool event = false;
    bool claimed = false;  // under task_mu_: started by the executor or by run_unstarted
  };
  bool claim(task_cell& t);
  void run_task(const std::function<void(bool)>& task, bool ordered);
  void send_release(std::uint64_t id) noexcept;

  connection& conn_;
  std::size_t limit_ = 100'000;
  mutable std::mutex mu_;
  std::unordered_map<std::uint64_t, local_entry> local_;
  std::uint64_t next_id_ = 1;
  std::function<void(std::exception_ptr)> on_error_;
  std::chrono::milliseconds invoke_timeout_{0};

  executor_fn executor_;
  std::atomic<int> backlog_{0};
  std::atomic<int> task_waiters_{0};
  mutable std::mutex task_mu_;
  std::deque<std::shared_ptr<task_cell>> unstarted_;  // under task_mu_, in posting order
  std::condition_variable task_cv_;
  int running_tasks_ = 0;            // under task_mu_
  std::atomic<bool> closed_{false};  // written under task_mu_; closed() reads it lock-free
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

// Runs a local function for an invoke/notify: decodes the arguments, calls (here, or on the
// executor), replies. `fn` points to a std::function<R(A...)>.
template <class R, class... A>
void run_local(const std::shared_ptr<const void>& fn, decoder& d, const reply_sink* reply);

// Calls a remote function: sends invoke and waits (two-way), or sends notify (one-way).
template <class R, class... A>
R call_remote(const remote_callback& ref, bool one_way, const A&... a);

// What a std::function decoded from the peer holds: the handle of the peer's function. Named
// (not a lambda) so that a function handed back to its owner is recognized and crosses as the
// owner's own id (tag 3) instead of as a proxy of a proxy.
template <class R, class... A>
struct remote_fn {
  std::shared_ptr<remote_callback> ref;
  bool one_way;
  R operator()(A... a) const {
    return call_remote<R, std::remove_cvref_t<A>...>(*ref, one_way, a...);
  }
};

template <class A>
constexpr bool check_callback_param() {
  static_assert(!(std::is_lvalue_reference_v<A> && !std::is_const_v<std::remove_reference_t<A>>),
                "procxy: a callback parameter is a non-const lvalue reference; the other process "
                "cannot write back into it. Take it by value or const reference");
  static_assert(!std::is_rvalue_reference_v<A>,
                "procxy: a callback parameter is an rvalue reference; take it by value");
  return true;
}

// Placeholder tags on the wire: 0 empty, 1 two-way, 2 one-way (u64 id of the sender's function
// follows both), 3 "your own function" (u64 id of the receiver's function).
template <class R, class... A>
struct function_codec {
  static_assert((check_callback_param<A>() && ...));
  static_assert(!std::is_reference_v<R>, "procxy: a callback cannot return a reference");
  using fn_t = std::function<R(A...)>;

  static void encode(encoder& e, const fn_t& f, bool one_way) {
    if (!f) {
      e.raw(std::uint8_t{0});
      return;
    }
    codec_context* ctx = e.context();
    if (ctx == nullptr)
      throw serialization_error(
          "procxy: a std::function can only cross as an argument or result of a proxied call "
          "(not as a constructor argument)");
    if (const auto* rf = f.template target<remote_fn<R, A...>>()) {
      if (rf->ref->conn.lock().get() == &ctx->conn()) {  // back to the process that owns it
        e.raw(std::uint8_t{3});
        e.raw(rf->ref->id);
        return;
      }
    }
    auto id = ctx->add_local(codec_context::local_entry{std::make_shared<const fn_t>(f),
                                                        &run_local<R, A...>, &typeid(fn_t)});
    registration_scope::note(id);
    e.raw(static_cast<std::uint8_t>(one_way ? 2 : 1));
    e.raw(id);
  }
  // Returns the tag and fills `f` with the remote caller (or, tag 3, this side's own function).
  static std::uint8_t decode(decoder& d, fn_t& f) {
    auto tag = d.raw<std::uint8_t>();
    if (tag == 0) {
      f = nullptr;
      return 0;
    }
    if (tag > 3 || (tag == 2 && !std::is_void_v<R>))
      throw protocol_error("procxy: bad callback tag " + std::to_string(tag));
    auto id = d.raw<std::uint64_t>();
    codec_context* ctx = d.context();
    if (ctx == nullptr) throw protocol_error("procxy: a callback outside a proxied call");
    if (tag == 3) {
      auto entry = ctx->find_local(id);
      if (!entry)
        throw protocol_error("procxy: the peer handed back callback #" + std::to_string(id) +
                             ", which this side does not lend");
      if (*entry.type != typeid(fn_t))
        throw protocol_error("procxy: the peer handed back callback #" + std::to_string(id) +
                             " as a function of another type");
      f = *static_cast<const fn_t*>(entry.fn.get());
      return 3;
    }
    auto ref = std::make_shared<remote_callback>(ctx->conn().weak_from_this(), *ctx, id);
    f = remote_fn<R, A...>{std::move(ref), tag == 2};
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
  static void decode(decoder& d, std::function<R(A...)>& f) {
    function_codec<R, A...>::decode(d, f);
  }
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
