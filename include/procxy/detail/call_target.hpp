// procxy/detail/call_target.hpp — what a typed face (proxy<T>, call_view<T>) talks to.
//
// proxy<T> knows nothing of processes: its described methods, events and properties reach the
// object through this interface. proxy_core (one local child, src/spawn.cpp) implements it; a
// pool of children, a child that is restarted after a crash, or a child on another host stands
// behind the same typed face by implementing it too (detail::make_proxy<T>).
#pragma once

#include <chrono>
#include <memory>

#include "procxy/detail/connection.hpp"
#include "procxy/detail/event_hub.hpp"
#include "procxy/future.hpp"
#include "procxy/options.hpp"
#include "procxy/stats.hpp"

namespace procxy::detail {

class call_target {
 public:
  virtual ~call_target() = default;

  // The channel the next call goes over, chosen now (a pool picks a member here); the call's
  // arguments are encoded for it (the functions among them are lent on it). Throws terminated
  // when there is none any more.
  virtual connection& channel_for_call() = 0;
  // Deadline of a call made now with `timeout` (0: none).
  virtual clock::time_point deadline_for(std::chrono::milliseconds timeout) const {
    return timeout.count() > 0 ? clock::now() + timeout : no_deadline;
  }
  // The call timeout a new face starts with.
  virtual std::chrono::milliseconds default_timeout() const = 0;

  // Events and properties: the hub that mirrors them, and the channel subscriptions go over.
  virtual event_hub& events() = 0;
  virtual connection& event_channel() = 0;

  // Completes when the object exists (constructed in the child); spawn_error if it never will.
  virtual future<void> started() = 0;
  virtual int pid() const noexcept = 0;  // -1 when there is no single process behind it
  virtual bool running() const = 0;
  // Ends what is behind the target. Idempotent, thread-safe, legal from inside callbacks.
  virtual void terminate() = 0;
  virtual channel_stats stats() const = 0;
};

}  // namespace procxy::detail
