// SPDX-License-Identifier: MIT
// basic_sandbox<Transport, Retry, Errors>: one sandbox, its lifecycle and its commands.
#pragma once

#include <sandbox/concepts.hpp>
#include <sandbox/detail/deadline.hpp>
#include <sandbox/detail/random.hpp>
#include <sandbox/detail/retry_loop.hpp>
#include <sandbox/detail/validate.hpp>
#include <sandbox/options.hpp>
#include <sandbox/policy/check.hpp>
#include <sandbox/policy/error.hpp>
#include <sandbox/policy/retry.hpp>
#include <sandbox/process.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace sandbox {

/// A sandbox on `Transport`. Transient failures of operations that are safe to repeat are retried
/// under `Retry`; failures reach the caller as `Errors` decides (exceptions or `result<T>`).
/// Move-only. A sandbox leaving scope is stopped.
///
/// Every operation that can fail has a `try_` twin taking the same arguments that returns
/// `result<T>` and never throws, whatever `Errors` is: `try_run`, `try_list`, `try_state`,
/// `try_wait`, `try_wait_until_complete`, `try_exec`, `try_stop`, `try_read_file`,
/// `try_write_file` (and on `Process`: `try_result`, `try_wait`, `try_kill`, `try_write_stdin`,
/// `try_close_stdin`). Every operation on a moved-from sandbox fails with `errc::validation`.
///
///     auto box = sandbox::Sandbox::run();                 // keep-alive
///     auto r = box.exec({"uname", "-n"}).result();        // r.stdout_text: the sandbox id
template <transport Transport, retry_policy Retry = exponential_backoff<>,
          error_policy Errors = return_errors>
class basic_sandbox {
  template <class T>
  using ret = typename Errors::template return_type<T>;

public:
  using transport_type = Transport;
  template <check_policy Check = no_check>
  using process = Process<Transport, Errors, Check>;

  /// Grace period of `stop()` and of the stop when a sandbox leaves scope.
  static constexpr std::chrono::seconds default_grace{10};

  /// Starts a sandbox (keep-alive unless `options.command` is set) and returns once it exists.
  /// **Errors:** validation, unavailable, resource_exhausted, failed, unsupported.
  [[nodiscard]] static ret<basic_sandbox> run(SandboxOptions options = {},
                                              std::shared_ptr<Transport> t = nullptr) {
    return Errors::finish(try_run(std::move(options), std::move(t)));
  }

  /// Starts a sandbox whose main process is `command`.
  ///
  ///     auto job = sandbox::Sandbox::run({"sh", "-c", "exit 3"});
  ///
  /// Both forms are templates (of nothing) so that a designated initializer is options:
  /// `run({.env = {{"K", "V"}}})`. GCC 12 also reads such a list as a list of strings (ignoring
  /// the designator) and found the call ambiguous, for half of SandboxOptions' members; between
  /// two equal matches, the form that is not a template wins.
  template <class = void>
  [[nodiscard]] static ret<basic_sandbox> run(std::initializer_list<std::string> command,
                                              SandboxOptions options = {}) {
    options.command.assign(command.begin(), command.end());
    return run(std::move(options));
  }
  template <class = void>
  [[nodiscard]] static ret<basic_sandbox> run(std::vector<std::string> command,
                                              SandboxOptions options = {}) {
    options.command = std::move(command);
    return run(std::move(options));
  }

  /// The never-throwing form of `run`.
  [[nodiscard]] static result<basic_sandbox>
  try_run(SandboxOptions options = {}, std::shared_ptr<Transport> t = nullptr) noexcept {
    if (!t) t = Transport::shared();
    const std::string request_id = detail::uuid4(); // one per sandbox, reused by every retry
    auto info = detail::with_retry(Retry{}, [&] { return t->create(options, request_id); });
    if (!info) return std::move(info).as_failure();
    return basic_sandbox(std::move(t), std::move(info).assume_value());
  }
  template <class = void>
  [[nodiscard]] static result<basic_sandbox> try_run(std::initializer_list<std::string> command,
                                                     SandboxOptions options = {}) noexcept {
    options.command.assign(command.begin(), command.end());
    return try_run(std::move(options));
  }
  template <class = void>
  [[nodiscard]] static result<basic_sandbox> try_run(std::vector<std::string> command,
                                                     SandboxOptions options = {}) noexcept {
    options.command = std::move(command);
    return try_run(std::move(options));
  }

  /// The sandboxes the transport knows (for the local transport: those of this process).
  [[nodiscard]] static ret<std::vector<SandboxInfo>> list(const ListFilter& filter = {},
                                                          std::shared_ptr<Transport> t = nullptr) {
    return Errors::finish(try_list(filter, std::move(t)));
  }

  [[nodiscard]] static result<std::vector<SandboxInfo>>
  try_list(const ListFilter& filter = {}, std::shared_ptr<Transport> t = nullptr) noexcept {
    if (!t) t = Transport::shared();
    return detail::with_retry(Retry{}, [&] { return t->list(filter); });
  }

  basic_sandbox(basic_sandbox&& o) noexcept
      : transport_(std::move(o.transport_)), info_(std::move(o.info_)),
        stopped_by_us_(o.stopped_by_us_) {
    o.info_.id.clear();
  }
  basic_sandbox& operator=(basic_sandbox&& o) noexcept {
    if (this != &o) {
      close();
      transport_ = std::move(o.transport_);
      info_ = std::move(o.info_);
      stopped_by_us_ = o.stopped_by_us_;
      o.info_.id.clear();
    }
    return *this;
  }
  basic_sandbox(const basic_sandbox&) = delete;
  basic_sandbox& operator=(const basic_sandbox&) = delete;
  ~basic_sandbox() { close(); }

  [[nodiscard]] const std::string& id() const noexcept { return info_.id; }

  /// Exit code of the main process once the sandbox is known to have ended (128 + the signal
  /// number when a signal ended it; a sandbox stopped while its main process runs reports the
  /// stopping signal's, 143 or 137, when it is known); empty before and when the main process
  /// never started.
  [[nodiscard]] std::optional<int> returncode() const noexcept { return info_.returncode; }

  /// True once the main process is known to have been killed for exceeding the sandbox's
  /// memory limit (`Resources::memory_bytes`); its returncode is then 137.
  [[nodiscard]] bool oom_killed() const noexcept { return info_.oom_killed; }

  /// Why the sandbox is in its state, when the transport says: for FAILED, what could not start
  /// or what killed it. Empty otherwise.
  [[nodiscard]] const std::string& status_reason() const noexcept { return info_.status_reason; }

  /// The current state, asked of the transport.
  [[nodiscard]] ret<State> state() { return Errors::finish(try_state()); }

  [[nodiscard]] result<State> try_state() noexcept {
    SANDBOX_TRYV(usable());
    SANDBOX_TRY(i, detail::with_retry(Retry{}, [&] { return transport_->get(info_.id); }));
    update(i);
    return info_.state;
  }

  /// Waits until the sandbox is RUNNING. COMPLETED (it ran and finished already) is fine.
  /// **Errors:** failed, terminated, timeout.
  ret<void> wait(std::chrono::milliseconds timeout = std::chrono::minutes(5)) {
    return Errors::finish(try_wait(timeout));
  }

  [[nodiscard]] result<void>
  try_wait(std::chrono::milliseconds timeout = std::chrono::minutes(5)) noexcept {
    return wait_for(State::RUNNING, timeout, true);
  }

  /// Waits until COMPLETED, FAILED or TERMINATED. The main process exiting, with any code or by
  /// a signal from inside, is COMPLETED and returns normally: read `returncode()`.
  /// **Errors:** failed (FAILED: the main command could not start, or the system killed the
  /// sandbox, e.g. for its memory limit (`oom_killed()`); the message says which), terminated
  /// (stopped, when `raise_on_termination`), timeout (still running).
  ///
  ///     job.wait_until_complete(3600s);
  ///     if (*job.returncode() != 0) …  // the job ran and failed: not an error of the sandbox
  ret<void> wait_until_complete(std::chrono::milliseconds timeout = std::chrono::hours(24 * 365),
                                bool raise_on_termination = true) {
    return Errors::finish(try_wait_until_complete(timeout, raise_on_termination));
  }

  [[nodiscard]] result<void>
  try_wait_until_complete(std::chrono::milliseconds timeout = std::chrono::hours(24 * 365),
                          bool raise_on_termination = true) noexcept {
    return wait_for(State::COMPLETED, timeout, raise_on_termination);
  }

  /// Starts `argv` in the sandbox and returns at once; `Process::result()` waits for it.
  /// With the throwing policy, a command that cannot start (empty argv, relative cwd, sandbox
  /// not running) throws here; otherwise the error is what `result()` returns.
  template <check_policy Check = no_check>
  [[nodiscard]] process<Check> exec(std::vector<std::string> argv, ExecOptions options = {}) {
    auto h = start(argv, options);
    if constexpr (Errors::throws) {
      if (!h) Errors::finish(result<void>(h.assume_error()));
    }
    return process<Check>(transport_, std::move(h), std::move(argv), options.check);
  }

  /// Like `exec`, but a command that cannot start is the error of the returned result, whatever
  /// `Errors` is; never throws. (The `Process` it returns still reports through `Errors`.)
  template <check_policy Check = no_check>
  [[nodiscard]] result<process<Check>> try_exec(std::vector<std::string> argv,
                                                ExecOptions options = {}) noexcept {
    auto h = start(argv, options);
    if (!h) return std::move(h).as_failure();
    return process<Check>(transport_, std::move(h), std::move(argv), options.check);
  }

  /// SIGTERM to everything in the sandbox, `grace`, then SIGKILL; returns once nothing of it is
  /// left. Idempotent; `missing_ok` makes an unknown sandbox a success.
  ret<void> stop(std::chrono::milliseconds grace = default_grace, bool missing_ok = false) {
    return Errors::finish(try_stop(grace, missing_ok));
  }

  [[nodiscard]] result<void> try_stop(std::chrono::milliseconds grace = default_grace,
                                      bool missing_ok = false) noexcept {
    SANDBOX_TRYV(usable());
    if (is_terminal(info_.state) && stopped_by_us_) return success();
    stopped_by_us_ = true;
    SANDBOX_TRY(i, transport_->stop(info_.id, grace, missing_ok));
    update(i);
    return success();
  }

  /// The whole content of `path` in the sandbox.
  /// **Errors:** file_not_found, file_is_directory, file_permission, file_too_large, file_io.
  [[nodiscard]] ret<std::string> read_file(std::string_view path) {
    return Errors::finish(try_read_file(path));
  }

  [[nodiscard]] result<std::string> try_read_file(std::string_view path) noexcept {
    SANDBOX_TRYV(usable());
    return detail::with_retry(Retry{}, [&] { return transport_->read_file(info_.id, path); });
  }

  /// Creates or replaces `path` in the sandbox with `data`.
  ret<void> write_file(std::string_view path, std::string_view data) {
    return Errors::finish(try_write_file(path, data));
  }

  [[nodiscard]] result<void> try_write_file(std::string_view path, std::string_view data) noexcept {
    SANDBOX_TRYV(usable());
    return transport_->write_file(info_.id, path, data);
  }

  /// What the sandbox's main process has written to stdout and stderr, as far as the transport
  /// keeps it (locally: the last 1 MiB). Only with a transport that keeps logs (`log_transport`).
  // Templates, so that an explicit instantiation of the class leaves them out for a transport
  // without logs (clang 14 instantiates members whose constraints fail).
  template <class T = Transport>
  requires log_transport<T>
  [[nodiscard]] ret<std::string> logs() { return Errors::finish(try_logs()); }

  template <class T = Transport>
  requires log_transport<T>
  [[nodiscard]] result<std::string> try_logs() noexcept {
    SANDBOX_TRYV(usable());
    SANDBOX_TRY(read, transport_->logs(info_.id, 0, std::chrono::milliseconds(0)));
    std::string out;
    for (const auto& c : read.chunks)
      out += c.data;
    return out;
  }

  /// Calls `on_output(std::string_view)` with the sandbox's log as it is written, from the
  /// start of what is kept, until the main process's output ends (the sandbox ends): a `tail -f`.
  /// **Errors:** timeout (`timeout` passed first), and the transport's.
  template <class OnOutput>
  ret<void> follow_logs(OnOutput&& on_output, std::optional<std::chrono::milliseconds> timeout =
                                                  std::nullopt) requires log_transport<Transport> {
    return Errors::finish(try_follow_logs(std::forward<OnOutput>(on_output), timeout));
  }

  template <class OnOutput>
  [[nodiscard]] result<void>
  try_follow_logs(OnOutput&& on_output,
                  std::optional<std::chrono::milliseconds> timeout = std::nullopt) noexcept requires
      log_transport<Transport> {
    static_assert(std::is_nothrow_invocable_v<OnOutput&, std::string_view>,
                  "sandbox: follow_logs callbacks must be noexcept: they are called inside a "
                  "noexcept loop");
    SANDBOX_TRYV(usable());
    using clock = std::chrono::steady_clock;
    std::optional<clock::time_point> deadline;
    if (timeout) deadline = detail::deadline_after(*timeout);
    std::uint64_t offset = 0;
    for (;;) {
      auto wait = std::chrono::milliseconds(1000);
      if (deadline) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - clock::now());
        if (left.count() <= 0)
          return fail(errc::timeout, "the log of sandbox " + info_.id + " did not end in time");
        wait = std::min(wait, left);
      }
      SANDBOX_TRY(read, transport_->logs(info_.id, offset, wait));
      for (const auto& c : read.chunks)
        on_output(std::string_view(c.data));
      offset = std::max(offset, read.end_offset);
      if (read.complete && read.end_offset <= offset) return success();
    }
  }

  /// The transport this sandbox lives on. Precondition: not moved from.
  [[nodiscard]] Transport& transport() const noexcept { return *transport_; }

private:
  basic_sandbox(std::shared_ptr<Transport> t, SandboxInfo info) noexcept
      : transport_(std::move(t)), info_(std::move(info)) {}

  /// A moved-from sandbox has no transport: every operation on it is an error, not a crash.
  /// A moved-from object is the caller's mistake, not a state of the sandbox (which lives on in
  /// the object it was moved to): errc::validation, as for `Process`.
  [[nodiscard]] static error moved_from() noexcept {
    return error(errc::validation, "this sandbox object was moved from");
  }
  [[nodiscard]] result<void> usable() const noexcept {
    if (!transport_) return fail(moved_from());
    return success();
  }

  void update(const SandboxInfo& i) noexcept {
    info_.state = i.state;
    if (i.returncode) info_.returncode = i.returncode;
    if (i.oom_killed) info_.oom_killed = true;
    if (!i.status_reason.empty()) info_.status_reason = i.status_reason;
  }

  [[nodiscard]] result<typename Transport::process_type>
  start(const std::vector<std::string>& argv, const ExecOptions& options) noexcept {
    if (!transport_) return fail(moved_from());
    return transport_->exec(info_.id, argv, options);
  }

  [[nodiscard]] result<void> wait_for(State target, std::chrono::milliseconds timeout,
                                      bool raise_on_termination) noexcept {
    SANDBOX_TRYV(usable());
    SANDBOX_TRY(i, transport_->wait(info_.id, target, timeout));
    update(i);
    switch (i.state) {
    case State::FAILED: {
      std::string why = info_.status_reason;
      if (why.empty() && info_.oom_killed) why = "killed for exceeding its memory limit";
      return fail(errc::failed,
                  "sandbox " + info_.id + " failed" + (why.empty() ? "" : ": ") + why);
    }
    case State::TERMINATED:
      if (!raise_on_termination && is_terminal(target)) return success();
      return fail(errc::terminated, "sandbox " + info_.id + " was terminated");
    default: return success();
    }
  }

  void close() noexcept {
    if (!transport_ || info_.id.empty()) return;
    if (!is_terminal(info_.state) || !stopped_by_us_)
      (void)transport_->stop(info_.id, default_grace, true);
    transport_->release(info_.id);
  }

  std::shared_ptr<Transport> transport_;
  SandboxInfo info_;
  bool stopped_by_us_ = false;
};

} // namespace sandbox
