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
    const std::string local = unscoped(req.local_addr), remote = unscoped(req.remote_addr);
    if (::inet_pton(AF_INET, local.c_str(), req_.r.id.idiag_src) == 1 &&
        ::inet_pton(AF_INET, remote.c_str(), req_.r.id.idiag_dst) == 1)
      req_.r.sdiag_family = AF_INET;
    else if (::inet_pton(AF_INET6, local.c_str(), req_.r.id.idiag_src) == 1 &&
             ::inet_pton(AF_INET6, remote.c_str(), req_.r.id.idiag_dst) == 1)
      req_.r.sdiag_family = AF_INET6;
  }
  ~client_watch() {
    if (fd_ >= 0) ::close(fd_);
  }
  client_watch(const client_watch&) = delete;
  client_watch& operator=(const client_watch&) = delete;

  /// True once the connection is no longer established: the client sent FIN or RST, or the
  /// socket is gone. False while it is, and whenever the kernel cannot tell (no sock_diag for
  /// TCP, no descriptor left): the command then runs to its end.
  [[nodiscard]] bool gone() noexcept {
    switch (query()) {
    case answer::established: seen_ = true; return false;
    case answer::other_state: return true; // CLOSE_WAIT (the client's FIN), or the listener
    case answer::no_socket: return seen_;  // also what a kernel without TCP diag answers
    case answer::unknown: return false;
    }
    return false;
  }

private:
  enum class answer { established, other_state, no_socket, unknown };

  [[nodiscard]] static std::string unscoped(const std::string& addr) {
    return addr.substr(0, addr.find('%')); // fe80::1%eth0
  }

  [[nodiscard]] answer query() noexcept {
    if (req_.r.sdiag_family == 0) return answer::unknown;
    if (fd_ < 0) fd_ = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd_ < 0) return answer::unknown;
    req_.nlh.nlmsg_seq = ++seq_;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    ssize_t sent;
    do
      sent =
          ::sendto(fd_, &req_, sizeof req_, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel);
    while (sent < 0 && errno == EINTR);
    if (sent != static_cast<ssize_t>(sizeof req_)) return answer::unknown;
    // The kernel answers within sendto; an older answer left by an interrupted call is skipped.
    for (;;) {
      alignas(nlmsghdr) char buf[1024];
      ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return answer::unknown;
      const auto* h = reinterpret_cast<const nlmsghdr*>(buf);
      if (!NLMSG_OK(h, static_cast<unsigned>(n)) || h->nlmsg_seq != seq_) continue;
      if (h->nlmsg_type == NLMSG_ERROR) {
        if (NLMSG_PAYLOAD(h, 0) < sizeof(nlmsgerr)) return answer::unknown;
        // ESTALE: the endpoints now name another socket than the one seen (its cookie).
        int err = -static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error;
        return err == ENOENT || err == ESTALE ? answer::no_socket : answer::unknown;
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || NLMSG_PAYLOAD(h, 0) < sizeof(inet_diag_msg))
        return answer::unknown;
      const auto* m = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
      if (m->idiag_state != TCP_ESTABLISHED) return answer::other_state;
      if (m->id.idiag_sport != req_.r.id.idiag_sport || m->id.idiag_dport != req_.r.id.idiag_dport)
        return answer::unknown;
      // From now on only this very socket answers: a new connection on the same endpoints is
      // not the request's.
      req_.r.id.idiag_cookie[0] = m->id.idiag_cookie[0];
      req_.r.id.idiag_cookie[1] = m->id.idiag_cookie[1];
      return answer::established;
    }
  }

  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 r;
  } req_{};
  int fd_ = -1;
  std::uint32_t seq_ = 0;
  bool seen_ = false; ///< the connection was once found established
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
