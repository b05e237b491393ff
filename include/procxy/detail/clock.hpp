// procxy/detail/clock.hpp — the channel's clock and its "no deadline".
#pragma once

#include <chrono>

namespace procxy::detail {

using clock = std::chrono::steady_clock;
inline constexpr clock::time_point no_deadline = clock::time_point::max();

// Time points kept in atomics as their tick count.
inline constexpr clock::rep no_deadline_rep = no_deadline.time_since_epoch().count();
inline constexpr clock::time_point from_rep(clock::rep r) {
  return clock::time_point(clock::duration(r));
}

}  // namespace procxy::detail
