// SPDX-License-Identifier: MIT
// The protobuf wire format written by hand, to build messages no encoder of ours would (an
// overlong varint, fields out of order, repeated or unknown) and to spell out expected bytes.
#pragma once

#include <cstdint>
#include <string>

namespace sandbox::testing {

inline std::string varint(std::uint64_t v) {
  std::string out;
  for (; v >= 0x80; v >>= 7)
    out += static_cast<char>((v & 0x7f) | 0x80);
  return out + static_cast<char>(v);
}

/// Field `number` with the varint `v` (wire type 0).
inline std::string number_field(std::uint32_t number, std::uint64_t v) {
  return varint(std::uint64_t{number} << 3) + varint(v);
}

/// Field `number` with the length-delimited `v` (wire type 2).
inline std::string bytes_field(std::uint32_t number, const std::string& v) {
  return varint((std::uint64_t{number} << 3) | 2) + varint(v.size()) + v;
}

} // namespace sandbox::testing
