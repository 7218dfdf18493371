// SPDX-License-Identifier: MIT
// The supervisor: PID 1 of a local sandbox. It builds the sandbox's filesystem, then starts the
// commands the client asks for, reports their exits on their status sockets, reaps orphans, and
// tears everything down on stop or when the client goes away.
//
// It is cloned by the client's launcher (launcher.hpp), itself a copy of the (possibly
// multi-threaded) client, so it may only use async-signal-safe calls: plain system calls, no
// allocation, no locks, no stdio. All strings it needs are prepared by the client and handed to
// the launcher with the request. A libc call a sanitizer intercepts may lock (see `sys_prctl`):
// where one does, the bare system call is made instead.
#pragma once

#include <sandbox/transport/local/detail/hidden.hpp>
#include <sandbox/transport/local/detail/libc.hpp>
#include <sandbox/transport/local/detail/log_ring.hpp>
#include <sandbox/transport/local/detail/protocol.hpp>
#include <sandbox/transport/local/detail/seccomp.hpp>

#include <cerrno>
#include <climits>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

namespace sandbox::local::detail {

/// A file to place read-only into the sandbox (SandboxOptions::mounted_files).
struct mounted_file_spec {
  const char* path; ///< absolute, inside the sandbox
  const char* data;
  std::size_t size;
  /// The library's own /etc/resolv.conf: a symlink there (a host or image may link it to a
  /// resolver's file) is replaced on the private layer; placing it is best effort. Otherwise a
  /// symlink there fails the setup.
  bool replace_link = false;
};

/// An address range of the client's memory (its argv or environment strings).
struct memory_area {
  std::uintptr_t begin = 0, end = 0;
};

/// A directory as fstat names it: its device and inode.
struct dir_identity {
  std::uint64_t dev = 0, ino = 0;
};

/// Everything the supervisor needs, prepared by the client; the launcher gets it as one buffer
/// (pack_setup, launcher.hpp) and points these into its copy. `args`, `environment` and
/// `libc_text` are addresses in the client's memory, the same in the launcher's copy of it.
struct supervisor_setup {
  int ctl_fd = -1;
  const char* hostname = nullptr;
  const char* staging = nullptr;      ///< existing host directory the private tmpfs is mounted on
  const char* staging_opts = nullptr; ///< its mount options: mode and size (the disk budget)
  const char* tmp = nullptr;          ///< staging + "/tmp": the sandbox's /tmp, in the same budget
  const char* root = nullptr;         ///< staging + "/root": where the overlay is mounted
  const char* overlay_opts = nullptr; ///< lowerdir=…,upperdir=…,workdir=…
  const char* upper = nullptr;
  const char* work = nullptr;
  const char* workdir = nullptr; ///< working directory inside the sandbox (absolute)
  bool host_network = false;
  /// Inside a new user namespace (the caller is not root): wait for the client to write the id
  /// maps before setting anything up.
  bool user_ns = false;
  /// The root is a tmpfs mirroring `lower` with one overlay per directory instead of one overlay
  /// of `lower`: inside a user namespace the kernel refuses an overlay whose lower layer has
  /// mounts below it, as the host's root always has.
  bool mirror_root = false;
  const char* lower = nullptr;
  /// `lower` is an image directory the client checked and holds open, with this identity: the
  /// supervisor mounts the directory it opens at `lower` only if it is that one, by its fd
  /// (overlay_opts names it as fd sv::hidden_layer), never by a path looked up again.
  bool lower_pinned = false;
  dir_identity lower_id;
  /// The default root without the host's secrets (hidden.hpp).
  bool hide_host_secrets = false;
  /// The client's shared layer of hidden entries (hidden_layer.hpp), already in overlay_opts;
  /// -1: the supervisor prepares them in its own upper layer.
  int hidden_layer_fd = -1;
  /// Resource limits are set: the client moves the supervisor into the sandbox's cgroup and then
  /// sends one byte; the cgroup namespace is made after that, rooted at the sandbox's cgroup.
  bool wait_for_cgroup = false;
  /// The client's argv and environment strings, which this copy of its memory still holds and
  /// /proc/1/cmdline would show: overwritten first thing.
  memory_area args, environment;
  /// libc's code, which the supervisor maps in one call (see `prefault`).
  memory_area libc_text;
  /// Commands run under seccomp::filter. Off only to measure what the filter costs.
  bool seccomp = true;
  /// A memory limit is set: commands get oom_score_adj 1000 so that the OOM killer takes them
  /// before the supervisor, whose RSS counts the client memory it was cloned from.
  bool oom_commands_first = false;
  std::uint32_t lifetime_ms = 0; ///< 0: no limit
  /// Commands lack CAP_NET_RAW (network_mode::egress).
  bool no_packet_sockets = false;
  /// Commands run as this user and group (an image's `User`), not as the sandbox's root.
  bool as_user = false;
  std::uint32_t uid = 0, gid = 0;
  const mounted_file_spec* files = nullptr;
  std::size_t nfiles = 0;
};

// Hidden: in a shared library, calls between these would otherwise go through its PLT and be
// bound lazily in each supervisor (see libc.hpp).
#pragma GCC visibility push(hidden)
namespace sv {

inline constexpr int ctl = 3;          // the control socket's fd in the supervisor
inline constexpr int hidden_layer = 4; // supervisor_setup::hidden_layer_fd, or the pinned image
                                       // directory (lower_pinned), until the root is built
inline constexpr int exit_setup_failed = 1;
inline constexpr int exit_expired = 3;            // max_lifetime ran out
inline constexpr std::size_t max_slots = 4096;    // concurrently running commands
inline constexpr std::size_t max_strings = 16384; // argv + env entries of one request
/// Each mounted file is a mount of its own, and the kernel's cost grows with their count (10 000
/// took 1.2 s of setup here, 50 000 took 33 s).
inline constexpr std::size_t max_mounted_files = 1024;
inline constexpr std::size_t child_stack_size = 64 * 1024;
/// The supervisor's own initial stack (mapped by the client for the clone).
inline constexpr std::size_t supervisor_stack_size = 256 * 1024;

struct slot {
  pid_t pid;
  int status_fd;
  bool main;
  bool pinned; // started while the supervisor followed its caller's CPU (follow_caller)
};

/// State of one exec between the supervisor and its CLONE_VFORK child (shared memory).
struct exec_ctx {
  char* const* argv;
  char* const* envp;
  const char* cwd;
  const char* path; ///< PATH value for the search, from envp
  int fds[3];       ///< stdin, stdout, stderr; -1 = /dev/null
  bool tty;         ///< fds are a terminal: the command leads a session of its own on it
  bool as_user;     ///< switch to uid/gid before the working directory and execve
  std::uint32_t uid, gid;
  volatile int err;
  volatile stage where;
  const cpu_set_t* cpus = nullptr; ///< the CPUs the command may use (null: those it inherits)
};

struct state {
  slot* slots;
  std::size_t nslots;
  char* buf;   // request buffer
  char** ptrs; // argv/env pointer arrays
  char* child_stack;
  bool stopping;
  bool oom_commands_first; // see supervisor_setup
  bool as_user;            // see supervisor_setup
  std::uint32_t uid, gid;
  bool expired; // max_lifetime ran out
  bool main_exited;
  std::int64_t kill_at_ms; // stop: SIGKILL everything at this time (0 = not scheduled)
  std::int64_t lifetime_end_ms;
  logring::ring* log; // the sandbox's log, once the main process writes to it
  int log_in;         // the read end of the main's output pipe (-1: none, or at its end)
  int pts;            // O_PATH fd of the sandbox's devpts, opened before any command ran (or -1)
  cpu_set_t cpus;     // the supervisor's CPUs when unbound: the CPUs every command gets
  bool cpus_known;    // whether `cpus` could be read (if not, the supervisor never moves)
  int pinned_cpu;     // the CPU the supervisor is bound to (-1: none; see follow_caller)
  std::size_t pinned_running;   // commands started while bound, not yet reaped
  std::int64_t pinned_until_ms; // when the binding ends even if they still run
};

inline std::int64_t now_ms() noexcept {
  timespec ts{};
  libc::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

inline void send_reply(int fd, event kind, std::int32_t value, std::int32_t err,
                       stage where) noexcept {
  reply r{kind, value, err, where};
  // A client that stopped listening is not an error for the supervisor.
  (void)libc::send(fd, &r, sizeof r, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/// Sends `r` with `fds` (`nfds` of them, at most 3) as one message, again after EINTR; true if
/// it went whole.
template <class T>
inline bool send_with_fds(int fd, const T& r, const int* fds, int nfds,
                          int flags = MSG_NOSIGNAL) noexcept {
  iovec iov{const_cast<T*>(&r), sizeof r};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(3 * sizeof(int))] = {};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (nfds > 0) {
    m.msg_control = cbuf;
    m.msg_controllen = CMSG_SPACE(static_cast<std::size_t>(nfds) * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(static_cast<std::size_t>(nfds) * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds, static_cast<std::size_t>(nfds) * sizeof(int));
  }
  ssize_t n;
  do
    n = libc::sendmsg(fd, &m, flags);
  while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(sizeof r);
}

/// Sends `r` with `attached` (if not negative) as one message.
template <class T>
inline bool send_with_fd(int fd, const T& r, int attached, int flags) noexcept {
  return send_with_fds(fd, r, &attached, attached >= 0 ? 1 : 0, flags);
}

/// A reply with an fd attached: `ready` with an O_PATH fd of the sandbox's root, `started` with
/// a terminal's master.
inline void send_reply_fd(int fd, reply r, int attached) noexcept {
  (void)send_with_fd(fd, r, attached, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/// `which`: what of the step failed (mounted_files: the file's index).
[[noreturn]] inline void setup_failed(int ctl_fd, stage where, std::int32_t which = 0) noexcept {
  send_reply(ctl_fd, event::setup_failed, which, errno, where);
  libc::_exit(exit_setup_failed);
}

inline bool make_file(const char* path) noexcept {
  int fd = libc::open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  libc::close(fd);
  return true;
}

inline bool mkdir_p(char* path) noexcept { // path is modified in place and restored
  for (char* p = path + 1; *p; ++p) {
    if (*p != '/') continue;
    *p = '\0';
    int rc = libc::mkdir(path, 0755);
    *p = '/';
    if (rc != 0 && errno != EEXIST) return false;
  }
  return libc::mkdir(path, 0755) == 0 || errno == EEXIST;
}

/// Bind-mounts `src` on the existing `dst` read-only: a device node bound this way still works,
/// but nothing done inside (chmod, chown, utimes, setxattr) can change the host's inode.
inline bool bind_read_only(const char* src, const char* dst) noexcept {
  // The remount keeps the source's nodev/nosuid where a user namespace has them locked.
  return libc::mount(src, dst, nullptr, MS_BIND, nullptr) == 0 &&
         libc::mount(nullptr, dst, nullptr,
                     MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, nullptr) == 0;
}

/// /dev with only the usual safe nodes (read-only binds of the host's), devpts, shm and the fd
/// links.
inline bool populate_dev() noexcept {
  // nodev: a device node made in /dev cannot be opened (the bound ones below are mounts of
  // their own and keep the host's /dev flags).
  if (libc::mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "mode=0755,size=64k") != 0)
    return false;
  static constexpr const char* nodes[][2] = {
      {"/dev/null", "dev/null"},     {"/dev/zero", "dev/zero"},       {"/dev/full", "dev/full"},
      {"/dev/random", "dev/random"}, {"/dev/urandom", "dev/urandom"}, {"/dev/tty", "dev/tty"}};
  for (const auto& n : nodes)
    if (!make_file(n[1]) || !bind_read_only(n[0], n[1])) return false;
  if (libc::mkdir("dev/pts", 0755) != 0) return false;
  // Its own instance, of at most 256 terminals: the host's pool (kernel.pty.max) is shared by
  // every instance, and one sandbox must not take it all.
  if (libc::mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                  "newinstance,ptmxmode=0666,mode=0620,max=256") != 0)
    return false;
  if (libc::symlink("pts/ptmx", "dev/ptmx") != 0) return false;
  if (libc::mkdir("dev/shm", 01777) != 0) return false;
  // 64 MiB, Docker's default: shared memory is host memory too.
  if (libc::mount("tmpfs", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "mode=1777,size=64m") != 0)
    return false;
  return libc::symlink("/proc/self/fd", "dev/fd") == 0 &&
         libc::symlink("/proc/self/fd/0", "dev/stdin") == 0 &&
         libc::symlink("/proc/self/fd/1", "dev/stdout") == 0 &&
         libc::symlink("/proc/self/fd/2", "dev/stderr") == 0;
}

inline bool loopback_up() noexcept {
  int s = libc::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return false;
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, "lo", 3);
  bool ok = libc::ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
  if (ok) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    ok = libc::ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
  }
  libc::close(s);
  return ok;
}

/// The capabilities a command can hold: Docker's default set without CAP_MKNOD (Docker keeps it
/// because its device cgroup refuses to open the nodes; a local sandbox has no device cgroup).
inline constexpr std::uint64_t command_capabilities =
    (1ull << CAP_CHOWN) | (1ull << CAP_DAC_OVERRIDE) | (1ull << CAP_FOWNER) | (1ull << CAP_FSETID) |
    (1ull << CAP_KILL) | (1ull << CAP_SETGID) | (1ull << CAP_SETUID) | (1ull << CAP_SETPCAP) |
    (1ull << CAP_NET_BIND_SERVICE) | (1ull << CAP_NET_RAW) | (1ull << CAP_SYS_CHROOT) |
    (1ull << CAP_AUDIT_WRITE) | (1ull << CAP_SETFCAP);

/// prctl(2) as a bare system call. ASan's prctl interceptor locks its thread registry
/// (PR_SET_NAME), and another thread of the client may have held that lock at the clone: its
/// copy here is never released, and the supervisor waited forever before its `ready`. (TSan
/// intercepts clone itself and keeps its locks consistent.)
inline int sys_prctl(int option, unsigned long arg = 0) noexcept {
  return static_cast<int>(libc::syscall(SYS_prctl, option, arg, 0ul, 0ul, 0ul));
}

/// What a supervisor made ahead did before its sandbox's setup came (spare_main): the steps
/// that do not depend on it, which run_sandbox then skips.
struct done_ahead {
  bool private_mounts = false;      ///< "/" made private, recursively
  bool loopback = false;            ///< lo is up, in the sandbox's own network namespace
  std::uint64_t bounded_to = ~0ull; ///< the bounding set holds no more than these
};

/// Drops from the bounding set what is in `within` but not in `keep`. The bounding set limits
/// what a program gets at execve, not what this process holds: the supervisor keeps its
/// capabilities for the setup.
inline bool limit_bounding_set(std::uint64_t keep, std::uint64_t within = ~0ull) noexcept {
  for (int cap = 0; cap < 64; ++cap) {
    if ((keep & (1ull << cap)) || !(within & (1ull << cap))) continue;
    if (sys_prctl(PR_CAPBSET_DROP, static_cast<unsigned long>(cap)) != 0) {
      if (errno == EINVAL) break; // past the kernel's last capability
      return false;
    }
  }
  return true;
}

/// Limits the bounding set to `command_capabilities` and empties the inheritable and ambient
/// sets, so commands started later hold no more power than a default container even though the
/// supervisor runs as root: at execve a root process gets bounding ∪ (inheritable ∩ file
/// inheritable) ∪ ambient, so a caller's inheritable or ambient capabilities would otherwise pass
/// straight through. Then sets no_new_privs: setuid and file capabilities grant nothing.
/// `bounded_to`: what limit_bounding_set left already.
inline bool drop_capabilities(std::uint64_t keep = command_capabilities,
                              std::uint64_t bounded_to = ~0ull) noexcept {
  if ((keep & ~bounded_to) != 0) { // dropped already: commands would lack them
    errno = EINVAL;
    return false;
  }
  if (!limit_bounding_set(keep, bounded_to)) return false;
  if (sys_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL) != 0 && errno != EINVAL) return false;
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (libc::syscall(SYS_capget, &hdr, data) != 0) return false;
  data[0].inheritable = data[1].inheritable = 0;
  if (libc::syscall(SYS_capset, &hdr, data) != 0) return false;
  return sys_prctl(PR_SET_NO_NEW_PRIVS, 1) == 0;
}

/// Hides what Docker hides of /proc and /sys (its default MaskedPaths and ReadonlyPaths): files
/// get /dev/null bound over them, directories an empty read-only tmpfs, and the control files a
/// read-only bind of themselves. Without this, root in the sandbox could write
/// /proc/sys/kernel/core_pattern (a program the host kernel runs as root on a crash) or
/// /proc/sysrq-trigger (reboot the host). Runs inside the new root, before pivot_root.
inline bool mask_kernel_files() noexcept {
  static constexpr const char* masked[] = {"proc/acpi",
                                           "proc/asound",
                                           "proc/interrupts",
                                           "proc/kcore",
                                           "proc/keys",
                                           "proc/latency_stats",
                                           "proc/sched_debug",
                                           "proc/scsi",
                                           "proc/timer_list",
                                           "proc/timer_stats",
                                           "sys/devices/virtual/powercap",
                                           "sys/firmware"};
  static constexpr const char* read_only[] = {"proc/bus", "proc/fs", "proc/irq", "proc/sys",
                                              "proc/sysrq-trigger"};
  struct stat st {};
  for (const char* p : masked) {
    if (libc::lstat(p, &st) != 0) {
      if (errno == ENOENT) continue; // not in this kernel
      return false;
    }
    bool ok = S_ISDIR(st.st_mode)
                  ? libc::mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                                "size=0,mode=0555") == 0
                  : bind_read_only("dev/null", p);
    if (!ok) return false;
  }
  for (const char* p : read_only) {
    if (libc::lstat(p, &st) != 0) {
      if (errno == ENOENT) continue;
      return false;
    }
    // The remount keeps proc's nosuid/nodev/noexec: a user namespace may not clear them.
    if (libc::mount(p, p, nullptr, MS_BIND | MS_REC, nullptr) != 0 ||
        libc::mount(nullptr, p, nullptr,
                    MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    nullptr) != 0)
      return false;
  }
  return true;
}

/// Appends `part` to the NUL-terminated `buf` of `cap` bytes; false when it does not fit.
inline bool append(char* buf, std::size_t cap, const char* part) noexcept {
  std::size_t len = std::strlen(buf), n = std::strlen(part);
  if (len + n + 1 > cap) return false;
  std::memcpy(buf + len, part, n + 1);
  return true;
}

/// Appends `v` in decimal to the string in `buf`.
inline bool append_number(char* buf, std::size_t cap, unsigned v) noexcept {
  char digits[12];
  int i = sizeof digits - 1;
  digits[i] = '\0';
  do
    digits[--i] = static_cast<char>('0' + v % 10);
  while ((v /= 10) != 0);
  return append(buf, cap, digits + i);
}

/// State of mirror_tree: paths being built and the overlays made so far.
struct mirror_state {
  const supervisor_setup* s;
  unsigned overlays;
};

/// Whether `path` is the root of a mount (then the kernel shows what is mounted, not the
/// directory below it).
inline bool is_mount_root(const char* path, dev_t parent_dev) noexcept {
  struct statx sx {};
  if (libc::statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &sx) != 0) return true;
  if (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)
    return (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
  return makedev(sx.stx_dev_major, sx.stx_dev_minor) != parent_dev;
}

/// Mounts an overlay of `src` on `dst` with a fresh upper and work directory; returns 0 or errno.
inline int overlay_one(mirror_state& m, const char* src, const char* dst) noexcept {
  char num[16];
  unsigned v = m.overlays++;
  int i = sizeof num - 1;
  num[i] = '\0';
  do
    num[--i] = static_cast<char>('0' + v % 10);
  while ((v /= 10) != 0 && i > 1);
  num[--i] = '/';
  char up[4096] = {}, wk[4096] = {}, opts[8192] = {};
  if (!append(up, sizeof up, m.s->upper) || !append(up, sizeof up, num + i) ||
      !append(wk, sizeof wk, m.s->work) || !append(wk, sizeof wk, num + i))
    return ENAMETOOLONG;
  if (libc::mkdir(up, 0755) != 0 || libc::mkdir(wk, 0755) != 0) return errno;
  if (m.s->hide_host_secrets) {
    hidden::layer l{"/", src + 1, up, "user.overlay.opaque"};
    if (int err = hidden::prepare_upper(l); err != 0) return err;
  }
  if (!append(opts, sizeof opts, "lowerdir=") || !append(opts, sizeof opts, src) ||
      !append(opts, sizeof opts, ",upperdir=") || !append(opts, sizeof opts, up) ||
      !append(opts, sizeof opts, ",workdir=") || !append(opts, sizeof opts, wk) ||
      !append(opts, sizeof opts, ",userxattr"))
    return ENAMETOOLONG;
  return libc::mount("overlay", dst, "overlay", MS_NODEV, opts) == 0 ? 0 : errno;
}

/// Fills the (empty) directory `dst` with what `src` holds on its own filesystem: each directory
/// an overlay of its own, or, when the kernel refuses that because mounts lie below it, a
/// directory mirrored the same way one level down. Mount points show as empty directories, as
/// under one overlay of the whole root; symlinks are copied and regular files bound read-only;
/// sockets, fifos and device nodes are left out. An overlay gives every file an inode of its own,
/// so connect() through it never reaches a host process's listening socket.
inline int mirror_tree(mirror_state& m, const char* src, const char* dst, int depth) noexcept {
  struct stat here {};
  if (libc::stat(src, &here) != 0) return errno;
  int dfd = libc::open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return errno;
  alignas(8) char buf[4096];
  int err = 0;
  for (;;) {
    long n = libc::syscall(SYS_getdents64, dfd, buf, sizeof buf);
    if (n <= 0) {
      if (n < 0) err = errno;
      break;
    }
    for (long off = 0; off < n && err == 0;) {
      struct entry {
        std::uint64_t ino;
        std::int64_t off;
        unsigned short reclen;
        unsigned char type;
        char name[1];
      };
      const auto* e = reinterpret_cast<const entry*>(buf + off);
      off += e->reclen;
      const char* name = e->name;
      if (!std::strcmp(name, ".") || !std::strcmp(name, "..")) continue;
      char from[4096] = {}, to[4096] = {};
      if (!append(from, sizeof from, src) || (src[1] != '\0' && !append(from, sizeof from, "/")) ||
          !append(from, sizeof from, name) || !append(to, sizeof to, dst) ||
          !append(to, sizeof to, "/") || !append(to, sizeof to, name))
        continue; // too long to mirror: left out
      struct stat st {};
      if (libc::lstat(from, &st) != 0) continue; // gone meanwhile
      if (const hidden::entry* h = m.s->hide_host_secrets ? hidden::find(from + 1) : nullptr) {
        if (h->how == hidden::kind::empty_dir && S_ISDIR(st.st_mode) &&
            (libc::mkdir(to, 0700) != 0 || libc::chmod(to, st.st_mode & 07777) != 0))
          err = errno;
        continue;
      }
      if (S_ISLNK(st.st_mode)) {
        char target[4096];
        ssize_t len = libc::readlink(from, target, sizeof target - 1);
        if (len < 0) continue;
        target[len] = '\0';
        if (libc::symlink(target, to) != 0) err = errno;
      } else if (S_ISREG(st.st_mode)) {
        int fd = libc::open(to, O_CREAT | O_WRONLY | O_CLOEXEC, 0444);
        if (fd < 0) {
          err = errno;
          continue;
        }
        libc::close(fd);
        if (libc::mount(from, to, nullptr, MS_BIND, nullptr) != 0 ||
            libc::mount(nullptr, to, nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0)
          err = errno;
      } else if (S_ISDIR(st.st_mode)) {
        if (libc::mkdir(to, st.st_mode & 07777) != 0) {
          err = errno;
          continue;
        }
        // Overlay options cannot quote these characters.
        bool plain = !libc::strpbrk(from, ",:\\");
        if (!plain || is_mount_root(from, here.st_dev)) continue;
        int rc = overlay_one(m, from, to);
        // Deeper than that (and the supervisor's stack is small): left empty.
        if (rc == EINVAL) rc = depth < 6 ? mirror_tree(m, from, to, depth + 1) : 0;
        if (rc != 0) err = rc;
      }
    }
    if (err != 0) break;
  }
  libc::close(dfd);
  return err;
}

/// Makes the mount tree at `path` read-only, nosuid and nodev, submounts included.
inline bool make_tree_read_only(const char* path) noexcept {
  struct {
    std::uint64_t attr_set, attr_clr, propagation, userns_fd;
  } attr{0x1 | 0x2 | 0x4, 0, 0, 0}; // MOUNT_ATTR_RDONLY | NOSUID | NODEV
  constexpr unsigned at_recursive = 0x8000;
  return libc::syscall(SYS_mount_setattr, AT_FDCWD, path, at_recursive, &attr, sizeof attr) == 0;
}

/// Makes `name` (relative to the new root) a real directory to mount on: an image may hold a
/// symlink there (to "/", "../..", /proc/1/root, …) that a mount would follow out of the new
/// root. The link, or a file, is removed on the private writable layer, never on the image.
inline bool real_dir(const char* name, mode_t mode) noexcept {
  struct stat st {};
  if (libc::lstat(name, &st) == 0) {
    if (S_ISDIR(st.st_mode)) return true;
    if (libc::unlink(name) != 0) return false;
  } else if (errno != ENOENT) {
    return false;
  }
  return libc::mkdir(name, mode) == 0 && libc::chmod(name, mode) == 0;
}

/// Opens the image directory as fd hidden_layer if it is still the one the client checked.
/// Before any other descriptor is made: that number must be free.
inline void pin_lower(const supervisor_setup& s) noexcept {
  int fd = libc::open(s.lower, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    setup_failed(ctl, errno == ENOENT || errno == ENOTDIR || errno == ELOOP
                          ? stage::image_changed // moved away meanwhile
                          : stage::overlay);
  struct stat st {};
  if (libc::fstat(fd, &st) != 0) setup_failed(ctl, stage::overlay);
  if (st.st_dev != s.lower_id.dev || st.st_ino != s.lower_id.ino) {
    errno = 0;
    setup_failed(ctl, stage::image_changed);
  }
  if (fd != hidden_layer && (libc::dup2(fd, hidden_layer) < 0 || libc::close(fd) != 0))
    setup_failed(ctl, stage::overlay);
  libc::fcntl(hidden_layer, F_SETFD, FD_CLOEXEC);
}

/// Builds the sandbox's root and pivots into it. Runs as PID 1 of the new namespaces, before
/// any command: nothing else can change the tree meanwhile.
inline void build_root(const supervisor_setup& s, const done_ahead& done) noexcept {
  const int c = ctl;
  if (!done.private_mounts && libc::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    setup_failed(c, stage::mount_private);
  // The private tmpfs hides nothing of the host: it is mounted in this mount namespace only.
  // Its size bounds what the sandbox can write: the writable layer and /tmp live on it.
  if (libc::mount("tmpfs", s.staging, "tmpfs", MS_NOSUID | MS_NODEV, s.staging_opts) != 0)
    setup_failed(c, stage::staging);
  if (libc::mkdir(s.upper, 0755) != 0 || libc::mkdir(s.work, 0755) != 0 ||
      libc::mkdir(s.root, 0755) != 0 || libc::mkdir(s.tmp, 01777) != 0 ||
      libc::chmod(s.tmp, 01777) != 0)
    setup_failed(c, stage::staging);
  if (s.mirror_root) {
    mirror_state m{&s, 0};
    if (libc::mount(s.root, s.root, nullptr, MS_BIND, nullptr) != 0)
      setup_failed(c, stage::overlay);
    int err = mirror_tree(m, s.lower, s.root, 0);
    if (err == 0 && s.hide_host_secrets) err = hidden::make_skeleton(s.root);
    if (err != 0) {
      errno = err;
      setup_failed(c, stage::overlay);
    }
  } else {
    if (s.hide_host_secrets && s.hidden_layer_fd < 0) {
      hidden::layer l{s.lower, "", s.upper, "trusted.overlay.opaque"};
      int err = hidden::prepare_upper(l);
      if (err == 0) err = hidden::make_skeleton(s.upper);
      if (err != 0) {
        errno = err;
        setup_failed(c, stage::hide);
      }
    }
    // nodev: a device node made on the writable layer cannot be opened.
    if (libc::mount("overlay", s.root, "overlay", MS_NODEV, s.overlay_opts) != 0)
      setup_failed(c, stage::overlay);
  }
  struct stat new_root {};
  if (libc::chdir(s.root) != 0 || libc::stat(".", &new_root) != 0) setup_failed(c, stage::overlay);
  if (!real_dir("proc", 0555) ||
      libc::mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
    setup_failed(c, stage::proc);
  if (!real_dir("dev", 0755) || !populate_dev()) setup_failed(c, stage::dev);
  if (!real_dir("tmp", 01777) || libc::mount(s.tmp, "tmp", nullptr, MS_BIND, nullptr) != 0)
    setup_failed(c, stage::tmp);
  if (!real_dir("sys", 0555)) setup_failed(c, stage::sys);
  if (libc::mount("sysfs", "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) !=
      0) {
    // A user namespace may mount sysfs only with a network namespace of its own
    // (host_network): show the host's /sys read-only instead.
    if (errno != EPERM || !s.user_ns ||
        libc::mount("/sys", "sys", nullptr, MS_BIND | MS_REC, nullptr) != 0 ||
        !make_tree_read_only("sys"))
      setup_failed(c, stage::sys);
  }
  if (!mask_kernel_files()) setup_failed(c, stage::masks);
  if (libc::syscall(SYS_pivot_root, ".", ".") != 0) setup_failed(c, stage::pivot_root);
  if (libc::umount2(".", MNT_DETACH) != 0 || libc::chdir("/") != 0)
    setup_failed(c, stage::pivot_root);
  // The old root must be gone: "/" and "/.." are the new root, nothing of the host above it.
  struct stat root {
  }, up{};
  if (libc::stat("/", &root) != 0 || libc::stat("/..", &up) != 0)
    setup_failed(c, stage::verify_root);
  if (root.st_dev != new_root.st_dev || root.st_ino != new_root.st_ino ||
      up.st_dev != root.st_dev || up.st_ino != root.st_ino) {
    errno = EXDEV;
    setup_failed(c, stage::verify_root);
  }
}

/// Whether `fd` is a regular file of an ordinary filesystem: not a kernel interface of /proc or
/// /sys that a symlink in the image could point a write of the supervisor (still root) at.
inline bool plain_file(int fd) noexcept {
  struct stat st {};
  struct statfs fs {};
  return libc::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && libc::fstatfs(fd, &fs) == 0 &&
         fs.f_type != PROC_SUPER_MAGIC && fs.f_type != SYSFS_MAGIC;
}

/// Writes all of `data` to `fd`.
inline bool write_all(int fd, const char* data, std::size_t size) noexcept {
  for (std::size_t done = 0; done < size;) {
    ssize_t n = libc::write(fd, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

/// Covers the existing file `f.path` with a read-only bind mount of a file of the sandbox's /tmp
/// holding the content: for a file of the lower layer that this root may not write (in a user
/// namespace, the host's files belong to an unmapped owner).
inline bool cover_file(const mounted_file_spec& f) noexcept {
  int target = libc::open(f.path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (target < 0) return false;
  bool plain = plain_file(target);
  libc::close(target);
  if (!plain) {
    errno = EPERM;
    return false;
  }
  // Named only while the setup runs (nothing else runs in the sandbox yet), then unlinked: the
  // mount keeps the file, and no name is left to write it through. (A file without a name,
  // O_TMPFILE, cannot be the source of a bind mount: ENOENT.) A name that a mounted file of the
  // caller's already took is skipped, never removed.
  char src[64];
  int fd = -1;
  for (unsigned n = 0; fd < 0 && n < 2 * max_mounted_files; ++n) {
    src[0] = '\0';
    if (!append(src, sizeof src, "/tmp/.sandbox-mounted-file-") ||
        !append_number(src, sizeof src, n))
      return false;
    fd = libc::open(src, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0444);
    if (fd < 0 && errno != EEXIST) return false;
  }
  if (fd < 0) return false;
  bool ok = write_all(fd, f.data, f.size);
  libc::close(fd);
  ok = ok && libc::mount(src, f.path, nullptr, MS_BIND, nullptr) == 0 &&
       libc::mount(nullptr, f.path, nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) == 0;
  int err = errno;
  libc::unlink(src);
  errno = err;
  return ok;
}

/// Places one mounted file (see place_files); false with errno set.
inline bool place_file(const mounted_file_spec& f) noexcept {
  char path[4096];
  std::size_t len = std::strlen(f.path);
  if (len >= sizeof path) return false;
  struct stat lst {};
  // The library's own resolv.conf replaces a link (on the private layer; the link may point
  // where nothing can be written, /run/systemd/resolve of a host).
  if (f.replace_link && libc::lstat(f.path, &lst) == 0 && S_ISLNK(lst.st_mode) &&
      libc::unlink(f.path) != 0)
    return false;
  std::memcpy(path, f.path, len + 1);
  char* slash = const_cast<char*>(libc::strrchr(path, '/'));
  if (slash && slash != path) {
    *slash = '\0';
    bool ok = mkdir_p(path);
    *slash = '/';
    if (!ok) return false;
  }
  // No O_TRUNC before the check; O_NONBLOCK: a FIFO in the image does not block the setup.
  int fd = libc::open(f.path, O_CREAT | O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0444);
  if (fd < 0 && (errno == EACCES || errno == EPERM)) return cover_file(f);
  if (fd < 0) return false;
  bool plain = plain_file(fd);
  if (!plain || libc::ftruncate(fd, 0) != 0) {
    int err = plain ? errno : EPERM;
    libc::close(fd);
    errno = err;
    return false;
  }
  if (!write_all(fd, f.data, f.size)) {
    libc::close(fd);
    return false;
  }
  libc::close(fd);
  return libc::mount(f.path, f.path, nullptr, MS_BIND, nullptr) == 0 &&
         libc::mount(nullptr, f.path, nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) == 0;
}

/// Writes each mounted file and makes it a read-only bind mount of itself. Runs after pivot_root
/// (verified), so symlinks in an image resolve inside the sandbox, never on the host. The
/// library's own resolv.conf (`replace_link`) is best effort: a root whose /etc this sandbox
/// may not change (a caller without root, on root's image) keeps its own. The index of the file
/// that could not be placed (errno set), or -1.
inline int place_files(const supervisor_setup& s) noexcept {
  for (std::size_t i = 0; i < s.nfiles; ++i)
    if (!place_file(s.files[i]) && !s.files[i].replace_link) return static_cast<int>(i);
  return -1;
}

/// PATH search as execvp does it, but with the command's own PATH and no allocation.
inline void exec_search(exec_ctx& x) noexcept {
  const char* file = x.argv[0];
  if (libc::strchr(file, '/')) {
    libc::execve(file, x.argv, x.envp);
    x.err = errno;
    return;
  }
  char buf[4096];
  std::size_t flen = std::strlen(file);
  int first_err = ENOENT;
  for (const char* p = x.path;;) {
    const char* end = libc::strchr(p, ':');
    std::size_t dlen = end ? static_cast<std::size_t>(end - p) : std::strlen(p);
    if (dlen + flen + 2 <= sizeof buf) {
      std::size_t n = 0;
      if (dlen == 0)
        buf[n++] = '.';
      else {
        std::memcpy(buf, p, dlen);
        n = dlen;
      }
      buf[n++] = '/';
      std::memcpy(buf + n, file, flen + 1);
      libc::execve(buf, x.argv, x.envp);
      if (errno == EACCES)
        first_err = EACCES;
      else if (errno != ENOENT && errno != ENOTDIR) {
        first_err = errno;
        break;
      }
    }
    if (!end) break;
    p = end + 1;
  }
  x.err = first_err;
}

/// The CLONE_VFORK child: becomes the command. Shares the supervisor's memory until execve.
inline int exec_child(void* arg) noexcept {
  auto& x = *static_cast<exec_ctx*>(arg);
  sigset_t none;
  libc::sigemptyset(&none);
  libc::sigprocmask(SIG_SETMASK, &none, nullptr);
  // Started on the caller's CPU (follow_caller), it may run on all of the sandbox's. Should
  // that fail (a cpuset changed since), it runs where it is: slower, not wrong.
  if (x.cpus) (void)libc::sched_setaffinity(0, sizeof *x.cpus, x.cpus);
  // A command on a terminal leads a session of its own (the terminal's signals, job control);
  // the others get a process group of their own. Either way the group is the command's pid.
  if (x.tty)
    libc::setsid();
  else
    libc::setpgid(0, 0);
  for (int i = 0; i < 3; ++i) {
    int fd = x.fds[i];
    if (fd < 0) fd = libc::open("/dev/null", i == 0 ? O_RDONLY : O_WRONLY);
    if (fd < 0 || libc::dup2(fd, i) < 0) {
      x.err = errno;
      x.where = stage::fds;
      libc::_exit(127);
    }
  }
  if (x.tty && libc::ioctl(0, TIOCSCTTY, 0) != 0) {
    x.err = errno;
    x.where = stage::terminal;
    libc::_exit(127);
  }
  libc::syscall(SYS_close_range, 3u, ~0u, 0u);
  // Raw system calls: glibc's wrappers would signal the threads its copy of the caller's memory
  // still lists. Group first: without CAP_SETGID after the uid changes, it could not follow.
  if (x.as_user && (libc::syscall(SYS_setgroups, 0, nullptr) != 0 ||
                    libc::syscall(SYS_setresgid, x.gid, x.gid, x.gid) != 0 ||
                    libc::syscall(SYS_setresuid, x.uid, x.uid, x.uid) != 0)) {
    x.err = errno;
    x.where = stage::user;
    libc::_exit(126);
  }
  if (x.cwd && *x.cwd && libc::chdir(x.cwd) != 0) {
    x.err = errno;
    x.where = stage::chdir;
    libc::_exit(127);
  }
  exec_search(x);
  x.where = stage::execve;
  libc::_exit(x.err == ENOENT ? 127 : 126);
}

inline slot* find_slot(state& st, pid_t pid) noexcept {
  for (std::size_t i = 0; i < st.nslots; ++i)
    if (st.slots[i].pid == pid) return &st.slots[i];
  return nullptr;
}

inline void close_fds(int* fds, int n) noexcept {
  for (int i = 0; i < n; ++i)
    if (fds[i] >= 0) libc::close(fds[i]);
}

/// Makes a started command the OOM killer's first choice (raising needs no privilege; lowering
/// the supervisor's own score would need CAP_SYS_RESOURCE). Only after its execve: before, it
/// shares the supervisor's memory, and the kernel applies the value to every process sharing it.
inline void raise_oom_score(pid_t pid) noexcept {
  char path[48] = "/proc/";
  (void)(append_number(path, sizeof path, static_cast<unsigned>(pid)) &&
         append(path, sizeof path, "/oom_score_adj"));
  int fd = libc::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  (void)!libc::write(fd, "1000", 4);
  libc::close(fd);
}

/// A new terminal of the sandbox's own devpts, unlocked and sized: its master and its slave
/// (both close-on-exec). Returns 0 or an errno.
inline int open_terminal(const state& st, const request& rq, int& master, int& slave) noexcept {
  if (st.pts < 0) return ENODEV;
  // Through the devpts fd taken before any command ran: a command cannot put something else in
  // the way (its /dev/ptmx, or a mount over /dev/pts, only changes what it opens itself).
  master = libc::openat(st.pts, "ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) return errno;
  int unlock = 0;
  winsize ws{};
  ws.ws_col = rq.tty_cols ? rq.tty_cols : 80;
  ws.ws_row = rq.tty_rows ? rq.tty_rows : 24;
  if (libc::ioctl(master, TIOCSPTLCK, &unlock) == 0 && libc::ioctl(master, TIOCSWINSZ, &ws) == 0) {
    slave = libc::ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave >= 0) return 0;
  }
  int err = errno;
  libc::close(master);
  master = -1;
  return err;
}

/// How long the supervisor stays bound to a caller's CPU at most: a command that runs longer
/// gains nothing measurable from it (0.1 ms), and a bound supervisor waits for that CPU even when
/// another is idle: a CPU-bound command there delays its replies by up to a scheduler slice, a
/// real-time task spinning there by up to the kernel's real-time throttling (0.95 s), and it
/// cannot unbind itself before it gets the CPU.
inline constexpr std::int64_t follow_lease_ms = 20;

/// Binds the supervisor to `cpu`, the CPU of the caller asking for a command, until every
/// command started while bound has ended or follow_lease_ms has passed (unfollow). A command
/// started while bound starts on that CPU (a new process starts on its parent's CPUs) and widens
/// its CPUs to the sandbox's before execve (exec_child). A caller that waits for its command
/// leaves that CPU free; the command's exit then wakes the supervisor, and its reply the caller,
/// on that one CPU, as a posix_spawn caller is woken by its child. Left to the scheduler, each
/// wake may go to an idle CPU, which costs about 0.1 ms on a virtual machine (warm exec of
/// `true` beside posix_spawn in alternating blocks, five runs each: 1.08–1.29x unbound,
/// 1.00–1.12x bound).
/// A caller's CPU that the sandbox may not use leaves the supervisor as it is.
inline void follow_caller(state& st, std::int32_t cpu) noexcept {
  // Unbound, the supervisor's CPUs are read afresh: a cpuset or `taskset -p` may have changed
  // them since, and the commands get what the supervisor has.
  if (st.pinned_cpu < 0) st.cpus_known = libc::sched_getaffinity(0, sizeof st.cpus, &st.cpus) == 0;
  if (!st.cpus_known || cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &st.cpus)) return;
  if (st.pinned_cpu != cpu) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (libc::sched_setaffinity(0, sizeof one, &one) != 0) return;
    st.pinned_cpu = cpu;
  }
  st.pinned_until_ms = now_ms() + follow_lease_ms;
}

/// Gives the supervisor all of its CPUs back once no command started while bound runs, or
/// (`lease_over`) whatever still runs.
inline void unfollow(state& st, bool lease_over = false) noexcept {
  if (st.pinned_cpu < 0 || (st.pinned_running != 0 && !lease_over)) return;
  (void)libc::sched_setaffinity(0, sizeof st.cpus, &st.cpus);
  st.pinned_cpu = -1;
}

/// Handles one exec request. `fds`: status socket, then stdin (if flagged), stdout, stderr.
inline void start_command(state& st, const request& rq, int* fds, int nfds) noexcept {
  int status_fd = nfds > 0 ? fds[0] : -1;
  auto give_up = [&](stage where, int err) {
    if (status_fd >= 0) send_reply(status_fd, event::start_failed, 0, err, where);
    close_fds(fds, nfds);
  };
  const bool tty = (rq.flags & exec_tty) != 0;
  int want = 1 + ((rq.flags & exec_stdin_pipe) ? 1 : 0) +
             ((rq.flags & exec_null_output) || tty ? 0
              : (rq.flags & exec_log_output)       ? 1
                                                   : 2);
  if (tty && (rq.flags & (exec_stdin_pipe | exec_log_output | exec_main))) want = -1;
  if (nfds != want || rq.argc == 0 || rq.argc + rq.envc > max_strings) {
    give_up(stage::fds, EINVAL);
    return;
  }
  if (st.stopping || st.main_exited) {
    give_up(stage::fork, ESRCH);
    return;
  }
  slot* free_slot = find_slot(st, 0);
  if (!free_slot) {
    if (st.nslots == max_slots) {
      give_up(stage::table_full, EAGAIN);
      return;
    }
    free_slot = &st.slots[st.nslots++];
  }
  // Split the strings: argc argv entries, envc env entries, then cwd.
  char* p = st.buf + sizeof(request);
  char* end = p + rq.strings_len;
  char** argv = st.ptrs;
  char** envp = st.ptrs + rq.argc + 1;
  const char* path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (std::uint32_t i = 0; i < rq.argc + rq.envc + 1; ++i) {
    const void* found =
        p < end ? libc::memchr(p, '\0', static_cast<std::size_t>(end - p)) : nullptr;
    char* nul = static_cast<char*>(const_cast<void*>(found));
    if (!nul) {
      give_up(stage::fds, EINVAL);
      return;
    }
    if (i < rq.argc)
      argv[i] = p;
    else if (i < rq.argc + rq.envc) {
      envp[i - rq.argc] = p;
      if (libc::strncmp(p, "PATH=", 5) == 0) path = p + 5;
    }
    if (i == rq.argc + rq.envc) break;
    p = nul + 1;
  }
  argv[rq.argc] = nullptr;
  envp[rq.envc] = nullptr;
  exec_ctx x{argv, envp, p, path, {-1, -1, -1}, tty, st.as_user, st.uid, st.gid, 0, stage::none};
  int k = 1;
  int master = -1, slave = -1;
  if (tty) {
    int err = open_terminal(st, rq, master, slave);
    if (err != 0) {
      give_up(stage::terminal, err);
      return;
    }
    x.fds[0] = x.fds[1] = x.fds[2] = slave;
  }
  if (rq.flags & exec_stdin_pipe) x.fds[0] = fds[k++];
  int log_w = -1;
  if (tty || (rq.flags & exec_null_output)) {
  } else if (rq.flags & exec_log_output) {
    // One log per sandbox, written by its main process (and whatever inherits its output).
    if (st.log || !(rq.flags & exec_main)) {
      give_up(stage::fds, EINVAL);
      return;
    }
    void* m =
        libc::mmap(nullptr, logring::ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fds[k++], 0);
    int pp[2];
    if (m == MAP_FAILED || libc::pipe2(pp, O_CLOEXEC) != 0) {
      int err = errno;
      if (m != MAP_FAILED) libc::munmap(m, logring::ring_bytes);
      give_up(stage::fds, err);
      return;
    }
    if (libc::fcntl(pp[0], F_SETFL, O_NONBLOCK) != 0) { // a blocking read would stall every request
      int err = errno;
      libc::close(pp[0]);
      libc::close(pp[1]);
      libc::munmap(m, logring::ring_bytes);
      give_up(stage::fds, err);
      return;
    }
    st.log = static_cast<logring::ring*>(m);
    st.log_in = pp[0];
    x.fds[1] = x.fds[2] = log_w = pp[1];
  } else {
    x.fds[1] = fds[k++];
    x.fds[2] = fds[k++];
  }
  follow_caller(st, rq.cpu);
  // Bound now, for this caller or an earlier one: the command must not keep that one CPU.
  const bool pinned = st.pinned_cpu >= 0;
  if (pinned) x.cpus = &st.cpus;
  pid_t pid = libc::clone(exec_child, st.child_stack + child_stack_size,
                          CLONE_VM | CLONE_VFORK | SIGCHLD, &x);
  int clone_err = errno;
  close_fds(fds + 1, nfds - 1);
  if (log_w >= 0) libc::close(log_w);
  if (slave >= 0) libc::close(slave);
  if (pid < 0) {
    if (master >= 0) libc::close(master);
    unfollow(st);
    give_up(stage::fork, clone_err);
    return;
  }
  if (x.err != 0) {
    // The child already exited; reap it here so its status cannot be mistaken for an orphan's.
    int ws = 0;
    libc::waitpid(pid, &ws, 0);
    unfollow(st);
    send_reply(status_fd, event::start_failed, 0, x.err, x.where);
    libc::close(status_fd);
    if (master >= 0) libc::close(master);
    if (rq.flags & exec_main) st.main_exited = true;
    return;
  }
  if (st.oom_commands_first) raise_oom_score(pid);
  *free_slot = slot{pid, status_fd, (rq.flags & exec_main) != 0, pinned};
  if (pinned) ++st.pinned_running;
  if (master >= 0) {
    send_reply_fd(status_fd, reply{event::started, pid, 0, stage::none}, master);
    libc::close(master);
  } else {
    send_reply(status_fd, event::started, pid, 0, stage::none);
  }
}

inline void signal_command(state& st, const request& rq) noexcept {
  // Only commands not yet reaped: their pid (and process group id) cannot have been reused.
  if (rq.pid > 0 && find_slot(st, rq.pid)) libc::kill(-rq.pid, rq.sig);
}

/// Reaps every exited child; reports those the client started.
inline void reap(state& st, bool block) noexcept {
  for (;;) {
    int ws = 0;
    pid_t pid = libc::waitpid(-1, &ws, block ? 0 : WNOHANG);
    if (pid <= 0) return;
    slot* s = find_slot(st, pid);
    if (!s) continue; // an orphan that was reparented to us
    if (s->pinned) {  // before the reply: a caller woken by it finds the supervisor unbound
      --st.pinned_running;
      unfollow(st);
    }
    send_reply(s->status_fd, event::exited, ws, 0, stage::none);
    libc::close(s->status_fd);
    if (s->main) st.main_exited = true;
    *s = slot{0, -1, false, false};
  }
}

/// Moves what the main's output pipe holds into the log (at most `rounds` chunks, so that a
/// flood of output cannot keep requests waiting); at the pipe's end, closes the log.
inline void drain_log(state& st, int rounds) noexcept {
  for (int i = 0; i < rounds && st.log_in >= 0; ++i) {
    long n = logring::append_from(*st.log, st.log_in);
    if (n > 0) continue;
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n < 0) {
      // The ring could not take it (its memory could not be had): the output is dropped rather
      // than left to block the main, or the pipe closed under it (SIGPIPE).
      char sink[4096];
      if (libc::read(st.log_in, sink, sizeof sink) > 0 || errno == EAGAIN || errno == EINTR)
        continue;
    }
    libc::close(st.log_in);
    st.log_in = -1;
    logring::close(*st.log);
  }
}

/// Exits, after moving what is left in the main's output pipe into the log: with every writer
/// gone, that is at most the pipe's capacity (1 MiB at most for an unprivileged writer: 16
/// chunks; the bound holds even if a writer were left).
[[noreturn]] inline void finish(state& st) noexcept {
  drain_log(st, 64);
  if (st.log) logring::close(*st.log);
  libc::_exit(st.expired ? exit_expired : 0);
}

[[noreturn]] inline void shut_down(state& st) noexcept {
  libc::kill(-1, SIGKILL);
  reap(st, true);
  finish(st);
}

inline void begin_stop(state& st, std::uint32_t grace_ms) noexcept {
  if (!st.stopping) {
    st.stopping = true;
    libc::kill(-1, SIGTERM);
    st.kill_at_ms = now_ms() + grace_ms;
  }
}

inline bool has_children() noexcept {
  siginfo_t si{};
  return libc::waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0 || errno != ECHILD;
}

/// The descriptors a received message carries, in order, into `fds` (at most `max`; the rest
/// are closed). Returns how many.
inline int take_fds(msghdr& mh, int* fds, int max) noexcept {
  int nfds = 0;
  for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    int cnt = static_cast<int>((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < cnt; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
      if (nfds < max)
        fds[nfds++] = fd;
      else
        libc::close(fd);
    }
  }
  return nfds;
}

/// Receives one message of `T` and up to 3 fds (close-on-exec) into `fds`, setting `nfds`.
/// Returns recvmsg's result, or -1 with EMSGSIZE if the message or its fds did not fit.
template <class T>
inline ssize_t receive_with_fds(int fd, T& r, int (&fds)[3], int& nfds) noexcept {
  iovec iov{&r, sizeof r};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(3 * sizeof(int))];
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = cbuf;
  m.msg_controllen = sizeof cbuf;
  const ssize_t n = libc::recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
  nfds = n >= 0 ? take_fds(m, fds, 3) : 0;
  if (n > 0 && (n != static_cast<ssize_t>(sizeof r) || (m.msg_flags & (MSG_CTRUNC | MSG_TRUNC)))) {
    errno = EMSGSIZE;
    return -1;
  }
  return n;
}

/// Reads and handles one request; returns false when the client is gone.
inline bool handle_request(state& st) noexcept {
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 4)];
  iovec iov{st.buf, sizeof(request) + max_request_bytes};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  ssize_t n = libc::recvmsg(ctl, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (n == 0) return false;
  if (n < 0) return errno == EAGAIN || errno == EINTR;
  int fds[4];
  const int nfds = take_fds(mh, fds, 4);
  request rq;
  if (static_cast<std::size_t>(n) < sizeof rq || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
    close_fds(fds, nfds);
    return true;
  }
  std::memcpy(&rq, st.buf, sizeof rq);
  if (rq.strings_len != static_cast<std::size_t>(n) - sizeof rq) {
    close_fds(fds, nfds);
    return true;
  }
  switch (rq.code) {
  case op::exec: start_command(st, rq, fds, nfds); return true;
  case op::signal: signal_command(st, rq); break;
  case op::stop: begin_stop(st, rq.grace_ms); break;
  }
  close_fds(fds, nfds);
  return true;
}

[[noreturn]] inline void serve(state& st, int sigfd) noexcept {
  for (;;) {
    if (st.main_exited) shut_down(st);
    if (st.stopping && !has_children()) finish(st);
    int timeout = -1;
    std::int64_t now = now_ms();
    if (st.stopping) {
      if (now >= st.kill_at_ms)
        libc::kill(-1, SIGKILL);
      else
        timeout = static_cast<int>(st.kill_at_ms - now);
    } else if (st.lifetime_end_ms) {
      if (now >= st.lifetime_end_ms) {
        st.expired = true;
        begin_stop(st, 0);
        continue;
      }
      timeout = static_cast<int>(st.lifetime_end_ms - now);
    }
    if (st.pinned_cpu >= 0) {
      if (now >= st.pinned_until_ms)
        unfollow(st, true);
      else if (timeout < 0 || st.pinned_until_ms - now < timeout)
        timeout = static_cast<int>(st.pinned_until_ms - now);
    }
    pollfd p[3] = {{ctl, POLLIN, 0}, {sigfd, POLLIN, 0}, {st.log_in, POLLIN, 0}};
    if (libc::poll(p, st.log_in >= 0 ? 3 : 2, timeout) < 0 && errno != EINTR) shut_down(st);
    if (st.log_in >= 0 && (p[2].revents & (POLLIN | POLLHUP | POLLERR))) drain_log(st, 16);
    if (p[1].revents & POLLIN) {
      signalfd_siginfo si;
      while (libc::read(sigfd, &si, sizeof si) > 0) {
      }
      reap(st, false);
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      if (!handle_request(st)) shut_down(st); // the client is gone: nothing may outlive it
    }
  }
}

/// Waits for the client's go-ahead byte; exits when the client is gone.
inline void await_client() noexcept {
  char go = 0;
  ssize_t n;
  do
    n = libc::recv(ctl, &go, 1, 0);
  while (n < 0 && errno == EINTR);
  if (n != 1) libc::_exit(exit_setup_failed);
}

/// madvise's MADV_POPULATE_READ and MADV_POPULATE_WRITE (Linux 5.14), which older headers lack.
inline constexpr int populate_read = 22, populate_write = 23;

/// Maps the pages of [begin, end) (widened to whole pages) in one call, as `advice` says
/// (populate_read or populate_write). Page faults are dear where this runs in a VM: 15-20 µs each,
/// and a child of fork starts without its parent's code mapped, while one call mapping libc's
/// whole code (1.4 MB) costs about as much as three faults. Best effort: a kernel without these
/// advices, or a range not mapped, just leaves the faults to come.
inline void prefault(std::uintptr_t begin, std::uintptr_t end, int advice) noexcept {
  const auto page = static_cast<std::uintptr_t>(libc::getpagesize());
  begin &= ~(page - 1);
  end = (end + page - 1) & ~(page - 1);
  if (end > begin) (void)libc::madvise(reinterpret_cast<void*>(begin), end - begin, advice);
}

/// Overwrites an area of this copy of the client's memory with `text` and zeros.
inline void scrub(memory_area a, const char* text) noexcept {
  if (a.end <= a.begin) return;
  auto* p = reinterpret_cast<char*>(a.begin);
  std::size_t n = a.end - a.begin, k = std::strlen(text);
  std::memset(p, 0, n);
  std::memcpy(p, text, k < n ? k : n - 1);
}

/// A fresh clone's first steps, before anything of a sandbox: libc's code it runs from here on
/// and the rest of the top of its stack (a fresh mapping) each mapped in one call instead of
/// fault by fault, and the client's argv and environment overwritten: /proc/1/cmdline is
/// readable by every command, and must not show an API key on the client's command line (its
/// environment goes too, though only a ptracer could read it).
inline void leave_client(const supervisor_setup& s, std::uintptr_t stack_here) noexcept {
  prefault(s.libc_text.begin, s.libc_text.end, populate_read);
  static_assert(supervisor_stack_size >= 16 * 1024 + 2 * 64 * 1024,
                "the stack's top 16 KiB (whole pages of up to 64 KiB) lie within it");
  prefault(stack_here - 16 * 1024, stack_here, populate_write);
  scrub(s.args, "sandbox-init");
  scrub(s.environment, "");
  libc::umask(0); // setup gives every file the mode it names; commands get 022 later
}

/// Keeps `from` as the control socket (fd 3) and `layer`, if not negative, as fd 4 (the hidden
/// layer): nothing else of the client. 0-2 are the launcher's /dev/null already.
[[nodiscard]] inline bool place_fds(int from, int layer) noexcept {
  if (layer == ctl && (layer = libc::fcntl(layer, F_DUPFD, hidden_layer + 1)) < 0) return false;
  if (from != ctl && libc::dup2(from, ctl) < 0) return false;
  if (layer >= 0 && layer != hidden_layer && libc::dup2(layer, hidden_layer) < 0) return false;
  libc::syscall(SYS_close_range, static_cast<unsigned>(layer >= 0 ? hidden_layer + 1 : ctl + 1),
                ~0u, 0u);
  if (layer >= 0) libc::fcntl(hidden_layer, F_SETFD, FD_CLOEXEC);
  libc::fcntl(ctl, F_SETFD, FD_CLOEXEC);
  return true;
}

/// A process of its own, named `name`: its own session, not dumpable, all signals blocked and
/// every disposition the default. Returns the step that failed, or stage::none.
[[nodiscard]] inline stage detach(const char* name) noexcept {
  // A session of its own: no controlling terminal, so no command can open the caller's
  // terminal as /dev/tty and push keystrokes into it (TIOCSTI) or hang it up.
  if (libc::setsid() < 0) return stage::session;
  // Not dumpable: commands cannot read this copy of the client's memory through /proc/1/mem.
  sys_prctl(PR_SET_DUMPABLE, 0);
  sys_prctl(PR_SET_NAME, reinterpret_cast<unsigned long>(name));
  sigset_t all;
  libc::sigfillset(&all);
  libc::sigprocmask(SIG_SETMASK, &all, nullptr);
  // Ignored signals stay ignored across a command's execve, and a handler of the client could
  // run in a command's child before it; SA_NOCLDWAIT (even with SIG_DFL) would reap commands
  // before the supervisor sees them exit. The bare system call: glibc's refuses its own signals
  // (32 and 33), which a client may still have ignored. All zeros is SIG_DFL, no flags, no mask.
  const unsigned long dfl[4] = {};
  for (int sig = 1; sig <= 64; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP)
      libc::syscall(SYS_rt_sigaction, sig, dfl, nullptr, sizeof(std::uint64_t));
  return stage::none;
}

[[noreturn]] inline void run_sandbox(const supervisor_setup& s,
                                     const done_ahead& done = {}) noexcept;

/// Entry point of a supervisor cloned for a request (PID 1 in the new namespaces).
inline int supervisor_main(void* arg) noexcept {
  const auto& s = *static_cast<const supervisor_setup*>(arg);
  leave_client(s, reinterpret_cast<std::uintptr_t>(&arg));
  if (!place_fds(s.ctl_fd, s.hidden_layer_fd)) libc::_exit(1);
  if (s.user_ns) {
    // Until the client has written uid_map and gid_map this process has no identity (and no
    // capability) inside its user namespace. The client writes them while this process is still
    // dumpable (a non-dumpable process's /proc files belong to the host's root).
    await_client();
  }
  if (stage failed = detach("sandbox-init"); failed != stage::none) setup_failed(ctl, failed);
  run_sandbox(s);
}

/// A supervisor's steps for its sandbox, its fds in place (place_fds) and detached: from the
/// root to serving requests.
[[noreturn]] inline void run_sandbox(const supervisor_setup& s, const done_ahead& done) noexcept {
  if (s.lower_pinned) pin_lower(s); // as fd 4, before any other fd is opened
  sigset_t chld;
  libc::sigemptyset(&chld);
  libc::sigaddset(&chld, SIGCHLD);
  int sigfd = libc::signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sigfd < 0) setup_failed(ctl, stage::signals);

  build_root(s, done);
  // The overlay holds the layer (or the image) now.
  if (s.hidden_layer_fd >= 0 || s.lower_pinned) libc::close(hidden_layer);
  if (*s.workdir) {
    char wd[4096];
    std::size_t len = std::strlen(s.workdir);
    if (len >= sizeof wd) setup_failed(ctl, stage::workdir);
    std::memcpy(wd, s.workdir, len + 1);
    if (!mkdir_p(wd)) setup_failed(ctl, stage::workdir);
  }
  if (int failed = place_files(s); failed >= 0) setup_failed(ctl, stage::mounted_files, failed);
  if (libc::sethostname(s.hostname, std::strlen(s.hostname)) != 0)
    setup_failed(ctl, stage::hostname);
  if (!s.host_network && !done.loopback && !loopback_up()) setup_failed(ctl, stage::loopback);
  if (s.wait_for_cgroup) await_client();
  // Rooted at the sandbox's own cgroup: /proc/self/cgroup shows "/", not the host's paths.
  if (libc::unshare(CLONE_NEWCGROUP) != 0) setup_failed(ctl, stage::cgroup_ns);
  libc::umask(022);
  // Egress: packet sockets (CAP_NET_RAW) would hand frames to the NAT past the packet filter,
  // which sees only what goes through the IP stack.
  if (!drop_capabilities(s.no_packet_sockets ? command_capabilities & ~(1ull << CAP_NET_RAW)
                                             : command_capabilities,
                         done.bounded_to))
    setup_failed(ctl, stage::capabilities);
  // From here on the supervisor only serves requests, with calls the filter allows (clone
  // without namespace flags, execve, wait, kill, socket I/O), so it installs the filter on itself
  // once and every command inherits it: installing it in each command's child instead cost
  // ≈ 120 µs per exec here (the kernel compiles the program and builds its action cache).
  if (s.seccomp) {
    if (int err = seccomp::install(); err != 0) {
      errno = err;
      setup_failed(ctl, stage::seccomp);
    }
  }

  constexpr std::size_t slots_bytes = max_slots * sizeof(slot);
  // Rounded up: the pointer arrays that follow must be aligned whatever the request's size.
  constexpr std::size_t buf_bytes = (sizeof(request) + max_request_bytes + 15) & ~std::size_t{15};
  constexpr std::size_t ptr_bytes = (max_strings + 2) * sizeof(char*);
  constexpr std::size_t total = slots_bytes + buf_bytes + ptr_bytes + child_stack_size;
  void* mem =
      libc::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) setup_failed(ctl, stage::fds);
  auto* base = static_cast<char*>(mem);
  // What every command's start writes: the first slots, the request buffer's start, the first
  // pointers, the top of the child's stack.
  const auto at = reinterpret_cast<std::uintptr_t>(base);
  prefault(at, at + 2 * sizeof(slot), populate_write);
  prefault(at + slots_bytes, at + slots_bytes + 8 * 1024, populate_write);
  prefault(at + slots_bytes + buf_bytes, at + slots_bytes + buf_bytes + 4096, populate_write);
  prefault(at + total - 16 * 1024, at + total, populate_write);
  state st{};
  st.log_in = -1;
  st.pts = libc::open("/dev/pts", O_PATH | O_DIRECTORY | O_CLOEXEC);
  st.pinned_cpu = -1; // and st.cpus is read when first needed (follow_caller)
  st.slots = reinterpret_cast<slot*>(base);
  st.buf = base + slots_bytes;
  st.ptrs = reinterpret_cast<char**>(base + slots_bytes + buf_bytes);
  st.child_stack = base + slots_bytes + buf_bytes + ptr_bytes;
  st.as_user = s.as_user;
  st.uid = s.uid;
  st.gid = s.gid;
  st.oom_commands_first = s.oom_commands_first;
  if (st.oom_commands_first) {
    // Where the host allows it (CAP_SYS_RESOURCE), the supervisor is exempt outright; a command
    // inherits that only until raise_oom_score, right after its execve.
    int fd = libc::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      (void)!libc::write(fd, "-1000", 5);
      libc::close(fd);
    }
  }
  if (s.lifetime_ms) st.lifetime_end_ms = now_ms() + s.lifetime_ms;

  // The client reaches the sandbox's files through this fd: /proc/<pid>/root of a non-dumpable
  // process is closed to a caller without CAP_SYS_PTRACE (any caller, in a user namespace).
  int root_fd = libc::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) setup_failed(ctl, stage::pivot_root);
  send_reply_fd(ctl, reply{event::ready, libc::getpid(), 0, stage::none}, root_fd);
  libc::close(root_fd);
  serve(st, sigfd);
}

} // namespace sv
#pragma GCC visibility pop
} // namespace sandbox::local::detail
