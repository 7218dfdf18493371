// SPDX-License-Identifier: MIT
// UTF-8 well-formedness: proto3 `string` fields and JSON text must be valid UTF-8 (a peer's
// parser refuses the whole message otherwise), whatever bytes a caller put in them.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace sandbox::detail {

/// Length of the valid UTF-8 sequence starting at `p` (lead byte >= 0x80), or 0 if invalid.
/// Follows the Unicode well-formed byte sequence table (no overlongs, no surrogates, nothing
/// above U+10FFFF).
[[nodiscard]] inline std::size_t utf8_sequence(const unsigned char* p, std::size_t avail) noexcept {
  const unsigned char b0 = p[0];
  auto cont = [&](std::size_t i, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return i < avail && p[i] >= lo && p[i] <= hi;
  };
  if (b0 >= 0xC2 && b0 <= 0xDF) return cont(1) ? 2 : 0;
  if (b0 == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if (b0 == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (b0 >= 0xE1 && b0 <= 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (b0 == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (b0 >= 0xF1 && b0 <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (b0 == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

/// Offset of the first byte of `s` that is not part of a valid UTF-8 sequence, or npos.
[[nodiscard]] inline std::size_t invalid_utf8_at(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (std::size_t i = 0; i < s.size();) {
    if (p[i] < 0x80) {
      ++i;
    } else if (std::size_t len = utf8_sequence(p + i, s.size() - i)) {
      i += len;
    } else {
      return i;
    }
  }
  return std::string_view::npos;
}

/// `s` with each byte that is not part of a valid UTF-8 sequence replaced by U+FFFD.
[[nodiscard]] inline std::string valid_utf8(std::string_view s) {
  std::size_t bad = invalid_utf8_at(s);
  if (bad == std::string_view::npos) return std::string(s);
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::string out(s.substr(0, bad));
  for (std::size_t i = bad; i < s.size();) {
    std::size_t len = p[i] < 0x80 ? 1 : utf8_sequence(p + i, s.size() - i);
    if (len) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD"; // U+FFFD REPLACEMENT CHARACTER
      ++i;
    }
  }
  return out;
}

} // namespace sandbox::detail
