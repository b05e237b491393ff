// The channel's calls in flight (call_table.hpp).
#include "procxy/detail/call_table.hpp"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <utility>

namespace procxy::detail {

std::uint64_t call_table::add(pending_call pc) {
  const std::uint64_t id = next_id_++;
  pc.st->call_id = id;
  pc.st->call_deadline = pc.deadline;
  next_deadline_ = std::min(next_deadline_, pc.deadline);
  calls_.emplace(id, std::move(pc));
  return id;
}

std::optional<pending_call> call_table::take(std::uint64_t id) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return std::nullopt;
  std::optional<pending_call> out(std::move(it->second));
  calls_.erase(it);
  return out;  // next_deadline_ may now be early: expire() recomputes it, at worst a spare look
}

bool call_table::forget_late(std::uint64_t id) { return late_.erase(id) != 0; }

call_table::expiry call_table::expire(clock::time_point now, bool retry) {
  expiry x;
  if (next_deadline_ > now) return x;
  for (auto it = calls_.begin(); it != calls_.end();) {
    if (it->second.deadline <= now) {
      late_.insert(it->first);
      x.expired.push_back(std::move(it->second));
      it = calls_.erase(it);
    } else {
      ++it;
    }
  }
  // Idempotent calls with attempts left go out again under a new id (a late reply to the old
  // id is dropped like any late reply).
  for (auto it = x.expired.begin(); it != x.expired.end();) {
    auto& pc = *it;
    if (!retry || !pc.again || pc.again->left == 0) {
      ++it;
      continue;
    }
    --pc.again->left;
    const std::uint64_t id = next_id_++;
    pc.deadline = now + pc.again->timeout;
    pc.issued = now;
    pc.st->call_id = id;
    pc.st->call_deadline = pc.deadline;
    std::memcpy(pc.again->frame.data() + offsetof(frame_header, id), &id, sizeof id);
    x.resend.push_back(pc.again);
    calls_.emplace(id, std::move(pc));
    it = x.expired.erase(it);
  }
  recompute_deadline();
  return x;
}

std::unordered_map<std::uint64_t, pending_call> call_table::take_all() {
  std::unordered_map<std::uint64_t, pending_call> out;
  out.swap(calls_);
  next_deadline_ = no_deadline;
  return out;
}

void call_table::recompute_deadline() {
  next_deadline_ = no_deadline;
  for (const auto& [id, pc] : calls_) next_deadline_ = std::min(next_deadline_, pc.deadline);
}

}  // namespace procxy::detail
