// SPDX-License-Identifier: MIT
// Reading a small file (/proc, /sys) whole.
#pragma once

#include <cerrno>
#include <cstddef>
#include <string>

#include <fcntl.h>
#include <unistd.h>

namespace sandbox::detail {

/// The whole content of a small file; empty when it cannot be read.
[[nodiscard]] inline std::string read_text(const std::string& path) noexcept {
  std::string out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

} // namespace sandbox::detail
