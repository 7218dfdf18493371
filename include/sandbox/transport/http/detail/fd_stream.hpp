// SPDX-License-Identifier: MIT
// What of cpp-httplib's Stream only needs a socket descriptor: shared by the client's plain-TCP
// stream and the server's connections, which differ in how they read, write and wait.
#pragma once

#include <sandbox/detail/socket.hpp>

#include <httplib.h>

#include <string>

#include <sys/socket.h>

namespace sandbox::http::detail {

/// A Stream over socket `fd_` (not owned here): its two addresses and the descriptor.
class fd_stream : public httplib::Stream {
public:
  explicit fd_stream(int fd) noexcept : fd_(fd) {}

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sandbox::detail::socket_endpoint(fd_, ::getpeername, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sandbox::detail::socket_endpoint(fd_, ::getsockname, ip, port);
  }
  socket_t socket() const override { return fd_; }

protected:
  int fd_;
};

} // namespace sandbox::http::detail
