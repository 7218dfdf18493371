// SPDX-License-Identifier: MIT
// The protobuf binary codec, and the Connect protocol's error bodies (whose details carry it).
#include <sandbox/transport/http/codec.hpp>
#include <sandbox/transport/http/protobuf.hpp>
#include <sandbox/transport/http/status.hpp>

#include "../support/protobuf_bytes.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <string_view>

using namespace sandbox;
using namespace sandbox::http;
using namespace std::string_literals;
using std::chrono::milliseconds;

namespace {

/// Bytes written by hand from the protobuf encoding rules, independent of the encoder: ErrorInfo
/// {reason: "CWSANDBOX_FILE_NOT_FOUND", domain: "cwsandbox.com", metadata: {path: "/x"}}.
const std::string error_info_bytes = "\x0a\x18"
                                     "CWSANDBOX_FILE_NOT_FOUND"
                                     "\x12\x0d"
                                     "cwsandbox.com"
                                     "\x1a\x0a\x0a\x04path\x12\x02/x"s;
/// The same, base64 without padding, as Connect sends a detail's value.
constexpr std::string_view error_info_base64 =
    "ChhDV1NBTkRCT1hfRklMRV9OT1RfRk9VTkQSDWN3c2FuZGJveC5jb20aCgoEcGF0aBICL3g";
/// RetryInfo {retry_delay: 2.5 s} = Duration {seconds: 2, nanos: 500000000}.
const std::string retry_info_bytes = "\x0a\x08\x08\x02\x10\x80\xca\xb5\xee\x01"s;
constexpr std::string_view retry_info_base64 = "CggIAhCAyrXuAQ";

template <class M>
M decode_ok(std::string_view bytes, decode_mode mode = decode_mode::lenient) {
  auto r = from_protobuf<M>(bytes, mode);
  if (!r) FAIL_CHECK(r.error().message);
  return r ? std::move(r).value() : M{};
}

wire::Sandbox full_sandbox() {
  wire::Container c;
  c.name = "main";
  c.image = "python:3.11";
  c.command = "/bin/sh";
  c.args = {"-c", "sleep 1"};
  c.environment_variables = {{"A", "1"}, {"B", "two words"}};
  c.files = {{"/etc/motd", "hello\0world"s}};
  c.resource_requirements = wire::ResourceRequirements{{"500m", "512Mi"}, {"1", "1Gi"}};
  wire::SandboxSpec spec;
  spec.containers = {c};
  spec.tags = {"t1", "t2"};
  spec.max_lifetime_seconds = 3600;
  wire::SandboxStatus st;
  st.state = wire::State::STATE_COMPLETED;
  st.create_time = "2026-11-26T10:00:00.123Z";
  st.start_time = "2026-11-26T10:00:01Z";
  st.end_time = "1969-12-31T23:59:59.000000001Z";
  st.exit_code = 0; // explicit presence: a zero is written, and read back as set
  return wire::Sandbox{"sb-123", spec, st};
}

} // namespace

TEST_CASE("protobuf: the encoder writes what the rules say, byte for byte", "[protobuf]") {
  wire::ErrorInfo ei{"CWSANDBOX_FILE_NOT_FOUND", "cwsandbox.com", {{"path", "/x"}}};
  CHECK(to_protobuf(ei) == error_info_bytes);
  CHECK(to_protobuf(wire::RetryInfo{milliseconds(2500)}) == retry_info_bytes);
  CHECK(to_protobuf(wire::ExecResponse{}) == ""); // proto3 defaults are not written
  // An int32 is sign-extended to ten bytes; an optional zero is written.
  wire::ExecResponse neg;
  neg.exit_code = -1;
  CHECK(to_protobuf(neg) == "\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"s);
  wire::SandboxStatus zero;
  zero.exit_code = 0;
  CHECK(to_protobuf(zero) == "\x48\x00"s); // field 9, varint 0
}

TEST_CASE("protobuf: messages round-trip", "[protobuf]") {
  auto sb = full_sandbox();
  CHECK(decode_ok<wire::Sandbox>(to_protobuf(sb)) == sb);
  CHECK(decode_ok<wire::Sandbox>(to_protobuf(sb), decode_mode::strict) == sb);
  wire::ListSandboxesResponse list{{sb, wire::Sandbox{"b", {}, wire::SandboxStatus{}}}, "tok"};
  CHECK(decode_ok<wire::ListSandboxesResponse>(to_protobuf(list)) == list);
  wire::ExecRequest rq{"sbx-1", {"sh", "-c", "echo \xff"}, {{"K", "V"}, {"E", ""}}, -1, "x"};
  CHECK(decode_ok<wire::ExecRequest>(to_protobuf(rq), decode_mode::strict) == rq);
  std::string all;
  for (int i = 0; i < 256; ++i)
    all += static_cast<char>(i);
  wire::ExecResponse er{all, "err", 3, true, false, -5, 1LL << 40};
  CHECK(decode_ok<wire::ExecResponse>(to_protobuf(er)) == er);
  wire::Status st{5, "gone", wire::ErrorInfo{"R", "d", {{"k", "v"}}},
                  wire::RetryInfo{milliseconds(1500)}, std::nullopt};
  CHECK(decode_ok<wire::Status>(to_protobuf(st)) == st);
  wire::WriteFileRequest wf{"sbx-1", "/f", all, ""};
  CHECK(decode_ok<wire::WriteFileRequest>(to_protobuf(wf)) == wf);
}

namespace {

using sandbox::testing::varint;

/// The spliced encoding put together: its text with each hole's value at its place.
std::string joined(const spliced_protobuf& s) {
  std::string out;
  std::size_t at = 0;
  for (const auto& h : s.holes) {
    REQUIRE(h.at >= at);
    REQUIRE(h.at <= s.text.size());
    out.append(s.text, at, h.at - at);
    out.append(h.bytes);
    at = h.at;
  }
  return out.append(s.text, at);
}

} // namespace

TEST_CASE("protobuf: nested lengths of every varint width, written once; a spliced encoding "
          "refers to the large values and equals the whole one",
          "[protobuf]") {
  // ExecStreamResponse {output (2) {stream (1): STDERR, data (2)}}, by hand, around the sizes at
  // which a length takes one more byte (the nested message's length is counted before it is
  // written: a length off by one byte would misplace everything after it).
  // The output's length widens at 127/128, 16383/16384 and 2^21-1/2^21 bytes; the nested
  // message's at 123/124, 16378/16379 and 2^21-7/2^21-6.
  constexpr std::size_t M2 = std::size_t{1} << 21;
  for (std::size_t n : {std::size_t{1}, std::size_t{123}, std::size_t{124}, std::size_t{127},
                        std::size_t{128}, std::size_t{16378}, std::size_t{16379},
                        std::size_t{16383}, std::size_t{16384}, M2 - 7, M2 - 6, M2 - 1, M2}) {
    INFO("n = " << n);
    std::string data(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
      data[i] = static_cast<char>(i * 7 + i / 251);
    wire::ExecStreamResponse m;
    m.output = wire::ExecStreamOutput{wire::OutputStream::STREAM_STDERR, data};
    const std::string inner = "\x08\x02\x12"s + varint(n) + data;
    const std::string want = "\x12"s + varint(inner.size()) + inner;
    CHECK(to_protobuf(m) == want);
    CHECK(to_protobuf(m).capacity() < want.size() + 16); // sized once, not grown
    // Spliced: values from 128 bytes on are referred to, in the message itself.
    auto s = to_protobuf_spliced(m, 128);
    CHECK(joined(s) == want);
    if (n >= 128) {
      REQUIRE(s.holes.size() == 1);
      CHECK(s.holes[0].bytes.data() == m.output->data.data());
      CHECK(s.holes[0].at == s.text.size()); // the value ends the message
      CHECK(s.text.size() < 16);
    } else {
      CHECK(s.holes.empty());
    }
  }
  // Several large values at several depths, among small ones and strings: the same bytes as the
  // whole encoding, with every value of 64 bytes or more a hole, and strings (not bytes) copied.
  auto sb = full_sandbox();
  sb.spec->containers[0].files = {
      {"/a", std::string(300, 'a')}, {"/b", "small"}, {"/c", std::string(70000, 'c')}};
  sb.spec->containers[0].args.push_back(std::string(500, 's'));
  auto s = to_protobuf_spliced(sb, 64);
  CHECK(joined(s) == to_protobuf(sb));
  REQUIRE(s.holes.size() == 2);
  CHECK(s.holes[0].bytes.size() == 300);
  CHECK(s.holes[1].bytes.size() == 70000);
  CHECK(decode_ok<wire::Sandbox>(joined(s), decode_mode::strict) == sb);
  wire::WriteFileRequest wf{"sbx-1", "/f", std::string(1 << 20, 'x'), ""};
  CHECK(joined(to_protobuf_spliced(wf, 1)) == to_protobuf(wf));
}

TEST_CASE("protobuf: decoding skips unknown fields and names the field of bad input",
          "[protobuf]") {
  // Unknown fields of every wire type around a known one are skipped.
  std::string with_unknown = "\x78\x05"s                        // 15: varint
                             + "\x81\x01" + std::string(8, 'a') // 16: fixed64
                             + "\x0a\x02/a"                     // 1: path
                             + "\x8d\x01" + std::string(4, 'b') // 17: fixed32
                             + "\x92\x01\x01z";                 // 18: bytes
  CHECK(decode_ok<wire::ReadFileResponse>(with_unknown).content == "/a");
  // A field of the wrong wire type names it.
  auto wrong = from_protobuf<wire::ExecResponse>("\x1a\x02\x00\x00"s, decode_mode::lenient);
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().is(errc::protocol));
  CHECK(wrong.error().message == "exitCode: expected a varint");
  // Truncated input, nested: the path leads to it.
  std::string sb = to_protobuf(full_sandbox());
  for (std::size_t cut = 1; cut < sb.size(); ++cut) {
    auto r = from_protobuf<wire::Sandbox>(std::string_view(sb).substr(0, cut), decode_mode::strict);
    if (r) continue; // a cut between fields is a valid, shorter message
    CHECK(r.error().is(errc::validation));
  }
  auto deep = from_protobuf<wire::Sandbox>(sb.substr(0, 20), decode_mode::lenient);
  REQUIRE_FALSE(deep);
  CHECK(deep.error().message.rfind("spec", 0) == 0);
  // The path of a nested error has the list index, as the JSON decoder's has.
  wire::Sandbox two = full_sandbox();
  two.spec->containers.push_back(two.spec->containers[0]);
  std::string bytes = to_protobuf(two);
  std::string image = "python:3.11";
  auto last = bytes.rfind(image);
  REQUIRE(last != std::string::npos);
  bytes[last - 2] = 0x12 | 0x01; // the second container's image: wire type 3 (a group start)
  auto indexed = from_protobuf<wire::Sandbox>(bytes, decode_mode::lenient);
  REQUIRE_FALSE(indexed);
  CHECK(indexed.error().message.rfind("spec.containers[1].image: ", 0) == 0);
  // Durations: in protobuf's range, seconds and nanos of one sign; otherwise an error, never an
  // overflow. RetryInfo {retry_delay {seconds: 2^62}} and {seconds: 1, nanos: -1}.
  CHECK_FALSE(from_protobuf<wire::RetryInfo>("\x0a\x0a\x08\x80\x80\x80\x80\x80\x80\x80\x80\x40"s,
                                             decode_mode::lenient));
  CHECK_FALSE(from_protobuf<wire::RetryInfo>(
      "\x0a\x0d\x08\x01\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"s, decode_mode::lenient));
  CHECK(decode_ok<wire::RetryInfo>("\x0a\x04\x08\x00\x10\x01"s).retry_delay == milliseconds(1));
  CHECK_FALSE(from_protobuf<wire::RetryInfo>("\x0a\x0a\x08\xff\xff\xff\xff\xff\xff\xff\xff\x7f"s,
                                             decode_mode::lenient)); // INT64_MAX seconds
  // Strict: a required Duration must be on the wire, even a zero one.
  CHECK_FALSE(from_protobuf<wire::RetryInfo>("", decode_mode::strict));
  CHECK(from_protobuf<wire::RetryInfo>("\x0a\x00"s, decode_mode::strict));
  // Strict: required fields.
  auto missing = from_protobuf<wire::ExecRequest>("\x0a\x01x"s, decode_mode::strict);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message == "command: required");
  // A field of the proto the library does not model: skipped, unless our server lacks it and it
  // is set (strict). SandboxSpec.volumes (3) = [{name: "v"}]; instance_type (13) = "";
  // SandboxStatus.effective_max_lifetime_seconds (11) = 5 is output only.
  const std::string volumes = "\x1a\x03\x0a\x01v"s, empty_type = "\x6a\x00"s;
  CHECK(decode_ok<wire::SandboxSpec>(volumes).containers.empty());
  auto refused = from_protobuf<wire::SandboxSpec>(volumes, decode_mode::strict);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().is(errc::unsupported));
  CHECK(refused.error().message == "volumes: not implemented by this server");
  const std::string one_container = "\x0a\x06\x0a\x01m\x12\x01i"s;
  CHECK(from_protobuf<wire::SandboxSpec>(empty_type + one_container, decode_mode::strict));
  auto nested = from_protobuf<wire::Sandbox>("\x12\x05"s + volumes, decode_mode::strict);
  REQUIRE_FALSE(nested);
  CHECK(nested.error().message == "spec.volumes: not implemented by this server");
  CHECK(from_protobuf<wire::SandboxStatus>("\x58\x05"s, decode_mode::strict));
  // Not a message at all.
  CHECK_FALSE(from_protobuf<wire::ExecRequest>("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"s,
                                               decode_mode::lenient));
  CHECK_FALSE(from_protobuf<wire::ExecRequest>("\x07"s, decode_mode::lenient)); // field 0
}

TEST_CASE("protobuf: timestamps travel as seconds and nanos", "[protobuf]") {
  using http::detail::pb::parse_timestamp;
  using http::detail::pb::timestamp_text;
  auto t = parse_timestamp("2026-11-26T10:00:00.123Z");
  REQUIRE(t);
  CHECK(t->seconds == 1795687200);
  CHECK(t->nanos == 123000000);
  CHECK(timestamp_text(*t) == "2026-11-26T10:00:00.123Z");
  CHECK(parse_timestamp("2026-11-26T12:00:00+02:00")->seconds == 1795687200);
  CHECK(timestamp_text({0, 0}) == "1970-01-01T00:00:00Z");
  CHECK(timestamp_text({-1, 1000}) == "1969-12-31T23:59:59.000001Z");
  CHECK(timestamp_text({253402300799, 999999999}) == "9999-12-31T23:59:59.999999999Z");
  CHECK(timestamp_text({253402300800, 0}).empty());
  CHECK_FALSE(parse_timestamp("2026-11-26 10:00:00Z"));
  CHECK_FALSE(parse_timestamp("2026-02-29T00:00:00Z")); // not a leap year
  CHECK(parse_timestamp("2024-02-29T00:00:00Z"));
  CHECK_FALSE(parse_timestamp("2026-04-31T00:00:00Z"));
  // Text with no binary form is left out of the encoding rather than sent as 1970.
  wire::SandboxStatus odd;
  odd.create_time = "yesterday";
  CHECK(to_protobuf(odd).empty());
  CHECK_FALSE(parse_timestamp("2026-13-01T00:00:00Z"));
  CHECK_FALSE(parse_timestamp("2026-11-26T10:00:00"));
}

TEST_CASE("Connect error bodies map like google.rpc.Status", "[protobuf][status]") {
  std::string body = R"({"code":"not_found","message":"no such file","details":[)"
                     R"({"type":"google.rpc.ErrorInfo","value":")" +
                     std::string(error_info_base64) +
                     R"(","debug":{"reason":"CWSANDBOX_FILE_NOT_FOUND"}},)"
                     R"({"type":"google.rpc.RetryInfo","value":")" +
                     std::string(retry_info_base64) +
                     R"("},)"
                     R"({"type":"google.rpc.DebugInfo","value":"CgA"}]})";
  auto c = from_json<wire::ConnectError>(body, decode_mode::lenient);
  REQUIRE(c);
  CHECK(c.value().details.size() == 3);
  CHECK(c.value().details[0].value == error_info_base64);
  auto st = status_from_connect(c.value());
  CHECK(st.code == 5);
  CHECK(st.message == "no such file");
  REQUIRE(st.error_info);
  CHECK(st.error_info->reason == "CWSANDBOX_FILE_NOT_FOUND");
  CHECK(st.error_info->metadata.at("path") == "/x");
  REQUIRE(st.retry_info);
  CHECK(st.retry_info->retry_delay == milliseconds(2500));
  auto e = error_from_status(404, st);
  CHECK(e.is(errc::file_not_found)); // the reason, not "sandbox not found"
  REQUIRE(e.server);
  CHECK(e.server->reason == "CWSANDBOX_FILE_NOT_FOUND");
  CHECK(e.server->retry_delay == milliseconds(2500));

  // A command timeout's partial output travels as an ExecResponse detail here too.
  wire::ExecResponse partial{"so far", "", 0, false, false, 6, 0};
  auto timed_out = status_from_connect(wire::ConnectError{
      "deadline_exceeded",
      "command timed out",
      {{"coreweave.sandbox.v1.ExecResponse", base64_encode(to_protobuf(partial))}}});
  REQUIRE(timed_out.exec_response);
  CHECK(*timed_out.exec_response == partial);

  CHECK(grpc_code_from_connect("canceled") == grpc_code::cancelled);
  CHECK(grpc_code_from_connect("resource_exhausted") == grpc_code::resource_exhausted);
  CHECK(grpc_code_from_connect("unauthenticated") == grpc_code::unauthenticated);
  CHECK(grpc_code_from_connect("NOT_FOUND") == grpc_code::unknown); // Connect names are lower case
  CHECK(grpc_code_from_connect("teapot") == grpc_code::unknown);
  // A detail that does not decode is skipped, as an unknown detail is, and the rest is kept:
  // bad base64, bytes that are not the message, a RetryInfo without its delay.
  wire::ConnectError broken{"unavailable",
                            "later",
                            {{"google.rpc.RetryInfo", "not base64!"},
                             {"google.rpc.RetryInfo", "Cv8"}, // 0a ff: a length past the end
                             {"google.rpc.RetryInfo", ""},
                             {"google.rpc.ErrorInfo", std::string(error_info_base64)}}};
  auto bst = status_from_connect(broken);
  CHECK(bst.code == 14);
  CHECK_FALSE(bst.retry_info);
  REQUIRE(bst.error_info);
  CHECK(bst.error_info->domain == "cwsandbox.com");
}

TEST_CASE("protobuf: a server's strings are valid UTF-8; a client's go as given",
          "[protobuf][utf8]") {
  using sandbox::detail::invalid_utf8_at;
  using sandbox::detail::valid_utf8;
  const std::string fffd = "\xEF\xBF\xBD";
  // The well-formed table at its edges: the last of each length, and what lies just beyond.
  for (std::string ok : {"plain"s, "\xC2\x80"s, "\xDF\xBF"s, "\xE0\xA0\x80"s, "\xED\x9F\xBF"s,
                         "\xEE\x80\x80"s, "\xEF\xBF\xBF"s, "\xF0\x90\x80\x80"s, "\xF4\x8F\xBF\xBF"s,
                         "h\xC3\xA9llo \xE2\x9C\x93 \xF0\x9F\x98\x80"s, ""s})
    CHECK(invalid_utf8_at(ok) == std::string_view::npos);
  CHECK(invalid_utf8_at("\xC0\x80"s) == 0);         // overlong NUL
  CHECK(invalid_utf8_at("ab\xE0\x9F\xBF"s) == 2);   // overlong 3-byte form
  CHECK(invalid_utf8_at("\xED\xA0\x80"s) == 0);     // a surrogate
  CHECK(invalid_utf8_at("\xF4\x90\x80\x80"s) == 0); // above U+10FFFF
  CHECK(invalid_utf8_at("abc\xE2\x9C"s) == 3);      // cut at the end
  CHECK(invalid_utf8_at("\x80"s) == 0);             // a lone continuation byte
  CHECK(valid_utf8("bad\xff\xfe ok \xC3\xA9\xE2\x9C"s) ==
        "bad" + fffd + fffd + " ok \xC3\xA9" + fffd + fffd);

  // A server's answer: each string, map keys and nested messages' included, is valid UTF-8, so
  // that no peer's protobuf refuses the whole message (every sandbox of a ListSandboxes answer)
  // for one tag; bytes fields are left as they are.
  wire::Sandbox sb = full_sandbox();
  sb.spec->tags = {"bad\xff\xfe", "h\xC3\xA9llo"};
  sb.spec->containers[0].environment_variables = {{"K\xC0\x80", "v\xED\xA0\x80"}};
  sb.status->state_reason = "the main command was not found: '\xC3'";
  auto answer = decode_ok<wire::Sandbox>(to_protobuf<strings::utf8>(sb), decode_mode::strict);
  CHECK(answer.spec->tags == std::vector<std::string>{"bad" + fffd + fffd, "h\xC3\xA9llo"});
  CHECK(answer.spec->containers[0].environment_variables ==
        wire::string_map{{"K" + fffd + fffd, "v" + fffd + fffd + fffd}});
  CHECK(answer.status->state_reason == "the main command was not found: '" + fffd + "'");
  CHECK(answer.spec->containers[0].files[0].content == "hello\0world"s);
  wire::ReadFileResponse file{"\xff\xfe"s};
  CHECK(decode_ok<wire::ReadFileResponse>(to_protobuf<strings::utf8>(file)) == file);
  wire::Status st{3, "path \xff: not found", wire::ErrorInfo{"R", "d", {{"path", "/\xff"}}},
                  std::nullopt, std::nullopt};
  auto status = decode_ok<wire::Status>(to_protobuf<strings::utf8>(st));
  CHECK(status.message == "path " + fffd + ": not found");
  REQUIRE(status.error_info);
  CHECK(status.error_info->metadata.at("path") == "/" + fffd);
  // Valid text is written byte for byte the same either way.
  CHECK(to_protobuf<strings::utf8>(full_sandbox()) == to_protobuf(full_sandbox()));
  // A client's request goes as given: an argument is bytes to Linux, and reads back the same.
  wire::ExecRequest rq{"sbx-1", {"cat", "/tmp/caf\xe9"}, {}, 0, ""};
  CHECK(decode_ok<wire::ExecRequest>(to_protobuf(rq), decode_mode::strict) == rq);
}
