// SPDX-License-Identifier: MIT
// Deadlines from durations a caller (or a peer's header) chose: one too long for the clock is
// "never", not an overflow into the past that would expire at once.
#pragma once

#include <chrono>

namespace sandbox::detail {

/// `now + d`, saturated at the clock's range; a negative `d` is `now` (already passed).
template <class Rep, class Period>
[[nodiscard]] std::chrono::steady_clock::time_point deadline_after(
    std::chrono::duration<Rep, Period> d,
    std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now()) noexcept {
  using clock = std::chrono::steady_clock;
  using seconds = std::chrono::duration<long double>;
  if (d <= d.zero()) return now;
  if (seconds(d) >= seconds(clock::time_point::max() - now)) return clock::time_point::max();
  return now + std::chrono::duration_cast<clock::duration>(d);
}

} // namespace sandbox::detail
