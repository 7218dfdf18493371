// SPDX-License-Identifier: MIT
// What the gRPC front end needs between grpc++ and the wire model: messages in and out of
// `grpc::ByteBuffer` (the protobuf codec, no generated code) and errors as a `grpc::Status` whose
// details carry the same google.rpc.Status (ErrorInfo, RetryInfo) as a REST error body.
#pragma once

#include <sandbox/detail/utf8.hpp>
#include <sandbox/errors.hpp>
#include <sandbox/result.hpp>
#include <sandbox/transport/http/protobuf.hpp>
#include <sandbox/transport/http/status.hpp>

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sandbox::serve::detail {

/// The bytes of a received message, in one piece.
[[nodiscard]] inline std::string bytes_of(const grpc::ByteBuffer& b) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!b.Dump(&slices).ok()) return out;
  out.reserve(b.Length());
  for (const auto& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

/// A message to send, taking `bytes` over without a copy.
[[nodiscard]] inline grpc::ByteBuffer buffer_of(std::string bytes) {
  if (bytes.empty()) {
    grpc::Slice none;
    return grpc::ByteBuffer(&none, 1);
  }
  auto* held = new std::string(std::move(bytes));
  grpc::Slice s(
      held->data(), held->size(), [](void* p) { delete static_cast<std::string*>(p); }, held);
  return grpc::ByteBuffer(&s, 1);
}

/// A described message, encoded: strings as given (a client's request), or with
/// `http::strings::utf8` as a server answers (see `http::to_protobuf`). Named at each call.
template <http::strings S, http::wire::described_message M>
[[nodiscard]] grpc::ByteBuffer buffer_of(const M& m) {
  return buffer_of(http::to_protobuf<S>(m));
}

/// A received message, decoded strictly (as REST bodies are).
template <http::wire::described_message M>
[[nodiscard]] result<M> message_of(const grpc::ByteBuffer& b) {
  return http::from_protobuf<M>(bytes_of(b), http::decode_mode::strict);
}

/// The gRPC status of a google.rpc.Status: its code and message, and itself, serialized, as the
/// `grpc-status-details-bin` trailer.
[[nodiscard]] inline grpc::Status grpc_status_of(const http::wire::Status& st) {
  return grpc::Status(static_cast<grpc::StatusCode>(st.code),
                      sandbox::detail::valid_utf8(st.message),
                      http::to_protobuf<http::strings::utf8>(st));
}

/// The gRPC status of an error: the same code, message and details as a REST error body.
[[nodiscard]] inline grpc::Status grpc_status_of(const error& e) {
  return grpc_status_of(http::status_from_error(e));
}

} // namespace sandbox::serve::detail
