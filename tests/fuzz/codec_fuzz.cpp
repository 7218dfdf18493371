// SPDX-License-Identifier: MIT
// libFuzzer target for the JSON codec: arbitrary bytes go to every from_json<T> in both modes;
// whatever decodes must encode and decode again to an equal value. Also exercises base64 and the
// JSON writer on raw bytes. Any abort, sanitizer report or leak is a finding.
//
// Build: a clang build directory (`CXX=clang++ meson setup build-fuzz`), target
// tests/fuzz/codec_fuzz; run: tests/fuzz/run.sh build-fuzz/tests/fuzz/codec_fuzz 30
#include <sandbox/transport/http/codec.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using namespace sandbox;
using namespace sandbox::http;

[[noreturn]] void finding(const char* what, std::string_view detail) {
  std::fprintf(stderr, "codec_fuzz: %s: %.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

template <class T>
void decode_round_trip(std::string_view in, decode_mode mode) {
  auto r = from_json<T>(in, mode);
  if (!r) {
    const auto expected = mode == decode_mode::strict ? errc::validation : errc::protocol;
    // Strict decodes also refuse the fields our server does not implement.
    const bool unimplemented = mode == decode_mode::strict && r.error().is(errc::unsupported);
    if (!r.error().is(expected) && !unimplemented) finding("unexpected errc", r.error().message);
    if (r.error().message.empty()) finding("empty error message", in);
    return;
  }
  const std::string once = to_json(r.value());
  auto again = from_json<T>(once, mode);
  if (!again) finding("re-decoding our own encoding failed", again.error().message);
  if (!(again.value() == r.value())) finding("round trip changed the value", once);
  if (to_json(again.value()) != once) finding("encoding is not stable", once);
}

void base64_round_trip(std::string_view in) {
  if (auto r = base64_decode(in)) {
    auto back = base64_decode(base64_encode(r.value()));
    if (!back || back.value() != r.value()) finding("base64 round trip", in);
  } else if (!r.error().is(errc::protocol)) {
    finding("base64 errc", r.error().message);
  }
  auto enc = base64_encode(in);
  auto dec = base64_decode(enc);
  if (!dec || dec.value() != in) finding("base64 encode/decode", enc);
}

/// Raw bytes as a string field must always give a body that decodes strictly; valid UTF-8 must
/// survive unchanged.
void writer_round_trip(std::string_view in) {
  wire::ExecRequest rq;
  rq.command = {std::string(in)};
  rq.env = {{std::string(in), std::string(in)}};
  auto r = from_json<wire::ExecRequest>(to_json(rq), decode_mode::strict);
  if (!r) finding("writer produced an undecodable body", r.error().message);
  const bool valid_utf8 = simdjson::validate_utf8(in.data(), in.size());
  if (valid_utf8 && r.value() != rq) finding("valid UTF-8 changed on the way", in);
  if (!valid_utf8 && r.value().command.at(0).find("\xEF\xBF\xBD") == std::string::npos)
    finding("invalid UTF-8 was not replaced", in);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  for (auto mode : {decode_mode::lenient, decode_mode::strict}) {
    decode_round_trip<wire::Sandbox>(in, mode);
    decode_round_trip<wire::SandboxSpec>(in, mode);
    decode_round_trip<wire::SandboxStatus>(in, mode);
    decode_round_trip<wire::Container>(in, mode);
    decode_round_trip<wire::ListSandboxesResponse>(in, mode);
    decode_round_trip<wire::DeleteSandboxResponse>(in, mode);
    decode_round_trip<wire::ExecRequest>(in, mode);
    decode_round_trip<wire::ExecResponse>(in, mode);
    decode_round_trip<wire::WriteFileRequest>(in, mode);
    decode_round_trip<wire::ReadFileResponse>(in, mode);
    decode_round_trip<wire::Status>(in, mode);
  }
  base64_round_trip(in);
  writer_round_trip(in);
  return 0;
}
