// SPDX-License-Identifier: MIT
// A command started over the v1 HTTP API. The API's Exec is unary (the response comes when the
// command has ended), so the request runs on a thread owned by the handle, and `wait` waits for
// that thread. Cancelling the request (kill, a client-side deadline, destruction) shuts its
// connection down; a server that notices (sandbox/server.hpp does) kills the command.
#pragma once

#include <sandbox/detail/deadline.hpp>
#include <sandbox/detail/output_buffer.hpp>
#include <sandbox/detail/text.hpp>
#include <sandbox/result.hpp>
#include <sandbox/transport/http/detail/client.hpp>
#include <sandbox/types.hpp>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <pthread.h>

namespace sandbox::http::detail {

/// Why a request in flight was abandoned by its owner.
enum class abandon_reason { none, killed, deadline, destroyed };

/// What the request thread and the handle share.
class exec_state {
public:
  using body_type = std::function<sandbox::result<ExecResult>(exec_state&)>;

  exec_state() = default;
  exec_state(const exec_state&) = delete;
  exec_state& operator=(const exec_state&) = delete;
  ~exec_state() { abandon(abandon_reason::destroyed); }

  /// Starts `body` on a thread of its own.
  /// **Errors:** resource_exhausted (no thread could be created).
  [[nodiscard]] sandbox::result<void> start(body_type body) noexcept {
    body_ = std::move(body);
    int rc = ::pthread_create(&thread_, nullptr, &exec_state::trampoline, this);
    if (rc != 0)
      return fail(errc::resource_exhausted,
                  "cannot start a thread for the exec request: " + sandbox::detail::errno_text(rc));
    joinable_ = true;
    return success();
  }

  /// Waits until the request has an outcome or `until` passes; true when it has one.
  [[nodiscard]] bool wait_until(std::optional<std::chrono::steady_clock::time_point> until) {
    std::unique_lock lk(m_);
    if (!until) {
      cv_.wait(lk, [&] { return outcome_.has_value(); });
      return true;
    }
    return cv_.wait_until(lk, *until, [&] { return outcome_.has_value(); });
  }

  /// The outcome, once there is one.
  [[nodiscard]] std::optional<sandbox::result<ExecResult>> outcome() const {
    std::lock_guard lk(m_);
    return outcome_;
  }

  /// As `outcome`, but a success hands its output over (see `taking_process`).
  [[nodiscard]] sandbox::result<ExecResult> take_outcome() {
    std::lock_guard lk(m_);
    if (outcome_->has_value()) return sandbox::detail::take_output(outcome_->assume_value());
    return *outcome_;
  }

  /// The exit code, once the command is known to have finished.
  [[nodiscard]] std::optional<int> exit_code() const noexcept {
    std::lock_guard lk(m_);
    if (outcome_ && outcome_->has_value()) return outcome_->assume_value().returncode;
    return std::nullopt;
  }

  /// Abandons the request (its connection is shut down) and waits until its thread has ended.
  /// The first reason given is the one the outcome reports.
  void abandon(abandon_reason why) noexcept {
    {
      std::lock_guard lk(m_);
      if (reason_ == abandon_reason::none && !outcome_) reason_ = why;
    }
    if (!joinable_) return;
    // The request may be between taking a connection and connecting, where one cancel can be
    // missed: repeat it until the thread reports.
    while (!wait_until(std::chrono::steady_clock::now() + std::chrono::milliseconds(5)))
      cancel_.cancel();
    ::pthread_join(thread_, nullptr);
    joinable_ = false;
  }

  [[nodiscard]] abandon_reason reason() const noexcept {
    std::lock_guard lk(m_);
    return reason_;
  }
  [[nodiscard]] cancellation& cancel_token() noexcept { return cancel_; }

private:
  static void* trampoline(void* self) noexcept {
    auto* s = static_cast<exec_state*>(self);
    auto r = s->body_(*s);
    std::lock_guard lk(s->m_);
    s->outcome_.emplace(std::move(r));
    s->cv_.notify_all();
    return nullptr;
  }

  mutable std::mutex m_;
  std::condition_variable cv_;
  std::optional<sandbox::result<ExecResult>> outcome_;
  abandon_reason reason_ = abandon_reason::none;
  cancellation cancel_;
  body_type body_;
  pthread_t thread_{};
  bool joinable_ = false;
};

/// `http_transport::process_type`: satisfies `process_handle`, not `stdin_process`.
class exec_call {
public:
  exec_call() = default;
  exec_call(exec_call&&) noexcept = default;
  exec_call& operator=(exec_call&&) noexcept = default;

  /// `deadline`: when the command's own timeout (plus a grace for the trip) has passed and the
  /// server still has not answered, the request is abandoned and reported as a command timeout.
  exec_call(std::unique_ptr<exec_state> s, std::vector<std::string> command,
            std::optional<std::chrono::steady_clock::time_point> deadline) noexcept
      : s_(std::move(s)), command_(std::move(command)), deadline_(deadline) {}

  /// Waits for the command's result (at most `timeout`). After a success it returns the same
  /// result again at once.
  /// **Errors:** timeout (this wait; the command keeps running), command_timeout, not_running
  /// (killed before its result came), and the errors of the request.
  [[nodiscard]] sandbox::result<ExecResult>
  wait(std::optional<std::chrono::milliseconds> timeout) noexcept {
    SANDBOX_TRYV(ended(timeout));
    return *s_->outcome();
  }

  /// As `wait`, but a successful result takes the output with it (see `taking_process`).
  [[nodiscard]] sandbox::result<ExecResult>
  take(std::optional<std::chrono::milliseconds> timeout) noexcept {
    SANDBOX_TRYV(ended(timeout));
    return s_->take_outcome();
  }

  [[nodiscard]] std::optional<int> poll() noexcept { return s_ ? s_->exit_code() : std::nullopt; }

  /// The v1 API has no signal RPC: any signal abandons the request, whose connection is shut
  /// down; `sandboxd` then kills the command's process group (the hosted service cancels the
  /// call). `wait` reports errc::not_running. Killing a finished command does nothing.
  [[nodiscard]] sandbox::result<void> kill(int /*sig*/) noexcept {
    if (s_ && !s_->exit_code()) s_->abandon(abandon_reason::killed);
    return success();
  }

private:
  /// Waits until the request has its outcome (at most `timeout`).
  [[nodiscard]] sandbox::result<void> ended(std::optional<std::chrono::milliseconds> timeout) {
    using clock = std::chrono::steady_clock;
    if (!s_) return fail(errc::validation, "wait on a moved-from process");
    std::optional<clock::time_point> until;
    if (timeout) until = sandbox::detail::deadline_after(*timeout);
    if (deadline_ && (!until || *deadline_ < *until)) {
      if (!s_->wait_until(deadline_)) s_->abandon(abandon_reason::deadline);
    } else if (!s_->wait_until(until)) {
      return fail(errc::timeout, "command " + sandbox::detail::command_excerpt(command_) +
                                     " still running after " + std::to_string(timeout->count()) +
                                     " ms (it keeps running; wait again)");
    }
    return success();
  }

  std::unique_ptr<exec_state> s_;
  std::vector<std::string> command_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
};

} // namespace sandbox::http::detail
