// SPDX-License-Identifier: MIT
// Socket waits, reads and writes with a timeout on each wait, and a socket's address: what the
// HTTP client's stream and the server's connections share.
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdlib>
#include <string>

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>

namespace sandbox::detail {

/// A wait this long or longer (`milliseconds::max()`, say) has no end: a century.
inline constexpr std::chrono::hours endless_wait{24 * 365 * 100};

/// Whether `fd` has one of `events` (or an error or hang-up) within `wait`; a signal resumes the
/// wait with what is left of it. An `endless_wait` has no end; a negative one is none.
[[nodiscard]] inline bool poll_for(int fd, short events, std::chrono::milliseconds wait) noexcept {
  using clock = std::chrono::steady_clock;
  const bool forever = wait >= endless_wait;
  const auto until = forever ? clock::time_point::max()
                             : clock::now() + std::max(wait, std::chrono::milliseconds(0));
  for (;;) {
    int ms = -1;
    if (!forever) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - clock::now()).count();
      ms = static_cast<int>(std::clamp<long long>(left, 0, INT_MAX)); // long waits: in parts
    }
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, ms);
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
    if (r == 0 && clock::now() >= until) return false;
  }
}

/// Reads what `fd` has, up to `size` bytes, waiting (up to `wait`) only when it has nothing:
/// the bytes read, 0 at the end of the stream, -1 on an error or when the wait ran out.
[[nodiscard]] inline ssize_t recv_within(int fd, char* into, std::size_t size,
                                         std::chrono::milliseconds wait) noexcept {
  for (;;) {
    const ssize_t n = ::recv(fd, into, size, MSG_DONTWAIT);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno != EAGAIN || !poll_for(fd, POLLIN, wait)) return -1;
  }
}

/// Writes what `fd` takes of `size` bytes, waiting (up to `wait`) only when it takes nothing:
/// the bytes written, -1 on an error (the peer gone: no SIGPIPE) or when the wait ran out.
[[nodiscard]] inline ssize_t send_within(int fd, const char* from, std::size_t size,
                                         std::chrono::milliseconds wait) noexcept {
  for (;;) {
    const ssize_t n = ::send(fd, from, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno != EAGAIN || !poll_for(fd, POLLOUT, wait)) return -1;
  }
}

/// The numeric address and port of one end of a socket: `name` is ::getpeername or
/// ::getsockname. Leaves both as they were when the socket has none.
template <class Name>
void socket_endpoint(int fd, Name name, std::string& ip, int& port) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  if (name(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0 ||
      ::getnameinfo(reinterpret_cast<sockaddr*>(&a), len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return;
  ip = host;
  port = std::atoi(serv);
}

} // namespace sandbox::detail
