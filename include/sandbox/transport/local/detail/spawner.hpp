// SPDX-License-Identifier: MIT
// The spawner: a small process copied from this one once, from which every sandbox's supervisor
// is cloned. Cloned straight from the client, a supervisor copies the client's page tables
// (creating and stopping a sandbox then cost time in proportion to the client's resident memory:
// 12 ms each at 200 MiB) and keeps a copy-on-write snapshot of all of that memory for the
// sandbox's life (every page the client writes afterwards is duplicated). The spawner is copied
// while the client is small (when the first local_transport is made), so a supervisor costs the
// same whatever the client's size; CLONE_PARENT makes it the client's child all the same, which
// the client reaps as before.
//
// The client's identity (ids, groups, capabilities, limits, namespaces, cgroups, affinity, nice)
// is recorded when the spawner starts; a client whose identity has changed since gets a new one,
// so that a sandbox always starts as the client is now. A forked copy of the client starts its
// own. Like the supervisor, the spawner runs in a copy of a possibly multi-threaded process:
// async-signal-safe calls only.
#pragma once

#include <sandbox/detail/unique_fd.hpp>
#include <sandbox/transport/local/detail/supervisor.hpp>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace sandbox::local::detail {

using sandbox::detail::unique_fd;

namespace spawn {

/// Every pointer to a string in a setup, for packing and rebasing it (a pointer member added to
/// supervisor_setup is listed here, or mounted_file_spec's handled below).
template <class F>
void for_each_text(supervisor_setup& s, F&& f) {
  for (const char** p : {&s.hostname, &s.staging, &s.staging_opts, &s.tmp, &s.root,
                         &s.overlay_opts, &s.upper, &s.work, &s.workdir, &s.lower})
    f(*p);
}

/// `s` with its strings and files copied after it, each pointer made the offset of its copy.
[[nodiscard]] inline std::string pack(const supervisor_setup& s) {
  std::string out(sizeof(supervisor_setup), '\0');
  auto put = [&](const void* p, std::size_t n) {
    out.resize((out.size() + 7) & ~std::size_t{7}); // aligned for the file table
    std::size_t at = out.size();
    out.append(static_cast<const char*>(p), n);
    return reinterpret_cast<const char*>(at);
  };
  supervisor_setup c = s;
  for_each_text(c, [&](const char*& p) {
    if (p) p = put(p, std::strlen(p) + 1);
  });
  std::vector<mounted_file_spec> files(s.files, s.files + s.nfiles);
  for (auto& f : files) {
    f.path = put(f.path, std::strlen(f.path) + 1);
    if (f.data) f.data = put(f.data, f.size);
  }
  c.files = files.empty() ? nullptr
                          : reinterpret_cast<const mounted_file_spec*>(
                                put(files.data(), files.size() * sizeof(mounted_file_spec)));
  std::memcpy(out.data(), &c, sizeof c);
  return out;
}

/// Makes the offsets of a packed setup of `size` bytes at `base` pointers again; false if one
/// lies outside it (or a string has no end there).
[[nodiscard]] inline bool rebase(char* base, std::size_t size) noexcept {
  if (size < sizeof(supervisor_setup)) return false;
  auto& s = *reinterpret_cast<supervisor_setup*>(base); // page-aligned: mapped
  bool ok = true;
  auto text = [&](const char*& p) {
    if (!p) return;
    auto at = reinterpret_cast<std::uintptr_t>(p);
    if (at >= size || !std::memchr(base + at, '\0', size - at)) ok = false;
    p = ok ? base + at : nullptr;
  };
  auto bytes = [&](const char*& p, std::size_t n) {
    if (!p) return;
    auto at = reinterpret_cast<std::uintptr_t>(p);
    if (at > size || n > size - at) ok = false;
    p = ok ? base + at : nullptr;
  };
  for_each_text(s, text);
  if (s.files) {
    const char* table = reinterpret_cast<const char*>(s.files);
    bool fits = s.nfiles <= size / sizeof(mounted_file_spec) &&
                reinterpret_cast<std::uintptr_t>(table) % alignof(mounted_file_spec) == 0;
    if (!fits) return false;
    bytes(table, s.nfiles * sizeof(mounted_file_spec));
    if (!ok) return false;
    s.files = reinterpret_cast<const mounted_file_spec*>(table);
    for (std::size_t i = 0; i < s.nfiles; ++i) {
      auto& f = const_cast<mounted_file_spec&>(s.files[i]);
      text(f.path);
      bytes(f.data, f.size);
    }
  } else if (s.nfiles) {
    return false;
  }
  return ok;
}

/// A request: the clone flags; the fds attached are the packed setup (a memfd of `size` bytes),
/// the control socket, and the hidden layer when `nfds` is 3.
struct request {
  std::uint32_t clone_flags;
  std::uint32_t nfds;
  std::uint64_t size;
};
/// The answer: the supervisor's pid (its pidfd attached), or -1 and clone's errno.
struct reply {
  std::int32_t pid;
  std::int32_t err;
};

/// What a request may ask clone for.
inline constexpr std::uint32_t namespace_flags =
    CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWUSER;
inline constexpr int sock_fd = 3; // the spawner's end of its socket
inline constexpr std::size_t stack_size = 256 * 1024;

/// Receives one request into `rq` and `fds` (set to -1 where none came); 0 at the client's end.
[[nodiscard]] inline ssize_t receive(request& rq, int (&fds)[3]) noexcept {
  iovec iov{&rq, sizeof rq};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 3)] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  ssize_t n;
  do
    n = ::recvmsg(sock_fd, &mh, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  fds[0] = fds[1] = fds[2] = -1;
  if (n <= 0) return n;
  for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
      std::size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      std::memcpy(fds, CMSG_DATA(cm), (k < 3 ? k : 3) * sizeof(int));
    }
  return n;
}

/// Clones the supervisor a request describes; returns its pid (and `pidfd`) or -errno.
[[nodiscard]] inline int clone_one(const request& rq, const int (&fds)[3], int& pidfd) noexcept {
  int nfds = (fds[0] >= 0) + (fds[1] >= 0) + (fds[2] >= 0);
  if ((rq.clone_flags & ~namespace_flags) != 0 || rq.nfds < 2 || rq.nfds > 3 ||
      nfds != static_cast<int>(rq.nfds) || rq.size < sizeof(supervisor_setup) ||
      rq.size > (std::uint64_t{1} << 40))
    return -EINVAL;
  auto size = static_cast<std::size_t>(rq.size);
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fds[0], 0);
  if (base == MAP_FAILED) return -errno;
  int result = -EINVAL;
  if (rebase(static_cast<char*>(base), size)) {
    auto& s = *static_cast<supervisor_setup*>(base);
    s.ctl_fd = fds[1];
    s.hidden_layer_fd = rq.nfds == 3 ? fds[2] : -1;
    void* stack = ::mmap(nullptr, stack_size, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
      result = -errno;
    } else {
      // The supervisor gets its own copy of the setup and the stack; exit signal 0 as before.
      int pid = ::clone(sv::supervisor_main, static_cast<char*>(stack) + stack_size,
                        static_cast<int>(rq.clone_flags) | CLONE_PARENT | CLONE_PIDFD, &s, &pidfd);
      result = pid < 0 ? -errno : pid;
      ::munmap(stack, stack_size);
    }
  }
  ::munmap(base, size);
  return result;
}

/// Entry point of the spawner: serves requests until the client's end of the socket closes.
inline int spawner_main(void* arg) noexcept {
  int sock = static_cast<int>(reinterpret_cast<std::intptr_t>(arg));
  // Nothing of the client but the socket: a descriptor the client closes must not stay open
  // here (a pipe's reader would never see its end).
  if (sock != sock_fd && ::dup2(sock, sock_fd) < 0) _exit(1);
  ::syscall(SYS_close_range, static_cast<unsigned>(sock_fd + 1), ~0u, 0u);
  int devnull = ::open("/dev/null", O_RDWR);
  for (int i = 0; i < 3 && devnull >= 0; ++i)
    if (devnull != i) ::dup2(devnull, i);
  if (devnull > 2) ::close(devnull);
  // The client's handlers are not this process's: a terminal's signals leave it alone (it ends
  // with the client's end of the socket), the rest act by default.
  for (int sig = 1; sig < NSIG; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
  for (int sig : {SIGINT, SIGQUIT, SIGHUP, SIGTSTP, SIGTTIN, SIGTTOU, SIGPIPE})
    ::signal(sig, SIG_IGN);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::prctl(PR_SET_NAME, "sandbox-spawn", 0, 0, 0);
  for (;;) {
    request rq{};
    int fds[3];
    ssize_t n = receive(rq, fds);
    if (n == 0) _exit(0);
    if (n < 0) _exit(1);
    int pidfd = -1;
    int got = n == sizeof rq ? clone_one(rq, fds, pidfd) : -EINVAL;
    for (int fd : fds)
      if (fd >= 0) ::close(fd);
    reply r{got < 0 ? -1 : got, got < 0 ? -got : 0};
    iovec iov{&r, sizeof r};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))] = {};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (pidfd >= 0) {
      mh.msg_control = cbuf;
      mh.msg_controllen = sizeof cbuf;
      cmsghdr* cm = CMSG_FIRSTHDR(&mh);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(cm), &pidfd, sizeof pidfd);
    }
    while (::sendmsg(sock_fd, &mh, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
    if (pidfd >= 0) ::close(pidfd);
  }
}

/// What a process's sandboxes inherit from it, compared before each spawn.
struct identity {
  pid_t pid = 0;
  std::array<std::uint32_t, 6> ids{}; // real, effective, saved uid; then gid
  std::vector<gid_t> groups;
  std::array<std::uint32_t, 6> caps{};                  // effective, permitted, inheritable × 2
  std::array<std::uint64_t, 2 * RLIM_NLIMITS> limits{}; // soft, hard
  std::array<std::uint64_t, 14> namespaces{};           // device and inode of each
  std::array<unsigned long, sizeof(cpu_set_t) / sizeof(unsigned long)> affinity{};
  int no_new_privs = 0, dumpable = 0, nice = 0;
  std::string cgroups; ///< /proc/self/cgroup

  bool operator==(const identity&) const = default;

  [[nodiscard]] static identity current() {
    identity i;
    i.pid = ::getpid();
    uid_t u[3] = {};
    gid_t g[3] = {};
    (void)::getresuid(&u[0], &u[1], &u[2]);
    (void)::getresgid(&g[0], &g[1], &g[2]);
    i.ids = {u[0], u[1], u[2], g[0], g[1], g[2]};
    int n = ::getgroups(0, nullptr);
    if (n > 0) {
      i.groups.resize(static_cast<std::size_t>(n));
      n = ::getgroups(n, i.groups.data());
      i.groups.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    }
    __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2] = {};
    if (::syscall(SYS_capget, &h, d) == 0)
      i.caps = {d[0].effective, d[0].permitted, d[0].inheritable,
                d[1].effective, d[1].permitted, d[1].inheritable};
    for (int r = 0; r < RLIM_NLIMITS; ++r) {
      rlimit l{};
      if (::prlimit(0, static_cast<__rlimit_resource>(r), nullptr, &l) == 0)
        i.limits[2 * static_cast<std::size_t>(r)] = l.rlim_cur,
                              i.limits[2 * static_cast<std::size_t>(r) + 1] = l.rlim_max;
    }
    std::size_t k = 0;
    for (const char* ns : {"/proc/self/ns/mnt", "/proc/self/ns/user", "/proc/self/ns/net",
                           "/proc/self/ns/pid_for_children", "/proc/self/ns/uts",
                           "/proc/self/ns/ipc", "/proc/self/ns/cgroup"}) {
      struct stat st {};
      if (::stat(ns, &st) == 0) i.namespaces[k] = st.st_dev, i.namespaces[k + 1] = st.st_ino;
      k += 2;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) == 0)
      std::memcpy(i.affinity.data(), &set, sizeof set);
    i.no_new_privs = ::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
    i.dumpable = ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    errno = 0;
    i.nice = ::getpriority(PRIO_PROCESS, 0);
    if (int fd = ::open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC); fd >= 0) {
      char buf[4096];
      for (ssize_t got; (got = ::read(fd, buf, sizeof buf)) > 0 && i.cgroups.size() < 65536;)
        i.cgroups.append(buf, static_cast<std::size_t>(got));
      ::close(fd);
    }
    return i;
  }
};

} // namespace spawn

/// The process-wide spawner, as the client sees it. Thread-safe.
class spawner {
public:
  /// What spawn made: the supervisor's pid and pidfd, or clone's errno; `unavailable` when no
  /// spawner could be used (the caller then clones the supervisor itself).
  struct spawned {
    pid_t pid = -1;
    unique_fd pidfd;
    int err = 0;
    bool unavailable = false;
  };

  [[nodiscard]] static spawner& instance() noexcept {
    // Never destroyed: threads may still create sandboxes while the process exits.
    static spawner* s = new spawner;
    return *s;
  }

  /// Starts the spawner now, unless one serves this process as it is.
  void start() noexcept {
    std::lock_guard lk(m_);
    (void)ready_locked();
  }

  /// Clones a supervisor with `setup` (its ctl_fd and hidden_layer_fd are sent along) and the
  /// namespace `flags`, as the client's child.
  [[nodiscard]] spawned spawn(const supervisor_setup& setup, int flags) noexcept {
    std::lock_guard lk(m_);
    // A spawner that died (killed from outside) is replaced once.
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!ready_locked()) break;
      spawned out;
      if (request_locked(setup, flags, out)) return out;
      stop_locked();
    }
    spawned none;
    none.unavailable = true;
    return none;
  }

  spawner(const spawner&) = delete;
  spawner& operator=(const spawner&) = delete;

private:
  spawner() = default; // it ends with the last copy of the client's end of its socket

  /// True when a spawner copied from this process as it is now runs (starting one if needed).
  [[nodiscard]] bool ready_locked() noexcept {
    auto now = spawn::identity::current();
    if (sock_ && now == identity_) return true;
    stop_locked();
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return false;
    unique_fd mine(sv[0]), theirs(sv[1]);
    void* stack = ::mmap(nullptr, spawn::stack_size, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return false;
    int pidfd = -1;
    // Exit signal 0: no SIGCHLD, and a caller's waitpid(-1) cannot reap it.
    pid_t pid = ::clone(spawn::spawner_main, static_cast<char*>(stack) + spawn::stack_size,
                        CLONE_PIDFD, reinterpret_cast<void*>(static_cast<std::intptr_t>(theirs.get())),
                        &pidfd);
    ::munmap(stack, spawn::stack_size);
    if (pid < 0) return false;
    sock_ = std::move(mine);
    pidfd_.reset(pidfd);
    identity_ = std::move(now);
    return true;
  }

  /// Ends this process's spawner (one inherited from the process this one was forked from is
  /// only let go: it is not ours to end).
  void stop_locked() noexcept {
    bool ours = sock_ && identity_.pid == ::getpid();
    sock_.reset(); // it exits at the end of its socket
    if (ours && pidfd_) {
      siginfo_t si{};
      while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &si,
                      WEXITED | __WALL) != 0 &&
             errno == EINTR) {
      }
    }
    pidfd_.reset();
    identity_ = {};
  }

  /// One request and its answer; false if the spawner could not be reached.
  [[nodiscard]] bool request_locked(const supervisor_setup& setup, int flags,
                                    spawned& out) noexcept {
    std::string packed = spawn::pack(setup);
    unique_fd mem(::memfd_create("sandbox-setup", MFD_CLOEXEC));
    if (!mem) return false;
    for (std::size_t done = 0; done < packed.size();) {
      ssize_t n = ::write(mem.get(), packed.data() + done, packed.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    spawn::request rq{static_cast<std::uint32_t>(flags), setup.hidden_layer_fd >= 0 ? 3u : 2u,
                      packed.size()};
    int fds[3] = {mem.get(), setup.ctl_fd, setup.hidden_layer_fd};
    iovec iov{&rq, sizeof rq};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 3)] = {};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * rq.nfds);
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * rq.nfds);
    std::memcpy(CMSG_DATA(cm), fds, sizeof(int) * rq.nfds);
    ssize_t n;
    while ((n = ::sendmsg(sock_.get(), &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
    }
    if (n != static_cast<ssize_t>(sizeof rq)) return false;

    spawn::reply r{};
    iovec riov{&r, sizeof r};
    alignas(cmsghdr) char rbuf[CMSG_SPACE(sizeof(int))] = {};
    msghdr rh{};
    rh.msg_iov = &riov;
    rh.msg_iovlen = 1;
    rh.msg_control = rbuf;
    rh.msg_controllen = sizeof rbuf;
    while ((n = ::recvmsg(sock_.get(), &rh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
    }
    if (n != static_cast<ssize_t>(sizeof r)) return false;
    for (cmsghdr* c = CMSG_FIRSTHDR(&rh); c; c = CMSG_NXTHDR(&rh, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        int got;
        std::memcpy(&got, CMSG_DATA(c), sizeof got);
        out.pidfd.reset(got);
      }
    out.pid = r.pid;
    out.err = r.err;
    if (r.pid > 0 && !out.pidfd) { // no descriptor to spare here: it cannot be followed
      siginfo_t si{};
      ::kill(r.pid, SIGKILL); // our child: its pid cannot have been reused
      while (::waitid(P_PID, static_cast<id_t>(r.pid), &si, WEXITED | __WALL) != 0 &&
             errno == EINTR) {
      }
      out.pid = -1;
      out.err = EMFILE;
    }
    return true;
  }

  std::mutex m_;
  unique_fd sock_, pidfd_;
  spawn::identity identity_;
};

} // namespace sandbox::local::detail
