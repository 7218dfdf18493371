// SPDX-License-Identifier: MIT
// A cpp-httplib client for plain TCP (http://) that reads a response in large pieces.
// cpp-httplib's own stream waits in poll() before every read and reads at most 4 KiB at a time
// (CPPHTTPLIB_RECV_BUFSIZ, compiled into Debian's libcpp-httplib), so a 256 MiB command output
// cost about 175 000 system calls; here a read waits only when the socket has nothing, and takes
// what is there. TLS keeps cpp-httplib's own stream.
#pragma once

#include <sandbox/detail/socket.hpp>
#include <sandbox/transport/http/detail/fd_stream.hpp>

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <new>
#include <string>

#include <poll.h>
#include <sys/socket.h>

namespace sandbox::http::detail {

/// A connection's read buffer: 16 KiB, grown to 256 KiB once a response fills it (more was
/// coming: the rest comes in large pieces), and given back when that response has been read,
/// so that an idle pooled connection holds 16 KiB at most.
struct read_buffer {
  static constexpr std::size_t small_size = 16384;
  static constexpr std::size_t big_size = std::size_t{256} << 10;
  std::unique_ptr<char[]> data;
  std::size_t size = 0;
};

/// One request's view of a connection's socket. What is read ahead of cpp-httplib's asking
/// belongs to the same response (a server sends nothing after a response until the next
/// request), so nothing is left over when the request ends. (cpp-httplib sends a request of its
/// own from within one only to follow a redirect or answer a digest challenge, neither of which
/// this client does; the first stream would not read again anyway.)
class tcp_stream final : public fd_stream {
public:
  tcp_stream(int fd, std::chrono::milliseconds read_timeout,
             std::chrono::milliseconds write_timeout, read_buffer& buf) noexcept
      : fd_stream(fd), read_timeout_(read_timeout), write_timeout_(write_timeout), buf_(buf) {}

  bool is_readable() const override {
    return off_ < len_ || sandbox::detail::poll_for(fd_, POLLIN, read_timeout_);
  }
  bool is_writable() const override {
    return sandbox::detail::poll_for(fd_, POLLOUT, write_timeout_);
  }

  ssize_t read(char* ptr, std::size_t size) override {
    if (off_ == len_) {
      off_ = len_ = 0;
      // A large ask needs no copy (cpp-httplib asks for 4 KiB at most); nor does one that finds
      // no memory for the buffer.
      if (size >= read_buffer::small_size || !refill_room()) return receive(ptr, size);
      ssize_t n = receive(buf_.data.get(), buf_.size);
      if (n <= 0) return n;
      len_ = static_cast<std::size_t>(n);
      filled_ = len_ == buf_.size;
    }
    std::size_t n = std::min(size, len_ - off_);
    std::memcpy(ptr, buf_.data.get() + off_, n);
    off_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, std::size_t size) override {
    return sandbox::detail::send_within(fd_, ptr, size, write_timeout_);
  }

private:
  /// The buffer, made (or made big, when the last read filled it small) now that nothing in it
  /// is still to be read. Short of memory, a small buffer stays small.
  [[nodiscard]] bool refill_room() noexcept {
    if (!buf_.data || (filled_ && buf_.size < read_buffer::big_size)) {
      const std::size_t want = buf_.data ? read_buffer::big_size : read_buffer::small_size;
      if (std::unique_ptr<char[]> d{new (std::nothrow) char[want]}) {
        buf_.data = std::move(d);
        buf_.size = want;
      }
    }
    return buf_.data != nullptr;
  }

  [[nodiscard]] ssize_t receive(char* into, std::size_t size) const noexcept {
    return sandbox::detail::recv_within(fd_, into, size, read_timeout_);
  }

  std::chrono::milliseconds read_timeout_, write_timeout_;
  read_buffer& buf_;
  std::size_t off_ = 0, len_ = 0;
  bool filled_ = false; ///< this response's last read filled the buffer: more was coming
};

/// cpp-httplib's plain client with a `tcp_stream` under each request, over the connection's
/// own read buffer.
class tcp_client final : public httplib::ClientImpl {
public:
  using httplib::ClientImpl::ClientImpl;

private:
  bool process_socket(const Socket& socket,
                      std::function<bool(httplib::Stream& strm)> callback) override {
    tcp_stream s(socket.sock, timeout_of(read_timeout_sec_, read_timeout_usec_),
                 timeout_of(write_timeout_sec_, write_timeout_usec_), buf_);
    const bool ok = callback(s);
    if (buf_.size > read_buffer::small_size) buf_ = read_buffer{};
    return ok;
  }

  /// cpp-httplib's (seconds, microseconds) in whole milliseconds, rounded up; an `endless_wait`
  /// or more (a caller's `milliseconds::max()`, say) stays one, not an overflow.
  [[nodiscard]] static std::chrono::milliseconds timeout_of(time_t sec, time_t usec) noexcept {
    using sandbox::detail::endless_wait;
    if (std::chrono::seconds(sec) >= endless_wait) return endless_wait;
    return std::chrono::ceil<std::chrono::milliseconds>(std::chrono::seconds(sec) +
                                                        std::chrono::microseconds(usec));
  }

  read_buffer buf_;
};

} // namespace sandbox::http::detail
