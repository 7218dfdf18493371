// SPDX-License-Identifier: MIT
// The one retry loop: runs an operation that is safe to repeat under a retry policy, within an
// optional deadline, with a sleep that can be cancelled, repeating only the errors that the
// caller says may be repeated.
#pragma once

#include <sandbox/concepts.hpp>
#include <sandbox/detail/random.hpp>

#include <chrono>
#include <optional>
#include <thread>

namespace sandbox::detail {

/// Where a retrying call must stop besides success and the policy giving up.
struct retry_bounds {
  /// No retry starts whose delay would end at or past this point.
  std::optional<std::chrono::steady_clock::time_point> deadline;
  /// Set to true when the deadline, not the policy, ended the retries.
  bool* out_of_time = nullptr;
};

/// Sleeps the whole delay; a cancellable sleep returns false when woken by a cancellation.
struct plain_sleep {
  bool operator()(std::chrono::milliseconds d) const noexcept {
    std::this_thread::sleep_for(d);
    return true;
  }
};

/// Every error the policy accepts may be repeated.
struct any_error {
  bool operator()(const error&) const noexcept { return true; }
};

template <retry_policy Retry, class Op, class Sleep = plain_sleep, class Repeatable = any_error>
[[nodiscard]] auto with_retry(const Retry& policy, Op&& op, retry_bounds bounds = {},
                              Sleep&& sleep = Sleep{},
                              Repeatable&& repeatable = Repeatable{}) noexcept -> decltype(op()) {
  using clock = std::chrono::steady_clock;
  auto r = op();
  if (r) return r;
  const auto first_failure = clock::now();
  RetryState s;
  for (;;) {
    if (!repeatable(r.assume_error())) return r;
    s.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - first_failure);
    s.random = random_u32();
    auto delay = policy.next_delay(r.assume_error(), s);
    if (!delay) return r;
    if (bounds.deadline && clock::now() + *delay >= *bounds.deadline) {
      if (bounds.out_of_time) *bounds.out_of_time = true;
      return r;
    }
    if (!sleep(*delay)) return r;
    s.previous_delay = *delay;
    ++s.attempt;
    r = op();
    if (r) return r;
  }
}

} // namespace sandbox::detail
