// SPDX-License-Identifier: MIT
// http_transport: sandboxes on the CoreWeave Sandboxes service (or a `sandboxd`), through the v1
// REST/JSON mapping of PROTOCOL.md: the channel that carries remote_transport.hpp's calls as
// HTTP requests.
#pragma once

#include <sandbox/concepts.hpp>
#include <sandbox/detail/deadline.hpp>
#include <sandbox/detail/retry_loop.hpp>
#include <sandbox/detail/text.hpp>
#include <sandbox/policy/retry.hpp>
#include <sandbox/transport/http/codec.hpp>
#include <sandbox/transport/http/defaults.hpp>
#include <sandbox/transport/http/detail/client.hpp>
#include <sandbox/transport/http/detail/exec_state.hpp>
#include <sandbox/transport/http/mapping.hpp>
#include <sandbox/transport/remote_transport.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sandbox {
namespace http::detail {

/// The REST/JSON channel: each call one HTTP request on a pool of keep-alive connections; exec
/// one unary `:exec` request on a thread of its process handle.
///
/// Not available over this API, and rejected at compile time: stdin (`Process::write_stdin`
/// needs `supports_stdin<T>`). Rejected at `exec` with errc::unsupported (they are runtime
/// fields of ExecOptions): `stdin_pipe`, `tty`, `on_stdout`, `on_stderr`.
class rest_channel {
public:
  using process_type = exec_call;

  explicit rest_channel(const remote_options& o) noexcept : o_(o) {
    auto ep = parse_base_url(o_.base_url, o_.allow_insecure_http);
    if (!ep) {
      config_ = std::move(ep).assume_error();
      return;
    }
    connection_settings cs;
    cs.ep = std::move(ep).assume_value();
    cs.connect_timeout = o_.connect_timeout;
    cs.write_timeout = o_.write_timeout;
    cs.ca_cert_path = o_.ca_cert_path;
    cs.max_idle = o_.max_idle_connections;
    cs.headers.emplace_back("User-Agent", "sandbox-cpp/0.1");
    for (auto& h : o_.auth_headers())
      cs.headers.push_back(std::move(h));
    if ((config_ = remote_options::header_error(cs.headers))) return;
    if ((config_ = o_.timeout_error())) return;
    pool_ = std::make_shared<connection_pool>(std::move(cs));
  }

  /// What makes the options unusable, if anything.
  [[nodiscard]] const std::optional<error>& config() const noexcept { return config_; }

  [[nodiscard]] result<wire::Sandbox> create(const wire::CreateSandboxRequest& x,
                                             const std::string& what) noexcept {
    http_request rq = request("POST", "/v1/sandboxes?requestId=" + percent_encode(x.request_id));
    rq.body = to_json(x.sandbox.value_or(wire::Sandbox{}));
    return call<wire::Sandbox>(std::move(rq), what);
  }

  [[nodiscard]] result<wire::Sandbox> get(const wire::GetSandboxRequest& x,
                                          std::chrono::milliseconds read_timeout,
                                          const std::string& what) noexcept {
    auto rq = request("GET", path_of(x.sandbox_id));
    rq.read_timeout = read_timeout;
    return call<wire::Sandbox>(std::move(rq), what);
  }

  [[nodiscard]] result<wire::ListSandboxesResponse> list(const wire::ListSandboxesRequest& x,
                                                         const std::string& what) noexcept {
    std::string target = "/v1/sandboxes?pageSize=" + std::to_string(x.page_size);
    for (const auto& t : x.tags)
      target += "&tags=" + percent_encode(t);
    if (x.state != wire::State::STATE_UNSPECIFIED)
      target += "&state=" + std::string(wire::to_string(x.state));
    if (x.show_terminated) target += "&showTerminated=true";
    if (!x.page_token.empty()) target += "&pageToken=" + percent_encode(x.page_token);
    return call<wire::ListSandboxesResponse>(request("GET", std::move(target)), what);
  }

  [[nodiscard]] result<wire::DeleteSandboxResponse> remove(const wire::DeleteSandboxRequest& x,
                                                           std::chrono::milliseconds read_timeout,
                                                           const std::string& what) noexcept {
    auto rq = request("DELETE", path_of(x.sandbox_id) + "?gracePeriodSeconds=" +
                                    std::to_string(x.grace_period_seconds) +
                                    (x.allow_missing ? "&allowMissing=true" : ""));
    rq.read_timeout = read_timeout;
    return call<wire::DeleteSandboxResponse>(std::move(rq), what);
  }

  [[nodiscard]] result<wire::ReadFileResponse> read_file(const wire::ReadFileRequest& x,
                                                         const std::string& what) noexcept {
    return call<wire::ReadFileResponse>(
        request("GET", path_of(x.sandbox_id) + ":readFile?path=" + percent_encode(x.path)), what);
  }

  [[nodiscard]] result<void> write_file(const wire::WriteFileRequest& x,
                                        const std::string& what) noexcept {
    wire::WriteFileRequest body;
    body.path = x.path;
    body.content = x.content;
    auto rq = request("POST", path_of(x.sandbox_id) + ":writeFile");
    rq.body = to_json(body);
    rq.max_response_bytes = 1 << 20;
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

  /// What a unary exec cannot carry (stdin, a terminal, live output), and a cap the API's int32
  /// field cannot hold: `unlimited_output` asks for its largest value, 2^31-1 bytes.
  [[nodiscard]] static result<void> check_exec(const ExecOptions& o,
                                               const std::string& what) noexcept {
    if (o.stdin_pipe)
      return fail(errc::unsupported, what + ": stdin needs a streaming exec, which the v1 HTTP "
                                            "API does not have");
    if (o.tty)
      return fail(errc::unsupported, what + ": a terminal (tty) needs a streaming exec, which the "
                                            "v1 HTTP API does not have");
    if (o.on_stdout || o.on_stderr)
      return fail(errc::unsupported, what + ": live output (on_stdout/on_stderr) needs a "
                                            "streaming exec, which the v1 HTTP API does not have");
    if (o.max_output_bytes != unlimited_output && o.max_output_bytes > wire_max)
      return fail(errc::validation, what + ": max_output_bytes above 2^31-1 does not fit the "
                                           "API's int32 field (unlimited_output asks for the "
                                           "most it carries)");
    return success();
  }

  /// Exec. Returns at once; the request runs on a thread of the returned handle. `cwd` is done
  /// by wrapping argv in `/bin/sh -c 'cd <cwd> && exec <argv>'` (the API has no cwd); the
  /// result reports the argv given. `timeout` travels as the request's `grpc-timeout` and is
  /// also enforced here (plus `exec_timeout_grace`) as errc::command_timeout.
  /// `max_output_bytes` is the per-stream cap (0: the service's default).
  /// **Errors:** when the request fails: unavailable (could not connect), transport, timeout,
  /// protocol, and errors the service reports.
  template <class Retry>
  [[nodiscard]] result<process_type> exec(std::string_view id, std::span<const std::string> argv,
                                          const ExecOptions& o, const Retry& retry,
                                          std::string what) noexcept {
    const std::uint64_t max_output =
        o.max_output_bytes == unlimited_output ? wire_max : o.max_output_bytes;
    http_request rq = request("POST", path_of(id) + ":exec");
    rq.body = to_json(exec_request_of(argv, o, static_cast<std::int32_t>(max_output)));
    rq.idempotent = false;
    rq.splice = json::spliceable_fields<wire::ExecResponse>();
    std::optional<clock::time_point> deadline;
    if (o.timeout) {
      rq.headers.emplace_back(std::string(deadline_header), format_grpc_timeout(*o.timeout));
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
    auto state = std::make_unique<exec_state>();
    SANDBOX_TRYV(state->start([pool = pool_, rq = std::move(rq), command, what, retry,
                               timed = o.timeout.has_value()](exec_state& s) noexcept {
      return run_exec(*pool, rq, command, what, retry, timed, s);
    }));
    return process_type(std::move(state), std::move(command), deadline);
  }

private:
  using clock = std::chrono::steady_clock;
  static constexpr auto wire_max =
      static_cast<std::uint64_t>(std::numeric_limits<std::int32_t>::max());

  [[nodiscard]] static std::string path_of(std::string_view id) {
    return "/v1/sandboxes/" + percent_encode(id);
  }

  [[nodiscard]] http_request request(std::string_view method, std::string target) const {
    http_request r;
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
  [[nodiscard]] static error error_of(const http_response& r, std::string_view what) noexcept {
    wire::Status st;
    auto decoded = r.body.empty()
                       ? sandbox::result<wire::Status>(fail(errc::protocol, "empty body"))
                       : from_json<wire::Status>(r.body, http::decode_mode::lenient);
    if (!decoded && !r.body.empty()) {
      // The Connect protocol's error shape: a code by name, details as protobuf bytes.
      auto connect = from_json<wire::ConnectError>(r.body, http::decode_mode::lenient);
      if (connect && !connect.assume_value().code.empty())
        decoded = status_from_connect(connect.assume_value());
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
      st.retry_info = wire::RetryInfo{std::chrono::seconds(std::stoi(r.retry_after))};
    std::optional<wire::ExecResponse> partial = std::move(st.exec_response);
    error e = error_from_status(r.status, st);
    e.message = std::string(what) + ": " + e.message;
    // A command timeout from our server carries the output produced before the kill.
    if (partial)
      e.exec_result = std::make_shared<const ExecResult>(result_of(std::move(*partial), {}));
    return e;
  }

  /// Sends `rq` and decodes a 2xx body as `T` (leniently) or the error body.
  template <class T>
  [[nodiscard]] result<T> call(http_request rq, std::string_view what) noexcept {
    rq.splice = json::spliceable_fields<T>();
    auto r = pool_->send(rq);
    if (!r) {
      error e = std::move(r).assume_error();
      e.message = std::string(what) + ": " + e.message;
      return fail(std::move(e));
    }
    return decode<T>(r.assume_value(), what);
  }

  /// The 2xx body of `r` as `T` (its spliced values moved in), or the error of another status.
  template <class T>
  [[nodiscard]] static result<T> decode(http_response& r, std::string_view what) noexcept {
    if (r.status < 200 || r.status >= 300) return fail(error_of(r, what));
    if (r.body.empty() && r.status == 204) return T{};
    auto v = from_json<T>(r.body, http::decode_mode::lenient);
    if (!v)
      return fail(errc::protocol,
                  std::string(what) + ": bad response body (" + v.assume_error().message + ")");
    json::put_spliced(v.assume_value(), r.spliced);
    return v;
  }

  /// The body of an exec's request thread.
  template <class Retry>
  [[nodiscard]] static result<ExecResult>
  run_exec(connection_pool& pool, const http_request& rq, const std::vector<std::string>& command,
           const std::string& what, const Retry& retry, bool timed, exec_state& s) noexcept {
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
    auto& resp = r.assume_value();
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
    SANDBOX_TRY(x, decode<wire::ExecResponse>(resp, what));
    return result_of(std::move(x), command);
  }

  remote_options o_;
  std::optional<error> config_;
  std::shared_ptr<connection_pool> pool_;
};

} // namespace http::detail

/// Runs sandboxes on a remote service speaking the CoreWeave Sandboxes v1 REST/JSON API (the
/// hosted service, or `sandboxd`). HTTPS through OpenSSL; plain HTTP to loopback hosts. See
/// `basic_remote_transport` for what every remote transport does, and `http::detail::rest_channel`
/// for what this API cannot carry (stdin, a terminal, live output).
template <retry_policy Retry = exponential_backoff<>>
using basic_http_transport = basic_remote_transport<http::detail::rest_channel, Retry>;

/// The HTTP transport with the default retry policy.
using http_transport = basic_http_transport<>;

static_assert(transport<http_transport>);
static_assert(!supports_stdin<http_transport>);
static_assert(!supports_terminal<http_transport>);
static_assert(taking_process<http_transport::process_type>);

} // namespace sandbox
