// SPDX-License-Identifier: MIT
// What every transport to the v1 SandboxService does the same whatever carries its calls (the
// REST/JSON mapping, gRPC): options and credentials from the environment, the options → wire
// mapping, the status polls of `wait` and `stop`, a sandbox's remembered state, exec's wait for
// a RUNNING sandbox, list paging and the retries, all here once. A channel (http_transport.hpp,
// grpc_transport.hpp) carries each call.
#pragma once

#include <sandbox/concepts.hpp>
#include <sandbox/detail/deadline.hpp>
#include <sandbox/detail/retry_loop.hpp>
#include <sandbox/detail/text.hpp>
#include <sandbox/detail/validate.hpp>
#include <sandbox/policy/retry.hpp>
#include <sandbox/transport/http/defaults.hpp>
#include <sandbox/transport/http/mapping.hpp>
#include <sandbox/transport/http/wire.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace sandbox {

/// Where and how a remote transport connects. Empty strings are filled by `from_env`.
struct remote_options {
  /// `https://host[:port]` (no path). Empty: `CWSANDBOX_BASE_URL`, else
  /// `https://api.cwsandbox.com`. Plain `http://` only to a loopback host unless
  /// `allow_insecure_http`.
  std::string base_url{};
  /// Sent as `Authorization: Bearer <key>`. Empty: `CWSANDBOX_API_KEY`.
  std::string api_key{};
  /// W&B mode, used when there is no `api_key`: `x-wandb-api-key` (`WANDB_API_KEY`), with
  /// `x-entity-id` (`WANDB_ENTITY`, else `WANDB_ENTITY_NAME`) and `x-project-name`
  /// (`WANDB_PROJECT`).
  std::string wandb_api_key{};
  std::string wandb_entity{};
  std::string wandb_project{};

  std::chrono::milliseconds connect_timeout{10'000};
  /// Longest wait for a response to one request (a status poll, a file, a create).
  std::chrono::milliseconds read_timeout{15'000};
  std::chrono::milliseconds write_timeout{30'000};
  /// How long `exec` waits for a sandbox that is not RUNNING yet.
  std::chrono::milliseconds start_timeout{300'000};
  /// Added to `ExecOptions::timeout` before the client gives up on a server that has not
  /// enforced the timeout itself (the trip and the kill take time).
  std::chrono::milliseconds exec_timeout_grace{5'000};
  /// Longest wait for the response of an exec without `ExecOptions::timeout`.
  std::chrono::milliseconds exec_read_timeout{24 * 3'600'000};
  /// After the grace period of `stop`, how long to keep polling for a terminal state.
  std::chrono::milliseconds stop_timeout{60'000};
  /// Status polls: first interval, growth in percent per poll, longest interval.
  std::chrono::milliseconds poll_initial{200};
  unsigned poll_factor_percent = 150;
  std::chrono::milliseconds poll_max{2'000};
  /// A COMPLETED status without an exit code is asked again this many times, this far apart,
  /// before it is kept without one (the service reports exit codes in batches); not after this
  /// client's own stop.
  unsigned exit_code_grace_polls = 2;
  std::chrono::milliseconds exit_code_grace_interval{2'000};
  /// Largest response accepted (an exec with a larger `max_output_bytes` raises it).
  std::size_t max_response_bytes = std::size_t{100} << 20;
  /// Keep-alive connections kept open between requests (REST).
  std::size_t max_idle_connections = 8;
  /// Image of a sandbox whose options name none.
  std::string default_image{http::default_image};
  /// PEM file of trusted CAs; empty: the system's trust store.
  std::string ca_cert_path{};
  /// Allow `http://` to hosts other than loopback (credentials then travel in clear).
  bool allow_insecure_http = false;

  /// Default options with the base URL and credentials of the environment.
  [[nodiscard]] static remote_options from_env() { return from_env(remote_options()); }

  /// `o` with its empty base URL and credentials taken from the environment.
  [[nodiscard]] static remote_options from_env(remote_options o) {
    auto env = [](const char* name) {
      const char* v = std::getenv(name);
      return std::string(v ? v : "");
    };
    if (o.base_url.empty()) o.base_url = env("CWSANDBOX_BASE_URL");
    if (o.base_url.empty()) o.base_url = std::string(http::default_base_url);
    if (o.api_key.empty()) o.api_key = env("CWSANDBOX_API_KEY");
    if (o.wandb_api_key.empty()) o.wandb_api_key = env("WANDB_API_KEY");
    if (o.wandb_entity.empty()) o.wandb_entity = env("WANDB_ENTITY");
    if (o.wandb_entity.empty()) o.wandb_entity = env("WANDB_ENTITY_NAME");
    if (o.wandb_project.empty()) o.wandb_project = env("WANDB_PROJECT");
    return o;
  }

  /// Why `headers` cannot be sent (a value with a line break or NUL), if they cannot. Never
  /// echoes the value: it may be a credential.
  [[nodiscard]] static std::optional<error>
  header_error(const std::vector<std::pair<std::string, std::string>>& headers) {
    for (const auto& [name, value] : headers)
      if (value.find_first_of("\r\n") != std::string::npos || value.find('\0') != value.npos)
        return error(errc::validation, "the value of the " + name +
                                           " header (from the transport's options or the "
                                           "environment) contains a line break or NUL");
    return std::nullopt;
  }

  /// Why a timeout cannot be used (zero or negative: no call could ever be made), if one cannot.
  [[nodiscard]] std::optional<error> timeout_error() const {
    for (auto [name, t] :
         {std::pair{"connect_timeout", connect_timeout}, std::pair{"read_timeout", read_timeout},
          std::pair{"write_timeout", write_timeout}})
      if (t.count() <= 0)
        return error(errc::validation, std::string(name) + " is " + std::to_string(t.count()) +
                                           " ms: it must be positive");
    return std::nullopt;
  }

  /// The credential headers: `authorization: Bearer`, or the W&B ones.
  [[nodiscard]] std::vector<std::pair<std::string, std::string>> auth_headers() const {
    std::vector<std::pair<std::string, std::string>> h;
    if (!api_key.empty()) {
      h.emplace_back("authorization", "Bearer " + api_key);
    } else if (!wandb_api_key.empty()) {
      h.emplace_back("x-wandb-api-key", wandb_api_key);
      if (!wandb_entity.empty()) h.emplace_back("x-entity-id", wandb_entity);
      if (!wandb_project.empty()) h.emplace_back("x-project-name", wandb_project);
    }
    return h;
  }
};

/// The options of the REST transport (the same fields: one environment, one set of defaults).
using http_options = remote_options;

/// A transport to the v1 SandboxService whose calls `Channel` carries (see http_transport.hpp,
/// grpc_transport.hpp). A channel is made from `remote_options`, reports a configuration error
/// through `config()`, and offers, each `noexcept` and naming the call in its errors by `what`:
/// `create`, `get` (with a read timeout), `list`, `remove` (DeleteSandbox, with a read
/// timeout), `read_file`, `write_file` on the wire messages; `check_exec(options, what)`, which
/// refuses what it cannot carry before anything is sent; and `exec(id, argv, options, retry,
/// what)`, which starts a validated command in a RUNNING sandbox as its `process_type`.
///
/// `Retry` is the policy of the operations this transport repeats on its own: the status polls
/// of `wait` and `stop`, DeleteSandbox, and connecting for an exec (an exec is never repeated
/// once it may have reached the server). It is a template parameter, like the sandbox's, so that
/// a build picks its budget once and the polls cost no virtual call or allocation; the single
/// requests (create, get, list, read_file) are repeated by `basic_sandbox` under its own `Retry`,
/// not here, so nothing is retried twice over. Thread-safe.
template <class Channel, retry_policy Retry = exponential_backoff<>>
class basic_remote_transport {
public:
  using process_type = typename Channel::process_type;
  using retry_type = Retry;
  using channel_type = Channel;

  /// A transport for `o` (see `remote_options::from_env`). A bad base URL or credential is
  /// reported by every operation (errc::validation); `make` reports it at once.
  explicit basic_remote_transport(remote_options o = remote_options::from_env()) noexcept
      : o_(std::move(o)), ch_(o_) {}

  /// A transport for `o`, or the error that makes `o` unusable.
  /// **Errors:** validation (bad base URL, a credential with a line break, a timeout that is not
  /// positive).
  [[nodiscard]] static result<std::shared_ptr<basic_remote_transport>>
  make(remote_options o = remote_options::from_env()) noexcept {
    auto t = std::make_shared<basic_remote_transport>(std::move(o));
    if (auto e = t->ch_.config()) return fail(*e);
    return t;
  }

  /// The instance `basic_sandbox::run` uses when given none: configured from the environment.
  [[nodiscard]] static std::shared_ptr<basic_remote_transport> shared() {
    static const auto instance =
        std::make_shared<basic_remote_transport>(remote_options::from_env());
    return instance;
  }

  [[nodiscard]] const remote_options& options() const noexcept { return o_; }

  /// The channel, for what only it offers (a gRPC channel's logs).
  [[nodiscard]] Channel& channel() noexcept { return ch_; }

  /// CreateSandbox; returns once the service has accepted it (the sandbox may still be
  /// PENDING or CREATING). `request_id` makes a repeated create return the same sandbox.
  /// **Errors:** validation, unsupported (options the API has no field for), authentication,
  /// unavailable, resource_exhausted, timeout, and errors the service reports.
  [[nodiscard]] result<SandboxInfo> create(const SandboxOptions& o,
                                           std::string_view request_id) noexcept {
    SANDBOX_TRYV(ready());
    SANDBOX_TRY(spec, http::spec_of(o, o_.default_image));
    http::wire::CreateSandboxRequest rq;
    rq.sandbox.emplace().spec = std::move(spec);
    rq.request_id = std::string(request_id);
    SANDBOX_TRY(sb, ch_.create(rq, "CreateSandbox"));
    if (sb.sandbox_id.empty())
      return fail(errc::protocol, "CreateSandbox: the response has no sandbox id");
    return remember(http::info_of(sb));
  }

  /// GetSandbox.
  /// **Errors:** not_found, authentication, unavailable, timeout, protocol.
  [[nodiscard]] result<SandboxInfo> get(std::string_view id) noexcept {
    SANDBOX_TRYV(ready());
    return get_once(id, o_.read_timeout);
  }

  /// ListSandboxes, every page (at most 100).
  /// **Errors:** authentication, unavailable, timeout, protocol.
  [[nodiscard]] result<std::vector<SandboxInfo>> list(const ListFilter& f) noexcept {
    SANDBOX_TRYV(ready());
    http::wire::ListSandboxesRequest rq;
    rq.page_size = 100;
    rq.tags = f.tags;
    if (f.state) rq.state = http::wire::to_wire(*f.state);
    rq.show_terminated = f.show_terminated;
    std::vector<SandboxInfo> out;
    for (int page = 0; page < 100; ++page) {
      SANDBOX_TRY(r, ch_.list(rq, "ListSandboxes"));
      for (const auto& sb : r.sandboxes)
        out.push_back(http::info_of(sb));
      if (r.next_page_token.empty()) return out;
      if (r.next_page_token == rq.page_token)
        return fail(errc::protocol, "ListSandboxes: the service returned the same page token "
                                    "twice");
      rq.page_token = std::move(r.next_page_token);
    }
    return fail(errc::protocol, "ListSandboxes: more than 100 pages");
  }

  /// Polls GetSandbox (0.2 s, ×1.5, at most 2 s apart) until the state is `target` or later:
  /// RUNNING (or PAUSED, TERMINATING) for RUNNING; any terminal state ends every wait. Transient
  /// errors are retried under `Retry` within `timeout`. A COMPLETED status without an exit code
  /// is polled again a few times (`exit_code_grace_polls`) unless this client stopped it.
  /// **Errors:** timeout, not_found, and non-transient request errors.
  [[nodiscard]] result<SandboxInfo> wait(std::string_view id, State target,
                                         std::chrono::milliseconds timeout) noexcept {
    SANDBOX_TRYV(ready());
    return poll_until(id, target, sandbox::detail::deadline_after(timeout), false);
  }

  /// DeleteSandbox (grace rounded up to whole seconds), then polls until a terminal state.
  /// Idempotent; with `missing_ok` an unknown sandbox is a success (TERMINATED).
  /// **Errors:** not_found (without `missing_ok`), timeout, authentication, unavailable.
  [[nodiscard]] result<SandboxInfo> stop(std::string_view id, std::chrono::milliseconds grace,
                                         bool missing_ok) noexcept {
    SANDBOX_TRYV(ready());
    mark_stopping(id);
    std::int64_t secs = (std::max<std::int64_t>(grace.count(), 0) + 999) / 1000;
    secs = std::min<std::int64_t>(secs, std::numeric_limits<std::int32_t>::max());
    auto deadline = sandbox::detail::deadline_after(grace + o_.stop_timeout);
    http::wire::DeleteSandboxRequest rq;
    rq.sandbox_id = std::string(id);
    rq.grace_period_seconds = static_cast<std::int32_t>(secs);
    rq.allow_missing = missing_ok;
    // The server may hold the response until the sandbox has stopped.
    auto r = retrying(deadline, [&] {
      return ch_.remove(rq, o_.read_timeout + grace, "DeleteSandbox " + std::string(id));
    });
    if (!r) {
      if (missing_ok && r.assume_error().is(errc::not_found)) return gone(id);
      if (!r.assume_error().is(errc::not_found)) mark_stopping(id, false); // it may still run
      return std::move(r).as_failure();
    }
    if (!r.assume_value().sandbox) {
      if (missing_ok) return gone(id);
    } else if (is_terminal(http::wire::to_state(
                   r.assume_value().sandbox->status.value_or(http::wire::SandboxStatus{}).state))) {
      SandboxInfo i = http::info_of(*r.assume_value().sandbox);
      if (i.id.empty()) i.id = std::string(id);
      return remember(std::move(i));
    }
    return poll_until(id, State::TERMINATED, deadline, true);
  }

  /// Exec: waits for a sandbox not yet seen RUNNING, then starts the command as the channel
  /// does (see its `exec`). **Errors:** validation, unsupported (what the channel cannot
  /// carry), not_running, and those of the channel.
  [[nodiscard]] result<process_type> exec(std::string_view id, std::span<const std::string> argv,
                                          const ExecOptions& o) noexcept {
    SANDBOX_TRYV(ready());
    SANDBOX_TRYV(sandbox::detail::validate_exec(argv, o));
    std::string what =
        "exec " + sandbox::detail::command_excerpt(argv) + " in sandbox " + std::string(id);
    SANDBOX_TRYV(ch_.check_exec(o, what));
    SANDBOX_TRYV(ensure_running(id, what));
    return ch_.exec(id, argv, o, retry_, std::move(what));
  }

  /// ReadFile.
  /// **Errors:** file_not_found, file_is_directory, file_permission, file_too_large, file_io,
  /// not_found, and request errors.
  [[nodiscard]] result<std::string> read_file(std::string_view id, std::string_view path) noexcept {
    SANDBOX_TRYV(ready());
    http::wire::ReadFileRequest rq;
    rq.sandbox_id = std::string(id);
    rq.path = std::string(path);
    SANDBOX_TRY(
        r, ch_.read_file(rq, "ReadFile " + std::string(path) + " in sandbox " + std::string(id)));
    return std::move(r.content);
  }

  /// WriteFile (creates or replaces the file).
  /// **Errors:** file_not_found (missing parent), file_is_directory, file_permission,
  /// file_too_large, not_found, and request errors.
  [[nodiscard]] result<void> write_file(std::string_view id, std::string_view path,
                                        std::string_view data) noexcept {
    SANDBOX_TRYV(ready());
    http::wire::WriteFileRequest rq;
    rq.sandbox_id = std::string(id);
    rq.path = std::string(path);
    rq.content = std::string(data);
    return ch_.write_file(rq, "WriteFile " + std::string(path) + " in sandbox " + std::string(id));
  }

  /// The sandbox's log from `offset` on (see `log_transport`), where the channel carries logs.
  template <class C = Channel>
  requires requires(C& c, std::string_view id, std::uint64_t offset, std::chrono::milliseconds d) {
    { c.logs(id, offset, d) }
    noexcept->std::same_as<result<LogRead>>;
  }
  [[nodiscard]] result<LogRead> logs(std::string_view id, std::uint64_t offset,
                                     std::chrono::milliseconds wait) noexcept {
    SANDBOX_TRYV(ready());
    return ch_.logs(id, offset, wait);
  }

  /// Forgets what this transport remembers of `id` (nothing is sent).
  void release(std::string_view id) noexcept {
    if constexpr (requires { ch_.forget(id); }) ch_.forget(id);
    std::lock_guard lk(m_);
    if (auto it = known_.find(id); it != known_.end()) known_.erase(it);
  }

protected:
  using clock = std::chrono::steady_clock;

  struct known {
    State state = State::UNSPECIFIED;
    bool stopping = false;
  };

  [[nodiscard]] result<void> ready() const noexcept {
    if (auto e = ch_.config()) return fail(*e);
    return success();
  }

  [[nodiscard]] SandboxInfo remember(SandboxInfo i) {
    std::lock_guard lk(m_);
    known_[i.id].state = i.state;
    return i;
  }
  void mark_stopping(std::string_view id, bool stopping = true) {
    std::lock_guard lk(m_);
    known_[std::string(id)].stopping = stopping;
  }
  [[nodiscard]] std::optional<known> recall(std::string_view id) const {
    std::lock_guard lk(m_);
    auto it = known_.find(id);
    if (it == known_.end()) return std::nullopt;
    return it->second;
  }
  [[nodiscard]] SandboxInfo gone(std::string_view id) {
    return remember(SandboxInfo{std::string(id), State::TERMINATED, {}, {}});
  }

  [[nodiscard]] static bool running_like(State s) noexcept {
    return s == State::RUNNING || s == State::PAUSED;
  }

  /// Exec needs a RUNNING sandbox: a state seen RUNNING goes straight on (no extra request on
  /// the hot path); one never seen RUNNING is waited for, as the anchor clients do.
  [[nodiscard]] result<void> ensure_running(std::string_view id, const std::string& what) noexcept {
    auto k = recall(id);
    if (k && running_like(k->state)) return success();
    if (k && (is_terminal(k->state) || k->stopping))
      return fail(errc::not_running,
                  what + ": the sandbox is " +
                      std::string(k->stopping && !is_terminal(k->state) ? "being stopped"
                                                                        : to_string(k->state)));
    SANDBOX_TRY(i, wait(id, State::RUNNING, o_.start_timeout));
    if (!running_like(i.state))
      return fail(errc::not_running, what + ": the sandbox is " + std::string(to_string(i.state)));
    return success();
  }

  [[nodiscard]] result<SandboxInfo> get_once(std::string_view id,
                                             std::chrono::milliseconds read_timeout) noexcept {
    http::wire::GetSandboxRequest rq;
    rq.sandbox_id = std::string(id);
    SANDBOX_TRY(sb, ch_.get(rq, read_timeout, "GetSandbox " + std::string(id)));
    SandboxInfo i = http::info_of(sb);
    if (i.id.empty()) i.id = std::string(id);
    return remember(std::move(i));
  }

  /// Repeats `op` while it fails transiently, as `Retry` says, but not past `deadline`.
  template <class Op>
  [[nodiscard]] auto retrying(clock::time_point deadline, Op&& op,
                              bool* out_of_time = nullptr) noexcept -> decltype(op()) {
    return sandbox::detail::with_retry(retry_, std::forward<Op>(op), {deadline, out_of_time});
  }

  [[nodiscard]] static bool reached(State s, State target) noexcept {
    // UNSPECIFIED while polling: the anchor clients take it for COMPLETED.
    if (is_terminal(s) || s == State::UNSPECIFIED) return true;
    if (target == State::RUNNING)
      return s == State::RUNNING || s == State::PAUSED || s == State::TERMINATING;
    return s == target;
  }

  [[nodiscard]] result<SandboxInfo> poll_until(std::string_view id, State target,
                                               clock::time_point deadline,
                                               bool after_stop) noexcept {
    using std::chrono::milliseconds;
    auto interval = o_.poll_initial;
    for (;;) {
      bool out_of_time = false;
      auto r = retrying(
          deadline,
          [&] {
            auto per_try = std::chrono::duration_cast<milliseconds>(deadline - clock::now());
            return get_once(id, std::clamp(per_try, milliseconds(100), o_.read_timeout));
          },
          &out_of_time);
      if (!r) {
        // After our own delete, a sandbox that is gone has stopped.
        if (after_stop && r.assume_error().is(errc::not_found)) return gone(id);
        if (out_of_time)
          return fail(errc::timeout, "sandbox " + std::string(id) +
                                         ": no usable answer before the deadline (last error: " +
                                         r.assume_error().message + ")");
        return r;
      }
      SandboxInfo i = std::move(r).assume_value();
      // Only a service that predates exit codes answers UNSPECIFIED: waiting for one is futile.
      bool completed = i.state == State::COMPLETED;
      if (i.state == State::UNSPECIFIED) i.state = State::COMPLETED;
      if (reached(i.state, target)) {
        if (completed && !i.returncode && !after_stop && !stopped_by_us(id))
          return with_late_exit_code(std::move(i));
        return remember(std::move(i));
      }
      auto now = clock::now();
      if (now >= deadline)
        return fail(errc::timeout, "sandbox " + std::string(id) + " still " +
                                       std::string(to_string(i.state)) + ", not " +
                                       std::string(to_string(target)) + ", at the deadline");
      std::this_thread::sleep_for(std::min<clock::duration>(interval, deadline - now));
      interval =
          std::min(o_.poll_max, milliseconds(interval.count() * o_.poll_factor_percent / 100));
    }
  }

  [[nodiscard]] bool stopped_by_us(std::string_view id) const {
    auto k = recall(id);
    return k && k->stopping;
  }

  /// The service reports exit codes in batches, so COMPLETED may come before its code: ask again
  /// a few times before the state is latched. A failing poll keeps what is in hand; a stop by
  /// this client meanwhile ends it (the service stamps no exit code on a stop).
  [[nodiscard]] SandboxInfo with_late_exit_code(SandboxInfo i) noexcept {
    for (unsigned n = 0; n < o_.exit_code_grace_polls && !i.returncode; ++n) {
      std::this_thread::sleep_for(o_.exit_code_grace_interval);
      if (stopped_by_us(i.id)) break;
      auto again =
          get_once(i.id, std::max(o_.exit_code_grace_interval, std::chrono::milliseconds(100)));
      if (!again) break;
      if (is_terminal(again.assume_value().state)) i = std::move(again).assume_value();
    }
    return remember(std::move(i));
  }

  remote_options o_;
  Channel ch_;
  Retry retry_{};
  mutable std::mutex m_;
  std::map<std::string, known, std::less<>> known_;
};

} // namespace sandbox
