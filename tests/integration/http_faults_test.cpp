// SPDX-License-Identifier: MIT
// http_transport against a loopback server whose every answer the test scripts: transient
// errors, rate limits with RetryInfo, cut connections, malformed, truncated and oversized bodies,
// slow replies, late exit codes, refused connections. Each case ends in the right typed error or
// the right result, and none hangs.
#include "../support/every_byte.hpp"

#include <sandbox/http.hpp>

#include <httplib.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using sandbox::errc;
using sandbox::State;
using std::chrono::milliseconds;
using clk = std::chrono::steady_clock;

namespace {

/// Retries quickly within a 600 ms budget, so that giving up is observable in a test.
using quick_retry = sandbox::exponential_backoff<20, 150, 100, 600, 2000>;
using transport_t = sandbox::basic_http_transport<quick_retry>;
using box_t = sandbox::basic_sandbox<transport_t, quick_retry, sandbox::return_errors>;

struct seen {
  std::string method, path, query, body, authorization, deadline;
  clk::time_point at;
  int port = 0; ///< the client's end of the connection
};

/// Holds the server's handlers until the test ends (a minute at most): a server that never answers.
/// Declare it before the service, and its `release` after, so the handlers are let go first.
struct gate {
  std::atomic<bool> open{false};
  void wait() const {
    for (int i = 0; i < 6000 && !open; ++i)
      std::this_thread::sleep_for(10ms);
  }
  struct release {
    gate& g;
    ~release() { g.open = true; }
  };
};

/// A loopback HTTP server; `answer` decides each reply (n counts requests from 0).
class scripted_service {
public:
  using answer_fn = std::function<void(const httplib::Request&, httplib::Response&, int n)>;

  scripted_service() {
    srv_.set_tcp_nodelay(true);
    srv_.set_keep_alive_max_count(1000);
    auto any = [this](const httplib::Request& q, httplib::Response& r) { dispatch(q, r); };
    srv_.Get(".*", any);
    srv_.Post(".*", any);
    srv_.Delete(".*", any);
    port_ = srv_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { srv_.listen_after_bind(); });
    while (!srv_.is_running())
      std::this_thread::sleep_for(1ms);
  }
  ~scripted_service() {
    srv_.stop();
    thread_.join();
  }

  void on(answer_fn f) {
    std::lock_guard lk(m_);
    answer_ = std::move(f);
  }

  [[nodiscard]] std::shared_ptr<transport_t> client(sandbox::http_options o = {}) const {
    o.base_url = "http://127.0.0.1:" + std::to_string(port_);
    if (o.api_key.empty() && o.wandb_api_key.empty()) o.api_key = "test-key-123";
    o.poll_initial = 10ms;
    o.poll_max = 50ms;
    if (o.exit_code_grace_interval == sandbox::http_options{}.exit_code_grace_interval)
      o.exit_code_grace_interval = 30ms; // a test that needs the grace sets its own
    return transport_t::make(o).value();
  }

  [[nodiscard]] std::vector<seen> requests() const {
    std::lock_guard lk(m_);
    return seen_;
  }

private:
  void dispatch(const httplib::Request& q, httplib::Response& r) {
    answer_fn f;
    int n = 0;
    {
      std::lock_guard lk(m_);
      auto at = q.target.find('?');
      seen_.push_back({q.method, q.path, at == std::string::npos ? "" : q.target.substr(at + 1),
                       q.body, q.get_header_value("Authorization"),
                       q.get_header_value("grpc-timeout"), clk::now(), q.remote_port});
      n = static_cast<int>(seen_.size()) - 1;
      f = answer_;
    }
    if (f) f(q, r, n);
  }

  httplib::Server srv_;
  std::thread thread_;
  int port_ = 0;
  mutable std::mutex m_;
  answer_fn answer_;
  std::vector<seen> seen_;
};

void json(httplib::Response& r, int status, const std::string& body) {
  r.status = status;
  r.set_content(body, "application/json");
}

std::string sandbox_json(const std::string& state, const std::string& extra = "") {
  return R"({"sandboxId":"sbx-1","status":{"state":")" + state + "\"" + extra + "}}";
}

const std::string unavailable = R"({"code":14,"message":"try later"})";

milliseconds since(clk::time_point t) {
  return std::chrono::duration_cast<milliseconds>(clk::now() - t);
}

} // namespace

TEST_CASE("base URLs are checked", "[http][faults][unit]") {
  using sandbox::http::detail::parse_base_url;
  auto ok = parse_base_url("https://api.cwsandbox.com/", false);
  REQUIRE(ok);
  CHECK(ok.value().tls);
  CHECK(ok.value().port == 443);
  CHECK(parse_base_url("http://127.0.0.1:8080", false).value().port == 8080);
  CHECK(parse_base_url("http://[::1]:9", false).value().host == "::1");
  CHECK(parse_base_url("http://localhost", false).value().port == 80);
  auto plain = parse_base_url("http://example.com", false);
  REQUIRE_FALSE(plain);
  CHECK(plain.error().message.find("loopback") != std::string::npos);
  CHECK(parse_base_url("http://example.com", true));
  CHECK(parse_base_url("https://host/v1", false).error().is(errc::validation));
  CHECK(parse_base_url("ftp://host", false).error().is(errc::validation));
  CHECK(parse_base_url("https://host:99999", false).error().is(errc::validation));
  CHECK(parse_base_url("https://host:", false).error().is(errc::validation));
  auto creds = parse_base_url("https://user:secret@host", false);
  REQUIRE_FALSE(creds);
  CHECK(creds.error().message.find("secret") == std::string::npos);

  auto bad = transport_t::make({.base_url = "https://host/path"});
  REQUIRE_FALSE(bad);
  CHECK(bad.error().is(errc::validation));
  transport_t unusable(sandbox::http_options{.base_url = "nope"});
  CHECK(unusable.get("x").error().is(errc::validation));
  auto header = transport_t::make({.base_url = "https://h", .api_key = "a\r\nX-Evil: 1"});
  REQUIRE_FALSE(header);
  CHECK(header.error().message.find("Evil") == std::string::npos);
  auto never = transport_t::make({.base_url = "https://h", .connect_timeout = 0ms});
  REQUIRE_FALSE(never);
  CHECK(never.error().is(errc::validation));
  CHECK(never.error().message.find("connect_timeout") != std::string::npos);
}

TEST_CASE("grpc-timeout values round-trip", "[http][faults][unit]") {
  using sandbox::http::format_grpc_timeout;
  using sandbox::http::parse_grpc_timeout;
  CHECK(format_grpc_timeout(500ms) == "500m");
  CHECK(parse_grpc_timeout("500m") == 500ms);
  CHECK(parse_grpc_timeout("2S") == 2000ms);
  CHECK(parse_grpc_timeout("1H") == milliseconds(3600000));
  CHECK(parse_grpc_timeout(format_grpc_timeout(milliseconds(123456789))) >= 123456789ms);
  CHECK_FALSE(parse_grpc_timeout("5"));
  CHECK_FALSE(parse_grpc_timeout("x5m"));
  CHECK_FALSE(parse_grpc_timeout("123456789m"));
}

TEST_CASE("a 503 is retried and the create keeps its request id", "[http][faults]") {
  scripted_service svc;
  svc.on([](auto&, auto& r, int n) {
    if (n < 2)
      json(r, 503, unavailable);
    else
      json(r, 200, sandbox_json("STATE_CREATING"));
  });
  auto made = box_t::run({}, svc.client());
  REQUIRE(made);
  CHECK(made.value().id() == "sbx-1");
  auto rq = svc.requests();
  REQUIRE(rq.size() >= 3);
  CHECK(rq[0].method == "POST");
  CHECK(rq[0].query.find("requestId=") == 0);
  CHECK(rq[0].query == rq[1].query);
  CHECK(rq[1].query == rq[2].query);
  CHECK(rq[0].authorization == "Bearer test-key-123");
  // The spec: one container "main", the default image, the keep-alive shell.
  CHECK(rq[0].body.find(R"("image":"python:3.11")") != std::string::npos);
  CHECK(rq[0].body.find(R"("command":"/bin/sh")") != std::string::npos);
  svc.on([](auto&, auto& res, int) {
    json(res, 200, R"({"sandbox":)" + sandbox_json("STATE_TERMINATED") + "}");
  });
}

TEST_CASE("a 429 with RetryInfo waits as long as the server asks", "[http][faults]") {
  scripted_service svc;
  svc.on([](auto&, auto& r, int n) {
    if (n == 0)
      json(r, 429,
           R"({"code":8,"message":"slow down","details":[{"@type":)"
           R"("type.googleapis.com/google.rpc.RetryInfo","retryDelay":"0.300s"}]})");
    else
      json(r, 200, sandbox_json("STATE_RUNNING"));
  });
  auto t = svc.client();
  auto r = sandbox::detail::with_retry(quick_retry{}, [&] { return t->get("sbx-1"); });
  REQUIRE(r);
  auto rq = svc.requests();
  REQUIRE(rq.size() == 2);
  auto gap = std::chrono::duration_cast<milliseconds>(rq[1].at - rq[0].at);
  CHECK(gap >= 300ms); // the server's hint, not the policy's own backoff (at most 150 ms)

  // Without retrying, the error carries what the server said.
  scripted_service once;
  once.on([](auto&, auto& res, int) {
    json(res, 429,
         R"({"code":8,"message":"slow down","details":[{"@type":)"
         R"("type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.5s"}]})");
  });
  auto e = once.client()->get("sbx-1");
  REQUIRE_FALSE(e);
  CHECK(e.error().is(errc::resource_exhausted));
  REQUIRE(e.error().server);
  CHECK(e.error().server->retry_delay == 1500ms);
  CHECK(e.error().server->http_status == 429);
}

TEST_CASE("a connection cut mid-response", "[http][faults]") {
  scripted_service svc;
  std::atomic<bool> cut_gets{true};
  svc.on([&](const httplib::Request& q, httplib::Response& r, int) {
    if (cut_gets || q.method == "POST") {
      r.set_content_provider(1000, "application/json",
                             [](std::size_t off, std::size_t, httplib::DataSink& sink) {
                               if (off == 0) return sink.write(R"({"sandboxId":"sb)", 16);
                               return false; // the server drops the connection
                             });
    } else {
      json(r, 200, sandbox_json("STATE_RUNNING"));
    }
  });
  auto t = svc.client();
  auto once = t->get("sbx-1");
  REQUIRE_FALSE(once);
  CHECK(once.error().is(errc::unavailable)); // a read: safe to repeat, hence transient
  auto start = clk::now();
  auto retried = sandbox::detail::with_retry(quick_retry{}, [&] { return t->get("sbx-1"); });
  REQUIRE_FALSE(retried);
  CHECK(retried.error().is(errc::unavailable));
  CHECK(since(start) >= 500ms); // the whole budget was used
  CHECK(since(start) < 30s);    // and no more than it (600 ms)

  // Exec is never repeated once the request may have reached the server.
  cut_gets = false;
  REQUIRE(t->get("sbx-1"));
  std::size_t before = svc.requests().size();
  auto p = t->exec("sbx-1", std::vector<std::string>{"true"}, {});
  REQUIRE(p);
  auto r = p.value().wait(10s);
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::transport));
  CHECK(r.error().message.find("not repeated") != std::string::npos);
  CHECK(svc.requests().size() == before + 1);

  // A cut now and then is ridden out by the retry policy.
  std::atomic<int> gets{0};
  svc.on([&](const httplib::Request&, httplib::Response& res, int) {
    if (gets++ % 2 == 0)
      return res.set_content_provider(
          100, "application/json",
          [](std::size_t, std::size_t, httplib::DataSink&) { return false; });
    json(res, 200, sandbox_json("STATE_RUNNING"));
  });
  auto again = sandbox::detail::with_retry(quick_retry{}, [&] { return t->get("sbx-1"); });
  CHECK(again);
  CHECK(gets == 2);
}

TEST_CASE("malformed, truncated and mistyped bodies are protocol errors", "[http][faults]") {
  scripted_service svc;
  std::string body;
  svc.on([&](auto&, auto& res, int) { json(res, 200, body); });
  auto t = svc.client();
  for (const char* b :
       {"{not json", R"({"sandboxId":"sb)", R"({"sandboxId":5})", R"({"status":{"state":[]}})",
        R"({"status":{"exitCode":"x"}})", "[]", "", R"({"sandboxId":"a"} trailing)"}) {
    body = b;
    INFO(body);
    auto r = t->get("sbx-1");
    REQUIRE_FALSE(r);
    CHECK(r.error().is(errc::protocol));
  }
  body = R"({"sandboxId":"sbx-1","status":{"state":"STATE_FROM_THE_FUTURE"},"newField":{"a":1}})";
  auto future = t->get("sbx-1");
  REQUIRE(future);
  CHECK(future.value().state == State::UNSPECIFIED);

  // An error status whose body is not JSON still maps by its HTTP status.
  svc.on([](auto&, auto& r, int) {
    r.status = 502;
    r.set_content("<html>bad gateway</html>", "text/html");
  });
  auto gw = t->get("sbx-1");
  REQUIRE_FALSE(gw);
  CHECK(gw.error().is(errc::unavailable));
  CHECK(gw.error().message.find("bad gateway") != std::string::npos);
}

TEST_CASE("an error body's reason picks the error, and the key never shows", "[http][faults]") {
  scripted_service svc;
  svc.on([](auto&, auto& r, int) {
    json(r, 404,
         R"({"code":5,"message":"no such file","details":[{"@type":"type.googleapis.com/)"
         R"(google.rpc.ErrorInfo","reason":"CWSANDBOX_FILE_NOT_FOUND","domain":"cwsandbox.com",)"
         R"("metadata":{"filepath":"/x"}}]})");
  });
  auto t = svc.client({.api_key = "very-secret-key"});
  auto r = t->read_file("sbx-1", "/x");
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::file_not_found));
  REQUIRE(r.error().server);
  CHECK(r.error().server->reason == "CWSANDBOX_FILE_NOT_FOUND");
  CHECK(r.error().server->metadata.size() == 1);
  CHECK(r.error().message.find("very-secret-key") == std::string::npos);
  CHECK(svc.requests().back().query == "path=%2Fx");
}

TEST_CASE("an error body is an error's, whatever members it has", "[http][faults]") {
  // A success's bytes members are decoded as they arrive; an error status's body is not that
  // message, and is read whole as an error (a proxy's page or a status with such a member).
  scripted_service svc;
  svc.on([](auto&, auto& r, int) { json(r, 503, R"({"content":"Service Unavailable"})"); });
  auto t = svc.client();
  auto r = t->read_file("sbx-1", "/x");
  REQUIRE_FALSE(r);
  INFO(r.error().message);
  CHECK(r.error().is(errc::unavailable));
  svc.on([](auto&, auto& res, int) { json(res, 200, R"({"content":"aGVsbG8="})"); });
  auto ok = t->read_file("sbx-1", "/x");
  REQUIRE(ok);
  CHECK(ok.value() == "hello");
}

TEST_CASE("a Connect error body keeps its reason and retry delay", "[http][faults]") {
  scripted_service svc;
  svc.on([](auto&, auto& r, int n) {
    // ErrorInfo {CWSANDBOX_FILE_NOT_FOUND, cwsandbox.com, {path: /x}} and RetryInfo {2.5 s} as
    // protobuf bytes in unpadded base64, as Connect servers send details.
    if (n == 0)
      json(r, 404,
           R"({"code":"not_found","message":"no such file","details":[)"
           R"({"type":"google.rpc.ErrorInfo","value":)"
           R"("ChhDV1NBTkRCT1hfRklMRV9OT1RfRk9VTkQSDWN3c2FuZGJveC5jb20aCgoEcGF0aBICL3g"}]})");
    else
      json(r, 429,
           R"({"code":"resource_exhausted","message":"slow down","details":[)"
           R"({"type":"google.rpc.RetryInfo","value":"CggIAhCAyrXuAQ"}]})");
  });
  auto t = svc.client();
  auto r = t->read_file("sbx-1", "/x");
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::file_not_found)); // not "sandbox not found" from the HTTP status
  REQUIRE(r.error().server);
  CHECK(r.error().server->reason == "CWSANDBOX_FILE_NOT_FOUND");
  CHECK(r.error().server->domain == "cwsandbox.com");
  CHECK(r.error().message.find("no such file") != std::string::npos);
  auto busy = t->get("sbx-1");
  REQUIRE_FALSE(busy);
  CHECK(busy.error().is(errc::resource_exhausted));
  REQUIRE(busy.error().server);
  CHECK(busy.error().server->retry_delay == std::chrono::milliseconds(2500));
}

TEST_CASE("W&B mode sends the documented headers, the entity from either variable",
          "[http][faults]") {
  // The variables this test sets, restored afterwards.
  struct saved_env {
    std::vector<std::pair<std::string, std::optional<std::string>>> saved;
    explicit saved_env(std::initializer_list<const char*> names) {
      for (const char* n : names) {
        const char* v = std::getenv(n);
        saved.emplace_back(n, v ? std::optional<std::string>(v) : std::nullopt);
        ::unsetenv(n);
      }
    }
    ~saved_env() {
      for (const auto& [n, v] : saved)
        v ? ::setenv(n.c_str(), v->c_str(), 1) : ::unsetenv(n.c_str());
    }
  } env{"CWSANDBOX_API_KEY", "WANDB_API_KEY", "WANDB_ENTITY", "WANDB_ENTITY_NAME", "WANDB_PROJECT"};
  ::setenv("WANDB_API_KEY", "wandb-key-1", 1);
  ::setenv("WANDB_ENTITY_NAME", "team-a", 1);
  ::setenv("WANDB_PROJECT", "proj", 1);
  auto o = sandbox::http_options::from_env();
  CHECK(o.wandb_entity == "team-a");
  ::setenv("WANDB_ENTITY", "team-b", 1);
  CHECK(sandbox::http_options::from_env().wandb_entity == "team-b"); // the current name wins

  scripted_service svc;
  std::mutex mu;
  httplib::Headers got;
  svc.on([&](const httplib::Request& q, auto& r, int) {
    std::lock_guard lk(mu);
    got = q.headers;
    json(r, 200, sandbox_json("STATE_RUNNING"));
  });
  auto t = svc.client(o);
  REQUIRE(t->get("sbx-1"));
  std::lock_guard lk(mu);
  auto header = [&](const char* k) {
    auto it = got.find(k);
    return it == got.end() ? std::string("<absent>") : it->second;
  };
  CHECK(header("x-wandb-api-key") == "wandb-key-1");
  CHECK(header("x-entity-id") == "team-a");
  CHECK(header("x-project-name") == "proj");
  CHECK(header("Authorization") == "<absent>");
}

TEST_CASE("a huge body is refused without exhausting memory", "[http][faults]") {
  scripted_service svc;
  bool chunked = false;
  svc.on([&](auto&, httplib::Response& r, int) {
    std::string big(8u << 20, ' ');
    big[0] = '{';
    big.back() = '}';
    if (!chunked) return json(r, 200, big);
    r.set_chunked_content_provider(
        "application/json", [big](std::size_t off, httplib::DataSink& sink) {
          if (off >= big.size()) {
            sink.done();
            return true;
          }
          return sink.write(big.data() + off, std::min<std::size_t>(65536, big.size() - off));
        });
  });
  auto t = svc.client({.max_response_bytes = 1u << 20});
  for (bool c : {false, true}) {
    chunked = c;
    auto r = t->get("sbx-1");
    REQUIRE_FALSE(r);
    CHECK(r.error().is(errc::protocol));
    CHECK(r.error().message.find("larger than") != std::string::npos);
  }
}

TEST_CASE("a reply slower than the read timeout", "[http][faults]") {
  gate slow;
  scripted_service svc;
  gate::release at_end{slow};
  svc.on([&](auto&, auto& r, int) {
    slow.wait();
    json(r, 200, sandbox_json("STATE_RUNNING"));
  });
  auto t = svc.client({.read_timeout = 200ms});
  auto start = clk::now();
  auto r = t->get("sbx-1");
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::timeout));
  CHECK(r.error().transient());
  CHECK(since(start) >= 190ms);
  CHECK(since(start) < 30s); // the read timeout ended it, not the reply
}

TEST_CASE("a read timeout too long to count is no timeout", "[http][faults]") {
  scripted_service svc;
  svc.on([&](auto&, auto& r, int) {
    std::this_thread::sleep_for(300ms);
    json(r, 200, sandbox_json("STATE_RUNNING"));
  });
  auto t = svc.client({.read_timeout = std::chrono::milliseconds::max()});
  auto r = t->get("sbx-1");
  REQUIRE(r);
  CHECK(r.value().state == State::RUNNING);
}

TEST_CASE("404 on stop, with and without missing_ok", "[http][faults]") {
  scripted_service svc;
  svc.on([](auto&, auto& r, int) {
    json(r, 404, R"({"code":5,"message":"sandbox sbx-1 not found"})");
  });
  auto t = svc.client();
  auto strict = t->stop("sbx-1", 1s, false);
  REQUIRE_FALSE(strict);
  CHECK(strict.error().is(errc::not_found));
  auto lenient = t->stop("sbx-1", 1s, true);
  REQUIRE(lenient);
  CHECK(lenient.value().state == State::TERMINATED);
  auto rq = svc.requests();
  CHECK(rq.back().method == "DELETE");
  CHECK(rq.back().query == "gracePeriodSeconds=1&allowMissing=true");

  // An OK without the sandbox (allowMissing on an absent one) is a success too.
  svc.on([](auto&, auto& res, int) { json(res, 200, "{}"); });
  CHECK(t->stop("sbx-1", 0s, true).value().state == State::TERMINATED);
}

TEST_CASE("stop polls until a terminal state, through transient errors", "[http][faults]") {
  scripted_service svc;
  svc.on([](const httplib::Request& q, auto& r, int n) {
    if (q.method == "DELETE")
      return json(r, 200, R"({"sandbox":)" + sandbox_json("STATE_TERMINATING") + "}");
    if (n == 1) return json(r, 503, unavailable);
    if (n < 4) return json(r, 200, sandbox_json("STATE_TERMINATING"));
    json(r, 200, sandbox_json("STATE_TERMINATED"));
  });
  auto t = svc.client();
  auto r = t->stop("sbx-1", 2s, false);
  REQUIRE(r);
  CHECK(r.value().state == State::TERMINATED);
  CHECK(svc.requests().size() == 5);
}

TEST_CASE("a COMPLETED status whose exit code arrives one poll late", "[http][faults]") {
  scripted_service svc;
  svc.on([](auto&, auto& r, int n) {
    if (n == 0) return json(r, 200, sandbox_json("STATE_RUNNING"));
    if (n == 1) return json(r, 200, sandbox_json("STATE_COMPLETED"));
    json(r, 200, sandbox_json("STATE_COMPLETED", R"(,"exitCode":7)"));
  });
  auto t = svc.client();
  auto r = t->wait("sbx-1", State::COMPLETED, 10s);
  REQUIRE(r);
  CHECK(r.value().returncode == 7);
  CHECK(svc.requests().size() == 3);

  // Never arriving: a couple of polls more, then the exit code stays unknown.
  scripted_service never;
  never.on([](auto&, auto& res, int) { json(res, 200, sandbox_json("STATE_COMPLETED")); });
  auto u = never.client()->wait("sbx-1", State::COMPLETED, 10s);
  REQUIRE(u);
  CHECK_FALSE(u.value().returncode);
  CHECK(never.requests().size() == 3);

  // exitCode 0 is present, not absent.
  scripted_service zero;
  zero.on([](auto&, auto& res, int) {
    json(res, 200, sandbox_json("STATE_COMPLETED", R"(,"exitCode":0)"));
  });
  auto z = zero.client()->wait("sbx-1", State::COMPLETED, 10s);
  REQUIRE(z);
  CHECK(z.value().returncode == 0);
  CHECK(zero.requests().size() == 1);
}

TEST_CASE("a COMPLETED status with a non-zero exit code completes the sandbox",
          "[http][faults][lifecycle]") {
  scripted_service svc;
  svc.on([](const httplib::Request& q, auto& r, int) {
    if (q.method == "POST") return json(r, 200, sandbox_json("STATE_CREATING"));
    json(r, 200, sandbox_json("STATE_COMPLETED", R"(,"exitCode":7)"));
  });
  auto made = box_t::run({.command = {"sh", "-c", "exit 7"}}, svc.client());
  REQUIRE(made);
  auto& job = made.value();
  CHECK(job.wait_until_complete(10s));
  CHECK(job.returncode() == 7);
  CHECK(job.state().value() == State::COMPLETED);
}

TEST_CASE("a FAILED status says why, and an OOM kill is recognised", "[http][faults][lifecycle]") {
  scripted_service svc;
  svc.on([](const httplib::Request& q, auto& r, int) {
    if (q.method == "POST") return json(r, 200, sandbox_json("STATE_CREATING"));
    json(r, 200,
         sandbox_json("STATE_FAILED", R"(,"stateReason":"the main command was not found: 'x'")"));
  });
  auto made = box_t::run({.command = {"x"}}, svc.client());
  REQUIRE(made);
  auto r = made.value().wait_until_complete(10s);
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::failed));
  CHECK(r.error().message == "sandbox sbx-1 failed: the main command was not found: 'x'");
  CHECK_FALSE(made.value().oom_killed());
  CHECK_FALSE(made.value().returncode());

  scripted_service oom;
  oom.on([](auto&, auto& res, int) {
    json(res, 200,
         sandbox_json("STATE_FAILED", R"(,"exitCode":137,"stateReason":"OOMKilled: over 1Gi")"));
  });
  auto i = oom.client()->wait("sbx-1", State::COMPLETED, 10s);
  REQUIRE(i);
  CHECK(i.value().state == State::FAILED);
  CHECK(i.value().oom_killed);
  CHECK(i.value().returncode == 137);
  CHECK(i.value().status_reason == "OOMKilled: over 1Gi");
  CHECK(oom.requests().size() == 1); // FAILED is no completion awaiting its code

  // The reason alone does not make a completed sandbox an OOM kill.
  scripted_service done;
  done.on([](auto&, auto& res, int) {
    json(res, 200, sandbox_json("STATE_COMPLETED", R"(,"exitCode":137,"stateReason":"OOMKilled")"));
  });
  auto d = done.client()->wait("sbx-1", State::COMPLETED, 10s);
  REQUIRE(d);
  CHECK_FALSE(d.value().oom_killed);
}

TEST_CASE("no exit code is waited for after this client's stop, nor from an old service",
          "[http][faults][lifecycle]") {
  // Stopped by this client: the service stamps no exit code, so none is waited for.
  scripted_service svc;
  svc.on([](const httplib::Request& q, auto& r, int) {
    if (q.method == "DELETE")
      return json(r, 200, R"({"sandbox":)" + sandbox_json("STATE_TERMINATING") + "}");
    json(r, 200, sandbox_json("STATE_COMPLETED"));
  });
  auto t = svc.client();
  REQUIRE(t->stop("sbx-1", 0s, false));
  CHECK(svc.requests().size() == 2); // DELETE, one GET
  auto w = t->wait("sbx-1", State::COMPLETED, 10s);
  REQUIRE(w);
  CHECK_FALSE(w.value().returncode);
  CHECK(svc.requests().size() == 3);

  // A stop that comes while the grace polls wait ends them.
  scripted_service racing;
  racing.on([](const httplib::Request& q, auto& r, int) {
    if (q.method == "DELETE")
      return json(r, 200, R"({"sandbox":)" + sandbox_json("STATE_TERMINATING") + "}");
    json(r, 200, sandbox_json("STATE_COMPLETED"));
  });
  sandbox::http_options slow_grace;
  // Long enough for the stop below to land within the first grace interval on a loaded host.
  slow_grace.exit_code_grace_interval = 5s;
  auto v = racing.client(slow_grace);
  bool waited = false;
  std::thread waiter([&] { waited = bool(v->wait("sbx-1", State::COMPLETED, 60s)); });
  for (int i = 0; i < 6000 && racing.requests().empty(); ++i)
    std::this_thread::sleep_for(10ms);
  bool stopped = bool(v->stop("sbx-1", 0s, false));
  waiter.join();
  CHECK(waited);
  CHECK(stopped);
  CHECK(racing.requests().size() == 3); // GET, DELETE, GET: no grace poll after the stop

  // UNSPECIFIED comes only from a service that predates exit codes: latched at once.
  scripted_service old;
  old.on([](auto&, auto& res, int) { json(res, 200, sandbox_json("STATE_UNSPECIFIED")); });
  auto o = old.client()->wait("sbx-1", State::COMPLETED, 10s);
  REQUIRE(o);
  CHECK(o.value().state == State::COMPLETED);
  CHECK(old.requests().size() == 1);
}

TEST_CASE("wait survives transient errors and ends at its deadline", "[http][faults]") {
  scripted_service svc;
  svc.on([](auto&, auto& r, int n) {
    if (n % 2) return json(r, 503, unavailable);
    json(r, 200, sandbox_json(n < 6 ? "STATE_CREATING" : "STATE_RUNNING"));
  });
  auto t = svc.client();
  auto r = t->wait("sbx-1", State::RUNNING, 10s);
  REQUIRE(r);
  CHECK(r.value().state == State::RUNNING);

  scripted_service slow;
  slow.on([](auto&, auto& res, int) { json(res, 200, sandbox_json("STATE_PENDING")); });
  auto start = clk::now();
  auto late = slow.client()->wait("sbx-1", State::RUNNING, 300ms);
  REQUIRE_FALSE(late);
  CHECK(late.error().is(errc::timeout));
  CHECK(since(start) < 30s); // the caller's timeout, not the service's state, ended it

  scripted_service failing;
  failing.on([](auto&, auto& res, int) {
    json(res, 200, sandbox_json("STATE_FAILED", R"(,"exitCode":1)"));
  });
  auto f = failing.client()->wait("sbx-1", State::RUNNING, 10s);
  REQUIRE(f);
  CHECK(f.value().state == State::FAILED);
}

TEST_CASE("connection refused is retried within the budget, then unavailable", "[http][faults]") {
  int port = 0;
  {
    scripted_service gone; // a port that was just free, and is closed again
    auto rq = gone.client()->options().base_url;
    port = std::stoi(rq.substr(rq.rfind(':') + 1));
  }
  auto t = transport_t::make({.base_url = "http://127.0.0.1:" + std::to_string(port)}).value();
  auto start = clk::now();
  auto made = box_t::run({}, t);
  REQUIRE_FALSE(made);
  CHECK(made.error().is(errc::unavailable));
  CHECK(since(start) >= 500ms);
  CHECK(since(start) < 30s); // the retry budget (600 ms) bounds it

  // Exec: connecting is retried (nothing can have reached the server), then unavailable.
  auto p = t->exec("sbx-1", std::vector<std::string>{"true"}, {});
  REQUIRE_FALSE(p); // not known to be RUNNING: the status poll fails first
  CHECK(p.error().is(errc::unavailable));
}

TEST_CASE("exec over a scripted server: argv, cwd, env and the deadline header",
          "[http][faults][exec]") {
  scripted_service svc;
  svc.on([](const httplib::Request& q, auto& r, int) {
    if (q.method == "GET") return json(r, 200, sandbox_json("STATE_RUNNING"));
    json(r, 200, R"({"stdout":"aGk=","exitCode":2,"stdoutBytesProduced":"2"})");
  });
  auto t = svc.client();
  std::vector<std::string> argv{"ls", "-l", "a b"};
  auto p = t->exec("sbx-1", argv,
                   {.cwd = "/tmp/x y", .env = {{"K", "v"}}, .timeout = 5s, .max_output_bytes = 10});
  REQUIRE(p);
  auto r = p.value().wait(10s);
  REQUIRE(r);
  CHECK(r.value().stdout_text == "hi");
  CHECK(r.value().returncode == 2);
  CHECK(r.value().command == argv);
  CHECK(p.value().poll() == 2);
  auto rq = svc.requests();
  REQUIRE(rq.size() == 2); // one status poll (never seen RUNNING before), then the exec
  CHECK(rq[1].path == "/v1/sandboxes/sbx-1:exec");
  CHECK(rq[1].deadline == "5000m");
  CHECK(rq[1].body ==
        R"({"command":["/bin/sh","-c","cd '/tmp/x y' && exec ls -l 'a b'"],"env":{"K":"v"},)"
        R"("maxOutputBytes":10})");
  // Seen RUNNING now: the next exec goes straight to the server.
  auto again = t->exec("sbx-1", argv, {});
  REQUIRE(again);
  CHECK(again.value().wait(10s));
  CHECK(svc.requests().size() == 3);
}

TEST_CASE("exec timeouts: the server's 504, and a server that never answers",
          "[http][faults][exec]") {
  gate never;
  scripted_service svc;
  gate::release at_end{never};
  std::atomic<bool> hang{false};
  svc.on([&](const httplib::Request& q, auto& r, int) {
    if (q.method == "GET") return json(r, 200, sandbox_json("STATE_RUNNING"));
    if (hang) {
      never.wait();
      return json(r, 200, R"({"exitCode":0})");
    }
    json(r, 504, R"({"code":4,"message":"deadline exceeded"})");
  });
  auto t = svc.client({.exec_timeout_grace = 200ms});
  std::vector<std::string> argv{"sleep", "9"};
  auto r = t->exec("sbx-1", argv, {.timeout = 100ms}).value().wait(std::nullopt);
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::command_timeout));

  hang = true;
  auto start = clk::now();
  auto p = t->exec("sbx-1", argv, {.timeout = 100ms}).value();
  auto early = p.wait(50ms);
  REQUIRE_FALSE(early);
  CHECK(early.error().is(errc::timeout)); // this wait only
  auto late = p.wait(std::nullopt);
  REQUIRE_FALSE(late);
  CHECK(late.error().is(errc::command_timeout));
  CHECK(since(start) >= 280ms);

  // kill and destruction abandon a request the server sits on.
  start = clk::now();
  auto k = t->exec("sbx-1", argv, {}).value();
  CHECK(k.kill(9));
  auto killed = k.wait(std::nullopt);
  REQUIRE_FALSE(killed);
  CHECK(killed.error().is(errc::not_running));
  { auto dropped = t->exec("sbx-1", argv, {}).value(); }
  CHECK(since(start) < 30s); // the server sits on them until the test ends
}

TEST_CASE("a response is read whole at and around the client's read sizes, in pieces of any "
          "size, one after another on one connection",
          "[http][faults][exec]") {
  // The plain-TCP client reads up to 16 KiB at first and 256 KiB once a response fills that
  // (tcp_client.hpp); cpp-httplib takes 4 KiB at a time from it. The server sends each body in
  // pieces of a scripted size, with a length or chunked.
  using sandbox::http::base64_encode;
  scripted_service svc;
  std::string body; // the next exec's answer
  std::size_t piece = 0;
  bool chunked = false;
  svc.on([&](const httplib::Request& q, httplib::Response& r, int) {
    if (q.method == "GET") return json(r, 200, sandbox_json("STATE_RUNNING"));
    auto b = std::make_shared<const std::string>(body);
    const std::size_t most = piece;
    if (chunked)
      return r.set_chunked_content_provider(
          "application/json", [b, most](std::size_t off, httplib::DataSink& sink) {
            if (off >= b->size()) {
              sink.done();
              return true;
            }
            return sink.write(b->data() + off, std::min(most, b->size() - off));
          });
    r.set_content_provider(b->size(), "application/json",
                           [b, most](std::size_t off, std::size_t len, httplib::DataSink& sink) {
                             return sink.write(b->data() + off, std::min(most, len));
                           });
  });
  auto t = svc.client();
  // An exec's answer of exactly `length` bytes (blanks before its last brace), and its output.
  auto answer_of = [](std::size_t length) {
    std::size_t n = length > 96 ? (length - 96) / 4 * 3 : 1;
    std::string data = sandbox::testing::every_byte(n);
    std::string text = R"({"stdout":")" + base64_encode(data) + R"(","exitCode":3,)" +
                       R"("stdoutBytesProduced":")" + std::to_string(n) + "\"";
    REQUIRE(text.size() < length);
    text.append(length - text.size() - 1, ' ');
    text += '}';
    return std::pair{text, data};
  };
  constexpr std::size_t KiB = 1024;
  const std::size_t small = 16 * KiB, big = 256 * KiB;
  for (std::size_t length : {small - 1, small, small + 1, big - 1, big, big + 1, small + big - 1,
                             small + big, small + big + 1, small + 2 * big + 1, std::size_t{200}}) {
    auto [text, data] = answer_of(length);
    body = text;
    for (std::size_t p : {std::size_t{1}, 4 * KiB - 1, 4 * KiB + 1, small, small + 1, big + 7,
                          std::size_t{SIZE_MAX}}) {
      if (p == 1 && length > small + 1) continue; // a send per byte: slow, and no new boundary
      for (bool c : {false, true}) {
        INFO("body " << length << " bytes, pieces of " << p << (c ? ", chunked" : ""));
        piece = p;
        chunked = c;
        auto r = t->exec("sbx-1", std::vector<std::string>{"x"}, {}).value().wait(30s);
        REQUIRE(r);
        CHECK(r.value().returncode == 3);
        CHECK(r.value().stdout_bytes_produced == data.size());
        CHECK(r.value().stdout_text == data);
        // A small answer after a large one, on the same connection.
        auto g = t->get("sbx-1");
        REQUIRE(g);
        CHECK(g.value().state == State::RUNNING);
      }
    }
  }
  std::set<int> ports;
  for (auto& q : svc.requests())
    ports.insert(q.port);
  CHECK(ports.size() == 1); // nothing was left unread to spoil the connection for the next
}

TEST_CASE("a body that stops coming is a timeout, after the part that came", "[http][faults]") {
  gate stalled;
  std::atomic<bool> released{false}; // the server gave up waiting (after a minute)
  scripted_service svc;
  gate::release at_end{stalled};
  svc.on([&](auto&, httplib::Response& r, int) {
    const std::string head = R"({"sandboxId":"sbx-1",)" + std::string(40000, ' ');
    r.set_content_provider(
        head.size() + 100, "application/json",
        [head, &stalled, &released](std::size_t off, std::size_t, httplib::DataSink& sink) {
          if (off == 0) return sink.write(head.data(), head.size());
          stalled.wait();
          released = true;
          return false;
        });
  });
  auto t = svc.client({.read_timeout = 300ms});
  auto start = clk::now();
  auto r = t->get("sbx-1");
  CHECK_FALSE(released); // the client's read timeout ended it, not the server
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::timeout));
  CHECK(since(start) >= 290ms);
}
