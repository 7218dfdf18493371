// SPDX-License-Identifier: MIT
// Resource limits of local sandboxes: memory, pids and cpu through cgroups, v1 or v2 (chosen at
// run time: /sys/fs/cgroup/cgroup.controllers present means v2). A limited sandbox gets a cgroup
// of its own, named after the process that owns it:
//
//     v1: <mount point of each controller>/sandbox/<owner>/<sandbox id>
//     v2: /sys/fs/cgroup/sandbox/<owner>/<sandbox id>
//     <owner> = <pid>-<start time in clock ticks since boot>-<pid namespace inode>
//
// so that the leftovers of an owner that died without cleaning up (SIGKILL) can be told from the
// cgroups of live owners and swept by the next process that starts the transport. The sandbox's
// supervisor (its PID 1) is attached once, before it can start any command; commands inherit the
// cgroup, so exec never pays for an attach (a v1 attach takes ≈ 40 µs, but 15-30 ms about 1 % of
// the time).
//
// Memory: the limit covers RAM and swap together (v1 memsw = limit and swappiness 0; v2
// memory.swap.max 0), and the files a sandbox writes to its tmpfs-backed layers (/tmp, the root's
// writable layer) are charged to it: tmpfs pages go to the cgroup of the process that writes them.
// An OOM kill is recognised by the cgroup's OOM-kill counter (v1 memory.oom_control, v2
// memory.events: `oom_kill`): the kernel raises it before it sends the SIGKILL, so a count read
// after the exit is reported already includes the kill. A command is reported OOM-killed when the
// count grew while it ran and it ended as a SIGKILLed process does (137, or a shell's 137 for its
// killed child). The ambiguity left: another command of the same sandbox OOM-killed while this
// one ended with 137 for another reason. Commands get oom_score_adj 1000 (see the
// supervisor's raise_oom_score) so that the OOM killer picks them, not the supervisor, whose RSS
// counts the memory of the client it was cloned from.
#pragma once

#include <sandbox/detail/fork_safe.hpp>
#include <sandbox/detail/read_text.hpp>
#include <sandbox/detail/text.hpp>
#include <sandbox/detail/unique_fd.hpp>
#include <sandbox/options.hpp>
#include <sandbox/result.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

namespace sandbox::local::detail::cgroups {

using namespace sandbox::detail; // text, unique_fd, random, read_text: the library-wide helpers

/// The controllers a limit needs, as bits.
enum controller : unsigned { memory = 1, pids = 2, cpu = 4 };
inline constexpr const char* controller_names[] = {"memory", "pids", "cpu"};
inline constexpr unsigned controller_count = 3;
/// The index of `c` in controller_names and layout::v1_mounts.
[[nodiscard]] constexpr unsigned index_of(controller c) noexcept {
  return static_cast<unsigned>(std::countr_zero(static_cast<unsigned>(c)));
}

/// CFS period of the cpu limit; the quota is `cpus` times it.
inline constexpr std::uint64_t cpu_period_us = 100000;
/// Below this a sandbox cannot even start its init; Docker's minimum is the same.
inline constexpr std::uint64_t min_memory_bytes = 6ull << 20;

/// Where the host's cgroup hierarchies are mounted.
struct layout {
  int version = 0;                         ///< 1 or 2; 0: no cgroup filesystem is mounted
  std::string v2_root;                     ///< v2: mount point of the unified hierarchy
  std::string v2_controllers;              ///< v2: what its root offers (its cgroup.controllers)
  std::string v1_mounts[controller_count]; ///< v1: mount point per controller ("" = none)
};

// ---------------------------------------------------------------------------------------------
// Small file helpers. Every cgroup file is short; one read or write is the whole of it.

/// Writes `value` to an existing file; 0 or the errno.
[[nodiscard]] inline int write_text(const std::string& path, std::string_view value) noexcept {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = n == static_cast<ssize_t>(value.size()) ? 0 : n < 0 ? errno : EIO;
  ::close(fd);
  return err;
}

/// The number after `key ` at the start of a line of `text` ("oom_kill 3"), or 0.
[[nodiscard]] inline std::uint64_t field_value(std::string_view text,
                                               std::string_view key) noexcept {
  for (std::size_t pos = 0; pos < text.size();) {
    std::size_t eol = text.find('\n', pos);
    std::string_view line = text.substr(pos, eol == std::string_view::npos ? eol : eol - pos);
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ' ')
      return std::strtoull(std::string(line.substr(key.size() + 1)).c_str(), nullptr, 10);
    if (eol == std::string_view::npos) break;
    pos = eol + 1;
  }
  return 0;
}

/// Whether the space-separated `list` holds `word`.
[[nodiscard]] inline bool has_word(std::string_view list, std::string_view word) noexcept {
  for (std::size_t pos = 0; pos <= list.size();) {
    std::size_t end = list.find_first_of(" \n", pos);
    if (end == std::string_view::npos) end = list.size();
    if (list.substr(pos, end - pos) == word) return true;
    pos = end + 1;
  }
  return false;
}

/// A mountinfo path field with its octal escapes (`\040` for a space) decoded.
[[nodiscard]] inline std::string unescape_mount_path(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3') {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The host's layout.

/// The v1 mount points of memory, pids and cpu, read from `mountinfo` text.
inline void parse_v1_mounts(std::string_view mountinfo, layout& l) {
  for (std::size_t pos = 0; pos < mountinfo.size();) {
    std::size_t eol = mountinfo.find('\n', pos);
    if (eol == std::string_view::npos) eol = mountinfo.size();
    std::string_view line = mountinfo.substr(pos, eol - pos);
    pos = eol + 1;
    // id parent major:minor root mount-point options [optional…] - fstype source super-options
    std::vector<std::string_view> f;
    for (std::size_t p = 0; p < line.size();) {
      std::size_t sp = line.find(' ', p);
      if (sp == std::string_view::npos) sp = line.size();
      f.push_back(line.substr(p, sp - p));
      p = sp + 1;
    }
    std::size_t dash = 6;
    while (dash < f.size() && f[dash] != "-")
      ++dash;
    if (f.size() < 5 || dash + 3 >= f.size() || f[dash + 1] != "cgroup") continue;
    std::string_view opts = f[dash + 3];
    for (unsigned c = 0; c < controller_count; ++c) {
      if (!l.v1_mounts[c].empty()) continue; // the first mount of a hierarchy wins
      for (std::size_t p = 0; p <= opts.size();) {
        std::size_t comma = opts.find(',', p);
        if (comma == std::string_view::npos) comma = opts.size();
        if (opts.substr(p, comma - p) == controller_names[c]) {
          l.v1_mounts[c] = unescape_mount_path(f[4]);
          break;
        }
        p = comma + 1;
      }
    }
  }
}

/// Looks at the host once: cgroup v2 when /sys/fs/cgroup is the unified hierarchy, else the v1
/// hierarchies of memory, pids and cpu wherever they are mounted.
[[nodiscard]] inline layout detect_layout() noexcept {
  layout l;
  if (::access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0) {
    l.version = 2;
    l.v2_root = "/sys/fs/cgroup";
    l.v2_controllers = read_text("/sys/fs/cgroup/cgroup.controllers");
    return l;
  }
  parse_v1_mounts(read_text("/proc/self/mountinfo"), l);
  for (const auto& m : l.v1_mounts)
    if (!m.empty()) l.version = 1;
  return l;
}

/// The host's layout, detected on first use.
[[nodiscard]] inline const layout& host_layout() noexcept {
  static constinit std::atomic<const layout*> made{nullptr};
  return sandbox::detail::process_static(made, [] { return new const layout(detect_layout()); });
}

// ---------------------------------------------------------------------------------------------
// Owners: which process a cgroup belongs to, and whether it still lives.

struct owner_id {
  long pid = 0;
  unsigned long long start = 0; ///< start time, clock ticks since boot (/proc/<pid>/stat)
  unsigned long long pidns = 0; ///< inode of the pid namespace the pid is counted in
};

/// Start time of `pid` as /proc shows it; nothing when it does not exist.
[[nodiscard]] inline std::optional<unsigned long long> start_time_of(long pid) noexcept {
  std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  // The command name may hold spaces and parentheses: fields are counted after the last ')'.
  std::size_t p = stat.rfind(')');
  if (p == std::string::npos) return std::nullopt;
  // Fields after ')': state (3), ppid (4), … starttime (22): the 20th.
  for (int field = 3; field <= 22; ++field) {
    p = stat.find(' ', p + 1);
    if (p == std::string::npos) return std::nullopt;
  }
  return std::strtoull(stat.c_str() + p + 1, nullptr, 10);
}

[[nodiscard]] inline unsigned long long own_pidns() noexcept {
  struct stat st {};
  return ::stat("/proc/self/ns/pid", &st) == 0 ? static_cast<unsigned long long>(st.st_ino) : 0;
}

[[nodiscard]] inline std::string owner_name(const owner_id& o) {
  return std::to_string(o.pid) + "-" + std::to_string(o.start) + "-" + std::to_string(o.pidns);
}

[[nodiscard]] inline std::optional<owner_id> parse_owner(const char* name) noexcept {
  owner_id o;
  char* end = nullptr;
  o.pid = std::strtol(name, &end, 10);
  if (end == name || *end != '-' || o.pid <= 0) return std::nullopt;
  const char* p = end + 1;
  o.start = std::strtoull(p, &end, 10);
  if (end == p || *end != '-') return std::nullopt;
  p = end + 1;
  o.pidns = std::strtoull(p, &end, 10);
  if (end == p || *end != '\0') return std::nullopt;
  return o;
}

/// The calling process as an owner.
[[nodiscard]] inline owner_id self_owner() noexcept {
  owner_id o;
  o.pid = ::getpid();
  o.start = start_time_of(o.pid).value_or(0);
  o.pidns = own_pidns();
  return o;
}

/// Whether the process `o` names still runs (a reused pid has another start time).
[[nodiscard]] inline bool alive(const owner_id& o) noexcept {
  auto start = start_time_of(o.pid);
  return start && *start == o.start;
}

/// This process's owner directory name and how many of its cgroups exist, so that the owner
/// directory goes away with the last of them. Reset in a forked child (another owner).
struct owner_registry {
  sandbox::detail::fork_safe_mutex m;
  pid_t pid = 0;
  std::string name;
  unsigned live = 0;
  /// pids.max of the owner's directory, over all its sandboxes with a pids limit (0: none),
  /// and whether one was ever set (then a later 0 is written too, as "max").
  std::uint32_t total_pids = 0;
  bool total_set = false;
  /// Sandboxes let in under the total whose init is not in their cgroup yet (pids.current
  /// does not count them): each holds the room it was let in for until then.
  unsigned starting = 0;

  /// The owner name of the calling process. Caller holds m.
  const std::string& name_locked() {
    if (pid != ::getpid()) {
      pid = ::getpid();
      name = owner_name(self_owner());
      live = 0;
      starting = 0;
    }
    return name;
  }
};

[[nodiscard]] inline owner_registry& registry() noexcept {
  static constinit std::atomic<owner_registry*> made{nullptr};
  return sandbox::detail::process_static(made, [] { return new owner_registry; });
}

// ---------------------------------------------------------------------------------------------
// Removing cgroups.

inline void pause_for(std::chrono::microseconds d) noexcept {
  timespec ts{static_cast<time_t>(d.count() / 1000000),
              static_cast<long>(d.count() % 1000000) * 1000};
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/// SIGKILLs every process in the cgroup `dir` (relative path `rel` within its hierarchy).
/// v2 has cgroup.kill for this (Linux 5.14); otherwise each listed pid is opened as a pidfd and
/// killed only if it is still in the cgroup, so a pid reused meanwhile is never hit.
inline void kill_members(const std::string& dir, std::string_view rel, int version) noexcept {
  if (version == 2 && write_text(dir + "/cgroup.kill", "1") == 0) return;
  std::string procs = read_text(dir + "/cgroup.procs");
  for (std::size_t pos = 0; pos < procs.size();) {
    std::size_t eol = procs.find('\n', pos);
    if (eol == std::string::npos) eol = procs.size();
    long pid = std::strtol(procs.c_str() + pos, nullptr, 10);
    pos = eol + 1;
    if (pid <= 0) continue;
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0u));
    if (pidfd < 0) continue;
    unique_fd guard(pidfd);
    // /proc/<pid>/cgroup lines are "id:controllers:/path"; the pidfd pins the process.
    std::string cg = read_text("/proc/" + std::to_string(pid) + "/cgroup");
    // Built by appends: `":" + std::string(rel)` made GCC 12 warn wherever this was inlined in an
    // optimized build (-Wrestrict, a false positive; seen at -O3).
    std::string want(1, ':');
    want.append(rel).push_back('\n');
    if (cg.find(want) == std::string::npos) continue;
    ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0u);
  }
}

/// Removes the (leaf) cgroup `dir`. rmdir fails with EBUSY while the kernel is still tearing
/// down exited members, so it is retried with backoff; members still there after a few tries
/// (or at once, with `kill_first`) are killed. True when it is gone.
inline bool remove_dir(const std::string& dir, std::string_view rel, int version,
                       bool kill_first) noexcept {
  using namespace std::chrono;
  if (kill_first) kill_members(dir, rel, version);
  auto delay = microseconds(50);
  auto start = steady_clock::now();
  for (int attempt = 0;; ++attempt) {
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return true;
    if (errno != EBUSY || steady_clock::now() - start > seconds(2)) return false;
    if (attempt == 8) kill_members(dir, rel, version); // ≈ 10 ms: not teardown, a survivor
    pause_for(delay);
    delay = std::min<microseconds>(delay * 2, milliseconds(50));
  }
}

/// The directories that hold sandbox cgroups: one per v1 hierarchy in use, or the v2 root.
[[nodiscard]] inline std::vector<std::string> bases(const layout& l, unsigned mask) {
  std::vector<std::string> out;
  if (l.version == 2) out.push_back(l.v2_root);
  if (l.version == 1)
    for (unsigned c = 0; c < controller_count; ++c) {
      const std::string& m = l.v1_mounts[c];
      if ((mask & (1u << c)) && !m.empty() && std::find(out.begin(), out.end(), m) == out.end())
        out.push_back(m);
    }
  return out;
}

/// Removes the cgroups of owners that are gone (killing what still runs in them). Owners of
/// another pid namespace are left alone: their pids mean nothing here.
inline void sweep(const layout& l) noexcept {
  unsigned long long ns = own_pidns();
  for (const std::string& base : bases(l, memory | pids | cpu)) {
    std::string top = base + "/sandbox";
    DIR* d = ::opendir(top.c_str());
    if (!d) continue;
    std::vector<std::string> dead;
    while (dirent* e = ::readdir(d)) {
      auto o = parse_owner(e->d_name);
      if (o && o->pidns == ns && !alive(*o)) dead.emplace_back(e->d_name);
    }
    ::closedir(d);
    for (const std::string& owner : dead) {
      std::string odir = top + "/" + owner;
      if (DIR* od = ::opendir(odir.c_str())) {
        std::vector<std::string> ids;
        while (dirent* e = ::readdir(od))
          if (e->d_type == DT_DIR && e->d_name[0] != '.') ids.emplace_back(e->d_name);
        ::closedir(od);
        for (const std::string& id : ids)
          (void)remove_dir(odir + "/" + id, "/sandbox/" + owner + "/" + id, l.version, true);
      }
      ::rmdir(odir.c_str());
    }
  }
}

/// Sweeps the host's leftovers once per process (again in a forked child: a new owner).
inline void sweep_once() noexcept {
  static std::atomic<pid_t> swept{0};
  pid_t me = ::getpid();
  // Read first: a write on every create would fault on a page the last sandbox's clone shared.
  if (swept.load(std::memory_order_relaxed) == me || swept.exchange(me) == me) return;
  sweep(host_layout());
}

// ---------------------------------------------------------------------------------------------
// Limits.

/// True when `r` asks for any limit.
[[nodiscard]] constexpr bool requested(const Resources& r) noexcept {
  return r.memory_bytes != 0 || r.max_pids != 0 || r.cpus != 0;
}

/// Checks what the kernel would refuse or what could not work, with a message that says so.
/// **Errors:** validation.
[[nodiscard]] inline result<void> validate(const Resources& r) noexcept {
  if (r.memory_bytes != 0 && r.memory_bytes < min_memory_bytes)
    return fail(errc::validation,
                "SandboxOptions::resources.memory_bytes = " + std::to_string(r.memory_bytes) +
                    " is below the minimum of 6 MiB (0: no limit)");
  if (r.max_pids == 1)
    return fail(errc::validation, "SandboxOptions::resources.max_pids = 1 leaves no room for a "
                                  "command: the sandbox's init (PID 1) counts too (0: no limit)");
  if (!std::isfinite(r.cpus) || r.cpus < 0 || (r.cpus > 0 && r.cpus < 0.01) || r.cpus > 65536)
    return fail(errc::validation, "SandboxOptions::resources.cpus = " + std::to_string(r.cpus) +
                                      " is not a fraction of cores between 0.01 and 65536 "
                                      "(0: no limit)");
  return success();
}

[[nodiscard]] inline unsigned needed(const Resources& r) noexcept {
  return (r.memory_bytes ? memory : 0u) | (r.max_pids ? pids : 0u) | (r.cpus > 0 ? cpu : 0u);
}

/// The option that needs controller `c`, for messages.
[[nodiscard]] constexpr const char* option_of(unsigned c) noexcept {
  return c == 0 ? "memory_bytes" : c == 1 ? "max_pids" : "cpus";
}

/// Fails when the host cannot enforce a limit of `r`, naming the controller it lacks.
/// **Errors:** unsupported.
[[nodiscard]] inline result<void> check_host(const layout& l, const Resources& r) noexcept {
  unsigned mask = needed(r);
  for (unsigned c = 0; c < controller_count; ++c) {
    if (!(mask & (1u << c))) continue;
    std::string what = std::string("SandboxOptions::resources.") + option_of(c) + " needs the '" +
                       controller_names[c] + "' cgroup controller, but ";
    if (l.version == 0)
      return fail(errc::unsupported, what + "this host has no cgroup filesystem mounted");
    if (l.version == 1 && l.v1_mounts[c].empty())
      return fail(errc::unsupported, what + "this host has no cgroup v1 hierarchy with it "
                                            "mounted (see /proc/self/mountinfo)");
    if (l.version == 2 && !has_word(l.v2_controllers, controller_names[c]))
      return fail(errc::unsupported,
                  what + "the cgroup v2 hierarchy at " + l.v2_root + " does not offer it (" +
                      l.v2_root + "/cgroup.controllers: \"" +
                      std::string(l.v2_controllers.substr(0, l.v2_controllers.find('\n'))) + "\")");
  }
  return success();
}

/// The cgroup of one sandbox (one directory per v1 hierarchy, one in v2). Thread-safe.
class group {
public:
  group(const group&) = delete;
  group& operator=(const group&) = delete;
  ~group() { remove(); }

  /// Creates the cgroup of sandbox `id` and sets the limits of `r` in it (none set: a cgroup
  /// for accounting only, v2). Nothing is attached yet.
  /// **Errors:** validation, unsupported (the host lacks a controller or a limit file),
  /// unsupported (no permission to create cgroups), unavailable, resource_exhausted.
  [[nodiscard]] static result<std::unique_ptr<group>>
  create(std::string_view id, const Resources& r, const layout& l = host_layout()) noexcept;

  /// Moves process `pid` (and so everything it starts later) into the cgroup.
  /// **Errors:** unavailable.
  [[nodiscard]] result<void> attach(pid_t pid) noexcept {
    std::string s = std::to_string(pid);
    for (const auto& d : dirs_)
      if (int err = write_text(d + "/cgroup.procs", s))
        return fail(errc::unavailable, "sandbox " + id_ + ": moving its init into cgroup " + d +
                                           ": " + errno_text(err));
    started();
    return success();
  }

  /// How many processes the kernel's OOM killer has killed in the cgroup so far (0 without a
  /// memory limit). After `remove`, the count at removal.
  [[nodiscard]] std::uint64_t oom_kills() noexcept {
    std::lock_guard lk(m_);
    return oom_kills_locked();
  }

  /// SIGKILLs everything left in the cgroup, then removes it (and the owner directory with the
  /// owner's last cgroup). Meant for after the sandbox's init has been reaped. Idempotent.
  void remove() noexcept {
    std::lock_guard lk(m_);
    if (removed_) return;
    removed_ = true;
    oom_final_ = oom_kills_locked();
    oom_fd_.reset();
    for (std::size_t i = 0; i < dirs_.size(); ++i)
      (void)remove_dir(dirs_[i], rel_, version_, false);
    started();
    auto& reg = registry();
    std::lock_guard rl(reg.m);
    if (counted_ && reg.pid == ::getpid() && reg.live > 0 && --reg.live == 0)
      for (const auto& d : dirs_)
        ::rmdir(d.substr(0, d.rfind('/')).c_str());
  }

  /// The cgroup's directories (one per v1 hierarchy, or one in v2).
  [[nodiscard]] const std::vector<std::string>& dirs() const noexcept { return dirs_; }

private:
  group() = default;

  /// Gives back the room held since create (see owner_registry::starting): pids.current counts
  /// the init from its attach on. Idempotent.
  void started() noexcept {
    auto& reg = registry();
    std::lock_guard rl(reg.m);
    if (starting_ && reg.pid == ::getpid() && reg.starting > 0) --reg.starting;
    starting_ = false;
  }

  [[nodiscard]] std::uint64_t oom_kills_locked() noexcept {
    if (removed_) return oom_final_;
    if (!oom_fd_) return 0;
    char buf[512];
    ssize_t n = ::pread(oom_fd_.get(), buf, sizeof buf - 1, 0);
    if (n <= 0) return 0;
    return field_value(std::string_view(buf, static_cast<std::size_t>(n)), "oom_kill");
  }

  /// Writes the limits of `r` into the directories.
  [[nodiscard]] result<void> set_limits(const Resources& r, const layout& l) noexcept;

  std::mutex m_;
  std::string id_;
  std::string rel_; ///< "/sandbox/<owner>/<id>": the path within each hierarchy
  std::vector<std::string> dirs_;
  unique_fd oom_fd_; ///< memory.oom_control (v1) or memory.events (v2)
  std::uint64_t oom_final_ = 0;
  int version_ = 0;
  bool removed_ = false;
  bool counted_ = false;  ///< counted in registry().live
  bool starting_ = false; ///< counted in registry().starting
};

/// Maps the errno of creating or writing a cgroup file to an error that says what to do.
[[nodiscard]] inline error cgroup_error(std::string_view id, const std::string& what, int err) {
  // A host that refuses (no privilege) will keep refusing: not transient, never retried.
  errc code = err == ENOSPC || err == EAGAIN || err == ENOMEM ? errc::resource_exhausted
              : err == EACCES || err == EPERM || err == EROFS ? errc::unsupported
                                                              : errc::unavailable;
  std::string hint = err == EACCES || err == EPERM || err == EROFS
                         ? ": resource limits need root (or a cgroup delegated to this user)"
                         : "";
  return error(code, "sandbox " + std::string(id) + ": " + what + ": " + errno_text(err) + hint);
}

/// pids.max takes at most the kernel's own limit on pids (PID_MAX_LIMIT); a larger limit can
/// never bind, so it is "max".
[[nodiscard]] inline std::string pids_value(std::uint32_t n) {
  return n >= pid_max_limit ? std::string("max") : std::to_string(n);
}

inline result<void> group::set_limits(const Resources& r, const layout& l) noexcept {
  // (file, value, required): a missing required file means the kernel cannot enforce the limit.
  struct setting {
    unsigned ctl;
    const char* file;
    std::string value;
    bool required;
  };
  std::vector<setting> todo;
  if (l.version == 1) {
    if (r.memory_bytes) {
      std::string v = std::to_string(r.memory_bytes);
      todo.push_back({memory, "memory.limit_in_bytes", v, true});
      // memory + swap at the same bound: swap cannot stretch the limit. Absent without swap
      // accounting (then swappiness 0 keeps the limit's own reclaim from swapping).
      todo.push_back({memory, "memory.memsw.limit_in_bytes", v, false});
      todo.push_back({memory, "memory.swappiness", "0", true});
    }
    if (r.max_pids) todo.push_back({pids, "pids.max", pids_value(r.max_pids), true});
    if (r.cpus > 0) {
      auto quota = std::llround(r.cpus * static_cast<double>(cpu_period_us));
      todo.push_back({cpu, "cpu.cfs_period_us", std::to_string(cpu_period_us), true});
      todo.push_back({cpu, "cpu.cfs_quota_us", std::to_string(quota), true});
    }
  } else {
    if (r.memory_bytes) {
      todo.push_back({memory, "memory.max", std::to_string(r.memory_bytes), true});
      // memory.max bounds RAM only; no swap makes it the bound users expect. Absent when the
      // kernel does not account swap.
      todo.push_back({memory, "memory.swap.max", "0", false});
    }
    if (r.max_pids) todo.push_back({pids, "pids.max", pids_value(r.max_pids), true});
    if (r.cpus > 0) {
      auto quota = std::llround(r.cpus * static_cast<double>(cpu_period_us));
      todo.push_back(
          {cpu, "cpu.max", std::to_string(quota) + " " + std::to_string(cpu_period_us), true});
    }
  }
  for (const auto& s : todo) {
    // v1: the directory of the controller's hierarchy; v2: the one directory.
    std::string dir = dirs_[0];
    if (l.version == 1) {
      unsigned c = s.ctl == memory ? 0 : s.ctl == pids ? 1 : 2;
      std::string base = l.v1_mounts[c];
      for (const auto& d : dirs_)
        if (d.compare(0, base.size() + 1, base + "/") == 0) dir = d;
    }
    std::string path = dir + "/" + s.file;
    int err = write_text(path, s.value);
    if (err == ENOENT && !s.required) continue;
    if (err == ENOENT)
      return fail(errc::unsupported, "sandbox " + id_ + ": " + path +
                                         " does not exist: this kernel cannot enforce the limit "
                                         "(built without " +
                                         (s.ctl == cpu ? "CFS bandwidth control" : "it") + ")");
    if (err) return fail(cgroup_error(id_, "setting " + path + " to " + s.value, err));
  }
  return success();
}

inline result<std::unique_ptr<group>> group::create(std::string_view id, const Resources& r,
                                                    const layout& l) noexcept {
  SANDBOX_TRYV(validate(r));
  SANDBOX_TRYV(check_host(l, r));
  if (l.version == 0)
    return fail(errc::unsupported,
                "sandbox " + std::string(id) + ": this host has no cgroup filesystem mounted");
  unsigned mask = needed(r);
  std::unique_ptr<group> g(new group());
  g->id_ = std::string(id);
  g->version_ = l.version;
  std::string enable; // v2: "+memory +pids" for cgroup.subtree_control
  for (unsigned c = 0; c < controller_count; ++c)
    if (mask & (1u << c)) enable += std::string(enable.empty() ? "+" : " +") + controller_names[c];

  auto& reg = registry();
  {
    std::lock_guard rl(reg.m);
    const std::string& owner = reg.name_locked();
    g->rel_ = "/sandbox/" + owner + "/" + g->id_;
    for (const std::string& base : bases(l, mask)) {
      std::string top = base + "/sandbox", odir = top + "/" + owner, dir = odir + "/" + g->id_;
      // v2 hands controllers down one level at a time; the parents hold no processes, so
      // enabling them there is allowed (the root is exempt from that rule).
      if (l.version == 2 && !enable.empty())
        if (int err = write_text(base + "/cgroup.subtree_control", enable))
          return fail(cgroup_error(id, "enabling " + enable + " in " + base, err));
      if (::mkdir(top.c_str(), 0755) != 0 && errno != EEXIST)
        return fail(cgroup_error(id, "creating cgroup " + top, errno));
      if (l.version == 2 && !enable.empty())
        if (int err = write_text(top + "/cgroup.subtree_control", enable))
          return fail(cgroup_error(id, "enabling " + enable + " in " + top, err));
      if (::mkdir(odir.c_str(), 0755) != 0 && errno != EEXIST)
        return fail(cgroup_error(id, "creating cgroup " + odir, errno));
      if (l.version == 2 && !enable.empty())
        if (int err = write_text(odir + "/cgroup.subtree_control", enable))
          return fail(cgroup_error(id, "enabling " + enable + " in " + odir, err));
      if ((mask & pids) && reg.total_set &&
          (l.version == 2 || base == l.v1_mounts[index_of(pids)])) {
        // A sandbox that all of them together leave no room for its init and one process (its
        // main command, or a command) could start, and then run nothing: it is refused, to be
        // asked for again later. Those let in and not yet attached count as using that room.
        if (reg.total_pids != 0 && reg.live != 0) {
          const std::string current = read_text(odir + "/pids.current"); // "" when unreadable
          const std::uint64_t now = std::strtoull(current.c_str(), nullptr, 10);
          if (now + 2 * (std::uint64_t{reg.starting} + 1) > reg.total_pids)
            return fail(errc::resource_exhausted,
                        "sandbox " + std::string(id) + ": all sandboxes together run " +
                            std::to_string(now) + " processes and threads, and may run " +
                            std::to_string(reg.total_pids) +
                            " (the limit on all of them): no room for another; retry once "
                            "some have ended");
        }
        // Written at every create: the owner's directory goes with its last sandbox.
        if (int err = write_text(odir + "/pids.max",
                                 pids_value(reg.total_pids ? reg.total_pids : pid_max_limit))) {
          if (g->dirs_.empty() && reg.live == 0) ::rmdir(odir.c_str());
          return fail(cgroup_error(id, "limiting all sandboxes' pids in " + odir, err));
        }
      }
      if (::mkdir(dir.c_str(), 0755) != 0) {
        int err = errno;
        if (g->dirs_.empty() && reg.live == 0) ::rmdir(odir.c_str());
        return fail(cgroup_error(id, "creating cgroup " + dir, err));
      }
      if (!g->counted_) ++reg.live; // from here on remove() takes care of the owner dir
      g->counted_ = true;
      if ((mask & pids) && reg.total_pids != 0 && !g->starting_) {
        ++reg.starting; // until attach() or remove()
        g->starting_ = true;
      }
      g->dirs_.push_back(std::move(dir));
    }
  }
  if (g->dirs_.empty()) return g;
  SANDBOX_TRYV(g->set_limits(r, l));
  if (mask & memory) {
    std::string dir = g->dirs_[0];
    if (l.version == 1)
      for (const auto& d : g->dirs_)
        if (d.compare(0, l.v1_mounts[0].size() + 1, l.v1_mounts[0] + "/") == 0) dir = d;
    std::string path = dir + (l.version == 1 ? "/memory.oom_control" : "/memory.events");
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(cgroup_error(id, "opening " + path, errno));
    g->oom_fd_.reset(fd);
  }
  return g;
}

} // namespace sandbox::local::detail::cgroups
