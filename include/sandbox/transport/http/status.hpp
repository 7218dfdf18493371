// SPDX-License-Identifier: MIT
// google.rpc.Status ⇄ sandbox::error: the error table of PROTOCOL.md ("Errors"), used by the HTTP
// transport to read error bodies and by the server to write them.
#pragma once

#include <sandbox/errors.hpp>
#include <sandbox/transport/http/wire.hpp>

#include <cstdint>
#include <string_view>

namespace sandbox::http {

/// The canonical gRPC status codes (google.rpc.Code).
enum class grpc_code : std::int32_t {
  ok = 0,
  cancelled = 1,
  unknown = 2,
  invalid_argument = 3,
  deadline_exceeded = 4,
  not_found = 5,
  already_exists = 6,
  permission_denied = 7,
  resource_exhausted = 8,
  failed_precondition = 9,
  aborted = 10,
  out_of_range = 11,
  unimplemented = 12,
  internal = 13,
  unavailable = 14,
  data_loss = 15,
  unauthenticated = 16,
};

/// The ErrorInfo domain whose reasons the client maps to specific errors.
inline constexpr std::string_view cwsandbox_domain = "cwsandbox.com";

/// `"NOT_FOUND"`, …; an empty view for a number that is not a gRPC code.
[[nodiscard]] constexpr std::string_view to_string(grpc_code c) noexcept;

/// The gRPC code named `name` (`"NOT_FOUND"`); `unknown` for a name that is not one.
[[nodiscard]] constexpr grpc_code grpc_code_from_name(std::string_view name) noexcept;

/// The HTTP status that carries `code` (PROTOCOL.md table; 200 for `ok`, 500 for a number that
/// is not a gRPC code).
[[nodiscard]] constexpr int http_status_for(grpc_code code) noexcept;

/// The gRPC code implied by an HTTP status alone (an error response without a usable body).
[[nodiscard]] constexpr grpc_code grpc_code_for_http(int http_status) noexcept;

/// The client's error for an error response: the gRPC code of the body (or, when the body has
/// none, of the HTTP status) picks the errc; when `ErrorInfo.domain == "cwsandbox.com"`, a known
/// reason picks it instead (e.g. CWSANDBOX_FILE_NOT_FOUND → errc::file_not_found). The reason,
/// domain, metadata, retry delay, HTTP status and gRPC code are attached in `error.server`
/// whatever the domain.
[[nodiscard]] error error_from_status(int http_status, const wire::Status& status) noexcept;

/// The server's error body for `e`: the inverse of `error_from_status`. When `e.server` carries a
/// reason it is kept; otherwise errcs that the gRPC code alone cannot tell apart (file errors,
/// command timeout, not running, failed, terminated) get a cwsandbox.com reason, so that
/// `error_from_status(http_status_for(code), status_from_error(e))` gives back `e.code`.
[[nodiscard]] wire::Status status_from_error(const error& e) noexcept;

} // namespace sandbox::http
