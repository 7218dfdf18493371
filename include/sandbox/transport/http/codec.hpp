// SPDX-License-Identifier: MIT
// The proto3 JSON codec of the v1 REST mapping (PROTOCOL.md, "proto3 JSON, exactly"): to_json and
// from_json for every message in wire.hpp. The only header of the library that includes
// <simdjson.h>; it uses the on-demand API through its error-code accessors only, so it builds
// with -fno-exceptions.
#pragma once

#include <sandbox/result.hpp>
#include <sandbox/transport/http/status.hpp>
#include <sandbox/transport/http/wire.hpp>

#include <sandbox/transport/http/base64.hpp>
#include <sandbox/transport/http/detail/proto_json.hpp>
#include <sandbox/transport/http/json_writer.hpp>

#include <simdjson.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sandbox::http {

/// How `from_json` treats what it does not expect.
enum class decode_mode {
  /// Responses read by the client: unknown fields are skipped (forward compatibility) but still
  /// checked to be well-formed JSON; malformed JSON or a field of the wrong type is
  /// errc::protocol.
  lenient,
  /// Requests read by our server: an unknown field, a field of the wrong type, a duplicate field
  /// or a missing required field is errc::validation naming the field path
  /// (`spec.containers[0].image: ...`).
  strict,
};

/// Encodes `msg` (any message of wire.hpp) as proto3 JSON: lowerCamelCase names, default values
/// omitted, int64 as JSON strings, bytes as padded standard base64, enums by name (a number
/// without a name as the number), `exitCode` whenever it is present (0 included). Strings that
/// are not valid UTF-8 get U+FFFD for each invalid byte (see json_writer).
///
/// ```cpp
/// std::string body = to_json(wire::ExecRequest{.command = {"ls", "-l"}});
/// // {"command":["ls","-l"]}
/// ```
template <class T>
[[nodiscard]] std::string to_json(const T& msg) noexcept;

/// Decodes a proto3 JSON body into an owning `T` (any message of wire.hpp). Accepts
/// lowerCamelCase and snake_case names, int64 and int32 as a number or a string, integral numbers
/// written with a fraction or exponent (`5.0`, `1e3`), enums by name or number (an unknown name
/// is the UNSPECIFIED value), bytes in standard or URL-safe base64 with or without padding, and
/// `null` for "absent". Required fields in strict mode: `Sandbox.spec`, `SandboxSpec.containers`
/// (at least one), `Container.name` and `.image`, `FileMount.path`, `ExecRequest.command`
/// (non-empty), `WriteFileRequest.path`.
///
/// **Errors:** errc::protocol (lenient) or errc::validation (strict) with a message saying what
/// was wrong and where (field path, and the byte offset for malformed JSON): an empty body,
/// malformed or truncated JSON, data after the top-level object, a top-level value that is not an
/// object, a value of the wrong type, an integer out of range, invalid base64, nesting deeper than
/// 64 levels, a body larger than 1 GiB; in strict mode also unknown, duplicate and missing
/// required fields.
///
/// ```cpp
/// auto r = from_json<wire::ExecResponse>(body, decode_mode::lenient);
/// if (!r) return r.error();              // errc::protocol, "stdout: invalid base64: ..."
/// ```
template <class T>
[[nodiscard]] sandbox::result<T> from_json(std::string_view body, decode_mode mode) noexcept;

/// As above, for a body held in a `std::string` (an HTTP library's response body): when the
/// string's spare capacity covers the padding simdjson reads past the end (64 bytes), the body is
/// parsed in place instead of being copied first.
///
/// **Errors:** as above.
template <class T, class String>
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

/// State of one decode: the mode, the path of the field being read (for messages), the nesting
/// depth, and where the document lives (to turn simdjson positions into byte offsets).
class decoder {
public:
  decoder(decode_mode mode, const char* base, std::size_t size) noexcept
      : mode_(mode), base_(base), size_(size) {}

  [[nodiscard]] decode_mode mode() const noexcept { return mode_; }
  [[nodiscard]] bool strict() const noexcept { return mode_ == decode_mode::strict; }
  void set_document(od::document* doc) noexcept { doc_ = doc; }

  /// An error about the value at the current path.
  [[nodiscard]] error fail(std::string_view what) const noexcept {
    std::string msg = path_;
    if (!msg.empty()) msg += ": ";
    msg += what;
    return error{strict() ? errc::validation : errc::protocol, std::move(msg)};
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

  [[nodiscard]] std::size_t push_key(std::string_view key) noexcept {
    const auto mark = path_.size();
    if (!path_.empty()) path_ += '.';
    // Keys come from the peer: keep messages short and printable.
    std::size_t n = 0;
    for (unsigned char c : key) {
      if (++n > 64) {
        path_ += "...";
        break;
      }
      path_ += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
    }
    return mark;
  }
  [[nodiscard]] std::size_t push_index(std::size_t i) noexcept {
    const auto mark = path_.size();
    path_ += '[';
    path_ += std::to_string(i);
    path_ += ']';
    return mark;
  }
  void pop(std::size_t mark) noexcept { path_.resize(mark); }

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
    if (off > size_) return std::nullopt;
    return off;
  }

private:
  decode_mode mode_;
  const char* base_;
  std::size_t size_;
  od::document* doc_ = nullptr;
  std::string path_;
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

/// Consumes any value, checking that it is well-formed JSON within the depth limit. On-demand
/// parsing would otherwise skip the unknown fields of a lenient decode without looking at them.
[[nodiscard]] inline sandbox::result<void> skip(od::value& v, decoder& d) noexcept {
  SANDBOX_TRY(t, type_of(v, d));
  switch (t) {
  case od::json_type::object: {
    od::object obj;
    if (auto e = v.get_object().get(obj)) return d.syntax(e);
    SANDBOX_TRYV(d.descend());
    for (auto field : obj) {
      od::field f;
      if (auto e = std::move(field).get(f)) return d.syntax(e);
      std::string_view key;
      if (auto e = f.unescaped_key().get(key)) return d.syntax(e);
      const auto mark = d.push_key(key);
      SANDBOX_TRYV(skip(f.value(), d));
      d.pop(mark);
    }
    d.ascend();
    return success();
  }
  case od::json_type::array: {
    od::array arr;
    if (auto e = v.get_array().get(arr)) return d.syntax(e);
    SANDBOX_TRYV(d.descend());
    std::size_t n = 0;
    for (auto element : arr) {
      od::value ev;
      if (auto e = std::move(element).get(ev)) return d.syntax(e);
      const auto mark = d.push_index(n++);
      SANDBOX_TRYV(skip(ev, d));
      d.pop(mark);
    }
    d.ascend();
    return success();
  }
  case od::json_type::string: {
    std::string_view s;
    if (auto e = v.get_string().get(s)) return d.syntax(e);
    return success();
  }
  case od::json_type::number: {
    double x = 0;
    if (auto e = v.get_double().get(x)) return d.syntax(e);
    return success();
  }
  case od::json_type::boolean: {
    SANDBOX_TRYV(consume_bool(v, d));
    return success();
  }
  case od::json_type::null: return consume_null(v, d);
  }
  return d.fail("unexpected JSON value");
}

/// Iterates the members of an object. `fields` lists the snake_case names of the message's
/// fields; `on_field(index, value)` reads a known one. Unknown members are skipped (lenient, or
/// `skip_unknown`) or rejected (strict); a repeated member is rejected in strict mode and replaces
/// the earlier one in lenient mode. Returns the set of field indexes seen.
template <std::size_t N, class OnField>
[[nodiscard]] sandbox::result<std::uint32_t>
read_fields(od::object& obj, decoder& d, const std::string_view (&fields)[N], OnField&& on_field,
            bool skip_unknown = false) noexcept {
  static_assert(N <= 32);
  SANDBOX_TRYV(d.descend());
  std::uint32_t seen = 0;
  for (auto field : obj) {
    od::field f;
    if (auto e = std::move(field).get(f)) return d.syntax(e);
    std::string_view key;
    if (auto e = f.unescaped_key().get(key)) return d.syntax(e);
    std::size_t index = N;
    for (std::size_t i = 0; i < N; ++i)
      if (key_is(key, fields[i])) {
        index = i;
        break;
      }
    const auto mark = d.push_key(key);
    if (index == N) {
      if (d.strict() && !skip_unknown) return d.fail("unknown field");
      SANDBOX_TRYV(skip(f.value(), d));
    } else {
      const std::uint32_t bit = std::uint32_t{1} << index;
      if ((seen & bit) && d.strict()) return d.fail("duplicate field");
      seen |= bit;
      SANDBOX_TRYV(on_field(index, f.value()));
    }
    d.pop(mark);
  }
  d.ascend();
  return seen;
}

/// In strict mode, fails unless the field `snake` was given a non-default value (`present`).
[[nodiscard]] inline sandbox::result<void> require(decoder& d, bool present,
                                                   std::string_view snake) noexcept {
  if (present || !d.strict()) return success();
  const auto mark = d.push_key(camel(snake));
  auto err = d.fail("required field is missing or empty");
  d.pop(mark);
  return err;
}

/// A string value (`null` → empty).
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

/// A bytes value: a base64 string (`null` → empty). Without escapes in the JSON string (base64
/// never needs one) the text is decoded straight from the input buffer, skipping simdjson's
/// unescaping copy; that matters for multi-megabyte command output.
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

[[nodiscard]] inline sandbox::result<void> read_int32(od::value& v, decoder& d,
                                                      std::int32_t& out) noexcept {
  SANDBOX_TRY(t, type_of(v, d));
  if (t == od::json_type::null) {
    out = 0;
    return consume_null(v, d);
  }
  SANDBOX_TRY(x, read_integer(v, d, INT32_MIN, INT32_MAX));
  out = static_cast<std::int32_t>(x);
  return success();
}

[[nodiscard]] inline sandbox::result<void> read_int64(od::value& v, decoder& d,
                                                      std::int64_t& out) noexcept {
  SANDBOX_TRY(t, type_of(v, d));
  if (t == od::json_type::null) {
    out = 0;
    return consume_null(v, d);
  }
  SANDBOX_TRY(x, read_integer(v, d, INT64_MIN, INT64_MAX));
  out = x;
  return success();
}

/// int32 with explicit presence: `null` is "absent", any number (0 included) is present.
[[nodiscard]] inline sandbox::result<void> read_int32(od::value& v, decoder& d,
                                                      std::optional<std::int32_t>& out) noexcept {
  SANDBOX_TRY(t, type_of(v, d));
  if (t == od::json_type::null) {
    out.reset();
    return consume_null(v, d);
  }
  SANDBOX_TRY(x, read_integer(v, d, INT32_MIN, INT32_MAX));
  out = static_cast<std::int32_t>(x);
  return success();
}

[[nodiscard]] inline sandbox::result<void> read_bool(od::value& v, decoder& d,
                                                     std::optional<bool>& out) noexcept {
  SANDBOX_TRY(t, type_of(v, d));
  if (t == od::json_type::null) {
    out.reset();
    return consume_null(v, d);
  }
  if (t != od::json_type::boolean) return d.wrong_type("a boolean", t);
  SANDBOX_TRY(b, consume_bool(v, d));
  out = b;
  return success();
}

[[nodiscard]] inline sandbox::result<void> read_bool(od::value& v, decoder& d, bool& out) noexcept {
  std::optional<bool> b;
  SANDBOX_TRYV(read_bool(v, d, b));
  out = b.value_or(false);
  return success();
}

/// An enum: its name (an unknown name is UNSPECIFIED) or its number.
[[nodiscard]] inline sandbox::result<void> read_state(od::value& v, decoder& d,
                                                      wire::State& out) noexcept {
  SANDBOX_TRY(t, type_of(v, d));
  if (t == od::json_type::string) {
    std::string_view name;
    if (auto e = v.get_string().get(name)) return d.syntax(e);
    out = wire::state_from_name(name);
    return success();
  }
  if (t == od::json_type::null) {
    out = wire::State::STATE_UNSPECIFIED;
    return consume_null(v, d);
  }
  if (t != od::json_type::number) return d.wrong_type("an enum name or number", t);
  SANDBOX_TRY(x, read_integer(v, d, INT32_MIN, INT32_MAX));
  out = static_cast<wire::State>(x);
  return success();
}

/// A repeated field: an array (`null` → empty) whose elements `read_element(value, T&)` reads.
template <class T, class ReadElement>
[[nodiscard]] sandbox::result<void> read_array(od::value& v, decoder& d, std::vector<T>& out,
                                               ReadElement&& read_element) noexcept {
  out.clear();
  SANDBOX_TRY(t, type_of(v, d));
  if (t == od::json_type::null) return consume_null(v, d);
  if (t != od::json_type::array) return d.wrong_type("an array", t);
  od::array arr;
  if (auto e = v.get_array().get(arr)) return d.syntax(e);
  SANDBOX_TRYV(d.descend());
  for (auto element : arr) {
    od::value ev;
    if (auto e = std::move(element).get(ev)) return d.syntax(e);
    const auto mark = d.push_index(out.size());
    SANDBOX_TRY(et, type_of(ev, d));
    // proto3 JSON has no null elements: a null in a list is a type error, not a default.
    if (et == od::json_type::null) return d.fail("null is not allowed in a list");
    SANDBOX_TRYV(read_element(ev, out.emplace_back()));
    d.pop(mark);
  }
  d.ascend();
  return success();
}

[[nodiscard]] inline sandbox::result<void> read_strings(od::value& v, decoder& d,
                                                        std::vector<std::string>& out) noexcept {
  return read_array(v, d, out,
                    [&](od::value& ev, std::string& s) { return read_string(ev, d, s); });
}

/// A map<string, string>: an object whose values are strings (`null` → empty).
[[nodiscard]] inline sandbox::result<void> read_map(od::value& v, decoder& d,
                                                    wire::string_map& out) noexcept {
  out.clear();
  SANDBOX_TRY(t, type_of(v, d));
  if (t == od::json_type::null) return consume_null(v, d);
  if (t != od::json_type::object) return d.wrong_type("an object", t);
  od::object obj;
  if (auto e = v.get_object().get(obj)) return d.syntax(e);
  SANDBOX_TRYV(d.descend());
  for (auto field : obj) {
    od::field f;
    if (auto e = std::move(field).get(f)) return d.syntax(e);
    std::string_view key;
    if (auto e = f.unescaped_key().get(key)) return d.syntax(e);
    const auto mark = d.push_key(key);
    std::string value;
    SANDBOX_TRY(vt, type_of(f.value(), d));
    if (vt != od::json_type::string) return d.wrong_type("a string", vt);
    SANDBOX_TRYV(read_string(f.value(), d, value));
    auto [it, inserted] = out.try_emplace(std::string(key), std::move(value));
    if (!inserted) {
      if (d.strict()) return d.fail("duplicate key");
      it->second = std::move(value);
    }
    d.pop(mark);
  }
  d.ascend();
  return success();
}

// ---- messages ---------------------------------------------------------------------------
// Each message has the snake_case names of its fields and a `read_members` that fills it from an
// object; `read_message` adds the object/null handling around it.

template <class Message>
[[nodiscard]] sandbox::result<bool> read_message(od::value& v, decoder& d, Message& out) noexcept;

template <class Message>
[[nodiscard]] sandbox::result<void> read_optional(od::value& v, decoder& d,
                                                  std::optional<Message>& out) noexcept {
  Message m{};
  SANDBOX_TRY(present, read_message(v, d, m));
  if (present)
    out = std::move(m);
  else
    out.reset();
  return success();
}

template <class Message>
[[nodiscard]] sandbox::result<void> read_messages(od::value& v, decoder& d,
                                                  std::vector<Message>& out) noexcept {
  return read_array(v, d, out, [&](od::value& ev, Message& m) -> sandbox::result<void> {
    SANDBOX_TRYV(read_message(ev, d, m));
    return success();
  });
}

inline constexpr std::string_view resources_fields[] = {"cpu", "memory"};
[[nodiscard]] inline sandbox::result<void> read_members(od::object& obj, decoder& d,
                                                        wire::Resources& m) noexcept {
  SANDBOX_TRYV(read_fields(obj, d, resources_fields, [&](std::size_t i, od::value& v) {
    return read_string(v, d, i == 0 ? m.cpu : m.memory);
  }));
  return success();
}

inline constexpr std::string_view resource_requirements_fields[] = {"requests", "limits"};
[[nodiscard]] inline sandbox::result<void> read_members(od::object& obj, decoder& d,
                                                        wire::ResourceRequirements& m) noexcept {
  SANDBOX_TRYV(read_fields(obj, d, resource_requirements_fields,
                           [&](std::size_t i, od::value& v) -> sandbox::result<void> {
                             SANDBOX_TRYV(read_message(v, d, i == 0 ? m.requests : m.limits));
                             return success();
                           }));
  return success();
}

inline constexpr std::string_view file_mount_fields[] = {"path", "content"};
[[nodiscard]] inline sandbox::result<void> read_members(od::object& obj, decoder& d,
                                                        wire::FileMount& m) noexcept {
  SANDBOX_TRYV(read_fields(obj, d, file_mount_fields, [&](std::size_t i, od::value& v) {
    return i == 0 ? read_string(v, d, m.path) : read_bytes(v, d, m.content);
  }));
  return require(d, !m.path.empty(), "path");
}

inline constexpr std::string_view container_fields[] = {"name",
                                                        "image",
                                                        "command",
                                                        "args",
                                                        "environment_variables",
                                                        "working_dir",
                                                        "files",
                                                        "resource_requirements"};
[[nodiscard]] inline sandbox::result<void> read_members(od::object& obj, decoder& d,
                                                        wire::Container& m) noexcept {
  SANDBOX_TRYV(read_fields(obj, d, container_fields,
                           [&](std::size_t i, od::value& v) -> sandbox::result<void> {
                             switch (i) {
                             case 0: return read_string(v, d, m.name);
                             case 1: return read_string(v, d, m.image);
                             case 2: return read_string(v, d, m.command);
                             case 3: return read_strings(v, d, m.args);
                             case 4: return read_map(v, d, m.environment_variables);
                             case 5: return read_string(v, d, m.working_dir);
                             case 6: return read_messages(v, d, m.files);
                             default: return read_optional(v, d, m.resource_requirements);
                             }
                           }));
  SANDBOX_TRYV(require(d, !m.name.empty(), "name"));
  return require(d, !m.image.empty(), "image");
}

inline constexpr std::string_view network_fields[] = {"deny_egress", "deny_ingress"};
[[nodiscard]] inline sandbox::result<void> read_members(od::object& obj, decoder& d,
                                                        wire::NetworkOptions& m) noexcept {
  SANDBOX_TRYV(read_fields(obj, d, network_fields, [&](std::size_t i, od::value& v) {
    return read_bool(v, d, i == 0 ? m.deny_egress : m.deny_ingress);
  }));
  return success();
}

inline constexpr std::string_view spec_fields[] = {
    "containers", "primary_container", "tags", "annotations", "max_lifetime_seconds", "network"};
[[nodiscard]] inline sandbox::result<void> read_members(od::object& obj, decoder& d,
                                                        wire::SandboxSpec& m) noexcept {
  SANDBOX_TRYV(
      read_fields(obj, d, spec_fields, [&](std::size_t i, od::value& v) -> sandbox::result<void> {
        switch (i) {
        case 0: return read_messages(v, d, m.containers);
        case 1: return read_string(v, d, m.primary_container);
        case 2: return read_strings(v, d, m.tags);
        case 3: return read_map(v, d, m.annotations);
        case 4: return read_int32(v, d, m.max_lifetime_seconds);
        default: return read_optional(v, d, m.network);
        }
      }));
  return require(d, !m.containers.empty(), "containers");
}

inline constexpr std::string_view status_fields[] = {
    "state", "state_reason", "create_time", "start_time", "end_time", "exit_code", "runner_id"};
[[nodiscard]] inline sandbox::result<void> read_members(od::object& obj, decoder& d,
                                                        wire::SandboxStatus& m) noexcept {
  SANDBOX_TRYV(
      read_fields(obj, d, status_fields, [&](std::size_t i, od::value& v) -> sandbox::result<void> {
        switch (i) {
        case 0: return read_state(v, d, m.state);
        case 1: return read_string(v, d, m.state_reason);
        case 2: return read_string(v, d, m.create_time);
        case 3: return read_string(v, d, m.start_time);
        case 4: return read_string(v, d, m.end_time);
        case 5: return read_int32(v, d, m.exit_code);
        default: return read_string(v, d, m.runner_id);
        }
      }));
  return success();
}

inline constexpr std::string_view sandbox_fields[] = {"sandbox_id", "spec", "status"};
[[nodiscard]] inline sandbox::result<void> read_members(od::object& obj, decoder& d,
                                                        wire::Sandbox& m) noexcept {
  SANDBOX_TRYV(read_fields(obj, d, sandbox_fields,
                           [&](std::size_t i, od::value& v) -> sandbox::result<void> {
                             switch (i) {
                             case 0: return read_string(v, d, m.sandbox_id);
                             case 1: return read_optional(v, d, m.spec);
                             default: return read_optional(v, d, m.status);
                             }
                           }));
  return require(d, m.spec.has_value(), "spec");
}

inline constexpr std::string_view list_fields[] = {"sandboxes", "next_page_token"};
[[nodiscard]] inline sandbox::result<void> read_members(od::object& obj, decoder& d,
                                                        wire::ListSandboxesResponse& m) noexcept {
  SANDBOX_TRYV(read_fields(obj, d, list_fields, [&](std::size_t i, od::value& v) {
    return i == 0 ? read_messages(v, d, m.sandboxes) : read_string(v, d, m.next_page_token);
  }));
  return success();
}

inline constexpr std::string_view delete_fields[] = {"sandbox"};
[[nodiscard]] inline sandbox::result<void> read_members(od::object& obj, decoder& d,
                                                        wire::DeleteSandboxResponse& m) noexcept {
  SANDBOX_TRYV(read_fields(obj, d, delete_fields, [&](std::size_t, od::value& v) {
    return read_optional(v, d, m.sandbox);
  }));
  return success();
}

inline constexpr std::string_view exec_request_fields[] = {"command", "env", "max_output_bytes",
                                                           "container"};
[[nodiscard]] inline sandbox::result<void> read_members(od::object& obj, decoder& d,
                                                        wire::ExecRequest& m) noexcept {
  SANDBOX_TRYV(read_fields(obj, d, exec_request_fields,
                           [&](std::size_t i, od::value& v) -> sandbox::result<void> {
                             switch (i) {
                             case 0: return read_strings(v, d, m.command);
                             case 1: return read_map(v, d, m.env);
                             case 2: return read_int32(v, d, m.max_output_bytes);
                             default: return read_string(v, d, m.container);
                             }
                           }));
  return require(d, !m.command.empty(), "command");
}

inline constexpr std::string_view exec_response_fields[] = {"stdout",
                                                            "stderr",
                                                            "exit_code",
                                                            "stdout_truncated",
                                                            "stderr_truncated",
                                                            "stdout_bytes_produced",
                                                            "stderr_bytes_produced"};
[[nodiscard]] inline sandbox::result<void> read_members(od::object& obj, decoder& d,
                                                        wire::ExecResponse& m) noexcept {
  SANDBOX_TRYV(read_fields(obj, d, exec_response_fields,
                           [&](std::size_t i, od::value& v) -> sandbox::result<void> {
                             switch (i) {
                             case 0: return read_bytes(v, d, m.stdout_bytes);
                             case 1: return read_bytes(v, d, m.stderr_bytes);
                             case 2: return read_int32(v, d, m.exit_code);
                             case 3: return read_bool(v, d, m.stdout_truncated);
                             case 4: return read_bool(v, d, m.stderr_truncated);
                             case 5: return read_int64(v, d, m.stdout_bytes_produced);
                             default: return read_int64(v, d, m.stderr_bytes_produced);
                             }
                           }));
  return success();
}

inline constexpr std::string_view write_file_fields[] = {"path", "content", "container"};
[[nodiscard]] inline sandbox::result<void> read_members(od::object& obj, decoder& d,
                                                        wire::WriteFileRequest& m) noexcept {
  SANDBOX_TRYV(read_fields(obj, d, write_file_fields,
                           [&](std::size_t i, od::value& v) -> sandbox::result<void> {
                             switch (i) {
                             case 0: return read_string(v, d, m.path);
                             case 1: return read_bytes(v, d, m.content);
                             default: return read_string(v, d, m.container);
                             }
                           }));
  return require(d, !m.path.empty(), "path");
}

inline constexpr std::string_view read_file_fields[] = {"content"};
[[nodiscard]] inline sandbox::result<void> read_members(od::object& obj, decoder& d,
                                                        wire::ReadFileResponse& m) noexcept {
  SANDBOX_TRYV(read_fields(obj, d, read_file_fields,
                           [&](std::size_t, od::value& v) { return read_bytes(v, d, m.content); }));
  return success();
}

/// RetryInfo.retryDelay: a Duration string, or the `{seconds, nanos}` object some gateways send.
[[nodiscard]] inline sandbox::result<void>
read_duration(od::value& v, decoder& d, std::optional<std::chrono::milliseconds>& out) noexcept {
  SANDBOX_TRY(t, type_of(v, d));
  if (t == od::json_type::object) {
    static constexpr std::string_view fields[] = {"seconds", "nanos"};
    std::int64_t secs = 0;
    std::int32_t nanos = 0;
    od::object obj;
    if (auto e = v.get_object().get(obj)) return d.syntax(e);
    SANDBOX_TRYV(read_fields(obj, d, fields, [&](std::size_t i, od::value& fv) {
      return i == 0 ? read_int64(fv, d, secs) : read_int32(fv, d, nanos);
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

/// One entry of Status.details (a google.protobuf.Any). ErrorInfo, RetryInfo and ExecResponse are
/// kept (the first of each); other types, and members no known type has, are skipped in both modes.
[[nodiscard]] inline sandbox::result<void> read_detail(od::value& v, decoder& d,
                                                       wire::Status& s) noexcept {
  static constexpr std::string_view fields[] = {"@type",
                                                "reason",
                                                "domain",
                                                "metadata",
                                                "retry_delay",
                                                "stdout",
                                                "stderr",
                                                "exit_code",
                                                "stdout_truncated",
                                                "stderr_truncated",
                                                "stdout_bytes_produced",
                                                "stderr_bytes_produced"};
  std::string type;
  wire::ErrorInfo info;
  std::optional<std::chrono::milliseconds> delay;
  wire::ExecResponse exec;
  SANDBOX_TRY(t, type_of(v, d));
  if (t != od::json_type::object) return d.wrong_type("an object", t);
  od::object obj;
  if (auto e = v.get_object().get(obj)) return d.syntax(e);
  SANDBOX_TRYV(read_fields(
      obj, d, fields,
      [&](std::size_t i, od::value& fv) -> sandbox::result<void> {
        switch (i) {
        case 0: return read_string(fv, d, type);
        case 1: return read_string(fv, d, info.reason);
        case 2: return read_string(fv, d, info.domain);
        case 3: return read_map(fv, d, info.metadata);
        case 4: return read_duration(fv, d, delay);
        // coreweave.sandbox.v1.ExecResponse (our server: the output of a timed-out command)
        case 5: return read_bytes(fv, d, exec.stdout_bytes);
        case 6: return read_bytes(fv, d, exec.stderr_bytes);
        case 7: return read_int32(fv, d, exec.exit_code);
        case 8: return read_bool(fv, d, exec.stdout_truncated);
        case 9: return read_bool(fv, d, exec.stderr_truncated);
        case 10: return read_int64(fv, d, exec.stdout_bytes_produced);
        default: return read_int64(fv, d, exec.stderr_bytes_produced);
        }
      },
      /*skip_unknown=*/true));
  const auto name = std::string_view(type).substr(type.rfind('/') + 1);
  if (name == "google.rpc.ErrorInfo" && !s.error_info)
    s.error_info = std::move(info);
  else if (name == "google.rpc.RetryInfo" && !s.retry_info && delay)
    s.retry_info = wire::RetryInfo{*delay};
  else if (name == "coreweave.sandbox.v1.ExecResponse" && !s.exec_response)
    s.exec_response = std::move(exec);
  return success();
}

/// google.rpc.Status as grpc-gateway sends it; also the Google API form
/// `{"error": {"code": <HTTP>, "status": "NOT_FOUND", "message": ..., "details": [...]}}`.
inline constexpr std::string_view rpc_status_fields[] = {"code", "message", "details", "error",
                                                         "status"};
[[nodiscard]] inline sandbox::result<void> read_members(od::object& obj, decoder& d,
                                                        wire::Status& m) noexcept {
  std::string status_name;
  SANDBOX_TRYV(read_fields(obj, d, rpc_status_fields,
                           [&](std::size_t i, od::value& v) -> sandbox::result<void> {
                             switch (i) {
                             case 0: return read_int32(v, d, m.code);
                             case 1: return read_string(v, d, m.message);
                             case 2: {
                               SANDBOX_TRY(t, type_of(v, d));
                               if (t == od::json_type::null) return consume_null(v, d);
                               if (t != od::json_type::array) return d.wrong_type("an array", t);
                               od::array arr;
                               if (auto e = v.get_array().get(arr)) return d.syntax(e);
                               SANDBOX_TRYV(d.descend());
                               std::size_t n = 0;
                               for (auto element : arr) {
                                 od::value ev;
                                 if (auto e = std::move(element).get(ev)) return d.syntax(e);
                                 const auto mark = d.push_index(n++);
                                 SANDBOX_TRYV(read_detail(ev, d, m));
                                 d.pop(mark);
                               }
                               d.ascend();
                               return success();
                             }
                             case 3: {
                               wire::Status inner;
                               SANDBOX_TRY(present, read_message(v, d, inner));
                               if (present) m = std::move(inner);
                               return success();
                             }
                             default: return read_string(v, d, status_name);
                             }
                           }));
  if (!status_name.empty()) m.code = static_cast<std::int32_t>(grpc_code_from_name(status_name));
  return success();
}

template <class Message>
[[nodiscard]] sandbox::result<bool> read_message(od::value& v, decoder& d, Message& out) noexcept {
  SANDBOX_TRY(t, type_of(v, d));
  if (t == od::json_type::null) {
    SANDBOX_TRYV(consume_null(v, d));
    return false;
  }
  if (t != od::json_type::object) return d.wrong_type("an object", t);
  od::object obj;
  if (auto e = v.get_object().get(obj)) return d.syntax(e);
  out = Message{};
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

template <class T>
[[nodiscard]] std::string to_json(const T& msg) noexcept {
  json_writer w;
  w.reserve(detail::json::size_hint(msg));
  detail::json::write(w, msg);
  return std::move(w).take();
}

template <class T>
[[nodiscard]] sandbox::result<T> from_json(std::string_view body, decode_mode mode) noexcept {
  return detail::json::decode<T>(body, body.size(), mode);
}

template <class T, class String>
requires std::same_as<String, std::string> sandbox::result<T> from_json(const String& body,
                                                                        decode_mode mode)
noexcept { return detail::json::decode<T>(body, body.capacity(), mode); }

} // namespace sandbox::http
