// SPDX-License-Identifier: MIT
// The proto3 JSON codec, base64, the JSON writer and the google.rpc.Status error mapping.
#include <sandbox/transport/http/codec.hpp>
#include <sandbox/transport/http/mapping.hpp>

#include <catch2/catch.hpp>

#include <cctype>
#include <cstring>
#include <string>
#include <string_view>

using namespace sandbox;
using namespace sandbox::http;
using namespace std::string_literals;
using std::chrono::milliseconds;

namespace {

constexpr auto lenient = decode_mode::lenient;
constexpr auto strict = decode_mode::strict;

template <class T>
T decode_ok(std::string_view body, decode_mode mode = lenient) {
  auto r = from_json<T>(body, mode);
  INFO(body);
  if (!r) FAIL_CHECK(r.error().message);
  return r ? std::move(r).value() : T{};
}

/// The error message of a decode that must fail with the mode's errc.
template <class T>
std::string decode_error(std::string_view body, decode_mode mode = lenient) {
  auto r = from_json<T>(body, mode);
  INFO(body);
  if (r) {
    FAIL_CHECK("decoded, but should have failed");
    return {};
  }
  CHECK(r.error().is(mode == strict ? errc::validation : errc::protocol));
  return r.error().message;
}

std::string all_bytes() {
  std::string s;
  for (int i = 0; i < 256; ++i)
    s += static_cast<char>(i);
  return s;
}

constexpr std::string_view all_bytes_b64 =
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNE"
    "RUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJ"
    "iouMjY6PkJGSk5SVlpeYmZqbnJ2en6ChoqOkpaanqKmqq6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsfIycrLzM3O"
    "z9DR0tPU1dbX2Nna29zd3t/g4eLj5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3+/w==";

wire::Sandbox full_sandbox() {
  wire::Container c;
  c.name = "main";
  c.image = "python:3.11";
  c.command = "/bin/sh";
  c.args = {"-c", "trap 'exit 0' TERM; sleep infinity & wait"};
  c.environment_variables = {{"A", "1"}, {"B", "two words"}};
  c.working_dir = "/work";
  c.files = {{"/etc/motd", "hello\0world"s}, {"/empty", ""}};
  c.resource_requirements = wire::ResourceRequirements{{"500m", "512Mi"}, {"1", "1Gi"}};
  wire::SandboxSpec spec;
  spec.containers = {c};
  spec.primary_container = "main";
  spec.tags = {"t1", "t2"};
  spec.annotations = {{"k", "v"}};
  spec.max_lifetime_seconds = 3600;
  spec.network = wire::NetworkOptions{true, false};
  wire::SandboxStatus st;
  st.state = wire::State::STATE_COMPLETED;
  st.state_reason = "exited";
  st.create_time = "2026-11-26T10:00:00.123Z";
  st.start_time = "2026-11-26T10:00:01Z";
  st.end_time = "2026-11-26T10:00:02Z";
  st.exit_code = 0;
  st.runner_id = "r-1";
  return wire::Sandbox{"sb-123", spec, st};
}

template <class M>
M filled(std::size_t pick = 0);

/// A value of kind `K` that is not the default, different for each `n`.
template <wire::kind K, class T>
T sample(std::size_t n) {
  using wire::kind;
  if constexpr (K == kind::string || K == kind::timestamp)
    return "v" + std::to_string(n) + " é\"\\\n";
  else if constexpr (K == kind::bytes)
    return all_bytes() + std::to_string(n);
  else if constexpr (K == kind::int32)
    return static_cast<std::int32_t>(-1000 - static_cast<int>(n));
  else if constexpr (K == kind::int64)
    return std::int64_t{9007199254740993} + static_cast<std::int64_t>(n); // not a double
  else if constexpr (K == kind::uint32)
    return std::uint32_t{4'000'000'000} + static_cast<std::uint32_t>(n); // not an int32
  else if constexpr (K == kind::uint64)
    return std::uint64_t{9007199254740993} + n;
  else if constexpr (K == kind::boolean)
    return true;
  else if constexpr (K == kind::enumeration)
    return static_cast<T>(1 + n % (std::size(wire::descriptor<T>.names) - 1));
  else if constexpr (K == kind::message)
    return filled<T>();
  else
    return milliseconds(1500 + n);
}

/// `filled`'s pick that sets every member of a oneof (which no valid message does).
constexpr std::size_t every_member = ~std::size_t{0};

/// `M` with every field set (lists and maps with two entries; of a oneof, the member `pick`
/// places after its first), read from its descriptor alone.
template <class M>
M filled(std::size_t pick) {
  M m{};
  std::size_t in_oneof = 0;
  wire::for_each_field<M>([&]<std::size_t I>() {
    constexpr auto& f = wire::field_at<M, I>;
    using F = std::remove_cvref_t<decltype(f)>;
    if constexpr (!wire::is_any_field<F>)
      if (f.options.oneof && in_oneof++ != pick && pick != every_member) return;
    if constexpr (wire::is_any_field<F>) {
      std::apply(
          [&](auto... member) {
            ((m.*member).emplace(
                 filled<typename std::remove_cvref_t<decltype(m.*member)>::value_type>()),
             ...);
          },
          f.members);
    } else {
      using V = typename F::value_type;
      auto& out = m.*f.member;
      if constexpr (F::repeated)
        out = {sample<f.type, V>(1), sample<f.type, V>(2)};
      else if constexpr (F::map)
        out = {{"k1", sample<f.type, V>(1)}, {"k 2", sample<f.type, V>(2)}};
      else
        out = sample<f.type, V>(I);
    }
  });
  return m;
}

/// A fully set `M` survives the encoder and both decoders, every field written under its JSON
/// name; an empty one is `{}`.
template <class M>
void round_trip_filled(std::size_t pick = 0) {
  INFO(wire::descriptor<M>.full_name);
  const M m = filled<M>(pick);
  const std::string body = to_json(m);
  INFO(body);
  CHECK(decode_ok<M>(body) == m);
  CHECK(decode_ok<M>(body, strict) == m);
  CHECK(to_json(decode_ok<M>(body)) == body);
  wire::for_each_field<M>([&]<std::size_t I>() {
    const std::string key = "\"" + std::string(wire::field_at<M, I>.json_name()) + "\":";
    if constexpr (!wire::is_any_field<std::remove_cvref_t<decltype(wire::field_at<M, I>)>>)
      if (wire::field_at<M, I>.options.oneof) return;
    CHECK(body.find(key) != std::string::npos);
  });
  if constexpr (!std::is_same_v<M, wire::RetryInfo>) CHECK(to_json(M{}) == "{}");
}

} // namespace

// A message described outside wire.hpp, with what wire.hpp does not use yet: a oneof, a repeated
// enum (packed on the binary wire).
namespace test_wire {
struct Choice {
  std::optional<std::string> text{};
  std::optional<std::int64_t> big_number{};
  std::vector<wire::State> states{};
  friend bool operator==(const Choice&, const Choice&) = default;
};
} // namespace test_wire

template <>
inline constexpr auto sandbox::http::wire::descriptor<test_wire::Choice> =
    message("test.Choice", field(1, "text", kind::string, &test_wire::Choice::text, in_oneof(1)),
            field(2, "big_number", kind::int64, &test_wire::Choice::big_number, in_oneof(1)),
            field(3, "states", kind::enumeration, &test_wire::Choice::states));

TEST_CASE("base64 encodes standard with padding", "[codec][base64]") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foob") == "Zm9vYg==");
  CHECK(base64_encode("fooba") == "Zm9vYmE=");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  CHECK(base64_encode(all_bytes()) == all_bytes_b64);
  CHECK(base64_encoded_size(0) == 0);
  CHECK(base64_encoded_size(4) == 8);
}

TEST_CASE("base64 decodes standard, URL-safe and unpadded", "[codec][base64]") {
  for (std::string_view s : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) {
    auto enc = base64_encode(s);
    CHECK(base64_decode(enc).value() == s);
    auto unpadded = enc.substr(0, enc.find('='));
    CHECK(base64_decode(unpadded).value() == s);
  }
  CHECK(base64_decode(all_bytes_b64).value() == all_bytes());
  std::string url(all_bytes_b64);
  for (auto& c : url)
    c = c == '+' ? '-' : c == '/' ? '_' : c;
  CHECK(base64_decode(url).value() == all_bytes());
  CHECK(base64_decode(url.substr(0, url.size() - 2)).value() == all_bytes());
  // Every length and every byte value in every position of the quad.
  for (std::size_t n = 0; n < 70; ++n) {
    std::string s;
    for (std::size_t i = 0; i < n; ++i)
      s += static_cast<char>((i * 37 + n) & 0xff);
    CHECK(base64_decode(base64_encode(s)).value() == s);
  }
  // Unused low bits of the last character are ignored, as most decoders do.
  CHECK(base64_decode("Zh==").value() == "f");
}

TEST_CASE("base64 rejects garbage with a message naming the offset", "[codec][base64]") {
  auto err = [](std::string_view s) {
    auto r = base64_decode(s);
    INFO(s);
    CHECK_FALSE(r);
    if (r) return std::string();
    CHECK(r.error().is(errc::protocol));
    return r.error().message;
  };
  CHECK(err("Zm9v!mFy") == "invalid base64: character '!' at offset 4");
  CHECK(err("Zm9v YmFy") == "invalid base64: byte 0x20 at offset 4");
  CHECK(err("Zm9v\nYmFy") == "invalid base64: byte 0x0a at offset 4");
  CHECK(err("Zm=vYmFy") == "invalid base64: '=' before the end at offset 2");
  CHECK(err("Z") == "invalid base64: length 1 is not possible");
  CHECK(err("Zm9vY") == "invalid base64: length 5 is not possible");
  CHECK(err("Zg=") == "invalid base64: padding at offset 2 does not complete a 4-character group");
  CHECK(err("Zg===").find("invalid base64") == 0);
  CHECK(err("====").find("invalid base64") == 0);
  CHECK(err("\xff\xfe").find("byte 0xff at offset 0") != std::string::npos);
  std::string out = "keep";
  CHECK_FALSE(base64_decode_into(out, "Zm9v!"));
  CHECK(out == "keep");
  // A bad byte at any position (the fast loop takes 8 characters at a time) is found and named.
  const std::string good = base64_encode(all_bytes()).substr(0, 64);
  for (std::size_t at = 0; at < good.size(); ++at) {
    std::string bad = good;
    bad[at] = '*';
    INFO(at);
    CHECK(err(bad) == "invalid base64: character '*' at offset " + std::to_string(at));
    out = "keep";
    CHECK_FALSE(base64_decode_into(out, bad));
    CHECK(out == "keep");
  }
}

namespace {
/// Base64 the slow way, six bits at a time: what the bulk loops must agree with.
std::string reference_base64(std::string_view bytes) {
  static constexpr char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    acc = (acc << 8) | c;
    for (bits += 8; bits >= 6; bits -= 6)
      out += abc[(acc >> (bits - 6)) & 63];
  }
  if (bits > 0) out += abc[(acc << (6 - bits)) & 63];
  while (out.size() % 4 != 0)
    out += '=';
  return out;
}
} // namespace

TEST_CASE("base64: the bulk loops keep every byte at and around their step boundaries",
          "[codec][base64]") {
#ifdef SANDBOX_BASE64_AVX2
  if (!sandbox::http::detail::b64::avx2()) WARN("no AVX2 here: only the table loops are tested");
#endif
  // Steps of 24 bytes / 32 characters where the CPU has AVX2, of 6 / 8 otherwise: every length
  // up to several steps, every byte value, both alphabets, appended after other text.
  std::uint32_t x = 12345;
  for (std::size_t n = 0; n < 400; ++n) {
    std::string s(n, '\0');
    for (auto& c : s)
      c = static_cast<char>((x = x * 1103515245 + 12345) >> 16);
    INFO("length " << n);
    const std::string enc = base64_encode(s);
    REQUIRE(enc == reference_base64(s));
    std::string into = "prefix";
    base64_encode_into(into, s);
    CHECK(into == "prefix" + enc);
    CHECK(base64_decode(enc).value() == s);
    std::string url = enc;
    for (auto& c : url)
      c = c == '+' ? '-' : c == '/' ? '_' : c;
    CHECK(base64_decode(url).value() == s);
    std::string out = "ab";
    REQUIRE(base64_decode_into(out, enc));
    CHECK(out == "ab" + s);
  }
  // Every byte outside both alphabets, at every position of the first steps, is found and
  // named, and nothing is appended.
  const std::string good = reference_base64(std::string(150, '\x5a'));
  for (std::size_t at = 0; at < 160; at += (at < 40 ? 1 : 7))
    for (int c = 0; c < 256; ++c) {
      const bool valid = std::isalnum(c) || c == '+' || c == '/' || c == '-' || c == '_';
      if (valid || c == '=') continue;
      std::string bad = good;
      bad[at] = static_cast<char>(c);
      std::string out = "keep";
      auto r = base64_decode_into(out, bad);
      INFO("byte " << c << " at " << at);
      REQUIRE_FALSE(r);
      const std::string tail = " at offset " + std::to_string(at);
      const std::string& m = r.error().message;
      CHECK((m.size() >= tail.size() && m.compare(m.size() - tail.size(), tail.size(), tail) == 0));
      CHECK(out == "keep");
    }
}

TEST_CASE("json_writer escapes and stays valid UTF-8", "[codec][writer]") {
  auto str = [](std::string_view s) {
    json_writer w;
    w.string(s);
    return std::move(w).take();
  };
  CHECK(str("plain") == R"("plain")");
  CHECK(str("q\"b\\s/") == R"("q\"b\\s/")");
  CHECK(str("\b\f\n\r\t") == R"("\b\f\n\r\t")");
  CHECK(str("\x01\x1f"s + '\0') == R"("\u0001\u001f\u0000")");
  CHECK(str("\x7f") == "\"\x7f\"");
  CHECK(str("é€😀") == "\"é€😀\"");
  // Invalid UTF-8: each offending byte becomes U+FFFD; what follows is kept.
  CHECK(str("a\xff"
            "b") == "\"a\xEF\xBF\xBD"
                    "b\"");
  CHECK(str("\xC0\xAF") == "\"\xEF\xBF\xBD\xEF\xBF\xBD\"");                 // overlong '/'
  CHECK(str("\xED\xA0\x80") == "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""); // surrogate
  CHECK(str("\xF4\x90\x80\x80").find("\xEF\xBF\xBD") != std::string::npos); // > U+10FFFF
  CHECK(str("x\xE2\x82") == "\"x\xEF\xBF\xBD\xEF\xBF\xBD\"");               // truncated €

  json_writer w;
  w.begin_object().key("a").begin_array().number(std::int32_t{1}).number(std::int64_t{-2});
  w.boolean(true).null().begin_object().end_object().end_array();
  w.key("b").quoted_number(std::int64_t{9007199254740993}).key("c").base64("\xff");
  w.key("k\"").string("").end_object();
  CHECK(w.str() == R"({"a":[1,-2,true,null,{}],"b":"9007199254740993","c":"/w==","k\"":""})");
}

TEST_CASE("escaping round trip through the decoder", "[codec][writer]") {
  std::string every_ascii;
  for (int c = 0; c < 128; ++c)
    every_ascii += static_cast<char>(c);
  wire::ExecRequest rq;
  rq.command = {every_ascii, "quote\" backslash\\ slash/", "é€😀 non-ASCII", ""};
  rq.env = {{"KEY\n\"", "value\t\\"}, {"é", "😀"}};
  auto back = decode_ok<wire::ExecRequest>(to_json(rq), strict);
  CHECK(back == rq);
  // Invalid UTF-8 cannot travel in a string field: it arrives as U+FFFD, and the body still parses.
  rq.command = {"bad\xff"};
  CHECK(decode_ok<wire::ExecRequest>(to_json(rq)).command[0] == "bad\xEF\xBF\xBD");
  // \u escapes, surrogate pairs and escaped slashes are decoded.
  auto esc = decode_ok<wire::ExecRequest>(R"({"command":["\u00e9\ud83d\ude00\/\u0000"]})");
  CHECK(esc.command[0] == "é😀/"s + '\0');
  CHECK(decode_error<wire::ExecRequest>(R"({"command":["\ud800"]})").find("command[0]") == 0);
}

TEST_CASE("encoding: lowerCamel names, defaults omitted, int64 as strings", "[codec][encode]") {
  CHECK(to_json(wire::ExecRequest{}) == "{}");
  CHECK(to_json(wire::ExecResponse{}) == "{}");
  CHECK(to_json(wire::Sandbox{}) == "{}");
  CHECK(to_json(wire::SandboxSpec{}) == "{}");
  CHECK(to_json(wire::Status{}) == "{}");
  CHECK(to_json(wire::DeleteSandboxResponse{}) == "{}");
  CHECK(to_json(wire::ListSandboxesResponse{}) == "{}");
  CHECK(to_json(wire::WriteFileRequest{}) == "{}");
  CHECK(to_json(wire::ReadFileResponse{}) == "{}");
  CHECK(to_json(wire::ExecRequest{{}, {"ls", "-l"}, {{"A", "b"}}, 1024, "side"}) ==
        R"({"command":["ls","-l"],"env":{"A":"b"},"maxOutputBytes":1024,"container":"side"})");
  wire::ExecResponse r;
  r.stdout_bytes = "hi";
  r.stderr_bytes = "\xff";
  r.exit_code = -1;
  r.stdout_truncated = true;
  r.stdout_bytes_produced = 9007199254740993; // not representable as a double
  r.stderr_bytes_produced = 1;
  CHECK(to_json(r) == R"({"stdout":"aGk=","stderr":"/w==","exitCode":-1,"stdoutTruncated":true,)"
                      R"("stdoutBytesProduced":"9007199254740993","stderrBytesProduced":"1"})");
  CHECK(to_json(wire::WriteFileRequest{{}, "/a", "x", ""}) == R"({"path":"/a","content":"eA=="})");
  CHECK(to_json(wire::ReadFileResponse{all_bytes()}) ==
        R"({"content":")" + std::string(all_bytes_b64) + R"("})");
  CHECK(to_json(wire::DeleteSandboxResponse{wire::Sandbox{}}) == R"({"sandbox":{}})");
  CHECK(to_json(wire::ListSandboxesResponse{{wire::Sandbox{"a", {}, {}}}, "next"}) ==
        R"({"sandboxes":[{"sandboxId":"a"}],"nextPageToken":"next"})");

  auto sb = to_json(full_sandbox());
  CHECK(sb ==
        R"({"sandboxId":"sb-123","spec":{"containers":[{"name":"main","image":"python:3.11",)"
        R"("command":"/bin/sh","args":["-c","trap 'exit 0' TERM; sleep infinity & wait"],)"
        R"("environmentVariables":{"A":"1","B":"two words"},"workingDir":"/work","files":[)"
        R"({"path":"/etc/motd","content":"aGVsbG8Ad29ybGQ="},{"path":"/empty"}],)"
        R"("resourceRequirements":{"requests":{"cpu":"500m","memory":"512Mi"},)"
        R"("limits":{"cpu":"1","memory":"1Gi"}}}],"primaryContainer":"main","tags":["t1","t2"],)"
        R"("annotations":{"k":"v"},"maxLifetimeSeconds":3600,"network":{"denyEgress":true,)"
        R"("denyIngress":false}},"status":{"state":"STATE_COMPLETED","stateReason":"exited",)"
        R"("createTime":"2026-11-26T10:00:00.123Z","startTime":"2026-11-26T10:00:01Z",)"
        R"("endTime":"2026-11-26T10:00:02Z","exitCode":0,"runnerId":"r-1"}})");
}

TEST_CASE("every message round-trips in both modes", "[codec][roundtrip]") {
  auto sb = full_sandbox();
  CHECK(decode_ok<wire::Sandbox>(to_json(sb)) == sb);
  CHECK(decode_ok<wire::Sandbox>(to_json(sb), strict) == sb);
  wire::ListSandboxesResponse list{{sb, wire::Sandbox{"b", {}, wire::SandboxStatus{}}}, "tok"};
  CHECK(decode_ok<wire::ListSandboxesResponse>(to_json(list)) == list);
  wire::DeleteSandboxResponse del{sb};
  CHECK(decode_ok<wire::DeleteSandboxResponse>(to_json(del)) == del);
  wire::ExecResponse er{all_bytes(), "err", 3, true, false, -5, 1LL << 40};
  CHECK(decode_ok<wire::ExecResponse>(to_json(er)) == er);
  CHECK(decode_ok<wire::ExecResponse>(to_json(er), strict) == er);
  wire::WriteFileRequest wf{"sbx-1", "/f", all_bytes(), "c"};
  CHECK(decode_ok<wire::WriteFileRequest>(to_json(wf), strict) == wf);
  wire::ReadFileResponse rf{all_bytes()};
  CHECK(decode_ok<wire::ReadFileResponse>(to_json(rf)) == rf);
  wire::Status st{5, "gone", wire::ErrorInfo{"R", "d", {{"k", "v"}}},
                  wire::RetryInfo{milliseconds(1500)}};
  CHECK(decode_ok<wire::Status>(to_json(st)) == st);
  wire::ExecRequest rq{"sbx-1", {"a"}, {{"K", "V"}}, -1, "x"};
  CHECK(decode_ok<wire::ExecRequest>(to_json(rq), strict) == rq);
}

TEST_CASE("decoding accepts lowerCamel and snake_case names", "[codec][names]") {
  auto camel = decode_ok<wire::ExecResponse>(
      R"({"exitCode":2,"stdoutTruncated":true,"stdoutBytesProduced":"7","stderrBytesProduced":8})");
  auto snake = decode_ok<wire::ExecResponse>(
      R"({"exit_code":2,"stdout_truncated":true,"stdout_bytes_produced":"7","stderr_bytes_produced":8})");
  CHECK(camel == snake);
  CHECK(camel.exit_code == 2);
  CHECK(camel.stdout_bytes_produced == 7);
  CHECK(camel.stderr_bytes_produced == 8);
  auto spec = decode_ok<wire::Sandbox>(
      R"({"sandbox_id":"x","spec":{"primary_container":"m","max_lifetime_seconds":5,)"
      R"("containers":[{"name":"m","image":"i","working_dir":"/w","environment_variables":{"A":"1"},)"
      R"("resource_requirements":{"limits":{"cpu":"1"}}}],"network":{"deny_egress":true}}})",
      strict);
  CHECK(spec.sandbox_id == "x");
  REQUIRE(spec.spec);
  CHECK(spec.spec->primary_container == "m");
  CHECK(spec.spec->max_lifetime_seconds == 5);
  CHECK(spec.spec->containers.at(0).working_dir == "/w");
  CHECK(spec.spec->containers.at(0).environment_variables.at("A") == "1");
  CHECK(spec.spec->containers.at(0).resource_requirements->limits.cpu == "1");
  CHECK(spec.spec->network->deny_egress == true);
  CHECK_FALSE(spec.spec->network->deny_ingress);
  // Names that are neither: wrong case, or a mix of the two spellings.
  CHECK(decode_error<wire::ExecResponse>(R"({"ExitCode":1})", strict) == "ExitCode: unknown field");
  CHECK(decode_error<wire::ExecResponse>(R"({"exit_Code":1})", strict) ==
        "exit_Code: unknown field");
  // Both spellings of one field are the same field.
  CHECK(decode_error<wire::ExecResponse>(R"({"exitCode":1,"exit_code":2})", strict) ==
        "exit_code: duplicate field");
  CHECK(decode_ok<wire::ExecResponse>(R"({"exitCode":1,"exit_code":2})").exit_code == 2);
}

TEST_CASE("integers: int64 as string or number, int32 ranges", "[codec][numbers]") {
  using R = wire::ExecResponse;
  CHECK(decode_ok<R>(R"({"stdoutBytesProduced":"9223372036854775807"})").stdout_bytes_produced ==
        INT64_MAX);
  CHECK(decode_ok<R>(R"({"stdoutBytesProduced":-9223372036854775808})").stdout_bytes_produced ==
        INT64_MIN);
  CHECK(decode_ok<R>(R"({"stdoutBytesProduced":"-12"})").stdout_bytes_produced == -12);
  CHECK(decode_ok<R>(R"({"stdoutBytesProduced":1e3})").stdout_bytes_produced == 1000);
  CHECK(decode_ok<R>(R"({"exitCode":"42"})").exit_code == 42);
  CHECK(decode_ok<R>(R"({"exitCode":5.0})").exit_code == 5);
  CHECK(decode_ok<R>(R"({"exitCode":-2147483648})").exit_code == INT32_MIN);
  CHECK(decode_error<R>(R"({"exitCode":2147483648})") == "exitCode: integer out of range");
  CHECK(decode_error<R>(R"({"exitCode":"2147483648"})") == "exitCode: integer out of range");
  CHECK(decode_error<R>(R"({"stdoutBytesProduced":"9223372036854775808"})") ==
        "stdoutBytesProduced: integer out of range");
  CHECK(decode_error<R>(R"({"stdoutBytesProduced":18446744073709551615})") ==
        "stdoutBytesProduced: integer out of range");
  CHECK(decode_error<R>(R"({"stdoutBytesProduced":1e30})") ==
        "stdoutBytesProduced: integer out of range");
  CHECK(decode_error<R>(R"({"exitCode":1.5})") == "exitCode: expected an integer, got a fraction");
  CHECK(decode_error<R>(R"({"stdoutBytesProduced":"12x"})") ==
        "stdoutBytesProduced: expected an integer, got a string that is not one");
  CHECK(decode_error<R>(R"({"stdoutBytesProduced":""})", strict) ==
        "stdoutBytesProduced: expected an integer, got a string that is not one");
  CHECK(decode_error<R>(R"({"stdoutBytesProduced":" 1"})").find("not one") != std::string::npos);
  CHECK(decode_error<R>(R"({"exitCode":01})").find("exitCode: invalid number") == 0);
  CHECK(decode_error<R>(R"({"exitCode":-})").find("exitCode: ") == 0);
  CHECK(decode_error<R>(R"({"exitCode":true})") == "exitCode: expected an integer, got a boolean");
}

TEST_CASE("bytes fields: base64 variants and invalid input", "[codec][bytes]") {
  using R = wire::ExecResponse;
  std::string url(all_bytes_b64);
  for (auto& c : url)
    c = c == '+' ? '-' : c == '/' ? '_' : c;
  CHECK(decode_ok<R>(R"({"stdout":")" + std::string(all_bytes_b64) + R"("})").stdout_bytes ==
        all_bytes());
  CHECK(decode_ok<R>(R"({"stdout":")" + url + R"("})").stdout_bytes == all_bytes());
  CHECK(decode_ok<R>(R"({"stdout":"aGk"})").stdout_bytes == "hi");
  CHECK(decode_ok<R>(R"({"stdout" : "aGk="  , "stderr":"aGk="})").stdout_bytes == "hi");
  // An escaped character takes the unescaping path and gives the same bytes.
  CHECK(decode_ok<R>(R"({"stdout":"\/w=="})").stdout_bytes == "\xff");
  CHECK(decode_ok<R>(R"({"stdout":""})").stdout_bytes.empty());
  CHECK(decode_ok<R>(R"({"stdout":null})").stdout_bytes.empty());
  CHECK(decode_error<R>(R"({"stdout":"aGk!"})") ==
        "stdout: invalid base64: character '!' at offset 3");
  CHECK(decode_error<R>(R"({"stderr":"a"})", strict) ==
        "stderr: invalid base64: length 1 is not possible");
  CHECK(decode_error<R>(R"({"stdout":"aG\nk="})").find("stdout: invalid base64: byte 0x0a") == 0);
  CHECK(decode_error<R>(R"({"stdout":42})") == "stdout: expected a base64 string, got a number");
  CHECK(
      decode_error<wire::Sandbox>(
          R"({"spec":{"containers":[{"name":"m","image":"i","files":[{"path":"/p","content":"%"}]}]}})",
          strict) ==
      "spec.containers[0].files[0].content: invalid base64: character '%' at offset 0");
}

TEST_CASE("enums: by name, by number, unknown name", "[codec][enum]") {
  auto state = [](std::string_view v) {
    auto s = decode_ok<wire::SandboxStatus>(R"({"state":)" + std::string(v) + "}");
    return s.state;
  };
  CHECK(state(R"("STATE_RUNNING")") == wire::State::STATE_RUNNING);
  CHECK(state(R"("STATE_PAUSED")") == wire::State::STATE_PAUSED);
  CHECK(state("2") == wire::State::STATE_RUNNING);
  CHECK(state("8") == wire::State::STATE_PAUSED);
  CHECK(state(R"("STATE_SOMETHING_NEW")") == wire::State::STATE_UNSPECIFIED);
  CHECK(state(R"("running")") == wire::State::STATE_UNSPECIFIED);
  CHECK(state("null") == wire::State::STATE_UNSPECIFIED);
  // Our server refuses a name it does not know; the 0 value by name is fine.
  CHECK(decode_error<wire::Sandbox>(R"({"spec":{"mode":"BOGUS","containers":[{"name":"m",)"
                                    R"("image":"i"}]}})",
                                    strict) ==
        "spec.mode: unknown coreweave.sandbox.v1.SandboxMode value BOGUS");
  CHECK(decode_ok<wire::SandboxSpec>(R"({"mode":"SANDBOX_MODE_UNSPECIFIED","containers":[{"name":)"
                                     R"("m","image":"i"}]})",
                                     strict)
            .mode == wire::SandboxMode::SANDBOX_MODE_UNSPECIFIED);
  // An unknown number is kept (proto3 enums are open) and written back as a number.
  CHECK(static_cast<int>(state("42")) == 42);
  CHECK(to_json(wire::SandboxStatus{.state = static_cast<wire::State>(42)}) == R"({"state":42})");
  CHECK(wire::to_state(static_cast<wire::State>(42)) == State::UNSPECIFIED);
  CHECK(decode_error<wire::SandboxStatus>(R"({"state":true})") ==
        "state: expected an enum name or number, got a boolean");
  CHECK(decode_error<wire::SandboxStatus>(R"({"state":2.5})") ==
        "state: expected an integer, got a fraction");

  for (int i = 0; i <= 8; ++i) {
    auto w = static_cast<wire::State>(i);
    CHECK(wire::to_wire(wire::to_state(w)) == w);
    CHECK(wire::state_from_name(wire::to_string(w)) == w);
  }
  CHECK(wire::to_state(wire::State::STATE_TERMINATING) == State::TERMINATING);
  CHECK(wire::to_wire(State::PENDING) == wire::State::STATE_PENDING);
  CHECK(wire::to_string(wire::State::STATE_TERMINATED) == "STATE_TERMINATED");
}

TEST_CASE("exitCode has explicit presence", "[codec][presence]") {
  auto present0 = decode_ok<wire::SandboxStatus>(R"({"state":"STATE_COMPLETED","exitCode":0})");
  REQUIRE(present0.exit_code.has_value());
  CHECK(*present0.exit_code == 0);
  CHECK(to_json(present0) == R"({"state":"STATE_COMPLETED","exitCode":0})");
  auto absent = decode_ok<wire::SandboxStatus>(R"({"state":"STATE_COMPLETED"})");
  CHECK_FALSE(absent.exit_code.has_value());
  CHECK(to_json(absent) == R"({"state":"STATE_COMPLETED"})");
  CHECK_FALSE(decode_ok<wire::SandboxStatus>(R"({"exitCode":null})").exit_code.has_value());
  CHECK(decode_ok<wire::SandboxStatus>(R"({"exitCode":137})").exit_code == 137);
  // ExecResponse.exitCode has no presence: 0 is the default and is omitted.
  CHECK(to_json(wire::ExecResponse{}).find("exitCode") == std::string::npos);
  // Optional bools keep an explicit false.
  CHECK(to_json(wire::NetworkOptions{false, std::nullopt}) == R"({"denyEgress":false})");
  CHECK(decode_ok<wire::NetworkOptions>(R"({"denyEgress":false})").deny_egress == false);
  CHECK_FALSE(decode_ok<wire::NetworkOptions>(R"({})").deny_ingress.has_value());
}

TEST_CASE("how a main process ended survives the trip through the wire", "[codec][lifecycle]") {
  auto trip = [](const SandboxInfo& i) {
    wire::Sandbox sb;
    sb.sandbox_id = i.id;
    sb.status = status_of(i);
    return info_of(decode_ok<wire::Sandbox>(to_json(sb)));
  };
  auto zero = trip({"a", State::COMPLETED, 0});
  CHECK(zero.state == State::COMPLETED);
  CHECK(zero.returncode == 0);
  CHECK(trip({"a", State::COMPLETED, 7}).returncode == 7);
  CHECK_FALSE(trip({"a", State::RUNNING}).returncode);

  auto missing = trip({"a", State::FAILED, {}, {}, false, "the main command was not found: 'x'"});
  CHECK(missing.state == State::FAILED);
  CHECK_FALSE(missing.returncode);
  CHECK(missing.status_reason == "the main command was not found: 'x'");
  CHECK_FALSE(missing.oom_killed);

  auto oom = trip({"a", State::FAILED, 137, {}, true, "killed for its memory limit"});
  CHECK(oom.oom_killed);
  CHECK(oom.returncode == 137);
  CHECK(oom.status_reason == "OOMKilled: killed for its memory limit");
  CHECK(trip(oom).status_reason == oom.status_reason); // relayed, not prefixed twice
  CHECK(trip({"a", State::FAILED, 137, {}, true}).status_reason == "OOMKilled");
}

TEST_CASE("missing and null fields decode to defaults", "[codec][defaults]") {
  CHECK(decode_ok<wire::ExecResponse>("{}") == wire::ExecResponse{});
  CHECK(decode_ok<wire::Sandbox>("{}") == wire::Sandbox{});
  CHECK(decode_ok<wire::Sandbox>(R"({"spec":null,"status":null,"sandboxId":null})") ==
        wire::Sandbox{});
  CHECK(decode_ok<wire::DeleteSandboxResponse>(R"({"sandbox":null})") ==
        wire::DeleteSandboxResponse{});
  CHECK(decode_ok<wire::DeleteSandboxResponse>(R"({"sandbox":{}})").sandbox.has_value());
  CHECK(decode_ok<wire::ListSandboxesResponse>(R"({"sandboxes":null})").sandboxes.empty());
  CHECK(decode_ok<wire::ExecRequest>(R"({"command":["a"],"env":null,"maxOutputBytes":null})",
                                     strict) == wire::ExecRequest{{}, {"a"}, {}, 0, ""});
  CHECK(decode_error<wire::ExecRequest>(R"({"command":["a",null]})") ==
        "command[1]: null is not allowed in a list");
}

TEST_CASE("every field of the published messages parses; what our server lacks is refused by name",
          "[codec][unknown]") {
  // Output-only fields a request may echo: read and dropped, in both modes.
  const std::string echoed =
      R"({"spec":{"containers":[{"name":"m","image":"i"}]},"sourceTemplateId":"t",)"
      R"("source_template_revision":"3","status":{"effectiveRuntimeClass":"x",)"
      R"("containerStatuses":[{"name":"m","exitCode":1}],"attachedVolumeIds":["v"]}})";
  CHECK(decode_ok<wire::Sandbox>(echoed, strict).status->state == wire::State::STATE_UNSPECIFIED);
  // A capability our server does not offer: errc::unsupported naming the field, when it is set.
  const std::pair<std::string_view, std::string_view> refused[] = {
      {R"("volumes":[{"name":"v","scratch":{}}])", "spec.volumes"},
      {R"("services":[{"port":80,"endpoint":{"kind":"ENDPOINT_KIND_HTTPS"}}])",
       "spec.services[0].endpoint"},
      {R"("network_ids":["n"])", "spec.network_ids"},
      {R"("objectStorageAccess":{"buckets":["b"]})", "spec.objectStorageAccess"},
      {R"("runnerIds":["r"])", "spec.runnerIds"},
      {R"("initContainers":[{"name":"i","image":"i"}])", "spec.initContainers"},
      {R"("instanceType":"gpu.big")", "spec.instanceType"},
      {R"("runtimeClass":"kata")", "spec.runtimeClass"},
      {R"("network":{"egress":[{"any":true}]})", "spec.network.egress"},
      {R"("network":{"ingress":[{"any":true}]})", "spec.network.ingress"},
      {R"("containers":[{"name":"m","image":"i","volumeMounts":[{"volume":"v"}]}])",
       "spec.containers[0].volumeMounts"},
      {R"("containers":[{"name":"m","image":"i","secretStores":[{"storeName":"s"}]}])",
       "spec.containers[0].secretStores"},
      {R"("containers":[{"name":"m","image":"i","securityContext":{"privileged":false}}])",
       "spec.containers[0].securityContext"},
      {R"("containers":[{"name":"m","image":"i","imagePullCredentials":{"registry":"r"}}])",
       "spec.containers[0].imagePullCredentials"},
      {R"("containers":[{"name":"m","image":"i","resources":{"gpu":{"count":"1"}}}])",
       "spec.containers[0].resources.gpu"},
  };
  for (auto [member, path] : refused) {
    std::string body =
        R"({"spec":{)" + std::string(member) +
        (member.find("\"containers\"") == 0 ? "" : R"(,"containers":[{"name":"m","image":"i"}])") +
        "}}";
    INFO(body);
    auto r = from_json<wire::Sandbox>(body, strict);
    REQUIRE_FALSE(r);
    CHECK(r.error().is(errc::unsupported));
    CHECK(r.error().message == std::string(path) + ": not implemented by this server");
    CHECK(decode_ok<wire::Sandbox>(body).spec->containers.at(0).name == "m"); // lenient: dropped
  }
  // Given as their defaults, they ask for nothing: accepted.
  CHECK(decode_ok<wire::Sandbox>(
            R"({"spec":{"containers":[{"name":"m","image":"i","volumeMounts":[],)"
            R"("securityContext":{},"resources":{"gpu":null}}],"volumes":[],"instanceType":"",)"
            R"("network":{"egress":[],"denyEgress":true}}})",
            strict)
            .spec->network->deny_egress == true);
  // Modelled since they map onto local sandboxes: the older `resources`, and the mode.
  auto c = decode_ok<wire::Sandbox>(
      R"({"spec":{"mode":"SANDBOX_MODE_CKS","containers":[{"name":"m","image":"i",)"
      R"("resources":{"cpu":"250m","memory":"64Mi"}}]}})",
      strict);
  CHECK(c.spec->mode == wire::SandboxMode::SANDBOX_MODE_CKS);
  CHECK(c.spec->containers[0].resources == wire::Resources{"250m", "64Mi"});
}

TEST_CASE("unknown fields: skipped when lenient, rejected by name when strict",
          "[codec][unknown]") {
  const std::string body =
      R"({"sandboxId":"x","sourceTemplateRevision":"3","status":{"state":"STATE_RUNNING",)"
      R"("resourceUsage":{"cpuMillicores":"5"},"services":[{"port":80,"endpoint":{"url":"u"}}]},)"
      R"("future":[1,2.5e3,"s",true,false,null,{"deep":[[{}]]}]})";
  auto sb = decode_ok<wire::Sandbox>(body);
  CHECK(sb.sandbox_id == "x");
  CHECK(sb.status->state == wire::State::STATE_RUNNING);
  // Fields of the proto that are not modelled are not unknown: only "future" is.
  CHECK(decode_error<wire::Sandbox>(body, strict) == "future: unknown field");
  CHECK(decode_error<wire::Sandbox>(
            R"({"spec":{"containers":[{"name":"m","image":"i","volumeMountz":[]}]}})", strict) ==
        "spec.containers[0].volumeMountz: unknown field");
  CHECK(decode_error<wire::ExecRequest>(R"({"command":["a"],"cwd":"/tmp"})", strict) ==
        "cwd: unknown field");
  CHECK(decode_error<wire::ExecRequest>(R"({"command":["a"],"env":{"A":"1","A":"2"}})", strict) ==
        "env.A: duplicate key");
  CHECK(decode_ok<wire::ExecRequest>(R"({"command":["a"],"env":{"A":"1","A":"2"}})").env.at("A") ==
        "2");
  // Unknown values are still checked: malformed JSON hidden in an unknown field is an error.
  CHECK(decode_error<wire::Sandbox>(R"({"future":[1,tru]})").find("future") == 0);
  CHECK(decode_error<wire::Sandbox>(R"({"future":{"a":01}})").find("future.a: invalid number") ==
        0);
  // Keys in messages are made printable and short.
  auto msg =
      decode_error<wire::ExecRequest>("{\"a\\u0001" + std::string(100, 'k') + "\":1}", strict);
  CHECK(msg.find("a?kkk") == 0);
  CHECK(msg.size() < 100);
}

TEST_CASE("strict mode: required fields", "[codec][strict]") {
  CHECK(decode_error<wire::Sandbox>("{}", strict) == "spec: required field is missing or empty");
  CHECK(decode_error<wire::Sandbox>(R"({"spec":{}})", strict) ==
        "spec.containers: required field is missing or empty");
  CHECK(decode_error<wire::Sandbox>(R"({"spec":{"containers":[{"image":"i"}]}})", strict) ==
        "spec.containers[0].name: required field is missing or empty");
  CHECK(
      decode_error<wire::Sandbox>(R"({"spec":{"containers":[{"name":"m","image":""}]}})", strict) ==
      "spec.containers[0].image: required field is missing or empty");
  CHECK(decode_error<wire::Sandbox>(
            R"({"spec":{"containers":[{"name":"m","image":"i","files":[{"content":""}]}]}})",
            strict) == "spec.containers[0].files[0].path: required field is missing or empty");
  CHECK(decode_error<wire::ExecRequest>(R"({"command":[]})", strict) ==
        "command: required field is missing or empty");
  CHECK(decode_error<wire::WriteFileRequest>(R"({"content":"aGk="})", strict) ==
        "path: required field is missing or empty");
  // The same bodies are fine when lenient (responses have no required fields).
  CHECK(decode_ok<wire::Sandbox>(R"({"spec":{"containers":[{}]}})").spec->containers.size() == 1);
  CHECK(decode_ok<wire::WriteFileRequest>("{}") == wire::WriteFileRequest{});
}

TEST_CASE("wrong types name the field", "[codec][types]") {
  CHECK(decode_error<wire::ExecRequest>(R"({"command":"ls"})", strict) ==
        "command: expected an array, got a string");
  CHECK(decode_error<wire::ExecRequest>(R"({"command":[1]})", strict) ==
        "command[0]: expected a string, got a number");
  CHECK(decode_error<wire::ExecRequest>(R"({"command":["a"],"env":{"A":1}})", strict) ==
        "env.A: expected a string, got a number");
  CHECK(decode_error<wire::ExecRequest>(R"({"command":["a"],"env":[]})", strict) ==
        "env: expected an object, got an array");
  CHECK(decode_error<wire::ExecResponse>(R"({"stdoutTruncated":"true"})") ==
        "stdoutTruncated: expected a boolean, got a string");
  CHECK(decode_error<wire::Sandbox>(R"({"spec":[]})", strict) ==
        "spec: expected an object, got an array");
  CHECK(decode_error<wire::Sandbox>(R"({"status":{"createTime":5}})") ==
        "status.createTime: expected a string, got a number");
  CHECK(decode_error<wire::ListSandboxesResponse>(R"({"sandboxes":[{},"x"]})") ==
        "sandboxes[1]: expected an object, got a string");
  CHECK(
      decode_error<wire::Sandbox>(
          R"({"spec":{"containers":[{"name":"m","image":"i","resourceRequirements":{"limits":{"cpu":2}}}]}})",
          strict) ==
      "spec.containers[0].resourceRequirements.limits.cpu: expected a string, got a number");
}

TEST_CASE("malformed and truncated JSON is an error, never a crash", "[codec][malformed]") {
  CHECK(decode_error<wire::ExecResponse>("") == "empty body (expected a JSON object)");
  CHECK(decode_error<wire::ExecResponse>("  \n") == "empty body (expected a JSON object)");
  CHECK(decode_error<wire::ExecResponse>("[]") == "expected a JSON object, got an array");
  CHECK(decode_error<wire::ExecResponse>("\"x\"") == "expected a JSON object, got a string");
  CHECK(decode_error<wire::ExecResponse>("42") == "expected a JSON object, got a number");
  CHECK(decode_error<wire::ExecResponse>("null") == "expected a JSON object, got null");
  CHECK(decode_error<wire::ExecResponse>("{} {}") ==
        "unexpected data after the JSON object at offset 3");
  CHECK(decode_error<wire::ExecResponse>("{}}") ==
        "unexpected data after the JSON object at offset 2");
  CHECK(decode_error<wire::ExecResponse>(R"({"exitCode":1,})").find("malformed JSON") !=
        std::string::npos);
  CHECK(decode_error<wire::ExecResponse>(R"({"exitCode" 1})").find("malformed JSON") !=
        std::string::npos);
  CHECK(decode_error<wire::ExecResponse>(R"({"stdout":"aGk=)") ==
        "truncated JSON (unclosed string)");
  CHECK(decode_error<wire::ExecResponse>(R"({"stdout":"aGk=")").find("truncated") == 0);
  CHECK(decode_error<wire::ExecResponse>("{\"stdout\":\"\xff\"}") == "invalid UTF-8 in JSON text");
  CHECK(decode_error<wire::ExecRequest>(R"({"command":["a" "b"]})", strict)
            .find("command: malformed JSON") == 0);
  CHECK(decode_error<wire::Sandbox>(R"({"x":nul})").find("x: invalid literal") == 0);

  // Every proper prefix of a valid body fails with a message; the full body decodes.
  for (std::string body :
       {to_json(full_sandbox()), to_json(wire::ExecResponse{"out", "err", 1, true, true, 3, 3}),
        to_json(wire::Status{5, "m", wire::ErrorInfo{"R", "D", {{"a", "b"}}},
                             wire::RetryInfo{milliseconds(2)}})}) {
    for (std::size_t n = 0; n < body.size(); ++n) {
      auto prefix = std::string_view(body).substr(0, n);
      INFO(prefix);
      CHECK_FALSE(from_json<wire::Sandbox>(prefix, lenient));
      CHECK_FALSE(from_json<wire::ExecResponse>(prefix, strict));
      CHECK_FALSE(from_json<wire::Status>(prefix, lenient));
    }
  }
}

TEST_CASE("deep nesting is bounded", "[codec][limits]") {
  auto nested = [](int depth) {
    return R"({"future":)" + std::string(depth, '[') + std::string(depth, ']') + "}";
  };
  CHECK(from_json<wire::Sandbox>(nested(60), lenient));
  CHECK(decode_error<wire::Sandbox>(nested(64)).find("nesting deeper than 64 levels") !=
        std::string::npos);
  CHECK(decode_error<wire::Sandbox>(nested(100000)).find("nesting") != std::string::npos);
  std::string objects = R"({"future":)";
  for (int i = 0; i < 100000; ++i)
    objects += R"({"a":)";
  objects += "1" + std::string(100000, '}') + "}";
  CHECK(decode_error<wire::Sandbox>(objects).find("nesting deeper than 64 levels") !=
        std::string::npos);
  CHECK(decode_error<wire::Sandbox>(std::string(100000, '[')).size() > 0);
}

TEST_CASE("a std::string body is parsed in place or copied, with the same result",
          "[codec][buffer]") {
  const auto sb = full_sandbox();
  std::string tight = to_json(sb);
  tight.shrink_to_fit(); // no room for simdjson's padding: copied first
  std::string roomy = tight;
  roomy.reserve(roomy.size() + 4096); // room: parsed where it is
  CHECK(decode_ok<wire::Sandbox>(tight) == sb);
  CHECK(from_json<wire::Sandbox>(roomy, strict).value() == sb);
  CHECK(from_json<wire::Sandbox>(std::string_view(roomy), strict).value() == sb);
  // What lies in the spare capacity (left there by a longer earlier content) is never read as
  // part of the body.
  auto with_leftovers = [](std::string_view body, char fill) {
    std::string s(4096, fill);
    std::memcpy(s.data(), body.data(), body.size());
    s.resize(body.size());
    return s;
  };
  CHECK(decode_error<wire::Sandbox>(with_leftovers(R"({"sandboxId":"x")", '}')).find("truncated") ==
        0);
  CHECK(decode_error<wire::Sandbox>(with_leftovers(R"({"future":"abc)", '"')).find("truncated") ==
        0);
  CHECK_FALSE(from_json<wire::Sandbox>(with_leftovers(R"({"future":tru)", 'e'), lenient));
  CHECK_FALSE(from_json<wire::Sandbox>(with_leftovers(R"({"future":12)", '3'), lenient));
}

TEST_CASE("huge strings and bytes", "[codec][limits]") {
  std::string big(16 << 20, 'x');
  for (std::size_t i = 0; i < big.size(); i += 4099)
    big[i] = static_cast<char>(i & 0xff);
  wire::ExecResponse er;
  er.stdout_bytes = big;
  er.stdout_bytes_produced = static_cast<std::int64_t>(big.size());
  auto back = decode_ok<wire::ExecResponse>(to_json(er));
  CHECK(back.stdout_bytes.size() == big.size());
  CHECK(back.stdout_bytes == big);
  std::string text(4 << 20, 'a');
  text += "\"\\\n é";
  wire::ExecRequest rq{{}, {text}, {}, 0, ""};
  CHECK(decode_ok<wire::ExecRequest>(to_json(rq), strict) == rq);
}

TEST_CASE("error bodies: the gRPC-gateway shape of PROTOCOL.md", "[codec][status]") {
  const std::string body =
      R"({"code": 5, "message": "sandbox sb-1 not found", "details": [{"@type":)"
      R"( "type.googleapis.com/google.rpc.ErrorInfo", "reason": "CWSANDBOX_SANDBOX_NOT_FOUND",)"
      R"( "domain": "cwsandbox.com", "metadata": {"sandbox_id": "sb-1"}}, {"@type":)"
      R"( "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}]})";
  auto st = decode_ok<wire::Status>(body);
  CHECK(st.code == 5);
  CHECK(st.message == "sandbox sb-1 not found");
  REQUIRE(st.error_info);
  CHECK(st.error_info->reason == "CWSANDBOX_SANDBOX_NOT_FOUND");
  CHECK(st.error_info->domain == "cwsandbox.com");
  CHECK(st.error_info->metadata.at("sandbox_id") == "sb-1");
  REQUIRE(st.retry_info);
  CHECK(st.retry_info->retry_delay == milliseconds(1500));
  CHECK(to_json(st) ==
        R"({"code":5,"message":"sandbox sb-1 not found","details":[{"@type":)"
        R"("type.googleapis.com/google.rpc.ErrorInfo","reason":"CWSANDBOX_SANDBOX_NOT_FOUND",)"
        R"("domain":"cwsandbox.com","metadata":{"sandbox_id":"sb-1"}},{"@type":)"
        R"("type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.500s"}]})");

  // Other detail types are skipped; the first ErrorInfo wins; "@type" need not come first.
  auto mixed = decode_ok<wire::Status>(
      R"({"code":3,"details":[{"@type":"type.googleapis.com/google.rpc.BadRequest",)"
      R"("fieldViolations":[{"field":"f","description":"d"}]},{"reason":"A","@type":)"
      R"("type.googleapis.com/google.rpc.ErrorInfo"},{"@type":"type.googleapis.com/google.rpc.ErrorInfo",)"
      R"("reason":"B"},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":{"seconds":"2","nanos":1}}]})");
  CHECK(mixed.error_info->reason == "A");
  CHECK(mixed.retry_info->retry_delay == milliseconds(2001));
  // Our server's ExecResponse detail (the output of a timed-out command) round-trips.
  wire::Status timeout{4,
                       "timed out",
                       wire::ErrorInfo{"CWSANDBOX_COMMAND_TIMEOUT", "cwsandbox.com", {}},
                       {},
                       wire::ExecResponse{"partial\n", "", 137, true, false, 9000, 0}};
  const auto timeout_json = to_json(timeout);
  CHECK(timeout_json.find(R"({"@type":"type.googleapis.com/coreweave.sandbox.v1.ExecResponse",)"
                          R"("stdout":"cGFydGlhbAo=","exitCode":137,"stdoutTruncated":true,)"
                          R"("stdoutBytesProduced":"9000"})") != std::string::npos);
  CHECK(decode_ok<wire::Status>(timeout_json) == timeout);
  // The Google API form, with the HTTP status in "code" and the gRPC name in "status".
  auto google =
      decode_ok<wire::Status>(R"({"error":{"code":404,"message":"nope","status":"NOT_FOUND"}})");
  CHECK(google.code == 5);
  CHECK(google.message == "nope");
  // Durations.
  auto delay = [](std::string_view d) {
    auto s = decode_ok<wire::Status>(
        R"({"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":")" +
        std::string(d) + R"("}]})");
    return s.retry_info ? s.retry_info->retry_delay : milliseconds(-999);
  };
  CHECK(delay("2s") == milliseconds(2000));
  CHECK(delay("0.000001s") == milliseconds(1));
  CHECK(delay("1.123456789s") == milliseconds(1124));
  CHECK(delay("-1.5s") == milliseconds(-1500));
  CHECK(decode_error<wire::Status>(
            R"({"details":[{"@type":"x/google.rpc.RetryInfo","retryDelay":"soon"}]})") ==
        R"(details[0].retryDelay: invalid duration (expected e.g. "1.5s"))");
  CHECK(decode_error<wire::Status>(R"({"code":"NOT_FOUND"})").find("code: expected an integer") ==
        0);
}

TEST_CASE("error mapping: gRPC code and HTTP status table", "[codec][status]") {
  struct row {
    grpc_code code;
    int http;
    errc expect;
  };
  const row table[] = {
      {grpc_code::invalid_argument, 400, errc::validation},
      {grpc_code::failed_precondition, 400, errc::validation},
      {grpc_code::out_of_range, 400, errc::validation},
      {grpc_code::unauthenticated, 401, errc::authentication},
      {grpc_code::permission_denied, 403, errc::authentication},
      {grpc_code::not_found, 404, errc::not_found},
      {grpc_code::already_exists, 409, errc::conflict},
      {grpc_code::aborted, 409, errc::conflict},
      {grpc_code::resource_exhausted, 429, errc::resource_exhausted},
      {grpc_code::cancelled, 499, errc::not_running},
      {grpc_code::internal, 500, errc::server_error},
      {grpc_code::unknown, 500, errc::server_error},
      {grpc_code::data_loss, 500, errc::server_error},
      {grpc_code::unimplemented, 501, errc::unsupported},
      {grpc_code::unavailable, 503, errc::unavailable},
      {grpc_code::deadline_exceeded, 504, errc::timeout},
  };
  for (const auto& r : table) {
    INFO(to_string(r.code));
    CHECK(http_status_for(r.code) == r.http);
    auto e =
        error_from_status(r.http, wire::Status{static_cast<std::int32_t>(r.code), "m", {}, {}});
    CHECK(e.is(r.expect));
    REQUIRE(e.server);
    CHECK(e.server->http_status == r.http);
    CHECK(e.server->grpc_code == static_cast<int>(r.code));
    // Without a body the HTTP status alone gives the same class of error.
    CHECK(error_from_status(r.http, wire::Status{}).is(r.expect));
  }
  CHECK(error_from_status(503, {}).transient());
  CHECK(error_from_status(429, {}).transient());
  CHECK(error_from_status(504, {}).transient());
  CHECK_FALSE(error_from_status(404, {}).transient());
  CHECK(error_from_status(502, {}).is(errc::unavailable));
  CHECK(error_from_status(418, {}).is(errc::validation));
  CHECK(error_from_status(599, {}).is(errc::server_error));
  CHECK(error_from_status(404, wire::Status{5, "sandbox sb-1 not found", {}, {}}).message ==
        "sandbox sb-1 not found (HTTP 404 NOT_FOUND)");
  CHECK(error_from_status(500, {}).message == "request failed (HTTP 500 INTERNAL)");
  // A code that is not a gRPC code (the Google form without "status") falls back on HTTP.
  CHECK(error_from_status(404, wire::Status{404, "x", {}, {}}).is(errc::not_found));
  CHECK(grpc_code_from_name("UNAVAILABLE") == grpc_code::unavailable);
  CHECK(grpc_code_from_name("NOPE") == grpc_code::unknown);
}

TEST_CASE("error mapping: cwsandbox.com reasons, details attached", "[codec][status]") {
  auto with = [](int code, std::string reason, std::string domain) {
    wire::Status s{code, "msg",
                   wire::ErrorInfo{std::move(reason),
                                   std::move(domain),
                                   {{"filepath", "/x"}, {"max_size_bytes", "10"}}},
                   wire::RetryInfo{milliseconds(1500)}};
    return s;
  };
  const std::pair<const char*, errc> reasons[] = {
      {"CWSANDBOX_SANDBOX_NOT_FOUND", errc::not_found},
      {"CWSANDBOX_FILE_NOT_FOUND", errc::file_not_found},
      {"CWSANDBOX_FILE_IS_DIRECTORY", errc::file_is_directory},
      {"CWSANDBOX_FILE_TOO_LARGE", errc::file_too_large},
      {"CWSANDBOX_FILE_PERMISSION_DENIED", errc::file_permission},
      {"CWSANDBOX_FILE_IO_FAILED", errc::file_io},
      {"CWSANDBOX_COMMAND_TIMEOUT", errc::command_timeout},
  };
  for (auto [reason, expect] : reasons) {
    INFO(reason);
    auto e = error_from_status(400, with(3, reason, "cwsandbox.com"));
    CHECK(e.is(expect));
    REQUIRE(e.server);
    CHECK(e.server->reason == reason);
    CHECK(e.server->domain == "cwsandbox.com");
    CHECK(e.server->retry_delay == milliseconds(1500));
    CHECK(e.server->metadata.size() == 2);
    CHECK(e.message == "msg (HTTP 400 INVALID_ARGUMENT, " + std::string(reason) + ")");
    // Another domain: the code decides, the details are still attached.
    auto foreign = error_from_status(400, with(3, reason, "example.com"));
    CHECK(foreign.is(errc::validation));
    REQUIRE(foreign.server);
    CHECK(foreign.server->reason == reason);
    CHECK(foreign.server->retry_delay == milliseconds(1500));
  }
  // A command timeout is not a transient request timeout.
  CHECK_FALSE(
      error_from_status(504, with(4, "CWSANDBOX_COMMAND_TIMEOUT", "cwsandbox.com")).transient());
  CHECK(error_from_status(404, with(5, "SOMETHING_ELSE", "cwsandbox.com")).is(errc::not_found));
}

TEST_CASE("status_from_error is the inverse for the server", "[codec][status]") {
  for (int i = 1; i <= static_cast<int>(errc::unsupported); ++i) {
    auto code = static_cast<errc>(i);
    error e{code, "what happened"};
    auto st = status_from_error(e);
    INFO(make_error_code(code).message());
    CHECK(st.message == "what happened");
    const int http = http_status_for(static_cast<grpc_code>(st.code));
    auto back = error_from_status(http, decode_ok<wire::Status>(to_json(st)));
    if (code == errc::execution || code == errc::transport || code == errc::protocol)
      CHECK(back.is(errc::server_error));
    else
      CHECK(back.is(code));
  }
  auto nf = status_from_error(error{errc::not_found, "no sandbox sb-1"});
  CHECK(to_json(nf) == R"({"code":5,"message":"no sandbox sb-1","details":[{"@type":)"
                       R"("type.googleapis.com/google.rpc.ErrorInfo","reason":)"
                       R"("CWSANDBOX_SANDBOX_NOT_FOUND","domain":"cwsandbox.com"}]})");
  // What the server does not implement is answered as the hosted service answers it.
  auto ni = status_from_error(error{errc::unsupported, "spec.volumes: not implemented"});
  CHECK(ni.code == 12);
  CHECK(ni.error_info == wire::ErrorInfo{"CWSANDBOX_NOT_IMPLEMENTED", "cwsandbox.com", {}});
  CHECK(to_json(status_from_error(error{errc::validation, "bad"})) ==
        R"({"code":3,"message":"bad"})");
  // Details the error already carries are passed on.
  error busy{errc::resource_exhausted, "slow down"};
  auto info = std::make_shared<server_error_info>();
  info->reason = "CWSANDBOX_RUNNER_OVERLOADED";
  info->domain = "cwsandbox.com";
  info->metadata = {{"runner", "r1"}};
  info->retry_delay = milliseconds(250);
  busy.server = info;
  auto st = status_from_error(busy);
  CHECK(st.code == 8);
  CHECK(http_status_for(grpc_code::resource_exhausted) == 429);
  CHECK(st.error_info->reason == "CWSANDBOX_RUNNER_OVERLOADED");
  CHECK(st.error_info->metadata.at("runner") == "r1");
  CHECK(st.retry_info->retry_delay == milliseconds(250));
  CHECK(to_json(st).find(R"("retryDelay":"0.250s")") != std::string::npos);
  // An error of another category is INTERNAL.
  CHECK(status_from_error(error{std::make_error_code(std::errc::io_error), "io"}).code == 13);
}

// What a binary codec will read from the descriptors, pinned against the proto.
static_assert(wire::field_at<wire::ExecResponse, 0>.name == "stdout");
static_assert(wire::field_at<wire::ExecResponse, 5>.number == 6);
static_assert(wire::field_at<wire::ExecResponse, 5>.json_name() == "stdoutBytesProduced");
static_assert(wire::wire_type(wire::field_at<wire::ExecResponse, 5>.type) == 0);
static_assert(wire::field_at<wire::SandboxStatus, 5>.number == 9);
static_assert(wire::field_at<wire::SandboxStatus, 5>.explicit_presence);
static_assert(!wire::field_at<wire::ExecResponse, 2>.explicit_presence);
static_assert(wire::field_at<wire::Container, 3>.repeated &&
              !wire::field_at<wire::Container, 3>.packed());
static_assert(wire::field_at<wire::Container, 4>.map);
static_assert(wire::field_at<wire::Container, 4>.json_name() == "environmentVariables");
static_assert(wire::field_at<wire::Container, 0>.options.required);
static_assert(wire::field_at<test_wire::Choice, 2>.packed());
static_assert(wire::field_at<test_wire::Choice, 1>.options.oneof == 1);
static_assert(wire::descriptor<wire::Status>.full_name == "google.rpc.Status");
static_assert(wire::to_string(wire::State::STATE_PAUSED) == "STATE_PAUSED");
static_assert(wire::enum_from_name<wire::State>("STATE_NEW") == wire::State::STATE_UNSPECIFIED);

TEST_CASE("every described message round-trips with every field set", "[codec][descriptor]") {
  round_trip_filled<wire::Resources>();
  round_trip_filled<wire::ResourceRequirements>();
  round_trip_filled<wire::FileMount>();
  round_trip_filled<wire::Container>();
  round_trip_filled<wire::NetworkOptions>();
  round_trip_filled<wire::SandboxSpec>();
  round_trip_filled<wire::SandboxStatus>();
  round_trip_filled<wire::Sandbox>();
  round_trip_filled<wire::ListSandboxesResponse>();
  round_trip_filled<wire::DeleteSandboxResponse>();
  round_trip_filled<wire::ExecRequest>();
  round_trip_filled<wire::ExecResponse>();
  round_trip_filled<wire::WriteFileRequest>();
  round_trip_filled<wire::ReadFileResponse>();
  round_trip_filled<wire::ErrorInfo>();
  round_trip_filled<wire::RetryInfo>();
  round_trip_filled<wire::Status>();
  round_trip_filled<wire::CreateSandboxRequest>();
  round_trip_filled<wire::GetSandboxRequest>();
  round_trip_filled<wire::ListSandboxesRequest>();
  round_trip_filled<wire::DeleteSandboxRequest>();
  round_trip_filled<wire::ReadFileRequest>();
  round_trip_filled<wire::ExecStreamInit>();
  round_trip_filled<wire::ExecStreamResize>();
  for (std::size_t pick : {0, 1, 2, 3}) {
    round_trip_filled<wire::ExecStreamRequest>(pick);
    round_trip_filled<wire::ExecStreamResponse>(pick);
  }
  round_trip_filled<wire::ExecStreamOutput>();
  round_trip_filled<wire::ExecStreamExit>();
  round_trip_filled<wire::StreamLogsRequest>();
  round_trip_filled<wire::LogEntry>();
}

TEST_CASE("a oneof admits one field; repeated enums by name or number", "[codec][descriptor]") {
  using test_wire::Choice;
  CHECK(to_json(Choice{.big_number = 0}) == R"({"bigNumber":"0"})");
  CHECK(to_json(Choice{.states = {wire::State::STATE_RUNNING, static_cast<wire::State>(42)}}) ==
        R"({"states":["STATE_RUNNING",42]})");
  CHECK(decode_ok<Choice>(R"({"text":"a","big_number":null})", strict) == Choice{.text = "a"});
  CHECK(decode_error<Choice>(R"({"text":"a","bigNumber":"1"})") ==
        "bigNumber: another field of the same oneof is set");
  CHECK(decode_error<Choice>(R"({"bigNumber":1,"text":""})", strict) ==
        "text: another field of the same oneof is set");
  CHECK(decode_ok<Choice>(R"({"states":["STATE_PAUSED",2,"STATE_NEW"]})").states ==
        std::vector{wire::State::STATE_PAUSED, wire::State::STATE_RUNNING,
                    wire::State::STATE_UNSPECIFIED});
  auto both = filled<Choice>(
      every_member); // a oneof with both set is the caller's mistake: both are written
  CHECK(decode_error<Choice>(to_json(both)).find("another field of the same oneof") !=
        std::string::npos);
}

TEST_CASE("Status details: the first entry of each known type, with what it needs",
          "[codec][status]") {
  auto details = [](std::string_view entries, decode_mode mode = lenient) {
    return decode_ok<wire::Status>(R"({"details":[)" + std::string(entries) + "]}", mode);
  };
  const std::string retry = R"({"@type":"type.googleapis.com/google.rpc.RetryInfo")";
  // A RetryInfo without a delay says nothing; a delay of 0 is a delay.
  CHECK_FALSE(details(retry + "}").retry_info);
  CHECK_FALSE(details(retry + R"(,"retryDelay":null})").retry_info);
  CHECK_FALSE(details(retry + R"(,"retryDelay":""})").retry_info);
  CHECK(details(retry + R"(,"retryDelay":"0s"})").retry_info == wire::RetryInfo{});
  CHECK(to_json(wire::Status{.retry_info = wire::RetryInfo{}}) ==
        R"({"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"0s"}]})");
  // Later entries of a type already there, and unknown types, are skipped; so are members no
  // known type has, in strict mode too.
  auto st = details(R"({"@type":"x/google.rpc.ErrorInfo"},)"
                    R"({"@type":"x/google.rpc.ErrorInfo","reason":"second"},)"
                    R"({"@type":"x/other.Type","reason":"r"},)"
                    R"({"@type":"x/coreweave.sandbox.v1.ExecResponse","exitCode":3,"future":1})",
                    strict);
  CHECK(st.error_info == wire::ErrorInfo{});
  REQUIRE(st.exec_response);
  CHECK(st.exec_response->exit_code == 3);
  // Members of known types are checked whatever "@type" says.
  CHECK(decode_error<wire::Status>(
            R"({"details":[{"@type":"x/google.rpc.ErrorInfo","exitCode":"x"}]})") ==
        "details[0].exitCode: expected an integer, got a string that is not one");
  CHECK(decode_error<wire::Status>(R"({"details":[null]})") ==
        "details[0]: expected an object, got null");
  CHECK(decode_error<wire::Status>(R"({"details":[{"reason":"a","reason":"b"}]})", strict) ==
        "details[0].reason: duplicate field");
}

TEST_CASE("error paths name keys and indexes, printable and short", "[codec][malformed]") {
  CHECK(decode_error<wire::ListSandboxesResponse>(
            R"({"sandboxes":[{},{"status":{"x\u0001y":[1,{"z":tru}]}}]})") ==
        "sandboxes[1].status.x?y[1].z: invalid literal (expected true, false or null)");
  const std::string long_key(70, 'k');
  CHECK(decode_error<wire::ExecRequest>(R"({"env":{")" + long_key + R"(":1}})") ==
        "env." + std::string(64, 'k') + "...: expected a string, got a number");
}

TEST_CASE("mapping: what the client sends is what the server runs", "[codec][mapping]") {
  const SandboxOptions o{.image = "img",
                         .command = {"python3", "-c", "print(1)"},
                         .env = {{"A", "1"}},
                         .working_dir = "/w",
                         .resources = {.memory_bytes = 1 << 20, .cpus = 1.5},
                         .mounted_files = {{"/f", "x\0y"s}},
                         .tags = {"t"},
                         .annotations = {{"k", "v"}},
                         .max_lifetime = std::chrono::seconds(60)};
  auto spec = decode_ok<wire::SandboxSpec>(to_json(spec_of(o, "default").value()), strict);
  // Only the server's own images: never a directory a client names.
  const std::map<std::string, std::string, std::less<>> images{{"img", "/images/img"}, {"d", ""}};
  auto back = options_of(spec, images, true).value();
  CHECK(back.image == "/images/img");
  auto host_dir = spec;
  host_dir.containers[0].image = "/";
  CHECK(options_of(host_dir, images, true).error().message ==
        "spec.containers[0].image: / is not an image of this server (it has: d, img)");
  CHECK(std::tie(back.command, back.env, back.working_dir, back.tags, back.annotations) ==
        std::tie(o.command, o.env, o.working_dir, o.tags, o.annotations));
  CHECK(back.mounted_files.at(0).content == o.mounted_files[0].content);
  CHECK(std::tie(back.resources.cpus, back.resources.memory_bytes, back.max_lifetime) ==
        std::tie(o.resources.cpus, o.resources.memory_bytes, o.max_lifetime));
  // No command: the keep-alive shell on the wire, a keep-alive sandbox on the server.
  CHECK(options_of(spec_of({}, "d").value(), images, true).value().command.empty());
  // The older `resources` stands in when resourceRequirements says nothing; a placement mode is
  // the hosted service's.
  auto older = spec;
  older.containers[0].resource_requirements.reset();
  older.containers[0].resources = wire::Resources{"250m", "64Mi"};
  auto from_older = options_of(older, images, true).value();
  CHECK(from_older.resources.cpus == 0.25);
  CHECK(from_older.resources.memory_bytes == 64u << 20);
  older.containers[0].resources->memory = "much";
  CHECK(options_of(older, images, true).error().message ==
        "spec.containers[0].resources.memory: bad quantity much");
  auto both = older;
  both.containers[0].resource_requirements = wire::ResourceRequirements{{"1", ""}, {}};
  CHECK(options_of(both, images, true).error().message ==
        "spec.containers[0].resources: given with resourceRequirements; the two are mutually "
        "exclusive");
  older.containers[0].resources->memory = "64Mi";
  older.mode = wire::SandboxMode::SANDBOX_MODE_SERVERLESS; // what unset means: this server
  CHECK(options_of(older, images, true).value().resources.cpus == 0.25);
  older.mode = wire::SandboxMode::SANDBOX_MODE_CKS; // the caller's own cluster
  CHECK(options_of(older, images, true).error().is(errc::unsupported));
  spec.containers[0].resource_requirements->limits.cpu = "lots";
  CHECK(options_of(spec, images, true).error().message ==
        "spec.containers[0].resourceRequirements.limits.cpu: bad quantity lots");
  ExecOptions eo;
  eo.cwd = "/tmp";
  CHECK(exec_request_of(std::vector<std::string>{"ls"}, eo, 0).command ==
        std::vector<std::string>{"/bin/sh", "-c", "cd /tmp && exec ls"});
  ExecResult r{"out", "err", 3};
  r.stdout_bytes_produced = 10;
  auto again = result_of(response_of(ExecResult(r)), {"ls"});
  CHECK(std::tie(again.stdout_text, again.returncode, again.stdout_bytes_produced) ==
        std::tie(r.stdout_text, r.returncode, r.stdout_bytes_produced));
  CHECK(again.stderr_bytes_produced == 3); // a peer that leaves the counts out sent it all
  // Query parameters are named by protoc's JSON-name rule, as fields are.
  CHECK(wire::json_name("request_id") == "requestId");
  CHECK(wire::json_name("a__b_") == "aB");
}
