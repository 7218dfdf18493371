// SPDX-License-Identifier: MIT
// The v1 SandboxService over native gRPC (HTTP/2, plaintext h2c or TLS), served by grpc++'s
// generic callback API with the library's protobuf codec: what the official clients speak. The
// service layer is server/service.hpp, shared with the REST front end (one sandbox seen from both).
#pragma once

#include <sandbox/concepts.hpp>
#include <sandbox/detail/text.hpp>
#include <sandbox/detail/unique_fd.hpp>
#include <sandbox/options.hpp>
#include <sandbox/result.hpp>
#include <sandbox/server/detail/connection.hpp>
#include <sandbox/server/detail/grpc_wire.hpp>
#include <sandbox/server/options.hpp>
#include <sandbox/server/service.hpp>
#include <sandbox/transport/http/mapping.hpp>
#include <sandbox/transport/http/protobuf.hpp>
#include <sandbox/transport/http/status.hpp>

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <sys/eventfd.h>
#include <unistd.h>

namespace sandbox {

/// The PEM texts of a TLS server: its certificate chain and private key.
struct tls_identity {
  std::string certificate_chain{};
  std::string private_key{};
};

/// The v1 SandboxService over gRPC, for every method the service can back: CreateSandbox,
/// GetSandbox, ListSandboxes, DeleteSandbox, PurgeSandboxes, Exec and StreamExec (live output in
/// order, stdin, close; either kills its command when the call is cancelled or its deadline
/// passes), StreamLogs (the main process's output: tail, since, follow, timestamps, resumable by
/// session and offset), WriteFile, ReadFile. Templates and snapshots are answered UNIMPLEMENTED
/// with reason CWSANDBOX_NOT_IMPLEMENTED, an unknown method UNIMPLEMENTED. Authentication as the
/// REST side (`authorization: Bearer <token>`, or the token as `x-wandb-api-key`); errors carry
/// the same google.rpc.Status details (ErrorInfo, RetryInfo) as REST error bodies. A call that may
/// block keeps a thread of a pool while it runs (at most `server_options::threads` calls that last
/// as long as a command or a log (Exec, StreamExec, StreamLogs) and as many others, beyond which a
/// call is refused with RESOURCE_EXHAUSTED; the pool holds no more threads than that); lookups
/// answer on grpc++'s thread. Not copyable or movable.
///
///     auto svc = std::make_shared<sandbox::serve::service<sandbox::local_transport>>(
///         sandbox::local_transport::shared(), sandbox::server_options{.token = token});
///     sandbox::grpc_server<sandbox::local_transport> g(svc);
///     auto port = g.start("127.0.0.1", 0);   // serves on grpc++'s threads until g.stop()
template <transport Transport>
class grpc_server {
public:
  explicit grpc_server(std::shared_ptr<serve::service<Transport>> svc)
      : svc_(std::move(svc)), o_(svc_->options()), generic_(this) {}
  grpc_server(const grpc_server&) = delete;
  grpc_server& operator=(const grpc_server&) = delete;
  ~grpc_server() { stop(); }

  /// Listens on `host:port` (port 0: a free port), over TLS when `tls` is given, and serves on
  /// grpc++'s threads until `stop()`. Returns the bound port.
  /// **Errors:** validation (no token, or started already), unavailable (cannot listen).
  [[nodiscard]] result<int> start(const std::string& host, int port,
                                  const std::optional<tls_identity>& tls = std::nullopt) {
    if (o_.token.empty())
      return fail(errc::validation, "the server needs a bearer token (server_options::token); "
                                    "it does not serve without authentication");
    if (server_ || stopping_)
      return fail(errc::validation, "grpc_server::start: started already (a stopped server does "
                                    "not start again; make a new one)");
    std::shared_ptr<grpc::ServerCredentials> creds;
    if (tls) {
      grpc::SslServerCredentialsOptions ssl;
      ssl.pem_key_cert_pairs.push_back({tls->private_key, tls->certificate_chain});
      creds = grpc::SslServerCredentials(ssl);
    } else {
      creds = grpc::InsecureServerCredentials();
    }
    bool v6 = host.find(':') != std::string::npos;
    std::string address = (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
    grpc::ServerBuilder b;
    int bound = 0;
    b.AddListeningPort(address, creds, &bound);
    b.RegisterCallbackGenericService(&generic_);
    // A message as large as a REST body may be (WriteFile), an answer of any size.
    b.SetMaxReceiveMessageSize(static_cast<int>(
        std::min<std::size_t>(o_.max_request_bytes + 1024, std::size_t{INT32_MAX})));
    b.SetMaxSendMessageSize(-1);
    // Never share the port with another process (grpc++ would set SO_REUSEPORT): a second server
    // must fail to start, not take half the calls.
    b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    // Bounds per connection: streams at once, and how long an idle one is kept.
    b.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                         static_cast<int>(std::min<std::size_t>(2 * o_.threads + 16, 1024)));
    b.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, 5 * 60 * 1000);
    server_ = b.BuildAndStart();
    if (!server_ || bound == 0) {
      server_.reset();
      return fail(errc::unavailable,
                  "cannot listen on " + address + " for gRPC" +
                      (tls ? " (or the TLS certificate and key do not load)" : ""));
    }
    port_ = bound;
    return bound;
  }

  /// Stops accepting, cancels the calls in progress (their commands are killed) and waits for
  /// them to end. Idempotent; safe from any thread (not from a signal handler).
  void stop() noexcept {
    std::lock_guard one(stop_m_);
    if (!server_) return;
    {
      std::lock_guard lk(m_);
      stopping_ = true;
    }
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    {
      std::unique_lock lk(m_);
      idle_.wait(lk, [&] { return calls_ == 0; });
    }
    work_.notify_all();
    for (auto& w : workers_)
      w.join();
    workers_.clear();
    server_->Wait();
    server_.reset();
  }

  [[nodiscard]] int port() const noexcept { return port_; }

  /// Threads the pool holds (kept for later calls): at most twice `server_options::threads`.
  [[nodiscard]] std::size_t pool_threads() noexcept {
    std::lock_guard lk(m_);
    return workers_.size();
  }

private:
  using clock = std::chrono::steady_clock;
  using process_type = typename Transport::process_type;
  static constexpr std::string_view prefix = "/coreweave.sandbox.v1.SandboxService/";

  enum class method {
    create,
    get,
    list,
    remove,
    purge,
    exec,
    stream_exec,
    stream_logs,
    write_file,
    read_file,
    lacking, ///< a method of the service that this server does not implement
    unknown,
  };

  [[nodiscard]] static method method_of(std::string_view path, std::string& lacking) {
    if (path.substr(0, prefix.size()) != prefix) return method::unknown;
    std::string_view m = path.substr(prefix.size());
    if (m == "CreateSandbox") return method::create;
    if (m == "GetSandbox") return method::get;
    if (m == "ListSandboxes") return method::list;
    if (m == "DeleteSandbox") return method::remove;
    if (m == "PurgeSandboxes") return method::purge;
    if (m == "Exec") return method::exec;
    if (m == "StreamExec") return method::stream_exec;
    if (m == "StreamLogs") return method::stream_logs;
    if (m == "WriteFile") return method::write_file;
    if (m == "ReadFile") return method::read_file;
    for (auto [name, what] :
         {std::pair<std::string_view, std::string_view>{"CreateSandboxFromTemplate", "templates"},
          {"CreateFileSystemSnapshot", "file system snapshots"},
          {"GetFileSystemSnapshot", "file system snapshots"},
          {"ListFileSystemSnapshots", "file system snapshots"},
          {"DeleteFileSystemSnapshot", "file system snapshots"}})
      if (m == name) {
        lacking =
            std::string(name) + " (" + std::string(what) + "): not implemented by this server";
        return method::lacking;
      }
    return method::unknown;
  }

  /// One call: a reactor of grpc++ driven on its threads, and (once the request is read) a pool
  /// thread that runs the method, since a method may block for as long as a command runs. The
  /// reactor is freed by whichever of the two ends last.
  class call final : public grpc::ServerGenericBidiReactor {
  public:
    call(grpc_server* srv, grpc::GenericCallbackServerContext* ctx) : srv_(srv), ctx_(ctx) {
      std::string lacking;
      method_ = method_of(ctx->method(), lacking);
      if (auto who = authenticate(); !who)
        finish(who.assume_error());
      else if (method_ == method::unknown)
        finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                            "unknown method " + sandbox::detail::quoted_excerpt(ctx->method())));
      else if (method_ == method::lacking)
        finish(error(errc::unsupported, lacking));
      else
        StartRead(&in_);
    }

    void OnReadDone(bool ok) override {
      if (!started_) {
        started_ = true;
        if (!ok)
          return finish(error(errc::validation, "the call ended before its request message"));
        // Lookups answer at once: on grpc++'s thread, saving a hand-off to a thread of ours.
        if (method_ == method::get || method_ == method::list) return run();
        const bool streaming = method_ == method::exec || method_ == method::stream_exec ||
                               method_ == method::stream_logs;
        if (auto room = srv_->admit(streaming); !room)
          return finish(room.assume_error(), std::chrono::seconds(1));
        streaming_ = streaming;
        holds_slot_ = true;
        // StreamExec reads on at once: a client without stdin half-closes with its init, and
        // knowing that before the command starts spares it a stdin pipe and the client an
        // early `ready` (see stream_exec).
        if (method_ == method::stream_exec) read_next();
        refs_.fetch_add(1);
        srv_->dispatch([this, srv = srv_] {
          run();
          vacate(); // if the method ended without an answer
          unref();  // may free this call
          srv->finished();
        });
        return;
      }
      {
        std::lock_guard lk(m_);
        reading_ = false;
        if (ok)
          inbox_.push_back(serve::detail::bytes_of(next_));
        else
          half_closed_ = true;
        poke();
      }
    }

    void OnWriteDone(bool ok) override {
      std::unique_lock lk(m_);
      writing_ = false;
      if (!ok) {
        gone_ = true;
        outbox_.clear();
        queued_ = 0;
      } else if (!outbox_.empty()) {
        queued_ -= sent_;
        outbox_.pop_front();
      }
      lk.unlock();
      cv_.notify_all();
      flush();
    }

    void OnCancel() override {
      {
        std::lock_guard lk(m_);
        gone_ = true;
        poke();
      }
      cv_.notify_all();
    }

    void OnDone() override { unref(); }

  private:
    /// A message waiting to be sent: encoded, or command output still open to more of its
    /// stream (encoded when its turn comes).
    struct outgoing {
      std::string bytes;
      std::optional<http::wire::OutputStream> stream;
      std::string data;
      /// What it costs the queue: its bytes and itself (output that switches streams every
      /// byte queues an entry per byte, each many times its byte).
      [[nodiscard]] std::size_t size() const noexcept {
        return sizeof(outgoing) + (stream ? data.size() : bytes.size());
      }
    };

    /// Makes `wake_`, readable at once if the call has already ended. Without a descriptor to
    /// spare, the waits fall back to their slices.
    void make_wake() noexcept {
      std::lock_guard lk(m_);
      wake_ = sandbox::detail::unique_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
      if (gone_) poke();
    }

    /// Ends a wait of an Exec's or StreamExec's command (see `await`, `pump`): a message or the
    /// call's end came. Under `m_`.
    void poke() noexcept {
      if (!wake_) return;
      const std::uint64_t one = 1;
      (void)!::write(wake_.get(), &one, sizeof one); // a full counter is still readable
    }

    /// sandboxd's request log: one line per call (method, code, duration), as for REST.
    void log_end(const grpc::Status& st) const {
      if (!srv_->o_.log) return;
      auto us = std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - began_);
      char took[32];
      std::snprintf(took, sizeof took, "%.3f ms", static_cast<double>(us.count()) / 1000.0);
      std::string_view name = ctx_->method();
      if (name.substr(0, prefix.size()) == prefix) name.remove_prefix(prefix.size());
      srv_->o_.log("gRPC " + sandbox::detail::quoted_excerpt(name) + " " +
                   std::string(http::to_string(static_cast<http::grpc_code>(st.error_code()))) +
                   " " + took);
    }

    void unref() {
      if (refs_.fetch_sub(1) == 1) delete this;
    }

    /// Gives the call's admission back once its end is queued: the client may have the answer
    /// and send its next call before this thread has returned.
    void vacate() {
      if (holds_slot_.exchange(false)) srv_->vacate(streaming_);
    }

    [[nodiscard]] result<void> authenticate() const {
      const auto& md = ctx_->client_metadata();
      auto value = [&](const char* key) -> std::optional<std::string_view> {
        auto it = md.find(key);
        if (it == md.end()) return std::nullopt;
        return std::string_view(it->second.data(), it->second.size());
      };
      const std::string& token = srv_->o_.token;
      if (auto a = value("authorization")) {
        if (serve::detail::token_matches(*a, token)) return success();
        return fail(errc::authentication, "invalid bearer token");
      }
      if (auto k = value("x-wandb-api-key")) {
        std::string bearer = "Bearer " + std::string(*k);
        if (serve::detail::token_matches(bearer, token)) return success();
        return fail(errc::authentication, "invalid API key (x-wandb-api-key)");
      }
      return fail(errc::authentication,
                  "missing bearer token (authorization metadata: Bearer <token>)");
    }

    // Every end of a call goes through close(): after what is queued, and once.
    void finish(grpc::Status st) { close(std::move(st)); }
    void finish(const error& e) { close(serve::detail::grpc_status_of(e)); }
    void finish(const error& e, std::chrono::milliseconds retry) {
      auto st = http::status_from_error(e);
      st.retry_info = http::wire::RetryInfo{retry};
      close(serve::detail::grpc_status_of(st));
    }

    /// Answers a unary call with `r`'s value, or with its error.
    template <class T>
    void answer(const result<T>& r) {
      if (!r) return finish(r.assume_error());
      send(r.assume_value(), false, grpc::Status::OK);
    }

    template <class M>
    [[nodiscard]] result<M> request() const {
      return serve::detail::message_of<M>(in_);
    }

    /// The call's deadline as a command timeout; none when the client set none.
    [[nodiscard]] std::optional<std::chrono::milliseconds> deadline() const {
      auto d = ctx_->deadline();
      if (d >= std::chrono::system_clock::time_point::max() - std::chrono::hours(24 * 365))
        return std::nullopt;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          d - std::chrono::system_clock::now());
      return std::max(left, std::chrono::milliseconds(1));
    }

    [[nodiscard]] bool gone() {
      std::lock_guard lk(m_);
      return gone_;
    }

    void run() {
      auto& svc = *srv_->svc_;
      switch (method_) {
      case method::create: {
        auto q = request<http::wire::CreateSandboxRequest>();
        if (!q) return finish(q.assume_error());
        auto& rq = q.assume_value();
        return answer(svc.create(rq.sandbox.value_or(http::wire::Sandbox{}), rq.request_id));
      }
      case method::get: {
        auto q = request<http::wire::GetSandboxRequest>();
        if (!q) return finish(q.assume_error());
        return answer(svc.get(q.assume_value().sandbox_id));
      }
      case method::list: {
        auto q = request<http::wire::ListSandboxesRequest>();
        if (!q) return finish(q.assume_error());
        auto& rq = q.assume_value();
        serve::list_request lr;
        lr.tags = rq.tags;
        if (rq.state != http::wire::State::STATE_UNSPECIFIED)
          lr.state = http::wire::to_state(rq.state);
        lr.show_terminated = rq.show_terminated;
        lr.page_size = rq.page_size;
        lr.page_token = rq.page_token;
        return answer(svc.list(lr));
      }
      case method::remove: {
        auto q = request<http::wire::DeleteSandboxRequest>();
        if (!q) return finish(q.assume_error());
        auto& rq = q.assume_value();
        return answer(svc.remove(rq.sandbox_id, std::chrono::seconds(rq.grace_period_seconds),
                                 rq.allow_missing));
      }
      case method::purge: {
        auto q = request<http::wire::PurgeSandboxesRequest>();
        if (!q) return finish(q.assume_error());
        return answer(svc.purge(q.assume_value()));
      }
      case method::exec: return exec();
      case method::stream_exec: return stream_exec();
      case method::stream_logs: return stream_logs();
      case method::write_file: {
        auto q = request<http::wire::WriteFileRequest>();
        if (!q) return finish(q.assume_error());
        auto& rq = q.assume_value();
        if (rq.sandbox_id.empty()) return finish(error(errc::validation, "sandboxId: required"));
        auto r = svc.write_file(rq.sandbox_id, rq);
        if (!r) return finish(r.assume_error());
        return answer(result<http::wire::WriteFileResponse>(http::wire::WriteFileResponse{}));
      }
      case method::read_file: {
        auto q = request<http::wire::ReadFileRequest>();
        if (!q) return finish(q.assume_error());
        auto& rq = q.assume_value();
        return answer(svc.read_file(rq.sandbox_id, rq.path, rq.container));
      }
      case method::lacking:
      case method::unknown: break; // answered when the call began
      }
    }

    /// Kills the command of a call that was cancelled (the client went away, or its deadline
    /// passed).
    [[nodiscard]] static error cancel(process_type& proc) {
      return serve::service<Transport>::kill(proc, "the call was cancelled");
    }

    void exec() {
      auto q = request<http::wire::ExecRequest>();
      if (!q) return finish(q.assume_error());
      auto& rq = q.assume_value();
      if (rq.sandbox_id.empty()) return finish(error(errc::validation, "sandboxId: required"));
      make_wake(); // a cancellation ends the wait at once, not when its slice runs out
      auto p = srv_->svc_->exec(rq.sandbox_id, rq, deadline());
      if (!p) return finish(p.assume_error());
      auto r = serve::service<Transport>::await(
          p.assume_value(), [&] { return gone(); }, "the call was cancelled", wake_.get());
      // Not `exec_failure`: over gRPC, a command's deadline is its caller's, who has stopped
      // listening when it passes, so the output so far would go to no one (as trailers).
      if (!r) return finish(r.assume_error());
      answer(result<http::wire::ExecResponse>(http::response_of(std::move(r).assume_value())));
    }

    // ---- StreamExec ---------------------------------------------------------------------------

    /// What may wait to be sent (`outgoing::size`) before the command's output is no longer read
    /// (so that a slow client slows the command down instead of filling the server's memory).
    static constexpr std::size_t max_queued = std::size_t{4} << 20;
    /// Output chunks queued after one another are sent as one message up to this size.
    static constexpr std::size_t max_message = std::size_t{1} << 20;
    /// Output buffers kept for reuse, of 64 KiB to 2 MiB: one being filled while one is sent
    /// is what a client that keeps up needs (one that does not holds the command back anyway);
    /// a third for the slice grpc++ may still hold. A call keeps them until it ends.
    static constexpr std::size_t spare_buffers = 3;
    /// Output from this size on is sent from its buffer, not copied into the message: below it,
    /// the slice and the hold on the message cost more than the copy.
    static constexpr std::size_t spliced_from = std::size_t{4} << 10;

    /// Queues a message; sends it unless a send is under way. `wait`: first waits while too
    /// much is queued (a client that reads slowly holds the sender back). `last`: the call
    /// finishes with that status after the message. Nothing is queued once the call is ending.
    template <http::wire::described_message M>
    void send(const M& m, bool wait = false, std::optional<grpc::Status> last = std::nullopt) {
      {
        std::unique_lock lk(m_);
        if (wait) cv_.wait(lk, [&] { return gone_ || closing_ || queued_ < max_queued; });
        if (closing_) return; // the first end stands
        if (last)
          held_.reset(); // the end makes it moot (see stream_exec)
        else
          queue_held();
        if (!gone_) {
          outgoing o;
          o.bytes = http::to_protobuf<http::strings::utf8>(m);
          queued_ += o.size();
          outbox_.push_back(std::move(o));
        }
        if (last) {
          closing_ = true;
          final_ = std::move(*last);
        }
      }
      if (last) {
        vacate();
        cv_.notify_all(); // a sender waiting for room sends nothing more
      }
      flush();
    }

    /// Keeps `m` to go out before the next message (`release_held`).
    template <http::wire::described_message M>
    void hold(const M& m) {
      std::lock_guard lk(m_);
      held_ = http::to_protobuf<http::strings::utf8>(m);
    }

    /// Queues the held message, if any. Under `m_`.
    void queue_held() {
      if (!held_) return;
      if (!gone_ && !closing_) {
        outgoing o;
        o.bytes = std::move(*held_);
        queued_ += o.size();
        outbox_.push_back(std::move(o));
      }
      held_.reset();
    }

    /// Sends the held message, if any (see `hold`).
    void release_held() {
      {
        std::lock_guard lk(m_);
        if (!held_) return;
        queue_held();
      }
      flush();
    }

    /// Output of the command: appended to the last queued chunk of the same stream when that is
    /// not being sent yet; waits while too much is queued.
    void output(http::wire::OutputStream stream, std::string_view data) {
      std::unique_lock lk(m_);
      cv_.wait(lk, [&] { return gone_ || closing_ || queued_ < max_queued; });
      if (gone_ || closing_) return;
      queue_held();
      if (outbox_.size() > (writing_ ? 1u : 0u)) {
        auto& last = outbox_.back();
        if (last.stream == stream && last.data.size() + data.size() <= max_message) {
          last.data.append(data);
          queued_ += data.size();
          return;
        }
      }
      outgoing o;
      o.stream = stream;
      if (!spares_)
        spares_ = std::make_shared<serve::detail::buffer_pool>(spare_buffers, std::size_t{64} << 10,
                                                               2 * max_message);
      o.data = spares_->take();
      o.data.assign(data);
      queued_ += o.size();
      outbox_.push_back(std::move(o));
      lk.unlock();
      flush();
    }

    /// Starts sending the first queued message unless a send is under way; after the last one,
    /// finishes the call with the status set by `close`.
    void flush() {
      std::unique_lock lk(m_);
      if (writing_ || finished_) return;
      if (outbox_.empty() || gone_) {
        if (!closing_) return;
        finished_ = true;
        grpc::Status st = gone_ ? grpc::Status::CANCELLED : final_;
        lk.unlock();
        log_end(st);
        Finish(st);
        return;
      }
      writing_ = true;
      auto& front = outbox_.front();
      sent_ = front.size();
      if (front.stream) {
        // The output is not copied: the message sent refers to it, and hands its buffer back to
        // the spares once sent.
        using response = http::wire::ExecStreamResponse;
        std::shared_ptr<response> m(new response, [spares = spares_](response* p) noexcept {
          if (p->output) spares->give(std::move(p->output->data));
          delete p;
        });
        m->output = http::wire::ExecStreamOutput{*front.stream, std::move(front.data)};
        out_ = serve::detail::buffer_of(
            http::to_protobuf_spliced<http::strings::utf8>(*m, spliced_from), m);
      } else {
        out_ = serve::detail::buffer_of(std::move(front.bytes));
      }
      // The last message carries the status (one operation, one flush; no OnWriteDone).
      const bool last = closing_ && outbox_.size() == 1;
      if (last) finished_ = true;
      grpc::Status st = last ? final_ : grpc::Status::OK;
      lk.unlock();
      if (!last) return StartWrite(&out_);
      log_end(st);
      StartWriteAndFinish(&out_, grpc::WriteOptions(), st);
    }

    /// Finishes the call once everything queued is sent.
    void close(grpc::Status st) {
      {
        std::lock_guard lk(m_);
        if (closing_) return; // the first end stands
        closing_ = true;
        final_ = std::move(st);
      }
      vacate();
      cv_.notify_all(); // a sender waiting for room sends nothing more
      flush();
    }

    /// Asks for the next message from the client (one at a time: a client sending stdin faster
    /// than the command reads it is held back by HTTP/2 flow control).
    void read_next() {
      {
        std::lock_guard lk(m_);
        if (reading_ || half_closed_ || gone_) return;
        reading_ = true;
      }
      StartRead(&next_);
    }

    [[nodiscard]] static std::string now_text() {
      return http::detail::pb::timestamp_text(std::chrono::system_clock::now());
    }

    void stream_exec() {
      auto q = request<http::wire::ExecStreamRequest>();
      if (!q) return finish(q.assume_error());
      if (!q.assume_value().init)
        return finish(error(errc::validation, "the first message of StreamExec must be init"));
      const auto& init = *q.assume_value().init;
      auto size = terminal_size(init.tty_width, init.tty_height, "init");
      if (!size) return finish(size.assume_error());
      if (init.tty && !terminal_process<process_type>)
        return finish(
            error(errc::unsupported, "tty: the sandboxes of this server have no terminal"));
      // The command's waits end when a message comes (stdin, its close): without it, they
      // would be taken only when a wait's slice ran out.
      make_wake();
      // A client without stdin half-closes with its init, which is usually known here (the
      // read after the init began on grpc++'s thread before this one ran; always, in practice,
      // when the half-close came with the init). Its command then reads /dev/null, and its
      // `ready` (which tells a client that it may send stdin) waits for the command's first
      // output, or a slice of the wait (`pump`), and is dropped when the command ends first: a
      // short command's call carries one message less. Not known yet: as with stdin.
      const bool no_stdin = !init.tty && [&] {
        std::lock_guard lk(m_);
        return half_closed_ && inbox_.empty();
      }();
      http::wire::ExecRequest x;
      x.sandbox_id = init.sandbox_id;
      x.command = init.command;
      x.env = init.env;
      x.container = init.container;
      http::wire::ExecStreamResponse ready;
      ready.ready = http::wire::ExecStreamReady{now_text()};
      if (no_stdin) hold(ready); // before the command can print (and send it)
      auto p = srv_->svc_->exec(init.sandbox_id, x, deadline(), [&](ExecOptions& eo) noexcept {
        eo.stdin_pipe = !no_stdin;
        if (init.tty) eo.tty = size.assume_value();
        eo.max_output_bytes = 1; // everything goes out as it comes; the result keeps nothing
        eo.on_stdout = [this](std::string_view d) noexcept {
          output(http::wire::OutputStream::STREAM_STDOUT, d);
        };
        eo.on_stderr = [this](std::string_view d) noexcept {
          output(http::wire::OutputStream::STREAM_STDERR, d);
        };
      });
      if (!p) return finish(p.assume_error());
      auto& proc = p.assume_value();
      if (!no_stdin) send(ready);
      read_next();

      auto r = pump(proc, !no_stdin);
      http::wire::ExecStreamResponse last;
      if (r) {
        last.exit = http::wire::ExecStreamExit{r.assume_value().returncode, now_text()};
        return send(last, false, grpc::Status::OK);
      }
      const error& e = r.assume_error();
      if (e.is(errc::command_timeout)) // the deadline passed: the client sees DEADLINE_EXCEEDED
        return close(serve::detail::grpc_status_of(e));
      auto st = http::status_from_error(e);
      last.error = http::wire::ExecStreamError{
          st.message, std::string(http::to_string(static_cast<http::grpc_code>(st.code)))};
      send(last, false, grpc::Status::OK);
    }

    // ---- StreamLogs ---------------------------------------------------------------------------

    /// A log session names a sandbox's log and how it is shown: offsets stay valid across calls,
    /// so a client resumes with the session and the last offset it saw.
    [[nodiscard]] static std::string session_of(const std::string& id, bool timestamps) {
      return "log-" + id + (timestamps ? "-t" : "");
    }

    void stream_logs() {
      auto q = request<http::wire::StreamLogsRequest>();
      if (!q) return finish(q.assume_error());
      const auto& rq = q.assume_value();
      const std::string& id = rq.sandbox_id;
      bool timestamps = rq.timestamps;
      std::uint64_t offset = 0;
      auto reject = [&](const char* code, std::string message) {
        http::wire::LogEntry e;
        e.error = http::wire::LogStreamError{std::move(message), code};
        send(e, false, grpc::Status::OK);
      };
      const bool resume = !rq.resume_log_session_id.empty();
      if (resume) {
        // The session says how the log was shown; an unknown one is refused in band, so that the
        // client starts afresh.
        if (rq.resume_log_session_id == session_of(id, false))
          timestamps = false;
        else if (rq.resume_log_session_id == session_of(id, true))
          timestamps = true;
        else
          return reject("SESSION_NOT_FOUND",
                        "no log session " +
                            sandbox::detail::quoted_excerpt(rq.resume_log_session_id) +
                            " for sandbox " + id);
        offset = rq.resume_log_offset;
      }
      std::optional<std::chrono::system_clock::time_point> since;
      if (!rq.since_time.empty()) {
        auto t = http::detail::pb::parse_timestamp(rq.since_time);
        if (!t) return finish(error(errc::validation, "sinceTime: not a timestamp"));
        // Within what the clock's nanoseconds hold (years 1678 to 2262): beyond, as far as it goes.
        constexpr std::int64_t limit = 9'000'000'000;
        since = std::chrono::system_clock::time_point(
            std::chrono::duration_cast<std::chrono::system_clock::duration>(
                std::chrono::seconds(std::clamp(t->seconds, -limit, limit)) +
                std::chrono::nanoseconds(t->nanos)));
      }
      if (rq.tail_lines < 0) return finish(error(errc::validation, "tailLines: negative"));
      const std::string session = session_of(id, timestamps);
      bool first = true, line_start = true;
      for (;;) {
        auto r = srv_->svc_->logs(
            id, offset, rq.follow ? std::chrono::milliseconds(500) : std::chrono::milliseconds(0));
        if (!r) return finish(r.assume_error());
        auto& got = r.assume_value();
        // Output lost to this reader (a resume from too far back, or a follower the log
        // overtook) is said in band, so that the client starts afresh rather than miss it.
        if ((resume || !first) && got.first_offset > offset)
          return reject("REPLAY_GAP", "the log from offset " + std::to_string(offset) +
                                          " is no longer kept (it begins at " +
                                          std::to_string(got.first_offset) + ")");
        if (resume && first && offset > got.end_offset)
          return reject("INVALID_RESUME_OFFSET", "offset " + std::to_string(offset) +
                                                     " is past the end of the log (" +
                                                     std::to_string(got.end_offset) + ")");
        if (first && !resume) trim(got.chunks, since, rq.tail_lines);
        first = false;
        for (auto& c : got.chunks) {
          http::wire::LogEntry e;
          e.timestamp = http::detail::pb::timestamp_text(c.time);
          e.data = timestamps ? stamped(c.data, e.timestamp, line_start) : std::move(c.data);
          e.log_session_id = session;
          e.next_log_offset = c.end_offset;
          send(e, true);
          if (gone()) return close(grpc::Status::CANCELLED);
        }
        offset = std::max(offset, got.end_offset);
        if (!rq.follow || (got.complete && offset >= got.end_offset) || gone()) break;
      }
      close(grpc::Status::OK);
    }

    /// The chunks from `since` on, then only the last `tail` lines of them (0: all).
    static void trim(std::vector<LogChunk>& chunks,
                     const std::optional<std::chrono::system_clock::time_point>& since,
                     std::int32_t tail) {
      if (since)
        chunks.erase(std::remove_if(chunks.begin(), chunks.end(),
                                    [&](const LogChunk& c) { return c.time < *since; }),
                     chunks.end());
      if (tail <= 0) return;
      // Back from the end: the start of the tail-th line from the end (a last line without its
      // newline counts).
      std::int32_t lines = 0;
      for (std::size_t i = chunks.size(); i-- > 0;) {
        std::string& d = chunks[i].data;
        for (std::size_t j = d.size(); j-- > 0;) {
          bool last_byte = i == chunks.size() - 1 && j == d.size() - 1;
          if (d[j] == '\n' && !last_byte && ++lines == tail) {
            d.erase(0, j + 1);
            chunks.erase(chunks.begin(), chunks.begin() + static_cast<std::ptrdiff_t>(i));
            return;
          }
        }
      }
    }

    /// `data` with `stamp` and a space before each line (`line_start`: data begins a line; left
    /// saying whether the next data does).
    [[nodiscard]] static std::string stamped(std::string_view data, std::string_view stamp,
                                             bool& line_start) {
      std::string out;
      out.reserve(data.size() + stamp.size() + 1);
      for (char c : data) {
        if (line_start) {
          out.append(stamp);
          out += ' ';
        }
        out += c;
        line_start = c == '\n';
      }
      return out;
    }

    /// A terminal size from the wire (0: the default).
    [[nodiscard]] static result<TerminalSize> terminal_size(std::uint32_t width,
                                                            std::uint32_t height, const char* in) {
      constexpr std::uint32_t most = 0xffff;
      if (width > most || height > most)
        return fail(errc::validation, std::string(in) + ": a terminal of " + std::to_string(width) +
                                          "x" + std::to_string(height) +
                                          " is larger than 65535x65535");
      return TerminalSize{static_cast<std::uint16_t>(width), static_cast<std::uint16_t>(height)};
    }

    /// Runs the command to its end: stdin from the client's messages as they come (`stdin_open`:
    /// the command has a stdin pipe), output out through `output`, a kill when the call is
    /// cancelled; a held `ready` goes out once a wait's slice passes.
    [[nodiscard]] result<ExecResult> pump(process_type& proc, bool stdin_open) {
      using std::chrono::milliseconds;
      milliseconds slice(5);
      for (;;) {
        std::deque<std::string> got;
        bool eof = false, cancelled = false;
        {
          std::lock_guard lk(m_);
          if (wake_) { // what woke the last wait is taken below
            std::uint64_t pokes = 0;
            (void)!::read(wake_.get(), &pokes, sizeof pokes);
          }
          got.swap(inbox_);
          eof = half_closed_;
          cancelled = gone_;
        }
        if (cancelled) return cancel(proc);
        for (auto& bytes : got) {
          auto m =
              http::from_protobuf<http::wire::ExecStreamRequest>(bytes, http::decode_mode::strict);
          if (!m) {
            (void)cancel(proc);
            return m.assume_error();
          }
          auto& msg = m.assume_value();
          if (msg.stdin_bytes && stdin_open && !msg.stdin_bytes->empty()) {
            // A command that closed its stdin or ended takes no more: the rest is dropped.
            if (auto w = feed(proc, *msg.stdin_bytes); !w) {
              if (w.assume_error().is(errc::not_running) && gone()) return cancel(proc);
              stdin_open = false;
            }
          } else if (msg.close && stdin_open) {
            (void)proc.close_stdin();
            stdin_open = false;
          } else if (msg.init) {
            (void)cancel(proc);
            return fail(errc::validation, "init: sent twice in one StreamExec call");
          } else if (msg.resize) {
            auto size = terminal_size(msg.resize->width, msg.resize->height, "resize");
            if (!size) {
              (void)cancel(proc);
              return std::move(size).as_failure();
            }
            // Without a terminal there is nothing to resize: ignored, as a terminal would.
            if constexpr (terminal_process<process_type>) (void)proc.resize(size.assume_value());
          }
        }
        if (!got.empty()) read_next();
        if (eof && stdin_open) {
          (void)proc.close_stdin();
          stdin_open = false;
        }
        // A message that arrives ends the wait (`wake_`, where the process can be woken; else
        // it is taken within a slice: short while stdin flows, longer while the call is idle).
        // Output never waits for a slice: the wait reads it as it comes.
        slice = got.empty() ? std::min(slice * 2, milliseconds(50)) : milliseconds(5);
        auto r = [&] {
          if constexpr (wakeable_process<process_type>)
            return proc.wait_or_wake(slice, wake_.get());
          else
            return proc.wait(slice);
        }();
        if (r || !r.assume_error().is(errc::timeout)) return r;
        release_held();
      }
    }

    /// Writes `data` to the command's stdin, in slices when the transport can (so that a command
    /// that does not read cannot keep a cancelled call from ending it).
    [[nodiscard]] result<void> feed(process_type& proc, std::string_view data) {
      if constexpr (requires(process_type & p, std::string_view & d) {
                      p.write_stdin_for(d, std::chrono::milliseconds(1));
                    }) {
        while (!data.empty()) {
          auto w = proc.write_stdin_for(data, std::chrono::milliseconds(100));
          if (!w && !w.assume_error().is(errc::timeout)) return w;
          if (gone()) return fail(errc::not_running, "the call was cancelled");
        }
        return success();
      } else {
        return proc.write_stdin(data);
      }
    }

    grpc_server* srv_;
    grpc::GenericCallbackServerContext* ctx_;
    clock::time_point began_ = clock::now();
    method method_ = method::unknown;
    bool started_ = false;                // the first read is done (grpc++ threads only)
    std::atomic<int> refs_{1};            // the reactor's own; +1 while the call's thread runs
    bool streaming_ = false;              // counted among the long calls by admit()
    std::atomic<bool> holds_slot_{false}; // admitted, its end not yet queued
    grpc::ByteBuffer in_, out_;           // the request, the message being written
    grpc::ByteBuffer next_;               // StreamExec: the message being read after the init

    std::mutex m_;
    std::condition_variable cv_;
    std::deque<std::string> inbox_;   // StreamExec: messages read, not yet handled
    sandbox::detail::unique_fd wake_; // Exec, StreamExec: readable when inbox_ or gone_ changed
    bool reading_ = false, half_closed_ = false;
    std::deque<outgoing> outbox_;     // StreamExec: messages to send, the one being sent first
    std::size_t queued_ = 0;          // what outbox_ costs: its size()s as queued
    std::size_t sent_ = 0;            // of it, the message being sent
    std::optional<std::string> held_; // StreamExec: a message to go before the next (`hold`)
    std::shared_ptr<serve::detail::buffer_pool> spares_; // StreamExec: output buffers, reused
    bool writing_ = false, gone_ = false, closing_ = false, finished_ = false;
    grpc::Status final_;
  };

  class generic final : public grpc::CallbackGenericService {
  public:
    explicit generic(grpc_server* s) : s_(s) {}
    grpc::ServerGenericBidiReactor*
    CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
      return new call(s_, ctx);
    }

  private:
    grpc_server* s_;
  };

  /// Counts a call that is to get a thread. Calls that last as long as a command or a log
  /// ("streaming": Exec, StreamExec, StreamLogs) and the others each have
  /// `server_options::threads`, so that long commands cannot lock out a create.
  /// **Errors:** resource_exhausted at the limit, unavailable while stopping.
  [[nodiscard]] result<void> admit(bool streaming) {
    std::lock_guard lk(m_);
    if (stopping_) return fail(errc::unavailable, "the server is shutting down");
    std::size_t& n = streaming ? streams_ : unary_;
    if (n >= std::max<std::size_t>(o_.threads, 1))
      return fail(errc::resource_exhausted,
                  "this server runs at most " + std::to_string(o_.threads) +
                      (streaming ? " commands and log streams" : " other calls") +
                      " at once (server_options::threads); retry later");
    ++n;
    ++calls_;
    return success();
  }

  /// A call admitted by admit() has queued its end: its place goes to the next call, and its
  /// thread, soon back in the pool, is counted as one that will take a task (dispatch).
  void vacate(bool streaming) {
    std::lock_guard lk(m_);
    --(streaming ? streams_ : unary_);
    ++finishing_;
  }

  /// A call admitted by admit() has returned from its thread.
  void finished() {
    std::lock_guard lk(m_);
    if (--calls_ == 0) idle_.notify_all();
  }

  /// Runs `task` on a thread of the pool: an idle one, one whose call has queued its answer and
  /// is about to be idle, or a new one (a call may block as long as its command runs, so none
  /// waits for another's command; admit() bounds how many run at once, and so how many threads
  /// there are). Threads are kept for the next calls (a thread made per call cost ≈ 0.1 ms of
  /// each unary call).
  void dispatch(std::function<void()> task) {
    std::lock_guard lk(m_);
    tasks_.push_back(std::move(task));
    if (idle_workers_ + finishing_ >= tasks_.size()) {
      work_.notify_one();
    } else {
      // Counted from its making, not from its first run: until then a thread of the pool that
      // turned idle could take this task, and a next one would make yet another thread.
      ++idle_workers_;
      workers_.emplace_back([this] { work(); });
    }
  }

  /// A thread of the pool; counted idle (by dispatch) when it starts.
  void work() {
    std::unique_lock lk(m_);
    for (;;) {
      work_.wait(lk, [&] { return !tasks_.empty() || stopping_; });
      --idle_workers_;
      if (tasks_.empty()) return; // stopping, and every call has ended
      auto task = std::move(tasks_.front());
      tasks_.pop_front();
      lk.unlock();
      task(); // gives its call's place back (vacate) exactly once
      lk.lock();
      --finishing_;
      ++idle_workers_;
    }
  }

  std::shared_ptr<serve::service<Transport>> svc_;
  const server_options& o_; // the service's
  generic generic_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::mutex m_;
  std::condition_variable idle_;
  std::size_t calls_ = 0, streams_ = 0, unary_ = 0;
  bool stopping_ = false;
  std::mutex stop_m_; // one stop at a time
  std::condition_variable work_;
  std::deque<std::function<void()>> tasks_;
  std::vector<std::thread> workers_;
  std::size_t idle_workers_ = 0;
  std::size_t finishing_ = 0; // threads whose call has given its place back, not yet idle
};

} // namespace sandbox
