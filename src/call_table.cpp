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
  insert(id, std::move(pc));
  return id;
}

void call_table::insert(std::uint64_t id, pending_call&& pc) {
  if (ring_.empty()) ring_.resize(first_ring);
  slot* s = &ring_[id & (ring_.size() - 1)];
  if (s->id != 0 && ring_.size() < max_ring) {
    grow();
    s = &ring_[id & (ring_.size() - 1)];
  }
  if (s->id != 0) {  // an older call still in flight: it moves beside the ring
    spilled_.emplace(s->id, std::move(s->pc));
    --in_ring_;
  }
  s->id = id;
  s->pc = std::move(pc);
  ++in_ring_;
}

void call_table::grow() {
  // The ids in the ring differ in their low log2(size) bits, so they differ in one more bit
  // too: no two collide in the doubled ring.
  std::vector<slot> bigger(ring_.size() * 2);
  for (auto& s : ring_)
    if (s.id != 0) bigger[s.id & (bigger.size() - 1)] = std::move(s);
  ring_.swap(bigger);
}

std::optional<pending_call> call_table::take(std::uint64_t id) {
  if (!ring_.empty() && id != 0) {
    slot& s = ring_[id & (ring_.size() - 1)];
    if (s.id == id) {
      std::optional<pending_call> out(std::move(s.pc));
      s.pc = pending_call{};
      s.id = 0;
      --in_ring_;
      return out;  // next_deadline_ may now be early: expire() recomputes it, at worst a spare look
    }
  }
  auto it = spilled_.find(id);
  if (it == spilled_.end()) return std::nullopt;
  std::optional<pending_call> out(std::move(it->second));
  spilled_.erase(it);
  return out;
}

template <typename F>
void call_table::sweep(F&& f) {
  if (in_ring_ > 0)
    for (auto& s : ring_)
      if (s.id != 0 && f(s.id, s.pc)) {
        s.pc = pending_call{};
        s.id = 0;
        --in_ring_;
      }
  for (auto it = spilled_.begin(); it != spilled_.end();)
    if (f(it->first, it->second))
      it = spilled_.erase(it);
    else
      ++it;
}

bool call_table::forget_late(std::uint64_t id) { return late_.erase(id) != 0; }

call_table::expiry call_table::expire(clock::time_point now, bool retry) {
  expiry x;
  if (next_deadline_ > now) return x;
  sweep([&](std::uint64_t id, pending_call& pc) {
    if (pc.deadline > now) return false;
    late_.insert(id);
    x.expired.push_back(std::move(pc));
    return true;
  });
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
    pc.limit = pc.again->timeout;
    pc.st->call_id = id;
    pc.st->call_deadline = pc.deadline;
    std::memcpy(pc.again->frame.data() + offsetof(frame_header, id), &id, sizeof id);
    x.resend.push_back(pc.again);
    insert(id, std::move(pc));
    it = x.expired.erase(it);
  }
  recompute_deadline();
  return x;
}

std::vector<pending_call> call_table::take_all() {
  std::vector<pending_call> out;
  out.reserve(size());
  sweep([&](std::uint64_t, pending_call& pc) {
    out.push_back(std::move(pc));
    return true;
  });
  next_deadline_ = no_deadline;
  return out;
}

std::vector<const char*> call_table::in_flight() const {
  std::vector<std::pair<std::uint64_t, const char*>> calls;
  calls.reserve(size());
  if (in_ring_ > 0)
    for (const auto& s : ring_)
      if (s.id != 0) calls.emplace_back(s.id, s.pc.what);
  for (const auto& [id, pc] : spilled_) calls.emplace_back(id, pc.what);
  std::sort(calls.begin(), calls.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<const char*> out;
  out.reserve(calls.size());
  for (const auto& c : calls) out.push_back(c.second);
  return out;
}

void call_table::recompute_deadline() {
  next_deadline_ = no_deadline;
  sweep([&](std::uint64_t, pending_call& pc) {
    next_deadline_ = std::min(next_deadline_, pc.deadline);
    return false;
  });
}

}  // namespace procxy::detail
