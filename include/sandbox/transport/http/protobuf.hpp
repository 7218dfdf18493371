// SPDX-License-Identifier: MIT
// The protobuf binary encoding of every message described in wire.hpp, driven by its descriptor
// alone (as the JSON codec is): what gRPC carries, and what Connect puts in an error detail's
// `value`. Core only: no protobuf library and no generated code.
#pragma once

#include <sandbox/detail/utf8.hpp>
#include <sandbox/result.hpp>
#include <sandbox/transport/http/decode_mode.hpp>
#include <sandbox/transport/http/descriptor.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace sandbox::http {

/// How string fields are encoded (see `to_protobuf`).
enum class strings { as_given, utf8 };

/// A message's encoding with its large bytes values referred to, not copied
/// (`to_protobuf_spliced`): the encoding is `text` with each hole's value inserted at its place,
/// in order. It refers to the message's bytes: the message must outlive it and stay unchanged.
struct spliced_protobuf {
  struct hole {
    std::size_t at; ///< where in `text` the value goes
    std::string_view bytes;
  };
  std::string text;
  std::vector<hole> holes;
};

namespace detail::pb {

using wire::kind;

// ---- Timestamp text ⇄ seconds and nanos ---------------------------------------------------------
// Timestamps are held as their RFC 3339 text (descriptor.hpp); the binary form is
// google.protobuf.Timestamp { int64 seconds = 1; int32 nanos = 2; }.

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
[[nodiscard]] constexpr std::int64_t days_from_civil(std::int64_t y, unsigned m,
                                                     unsigned d) noexcept {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

struct instant {
  std::int64_t seconds = 0;
  std::int32_t nanos = 0;
};

/// `2024-05-01T12:00:00.5Z` or with an offset (`+02:00`); nullopt when it is not RFC 3339.
[[nodiscard]] inline std::optional<instant> parse_timestamp(std::string_view s) noexcept {
  std::size_t i = 0;
  auto digits = [&](std::size_t n, std::int64_t& out) {
    out = 0;
    for (std::size_t k = 0; k < n; ++k, ++i) {
      if (i >= s.size() || s[i] < '0' || s[i] > '9') return false;
      out = out * 10 + (s[i] - '0');
    }
    return true;
  };
  auto expect = [&](char c) {
    return i < s.size() && (s[i++] == c || (c == 'T' && s[i - 1] == 't'));
  };
  std::int64_t y, mo, d, h, mi, se;
  if (!digits(4, y) || !expect('-') || !digits(2, mo) || !expect('-') || !digits(2, d) ||
      !expect('T') || !digits(2, h) || !expect(':') || !digits(2, mi) || !expect(':') ||
      !digits(2, se))
    return std::nullopt;
  constexpr int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo < 1 || mo > 12 || d < 1 || d > month_days[mo - 1] || (mo == 2 && d == 29 && !leap) ||
      h > 23 || mi > 59 || se > 59)
    return std::nullopt;
  std::int64_t nanos = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    int n = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (n < 9) nanos = nanos * 10 + (s[i] - '0'), ++n;
      ++i;
    }
    if (n == 0) return std::nullopt;
    for (; n < 9; ++n)
      nanos *= 10;
  }
  std::int64_t offset = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    const int sign = s[i++] == '-' ? -1 : 1;
    std::int64_t oh, om;
    if (!digits(2, oh) || !expect(':') || !digits(2, om) || oh > 23 || om > 59) return std::nullopt;
    offset = sign * (oh * 3600 + om * 60);
  } else {
    return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  const std::int64_t days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  return instant{days * 86400 + h * 3600 + mi * 60 + se - offset, static_cast<std::int32_t>(nanos)};
}

/// The RFC 3339 text of an instant, in UTC, with 0, 3, 6 or 9 fraction digits (as protobuf's
/// JSON writes it); empty when out of the years 0001-9999.
[[nodiscard]] inline std::string timestamp_text(instant t) {
  if (t.nanos < 0 || t.nanos > 999'999'999) return {};
  std::int64_t days = t.seconds / 86400, rem = t.seconds % 86400;
  if (rem < 0) rem += 86400, --days;
  // civil_from_days
  days += 719468;
  const std::int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const auto doe = static_cast<unsigned>(days - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2);
  if (y < 1 || y > 9999) return {};
  char buf[48];
  int n = std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02lld:%02lld:%02lld",
                        static_cast<long long>(y), m, d, static_cast<long long>(rem / 3600),
                        static_cast<long long>(rem / 60 % 60), static_cast<long long>(rem % 60));
  std::string out(buf, static_cast<std::size_t>(n));
  if (t.nanos != 0) {
    if (t.nanos % 1'000'000 == 0)
      n = std::snprintf(buf, sizeof buf, ".%03d", t.nanos / 1'000'000);
    else if (t.nanos % 1000 == 0)
      n = std::snprintf(buf, sizeof buf, ".%06d", t.nanos / 1000);
    else
      n = std::snprintf(buf, sizeof buf, ".%09d", t.nanos);
    out.append(buf, static_cast<std::size_t>(n));
  }
  out += 'Z';
  return out;
}

/// The RFC 3339 text of a point of the system clock.
[[nodiscard]] inline std::string timestamp_text(std::chrono::system_clock::time_point t) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  std::int64_t s = ns / 1'000'000'000, n = ns % 1'000'000'000;
  if (n < 0) n += 1'000'000'000, --s;
  return timestamp_text(instant{s, static_cast<std::int32_t>(n)});
}

// ---- encoding -----------------------------------------------------------------------------------
// A message is written once, straight into its sink: the length of a nested message is counted
// first (`byte_count`, the same code writing nothing), not found by encoding it into a string of
// its own and copying that.

/// A sink that only counts what would be written.
struct byte_count {
  std::size_t n = 0;
};

/// A sink that refers to large bytes values instead of copying them (`spliced_protobuf`).
struct splicing {
  spliced_protobuf s;
  std::size_t min_bytes;
};

inline void put_byte(std::string& out, char c) { out += c; }
inline void put_byte(byte_count& out, char) noexcept { ++out.n; }
inline void put_byte(splicing& out, char c) { out.s.text += c; }

/// Bytes written as they are (a copy).
inline void put_raw(std::string& out, std::string_view s) { out.append(s); }
inline void put_raw(byte_count& out, std::string_view s) noexcept { out.n += s.size(); }
inline void put_raw(splicing& out, std::string_view s) { out.s.text.append(s); }

/// A bytes value the message holds: copied, or referred to by a splicing sink when large.
template <class Out>
void put_bytes_value(Out& out, std::string_view s) {
  if constexpr (std::is_same_v<Out, splicing>) {
    if (s.size() >= out.min_bytes) {
      out.s.holes.push_back({out.s.text.size(), s});
      return;
    }
  }
  put_raw(out, s);
}

template <class Out>
void put_varint(Out& out, std::uint64_t v) {
  while (v >= 0x80) {
    put_byte(out, static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  put_byte(out, static_cast<char>(v));
}

template <class Out>
void put_tag(Out& out, std::uint32_t number, int wire_type) {
  put_varint(out, (std::uint64_t{number} << 3) | static_cast<unsigned>(wire_type));
}

/// A length-delimited field, always copied: callers pass temporaries (a string made valid UTF-8,
/// an Any's type URL), which a splicing sink must not refer to (`put_bytes_value` may).
template <class Out>
void put_bytes(Out& out, std::uint32_t number, std::string_view bytes) {
  put_tag(out, number, 2);
  put_varint(out, bytes.size());
  put_raw(out, bytes);
}

template <strings S, class Out, wire::described_message M>
void encode_message(Out& out, const M& m);

/// A string field: as given, or (strings::utf8) with each byte that is not part of valid UTF-8
/// as U+FFFD.
template <strings S, class Out>
void put_string(Out& out, std::uint32_t number, std::string_view v) {
  if constexpr (S == strings::utf8) {
    if (sandbox::detail::invalid_utf8_at(v) != std::string_view::npos)
      return put_bytes(out, number, sandbox::detail::valid_utf8(v));
  }
  put_bytes(out, number, v);
}

/// A length-delimited field holding whatever `body` writes to the sink it is given (a nested
/// message): called to count, then (unless only counting) to write, so that each level of nesting
/// counts what it holds once.
template <class Out, class Body>
void put_nested(Out& out, std::uint32_t number, Body&& body) {
  byte_count size;
  body(size);
  put_tag(out, number, 2);
  put_varint(out, size.n);
  if constexpr (std::is_same_v<Out, byte_count>)
    out.n += size.n;
  else
    body(out);
}

template <class Out>
void put_instant(Out& out, std::uint32_t number, std::int64_t seconds, std::int32_t nanos) {
  put_nested(out, number, [&](auto& in) {
    if (seconds != 0) put_tag(in, 1, 0), put_varint(in, static_cast<std::uint64_t>(seconds));
    if (nanos != 0)
      put_tag(in, 2, 0), put_varint(in, static_cast<std::uint64_t>(std::int64_t{nanos}));
  });
}

/// The varint of a numeric value (an int32 is sign-extended to 64 bits, as protobuf does).
template <kind K, class T>
[[nodiscard]] std::uint64_t varint_of(const T& v) noexcept {
  if constexpr (K == kind::boolean)
    return v ? 1 : 0;
  else
    return static_cast<std::uint64_t>(static_cast<std::int64_t>(v));
}

/// One value of kind `K` as field `number`.
template <kind K, strings S, class Out, class T>
void put_value(Out& out, std::uint32_t number, const T& v) {
  if constexpr (K == kind::string) {
    put_string<S>(out, number, v);
  } else if constexpr (K == kind::bytes) {
    put_tag(out, number, 2);
    put_varint(out, v.size());
    put_bytes_value(out, v);
  } else if constexpr (K == kind::message) {
    put_nested(out, number, [&](auto& in) { encode_message<S>(in, v); });
  } else if constexpr (K == kind::timestamp) {
    // Text that is not RFC 3339 has no binary form: the field is left out, as if unset.
    if (auto t = parse_timestamp(v)) put_instant(out, number, t->seconds, t->nanos);
  } else if constexpr (K == kind::duration) {
    const auto ms = v.count();
    put_instant(out, number, ms / 1000, static_cast<std::int32_t>(ms % 1000 * 1'000'000));
  } else {
    put_tag(out, number, 0);
    put_varint(out, varint_of<K>(v));
  }
}

template <strings S, class Out, class Message, class... Types>
void put_any(Out& out, const wire::any_field<Message, Types...>& f, const Message& m) {
  std::apply(
      [&](auto... member) {
        (
            [&] {
              const auto& v = m.*member;
              if (!v) return;
              using T = typename std::remove_cvref_t<decltype(v)>::value_type;
              put_nested(out, f.number, [&](auto& in) {
                put_bytes(in, 1,
                          "type.googleapis.com/" + std::string(wire::descriptor<T>.full_name));
                put_nested(in, 2, [&](auto& body) { encode_message<S>(body, *v); });
              });
            }(),
            ...);
      },
      f.members);
}

template <strings S, class Out, wire::described_message M>
void encode_message(Out& out, const M& m) {
  wire::for_each_field<M>([&]<std::size_t I>() {
    constexpr auto& f = wire::field_at<M, I>;
    using F = std::remove_cvref_t<decltype(f)>;
    if constexpr (wire::is_any_field<F>) {
      put_any<S>(out, f, m);
    } else {
      if (!wire::is_set(f, m)) return;
      const auto& v = m.*f.member;
      if constexpr (F::map) {
        for (const auto& entry : v) // not structured bindings: clang 14 cannot capture them
          put_nested(out, f.number, [&](auto& in) {
            put_string<S>(in, 1, entry.first);
            put_value<f.type, S>(in, 2, entry.second);
          });
      } else if constexpr (F::repeated && f.packed()) {
        put_nested(out, f.number, [&](auto& in) {
          for (const auto& e : v)
            put_varint(in, varint_of<f.type>(e));
        });
      } else if constexpr (F::repeated) {
        for (const auto& e : v)
          put_value<f.type, S>(out, f.number, e);
      } else if constexpr (F::explicit_presence) {
        put_value<f.type, S>(out, f.number, *v);
      } else {
        put_value<f.type, S>(out, f.number, v);
      }
    }
  });
}

// ---- decoding -----------------------------------------------------------------------------------

/// A cursor over one message's bytes, with the path of the field being read for errors.
struct reader {
  std::string_view in;
  std::size_t at = 0;
  decode_mode mode;
  std::string path; ///< "spec.containers[0].image" while reading that field
  int depth = 0;    ///< nested messages around this one

  [[nodiscard]] bool done() const noexcept { return at >= in.size(); }

  [[nodiscard]] error bad(std::string_view what) const {
    return bad(mode == decode_mode::strict ? errc::validation : errc::protocol, what);
  }
  [[nodiscard]] error bad(errc code, std::string_view what) const {
    std::string where = path.empty() ? std::string() : path + ": ";
    return error(code, where + std::string(what));
  }
  /// An error about field `name` of the message being read.
  [[nodiscard]] error bad_field(std::string_view name, errc code, std::string_view what) const {
    return error(code, (path.empty() ? std::string() : path + ".") + std::string(name) + ": " +
                           std::string(what));
  }

  [[nodiscard]] result<std::uint64_t> varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (at >= in.size()) return fail(bad("truncated varint"));
      const auto b = static_cast<unsigned char>(in[at++]);
      v |= std::uint64_t{b & 0x7fu} << shift;
      if (!(b & 0x80)) return v;
    }
    return fail(bad("varint longer than 10 bytes"));
  }

  /// The next field's number and wire type.
  struct tag_t {
    std::uint64_t number;
    int wire_type;
  };
  [[nodiscard]] result<tag_t> tag() {
    SANDBOX_TRY(t, varint());
    return tag_t{t >> 3, static_cast<int>(t & 7)};
  }

  [[nodiscard]] result<std::string_view> length_delimited() {
    SANDBOX_TRY(n, varint());
    if (n > in.size() - at) return fail(bad("length beyond the end of the message"));
    std::string_view v = in.substr(at, static_cast<std::size_t>(n));
    at += static_cast<std::size_t>(n);
    return v;
  }

  /// Skips a value of `wire_type` (a field this message does not describe).
  [[nodiscard]] result<void> skip(int wire_type) {
    switch (wire_type) {
    case 0: {
      SANDBOX_TRYV(varint());
      return success();
    }
    case 1:
    case 5: {
      const std::size_t n = wire_type == 1 ? 8 : 4;
      if (in.size() - at < n) return fail(bad("truncated fixed-width value"));
      at += n;
      return success();
    }
    case 2: {
      SANDBOX_TRYV(length_delimited());
      return success();
    }
    default: return fail(bad("unsupported wire type " + std::to_string(wire_type)));
    }
  }

  /// A reader of the nested message `bytes` of the field being read (same path).
  [[nodiscard]] reader nested(std::string_view bytes) const {
    return reader{bytes, 0, mode, path, depth + 1};
  }
};

/// Nesting deeper than this is refused (protobuf's own default limit), so that hostile input
/// cannot exhaust the stack whatever the messages described.
inline constexpr int max_depth = 100;

template <wire::described_message M>
[[nodiscard]] result<void> decode_message(reader& r, M& m);

/// A Timestamp or Duration message, checked against the ranges protobuf defines for them.
[[nodiscard]] inline result<instant> read_instant(reader r, bool duration) {
  instant t;
  while (!r.done()) {
    SANDBOX_TRY(tag, r.tag());
    const auto [number, wt] = tag;
    if ((number == 1 || number == 2) && wt == 0) {
      SANDBOX_TRY(v, r.varint());
      if (number == 1)
        t.seconds = static_cast<std::int64_t>(v);
      else
        t.nanos = static_cast<std::int32_t>(static_cast<std::int64_t>(v));
    } else {
      SANDBOX_TRYV(r.skip(wt));
    }
  }
  if (duration) {
    // ±10 000 years, and seconds and nanos of one sign.
    if (t.seconds < -315'576'000'000 || t.seconds > 315'576'000'000 || t.nanos < -999'999'999 ||
        t.nanos > 999'999'999 || (t.seconds > 0 && t.nanos < 0) || (t.seconds < 0 && t.nanos > 0))
      return fail(r.bad("duration out of range"));
  } else if (t.nanos < 0 || t.nanos > 999'999'999) {
    return fail(r.bad("timestamp nanos out of range"));
  }
  return t;
}

/// One value of kind `K` whose field carried wire type `wt`.
template <kind K, class T>
[[nodiscard]] result<void> read_value(reader& r, int wt, T& out) {
  if constexpr (K == kind::string || K == kind::bytes || K == kind::message ||
                K == kind::timestamp || K == kind::duration) {
    if (wt != 2) return fail(r.bad("expected a length-delimited value"));
    SANDBOX_TRY(bytes, r.length_delimited());
    if constexpr (K == kind::string || K == kind::bytes) {
      out.assign(bytes.data(), bytes.size());
    } else if constexpr (K == kind::message) {
      reader inner = r.nested(bytes);
      SANDBOX_TRYV(decode_message(inner, out));
    } else if constexpr (K == kind::timestamp) {
      SANDBOX_TRY(t, read_instant(r.nested(bytes), false));
      out = timestamp_text(t);
      if (out.empty()) return fail(r.bad("timestamp out of range"));
    } else {
      SANDBOX_TRY(t, read_instant(r.nested(bytes), true)); // in range: no overflow below
      // A partial millisecond counts as one, as the JSON decoder has it (a delay never shrinks).
      out = std::chrono::milliseconds(t.seconds * 1000 + t.nanos / 1'000'000 +
                                      (t.nanos % 1'000'000 > 0));
    }
    return success();
  } else {
    if (wt != 0) return fail(r.bad("expected a varint"));
    SANDBOX_TRY(v, r.varint());
    if constexpr (K == kind::boolean)
      out = v != 0;
    else
      out = static_cast<T>(static_cast<std::int64_t>(v));
    return success();
  }
}

/// A map entry `{ string key = 1; V value = 2; }` into `out`.
template <kind K, class Map>
[[nodiscard]] result<void> read_entry(reader r, Map& out) {
  std::string key;
  typename Map::mapped_type value{};
  while (!r.done()) {
    SANDBOX_TRY(tag, r.tag());
    const auto [number, wt] = tag;
    if (number == 1) {
      SANDBOX_TRYV(read_value<kind::string>(r, wt, key));
    } else if (number == 2) {
      SANDBOX_TRYV(read_value<K>(r, wt, value));
    } else {
      SANDBOX_TRYV(r.skip(wt));
    }
  }
  out.insert_or_assign(std::move(key), std::move(value));
  return success();
}

/// An `Any` entry (`type_url`, the message in `value`'s bytes) of any_field `f` of `m`: decoded
/// into the member of its type unless that is set already (the first of each type is kept). An
/// entry of another type, one that does not decode, or one without a required field says nothing:
/// it is dropped.
template <class Message, class... Types>
void keep_any(const wire::any_field<Message, Types...>& f, Message& m, std::string_view type_url,
              reader value) {
  const std::string_view type_name = type_url.substr(type_url.rfind('/') + 1);
  value.mode = decode_mode::strict;
  std::apply(
      [&](auto... member) {
        (
            [&] {
              auto& slot = m.*member;
              using T = typename std::remove_cvref_t<decltype(slot)>::value_type;
              if (slot || type_name != wire::descriptor<T>.full_name) return;
              T x{};
              reader inner = value;
              if (decode_message(inner, x)) slot = std::move(x);
            }(),
            ...);
      },
      f.members);
}

/// An `Any` entry of an any_field, read from the wire.
template <class Message, class... Types>
[[nodiscard]] result<void> read_any(reader r, const wire::any_field<Message, Types...>& f,
                                    Message& m) {
  std::string type_url;
  std::string_view value;
  while (!r.done()) {
    SANDBOX_TRY(tag, r.tag());
    const auto [number, wt] = tag;
    if (number == 1) {
      SANDBOX_TRYV(read_value<kind::string>(r, wt, type_url));
    } else if (number == 2 && wt == 2) {
      SANDBOX_TRY(v, r.length_delimited());
      value = v;
    } else {
      SANDBOX_TRYV(r.skip(wt));
    }
  }
  keep_any(f, m, type_url, r.nested(value));
  return success();
}

/// Clears the other members of field `I`'s oneof: on the binary wire the last one given wins.
template <wire::described_message M, std::size_t I>
void clear_oneof_siblings(M& m) {
  constexpr auto& f = wire::field_at<M, I>;
  wire::for_each_field<M>([&]<std::size_t J>() {
    constexpr auto& g = wire::field_at<M, J>;
    if constexpr (J != I && !wire::is_any_field<std::remove_cvref_t<decltype(g)>>)
      if constexpr (g.options.oneof == f.options.oneof) (m.*g.member).reset();
  });
}

/// Field `I` of `m`, whose tag carried wire type `wt`.
template <wire::described_message M, std::size_t I>
[[nodiscard]] result<void> read_field(reader& r, int wt, M& m) {
  constexpr auto& f = wire::field_at<M, I>;
  using F = std::remove_cvref_t<decltype(f)>;
  if constexpr (wire::is_any_field<F>) {
    if (wt != 2) return fail(r.bad("expected a length-delimited value"));
    SANDBOX_TRY(bytes, r.length_delimited());
    return read_any(r.nested(bytes), f, m);
  } else {
    auto& v = m.*f.member;
    if constexpr (F::map) {
      if (wt != 2) return fail(r.bad("expected a map entry"));
      SANDBOX_TRY(bytes, r.length_delimited());
      return read_entry<f.type>(r.nested(bytes), v);
    } else if constexpr (F::repeated) {
      if (f.packed() && wt == 2) { // packed numbers; an unpacked element is accepted too
        SANDBOX_TRY(bytes, r.length_delimited());
        reader p = r.nested(bytes);
        while (!p.done()) {
          typename F::value_type e{};
          SANDBOX_TRYV(read_value<f.type>(p, 0, e));
          v.push_back(std::move(e));
        }
        return success();
      }
      typename F::value_type e{};
      const std::size_t mark = r.path.size();
      r.path += "[" + std::to_string(v.size()) + "]";
      auto read = read_value<f.type>(r, wt, e);
      r.path.resize(mark);
      SANDBOX_TRYV(std::move(read));
      v.push_back(std::move(e));
      return success();
    } else if constexpr (F::explicit_presence) {
      if (!v) v.emplace();
      SANDBOX_TRYV(read_value<f.type>(r, wt, *v));
      if constexpr (f.options.oneof != 0) clear_oneof_siblings<M, I>(m);
      return success();
    } else {
      return read_value<f.type>(r, wt, v);
    }
  }
}

/// Reads field number `number` of `m` (from field index `I` on), or skips it when not described.
template <wire::described_message M, std::size_t I = 0>
[[nodiscard]] result<void> dispatch(reader& r, std::uint64_t number, int wt, M& m,
                                    std::uint64_t& given) {
  if constexpr (I < wire::field_count<M>) {
    constexpr auto& f = wire::field_at<M, I>;
    if (number != f.number) return dispatch<M, I + 1>(r, number, wt, m, given);
    given |= std::uint64_t{1} << I;
    const std::size_t mark = r.path.size();
    r.path += r.path.empty() ? "" : ".";
    r.path += f.json_name();
    auto done = read_field<M, I>(r, wt, m);
    r.path.resize(mark);
    return done;
  } else {
    static_assert(wire::unmodelled_apart<M>(), "an unmodelled field repeats a field of M");
    const auto* u = wire::find_unmodelled<M>([&](const auto& f) { return f.number == number; });
    if (!u || u->use != wire::unmodelled_use::unsupported || r.mode != decode_mode::strict)
      return r.skip(wt);
    // Not implemented by our server: refused when set (a proto3 default is not on the wire,
    // but an optional scalar's 0 or an empty message may be).
    bool set = true;
    if (wt == 0) {
      SANDBOX_TRY(v, r.varint());
      set = v != 0;
    } else if (wt == 2) {
      SANDBOX_TRY(v, r.length_delimited());
      set = !v.empty();
    } else {
      SANDBOX_TRYV(r.skip(wt));
    }
    if (!set) return success();
    return fail(r.bad_field(u->json_name(), errc::unsupported, "not implemented by this server"));
  }
}

template <wire::described_message M>
[[nodiscard]] result<void> decode_message(reader& r, M& m) {
  if (r.depth > max_depth) return fail(r.bad("nested too deeply"));
  std::uint64_t given = 0; // a bit per field index: the field was on the wire
  while (!r.done()) {
    SANDBOX_TRY(tag, r.tag());
    if (tag.number == 0 || tag.number >= (1u << 29)) return fail(r.bad("invalid field number"));
    SANDBOX_TRYV(dispatch(r, tag.number, tag.wire_type, m, given));
  }
  if (r.mode != decode_mode::strict) return success();
  // Required: given, and not the default (a Duration counts as soon as it is given).
  std::string_view missing;
  wire::for_each_field<M>([&]<std::size_t I>() {
    constexpr auto& f = wire::field_at<M, I>;
    if constexpr (!wire::is_any_field<std::remove_cvref_t<decltype(f)>>)
      if (f.options.required && missing.empty() &&
          (!(given & (std::uint64_t{1} << I)) || !wire::is_set(f, m)))
        missing = f.json_name();
  });
  if (!missing.empty()) return fail(r.bad_field(missing, errc::validation, "required"));
  return success();
}

} // namespace detail::pb

/// Encodes `msg` (any message described in wire.hpp) in the protobuf binary format: fields in
/// descriptor order, proto3 defaults omitted (an optional field whenever it is set), repeated
/// numbers packed, Timestamps from their RFC 3339 text. Strings go as given (a command's
/// arguments are bytes to Linux, and the decoder takes them back as they were), or with
/// strings::utf8 as valid UTF-8, as a server answers: any other peer's protobuf refuses a whole
/// message for one string that is not (one tag would make every ListSandboxes fail).
template <strings S = strings::as_given, wire::described_message M>
[[nodiscard]] std::string to_protobuf(const M& msg) {
  detail::pb::byte_count size;
  detail::pb::encode_message<S>(size, msg);
  std::string out;
  out.reserve(size.n);
  detail::pb::encode_message<S>(out, msg);
  return out;
}

/// `msg` encoded as `to_protobuf` does, with its bytes values of `min_bytes` or more left out
/// (see `spliced_protobuf`).
template <strings S = strings::as_given, wire::described_message M>
[[nodiscard]] spliced_protobuf to_protobuf_spliced(const M& msg, std::size_t min_bytes) {
  detail::pb::splicing out{{}, min_bytes};
  detail::pb::encode_message<S>(out, msg);
  return std::move(out.s);
}

/// Keeps the detail `type_url` / `bytes` (an Any given apart, as Connect sends error details) in
/// the any_field of `msg` that holds its type, as a decode of `msg` would: the first of each type,
/// and only when it decodes with its required fields.
template <wire::described_message M>
void keep_any_detail(M& msg, std::string_view type_url, std::string_view bytes) {
  wire::for_each_field<M>([&]<std::size_t I>() {
    constexpr auto& f = wire::field_at<M, I>;
    if constexpr (wire::is_any_field<std::remove_cvref_t<decltype(f)>>)
      detail::pb::keep_any(f, msg, type_url,
                           detail::pb::reader{bytes, 0, decode_mode::strict, {}, 1});
  });
}

/// Decodes a protobuf binary message. Fields not described are skipped in either mode, but in
/// strict mode a field our server does not implement (`wire::unmodelled`) that is set is
/// errc::unsupported naming it; a field of the wrong wire type or truncated input is an error
/// naming the field (errc::protocol, or errc::validation when `mode` is strict, which also
/// requires every `required` field).
template <wire::described_message M>
[[nodiscard]] result<M> from_protobuf(std::string_view bytes, decode_mode mode) {
  M out{};
  detail::pb::reader r{bytes, 0, mode, {}, 0};
  SANDBOX_TRYV(detail::pb::decode_message(r, out));
  return out;
}

} // namespace sandbox::http
