// SPDX-License-Identifier: MIT
// Every requirement a user-provided type must meet, in one place. Each model the library ships is
// checked with static_assert right after its definition; tests/compile/archetypes.hpp holds the
// smallest model of each concept, and the library's templates are built with those alone, so a
// concept cannot promise less than the library uses. The values the concepts hand over
// (`ListFilter`, `RetryState`) are in <sandbox/types.hpp>.
#pragma once

#include <sandbox/options.hpp>
#include <sandbox/result.hpp>
#include <sandbox/types.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace sandbox {

/// A command started by a transport.
///
/// Semantics: `wait(timeout)` blocks until the command finishes (unset timeout: no limit) and
/// returns its result; on `errc::timeout` the command keeps running and `wait` may be called
/// again. After success, `wait` returns the same result again at once. `poll()` never blocks and
/// gives the exit code once known. `kill(sig)` signals the command's process group; killing a
/// finished command succeeds and does nothing. None of them throws.
template <class P>
concept process_handle = std::movable<P> &&
    requires(P& p, std::optional<std::chrono::milliseconds> t, int sig) {
  { p.wait(t) }
  noexcept->std::same_as<result<ExecResult>>;
  { p.poll() }
  noexcept->std::same_as<std::optional<int>>;
  { p.kill(sig) }
  noexcept->std::same_as<result<void>>;
};

/// A process handle that can feed the command's stdin (a transport capability).
///
/// Semantics: `write_stdin` delivers every byte or fails; `close_stdin` sends EOF and is
/// idempotent. Writing without `ExecOptions::stdin_pipe` (or `tty`) is a validation error.
template <class P>
concept stdin_process = process_handle<P> && requires(P& p, std::string_view data) {
  { p.write_stdin(data) }
  noexcept->std::same_as<result<void>>;
  { p.close_stdin() }
  noexcept->std::same_as<result<void>>;
};

/// A process handle whose command can run on a terminal (`ExecOptions::tty`; a capability).
///
/// Semantics: `resize` sets the terminal's size (the command gets SIGWINCH); on a command
/// without a terminal it is a validation error, on one that has ended it does nothing.
template <class P>
concept terminal_process = stdin_process<P> && requires(P& p, TerminalSize size) {
  { p.resize(size) }
  noexcept->std::same_as<result<void>>;
};

/// A process handle that can hand its result over instead of copying it (a capability, for a
/// caller that waits no more: `box.exec(...).result()` on a temporary).
///
/// Semantics: `take(timeout)` waits as `wait` does; once the command has ended successfully,
/// its output (the texts) moves into the returned result and the handle keeps the rest (a later
/// `wait` shows empty texts). Failures are as `wait` returns them.
template <class P>
concept taking_process = process_handle<P> &&
    requires(P& p, std::optional<std::chrono::milliseconds> t) {
  { p.take(t) }
  noexcept->std::same_as<result<ExecResult>>;
};

/// A process handle whose wait can also end when a descriptor of the caller's becomes readable
/// (a capability, for a caller with more than the command to wait for: a server that also
/// waits for its client's next message, or for its call's cancellation).
///
/// Semantics: `wait_or_wake(timeout, fd)` waits as `wait` does, and `take_or_wake(timeout, fd)`
/// as `take` does; both also return errc::timeout (the command still running) once `fd` is
/// readable. `fd` is polled, never read.
template <class P>
concept wakeable_process = taking_process<P> &&
    requires(P& p, std::optional<std::chrono::milliseconds> t, int fd) {
  { p.wait_or_wake(t, fd) }
  noexcept->std::same_as<result<ExecResult>>;
  { p.take_or_wake(t, fd) }
  noexcept->std::same_as<result<ExecResult>>;
};

/// Where sandboxes live: the local host, a remote service, or a test double.
///
/// Semantics: every operation names a sandbox by id and reports failure only through its result
/// (never throws). `create` returns once the sandbox exists (its `request_id` makes a retried
/// create idempotent). `wait(id, target, timeout)` returns once the state is `target` or later
/// (any terminal state ends the wait) and fails with `errc::timeout` otherwise; the terminal
/// states mean what `State` says (a main process that exits on its own, with any code, is
/// COMPLETED, and FAILED carries a `status_reason` when the transport knows it). `stop` is
/// idempotent and returns at a terminal state; with `missing_ok` an unknown id is a success.
/// `exec` returns as soon as the command is started (it is never retried). `release` tells the
/// transport the caller holds no more references to the id. `shared()` is the instance
/// `basic_sandbox::run` uses when given none. Safe to call from several threads at once.
template <class T>
concept transport = requires(T& t, const SandboxOptions& so, std::string_view id,
                             std::span<const std::string> argv, const ExecOptions& eo,
                             std::chrono::milliseconds d, bool flag, State s, const ListFilter& f,
                             std::string_view data) {
  typename T::process_type;
  requires process_handle<typename T::process_type>;
  { T::shared() } -> std::same_as<std::shared_ptr<T>>;
  { t.create(so, id) }
  noexcept->std::same_as<result<SandboxInfo>>;
  { t.get(id) }
  noexcept->std::same_as<result<SandboxInfo>>;
  { t.list(f) }
  noexcept->std::same_as<result<std::vector<SandboxInfo>>>;
  { t.wait(id, s, d) }
  noexcept->std::same_as<result<SandboxInfo>>;
  { t.stop(id, d, flag) }
  noexcept->std::same_as<result<SandboxInfo>>;
  { t.exec(id, argv, eo) }
  noexcept->std::same_as<result<typename T::process_type>>;
  { t.read_file(id, id) }
  noexcept->std::same_as<result<std::string>>;
  { t.write_file(id, id, data) }
  noexcept->std::same_as<result<void>>;
  { t.release(id) }
  noexcept;
};

/// Whether a transport's commands accept stdin (checked at compile time by `Process`).
template <class T>
inline constexpr bool supports_stdin = stdin_process<typename T::process_type>;

/// Whether a transport's commands can run on a terminal (checked at compile time by `Process`).
template <class T>
inline constexpr bool supports_terminal = terminal_process<typename T::process_type>;

/// A transport that keeps each sandbox's log (a capability, checked by `basic_sandbox::logs`).
///
/// Semantics: `logs(id, offset, wait)` returns what is kept of the log from `offset` on (from
/// the oldest kept byte when `offset` is older); when there is nothing after `offset` yet and
/// the log is not complete, it first waits up to `wait` for more.
template <class T>
concept log_transport = transport<T> &&
    requires(T& t, std::string_view id, std::uint64_t offset, std::chrono::milliseconds d) {
  { t.logs(id, offset, d) }
  noexcept->std::same_as<result<LogRead>>;
};

/// Decides whether and when to retry a failed operation that is safe to repeat.
///
/// Semantics: pure (same inputs, same answer; randomness comes in through `RetryState::random`);
/// returns the delay before the next attempt, or nothing to give up. Only errors with
/// `error::transient()` should be retried; a server's retry delay should be honoured.
template <class P>
concept retry_policy = std::default_initializable<P> && std::copy_constructible<P> &&
    requires(const P& p, const error& e, const RetryState& s) {
  { p.next_delay(e, s) }
  noexcept->std::same_as<std::optional<std::chrono::milliseconds>>;
};

/// Turns the library's internal `result<T>` into what the caller receives.
///
/// Semantics: `return_type<T>` is the public type, for any `T` the library returns (including
/// `void`); `finish` converts (and for a throwing policy, throws on error). `throws` is a
/// compile-time constant saying whether errors leave as exceptions: `basic_sandbox` and
/// `Process` branch on it with `if constexpr`. With exceptions disabled, the throwing policy does
/// not satisfy this concept, so choosing it fails to compile.
template <class P>
concept error_policy = requires(result<int> r, result<void> v) {
  typename P::template return_type<int>;
  typename P::template return_type<void>;
  requires std::same_as < std::remove_cv_t<decltype(P::throws)>,
  bool > ;
  typename std::bool_constant<P::throws>; // a constant expression
  { P::finish(std::move(r)) } -> std::same_as<typename P::template return_type<int>>;
  { P::finish(std::move(v)) } -> std::same_as<typename P::template return_type<void>>;
};

/// Whether a non-zero exit code is an error (`check`) or just a result (`no_check`).
///
/// Semantics: `enabled` is a compile-time constant; `exec<P>` makes a non-zero exit an
/// `errc::execution` error when it is true (as `ExecOptions::check` does at run time).
template <class P>
concept check_policy = requires {
  requires std::same_as < std::remove_cv_t<decltype(P::enabled)>,
  bool > ;
  typename std::bool_constant<P::enabled>; // a constant expression
};

} // namespace sandbox
