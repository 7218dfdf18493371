// SPDX-License-Identifier: MIT
// The proto3 JSON codec of the v1 REST mapping (PROTOCOL.md, "proto3 JSON, exactly"): to_json and
// from_json for every message in wire.hpp. The only header of the library that includes
// <simdjson.h>; it uses the on-demand API through its error-code accessors only, so it builds
// with -fno-exceptions.
#pragma once

#include <sandbox/result.hpp>
#include <sandbox/transport/http/status.hpp>
#include <sandbox/transport/http/wire.hpp>

#include <string>
#include <string_view>

namespace sandbox::http {

/// How `from_json` treats what it does not expect.
enum class decode_mode {
  /// Responses read by the client: unknown fields are skipped (forward compatibility); malformed
  /// JSON or a field of the wrong type is errc::protocol.
  lenient,
  /// Requests read by our server: an unknown field, a field of the wrong type, a duplicate field
  /// or a missing required field is errc::validation naming the field path
  /// (`spec.containers[0].image: ...`).
  strict,
};

/// Encodes `msg` as proto3 JSON: lowerCamelCase names, default values omitted, int64 as JSON
/// strings, bytes as padded standard base64, enums by name, `exitCode` whenever it is present
/// (0 included). Strings that are not valid UTF-8 get U+FFFD for each invalid byte (JSON text is
/// UTF-8; byte-exact data travels in bytes fields).
template <class T>
[[nodiscard]] std::string to_json(const T& msg) noexcept;

/// Decodes a proto3 JSON body into an owning `T`. Accepts lowerCamelCase and snake_case names,
/// int64 as a string or a number, enums by name or number (an unknown name is the UNSPECIFIED
/// value), bytes in standard or URL-safe base64 with or without padding, `null` as "absent".
///
/// **Errors:** errc::protocol (lenient) or errc::validation (strict) with a message saying what
/// was wrong and where: malformed or truncated JSON, trailing data, a value of the wrong type, an
/// integer out of range, invalid base64, nesting deeper than 64 levels, a body larger than 1 GiB;
/// in strict mode also unknown, duplicate and missing required fields.
template <class T>
[[nodiscard]] sandbox::result<T> from_json(std::string_view body, decode_mode mode) noexcept;

} // namespace sandbox::http
