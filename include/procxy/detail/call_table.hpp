// procxy/detail/call_table.hpp — the channel's calls in flight: ids, deadlines, retries and the
// ids of calls that timed out (whose replies may still come, late).
//
// A plain data structure: not thread-safe (the connection holds its lock around every use), no
// I/O, no clock of its own (the caller passes `now`), so it is tested alone
// (tests/call_table_test.cpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "procxy/detail/buffer.hpp"
#include "procxy/detail/clock.hpp"
#include "procxy/detail/codec.hpp"
#include "procxy/detail/protocol.hpp"
#include "procxy/future.hpp"

namespace procxy::detail {

// Completes `st` from a reply body: reply_value carries the value, reply_error an error payload
// (typed; see method.hpp).
// `what` names the call ("Calculator::add"), `peer_pid` the process that replied.
struct reply_context {
  const char* what;
  int peer_pid;
};
// A decoder must consume the whole body and call expect_end() *before* completing `st`: a reply
// with trailing bytes is a protocol_error for that call too, not a success.
using reply_decoder = void (*)(state_base& st, message_kind kind, decoder& body,
                               const reply_context& ctx);

struct pending_call {
  state_ptr<state_base> st;
  reply_decoder decode = nullptr;
  clock::time_point deadline = no_deadline;
  const char* what = "";
  bool fatal_timeout = false;
  struct retry {
    byte_buffer frame;  // the whole request frame; its id is rewritten for each attempt
    int left = 0;
    std::chrono::milliseconds timeout{};
  };
  std::shared_ptr<retry> again;       // idempotent calls only
  bool in_task = false;               // made from a callback running on the user's executor
  clock::time_point issued{};         // when the current attempt was sent (calls with a deadline)
  std::chrono::milliseconds limit{};  // the timeout the deadline came from (0: unknown)
};

// Ids are handed out in sequence and most calls are answered roughly in order, so the calls in
// flight live in a ring indexed by the id's low bits (no allocation, no hashing per call); a
// call still in flight when the ring wraps onto its slot (more than `max_ring` newer calls went
// out after it) moves to a hash map beside the ring.
class call_table {
 public:
  // Registers a call under a new id (ids start at 1 and never repeat) and returns the id; the
  // call's state learns its id and deadline.
  std::uint64_t add(pending_call pc);
  // Takes the call `id` out, if it is in flight.
  std::optional<pending_call> take(std::uint64_t id);
  // Whether `id` timed out earlier (its reply, arriving late, is dropped); forgets it.
  bool forget_late(std::uint64_t id);

  struct expiry {
    std::vector<pending_call> expired;                         // to fail
    std::vector<std::shared_ptr<pending_call::retry>> resend;  // frames to send again
  };
  // Every call whose deadline is at or before `now` leaves under its id, which is remembered as
  // late. With `retry`, one with attempts left stays in flight under a new id with the deadline
  // `now` + its retry timeout, and its frame (rewritten with the new id) is returned to be sent
  // again; the others are returned to be failed.
  expiry expire(clock::time_point now, bool retry);
  // Takes every call out (the connection broke).
  std::vector<pending_call> take_all();
  // What each call in flight is (pending_call::what), oldest first.
  std::vector<const char*> in_flight() const;

  // The earliest deadline of a call in flight (no_deadline if none).
  clock::time_point next_deadline() const noexcept { return next_deadline_; }
  std::size_t size() const noexcept { return in_ring_ + spilled_.size(); }
  bool empty() const noexcept { return size() == 0; }

  static constexpr std::size_t first_ring = 16, max_ring = 4096;  // slots, powers of two

 private:
  struct slot {
    std::uint64_t id = 0;  // 0: free
    pending_call pc;
  };
  void insert(std::uint64_t id, pending_call&& pc);
  void grow();
  // Calls every f(id, pending_call&) for the calls in flight; f returns true to take it out
  // (then it must have moved the call away).
  template <typename F>
  void sweep(F&& f);
  void recompute_deadline();

  std::vector<slot> ring_;
  std::size_t in_ring_ = 0;
  std::unordered_map<std::uint64_t, pending_call> spilled_;  // older calls the ring wrapped onto
  std::unordered_set<std::uint64_t> late_;  // timed out: a late reply is dropped, not an error
  std::uint64_t next_id_ = 1;
  clock::time_point next_deadline_ = no_deadline;
};

}  // namespace procxy::detail
