// procxy/stats.hpp — what proxy<T>::stats() reports about the channel to the child.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace procxy {

// Counters of one proxy's channel, as seen by the parent (a snapshot: each field is read once,
// not all at the same instant).
struct channel_stats {
  std::uint64_t frames_sent = 0;
  std::uint64_t frames_received = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
  // Writes to the transport: system calls over the socket; copies into the ring over shared
  // memory (a system call there only when the peer sleeps).
  std::uint64_t write_syscalls = 0;
  std::size_t pending_calls = 0;
  std::uint64_t calls_timed_out = 0;  // failed with timeout_error
  std::uint64_t calls_retried = 0;    // idempotent calls sent again after a timeout
  // Callbacks (docs/design.md "Callbacks"): functions this side lent that the peer still holds,
  // functions of the peer this side holds, invocations run here / sent, release messages.
  std::size_t callbacks_lent = 0;
  std::int64_t callbacks_held = 0;
  std::uint64_t callback_invocations_in = 0;
  std::uint64_t callback_invocations_out = 0;
  std::uint64_t callback_releases_in = 0;
  std::uint64_t callback_releases_out = 0;
  // Events (docs/design.md "Events"): delivered to the listeners, dropped by drop_oldest
  // backpressure (never delivered), subscribe/unsubscribe messages sent, property updates
  // received.
  std::uint64_t events_received = 0;
  std::uint64_t events_dropped = 0;
  std::size_t events_queued_peak = 0;  // most events waiting for listeners at once
  // Listeners per event ("Job::progress" → count), for the events the parent has looked at.
  std::map<std::string, std::size_t> event_listeners;
  std::uint64_t event_subscriptions_sent = 0;
  std::uint64_t property_updates = 0;
};

}  // namespace procxy
