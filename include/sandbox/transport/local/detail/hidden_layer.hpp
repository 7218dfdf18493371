// SPDX-License-Identifier: MIT
// The host's hidden entries (hidden.hpp) prepared once per process instead of once per sandbox:
// a detached tmpfs, never attached to the host's tree, holding the whiteouts, opaque directories
// and skeleton, which every sandbox on the default root stacks read-only between its writable
// layer and the host's root. Prepared per sandbox they take ≈ 150 system calls of its start.
//
// The layer is rebuilt when the host changes what it hides: the root or a parent of a hidden
// entry has a new inode time (an entry came or went), or an emptied directory a new type, mode or
// owner (what a sandbox sees of it). Inode times are kept in coarse ticks, so a second change in
// the tick of the time read before a build would go unseen: a layer built from times younger than
// 2 s is used once and rebuilt for the next sandbox.
#pragma once

#include <sandbox/detail/fork_safe.hpp>
#include <sandbox/detail/unique_fd.hpp>
#include <sandbox/transport/local/detail/hidden.hpp>

#include <atomic>
#include <cstdint>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

// The fd-based mount API's constants, for C libraries older than glibc 2.36.
#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#endif
#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x00000001
#endif
#ifndef FSCONFIG_SET_STRING
#define FSCONFIG_SET_STRING 1
#endif
#ifndef FSCONFIG_CMD_CREATE
#define FSCONFIG_CMD_CREATE 6
#endif

namespace sandbox::local::detail::hidden {

/// The prepared layer, kept open while a sandbox that was given it is cloned.
struct shared_layer {
  sandbox::detail::unique_fd fd; ///< a detached mount (fsmount)
  std::string path;              ///< "/proc/self/fd/N": valid in this process and its clones
  pid_t owner = 0;               ///< the process that built it (a forked child rebuilds)
  dev_t dev = 0;                 ///< the layer's root, to tell that `fd` is still it
  ino_t ino = 0;

  shared_layer() = default;
  shared_layer(const shared_layer&) = delete;
  shared_layer& operator=(const shared_layer&) = delete;
  /// Closes the layer's descriptor only while it is still the layer (see intact()).
  ~shared_layer();
};

/// Whether `l` is still this process's layer: a forked child, or a caller that closes
/// descriptors it did not open, may have the number for something else by now.
[[nodiscard]] inline bool intact(const shared_layer& l) noexcept {
  struct stat st {};
  struct statfs fs {};
  return l.fd && l.owner == ::getpid() && ::fstat(l.fd.get(), &st) == 0 && st.st_dev == l.dev &&
         st.st_ino == l.ino && ::fstatfs(l.fd.get(), &fs) == 0 &&
         fs.f_type == static_cast<decltype(fs.f_type)>(0x01021994); // TMPFS_MAGIC
}

inline shared_layer::~shared_layer() {
  if (!intact(*this)) (void)fd.release();
}

namespace layer_cache {

/// A host path whose change alters the layer, relative to "/" ("" is the root).
struct watch {
  std::string path;
  bool entries; ///< its entries matter (inode time); else only its type, mode and owner
};

[[nodiscard]] inline std::vector<watch> watched() {
  std::vector<watch> out{{"", true}};
  auto add = [&](std::string p, bool entries) {
    for (auto& w : out)
      if (w.path == p) {
        w.entries = w.entries || entries;
        return;
      }
    out.push_back({std::move(p), entries});
  };
  for (const entry& e : paths) {
    std::string p = e.path;
    // Parents: which entries exist, and the modes make_parents copies.
    for (auto slash = p.find('/'); slash != std::string::npos; slash = p.find('/', slash + 1))
      add(p.substr(0, slash), true);
    if (e.how == kind::empty_dir) add(p, false);
  }
  return out;
}

struct stamp {
  dev_t dev = 0;
  ino_t ino = 0;
  mode_t mode = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::int64_t ctime_ns = -1; ///< -1: missing, or only its attributes matter
  [[nodiscard]] bool operator==(const stamp&) const = default;
};

[[nodiscard]] inline std::vector<stamp> stamps(const std::vector<watch>& ws) {
  std::vector<stamp> out;
  out.reserve(ws.size());
  for (const auto& w : ws) {
    struct stat st {};
    stamp s;
    if (::lstat(("/" + w.path).c_str(), &st) == 0) {
      s = {st.st_dev, st.st_ino, st.st_mode, st.st_uid, st.st_gid, 0};
      if (w.entries)
        s.ctime_ns =
            static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec;
    }
    out.push_back(s);
  }
  return out;
}

/// Whether this kernel stacks a detached mount as an overlay layer (Linux 6.15 and later; older
/// ones refuse it with EINVAL), tried once in a child of a mount namespace of its own.
[[nodiscard]] inline bool overlay_takes(const std::string& layer_path) noexcept {
  const std::string opts =
      "lowerdir=" + layer_path + ":/,upperdir=/tmp/.sbx-probe/u,workdir=/tmp/.sbx-probe/w";
  alignas(16) static char stack[16 * 1024]; // one probe at a time: under the cache's lock
  // A copy of this process (no CLONE_VM: a child sharing the caller's memory and thread state
  // would confuse sanitizers and allocators), answering through its exit status.
  auto child = [](void* arg) noexcept -> int {
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("tmpfs", "/tmp", "tmpfs", 0, "size=64k") != 0 ||
        ::mkdir("/tmp/.sbx-probe", 0700) != 0 || ::mkdir("/tmp/.sbx-probe/u", 0700) != 0 ||
        ::mkdir("/tmp/.sbx-probe/w", 0700) != 0 || ::mkdir("/tmp/.sbx-probe/m", 0700) != 0)
      return 2;
    return ::mount("overlay", "/tmp/.sbx-probe/m", "overlay", 0, static_cast<const char*>(arg)) == 0
               ? 0
               : 1;
  };
  // Its mount namespace, and every mount in it, goes when it exits.
  pid_t pid =
      ::clone(+child, stack + sizeof stack, CLONE_NEWNS | SIGCHLD, const_cast<char*>(opts.c_str()));
  if (pid < 0) return false;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return false;
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/// A new layer from the host as it is now, or nullptr where the kernel has no fd-based mount
/// API (before Linux 5.2, or refused by a container's filter) or the layer cannot be made: the
/// supervisor then prepares the hidden entries in its own writable layer, as it does for a
/// caller that is not root.
[[nodiscard]] inline std::shared_ptr<const shared_layer> build() {
#if defined(SYS_fsopen) && defined(SYS_fsconfig) && defined(SYS_fsmount)
  sandbox::detail::unique_fd fs(static_cast<int>(::syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC)));
  if (!fs) return nullptr;
  if (::syscall(SYS_fsconfig, fs.get(), FSCONFIG_SET_STRING, "mode", "0755", 0) != 0 ||
      ::syscall(SYS_fsconfig, fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0)
    return nullptr;
  auto l = std::make_shared<shared_layer>();
  l->fd.reset(static_cast<int>(::syscall(SYS_fsmount, fs.get(), FSMOUNT_CLOEXEC, 0)));
  struct stat st {};
  if (!l->fd || ::fstat(l->fd.get(), &st) != 0) return nullptr;
  l->owner = ::getpid();
  l->dev = st.st_dev;
  l->ino = st.st_ino;
  l->path = "/proc/self/fd/" + std::to_string(l->fd.get());
  const layer where{"/", "", l->path.c_str(), "trusted.overlay.opaque"};
  if (prepare_upper(where) != 0 || make_skeleton(l->path.c_str()) != 0) return nullptr;
#ifdef SYS_mount_setattr
  // Nothing writes a lower layer; read-only says so to whoever holds the fd.
  struct {
    std::uint64_t attr_set, attr_clr, propagation, userns_fd;
  } ro{0x1 | 0x2 | 0x4 | 0x8, 0, 0, 0}; // MOUNT_ATTR_RDONLY | NOSUID | NODEV | NOEXEC
  (void)::syscall(SYS_mount_setattr, l->fd.get(), "", AT_EMPTY_PATH, &ro, sizeof ro);
#endif
  return l;
#else
  return nullptr;
#endif
}

struct cache {
  sandbox::detail::fork_safe_mutex m;
  int kernel_takes_layer = -1; ///< overlay_takes, once: -1 not yet known
  std::vector<watch> watches = watched();
  std::vector<stamp> built_from;
  bool reusable = false;
  std::shared_ptr<const shared_layer> layer;
};

[[nodiscard]] inline cache& process_cache() {
  static constinit std::atomic<cache*> made{nullptr};
  return sandbox::detail::process_static(made, [] { return new cache; });
}

} // namespace layer_cache

/// The layer for a sandbox about to start on the default root, or nullptr (see build()).
[[nodiscard]] inline std::shared_ptr<const shared_layer> current_layer() {
  using namespace layer_cache;
  cache& c = process_cache();
  std::lock_guard lock(c.m);
  std::vector<stamp> now = stamps(c.watches);
  if (c.layer && c.reusable && now == c.built_from && intact(*c.layer)) return c.layer;
  struct timespec t {};
  ::clock_gettime(CLOCK_REALTIME, &t);
  const std::int64_t start_ns = static_cast<std::int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
  c.layer = c.kernel_takes_layer == 0 ? nullptr : build();
  if (c.layer && c.kernel_takes_layer < 0) {
    c.kernel_takes_layer = overlay_takes(c.layer->path);
    if (!c.kernel_takes_layer) c.layer = nullptr;
  }
  c.built_from = std::move(now);
  c.reusable = true;
  for (const stamp& st : c.built_from)
    c.reusable = c.reusable && st.ctime_ns < start_ns - 2'000'000'000; // see the header comment
  return c.layer;
}

} // namespace sandbox::local::detail::hidden
