#include "procxy/pool.hpp"

#include <sched.h>

#include <algorithm>
#include <limits>
#include <stdexcept>

// A pool's call target (procxy/pool.hpp): which member a call goes to, and replacing members
// whose child ended. docs/design.md "Pools".

namespace procxy::detail {

namespace {

std::size_t cpus_here() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<std::size_t>(n);
  }
  return 1;
}

// The member a thread picked last, kept alive until this thread picks again: a call is encoded
// on the member's channel after channel_for_call() returned it, and a replacement must not
// destroy that channel in between.
thread_local std::shared_ptr<call_target> t_picked;

}  // namespace

pool_target::pool_target(factory make, pool_options o, std::chrono::milliseconds timeout)
    : make_(std::move(make)), opts_(o), timeout_(timeout) {
  const std::size_t n = o.size == 0 ? cpus_here() : o.size;
  slots_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) slots_.push_back({make_(), 0});
  // started(): once every first member has constructed its object, or at the first failure.
  // Waited for on a thread of the pool's own: a continuation on a member's future would not run
  // once that member's channel has stopped (a failed constructor ends the child at once).
  std::vector<future<void>> firsts;
  for (auto& s : slots_) firsts.push_back(s.target->started());
  starter_ = std::thread([p = started_, firsts = std::move(firsts)]() mutable {
    for (auto& f : firsts) {
      auto r = f.try_get();
      if (!r.has_value()) {
        p->set_exception(r.error());
        return;
      }
    }
    p->set_value();
  });
}

pool_target::~pool_target() {
  terminate();  // every member's started() completes (with terminated if it had not yet)
  if (starter_.joinable()) starter_.join();
}

pool_target::start_state pool_target::state_of(call_target& t) {
  auto f = t.started();
  if (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
    return start_state::starting;
  if (!f.try_get().has_value()) return start_state::failed;
  // Started; its channel breaks when the child goes away (crash, exit, dispose, terminate) or
  // breaks the protocol: no system call per look.
  return t.channel_for_call().broken() ? start_state::ended : start_state::serving;
}

std::shared_ptr<call_target> pool_target::live_locked(std::size_t i) {
  slot& s = slots_[i];
  if (opts_.replace_ended && !terminated_ && state_of(*s.target) == start_state::ended) {
    // The old member's pending calls have failed (or fail now) as on any proxy; its process is
    // reaped by terminate(). A thread that picked it just before keeps it alive (t_picked).
    ending_.push_back(std::exchange(s.target, make_()));  // ended by end_replaced(), unlocked
    ++s.replaced;
    ++replacements_;
  }
  return s.target;
}

void pool_target::reap_retired_locked() {
  std::erase_if(retired_, [&](std::shared_ptr<call_target>& t) {
    if (t->stats().pending_calls != 0 && t->running()) return false;
    ending_.push_back(std::move(t));
    return true;
  });
}

void pool_target::end_replaced() {
  // Outside the pool's lock: terminate() may wait for the member's dispatch thread, which may be
  // running a continuation that calls the pool.
  std::vector<std::shared_ptr<call_target>> ending;
  {
    std::lock_guard lk(mu_);
    ending.swap(ending_);
  }
  for (auto& t : ending) t->terminate();
}

connection& pool_target::channel_for_call() {
  std::shared_ptr<call_target> pick;
  {
    std::lock_guard lk(mu_);
    if (terminated_) throw terminated("procxy: the pool was terminated");
    if (!retired_.empty()) reap_retired_locked();
    const std::size_t n = slots_.size();
    if (n == 0) throw terminated("procxy: the pool has no members (resized to 0)");
    std::size_t best_load = std::numeric_limits<std::size_t>::max();
    std::shared_ptr<call_target> fallback;
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t i = (next_ + k) % n;
      auto t = live_locked(i);
      const auto st = state_of(*t);
      if (st == start_state::failed || st == start_state::ended) {
        if (!fallback) fallback = t;  // its failure is what a call gets if nobody is left
        continue;
      }
      const std::size_t load = t->channel_for_call().calls_out();
      if (load < best_load) {
        best_load = load;
        pick = t;
        if (load == 0) break;
      }
    }
    next_ = (next_ + 1) % n;
    if (!pick) pick = fallback;
  }
  end_replaced();
  t_picked = pick;
  return pick->channel_for_call();
}

void pool_target::no_events() {
  throw std::logic_error(
      "procxy: a pool's events and properties are its members': subscribe through "
      "pool.member(i)");
}

event_hub& pool_target::events() { no_events(); }

connection& pool_target::event_channel() { no_events(); }

future<void> pool_target::started() { return started_->get_future(); }

bool pool_target::running() const {
  std::lock_guard lk(mu_);
  if (terminated_ || slots_.empty()) return false;
  return std::all_of(slots_.begin(), slots_.end(),
                     [](const slot& s) { return s.target->running(); });
}

void pool_target::terminate() {
  std::vector<std::shared_ptr<call_target>> all;
  {
    std::lock_guard lk(mu_);
    terminated_ = true;
    for (auto& s : slots_) all.push_back(s.target);
    for (auto& r : retired_) all.push_back(r);
    for (auto& e : ending_) all.push_back(e);
    ending_.clear();
  }
  for (auto& t : all) t->terminate();
}

channel_stats pool_target::stats() const {
  channel_stats sum;
  for (const auto& m : member_stats()) {
    const channel_stats& s = m.channel;
    sum.frames_sent += s.frames_sent;
    sum.frames_received += s.frames_received;
    sum.bytes_sent += s.bytes_sent;
    sum.bytes_received += s.bytes_received;
    sum.write_syscalls += s.write_syscalls;
    sum.pending_calls += s.pending_calls;
    sum.calls_timed_out += s.calls_timed_out;
    sum.calls_retried += s.calls_retried;
    sum.callbacks_lent += s.callbacks_lent;
    sum.callbacks_held += s.callbacks_held;
    sum.callback_invocations_in += s.callback_invocations_in;
    sum.callback_invocations_out += s.callback_invocations_out;
    sum.callback_releases_in += s.callback_releases_in;
    sum.callback_releases_out += s.callback_releases_out;
    sum.events_received += s.events_received;
    sum.events_dropped += s.events_dropped;
    sum.events_queued_peak = std::max(sum.events_queued_peak, s.events_queued_peak);
    for (const auto& [name, n] : s.event_listeners) sum.event_listeners[name] += n;
    sum.event_subscriptions_sent += s.event_subscriptions_sent;
    sum.property_updates += s.property_updates;
  }
  return sum;
}

std::size_t pool_target::size() const {
  std::lock_guard lk(mu_);
  return slots_.size();
}

void pool_target::resize(std::size_t n) {
  {
    std::lock_guard lk(mu_);
    if (terminated_) throw terminated("procxy: the pool was terminated");
    while (slots_.size() < n) slots_.push_back({make_(), 0});
    while (slots_.size() > n) {
      retired_.push_back(std::move(slots_.back().target));
      slots_.pop_back();
    }
    // Those with nothing in flight end now; the others when their last call completed (checked
    // at each call and at terminate).
    reap_retired_locked();
    if (!slots_.empty()) next_ %= slots_.size();
  }
  end_replaced();
}

std::shared_ptr<call_target> pool_target::member(std::size_t i) {
  std::shared_ptr<call_target> m;
  {
    std::lock_guard lk(mu_);
    if (terminated_) throw terminated("procxy: the pool was terminated");
    if (i >= slots_.size())
      throw std::out_of_range("procxy: pool member " + std::to_string(i) + " of " +
                              std::to_string(slots_.size()));
    m = live_locked(i);
  }
  end_replaced();
  return m;
}

std::shared_ptr<call_target> pool_target::member_for(std::size_t hash) {
  std::shared_ptr<call_target> m;
  {
    std::lock_guard lk(mu_);
    if (terminated_) throw terminated("procxy: the pool was terminated");
    if (slots_.empty()) throw terminated("procxy: the pool has no members (resized to 0)");
    m = live_locked(hash % slots_.size());
  }
  end_replaced();
  return m;
}

std::vector<std::shared_ptr<call_target>> pool_target::members() {
  std::vector<std::shared_ptr<call_target>> out;
  {
    std::lock_guard lk(mu_);
    if (terminated_) throw terminated("procxy: the pool was terminated");
    for (std::size_t i = 0; i < slots_.size(); ++i) out.push_back(live_locked(i));
  }
  end_replaced();
  return out;
}

std::vector<pool_member_stats> pool_target::member_stats() const {
  std::vector<slot> copy;
  {
    std::lock_guard lk(mu_);
    copy = slots_;
  }
  std::vector<pool_member_stats> out;
  for (const auto& s : copy)
    out.push_back({s.target->pid(), s.target->running(), s.replaced, s.target->stats()});
  return out;
}

std::uint64_t pool_target::replacements() const {
  std::lock_guard lk(mu_);
  return replacements_;
}

}  // namespace procxy::detail
