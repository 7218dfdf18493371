// SPDX-License-Identifier: MIT
// A real sandbox server (sandbox/server.hpp over the local transport) on an ephemeral loopback
// port, and an HTTP transport pointed at it, for tests and benchmarks in one process.
#pragma once

#include <sandbox/local.hpp>
#include <sandbox/server.hpp>
#include <sandbox/transport/http/http_transport.hpp>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

namespace sandbox::testing {

/// Polls a little faster than the defaults, and retries within a shorter budget, so that
/// tests stay quick; the behaviour is otherwise the shipped one.
using test_retry = exponential_backoff<50, 150, 500, 5000>;
using test_http_transport = basic_http_transport<test_retry>;

class loopback_server {
public:
  explicit loopback_server(server_options o = {}) : token_(detail::random_id("tok-", 32)) {
    o.token = token_;
    srv_ = std::make_unique<server<local_transport>>(local_transport::shared(), std::move(o));
    auto port = srv_->start("127.0.0.1", 0);
    if (!port) {
      std::fprintf(stderr, "loopback_server: %s\n", port.error().message.c_str());
      std::abort();
    }
    url_ = "http://127.0.0.1:" + std::to_string(port.value());
  }

  [[nodiscard]] const std::string& url() const noexcept { return url_; }
  [[nodiscard]] const std::string& token() const noexcept { return token_; }
  [[nodiscard]] server<local_transport>& get() noexcept { return *srv_; }

  /// Client options for this server.
  [[nodiscard]] http_options client_options() const {
    http_options o;
    o.base_url = url_;
    o.api_key = token_;
    o.poll_initial = std::chrono::milliseconds(20);
    o.exit_code_grace_interval = std::chrono::milliseconds(100);
    return o;
  }

  [[nodiscard]] std::shared_ptr<test_http_transport> client() const {
    auto t = test_http_transport::make(client_options());
    if (!t) {
      std::fprintf(stderr, "loopback_server: %s\n", t.error().message.c_str());
      std::abort();
    }
    return t.value();
  }

private:
  std::string token_;
  std::string url_;
  std::unique_ptr<server<local_transport>> srv_;
};

} // namespace sandbox::testing
