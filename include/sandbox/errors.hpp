// SPDX-License-Identifier: MIT
// The one error vocabulary: sandbox::errc, its std::error_category, and sandbox::error, the value
// every failing operation carries (a code, a message that says what and where, optional details).
#pragma once

#include <sandbox/types.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace sandbox {

/// Why an operation failed. Mirrors the anchor client's exception classes.
enum class errc {
  validation = 1,     ///< bad input: empty argv, relative cwd, malformed option, or a call on
                      ///< a moved-from `basic_sandbox` / `Process`
  not_found,          ///< no sandbox with that id
  not_running,        ///< the sandbox is stopped or was never started
  timeout,            ///< a wait or a request ran past its deadline
  command_timeout,    ///< ExecOptions::timeout expired and the command was killed
  failed,             ///< the sandbox reached FAILED (main command could not start, OOM kill)
  terminated,         ///< the sandbox reached TERMINATED (stopped)
  execution,          ///< under check: the command exited non-zero
  unavailable,        ///< the service or host cannot run sandboxes right now (transient)
  resource_exhausted, ///< quota, rate limit, or a host resource ran out (transient)
  authentication,     ///< missing or rejected credentials
  conflict,           ///< already exists / aborted
  file_not_found,     ///< read_file of a path that does not exist
  file_is_directory,  ///< read_file/write_file on a directory
  file_permission,    ///< permission denied on a file
  file_too_large,     ///< file larger than the allowed size
  file_io,            ///< any other file error
  transport,          ///< connection or I/O failure talking to the sandbox
  protocol,           ///< malformed or unexpected response
  server_error,       ///< the server reported an internal error
  unsupported,        ///< the transport or server cannot do this
};

/// The name of `e` as it is spelled in code ("not_found"), for messages and command lines.
[[nodiscard]] constexpr std::string_view to_string(errc e) noexcept {
  switch (e) {
  case errc::validation: return "validation";
  case errc::not_found: return "not_found";
  case errc::not_running: return "not_running";
  case errc::timeout: return "timeout";
  case errc::command_timeout: return "command_timeout";
  case errc::failed: return "failed";
  case errc::terminated: return "terminated";
  case errc::execution: return "execution";
  case errc::unavailable: return "unavailable";
  case errc::resource_exhausted: return "resource_exhausted";
  case errc::authentication: return "authentication";
  case errc::conflict: return "conflict";
  case errc::file_not_found: return "file_not_found";
  case errc::file_is_directory: return "file_is_directory";
  case errc::file_permission: return "file_permission";
  case errc::file_too_large: return "file_too_large";
  case errc::file_io: return "file_io";
  case errc::transport: return "transport";
  case errc::protocol: return "protocol";
  case errc::server_error: return "server_error";
  case errc::unsupported: return "unsupported";
  }
  return "unknown";
}

/// The `std::error_category` of `sandbox::errc` (name "sandbox").
class error_category_impl final : public std::error_category {
public:
  [[nodiscard]] const char* name() const noexcept override { return "sandbox"; }
  [[nodiscard]] std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
    case errc::validation: return "invalid argument";
    case errc::not_found: return "sandbox not found";
    case errc::not_running: return "sandbox not running";
    case errc::timeout: return "timed out";
    case errc::command_timeout: return "command timed out";
    case errc::failed: return "sandbox failed";
    case errc::terminated: return "sandbox terminated";
    case errc::execution: return "command exited with a non-zero code";
    case errc::unavailable: return "unavailable";
    case errc::resource_exhausted: return "resource exhausted";
    case errc::authentication: return "authentication failed";
    case errc::conflict: return "conflict";
    case errc::file_not_found: return "file not found";
    case errc::file_is_directory: return "is a directory";
    case errc::file_permission: return "permission denied";
    case errc::file_too_large: return "file too large";
    case errc::file_io: return "file I/O error";
    case errc::transport: return "transport error";
    case errc::protocol: return "protocol error";
    case errc::server_error: return "server error";
    case errc::unsupported: return "unsupported";
    }
    return "unknown sandbox error";
  }
};

[[nodiscard]] inline const std::error_category& error_category() noexcept {
  static const error_category_impl instance;
  return instance;
}

[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// True for the errors a retry policy may retry (unavailable, rate limited, request timeout).
[[nodiscard]] inline bool is_transient(std::error_code ec) noexcept {
  return ec == make_error_code(errc::unavailable) ||
         ec == make_error_code(errc::resource_exhausted) || ec == make_error_code(errc::timeout);
}

/// What a remote service said about an error (google.rpc.ErrorInfo / RetryInfo), when it said it.
struct server_error_info {
  int http_status = 0;
  int grpc_code = 0;
  std::string reason;
  std::string domain;
  std::vector<std::pair<std::string, std::string>> metadata;
  std::optional<std::chrono::milliseconds> retry_delay;
};

/// The error value of every failing operation.
struct error {
  std::error_code code;
  /// Says what failed and where (sandbox id, command, path); never contains credentials.
  std::string message;
  /// For errc::execution and errc::command_timeout: the command's result (output so far).
  std::shared_ptr<const ExecResult> exec_result;
  /// For errors reported by a server.
  std::shared_ptr<const server_error_info> server;

  error() = default;
  error(errc e, std::string msg) noexcept : code(make_error_code(e)), message(std::move(msg)) {}
  error(std::error_code ec, std::string msg) noexcept : code(ec), message(std::move(msg)) {}

  [[nodiscard]] bool is(errc e) const noexcept { return code == make_error_code(e); }
  [[nodiscard]] bool transient() const noexcept { return is_transient(code); }
};

/// Lets Outcome and generic code view a sandbox::error as a std::error_code.
[[nodiscard]] inline std::error_code make_error_code(const error& e) noexcept { return e.code; }

} // namespace sandbox

template <>
struct std::is_error_code_enum<sandbox::errc> : std::true_type {};
