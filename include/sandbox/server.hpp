// SPDX-License-Identifier: MIT
// The v1 REST/JSON API of PROTOCOL.md served by cpp-httplib over any transport: what `sandboxd`
// runs over the local transport, and the real peer of http_transport in tests.
#pragma once

#include <sandbox/concepts.hpp>
#include <sandbox/detail/text.hpp>
#include <sandbox/options.hpp>
#include <sandbox/result.hpp>
#include <sandbox/transport/http/codec.hpp>
#include <sandbox/transport/http/defaults.hpp>
#include <sandbox/transport/http/mapping.hpp>

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <dirent.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>

namespace sandbox {

/// How a `server` behaves.
struct server_options {
  /// Every request must carry `Authorization: Bearer <token>`. Required: a server without a
  /// token refuses to start.
  std::string token;
  /// Connections served at once (each keeps a thread while it is open, an exec included).
  std::size_t threads = 64;
  /// Largest request body; a larger one is refused (400; WriteFile: CWSANDBOX_FILE_TOO_LARGE).
  std::size_t max_request_bytes = std::size_t{64} << 20;
  /// Per-stream output cap of an Exec that sends `maxOutputBytes: 0` (the local transport's own
  /// default unless changed).
  std::uint64_t default_max_output_bytes = sandbox::default_max_output_bytes;
  /// Image names and what the transport is given for them (`SandboxOptions::image`); a name
  /// not listed is passed on as it is. By default the client's default image runs on the
  /// transport's default root.
  std::map<std::string, std::string, std::less<>> images{{std::string(http::default_image), ""}};
  /// Run a sandbox whose main command is the clients' default keep-alive shell as a keep-alive
  /// sandbox of the transport (no extra processes in it; the same behaviour on stop).
  bool native_keep_alive = true;
  /// Terminal sandboxes the transport is asked to remember before the oldest is released.
  std::size_t retained_terminal = 1000;
  /// Idle time after which a keep-alive connection is closed.
  std::chrono::seconds keep_alive_timeout{5};
  /// One line per request: method, path, status, duration. Never the token or a body.
  std::function<void(std::string_view line)> log;
};

namespace detail::serve {

/// cpp-httplib's server with the listen backlog raised (Debian's library is built with 5, which
/// drops connections when many clients connect at once).
class http_server : public httplib::Server {
public:
  [[nodiscard]] bool raise_backlog(int n) noexcept { return ::listen(svr_sock_, n) == 0; }
};

/// Bearer token comparison whose time does not depend on where the strings differ.
[[nodiscard]] inline bool token_matches(std::string_view header, std::string_view token) noexcept {
  constexpr std::string_view prefix = "Bearer ";
  if (header.size() != prefix.size() + token.size() || header.substr(0, prefix.size()) != prefix)
    return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < token.size(); ++i)
    diff |= static_cast<unsigned char>(header[prefix.size() + i] ^ token[i]);
  return diff == 0;
}

/// "127.0.0.1" / port of a socket address, as cpp-httplib spells them in a Request.
[[nodiscard]] inline bool same_endpoint(const sockaddr_storage& a, socklen_t len,
                                        const std::string& ip, int port) noexcept {
  char host[NI_MAXHOST];
  char serv[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&a), len, host, sizeof host, serv,
                    sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return false;
  return ip == host && std::to_string(port) == serv;
}

/// The file descriptor of the connection a request came on (cpp-httplib does not hand it to
/// handlers): the socket whose local and remote endpoints are the request's. -1 if none.
[[nodiscard]] inline int connection_fd(const httplib::Request& req) noexcept {
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return -1;
  int found = -1;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    int fd = std::atoi(e->d_name);
    sockaddr_storage local{}, peer{};
    socklen_t ll = sizeof local, pl = sizeof peer;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0) continue;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;
    if (same_endpoint(local, ll, req.local_addr, req.local_port) &&
        same_endpoint(peer, pl, req.remote_addr, req.remote_port)) {
      found = fd;
      break;
    }
  }
  ::closedir(d);
  return found;
}

/// True when the client at `ip`:`port` has closed (or reset) the connection on `fd`.
[[nodiscard]] inline bool peer_gone(int fd, const std::string& ip, int port) noexcept {
  sockaddr_storage peer{};
  socklen_t pl = sizeof peer;
  // The fd may have been closed and reused: it must still be the request's connection.
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0 ||
      !same_endpoint(peer, pl, ip, port))
    return true;
  pollfd p{fd, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

/// Ends the idle keep-alive waits of a stopping server: every connection accepted on `port`
/// stops reading (a response being written still goes out). Without this, stopping waits for
/// each idle client connection's keep-alive timeout.
inline void stop_reading_connections(int port) noexcept {
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    int fd = std::atoi(e->d_name);
    sockaddr_storage local{}, peer{};
    socklen_t ll = sizeof local, pl = sizeof peer;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0 ||
        ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0)
      continue;
    char serv[NI_MAXSERV];
    if (::getnameinfo(reinterpret_cast<const sockaddr*>(&local), ll, nullptr, 0, serv, sizeof serv,
                      NI_NUMERICSERV) == 0 &&
        std::to_string(port) == serv)
      ::shutdown(fd, SHUT_RD);
  }
  ::closedir(d);
}

} // namespace detail::serve

/// The v1 REST routes (PROTOCOL.md) over `Transport`: CreateSandbox (idempotent per
/// `requestId`), GetSandbox, ListSandboxes, DeleteSandbox, Exec, WriteFile, ReadFile. Requests
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
      : t_(std::move(t)), o_(std::move(o)), http_(std::make_unique<detail::serve::http_server>()) {
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
    if (http_ && http_->is_running()) {
      http_->stop();
      detail::serve::stop_reading_connections(port_);
    }
    if (thread_.joinable()) thread_.join();
  }

  [[nodiscard]] int port() const noexcept { return port_; }

  /// The sandboxes created through this server that it still remembers (stopped ones are
  /// forgotten after `retained_terminal` others).
  [[nodiscard]] std::vector<std::string> created() const {
    std::lock_guard lk(m_);
    std::vector<std::string> ids;
    for (const auto& [id, spec] : specs_)
      ids.push_back(id);
    return ids;
  }

  /// Stops every sandbox created through this server (what sandboxd does on SIGTERM).
  /// Returns how many could not be stopped.
  std::size_t stop_all(std::chrono::milliseconds grace) noexcept {
    std::size_t failed = 0;
    for (const auto& id : created())
      if (!t_->stop(id, grace, true)) ++failed;
    return failed;
  }

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
      std::string name = http::wire::json_name(k);
      if (std::find(allowed.begin(), allowed.end(), name) == allowed.end())
        return fail(errc::validation, "unknown query parameter " + sandbox::detail::shell_quote(k));
      if (name != "tags" && q.values.count(name))
        return fail(errc::validation,
                    "query parameter " + sandbox::detail::shell_quote(k) + " given twice");
      q.values.emplace(std::move(name), v);
    }
    return q;
  }

  [[nodiscard]] static result<bool> bool_param(const query& q, const std::string& name) {
    auto v = q.get(name);
    if (!v || *v == "false" || *v == "0") return false;
    if (*v == "true" || *v == "1") return true;
    return fail(errc::validation,
                name + ": expected true or false, got " + sandbox::detail::shell_quote(*v));
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
                  name + ": expected an integer, got " + sandbox::detail::shell_quote(*v));
    for (char c : digits)
      n = n * 10 + (c - '0');
    if (neg) n = -n;
    if (n < INT32_MIN || n > INT32_MAX)
      return fail(errc::validation, name + ": out of the int32 range");
    return static_cast<std::int32_t>(n);
  }

  /// The one container of a request (`""` or the primary container's name).
  [[nodiscard]] result<void> check_container(std::string_view id, std::string_view c) const {
    if (c.empty()) return success();
    std::lock_guard lk(m_);
    auto it = specs_.find(id);
    std::string_view primary = http::main_container;
    if (it != specs_.end() && !it->second.containers.empty())
      primary = it->second.containers.front().name;
    if (c != primary)
      return fail(errc::validation, "container: sandbox " + std::string(id) + " has no container " +
                                        sandbox::detail::shell_quote(c));
    return success();
  }

  // ---- wire ⇄ library -----------------------------------------------------------------------

  [[nodiscard]] http::wire::Sandbox sandbox_of(const SandboxInfo& i) const {
    http::wire::Sandbox sb;
    sb.sandbox_id = i.id;
    sb.status = http::status_of(i);
    std::lock_guard lk(m_);
    if (auto it = specs_.find(i.id); it != specs_.end())
      sb.spec = it->second;
    else if (!i.tags.empty())
      sb.spec = http::wire::SandboxSpec{.tags = i.tags};
    return sb;
  }

  // ---- routes ---------------------------------------------------------------------------------

  void routes() {
    auto& h = *http_;
    h.set_tcp_nodelay(true); // without it a small response waits ~40-88 ms for delayed ACKs
    h.set_keep_alive_max_count(std::size_t{1} << 30);
    h.set_keep_alive_timeout(static_cast<time_t>(o_.keep_alive_timeout.count()));
    h.set_payload_max_length(o_.max_request_bytes);
    h.set_read_timeout(30, 0);
    h.set_write_timeout(30, 0);
    const std::size_t n = std::max<std::size_t>(o_.threads, 2);
    h.new_task_queue = [n] { return new httplib::ThreadPool(n); };

    h.set_pre_routing_handler([this](const Request& req, Response& res) {
      started_ = clock::now();
      if (detail::serve::token_matches(req.get_header_value("Authorization"), o_.token))
        return httplib::Server::HandlerResponse::Unhandled;
      reply_error(res, errc::authentication,
                  req.has_header("Authorization") ? "invalid bearer token"
                                                  : "missing bearer token (Authorization header)");
      res.set_header("WWW-Authenticate", "Bearer");
      // The body (if any) was not read: the connection cannot carry another request.
      res.set_header("Connection", "close");
      return httplib::Server::HandlerResponse::Handled;
    });
    h.set_error_handler(httplib::Server::HandlerWithResponse([](const Request& req, Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      if (res.status == 413) {
        bool file = req.path.size() > 10 && req.path.substr(req.path.size() - 10) == ":writeFile";
        error e(file ? errc::file_too_large : errc::validation,
                "request body larger than the server's limit");
        reply_error(res, e);
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
  }

  template <class T>
  [[nodiscard]] static result<T> body_of(const Request& req) {
    return http::from_json<T>(req.body, http::decode_mode::strict);
  }

  void create(const Request& req, Response& res) {
    auto q = query_of(req, {"requestId"});
    if (!q) return reply_error(res, q.assume_error());
    auto body = body_of<http::wire::Sandbox>(req);
    if (!body) return reply_error(res, body.assume_error());
    auto& sb = body.assume_value();
    if (!sb.sandbox_id.empty())
      return reply_error(res, errc::validation, "sandboxId: output only, must not be set");
    if (sb.status)
      return reply_error(res, errc::validation, "status: output only, must not be set");
    auto opts = http::options_of(*sb.spec, o_.images, o_.native_keep_alive);
    if (!opts) return reply_error(res, opts.assume_error());
    std::string request_id = q.assume_value().get("requestId").value_or("");

    // One sandbox per request id: a repeated create waits for the first and returns its sandbox.
    if (!request_id.empty()) {
      std::unique_lock lk(m_);
      for (;;) {
        auto it = by_request_.find(request_id);
        if (it == by_request_.end()) break;
        if (!it->second.empty()) {
          std::string existing = it->second;
          lk.unlock();
          auto i = t_->get(existing);
          if (!i) return reply_error(res, i.assume_error());
          return reply(res, 200, http::to_json(sandbox_of(i.assume_value())));
        }
        cv_.wait(lk);
      }
      by_request_.emplace(request_id, std::string());
      request_order_.push_back(request_id);
    }
    auto made = t_->create(opts.assume_value(), request_id);
    {
      std::lock_guard lk(m_);
      if (!request_id.empty()) {
        if (made)
          by_request_[request_id] = made.assume_value().id;
        else
          by_request_.erase(request_id);
        // Request ids are remembered for a while, not forever.
        while (request_order_.size() > 10 * o_.retained_terminal + 1000) {
          by_request_.erase(request_order_.front());
          request_order_.pop_front();
        }
      }
      if (made) specs_.emplace(made.assume_value().id, *sb.spec);
    }
    cv_.notify_all();
    if (!made) return reply_error(res, made.assume_error());
    reply(res, 200, http::to_json(sandbox_of(made.assume_value())));
  }

  void get(const Request& req, Response& res) {
    auto q = query_of(req, {});
    if (!q) return reply_error(res, q.assume_error());
    auto i = t_->get(req.matches[1].str());
    if (!i) return reply_error(res, i.assume_error());
    reply(res, 200, http::to_json(sandbox_of(i.assume_value())));
  }

  void list(const Request& req, Response& res) {
    auto q = query_of(req, {"pageSize", "pageToken", "tags", "state", "showTerminated"});
    if (!q) return reply_error(res, q.assume_error());
    const auto& qv = q.assume_value();
    ListFilter f;
    for (auto [it, end] = qv.values.equal_range("tags"); it != end; ++it)
      f.tags.push_back(it->second);
    if (auto s = qv.get("state")) {
      auto w = http::wire::state_from_name(*s);
      if (w == http::wire::State::STATE_UNSPECIFIED && *s != "STATE_UNSPECIFIED")
        return reply_error(res, errc::validation,
                           "state: unknown state " + sandbox::detail::shell_quote(*s));
      if (w != http::wire::State::STATE_UNSPECIFIED) f.state = http::wire::to_state(w);
    }
    auto show = bool_param(qv, "showTerminated");
    if (!show) return reply_error(res, show.assume_error());
    f.show_terminated = show.assume_value();
    auto size = int_param(qv, "pageSize");
    if (!size) return reply_error(res, size.assume_error());
    if (size.assume_value() < 0)
      return reply_error(res, errc::validation, "pageSize: must not be negative");
    std::size_t page = size.assume_value() == 0 ? 100 : std::min(size.assume_value(), 1000);
    std::string after = qv.get("pageToken").value_or("");

    auto all = t_->list(f);
    if (!all) return reply_error(res, all.assume_error());
    auto& v = all.assume_value();
    std::sort(v.begin(), v.end(),
              [](const SandboxInfo& a, const SandboxInfo& b) { return a.id < b.id; });
    http::wire::ListSandboxesResponse out;
    for (const auto& i : v) {
      if (!after.empty() && i.id <= after) continue;
      if (out.sandboxes.size() == page) {
        out.next_page_token = out.sandboxes.back().sandbox_id;
        break;
      }
      out.sandboxes.push_back(sandbox_of(i));
    }
    reply(res, 200, http::to_json(out));
  }

  void remove(const Request& req, Response& res) {
    auto q = query_of(req, {"gracePeriodSeconds", "allowMissing"});
    if (!q) return reply_error(res, q.assume_error());
    auto grace = int_param(q.assume_value(), "gracePeriodSeconds");
    if (!grace) return reply_error(res, grace.assume_error());
    if (grace.assume_value() < 0)
      return reply_error(res, errc::validation, "gracePeriodSeconds: must not be negative");
    auto missing_ok = bool_param(q.assume_value(), "allowMissing");
    if (!missing_ok) return reply_error(res, missing_ok.assume_error());
    std::string id = req.matches[1].str();
    bool known = t_->get(id).has_value();
    auto i = t_->stop(id, std::chrono::seconds(grace.assume_value()), missing_ok.assume_value());
    if (!i) return reply_error(res, i.assume_error());
    http::wire::DeleteSandboxResponse out;
    if (known) out.sandbox = sandbox_of(i.assume_value());
    forget_later(id);
    reply(res, 200, http::to_json(out));
  }

  /// Keeps a stopped sandbox answerable for a while, then releases it from the transport.
  void forget_later(const std::string& id) {
    std::vector<std::string> release;
    {
      std::lock_guard lk(m_);
      if (std::find(stopped_.begin(), stopped_.end(), id) != stopped_.end()) return;
      stopped_.push_back(id);
      while (stopped_.size() > o_.retained_terminal) {
        release.push_back(stopped_.front());
        specs_.erase(stopped_.front());
        stopped_.pop_front();
      }
    }
    for (const auto& r : release)
      t_->release(r);
  }

  void exec(const Request& req, Response& res) {
    auto q = query_of(req, {});
    if (!q) return reply_error(res, q.assume_error());
    auto body = body_of<http::wire::ExecRequest>(req);
    if (!body) return reply_error(res, body.assume_error());
    auto& x = body.assume_value();
    std::string id = req.matches[1].str();
    if (auto c = check_container(id, x.container); !c) return reply_error(res, c.assume_error());
    auto options = http::exec_options_of(x, o_.default_max_output_bytes);
    if (!options) return reply_error(res, options.assume_error());
    ExecOptions eo = std::move(options).assume_value();
    if (req.has_header(std::string(http::deadline_header).c_str())) {
      auto d = http::parse_grpc_timeout(req.get_header_value(std::string(http::deadline_header)));
      if (!d)
        return reply_error(res, errc::validation,
                           "grpc-timeout header: malformed (expected e.g. 500m)");
      eo.timeout = std::max(*d, std::chrono::milliseconds(1));
    }
    auto p = t_->exec(id, x.command, eo);
    if (!p) return reply_error(res, p.assume_error());
    auto& proc = p.assume_value();

    // Wait in slices, so that a client that goes away gets its command killed.
    using std::chrono::milliseconds;
    int fd = -2;
    for (;;) {
      auto r = proc.wait(milliseconds(10));
      if (!r && r.assume_error().is(errc::timeout)) {
        if (fd == -2) fd = detail::serve::connection_fd(req);
        if (fd >= 0 && detail::serve::peer_gone(fd, req.remote_addr, req.remote_port)) {
          (void)proc.kill(SIGKILL);
          (void)proc.wait(milliseconds(10'000));
          return reply_error(res, errc::not_running, "the client went away; command killed");
        }
        continue;
      }
      if (!r) {
        // The output of a command its timeout killed travels as an ExecResponse detail.
        auto status = http::status_from_error(r.assume_error());
        if (auto partial = r.assume_error().exec_result)
          status.exec_response = http::response_of(ExecResult(*partial));
        return reply(res, http::http_status_for(static_cast<http::grpc_code>(status.code)),
                     http::to_json(status));
      }
      return reply(res, 200, http::to_json(http::response_of(std::move(r).assume_value())));
    }
  }

  void write_file(const Request& req, Response& res) {
    auto q = query_of(req, {});
    if (!q) return reply_error(res, q.assume_error());
    auto body = body_of<http::wire::WriteFileRequest>(req);
    if (!body) return reply_error(res, body.assume_error());
    auto& w = body.assume_value();
    std::string id = req.matches[1].str();
    if (auto c = check_container(id, w.container); !c) return reply_error(res, c.assume_error());
    auto r = t_->write_file(id, w.path, w.content);
    if (!r) return reply_error(res, r.assume_error());
    reply(res, 200, "{}");
  }

  void read_file(const Request& req, Response& res) {
    auto q = query_of(req, {"path", "container"});
    if (!q) return reply_error(res, q.assume_error());
    auto path = q.assume_value().get("path");
    if (!path || path->empty()) return reply_error(res, errc::validation, "path: required");
    std::string id = req.matches[1].str();
    if (auto c = check_container(id, q.assume_value().get("container").value_or("")); !c)
      return reply_error(res, c.assume_error());
    auto r = t_->read_file(id, *path);
    if (!r) return reply_error(res, r.assume_error());
    http::wire::ReadFileResponse out;
    out.content = std::move(r).assume_value();
    reply(res, 200, http::to_json(out));
  }

  std::shared_ptr<Transport> t_;
  server_options o_;
  std::unique_ptr<detail::serve::http_server> http_;
  std::thread thread_;
  int port_ = 0;
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::map<std::string, std::string, std::less<>>
      by_request_; // request id → sandbox id ("": pending)
  std::deque<std::string> request_order_;
  std::map<std::string, http::wire::SandboxSpec, std::less<>> specs_;
  std::deque<std::string> stopped_;
  static inline thread_local clock::time_point started_{};
};

} // namespace sandbox
