// SPDX-License-Identifier: MIT
// The scenarios over http_transport, against a real server (sandbox/server.hpp over the local
// transport) on an ephemeral loopback port; then what only the HTTP path can show.
#include "../support/host.hpp"
#include "../support/loopback_server.hpp"

#include <sandbox/sandbox.hpp>

namespace {

sandbox::testing::loopback_server& service() {
  static sandbox::testing::loopback_server instance;
  return instance;
}

} // namespace

struct http_env {
  using box = sandbox::basic_sandbox<sandbox::testing::test_http_transport,
                                     sandbox::testing::test_retry, sandbox::return_errors>;
  static std::shared_ptr<sandbox::testing::test_http_transport> transport() {
    static const auto client = service().client();
    return client;
  }
};
#define SANDBOX_SCENARIO_ENVS http_env
#include "scenarios.hpp"

#include <atomic>
#include <mutex>
#include <thread>

using namespace std::chrono_literals;
using sandbox::errc;
using scenarios::keep_alive;

namespace {

std::string run_out(http_env::box& box, std::vector<std::string> argv) {
  auto r = box.exec(std::move(argv)).result();
  if (!r) return "error: " + r.error().message;
  return r.value().stdout_text;
}

} // namespace

TEST_CASE("files round-trip over HTTP byte for byte, with typed errors", "[http][files]") {
  auto box = keep_alive<http_env>();
  std::string all;
  for (int i = 0; i < 256; ++i)
    all += static_cast<char>(i);
  all += std::string(300000, '\0');
  CHECK(box.write_file("/tmp/bytes", all));
  auto back = box.read_file("/tmp/bytes");
  REQUIRE(back);
  CHECK(back.value() == all);
  CHECK(box.write_file("/tmp/empty", ""));
  CHECK(box.read_file("/tmp/empty").value().empty());
  CHECK(box.read_file("/tmp/no such file").error().is(errc::file_not_found));
  CHECK(box.read_file("/tmp").error().is(errc::file_is_directory));
  auto rel = box.read_file("relative");
  REQUIRE_FALSE(rel);
  CHECK(rel.error().is(errc::validation));
  REQUIRE(rel.error().server);
  CHECK(rel.error().server->http_status == 400);
  CHECK(box.write_file("/no/such/dir/x", "x").error().is(errc::file_not_found));
}

TEST_CASE("a repeated create with the same request id gives the same sandbox", "[http][create]") {
  auto t = http_env::transport();
  std::string rid = sandbox::detail::uuid4();
  auto a = t->create({}, rid);
  auto b = t->create({}, rid);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a.value().id == b.value().id);
  auto other = t->create({}, sandbox::detail::uuid4());
  REQUIRE(other);
  CHECK(other.value().id != a.value().id);
  CHECK(t->stop(a.value().id, 1s, false));
  CHECK(t->stop(other.value().id, 1s, false));
}

TEST_CASE("a request id outlives its sandbox only while the server remembers the sandbox",
          "[http][create]") {
  sandbox::server_options small;
  small.retained_terminal = 1;
  sandbox::testing::loopback_server server(small);
  auto t = server.client();
  std::string rid = sandbox::detail::uuid4();
  auto a = t->create({}, rid);
  REQUIRE(a);
  CHECK(t->stop(a.value().id, 1s, false));
  auto again = t->create({}, rid); // still remembered: the same (stopped) sandbox
  REQUIRE(again);
  CHECK(again.value().id == a.value().id);
  auto b = t->create({}, sandbox::detail::uuid4());
  REQUIRE(b);
  CHECK(t->stop(b.value().id, 1s, false)); // the server lets `a` go
  auto late = t->create({}, rid);          // a create, not a 404 for a sandbox long gone
  REQUIRE(late);
  CHECK(late.value().id != a.value().id);
  CHECK(late.value().state == sandbox::State::RUNNING);
  CHECK(t->stop(late.value().id, 1s, false));
}

TEST_CASE("list finds sandboxes by tag and hides stopped ones", "[http][list]") {
  std::string tag = "t-" + sandbox::detail::random_id("", 8);
  auto a = keep_alive<http_env>(sandbox::SandboxOptions{.tags = {tag, "x"}});
  auto b = keep_alive<http_env>(sandbox::SandboxOptions{.tags = {tag}});
  auto both = http_env::box::list({.tags = {tag}}, http_env::transport());
  REQUIRE(both);
  CHECK(both.value().size() == 2);
  auto one = http_env::box::list({.tags = {tag, "x"}}, http_env::transport());
  REQUIRE(one);
  REQUIRE(one.value().size() == 1);
  CHECK(one.value()[0].id == a.id());
  CHECK(b.stop(1s));
  CHECK(http_env::box::list({.tags = {tag}}, http_env::transport()).value().size() == 1);
  auto all = http_env::box::list({.tags = {tag}, .show_terminated = true}, http_env::transport());
  CHECK(all.value().size() == 2);
}

TEST_CASE("output beyond max_output_bytes is dropped but counted", "[http][exec]") {
  auto box = keep_alive<http_env>();
  auto r =
      box.exec({"sh", "-c", "head -c 100000 /dev/zero; echo err >&2"}, {.max_output_bytes = 1000})
          .result();
  REQUIRE(r);
  CHECK(r.value().stdout_text.size() == 1000);
  CHECK(r.value().stdout_truncated);
  CHECK(r.value().stdout_bytes_produced == 100000);
  CHECK(r.value().stderr_text == "err\n");
  CHECK_FALSE(r.value().stderr_truncated);
  auto big = box.exec({"true"}, {.max_output_bytes = std::uint64_t{1} << 31}).result();
  REQUIRE_FALSE(big);
  CHECK(big.error().is(errc::validation));
}

TEST_CASE("0 asks for the service's output cap; unlimited_output for the most the API carries",
          "[http][exec]") {
  sandbox::server_options small;
  small.default_max_output_bytes = 1000;
  sandbox::testing::loopback_server limited(small);
  auto made = http_env::box::run({}, limited.client());
  REQUIRE(made);
  auto& box = made.value();
  const std::vector<std::string> cmd = {"head", "-c", "100000", "/dev/zero"};
  auto capped = box.exec(cmd).result();
  REQUIRE(capped);
  CHECK(capped.value().stdout_text.size() == 1000);
  CHECK(capped.value().stdout_truncated);
  CHECK(capped.value().stdout_bytes_produced == 100000);
  auto all = box.exec(cmd, {.max_output_bytes = sandbox::unlimited_output}).result();
  REQUIRE(all);
  CHECK(all.value().stdout_text == std::string(100000, '\0'));
  CHECK_FALSE(all.value().stdout_truncated);
}

TEST_CASE("a response with both streams at the server's default cap is accepted", "[http][exec]") {
  // 2 x 64 MiB in base64 is more than the client's default response limit (100 MiB).
  auto box = keep_alive<http_env>();
  auto r = box.exec({"sh", "-c", "head -c 70M /dev/zero; head -c 70M /dev/zero >&2"}).result();
  REQUIRE(r);
  CHECK(r.value().stdout_text.size() == sandbox::default_max_output_bytes);
  CHECK(r.value().stderr_text.size() == sandbox::default_max_output_bytes);
  CHECK(r.value().stdout_truncated);
  CHECK(r.value().stderr_bytes_produced == (70u << 20));
}

TEST_CASE("what needs a streaming exec is refused clearly", "[http][exec]") {
  auto box = keep_alive<http_env>();
  auto in = box.exec({"cat"}, {.stdin_pipe = true}).result();
  REQUIRE_FALSE(in);
  CHECK(in.error().is(errc::unsupported));
  CHECK(in.error().message.find("stdin") != std::string::npos);
  auto live = box.exec({"echo"}, {.on_stdout = [](std::string_view) noexcept {}}).result();
  REQUIRE_FALSE(live);
  CHECK(live.error().is(errc::unsupported));
  CHECK(live.error().message.find("on_stdout") != std::string::npos);
}

TEST_CASE("kill abandons the request and the server kills the command", "[http][exec]") {
  auto box = keep_alive<http_env>();
  auto p = box.exec({"sh", "-c", "sleep 30; echo never"});
  CHECK_FALSE(p.poll());
  auto early = p.result(100ms);
  REQUIRE_FALSE(early);
  CHECK(early.error().is(errc::timeout));
  auto start = std::chrono::steady_clock::now();
  CHECK(p.kill());
  auto r = p.result(60s);
  CHECK(scenarios::since(start) < 15s); // not after the command's own 30 s
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::not_running));
  // The server noticed the closed connection and killed the command's process group.
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone =
        run_out(box, {"sh", "-c", "for p in /proc/[0-9]*; do cat $p/comm; done"}).find("sleep") ==
        std::string::npos;
    if (!gone) std::this_thread::sleep_for(20ms);
  }
  CHECK(gone);
}

TEST_CASE("a process handle dropped while its command runs does not block", "[http][exec]") {
  auto box = keep_alive<http_env>();
  auto start = std::chrono::steady_clock::now();
  { auto p = box.exec({"sleep", "30"}); }
  CHECK(scenarios::since(start) < 15s); // not after the command's own 30 s
  CHECK(run_out(box, {"echo", "still fine"}) == "still fine\n");
}

TEST_CASE("many clients at once", "[http][concurrency]") {
  auto box = keep_alive<http_env>();
  std::atomic<int> ok{0};
  std::mutex m;
  std::string create_errors; // Catch2's assertions are for the main thread only
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      // A transport of its own per thread: its own connections, as separate clients would.
      auto mine = service().client();
      auto made = http_env::box::run({}, mine);
      if (!made) {
        std::lock_guard lk(m);
        create_errors += made.error().message + "\n";
        return;
      }
      for (int i = 0; i < 10; ++i) {
        std::string word = std::to_string(t * 100 + i);
        auto r = made.value().exec({"echo", word}).result();
        if (r && r.value().stdout_text == word + "\n") ++ok;
        auto shared = box.exec({"echo", word}).result(); // one sandbox from many threads
        if (shared && shared.value().stdout_text == word + "\n") ++ok;
      }
    });
  for (auto& th : threads)
    th.join();
  CHECK(create_errors.empty());
  CHECK(ok == 160);
}

TEST_CASE("resources and mounted files reach the transport", "[http][create]") {
  sandbox::SandboxOptions o;
  o.mounted_files = {{"/etc/greeting", "hello\n"}};
  auto box = keep_alive<http_env>(o);
  CHECK(run_out(box, {"cat", "/etc/greeting"}) == "hello\n");
  // The local transport has no CPU limit yet: its refusal travels back as UNIMPLEMENTED.
  auto limited = http_env::box::run(sandbox::SandboxOptions{.resources = {.cpus = 0.5}},
                                    http_env::transport());
  if (!limited) {
    CHECK(limited.error().is(errc::unsupported));
    REQUIRE(limited.error().server);
    CHECK(limited.error().server->http_status == 501);
  }
  auto pids = http_env::box::run(sandbox::SandboxOptions{.resources = {.max_pids = 10}},
                                 http_env::transport());
  REQUIRE_FALSE(pids);
  CHECK(pids.error().is(errc::unsupported));
  CHECK(pids.error().message.find("max_pids") != std::string::npos);
}

TEST_CASE("an image the server does not know is a validation error", "[http][create]") {
  auto r =
      http_env::box::run(sandbox::SandboxOptions{.image = "ubuntu:22.04"}, http_env::transport());
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::validation));
  CHECK(r.error().message.find("ubuntu:22.04") != std::string::npos);
}

TEST_CASE("a wrong token is an authentication error that never shows a key", "[http][auth]") {
  auto o = service().client_options();
  o.api_key = "not-the-token-" + sandbox::detail::random_id("", 8);
  auto t = sandbox::testing::test_http_transport::make(o);
  REQUIRE(t);
  auto r = http_env::box::run({}, t.value());
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::authentication));
  CHECK(r.error().message.find(o.api_key) == std::string::npos);
  CHECK(r.error().message.find(service().token()) == std::string::npos);
}

TEST_CASE("megabytes of binary stdout arrive intact, capped or not", "[http][exec]") {
  auto box = keep_alive<http_env>();
  // Random bytes (not a multiple of 3: base64 padding), written twice with a pause between.
  REQUIRE(box.exec({"sh", "-c", "head -c 3000001 /dev/urandom > /tmp/r"}).result());
  auto r_file = box.read_file("/tmp/r");
  REQUIRE(r_file);
  const std::string& once = r_file.value();
  std::string script = "cat /tmp/r; sleep 0.2; cat /tmp/r; echo done >&2; exit 3";
  auto whole = box.exec({"sh", "-c", script}).result();
  REQUIRE(whole);
  CHECK(whole.value().returncode == 3);
  CHECK(whole.value().stdout_text.size() == 2 * once.size());
  CHECK(whole.value().stdout_text == once + once);
  CHECK(whole.value().stderr_text == "done\n");
  CHECK(whole.value().stdout_bytes_produced == 2 * once.size());
  CHECK_FALSE(whole.value().stdout_truncated);

  auto capped = box.exec({"sh", "-c", script}, {.max_output_bytes = 4000000}).result();
  REQUIRE(capped);
  CHECK(capped.value().stdout_text == (once + once).substr(0, 4000000));
  CHECK(capped.value().stdout_truncated);
  CHECK(capped.value().stdout_bytes_produced == 2 * once.size());
}

TEST_CASE("a request body over the server's limit is refused with a typed error",
          "[http][limits]") {
  sandbox::server_options small;
  small.max_request_bytes = 64 << 10;
  sandbox::testing::loopback_server limited(small);
  auto t = limited.client();
  auto made = http_env::box::run({}, t);
  REQUIRE(made);
  auto& box = made.value();
  CHECK(box.write_file("/tmp/small", std::string(1000, 'x')));
  auto big = box.write_file("/tmp/big", std::string(100 << 10, 'x'));
  REQUIRE_FALSE(big);
  CHECK(big.error().is(errc::file_too_large));
  auto argv = box.exec({"echo", std::string(100 << 10, 'y')}).result();
  REQUIRE_FALSE(argv);
  CHECK(argv.error().is(errc::validation));
  // The connection survives for the next request.
  CHECK(run_out(box, {"echo", "ok"}) == "ok\n");
}

namespace {

/// A connected loopback TCP pair of `family` (client, the server's accepted socket, its
/// listener).
struct tcp_pair {
  int client = -1, server = -1, listener = -1;
  explicit tcp_pair(int family) {
    const char* loop = family == AF_INET ? "127.0.0.1" : "::1";
    sockaddr_storage a{};
    socklen_t len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    a.ss_family = static_cast<sa_family_t>(family);
    if (family == AF_INET)
      ::inet_pton(AF_INET, loop, &reinterpret_cast<sockaddr_in&>(a).sin_addr);
    else
      ::inet_pton(AF_INET6, loop, &reinterpret_cast<sockaddr_in6&>(a).sin6_addr);
    int l = listener = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(l >= 0);
    REQUIRE(::bind(l, reinterpret_cast<sockaddr*>(&a), len) == 0);
    REQUIRE(::listen(l, 1) == 0);
    REQUIRE(::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    client = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(::connect(client, reinterpret_cast<sockaddr*>(&a), len) == 0);
    sockaddr_storage peer{};
    socklen_t pl = sizeof peer;
    server = ::accept4(l, reinterpret_cast<sockaddr*>(&peer), &pl, SOCK_CLOEXEC);
    REQUIRE(server >= 0);
  }
  ~tcp_pair() {
    for (int fd : {client, server, listener})
      if (fd >= 0) ::close(fd);
  }
};

} // namespace

TEST_CASE("the server tells a client that closed its connection from one still there",
          "[http][server]") {
  for (int family : {AF_INET, AF_INET6}) {
    INFO((family == AF_INET ? "IPv4" : "IPv6"));
    {
      tcp_pair p(family);
      sandbox::serve::detail::client_watch w(p.server);
      CHECK_FALSE(w.gone());
      CHECK_FALSE(w.gone()); // asked again, same answer
      // The server stopping its own reads (as it does at stop) is not the client leaving.
      ::shutdown(p.server, SHUT_RD);
      CHECK_FALSE(w.gone());
      // The client's FIN leaves the server's socket in CLOSE_WAIT.
      ::close(p.client);
      p.client = -1;
      CHECK(test_support::eventually([&] { return w.gone(); }));
    }
    {
      // A reset (close with unread data and SO_LINGER 0) is gone as well.
      tcp_pair p(family);
      sandbox::serve::detail::client_watch w(p.server);
      linger lg{1, 0};
      REQUIRE(::setsockopt(p.client, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
      ::close(p.client);
      p.client = -1;
      CHECK(test_support::eventually([&] { return w.gone(); }));
    }
    // Not a TCP socket: the kernel cannot tell, and the command runs on.
    CHECK_FALSE(sandbox::serve::detail::client_watch(-1).gone());
  }
}
