// SPDX-License-Identifier: MIT
// The REST front end's view of its connections: cpp-httplib's server with a deeper listen backlog,
// the bearer token check, whether a request's client is still there, and ending idle keep-alive
// reads on stop. cpp-httplib does not hand a request's socket to its handler, so the socket is
// found by its endpoints among this process's descriptors (once per long request).
#pragma once

#include <httplib.h>

#include <cstdlib>
#include <string>
#include <string_view>

#include <dirent.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>

namespace sandbox::serve::detail {

/// cpp-httplib's server with the listen backlog raised (Debian's library is built with 5, which
/// drops connections when many clients connect at once).
class http_server : public httplib::Server {
public:
  [[nodiscard]] bool raise_backlog(int n) noexcept { return ::listen(svr_sock_, n) == 0; }
};

/// Bearer token comparison whose time does not depend on where the strings differ.
[[nodiscard]] inline bool token_matches(std::string_view header, std::string_view token) noexcept {
  constexpr std::string_view prefix = "Bearer ";
  if (header.size() != prefix.size() + token.size() || header.substr(0, prefix.size()) != prefix)
    return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < token.size(); ++i)
    diff |= static_cast<unsigned char>(header[prefix.size() + i] ^ token[i]);
  return diff == 0;
}

/// "127.0.0.1" / port of a socket address, as cpp-httplib spells them in a Request.
[[nodiscard]] inline bool same_endpoint(const sockaddr_storage& a, socklen_t len,
                                        const std::string& ip, int port) noexcept {
  char host[NI_MAXHOST];
  char serv[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&a), len, host, sizeof host, serv,
                    sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return false;
  return ip == host && std::to_string(port) == serv;
}

/// The file descriptor of the connection a request came on (cpp-httplib does not hand it to
/// handlers): the socket whose local and remote endpoints are the request's. -1 if none.
[[nodiscard]] inline int connection_fd(const httplib::Request& req) noexcept {
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return -1;
  int found = -1;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    int fd = std::atoi(e->d_name);
    sockaddr_storage local{}, peer{};
    socklen_t ll = sizeof local, pl = sizeof peer;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0) continue;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;
    if (same_endpoint(local, ll, req.local_addr, req.local_port) &&
        same_endpoint(peer, pl, req.remote_addr, req.remote_port)) {
      found = fd;
      break;
    }
  }
  ::closedir(d);
  return found;
}

/// True when the client at `ip`:`port` has closed (or reset) the connection on `fd`.
[[nodiscard]] inline bool peer_gone(int fd, const std::string& ip, int port) noexcept {
  sockaddr_storage peer{};
  socklen_t pl = sizeof peer;
  // The fd may have been closed and reused: it must still be the request's connection.
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0 ||
      !same_endpoint(peer, pl, ip, port))
    return true;
  pollfd p{fd, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

/// Ends the idle keep-alive waits of a stopping server: every connection accepted on `port`
/// stops reading (a response being written still goes out). Without this, stopping waits for
/// each idle client connection's keep-alive timeout.
inline void stop_reading_connections(int port) noexcept {
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    int fd = std::atoi(e->d_name);
    sockaddr_storage local{}, peer{};
    socklen_t ll = sizeof local, pl = sizeof peer;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0 ||
        ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0)
      continue;
    char serv[NI_MAXSERV];
    if (::getnameinfo(reinterpret_cast<const sockaddr*>(&local), ll, nullptr, 0, serv, sizeof serv,
                      NI_NUMERICSERV) == 0 &&
        std::to_string(port) == serv)
      ::shutdown(fd, SHUT_RD);
  }
  ::closedir(d);
}

} // namespace sandbox::serve::detail
