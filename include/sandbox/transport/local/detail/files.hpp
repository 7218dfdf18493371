// SPDX-License-Identifier: MIT
// read_file / write_file of the local transport: opening a path of a sandbox from the client,
// where every path and every file belongs to whatever runs inside.
//
// The client opens with its own credentials (often the host's root, with every capability), so
// the only safe files are those whose content does not depend on who opens them: regular files
// of ordinary filesystems. Paths resolve in the sandbox's root (RESOLVE_IN_ROOT: `..` and
// absolute symlinks stay inside) and never through /proc magic links (RESOLVE_NO_MAGICLINKS).
// Files of the kernel's pseudo filesystems (/proc, /sys, cgroups, debugfs, …) are refused: what
// they show depends on the opener (the client may read /proc/1/environ, a copy of its own
// environment, and real kernel addresses in /proc/kallsyms), and opening or reading them can
// have effects of their own (reading /proc/kmsg consumes the kernel log and then waits).
// Every path is first resolved to an O_PATH descriptor, which opens nothing, and checked; only
// then is it opened for real (never with O_TRUNC, nor with O_CREAT over an existing name), and
// the descriptor actually used is checked again, so a link swapped in between cannot pass.
#pragma once

#include <sandbox/detail/text.hpp>
#include <sandbox/detail/unique_fd.hpp>
#include <sandbox/result.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace sandbox::local::detail::files {

using namespace sandbox::detail; // text, unique_fd, random: the library-wide helpers

using clock = std::chrono::steady_clock;

/// What a file operation names in its errors, and when it gives up.
struct target {
  std::string_view id;   ///< the sandbox
  std::string_view path; ///< as the caller gave it
  clock::time_point deadline;
};

/// The name of a kernel pseudo filesystem (procfs, sysfs, …) by its statfs magic number;
/// nullptr for filesystems that hold files (ext4, tmpfs, overlayfs, …).
[[nodiscard]] inline const char* kernel_fs_name(std::uint64_t magic) noexcept {
  switch (magic) {
  case 0x9fa0: return "procfs";
  case 0x62656572: return "sysfs";
  case 0x27e0eb: return "cgroup";
  case 0x63677270: return "cgroup2";
  case 0x64626720: return "debugfs";
  case 0x74726163: return "tracefs";
  case 0x73636673: return "securityfs";
  case 0xcafe4a11: return "bpf";
  case 0x62656570: return "configfs";
  case 0x6165676c: return "pstore";
  case 0xde5e81e4: return "efivarfs";
  case 0xf97cff8c: return "selinuxfs";
  case 0x43415d53: return "smackfs";
  case 0x5a3c69f0: return "apparmorfs";
  case 0x1cd1: return "devpts";
  case 0x42494e4d: return "binfmt_misc";
  case 0x65735543: return "fusectl";
  case 0x19800202: return "mqueue";
  case 0x7655821: return "resctrl";
  case 0x6c6f6f70: return "binderfs";
  case 0x9fa1: return "openpromfs";
  case 0x9fa2: return "usbdevfs";
  case 0xabba1974: return "xenfs";
  case 0x6e736673: return "nsfs";
  case 0x50494446: return "pidfs";
  case 0x09041934: return "anon_inodefs";
  case 0x534f434b: return "sockfs";
  case 0x50495045: return "pipefs";
  case 0x62646576: return "bdev";
  case 0x444d4142: return "dmabuf";
  case 0x454d444d: return "devmem";
  case 0x5345434d: return "secretmem";
  case 0x0187: return "autofs";
  case 0x67596969: return "rpc_pipefs";
  case 0x6e667364: return "nfsd";
  case 0x0a647361: return "functionfs";
  case 0xaee71ee7: return "gadgetfs";
  case 0x687970: return "hypfs";
  case 0x6f70726f: return "oprofilefs";
  case 0x66726f67: return "ibmasmfs";
  case 0x726a77: return "ipathfs";
  case 0x76a9f425: return "ocfs2_dlmfs";
  default: return nullptr;
  }
}

[[nodiscard]] inline std::string where(const target& t) {
  return quoted_excerpt(t.path, 256) + " in sandbox " + std::string(t.id);
}

/// The error of a failed system call on `t`.
[[nodiscard]] inline error from_errno(const target& t, int err) {
  errc code = err == ENOENT || err == ENOTDIR ? errc::file_not_found
              : err == EISDIR                 ? errc::file_is_directory
              : err == EACCES || err == EPERM || err == EROFS || err == ELOOP || err == EXDEV ||
                      err == ETXTBSY
                  ? errc::file_permission
              : err == EFBIG || err == ENOSPC || err == EDQUOT ? errc::file_too_large
                                                               : errc::file_io;
  std::string why = err == ELOOP ? "too many symbolic links, or a /proc magic link (/proc/<pid>/"
                                   "root, cwd, exe, fd/…), which the file API does not follow"
                                 : errno_text(err);
  return error(code, where(t) + ": " + why);
}

[[nodiscard]] inline error too_large(const target& t, std::uint64_t size, std::uint64_t limit) {
  return error(errc::file_too_large, where(t) + " is larger than " + std::to_string(limit) +
                                         " bytes (" + std::to_string(size) + " or more)");
}

[[nodiscard]] inline error timed_out(const target& t, const char* doing) {
  return error(errc::timeout, std::string(doing) + " " + where(t) +
                                  " did not finish before the file operation deadline "
                                  "(local_transport::options::file_timeout)");
}

/// Refuses what is not a regular file of an ordinary filesystem. `fd` may be an O_PATH one.
[[nodiscard]] inline result<void> check_file(int fd, const target& t, bool reading) noexcept {
  struct statfs fs {};
  if (::fstatfs(fd, &fs) != 0) return fail(from_errno(t, errno));
  if (const char* name = kernel_fs_name(static_cast<std::uint64_t>(fs.f_type)))
    return fail(errc::file_permission, where(t) + " is a kernel interface (/proc, /sys: " + name +
                                           "), not a file: " + (reading ? "read" : "write") +
                                           " it with exec");
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail(from_errno(t, errno));
  if (S_ISDIR(st.st_mode)) return fail(from_errno(t, EISDIR));
  if (!S_ISREG(st.st_mode))
    return fail(errc::file_io, where(t) + " is not a regular file (" +
                                   (S_ISFIFO(st.st_mode)   ? "a FIFO"
                                    : S_ISSOCK(st.st_mode) ? "a socket"
                                    : S_ISCHR(st.st_mode)  ? "a character device"
                                    : S_ISBLK(st.st_mode)  ? "a block device"
                                                           : "a special file") +
                                   ")");
  return success();
}

/// Resolution inside the sandbox: as if chrooted to `root`, never through magic links.
inline constexpr std::uint64_t in_root = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;

/// openat2, retried on EINTR; returns the fd or -errno.
[[nodiscard]] inline int open2(int dirfd, const char* path, std::uint64_t flags,
                               std::uint64_t resolve, std::uint64_t mode = 0) noexcept {
  open_how how{};
  // openat2 refuses O_PATH with any flag but O_CLOEXEC, O_DIRECTORY and O_NOFOLLOW.
  how.flags = flags | O_CLOEXEC | ((flags & O_PATH) ? 0 : O_NOCTTY);
  how.mode = mode;
  how.resolve = resolve;
  for (;;) {
    long fd = ::syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    if (fd >= 0) return static_cast<int>(fd);
    if (errno != EINTR) return -errno;
  }
}

/// Whether to try again after `err`: EAGAIN is what openat2 returns when a rename raced with
/// resolving `..` in the root (and what a lease held on the file returns under O_NONBLOCK).
[[nodiscard]] inline bool again(int err, int& tries, const target& t) noexcept {
  return err == EAGAIN && ++tries < 16 && clock::now() < t.deadline;
}

/// Syntax only: absolute, no NUL, within PATH_MAX and NAME_MAX.
[[nodiscard]] inline result<void> validate_path(std::string_view path) noexcept {
  if (path.empty() || path[0] != '/' || path.find('\0') != std::string_view::npos)
    return fail(errc::validation,
                "file path must be absolute, without NUL bytes, got " + quoted_excerpt(path, 256));
  if (path.size() >= 4096)
    return fail(errc::validation, "file path is longer than PATH_MAX (4096 bytes): " +
                                      std::to_string(path.size()) + " bytes");
  std::size_t start = 0;
  while (start < path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (end - start > 255)
      return fail(errc::validation, "file path has a name longer than NAME_MAX (255 bytes): " +
                                        quoted_excerpt(path, 256));
    start = end + 1;
  }
  return success();
}

/// Opens the regular file at `path` inside the sandbox whose root is `root`, for reading.
/// `t.path` has passed validate_path.
[[nodiscard]] inline result<unique_fd> open_read(int root, const target& t) noexcept {
  const std::string p(t.path);
  for (int tries = 0;;) {
    int fd = open2(root, p.c_str(), O_PATH, in_root);
    if (fd < 0) {
      if (again(-fd, tries, t)) continue;
      return fail(from_errno(t, -fd));
    }
    unique_fd resolved(fd);
    SANDBOX_TRYV(check_file(resolved.get(), t, true));
    // The same resolution again, now opening: a link swapped meanwhile is caught by the check
    // of the descriptor that is read.
    fd = open2(root, p.c_str(), O_RDONLY | O_NONBLOCK, in_root);
    if (fd < 0) {
      if (again(-fd, tries, t)) continue;
      return fail(from_errno(t, -fd));
    }
    unique_fd file(fd);
    SANDBOX_TRYV(check_file(file.get(), t, true));
    return file;
  }
}

/// Opens (creating or emptying) the regular file at `path` inside the sandbox, for writing.
/// A dangling symlink is followed to create its target, as a shell's `>` would, inside.
/// `t.path` has passed validate_path.
[[nodiscard]] inline result<unique_fd> open_write(int root, const target& t) noexcept {
  std::string p(t.path);
  for (int tries = 0, links = 0;;) {
    int fd = open2(root, p.c_str(), O_PATH, in_root);
    if (fd >= 0) {
      unique_fd resolved(fd);
      SANDBOX_TRYV(check_file(resolved.get(), t, false));
      // No O_TRUNC (a kernel file may act on it before the check) and no O_CREAT.
      fd = open2(root, p.c_str(), O_WRONLY | O_NONBLOCK, in_root);
      if (fd < 0) {
        if (-fd == ENOENT && ++tries < 16) continue; // removed meanwhile: create it
        if (again(-fd, tries, t)) continue;
        return fail(from_errno(t, -fd));
      }
      unique_fd file(fd);
      SANDBOX_TRYV(check_file(file.get(), t, false));
      int rc;
      do
        rc = ::ftruncate(file.get(), 0);
      while (rc != 0 && errno == EINTR);
      if (rc != 0) return fail(from_errno(t, errno));
      return file;
    }
    if (again(-fd, tries, t)) continue;
    if (-fd != ENOENT) return fail(from_errno(t, -fd));
    // Nothing there: create the last name in its directory, which must be an ordinary one.
    std::size_t slash = p.rfind('/');
    std::string dir = slash == 0 ? std::string("/") : p.substr(0, slash);
    std::string name = p.substr(slash + 1);
    fd = open2(root, dir.c_str(), O_PATH | O_DIRECTORY, in_root);
    if (fd < 0) {
      if (again(-fd, tries, t)) continue;
      return fail(from_errno(t, -fd));
    }
    unique_fd parent(fd);
    struct statfs fs {};
    if (::fstatfs(parent.get(), &fs) != 0) return fail(from_errno(t, errno));
    if (const char* kind = kernel_fs_name(static_cast<std::uint64_t>(fs.f_type)))
      return fail(errc::file_permission, where(t) +
                                             " would be a new file in a kernel interface "
                                             "(/proc, /sys: " +
                                             kind + "), not a directory of files");
    if (name.empty() || name == "." || name == "..") return fail(from_errno(t, EISDIR));
    // O_EXCL: never through a symlink, never over a file that appeared meanwhile.
    fd = open2(parent.get(), name.c_str(), O_WRONLY | O_NONBLOCK | O_CREAT | O_EXCL | O_NOFOLLOW,
               RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV, 0644);
    if (fd >= 0) {
      unique_fd file(fd);
      SANDBOX_TRYV(check_file(file.get(), t, false));
      (void)::fchmod(file.get(), 0644); // whatever the client's umask
      return file;
    }
    if (-fd != EEXIST) {
      if (again(-fd, tries, t)) continue;
      return fail(from_errno(t, -fd));
    }
    // A name exists after all: a dangling symlink (create its target, resolved inside, as the
    // kernel would), or a file created meanwhile (open it on the next round).
    char link[4096];
    ssize_t n = ::readlinkat(parent.get(), name.c_str(), link, sizeof link);
    if (n < 0) {
      if ((errno == EINVAL || errno == ENOENT) && ++tries < 16) continue;
      return fail(from_errno(t, errno == EINVAL ? EEXIST : errno));
    }
    if (static_cast<std::size_t>(n) >= sizeof link) return fail(from_errno(t, ENAMETOOLONG));
    if (++links > 40) return fail(from_errno(t, ELOOP));
    std::string_view to(link, static_cast<std::size_t>(n));
    if (to.empty()) return fail(from_errno(t, ENOENT));
    p = to[0] == '/' ? std::string(to) : dir + "/" + std::string(to);
    if (p.size() >= 4096) return fail(from_errno(t, ENAMETOOLONG));
  }
}

/// Waits until `fd` is ready (a regular file always is; O_NONBLOCK keeps it from ever
/// blocking); false once the deadline has passed.
[[nodiscard]] inline bool wait_ready(int fd, short events, const target& t) noexcept {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(t.deadline - clock::now());
  if (left.count() <= 0) return false;
  pollfd p{fd, events, 0};
  int ms = left.count() > 1000 ? 1000 : static_cast<int>(left.count()) + 1;
  (void)::poll(&p, 1, ms);
  return true;
}

/// Largest single read or write: the deadline is checked between them.
inline constexpr std::size_t chunk = std::size_t{1} << 20;

/// Reads `fd` to its end, at most `limit` bytes, before the deadline.
[[nodiscard]] inline result<std::string> read_all(int fd, const target& t,
                                                  std::uint64_t limit) noexcept {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail(from_errno(t, errno));
  std::string data;
  if (auto size = static_cast<std::uint64_t>(st.st_size); size > limit)
    return fail(too_large(t, size, limit));
  else
    data.reserve(static_cast<std::size_t>(size));
  for (;;) {
    // Files may grow while being read: read until EOF (bounded by `limit` and the deadline).
    if (data.size() == data.capacity()) data.reserve(data.size() < 65536 ? 65536 : data.size() * 2);
    std::size_t old = data.size();
    std::size_t want = std::min(data.capacity() - old, chunk);
    data.resize(old + want);
    ssize_t n = ::read(fd, data.data() + old, want);
    data.resize(old + static_cast<std::size_t>(n > 0 ? n : 0));
    if (n == 0) return data;
    if (n < 0) {
      int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN && wait_ready(fd, POLLIN, t)) continue;
      if (err == EAGAIN) return fail(timed_out(t, "reading"));
      return fail(from_errno(t, err));
    }
    if (data.size() > limit) return fail(too_large(t, data.size(), limit));
    if (clock::now() >= t.deadline) return fail(timed_out(t, "reading"));
  }
}

/// Writes all of `data` to `fd` before the deadline.
[[nodiscard]] inline result<void> write_all(int fd, const target& t,
                                            std::string_view data) noexcept {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), std::min(data.size(), chunk));
    if (n < 0) {
      int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN && wait_ready(fd, POLLOUT, t)) continue;
      if (err == EAGAIN) return fail(timed_out(t, "writing"));
      return fail(from_errno(t, err));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
    if (!data.empty() && clock::now() >= t.deadline) return fail(timed_out(t, "writing"));
  }
  return success();
}

} // namespace sandbox::local::detail::files
