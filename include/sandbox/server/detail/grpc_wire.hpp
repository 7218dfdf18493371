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

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sandbox::serve::detail {

/// The bytes of a received message, in one piece: in `room` when it has enough (a buffer
/// reused, see `buffer_pool`).
[[nodiscard]] inline std::string bytes_of(const grpc::ByteBuffer& b, std::string room = {}) {
  std::vector<grpc::Slice> slices;
  std::string out = std::move(room);
  out.clear();
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

/// Spare buffers for the bytes of messages, handed back once a message is sent and taken again
/// for the next one, instead of being freed and allocated afresh: the allocator hands large
/// blocks back to the kernel, whose fresh pages are then faulted in 4 KiB at a time, at a
/// fraction of the speed of the copy that fills them.
class buffer_pool {
public:
  /// Keeps at most `most` spares, each of `smallest` to `largest` bytes of room (a smaller one
  /// costs little to allocate again, and would hold a place a large one could take).
  buffer_pool(std::size_t most, std::size_t smallest, std::size_t largest)
      : most_(most), smallest_(smallest), largest_(largest) {
    spare_.reserve(most);
  }

  /// A spare (empty, with its room), or an empty string.
  [[nodiscard]] std::string take() {
    std::lock_guard lk(m_);
    if (spare_.empty()) return {};
    std::string s = std::move(spare_.back());
    spare_.pop_back();
    return s;
  }

  /// Keeps `s` as a spare if there is room for it (the room is reserved: this never allocates).
  void give(std::string&& s) noexcept {
    if (s.capacity() < smallest_ || s.capacity() > largest_) return;
    s.clear();
    std::lock_guard lk(m_);
    if (spare_.size() < most_) spare_.push_back(std::move(s));
  }

private:
  std::mutex m_;
  std::vector<std::string> spare_;
  std::size_t most_, smallest_, largest_;
};

/// A message to send from its spliced encoding: the text is copied, the values are referred to
/// and `owner` (what holds them) is kept until grpc++ is done with the last of them.
[[nodiscard]] inline grpc::ByteBuffer buffer_of(const http::spliced_protobuf& s,
                                                const std::shared_ptr<const void>& owner) {
  std::vector<grpc::Slice> slices;
  slices.reserve(2 * s.holes.size() + 1);
  std::size_t at = 0;
  for (const auto& h : s.holes) {
    if (h.at > at) slices.emplace_back(s.text.data() + at, h.at - at);
    at = h.at;
    if (h.bytes.empty()) continue;
    auto* held = new std::shared_ptr<const void>(owner);
    slices.emplace_back(
        const_cast<char*>(h.bytes.data()), h.bytes.size(),
        [](void* p) { delete static_cast<std::shared_ptr<const void>*>(p); }, held);
  }
  if (at < s.text.size()) slices.emplace_back(s.text.data() + at, s.text.size() - at);
  if (slices.empty()) slices.emplace_back();
  return grpc::ByteBuffer(slices.data(), slices.size());
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
