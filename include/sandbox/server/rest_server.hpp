// SPDX-License-Identifier: MIT
// The v1 REST/JSON mapping of PROTOCOL.md, served by cpp-httplib over the SandboxService of
// server/service.hpp: what `sandboxd` runs over the local transport, and the real peer of
// http_transport in tests.
#pragma once

#include <sandbox/concepts.hpp>
#include <sandbox/detail/text.hpp>
#include <sandbox/options.hpp>
#include <sandbox/result.hpp>
#include <sandbox/server/detail/connection.hpp>
#include <sandbox/server/detail/http_server.hpp>
#include <sandbox/server/options.hpp>
#include <sandbox/server/service.hpp>
#include <sandbox/transport/http/codec.hpp>
#include <sandbox/transport/http/defaults.hpp>
#include <sandbox/transport/http/detail/spliced_json.hpp>
#include <sandbox/transport/http/mapping.hpp>

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace sandbox {

/// The v1 REST routes (PROTOCOL.md) over `Transport`: CreateSandbox (idempotent per
/// `requestId`), GetSandbox, ListSandboxes, DeleteSandbox, PurgeSandboxes, Exec, WriteFile,
/// ReadFile; templates and file system snapshots are answered UNIMPLEMENTED, as is any field
/// of a request that asks for what a single host lacks (volumes, services, GPUs, …). Requests
/// are checked strictly (unknown fields or query parameters, wrong types, missing required fields
/// → 400 INVALID_ARGUMENT naming the field); errors are google.rpc.Status bodies with the HTTP
/// status of PROTOCOL.md. An Exec's `grpc-timeout` header becomes the command's timeout; a client
/// that disconnects during an Exec gets its command killed. Not copyable or movable (the routes
/// refer to it).
///
///     sandbox::server<sandbox::local_transport> srv(sandbox::local_transport::shared(),
///                                                   {.token = token});
///     auto port = srv.bind("127.0.0.1", 0);   // 0: any free port
///     srv.run();                                // until srv.stop()
template <transport Transport>
class server {
public:
  server(std::shared_ptr<Transport> t, server_options o)
      : server(std::make_shared<serve::service<Transport>>(std::move(t), std::move(o))) {}
  /// Serves `svc`, which other front ends (grpc_server) may serve too.
  explicit server(std::shared_ptr<serve::service<Transport>> svc)
      : svc_(std::move(svc)), o_(svc_->options()),
        http_(std::make_unique<serve::detail::http_server>()) {
    routes();
  }
  server(const server&) = delete;
  server& operator=(const server&) = delete;
  ~server() { stop(); }

  /// Binds `host:port` (port 0: a free port) and returns the bound port.
  /// **Errors:** validation (no token), unavailable (cannot bind).
  [[nodiscard]] result<int> bind(const std::string& host, int port) noexcept {
    if (o_.token.empty())
      return fail(errc::validation, "the server needs a bearer token (server_options::token); "
                                    "it does not serve without authentication");
    int bound = port;
    if (port == 0)
      bound = http_->bind_to_any_port(host);
    else if (!http_->bind_to_port(host, port))
      bound = -1;
    if (bound <= 0)
      return fail(errc::unavailable, "cannot listen on " + host + ":" + std::to_string(port));
    (void)http_->raise_backlog(1024);
    port_ = bound;
    return bound;
  }

  /// Serves until `stop()`. Call after `bind`.
  /// **Errors:** validation (not bound), unavailable (the listening socket failed).
  [[nodiscard]] result<void> run() noexcept {
    if (port_ <= 0) return fail(errc::validation, "server::run before a successful bind");
    if (!http_->listen_after_bind()) return fail(errc::unavailable, "the listening socket failed");
    return success();
  }

  /// `bind`, then `run` on a thread of the server's own; returns the port once it accepts.
  [[nodiscard]] result<int> start(const std::string& host, int port) noexcept {
    SANDBOX_TRY(bound, bind(host, port));
    thread_ = std::thread([this] { (void)run(); });
    while (!http_->is_running())
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return bound;
  }

  /// Stops accepting and waits for requests in progress to end. Idempotent; safe from any
  /// thread (not from a signal handler).
  void stop() noexcept {
    if (http_ && http_->is_running()) http_->stop();
    if (thread_.joinable()) thread_.join();
  }

  [[nodiscard]] int port() const noexcept { return port_; }

  /// The service this server fronts, to share with another front end.
  [[nodiscard]] const std::shared_ptr<serve::service<Transport>>& service() const noexcept {
    return svc_;
  }

  /// The sandboxes created through this server that it still remembers (stopped ones are
  /// forgotten after `retained_terminal` others).
  [[nodiscard]] std::vector<std::string> created() const { return svc_->created(); }

  /// Stops every sandbox created through this server (what sandboxd does on SIGTERM).
  /// Returns how many could not be stopped.
  std::size_t stop_all(std::chrono::milliseconds grace) noexcept { return svc_->stop_all(grace); }

private:
  using Request = httplib::Request;
  using Response = httplib::Response;
  using clock = std::chrono::steady_clock;

  // ---- replies ----------------------------------------------------------------------------

  static void reply(Response& res, int status, std::string body) {
    res.status = status;
    res.body = std::move(body); // not set_content: that would copy a large body
    res.set_header("Content-Type", "application/json");
  }

  static void reply_error(Response& res, const error& e) {
    auto st = http::status_from_error(e);
    reply(res, http::http_status_for(static_cast<http::grpc_code>(st.code)), http::to_json(st));
  }

  static void reply_error(Response& res, errc code, std::string message) {
    reply_error(res, error(code, std::move(message)));
  }

  /// The whole answer to a connection refused because every other one is busy.
  [[nodiscard]] static std::string refusal() {
    auto st = http::status_from_error(
        error(errc::unavailable, "the server has no room for another connection; retry"));
    std::string body = http::to_json(st);
    return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
           "Retry-After: 1\r\nConnection: close\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
  }

  /// A request body over max_request_bytes (for WriteFile: CWSANDBOX_FILE_TOO_LARGE).
  static void too_large(const Request& req, Response& res) {
    bool file = req.path.size() > 10 && req.path.substr(req.path.size() - 10) == ":writeFile";
    reply_error(res, error(file ? errc::file_too_large : errc::validation,
                           "request body larger than the server's limit"));
  }

  // ---- request checks ---------------------------------------------------------------------

  /// The query parameters of `req`, each named as one of `allowed` (lowerCamel or snake_case);
  /// anything else is an error naming it.
  struct query {
    std::multimap<std::string, std::string> values; // by lowerCamel name
    [[nodiscard]] std::optional<std::string> get(const std::string& k) const {
      auto it = values.find(k);
      if (it == values.end()) return std::nullopt;
      return it->second;
    }
  };

  [[nodiscard]] static result<query> query_of(const Request& req,
                                              std::initializer_list<std::string_view> allowed) {
    // From the target itself: cpp-httplib also puts form-encoded bodies into req.params.
    httplib::Params params;
    if (auto at = req.target.find('?'); at != std::string::npos)
      httplib::detail::parse_query_text(req.target.substr(at + 1), params);
    query q;
    for (const auto& [k, v] : params) {
      // Each field by its JSON name or its proto name exactly (json_name alone would also take
      // "page__size" or "pageSize_").
      std::string name = http::wire::json_name(k);
      std::string proto_name;
      for (char c : name)
        proto_name += c >= 'A' && c <= 'Z' ? std::string{'_', static_cast<char>(c - 'A' + 'a')}
                                           : std::string(1, c);
      if ((k != name && k != proto_name) ||
          std::find(allowed.begin(), allowed.end(), name) == allowed.end())
        return fail(errc::validation,
                    "unknown query parameter " + sandbox::detail::quoted_excerpt(k));
      constexpr std::string_view repeated[] = {"tags", "runnerIds", "volumeIds", "snapshotVolumes"};
      if (std::find(std::begin(repeated), std::end(repeated), name) == std::end(repeated) &&
          q.values.count(name))
        return fail(errc::validation,
                    "query parameter " + sandbox::detail::quoted_excerpt(k) + " given twice");
      q.values.emplace(std::move(name), v);
    }
    return q;
  }

  [[nodiscard]] static result<bool> bool_param(const query& q, const std::string& name) {
    auto v = q.get(name);
    if (!v || *v == "false" || *v == "0") return false;
    if (*v == "true" || *v == "1") return true;
    return fail(errc::validation,
                name + ": expected true or false, got " + sandbox::detail::quoted_excerpt(*v));
  }

  [[nodiscard]] static result<std::int32_t> int_param(const query& q, const std::string& name) {
    auto v = q.get(name);
    if (!v) return 0;
    std::int64_t n = 0;
    bool neg = !v->empty() && (*v)[0] == '-';
    std::string_view digits = std::string_view(*v).substr(neg ? 1 : 0);
    if (digits.empty() || digits.size() > 10 ||
        digits.find_first_not_of("0123456789") != std::string_view::npos)
      return fail(errc::validation,
                  name + ": expected an integer, got " + sandbox::detail::quoted_excerpt(*v));
    for (char c : digits)
      n = n * 10 + (c - '0');
    if (neg) n = -n;
    if (n < INT32_MIN || n > INT32_MAX)
      return fail(errc::validation, name + ": out of the int32 range");
    return static_cast<std::int32_t>(n);
  }

  // ---- routes ---------------------------------------------------------------------------------

  void routes() {
    auto& h = *http_;
    h.set_tcp_nodelay(true); // without it a small response waits ~40-88 ms for delayed ACKs
    h.set_keep_alive_max_count(std::size_t{1} << 30);
    h.set_keep_alive_timeout(static_cast<time_t>(o_.keep_alive_timeout.count()));
    h.set_payload_max_length(o_.max_request_bytes);
    auto& l = h.limits();
    l.threads = std::max<std::size_t>(o_.threads, 2);
    l.max_connections = std::max<std::size_t>(o_.max_connections, 1);
    l.header_timeout = o_.header_timeout;
    l.read_timeout = o_.read_timeout;
    l.write_timeout = o_.write_timeout;
    l.idle_timeout = o_.keep_alive_timeout;
    l.refusal = refusal();

    h.set_pre_routing_handler([this](const Request& req, Response& res) {
      started_ = clock::now();
      if (!serve::detail::token_matches(req.get_header_value("Authorization"), o_.token)) {
        reply_error(res, errc::authentication,
                    req.has_header("Authorization")
                        ? "invalid bearer token"
                        : "missing bearer token (Authorization header)");
        res.set_header("WWW-Authenticate", "Bearer");
      } else if (req.has_header("Transfer-Encoding")) {
        // cpp-httplib would read a chunked body whole, whatever its size.
        reply_error(res, errc::validation,
                    "chunked request bodies are not accepted: send a Content-Length");
        res.status = 411;
      } else if (req.has_header("Range")) {
        // The API has no partial answers, and cpp-httplib 0.11 gets a range past the end of an
        // answer wrong (a wrapped Content-Length, more promised than sent). It cuts even this
        // error's body to the range: the status says it.
        reply_error(res, errc::unsupported,
                    "Range requests are not served: ask for the whole answer");
        res.status = 416;
      } else if (std::uint64_t n =
                     std::strtoull(req.get_header_value("Content-Length").c_str(), nullptr, 10);
                 n > o_.max_request_bytes) {
        // Refused before a byte of it is read.
        too_large(req, res);
      } else {
        return httplib::Server::HandlerResponse::Unhandled;
      }
      // The body (if any) was not read: the connection cannot carry another request.
      res.set_header("Connection", "close");
      return httplib::Server::HandlerResponse::Handled;
    });
    h.set_error_handler(httplib::Server::HandlerWithResponse([](const Request& req, Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      if (res.status == 413) {
        too_large(req, res);
      } else {
        auto code = http::grpc_code_for_http(res.status);
        http::wire::Status st;
        st.code = static_cast<std::int32_t>(code);
        st.message = res.status == 404 ? "no route " + req.method + " " + req.path
                                       : "HTTP " + std::to_string(res.status);
        reply(res, res.status, http::to_json(st));
      }
      return httplib::Server::HandlerResponse::Handled;
    }));
    h.set_logger([this](const Request& req, const Response& res) {
      if (o_.trace) o_.trace(req.method, req.path, req.body, res.status, res.body);
      if (!o_.log) return;
      auto us = std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - started_);
      char took[32];
      std::snprintf(took, sizeof took, "%.3f ms", static_cast<double>(us.count()) / 1000.0);
      o_.log(req.method + " " + req.path + " " + std::to_string(res.status) + " " + took);
    });

    const std::string id = "/v1/sandboxes/([^/:]+)";
    h.Post("/v1/sandboxes", [this](const Request& q, Response& r) { create(q, r); });
    h.Get("/v1/sandboxes", [this](const Request& q, Response& r) { list(q, r); });
    h.Get(id, [this](const Request& q, Response& r) { get(q, r); });
    h.Delete(id, [this](const Request& q, Response& r) { remove(q, r); });
    h.Post(id + ":exec", [this](const Request& q, Response& r) { exec(q, r); });
    h.Post(id + ":writeFile", [this](const Request& q, Response& r) { write_file(q, r); });
    h.Get(id + ":readFile", [this](const Request& q, Response& r) { read_file(q, r); });
    h.Post("/v1/sandboxes:purge", [this](const Request& q, Response& r) { purge(q, r); });
    // The hosted service's RPCs that need what a single host does not have: answered as the
    // service answers what it does not offer (UNIMPLEMENTED, reason CWSANDBOX_NOT_IMPLEMENTED).
    auto lacks = [](std::string what) {
      return [what](const Request&, Response& r) {
        reply_error(r, errc::unsupported, what + ": not implemented by this server");
      };
    };
    h.Post("/v1/sandboxes:createFromTemplate", lacks("CreateSandboxFromTemplate (templates)"));
    h.Post(id + ":snapshot", lacks("CreateFileSystemSnapshot (file system snapshots)"));
    const std::string snapshots = "/v1/fileSystemSnapshots";
    h.Get(snapshots, lacks("ListFileSystemSnapshots (file system snapshots)"));
    h.Get(snapshots + "/([^/]+)", lacks("GetFileSystemSnapshot (file system snapshots)"));
    h.Delete(snapshots + "/([^/]+)", lacks("DeleteFileSystemSnapshot (file system snapshots)"));
  }

  template <class T>
  [[nodiscard]] static result<T> body_of(const Request& req) {
    return http::from_json<T>(req.body, http::decode_mode::strict);
  }

  /// Replies with `r`'s value as JSON, or with its error.
  template <class T>
  void answer(Response& res, result<T>&& r) const {
    if (!r) return reply_error(res, r.assume_error());
    reply_message(res, std::move(r).assume_value());
  }

  /// Replies 200 with `m` as JSON. Large bytes values (command output, file contents) are
  /// encoded as the body is sent, never held whole as text (unless `trace` wants the text).
  template <http::wire::described_message M>
  void reply_message(Response& res, M m) const {
    if (o_.trace) return reply(res, 200, http::to_json(m));
    struct body {
      M message;
      http::detail::json::spliced_json json;
    };
    auto b = std::make_shared<body>(body{std::move(m), {}});
    b->json = http::detail::json::spliced_json::of(b->message);
    if (b->json.whole()) return reply(res, 200, std::move(b->json).take_text());
    res.status = 200;
    res.set_content_provider(b->json.size(), "application/json",
                             [b](std::size_t offset, std::size_t most, httplib::DataSink& sink) {
                               // `most`: what is left of the length httplib asks for
                               auto piece = b->json.piece(offset, most).substr(0, most);
                               return !piece.empty() && sink.write(piece.data(), piece.size());
                             });
  }

  void create(const Request& req, Response& res) {
    auto q = query_of(req, {"requestId"});
    if (!q) return reply_error(res, q.assume_error());
    auto body = body_of<http::wire::Sandbox>(req);
    if (!body) return reply_error(res, body.assume_error());
    answer(res, svc_->create(body.assume_value(), q.assume_value().get("requestId").value_or("")));
  }

  void get(const Request& req, Response& res) {
    auto q = query_of(req, {});
    if (!q) return reply_error(res, q.assume_error());
    answer(res, svc_->get(req.matches[1].str()));
  }

  /// A query parameter naming something this server does not have: refused when any of its
  /// values is set.
  [[nodiscard]] static result<void> lacks_param(const query& q, const std::string& name) {
    for (auto [it, end] = q.values.equal_range(name); it != end; ++it)
      if (!it->second.empty())
        return fail(errc::unsupported, name + ": not implemented by this server");
    return success();
  }

  void list(const Request& req, Response& res) {
    auto q = query_of(req, {"pageSize", "pageToken", "tags", "state", "showTerminated", "runnerIds",
                            "volumeIds"});
    if (!q) return reply_error(res, q.assume_error());
    const auto& qv = q.assume_value();
    for (const char* lacking : {"runnerIds", "volumeIds"})
      if (auto r = lacks_param(qv, lacking); !r) return reply_error(res, r.assume_error());
    serve::list_request lr;
    for (auto [it, end] = qv.values.equal_range("tags"); it != end; ++it)
      lr.tags.push_back(it->second);
    if (auto s = qv.get("state")) {
      auto w = http::wire::state_from_name(*s);
      if (w == http::wire::State::STATE_UNSPECIFIED && *s != "STATE_UNSPECIFIED")
        return reply_error(res, errc::validation,
                           "state: unknown state " + sandbox::detail::quoted_excerpt(*s));
      if (w != http::wire::State::STATE_UNSPECIFIED) lr.state = http::wire::to_state(w);
    }
    auto show = bool_param(qv, "showTerminated");
    if (!show) return reply_error(res, show.assume_error());
    lr.show_terminated = show.assume_value();
    auto size = int_param(qv, "pageSize");
    if (!size) return reply_error(res, size.assume_error());
    lr.page_size = size.assume_value();
    lr.page_token = qv.get("pageToken").value_or("");
    answer(res, svc_->list(lr));
  }

  void remove(const Request& req, Response& res) {
    // A delete is idempotent as it is: requestId needs nothing more.
    auto q = query_of(req, {"gracePeriodSeconds", "allowMissing", "requestId", "snapshotVolumes"});
    if (!q) return reply_error(res, q.assume_error());
    if (auto r = lacks_param(q.assume_value(), "snapshotVolumes"); !r)
      return reply_error(res, r.assume_error());
    auto grace = int_param(q.assume_value(), "gracePeriodSeconds");
    if (!grace) return reply_error(res, grace.assume_error());
    auto missing_ok = bool_param(q.assume_value(), "allowMissing");
    if (!missing_ok) return reply_error(res, missing_ok.assume_error());
    answer(res, svc_->remove(req.matches[1].str(), std::chrono::seconds(grace.assume_value()),
                             missing_ok.assume_value()));
  }

  void exec(const Request& req, Response& res) {
    auto q = query_of(req, {});
    if (!q) return reply_error(res, q.assume_error());
    auto body = body_of<http::wire::ExecRequest>(req);
    if (!body) return reply_error(res, body.assume_error());
    std::optional<std::chrono::milliseconds> deadline;
    if (req.has_header(std::string(http::deadline_header).c_str())) {
      deadline = http::parse_grpc_timeout(req.get_header_value(std::string(http::deadline_header)));
      if (!deadline)
        return reply_error(res, errc::validation,
                           "grpc-timeout header: malformed (expected e.g. 500m)");
    }
    auto p = svc_->exec(req.matches[1].str(), body.assume_value(), deadline);
    if (!p) return reply_error(res, p.assume_error());
    // A client that goes away gets its command killed, once its socket says so.
    const int sock = serve::detail::http_server::current_socket();
    auto r = serve::service<Transport>::await(
        p.assume_value(), [&] { return serve::detail::client_watch(sock).gone(); },
        "the client went away", sock);
    if (!r) {
      auto status = serve::service<Transport>::exec_failure(r.assume_error());
      return reply(res, http::http_status_for(static_cast<http::grpc_code>(status.code)),
                   http::to_json(status));
    }
    reply_message(res, http::response_of(std::move(r).assume_value()));
  }

  void purge(const Request& req, Response& res) {
    auto q = query_of(req, {});
    if (!q) return reply_error(res, q.assume_error());
    auto body = body_of<http::wire::PurgeSandboxesRequest>(req);
    if (!body) return reply_error(res, body.assume_error());
    answer(res, svc_->purge(body.assume_value()));
  }

  void write_file(const Request& req, Response& res) {
    auto q = query_of(req, {});
    if (!q) return reply_error(res, q.assume_error());
    auto body = body_of<http::wire::WriteFileRequest>(req);
    if (!body) return reply_error(res, body.assume_error());
    auto r = svc_->write_file(req.matches[1].str(), body.assume_value());
    if (!r) return reply_error(res, r.assume_error());
    reply(res, 200, "{}");
  }

  void read_file(const Request& req, Response& res) {
    auto q = query_of(req, {"path", "container"});
    if (!q) return reply_error(res, q.assume_error());
    const auto& qv = q.assume_value();
    answer(res, svc_->read_file(req.matches[1].str(), qv.get("path").value_or(""),
                                qv.get("container").value_or("")));
  }

  std::shared_ptr<serve::service<Transport>> svc_;
  const server_options& o_; // the service's
  std::unique_ptr<serve::detail::http_server> http_;
  std::thread thread_;
  int port_ = 0;
  static inline thread_local clock::time_point started_{};
};

} // namespace sandbox
