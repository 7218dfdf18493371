// SPDX-License-Identifier: MIT
// The proto3 JSON codec of the v1 REST mapping (PROTOCOL.md, "proto3 JSON, exactly"): to_json and
// from_json for every message described in wire.hpp, driven by its descriptor alone. The only
// header of the library that includes <simdjson.h>; it uses the on-demand API through its
// error-code accessors only, so it builds with -fno-exceptions.
#pragma once

#include <sandbox/result.hpp>
#include <sandbox/transport/http/decode_mode.hpp>
#include <sandbox/transport/http/status.hpp>
#include <sandbox/transport/http/wire.hpp>

#include <sandbox/transport/http/base64.hpp>
#include <sandbox/transport/http/detail/proto_json.hpp>
#include <sandbox/transport/http/json_writer.hpp>

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace sandbox::http {

/// Encodes `msg` (any message described in wire.hpp, or elsewhere with descriptor.hpp) as proto3
/// JSON: lowerCamelCase names, default values omitted, int64 as JSON strings, bytes as padded
/// standard base64, enums by name (a number without a name as the number), an optional field
/// whenever it is set (`"exitCode": 0` included). Strings that are not valid UTF-8 get U+FFFD for
/// each invalid byte (see json_writer).
///
/// ```cpp
/// std::string body = to_json(wire::ExecRequest{.command = {"ls", "-l"}});
/// // {"command":["ls","-l"]}
/// ```
template <wire::described_message T>
[[nodiscard]] std::string to_json(const T& msg) noexcept;

/// Decodes a proto3 JSON body into an owning `T` (any described message). Accepts
/// lowerCamelCase and snake_case names, int64 and int32 as a number or a string, integral numbers
/// written with a fraction or exponent (`5.0`, `1e3`), enums by name or number (an unknown name
/// is the UNSPECIFIED value), bytes in standard or URL-safe base64 with or without padding, and
/// `null` for "absent". In strict mode the fields wire.hpp marks `required` must be set:
/// `Sandbox.spec`, `SandboxSpec.containers` (at least one), `Container.name` and `.image`,
/// `FileMount.path`, `ExecRequest.command` (non-empty), `WriteFileRequest.path`; two fields of one
/// oneof are an error in both modes.
///
/// **Errors:** errc::protocol (lenient) or errc::validation (strict) with a message saying what
/// was wrong and where (field path, and the byte offset for malformed JSON): an empty body,
/// malformed or truncated JSON, data after the top-level object, a top-level value that is not an
/// object, a value of the wrong type, an integer out of range, invalid base64, nesting deeper than
/// 64 levels, a body larger than 1 GiB; in strict mode also unknown, duplicate and missing
/// required fields. errc::unsupported (strict mode) for a field our server does not implement
/// that is set (`wire::unmodelled`), naming it.
///
/// ```cpp
/// auto r = from_json<wire::ExecResponse>(body, decode_mode::lenient);
/// if (!r) return r.error();              // errc::protocol, "stdout: invalid base64: ..."
/// ```
template <wire::described_message T>
[[nodiscard]] sandbox::result<T> from_json(std::string_view body, decode_mode mode) noexcept;

/// As above, for a body held in a `std::string` (an HTTP library's response body): when the
/// string's spare capacity covers the padding simdjson reads past the end (64 bytes), the body is
/// parsed in place instead of being copied first.
///
/// **Errors:** as above.
template <wire::described_message T, class String>
requires std::same_as<String, std::string>
[[nodiscard]] sandbox::result<T> from_json(const String& body, decode_mode mode) noexcept;

namespace detail::json {

namespace od = simdjson::ondemand;

/// Largest body `from_json` accepts (256 MiB of output is ~358 MiB of base64).
inline constexpr std::size_t max_body_bytes = std::size_t{1} << 30;
/// Deepest object/array nesting accepted; our messages need 5, unknown fields get the rest.
inline constexpr int max_depth = 64;
/// A thread's parser is dropped after a document larger than this, so that one huge response
/// does not pin its buffers for the life of the thread.
inline constexpr std::size_t keep_parser_capacity = std::size_t{16} << 20;

[[nodiscard]] constexpr std::string_view type_name(od::json_type t) noexcept {
  switch (t) {
  case od::json_type::array: return "an array";
  case od::json_type::object: return "an object";
  case od::json_type::number: return "a number";
  case od::json_type::string: return "a string";
  case od::json_type::boolean: return "a boolean";
  case od::json_type::null: return "null";
  }
  return "an unknown value";
}

/// Short, specific wording for the simdjson errors malformed input produces.
[[nodiscard]] inline std::string syntax_text(simdjson::error_code e) noexcept {
  switch (e) {
  case simdjson::EMPTY: return "empty body (expected a JSON object)";
  case simdjson::TAPE_ERROR:
    return "malformed JSON (missing or unexpected comma, colon, brace or bracket)";
  case simdjson::INCOMPLETE_ARRAY_OR_OBJECT:
    return "truncated or unbalanced JSON (an object or array is not closed)";
  case simdjson::UNCLOSED_STRING: return "truncated JSON (unclosed string)";
  case simdjson::STRING_ERROR: return "invalid string (bad escape or lone surrogate)";
  case simdjson::UTF8_ERROR: return "invalid UTF-8 in JSON text";
  case simdjson::UNESCAPED_CHARS: return "unescaped control character in a string";
  case simdjson::NUMBER_ERROR: return "invalid number";
  case simdjson::INCORRECT_TYPE: return "invalid JSON value (malformed literal or number)";
  case simdjson::T_ATOM_ERROR:
  case simdjson::F_ATOM_ERROR:
  case simdjson::N_ATOM_ERROR: return "invalid literal (expected true, false or null)";
  case simdjson::DEPTH_ERROR: return "nesting too deep";
  case simdjson::CAPACITY: return "document too large";
  case simdjson::MEMALLOC: return "out of memory while parsing";
  default: return std::string("malformed JSON (") + simdjson::error_message(e) + ")";
  }
}

/// Appends `peer_text` (a key or value the peer chose) made printable and cut at 64 characters.
inline void append_printable(std::string& out, std::string_view peer_text) {
  for (unsigned char c : peer_text.substr(0, 64))
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  if (peer_text.size() > 64) out += "...";
}

/// State of one decode: the mode, the path of the field being read (for messages), the nesting
/// depth, and where the document lives (to turn simdjson positions into byte offsets).
class decoder {
public:
  decoder(decode_mode mode, const char* base, std::size_t size) noexcept
      : mode_(mode), base_(base), doc_size_(size) {}

  [[nodiscard]] decode_mode mode() const noexcept { return mode_; }
  [[nodiscard]] bool strict() const noexcept { return mode_ == decode_mode::strict; }
  void set_document(od::document* doc) noexcept { doc_ = doc; }

  /// An error about the value at the current path.
  [[nodiscard]] error fail(std::string_view what) const noexcept {
    return fail(strict() ? errc::validation : errc::protocol, what);
  }
  [[nodiscard]] error fail(errc code, std::string_view what) const noexcept {
    std::string msg = path();
    if (!msg.empty()) msg += ": ";
    msg += what;
    return error{code, std::move(msg)};
  }
  /// An error for a simdjson failure: the JSON itself is broken. Names the byte offset.
  [[nodiscard]] error syntax(simdjson::error_code e) const noexcept {
    std::string what = syntax_text(e);
    // An unclosed container is only noticed at the end; the position simdjson keeps then is the
    // start of the document, which would point the reader at the wrong place.
    if (e != simdjson::INCOMPLETE_ARRAY_OR_OBJECT)
      if (auto at = offset()) what += " at offset " + std::to_string(*at);
    return fail(what);
  }
  /// `expected <wanted>, got <type>`.
  [[nodiscard]] error wrong_type(std::string_view wanted, od::json_type got) const noexcept {
    return fail("expected " + std::string(wanted) + ", got " + std::string(type_name(got)));
  }

  /// Enters the member `key` (a view that lives as long as the document) or the element `i`;
  /// `pop(mark)` leaves it. The path is only spelled out when an error needs it.
  [[nodiscard]] std::size_t push_key(std::string_view key) noexcept {
    return push({key, no_index});
  }
  [[nodiscard]] std::size_t push_index(std::size_t i) noexcept { return push({{}, i}); }
  void pop(std::size_t mark) noexcept { path_size_ = mark; }

  /// `spec.containers[0].image`. Keys come from the peer: each is made printable and cut at 64
  /// characters.
  [[nodiscard]] std::string path() const {
    std::string out;
    for (std::size_t i = 0; i < std::min(path_size_, std::size(path_)); ++i) {
      const segment& s = path_[i];
      if (s.index != no_index) {
        ((out += '[') += std::to_string(s.index)) += ']';
        continue;
      }
      if (!out.empty()) out += '.';
      append_printable(out, s.key);
    }
    return out;
  }

  /// Enters an object or array; fails past max_depth.
  [[nodiscard]] sandbox::result<void> descend() noexcept {
    if (++depth_ > max_depth) return fail("nesting deeper than 64 levels");
    return success();
  }
  void ascend() noexcept { --depth_; }

  /// Byte offset of the parser's current position, when it can tell.
  [[nodiscard]] std::optional<std::size_t> offset() const noexcept {
    if (doc_ == nullptr) return std::nullopt;
    const char* at = nullptr;
    if (doc_->current_location().get(at) != simdjson::SUCCESS || at < base_) return std::nullopt;
    auto off = static_cast<std::size_t>(at - base_);
    if (off > doc_size_) return std::nullopt;
    return off;
  }

private:
  static constexpr std::size_t no_index = static_cast<std::size_t>(-1);
  struct segment {
    std::string_view key;
    std::size_t index;
  };
  std::size_t push(segment s) noexcept {
    // Nesting is bounded (max_depth), and so is the path; what is past the end is not named.
    if (path_size_ < std::size(path_)) path_[path_size_] = s;
    return path_size_++;
  }

  decode_mode mode_;
  const char* base_;
  std::size_t doc_size_;
  od::document* doc_ = nullptr;
  segment path_[max_depth + 8];
  std::size_t path_size_ = 0;
  int depth_ = 0;
};

/// The type of `v` (without consuming it).
[[nodiscard]] inline sandbox::result<od::json_type> type_of(od::value& v, decoder& d) noexcept {
  od::json_type t{};
  if (auto e = v.type().get(t)) return d.syntax(e);
  return t;
}

inline constexpr std::string_view bad_literal = "invalid literal (expected true, false or null)";

/// Consumes a `null` (checking that it really is one).
[[nodiscard]] inline sandbox::result<void> consume_null(od::value& v, decoder& d) noexcept {
  bool is_null = false;
  auto e = v.is_null().get(is_null);
  if (e == simdjson::INCORRECT_TYPE || (!e && !is_null)) return d.fail(bad_literal);
  if (e) return d.syntax(e);
  return success();
}

/// Consumes a `true` or `false`.
[[nodiscard]] inline sandbox::result<bool> consume_bool(od::value& v, decoder& d) noexcept {
  bool b = false;
  auto e = v.get_bool().get(b);
  // The type was checked first: a failure here is a malformed literal ("tru").
  if (e == simdjson::INCORRECT_TYPE) return d.fail(bad_literal);
  if (e) return d.syntax(e);
  return b;
}

/// Calls `fn(key, value)` for each member of `obj`, with the key on the path, within the depth
/// limit.
template <class Fn>
[[nodiscard]] sandbox::result<void> for_each_member(od::object& obj, decoder& d, Fn&& fn) noexcept {
  SANDBOX_TRYV(d.descend());
  for (auto field : obj) {
    od::field f;
    if (auto e = std::move(field).get(f)) return d.syntax(e);
    std::string_view key;
    if (auto e = f.unescaped_key().get(key)) return d.syntax(e);
    const auto mark = d.push_key(key);
    SANDBOX_TRYV(fn(key, f.value()));
    d.pop(mark);
  }
  d.ascend();
  return success();
}

/// Calls `fn(value)` for each element of `arr`, with its index on the path, within the depth
/// limit.
template <class Fn>
[[nodiscard]] sandbox::result<void> for_each_element(od::array& arr, decoder& d, Fn&& fn) noexcept {
  SANDBOX_TRYV(d.descend());
  std::size_t n = 0;
  for (auto element : arr) {
    od::value ev;
    if (auto e = std::move(element).get(ev)) return d.syntax(e);
    const auto mark = d.push_index(n++);
    SANDBOX_TRYV(fn(ev));
    d.pop(mark);
  }
  d.ascend();
  return success();
}

/// `for_each_member` or `for_each_element` (`Type`: object or array) over what `v` holds; nothing
/// for `null`, an error for any other value.
template <od::json_type Type, class Fn>
[[nodiscard]] sandbox::result<void> for_each_in(od::value& v, decoder& d, Fn&& fn) noexcept {
  SANDBOX_TRY(t, type_of(v, d));
  if (t == od::json_type::null) return consume_null(v, d);
  if (t != Type) return d.wrong_type(type_name(Type), t);
  if constexpr (Type == od::json_type::object) {
    od::object obj;
    if (auto e = v.get_object().get(obj)) return d.syntax(e);
    return for_each_member(obj, d, std::forward<Fn>(fn));
  } else {
    od::array arr;
    if (auto e = v.get_array().get(arr)) return d.syntax(e);
    return for_each_element(arr, d, std::forward<Fn>(fn));
  }
}

/// Consumes any value, checking that it is well-formed JSON within the depth limit. On-demand
/// parsing would otherwise skip the unknown fields of a lenient decode without looking at them.
/// True when the value is not a proto3 default (`null`, `""`, `0`, `false`, `[]`, `{}`).
[[nodiscard]] inline sandbox::result<bool> skip_value(od::value& v, decoder& d) noexcept {
  SANDBOX_TRY(t, type_of(v, d));
  bool content = false;
  switch (t) {
  case od::json_type::object: {
    od::object obj;
    if (auto e = v.get_object().get(obj)) return d.syntax(e);
    SANDBOX_TRYV(
        for_each_member(obj, d, [&](std::string_view, od::value& fv) -> sandbox::result<void> {
          content = true;
          SANDBOX_TRYV(skip_value(fv, d));
          return success();
        }));
    return content;
  }
  case od::json_type::array: {
    od::array arr;
    if (auto e = v.get_array().get(arr)) return d.syntax(e);
    SANDBOX_TRYV(for_each_element(arr, d, [&](od::value& ev) -> sandbox::result<void> {
      content = true;
      SANDBOX_TRYV(skip_value(ev, d));
      return success();
    }));
    return content;
  }
  case od::json_type::string: {
    std::string_view s;
    if (auto e = v.get_string().get(s)) return d.syntax(e);
    return !s.empty();
  }
  case od::json_type::number: {
    double x = 0;
    if (auto e = v.get_double().get(x)) return d.syntax(e);
    return x != 0;
  }
  case od::json_type::boolean: return consume_bool(v, d);
  case od::json_type::null: {
    SANDBOX_TRYV(consume_null(v, d));
    return false;
  }
  }
  return d.fail("unexpected JSON value");
}

/// Consumes any value, checking that it is well-formed JSON (see skip_value).
[[nodiscard]] inline sandbox::result<void> skip(od::value& v, decoder& d) noexcept {
  SANDBOX_TRYV(skip_value(v, d));
  return success();
}

/// What `lookup` answers for a key that names no field.
inline constexpr std::size_t no_field = static_cast<std::size_t>(-1);

/// Iterates the members of an object. `lookup(key)` gives the index of the field a key
/// names, or `no_field`; `on_field(index, value)` reads a known one. Unknown members are skipped
/// (lenient, or `skip_unknown`) or rejected (strict); a repeated member is rejected in strict mode
/// and replaces the earlier one in lenient mode.
template <class Lookup, class OnField>
[[nodiscard]] sandbox::result<void> read_object(od::object& obj, decoder& d, Lookup&& lookup,
                                                OnField&& on_field,
                                                bool skip_unknown = false) noexcept {
  std::uint64_t seen = 0;
  return for_each_member(obj, d, [&](std::string_view key, od::value& v) -> sandbox::result<void> {
    const std::size_t index = lookup(key);
    if (index == no_field) {
      if (d.strict() && !skip_unknown) return d.fail("unknown field");
      return skip(v, d);
    }
    const std::uint64_t bit = index < 64 ? std::uint64_t{1} << index : 0;
    if ((seen & bit) && d.strict()) return d.fail("duplicate field");
    seen |= bit;
    return on_field(index, v);
  });
}

// ---- values -----------------------------------------------------------------------------------
// A `null` value reads as the default (proto3 JSON's "absent").

/// A string value.
[[nodiscard]] inline sandbox::result<void> read_string(od::value& v, decoder& d,
                                                       std::string& out) noexcept {
  SANDBOX_TRY(t, type_of(v, d));
  if (t == od::json_type::null) {
    out.clear();
    return consume_null(v, d);
  }
  if (t != od::json_type::string) return d.wrong_type("a string", t);
  std::string_view s;
  if (auto e = v.get_string().get(s)) return d.syntax(e);
  out.assign(s);
  return success();
}

/// A bytes value: a base64 string. Without escapes in the JSON string (base64 never needs one)
/// the text is decoded straight from the input buffer, skipping simdjson's unescaping copy; that
/// matters for multi-megabyte command output.
[[nodiscard]] inline sandbox::result<void> read_bytes(od::value& v, decoder& d,
                                                      std::string& out) noexcept {
  SANDBOX_TRY(t, type_of(v, d));
  out.clear();
  if (t == od::json_type::null) return consume_null(v, d);
  if (t != od::json_type::string) return d.wrong_type("a base64 string", t);
  std::string_view text = v.raw_json_token();
  // The token is the quoted string plus any whitespace up to the next structural character.
  while (!text.empty() && text.back() != '"')
    text.remove_suffix(1);
  if (text.size() >= 2 && text.find('\\') == std::string_view::npos) {
    text = text.substr(1, text.size() - 2);
    od::raw_json_string raw;
    if (auto e = v.get_raw_json_string().get(raw)) return d.syntax(e);
  } else if (auto e = v.get_string().get(text)) {
    return d.syntax(e);
  }
  if (auto r = base64_decode_into(out, text); !r) return d.fail(r.error().message);
  return success();
}

/// An integer in [lo, hi]: a JSON number (integral, even if written `5.0` or `1e3`) or a string
/// holding a decimal integer (the proto3 JSON form of int64).
[[nodiscard]] inline sandbox::result<std::int64_t>
read_integer(od::value& v, decoder& d, std::int64_t lo, std::int64_t hi) noexcept {
  SANDBOX_TRY(t, type_of(v, d));
  std::int64_t x = 0;
  if (t == od::json_type::number) {
    auto e = v.get_int64().get(x);
    if (e == simdjson::INCORRECT_TYPE || e == simdjson::NUMBER_OUT_OF_RANGE) {
      double f = 0;
      if (auto e2 = v.get_double().get(f)) return d.syntax(e2);
      // 2^63 is exact as a double; anything at or above it cannot be an int64.
      if (!(f >= -9223372036854775808.0 && f < 9223372036854775808.0))
        return d.fail("integer out of range");
      if (std::trunc(f) != f) return d.fail("expected an integer, got a fraction");
      x = static_cast<std::int64_t>(f);
    } else if (e) {
      return d.syntax(e);
    }
  } else if (t == od::json_type::string) {
    std::string_view s;
    if (auto e = v.get_string().get(s)) return d.syntax(e);
    const char* end = s.data() + s.size();
    auto [p, ec] = std::from_chars(s.data(), end, x);
    if (ec == std::errc::result_out_of_range) return d.fail("integer out of range");
    if (s.empty() || ec != std::errc{} || p != end)
      return d.fail("expected an integer, got a string that is not one");
  } else {
    return d.wrong_type("an integer", t);
  }
  if (x < lo || x > hi) return d.fail("integer out of range");
  return x;
}

/// An int32, int64, uint32 or uint64 value (a uint64 above 2^63 - 1 is refused as out of range:
/// nothing this API counts comes near it).
template <class Int>
[[nodiscard]] sandbox::result<void> read_int(od::value& v, decoder& d, Int& out) noexcept {
  SANDBOX_TRY(t, type_of(v, d));
  if (t == od::json_type::null) {
    out = 0;
    return consume_null(v, d);
  }
  constexpr auto hi = static_cast<std::int64_t>(
      std::min<std::uint64_t>(std::numeric_limits<Int>::max(), INT64_MAX));
  SANDBOX_TRY(x, read_integer(v, d, std::numeric_limits<Int>::min(), hi));
  out = static_cast<Int>(x);
  return success();
}

[[nodiscard]] inline sandbox::result<void> read_bool(od::value& v, decoder& d, bool& out) noexcept {
  SANDBOX_TRY(t, type_of(v, d));
  if (t == od::json_type::null) {
    out = false;
    return consume_null(v, d);
  }
  if (t != od::json_type::boolean) return d.wrong_type("a boolean", t);
  SANDBOX_TRY(b, consume_bool(v, d));
  out = b;
  return success();
}

/// An enum: its name (an unknown name is the 0 value) or its number (kept even when unknown).
template <wire::described_enum E>
[[nodiscard]] sandbox::result<void> read_enum(od::value& v, decoder& d, E& out) noexcept {
  SANDBOX_TRY(t, type_of(v, d));
  if (t == od::json_type::string) {
    std::string_view name;
    if (auto e = v.get_string().get(name)) return d.syntax(e);
    out = wire::enum_from_name<E>(name);
    // A name from a newer API reads as the 0 value for a client; our server refuses what it
    // cannot know (as protobuf's own strict parser does).
    if (d.strict() && out == E{} && name != wire::to_string(E{})) {
      std::string what = "unknown " + std::string(wire::descriptor<E>.full_name) + " value ";
      append_printable(what, name);
      return d.fail(what);
    }
    return success();
  }
  if (t == od::json_type::null) {
    out = E{};
    return consume_null(v, d);
  }
  if (t != od::json_type::number) return d.wrong_type("an enum name or number", t);
  SANDBOX_TRY(x, read_integer(v, d, INT32_MIN, INT32_MAX));
  out = static_cast<E>(x);
  return success();
}

/// A repeated field: an array whose elements `read_element(value, T&)` reads.
template <class T, class ReadElement>
[[nodiscard]] sandbox::result<void> read_array(od::value& v, decoder& d, std::vector<T>& out,
                                               ReadElement&& read_element) noexcept {
  out.clear();
  return for_each_in<od::json_type::array>(v, d, [&](od::value& ev) -> sandbox::result<void> {
    SANDBOX_TRY(t, type_of(ev, d));
    // proto3 JSON has no null elements: a null in a list is a type error, not a default.
    if (t == od::json_type::null) return d.fail("null is not allowed in a list");
    return read_element(ev, out.emplace_back());
  });
}

/// A map<string, string>: an object whose values are strings.
[[nodiscard]] inline sandbox::result<void> read_map(od::value& v, decoder& d,
                                                    wire::string_map& out) noexcept {
  out.clear();
  return for_each_in<od::json_type::object>(
      v, d, [&](std::string_view key, od::value& fv) -> sandbox::result<void> {
        SANDBOX_TRY(t, type_of(fv, d));
        if (t != od::json_type::string) return d.wrong_type("a string", t);
        std::string value;
        SANDBOX_TRYV(read_string(fv, d, value));
        auto [it, inserted] = out.try_emplace(std::string(key), std::move(value));
        if (!inserted) {
          if (d.strict()) return d.fail("duplicate key");
          it->second = std::move(value);
        }
        return success();
      });
}

/// A google.protobuf.Duration: its string form, or the `{seconds, nanos}` object some gateways
/// send. `null` and `""` leave `out` as it was.
[[nodiscard]] inline sandbox::result<void>
read_duration(od::value& v, decoder& d, std::optional<std::chrono::milliseconds>& out) noexcept {
  SANDBOX_TRY(t, type_of(v, d));
  if (t == od::json_type::object) {
    std::int64_t secs = 0;
    std::int32_t nanos = 0;
    od::object obj;
    if (auto e = v.get_object().get(obj)) return d.syntax(e);
    SANDBOX_TRYV(read_object(
        obj, d,
        [](std::string_view key) {
          return key == "seconds" ? std::size_t{0} : key == "nanos" ? std::size_t{1} : no_field;
        },
        [&](std::size_t i, od::value& fv) {
          return i == 0 ? read_int(fv, d, secs) : read_int(fv, d, nanos);
        }));
    if (secs < -315'576'000'000 || secs > 315'576'000'000 || nanos <= -1'000'000'000 ||
        nanos >= 1'000'000'000)
      return d.fail("duration out of range");
    out = std::chrono::milliseconds(secs * 1000 + nanos / 1'000'000 + (nanos % 1'000'000 > 0));
    return success();
  }
  std::string text;
  SANDBOX_TRYV(read_string(v, d, text));
  if (text.empty()) return success();
  out = parse_duration(text);
  if (!out) return d.fail("invalid duration (expected e.g. \"1.5s\")");
  return success();
}

// ---- messages ---------------------------------------------------------------------------------
// Driven by the descriptors of wire.hpp: a key names a field by its JSON or its proto name.

template <wire::described_message M>
[[nodiscard]] sandbox::result<bool> read_message(od::value& v, decoder& d, M& out) noexcept;

/// The index of the field of `M` that `key` names, or `no_field`.
template <wire::described_message M>
[[nodiscard]] constexpr std::size_t field_index(std::string_view key) noexcept {
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    std::size_t index = no_field;
    (void)(((key == wire::field_at<M, I>.json_name() || key == wire::field_at<M, I>.name)
                ? (index = I, true)
                : false) ||
           ...);
    return index;
  }
  (std::make_index_sequence<wire::field_count<M>>{});
}

/// One value of kind `K`.
template <wire::kind K, class T>
[[nodiscard]] sandbox::result<void> read_value(od::value& v, decoder& d, T& out) noexcept {
  using wire::kind;
  if constexpr (K == kind::string || K == kind::timestamp)
    return read_string(v, d, out);
  else if constexpr (K == kind::bytes)
    return read_bytes(v, d, out);
  else if constexpr (K == kind::int32 || K == kind::int64 || K == kind::uint32 || K == kind::uint64)
    return read_int(v, d, out);
  else if constexpr (K == kind::boolean)
    return read_bool(v, d, out);
  else if constexpr (K == kind::enumeration)
    return read_enum(v, d, out);
  else if constexpr (K == kind::message) {
    // `null` leaves a message held by value as it was.
    SANDBOX_TRYV(read_message(v, d, out));
    return success();
  } else {
    static_assert(K != kind::duration, "durations are read by read_field");
  }
}

template <class Message, class... Types>
[[nodiscard]] sandbox::result<void> read_any(od::value& v, decoder& d, Message& m,
                                             const wire::any_field<Message, Types...>& f) noexcept;

/// Fails when another field of the oneof of field `I` is set too (`I` was just read and is set).
template <wire::described_message M, std::size_t I>
[[nodiscard]] sandbox::result<void> check_oneof(decoder& d, const M& m) noexcept {
  constexpr auto& f = wire::field_at<M, I>;
  if (!wire::is_set(f, m)) return success();
  bool other = false;
  wire::for_each_field<M>([&]<std::size_t J>() {
    constexpr auto& g = wire::field_at<M, J>;
    if constexpr (J != I && !wire::is_any_field<std::remove_cvref_t<decltype(g)>>)
      if constexpr (g.options.oneof == f.options.oneof) other = other || wire::is_set(g, m);
  });
  if (other) return d.fail("another field of the same oneof is set");
  return success();
}

/// The value of a field that is not a Duration, into its member `out`.
template <class F, wire::kind K, class Member>
[[nodiscard]] sandbox::result<void> read_member(od::value& v, decoder& d, Member& out) noexcept {
  if constexpr (F::repeated) {
    return read_array(v, d, out, [&](od::value& ev, typename F::value_type& e) {
      return read_value<K>(ev, d, e);
    });
  } else if constexpr (F::map) {
    static_assert(K == wire::kind::string);
    return read_map(v, d, out);
  } else if constexpr (F::explicit_presence && K == wire::kind::message) {
    typename F::value_type x{};
    SANDBOX_TRY(present, read_message(v, d, x));
    if (present)
      out = std::move(x);
    else
      out.reset();
    return success();
  } else if constexpr (F::explicit_presence) {
    SANDBOX_TRY(t, type_of(v, d));
    if (t == od::json_type::null) {
      out.reset();
      return consume_null(v, d);
    }
    typename F::value_type x{};
    SANDBOX_TRYV(read_value<K>(v, d, x));
    out = std::move(x);
    return success();
  } else {
    return read_value<K>(v, d, out);
  }
}

/// Reads field `I` of `m` and marks it in `given`, unless its value was absent in a way that
/// counts (a Duration that is `null` or empty). Results are passed on rather than re-made where
/// possible: a result holds a whole `error`, and this is the hot path.
template <wire::described_message M, std::size_t I>
[[nodiscard]] sandbox::result<void> read_field(od::value& v, decoder& d, M& m,
                                               std::uint64_t& given) noexcept {
  constexpr auto& f = wire::field_at<M, I>;
  using F = std::remove_cvref_t<decltype(f)>;
  constexpr std::uint64_t bit = std::uint64_t{1} << I;
  if constexpr (wire::is_any_field<F>) {
    given |= bit;
    return read_any(v, d, m, f);
  } else if constexpr (f.type == wire::kind::duration) {
    static_assert(!F::repeated && !F::map && !F::explicit_presence);
    std::optional<std::chrono::milliseconds> value;
    SANDBOX_TRYV(read_duration(v, d, value));
    if (value) {
      m.*f.member = *value;
      given |= bit;
    }
    return success();
  } else if constexpr (f.options.oneof != 0) {
    given |= bit;
    SANDBOX_TRYV((read_member<F, f.type>(v, d, m.*f.member)));
    return check_oneof<M, I>(d, m);
  } else {
    given |= bit;
    return read_member<F, f.type>(v, d, m.*f.member);
  }
}

/// Reads the field of `m` whose index is `i` (from `I` on): a chain of direct returns.
template <wire::described_message M, std::size_t I = 0>
[[nodiscard]] sandbox::result<void> read_field(std::size_t i, od::value& v, decoder& d, M& m,
                                               std::uint64_t& given) noexcept {
  if constexpr (wire::field_count<M> == 0) {
    return success(); // a message without fields: never called with a field of it
  } else {
    if constexpr (I + 1 < wire::field_count<M>)
      if (i != I) return read_field<M, I + 1>(i, v, d, m, given);
    return read_field<M, I>(v, d, m, given);
  }
}

/// The JSON name of the first required field of `m` that was not given (`given` has a bit per
/// field index) or is not set; empty when there is none.
template <wire::described_message M>
[[nodiscard]] std::string_view missing_required(const M& m, std::uint64_t given) noexcept {
  std::string_view missing;
  wire::for_each_field<M>([&]<std::size_t I>() {
    constexpr auto& f = wire::field_at<M, I>;
    if constexpr (!wire::is_any_field<std::remove_cvref_t<decltype(f)>>)
      if constexpr (f.options.required)
        if (missing.empty() && !((given >> I & 1) && wire::is_set(f, m))) missing = f.json_name();
  });
  return missing;
}

/// The value of a field the library does not model: checked and dropped, or, in a strict decode,
/// refused with errc::unsupported when the field is a capability our server lacks and is set.
[[nodiscard]] inline sandbox::result<void> read_unmodelled(const wire::unmodelled_field& f,
                                                           od::value& v, decoder& d) noexcept {
  SANDBOX_TRY(set, skip_value(v, d));
  if (set && d.strict() && f.use == wire::unmodelled_use::unsupported)
    return d.fail(errc::unsupported, "not implemented by this server");
  return success();
}

/// JSON members a message reads beside its fields (none, here).
struct no_extras {
  [[nodiscard]] std::size_t index(std::string_view) const noexcept { return no_field; }
  [[nodiscard]] sandbox::result<void> read(std::size_t, od::value&) const noexcept {
    return success();
  }
};

/// Fills `m` from the members of `obj`; `extras` may claim keys that are not fields of `M`
/// (`extras.index(key)`, read by `extras.read(index, value)`). In strict mode a required field
/// that is missing or empty is an error naming it.
template <wire::described_message M, class Extras = no_extras>
[[nodiscard]] sandbox::result<void> read_members(od::object& obj, decoder& d, M& m,
                                                 const Extras& extras = {}) noexcept {
  static_assert(wire::unmodelled_apart<M>(), "an unmodelled field repeats a field of M");
  // Indexes: the fields of M, then its unmodelled fields, then the extras.
  constexpr std::size_t n = wire::field_count<M>, u = wire::unmodelled<M>.size();
  std::uint64_t given = 0;
  SANDBOX_TRYV(read_object(
      obj, d,
      [&](std::string_view key) {
        if (auto i = field_index<M>(key); i != no_field) return i;
        for (std::size_t k = 0; k < u; ++k)
          if (key == wire::unmodelled<M>[k].json_name() || key == wire::unmodelled<M>[k].name)
            return n + k;
        auto j = extras.index(key);
        return j == no_field ? no_field : n + u + j;
      },
      [&](std::size_t i, od::value& v) -> sandbox::result<void> {
        if (i >= n + u) return extras.read(i - n - u, v);
        if (i >= n) return read_unmodelled(wire::unmodelled<M>[i - n], v, d);
        return read_field(i, v, d, m, given);
      }));
  if (!d.strict()) return success();
  if (auto name = missing_required(m, given); !name.empty()) {
    const auto mark = d.push_key(name);
    auto err = d.fail("required field is missing or empty");
    d.pop(mark);
    return err;
  }
  return success();
}

/// One entry of a list of Any. The members of every kept type are read into one candidate of
/// each type (an entry's "@type" may come last, and the parser reads forward only); the candidate
/// that "@type" names is kept unless one of its type is already there or its required fields were
/// not given. Members no kept type has are skipped in both modes.
template <class Message, class... Types>
[[nodiscard]] sandbox::result<void>
read_any_entry(od::value& v, decoder& d, Message& m,
               const wire::any_field<Message, Types...>& f) noexcept {
  using Is = std::index_sequence_for<Types...>;
  // Index 0 is "@type"; the fields of the k-th type follow from start(k).
  static constexpr std::size_t counts[] = {wire::field_count<Types>...};
  static_assert((wire::field_count<Types> + ... + 1) <= 64);
  constexpr auto start = [](std::size_t k) {
    std::size_t s = 1;
    for (std::size_t j = 0; j < k; ++j)
      s += counts[j];
    return s;
  };
  SANDBOX_TRY(t, type_of(v, d));
  if (t != od::json_type::object) return d.wrong_type("an object", t);
  od::object obj;
  if (auto e = v.get_object().get(obj)) return d.syntax(e);
  std::string type;
  std::tuple<Types...> candidates;
  std::uint64_t given[sizeof...(Types)] = {};
  SANDBOX_TRYV(read_object(
      obj, d,
      [&](std::string_view key) {
        if (key == "@type") return std::size_t{0};
        std::size_t index = no_field;
        [&]<std::size_t... K>(std::index_sequence<K...>) {
          (void)(((index = field_index<Types>(key)) != no_field ? (index += start(K), true)
                                                                : false) ||
                 ...);
        }
        (Is{});
        return index;
      },
      [&](std::size_t i, od::value& fv) -> sandbox::result<void> {
        if (i == 0) return read_string(fv, d, type);
        sandbox::result<void> r = success();
        [&]<std::size_t... K>(std::index_sequence<K...>) {
          (void)((i >= start(K) && i < start(K) + counts[K]
                      ? (r = read_field(i - start(K), fv, d, std::get<K>(candidates), given[K]),
                         true)
                      : false) ||
                 ...);
        }
        (Is{});
        return r;
      },
      /*skip_unknown=*/true));
  const auto name = std::string_view(type).substr(type.rfind('/') + 1);
  [&]<std::size_t... K>(std::index_sequence<K...>) {
    auto keep = [&](auto& slot, auto& candidate, std::uint64_t g) {
      using T = std::remove_cvref_t<decltype(candidate)>;
      if (name == wire::descriptor<T>.full_name && !slot && missing_required(candidate, g).empty())
        slot = std::move(candidate);
    };
    (keep(m.*std::get<K>(f.members), std::get<K>(candidates), given[K]), ...);
  }
  (Is{});
  return success();
}

/// A `repeated google.protobuf.Any` field (see `wire::any_field`).
template <class Message, class... Types>
[[nodiscard]] sandbox::result<void> read_any(od::value& v, decoder& d, Message& m,
                                             const wire::any_field<Message, Types...>& f) noexcept {
  return for_each_in<od::json_type::array>(
      v, d, [&](od::value& ev) { return read_any_entry(ev, d, m, f); });
}

/// google.rpc.Status as grpc-gateway sends it, and the Google API error form around it:
/// `{"error": {"code": <HTTP status>, "status": "NOT_FOUND", "message": ..., "details": [...]}}`.
/// "error" and "status" are not fields of google.rpc.Status: they are read here, beside them.
[[nodiscard]] inline sandbox::result<void> read_members(od::object& obj, decoder& d,
                                                        wire::Status& m) noexcept {
  struct google_form {
    decoder& d;
    wire::Status& m;
    std::string& status_name;
    [[nodiscard]] std::size_t index(std::string_view key) const noexcept {
      return key == "error" ? std::size_t{0} : key == "status" ? std::size_t{1} : no_field;
    }
    [[nodiscard]] sandbox::result<void> read(std::size_t i, od::value& v) const noexcept {
      if (i == 1) return read_string(v, d, status_name);
      wire::Status inner;
      SANDBOX_TRY(present, read_message(v, d, inner));
      if (present) m = std::move(inner);
      return success();
    }
  };
  std::string status_name;
  SANDBOX_TRYV(read_members(obj, d, m, google_form{d, m, status_name}));
  if (!status_name.empty()) m.code = static_cast<std::int32_t>(grpc_code_from_name(status_name));
  return success();
}

/// A message value: an object, or `null` (false: `out` is left as it was).
template <wire::described_message M>
[[nodiscard]] sandbox::result<bool> read_message(od::value& v, decoder& d, M& out) noexcept {
  SANDBOX_TRY(t, type_of(v, d));
  if (t == od::json_type::null) {
    SANDBOX_TRYV(consume_null(v, d));
    return false;
  }
  if (t != od::json_type::object) return d.wrong_type("an object", t);
  od::object obj;
  if (auto e = v.get_object().get(obj)) return d.syntax(e);
  out = M{};
  SANDBOX_TRYV(read_members(obj, d, out));
  return true;
}

// ---- documents ----------------------------------------------------------------------------

inline od::parser& thread_parser() noexcept {
  thread_local od::parser parser;
  return parser;
}

template <class Message>
[[nodiscard]] sandbox::result<Message>
read_document(od::parser& parser, simdjson::padded_string_view buf, decoder& d) noexcept {
  od::document doc;
  if (auto e = parser.iterate(buf).get(doc)) return d.syntax(e);
  d.set_document(&doc);
  od::json_type t{};
  if (auto e = doc.type().get(t)) return d.syntax(e);
  if (t != od::json_type::object)
    return d.fail("expected a JSON object, got " + std::string(type_name(t)));
  od::object obj;
  if (auto e = doc.get_object().get(obj)) return d.syntax(e);
  Message out{};
  SANDBOX_TRYV(read_members(obj, d, out));
  if (auto at = d.offset())
    return d.fail("unexpected data after the JSON object at offset " + std::to_string(*at));
  return out;
}

/// Decodes `body`, whose buffer has `capacity` readable bytes from `body.data()`: in place when
/// that leaves simdjson the padding it reads past the end, otherwise from a padded copy.
template <class Message>
[[nodiscard]] sandbox::result<Message> decode(std::string_view body, std::size_t capacity,
                                              decode_mode mode) noexcept {
  if (body.size() > max_body_bytes)
    return decoder(mode, nullptr, 0)
        .fail("body of " + std::to_string(body.size()) + " bytes is larger than the 1 GiB limit");
  simdjson::padded_string copy;
  simdjson::padded_string_view view(body, capacity);
  if (capacity < body.size() + simdjson::SIMDJSON_PADDING) {
    copy = simdjson::padded_string(body.data(), body.size());
    if (copy.data() == nullptr) return decoder(mode, nullptr, 0).fail("out of memory");
    view = simdjson::padded_string_view(copy.data(), copy.size(),
                                        copy.size() + simdjson::SIMDJSON_PADDING);
  }
  decoder d(mode, view.data(), view.size());
  auto& parser = thread_parser();
  auto r = read_document<Message>(parser, view, d);
  if (parser.capacity() > keep_parser_capacity) parser = od::parser{};
  return r;
}

} // namespace detail::json
} // namespace sandbox::http

namespace sandbox::http {

template <wire::described_message T>
[[nodiscard]] std::string to_json(const T& msg) noexcept {
  json_writer w;
  w.reserve(detail::json::size_hint(msg));
  detail::json::write(w, msg);
  return std::move(w).take();
}

template <wire::described_message T>
[[nodiscard]] sandbox::result<T> from_json(std::string_view body, decode_mode mode) noexcept {
  return detail::json::decode<T>(body, body.size(), mode);
}

template <wire::described_message T, class String>
requires std::same_as<String, std::string> sandbox::result<T> from_json(const String& body,
                                                                        decode_mode mode)
noexcept { return detail::json::decode<T>(body, body.capacity(), mode); }

} // namespace sandbox::http
