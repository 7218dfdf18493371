// SPDX-License-Identifier: MIT
// What the benchmarks share: timing a call many times and printing median, p10 and p90.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <utility>
#include <vector>

namespace test_support {

struct stats {
  double median_ms, p10_ms, p90_ms;
};

inline stats summarize(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  auto at = [&](double q) {
    return t[static_cast<std::size_t>(q * static_cast<double>(t.size() - 1))];
  };
  return {at(0.5), at(0.1), at(0.9)};
}

inline double time_ms(const std::function<void()>& f) {
  auto a = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count();
}

/// `f` once to warm up, then `n` timed calls.
inline stats measure(int n, const std::function<void()>& f) {
  f();
  std::vector<double> t;
  t.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i)
    t.push_back(time_ms(f));
  return summarize(std::move(t));
}

/// Runs a and b alternately n times each, so drift on a shared machine hits both alike.
inline std::pair<stats, stats> measure_ab(int n, const std::function<void()>& a,
                                          const std::function<void()>& b) {
  a();
  b();
  std::vector<double> ta, tb;
  for (int i = 0; i < n; ++i) {
    ta.push_back(time_ms(a));
    tb.push_back(time_ms(b));
  }
  return {summarize(std::move(ta)), summarize(std::move(tb))};
}

/// Runs a and b in alternating blocks of `block` calls, n calls each, in the order ABBA ABBA...:
/// drift on a shared machine hits both alike, while each runs as it does on its own (measure_ab's
/// call-by-call alternation changes what it measures when a and b leave the scheduler in
/// different states). `between`, if set, runs after each block, off the clock.
inline std::pair<stats, stats> measure_blocks(int n, const std::function<void()>& a,
                                              const std::function<void()>& b, int block = 25,
                                              const std::function<void()>& between = {}) {
  a();
  b();
  if (between) between();
  std::vector<double> ta, tb;
  auto run = [&](const std::function<void()>& f, std::vector<double>& t, int k) {
    for (int i = 0; i < k; ++i)
      t.push_back(time_ms(f));
    if (between) between();
  };
  for (int done = 0, round = 0; done < n; done += block, ++round) {
    const int k = std::min(block, n - done);
    if (round % 2 == 0) {
      run(a, ta, k);
      run(b, tb, k);
    } else {
      run(b, tb, k);
      run(a, ta, k);
    }
  }
  return {summarize(std::move(ta)), summarize(std::move(tb))};
}

inline void print(const char* what, stats s, int width = 58) {
  std::printf("%-*s median %8.3f ms   p10 %8.3f   p90 %8.3f\n", width, what, s.median_ms, s.p10_ms,
              s.p90_ms);
}

} // namespace test_support
