// SPDX-License-Identifier: MIT
// Process: a command started by `exec`, returned at once; `result()` waits for its outcome.
#pragma once

#include <sandbox/concepts.hpp>
#include <sandbox/detail/text.hpp>
#include <sandbox/policy/check.hpp>
#include <sandbox/policy/error.hpp>

#include <chrono>
#include <csignal>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sandbox {

/// A command running in a sandbox. Move-only; use from one thread at a time.
template <transport Transport, error_policy Errors, check_policy Check = no_check>
class Process {
  template <class T>
  using ret = typename Errors::template return_type<T>;
  using handle_type = typename Transport::process_type;

public:
  /// Normally made by `basic_sandbox::exec`. `handle` may hold the error that kept the command
  /// from starting; it is then what `result()` reports.
  Process(std::shared_ptr<Transport> t, sandbox::result<handle_type> handle,
          std::vector<std::string> command, bool check) noexcept
      : transport_(std::move(t)), handle_(std::move(handle)), command_(std::move(command)),
        check_(check || Check::enabled) {}

  /// Waits for the command (at most `timeout`; unset: no limit) and returns what it produced.
  /// Under check a non-zero exit is an errc::execution error carrying the ExecResult.
  /// **Errors:** execution, command_timeout (ExecOptions::timeout; output so far attached),
  /// timeout (this wait; the command keeps running, call again), not_running, transport.
  ///
  ///     auto r = box.exec({"echo", "hi"}).result();   // r.stdout_text == "hi\n"
  ret<ExecResult> result(std::optional<std::chrono::milliseconds> timeout = {}) {
    return Errors::finish(try_result(timeout));
  }

  /// Waits like `result()` and returns the exit code.
  ret<int> wait(std::optional<std::chrono::milliseconds> timeout = {}) {
    auto r = try_result(timeout);
    if (!r) return Errors::finish(sandbox::result<int>(std::move(r).assume_error()));
    return Errors::finish(sandbox::result<int>(r.assume_value().returncode));
  }

  /// The exit code if the command has finished (reads pending output; never blocks).
  [[nodiscard]] std::optional<int> poll() noexcept {
    return handle_ ? handle_.assume_value().poll() : std::nullopt;
  }

  /// The exit code once the command is known to have finished; empty before.
  [[nodiscard]] std::optional<int> returncode() noexcept { return poll(); }

  /// Sends `sig` (default SIGKILL) to the command's process group.
  ret<void> kill(int sig = SIGKILL) {
    if (!handle_) return Errors::finish(sandbox::result<void>(handle_.assume_error()));
    return Errors::finish(handle_.assume_value().kill(sig));
  }

  /// Writes all of `data` to the command's stdin (needs ExecOptions::stdin_pipe).
  ret<void> write_stdin(std::string_view data)
    requires supports_stdin<Transport>
  {
    if (!handle_) return Errors::finish(sandbox::result<void>(handle_.assume_error()));
    return Errors::finish(handle_.assume_value().write_stdin(data));
  }

  /// Closes the command's stdin (it reads EOF). Idempotent.
  ret<void> close_stdin()
    requires supports_stdin<Transport>
  {
    if (!handle_) return Errors::finish(sandbox::result<void>(handle_.assume_error()));
    return Errors::finish(handle_.assume_value().close_stdin());
  }

  /// The argv as the caller gave it.
  [[nodiscard]] const std::vector<std::string>& command() const noexcept { return command_; }

  /// The same as `result()` but never throws, whatever the error policy.
  [[nodiscard]] sandbox::result<ExecResult>
  try_result(std::optional<std::chrono::milliseconds> timeout = {}) noexcept {
    if (!handle_) return handle_.as_failure();
    auto r = handle_.assume_value().wait(timeout);
    if (!r || !check_ || r.assume_value().ok()) return r;
    const ExecResult& x = r.assume_value();
    std::string msg = "command " + detail::join_command(x.command) + " failed with exit code " +
                      std::to_string(x.returncode);
    if (x.oom_killed) msg += " (killed for exceeding the sandbox's memory limit)";
    if (!x.stderr_text.empty()) {
      std::string_view tail(x.stderr_text);
      if (tail.size() > 200) tail = tail.substr(tail.size() - 200);
      while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r')) tail.remove_suffix(1);
      msg += ": ";
      msg += tail;
    }
    error e(errc::execution, std::move(msg));
    e.exec_result = std::make_shared<const ExecResult>(std::move(r).assume_value());
    return fail(std::move(e));
  }

private:
  std::shared_ptr<Transport> transport_; // keeps the transport alive while the command runs
  sandbox::result<handle_type> handle_;
  std::vector<std::string> command_;
  bool check_;
};

} // namespace sandbox
