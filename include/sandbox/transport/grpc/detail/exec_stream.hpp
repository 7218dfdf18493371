// SPDX-License-Identifier: MIT
// A command running over StreamExec (or, with nothing to stream, unary Exec), as the client sees
// it. grpc++'s threads only move messages (a reactor: one read and one write in flight at a
// time); the caller's thread decodes them, keeps the output (capped as locally), calls
// on_stdout/on_stderr and feeds stdin, so the callbacks run where `wait`/`poll` are called, as
// with a local command.
#pragma once

#include <sandbox/detail/deadline.hpp>
#include <sandbox/detail/output_buffer.hpp>
#include <sandbox/detail/prefault.hpp>
#include <sandbox/detail/text.hpp>
#include <sandbox/options.hpp>
#include <sandbox/result.hpp>
#include <sandbox/server/detail/grpc_wire.hpp>
#include <sandbox/transport/http/mapping.hpp>
#include <sandbox/transport/http/protobuf.hpp>
#include <sandbox/transport/http/status.hpp>
#include <sandbox/transport/http/wire.hpp>
#include <sandbox/types.hpp>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/client_callback.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sandbox::rpc::detail {

using clock = std::chrono::steady_clock;

/// The error of a failed call: its google.rpc.Status details when it has them (the same errc,
/// reason and metadata as a REST error), else its code and message.
[[nodiscard]] inline error error_of(const grpc::Status& st, std::string_view what) noexcept {
  http::wire::Status body;
  if (!st.error_details().empty()) {
    auto d =
        http::from_protobuf<http::wire::Status>(st.error_details(), http::decode_mode::lenient);
    if (d) body = std::move(d).assume_value();
  }
  body.code = static_cast<std::int32_t>(st.error_code());
  if (body.message.empty()) body.message = st.error_message();
  error e = http::error_from_status(0, body);
  e.message = std::string(what) + ": " + e.message;
  return e;
}

/// A message as grpc++ read it: its slices, referred to (grpc++ counts their references), not
/// copied. Output is kept straight from them (`output_at`); any other message is put in one piece
/// to be decoded.
struct received {
  /// A message smaller than this is copied into a slice of its own: grpc++'s slices of it may
  /// be parts of a larger read buffer, which a queue of small messages would each keep alive.
  static constexpr std::size_t copied_below = std::size_t{64} << 10;
  /// What a queued message costs beside its bytes, counted against the read-ahead (so that a
  /// flood of empty messages is bounded too).
  static constexpr std::size_t overhead = 128;

  std::vector<grpc::Slice> slices;
  std::size_t size = 0;

  explicit received(const grpc::ByteBuffer& b) {
    // Counted from the slices: what they hold is the message (else it is an empty one).
    if (!b.Dump(&slices).ok()) slices.clear();
    for (const auto& sl : slices)
      size += sl.size();
    if (size >= copied_below) return;
    if (size == 0) {
      slices.clear();
      return;
    }
    grpc::Slice own(size); // fresh, ours alone: written once, here
    head(reinterpret_cast<char*>(const_cast<std::uint8_t*>(own.begin())), size);
    slices.clear();
    slices.push_back(std::move(own));
  }

  /// Copies up to `n` bytes from the start into `to`; returns how many.
  std::size_t head(char* to, std::size_t n) const noexcept {
    std::size_t got = 0;
    for (const auto& sl : slices) {
      if (got == n) break;
      const std::size_t k = std::min(n - got, sl.size());
      std::copy_n(reinterpret_cast<const char*>(sl.begin()), k, to + got);
      got += k;
    }
    return got;
  }

  /// Calls `f` with each piece of the message from byte `from` on.
  template <class F>
  void each_piece(std::size_t from, F&& f) const {
    for (const auto& sl : slices) {
      const std::size_t k = sl.size();
      if (from >= k) {
        from -= k;
        continue;
      }
      f(std::string_view(reinterpret_cast<const char*>(sl.begin()) + from, k - from));
      from = 0;
    }
  }

  /// The whole message in `room` (its buffer reused from one message to the next).
  void flatten(std::string& room) const {
    room.clear();
    room.reserve(size);
    each_piece(0, [&](std::string_view piece) { room.append(piece); });
  }
};

/// Where the output of an ExecStreamResponse starts in the message, and which stream it is for:
/// when it is a message a service writes for output, the `output` field alone, in it the stream
/// (if any) before the data, and the data (not empty) running to the message's end. Then the
/// data is kept from grpc++'s slices as they are (each byte copied once, into the result). Any
/// other message, valid or not, is decoded whole (nullopt): this reads only what it is sure of,
/// with the codec's own reader, and makes the stream what the decoder would.
struct output_place {
  bool out = true;      ///< stdout (any stream but stderr, as `handle` has it)
  std::size_t from = 0; ///< the data's first byte
};
[[nodiscard]] inline std::optional<output_place> output_at(const received& msg) {
  using http::detail::pb::reader;
  constexpr std::uint64_t output_field = 2, stream_field = 1, data_field = 2;
  // Tags and lengths before the data: a few bytes (a length of 10 bytes would exceed any
  // message; a head cut short reads as truncated, and the message is decoded whole).
  char head[32];
  reader r{
      std::string_view(head, msg.head(head, sizeof head)), 0, http::decode_mode::lenient, {}, 0};
  // A tag, length-delimited, whose length runs exactly to the message's end.
  auto runs_to_end = [&](std::uint64_t number) {
    auto t = r.tag();
    if (!t || t.assume_value().number != number || t.assume_value().wire_type != 2) return false;
    auto n = r.varint();
    return n && n.assume_value() > 0 && n.assume_value() == msg.size - r.at;
  };
  if (!runs_to_end(output_field)) return std::nullopt;
  output_place p;
  const std::size_t mark = r.at;
  if (auto t = r.tag();
      t && t.assume_value().number == stream_field && t.assume_value().wire_type == 0) {
    auto v = r.varint();
    if (!v) return std::nullopt;
    p.out = static_cast<http::wire::OutputStream>(static_cast<std::int64_t>(v.assume_value())) !=
            http::wire::OutputStream::STREAM_STDERR;
  } else {
    r.at = mark; // no stream: the data's tag is next
  }
  if (!runs_to_end(data_field)) return std::nullopt;
  p.from = r.at;
  return p;
}

/// The reactor of one StreamExec call. Lives until grpc++ calls OnDone (the handle waits for it).
///
/// Reads and writes are also started from the caller's thread (stdin, resuming a paused read),
/// so the call holds two holds (grpc++ frees a call with no operation and no hold under way):
/// the read flow's, given back when a read fails (the call is over) or at `finish`, and the
/// write flow's, given back after the half-close (alone, or with the last message:
/// StartWriteLast) or once the call is over and no write is under way; a call whose init is all
/// it sends never takes the write flow's. Each flag below changes
/// under `m_`; Start*/RemoveHold are called without it (grpc++ may run a reaction inline, and
/// reactions take `m_`).
class exec_stream final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
public:
  /// Output read ahead of the caller, at most; beyond it reading pauses (the server then stops
  /// reading the command's output, and the command waits).
  static constexpr std::size_t read_ahead = std::size_t{8} << 20;

  /// Holds `stub` (and its channel) until the call is over. `only`: `init` is all the client
  /// sends: it goes with the half-close, in one operation (as the official clients send a
  /// command without stdin: no close message, which the service could take before it has set
  /// the command up).
  exec_stream(std::shared_ptr<grpc::GenericStub> stub, std::unique_ptr<grpc::ClientContext> ctx,
              const std::string& method, std::string init, bool only)
      : stub_(std::move(stub)), ctx_(std::move(ctx)) {
    // The call's headers go with the init, in one frame (uncorked, they go alone, and the server
    // reads the init one packet later).
    ctx_->set_initial_metadata_corked(true);
    stub_->PrepareBidiStreamingCall(ctx_.get(), method, grpc::StubOptions(), this);
    outbox_.push_back(serve::detail::buffer_of(std::move(init)));
    writing_ = reading_ = true;
    if (only) {
      AddHold(); // the read flow's; no write follows this one
      write_hold_ = false;
      close_wanted_ = close_sent_ = true;
      StartWriteLast(&outbox_.front(), grpc::WriteOptions());
    } else {
      AddMultipleHolds(2);
      StartWrite(&outbox_.front());
    }
    StartRead(&in_);
    StartCall();
  }
  exec_stream(const exec_stream&) = delete;
  exec_stream& operator=(const exec_stream&) = delete;
  ~exec_stream() override = default;

  // ---- grpc++'s threads ----------------------------------------------------------------------

  void OnReadDone(bool ok) override {
    bool again = false, drop_read = false, drop_write = false;
    {
      std::lock_guard lk(m_);
      // The caller is woken for what it acts on: output, the exit, an error, and the end
      // (OnDone). Each wake-up of its thread costs a switch of a core.
      bool wake = write_waiters_ > 0;
      if (ok) {
        received msg(in_);
        if (!just_ready(msg)) { // nothing the caller uses
          // The exit ends the call, whose end (OnDone) comes next and wakes the caller, who
          // cannot be done before it. (An error wakes it: it ends the command at once, even if
          // a server kept the call open after it.)
          wake = wake || !is_exit(msg);
          inbox_bytes_ += msg.size + received::overhead;
          inbox_.push_back(std::move(msg));
        }
        again = inbox_bytes_ < read_ahead && !finishing_;
      } else {
        over_ = true; // the call has ended: no more reads, and writes are pointless
        if (!writing_) drop_write = release_write_hold(); // else OnWriteDone gives it back
      }
      reading_ = again;
      // Paused (read ahead enough): the hold stays, for the caller to resume reading.
      if (!ok || finishing_) drop_read = release_read_hold();
      ++events_;
      if (wake) cv_.notify_all();
    }
    if (again) StartRead(&in_);
    if (drop_read) RemoveHold();
    if (drop_write) RemoveHold();
  }

  void OnWriteDone(bool ok) override {
    grpc::ByteBuffer* next = nullptr;
    bool half_close = false, drop_write = false, last = false;
    {
      std::lock_guard lk(m_);
      outbox_.pop_front();
      if (!ok || over_ || finishing_) {
        write_failed_ = !ok || write_failed_;
        outbox_.clear();
      } else if (!outbox_.empty()) {
        next = &outbox_.front();
        // The last message before a half-close carries it (one operation, not two).
        if (outbox_.size() == 1 && close_wanted_ && !close_sent_) {
          last = close_sent_ = true;
          write_hold_ = false; // given back below: no write follows this one
        }
      } else if (close_wanted_ && !close_sent_) {
        half_close = close_sent_ = true;
        write_hold_ = false; // given back below, after the half-close
      }
      writing_ = next != nullptr;
      if (!writing_ && !half_close && (over_ || finishing_ || write_failed_))
        drop_write = release_write_hold();
      ++events_;
      if (write_waiters_ > 0) cv_.notify_all();
    }
    if (next && last) {
      StartWriteLast(next, grpc::WriteOptions());
      drop_write = true;
    } else if (next) {
      StartWrite(next);
    }
    if (half_close) {
      StartWritesDone();
      drop_write = true; // no write follows a half-close
    }
    if (drop_write) RemoveHold();
  }

  void OnDone(const grpc::Status& s) override {
    std::lock_guard lk(m_);
    status_ = s;
    done_ = true;
    ++events_;
    cv_.notify_all(); // under the lock: the handle may free this object once it sees done_
  }

  // ---- the caller's thread -------------------------------------------------------------------

  /// Queues a message; false once the call can take no more.
  bool send(std::string bytes) {
    grpc::ByteBuffer* start = nullptr;
    {
      std::lock_guard lk(m_);
      if (over_ || finishing_ || write_failed_ || close_wanted_ || !write_hold_) return false;
      outbox_.push_back(serve::detail::buffer_of(std::move(bytes)));
      if (!writing_) {
        writing_ = true;
        start = &outbox_.front();
      }
    }
    if (start) StartWrite(start); // the write hold is ours while writing_ is set
    return true;
  }

  /// Half-closes the call once what is queued has been written.
  void close_writes() {
    bool now = false;
    {
      std::lock_guard lk(m_);
      if (close_wanted_ || over_ || finishing_ || !write_hold_) return;
      close_wanted_ = true;
      if (!writing_ && !write_failed_) {
        now = close_sent_ = true;
        write_hold_ = false;
      }
    }
    if (now) {
      StartWritesDone();
      RemoveHold();
    }
  }

  /// The messages read so far (reading resumes if it had paused).
  [[nodiscard]] std::deque<received> take() {
    std::deque<received> got;
    bool resume = false;
    {
      std::lock_guard lk(m_);
      got.swap(inbox_);
      inbox_bytes_ = 0;
      if (!reading_ && read_hold_ && !over_ && !finishing_) resume = reading_ = true;
    }
    if (resume) StartRead(&in_); // the read hold is ours while it is held
    return got;
  }

  /// Whether the call is to be half-closed (nothing more is sent).
  [[nodiscard]] bool closing() {
    std::lock_guard lk(m_);
    return close_wanted_;
  }

  /// Messages queued and not yet written.
  [[nodiscard]] std::size_t unwritten() {
    std::lock_guard lk(m_);
    return outbox_.size();
  }

  [[nodiscard]] bool write_failed() {
    std::lock_guard lk(m_);
    return write_failed_ || over_;
  }

  /// Waits until something happened since `seen` or `until`: a message, the end, and with
  /// `writes` a write done or failed too.
  void wait_event(std::uint64_t& seen, std::optional<clock::time_point> until,
                  bool writes = false) {
    std::unique_lock lk(m_);
    auto changed = [&] { return events_ != seen; };
    if (writes) ++write_waiters_;
    if (until)
      cv_.wait_until(lk, *until, changed);
    else
      cv_.wait(lk, changed);
    if (writes) --write_waiters_;
    seen = events_;
  }

  /// The call's status once it has ended, with every message read before it.
  [[nodiscard]] std::optional<grpc::Status> ended() {
    std::lock_guard lk(m_);
    if (!done_ || !inbox_.empty()) return std::nullopt;
    return status_;
  }

  void cancel() { ctx_->TryCancel(); }

  /// Cancels the call, gives back the holds no operation will, and waits for grpc++ to be done
  /// with it (before the reactor is freed).
  void finish() {
    {
      std::lock_guard lk(m_);
      if (done_) return; // nothing to cancel (every hold was given back before OnDone)
    }
    ctx_->TryCancel();
    bool drop_read = false, drop_write = false;
    {
      std::lock_guard lk(m_);
      finishing_ = true;
      if (!reading_) drop_read = release_read_hold();
      if (!writing_) drop_write = release_write_hold();
    }
    if (drop_read) RemoveHold();
    if (drop_write) RemoveHold();
    std::unique_lock lk(m_);
    cv_.wait(lk, [&] { return done_; });
  }

private:
  /// Whether `msg` is an exit message (its first field says: the response is a oneof).
  [[nodiscard]] static bool is_exit(const received& msg) {
    constexpr char exit_tag = 0x1a; // field 3, length-delimited
    char first = 0;
    return msg.head(&first, 1) == 1 && first == exit_tag;
  }

  /// Whether `msg` is a `ready` message alone, which tells the caller nothing: it is not
  /// queued, and wakes no one.
  [[nodiscard]] static bool just_ready(const received& msg) {
    constexpr char ready_tag = 0x0a; // field 1 (ready), length-delimited
    char bytes[64];
    if (msg.size == 0 || msg.size > sizeof bytes || msg.head(bytes, sizeof bytes) != msg.size ||
        bytes[0] != ready_tag)
      return false;
    auto m = http::from_protobuf<http::wire::ExecStreamResponse>(std::string_view(bytes, msg.size),
                                                                 http::decode_mode::lenient);
    return m && m.assume_value().ready && !m.assume_value().output && !m.assume_value().exit &&
           !m.assume_value().error;
  }

  // Each returns whether the caller is to give the hold back (once, after unlocking).
  bool release_read_hold() {
    bool held = read_hold_;
    read_hold_ = false;
    return held;
  }
  bool release_write_hold() {
    bool held = write_hold_;
    write_hold_ = false;
    return held;
  }

  std::shared_ptr<grpc::GenericStub> stub_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  grpc::ByteBuffer in_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<received> inbox_;
  std::size_t inbox_bytes_ = 0;
  std::deque<grpc::ByteBuffer> outbox_; // the message being written first
  std::uint64_t events_ = 0;
  std::size_t write_waiters_ = 0; // callers waiting for a write to be done
  grpc::Status status_;
  bool reading_ = false, writing_ = false, write_failed_ = false;
  bool read_hold_ = true, write_hold_ = true;
  bool close_wanted_ = false, close_sent_ = false;
  bool over_ = false, finishing_ = false, done_ = false;
};

/// One server-streaming call (StreamLogs): the request, then every entry until the end, or only
/// until the first that ends past offset `past` (then the call is cancelled).
class log_stream final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
public:
  /// `most`: bytes read at most; the call is ended there (a log without end is read in parts).
  log_stream(grpc::GenericStub& stub, std::unique_ptr<grpc::ClientContext> ctx,
             const std::string& method, std::string request, std::optional<std::uint64_t> past,
             std::size_t most)
      : ctx_(std::move(ctx)), out_(serve::detail::buffer_of(std::move(request))), past_(past),
        most_(most) {
    stub.PrepareBidiStreamingCall(ctx_.get(), method, grpc::StubOptions(), this);
    StartWriteLast(&out_, grpc::WriteOptions());
    StartRead(&in_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    bool again = true;
    {
      std::lock_guard lk(m_);
      got_.push_back(serve::detail::bytes_of(in_));
      bytes_ += got_.back().size();
      if (past_) {
        auto e = http::from_protobuf<http::wire::LogEntry>(got_.back(), http::decode_mode::lenient);
        again = e && !e.assume_value().error && e.assume_value().next_log_offset <= *past_;
      }
      if (bytes_ >= most_) full_ = true, again = false;
    }
    if (again)
      StartRead(&in_);
    else
      ctx_->TryCancel();
  }
  void OnDone(const grpc::Status& s) override {
    std::lock_guard lk(m_);
    status_ = s;
    done_ = true;
    cv_.notify_all();
  }

  /// Waits for the end of the call: its status and the messages read.
  [[nodiscard]] std::pair<grpc::Status, std::vector<std::string>> result() {
    std::unique_lock lk(m_);
    cv_.wait(lk, [&] { return done_; });
    return {status_, std::move(got_)};
  }

  /// Whether the call was ended for having read `most` bytes.
  [[nodiscard]] bool full() {
    std::lock_guard lk(m_);
    return full_;
  }

private:
  std::unique_ptr<grpc::ClientContext> ctx_;
  grpc::ByteBuffer out_, in_;
  std::optional<std::uint64_t> past_;
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<std::string> got_;
  std::size_t most_, bytes_ = 0;
  grpc::Status status_;
  bool done_ = false, full_ = false;
};

/// One unary call: the request, then one answer. Every unary call of the channel, and Exec for
/// a command with nothing to stream (no stdin, terminal, live output or timeout), which costs
/// less than a StreamExec, whose messages each cross grpc++'s threads.
class unary_call {
public:
  /// Holds `stub` (and its channel) until the call is over.
  unary_call(std::shared_ptr<grpc::GenericStub> stub, std::unique_ptr<grpc::ClientContext> ctx,
             const std::string& method, std::string request)
      : stub_(std::move(stub)), ctx_(std::move(ctx)),
        in_(serve::detail::buffer_of(std::move(request))) {
    stub_->UnaryCall(ctx_.get(), method, grpc::StubOptions(), &in_, &out_, [this](grpc::Status s) {
      std::lock_guard lk(m_);
      status_ = std::move(s);
      done_ = true;
      cv_.notify_all(); // under the lock: the handle may free this object once it sees done_
    });
  }
  unary_call(const unary_call&) = delete;
  unary_call& operator=(const unary_call&) = delete;

  /// Waits until the call has ended or `until` passes.
  void wait(std::optional<clock::time_point> until) {
    std::unique_lock lk(m_);
    if (until)
      cv_.wait_until(lk, *until, [&] { return done_; });
    else
      cv_.wait(lk, [&] { return done_; });
  }

  /// The call's status and its answer's bytes, once it has ended (the answer only once).
  [[nodiscard]] std::optional<std::pair<grpc::Status, std::string>> ended() {
    std::lock_guard lk(m_);
    if (!done_) return std::nullopt;
    std::string bytes = serve::detail::bytes_of(out_);
    out_.Clear();
    return std::pair(status_, std::move(bytes));
  }

  void cancel() { ctx_->TryCancel(); }

  /// Cancels the call and waits for grpc++ to be done with it (before it is freed).
  void finish() {
    {
      std::lock_guard lk(m_);
      if (done_) return;
    }
    ctx_->TryCancel();
    wait(std::nullopt);
  }

private:
  std::shared_ptr<grpc::GenericStub> stub_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  grpc::ByteBuffer in_, out_;
  std::mutex m_;
  std::condition_variable cv_;
  grpc::Status status_;
  bool done_ = false;
};

/// A command started over StreamExec or unary Exec: the process handle of `grpc_transport`.
class exec_call {
public:
  exec_call() = default;
  exec_call(exec_call&&) noexcept = default;
  exec_call& operator=(exec_call&&) noexcept = default;
  ~exec_call() { // the threads first: they follow the buffers res_ frees
    ahead_[0].stop();
    ahead_[1].stop();
  }

  /// A command over unary Exec (see `unary_call`), whose request carries the per-stream cap
  /// `max_output` (kept here too: a server may send more than asked).
  exec_call(std::unique_ptr<unary_call> u, std::vector<std::string> command,
            std::uint64_t max_output, std::string what)
      : u_(u.release()), max_output_(max_output), what_(std::move(what)) {
    res_.command = std::move(command);
  }

  exec_call(std::unique_ptr<exec_stream> s, std::vector<std::string> command, const ExecOptions& o,
            std::string what)
      : s_(s.release()), what_(std::move(what)) {
    res_.command = std::move(command);
    max_output_ = o.max_output_bytes == 0 ? default_max_output_bytes : o.max_output_bytes;
    on_out_ = o.on_stdout;
    on_err_ = o.on_stderr;
    timeout_ = o.timeout.has_value();
    tty_ = o.tty.has_value();
    stdin_open_ = !s_->closing(); // a call without stdin half-closes with its init
  }

  /// Waits up to `timeout` (forever if unset) for the command's end.
  /// **Errors:** timeout (still running; call again), command_timeout (ExecOptions::timeout
  /// passed; carries the output so far), not_running (killed, or the sandbox ended), and the
  /// call's errors (unavailable when the server went away).
  [[nodiscard]] result<ExecResult> wait(std::optional<std::chrono::milliseconds> timeout) noexcept {
    SANDBOX_TRYV(wait_ended(timeout));
    return res_;
  }

  /// As `wait`, but a successful result takes the output with it (see `taking_process`).
  [[nodiscard]] result<ExecResult> take(std::optional<std::chrono::milliseconds> timeout) noexcept {
    SANDBOX_TRYV(wait_ended(timeout)); // a failure carries its own copy of the output
    return sandbox::detail::take_output(res_);
  }

  /// Handles what has arrived without waiting for more; the exit code once the command has ended
  /// (the first such call waits for the threads faulting in large output to end: see stop_ahead).
  [[nodiscard]] std::optional<int> poll() noexcept {
    if (!moved_from() && !done_) advance();
    if (done_) stop_ahead();
    if (done_ && !failure_) return res_.returncode;
    return std::nullopt;
  }

  /// The API has no signal: any signal cancels the call, and the server kills the command's
  /// process group. `wait` then reports errc::not_running. Killing an ended command does nothing.
  [[nodiscard]] result<void> kill(int /*sig*/) noexcept {
    if (moved_from() || done_) return success();
    killed_ = true;
    if (s_)
      s_->cancel();
    else
      u_->cancel();
    return success();
  }

  /// Writes all of `data` to the command's stdin (in messages of at most 1 MiB), handling its
  /// output meanwhile so that neither side can block the other.
  [[nodiscard]] result<void> write_stdin(std::string_view data) noexcept {
    if (moved_from())
      return fail(errc::not_running, "no command: this process handle was moved from");
    if (done_ && !data.empty()) return fail(errc::not_running, what_ + ": the command has ended");
    if (!stdin_open_)
      return fail(errc::validation, what_ + ": stdin is not open (set ExecOptions::stdin_pipe "
                                            "or tty, and do not write after close_stdin)");
    constexpr std::size_t chunk = std::size_t{1} << 20;
    while (!data.empty()) {
      http::wire::ExecStreamRequest m;
      m.stdin_bytes = std::string(data.substr(0, chunk));
      // At most a few messages queued: the rest waits here, not in memory.
      SANDBOX_TRYV(until_written(3));
      if (!s_->send(http::to_protobuf(m)))
        return fail(errc::not_running,
                    what_ + ": the command ended before reading all of its stdin");
      data.remove_prefix(std::min(chunk, data.size()));
    }
    return until_written(0);
  }

  /// Ends the command's stdin (a terminal gets end-of-file, Ctrl-D, as locally). Idempotent.
  /// Without a terminal the call is half-closed too; a terminal's stays open for resizes.
  [[nodiscard]] result<void> close_stdin() noexcept {
    if (!s_ || !stdin_open_) return success();
    stdin_open_ = false;
    if (done_) return success();
    http::wire::ExecStreamRequest m;
    m.close = http::wire::ExecStreamClose{};
    (void)s_->send(http::to_protobuf(m));
    if (!tty_) s_->close_writes();
    return success();
  }

  /// Sets the size of the command's terminal (ExecOptions::tty).
  [[nodiscard]] result<void> resize(TerminalSize size) noexcept {
    if (moved_from())
      return fail(errc::not_running, "no command: this process handle was moved from");
    if (!tty_)
      return fail(errc::validation, what_ + ": no terminal to resize (set ExecOptions::tty)");
    if (done_) return success();
    http::wire::ExecStreamRequest m;
    m.resize = http::wire::ExecStreamResize{size.cols, size.rows};
    (void)s_->send(http::to_protobuf(m));
    return success();
  }

private:
  /// Waits up to `timeout` (forever if unset) for the end; the call's failure, if it failed.
  [[nodiscard]] result<void> wait_ended(std::optional<std::chrono::milliseconds> timeout) noexcept {
    if (moved_from())
      return fail(errc::not_running, "no command: this process handle was moved from");
    std::optional<clock::time_point> until;
    if (timeout) until = sandbox::detail::deadline_after(*timeout);
    while (!done_) {
      advance();
      if (done_) break;
      if (until && clock::now() >= *until)
        return fail(errc::timeout, what_ + ": still running after the wait timed out");
      if (s_)
        s_->wait_event(seen_, until);
      else
        u_->wait(until);
    }
    stop_ahead();
    if (failure_) return fail(*failure_);
    return success();
  }

  [[nodiscard]] bool moved_from() const noexcept { return !s_ && !u_; }

  /// Handles what has arrived, and the end of the call.
  void advance() noexcept {
    if (s_)
      drain();
    else
      settle();
  }

  /// The end of a unary call, once it has come: the command's result, or the call's failure.
  void settle() noexcept {
    auto end = u_->ended();
    if (!end) return;
    auto& [st, bytes] = *end;
    if (st.ok()) { // ended before any kill took effect: killing an ended command does nothing
      auto x = http::from_protobuf<http::wire::ExecResponse>(bytes, http::decode_mode::lenient);
      if (!x)
        return end_with(error(errc::protocol, what_ + ": undecodable Exec answer (" +
                                                  x.assume_error().message + ")"));
      res_ = http::result_of(std::move(x).assume_value(), std::move(res_.command));
      for (auto [text, truncated] : {std::pair(&res_.stdout_text, &res_.stdout_truncated),
                                     std::pair(&res_.stderr_text, &res_.stderr_truncated)})
        if (text->size() > max_output_) {
          text->resize(static_cast<std::size_t>(max_output_));
          *truncated = true;
        }
      done_ = true;
    } else if (killed_) {
      end_with(error(errc::not_running, what_ + ": killed (the call was cancelled; Exec has "
                                                "no signal)"));
    } else {
      end_with(failed_call(st)); // this call sets no deadline of its own
    }
  }

  /// Handles the messages that arrived, and the end of the call.
  void drain() noexcept {
    auto got = s_->take();
    for (const auto& msg : got) {
      if (done_) break;
      if (auto at = output_at(msg)) {
        msg.each_piece(at->from, [&](std::string_view piece) { keep(at->out, piece); });
        continue;
      }
      msg.flatten(flat_);
      auto m =
          http::from_protobuf<http::wire::ExecStreamResponse>(flat_, http::decode_mode::lenient);
      if (!m) {
        end_with(error(errc::protocol, what_ + ": undecodable StreamExec message (" +
                                           m.assume_error().message + ")"));
        return;
      }
      handle(std::move(m).assume_value());
    }
    if (done_) return;
    auto st = s_->ended();
    if (!st) return;
    if (exited_) {
      done_ = true;
    } else if (killed_) {
      end_with(error(errc::not_running, what_ + ": killed (the call was cancelled; StreamExec "
                                                "has no signal)"));
    } else if (st->error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && timeout_) {
      error e(errc::command_timeout, what_ + ": timed out and was killed");
      e.exec_result = std::make_shared<const ExecResult>(res_);
      end_with(std::move(e));
    } else if (st->ok()) {
      end_with(error(errc::protocol, what_ + ": the call ended without the command's exit"));
    } else {
      end_with(failed_call(*st));
    }
  }

  /// The error of a call that ended with `st` (not OK). A deadline not ours (a proxy's, the
  /// server's) ended the call, which errc::timeout ("still running, wait again") would not say.
  [[nodiscard]] error failed_call(const grpc::Status& st) const noexcept {
    error e = error_of(st, what_);
    if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
      e.code = make_error_code(errc::not_running);
    return e;
  }

  void handle(http::wire::ExecStreamResponse&& m) noexcept {
    if (m.output) {
      bool out = m.output->stream != http::wire::OutputStream::STREAM_STDERR;
      keep(out, m.output->data);
    } else if (m.exit) {
      exited_ = true;
      res_.returncode = m.exit->exit_code; // a signal's end is not told apart over the wire
    } else if (m.error) {
      http::wire::Status st;
      st.code = static_cast<std::int32_t>(http::grpc_code_from_name(m.error->code));
      st.message = m.error->message;
      error e = http::error_from_status(0, st);
      e.message = what_ + ": " + e.message;
      end_with(std::move(e));
    }
  }

  /// Keeps what fits under the cap, counts all of it, and shows all of it to the callback.
  void keep(bool out, std::string_view data) noexcept {
    sandbox::detail::append_capped_ahead(
        ahead_[out ? 0 : 1], out ? res_.stdout_text : res_.stderr_text, data, max_output_,
        out ? res_.stdout_truncated : res_.stderr_truncated,
        out ? res_.stdout_bytes_produced : res_.stderr_bytes_produced);
    const output_callback& cb = out ? on_out_ : on_err_;
    if (cb) cb(data);
  }

  /// Once the call has ended: what was faulted in past each output is handed back, and the
  /// threads end (a step under way is waited for).
  void stop_ahead() noexcept {
    ahead_[0].end(res_.stdout_text);
    ahead_[1].end(res_.stderr_text);
  }

  void end_with(error e) noexcept {
    failure_ = std::move(e);
    done_ = true;
    if (s_ && !s_->ended()) s_->cancel();
  }

  /// Handles output until at most `most` stdin messages are waiting to be written.
  [[nodiscard]] result<void> until_written(std::size_t most) noexcept {
    for (;;) {
      drain();
      if (s_->write_failed() || done_) {
        if (failure_ && !failure_->is(errc::not_running)) return fail(*failure_);
        return fail(errc::not_running, what_ + ": the command ended before reading all of its "
                                               "stdin");
      }
      if (s_->unwritten() <= most) return success();
      s_->wait_event(seen_, std::nullopt, true);
    }
  }

  /// A call is freed only after grpc++ is done with it: cancelled, then waited for.
  struct finisher {
    template <class Call>
    void operator()(Call* c) const noexcept {
      c->finish();
      delete c;
    }
  };

  std::unique_ptr<exec_stream, finisher> s_; // one of the two
  std::unique_ptr<unary_call, finisher> u_;
  /// Large kept output, stdout and stderr: declared before res_, so that a move-assignment stops
  /// the old threads before the old buffers go.
  sandbox::detail::prefaulter ahead_[2];
  ExecResult res_;
  std::uint64_t max_output_ = default_max_output_bytes;
  output_callback on_out_, on_err_;
  std::string flat_; ///< a StreamExec message other than output, in one piece to be decoded
  std::optional<error> failure_;
  std::string what_;
  bool timeout_ = false;
  std::uint64_t seen_ = 0;
  bool exited_ = false, done_ = false, killed_ = false, tty_ = false, stdin_open_ = false;
};

} // namespace sandbox::rpc::detail
