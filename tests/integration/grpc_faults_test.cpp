// SPDX-License-Identifier: MIT
// grpc_transport against a loopback gRPC server whose every answer the test scripts: refused
// and late connections, UNAVAILABLE and RESOURCE_EXHAUSTED with RetryInfo, a stream cut after
// some output, slow and silent servers, undecodable messages. Each case ends in the right typed
// error or the right result, and none hangs.
#include <sandbox/grpc.hpp>
#include <sandbox/server/detail/grpc_wire.hpp>

#include "../support/every_byte.hpp"
#include "../support/protobuf_bytes.hpp"

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace std::chrono_literals;
using sandbox::errc;
using std::chrono::milliseconds;
using clk = std::chrono::steady_clock;
namespace wire = sandbox::http::wire;
using sandbox::testing::bytes_field;
using sandbox::testing::number_field;

namespace {

/// Retries quickly within a 600 ms budget, so that giving up is observable in a test.
using quick_retry = sandbox::exponential_backoff<20, 150, 100, 600, 2000>;
using transport_t = sandbox::basic_grpc_transport<quick_retry>;

milliseconds since(clk::time_point t) {
  return std::chrono::duration_cast<milliseconds>(clk::now() - t);
}

std::string running_sandbox() {
  wire::Sandbox s;
  s.sandbox_id = "sbx-1";
  s.status.emplace().state = wire::State::STATE_RUNNING;
  return sandbox::http::to_protobuf(s);
}

/// What the server does with one call, once its first request has arrived.
struct answer {
  milliseconds delay{0};             ///< before anything is sent
  bool silent = false;               ///< sends nothing until the client gives up (cancels)
  std::vector<std::string> messages; ///< sent in order (raw bytes: they may be garbage)
  grpc::Status status = grpc::Status::OK;
};

struct seen {
  std::string method;
  clk::time_point at;
};

/// A loopback gRPC server; `script` decides each call's answer (n counts calls from 0).
class scripted_service {
public:
  using script_fn = std::function<answer(const std::string& method, int n)>;

  /// `script` answers from the first call on (a server started later gets it before it serves).
  explicit scripted_service(int port = 0, script_fn script = {}) : script_(std::move(script)) {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(),
                       &port_);
    b.RegisterCallbackGenericService(&service_);
    server_ = b.BuildAndStart();
    if (!server_ || port_ == 0) std::abort();
  }
  ~scripted_service() {
    server_->Shutdown(std::chrono::system_clock::now()); // cancels what is still under way
    std::vector<std::thread> ts;
    {
      std::lock_guard lk(m_);
      ts.swap(threads_);
    }
    for (auto& t : ts)
      t.join();
  }

  void on(script_fn f) {
    std::lock_guard lk(m_);
    script_ = std::move(f);
  }
  /// StreamExec gets `a`; GetSandbox (what an exec asks first) a RUNNING sandbox.
  static script_fn exec_script(answer a) {
    return [a](const std::string& method, int) {
      return method == "StreamExec" ? a : answer{{}, false, {running_sandbox()}};
    };
  }
  void on_exec(answer a) { on(exec_script(std::move(a))); }
  [[nodiscard]] std::size_t count(const std::string& method) const {
    std::lock_guard lk(m_);
    return static_cast<std::size_t>(std::count_if(
        seen_.begin(), seen_.end(), [&](const seen& c) { return c.method == method; }));
  }
  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  [[nodiscard]] std::vector<seen> calls() const {
    std::lock_guard lk(m_);
    return seen_;
  }

  [[nodiscard]] std::shared_ptr<transport_t> client(sandbox::remote_options o = {}) const {
    o.base_url = url();
    o.api_key = "test-key-123";
    return transport_t::make(o).value();
  }

private:
  /// One call: reads its requests; answers from a thread of its own (an answer may wait).
  class call final : public grpc::ServerGenericBidiReactor {
  public:
    call(scripted_service& svc, grpc::GenericCallbackServerContext* ctx) : svc_(svc), ctx_(ctx) {
      StartRead(&in_);
    }
    void OnReadDone(bool ok) override {
      if (!ok) {
        if (first_) Finish(grpc::Status::CANCELLED); // no request: nothing will answer it
        first_ = false;
        return;
      }
      if (first_) {
        first_ = false;
        svc_.start(this, ctx_->method());
      }
      StartRead(&in_); // stdin, close: read and dropped
    }
    void OnWriteDone(bool) override {
      std::lock_guard lk(m_);
      written_ = true;
      cv_.notify_all();
    }
    void OnCancel() override {
      std::lock_guard lk(m_);
      cancelled_ = true;
      cv_.notify_all();
    }
    void OnDone() override { delete this; }

    /// The answer, on the call's thread. Finish is its last use of the call.
    void play(const answer& a) {
      std::unique_lock lk(m_);
      if (cv_.wait_for(lk, a.delay, [&] { return cancelled_; }) || a.silent) {
        cv_.wait(lk, [&] { return cancelled_; });
        lk.unlock();
        Finish(grpc::Status::CANCELLED);
        return;
      }
      for (const auto& m : a.messages) {
        out_ = sandbox::serve::detail::buffer_of(m);
        written_ = false;
        lk.unlock();
        StartWrite(&out_);
        lk.lock();
        cv_.wait(lk, [&] { return written_; });
      }
      lk.unlock();
      Finish(a.status);
    }

  private:
    scripted_service& svc_;
    grpc::GenericCallbackServerContext* ctx_;
    grpc::ByteBuffer in_, out_;
    bool first_ = true;
    std::mutex m_;
    std::condition_variable cv_;
    bool written_ = false, cancelled_ = false;
  };

  class generic final : public grpc::CallbackGenericService {
  public:
    explicit generic(scripted_service& s) : s_(s) {}
    grpc::ServerGenericBidiReactor*
    CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
      return new call(s_, ctx);
    }

  private:
    scripted_service& s_;
  };

  void start(call* c, const std::string& method) {
    std::lock_guard lk(m_);
    auto name = method.substr(method.rfind('/') + 1);
    seen_.push_back({name, clk::now()});
    answer a = script_ ? script_(name, static_cast<int>(seen_.size()) - 1) : answer{};
    threads_.emplace_back([c, a = std::move(a)] { c->play(a); });
  }

  generic service_{*this};
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  mutable std::mutex m_;
  script_fn script_;
  std::vector<seen> seen_;
  std::vector<std::thread> threads_;
};

std::string output(const std::string& data) {
  wire::ExecStreamResponse r;
  auto& o = r.output.emplace();
  o.stream = wire::OutputStream::STREAM_STDOUT;
  o.data = data;
  return sandbox::http::to_protobuf(r);
}

std::string exited(int code) {
  wire::ExecStreamResponse r;
  r.exit.emplace().exit_code = code;
  return sandbox::http::to_protobuf(r);
}

/// A status with a RetryInfo of `delay` in its details, as the service sends them.
grpc::Status retry_later(grpc::StatusCode code, milliseconds delay) {
  wire::Status st;
  st.code = static_cast<std::int32_t>(code);
  st.message = "try later";
  st.retry_info = wire::RetryInfo{delay};
  return {code, st.message, sandbox::http::to_protobuf(st)};
}

/// A loopback port held bound but not listening: connections to it are refused, and no one
/// else takes it meanwhile. SO_REUSEPORT (which grpc++ sets on its own sockets) lets a server of
/// the test listen on it later.
class held_port {
public:
  held_port() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::setsockopt(fd_, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      std::abort();
    port_ = ntohs(a.sin_port);
  }
  held_port(const held_port&) = delete;
  held_port& operator=(const held_port&) = delete;
  ~held_port() { ::close(fd_); }
  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

private:
  int fd_ = -1;
  int port_ = 0;
};

/// Makes `t` know sbx-1 as RUNNING (so that an exec goes straight to connecting) through a
/// server on `port` that then goes away; a call finds out (the channel may still look connected
/// until one does), so the channel's connection has failed.
void seen_running_then_gone(const held_port& port, transport_t& t) {
  {
    scripted_service up(port.port(), scripted_service::exec_script({}));
    REQUIRE(t.get("sbx-1"));
  }
  REQUIRE_FALSE(t.get("sbx-1"));
}

} // namespace

TEST_CASE("gRPC faults: a timeout that leaves no time for a call is refused", "[grpc][faults]") {
  auto never = transport_t::make({.base_url = "http://127.0.0.1:1", .connect_timeout = -5ms});
  REQUIRE_FALSE(never);
  CHECK(never.error().is(errc::validation));
  CHECK(never.error().message.find("connect_timeout is -5 ms") != std::string::npos);
  CHECK_FALSE(transport_t::make({.base_url = "http://127.0.0.1:1", .read_timeout = 0ms}));
}

TEST_CASE("gRPC faults: connection refused", "[grpc][faults]") {
  held_port port;
  auto t = transport_t::make({.base_url = port.url()}).value();
  auto start = clk::now();
  auto got = sandbox::detail::with_retry(quick_retry{}, [&] { return t->get("sbx-1"); });
  REQUIRE_FALSE(got);
  CHECK(got.error().is(errc::unavailable));
  CHECK(since(start) >= 500ms); // retried, for most of the 600 ms budget
  CHECK(since(start) < 30s);    // and no more than it

  // Exec of a sandbox known to run: only connecting is repeated, within the budget, and the
  // error says where it could not connect.
  seen_running_then_gone(port, *t);
  start = clk::now();
  auto p = t->exec("sbx-1", std::vector<std::string>{"true"}, {});
  REQUIRE_FALSE(p);
  CHECK(p.error().is(errc::unavailable));
  CHECK(p.error().message.find("cannot connect to 127.0.0.1:" + std::to_string(port.port())) !=
        std::string::npos);
  CHECK(since(start) >= 500ms);
  CHECK(since(start) < 30s);
}

TEST_CASE("gRPC faults: an exec retries connecting until a late server is up, and runs once",
          "[grpc][faults]") {
  held_port port;
  auto t = transport_t::make({.base_url = port.url()}).value();
  // grpc++ would try the failed connection again only after its reconnect backoff (about a
  // second), past the retry policy's whole budget (600 ms).
  seen_running_then_gone(port, *t);
  std::unique_ptr<scripted_service> svc;
  std::thread late([&] {
    std::this_thread::sleep_for(150ms);
    svc = std::make_unique<scripted_service>(
        port.port(), scripted_service::exec_script({{}, false, {output("hi\n"), exited(0)}}));
  });
  auto p = t->exec("sbx-1", std::vector<std::string>{"echo", "hi"}, {});
  late.join();
  REQUIRE(p);
  auto r = p.value().wait(std::nullopt);
  REQUIRE(r);
  CHECK(r.value().stdout_text == "hi\n");
  CHECK(r.value().returncode == 0);
  CHECK(svc->count("StreamExec") == 1); // the command was sent once
  CHECK(svc->count("GetSandbox") == 0); // and nothing asked first
}

TEST_CASE("gRPC faults: UNAVAILABLE and RESOURCE_EXHAUSTED wait as long as RetryInfo asks",
          "[grpc][faults]") {
  auto code = GENERATE(grpc::StatusCode::UNAVAILABLE, grpc::StatusCode::RESOURCE_EXHAUSTED);
  scripted_service svc;
  svc.on([code](const std::string&, int n) {
    if (n == 0) return answer{{}, false, {}, retry_later(code, 300ms)};
    return answer{{}, false, {running_sandbox()}};
  });
  auto t = svc.client();
  auto r = sandbox::detail::with_retry(quick_retry{}, [&] { return t->get("sbx-1"); });
  REQUIRE(r);
  CHECK(r.value().state == sandbox::State::RUNNING);
  auto calls = svc.calls();
  REQUIRE(calls.size() == 2);
  CHECK(calls[0].method == "GetSandbox");
  auto gap = std::chrono::duration_cast<milliseconds>(calls[1].at - calls[0].at);
  CHECK(gap >= 300ms); // the server's hint, not the policy's own, shorter, delays

  // Without retrying, the error carries what the server said.
  scripted_service once;
  once.on([code](const std::string&, int) {
    return answer{{}, false, {}, retry_later(code, 1500ms)};
  });
  auto e = once.client()->get("sbx-1");
  REQUIRE_FALSE(e);
  CHECK(e.error().is(code == grpc::StatusCode::UNAVAILABLE ? errc::unavailable
                                                           : errc::resource_exhausted));
  REQUIRE(e.error().server);
  CHECK(e.error().server->retry_delay == 1500ms);
}

TEST_CASE("gRPC faults: a stream cut after some output", "[grpc][faults]") {
  scripted_service svc;
  svc.on_exec(answer{{},
                     false,
                     {output("partial\n")},
                     grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection reset")});
  std::string live;
  sandbox::ExecOptions o;
  o.on_stdout = [&](std::string_view s) noexcept { live += s; };
  auto p = svc.client()->exec("sbx-1", std::vector<std::string>{"yes"}, o);
  REQUIRE(p);
  auto r = p.value().wait(std::nullopt);
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::unavailable));
  CHECK(r.error().message.find("connection reset") != std::string::npos);
  CHECK(live == "partial\n");          // what arrived before the cut was delivered
  CHECK(svc.count("StreamExec") == 1); // a started command is never sent again
}

TEST_CASE("gRPC faults: slow and silent servers", "[grpc][faults]") {
  scripted_service svc;
  svc.on([](const std::string&, int) {
    return answer{milliseconds(0), true, {}, grpc::Status::OK};
  });
  sandbox::remote_options o;
  o.read_timeout = 300ms;
  auto t = svc.client(o);

  SECTION("a unary call ends at the read timeout") {
    auto start = clk::now();
    auto r = t->get("sbx-1");
    REQUIRE_FALSE(r);
    CHECK(r.error().is(errc::timeout));
    CHECK(since(start) >= 300ms);
    CHECK(since(start) < 30s); // the read timeout ended it, not the server
  }
  SECTION("an exec ends at the command's timeout") {
    svc.on_exec(answer{milliseconds(0), true, {}, grpc::Status::OK});
    sandbox::ExecOptions x;
    x.timeout = 300ms;
    auto start = clk::now();
    auto p = t->exec("sbx-1", std::vector<std::string>{"sleep", "60"}, x);
    REQUIRE(p);
    auto r = p.value().wait(std::nullopt);
    REQUIRE_FALSE(r);
    CHECK(r.error().is(errc::command_timeout));
    CHECK(since(start) < 30s);
  }
  SECTION("an exec without a timeout waits, and kill ends it") {
    svc.on_exec(answer{milliseconds(0), true, {}, grpc::Status::OK});
    sandbox::ExecOptions x;
    x.stdin_pipe = true;
    auto p = t->exec("sbx-1", std::vector<std::string>{"cat"}, x);
    REQUIRE(p);
    auto early = p.value().wait(300ms);
    REQUIRE_FALSE(early);
    CHECK(early.error().is(errc::timeout)); // still running
    REQUIRE(p.value().kill(9));
    auto r = p.value().wait(std::nullopt);
    REQUIRE_FALSE(r);
    CHECK(r.error().is(errc::not_running));
  }
  SECTION("a delayed answer within the timeout is taken") {
    svc.on([](const std::string&, int) {
      return answer{milliseconds(100), false, {running_sandbox()}};
    });
    auto r = t->get("sbx-1");
    REQUIRE(r);
    CHECK(r.value().state == sandbox::State::RUNNING);
  }
}

TEST_CASE("gRPC faults: undecodable and incomplete answers are protocol errors", "[grpc][faults]") {
  scripted_service svc;
  const std::string garbage = "\xff\xff\xff\xff\x0f\x01"; // a field number out of range
  auto t = svc.client();

  SECTION("a unary answer") {
    svc.on([&](const std::string&, int) { return answer{{}, false, {garbage}}; });
    auto r = t->get("sbx-1");
    REQUIRE_FALSE(r);
    CHECK(r.error().is(errc::protocol));
    CHECK(r.error().message.find("GetSandbox") != std::string::npos);
  }
  SECTION("a StreamExec message") {
    svc.on_exec(answer{{}, false, {output("ok\n"), garbage, exited(0)}});
    auto p = t->exec("sbx-1", std::vector<std::string>{"true"}, {});
    REQUIRE(p);
    auto r = p.value().wait(std::nullopt);
    REQUIRE_FALSE(r);
    CHECK(r.error().is(errc::protocol));
  }
  SECTION("a StreamExec that ends without an exit code") {
    svc.on_exec(answer{{}, false, {output("ok\n")}});
    auto p = t->exec("sbx-1", std::vector<std::string>{"true"}, {});
    REQUIRE(p);
    auto r = p.value().wait(std::nullopt);
    REQUIRE_FALSE(r);
    CHECK(r.error().is(errc::protocol));
    CHECK(r.error().message.find("without the command's exit") != std::string::npos);
  }
}

TEST_CASE("gRPC faults: StreamExec output in any valid encoding is kept as the decoder reads it",
          "[grpc][faults]") {
  // Output as a service writes it is kept straight from what grpc++ read; every other encoding
  // is decoded whole. Either way each stream gets what the decoder makes of each message.
  // More than one read's worth: several slices.
  const std::string binary = sandbox::testing::every_byte((2 << 20) + 7);
  const std::string out_of = bytes_field(2, "stdout\n");
  const std::vector<std::string> messages = {
      output("plain\n"),                                                   // the usual
      bytes_field(2, number_field(1, 2) + bytes_field(2, "err\n")),        // stderr
      bytes_field(2, bytes_field(2, "no stream\n")),                       // stream unset
      bytes_field(2, bytes_field(2, "data first\n") + number_field(1, 2)), // stream after it
      bytes_field(2, number_field(1, 2)) + bytes_field(2, out_of),         // merged: stderr
      bytes_field(2, std::string("\x08\x82\x80\x00", 4) + bytes_field(2, "long varint\n")),
      bytes_field(2, number_field(1, (std::uint64_t{1} << 32) + 2) + bytes_field(2, "wraps\n")),
      bytes_field(2, number_field(1, 7) + bytes_field(2, "unknown stream\n")), // not stderr
      bytes_field(2, bytes_field(2, "unknown field after\n")) + number_field(9, 1),
      bytes_field(2, bytes_field(2, "unknown field inside\n") + number_field(9, 1)),
      bytes_field(2, number_field(1, 1) + bytes_field(2, "")),     // empty data
      bytes_field(2, number_field(1, 1) + bytes_field(2, binary)), // large, binary
      bytes_field(2, number_field(1, 2) + bytes_field(2, binary.substr(3))),
      exited(3)};
  std::string want_out, want_err;
  for (const auto& m : messages) {
    auto d = sandbox::http::from_protobuf<wire::ExecStreamResponse>(
        m, sandbox::http::decode_mode::lenient);
    REQUIRE(d);
    if (!d.value().output) continue;
    (d.value().output->stream == wire::OutputStream::STREAM_STDERR ? want_err : want_out) +=
        d.value().output->data;
  }
  REQUIRE(want_out == "plain\nno stream\nunknown stream\nunknown field after\nunknown field "
                      "inside\n" +
                          binary);
  REQUIRE(want_err == "err\ndata first\nstdout\nlong varint\nwraps\n" + binary.substr(3));

  scripted_service svc;
  svc.on_exec(answer{{}, false, messages});
  for (std::uint64_t cap : {sandbox::unlimited_output, std::uint64_t{1} << 20, std::uint64_t{5}}) {
    std::string live_out, live_err;
    sandbox::ExecOptions o;
    o.max_output_bytes = cap;
    o.on_stdout = [&](std::string_view d) noexcept { live_out += d; };
    o.on_stderr = [&](std::string_view d) noexcept { live_err += d; };
    auto p = svc.client()->exec("sbx-1", std::vector<std::string>{"sh"}, o);
    REQUIRE(p);
    auto r = p.value().wait(std::nullopt);
    REQUIRE(r);
    CHECK(r.value().returncode == 3);
    CHECK(live_out == want_out); // the callbacks see every byte, kept or not
    CHECK(live_err == want_err);
    const auto kept = [&](const std::string& all) {
      return all.substr(0, static_cast<std::size_t>(std::min<std::uint64_t>(cap, all.size())));
    };
    CHECK(r.value().stdout_text == kept(want_out));
    CHECK(r.value().stderr_text == kept(want_err));
    CHECK(r.value().stdout_bytes_produced == want_out.size());
    CHECK(r.value().stderr_bytes_produced == want_err.size());
    CHECK(r.value().stdout_truncated == (cap < want_out.size()));
    CHECK(r.value().stderr_truncated == (cap < want_err.size()));
  }
}

TEST_CASE("gRPC faults: output as a service writes it is kept from grpc++'s slices in place",
          "[grpc][faults]") {
  namespace rd = sandbox::rpc::detail;
  // A message as grpc++ may hand it over: in slices cut anywhere, the header included.
  auto arrived = [](const std::string& m, std::vector<std::size_t> cuts) {
    std::vector<grpc::Slice> slices;
    std::size_t at = 0;
    cuts.push_back(m.size());
    for (std::size_t cut : cuts) {
      slices.emplace_back(m.data() + at, cut - at);
      at = cut;
    }
    return rd::received(grpc::ByteBuffer(slices.data(), slices.size()));
  };
  auto pieces = [](const rd::received& r, std::size_t from) {
    std::string all;
    std::size_t n = 0;
    r.each_piece(from, [&](std::string_view p) {
      all += p;
      ++n;
    });
    return std::pair(all, n);
  };
  const std::string big = sandbox::testing::every_byte(3 << 20);
  const std::string out = bytes_field(2, number_field(1, 1) + bytes_field(2, big));
  const std::string err = bytes_field(2, number_field(1, 2) + bytes_field(2, big));
  for (const auto& cuts : std::vector<std::vector<std::size_t>>{
           {}, {1}, {3}, {5}, {7}, {8}, {9}, {64 << 10, 2 << 20}, {2, 4, 6, 1 << 20}}) {
    for (const auto* m : {&out, &err}) {
      const auto r = arrived(*m, cuts);
      REQUIRE(r.size == m->size());
      // A large message is not copied (grpc++ joins slices small enough to be held inline).
      CHECK(r.slices.size() <= cuts.size() + 1);
      CHECK(r.slices.size() >= std::min<std::size_t>(cuts.size() + 1, 2));
      const auto at = rd::output_at(r);
      REQUIRE(at);
      CHECK(at->out == (m == &out));
      CHECK(at->from == m->size() - big.size());
      auto [all, n] = pieces(r, at->from);
      CHECK(all == big);
      CHECK(n <= cuts.size() + 1);
    }
  }
  // A small message is copied into a slice of its own (it may share grpc++'s read buffer).
  const std::string small = output("hi\n");
  const auto r = arrived(small, {1, 2, 4});
  REQUIRE(r.slices.size() == 1);
  REQUIRE(r.size == small.size());
  const auto at = rd::output_at(r);
  REQUIRE(at);
  CHECK(pieces(r, at->from).first == "hi\n");
  // Everything else is decoded whole.
  for (const std::string& m : {bytes_field(2, bytes_field(2, "x") + number_field(1, 2)),
                               bytes_field(2, number_field(1, 2)) + bytes_field(2, "\x12\x01x"),
                               bytes_field(2, bytes_field(2, "x")) + number_field(9, 1),
                               bytes_field(2, number_field(1, 1) + bytes_field(2, "")),
                               bytes_field(2, bytes_field(2, "x") + number_field(9, 1)),
                               bytes_field(2, bytes_field(3, "x")), exited(0), std::string()})
    CHECK_FALSE(rd::output_at(arrived(m, {})));
}

TEST_CASE("gRPC faults: a command with nothing to stream, sent as one Exec call",
          "[grpc][faults]") {
  scripted_service svc;
  auto t = svc.client();
  auto on_exec = [&](answer a) {
    svc.on([a](const std::string& method, int) {
      return method == "Exec" ? a : answer{{}, false, {running_sandbox()}};
    });
  };
  sandbox::ExecOptions x;
  x.max_output_bytes = 4; // a cap both streams fit one answer with
  // The error `true` ends with, answered `a`.
  auto failure_of = [&](answer a) {
    on_exec(std::move(a));
    auto p = t->exec("sbx-1", std::vector<std::string>{"true"}, x);
    REQUIRE(p);
    auto r = p.value().wait(std::nullopt);
    REQUIRE_FALSE(r);
    return r.error();
  };

  SECTION("more output than asked for is cut to the cap, and counted") {
    wire::ExecResponse r;
    r.stdout_bytes = "0123456789";
    r.stderr_bytes = "ab";
    r.exit_code = 2;
    on_exec(answer{{}, false, {sandbox::http::to_protobuf(r)}});
    auto p = t->exec("sbx-1", std::vector<std::string>{"seq", "10"}, x);
    REQUIRE(p);
    auto got = p.value().wait(std::nullopt);
    REQUIRE(got);
    CHECK(got.value().returncode == 2);
    CHECK(got.value().stdout_text == "0123");
    CHECK(got.value().stdout_truncated);
    CHECK(got.value().stdout_bytes_produced == 10);
    CHECK(got.value().stderr_text == "ab");
    CHECK_FALSE(got.value().stderr_truncated);
    CHECK(got.value().command == std::vector<std::string>{"seq", "10"});
    CHECK(svc.count("Exec") == 1);
    CHECK(svc.count("StreamExec") == 0);
  }
  SECTION("an undecodable answer is a protocol error") {
    auto e = failure_of(answer{{}, false, {"\xff\xff\xff\xff\x0f\x01"}});
    CHECK(e.is(errc::protocol));
    CHECK(e.message.find("exec true") != std::string::npos);
  }
  SECTION("a call that fails once started is an error, and the command is not sent again") {
    auto e = failure_of(
        answer{{}, false, {}, grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection reset")});
    CHECK(e.is(errc::unavailable));
    CHECK(e.message.find("connection reset") != std::string::npos);
    CHECK(svc.count("Exec") == 1);
  }
  SECTION("a silent server: a wait times out and the command runs on; kill ends it") {
    on_exec(answer{milliseconds(0), true, {}, grpc::Status::OK});
    auto p = t->exec("sbx-1", std::vector<std::string>{"sleep", "60"}, x);
    REQUIRE(p);
    auto early = p.value().wait(300ms);
    REQUIRE_FALSE(early);
    CHECK(early.error().is(errc::timeout));
    CHECK_FALSE(p.value().poll());
    REQUIRE(p.value().kill(9));
    auto r = p.value().wait(std::nullopt);
    REQUIRE_FALSE(r);
    CHECK(r.error().is(errc::not_running));
  }
}

TEST_CASE("gRPC faults: a log without end is read in parts of at most max_response_bytes",
          "[grpc][faults]") {
  constexpr std::size_t MiB = std::size_t{1} << 20;
  std::vector<std::string> entries;
  for (std::uint64_t i = 0; i < 40; ++i) {
    wire::LogEntry e;
    e.data = std::string(MiB, static_cast<char>('a' + i % 26));
    e.next_log_offset = (i + 1) * MiB;
    entries.push_back(sandbox::http::to_protobuf(e));
  }
  scripted_service svc(0, [&](const std::string&, int) { return answer{{}, false, entries}; });
  sandbox::remote_options o;
  o.max_response_bytes = 4 * MiB;
  auto t = svc.client(o);
  auto r = t->logs("sbx-1", 0, 0ms);
  REQUIRE(r);
  std::size_t got = 0;
  for (const auto& c : r.value().chunks)
    got += c.data.size();
  CHECK(got >= 3 * MiB);
  CHECK(got <= 5 * MiB); // not the 40 MiB the server would send
  CHECK(r.value().end_offset == got);
  CHECK_FALSE(r.value().complete);
  REQUIRE_FALSE(r.value().chunks.empty());
  CHECK(r.value().chunks.back().data == std::string(MiB, static_cast<char>('a' + got / MiB - 1)));
}
