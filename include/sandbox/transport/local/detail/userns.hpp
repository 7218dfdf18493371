// SPDX-License-Identifier: MIT
// Sandboxes for a caller that is not root: the supervisor is cloned into a new user namespace in
// which it is root, mapped to the caller's own uid and gid outside and to nothing else. This file
// writes that mapping and explains, in terms of the host's settings, why a host refuses it.
#pragma once

#include <sandbox/detail/text.hpp>
#include <sandbox/detail/unique_fd.hpp>
#include <sandbox/errors.hpp>
#include <sandbox/result.hpp>

#include <cerrno>
#include <cstdio>
#include <string>

#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

namespace sandbox::local::detail {

using namespace sandbox::detail; // text, unique_fd, random: the library-wide helpers

/// Whether sandboxes of this process need a user namespace: the caller is not root.
[[nodiscard]] inline bool needs_user_ns() noexcept { return ::geteuid() != 0; }

/// The first line of a /proc/sys file, or "" when it cannot be read.
[[nodiscard]] inline std::string read_sysctl(const char* path) noexcept {
  unique_fd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  char buf[64];
  ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
  if (n <= 0) return {};
  std::string s(buf, static_cast<std::size_t>(n));
  if (auto nl = s.find('\n'); nl != std::string::npos) s.resize(nl);
  return s;
}

/// Writes one /proc file of the user namespace mapping.
[[nodiscard]] inline result<void> write_id_file(const std::string& path,
                                                const std::string& text) noexcept {
  unique_fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return fail(errc::unsupported, "opening " + path + ": " + errno_text(errno));
  ssize_t n = ::write(fd.get(), text.data(), text.size());
  if (n != static_cast<ssize_t>(text.size()))
    return fail(errc::unsupported, "writing \"" + text.substr(0, text.size() - 1) + "\" to " +
                                       path + ": " + errno_text(n < 0 ? errno : EIO));
  return success();
}

/// Maps root in `pid`'s new user namespace to the caller's uid and gid, and nothing else. The
/// caller's supplementary groups stay as they are outside (setgroups is denied, as the kernel
/// requires before an unprivileged gid_map).
/// **Errors:** unsupported (the kernel refused a write; the message names the file).
[[nodiscard]] inline result<void> write_id_maps(pid_t pid) noexcept {
  std::string proc = "/proc/" + std::to_string(pid);
  SANDBOX_TRYV(write_id_file(proc + "/uid_map", "0 " + std::to_string(::geteuid()) + " 1\n"));
  SANDBOX_TRYV(write_id_file(proc + "/setgroups", "deny\n"));
  return write_id_file(proc + "/gid_map", "0 " + std::to_string(::getegid()) + " 1\n");
}

/// Why clone(CLONE_NEWUSER | …) failed with `err`, in terms of what the host lacks.
[[nodiscard]] inline std::string explain_user_ns_refusal(int err) noexcept {
  std::string why = "creating a user namespace was refused (" + errno_text(err) + ")";
  if (read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == "0")
    return why + ": unprivileged user namespaces are disabled on this host "
                 "(sysctl kernel.unprivileged_userns_clone=0); run as root or set it to 1";
  if (read_sysctl("/proc/sys/user/max_user_namespaces") == "0")
    return why + ": user namespaces are disabled on this host (sysctl "
                 "user.max_user_namespaces=0); run as root or raise it";
  if (read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1")
    return why + ": AppArmor restricts unprivileged user namespaces on this host (sysctl "
                 "kernel.apparmor_restrict_unprivileged_userns=1); run as root or allow it";
  if (err == ENOSPC)
    return why + ": the limit user.max_user_namespaces (or a nesting limit) is reached";
  if (err == EINVAL || err == ENOSYS)
    return why + ": this kernel has no user namespaces (CONFIG_USER_NS); run as root";
  return why + ": local sandboxes need root, or unprivileged user namespaces, on this host";
}

/// Why the overlay root failed inside a user namespace: overlayfs accepts unprivileged mounts
/// only from Linux 5.11.
[[nodiscard]] inline std::string explain_user_ns_overlay(int err) noexcept {
  utsname u{};
  std::string why = errno_text(err);
  if (::uname(&u) == 0) {
    int major = 0, minor = 0;
    if (std::sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
        (major < 5 || (major == 5 && minor < 11)))
      return why + " (overlayfs in a user namespace needs Linux 5.11 or later; this is " +
             u.release + "): run as root";
  }
  return why;
}

} // namespace sandbox::local::detail
