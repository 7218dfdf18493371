// SPDX-License-Identifier: MIT
// The machine's ceiling for output, measured beside each figure that is compared with it.
#pragma once

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <string>
#include <vector>

namespace test_support {

/// Seconds `bytes` (whole MiB) take through a plain pipe, `dd | dd` with 1 MiB blocks; negative
/// when dd failed. With CPUs given, the writer runs on `writer_cpu` and the reader on
/// `reader_cpu`.
inline double pipe_seconds(std::size_t bytes, int writer_cpu = -1, int reader_cpu = -1) {
  auto on = [](int cpu) {
    return cpu < 0 ? std::string() : "taskset -c " + std::to_string(cpu) + " ";
  };
  const std::string cmd = on(writer_cpu) +
                          "dd if=/dev/zero bs=1M count=" + std::to_string(bytes >> 20) +
                          " status=none | " + on(reader_cpu) + "dd of=/dev/null bs=1M status=none";
  const auto t0 = std::chrono::steady_clock::now();
  if (std::system(cmd.c_str()) != 0) return -1;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// The pipe's limit in MB/s, each placement the best of `tries`. Left to the scheduler, `dd | dd`
/// ran both ends on one CPU in some runs and on two in others, at twice the speed on one
/// (3.6-3.9 GB/s against 1.8-2.1 on a 2-CPU VM): a ratio to whichever it happened to be said
/// little. So both are measured, pinned, and figures are compared with the better one.
struct pipe_limit {
  double one_cpu = 0;  ///< both ends on the first CPU this process may use
  double two_cpus = 0; ///< writer and reader on the first two (0 with a single CPU)
  [[nodiscard]] double best() const { return std::max(one_cpu, two_cpus); }
};

/// Measures `pipe_limit` with `bytes` (whole MiB) per run; one_cpu is negative when dd failed.
inline pipe_limit measure_pipe_limit(std::size_t bytes, int tries = 3) {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE && cpus.size() < 2; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  if (cpus.empty()) cpus.push_back(0);
  pipe_limit best;
  const double mb = static_cast<double>(bytes) / 1e6;
  for (int i = 0; i < tries; ++i) {
    const double one = pipe_seconds(bytes, cpus[0], cpus[0]);
    if (one < 0) return {-1, -1};
    best.one_cpu = std::max(best.one_cpu, mb / one);
    if (cpus.size() < 2) continue;
    const double two = pipe_seconds(bytes, cpus[0], cpus[1]);
    if (two < 0) return {-1, -1};
    best.two_cpus = std::max(best.two_cpus, mb / two);
  }
  return best;
}

} // namespace test_support
