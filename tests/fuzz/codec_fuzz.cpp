// SPDX-License-Identifier: MIT
// libFuzzer target for the wire codecs: arbitrary bytes go to every from_json<T> and every
// from_protobuf<T> in both modes; whatever decodes must encode and decode again to an equal
// value, in its own encoding and in the other one. Also exercises base64 and the JSON writer on
// raw bytes. Any abort, sanitizer report or leak is a finding.
//
// Build: a clang build directory (`CXX=clang++ meson setup build-fuzz`), target
// tests/fuzz/codec_fuzz; run: tests/fuzz/run.sh build-fuzz/tests/fuzz/codec_fuzz 30
#include <sandbox/transport/http/codec.hpp>
#include <sandbox/transport/http/detail/spliced_json.hpp>
#include <sandbox/transport/http/protobuf.hpp>

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

/// A refused input: the errc of its mode (strict decodes also refuse the fields our server does
/// not implement), and a message that says why.
void check_refusal(const error& e, decode_mode mode, std::string_view in) {
  const auto expected = mode == decode_mode::strict ? errc::validation : errc::protocol;
  const bool unimplemented = mode == decode_mode::strict && e.is(errc::unsupported);
  if (!e.is(expected) && !unimplemented) finding("unexpected errc", e.message);
  if (e.message.empty()) finding("empty error message", in);
}

template <class T>
void decode_round_trip(std::string_view in, decode_mode mode) {
  auto r = from_json<T>(in, mode);
  if (!r) return check_refusal(r.error(), mode, in);
  const std::string once = to_json(r.value());
  auto again = from_json<T>(once, mode);
  if (!again) finding("re-decoding our own encoding failed", again.error().message);
  if (!(again.value() == r.value())) finding("round trip changed the value", once);
  if (to_json(again.value()) != once) finding("encoding is not stable", once);
}

/// The same for the protobuf binary encoding. A value that decodes must also cross to JSON and
/// back unchanged: both codecs are driven by one description of each message.
template <class T>
void protobuf_round_trip(std::string_view in, decode_mode mode) {
  auto r = from_protobuf<T>(in, mode);
  if (!r) return check_refusal(r.error(), mode, in);
  const std::string once = to_protobuf(r.value());
  auto again = from_protobuf<T>(once, mode);
  if (!again) finding("re-decoding our own protobuf failed", again.error().message);
  if (!(again.value() == r.value())) finding("protobuf round trip changed the value", once);
  if (to_protobuf(again.value()) != once) finding("protobuf encoding is not stable", once);
  // Strings that are not UTF-8 are the one thing JSON cannot carry unchanged (they become
  // U+FFFD): the JSON form must decode and encode to itself.
  const std::string json = to_json(r.value());
  auto crossed = from_json<T>(json, decode_mode::lenient);
  if (!crossed) finding("our protobuf value does not survive JSON", crossed.error().message);
  if (to_json(crossed.value()) != json) finding("protobuf -> JSON -> JSON is not stable", json);
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

/// A body taken apart as it arrives (in pieces of `cut` bytes, as a client receives it) decodes
/// exactly when, and to what, the whole body decodes; a value sent in pieces is the codec's text.
template <class T>
void splice_round_trip(std::string_view in, std::size_t cut) {
  namespace json = sandbox::http::detail::json;
  auto whole = from_json<T>(in, decode_mode::lenient);
  json::json_splicer s(json::spliceable_fields<T>());
  s.expect(in.size());
  bool fed = true;
  for (std::size_t at = 0; fed && at < in.size(); at += cut)
    fed = s.feed(in.substr(at, cut)).has_value();
  auto parts = fed ? from_json<T>(s.text(), decode_mode::lenient)
                   : result<T>(fail(errc::protocol, "splice"));
  if (parts) json::put_spliced(parts.value(), s.values());
  if (parts.has_value() != whole.has_value()) finding("spliced decode disagrees", in);
  if (!whole) return;
  if (!(parts.value() == whole.value())) finding("spliced decode changed the value", in);
  auto body = json::spliced_json::of(whole.value(), 1);
  std::string sent;
  while (sent.size() < body.size())
    sent.append(body.piece(sent.size()));
  if (sent != to_json(whole.value())) finding("spliced body differs from the codec's", sent);
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
    protobuf_round_trip<wire::Sandbox>(in, mode);
    protobuf_round_trip<wire::SandboxSpec>(in, mode);
    protobuf_round_trip<wire::SandboxStatus>(in, mode);
    protobuf_round_trip<wire::Container>(in, mode);
    protobuf_round_trip<wire::ListSandboxesResponse>(in, mode);
    protobuf_round_trip<wire::DeleteSandboxResponse>(in, mode);
    protobuf_round_trip<wire::ExecRequest>(in, mode);
    protobuf_round_trip<wire::ExecResponse>(in, mode);
    protobuf_round_trip<wire::WriteFileRequest>(in, mode);
    protobuf_round_trip<wire::ReadFileResponse>(in, mode);
    protobuf_round_trip<wire::Status>(in, mode);
  }
  const std::size_t cut = size > 0 ? 1 + data[0] % 16 : 1;
  splice_round_trip<wire::ExecResponse>(in, cut);
  splice_round_trip<wire::ReadFileResponse>(in, cut);
  base64_round_trip(in);
  writer_round_trip(in);
  return 0;
}
