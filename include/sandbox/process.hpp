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
///
/// Each operation that can fail has a `try_` twin taking the same arguments that returns
/// `result<T>` and never throws, whatever `Errors` is: `try_result`, `try_wait`, `try_kill`,
/// `try_write_stdin`, `try_close_stdin`, `try_resize`. Every operation on a moved-from `Process`
/// fails with `errc::validation` (`poll` and `returncode` give nothing), as on a moved-from
/// `basic_sandbox`.
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
      : transport_(std::move(t)), command_(std::move(command)), check_(check || Check::enabled) {
    if (handle)
      handle_.emplace(std::move(handle).assume_value());
    else
      error_ = std::move(handle).assume_error();
  }

  Process(Process&& o) noexcept
      : transport_(std::move(o.transport_)), handle_(std::move(o.handle_)),
        error_(std::move(o.error_)), command_(std::move(o.command_)), check_(o.check_) {
    o.handle_.reset();
    o.error_ = moved_from();
  }
  Process& operator=(Process&& o) noexcept {
    if (this != &o) {
      transport_ = std::move(o.transport_);
      handle_ = std::move(o.handle_);
      error_ = std::move(o.error_);
      command_ = std::move(o.command_);
      check_ = o.check_;
      o.handle_.reset();
      o.error_ = moved_from();
    }
    return *this;
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process() = default;

  /// Waits for the command (at most `timeout`; unset: no limit) and returns what it produced.
  /// Under check a non-zero exit is an errc::execution error carrying the ExecResult.
  /// **Errors:** execution, command_timeout (ExecOptions::timeout; output so far attached),
  /// timeout (this wait; the command keeps running, call again), not_running, transport.
  ///
  ///     auto r = box.exec({"echo", "hi"}).result();   // r.stdout_text == "hi\n"
  ret<ExecResult> result(std::optional<std::chrono::milliseconds> timeout = {}) & {
    return Errors::finish(try_result(timeout));
  }

  /// On a temporary (`box.exec(...).result()`): the same, the output moved into the result
  /// rather than copied, where the transport can hand it over (`taking_process`).
  ret<ExecResult> result(std::optional<std::chrono::milliseconds> timeout = {}) && {
    return Errors::finish(std::move(*this).try_result(timeout));
  }

  /// Waits like `result()` and returns the exit code.
  ret<int> wait(std::optional<std::chrono::milliseconds> timeout = {}) {
    return Errors::finish(try_wait(timeout));
  }

  [[nodiscard]] sandbox::result<int>
  try_wait(std::optional<std::chrono::milliseconds> timeout = {}) noexcept {
    auto r = try_result(timeout);
    if (!r) return std::move(r).as_failure();
    return r.assume_value().returncode;
  }

  /// The exit code if the command has finished (reads pending output; never blocks).
  [[nodiscard]] std::optional<int> poll() noexcept {
    return handle_ ? handle_->poll() : std::nullopt;
  }

  /// The exit code once the command is known to have finished; empty before.
  [[nodiscard]] std::optional<int> returncode() noexcept { return poll(); }

  /// Sends `sig` (default SIGKILL) to the command's process group.
  ret<void> kill(int sig = SIGKILL) { return Errors::finish(try_kill(sig)); }

  [[nodiscard]] sandbox::result<void> try_kill(int sig = SIGKILL) noexcept {
    if (!handle_) return fail(error_);
    return handle_->kill(sig);
  }

  /// Writes all of `data` to the command's stdin (needs ExecOptions::stdin_pipe or tty).
  ret<void> write_stdin(std::string_view data) requires supports_stdin<Transport> {
    return Errors::finish(try_write_stdin(data));
  }

  [[nodiscard]] sandbox::result<void>
  try_write_stdin(std::string_view data) noexcept requires supports_stdin<Transport> {
    if (!handle_) return fail(error_);
    return handle_->write_stdin(data);
  }

  /// Closes the command's stdin (it reads EOF). Idempotent.
  ret<void> close_stdin() requires supports_stdin<Transport> {
    return Errors::finish(try_close_stdin());
  }

  [[nodiscard]] sandbox::result<void>
  try_close_stdin() noexcept requires supports_stdin<Transport> {
    if (!handle_) return fail(error_);
    return handle_->close_stdin();
  }

  /// Sets the size of the command's terminal (one started with `ExecOptions::tty`); the command
  /// gets SIGWINCH. Does nothing once the command has ended.
  /// (A member template: a capability member that is not one is instantiated by some compilers
  /// together with the class, whether its constraint holds or not.)
  template <class T = Transport>
  requires supports_terminal<T> ret<void> resize(TerminalSize size) {
    return Errors::finish(try_resize(size));
  }

  template <class T = Transport>
  requires supports_terminal<T>
  [[nodiscard]] sandbox::result<void> try_resize(TerminalSize size) noexcept {
    if (!handle_) return fail(error_);
    return handle_->resize(size);
  }

  /// The argv as the caller gave it.
  [[nodiscard]] const std::vector<std::string>& command() const noexcept { return command_; }

  /// The same as `result()` but never throws, whatever the error policy.
  [[nodiscard]] sandbox::result<ExecResult>
  try_result(std::optional<std::chrono::milliseconds> timeout = {}) & noexcept {
    if (!handle_) return fail(error_);
    return checked(handle_->wait(timeout));
  }

  /// `try_result` on a temporary: the output moved, as `result() &&`.
  [[nodiscard]] sandbox::result<ExecResult>
  try_result(std::optional<std::chrono::milliseconds> timeout = {}) && noexcept {
    if (!handle_) return fail(error_);
    if constexpr (taking_process<handle_type>)
      return checked(handle_->take(timeout));
    else
      return checked(handle_->wait(timeout));
  }

private:
  /// Under check, a non-zero exit becomes an errc::execution error carrying the result.
  [[nodiscard]] sandbox::result<ExecResult> checked(sandbox::result<ExecResult> r) const noexcept {
    if (!r || !check_ || r.assume_value().ok()) return r;
    const ExecResult& x = r.assume_value();
    std::string msg = "command " + detail::command_excerpt(x.command) + " failed with exit code " +
                      std::to_string(x.returncode);
    if (x.oom_killed) msg += " (killed for exceeding the sandbox's memory limit)";
    if (!x.stderr_text.empty()) {
      std::string_view tail(x.stderr_text);
      if (tail.size() > 200) tail = tail.substr(tail.size() - 200);
      while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r'))
        tail.remove_suffix(1);
      msg += ": ";
      msg += tail;
    }
    error e(errc::execution, std::move(msg));
    e.exec_result = std::make_shared<const ExecResult>(std::move(r).assume_value());
    return fail(std::move(e));
  }

  /// The error of every operation on a moved-from `Process` (the same errc as `basic_sandbox`).
  [[nodiscard]] static error moved_from() noexcept {
    return error(errc::validation, "this process object was moved from");
  }

  std::shared_ptr<Transport> transport_; // keeps the transport alive while the command runs
  // The command, or (empty) why there is none: it could not start, or this object was moved from.
  // (Not a result<handle_type>: Outcome 2.1 cannot move-assign one whose value type is trivially
  // copyable but not copy-assignable, and a process handle may be such a type.)
  std::optional<handle_type> handle_;
  sandbox::error error_;
  std::vector<std::string> command_;
  bool check_;
};

} // namespace sandbox
