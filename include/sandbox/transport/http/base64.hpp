// SPDX-License-Identifier: MIT
// Table-driven base64 (RFC 4648) for proto3 JSON bytes fields: encoding is standard with padding;
// decoding accepts the standard and the URL-safe alphabet, padded or not.
#pragma once

#include <sandbox/detail/output_buffer.hpp>
#include <sandbox/result.hpp>

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SANDBOX_BASE64_AVX2 1
#endif

namespace sandbox::http {

namespace detail::b64 {

inline constexpr char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Set in a decode-table entry for a byte outside both alphabets; any decoded quad with this bit
/// is invalid (valid quads never exceed 24 bits).
inline constexpr std::uint32_t bad = 0x01000000;

/// 6-bit value of a character of either alphabet ('+' and '-' are 62, '/' and '_' are 63).
constexpr std::uint32_t sextet(unsigned char c) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return bad;
}

/// One table per position of the character in its quad, pre-shifted so that a quad decodes to
/// `t[0][a] | t[1][b] | t[2][c] | t[3][d]` with no shifts on the hot path.
constexpr std::array<std::array<std::uint32_t, 256>, 4> make_decode_tables() noexcept {
  std::array<std::array<std::uint32_t, 256>, 4> t{};
  for (int pos = 0; pos < 4; ++pos)
    for (int c = 0; c < 256; ++c) {
      auto v = sextet(static_cast<unsigned char>(c));
      t[pos][c] = v == bad ? bad : v << (18 - 6 * pos);
    }
  return t;
}
inline constexpr auto decode_tables = make_decode_tables();

/// Two output characters for each 12-bit group, so a 3-byte group costs two lookups.
constexpr std::array<std::uint16_t, 4096> make_encode_table() noexcept {
  std::array<std::uint16_t, 4096> t{};
  for (int i = 0; i < 4096; ++i) {
    // Stored as the two bytes in memory order on a little-endian machine; see encode_into.
    auto hi = static_cast<unsigned char>(alphabet[i >> 6]);
    auto lo = static_cast<unsigned char>(alphabet[i & 63]);
    t[i] = static_cast<std::uint16_t>(hi | (lo << 8));
  }
  return t;
}
inline constexpr auto encode_pairs = make_encode_table();

inline void put_pair(char* out, std::uint16_t pair) noexcept {
  out[0] = static_cast<char>(pair & 0xff);
  out[1] = static_cast<char>(pair >> 8);
}

#ifdef SANDBOX_BASE64_AVX2
/// Whether this CPU runs the AVX2 loops below (the library is built for baseline x86-64, so
/// they are chosen at run time). They handle the bulk of a value, 24 bytes per step, several
/// times faster than the table loops, which take what is left.
inline bool avx2() noexcept {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}

/// Encodes 24 bytes per step while 28 can be read (each half loads 16 of which it uses 12);
/// returns how many bytes it encoded into `o` (4 characters for each 3).
__attribute__((target("avx2"))) inline std::size_t encode_avx2(const unsigned char* in,
                                                               std::size_t n, char* o) noexcept {
  // Per 128-bit lane, 12 bytes as four groups [a b c] spread to dwords (b a c b), then the four
  // 6-bit indices of each group cut out with two multiplies (Mula's method).
  const __m256i spread = _mm256_setr_epi8(1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10, 1, 0,
                                          2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10);
  // Index to character: the offset to add, by range (a-z, 0-9, '+', '/', A-Z).
  const __m256i offsets =
      _mm256_setr_epi8(71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 65, 0, 0, 71, -4, -4,
                       -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 65, 0, 0);
  std::size_t i = 0;
  for (; i + 28 <= n; i += 24, o += 32) {
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i + 12));
    __m256i v = _mm256_shuffle_epi8(_mm256_set_m128i(hi, lo), spread);
    const __m256i t0 = _mm256_mulhi_epu16(_mm256_and_si256(v, _mm256_set1_epi32(0x0fc0fc00)),
                                          _mm256_set1_epi32(0x04000040));
    const __m256i t1 = _mm256_mullo_epi16(_mm256_and_si256(v, _mm256_set1_epi32(0x003f03f0)),
                                          _mm256_set1_epi32(0x01000010));
    const __m256i idx = _mm256_or_si256(t0, t1);
    __m256i range = _mm256_subs_epu8(idx, _mm256_set1_epi8(51)); // 0, or 1-12 for 52-63
    const __m256i upper = _mm256_cmpgt_epi8(_mm256_set1_epi8(26), idx);
    range = _mm256_or_si256(range, _mm256_and_si256(upper, _mm256_set1_epi8(13)));
    v = _mm256_add_epi8(idx, _mm256_shuffle_epi8(offsets, range));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), v);
  }
  return i;
}

/// Decodes 32 characters of the standard alphabet per step while 32 can be read and 32 bytes
/// written (each step stores 24 and 8 that the next overwrites); stops before a step holding
/// anything else (the URL-safe alphabet, a stray byte), which the table loops then decode or
/// report. Returns how many characters it decoded into `o` (3 bytes for each 4).
__attribute__((target("avx2"))) inline std::size_t
decode_avx2(const unsigned char* in, std::size_t n, unsigned char* o, std::size_t room) noexcept {
  // Validity by nibbles (Mula and Lemire): a character is valid when the bits its low nibble
  // selects in lo and its high nibble in hi have none in common.
  const __m256i lut_lo =
      _mm256_setr_epi8(0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1A, 0x1B,
                       0x1B, 0x1B, 0x1A, 0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                       0x13, 0x1A, 0x1B, 0x1B, 0x1B, 0x1A);
  const __m256i lut_hi =
      _mm256_setr_epi8(0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10,
                       0x10, 0x10, 0x10, 0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10,
                       0x10, 0x10, 0x10, 0x10, 0x10, 0x10);
  // Character to 6-bit value: the offset to add, by high nibble ('/' apart).
  const __m256i lut_roll =
      _mm256_setr_epi8(0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 19, 4, -65,
                       -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m256i mask_2f = _mm256_set1_epi8(0x2f);
  const __m256i pack = _mm256_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1, 2,
                                        1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
  std::size_t i = 0, w = 0;
  for (; i + 32 <= n && w + 32 <= room; i += 32, w += 24) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i));
    const __m256i hi_nibbles = _mm256_and_si256(_mm256_srli_epi32(v, 4), mask_2f);
    const __m256i hi = _mm256_shuffle_epi8(lut_hi, hi_nibbles);
    const __m256i lo = _mm256_shuffle_epi8(lut_lo, _mm256_and_si256(v, mask_2f));
    if (!_mm256_testz_si256(lo, hi)) break;
    const __m256i slash = _mm256_cmpeq_epi8(v, mask_2f);
    v = _mm256_add_epi8(v, _mm256_shuffle_epi8(lut_roll, _mm256_add_epi8(slash, hi_nibbles)));
    // Four 6-bit values to 24 bits per dword, then the three bytes of each packed together.
    v = _mm256_maddubs_epi16(v, _mm256_set1_epi32(0x01400140));
    v = _mm256_madd_epi16(v, _mm256_set1_epi32(0x00011000));
    v = _mm256_shuffle_epi8(v, pack);
    v = _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 7, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + w), v);
  }
  return i;
}
#endif

} // namespace detail::b64

/// Length of the padded standard encoding of `n` bytes.
[[nodiscard]] constexpr std::size_t base64_encoded_size(std::size_t n) noexcept {
  return (n + 2) / 3 * 4;
}

/// The most bytes `base64_decode_into` appends for `n` characters of base64.
[[nodiscard]] constexpr std::size_t base64_decoded_size_at_most(std::size_t n) noexcept {
  return n / 4 * 3 + 2;
}

/// Writes the padded standard base64 encoding of `bytes` to `o`, which has room for
/// `base64_encoded_size(bytes.size())` characters.
inline void base64_encode_to(char* o, std::string_view bytes) noexcept {
  using namespace detail::b64;
  const auto* in = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  std::size_t i = 0;
#ifdef SANDBOX_BASE64_AVX2
  if (n >= 64 && avx2()) {
    i = encode_avx2(in, n, o);
    o += i / 3 * 4;
  }
#endif
  if constexpr (std::endian::native == std::endian::little) {
    // One unaligned 4-byte load per group (the 4th byte is the next group's), one 4-byte store.
    for (; i + 4 <= n; i += 3, o += 4) {
      std::uint32_t v;
      std::memcpy(&v, in + i, 4);
      v = __builtin_bswap32(v);
      const std::uint32_t quad =
          encode_pairs[v >> 20] | (std::uint32_t{encode_pairs[(v >> 8) & 0xfff]} << 16);
      std::memcpy(o, &quad, 4);
    }
  }
  for (; i + 3 <= n; i += 3, o += 4) {
    std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8) | in[i + 2];
    put_pair(o, encode_pairs[v >> 12]);
    put_pair(o + 2, encode_pairs[v & 0xfff]);
  }
  if (n - i == 1) {
    std::uint32_t v = std::uint32_t{in[i]} << 4;
    put_pair(o, encode_pairs[v]);
    o[2] = '=';
    o[3] = '=';
  } else if (n - i == 2) {
    std::uint32_t v = (std::uint32_t{in[i]} << 10) | (std::uint32_t{in[i + 1]} << 2);
    put_pair(o, encode_pairs[v >> 6]);
    o[2] = alphabet[v & 63];
    o[3] = '=';
  }
}

/// Appends the padded standard base64 encoding of `bytes` to `out`.
inline void base64_encode_into(std::string& out, std::string_view bytes) noexcept {
  const std::size_t start = out.size();
  sandbox::detail::reserve_output(out, start + base64_encoded_size(bytes.size()), SIZE_MAX);
  out.resize(start + base64_encoded_size(bytes.size()));
  base64_encode_to(out.data() + start, bytes);
}

/// The padded standard base64 encoding of `bytes`.
[[nodiscard]] inline std::string base64_encode(std::string_view bytes) noexcept {
  std::string out;
  base64_encode_into(out, bytes);
  return out;
}

/// Appends the bytes encoded by `text` to `out`. Accepts the standard ('+', '/') and URL-safe
/// ('-', '_') alphabets, with or without '=' padding. Unused low bits of the last character are
/// ignored (as most decoders do). On error `out` is left as it was.
///
/// **Errors:** errc::protocol with a message naming the offset and the offending byte: a byte
/// outside both alphabets (whitespace included), '=' anywhere but at the end, padding that does
/// not complete a 4-character group, or a length that no encoding can have (4k + 1). Offsets
/// and lengths in messages count from `offset`: where `text` starts in a value decoded in parts,
/// whose parts before the last (`last` false) are whole groups of four with no padding.
[[nodiscard]] inline sandbox::result<void> base64_decode_into(std::string& out,
                                                              std::string_view text,
                                                              std::size_t offset = 0,
                                                              bool last = true) noexcept {
  using namespace detail::b64;
  const auto* in = reinterpret_cast<const unsigned char*>(text.data());
  std::size_t n = text.size();
  // Strip one or two '=' of padding; they must then complete a group of four.
  std::size_t pad = 0;
  while (last && pad < 2 && n > 0 && in[n - 1] == '=') {
    --n;
    ++pad;
  }

  // Names the first byte outside both alphabets at or after `from`, if there is one.
  const std::size_t base = offset;
  auto bad_byte = [&](std::size_t from) -> std::optional<sandbox::error> {
    std::size_t at = from;
    while (at < n && sextet(in[at]) != bad)
      ++at;
    if (at == n) return std::nullopt;
    const unsigned char c = in[at];
    std::string what =
        c == '=' ? "'=' before the end"
        : (c >= 0x21 && c < 0x7f)
            ? std::string("character '") + static_cast<char>(c) + "'"
            : "byte 0x" + std::string(1, "0123456789abcdef"[c >> 4]) + "0123456789abcdef"[c & 15];
    return sandbox::error{errc::protocol,
                          "invalid base64: " + what + " at offset " + std::to_string(base + at)};
  };
  // A bad length is checked before decoding; a stray character explains it better when there is
  // one.
  if (pad > 0 && (n + pad) % 4 != 0) {
    if (auto e = bad_byte(0)) return fail(std::move(*e));
    return fail(errc::protocol, "invalid base64: padding at offset " + std::to_string(base + n) +
                                    " does not complete a 4-character group");
  }
  if (n % 4 == 1) {
    if (auto e = bad_byte(0)) return fail(std::move(*e));
    return fail(errc::protocol, "invalid base64: length " + std::to_string(base + text.size()) +
                                    " is not possible");
  }

  const std::size_t start = out.size();
  // At most base64_decoded_size_at_most(text.size()) more.
  const std::size_t size = start + n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1);
  // Exact for a whole value; an append in parts grows geometrically (a cap of `size` would
  // grow the buffer by each part alone and copy it every time).
  sandbox::detail::reserve_output(out, size, start == 0 ? size : SIZE_MAX);
  out.resize(size);
  auto* o = reinterpret_cast<unsigned char*>(out.data() + start);
  const auto& t = decode_tables;
  std::size_t i = 0;
#ifdef SANDBOX_BASE64_AVX2
  if (n >= 64 && avx2()) {
    i = decode_avx2(in, n, o, size - start);
    o += i / 4 * 3;
  }
#endif
  if constexpr (std::endian::native == std::endian::little) {
    // Two quads per step, checked together, each stored as one 4-byte write; the 4th byte lands
    // on the next group's first byte, which a later store overwrites (another quad follows).
    for (; i + 12 <= n; i += 8, o += 6) {
      const std::uint32_t v = t[0][in[i]] | t[1][in[i + 1]] | t[2][in[i + 2]] | t[3][in[i + 3]];
      const std::uint32_t w = t[0][in[i + 4]] | t[1][in[i + 5]] | t[2][in[i + 6]] | t[3][in[i + 7]];
      if ((v | w) & bad) break; // the byte-wise loop below finds and reports it
      const std::uint32_t a = __builtin_bswap32(v << 8), b = __builtin_bswap32(w << 8);
      std::memcpy(o, &a, 4);
      std::memcpy(o + 3, &b, 4);
    }
  }
  for (; i + 4 <= n; i += 4, o += 3) {
    std::uint32_t v = t[0][in[i]] | t[1][in[i + 1]] | t[2][in[i + 2]] | t[3][in[i + 3]];
    if (v & bad) {
      out.resize(start);
      return fail(std::move(*bad_byte(i)));
    }
    o[0] = static_cast<unsigned char>(v >> 16);
    o[1] = static_cast<unsigned char>(v >> 8);
    o[2] = static_cast<unsigned char>(v);
  }
  if (std::size_t rest = n - i; rest >= 2) {
    std::uint32_t v = t[0][in[i]] | t[1][in[i + 1]] | (rest == 3 ? t[2][in[i + 2]] : 0);
    if (v & bad) {
      out.resize(start);
      return fail(std::move(*bad_byte(i)));
    }
    o[0] = static_cast<unsigned char>(v >> 16);
    if (rest == 3) o[1] = static_cast<unsigned char>(v >> 8);
  }
  return success();
}

/// The bytes encoded by `text`; see `base64_decode_into` for what is accepted.
///
/// **Errors:** errc::protocol for input that is not base64 (see `base64_decode_into`).
[[nodiscard]] inline sandbox::result<std::string> base64_decode(std::string_view text) noexcept {
  std::string out;
  SANDBOX_TRYV(base64_decode_into(out, text));
  return out;
}

} // namespace sandbox::http
