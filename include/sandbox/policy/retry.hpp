// SPDX-License-Identifier: MIT
// Retry policies: how long to wait before repeating an operation that failed transiently.
#pragma once

#include <sandbox/concepts.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>

namespace sandbox {

/// Never retries.
struct no_retry {
  [[nodiscard]] std::optional<std::chrono::milliseconds>
  next_delay(const error&, const RetryState&) const noexcept {
    return std::nullopt;
  }
};

/// Exponential backoff with decorrelated jitter inside a time budget (the anchor client's
/// defaults: 0.2 s first delay, ×1.5, at most 2 s apart, 30 s per burst of failures). A server's
/// retry delay is honoured, capped at `MaxHintMs`. Only transient errors are retried.
template <unsigned InitialMs = 200, unsigned FactorPercent = 150, unsigned MaxMs = 2000,
          unsigned BudgetMs = 30000, unsigned MaxHintMs = 10000>
struct exponential_backoff {
  static_assert(InitialMs > 0 && FactorPercent >= 100 && MaxMs >= InitialMs);

  [[nodiscard]] std::optional<std::chrono::milliseconds>
  next_delay(const error& e, const RetryState& s) const noexcept {
    using std::chrono::milliseconds;
    if (!e.transient() || BudgetMs == 0) return std::nullopt;
    const std::int64_t remaining = std::int64_t{BudgetMs} - s.elapsed.count();
    if (remaining <= 0) return std::nullopt;
    if (e.server && e.server->retry_delay && e.server->retry_delay->count() > 0)
      return milliseconds(std::min<std::int64_t>(
          {e.server->retry_delay->count(), std::int64_t{MaxHintMs}, remaining}));
    // Decorrelated jitter: uniform in [initial, min(max, previous × factor, remaining)].
    std::int64_t prev = std::max<std::int64_t>(s.previous_delay.count(), InitialMs);
    std::int64_t hi =
        std::min<std::int64_t>({std::int64_t{MaxMs}, prev * FactorPercent / 100, remaining});
    std::int64_t lo = std::min<std::int64_t>(InitialMs, remaining);
    hi = std::max(hi, lo);
    std::int64_t span = hi - lo + 1;
    return milliseconds(lo +
                        static_cast<std::int64_t>(s.random % static_cast<std::uint64_t>(span)));
  }
};

static_assert(retry_policy<no_retry>);
static_assert(retry_policy<exponential_backoff<>>);

} // namespace sandbox
