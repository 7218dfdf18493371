// SPDX-License-Identifier: MIT
// The HTTP plumbing of http_transport: a pool of keep-alive connections,
// one request → one `result<http_response>`, and cancellation of a request in flight. With
// tcp_client.hpp, the only client headers that include <httplib.h>.
#pragma once

#include <sandbox/detail/output_buffer.hpp>
#include <sandbox/detail/text.hpp>
#include <sandbox/result.hpp>
#include <sandbox/transport/http/detail/spliced_json.hpp>
#include <sandbox/transport/http/detail/tcp_client.hpp>
#include <sandbox/transport/http/endpoint.hpp>

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sandbox::http::detail {

/// Percent-encodes everything but the unreserved characters (RFC 3986), for a path segment or
/// a query value.
[[nodiscard]] inline std::string percent_encode(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

/// One request. `target` is the path with its query, already encoded.
struct http_request {
  std::string_view method;
  std::string target;
  std::string body; ///< JSON; sent when non-empty or when the method is POST
  std::chrono::milliseconds read_timeout{15000};
  std::size_t max_response_bytes = 100u << 20;
  /// Safe to repeat: a connection lost after the request was sent is then `unavailable`
  /// (transient). Otherwise (exec) it is `transport`: the server may have acted on it.
  bool idempotent = true;
  std::vector<std::pair<std::string, std::string>> headers;
  /// Top-level members of the JSON body whose base64 string values are decoded as the body
  /// arrives, into `http_response::spliced` (json::spliceable_fields of the expected message).
  std::vector<std::string_view> splice;
};

/// What came back, whatever the status.
struct http_response {
  int status = 0;
  std::string body;        ///< with the values of `http_request::splice` members left as ""
  std::string retry_after; ///< the Retry-After header, if any
  std::vector<std::string> spliced; ///< the decoded values, in the order of `splice`
};

/// Lets another thread abandon a request in flight (its connection is shut down).
///
/// Semantics: after `cancel()`, a request not yet started fails at once and one in flight fails
/// soon (the connection may still be connecting: call `cancel()` again until the sending thread
/// is done). Thread-safe.
class cancellation {
public:
  void cancel() noexcept {
    std::lock_guard lk(m_);
    cancelled_ = true;
    if (active_) active_->stop();
    cv_.notify_all();
  }
  [[nodiscard]] bool cancelled() const noexcept { return cancelled_.load(); }

  /// Sleeps for `d` unless cancelled first; true when cancelled.
  [[nodiscard]] bool sleep_for(std::chrono::milliseconds d) noexcept {
    std::unique_lock lk(m_);
    return cv_.wait_for(lk, d, [&] { return cancelled_.load(); });
  }

private:
  friend class connection_pool;
  [[nodiscard]] bool attach(httplib::ClientImpl* c) noexcept {
    std::lock_guard lk(m_);
    if (cancelled_) return false;
    active_ = c;
    return true;
  }
  void detach() noexcept {
    std::lock_guard lk(m_);
    active_ = nullptr;
  }

  std::mutex m_;
  std::condition_variable cv_;
  std::atomic<bool> cancelled_{false};
  httplib::ClientImpl* active_ = nullptr;
};

/// How connections are made.
struct connection_settings {
  endpoint ep;
  /// Sent on every request (authentication, user agent). Never logged or put in a message.
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds write_timeout{30000};
  std::string ca_cert_path; ///< empty: the system's trust store
  std::size_t max_idle = 8;
};

/// Keep-alive connections to one endpoint, each used by one request at a time (an httplib
/// client serialises its requests, and an exec holds its connection until the command ends).
/// Thread-safe.
class connection_pool {
public:
  explicit connection_pool(connection_settings s) : s_(std::move(s)) {
    for (auto& [k, v] : s_.headers)
      headers_.emplace(k, v);
    headers_.emplace("Accept", "application/json");
  }

  [[nodiscard]] const endpoint& where() const noexcept { return s_.ep; }

  /// Sends `r` and reads the whole response (of any status) into memory.
  /// **Errors:** unavailable (cannot connect; or connection lost on an idempotent request),
  /// timeout (no complete response within `read_timeout`), transport (connection lost on a
  /// request that is not idempotent, TLS failure, cancelled), protocol (response larger than
  /// `max_response_bytes`, bad encoding).
  [[nodiscard]] result<http_response> send(const http_request& r,
                                           cancellation* cancel = nullptr) noexcept {
    auto where = [&] { return std::string(r.method) + " " + s_.ep.origin() + path_of(r.target); };
    SANDBOX_TRY(cli, acquire());
    if (cancel && !cancel->attach(cli.get()))
      return fail(errc::transport, where() + ": cancelled before it was sent");
    using namespace std::chrono;
    auto rt = r.read_timeout.count() > 0 ? r.read_timeout : milliseconds(1);
    cli->set_read_timeout(static_cast<time_t>(rt.count() / 1000),
                          static_cast<time_t>((rt.count() % 1000) * 1000));

    httplib::Request req;
    req.method = std::string(r.method);
    req.path = r.target;
    for (auto& [k, v] : r.headers)
      req.headers.emplace(k, v);
    if (!r.body.empty() || r.method == "POST") {
      req.body = r.body;
      req.headers.emplace("Content-Type", "application/json");
    }
    http_response out;
    bool too_large = false;
    std::optional<json::json_splicer> splicer;
    if (!r.splice.empty()) splicer.emplace(r.splice);
    std::optional<error> bad_body;
    std::uint64_t received = 0;
    // Only a success carries the expected message; an error's body goes to its own decoder whole.
    req.response_handler = [&](const httplib::Response& head) {
      if (head.status < 200 || head.status >= 300) splicer.reset();
      return true;
    };
    req.content_receiver = [&](const char* data, std::size_t n, std::uint64_t off,
                               std::uint64_t total) {
      if (cancel && cancel->cancelled()) return false;
      if (total > r.max_response_bytes || received + n > r.max_response_bytes) {
        too_large = true;
        return false;
      }
      received += n;
      if (splicer) {
        if (off == 0 && total > 0) splicer->expect(total);
        auto fed = splicer->feed({data, n});
        if (!fed) bad_body = std::move(fed).assume_error();
        return fed.has_value();
      }
      // A body whose length the first call gives gets its room at once (as much of it as
      // `room_for_claimed` trusts), with the codec's 64 bytes of read-past padding (it then
      // parses in place); the rest (a chunked body: there the first call gives only its first
      // chunk's length) grows as it comes.
      if (off == 0 && total > 0 && out.body.empty()) {
        const std::uint64_t room = sandbox::detail::room_for_claimed(total + 64);
        sandbox::detail::reserve_output(out.body, static_cast<std::size_t>(room), room);
      } else
        sandbox::detail::reserve_output(out.body, out.body.size() + n, r.max_response_bytes);
      out.body.append(data, n);
      return true;
    };
    httplib::Response res;
    httplib::Error err = httplib::Error::Success;
    auto start = steady_clock::now();
    bool ok = cli->send(req, res, err);
    auto took = duration_cast<milliseconds>(steady_clock::now() - start);
    if (cancel) cancel->detach();
    if (!ok) {
      // The connection is in an unknown state: drop it rather than pool it.
      if (cancel && cancel->cancelled()) return fail(errc::transport, where() + ": cancelled");
      if (too_large)
        return fail(errc::protocol, where() + ": response larger than " +
                                        std::to_string(r.max_response_bytes) + " bytes");
      if (bad_body)
        return fail(errc::protocol, where() + ": bad response body (" + bad_body->message + ")");
      return fail(map_error(err, took, rt, r.idempotent, where()));
    }
    out.status = res.status;
    out.retry_after = res.get_header_value("Retry-After");
    if (splicer) {
      out.body = std::move(splicer->text());
      out.spliced = std::move(splicer->values());
    }
    release(std::move(cli));
    return out;
  }

private:
  using client_ptr = std::unique_ptr<httplib::ClientImpl>;

  [[nodiscard]] static std::string path_of(std::string_view target) {
    return std::string(target.substr(0, target.find('?')));
  }

  [[nodiscard]] static error map_error(httplib::Error e, std::chrono::milliseconds took,
                                       std::chrono::milliseconds read_timeout, bool idempotent,
                                       const std::string& where) {
    using httplib::Error;
    switch (e) {
    case Error::Connection:
    case Error::ConnectionTimeout:
      return {errc::unavailable, where + ": cannot connect (" + httplib::to_string(e) + ")"};
    case Error::SSLConnection: return {errc::transport, where + ": TLS handshake failed"};
    case Error::SSLServerVerification:
      return {errc::transport, where + ": the server's TLS certificate is not trusted"};
    case Error::SSLLoadingCerts:
      return {errc::transport, where + ": cannot load the CA certificates"};
    case Error::Compression: return {errc::protocol, where + ": cannot decompress the response"};
    case Error::Read:
      // httplib reports a read timeout and a lost connection alike; the clock tells them apart.
      if (took + std::chrono::milliseconds(20) >= read_timeout)
        return {errc::timeout,
                where + ": no response within " + std::to_string(read_timeout.count()) + " ms"};
      [[fallthrough]];
    case Error::Write:
      if (idempotent)
        return {errc::unavailable, where + ": connection lost before the response was complete"};
      return {errc::transport, where +
                                   ": connection lost after the request was sent (it may have been "
                                   "carried out; not repeated)"};
    default: return {errc::transport, where + ": " + httplib::to_string(e)};
    }
  }

  [[nodiscard]] result<client_ptr> acquire() noexcept {
    {
      std::lock_guard lk(m_);
      if (!idle_.empty()) {
        client_ptr c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    client_ptr c;
    if (s_.ep.tls) {
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
      auto ssl = std::make_unique<httplib::SSLClient>(s_.ep.host, s_.ep.port);
      if (!s_.ca_cert_path.empty()) ssl->set_ca_cert_path(s_.ca_cert_path);
      ssl->enable_server_certificate_verification(true);
      c = std::move(ssl);
#else
      return fail(errc::unsupported, "https://" + s_.ep.host +
                                         ": cpp-httplib was built without OpenSSL "
                                         "(CPPHTTPLIB_OPENSSL_SUPPORT), so there is no TLS");
#endif
    } else {
      c = std::make_unique<tcp_client>(s_.ep.host, s_.ep.port);
    }
    if (!c->is_valid())
      return fail(errc::transport, "cannot set up a client for " + s_.ep.origin() +
                                       " (TLS context creation failed)");
    using namespace std::chrono;
    c->set_tcp_nodelay(true); // without it a small request waits ~40-88 ms for delayed ACKs
    c->set_keep_alive(true);
    c->set_follow_location(false);
    c->set_url_encode(false); // targets are encoded by the caller
    c->set_connection_timeout(static_cast<time_t>(s_.connect_timeout.count() / 1000),
                              static_cast<time_t>((s_.connect_timeout.count() % 1000) * 1000));
    c->set_write_timeout(static_cast<time_t>(s_.write_timeout.count() / 1000),
                         static_cast<time_t>((s_.write_timeout.count() % 1000) * 1000));
    c->set_default_headers(headers_);
    return c;
  }

  void release(client_ptr c) noexcept {
    std::lock_guard lk(m_);
    if (idle_.size() < s_.max_idle) idle_.push_back(std::move(c));
  }

  connection_settings s_;
  httplib::Headers headers_;
  std::mutex m_;
  std::vector<client_ptr> idle_;
};

} // namespace sandbox::http::detail
