// SPDX-License-Identifier: MIT
// The REST server against clients that do not behave: connections held idle, headers or bodies
// trickled, responses never read, creates without end. None may keep other clients from being
// served, pin a thread for good, or exhaust the host.
#include "../support/host.hpp"
#include "../support/loopback_server.hpp"

#include <sandbox/sandbox.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

using namespace std::chrono_literals;
namespace wire = sandbox::http::wire;

namespace {

using clock_type = std::chrono::steady_clock;

/// A raw TCP connection to the server on loopback, for clients that do not behave.
class raw_client {
public:
  explicit raw_client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // A send that the server never takes fails after a minute rather than hanging the test.
    timeval tv{60, 0};
    if (fd_ >= 0) ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~raw_client() {
    if (fd_ >= 0) ::close(fd_);
  }
  raw_client(const raw_client&) = delete;
  raw_client& operator=(const raw_client&) = delete;

  [[nodiscard]] bool connected() const noexcept { return fd_ >= 0; }

  /// Sends all of `s`; false once the server has closed or reset the connection (or has taken
  /// nothing for a minute: `refused()` then stays false).
  bool send(std::string_view s) noexcept {
    while (!s.empty()) {
      ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
      if (n <= 0) {
        refused_ = n < 0 && (errno == EPIPE || errno == ECONNRESET);
        return false;
      }
      s.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  /// The last failed send failed because the server closed or reset the connection.
  [[nodiscard]] bool refused() const noexcept { return refused_; }

  /// Whether the server has closed the connection (EOF or reset), reading whatever it sent
  /// before; waits at most `wait` for more.
  bool closed_by_server(std::chrono::milliseconds wait) noexcept {
    auto until = clock_type::now() + wait;
    char buf[65536];
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - clock_type::now());
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(std::max(left, 0ms).count())) <= 0) return false;
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return true;
      received_.append(buf, static_cast<std::size_t>(std::min<ssize_t>(n, 4096)));
    }
  }

  /// The start of what the server sent (up to 4 KiB per read).
  [[nodiscard]] const std::string& received() const noexcept { return received_; }

private:
  int fd_ = -1;
  bool refused_ = false;
  std::string received_;
};

/// Lets this process hold `n` descriptors (each loopback connection takes two here).
void allow_descriptors(rlim_t n) {
  rlimit r{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &r) == 0);
  if (r.rlim_cur >= n) return;
  r.rlim_cur = std::min(n, r.rlim_max);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &r) == 0);
  REQUIRE(r.rlim_cur >= n);
}

std::unique_ptr<httplib::Client> client_of(const sandbox::testing::loopback_server& s) {
  auto c = std::make_unique<httplib::Client>(s.url());
  c->set_bearer_token_auth(s.token());
  c->set_read_timeout(60, 0);
  return c;
}

/// A keep-alive sandbox created through `c`; its id.
std::string create_sandbox(httplib::Client& c) {
  auto made =
      c.Post("/v1/sandboxes", R"({"spec":{"containers":[{"name":"main","image":"python:3.11"}]}})",
             "application/json");
  REQUIRE(made);
  REQUIRE(made->status == 200);
  auto sb =
      sandbox::http::from_json<wire::Sandbox>(made->body, sandbox::http::decode_mode::lenient);
  REQUIRE(sb);
  return sb.value().sandbox_id;
}

std::string request(std::string_view method, std::string_view path, std::string_view token,
                    std::string_view body = "") {
  std::string r =
      std::string(method) + " " + std::string(path) +
      " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + std::string(token) +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\n\r\n";
  return r + std::string(body);
}

} // namespace

TEST_CASE("idle connections and slow headers do not keep a request from being answered",
          "[server][clients]") {
  allow_descriptors(1500);
  sandbox::server_options o;
  o.threads = 4;
  o.keep_alive_timeout = 1h; // nothing is closed for being idle while the test runs
  o.header_timeout = 1h;
  sandbox::testing::loopback_server srv(o);
  const int port = srv.get().port();

  std::vector<std::unique_ptr<raw_client>> idle;
  for (int i = 0; i < 500; ++i) {
    idle.push_back(std::make_unique<raw_client>(port));
    REQUIRE(idle.back()->connected());
  }
  // More slowloris clients than the server has threads, each mid-header, one byte a second.
  std::vector<std::unique_ptr<raw_client>> slow;
  for (int i = 0; i < 8; ++i) {
    slow.push_back(std::make_unique<raw_client>(port));
    REQUIRE(slow.back()->send("GET /v1/sandboxes HTTP/1.1\r\nX-Slow: "));
  }
  std::atomic<bool> done{false};
  std::thread trickle([&] {
    while (!done) {
      for (auto& s : slow)
        (void)s->send("s");
      for (int i = 0; i < 10 && !done; ++i)
        std::this_thread::sleep_for(100ms);
    }
  });
  std::this_thread::sleep_for(1500ms); // the server has seen every connection and some bytes

  auto c = client_of(srv);
  auto started = clock_type::now();
  auto r = c->Get("/v1/sandboxes");
  auto took = std::chrono::duration<double, std::milli>(clock_type::now() - started).count();
  done = true;
  trickle.join();
  REQUIRE(r);
  CHECK(r->status == 200);
  WARN("answered in " << took << " ms beside 500 idle connections and 8 slow ones");
  // Nobody was dropped to make room.
  for (auto& i : idle)
    CHECK_FALSE(i->closed_by_server(0ms));
  for (auto& s : slow)
    CHECK_FALSE(s->closed_by_server(0ms));
}

TEST_CASE("a client that trickles its headers is cut off at the header timeout",
          "[server][clients]") {
  sandbox::server_options o;
  o.header_timeout = 1s;
  o.keep_alive_timeout = 1h;
  sandbox::testing::loopback_server srv(o);
  raw_client slow(srv.get().port());
  REQUIRE(slow.send("GET /v1/sandboxes HTTP/1.1\r\nX-Slow: "));
  // Each byte comes well within the read timeout (30 s): only the headers' deadline ends it.
  auto started = clock_type::now();
  bool cut = false;
  for (int i = 0; i < 300 && !cut; ++i)
    cut = !slow.send("s") || slow.closed_by_server(100ms);
  CHECK(cut);
  CHECK(clock_type::now() - started >= 900ms);
  // Headers that never end are cut off by their size as well, whatever the time.
  raw_client flood(srv.get().port());
  std::string line = "X-Flood: " + std::string(1000, 'f') + "\r\n";
  bool stopped = !flood.send("GET /v1/sandboxes HTTP/1.1\r\n");
  for (int i = 0; i < 2048 && !stopped; ++i)
    stopped = !flood.send(line);
  CHECK((stopped ? flood.refused() : flood.closed_by_server(60s)));
}

TEST_CASE("half of a next request waits under the header timeout, not on a thread",
          "[server][clients]") {
  sandbox::server_options o;
  o.header_timeout = 1s;
  o.keep_alive_timeout = 1h;
  sandbox::testing::loopback_server srv(o);
  raw_client c(srv.get().port());
  // One whole request and the start of another in one go, then nothing more.
  REQUIRE(c.send(request("GET", "/v1/sandboxes", srv.token()) +
                 "GET /v1/sandboxes HTTP/1.1\r\nHost: x\r\n"));
  CHECK(c.closed_by_server(20s));
  CHECK_THAT(c.received(), Catch::StartsWith("HTTP/1.1 200"));
}

TEST_CASE("a request refused before its body is read ends its connection", "[server][clients]") {
  sandbox::server_options o;
  o.keep_alive_timeout = 1h;
  o.max_request_bytes = 1 << 20;
  sandbox::testing::loopback_server srv(o);
  // A wrong token: what follows the head is a body, never a request of its own.
  raw_client bad(srv.get().port());
  REQUIRE(bad.send(
      request("POST", "/v1/sandboxes", "wrong", "GET /v1/sandboxes HTTP/1.1\r\nHost: x\r\n\r\n")));
  CHECK(bad.closed_by_server(20s));
  CHECK_THAT(bad.received(), Catch::StartsWith("HTTP/1.1 401"));
  CHECK(bad.received().find("HTTP/1.1", 8) == std::string::npos); // one answer only
  // A body announced larger than the limit is refused before a byte of it is read.
  raw_client big(srv.get().port());
  REQUIRE(big.send("POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                   srv.token() + "\r\nContent-Length: 1073741824\r\n\r\n{"));
  CHECK(big.closed_by_server(20s)); // well before the read timeout (30 s)
  CHECK_THAT(big.received(), Catch::StartsWith("HTTP/1.1 400"));
  CHECK(big.received().find("larger than the server's limit") != std::string::npos);
  // A chunked body, whose size nothing bounds before it is read, is refused outright.
  raw_client chunked(srv.get().port());
  REQUIRE(chunked.send("POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                       srv.token() + "\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n"));
  CHECK(chunked.closed_by_server(20s));
  CHECK_THAT(chunked.received(), Catch::StartsWith("HTTP/1.1 411"));
}

TEST_CASE("a client that stalls its body past the read timeout is cut off", "[server][clients]") {
  sandbox::server_options o;
  o.read_timeout = 1s;
  o.keep_alive_timeout = 1h;
  sandbox::testing::loopback_server srv(o);
  raw_client c(srv.get().port());
  std::string full = request("POST", "/v1/sandboxes", srv.token(), std::string(1000, ' '));
  REQUIRE(c.send(full.substr(0, full.size() - 990))); // the headers and 10 bytes of the body
  auto started = clock_type::now();
  CHECK(c.closed_by_server(20s)); // well before the default read timeout (30 s)
  CHECK(clock_type::now() - started >= 900ms);
  // A body that keeps coming, however slowly, is not cut off.
  raw_client steady(srv.get().port());
  REQUIRE(steady.send(full.substr(0, full.size() - 4)));
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(400ms);
    REQUIRE(steady.send(" "));
  }
  REQUIRE(steady.send(" "));
  CHECK_FALSE(steady.closed_by_server(2s)); // answered (400: not JSON), and kept open
  CHECK_THAT(steady.received(), Catch::StartsWith("HTTP/1.1 400"));
}

TEST_CASE("clients that never read their responses do not hold the server's threads",
          "[server][clients]") {
  sandbox::server_options o;
  o.threads = 2;
  o.write_timeout = 1s;
  o.keep_alive_timeout = 1h;
  sandbox::testing::loopback_server srv(o);
  auto c = client_of(srv);
  const std::string id = create_sandbox(*c);

  // As many as the server has threads, each asking for ~64 MB of JSON and reading none of it.
  std::vector<std::unique_ptr<raw_client>> deaf;
  for (int i = 0; i < 2; ++i) {
    deaf.push_back(std::make_unique<raw_client>(srv.get().port()));
    REQUIRE(deaf.back()->send(request("POST", "/v1/sandboxes/" + id + ":exec", srv.token(),
                                      R"({"command":["head","-c","48000000","/dev/zero"]})")));
  }
  // Answered once the server gives up on them (without the write timeout: never), well before
  // the default write timeout (30 s).
  auto other = client_of(srv);
  other->set_read_timeout(20, 0);
  auto r = other->Get("/v1/sandboxes/" + id);
  REQUIRE(r);
  CHECK(r->status == 200);
  (void)c->Delete("/v1/sandboxes/" + id);
}

TEST_CASE("an Exec whose client sends more while it waits ends with its result, without spinning",
          "[server][clients]") {
  // The wait for a command ends when its client's socket becomes readable (a client that left);
  // one that is readable because the client sent its next request must not end every wait.
  sandbox::testing::loopback_server srv;
  auto c = client_of(srv);
  const std::string id = create_sandbox(*c);
  auto cpu_ms = [] {
    rusage u{};
    REQUIRE(::getrusage(RUSAGE_SELF, &u) == 0);
    auto ms = [](timeval t) { return static_cast<double>(t.tv_sec) * 1e3 + t.tv_usec / 1e3; };
    return ms(u.ru_utime) + ms(u.ru_stime);
  };
  raw_client client(srv.get().port());
  REQUIRE(client.connected());
  const double before = cpu_ms();
  REQUIRE(client.send(request("POST", "/v1/sandboxes/" + id + ":exec", srv.token(),
                              R"({"command":["sh","-c","sleep 4; echo done"]})")));
  // The next request once the command runs: it then waits in the socket, not in the server's
  // buffer of the connection.
  std::this_thread::sleep_for(300ms);
  REQUIRE(client.send(request("GET", "/v1/sandboxes/" + id, srv.token())));
  // Both answers, in order: the command's output ("done\n" in base64), then the sandbox.
  auto got = [&] {
    const auto& r = client.received();
    auto at = r.find("ZG9uZQo=");
    return at != std::string::npos && r.find(id, at) != std::string::npos;
  };
  for (int i = 0; i < 600 && !got(); ++i)
    (void)client.closed_by_server(100ms);
  CHECK(got());
  // A wait woken without end would have spent most of the command's four seconds on a core.
  CHECK(cpu_ms() - before < 1000);
  (void)c->Delete("/v1/sandboxes/" + id);
}

TEST_CASE("a Range header is refused, and the next request is answered whole",
          "[server][clients]") {
  // Large answers are encoded as they are sent, in pieces; cpp-httplib would apply a range to
  // them (even on POST) and gets one past the end wrong: a wrapped Content-Length, or more bytes
  // promised than sent, after which a kept-alive connection reads the next answer out of step.
  sandbox::testing::loopback_server srv;
  auto c = client_of(srv);
  c->set_keep_alive(true);
  const std::string path = "/v1/sandboxes/" + create_sandbox(*c);
  const std::string exec = R"({"command":["sh","-c","head -c 3000000 /dev/zero | tr '\\0' x"]})";
  auto whole = c->Post(path + ":exec", exec, "application/json");
  REQUIRE(whole);
  INFO(whole->body.substr(0, 300));
  REQUIRE(whole->status == 200);
  auto all = sandbox::http::from_json<wire::ExecResponse>(whole->body,
                                                          sandbox::http::decode_mode::lenient);
  REQUIRE(all);
  CHECK(all.value().stdout_bytes == std::string(3000000, 'x'));
  for (const char* range : {"bytes=2000000-2000099", "bytes=0-10,1500000-1500010", "bytes=-5",
                            "bytes=7000000-", "bytes=3999990-99999999999"}) {
    INFO(range);
    auto part = c->Post(path + ":exec", {{"Range", range}}, exec, "application/json");
    REQUIRE(part);
    // 416 says it; cpp-httplib cuts even an error's body to the range, so it is not read here.
    CHECK(part->status == 416);
    auto small = c->Get(path, {{"Range", range}});
    REQUIRE(small);
    CHECK(small->status == 416);
    // The same client's next request is answered whole.
    auto next = c->Get(path);
    REQUIRE(next);
    CHECK(next->status == 200);
    CHECK(sandbox::http::from_json<wire::Sandbox>(next->body, sandbox::http::decode_mode::lenient));
  }
  (void)c->Delete(path);
}

TEST_CASE("a flood of creates is refused with RESOURCE_EXHAUSTED and a RetryInfo at the limit",
          "[server][clients]") {
  sandbox::server_options o;
  o.max_live_sandboxes = 4;
  sandbox::testing::loopback_server srv(o);
  const std::string keep_alive =
      R"({"spec":{"containers":[{"name":"main","image":"python:3.11"}]}})";
  auto create = [&](const std::string& body) {
    auto r = client_of(srv)->Post("/v1/sandboxes", body, "application/json");
    return r ? std::make_pair(r->status, r->body) : std::make_pair(0, std::string());
  };

  // 16 at once: exactly the limit get a sandbox.
  std::vector<std::pair<int, std::string>> got(16);
  {
    std::vector<std::thread> flood;
    for (auto& g : got)
      flood.emplace_back([&] { g = create(keep_alive); });
    for (auto& t : flood)
      t.join();
  }
  std::vector<std::string> ids;
  for (const auto& [status, body] : got) {
    INFO(body);
    if (status == 200) {
      auto sb = sandbox::http::from_json<wire::Sandbox>(body, sandbox::http::decode_mode::lenient);
      REQUIRE(sb);
      ids.push_back(sb.value().sandbox_id);
      continue;
    }
    CHECK(status == 429);
    auto st = sandbox::http::from_json<wire::Status>(body, sandbox::http::decode_mode::lenient);
    REQUIRE(st);
    CHECK(st.value().code == 8); // RESOURCE_EXHAUSTED
    CHECK_THAT(st.value().message, Catch::Contains("at most 4 sandboxes"));
    REQUIRE(st.value().retry_info);
    CHECK(st.value().retry_info->retry_delay > 0ms);
  }
  REQUIRE(ids.size() == 4);

  // Room again once one is stopped.
  auto c = client_of(srv);
  REQUIRE(c->Delete("/v1/sandboxes/" + ids[0]));
  // A main command that ends when told to.
  auto one_shot = create(R"({"spec":{"containers":[{"name":"main","image":"python:3.11",)"
                         R"("command":"sh","args":["-c","until [ -e /tmp/go ]; do sleep 0.05; )"
                         R"(done"]}]}})");
  REQUIRE(one_shot.first == 200);
  CHECK(create(keep_alive).first == 429);
  // A sandbox whose command ended counts no more.
  auto sb =
      sandbox::http::from_json<wire::Sandbox>(one_shot.second, sandbox::http::decode_mode::lenient);
  REQUIRE(sb);
  auto go = c->Post("/v1/sandboxes/" + sb.value().sandbox_id + ":writeFile",
                    R"({"path":"/tmp/go","content":""})", "application/json");
  REQUIRE(go);
  CHECK(go->status == 200);
  CHECK(test_support::eventually([&] {
    auto r = c->Get("/v1/sandboxes/" + sb.value().sandbox_id);
    return r && r->body.find("STATE_COMPLETED") != std::string::npos;
  }));
  auto after = create(keep_alive);
  CHECK(after.first == 200);
  if (auto last = sandbox::http::from_json<wire::Sandbox>(after.second,
                                                          sandbox::http::decode_mode::lenient))
    ids.push_back(last.value().sandbox_id);
  for (const auto& id : ids)
    (void)c->Delete("/v1/sandboxes/" + id);
}
