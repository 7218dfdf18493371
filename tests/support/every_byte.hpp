// SPDX-License-Identifier: MIT
// Test data in which a byte lost, doubled or moved shows.
#pragma once

#include <cstddef>
#include <string>

namespace sandbox::testing {

/// `size` bytes of every byte value, in an order that repeats only every 251 bytes (no page or
/// buffer size is a multiple of it): a byte lost, doubled or moved shows.
inline std::string every_byte(std::size_t size) {
  std::string data(size, '\0');
  for (std::size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<char>((i % 251) * 97 % 256);
  return data;
}

} // namespace sandbox::testing
