// SPDX-License-Identifier: MIT
// The machine's ceiling for output, measured beside each figure that is compared with it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <string>

namespace test_support {

/// Seconds `bytes` (whole MiB) take through a plain pipe, `dd | dd` with 1 MiB blocks; negative
/// when dd failed.
inline double pipe_seconds(std::size_t bytes) {
  const std::string cmd = "dd if=/dev/zero bs=1M count=" + std::to_string(bytes >> 20) +
                          " status=none | dd of=/dev/null bs=1M status=none";
  const auto t0 = std::chrono::steady_clock::now();
  if (std::system(cmd.c_str()) != 0) return -1;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace test_support
