// SPDX-License-Identifier: MIT
// google.rpc.Status ⇄ sandbox::error: the error table of PROTOCOL.md ("Errors"), used by the HTTP
// transport to read error bodies and by the server to write them.
#pragma once

#include <sandbox/errors.hpp>
#include <sandbox/transport/http/base64.hpp>
#include <sandbox/transport/http/protobuf.hpp>
#include <sandbox/transport/http/wire.hpp>

#include <cstdint>
#include <iterator>
#include <memory>
#include <string>
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
[[nodiscard]] constexpr std::string_view to_string(grpc_code c) noexcept {
  constexpr std::string_view names[] = {"OK",
                                        "CANCELLED",
                                        "UNKNOWN",
                                        "INVALID_ARGUMENT",
                                        "DEADLINE_EXCEEDED",
                                        "NOT_FOUND",
                                        "ALREADY_EXISTS",
                                        "PERMISSION_DENIED",
                                        "RESOURCE_EXHAUSTED",
                                        "FAILED_PRECONDITION",
                                        "ABORTED",
                                        "OUT_OF_RANGE",
                                        "UNIMPLEMENTED",
                                        "INTERNAL",
                                        "UNAVAILABLE",
                                        "DATA_LOSS",
                                        "UNAUTHENTICATED"};
  auto i = static_cast<std::int32_t>(c);
  return i >= 0 && i < static_cast<std::int32_t>(std::size(names)) ? names[i] : std::string_view{};
}

/// The gRPC code named `name` (`"NOT_FOUND"`); `unknown` for a name that is not one.
[[nodiscard]] constexpr grpc_code grpc_code_from_name(std::string_view name) noexcept {
  for (std::int32_t i = 0; i <= 16; ++i)
    if (to_string(static_cast<grpc_code>(i)) == name) return static_cast<grpc_code>(i);
  return grpc_code::unknown;
}

/// The HTTP status that carries `code` (PROTOCOL.md table; 200 for `ok`, 500 for a number that
/// is not a gRPC code).
[[nodiscard]] constexpr int http_status_for(grpc_code code) noexcept {
  switch (code) {
  case grpc_code::ok: return 200;
  case grpc_code::invalid_argument:
  case grpc_code::failed_precondition:
  case grpc_code::out_of_range: return 400;
  case grpc_code::unauthenticated: return 401;
  case grpc_code::permission_denied: return 403;
  case grpc_code::not_found: return 404;
  case grpc_code::already_exists:
  case grpc_code::aborted: return 409;
  case grpc_code::resource_exhausted: return 429;
  case grpc_code::cancelled: return 499;
  case grpc_code::unimplemented: return 501;
  case grpc_code::unavailable: return 503;
  case grpc_code::deadline_exceeded: return 504;
  case grpc_code::unknown:
  case grpc_code::internal:
  case grpc_code::data_loss: return 500;
  }
  return 500;
}

/// The gRPC code implied by an HTTP status alone (an error response without a usable body):
/// the inverse of the table, 409 → ABORTED, 502 → UNAVAILABLE, 408 → DEADLINE_EXCEEDED, other
/// 4xx → FAILED_PRECONDITION, other 5xx → INTERNAL, anything else → UNKNOWN.
[[nodiscard]] constexpr grpc_code grpc_code_for_http(int http_status) noexcept {
  switch (http_status) {
  case 200: return grpc_code::ok;
  case 400: return grpc_code::invalid_argument;
  case 401: return grpc_code::unauthenticated;
  case 403: return grpc_code::permission_denied;
  case 404: return grpc_code::not_found;
  case 408: return grpc_code::deadline_exceeded;
  case 409: return grpc_code::aborted;
  case 429: return grpc_code::resource_exhausted;
  case 499: return grpc_code::cancelled;
  case 500: return grpc_code::internal;
  case 501: return grpc_code::unimplemented;
  case 502:
  case 503: return grpc_code::unavailable;
  case 504: return grpc_code::deadline_exceeded;
  }
  if (http_status >= 400 && http_status < 500) return grpc_code::failed_precondition;
  if (http_status >= 500 && http_status < 600) return grpc_code::internal;
  return grpc_code::unknown;
}

namespace detail {

/// errc for a gRPC code alone (PROTOCOL.md "Errors" table).
constexpr errc errc_for(grpc_code code) noexcept {
  switch (code) {
  case grpc_code::invalid_argument:
  case grpc_code::failed_precondition:
  case grpc_code::out_of_range: return errc::validation;
  case grpc_code::unauthenticated:
  case grpc_code::permission_denied: return errc::authentication;
  case grpc_code::not_found: return errc::not_found;
  case grpc_code::already_exists:
  case grpc_code::aborted: return errc::conflict;
  case grpc_code::resource_exhausted: return errc::resource_exhausted;
  case grpc_code::cancelled: return errc::not_running;
  case grpc_code::unimplemented: return errc::unsupported;
  case grpc_code::unavailable: return errc::unavailable;
  case grpc_code::deadline_exceeded: return errc::timeout;
  case grpc_code::ok: return errc::protocol; // an error response claiming success
  case grpc_code::unknown:
  case grpc_code::internal:
  case grpc_code::data_loss: return errc::server_error;
  }
  return errc::server_error;
}

/// The cwsandbox.com reasons that pick an errc of their own. The first group is the hosted
/// service's; the SANDBOX_NOT_RUNNING/FAILED/TERMINATED reasons are sent by our server so that
/// those errors survive the trip (the anchor clients fall back on the gRPC code for them).
struct reason_entry {
  std::string_view reason;
  errc code;
};
inline constexpr reason_entry reasons[] = {
    {"CWSANDBOX_SANDBOX_NOT_FOUND", errc::not_found},
    {"CWSANDBOX_FILE_NOT_FOUND", errc::file_not_found},
    {"CWSANDBOX_FILE_IS_DIRECTORY", errc::file_is_directory},
    {"CWSANDBOX_FILE_TOO_LARGE", errc::file_too_large},
    {"CWSANDBOX_FILE_PERMISSION_DENIED", errc::file_permission},
    {"CWSANDBOX_FILE_IO_FAILED", errc::file_io},
    {"CWSANDBOX_FILE_TRUNCATED", errc::file_io},
    {"CWSANDBOX_COMMAND_TIMEOUT", errc::command_timeout},
    {"CWSANDBOX_RUNNER_UNAVAILABLE", errc::unavailable},
    {"CWSANDBOX_BACKEND_UNAVAILABLE", errc::unavailable},
    {"CWSANDBOX_NOT_IMPLEMENTED", errc::unsupported},
    {"CWSANDBOX_SANDBOX_NOT_RUNNING", errc::not_running},
    {"CWSANDBOX_SANDBOX_FAILED", errc::failed},
    {"CWSANDBOX_SANDBOX_TERMINATED", errc::terminated},
};

/// gRPC code and (possibly empty) cwsandbox.com reason our server sends for an errc.
struct status_entry {
  grpc_code code;
  std::string_view reason;
};
constexpr status_entry status_for(errc e) noexcept {
  switch (e) {
  case errc::validation: return {grpc_code::invalid_argument, {}};
  case errc::not_found: return {grpc_code::not_found, "CWSANDBOX_SANDBOX_NOT_FOUND"};
  case errc::not_running: return {grpc_code::cancelled, "CWSANDBOX_SANDBOX_NOT_RUNNING"};
  case errc::timeout: return {grpc_code::deadline_exceeded, {}};
  case errc::command_timeout: return {grpc_code::deadline_exceeded, "CWSANDBOX_COMMAND_TIMEOUT"};
  case errc::failed: return {grpc_code::failed_precondition, "CWSANDBOX_SANDBOX_FAILED"};
  case errc::terminated: return {grpc_code::failed_precondition, "CWSANDBOX_SANDBOX_TERMINATED"};
  case errc::execution: return {grpc_code::unknown, {}};
  case errc::unavailable: return {grpc_code::unavailable, {}};
  case errc::resource_exhausted: return {grpc_code::resource_exhausted, {}};
  case errc::authentication: return {grpc_code::unauthenticated, {}};
  case errc::conflict: return {grpc_code::already_exists, {}};
  case errc::file_not_found: return {grpc_code::not_found, "CWSANDBOX_FILE_NOT_FOUND"};
  case errc::file_is_directory:
    return {grpc_code::failed_precondition, "CWSANDBOX_FILE_IS_DIRECTORY"};
  case errc::file_permission:
    return {grpc_code::permission_denied, "CWSANDBOX_FILE_PERMISSION_DENIED"};
  case errc::file_too_large: return {grpc_code::out_of_range, "CWSANDBOX_FILE_TOO_LARGE"};
  case errc::file_io: return {grpc_code::internal, "CWSANDBOX_FILE_IO_FAILED"};
  case errc::transport:
  case errc::protocol:
  case errc::server_error: return {grpc_code::internal, {}};
  case errc::unsupported: return {grpc_code::unimplemented, "CWSANDBOX_NOT_IMPLEMENTED"};
  }
  return {grpc_code::unknown, {}};
}

} // namespace detail

/// The client's error for an error response: the gRPC code of the body (or, when the body has
/// none, of the HTTP status) picks the errc; when `ErrorInfo.domain == "cwsandbox.com"`, a known
/// reason picks it instead (e.g. CWSANDBOX_FILE_NOT_FOUND → errc::file_not_found). The reason,
/// domain, metadata, retry delay, HTTP status and gRPC code are attached in `error.server`
/// whatever the domain. The message is the server's message followed by
/// `(HTTP <status> <CODE>[, <reason>])`, or `(gRPC <CODE>[, <reason>])` for an `http_status` of
/// 0: a gRPC call's status, whose code `status` carries.
[[nodiscard]] inline error error_from_status(int http_status, const wire::Status& status) noexcept {
  // A body without a gRPC code (or with an HTTP status in "code", as the Google API form has when
  // "status" is missing) leaves the HTTP status to decide.
  auto code = status.code > 0 && status.code <= 16 ? static_cast<grpc_code>(status.code)
                                                   : grpc_code_for_http(http_status);
  errc e = detail::errc_for(code);
  auto info = std::make_shared<server_error_info>();
  info->http_status = http_status;
  info->grpc_code = static_cast<int>(code);
  if (status.error_info) {
    const auto& ei = *status.error_info;
    info->reason = ei.reason;
    info->domain = ei.domain;
    info->metadata.assign(ei.metadata.begin(), ei.metadata.end());
    if (ei.domain == cwsandbox_domain)
      for (const auto& r : detail::reasons)
        if (r.reason == ei.reason) e = r.code;
  }
  if (status.retry_info) info->retry_delay = status.retry_info->retry_delay;

  std::string message = status.message.empty() ? std::string("request failed") : status.message;
  message += http_status == 0 ? std::string(" (gRPC") : " (HTTP " + std::to_string(http_status);
  if (auto name = to_string(code); !name.empty())
    (message += ' ') += name;
  else
    message += " code " + std::to_string(static_cast<int>(code));
  if (!info->reason.empty()) message += ", " + info->reason;
  message += ')';
  error err{e, std::move(message)};
  err.server = std::move(info);
  return err;
}

/// The gRPC code a Connect error names (`"not_found"`; Connect spells CANCELLED `"canceled"`);
/// `unknown` for a name it does not define.
[[nodiscard]] constexpr grpc_code grpc_code_from_connect(std::string_view name) noexcept {
  if (name == "canceled" || name == "cancelled") return grpc_code::cancelled;
  for (std::int32_t c = 2; c <= 16; ++c) {
    std::string_view upper = to_string(static_cast<grpc_code>(c));
    bool same = upper.size() == name.size();
    for (std::size_t i = 0; same && i < name.size(); ++i)
      same = name[i] == (upper[i] == '_' ? '_' : static_cast<char>(upper[i] - 'A' + 'a'));
    if (same) return static_cast<grpc_code>(c);
  }
  return grpc_code::unknown;
}

/// A Connect error body as the `google.rpc.Status` it stands for: the code by name, and the
/// details a Status keeps (ErrorInfo, RetryInfo, our ExecResponse) decoded from their base64
/// protobuf bytes. Other details, and details that do not decode (or a RetryInfo without its
/// delay), are skipped, as in a Status.
[[nodiscard]] inline wire::Status status_from_connect(const wire::ConnectError& c) {
  wire::Status s;
  s.code = static_cast<std::int32_t>(grpc_code_from_connect(c.code));
  s.message = c.message;
  for (const auto& d : c.details)
    if (auto bytes = base64_decode(d.value)) keep_any_detail(s, d.type, bytes.assume_value());
  return s;
}

/// The server's error body for `e`: the inverse of `error_from_status`. When `e.server` carries a
/// reason it is kept; otherwise errcs that the gRPC code alone cannot tell apart (file errors,
/// command timeout, not running, failed, terminated, sandbox not found) get a cwsandbox.com
/// reason, so that `error_from_status(http_status_for(code), status_from_error(e))` gives back
/// `e.code` — for every errc but `execution`, `transport` and `protocol`, which describe a failure
/// inside the server and reach the client as `server_error`. An error of another category is
/// INTERNAL. Metadata in `e.server` goes with either reason; a retry delay becomes a RetryInfo.
[[nodiscard]] inline wire::Status status_from_error(const error& e) noexcept {
  wire::Status s;
  s.message = e.message;
  detail::status_entry entry{grpc_code::internal, {}};
  if (e.code.category() == error_category())
    entry = detail::status_for(static_cast<errc>(e.code.value()));
  s.code = static_cast<std::int32_t>(entry.code);
  if (e.server && !e.server->reason.empty())
    s.error_info = wire::ErrorInfo{e.server->reason, e.server->domain, {}};
  else if (!entry.reason.empty())
    s.error_info = wire::ErrorInfo{std::string(entry.reason), std::string(cwsandbox_domain), {}};
  if (s.error_info && e.server)
    for (const auto& [k, v] : e.server->metadata)
      s.error_info->metadata.insert_or_assign(k, v);
  if (e.server && e.server->retry_delay) s.retry_info = wire::RetryInfo{*e.server->retry_delay};
  return s;
}

} // namespace sandbox::http
