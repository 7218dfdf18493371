// SPDX-License-Identifier: MIT
// A blocking gRPC client of the v1 SandboxService for tests and benchmarks: grpc++'s generic stub
// on a completion queue, messages through the library's protobuf codec. One operation at a time
// per call.
#pragma once

#include <sandbox/server/detail/grpc_wire.hpp>
#include <sandbox/transport/http/protobuf.hpp>
#include <sandbox/transport/http/wire.hpp>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace sandbox::testing {

namespace wire = http::wire;

/// A call's outcome: its status, and the answer when the status is OK.
template <class M>
struct rpc_result {
  grpc::Status status;
  M message{};
  [[nodiscard]] bool ok() const noexcept { return status.ok(); }
  /// The google.rpc.Status in the call's `grpc-status-details-bin`, decoded.
  [[nodiscard]] wire::Status details() const {
    auto s = http::from_protobuf<wire::Status>(status.error_details(), http::decode_mode::lenient);
    return s ? s.value() : wire::Status{};
  }
};

class rpc_client {
public:
  /// `target` is HOST:PORT; `auth` the whole authorization value ("" sends none).
  /// `own_connection`: a connection of this client's alone (channels to one target otherwise
  /// share one). `window`: when set, what a stream may receive ahead of its reader, fixed (as
  /// grpc++ otherwise grows it while data flows), on a connection of its own.
  rpc_client(const std::string& target, std::string auth, bool own_connection = false,
             int window = 0)
      : auth_(std::move(auth)), stub_(channel(target, own_connection, window)) {}

  static std::shared_ptr<grpc::Channel> channel(const std::string& target,
                                                bool own_connection = false, int window = 0) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    if (own_connection || window > 0) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    if (window > 0) {
      args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
      args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, window);
    }
    return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  }

  static std::string method(const std::string& name) {
    return "/coreweave.sandbox.v1.SandboxService/" + name;
  }

  /// A unary call of method `name` (a request given as a std::string is sent as those bytes);
  /// `deadline` unset: none.
  template <class Response, class Request>
  rpc_result<Response> unary(const std::string& name, const Request& rq,
                             std::optional<std::chrono::milliseconds> deadline = std::nullopt,
                             const std::string* metadata_key = nullptr) {
    grpc::ClientContext ctx;
    prepare(ctx, deadline, metadata_key);
    grpc::CompletionQueue cq;
    grpc::ByteBuffer in, out;
    if constexpr (std::is_same_v<Request, std::string>)
      in = serve::detail::buffer_of(std::string(rq));
    else
      in = serve::detail::buffer_of<http::strings::as_given>(rq);
    auto call = stub_.PrepareUnaryCall(&ctx, method(name), in, &cq);
    call->StartCall();
    rpc_result<Response> r;
    call->Finish(&out, &r.status, tag(1));
    next(cq);
    if (r.status.ok()) {
      auto m =
          http::from_protobuf<Response>(serve::detail::bytes_of(out), http::decode_mode::lenient);
      if (m)
        r.message = std::move(m).value();
      else
        r.status =
            grpc::Status(grpc::StatusCode::INTERNAL, "undecodable answer: " + m.error().message);
    }
    return r;
  }

  /// A streaming call (bidirectional StreamExec by default; StreamLogs: write one request, then
  /// read).
  class stream {
  public:
    stream(rpc_client& c, std::optional<std::chrono::milliseconds> deadline,
           const std::string& name = "StreamExec") {
      c.prepare(ctx_, deadline, nullptr);
      call_ = c.stub_.PrepareCall(&ctx_, method(name), &cq_);
      call_->StartCall(tag(1));
      next(cq_);
    }
    ~stream() {
      if (!finished_) {
        ctx_.TryCancel();
        (void)finish();
      }
      cq_.Shutdown();
      void* t = nullptr;
      bool ok = false;
      while (cq_.Next(&t, &ok)) {
      }
    }
    stream(const stream&) = delete;
    stream& operator=(const stream&) = delete;

    template <class M>
    bool write(const M& m) {
      grpc::ByteBuffer b = serve::detail::buffer_of<http::strings::as_given>(m);
      call_->Write(b, tag(2));
      return next(cq_);
    }
    /// Writes `m` with the half-close, in one operation (as a client without stdin sends init).
    template <class M>
    bool write_last(const M& m) {
      grpc::ByteBuffer b = serve::detail::buffer_of<http::strings::as_given>(m);
      call_->WriteLast(b, grpc::WriteOptions(), tag(2));
      return next(cq_);
    }
    bool writes_done() {
      call_->WritesDone(tag(3));
      return next(cq_);
    }
    /// The next message, or nullopt at the end of the stream.
    template <class M = wire::ExecStreamResponse>
    std::optional<M> read() {
      grpc::ByteBuffer b;
      call_->Read(&b, tag(4));
      if (!next(cq_)) return std::nullopt;
      flat_ = serve::detail::bytes_of(b, std::move(flat_)); // one buffer for every message
      auto m = http::from_protobuf<M>(flat_, http::decode_mode::lenient);
      if (!m) return std::nullopt;
      return std::move(m).value();
    }
    grpc::Status finish() {
      grpc::Status st;
      call_->Finish(&st, tag(5));
      next(cq_);
      finished_ = true;
      return st;
    }
    void cancel() { ctx_.TryCancel(); }

  private:
    grpc::ClientContext ctx_;
    grpc::CompletionQueue cq_;
    std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call_;
    bool finished_ = false;
    std::string flat_; // the message being read, in one piece
  };

private:
  static void* tag(std::intptr_t n) { return reinterpret_cast<void*>(n); }

  static bool next(grpc::CompletionQueue& cq) {
    void* t = nullptr;
    bool ok = false;
    if (!cq.Next(&t, &ok)) return false;
    return ok;
  }

  void prepare(grpc::ClientContext& ctx, std::optional<std::chrono::milliseconds> deadline,
               const std::string* metadata_key) {
    if (!auth_.empty()) ctx.AddMetadata(metadata_key ? *metadata_key : "authorization", auth_);
    if (deadline) ctx.set_deadline(std::chrono::system_clock::now() + *deadline);
  }

  std::string auth_;
  grpc::GenericStub stub_;
};

} // namespace sandbox::testing
