// procxy/detail/clock.hpp — the channel's clock and its "no deadline".
#pragma once

#include <chrono>

namespace procxy::detail {

using clock = std::chrono::steady_clock;
inline constexpr clock::time_point no_deadline = clock::time_point::max();

}  // namespace procxy::detail
