// SPDX-License-Identifier: MIT
// The REST front end's view of its connections: cpp-httplib's server with a deeper listen backlog,
// the bearer token check, whether a request's client is still there, and ending idle keep-alive
// reads on stop.
#pragma once

#include <httplib.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <arpa/inet.h>
#include <dirent.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

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

/// Whether the client of a request has closed (or reset) its connection, asked of the kernel by
/// the connection's endpoints (sock_diag): cpp-httplib does not hand a handler its socket.
class client_watch {
public:
  explicit client_watch(const httplib::Request& req) noexcept {
    req_.nlh.nlmsg_len = sizeof req_;
    req_.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req_.nlh.nlmsg_flags = NLM_F_REQUEST; // one socket by its endpoints, not a dump
    req_.r.sdiag_protocol = IPPROTO_TCP;
    req_.r.idiag_states = ~0u;
    req_.r.id.idiag_cookie[0] = req_.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    // The kernel looks the socket up as for a packet from the client: src is this end.
    req_.r.id.idiag_sport = htons(static_cast<std::uint16_t>(req.local_port));
    req_.r.id.idiag_dport = htons(static_cast<std::uint16_t>(req.remote_port));
    if (::inet_pton(AF_INET, req.local_addr.c_str(), req_.r.id.idiag_src) == 1 &&
        ::inet_pton(AF_INET, req.remote_addr.c_str(), req_.r.id.idiag_dst) == 1)
      req_.r.sdiag_family = AF_INET;
    else if (::inet_pton(AF_INET6, req.local_addr.c_str(), req_.r.id.idiag_src) == 1 &&
             ::inet_pton(AF_INET6, req.remote_addr.c_str(), req_.r.id.idiag_dst) == 1)
      req_.r.sdiag_family = AF_INET6;
    if (req_.r.sdiag_family != 0)
      fd_ = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  }
  ~client_watch() {
    if (fd_ >= 0) ::close(fd_);
  }
  client_watch(const client_watch&) = delete;
  client_watch& operator=(const client_watch&) = delete;

  /// True once the connection is no longer established: the client sent FIN or RST, or the
  /// socket is gone. False while it is, and where the kernel cannot be asked (no sock_diag):
  /// the command then runs to its end.
  [[nodiscard]] bool gone() noexcept {
    if (fd_ < 0) return false;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(fd_, &req_, sizeof req_, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) !=
        static_cast<ssize_t>(sizeof req_))
      return false;
    alignas(nlmsghdr) char buf[1024];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < static_cast<ssize_t>(sizeof(nlmsghdr))) return false;
    const auto* h = reinterpret_cast<const nlmsghdr*>(buf);
    if (h->nlmsg_type == NLMSG_ERROR) {
      const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
      return e->error == -ENOENT; // no such socket: closed
    }
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || NLMSG_PAYLOAD(h, 0) < sizeof(inet_diag_msg))
      return false;
    // A closed connection's lookup can also find the listening socket: anything but
    // ESTABLISHED is gone (CLOSE_WAIT: the client's FIN).
    return static_cast<const inet_diag_msg*>(NLMSG_DATA(h))->idiag_state != TCP_ESTABLISHED;
  }

private:
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 r;
  } req_{};
  int fd_ = -1;
};

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
