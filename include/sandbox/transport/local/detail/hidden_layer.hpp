// SPDX-License-Identifier: MIT
// The host's hidden entries (hidden.hpp) prepared once per process instead of once per sandbox:
// a detached tmpfs, never attached to the host's tree, holding the whiteouts, opaque directories
// and skeleton, which every sandbox on the default root stacks between its writable layer and
// the host's root. Preparing them cost ≈ 150 system calls per sandbox start.
//
// The layer is rebuilt when the host changes what it hides: a watched directory (the root,
// the parents of hidden entries, the emptied directories) has a new inode time. Times the kernel
// keeps in coarse ticks cannot tell a change made in the same tick as the build, so a layer whose
// watched times are recent is used once and rebuilt for the next sandbox.
#pragma once

#include <sandbox/detail/unique_fd.hpp>
#include <sandbox/transport/local/detail/hidden.hpp>

#include <array>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace sandbox::local::detail::hidden {

/// The prepared layer, kept open while a sandbox that was given it starts.
struct shared_layer {
  sandbox::detail::unique_fd fd; ///< a detached mount (fsmount)
  std::string path;              ///< "/proc/self/fd/N": valid in this process and its clones
};

namespace layer_cache {

/// The host directories whose change alters the layer, relative to "/" ("" is the root).
[[nodiscard]] inline std::vector<std::string> watched() {
  std::vector<std::string> out{""};
  auto add = [&](std::string p) {
    for (const auto& w : out)
      if (w == p) return;
    out.push_back(std::move(p));
  };
  for (const entry& e : paths) {
    std::string p = e.path;
    for (auto slash = p.find('/'); slash != std::string::npos; slash = p.find('/', slash + 1))
      add(p.substr(0, slash)); // parents: their entries and the modes make_parents copies
    if (e.how == kind::empty_dir) add(p); // its mode and owner are shown
  }
  return out;
}

struct stamp {
  dev_t dev = 0;
  ino_t ino = 0;
  std::int64_t ctime_ns = -1; ///< -1: missing
  [[nodiscard]] bool operator==(const stamp&) const = default;
};

[[nodiscard]] inline std::vector<stamp> stamps(const std::vector<std::string>& dirs) {
  std::vector<stamp> out;
  out.reserve(dirs.size());
  for (const auto& d : dirs) {
    struct stat st {};
    stamp s;
    if (::lstat(("/" + d).c_str(), &st) == 0)
      s = {st.st_dev, st.st_ino,
           static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec};
    out.push_back(s);
  }
  return out;
}

/// A new layer from the host as it is now, or nullptr where the kernel has no fd-based mount
/// API (before Linux 5.2, or refused by a container's filter): the supervisor then prepares the
/// hidden entries in its own writable layer, as it does for a caller that is not root.
[[nodiscard]] inline std::shared_ptr<const shared_layer> build() {
#if defined(SYS_fsopen) && defined(SYS_fsconfig) && defined(SYS_fsmount)
  sandbox::detail::unique_fd fs(static_cast<int>(::syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC)));
  if (!fs) return nullptr;
  if (::syscall(SYS_fsconfig, fs.get(), FSCONFIG_SET_STRING, "mode", "0755", 0) != 0 ||
      ::syscall(SYS_fsconfig, fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0)
    return nullptr;
  auto l = std::make_shared<shared_layer>();
  l->fd.reset(static_cast<int>(::syscall(SYS_fsmount, fs.get(), FSMOUNT_CLOEXEC, 0)));
  if (!l->fd) return nullptr;
  l->path = "/proc/self/fd/" + std::to_string(l->fd.get());
  const layer where{"/", "", l->path.c_str(), "trusted.overlay.opaque"};
  if (prepare_upper(where) != 0 || make_skeleton(l->path.c_str()) != 0) return nullptr;
  return l;
#else
  return nullptr;
#endif
}

struct state {
  std::mutex m;
  std::vector<std::string> dirs = watched();
  std::vector<stamp> built_from;
  bool reusable = false;
  std::shared_ptr<const shared_layer> layer;
};

[[nodiscard]] inline state& the() {
  static state s;
  return s;
}

} // namespace layer_cache

/// The layer for a sandbox about to start on the default root, or nullptr (see build()).
[[nodiscard]] inline std::shared_ptr<const shared_layer> current_layer() {
  using namespace layer_cache;
  state& s = the();
  std::lock_guard lock(s.m);
  std::vector<stamp> now = stamps(s.dirs);
  if (s.layer && s.reusable && now == s.built_from) return s.layer;
  struct timespec t {};
  ::clock_gettime(CLOCK_REALTIME, &t);
  const std::int64_t start_ns = static_cast<std::int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
  s.layer = build();
  s.built_from = std::move(now);
  s.reusable = true;
  for (const stamp& st : s.built_from)
    s.reusable = s.reusable && st.ctime_ns < start_ns - 2'000'000'000; // see the header comment
  return s.layer;
}

} // namespace sandbox::local::detail::hidden
