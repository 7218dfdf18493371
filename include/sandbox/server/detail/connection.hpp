// SPDX-License-Identifier: MIT
// What a request handler of the REST front end asks about its caller: the bearer token check,
// and whether the client is still there.
#pragma once

#include <cstddef>
#include <string_view>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace sandbox::serve::detail {

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
/// the connection's TCP state: anything but ESTABLISHED (CLOSE_WAIT after the client's FIN, CLOSE
/// after its RST) is gone. The server's own `shutdown(SHUT_RD)` at stop leaves it ESTABLISHED.
class client_watch {
public:
  explicit client_watch(int fd) noexcept : fd_(fd) {}

  /// True once the connection is no longer established. False while it is, and whenever the
  /// kernel cannot tell (not a TCP socket): the command then runs to its end.
  [[nodiscard]] bool gone() const noexcept {
    tcp_info info{};
    socklen_t len = sizeof info;
    if (fd_ < 0 || ::getsockopt(fd_, IPPROTO_TCP, TCP_INFO, &info, &len) != 0 || len < 1)
      return false;
    return info.tcpi_state != TCP_ESTABLISHED;
  }

private:
  int fd_;
};

} // namespace sandbox::serve::detail
