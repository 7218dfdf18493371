// SPDX-License-Identifier: MIT
// Small socket helpers shared by the HTTP client's stream and the server's connections.
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <string>

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>

namespace sandbox::detail {

/// Whether `fd` has one of `events` within `wait`; a signal resumes the wait with what is left.
[[nodiscard]] inline bool poll_for(int fd, short events, std::chrono::microseconds wait) noexcept {
  auto until = std::chrono::steady_clock::now() + wait;
  for (;;) {
    pollfd p{fd, events, 0};
    auto left =
        std::chrono::ceil<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    int r = ::poll(&p, 1, static_cast<int>(std::max<long long>(left.count(), 0)));
    if (r > 0) return true;
    if (r == 0 || errno != EINTR) return false;
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
