// SPDX-License-Identifier: MIT
// Large base64 values outside the JSON text: a body sent in pieces is the codec's text byte for
// byte, and a body taken apart as it arrives decodes to what the codec decodes from it whole,
// however it is cut.
#include "../support/residency.hpp"

#include <sandbox/transport/http/codec.hpp>
#include <sandbox/transport/http/detail/spliced_json.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cinttypes>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace sandbox;
using namespace sandbox::http;
using sandbox::http::detail::json::json_splicer;
using sandbox::http::detail::json::spliced_json;

namespace {

std::string bytes_of(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i)
    s[i] = static_cast<char>((i * 131 + seed * 7 + (i >> 9)) & 0xff);
  return s;
}

/// `body` as the client reads it: fed to a splicer in pieces of `cut` bytes, its text decoded,
/// the taken values put back.
template <class T>
result<T> spliced_decode(std::string_view body, std::size_t cut) {
  json_splicer s(sandbox::http::detail::json::spliceable_fields<T>());
  s.expect(body.size());
  for (std::size_t at = 0; at < body.size(); at += cut) {
    SANDBOX_TRYV(s.feed(body.substr(at, cut)));
  }
  SANDBOX_TRY(v, from_json<T>(s.text(), decode_mode::lenient));
  sandbox::http::detail::json::put_spliced(v, s.values());
  return v;
}

/// Every way of cutting `body` in two, and pieces of 1 to 7 bytes, decode as the whole does.
template <class T>
void same_as_whole(std::string_view body) {
  INFO(body.substr(0, 300));
  auto whole = from_json<T>(body, decode_mode::lenient);
  std::vector<std::size_t> cuts = {1, 2, 3, 4, 5, 7, body.size() + 1};
  for (std::size_t c : cuts) {
    INFO("pieces of " << c);
    auto r = spliced_decode<T>(body, c);
    REQUIRE(r.has_value() == whole.has_value());
    if (whole) CHECK(r.value() == whole.value());
  }
}

wire::ExecResponse response(std::size_t out, std::size_t err) {
  wire::ExecResponse r;
  r.stdout_bytes = bytes_of(out, 1);
  r.stderr_bytes = bytes_of(err, 2);
  r.exit_code = 3;
  r.stdout_truncated = true;
  r.stdout_bytes_produced = static_cast<std::int64_t>(out) + 10;
  return r;
}

} // namespace

TEST_CASE("a spliced body is the codec's text, from any offset", "[codec][splice]") {
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{3},
                        std::size_t{100}, (std::size_t{768} << 10) - 1, std::size_t{768} << 10,
                        (std::size_t{768} << 10) + 1, std::size_t{2} << 20}) {
    INFO("stdout of " << n << " bytes");
    const auto msg = response(n, n / 3 + 5);
    const std::string expected = to_json(msg);
    auto body = spliced_json::of(msg, 1);
    REQUIRE(body.size() == expected.size());
    CHECK_FALSE(body.whole());
    // Sent in order, piece by piece.
    std::string sent;
    while (sent.size() < body.size()) {
      auto piece = body.piece(sent.size());
      REQUIRE(!piece.empty());
      sent.append(piece);
    }
    CHECK(sent == expected);
    // Sent in small ranges: what is asked for is what comes.
    for (std::size_t most : {1, 2, 3, 5, 4096}) {
      if (n > 100000 && most < 4096) continue; // tiny ranges of megabytes show nothing new
      std::string ranged;
      while (ranged.size() < body.size()) {
        auto piece = body.piece(ranged.size(), most).substr(0, most);
        if (piece.empty()) FAIL("no progress at offset " << ranged.size());
        ranged.append(piece);
      }
      CHECK(ranged == expected);
    }
    // Asked for at any offset (a range, a restart): the same bytes there.
    for (std::size_t at : {std::size_t{0}, std::size_t{1}, std::size_t{11}, std::size_t{12},
                           std::size_t{13}, expected.size() / 2, expected.size() - 1}) {
      auto piece = body.piece(at);
      REQUIRE(!piece.empty());
      CHECK(piece == std::string_view(expected).substr(at, piece.size()));
    }
  }
  // Small values stay in the text: one string, nothing to encode later.
  auto small = spliced_json::of(response(10, 10));
  CHECK(small.whole());
  CHECK(std::move(small).take_text() == to_json(response(10, 10)));
}

TEST_CASE("a body taken apart as it arrives decodes as the whole does", "[codec][splice]") {
  SECTION("our own encoding, cut everywhere") {
    for (std::size_t n : {0, 1, 2, 3, 4, 5, 6, 7, 100}) {
      auto msg = response(n, n / 2);
      const std::string body = to_json(msg);
      same_as_whole<wire::ExecResponse>(body);
      for (std::size_t cut = 1; cut < body.size(); ++cut) {
        auto r = spliced_decode<wire::ExecResponse>(body, cut);
        REQUIRE(r);
        CHECK(r.value() == msg);
      }
    }
  }
  SECTION("what another server may write") {
    // Whitespace, unpadded and URL-safe base64, escapes inside the value, members in any order.
    same_as_whole<wire::ExecResponse>(
        R"( { "exitCode" : 2 , "stdout" : "aGVsbG8" , "stderr":"-_-_" } )");
    same_as_whole<wire::ExecResponse>(R"({"stdout":"a\/\/\u0041Q\u003d\u003d"})");
    same_as_whole<wire::ExecResponse>(R"({"stdout":"QUJD","stdout":"REVG"})");
    same_as_whole<wire::ExecResponse>(R"({"stdout":"QUJD","stdout":null})");
    same_as_whole<wire::ExecResponse>(R"({"stdout":null,"stderr":""})");
    // A key with escapes names the same member (the codec undoes them); one nested below the
    // top level is not a member of this message.
    same_as_whole<wire::ExecResponse>(R"({"std\u006fut":"QUJD"})");
    same_as_whole<wire::ExecResponse>(R"({"stdout":"QUJD","std\u006fut":"REVG"})");
    same_as_whole<wire::ExecResponse>(R"({"stdout":"QUJD","std\u006fut":null})");
    same_as_whole<wire::ExecResponse>(R"({"std\u006fut":"QUJD","stdout":""})");
    same_as_whole<wire::ExecResponse>(R"({"s\/tdout":"QUJD","stdout\u0000":"QUJD"})");
    same_as_whole<wire::ReadFileResponse>(R"({"content":"QUJD","cont\u0065nt":"REVG"})");
    same_as_whole<wire::ExecResponse>(
        R"({"x":{"stdout":"!!"},"y":[{"stdout":"!"}],"stdout":"QUJD"})");
    // Keys and strings that look like structure.
    same_as_whole<wire::ExecResponse>(R"({"x\":{\"stdout":"[{,:","stdout":"QUJD"})");
  }
  SECTION("bad input is refused as whole") {
    for (std::string_view bad :
         {R"({"stdout":"QUJ"})", R"({"stdout":"Q"})", R"({"stdout":"QQ==QUJD"})",
          R"({"stdout":"QQ=="   )", R"({"stdout":"QU!D"})", R"({"stdout":"QUJD)",
          R"({"stdout":"\q"})", R"({"stdout":"\u00e9AAA"})", R"({"stdout":"\uZZZZ"})",
          R"({"stdout":"QU)"
          "\n"
          R"(JD"})",
          R"({"stdout":"QUJD",})", R"({"stdout":7})"})
      same_as_whole<wire::ExecResponse>(bad);
  }
  SECTION("an error is the same however the body is cut") {
    for (std::string_view bad : {R"({"stdout":"QU!DQQ==QQ"})", R"({"stdout":"=QUJDRA=="})",
                                 R"({"stdout":"QUJDQQ==\tQ"})", R"({"stdout":"QUJD\u00e9Q=="})"}) {
      INFO(bad);
      auto whole = spliced_decode<wire::ExecResponse>(bad, bad.size());
      REQUIRE_FALSE(whole);
      for (std::size_t cut = 1; cut < bad.size(); ++cut) {
        auto r = spliced_decode<wire::ExecResponse>(bad, cut);
        REQUIRE_FALSE(r);
        CHECK(r.error().message == whole.error().message);
      }
    }
  }
  SECTION("an error names the member and the offset in its value") {
    auto r = spliced_decode<wire::ExecResponse>(R"({"stdout":"QUJDQUJD!UJD"})", 3);
    REQUIRE_FALSE(r);
    CHECK(r.error().is(errc::protocol));
    CHECK(r.error().message == "stdout: invalid base64: character '!' at offset 8");
    auto pad = spliced_decode<wire::ExecResponse>(R"({"stderr":"QUJDQQ==QUJD"})", 5);
    REQUIRE_FALSE(pad);
    CHECK(pad.error().message == "stderr: invalid base64: '=' before the end at offset 6");
    auto len = spliced_decode<wire::ExecResponse>(R"({"stdout":"QUJDQUJDQ"})", 4);
    REQUIRE_FALSE(len);
    CHECK(len.error().message == "stdout: invalid base64: length 9 is not possible");
  }
}

TEST_CASE("large values decoded in parts grow their buffer geometrically", "[codec][splice]") {
  // Without the body's length (chunked), each part appends; a buffer grown by each part alone
  // would be copied whole every time (this many parts would then take minutes).
  const std::string raw = bytes_of(std::size_t{8} << 20, 5);
  const std::string body = "{\"stdout\":\"" + base64_encode(raw) + "\"}";
  json_splicer s(sandbox::http::detail::json::spliceable_fields<wire::ExecResponse>());
  std::size_t grown = 0, capacity = 0;
  for (std::size_t at = 0; at < body.size(); at += 4096) {
    REQUIRE(s.feed(std::string_view(body).substr(at, 4096)));
    if (s.values()[0].capacity() != capacity) ++grown, capacity = s.values()[0].capacity();
  }
  CHECK(s.values()[0] == raw);
  CHECK(grown < 20);
}

TEST_CASE("a large value's room is faulted in ahead of its decoding by a thread of its own",
          "[codec][splice][output]") {
  // As a kept output's: the kernel zeroes each fresh page beside the decoding, not in front of it.
  using test_support::threads_named;
  test_support::unperturbed quiet;
  if (!test_support::kernel_populates()) {
    WARN("MADV_POPULATE_WRITE is refused here: nothing is faulted in ahead");
    return;
  }
  const std::string raw = bytes_of((std::size_t{40} << 20) + 4097, 9);
  const std::string body = "{\"stdout\":\"" + base64_encode(raw) + "\",\"exitCode\":3}";
  std::optional<json_splicer> s(
      std::in_place, sandbox::http::detail::json::spliceable_fields<wire::ExecResponse>());
  s->expect(body.size());
  const std::size_t half = body.size() / 2;
  int most_threads = 0;
  for (std::size_t at = 0; at < half; at += 4096) {
    REQUIRE(s->feed(std::string_view(body).substr(at, std::min<std::size_t>(4096, half - at))));
    if (at % (std::size_t{1} << 20) == 0)
      most_threads = std::max(most_threads, threads_named("sandbox-ahead"));
  }
  const std::string& value = s->values()[0];
  REQUIRE(value.capacity() >= raw.size());
  // The next 4 MiB, which nothing has written yet (asked for at the last step, up to 8 MiB on).
  const char* end = value.data() + value.size();
  CHECK(test_support::becomes_resident(end + 4096, end + (std::size_t{4} << 20)));
  CHECK(most_threads == 1);
  REQUIRE(s->feed(std::string_view(body).substr(half)));
  CHECK(s->values()[0] == raw);
  CHECK(s->text() == "{\"stdout\":\"\",\"exitCode\":3}");
  s.reset();
  CHECK(threads_named("sandbox-ahead") == 0);
}

TEST_CASE("a large value of a body whose length is not known grows under the thread that faults "
          "it in ahead, and what was faulted in past it goes back",
          "[codec][splice][output]") {
  // A chunked body: the room grows as the value does (moving it), and a member that comes again
  // is taken afresh into the same buffer.
  test_support::unperturbed quiet;
  const bool populates = test_support::kernel_populates();
  const std::string first = bytes_of(std::size_t{40} << 20, 3);
  const std::string second = bytes_of((std::size_t{36} << 20) + 5, 4);
  const std::string body =
      "{\"stdout\":\"" + base64_encode(first) + "\",\"stdout\":\"" + base64_encode(second) + "\"}";
  std::optional<json_splicer> s(
      std::in_place, sandbox::http::detail::json::spliceable_fields<wire::ExecResponse>());
  for (std::size_t at = 0; at < body.size(); at += 4096)
    REQUIRE(s->feed(std::string_view(body).substr(at, 4096)));
  const std::string& value = s->values()[0];
  CHECK(value == second);
  REQUIRE(value.capacity() >= value.size() + (std::size_t{8} << 20));
  // Ended with the value: none of its room past the content is resident any more.
  if (populates) CHECK(test_support::resident_past_content(value) == 0);
  s.reset();
  CHECK(test_support::threads_named("sandbox-ahead") == 0);

  // Refused midway, by bad base64 or by an escape JSON does not have: handed back all the same.
  for (const char* bad : {"!", "\\x"}) {
    INFO("refused at " << bad);
    std::string text = base64_encode(first);
    text.insert(std::size_t{30} << 20, bad);
    const std::string refused = "{\"stdout\":\"" + text + "\"}";
    s.emplace(sandbox::http::detail::json::spliceable_fields<wire::ExecResponse>());
    bool fed = true;
    for (std::size_t at = 0; at < refused.size() && fed; at += 4096)
      fed = s->feed(std::string_view(refused).substr(at, 4096)).has_value();
    CHECK_FALSE(fed);
    if (populates) CHECK(test_support::resident_past_content(s->values()[0]) == 0);
    s.reset();
  }
}

TEST_CASE("a body that claims far more than it sends reserves no more than an output would",
          "[codec][splice][output]") {
  // A hostile server's Content-Length: under an address-space limit, reserving what it claims
  // failed, and an allocation failure in noexcept code ends the process. In a child, whose
  // limit is the test's own.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (!test_support::limit_to_use_plus(RLIMIT_AS, "VmSize: %" SCNu64, std::uint64_t{256} << 20))
      ::_exit(2);
    json_splicer s(sandbox::http::detail::json::spliceable_fields<wire::ExecResponse>());
    s.expect(std::uint64_t{4} << 30);
    const bool ok = s.feed("{\"stdout\":\"AAAA").has_value() && s.feed("\"}").has_value() &&
                    s.values()[0] == std::string(3, '\0');
    ::_exit(ok ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status)); // not killed by an abort
  CHECK(WEXITSTATUS(status) == 0);
}
