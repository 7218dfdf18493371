// SPDX-License-Identifier: MIT
// The parts of proto3 JSON that need no parser (codec.hpp adds the simdjson decoder): the text
// form of google.protobuf.Duration, and the encoder of every described message (descriptor.hpp):
// lowerCamelCase names, unset fields omitted, int64 as strings, bytes as base64, enums by name.
#pragma once

#include <sandbox/transport/http/base64.hpp>
#include <sandbox/transport/http/json_writer.hpp>
#include <sandbox/transport/http/wire.hpp>

#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>

namespace sandbox::http::detail::json {

/// A Duration as proto3 JSON writes it: whole seconds, or 3 fractional digits ("1.500s").
[[nodiscard]] inline std::string duration_text(std::chrono::milliseconds d) noexcept {
  auto ms = d.count();
  std::string out = ms < 0 ? "-" : "";
  auto abs = ms < 0 ? -static_cast<std::uint64_t>(ms) : static_cast<std::uint64_t>(ms);
  out += std::to_string(abs / 1000);
  if (auto frac = abs % 1000) {
    out += '.';
    out += static_cast<char>('0' + frac / 100);
    out += static_cast<char>('0' + frac / 10 % 10);
    out += static_cast<char>('0' + frac % 10);
  }
  out += 's';
  return out;
}

/// Parses a google.protobuf.Duration in its JSON form (`"1.5s"`, `"-2s"`, up to 9 fractional
/// digits); nullopt if it is not one.
/// A positive delay below a millisecond rounds up to 1 ms, so that a hint is never lost.
[[nodiscard]] inline std::optional<std::chrono::milliseconds>
parse_duration(std::string_view s) noexcept {
  if (s.size() < 2 || s.back() != 's') return std::nullopt;
  s.remove_suffix(1);
  bool negative = !s.empty() && s.front() == '-';
  if (negative) s.remove_prefix(1);
  auto dot = s.find('.');
  std::string_view whole = s.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view{} : s.substr(dot + 1);
  if (whole.empty() || (dot != std::string_view::npos && (frac.empty() || frac.size() > 9)))
    return std::nullopt;
  std::int64_t secs = 0;
  auto [p, ec] = std::from_chars(whole.data(), whole.data() + whole.size(), secs);
  // Duration's range is ±315,576,000,000 s.
  if (ec != std::errc{} || p != whole.data() + whole.size() || secs > 315'576'000'000)
    return std::nullopt;
  std::int64_t nanos = 0;
  for (std::size_t i = 0; i < 9; ++i) {
    char c = i < frac.size() ? frac[i] : '0';
    if (c < '0' || c > '9') return std::nullopt;
    nanos = nanos * 10 + (c - '0');
  }
  std::int64_t ms = secs * 1000 + (nanos + 999'999) / 1'000'000;
  return std::chrono::milliseconds(negative ? -ms : ms);
}

// ---- the encoder ------------------------------------------------------------------------------
// Templates on the writer: `json_writer` writes, `size_counter` measures first.

template <class Writer, wire::described_message M>
void write(Writer& w, const M& m) noexcept;

/// One value of kind `K` (an element of a list, a value of a map, or a singular field).
template <wire::kind K, class Writer, class T>
void write_value(Writer& w, const T& v) noexcept {
  using wire::kind;
  if constexpr (K == kind::string || K == kind::timestamp)
    w.string(v);
  else if constexpr (K == kind::bytes)
    w.base64(v);
  else if constexpr (K == kind::int32 || K == kind::uint32)
    w.number(v);
  else if constexpr (K == kind::int64 || K == kind::uint64)
    w.quoted_number(v);
  else if constexpr (K == kind::boolean)
    w.boolean(v);
  else if constexpr (K == kind::enumeration) {
    // A number without a name (from a newer peer) goes back as the number.
    if (auto name = wire::to_string(v); !name.empty())
      w.string(name);
    else
      w.number(static_cast<std::int32_t>(v));
  } else if constexpr (K == kind::message)
    write(w, v);
  else
    w.string(duration_text(v));
}

/// The value of field `I` of `M` (held in `v`): a list, a map, or one value.
template <class M, std::size_t I, class Writer, class Member>
void write_member(Writer& w, const Member& v) noexcept {
  constexpr auto& f = wire::field_at<M, I>;
  using F = std::remove_cvref_t<decltype(f)>;
  if constexpr (F::repeated) {
    w.begin_array();
    for (const auto& e : v)
      write_value<f.type>(w, e);
    w.end_array();
  } else if constexpr (F::map) {
    w.begin_object();
    for (const auto& [k, e] : v)
      write_value<f.type>(w.key(k), e);
    w.end_object();
  } else if constexpr (F::explicit_presence) {
    write_value<f.type>(w, *v);
  } else {
    write_value<f.type>(w, v);
  }
}

/// The "type.googleapis.com/..." URL that names `M` in a google.protobuf.Any.
template <wire::described_message M>
[[nodiscard]] std::string type_url() {
  return "type.googleapis.com/" + std::string(wire::descriptor<M>.full_name);
}

template <class Writer, wire::described_message M>
void write_members(Writer& w, const M& m) noexcept;

/// A list of Any: one object per kept message, its "@type" first.
template <class Writer, class Message, class... Types>
void write_any(Writer& w, const wire::any_field<Message, Types...>& f, const Message& m) noexcept {
  w.begin_array();
  std::apply(
      [&](auto... member) {
        auto entry = [&](const auto& e) {
          if (!e) return;
          w.begin_object().key("@type").string(type_url<std::remove_cvref_t<decltype(*e)>>());
          write_members(w, *e);
          w.end_object();
        };
        (entry(m.*member), ...);
      },
      f.members);
  w.end_array();
}

/// The set fields of `m`, in the descriptor's order, without the braces.
template <class Writer, wire::described_message M>
void write_members(Writer& w, const M& m) noexcept {
  wire::for_each_field<M>([&]<std::size_t I>() {
    constexpr auto& f = wire::field_at<M, I>;
    if (!wire::is_set(f, m)) return;
    w.key(f.json_name());
    if constexpr (wire::is_any_field<std::remove_cvref_t<decltype(f)>>)
      write_any(w, f, m);
    else
      write_member<M, I>(w, m.*f.member);
  });
}

/// Writes `m` as one JSON object.
template <class Writer, wire::described_message M>
void write(Writer& w, const M& m) noexcept {
  w.begin_object();
  write_members(w, m);
  w.end_object();
}

/// Stands in for `json_writer` to measure about how much it would write (escapes aside), so that
/// the real pass reserves once and multi-megabyte bytes fields are written into one allocation.
class size_counter {
public:
  size_counter& begin_object() noexcept { return add(2); }
  size_counter& end_object() noexcept { return *this; }
  size_counter& begin_array() noexcept { return add(2); }
  size_counter& end_array() noexcept { return *this; }
  size_counter& key(std::string_view k) noexcept { return add(k.size() + 4); }
  size_counter& string(std::string_view s) noexcept { return add(s.size() + 3); }
  size_counter& base64(std::string_view b) noexcept {
    return add(base64_encoded_size(b.size()) + 3);
  }
  size_counter& number(std::int64_t) noexcept { return add(21); }
  size_counter& quoted_number(std::int64_t) noexcept { return add(23); }
  size_counter& boolean(bool) noexcept { return add(6); }
  [[nodiscard]] std::size_t size() const noexcept { return n_; }

private:
  size_counter& add(std::size_t n) noexcept {
    n_ += n;
    return *this;
  }
  std::size_t n_ = 0;
};

/// What to reserve for the encoding of `m`.
template <wire::described_message M>
[[nodiscard]] std::size_t size_hint(const M& m) noexcept {
  size_counter c;
  write(c, m);
  return 256 + c.size();
}

} // namespace sandbox::http::detail::json
