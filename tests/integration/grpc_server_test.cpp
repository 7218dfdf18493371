// SPDX-License-Identifier: MIT
// The gRPC front end of the server, over the local transport and beside the REST one: every
// method it serves, errors with their details, and StreamExec's live output, stdin and
// cancellation.
#include "../support/grpc_client.hpp"
#include "../support/loopback_server.hpp"

#include <sandbox/detail/utf8.hpp>
#include <sandbox/server/grpc_server.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using sandbox::testing::rpc_client;
namespace wire = sandbox::http::wire;

namespace {

/// REST and gRPC front ends of one service on loopback ports.
struct servers {
  sandbox::testing::loopback_server rest;
  sandbox::grpc_server<sandbox::local_transport> grpc{rest.get().service()};
  std::string target;

  explicit servers(sandbox::server_options o = {}) : rest(std::move(o)) {
    auto port = grpc.start("127.0.0.1", 0);
    REQUIRE(port);
    target = "127.0.0.1:" + std::to_string(port.value());
  }
  [[nodiscard]] rpc_client client() const { return rpc_client(target, "Bearer " + rest.token()); }
};

wire::Sandbox keep_alive_spec(std::vector<std::string> tags = {}) {
  wire::Sandbox sb;
  sb.spec = wire::SandboxSpec{};
  wire::Container main;
  main.name = "main";
  main.image = "python:3.11";
  sb.spec->containers = {main};
  sb.spec->tags = std::move(tags);
  return sb;
}

std::string create(rpc_client& c, std::vector<std::string> tags = {}) {
  wire::CreateSandboxRequest rq;
  rq.sandbox = keep_alive_spec(std::move(tags));
  auto r = c.unary<wire::Sandbox>("CreateSandbox", rq);
  INFO(r.status.error_message());
  REQUIRE(r.ok());
  return r.message.sandbox_id;
}

void remove(rpc_client& c, const std::string& id) {
  wire::DeleteSandboxRequest rq;
  rq.sandbox_id = id;
  CHECK(c.unary<wire::DeleteSandboxResponse>("DeleteSandbox", rq).ok());
}

wire::ExecStreamRequest init_of(const std::string& id, std::vector<std::string> cmd) {
  wire::ExecStreamRequest m;
  m.init = wire::ExecStreamInit{};
  m.init->sandbox_id = id;
  m.init->command = std::move(cmd);
  return m;
}

wire::ExecStreamRequest stdin_of(std::string bytes) {
  wire::ExecStreamRequest m;
  m.stdin_bytes = std::move(bytes);
  return m;
}

/// What a StreamExec call delivered: output by stream, the exit, the error frame, the order.
struct streamed {
  bool ready_first = false;
  std::string out, err;
  std::optional<std::int32_t> exit_code;
  std::optional<wire::ExecStreamError> error;
  grpc::Status status;
};

streamed drain(rpc_client::stream& s) {
  streamed r;
  bool first = true;
  while (auto m = s.read()) {
    if (first) r.ready_first = m->ready.has_value();
    CHECK((!m->ready || first)); // at most one, before anything else
    first = false;
    if (m->output) {
      CHECK(!r.exit_code); // nothing after the exit
      (m->output->stream == wire::OutputStream::STREAM_STDOUT ? r.out : r.err) += m->output->data;
    }
    if (m->exit) r.exit_code = m->exit->exit_code;
    if (m->error) r.error = m->error;
  }
  r.status = s.finish();
  return r;
}

/// Reads a StreamExec call's output until it holds `text` (the command has not ended before).
void read_output_until(rpc_client::stream& st, const std::string& text) {
  std::string out;
  while (out.find(text) == std::string::npos) {
    auto m = st.read();
    REQUIRE(m);
    REQUIRE(!m->exit);
    if (m->output) out += m->output->data;
  }
}

/// Whether, within 10 s, no process named `name` is left in the sandbox (as its commands see it).
bool ends_without(rpc_client& c, const std::string& id, const std::string& name) {
  wire::ExecRequest x;
  x.sandbox_id = id;
  x.command = {"sh", "-c", "cat /proc/[0-9]*/comm"};
  for (int i = 0; i < 100; ++i) {
    auto ps = c.unary<wire::ExecResponse>("Exec", x);
    REQUIRE(ps.ok());
    if (ps.message.stdout_bytes.find(name) == std::string::npos) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

} // namespace

TEST_CASE("gRPC: a spliced message is sent as its whole encoding, and what holds its values "
          "lives until the last slice goes; spare buffers are bounded",
          "[grpc][output]") {
  namespace wire = sandbox::http::wire;
  using sandbox::serve::detail::buffer_of;
  using sandbox::serve::detail::bytes_of;
  for (std::size_t n : {std::size_t{0}, std::size_t{5}, std::size_t{4096}, std::size_t{1} << 20}) {
    INFO("n = " << n);
    auto m = std::make_shared<wire::ExecStreamResponse>();
    m->output = wire::ExecStreamOutput{wire::OutputStream::STREAM_STDOUT, std::string(n, 'q')};
    const std::string whole = sandbox::http::to_protobuf(*m);
    std::weak_ptr<wire::ExecStreamResponse> alive = m;
    {
      grpc::ByteBuffer b = buffer_of(sandbox::http::to_protobuf_spliced(*m, 4096), m);
      m.reset();
      CHECK((bytes_of(b) == whole));
      CHECK(b.Length() == whole.size());
      CHECK(alive.expired() == (n < 4096)); // a value referred to keeps its message
      grpc::ByteBuffer copy = b;            // slices are shared, not copied
      b.Clear();
      CHECK(alive.expired() == (n < 4096));
      CHECK((bytes_of(copy) == whole));
    }
    CHECK(alive.expired());
  }
  // Text between values and values side by side, at several depths: the same bytes as the whole
  // encoding, and the message held until the buffer goes.
  {
    auto sb = std::make_shared<wire::Sandbox>();
    sb->sandbox_id = "sb-1";
    wire::Container c;
    c.name = "main";
    c.image = "img";
    c.files = {{"/a", std::string(5000, 'a')}, {"/b", std::string(6000, 'b')}};
    wire::SandboxSpec spec;
    spec.containers = {c, c};
    spec.containers[1].files.push_back({"/c", "small"});
    sb->spec = spec;
    const std::string whole = sandbox::http::to_protobuf(*sb);
    auto spliced = sandbox::http::to_protobuf_spliced(*sb, 4096);
    REQUIRE(spliced.holes.size() == 4);
    std::weak_ptr<wire::Sandbox> alive = sb;
    grpc::ByteBuffer b = buffer_of(spliced, sb);
    sb.reset();
    CHECK((bytes_of(b) == whole));
    CHECK_FALSE(alive.expired());
    b.Clear();
    CHECK(alive.expired());
  }
  // Reading into a buffer keeps its room.
  std::string room;
  room.reserve(1 << 20);
  const char* at = room.data();
  grpc::ByteBuffer small = buffer_of(std::string("abc"));
  room = bytes_of(small, std::move(room));
  CHECK(room == "abc");
  CHECK(room.data() == at);

  sandbox::serve::detail::buffer_pool pool(2, 1 << 16, 1 << 20);
  CHECK(pool.take().capacity() < 64); // none spare yet
  std::string big, bigger, too_big, too_small, third;
  big.reserve(1 << 19);
  bigger.reserve(1 << 20);
  too_big.reserve((1 << 20) + 4096);
  too_small.reserve(1 << 10);
  third.reserve(1 << 19);
  big = "kept";
  pool.give(std::move(too_small)); // too little room to be worth keeping: freed
  pool.give(std::move(big));
  pool.give(std::move(too_big)); // more room than a spare may hold: freed
  pool.give(std::move(bigger));
  pool.give(std::move(third)); // two spares at most
  std::string a = pool.take(), b = pool.take(), c = pool.take();
  CHECK(a.empty());
  CHECK(b.empty());
  CHECK(a.capacity() >= 1 << 19);
  CHECK(b.capacity() >= 1 << 19);
  CHECK(c.capacity() < 64);
}

TEST_CASE("gRPC StreamExec: output that switches streams every byte is held back by what its "
          "queue costs, not by its bytes alone, while the client reads nothing",
          "[grpc][output]") {
  servers s;
  auto c = s.client();
  std::string id = create(c);
  // Each byte alone, the streams taking turns: the writer waits until the server has read the
  // byte before writing the next, so each is a queued entry of its own. The 800,000 bytes here
  // are far below the queue's 4 MiB, which bytes alone would let through (4M entries); counting
  // each entry's cost (72 bytes) holds the command back after some tens of thousands.
  // The client takes in at most 64 KiB ahead of reading (about 7,000 such messages); grpc++
  // would otherwise grow that window while data flows.
  constexpr int pairs = 400'000;
  const std::string script = "import array, fcntl, os, termios\n"
                             "def wait(fd):\n"
                             "  a = array.array('i', [0])\n"
                             "  while True:\n"
                             "    fcntl.ioctl(fd, termios.FIONREAD, a)\n"
                             "    if a[0] == 0: return\n"
                             "for i in range(" +
                             std::to_string(pairs) +
                             "):\n"
                             "  os.write(1, b'o'); wait(1)\n"
                             "  os.write(2, b'e'); wait(2)\n"
                             "  if i % 100 == 99:\n"
                             "    with open('/tmp/pairs.tmp', 'w') as f: f.write(str(i + 1))\n"
                             "    os.rename('/tmp/pairs.tmp', '/tmp/pairs')\n";
  rpc_client stalled(s.target, "Bearer " + s.rest.token(), true, 64 << 10);
  rpc_client::stream st(stalled, 600s);
  REQUIRE(st.write_last(init_of(id, {"python3", "-c", script})));
  // How far the writer got: read in the sandbox, until it stops moving (or ends).
  wire::ExecRequest x;
  x.sandbox_id = id;
  x.command = {"sh", "-c", "cat /tmp/pairs 2>/dev/null || echo 0"};
  long last = -1;
  int still = 0;
  for (int i = 0; i < 3000 && still < 10; ++i) { // bounded: a writer that never starts
    std::this_thread::sleep_for(200ms);
    auto r = c.unary<wire::ExecResponse>("Exec", x);
    REQUIRE(r.ok());
    const long now = std::stol("0" + r.message.stdout_bytes);
    still = now == last && now > 0 ? still + 1 : 0;
    last = now;
    if (now >= pairs) break;
  }
  INFO("pairs written before the writer was held back: " << last);
  CHECK(last > 0);
  CHECK(last < pairs / 4);
  st.cancel();
  remove(c, id);
}

TEST_CASE("gRPC: the unary methods, on the sandboxes REST sees too", "[grpc]") {
  servers s;
  auto c = s.client();
  std::string id = create(c, {"grpc-test"});

  wire::GetSandboxRequest get{id};
  auto got = c.unary<wire::Sandbox>("GetSandbox", get);
  REQUIRE(got.ok());
  CHECK(got.message.sandbox_id == id);
  REQUIRE(got.message.status);
  CHECK(got.message.status->state == wire::State::STATE_RUNNING);
  // The same sandbox through REST.
  auto rest = s.rest.client();
  auto info = rest->get(id);
  REQUIRE(info);
  CHECK(info.value().state == sandbox::State::RUNNING);

  wire::ListSandboxesRequest list;
  list.tags = {"grpc-test"};
  auto listed = c.unary<wire::ListSandboxesResponse>("ListSandboxes", list);
  REQUIRE(listed.ok());
  REQUIRE(listed.message.sandboxes.size() == 1);
  CHECK(listed.message.sandboxes[0].sandbox_id == id);

  wire::ExecRequest x;
  x.sandbox_id = id;
  x.command = {"sh", "-c", "printf 'out\\0put'; echo err >&2; exit 3"};
  auto ran = c.unary<wire::ExecResponse>("Exec", x);
  REQUIRE(ran.ok());
  CHECK(ran.message.stdout_bytes == std::string("out\0put", 7));
  CHECK(ran.message.stderr_bytes == "err\n");
  CHECK(ran.message.exit_code == 3);

  std::string big(20 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i)
    big[i] = static_cast<char>(i * 131 % 251);
  wire::WriteFileRequest w{id, "/tmp/big.bin", big, ""};
  REQUIRE(c.unary<wire::WriteFileResponse>("WriteFile", w).ok());
  wire::ReadFileRequest rd{id, "/tmp/big.bin", ""};
  auto read = c.unary<wire::ReadFileResponse>("ReadFile", rd);
  REQUIRE(read.ok());
  CHECK(read.message.content == big);

  wire::PurgeSandboxesRequest purge;
  purge.tags = {"grpc-test"};
  purge.dry_run = true;
  auto counted = c.unary<wire::PurgeSandboxesResponse>("PurgeSandboxes", purge);
  REQUIRE(counted.ok());
  CHECK(counted.message.purge_count == 1);

  remove(c, id);
  auto gone = c.unary<wire::Sandbox>("GetSandbox", get);
  REQUIRE(gone.ok()); // answerable for a while after the stop
  CHECK(gone.message.status->state == wire::State::STATE_TERMINATED);
}

TEST_CASE("gRPC: errors carry the REST mapping's code and details", "[grpc]") {
  servers s;
  wire::GetSandboxRequest get{"sbx-nonexistent"};

  SECTION("no token, a wrong token, a wrong API key") {
    auto none = rpc_client(s.target, "").unary<wire::Sandbox>("GetSandbox", get);
    CHECK(none.status.error_code() == grpc::StatusCode::UNAUTHENTICATED);
    auto wrong = rpc_client(s.target, "Bearer nope").unary<wire::Sandbox>("GetSandbox", get);
    CHECK(wrong.status.error_code() == grpc::StatusCode::UNAUTHENTICATED);
    CHECK(wrong.details().code == static_cast<int>(grpc::StatusCode::UNAUTHENTICATED));
    const std::string key = "x-wandb-api-key";
    auto bad_key = rpc_client(s.target, "nope").unary<wire::Sandbox>("GetSandbox", get, {}, &key);
    CHECK(bad_key.status.error_code() == grpc::StatusCode::UNAUTHENTICATED);
    // The token as an API key is accepted.
    auto by_key =
        rpc_client(s.target, s.rest.token()).unary<wire::Sandbox>("GetSandbox", get, {}, &key);
    CHECK(by_key.status.error_code() == grpc::StatusCode::NOT_FOUND);
  }
  SECTION("not found, with ErrorInfo") {
    auto r = s.client().unary<wire::Sandbox>("GetSandbox", get);
    CHECK(r.status.error_code() == grpc::StatusCode::NOT_FOUND);
    // An id of any size is named by an excerpt: the answer does not grow with the request
    // (each invalid byte would even come back as three, U+FFFD, and nine percent-encoded).
    auto huge = s.client().unary<wire::Sandbox>(
        "GetSandbox", wire::GetSandboxRequest{std::string(std::size_t{1} << 20, '\xff')});
    CHECK(huge.status.error_code() == grpc::StatusCode::NOT_FOUND);
    CHECK(huge.status.error_message().size() < 1024);
    CHECK(huge.details().message.size() < 1024);
    auto d = r.details();
    CHECK(d.code == static_cast<int>(grpc::StatusCode::NOT_FOUND));
    REQUIRE(d.error_info);
    CHECK(d.error_info->domain == "cwsandbox.com");
    CHECK(!d.error_info->reason.empty());
  }
  SECTION("a file error names its file") {
    auto c = s.client();
    std::string id = create(c);
    wire::ReadFileRequest rd{id, "/no/such/file", ""};
    auto r = c.unary<wire::ReadFileResponse>("ReadFile", rd);
    CHECK(r.status.error_code() == grpc::StatusCode::NOT_FOUND);
    auto d = r.details();
    REQUIRE(d.error_info);
    CHECK(d.error_info->reason == "CWSANDBOX_FILE_NOT_FOUND");
    CHECK(d.error_info->metadata["filepath"] == "/no/such/file");
    remove(c, id);
  }
  SECTION("bad requests: a missing required field, a field this server lacks") {
    auto c = s.client();
    auto r = c.unary<wire::Sandbox>("GetSandbox", wire::GetSandboxRequest{});
    CHECK(r.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    INFO(r.status.error_message());
    CHECK(r.status.error_message().find("sandboxId") != std::string::npos);
    // ListSandboxesRequest.runner_ids (field 6): placement on runners this server lacks.
    auto lacks = c.unary<wire::ListSandboxesResponse>("ListSandboxes", std::string("\x32\x01r"));
    CHECK(lacks.status.error_code() == grpc::StatusCode::UNIMPLEMENTED);
    INFO(lacks.status.error_message());
    CHECK(lacks.status.error_message().find("runnerIds") != std::string::npos);
    // Bytes that are not a message.
    auto junk = c.unary<wire::ListSandboxesResponse>("ListSandboxes", std::string("\xff\xff"));
    CHECK(junk.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  }
  SECTION("methods it does not serve") {
    auto c = s.client();
    auto snap = c.unary<wire::Sandbox>("CreateFileSystemSnapshot", get);
    CHECK(snap.status.error_code() == grpc::StatusCode::UNIMPLEMENTED);
    REQUIRE(snap.details().error_info);
    CHECK(snap.details().error_info->reason == "CWSANDBOX_NOT_IMPLEMENTED");
    auto unknown = c.unary<wire::Sandbox>("NoSuchMethod", get);
    CHECK(unknown.status.error_code() == grpc::StatusCode::UNIMPLEMENTED);
  }
}

TEST_CASE("gRPC: strings a client sent that are not UTF-8 come back as valid UTF-8, so that no "
          "other client's parser refuses a whole answer; arguments stay bytes",
          "[grpc][utf8]") {
  using sandbox::detail::invalid_utf8_at;
  constexpr auto valid = std::string_view::npos;
  const std::string fffd = "\xEF\xBF\xBD";
  servers s;
  auto c = s.client();
  // Stored as sent: a tag, which every other client's ListSandboxes shows.
  std::string id = create(c, {"utf8-test", "bad\xff\xfe"});
  wire::ListSandboxesRequest list;
  list.tags = {"utf8-test"};
  auto listed = c.unary<wire::ListSandboxesResponse>("ListSandboxes", list);
  REQUIRE(listed.ok());
  REQUIRE(listed.message.sandboxes.size() == 1);
  const auto& tags = listed.message.sandboxes[0].spec->tags;
  for (const auto& t : tags)
    CHECK(invalid_utf8_at(t) == valid);
  CHECK(std::find(tags.begin(), tags.end(), "bad" + fffd + fffd) != tags.end());
  auto got = c.unary<wire::Sandbox>("GetSandbox", wire::GetSandboxRequest{id});
  REQUIRE(got.ok());
  for (const auto& t : got.message.spec->tags)
    CHECK(invalid_utf8_at(t) == valid);
  // An error's message and details name what was sent, as valid UTF-8.
  auto missing =
      c.unary<wire::ReadFileResponse>("ReadFile", wire::ReadFileRequest{id, "/no/such/\xff", ""});
  CHECK(missing.status.error_code() == grpc::StatusCode::NOT_FOUND);
  auto d = missing.details();
  CHECK(invalid_utf8_at(d.message) == valid);
  REQUIRE(d.error_info);
  CHECK(d.error_info->metadata["filepath"] == "/no/such/" + fffd);
  // A command's arguments are bytes to Linux: they reach it as they were sent, and its output
  // (bytes) comes back as it was written.
  wire::ExecRequest x;
  x.sandbox_id = id;
  x.command = {"printf", "%s", "caf\xe9"};
  auto ran = c.unary<wire::ExecResponse>("Exec", x);
  REQUIRE(ran.ok());
  CHECK(ran.message.stdout_bytes == "caf\xe9");
  remove(c, id);
}

TEST_CASE("gRPC Exec: the call's deadline bounds the command", "[grpc]") {
  servers s;
  auto c = s.client();
  std::string id = create(c);
  wire::ExecRequest x;
  x.sandbox_id = id;
  x.command = {"sleep", "30"};
  auto r = c.unary<wire::ExecResponse>("Exec", x, 300ms);
  CHECK(r.status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
  // The command was killed: nothing named sleep is left in the sandbox.
  CHECK(ends_without(c, id, "sleep"));
  remove(c, id);
}

TEST_CASE("gRPC StreamExec: `ready` comes at once to a client with stdin, and before the output "
          "or a silent command's end to one without",
          "[grpc]") {
  servers s;
  auto c = s.client();
  std::string id = create(c);

  SECTION("with stdin: ready before the client sends anything (a client may wait for it)") {
    rpc_client::stream st(c, 20s);
    REQUIRE(st.write(init_of(id, {"cat"})));
    auto m = st.read();
    REQUIRE(m);
    CHECK(m->ready);
    REQUIRE(st.write(stdin_of("x")));
    REQUIRE(st.writes_done());
    auto r = drain(st);
    CHECK(r.status.ok());
    CHECK(r.out == "x");
    CHECK(r.exit_code == 0);
  }
  // Without stdin (the init carries the half-close) the command reads end-of-file, and `ready`
  // may wait for its first output or its end (then it goes unsent: nothing waits for it).
  SECTION("without stdin: a command that prints gets ready first") {
    rpc_client::stream st(c, 20s);
    REQUIRE(st.write_last(init_of(id, {"echo", "hi"})));
    auto r = drain(st);
    CHECK(r.ready_first);
    CHECK(r.out == "hi\n");
    CHECK(r.exit_code == 0);
  }
  SECTION("without stdin: a silent command that runs a while gets ready before its end") {
    rpc_client::stream st(c, 20s);
    REQUIRE(st.write_last(init_of(id, {"sleep", "0.3"})));
    auto m = st.read();
    REQUIRE(m);
    CHECK(m->ready);
    auto r = drain(st);
    CHECK(r.exit_code == 0);
  }
  SECTION("without stdin: the command reads /dev/null, and one that ends at once gets no ready") {
    // Whether the half-close is known before the command starts is a race the server nearly
    // always wins when it comes with the init: of 20 calls, at least one shows it.
    int null_stdin = 0, without_ready = 0;
    for (int i = 0; i < 20; ++i) {
      rpc_client::stream st(c, 20s);
      REQUIRE(st.write_last(
          init_of(id, {"sh", "-c", "if [ -p /dev/stdin ]; then echo pipe; else echo null; fi"})));
      auto r = drain(st);
      REQUIRE(r.exit_code == 0);
      null_stdin += r.out == "null\n";
      rpc_client::stream t(c, 20s);
      REQUIRE(t.write_last(init_of(id, {"true"})));
      auto q = drain(t);
      REQUIRE(q.exit_code == 0);
      without_ready += !q.ready_first;
    }
    CHECK(null_stdin > 0);
    CHECK(without_ready > 0);
  }
  SECTION("without stdin: stdin is at its end, and a command that ends at once ends the call") {
    for (auto cmd : {std::vector<std::string>{"cat"}, std::vector<std::string>{"true"},
                     std::vector<std::string>{"sh", "-c", "exit 3"}}) {
      rpc_client::stream st(c, 20s);
      REQUIRE(st.write_last(init_of(id, cmd)));
      auto r = drain(st);
      CHECK(r.status.ok());
      CHECK(r.out.empty());
      CHECK(r.exit_code == (cmd.size() == 3 ? 3 : 0));
    }
  }
  remove(c, id);
}

TEST_CASE("gRPC StreamExec: ready, output in order, exit; stdin; errors", "[grpc]") {
  servers s;
  auto c = s.client();
  std::string id = create(c);

  SECTION("both streams, apart, and the exit code") {
    rpc_client::stream st(c, std::nullopt);
    REQUIRE(st.write(init_of(id, {"sh", "-c",
                                  "for i in 1 2 3; do echo o$i; echo e$i >&2; done; "
                                  "exit 7"})));
    REQUIRE(st.writes_done());
    auto r = drain(st);
    CHECK(r.status.ok());
    CHECK(r.ready_first);
    CHECK(r.out == "o1\no2\no3\n");
    CHECK(r.err == "e1\ne2\ne3\n");
    CHECK(r.exit_code == 7);
  }
  SECTION("stdin round trip through sort, binary stdin through od") {
    rpc_client::stream st(c, std::nullopt);
    REQUIRE(st.write(init_of(id, {"sort"})));
    REQUIRE(st.write(stdin_of("pear\napple\n")));
    REQUIRE(st.write(stdin_of("fig\n")));
    wire::ExecStreamRequest close;
    close.close = wire::ExecStreamClose{};
    REQUIRE(st.write(close));
    auto r = drain(st);
    CHECK(r.out == "apple\nfig\npear\n");
    CHECK(r.exit_code == 0);

    rpc_client::stream bin(c, std::nullopt);
    REQUIRE(bin.write(init_of(id, {"sh", "-c", "wc -c; "})));
    std::string all;
    for (int i = 0; i < 256; ++i)
      all += static_cast<char>(i);
    for (int i = 0; i < 1000; ++i)
      REQUIRE(bin.write(stdin_of(all)));
    REQUIRE(bin.writes_done()); // a half-close ends stdin too
    auto b = drain(bin);
    CHECK(b.out == "256000\n");
  }
  SECTION("output arrives while the command runs") {
    // The command prints, then waits for a line of stdin that is only sent once the print has
    // arrived: it can only finish if its output was delivered before its end.
    rpc_client::stream st(c, std::nullopt);
    REQUIRE(st.write(init_of(id, {"sh", "-c", "echo first; read line; echo got $line"})));
    read_output_until(st, "first\n");
    REQUIRE(st.write(stdin_of("x\n")));
    auto r = drain(st);
    CHECK(r.out == "got x\n");
    CHECK(r.exit_code == 0);
  }
  SECTION("large output, every byte in order") {
    rpc_client::stream st(c, std::nullopt);
    REQUIRE(st.write(init_of(id, {"sh", "-c", "seq 1 2000000"})));
    REQUIRE(st.writes_done());
    auto r = drain(st);
    std::string expected;
    for (int i = 1; i <= 2000000; ++i)
      expected += std::to_string(i) + "\n";
    CHECK(r.out.size() == expected.size());
    CHECK(r.out == expected);
  }
  SECTION("a sandbox that does not exist, a first message that is not init, a terminal too big") {
    rpc_client::stream st(c, std::nullopt);
    REQUIRE(st.write(init_of("sbx-nonexistent", {"true"})));
    auto r = drain(st);
    CHECK(r.status.error_code() == grpc::StatusCode::NOT_FOUND);

    rpc_client::stream no_init(c, std::nullopt);
    REQUIRE(no_init.write(stdin_of("x")));
    CHECK(drain(no_init).status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);

    rpc_client::stream tty(c, std::nullopt);
    auto m = init_of(id, {"sh"});
    m.init->tty = true;
    m.init->tty_width = 70000;
    REQUIRE(tty.write(m));
    CHECK(drain(tty).status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  }
  SECTION("a terminal: an interactive shell of the size asked for, resized, ended by its input") {
    rpc_client::stream st(c, std::nullopt);
    auto m = init_of(id, {"sh"});
    m.init->tty = true;
    m.init->tty_width = 100;
    m.init->tty_height = 30;
    REQUIRE(st.write(m));
    REQUIRE(st.write(stdin_of("stty size; echo on-a-tty >&2\n")));
    read_output_until(st, "30 100\r\n");
    wire::ExecStreamRequest resize;
    resize.resize = wire::ExecStreamResize{132, 43};
    REQUIRE(st.write(resize));
    REQUIRE(st.write(stdin_of("stty size\n")));
    read_output_until(st, "43 132\r\n");
    REQUIRE(st.write(stdin_of("exit 5\n")));
    REQUIRE(st.writes_done());
    auto r = drain(st);
    CHECK(r.status.ok());
    CHECK(r.exit_code == 5);
    CHECK(r.err.empty()); // stderr is the terminal: everything arrives as stdout

    // Half-closing the call types end-of-file: a shell waiting for a line ends.
    rpc_client::stream eof(c, std::nullopt);
    auto e = init_of(id, {"cat"});
    e.init->tty = true;
    REQUIRE(eof.write(e));
    REQUIRE(eof.write(stdin_of("line\n")));
    REQUIRE(eof.writes_done());
    auto d = drain(eof);
    CHECK(d.exit_code == 0);
    CHECK(d.out == "line\r\nline\r\n");
  }
  SECTION("a cancelled call kills its command, even one that does not read what it is sent") {
    {
      rpc_client::stream st(c, std::nullopt);
      REQUIRE(st.write(init_of(id, {"sh", "-c", "echo started; exec sleep 1000"})));
      read_output_until(st, "started");
      // 1 MiB for a command that never reads stdin: the pipe takes 64 KiB of it.
      REQUIRE(st.write(stdin_of(std::string(1 << 20, 'x'))));
      st.cancel();
      CHECK(st.finish().error_code() == grpc::StatusCode::CANCELLED);
    }
    CHECK(ends_without(c, id, "sleep"));
  }
  SECTION("a cancelled call kills its command") {
    {
      rpc_client::stream st(c, std::nullopt);
      REQUIRE(st.write(init_of(id, {"sh", "-c", "echo started; exec sleep 1000"})));
      read_output_until(st, "started");
      st.cancel();
      CHECK(st.finish().error_code() == grpc::StatusCode::CANCELLED);
    }
    CHECK(ends_without(c, id, "sleep"));
  }
  remove(c, id);
}

namespace {

/// A sandbox whose main process prints `lines` numbered lines, then waits for /tmp/go, prints
/// "last" and ends.
std::string noisy(rpc_client& c, int lines) {
  wire::CreateSandboxRequest rq;
  rq.sandbox = keep_alive_spec();
  auto& main = rq.sandbox->spec->containers[0];
  main.command = "sh";
  main.args = {"-c", "seq 1 " + std::to_string(lines) +
                         "; while [ ! -e /tmp/go ]; do sleep 0.01; done; echo last"};
  auto r = c.unary<wire::Sandbox>("CreateSandbox", rq);
  REQUIRE(r.ok());
  return r.message.sandbox_id;
}

/// Waits until the sandbox's log holds `text` (a follow read that stops once it has; one the
/// output overtakes starts again, as a client does on REPLAY_GAP).
void await_log(rpc_client& c, const std::string& id, const std::string& text) {
  wire::StreamLogsRequest rq;
  rq.sandbox_id = id;
  rq.follow = true;
  for (;;) {
    rpc_client::stream st(c, std::nullopt, "StreamLogs");
    REQUIRE(st.write(rq));
    REQUIRE(st.writes_done());
    std::string seen;
    for (;;) {
      auto e = st.read<wire::LogEntry>();
      REQUIRE(e);
      if (e->error) {
        REQUIRE(e->error->code == "REPLAY_GAP");
        break;
      }
      seen += e->data;
      if (seen.find(text) != std::string::npos) return;
    }
  }
}

struct log_read {
  std::vector<wire::LogEntry> entries;
  std::string data;
  grpc::Status status;
};

log_read read_logs(rpc_client& c, const wire::StreamLogsRequest& rq) {
  rpc_client::stream st(c, std::nullopt, "StreamLogs");
  REQUIRE(st.write(rq));
  REQUIRE(st.writes_done());
  log_read out;
  while (auto e = st.read<wire::LogEntry>()) {
    out.data += e->data;
    out.entries.push_back(std::move(*e));
  }
  out.status = st.finish();
  return out;
}

void go(rpc_client& c, const std::string& id) {
  wire::ExecRequest x;
  x.sandbox_id = id;
  x.command = {"touch", "/tmp/go"};
  REQUIRE(c.unary<wire::ExecResponse>("Exec", x).ok());
}

} // namespace

TEST_CASE("gRPC StreamLogs: the main process's output, tail, follow, sessions and offsets",
          "[grpc][logs]") {
  servers s;
  auto c = s.client();
  std::string id = noisy(c, 1000);
  await_log(c, id, "1000\n");

  wire::StreamLogsRequest rq;
  rq.sandbox_id = id;
  SECTION("all of it, in entries whose offsets count the bytes before them") {
    auto r = read_logs(c, rq);
    REQUIRE(r.status.ok());
    std::string expected;
    for (int i = 1; i <= 1000; ++i)
      expected += std::to_string(i) + "\n";
    CHECK(r.data == expected);
    std::uint64_t at = 0;
    for (const auto& e : r.entries) {
      at += e.data.size();
      CHECK(e.next_log_offset == at);
      CHECK(e.log_session_id == r.entries.front().log_session_id);
      CHECK(!e.timestamp.empty());
    }
  }
  SECTION("the last lines, with timestamps") {
    rq.tail_lines = 2;
    rq.timestamps = true;
    auto r = read_logs(c, rq);
    REQUIRE(r.status.ok());
    // "<RFC 3339> 999\n<RFC 3339> 1000\n"
    auto first = r.data.find(' ');
    REQUIRE(first != std::string::npos);
    CHECK(r.data.substr(first + 1, 4) == "999\n");
    CHECK(r.data.size() > 2 * std::string("2026-01-01T00:00:00Z 999\n").size());
    CHECK(r.data.substr(r.data.size() - 5) == "1000\n");
  }
  SECTION("follow ends with the sandbox; a resumed session continues at its offset") {
    rq.follow = true;
    rq.tail_lines = 1;
    rpc_client::stream st(c, std::nullopt, "StreamLogs");
    REQUIRE(st.write(rq));
    REQUIRE(st.writes_done());
    auto e = st.read<wire::LogEntry>();
    REQUIRE(e);
    CHECK(e->data == "1000\n");
    go(c, id);
    std::string rest;
    while (auto more = st.read<wire::LogEntry>())
      rest += more->data;
    CHECK(rest == "last\n");
    CHECK(st.finish().ok());

    wire::StreamLogsRequest resume;
    resume.sandbox_id = id;
    resume.resume_log_session_id = e->log_session_id;
    resume.resume_log_offset = e->next_log_offset;
    auto r = read_logs(c, resume);
    REQUIRE(r.status.ok());
    CHECK(r.data == "last\n");
  }
  SECTION("an offset past the end is refused in band") {
    auto all = read_logs(c, rq);
    REQUIRE(!all.entries.empty());
    rq.resume_log_session_id = all.entries.front().log_session_id;
    rq.resume_log_offset = all.entries.back().next_log_offset + 100;
    auto r = read_logs(c, rq);
    REQUIRE(r.entries.size() == 1);
    REQUIRE(r.entries[0].error);
    CHECK(r.entries[0].error->code == "INVALID_RESUME_OFFSET");
  }
  SECTION("an unknown session is refused in band") {
    rq.resume_log_session_id = "no-such-session";
    auto r = read_logs(c, rq);
    REQUIRE(r.status.ok());
    REQUIRE(r.entries.size() == 1);
    REQUIRE(r.entries[0].error);
    CHECK(r.entries[0].error->code == "SESSION_NOT_FOUND");
  }
  SECTION("a sandbox that does not exist") {
    rq.sandbox_id = "sbx-nonexistent";
    CHECK(read_logs(c, rq).status.error_code() == grpc::StatusCode::NOT_FOUND);
  }
  remove(c, id);
}

TEST_CASE("gRPC StreamLogs: an offset the log no longer keeps is a gap, said in band",
          "[grpc][logs]") {
  servers s;
  auto c = s.client();
  std::string id = noisy(c, 300000); // 2 MB: the log keeps the last 1 MiB
  go(c, id);
  await_log(c, id, "last\n");
  wire::StreamLogsRequest rq;
  rq.sandbox_id = id;
  auto all = read_logs(c, rq);
  REQUIRE(!all.entries.empty());
  wire::StreamLogsRequest resume;
  resume.sandbox_id = id;
  resume.resume_log_session_id = all.entries.front().log_session_id;
  resume.resume_log_offset = 10; // overwritten long ago
  auto r = read_logs(c, resume);
  REQUIRE(r.entries.size() == 1);
  REQUIRE(r.entries[0].error);
  CHECK(r.entries[0].error->code == "REPLAY_GAP");
  remove(c, id);
}

TEST_CASE("gRPC: listen-only services are accepted, exposed ones refused; status says the runner "
          "and the times",
          "[grpc]") {
  servers s;
  auto c = s.client();
  wire::CreateSandboxRequest rq;
  rq.sandbox = keep_alive_spec();
  rq.sandbox->spec->services = {wire::Service{8000, "web",
                                              wire::ServiceProtocol::SERVICE_PROTOCOL_TCP,
                                              wire::Visibility::VISIBILITY_UNSPECIFIED}};
  auto made = c.unary<wire::Sandbox>("CreateSandbox", rq);
  REQUIRE(made.ok());
  REQUIRE(made.message.status);
  CHECK(made.message.status->runner_id == "local");
  CHECK(!made.message.status->create_time.empty());
  CHECK(!made.message.status->start_time.empty());
  CHECK(made.message.status->end_time.empty());
  remove(c, made.message.sandbox_id);
  auto ended =
      c.unary<wire::Sandbox>("GetSandbox", wire::GetSandboxRequest{made.message.sandbox_id});
  REQUIRE(ended.ok());
  CHECK(!ended.message.status->end_time.empty());

  rq.sandbox->spec->services[0].visibility = wire::Visibility::VISIBILITY_PUBLIC;
  auto exposed = c.unary<wire::Sandbox>("CreateSandbox", rq);
  CHECK(exposed.status.error_code() == grpc::StatusCode::UNIMPLEMENTED);
  CHECK(exposed.status.error_message().find("visibility") != std::string::npos);
  rq.sandbox->spec->services[0] = wire::Service{70000, "", {}, {}};
  CHECK(c.unary<wire::Sandbox>("CreateSandbox", rq).status.error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_CASE("gRPC StreamLogs: a follower the log overtakes is told, not silently skipped",
          "[grpc][logs]") {
  servers s;
  auto c = s.client();
  wire::CreateSandboxRequest make;
  make.sandbox = keep_alive_spec();
  make.sandbox->spec->containers[0].command = "yes";
  make.sandbox->spec->containers[0].args = {std::string(200, 'y')};
  auto made = c.unary<wire::Sandbox>("CreateSandbox", make);
  REQUIRE(made.ok());
  wire::StreamLogsRequest rq;
  rq.sandbox_id = made.message.sandbox_id;
  rq.follow = true;
  rpc_client::stream st(c, std::nullopt, "StreamLogs");
  REQUIRE(st.write(rq));
  REQUIRE(st.writes_done());
  // A slow reader: the output, GB/s, laps the 1 MiB log while the entries wait to be read.
  std::optional<wire::LogStreamError> told;
  std::uint64_t last = 0;
  bool contiguous = true;
  for (int i = 0; i < 100000 && !told; ++i) {
    auto e = st.read<wire::LogEntry>();
    REQUIRE(e);
    if (e->error) {
      told = e->error;
      break;
    }
    if (last != 0 && e->next_log_offset - e->data.size() != last) contiguous = false;
    last = e->next_log_offset;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  REQUIRE(told);
  CHECK(told->code == "REPLAY_GAP");
  CHECK(contiguous); // every entry before the gap followed the one before it
  remove(c, made.message.sandbox_id);
}

TEST_CASE("gRPC Exec: the server bounds the output a client may ask to keep", "[grpc]") {
  sandbox::server_options o;
  o.max_output_bytes_limit = 1 << 20;
  servers s(o);
  auto c = s.client();
  std::string id = create(c);
  wire::ExecRequest x;
  x.sandbox_id = id;
  x.command = {"head", "-c", "3000000", "/dev/zero"};
  x.max_output_bytes = INT32_MAX;
  auto r = c.unary<wire::ExecResponse>("Exec", x);
  REQUIRE(r.ok());
  CHECK(r.message.stdout_bytes.size() == (1u << 20));
  CHECK(r.message.stdout_truncated);
  CHECK(r.message.stdout_bytes_produced == 3000000);
  remove(c, id);
}

namespace {

/// What one client of delete_flood saw.
struct flood_outcome {
  long ok = 0, refused = 0, failed = 0; ///< refused: RESOURCE_EXHAUSTED
  std::string first;                    ///< the first error's message
};

/// `clients` clients, each sending `calls` DeleteSandbox of a missing sandbox back to back (the
/// quickest call that takes a place among `server_options::threads`).
std::vector<flood_outcome> delete_flood(const servers& s, int clients, int calls) {
  std::vector<flood_outcome> out(static_cast<std::size_t>(clients));
  std::vector<std::thread> ts;
  for (int t = 0; t < clients; ++t)
    ts.emplace_back([&, t] {
      auto c = s.client();
      wire::DeleteSandboxRequest rq;
      rq.sandbox_id = "sbx-none" + std::to_string(t);
      rq.allow_missing = true;
      auto& o = out[static_cast<std::size_t>(t)];
      for (int i = 0; i < calls; ++i) {
        auto r = c.unary<wire::DeleteSandboxResponse>("DeleteSandbox", rq);
        if (r.ok()) {
          ++o.ok;
          continue;
        }
        ++(r.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ? o.refused : o.failed);
        if (o.first.empty()) o.first = r.status.error_message();
      }
    });
  for (auto& t : ts)
    t.join();
  return out;
}

} // namespace

TEST_CASE("gRPC: a call sent as soon as the last one is answered is never refused for want of "
          "room",
          "[grpc]") {
  // Each client has one call at a time, so `threads` clients never need more than `threads`
  // places; a place freed only after its answer had reached the client was still taken when
  // the client's next call came.
  constexpr int clients_n = 16;
  sandbox::server_options o;
  o.threads = clients_n;
  servers s(std::move(o));
  auto seen = delete_flood(s, clients_n, 600);
  for (std::size_t t = 0; t < seen.size(); ++t) {
    INFO("client " << t << ": " << seen[t].first);
    CHECK(seen[t].refused == 0);
    CHECK(seen[t].failed == 0);
  }
}

TEST_CASE("gRPC: commands that run long cannot lock out the other calls", "[grpc]") {
  // Exec lasts as long as its command, as StreamExec does: it takes a place among those calls,
  // not among creates and lookups (grpc_transport sends a command with nothing to stream as
  // Exec).
  sandbox::server_options o;
  o.threads = 1;
  servers s(std::move(o));
  auto c = s.client();
  const std::string id = create(c);
  // Deletes the sandbox (which ends the command) and waits for the Exec, however the test ends.
  struct running {
    rpc_client& c;
    const std::string& id;
    std::thread exec;
    ~running() {
      wire::DeleteSandboxRequest rq;
      rq.sandbox_id = id;
      (void)c.unary<wire::DeleteSandboxResponse>("DeleteSandbox", rq);
      exec.join();
    }
  } long_one{c, id, std::thread([&s, &id] {
               auto mine = s.client();
               wire::ExecRequest x;
               x.sandbox_id = id;
               x.command = {"sh", "-c", "touch /tmp/started; exec sleep 60"};
               (void)mine.unary<wire::ExecResponse>("Exec", x);
             })};
  // Seen running through ReadFile, one of the other calls.
  wire::ReadFileRequest rf;
  rf.sandbox_id = id;
  rf.path = "/tmp/started";
  bool started = false;
  for (int i = 0; i < 200 && !started; ++i) {
    auto r = c.unary<wire::ReadFileResponse>("ReadFile", rf);
    INFO(r.status.error_message());
    REQUIRE(r.status.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED);
    started = r.ok();
    if (!started) std::this_thread::sleep_for(50ms);
  }
  REQUIRE(started);
  const std::string other = create(c); // answered while the command runs
  wire::ExecRequest x;
  x.sandbox_id = other;
  x.command = {"true"};
  auto second = c.unary<wire::ExecResponse>("Exec", x); // the one place is taken
  INFO(second.status.error_message());
  CHECK(second.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  remove(c, other);
}

TEST_CASE("gRPC: the pool holds no more threads than the calls it admits", "[grpc]") {
  // A call that has queued its answer gives its place back before its thread is idle again:
  // the next call waits for that thread rather than getting a new one, which the pool would
  // keep for good.
  sandbox::server_options o;
  o.threads = 1;
  servers s(std::move(o));
  long ok = 0, refused = 0, failed = 0;
  for (const auto& c : delete_flood(s, 32, 300)) {
    ok += c.ok;
    refused += c.refused;
    failed += c.failed;
  }
  INFO(ok << " answered, " << refused << " refused");
  CHECK(ok > 0);
  CHECK(failed == 0);
  CHECK(s.grpc.pool_threads() == 1);
}

TEST_CASE("gRPC: a pool still growing holds no more threads than its bound", "[grpc]") {
  // Fresh servers, each hit at once by quick unary calls and streams (one place each): a thread
  // just made, not yet running, must count as the one that takes its task, or a thread that
  // turned idle meanwhile takes it and the next call makes yet another.
  sandbox::server_options o;
  o.threads = 1;
  servers s(std::move(o));
  std::size_t worst = 0;
  for (int round = 0; round < 200; ++round) {
    sandbox::grpc_server<sandbox::local_transport> g(s.rest.get().service());
    auto port = g.start("127.0.0.1", 0);
    REQUIRE(port);
    const std::string target = "127.0.0.1:" + std::to_string(port.value());
    std::vector<std::thread> clients;
    for (int t = 0; t < 6; ++t)
      clients.emplace_back([&, t] {
        rpc_client c(target, "Bearer " + s.rest.token(), true);
        for (int i = 0; i < 15; ++i) {
          if (t % 2 == 0) {
            wire::DeleteSandboxRequest rq;
            rq.sandbox_id = "sbx-none";
            rq.allow_missing = true;
            (void)c.unary<wire::DeleteSandboxResponse>("DeleteSandbox", rq);
          } else {
            rpc_client::stream st(c, std::nullopt, "StreamLogs");
            wire::StreamLogsRequest rq;
            rq.sandbox_id = "sbx-none";
            st.write(rq);
            st.writes_done();
            while (st.read<wire::LogEntry>()) {
            }
            (void)st.finish();
          }
        }
      });
    for (auto& c : clients)
      c.join();
    worst = std::max(worst, g.pool_threads());
  }
  CHECK(worst <= 2); // one unary call and one stream at a time
}
