// SPDX-License-Identifier: MIT
// Error policies: how a failure reaches the caller. `return_errors` hands back the result;
// `throw_errors` throws the exception class matching the error (and is the only code in the
// library that throws). With exceptions disabled, `throw_errors` cannot be chosen.
#pragma once

#include <sandbox/concepts.hpp>
#include <sandbox/result.hpp>

#include <memory>
#include <string>
#include <system_error>
#include <utility>

namespace sandbox {

/// Base of every exception the library throws: a std::system_error carrying the sandbox::errc
/// and the full sandbox::error (message, server details, ExecResult).
class SandboxError : public std::system_error {
public:
  explicit SandboxError(sandbox::error e)
      : std::system_error(e.code, e.message), error_(std::move(e)) {}
  /// The message alone (what failed and where), without the category's text appended.
  [[nodiscard]] const char* what() const noexcept override { return error_.message.c_str(); }
  [[nodiscard]] const sandbox::error& error() const noexcept { return error_; }
  /// google.rpc.ErrorInfo reason / metadata and retry delay, for errors reported by a server.
  [[nodiscard]] const server_error_info* server() const noexcept { return error_.server.get(); }

private:
  sandbox::error error_;
};

/// Under check: the command exited non-zero. `exec_result()` holds its code, output and argv.
class SandboxExecutionError : public SandboxError {
public:
  using SandboxError::SandboxError;
  [[nodiscard]] const ExecResult& exec_result() const noexcept { return *error().exec_result; }
};
/// A wait, a request or a command ran past its deadline. For a command timeout, `exec_result()`
/// may hold the output produced before the kill.
class SandboxTimeoutError : public SandboxError {
public:
  using SandboxError::SandboxError;
  [[nodiscard]] const ExecResult* exec_result() const noexcept { return error().exec_result.get(); }
};
class SandboxNotFoundError : public SandboxError {
public:
  using SandboxError::SandboxError;
};
class SandboxNotRunningError : public SandboxError {
public:
  using SandboxError::SandboxError;
};
/// The service cannot serve right now (retried by the retry policy where safe).
class SandboxUnavailableError : public SandboxNotRunningError {
public:
  using SandboxNotRunningError::SandboxNotRunningError;
};
class SandboxFailedError : public SandboxError {
public:
  using SandboxError::SandboxError;
};
class SandboxTerminatedError : public SandboxError {
public:
  using SandboxError::SandboxError;
};
class SandboxFileError : public SandboxError {
public:
  using SandboxError::SandboxError;
};
class SandboxValidationError : public SandboxError {
public:
  using SandboxError::SandboxError;
};
class SandboxAuthenticationError : public SandboxError {
public:
  using SandboxError::SandboxError;
};
class SandboxResourceExhaustedError : public SandboxError {
public:
  using SandboxError::SandboxError;
};

/// Errors come back as `result<T>`; nothing throws. Works with `-fno-exceptions`.
struct return_errors {
  static constexpr bool throws = false;
  template <class T>
  using return_type = result<T>;
  template <class T>
  [[nodiscard]] static result<T> finish(result<T>&& r) noexcept {
    return std::move(r);
  }
};

/// Errors are thrown as the matching `Sandbox*Error`; success returns the plain value.
struct throw_errors {
  static constexpr bool throws = true;
  template <class T>
  using return_type = T;

#if SANDBOX_HAS_EXCEPTIONS
  template <class T>
  static T finish(result<T>&& r) {
    if (!r) raise(std::move(r).assume_error());
    if constexpr (!std::is_void_v<T>) return std::move(r).assume_value();
  }

  /// Throws the exception class that matches `e.code`.
  [[noreturn]] static void raise(sandbox::error e) {
    if (e.code.category() != error_category()) throw SandboxError(std::move(e));
    switch (static_cast<errc>(e.code.value())) {
    case errc::validation: throw SandboxValidationError(std::move(e));
    case errc::not_found: throw SandboxNotFoundError(std::move(e));
    case errc::not_running: throw SandboxNotRunningError(std::move(e));
    case errc::unavailable: throw SandboxUnavailableError(std::move(e));
    case errc::timeout:
    case errc::command_timeout: throw SandboxTimeoutError(std::move(e));
    case errc::failed: throw SandboxFailedError(std::move(e));
    case errc::terminated: throw SandboxTerminatedError(std::move(e));
    case errc::execution: throw SandboxExecutionError(std::move(e));
    case errc::authentication: throw SandboxAuthenticationError(std::move(e));
    case errc::resource_exhausted: throw SandboxResourceExhaustedError(std::move(e));
    case errc::file_not_found:
    case errc::file_is_directory:
    case errc::file_permission:
    case errc::file_too_large:
    case errc::file_io: throw SandboxFileError(std::move(e));
    default: throw SandboxError(std::move(e));
    }
  }
#else
  // No exceptions: the throwing policy does not exist (error_policy<throw_errors> is false).
  template <class T>
  static T finish(result<T>&& r) = delete;
#endif
};

static_assert(error_policy<return_errors>);
#if SANDBOX_HAS_EXCEPTIONS
static_assert(error_policy<throw_errors>);
#else
static_assert(!error_policy<throw_errors>);
#endif

} // namespace sandbox
