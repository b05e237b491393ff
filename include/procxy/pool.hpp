// procxy/pool.hpp — spawn_pool<T>() and pool<T>: several children of T behind one typed face.
//
//   auto workers = procxy::spawn_pool<Resizer>({.size = 4}, {}, "lanczos");
//   auto f = workers.resize_image(img);          // least-loaded live member
//   auto g = workers.by_key(user_id).lookup(k);  // always the member of that key (affinity)
//   auto all = workers.broadcast<&Resizer::clear_cache>();  // one future per member
//
// Each member is an ordinary child (spawn_options apply to each) constructed from the same
// arguments. A call goes to the live member with the fewest calls in flight (ties: the next in
// turn). A member whose child ended (crash, exit, dispose) after it had started is replaced by a
// new child from the same arguments at the next call that looks at it; the calls it held fail as
// they would on a proxy (child_crashed, ...). Events and properties are per member: subscribe
// through member(i); on the pool itself they throw std::logic_error (docs/design.md "Pools").
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "procxy/proxy.hpp"

namespace procxy {

struct pool_options {
  // Members to start with: 0 means one per CPU this process may run on.
  std::size_t size = 0;
  // Replace a member whose child ended after it had started (a crash, an exit, dispose) with a
  // new child at the next call. A member that never started (its constructor threw, its binary
  // is missing) is not replaced: calls avoid it, and fail with its spawn_error when no member is
  // left.
  bool replace_ended = true;
};

// One member as stats() sees it.
struct pool_member_stats {
  int pid = -1;
  bool running = false;
  std::uint64_t replaced = 0;  // how many children this slot has had, minus one
  channel_stats channel;
};

namespace detail {

// The call target of a pool (src/pool.cpp): picks a member per call, replaces ended members.
class pool_target final : public call_target {
 public:
  using factory = std::function<std::shared_ptr<call_target>()>;
  pool_target(factory make, pool_options o, std::chrono::milliseconds timeout);
  ~pool_target() override;

  connection& channel_for_call() override;
  std::chrono::milliseconds default_timeout() const override { return timeout_; }
  event_hub& events() override;
  connection& event_channel() override;
  future<void> started() override;
  int pid() const noexcept override { return -1; }
  bool running() const override;
  void terminate() override;
  channel_stats stats() const override;

  std::size_t size() const;
  void resize(std::size_t n);
  // Member i now (replaced first if it ended). Throws std::out_of_range, terminated.
  std::shared_ptr<call_target> member(std::size_t i);
  // The member a key maps to: slot hash % size.
  std::shared_ptr<call_target> member_for(std::size_t hash);
  std::vector<std::shared_ptr<call_target>> members();
  std::vector<pool_member_stats> member_stats() const;
  std::uint64_t replacements() const;

 private:
  struct slot {
    std::shared_ptr<call_target> target;
    std::uint64_t replaced = 0;
  };
  // A member's life as the pool sees it: constructing, serving, its constructor failed (never
  // replaced), or it served and its channel has ended since (replaced).
  enum class start_state { starting, serving, failed, ended };
  static start_state state_of(call_target& t);
  std::shared_ptr<call_target> live_locked(std::size_t i);  // mu_ held
  void reap_retired_locked();                               // moves those done to ending_
  void end_replaced();  // terminates ending_'s members, without the lock
  [[noreturn]] static void no_events();

  const factory make_;
  const pool_options opts_;
  const std::chrono::milliseconds timeout_;
  mutable std::mutex mu_;
  std::vector<slot> slots_;
  // Members taken out by resize() that still have calls in flight: ended when they have none.
  std::vector<std::shared_ptr<call_target>> retired_;
  // Replaced or retired members to terminate once the lock is released.
  std::vector<std::shared_ptr<call_target>> ending_;
  std::size_t next_ = 0;  // round-robin start for ties
  std::uint64_t replacements_ = 0;
  bool terminated_ = false;
  std::shared_ptr<promise<void>> started_ = std::make_shared<promise<void>>();
  std::thread starter_;  // completes started_ (see the constructor)
};

// A spawn argument kept for every member and replacement: a C string is kept as a copy of its
// characters and passed again as a const char* (the same constructor as spawn() would pick).
struct saved_c_string {
  std::string s;
};
template <class A>
using saved_arg_t =
    std::conditional_t<std::is_same_v<ctor_arg_t<A>, const char*>, saved_c_string, ctor_arg_t<A>>;
inline const char* pass_saved(const saved_c_string& a) noexcept { return a.s.c_str(); }
template <class X>
const X& pass_saved(const X& a) noexcept {
  return a;
}

}  // namespace detail

template <class T>
class pool;

// Starts `popts.size` children of T, each constructed from `args` with `opts` (which every member
// shares, its hooks included). Returns at once, as spawn() does.
template <class T, class... A>
pool<T> spawn_pool(const pool_options& popts, const spawn_options& opts = {}, A&&... args);

template <class T>
class pool : public call_api<T, pool<T>> {
  using methods = detail::methods_t<T>;
  friend class call_api<T, pool<T>>;
  static_assert(
      !requires { &methods::size; } && !requires { &methods::resize; } &&
          !requires { &methods::member; } && !requires { &methods::by_key; } &&
          !requires { &methods::broadcast; } && !requires { &methods::member_stats; } &&
          !requires { &methods::replacements; },
      "procxy: PROCXY_CLASS lists a method named size, resize, member, by_key, "
      "broadcast, member_stats or replacements, which pool<T> uses itself; call it "
      "as pool.call<&T::name>(args...)");

 public:
  pool(pool&& o) noexcept
      : call_api<T, pool<T>>(std::move(o)), procxy_core_(std::move(o.procxy_core_)) {
    procxy_rebind();
    o.procxy_rebind();
  }
  pool& operator=(pool&& o) noexcept {
    if (this != &o) {
      procxy_release();
      procxy_core_ = std::move(o.procxy_core_);
      procxy_rebind();
      o.procxy_rebind();
    }
    return *this;
  }
  ~pool() { procxy_release(); }

  // Members now (replaced ones counted once).
  std::size_t size() const { return target().size(); }
  // Grows by starting new members, or shrinks: the members taken out get no new calls and end
  // once the calls they hold have completed.
  void resize(std::size_t n) { target().resize(n); }
  // Completes when every member the pool started with has constructed its object; fails with
  // the first spawn_error.
  future<void> started() { return procxy_core_->started(); }
  // Whether every member's child is alive.
  bool running() const { return procxy_core_ && procxy_core_->running(); }
  // Ends every member. Idempotent, thread-safe.
  void terminate() {
    if (procxy_core_) procxy_core_->terminate();
  }
  // The members' channel counters summed.
  channel_stats stats() const { return procxy_core_ ? procxy_core_->stats() : channel_stats{}; }
  std::vector<pool_member_stats> member_stats() const { return target().member_stats(); }
  // How many ended members were replaced with new children.
  std::uint64_t replacements() const { return target().replacements(); }

  // The calls made through the returned view go to member i (its events and properties too).
  call_view<T> member(std::size_t i) const {
    return detail::make_view<T>(target().member(i), call_options{});
  }
  // The calls made through the returned view go to the member `key` maps to: the same member
  // for the same key while the pool's size stays the same (state kept per key stays there).
  template <class K>
  call_view<T> by_key(const K& key) const {
    return detail::make_view<T>(target().member_for(std::hash<K>{}(key)), call_options{});
  }
  // Calls MP on every member: one future per member, in member order.
  template <auto MP, class... A>
  auto broadcast(A&&... a) const {
    std::vector<decltype(std::declval<call_view<T>&>().template call<MP>(a...))> out;
    for (auto& m : target().members()) {
      auto v = detail::make_view<T>(std::move(m), call_options{});
      out.push_back(v.template call<MP>(a...));
    }
    return out;
  }

 private:
  template <class U, class... A>
  friend pool<U> spawn_pool(const pool_options& popts, const spawn_options& opts, A&&... args);
  explicit pool(std::shared_ptr<detail::pool_target> core) : procxy_core_(std::move(core)) {
    procxy_rebind();
  }
  detail::pool_target& target() const {
    if (!procxy_core_) throw terminated("procxy: the pool was moved from");
    return static_cast<detail::pool_target&>(*procxy_core_);
  }
  void procxy_rebind() noexcept {
    procxy_binding_.core = procxy_core_.get();
    procxy_binding_.timeout =
        procxy_core_ ? procxy_core_->default_timeout() : std::chrono::milliseconds{0};
    procxy_binding_.retries = 0;
    this->methods::procxy_bind(&procxy_binding_);
  }
  void procxy_release() {
    if (procxy_core_) {
      procxy_core_->terminate();
      procxy_core_.reset();
    }
    procxy_rebind();
  }
  std::shared_ptr<detail::call_target> procxy_core_;
  detail::binding procxy_binding_;
};

template <class T, class... A>
pool<T> spawn_pool(const pool_options& popts, const spawn_options& opts, A&&... args) {
  static_assert(std::is_constructible_v<T, detail::passed_t<detail::ctor_arg_t<A>>...>,
                "procxy: spawn_pool<T>(pool_options, options, args...) — T has no constructor "
                "taking these arguments");
  static_assert((std::is_copy_constructible_v<detail::saved_arg_t<A>> && ...),
                "procxy: spawn_pool<T> keeps a copy of each argument for every member and "
                "replacement; a move-only argument cannot be shared");
  // Each member (and each replacement) is constructed from copies of the arguments.
  auto make = [opts, saved = std::tuple<detail::saved_arg_t<A>...>(
                         detail::saved_arg_t<A>{std::forward<A>(args)}...)] {
    return std::apply(
        [&](const auto&... a) -> std::shared_ptr<detail::call_target> {
          return detail::spawn_target<T>(opts, detail::pass_saved(a)...);
        },
        saved);
  };
  return pool<T>(std::make_shared<detail::pool_target>(std::move(make), popts, opts.call_timeout));
}

}  // namespace procxy
