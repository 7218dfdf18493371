// SPDX-License-Identifier: MIT
// For .ci/wire-protobuf: converts messages between our JSON and our protobuf binary encodings, so
// that protobuf itself (with the API's descriptors) can check what we encode and decode. One
// conversion per line on stdin, "<to> <message> <base64 input>", where <to> is `pb` (JSON in,
// binary out) or `json` (binary in, JSON out), both decodes strict; one line out for each:
// "ok <base64 output>" or "error <message>".
#include <sandbox/transport/http/base64.hpp>
#include <sandbox/transport/http/codec.hpp>
#include <sandbox/transport/http/protobuf.hpp>

#include <iostream>
#include <string>
#include <string_view>

namespace {

using namespace sandbox::http;

template <class T>
sandbox::result<std::string> convert(bool to_pb, std::string_view in) {
  if (to_pb) {
    SANDBOX_TRY(v, from_json<T>(in, decode_mode::strict));
    return to_protobuf(v);
  }
  SANDBOX_TRY(v, from_protobuf<T>(in, decode_mode::strict));
  return to_json(v);
}

/// The conversion of the message named `name` (its full proto name).
template <class... T>
sandbox::result<std::string> by_name(std::string_view name, bool to_pb, std::string_view in) {
  sandbox::result<std::string> out =
      sandbox::error(sandbox::errc::validation, "no message " + std::string(name));
  ((wire::descriptor<T>.full_name == name ? (void)(out = convert<T>(to_pb, in)) : (void)0), ...);
  return out;
}

} // namespace

int main() {
  for (std::string line; std::getline(std::cin, line);) {
    auto a = line.find(' '), b = line.find(' ', a + 1);
    auto input = base64_decode(std::string_view(line).substr(b + 1));
    if (a == std::string::npos || b == std::string::npos || !input) {
      std::cout << "error malformed line\n" << std::flush;
      continue;
    }
    const bool to_pb = line.substr(0, a) == "pb";
    auto out =
        by_name<wire::Sandbox, wire::SandboxSpec, wire::SandboxStatus, wire::Container,
                wire::ListSandboxesResponse, wire::DeleteSandboxResponse, wire::ExecRequest,
                wire::ExecResponse, wire::WriteFileRequest, wire::ReadFileResponse,
                wire::PurgeSandboxesRequest, wire::PurgeSandboxesResponse, wire::Status,
                wire::CreateSandboxRequest, wire::GetSandboxRequest, wire::ListSandboxesRequest,
                wire::DeleteSandboxRequest, wire::ReadFileRequest, wire::WriteFileResponse,
                wire::ExecStreamRequest, wire::ExecStreamResponse, wire::StreamLogsRequest,
                wire::LogEntry>(line.substr(a + 1, b - a - 1), to_pb, input.value());
    if (out)
      std::cout << "ok " << base64_encode(out.value()) << "\n" << std::flush;
    else
      std::cout << "error " << out.error().message << "\n" << std::flush;
  }
}
