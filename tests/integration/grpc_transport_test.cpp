// SPDX-License-Identifier: MIT
// The scenarios over grpc_transport, against the gRPC front end of a real server (over the local
// transport) on an ephemeral loopback port; then what only a streaming exec can show: live
// output, stdin, binary stdin, kill, deadline, a terminal, and a server that goes away.
#include "../support/loopback_server.hpp"
#include "../support/residency.hpp"

#include <sandbox/grpc.hpp>
#include <sandbox/server/grpc_server.hpp>

namespace {

/// REST and gRPC front ends of one service on loopback ports.
struct servers {
  sandbox::testing::loopback_server rest;
  sandbox::grpc_server<sandbox::local_transport> grpc{rest.get().service()};
  std::string url;

  servers() {
    auto port = grpc.start("127.0.0.1", 0);
    if (!port) std::abort();
    url = "http://127.0.0.1:" + std::to_string(port.value());
  }

  [[nodiscard]] std::shared_ptr<sandbox::basic_grpc_transport<sandbox::testing::test_retry>>
  client() const {
    auto o = rest.client_options();
    o.base_url = url;
    auto t = sandbox::basic_grpc_transport<sandbox::testing::test_retry>::make(o);
    if (!t) std::abort();
    return t.value();
  }
};

servers& service() {
  static servers instance;
  return instance;
}

} // namespace

struct grpc_env {
  using transport_type = sandbox::basic_grpc_transport<sandbox::testing::test_retry>;
  using box =
      sandbox::basic_sandbox<transport_type, sandbox::testing::test_retry, sandbox::return_errors>;
  static std::shared_ptr<transport_type> transport() {
    static const auto client = service().client();
    return client;
  }
};
#define SANDBOX_SCENARIO_ENVS grpc_env
#include "scenarios.hpp"

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using sandbox::errc;
using scenarios::keep_alive;

namespace {

/// Whether, within 10 s, no process named `name` is left in the sandbox.
bool ends_without(grpc_env::box& box, const std::string& name) {
  for (int i = 0; i < 100; ++i) {
    auto ps = box.exec({"sh", "-c", "cat /proc/[0-9]*/comm"}).result(10s);
    REQUIRE(ps);
    if (ps.value().stdout_text.find(name) == std::string::npos) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

} // namespace

TEST_CASE("gRPC: output arrives as the command writes it", "[grpc][stream]") {
  auto box = keep_alive<grpc_env>();
  using clock = std::chrono::steady_clock;
  std::vector<clock::duration> at;
  const auto start = clock::now();
  auto p = box.exec(
      {"sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do echo $i; sleep 0.2; done"},
      {.on_stdout = [&](std::string_view) noexcept { at.push_back(clock::now() - start); }});
  auto r = p.result(30s);
  REQUIRE(r);
  CHECK(r.value().stdout_text == "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n");
  REQUIRE(at.size() >= 2);
  // Ten lines 0.2 s apart: delivered as they came, spread over more than a second.
  CHECK(at.back() - at.front() > 1s);
}

TEST_CASE("gRPC: stdin round trip through sort, binary stdin, and no stdin", "[grpc][stream]") {
  auto box = keep_alive<grpc_env>();
  auto p = box.exec({"sort"}, {.stdin_pipe = true});
  REQUIRE(p.write_stdin("pear\napple\n"));
  REQUIRE(p.write_stdin("fig\n"));
  REQUIRE(p.close_stdin());
  REQUIRE(p.close_stdin()); // idempotent
  auto r = p.result(30s);
  REQUIRE(r);
  CHECK(r.value().stdout_text == "apple\nfig\npear\n");
  CHECK_FALSE(p.write_stdin("late"));

  std::string all;
  for (int i = 0; i < 256; ++i)
    all += static_cast<char>(i);
  std::string big;
  for (int i = 0; i < 12000; ++i) // 3 MiB: more than one stdin message
    big += all;
  auto cat = box.exec({"cat"}, {.stdin_pipe = true});
  REQUIRE(cat.write_stdin(big));
  REQUIRE(cat.close_stdin());
  auto back = cat.result(30s);
  REQUIRE(back);
  CHECK(back.value().stdout_text.size() == big.size());
  CHECK(back.value().stdout_text == big);

  // Without stdin_pipe the command reads end-of-file at once, and writing is refused.
  auto none = box.exec({"cat"});
  auto w = none.write_stdin("x");
  REQUIRE_FALSE(w);
  CHECK(w.error().is(errc::validation));
  auto n = none.result(30s);
  REQUIRE(n);
  CHECK(n.value().stdout_text.empty());
}

TEST_CASE("gRPC: kill mid-stream ends the command", "[grpc][stream]") {
  auto box = keep_alive<grpc_env>();
  std::string seen;
  auto p = box.exec({"sh", "-c", "echo started; exec sleep 77"},
                    {.on_stdout = [&](std::string_view s) noexcept { seen += s; }});
  while (seen.find("started") == std::string::npos) {
    REQUIRE_FALSE(p.poll());
    (void)p.try_result(10ms);
  }
  REQUIRE(p.kill());
  auto r = p.result(30s);
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::not_running));
  CHECK(ends_without(box, "sleep"));
}

TEST_CASE("gRPC: the exec timeout is the call's deadline", "[grpc][stream]") {
  auto box = keep_alive<grpc_env>();
  auto r = box.exec({"sh", "-c", "echo before; exec sleep 30"}, {.timeout = 500ms}).result(30s);
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::command_timeout));
  REQUIRE(r.error().exec_result);
  CHECK(r.error().exec_result->stdout_text == "before\n");
  CHECK(ends_without(box, "sleep"));
}

TEST_CASE("gRPC: output caps and truncation as locally", "[grpc][stream]") {
  auto box = keep_alive<grpc_env>();
  std::uint64_t streamed = 0;
  auto r = box.exec({"sh", "-c", "head -c 100000 /dev/zero; head -c 7 /dev/zero >&2"},
                    {.max_output_bytes = 1000,
                     .on_stdout = [&](std::string_view s) noexcept { streamed += s.size(); }})
               .result(30s);
  REQUIRE(r);
  CHECK(r.value().stdout_text.size() == 1000);
  CHECK(r.value().stdout_truncated);
  CHECK(r.value().stdout_bytes_produced == 100000);
  CHECK(streamed == 100000); // the callback sees everything
  CHECK(r.value().stderr_text.size() == 7);
  CHECK_FALSE(r.value().stderr_truncated);
}

TEST_CASE("gRPC: output many messages long keeps every byte in order on both streams, through "
          "the buffers both ends reuse",
          "[grpc][stream][output]") {
  auto box = keep_alive<grpc_env>();
  // Every line differs, so a buffer handed back while still in use, or reused before it was
  // sent, shows as a wrong byte: about 20 MiB on stdout and 12 MiB on stderr, at once.
  auto lines = [](int from, int to) {
    std::string out;
    for (int i = from; i <= to; ++i)
      out += std::to_string(i) + "\n";
    return out;
  };
  const std::string out = lines(1, 2'600'000), err = lines(5'000'000, 6'500'000);
  std::string seen;
  auto r = box.exec({"sh", "-c", "seq 5000000 6500000 >&2 & seq 1 2600000; wait"},
                    {.timeout = 120s,
                     .max_output_bytes = 64u << 20,
                     .on_stdout = [&](std::string_view s) noexcept { seen.append(s); }})
               .result(150s);
  REQUIRE(r);
  CHECK(r.value().returncode == 0);
  CHECK(r.value().stdout_text.size() == out.size());
  CHECK((r.value().stdout_text == out)); // not printed: 20 MiB
  CHECK((r.value().stderr_text == err));
  CHECK(r.value().stdout_bytes_produced == out.size());
  CHECK(r.value().stderr_bytes_produced == err.size());
  CHECK((seen == out));
}

TEST_CASE("gRPC: a large kept result is faulted in ahead of the copy by a thread of its own, which "
          "ends with the command and hands back the room left unfilled",
          "[grpc][stream][output]") {
  constexpr std::size_t MiB = std::size_t{1} << 20;
  test_support::unperturbed quiet; // the room must be untouched until the output reaches it
  const bool populates = test_support::kernel_populates();
  if (!populates)
    WARN("this kernel has no MADV_POPULATE_WRITE (Linux 5.14): no pages are faulted in ahead; "
         "only the output and that no thread is left are checked");
  auto box = keep_alive<grpc_env>();
  // 40 MiB + 4097 bytes, every 4 KiB block different, into a 64 MiB room.
  const std::size_t n = 40 * MiB + 4097;
  const std::string script = "i=0; while [ $i -lt 10250 ]; do printf '%4095d\\n' $i; i=$((i+1)); "
                             "done | head -c " +
                             std::to_string(n);
  std::string expected;
  for (int i = 0; expected.size() < n; ++i) {
    char line[4097];
    std::snprintf(line, sizeof line, "%4095d\n", i);
    expected += line;
  }
  expected.resize(n);
  std::size_t seen = 0;
  int helpers_while_kept = -1;
  // The handle stays: its threads must end with the command, not with the handle.
  auto p = box.exec({"sh", "-c", script}, {.timeout = 120s,
                                           .max_output_bytes = 64 * MiB,
                                           .on_stdout = [&](std::string_view d) noexcept {
                                             seen += d.size();
                                             // Called after each message is kept: well into the
                                             // room, once.
                                             if (helpers_while_kept < 0 && seen > 16 * MiB)
                                               helpers_while_kept =
                                                   test_support::threads_named("sandbox-ahead");
                                           }});
  auto r = std::move(p).result(150s); // the room itself, not a copy as big as the output
  REQUIRE(r);
  const std::string& out = r.value().stdout_text;
  REQUIRE(out.capacity() >= 64 * MiB);
  CHECK(out.size() == n);
  CHECK((out == expected)); // not printed: 40 MiB
  CHECK(r.value().stdout_bytes_produced == n);
  CHECK_FALSE(r.value().stdout_truncated);
  if (populates) CHECK(helpers_while_kept == 1); // stdout's; stderr stayed small
  CHECK(test_support::threads_named("sandbox-ahead") == 0);
  // What was faulted in past the content went back when the command ended, the slack of the
  // last huge page included.
  if (populates) CHECK(test_support::resident_past_content(out) == 0);
}

TEST_CASE("gRPC: a command on a terminal, resized", "[grpc][stream][tty]") {
  auto box = keep_alive<grpc_env>();
  std::string seen;
  auto p = box.exec({"sh"}, {.tty = sandbox::TerminalSize{.cols = 100, .rows = 30},
                             .on_stdout = [&](std::string_view s) noexcept { seen += s; }});
  REQUIRE(p.write_stdin("stty size\n"));
  while (seen.find("30 100\r\n") == std::string::npos) {
    REQUIRE_FALSE(p.poll());
    (void)p.try_result(10ms);
  }
  REQUIRE(p.resize({.cols = 132, .rows = 43}));
  REQUIRE(p.write_stdin("stty size; exit 4\n"));
  auto r = p.result(30s);
  REQUIRE(r);
  CHECK(r.value().returncode == 4);
  CHECK(r.value().stdout_text.find("43 132\r\n") != std::string::npos);
  CHECK(r.value().stderr_text.empty());

  auto plain = box.exec({"true"});
  CHECK(plain.resize({}).error().is(errc::validation));
  (void)plain.result(30s);
}

TEST_CASE("gRPC: errors keep their code, reason and the call that failed", "[grpc]") {
  auto t = grpc_env::transport();
  auto g = t->get("sbx-does-not-exist");
  REQUIRE_FALSE(g);
  CHECK(g.error().is(errc::not_found));
  CHECK(g.error().message.find("GetSandbox sbx-does-not-exist") != std::string::npos);
  CHECK(g.error().message.find("(gRPC NOT_FOUND") != std::string::npos);
  REQUIRE(g.error().server);
  CHECK(g.error().server->grpc_code == 5);

  auto box = keep_alive<grpc_env>();
  CHECK(box.read_file("/tmp/nothing-here").error().is(errc::file_not_found));

  // A wrong key is refused as authentication.
  auto o = service().rest.client_options();
  o.base_url = service().url;
  o.api_key = "wrong";
  auto bad = sandbox::grpc_transport::make(o).value();
  CHECK(bad->get(box.id()).error().is(errc::authentication));
  // Nothing listening: unavailable, at once.
  o.base_url = "http://127.0.0.1:1";
  auto nobody = sandbox::basic_grpc_transport<sandbox::no_retry>::make(o).value();
  CHECK(nobody->get(box.id()).error().is(errc::unavailable));
  // A bad URL or credential is a validation error at make.
  o.base_url = "ftp://x";
  CHECK(sandbox::grpc_transport::make(o).error().is(errc::validation));
  o.base_url = service().url;
  o.api_key = "a\nb";
  CHECK(sandbox::grpc_transport::make(o).error().is(errc::validation));
}

TEST_CASE("gRPC: a server that goes away mid-stream is a typed error, not a hang",
          "[grpc][stream]") {
  auto own = std::make_unique<servers>();
  auto t = own->client();
  using box_t = sandbox::basic_sandbox<grpc_env::transport_type, sandbox::testing::test_retry,
                                       sandbox::return_errors>;
  auto made = box_t::run({}, t);
  REQUIRE(made);
  auto& box = made.value();
  std::string seen;
  auto p = box.exec({"sh", "-c", "echo started; exec sleep 60"},
                    {.on_stdout = [&](std::string_view s) noexcept { seen += s; }});
  while (seen.find("started") == std::string::npos) {
    REQUIRE_FALSE(p.poll());
    (void)p.try_result(10ms);
  }
  own->grpc.stop();
  auto r = p.result(30s);
  REQUIRE_FALSE(r);
  CHECK((r.error().is(errc::unavailable) || r.error().is(errc::not_running)));
  INFO(r.error().message);
}

namespace {

/// A command's options that make it one unary Exec call: nothing to stream, and a cap (1 MiB
/// per stream) for which both streams fit one answer (the default cap, 64 MiB, does not).
constexpr std::uint64_t one_call_cap = std::uint64_t{1} << 20;

/// Whether `path` exists in the sandbox within 10 s.
bool appears(grpc_env::box& box, const std::string& path) {
  for (int i = 0; i < 100; ++i) {
    if (box.read_file(path)) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

} // namespace

TEST_CASE("gRPC: a command with nothing to stream (one Exec call) keeps every byte, its caps "
          "and its exit code",
          "[grpc]") {
  // No stdin, terminal, callbacks or timeout, and a cap both streams fit one answer with: one
  // unary Exec carries the command.
  auto box = keep_alive<grpc_env>();
  const std::string data = scenarios::every_byte(one_call_cap - 5);
  REQUIRE(box.write_file("/tmp/bin", data));

  auto r = box.exec({"sh", "-c", "cat /tmp/bin; cat /tmp/bin >&2; exit 3"},
                    {.max_output_bytes = one_call_cap})
               .result(60s);
  REQUIRE(r);
  const auto& x = r.value();
  CHECK(x.returncode == 3);
  CHECK(x.command ==
        std::vector<std::string>{"sh", "-c", "cat /tmp/bin; cat /tmp/bin >&2; exit 3"});
  CHECK((x.stdout_text == data));
  CHECK((x.stderr_text == data));
  CHECK(x.stdout_bytes_produced == data.size());
  CHECK(x.stderr_bytes_produced == data.size());
  CHECK_FALSE(x.stdout_truncated);
  CHECK_FALSE(x.stderr_truncated);

  // The cap travels with the call: the exact prefix is kept, the rest counted.
  for (std::size_t cap : {std::size_t{1}, std::size_t{4095}, std::size_t{4096}, data.size() - 1}) {
    INFO("cap = " << cap);
    auto c = box.exec({"cat", "/tmp/bin"}, {.max_output_bytes = cap}).result(60s);
    REQUIRE(c);
    CHECK((c.value().stdout_text == std::string_view(data).substr(0, cap)));
    CHECK(c.value().stdout_truncated);
    CHECK(c.value().stdout_bytes_produced == data.size());
  }
  // A cap beyond what one answer may hold (the default's included) goes through StreamExec,
  // with the same result.
  for (std::uint64_t cap : {std::uint64_t{0}, sandbox::unlimited_output}) {
    auto u = box.exec({"cat", "/tmp/bin"}, {.max_output_bytes = cap}).result(60s);
    REQUIRE(u);
    CHECK((u.value().stdout_text == data));
    CHECK_FALSE(u.value().stdout_truncated);
  }

  auto e = box.exec({"sh", "-c", "pwd; echo \"$X\""},
                    {.cwd = "/tmp", .env = {{"X", "y z"}}, .max_output_bytes = one_call_cap})
               .result(30s);
  REQUIRE(e);
  CHECK(e.value().stdout_text == "/tmp\ny z\n");

  auto checked = box.exec({"false"}, {.max_output_bytes = one_call_cap, .check = true}).result(30s);
  REQUIRE_FALSE(checked);
  CHECK(checked.error().is(errc::execution));
}

TEST_CASE("gRPC: a command with nothing to stream is waited for in slices and killed", "[grpc]") {
  auto box = keep_alive<grpc_env>();
  auto slow = box.exec({"sh", "-c", "sleep 1; echo done"}, {.max_output_bytes = one_call_cap});
  auto early = slow.try_result(10ms);
  REQUIRE_FALSE(early);
  CHECK(early.error().is(errc::timeout)); // still running: wait again
  CHECK_FALSE(slow.poll());
  auto later = slow.result(30s);
  REQUIRE(later);
  CHECK(later.value().stdout_text == "done\n");
  CHECK(slow.poll() == 0);

  auto p =
      box.exec({"sh", "-c", "touch /tmp/k; exec sleep 77"}, {.max_output_bytes = one_call_cap});
  REQUIRE(appears(box, "/tmp/k"));
  REQUIRE(p.kill());
  auto r = p.result(30s);
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::not_running));
  CHECK(ends_without(box, "sleep"));
  CHECK(p.kill()); // an ended command: nothing to do
}

TEST_CASE("gRPC: a server that goes away during a command with nothing to stream is a typed "
          "error, not a hang",
          "[grpc]") {
  auto own = std::make_unique<servers>();
  auto t = own->client();
  auto made = grpc_env::box::run({}, t);
  REQUIRE(made);
  auto& box = made.value();
  auto p =
      box.exec({"sh", "-c", "touch /tmp/s; exec sleep 60"}, {.max_output_bytes = one_call_cap});
  REQUIRE(appears(box, "/tmp/s"));
  own->grpc.stop();
  auto r = p.result(30s);
  REQUIRE_FALSE(r);
  INFO(r.error().message);
  CHECK((r.error().is(errc::unavailable) || r.error().is(errc::not_running)));
}

TEST_CASE("gRPC: the main process's log, read and followed through StreamLogs", "[grpc][logs]") {
  auto made = grpc_env::box::run({.command = {"sh", "-c",
                                              "echo one; echo two >&2; sleep 0.5; "
                                              "echo three"}},
                                 grpc_env::transport());
  REQUIRE(made);
  auto& box = made.value();
  std::string followed;
  REQUIRE(box.follow_logs([&](std::string_view s) noexcept { followed += s; }, 30s));
  CHECK(followed == "one\ntwo\nthree\n");
  CHECK(box.wait_until_complete(30s));
  auto all = box.logs();
  REQUIRE(all);
  CHECK(all.value() == "one\ntwo\nthree\n");
  // Read from an offset: only what came after it (a resume in the service's log session).
  auto later = grpc_env::transport()->logs(box.id(), 4, 0ms);
  REQUIRE(later);
  std::string rest;
  for (const auto& c : later.value().chunks)
    rest += c.data;
  CHECK(rest == "two\nthree\n");
  CHECK(later.value().end_offset == 14);

  // A keep-alive sandbox writes no log.
  auto quiet = keep_alive<grpc_env>();
  auto none = quiet.logs();
  REQUIRE(none);
  CHECK(none.value().empty());
}

TEST_CASE("gRPC: a terminal stays open for resizes after its stdin is closed", "[grpc][tty]") {
  auto box = keep_alive<grpc_env>();
  std::string seen;
  auto p = box.exec({"sh", "-c",
                     "cat >/dev/null; trap 'stty size; exit 0' WINCH; echo ready; "
                     "while :; do sleep 0.05; done"},
                    {.tty = sandbox::TerminalSize{},
                     .on_stdout = [&](std::string_view s) noexcept { seen += s; }});
  REQUIRE(p.close_stdin()); // cat ends: end-of-file typed
  while (seen.find("ready") == std::string::npos) {
    REQUIRE_FALSE(p.poll());
    (void)p.try_result(10ms);
  }
  REQUIRE(p.resize({.cols = 90, .rows = 20}));
  auto r = p.result(30s);
  REQUIRE(r);
  CHECK(r.value().returncode == 0);
  CHECK(r.value().stdout_text.find("20 90\r\n") != std::string::npos);
}

TEST_CASE("gRPC: stdin racing the end of many short commands", "[grpc][stream]") {
  auto box = keep_alive<grpc_env>();
  for (int i = 0; i < 40; ++i) {
    auto p = box.exec({"sh", "-c", "exit 3"}, {.stdin_pipe = true});
    for (int j = 0; j < 5; ++j)
      (void)p.write_stdin("x"); // may fail once the command is gone: not crash
    (void)p.resize({});
    auto r = p.result(30s);
    REQUIRE(r);
    CHECK(r.value().returncode == 3);
  }
  // Handles dropped mid-call: the call is cancelled and freed.
  for (int i = 0; i < 20; ++i) {
    auto p = box.exec({"sleep", "5"}, {.stdin_pipe = true});
    (void)p.write_stdin("y");
  }
  CHECK(ends_without(box, "sleep"));
}

TEST_CASE("gRPC over TLS: the server's certificate checked against the configured roots",
          "[grpc][tls]") {
  // A certificate for 127.0.0.1 made for this test (Debian's openssl command).
  char dir[] = "/tmp/sandbox-tls-XXXXXX";
  REQUIRE(mkdtemp(dir));
  const std::string d = dir, cert = d + "/cert.pem", key = d + "/key.pem";
  const std::string make = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
                           "-addext subjectAltName=IP:127.0.0.1 -keyout " +
                           key + " -out " + cert + " 2>/dev/null";
  REQUIRE(std::system(make.c_str()) == 0);
  auto slurp = [](const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  };
  sandbox::grpc_server<sandbox::local_transport> tls_front(service().rest.get().service());
  auto port = tls_front.start("127.0.0.1", 0, sandbox::tls_identity{slurp(cert), slurp(key)});
  REQUIRE(port);
  auto o = service().rest.client_options();
  o.base_url = "https://127.0.0.1:" + std::to_string(port.value());
  o.ca_cert_path = cert;
  auto t = sandbox::basic_grpc_transport<sandbox::no_retry>::make(o);
  REQUIRE(t);
  auto box = keep_alive<grpc_env>();
  auto info = t.value()->get(box.id());
  REQUIRE(info);
  CHECK(info.value().state == sandbox::State::RUNNING);
  auto p = t.value()->exec(box.id(), std::vector<std::string>{"echo", "over tls"}, {});
  REQUIRE(p);
  auto r = p.value().wait(30s);
  REQUIRE(r);
  CHECK(r.value().stdout_text == "over tls\n");

  // The system's roots do not know this certificate: refused, not trusted.
  o.ca_cert_path.clear();
  auto strict = sandbox::basic_grpc_transport<sandbox::no_retry>::make(o).value();
  auto refused = strict->get(box.id());
  REQUIRE_FALSE(refused);
  CHECK(refused.error().is(errc::unavailable));
  // A roots file that cannot be read is said at once.
  o.ca_cert_path = d + "/missing.pem";
  CHECK(sandbox::grpc_transport::make(o).error().is(errc::validation));
  std::system(("rm -rf " + d).c_str());
}
