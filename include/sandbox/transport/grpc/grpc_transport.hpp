// SPDX-License-Identifier: MIT
// grpc_transport: sandboxes on the CoreWeave Sandboxes service (or a `sandboxd --grpc-listen`)
// through the v1 SandboxService over gRPC, as the official clients speak it: the channel that
// carries remote_transport.hpp's calls, StreamExec for commands with live output, stdin and a
// terminal, and unary Exec for those with nothing to stream. grpc++'s generic API and the library's
// protobuf codec: no generated code, no libprotobuf. The only transport header that needs grpc++
// (namespace `rpc`: `grpc` is grpc++'s).
#pragma once

#include <sandbox/concepts.hpp>
#include <sandbox/detail/retry_loop.hpp>
#include <sandbox/detail/text.hpp>
#include <sandbox/policy/retry.hpp>
#include <sandbox/server/detail/grpc_wire.hpp>
#include <sandbox/transport/grpc/detail/exec_stream.hpp>
#include <sandbox/transport/http/endpoint.hpp>
#include <sandbox/transport/http/mapping.hpp>
#include <sandbox/transport/http/protobuf.hpp>
#include <sandbox/transport/remote_transport.hpp>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace sandbox {
namespace rpc::detail {

/// The gRPC channel: one HTTP/2 connection (h2c for `http://`, TLS for `https://` with the
/// system's roots or `ca_cert_path`), the credentials as call metadata, unary calls for the
/// sandbox operations, StreamExec or unary Exec for commands (see `exec`).
class grpc_channel {
public:
  using process_type = exec_call;

  explicit grpc_channel(const remote_options& o) noexcept : o_(o) {
    auto ep = http::detail::parse_base_url(o_.base_url, o_.allow_insecure_http);
    if (!ep) {
      config_ = std::move(ep).assume_error();
      return;
    }
    metadata_ = o_.auth_headers();
    if ((config_ = remote_options::header_error(metadata_))) return;
    if ((config_ = o_.timeout_error())) return;
    const auto& e = ep.assume_value();
    std::string host = e.host.find(':') != std::string::npos ? "[" + e.host + "]" : e.host;
    std::string target = host + ":" + std::to_string(e.port);
    std::shared_ptr<grpc::ChannelCredentials> creds;
    if (e.tls) {
      grpc::SslCredentialsOptions ssl;
      if (!o_.ca_cert_path.empty()) {
        std::ifstream f(o_.ca_cert_path, std::ios::binary);
        std::stringstream pem;
        pem << f.rdbuf();
        if (!f || pem.str().empty()) {
          config_ = error(errc::validation, "ca_cert_path " +
                                                sandbox::detail::shell_quote(o_.ca_cert_path) +
                                                " cannot be read");
          return;
        }
        ssl.pem_root_certs = pem.str();
      }
      creds = grpc::SslCredentials(ssl);
    } else {
      creds = grpc::InsecureChannelCredentials();
    }
    args_.SetUserAgentPrefix("sandbox-cpp/0.1");
    args_.SetMaxReceiveMessageSize(
        static_cast<int>(std::min<std::size_t>(o_.max_response_bytes, INT_MAX)));
    args_.SetMaxSendMessageSize(-1);
    // A channel of its own connections: one opened anew (see `usable`) must not take over the
    // failed connection of the one it replaces, with its backoff. (So two transports to one
    // service do not share a connection: each has its own.)
    args_.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    target_ = std::move(target);
    creds_ = std::move(creds);
    link_ = open();
  }

  /// What makes the options unusable, if anything.
  [[nodiscard]] const std::optional<error>& config() const noexcept { return config_; }

  [[nodiscard]] result<http::wire::Sandbox> create(const http::wire::CreateSandboxRequest& x,
                                                   const std::string& what) noexcept {
    return unary<http::wire::Sandbox>("CreateSandbox", x, o_.read_timeout, what);
  }

  [[nodiscard]] result<http::wire::Sandbox> get(const http::wire::GetSandboxRequest& x,
                                                std::chrono::milliseconds timeout,
                                                const std::string& what) noexcept {
    return unary<http::wire::Sandbox>("GetSandbox", x, timeout, what);
  }

  [[nodiscard]] result<http::wire::ListSandboxesResponse>
  list(const http::wire::ListSandboxesRequest& x, const std::string& what) noexcept {
    return unary<http::wire::ListSandboxesResponse>("ListSandboxes", x, o_.read_timeout, what);
  }

  [[nodiscard]] result<http::wire::DeleteSandboxResponse>
  remove(const http::wire::DeleteSandboxRequest& x, std::chrono::milliseconds timeout,
         const std::string& what) noexcept {
    return unary<http::wire::DeleteSandboxResponse>("DeleteSandbox", x, timeout, what);
  }

  [[nodiscard]] result<http::wire::ReadFileResponse> read_file(const http::wire::ReadFileRequest& x,
                                                               const std::string& what) noexcept {
    return unary<http::wire::ReadFileResponse>("ReadFile", x, o_.read_timeout, what);
  }

  [[nodiscard]] result<void> write_file(const http::wire::WriteFileRequest& x,
                                        const std::string& what) noexcept {
    SANDBOX_TRY(r, unary<http::wire::WriteFileResponse>("WriteFile", x, o_.write_timeout, what));
    (void)r;
    return success();
  }

  /// StreamExec carries everything ExecOptions has.
  [[nodiscard]] static result<void> check_exec(const ExecOptions&, const std::string&) noexcept {
    return success();
  }

  /// Exec: returns once the call is under way (after connecting, when the channel is not
  /// connected: attempts under `retry` within `connect_timeout`). `cwd` is done by wrapping argv in
  /// `/bin/sh -c 'cd <cwd> && exec <argv>'` (the API has no cwd). A command with something to
  /// stream (stdin, a terminal, live output) or a timeout goes through StreamExec: `timeout` is
  /// the call's deadline (the server kills the command when it passes, and the output so far is
  /// kept); the output cap is kept here (the server sends everything), as a local command's;
  /// without `stdin_pipe` (or `tty`) stdin is closed at once. Any other goes through unary Exec
  /// (one request, one answer), with the cap sent for the server to keep. Connecting is retried
  /// under `retry`; the call itself never is.
  template <class Retry>
  [[nodiscard]] result<process_type> exec(std::string_view id, std::span<const std::string> argv,
                                          const ExecOptions& o, const Retry& retry,
                                          std::string what) noexcept {
    const std::uint64_t cap =
        o.max_output_bytes == 0 ? default_max_output_bytes : o.max_output_bytes;
    const bool unary_exec = !o.stdin_pipe && !o.tty && !o.on_stdout && !o.on_stderr && !o.timeout &&
                            cap <= unary_exec_cap();
    http::wire::ExecRequest x =
        http::exec_request_of(argv, o, unary_exec ? static_cast<std::int32_t>(cap) : 0);
    // Only connecting is repeated (an exec call that failed may have started the command), all
    // of it within connect_timeout.
    const auto until = sandbox::detail::deadline_after(o_.connect_timeout);
    auto l = sandbox::detail::with_retry(
        retry, [&] { return connected(what, until); }, {until}, sandbox::detail::plain_sleep{},
        [](const error& e) { return e.is(errc::unavailable); });
    if (!l) return fail(std::move(l).assume_error());
    std::vector<std::string> command(argv.begin(), argv.end());
    if (unary_exec) {
      x.sandbox_id = std::string(id);
      return process_type(std::make_unique<unary_call>(l.assume_value().stub, context(std::nullopt),
                                                       method("Exec"), http::to_protobuf(x)),
                          std::move(command), cap, std::move(what));
    }
    http::wire::ExecStreamRequest init;
    auto& i = init.init.emplace();
    i.sandbox_id = std::string(id);
    i.command = std::move(x.command);
    i.env = std::move(x.env);
    if (o.tty) {
      i.tty = true;
      i.tty_width = o.tty->cols;
      i.tty_height = o.tty->rows;
    }
    // Without stdin the call half-closes with the init: the server ends the command's stdin.
    auto s = std::make_unique<exec_stream>(l.assume_value().stub, context(o.timeout),
                                           method("StreamExec"), http::to_protobuf(init),
                                           !o.stdin_pipe && !o.tty);
    process_type p(std::move(s), std::move(command), o, std::move(what));
    return p;
  }

  /// A sandbox's log from `offset` on, through StreamLogs: what is there now (a call that does
  /// not follow); when that is nothing, a following call of at most `wait`, which returns at the
  /// first entry, or at the end of the log (then `complete`). Offsets are the service's
  /// (`next_log_offset`), resumed in the log session the service named; a resume the service
  /// cannot serve (an unknown session, output no longer kept) starts again from what is kept.
  /// **Errors:** not_found, unsupported (a service without logs), and the call's errors.
  [[nodiscard]] result<LogRead> logs(std::string_view id, std::uint64_t offset,
                                     std::chrono::milliseconds wait) noexcept {
    SANDBOX_TRY(now, read_log(id, offset, false, std::chrono::milliseconds(0)));
    if (!now.chunks.empty() || wait.count() <= 0) return now;
    return read_log(id, offset, true, wait);
  }

private:
  /// One StreamLogs call; `follow`: until the first entry, the end of the log, or `wait`.
  [[nodiscard]] result<LogRead> read_log(std::string_view id, std::uint64_t offset, bool follow,
                                         std::chrono::milliseconds wait) noexcept {
    const std::string what = "StreamLogs of sandbox " + std::string(id);
    http::wire::StreamLogsRequest rq;
    rq.sandbox_id = std::string(id);
    rq.follow = follow;
    std::string session = session_of(id);
    if (offset > 0 && !session.empty()) {
      rq.resume_log_session_id = session;
      rq.resume_log_offset = offset;
    }
    auto ctx = context(follow ? wait : o_.read_timeout);
    link l = usable(); // held until the call is over
    log_stream call(*l.stub, std::move(ctx), method("StreamLogs"), http::to_protobuf(rq),
                    follow ? std::optional(offset) : std::nullopt, o_.max_response_bytes);
    auto [status, entries] = call.result();
    LogRead out;
    out.first_offset = out.end_offset = offset;
    bool first = true;
    for (auto& bytes : entries) {
      auto e = http::from_protobuf<http::wire::LogEntry>(bytes, http::decode_mode::lenient);
      if (!e)
        return fail(errc::protocol,
                    what + ": undecodable entry (" + e.assume_error().message + ")");
      auto& entry = e.assume_value();
      if (entry.error) {
        // A resume the service cannot serve: start again from what it keeps.
        if (!rq.resume_log_session_id.empty() &&
            (entry.error->code == "SESSION_NOT_FOUND" || entry.error->code == "REPLAY_GAP")) {
          forget_session(id);
          return read_log(id, offset, follow, wait);
        }
        return fail(errc::validation,
                    what + ": " + entry.error->code + ": " + entry.error->message);
      }
      if (!entry.log_session_id.empty()) remember_session(id, entry.log_session_id);
      std::uint64_t end = entry.next_log_offset;
      std::uint64_t begin = end >= entry.data.size() ? end - entry.data.size() : 0;
      if (first) out.first_offset = begin; // the oldest byte this read shows
      first = false;
      // Read from the start (no session to resume): what the caller has seen is left out.
      if (end <= offset) continue;
      if (begin < offset) entry.data.erase(0, static_cast<std::size_t>(offset - begin));
      LogChunk c;
      c.data = std::move(entry.data);
      c.end_offset = end;
      if (auto t = http::detail::pb::parse_timestamp(entry.timestamp))
        c.time = std::chrono::system_clock::time_point(
            std::chrono::duration_cast<std::chrono::system_clock::duration>(
                std::chrono::seconds(t->seconds) + std::chrono::nanoseconds(t->nanos)));
      out.end_offset = std::max(out.end_offset, end);
      out.chunks.push_back(std::move(c));
    }
    if (status.ok()) {
      out.complete = follow; // a following call ends only with the log
      return out;
    }
    // The call ended because it got what it came for, or its wait ran out, or it read as much
    // as one answer may hold (max_response_bytes: the caller reads on from `end_offset`).
    if (call.full() || (follow && (status.error_code() == grpc::StatusCode::CANCELLED ||
                                   status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)))
      return out;
    return fail(error_of(status, what));
  }

  void remember_session(std::string_view id, const std::string& session) {
    std::lock_guard lk(sessions_m_);
    sessions_.insert_or_assign(std::string(id), session);
  }

public:
  /// Forgets the log session of `id` (the transport's `release`).
  void forget(std::string_view id) noexcept { forget_session(id); }

private:
  void forget_session(std::string_view id) {
    std::lock_guard lk(sessions_m_);
    sessions_.erase(std::string(id));
  }

  [[nodiscard]] std::string session_of(std::string_view id) {
    std::lock_guard lk(sessions_m_);
    auto it = sessions_.find(std::string(id));
    return it == sessions_.end() ? std::string() : it->second;
  }

  [[nodiscard]] static std::string method(std::string_view name) {
    return "/coreweave.sandbox.v1.SandboxService/" + std::string(name);
  }

  [[nodiscard]] std::unique_ptr<grpc::ClientContext>
  context(std::optional<std::chrono::milliseconds> deadline) const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    for (const auto& [k, v] : metadata_)
      ctx->AddMetadata(k, v);
    // Saturated: a deadline beyond a year is none (and `now + max` would overflow).
    if (deadline && *deadline < std::chrono::hours(24 * 365))
      ctx->set_deadline(std::chrono::system_clock::now() + *deadline);
    return ctx;
  }

  /// A channel and the stub that calls through it.
  struct link {
    std::shared_ptr<grpc::Channel> channel;
    std::shared_ptr<grpc::GenericStub> stub;
  };

  [[nodiscard]] link open() const {
    link l;
    l.channel = grpc::CreateCustomChannel(target_, creds_, args_);
    l.stub = std::make_shared<grpc::GenericStub>(l.channel);
    return l;
  }

  /// The channel to call through. One whose last connection attempt failed is replaced by a new
  /// one, which connects at once: grpc++ would fail every call until its own reconnect backoff
  /// (one second, growing) has passed, whatever the retry policy says.
  [[nodiscard]] link usable() {
    std::lock_guard lk(link_m_);
    if (link_.channel->GetState(false) == GRPC_CHANNEL_TRANSIENT_FAILURE) link_ = open();
    return link_;
  }

  /// The channel, connected by `until`: errc::unavailable when the attempt fails (the retry
  /// policy decides whether to make another).
  [[nodiscard]] result<link> connected(const std::string& what, clock::time_point until) {
    link l = usable();
    // Saturated: a year is as good as never (and `now + max` would overflow).
    const auto left = std::clamp<clock::duration>(until - clock::now(), clock::duration::zero(),
                                                  std::chrono::hours(24 * 365));
    const auto deadline = std::chrono::system_clock::now() +
                          std::chrono::duration_cast<std::chrono::system_clock::duration>(left);
    for (auto s = l.channel->GetState(true); s != GRPC_CHANNEL_READY;
         s = l.channel->GetState(true)) {
      if (s == GRPC_CHANNEL_TRANSIENT_FAILURE || s == GRPC_CHANNEL_SHUTDOWN)
        return fail(errc::unavailable, what + ": cannot connect to " + target_);
      if (!l.channel->WaitForStateChange(s, deadline))
        return fail(errc::unavailable, what + ": no connection to " + target_ + " within " +
                                           std::to_string(o_.connect_timeout.count()) +
                                           " ms (connect_timeout)");
    }
    return l;
  }

  /// One unary call, waited for within `timeout`.
  template <class Response, class Request>
  [[nodiscard]] result<Response> unary(std::string_view name, const Request& rq,
                                       std::chrono::milliseconds timeout,
                                       const std::string& what) noexcept {
    unary_call call(usable().stub, context(timeout), method(name), http::to_protobuf(rq));
    call.wait(std::nullopt);
    auto [status, bytes] = *call.ended();
    if (!status.ok()) return fail(error_of(status, what));
    auto v = http::from_protobuf<Response>(bytes, http::decode_mode::lenient);
    if (!v)
      return fail(errc::protocol, what + ": undecodable answer (" + v.assume_error().message + ")");
    return v;
  }

  /// The largest answer a unary call of the hosted service carries (its gRPC message limit,
  /// 100 MiB, as the official clients state it).
  static constexpr std::size_t service_message_limit = std::size_t{100} << 20;
  /// Room in a unary Exec's answer beyond the two streams' output.
  static constexpr std::size_t answer_slack = std::size_t{64} << 10;

  /// The largest per-stream cap of a command sent as unary Exec: both streams at their cap
  /// must fit one answer, as this channel (max_response_bytes) and the service take it. Above
  /// it (the default cap, 64 MiB, included) a command goes through StreamExec, which carries
  /// any amount.
  [[nodiscard]] std::uint64_t unary_exec_cap() const noexcept {
    const std::size_t most = std::min(o_.max_response_bytes, service_message_limit);
    return most > answer_slack ? (most - answer_slack) / 2 : 0;
  }

  remote_options o_;
  std::optional<error> config_;
  std::vector<std::pair<std::string, std::string>> metadata_;
  std::string target_;
  std::shared_ptr<grpc::ChannelCredentials> creds_;
  grpc::ChannelArguments args_;
  std::mutex link_m_;
  link link_;
  std::mutex sessions_m_;
  std::map<std::string, std::string> sessions_; ///< the log session each sandbox's log is in
};

} // namespace rpc::detail

/// Runs sandboxes on a remote service over gRPC (the hosted service, or `sandboxd
/// --grpc-listen`): every operation of `http_transport` (see `basic_remote_transport`), and
/// commands through StreamExec: `on_stdout`/`on_stderr` as output arrives, stdin
/// (`ExecOptions::stdin_pipe`, `write_stdin`, `close_stdin`), a terminal (`ExecOptions::tty`,
/// `resize`), `kill` (cancels the call; the server kills the command), `ExecOptions::timeout`
/// as the call's deadline, and output caps with truncation flags as locally (a command with
/// none of these to stream and a cap that fits one answer goes as unary Exec: see
/// `grpc_channel::exec`); the main process's log through StreamLogs (`basic_sandbox::logs`,
/// `follow_logs`).
template <retry_policy Retry = exponential_backoff<>>
using basic_grpc_transport = basic_remote_transport<rpc::detail::grpc_channel, Retry>;

/// The gRPC transport with the default retry policy.
using grpc_transport = basic_grpc_transport<>;

static_assert(transport<grpc_transport>);
static_assert(supports_stdin<grpc_transport>);
static_assert(supports_terminal<grpc_transport>);
static_assert(taking_process<grpc_transport::process_type>);
static_assert(log_transport<grpc_transport>);

} // namespace sandbox
