// SPDX-License-Identifier: MIT
// What of the host's root a sandbox on the default root does not see: home directories, /root,
// the host's state (/var, /run, …) and the secret files of /etc. The host's programs, libraries
// and the /etc files programs need stay visible.
//
// They are hidden in the overlay's upper layer before it is mounted: an opaque empty directory
// in place of a directory, a whiteout in place of a file. Inside, the sandbox sees an ordinary
// system without them, and may create its own (useradd writes a fresh /etc/shadow). Called by
// the supervisor (see supervisor.hpp): async-signal-safe, no allocation.
#pragma once

#include <sandbox/transport/local/detail/libc.hpp>
#include <sandbox/transport/local/detail/protocol.hpp>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#pragma GCC visibility push(hidden) // run by the supervisor: see libc.hpp
namespace sandbox::local::detail::hidden {

enum class kind : unsigned char {
  empty_dir,     ///< shown as an empty directory with the host's mode
  absent,        ///< not there at all
  absent_prefix, ///< every entry of the parent whose name starts with the last component
};

struct entry {
  const char* path; ///< relative to the root, no leading '/'
  kind how;
};

/// The list (README "What a local sandbox hides"). Parents come before their children.
inline constexpr entry paths[] = {
    {"root", kind::empty_dir},
    {"home", kind::empty_dir},
    {"var", kind::empty_dir},
    {"run", kind::empty_dir},
    {"srv", kind::empty_dir},
    {"mnt", kind::empty_dir},
    {"media", kind::empty_dir},
    {"boot", kind::empty_dir}, // System.map and the kernel's config
    {"etc/shadow", kind::absent},
    {"etc/shadow-", kind::absent},
    {"etc/gshadow", kind::absent},
    {"etc/gshadow-", kind::absent},
    {"etc/sudoers", kind::absent},
    {"etc/sudoers.d", kind::absent},
    {"etc/machine-id", kind::absent},
    {"etc/ssh/ssh_host_", kind::absent_prefix},
    {"etc/ssl/private", kind::absent},
    {"etc/security/opasswd", kind::absent},
    {"etc/krb5.keytab", kind::absent},
    {"etc/NetworkManager/system-connections", kind::absent},
    {"etc/wireguard", kind::absent},
    {"etc/ppp/chap-secrets", kind::absent},
    {"etc/ppp/pap-secrets", kind::absent},
    {"etc/credstore", kind::absent},
    {"etc/credstore.encrypted", kind::absent},
};

/// The top-level entries of the host's root a sandbox sees (some of them emptied above); any
/// other (a project's /work, /data, /container_info.json, kernel images) is hidden.
inline constexpr const char* top_level_shown[] = {
    "bin", "boot", "dev",  "etc", "home", "lib", "lib32", "lib64", "libx32", "media", "mnt",
    "opt", "proc", "root", "run", "sbin", "srv", "sys",   "tmp",   "usr",    "var"};

/// Stands for a top-level entry that is not in top_level_shown.
inline constexpr entry unlisted_top_level{"", kind::absent};

/// What an emptied /var and /run still hold, so that programs find the usual places.
struct skeleton_entry {
  const char* path;
  mode_t mode;        ///< a directory, or 0 for a symlink
  const char* target; ///< symlinks only
};
inline constexpr skeleton_entry skeleton[] = {
    {"run/lock", 01777, nullptr}, {"var/cache", 0755, nullptr}, {"var/lib", 0755, nullptr},
    {"var/local", 0755, nullptr}, {"var/log", 0755, nullptr},   {"var/opt", 0755, nullptr},
    {"var/spool", 0755, nullptr}, {"var/tmp", 01777, nullptr},  {"var/run", 0, "/run"},
    {"var/lock", 0, "/run/lock"},
};

/// "a/b" joined with "/" and "c" into `out` (of `cap` bytes); false when it does not fit.
[[nodiscard]] inline bool join(char* out, std::size_t cap, const char* a, const char* b) noexcept {
  std::size_t la = std::strlen(a), lb = std::strlen(b);
  bool slash = la > 0 && a[la - 1] != '/' && lb > 0;
  if (la + slash + lb + 1 > cap) return false;
  std::memcpy(out, a, la);
  if (slash) out[la] = '/';
  std::memcpy(out + la + slash, b, lb + 1);
  return true;
}

/// The entry that hides `rel` (relative to the root), or nullptr when it is not hidden.
[[nodiscard]] inline const entry* find(const char* rel) noexcept {
  if (!libc::strchr(rel, '/')) {
    bool shown = false;
    for (const char* t : top_level_shown)
      shown = shown || std::strcmp(t, rel) == 0;
    if (!shown) return &unlisted_top_level;
  }
  for (const entry& e : paths) {
    if (e.how != kind::absent_prefix) {
      if (std::strcmp(e.path, rel) == 0) return &e;
      continue;
    }
    std::size_t n = std::strlen(e.path);
    if (libc::strncmp(e.path, rel, n) == 0 && !libc::strchr(rel + n, '/')) return &e;
  }
  return nullptr;
}

/// Where an upper layer is being prepared: `upper` holds what overlays `lower_root/prefix`.
struct layer {
  const char* lower_root; ///< "/": the host's root
  const char* prefix;     ///< "" or a directory relative to lower_root, e.g. "etc"
  const char* upper;
  const char* opaque_xattr; ///< trusted.overlay.opaque, or user.overlay.opaque (userxattr)
};

/// Makes `upper/rel`'s missing parent directories with the host's modes and owners (an upper
/// directory's attributes are what the sandbox sees for it). 0 or errno.
[[nodiscard]] inline int make_parents(const layer& l, const char* rel) noexcept {
  char part[4096], up[4096], low[4096], base[4096];
  std::size_t len = std::strlen(rel);
  if (len >= sizeof part || !join(base, sizeof base, l.lower_root, l.prefix)) return ENAMETOOLONG;
  std::memcpy(part, rel, len + 1);
  for (char* p = part; (p = const_cast<char*>(libc::strchr(p, '/'))) != nullptr; ++p) {
    *p = '\0';
    struct stat st {};
    if (!join(up, sizeof up, l.upper, part) || !join(low, sizeof low, base, part))
      return ENAMETOOLONG;
    if (libc::lstat(low, &st) != 0) return errno;
    if (!S_ISDIR(st.st_mode)) return ENOTDIR; // a symlinked parent: see hide_one
    if (libc::mkdir(up, st.st_mode & 07777) == 0) {
      // Refused in a user namespace: it stays the caller's.
      (void)libc::chown(up, st.st_uid, st.st_gid);
      (void)libc::chmod(up, st.st_mode & 07777);
    } else if (errno != EEXIST) {
      return errno;
    }
    *p = '/';
  }
  return 0;
}

/// Hides one entry (`rel` relative to the layer's prefix; `low` its host path). 0 or errno.
[[nodiscard]] inline int hide_one(const layer& l, const char* rel, const char* low,
                                  kind how) noexcept {
  struct stat st {};
  if (libc::lstat(low, &st) != 0) return 0; // the host has none: nothing to hide
  // Below a parent that is a symlink on the host a whiteout cannot be placed; the entry stays
  // (README: residual risk) rather than no sandbox starting on such a host.
  if (int err = make_parents(l, rel); err != 0) return err == ENOTDIR ? 0 : err;
  char up[4096];
  if (!join(up, sizeof up, l.upper, rel)) return ENAMETOOLONG;
  if (how == kind::empty_dir && S_ISDIR(st.st_mode)) {
    if (libc::mkdir(up, 0700) != 0) return errno;
    (void)libc::chown(up, st.st_uid, st.st_gid);
    if (libc::chmod(up, st.st_mode & 07777) != 0) return errno;
    return libc::setxattr(up, l.opaque_xattr, "y", 1, 0) == 0 ? 0 : errno;
  }
  // A whiteout: a character device 0/0 (allowed without CAP_MKNOD since Linux 5.8).
  return libc::mknod(up, S_IFCHR, makedev(0, 0)) == 0 ? 0 : errno;
}

/// Calls `f(name)` for each entry of the directory `dir` until it returns non-zero, and returns
/// that; a directory that cannot be opened is 0 when `missing_ok`, else its errno.
template <class F>
[[nodiscard]] int for_each_entry(const char* dir, bool missing_ok, F&& f) noexcept {
  int dfd = libc::open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return missing_ok ? 0 : errno;
  alignas(8) char buf[4096];
  int err = 0;
  for (long n; err == 0 && (n = libc::syscall(SYS_getdents64, dfd, buf, sizeof buf)) > 0;) {
    for (long off = 0; off < n && err == 0;) {
      const char* name = buf + off + 19; // linux_dirent64: ino 8, off 8, reclen 2, type 1
      unsigned short reclen;
      std::memcpy(&reclen, buf + off + 16, sizeof reclen);
      off += reclen;
      if (std::strcmp(name, ".") != 0 && std::strcmp(name, "..") != 0) err = f(name);
    }
  }
  libc::close(dfd);
  return err;
}

/// Hides the entries of every `absent_prefix` entry under `dir` (relative to the layer).
[[nodiscard]] inline int hide_prefixed(const layer& l, const char* rel_dir, const char* low_dir,
                                       const char* prefix) noexcept {
  std::size_t plen = std::strlen(prefix);
  // None, or unreadable: nothing the sandbox could read either.
  return for_each_entry(low_dir, true, [&](const char* name) {
    char rel[4096], low[4096];
    if (libc::strncmp(name, prefix, plen) != 0 || !join(rel, sizeof rel, rel_dir, name) ||
        !join(low, sizeof low, low_dir, name))
      return 0;
    return hide_one(l, rel, low, kind::absent);
  });
}

/// Whiteouts in the root layer for the host root's entries that are not in top_level_shown.
[[nodiscard]] inline int hide_unlisted_top_level(const layer& l) noexcept {
  return for_each_entry(l.lower_root, false, [&](const char* name) {
    char up[4096];
    if (find(name) != &unlisted_top_level || !join(up, sizeof up, l.upper, name)) return 0;
    return libc::mknod(up, S_IFCHR, makedev(0, 0)) != 0 && errno != EEXIST ? errno : 0;
  });
}

/// Prepares `l.upper` so that the overlay of `l.lower_root/l.prefix` hides every listed entry
/// below it. 0 or errno.
[[nodiscard]] inline int prepare_upper(const layer& l) noexcept {
  std::size_t plen = std::strlen(l.prefix);
  char base[4096];
  if (!join(base, sizeof base, l.lower_root, l.prefix)) return ENAMETOOLONG;
  if (!plen) {
    if (int err = hide_unlisted_top_level(l); err != 0) return err;
  }
  for (const entry& e : paths) {
    const char* rel = e.path;
    if (plen) {
      if (libc::strncmp(rel, l.prefix, plen) != 0 || rel[plen] != '/') continue;
      rel += plen + 1;
    }
    char low[4096];
    int err = 0;
    if (e.how == kind::absent_prefix) {
      char dir[4096];
      const char* slash = libc::strrchr(rel, '/');
      std::size_t dlen = slash ? static_cast<std::size_t>(slash - rel) : 0;
      if (dlen >= sizeof dir) return ENAMETOOLONG;
      std::memcpy(dir, rel, dlen);
      dir[dlen] = '\0';
      if (!join(low, sizeof low, base, dir)) return ENAMETOOLONG;
      err = hide_prefixed(l, dir, low, slash ? slash + 1 : rel);
    } else {
      if (!join(low, sizeof low, base, rel)) return ENAMETOOLONG;
      err = hide_one(l, rel, low, e.how);
    }
    if (err != 0) return err;
  }
  return 0;
}

/// Fills the emptied top-level directories under `root` (an upper layer, or a mirrored root)
/// with their skeleton. 0 or errno.
[[nodiscard]] inline int make_skeleton(const char* root) noexcept {
  for (const skeleton_entry& s : skeleton) {
    char at[4096], parent[4096];
    const char* slash = libc::strchr(s.path, '/');
    std::size_t dlen = static_cast<std::size_t>(slash - s.path);
    std::memcpy(parent, s.path, dlen);
    parent[dlen] = '\0';
    if (!join(at, sizeof at, root, parent)) return ENAMETOOLONG;
    struct stat st {};
    if (libc::lstat(at, &st) != 0 || !S_ISDIR(st.st_mode))
      continue; // the host has no such directory
    if (!join(at, sizeof at, root, s.path)) return ENAMETOOLONG;
    int rc = s.target ? libc::symlink(s.target, at) : libc::mkdir(at, s.mode);
    if (rc != 0 && errno != EEXIST) return errno;
    if (!s.target && libc::chmod(at, s.mode) != 0) return errno;
  }
  return 0;
}

} // namespace sandbox::local::detail::hidden
#pragma GCC visibility pop
