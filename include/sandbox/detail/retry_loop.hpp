// SPDX-License-Identifier: MIT
// Runs an operation that is safe to repeat under a retry policy.
#pragma once

#include <sandbox/concepts.hpp>
#include <sandbox/detail/random.hpp>

#include <chrono>
#include <thread>

namespace sandbox::detail {

template <retry_policy Retry, class Op>
[[nodiscard]] auto with_retry(const Retry& policy, Op&& op) noexcept -> decltype(op()) {
  using clock = std::chrono::steady_clock;
  auto r = op();
  if (r) return r;
  const auto first_failure = clock::now();
  RetryState s;
  for (;;) {
    s.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - first_failure);
    s.random = random_u32();
    auto delay = policy.next_delay(r.assume_error(), s);
    if (!delay) return r;
    std::this_thread::sleep_for(*delay);
    s.previous_delay = *delay;
    ++s.attempt;
    r = op();
    if (r) return r;
  }
}

} // namespace sandbox::detail
