// SPDX-License-Identifier: MIT
// Random bits from the kernel, for ids, request ids and retry jitter.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include <sys/random.h>

namespace sandbox::detail {

inline void random_bytes(void* out, std::size_t n) noexcept {
  auto* p = static_cast<unsigned char*>(out);
  while (n > 0) {
    ssize_t got = ::getrandom(p, n, 0);
    if (got <= 0) continue; // EINTR; getrandom cannot fail otherwise once the pool is ready
    p += got;
    n -= static_cast<std::size_t>(got);
  }
}

[[nodiscard]] inline std::uint32_t random_u32() noexcept {
  std::uint32_t v;
  random_bytes(&v, sizeof v);
  return v;
}

/// A version 4 UUID: the idempotency key of one sandbox's create.
[[nodiscard]] inline std::string uuid4() {
  unsigned char b[16];
  random_bytes(b, sizeof b);
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  char s[37];
  std::snprintf(s, sizeof s, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                b[13], b[14], b[15]);
  return s;
}

/// `prefix` followed by `n` random hex digits.
[[nodiscard]] inline std::string random_id(const char* prefix, std::size_t n) {
  std::string s = prefix;
  static constexpr char hex[] = "0123456789abcdef";
  unsigned char b[32];
  random_bytes(b, (n + 1) / 2);
  for (std::size_t i = 0; i < n; ++i)
    s += hex[(b[i / 2] >> ((i % 2) * 4)) & 0xf];
  return s;
}

} // namespace sandbox::detail
