// SPDX-License-Identifier: MIT
// Where a test or a benchmark runs its parts: the CPUs the calling thread may use, and binding it
// to one of them for a while.
#pragma once

#include <sched.h>

#include <vector>

namespace test_support {

/// The first two CPUs the calling thread may use (one on a single-CPU machine; {0} if unknown).
inline std::vector<int> usable_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE && cpus.size() < 2; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  if (cpus.empty()) cpus.push_back(0);
  return cpus;
}

/// Binds the calling thread to `cpu` until this goes out of scope, which gives it back the CPUs
/// it had. `ok()`: the binding took.
class bound_to {
public:
  explicit bound_to(int cpu) noexcept {
    CPU_ZERO(&before_);
    had_ = ::sched_getaffinity(0, sizeof before_, &before_) == 0;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    ok_ = had_ && ::sched_setaffinity(0, sizeof one, &one) == 0;
  }
  bound_to(const bound_to&) = delete;
  bound_to& operator=(const bound_to&) = delete;
  ~bound_to() {
    if (had_) (void)::sched_setaffinity(0, sizeof before_, &before_);
  }
  [[nodiscard]] bool ok() const noexcept { return ok_; }

private:
  cpu_set_t before_;
  bool had_ = false, ok_ = false;
};

} // namespace test_support
