// SPDX-License-Identifier: MIT
// A real sandbox server (sandbox/server.hpp over the local transport) on an ephemeral loopback
// port, and an HTTP transport pointed at it, for tests and benchmarks in one process.
#pragma once

#include <sandbox/local.hpp>
#include <sandbox/server.hpp>
#include <sandbox/transport/http/http_transport.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include <unistd.h>

namespace sandbox::testing {

/// Polls a little faster than the defaults, and retries within a shorter budget, so that
/// tests stay quick; the behaviour is otherwise the shipped one.
using test_retry = exponential_backoff<50, 150, 500, 5000>;
using test_http_transport = basic_http_transport<test_retry>;

class loopback_server {
public:
  explicit loopback_server(server_options o = {}) : token_(detail::random_id("tok-", 32)) {
    o.token = token_;
    if (const char* dir = std::getenv("SANDBOX_WIRE_CAPTURE"); dir && *dir && !o.trace)
      o.trace = capture_into(dir);
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
  /// The proto message of a JSON body of the REST mapping ("" for none), by route.
  static std::string message_of(std::string_view method, std::string_view path, bool request,
                                int status) {
    auto ends = [&](std::string_view s) {
      return path.size() >= s.size() && path.substr(path.size() - s.size()) == s;
    };
    const std::string v1 = "coreweave.sandbox.v1.";
    if (!request && status != 200) return "google.rpc.Status";
    if (ends(":exec")) return v1 + (request ? "ExecRequest" : "ExecResponse");
    if (ends(":writeFile")) return v1 + (request ? "WriteFileRequest" : "WriteFileResponse");
    if (request) return method == "POST" && path == "/v1/sandboxes" ? v1 + "Sandbox" : "";
    if (ends(":readFile")) return v1 + "ReadFileResponse";
    if (method == "DELETE") return v1 + "DeleteSandboxResponse";
    if (path == "/v1/sandboxes" && method == "GET") return v1 + "ListSandboxesResponse";
    return v1 + "Sandbox";
  }

  /// Writes each JSON body (up to 1 MiB) to `dir` as `<pid>-<n>.<message>.json`, for a strict
  /// parse with the API's own descriptors (.ci/wire-json).
  static decltype(server_options::trace) capture_into(std::string dir) {
    static std::atomic<int> n{0}; // one count for every server of the process: names never repeat
    return [dir = std::move(dir)](std::string_view method, std::string_view path,
                                  std::string_view request, int status, std::string_view response) {
      auto put = [&](std::string_view body, bool is_request) {
        std::string type = message_of(method, path, is_request, status);
        if (type.empty() || body.empty() || body.size() > (1u << 20)) return;
        std::string file = dir + "/" + std::to_string(::getpid()) + "-" + std::to_string(n++) +
                           "." + type + ".json";
        if (std::FILE* f = std::fopen(file.c_str(), "wb")) {
          std::fwrite(body.data(), 1, body.size(), f);
          std::fclose(f);
        }
      };
      put(request, true);
      put(response, false);
    };
  }

  std::string token_;
  std::string url_;
  std::unique_ptr<server<local_transport>> srv_;
};

} // namespace sandbox::testing
