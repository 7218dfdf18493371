// SPDX-License-Identifier: MIT
// http_transport: sandboxes on the CoreWeave Sandboxes service (or a `sandboxd`), through the v1
// REST/JSON mapping of PROTOCOL.md.
#pragma once

#include <sandbox/concepts.hpp>
#include <sandbox/detail/deadline.hpp>
#include <sandbox/detail/retry_loop.hpp>
#include <sandbox/detail/text.hpp>
#include <sandbox/detail/validate.hpp>
#include <sandbox/policy/retry.hpp>
#include <sandbox/transport/http/codec.hpp>
#include <sandbox/transport/http/defaults.hpp>
#include <sandbox/transport/http/detail/client.hpp>
#include <sandbox/transport/http/detail/exec_state.hpp>
#include <sandbox/transport/http/mapping.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
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

/// Where and how `http_transport` connects. Empty strings are filled by `from_env`.
struct http_options {
  /// `https://host[:port]` (no path). Empty: `CWSANDBOX_BASE_URL`, else
  /// `https://api.cwsandbox.com`. Plain `http://` only to a loopback host unless
  /// `allow_insecure_http`.
  std::string base_url;
  /// Sent as `Authorization: Bearer <key>`. Empty: `CWSANDBOX_API_KEY`.
  std::string api_key;
  /// W&B mode, used when there is no `api_key`: `x-wandb-api-key` (`WANDB_API_KEY`), with
  /// `x-entity-id` (`WANDB_ENTITY`, else `WANDB_ENTITY_NAME`) and `x-project-name`
  /// (`WANDB_PROJECT`).
  std::string wandb_api_key;
  std::string wandb_entity;
  std::string wandb_project;

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
  /// Largest response body accepted (an exec with a larger `max_output_bytes` raises it).
  std::size_t max_response_bytes = std::size_t{100} << 20;
  /// Keep-alive connections kept open between requests.
  std::size_t max_idle_connections = 8;
  /// Image of a sandbox whose options name none.
  std::string default_image{http::default_image};
  /// PEM file of trusted CAs; empty: the system's trust store.
  std::string ca_cert_path;
  /// Allow `http://` to hosts other than loopback (credentials then travel in clear).
  bool allow_insecure_http = false;

  /// Default options with the base URL and credentials of the environment.
  [[nodiscard]] static http_options from_env() { return from_env(http_options()); }

  /// `o` with its empty base URL and credentials taken from the environment.
  [[nodiscard]] static http_options from_env(http_options o) {
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
};

/// Runs sandboxes on a remote service speaking the CoreWeave Sandboxes v1 REST/JSON API (the
/// hosted service, or `sandboxd`). HTTPS through OpenSSL; plain HTTP to loopback hosts.
///
/// `Retry` is the policy of the operations this transport repeats on its own: the status polls
/// of `wait` and `stop`, DeleteSandbox, and connecting for an exec (an exec request is never
/// repeated once it may have reached the server). It is a template parameter, like the sandbox's,
/// so that a build picks its budget once and the polls cost no virtual call or allocation; the
/// single requests (create, get, list, read_file) are repeated by `basic_sandbox` under its own
/// `Retry`, not here, so nothing is retried twice over.
///
/// Not available over this API, and rejected at compile time: stdin (`Process::write_stdin`
/// needs `supports_stdin<T>`). Rejected at `exec` with errc::unsupported (they are runtime
/// fields of ExecOptions): `stdin_pipe`, `tty`, `on_stdout`, `on_stderr`. Thread-safe.
template <retry_policy Retry = exponential_backoff<>>
class basic_http_transport {
public:
  using process_type = http::detail::exec_call;
  using retry_type = Retry;

  /// A transport for `o` (see `http_options::from_env`). A bad base URL or credential is
  /// reported by every operation (errc::validation); `make` reports it at once.
  explicit basic_http_transport(http_options o = http_options::from_env()) noexcept
      : o_(std::move(o)) {
    auto ep = http::detail::parse_base_url(o_.base_url, o_.allow_insecure_http);
    if (!ep) {
      config_ = std::move(ep).assume_error();
      return;
    }
    http::detail::connection_settings cs;
    cs.ep = std::move(ep).assume_value();
    cs.connect_timeout = o_.connect_timeout;
    cs.write_timeout = o_.write_timeout;
    cs.ca_cert_path = o_.ca_cert_path;
    cs.max_idle = o_.max_idle_connections;
    cs.headers.emplace_back("User-Agent", "sandbox-cpp/0.1");
    if (!o_.api_key.empty()) {
      cs.headers.emplace_back("Authorization", "Bearer " + o_.api_key);
    } else if (!o_.wandb_api_key.empty()) {
      cs.headers.emplace_back("x-wandb-api-key", o_.wandb_api_key);
      if (!o_.wandb_entity.empty()) cs.headers.emplace_back("x-entity-id", o_.wandb_entity);
      if (!o_.wandb_project.empty()) cs.headers.emplace_back("x-project-name", o_.wandb_project);
    }
    for (const auto& [name, value] : cs.headers)
      if (value.find_first_of("\r\n") != std::string::npos || value.find('\0') != value.npos) {
        // Never echo the value: it is a credential.
        config_ = error(errc::validation, "the value of the " + name +
                                              " header (from http_options or the environment) "
                                              "contains a line break or NUL");
        return;
      }
    pool_ = std::make_shared<http::detail::connection_pool>(std::move(cs));
  }

  /// A transport for `o`, or the error that makes `o` unusable.
  /// **Errors:** validation (bad base URL, a credential with a line break).
  [[nodiscard]] static result<std::shared_ptr<basic_http_transport>>
  make(http_options o = http_options::from_env()) noexcept {
    auto t = std::make_shared<basic_http_transport>(std::move(o));
    if (t->config_) return fail(*t->config_);
    return t;
  }

  /// The instance `basic_sandbox::run` uses when given none: configured from the environment.
  [[nodiscard]] static std::shared_ptr<basic_http_transport> shared() {
    static const auto instance = std::make_shared<basic_http_transport>(http_options::from_env());
    return instance;
  }

  [[nodiscard]] const http_options& options() const noexcept { return o_; }

  /// CreateSandbox; returns once the service has accepted it (the sandbox may still be
  /// PENDING or CREATING). `request_id` makes a repeated create return the same sandbox.
  /// **Errors:** validation, unsupported (options the API has no field for), authentication,
  /// unavailable, resource_exhausted, timeout, and errors the service reports.
  [[nodiscard]] result<SandboxInfo> create(const SandboxOptions& o,
                                           std::string_view request_id) noexcept {
    SANDBOX_TRYV(ready());
    SANDBOX_TRY(spec, http::spec_of(o, o_.default_image));
    http::wire::Sandbox body;
    body.spec = std::move(spec);
    http::detail::http_request rq =
        request("POST", "/v1/sandboxes?requestId=" + http::detail::percent_encode(request_id));
    rq.body = http::to_json(body);
    SANDBOX_TRY(sb, call<http::wire::Sandbox>(rq, "CreateSandbox"));
    if (sb.sandbox_id.empty())
      return fail(errc::protocol, "CreateSandbox: the response has no sandboxId");
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
    std::string query = "?pageSize=100";
    for (const auto& t : f.tags)
      query += "&tags=" + http::detail::percent_encode(t);
    if (f.state)
      query += "&state=" + std::string(http::wire::to_string(http::wire::to_wire(*f.state)));
    if (f.show_terminated) query += "&showTerminated=true";
    std::vector<SandboxInfo> out;
    std::string token;
    for (int page = 0; page < 100; ++page) {
      std::string target = "/v1/sandboxes" + query;
      if (!token.empty()) target += "&pageToken=" + http::detail::percent_encode(token);
      SANDBOX_TRY(r, call<http::wire::ListSandboxesResponse>(request("GET", std::move(target)),
                                                             "ListSandboxes"));
      for (const auto& sb : r.sandboxes)
        out.push_back(http::info_of(sb));
      if (r.next_page_token.empty()) return out;
      if (r.next_page_token == token)
        return fail(errc::protocol, "ListSandboxes: the service returned the same page token "
                                    "twice");
      token = r.next_page_token;
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
    auto rq = request("DELETE", path_of(id) + "?gracePeriodSeconds=" + std::to_string(secs) +
                                    (missing_ok ? "&allowMissing=true" : ""));
    // The server may hold the response until the sandbox has stopped.
    rq.read_timeout = o_.read_timeout + grace;
    auto r = retrying(deadline, [&] {
      return call<http::wire::DeleteSandboxResponse>(rq, "DeleteSandbox " + std::string(id));
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

  /// Exec. Returns at once; the request runs on a thread of the returned handle. `cwd` is done
  /// by wrapping argv in `/bin/sh -c 'cd <cwd> && exec <argv>'` (the API has no cwd); the
  /// result reports the argv given. `timeout` travels as the request's `grpc-timeout` and is
  /// also enforced here (plus `exec_timeout_grace`) as errc::command_timeout.
  /// `max_output_bytes` is the per-stream cap (0: the service's default). The API's field is an
  /// int32: `unlimited_output` asks for its largest value, 2^31-1 bytes; any other value above
  /// that is a validation error.
  /// **Errors:** validation, unsupported (stdin, output callbacks), not_running, and when the
  /// request fails: unavailable (could not connect), transport, timeout, protocol, and errors
  /// the service reports.
  [[nodiscard]] result<process_type> exec(std::string_view id, std::span<const std::string> argv,
                                          const ExecOptions& o) noexcept {
    SANDBOX_TRYV(ready());
    SANDBOX_TRYV(sandbox::detail::validate_exec(argv, o));
    std::string what =
        "exec " + sandbox::detail::join_command(argv) + " in sandbox " + std::string(id);
    if (o.stdin_pipe)
      return fail(errc::unsupported, what + ": stdin needs a streaming exec, which the v1 HTTP "
                                            "API does not have");
    if (o.tty)
      return fail(errc::unsupported, what + ": a terminal (tty) needs a streaming exec, which the "
                                            "v1 HTTP API does not have");
    if (o.on_stdout || o.on_stderr)
      return fail(errc::unsupported, what + ": live output (on_stdout/on_stderr) needs a "
                                            "streaming exec, which the v1 HTTP API does not have");
    constexpr auto wire_max = static_cast<std::uint64_t>(std::numeric_limits<std::int32_t>::max());
    const std::uint64_t max_output =
        o.max_output_bytes == unlimited_output ? wire_max : o.max_output_bytes;
    if (max_output > wire_max)
      return fail(errc::validation, what + ": max_output_bytes above 2^31-1 does not fit the "
                                           "API's int32 field (unlimited_output asks for the "
                                           "most it carries)");
    SANDBOX_TRYV(ensure_running(id, what));

    http::detail::http_request rq = request("POST", path_of(id) + ":exec");
    rq.body = http::to_json(http::exec_request_of(argv, o, static_cast<std::int32_t>(max_output)));
    rq.idempotent = false;
    std::optional<clock::time_point> deadline;
    if (o.timeout) {
      rq.headers.emplace_back(std::string(http::deadline_header),
                              http::format_grpc_timeout(*o.timeout));
      deadline = sandbox::detail::deadline_after(*o.timeout + o_.exec_timeout_grace);
      // The deadline above abandons the request first; the read timeout is a backstop.
      rq.read_timeout = *o.timeout + o_.exec_timeout_grace + std::chrono::seconds(1);
    } else {
      rq.read_timeout = o_.exec_read_timeout;
    }
    // Two streams in base64, and room for the rest of the message; 0 leaves the cap to the
    // server, which sandboxd sets to default_max_output_bytes.
    const std::uint64_t cap =
        max_output > 0 ? static_cast<std::uint64_t>(max_output) : default_max_output_bytes;
    rq.max_response_bytes = std::max<std::size_t>(
        rq.max_response_bytes, 2 * ((cap + 2) / 3 * 4) + (std::size_t{64} << 10));

    std::vector<std::string> command(argv.begin(), argv.end());
    auto state = std::make_unique<http::detail::exec_state>();
    SANDBOX_TRYV(
        state->start([pool = pool_, rq = std::move(rq), command, what, retry = retry_,
                      timed = o.timeout.has_value()](http::detail::exec_state& s) noexcept {
          return run_exec(*pool, rq, command, what, retry, timed, s);
        }));
    return process_type(std::move(state), std::move(command), deadline);
  }

  /// ReadFile.
  /// **Errors:** file_not_found, file_is_directory, file_permission, file_too_large, file_io,
  /// not_found, and request errors.
  [[nodiscard]] result<std::string> read_file(std::string_view id, std::string_view path) noexcept {
    SANDBOX_TRYV(ready());
    auto rq = request("GET", path_of(id) + ":readFile?path=" + http::detail::percent_encode(path));
    SANDBOX_TRY(r, call<http::wire::ReadFileResponse>(rq, "ReadFile " + std::string(path) +
                                                              " in sandbox " + std::string(id)));
    return std::move(r.content);
  }

  /// WriteFile (creates or replaces the file).
  /// **Errors:** file_not_found (missing parent), file_is_directory, file_permission,
  /// file_too_large, not_found, and request errors.
  [[nodiscard]] result<void> write_file(std::string_view id, std::string_view path,
                                        std::string_view data) noexcept {
    SANDBOX_TRYV(ready());
    http::wire::WriteFileRequest body;
    body.path = std::string(path);
    body.content = std::string(data);
    auto rq = request("POST", path_of(id) + ":writeFile");
    rq.body = http::to_json(body);
    rq.max_response_bytes = 1 << 20;
    std::string what = "WriteFile " + std::string(path) + " in sandbox " + std::string(id);
    auto r = pool_->send(rq);
    if (!r) {
      error e = std::move(r).assume_error();
      e.message = what + ": " + e.message;
      return fail(std::move(e));
    }
    if (r.assume_value().status < 200 || r.assume_value().status >= 300)
      return fail(error_of(r.assume_value(), what));
    return success();
  }

  /// Forgets what this transport remembers of `id` (nothing is sent).
  void release(std::string_view id) noexcept {
    std::lock_guard lk(m_);
    if (auto it = known_.find(id); it != known_.end()) known_.erase(it);
  }

private:
  using clock = std::chrono::steady_clock;

  struct known {
    State state = State::UNSPECIFIED;
    bool stopping = false;
  };

  [[nodiscard]] result<void> ready() const noexcept {
    if (config_) return fail(*config_);
    return success();
  }

  [[nodiscard]] static std::string path_of(std::string_view id) {
    return "/v1/sandboxes/" + http::detail::percent_encode(id);
  }

  [[nodiscard]] http::detail::http_request request(std::string_view method,
                                                   std::string target) const {
    http::detail::http_request r;
    r.method = method;
    r.target = std::move(target);
    r.read_timeout = o_.read_timeout;
    r.max_response_bytes = o_.max_response_bytes;
    return r;
  }

  /// A printable prefix of a body that is not the JSON we expected, for a message.
  [[nodiscard]] static std::string snippet(std::string_view body) {
    std::string s;
    for (char c : body.substr(0, 200))
      s += (c >= 0x20 && c < 0x7f) ? c : '?';
    if (body.size() > 200) s += "...";
    return s;
  }

  /// The error of a response whose status is not 2xx.
  [[nodiscard]] static error error_of(const http::detail::http_response& r,
                                      std::string_view what) noexcept {
    http::wire::Status st;
    auto decoded = r.body.empty()
                       ? sandbox::result<http::wire::Status>(fail(errc::protocol, "empty body"))
                       : http::from_json<http::wire::Status>(r.body, http::decode_mode::lenient);
    if (!decoded && !r.body.empty()) {
      // The Connect protocol's error shape: a code by name, details as protobuf bytes.
      auto connect = http::from_json<http::wire::ConnectError>(r.body, http::decode_mode::lenient);
      if (connect && !connect.assume_value().code.empty())
        decoded = http::status_from_connect(connect.assume_value());
    }
    if (decoded) {
      st = std::move(decoded).assume_value();
    } else {
      st.message = r.body.empty() ? "HTTP " + std::to_string(r.status) + " with no body"
                                  : "HTTP " + std::to_string(r.status) + ": " + snippet(r.body);
    }
    if (!st.retry_info && !r.retry_after.empty() &&
        r.retry_after.find_first_not_of("0123456789") == std::string::npos &&
        r.retry_after.size() < 7)
      st.retry_info = http::wire::RetryInfo{std::chrono::seconds(std::stoi(r.retry_after))};
    std::optional<http::wire::ExecResponse> partial = std::move(st.exec_response);
    error e = http::error_from_status(r.status, st);
    e.message = std::string(what) + ": " + e.message;
    // A command timeout from our server carries the output produced before the kill.
    if (partial)
      e.exec_result = std::make_shared<const ExecResult>(http::result_of(std::move(*partial), {}));
    return e;
  }

  /// Sends `rq` and decodes a 2xx body as `T` (leniently) or the error body.
  template <class T>
  [[nodiscard]] result<T> call(const http::detail::http_request& rq,
                               std::string_view what) noexcept {
    auto r = pool_->send(rq);
    if (!r) {
      error e = std::move(r).assume_error();
      e.message = std::string(what) + ": " + e.message;
      return fail(std::move(e));
    }
    return decode<T>(r.assume_value(), what);
  }

  template <class T>
  [[nodiscard]] static result<T> decode(const http::detail::http_response& r,
                                        std::string_view what) noexcept {
    if (r.status < 200 || r.status >= 300) return fail(error_of(r, what));
    if (r.body.empty() && r.status == 204) return T{};
    auto v = http::from_json<T>(r.body, http::decode_mode::lenient);
    if (!v)
      return fail(errc::protocol,
                  std::string(what) + ": bad response body (" + v.assume_error().message + ")");
    return v;
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
    auto rq = request("GET", path_of(id));
    rq.read_timeout = read_timeout;
    SANDBOX_TRY(sb, call<http::wire::Sandbox>(rq, "GetSandbox " + std::string(id)));
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

  /// The body of an exec's request thread.
  [[nodiscard]] static result<ExecResult>
  run_exec(http::detail::connection_pool& pool, const http::detail::http_request& rq,
           const std::vector<std::string>& command, const std::string& what, const Retry& retry,
           bool timed, http::detail::exec_state& s) noexcept {
    using http::detail::abandon_reason;
    auto abandoned = [&](const error& cause) -> result<ExecResult> {
      switch (s.reason()) {
      case abandon_reason::deadline:
        return fail(errc::command_timeout,
                    what + ": no result within the command's timeout and " +
                        "the grace for the trip; the server did not report one");
      case abandon_reason::killed:
        return fail(errc::not_running,
                    what + ": killed (the request was cancelled; the v1 API has no signal call)");
      case abandon_reason::destroyed: return fail(errc::not_running, what + ": abandoned");
      case abandon_reason::none: break;
      }
      error e = cause;
      if (timed && e.is(errc::timeout)) e.code = make_error_code(errc::command_timeout);
      e.message = what + ": " + e.message;
      return fail(std::move(e));
    };
    // Only a failure to connect is repeated: the request cannot have reached the server.
    auto& cancel = s.cancel_token();
    auto r = sandbox::detail::with_retry(
        retry, [&] { return pool.send(rq, &cancel); }, {},
        [&](std::chrono::milliseconds d) { return !cancel.sleep_for(d); },
        [&](const error& e) { return e.is(errc::unavailable) && !cancel.cancelled(); });
    if (!r) return abandoned(r.assume_error());
    const auto& resp = r.assume_value();
    if (resp.status < 200 || resp.status >= 300) {
      error e = error_of(resp, what);
      // The deadline we sent expired on the server: that is the command's timeout.
      if (timed && e.is(errc::timeout)) e.code = make_error_code(errc::command_timeout);
      if (e.exec_result) {
        ExecResult partial = *e.exec_result;
        partial.command = command;
        e.exec_result = std::make_shared<const ExecResult>(std::move(partial));
      }
      return fail(std::move(e));
    }
    SANDBOX_TRY(x, decode<http::wire::ExecResponse>(resp, what));
    return http::result_of(std::move(x), command);
  }

  http_options o_;
  std::optional<error> config_;
  std::shared_ptr<http::detail::connection_pool> pool_;
  Retry retry_{};
  mutable std::mutex m_;
  std::map<std::string, known, std::less<>> known_;
};

/// The HTTP transport with the default retry policy.
using http_transport = basic_http_transport<>;

static_assert(transport<http_transport>);
static_assert(!supports_stdin<http_transport>);
static_assert(!supports_terminal<http_transport>);

} // namespace sandbox
