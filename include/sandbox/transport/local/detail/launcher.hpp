// SPDX-License-Identifier: MIT
// The launcher: one small process per client process that clones every supervisor.
//
// A supervisor cloned from the client itself costs the client in proportion to its memory: the
// clone copies its page tables and write-protects every page it has written, and each page the
// client writes afterwards faults and is copied (for every sandbox it starts, again). Measured
// here: a client with 8 MiB resident waited 2.0-2.1 ms for a child's first word, 1.1 ms through
// a launcher, and rewrote 1024 pages in 16-18 ms after each clone instead of 0.013 ms; with
// 256 MiB, 8.4-10.8 ms against 0.9-1.0 ms.
//
// The launcher is cloned from the client when the first sandbox is made, so it is a copy of the
// client as it was then, and it never writes to that copy again: the client's pages are
// write-protected once in its life, not once per sandbox. It clones each supervisor with
// CLONE_PARENT, so that the supervisor is the client's child (its pidfd waits, its reaping, its
// exit signal 0) exactly as if the client had cloned it.
//
// Like the supervisor it runs in a copy of a possibly multi-threaded client: plain system calls
// through libc.hpp, no allocation, no locks.
#pragma once

#include <sandbox/detail/unique_fd.hpp>
#include <sandbox/transport/local/detail/libc.hpp>
#include <sandbox/transport/local/detail/supervisor.hpp>

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace sandbox::local::detail {

/// A supervisor_setup flattened into one buffer: the struct, its file specs, then their strings
/// and contents. Pointers become offsets from the buffer's start plus one (0 stays null).
[[nodiscard]] inline std::string pack_setup(const supervisor_setup& s) {
  std::string buf(sizeof(supervisor_setup) + s.nfiles * sizeof(mounted_file_spec), '\0');
  auto put = [&buf](const char* p, std::size_t n) {
    if (!p) return static_cast<const char*>(nullptr);
    const std::size_t at = buf.size();
    buf.append(p, n);
    buf.push_back('\0');
    return reinterpret_cast<const char*>(at + 1);
  };
  auto str = [&put](const char*& p) { p = put(p, p ? std::strlen(p) : 0); };
  supervisor_setup c = s;
  for (const char** f : {&c.hostname, &c.staging, &c.staging_opts, &c.tmp, &c.root,
                         &c.overlay_opts, &c.upper, &c.work, &c.workdir, &c.lower})
    str(*f);
  for (std::size_t i = 0; i < s.nfiles; ++i) {
    mounted_file_spec f = s.files[i];
    f.path = put(f.path, f.path ? std::strlen(f.path) : 0);
    f.data = put(f.data, f.size);
    std::memcpy(buf.data() + sizeof c + i * sizeof f, &f, sizeof f);
  }
  c.files = s.nfiles ? reinterpret_cast<const mounted_file_spec*>(sizeof c + 1) : nullptr;
  std::memcpy(buf.data(), &c, sizeof c);
  return buf;
}

// Hidden, as the supervisor's code (see libc.hpp).
#pragma GCC visibility push(hidden)
namespace sv {

/// The launcher's half of pack_setup, in place: false if an offset points outside `size`.
[[nodiscard]] inline bool unpack_setup(char* base, std::size_t size) noexcept {
  if (size < sizeof(supervisor_setup)) return false;
  auto* s = reinterpret_cast<supervisor_setup*>(base);
  bool ok = true;
  auto fix = [&](auto& p) {
    const auto off = reinterpret_cast<std::uintptr_t>(p);
    ok = ok && off <= size;
    p = off && ok ? reinterpret_cast<std::remove_reference_t<decltype(p)>>(base + off - 1)
                  : nullptr;
  };
  for (const char** f : {&s->hostname, &s->staging, &s->staging_opts, &s->tmp, &s->root,
                         &s->overlay_opts, &s->upper, &s->work, &s->workdir, &s->lower})
    fix(*f);
  fix(s->files);
  if (!ok || s->nfiles > (size - sizeof *s) / sizeof(mounted_file_spec)) return false;
  auto* files = const_cast<mounted_file_spec*>(s->files);
  for (std::size_t i = 0; i < s->nfiles && ok; ++i) {
    fix(files[i].path);
    const auto data = reinterpret_cast<std::uintptr_t>(files[i].data);
    ok = ok && (data == 0 || files[i].size <= size - data);
    fix(files[i].data);
  }
  return ok;
}

/// A request to the launcher; its fds: the packed setup (a memfd), the control socket, and the
/// hidden layer if `setup.hidden_layer_fd` was set.
struct launch_request {
  int flags;
  /// The CPUs of the thread asking, which a supervisor cloned by that thread would have had
  /// (`has_cpus`: they could be read): the launcher takes them on before the clone.
  bool has_cpus;
  cpu_set_t cpus;
};
/// The answer: the supervisor's pid, or -1 and `err`; its pidfd comes with it.
struct launch_reply {
  pid_t pid;
  int err;
};

inline constexpr int launcher_sock = 3; // the launcher's socket to the client
inline constexpr std::size_t launcher_stack_size = 256 * 1024; // as a supervisor's: sanitizers

/// Clones one supervisor for `rq`, with `fds` received. Returns the reply.
inline launch_reply launch_one(const launch_request& rq, const int* fds, int nfds,
                               int& pidfd) noexcept {
  struct stat st {};
  if (nfds < 2 || libc::fstat(fds[0], &st) != 0 || st.st_size <= 0) return {-1, EINVAL};
  const auto size = static_cast<std::size_t>(st.st_size);
  void* mem = libc::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fds[0], 0);
  if (mem == MAP_FAILED) return {-1, errno};
  auto* base = static_cast<char*>(mem);
  launch_reply r{-1, EINVAL};
  if (unpack_setup(base, size)) {
    auto* setup = reinterpret_cast<supervisor_setup*>(base);
    const bool wants_layer = setup->hidden_layer_fd >= 0;
    if (wants_layer == (nfds == 3)) {
      setup->ctl_fd = fds[1];
      setup->hidden_layer_fd = wants_layer ? fds[2] : -1;
      void* stack = libc::mmap(nullptr, supervisor_stack_size, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
      if (stack == MAP_FAILED) {
        r = {-1, errno};
      } else {
        // Refused (none of them in this process's cpuset any more): the launcher's CPUs.
        if (rq.has_cpus) (void)libc::sched_setaffinity(0, sizeof rq.cpus, &rq.cpus);
        // CLONE_PARENT: the client's child, with this process's exit signal (none).
        const int flags = rq.flags & ~(CLONE_PARENT | CLONE_PIDFD | CSIGNAL);
        pid_t pid = libc::clone(supervisor_main, static_cast<char*>(stack) + supervisor_stack_size,
                                flags | CLONE_PARENT | CLONE_PIDFD, setup, &pidfd);
        r = {pid, pid < 0 ? errno : 0};
        libc::munmap(stack, supervisor_stack_size);
      }
    }
  }
  libc::munmap(mem, size);
  return r;
}

/// Entry point of the launcher (cloned from the client): serves requests until the client's
/// end of its socket closes.
inline int launcher_main(void* arg) noexcept {
  const int sock = static_cast<int>(reinterpret_cast<std::intptr_t>(arg));
  // Nothing of the client but the socket: a pipe or socket of the client held open here would
  // never show its peer an end. 0-2 are /dev/null, as in the supervisor.
  if (sock != launcher_sock && libc::dup2(sock, launcher_sock) < 0) libc::_exit(1);
  libc::syscall(SYS_close_range, static_cast<unsigned>(launcher_sock + 1), ~0u, 0u);
  int devnull = libc::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) libc::_exit(1);
  for (int i = 0; i < 3; ++i)
    if (devnull != i) libc::dup2(devnull, i);
  if (devnull > 2) libc::close(devnull);
  libc::fcntl(launcher_sock, F_SETFD, FD_CLOEXEC);
  // No handler of the client runs here, and a terminal's ^C does not end it: it ends with its
  // socket. Supervisors set their own mask and dispositions.
  sigset_t all;
  libc::sigfillset(&all);
  libc::sigprocmask(SIG_SETMASK, &all, nullptr);
  sys_prctl(PR_SET_NAME, reinterpret_cast<unsigned long>("sandbox-launch"));
  for (;;) {
    launch_request rq{};
    iovec iov{&rq, sizeof rq};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(3 * sizeof(int))];
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    ssize_t n = libc::recvmsg(launcher_sock, &m, MSG_CMSG_CLOEXEC);
    if (n == 0 || (n < 0 && errno != EINTR)) libc::_exit(0);
    if (n < 0) continue;
    int fds[3] = {-1, -1, -1};
    int nfds = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        const int k = static_cast<int>((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < k; ++i) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
          if (nfds < 3) fds[nfds++] = fd;
          else libc::close(fd);
        }
      }
    int pidfd = -1;
    launch_reply r = n == sizeof rq && !(m.msg_flags & MSG_CTRUNC)
                         ? launch_one(rq, fds, nfds, pidfd)
                         : launch_reply{-1, EINVAL};
    for (int i = 0; i < nfds; ++i) libc::close(fds[i]);
    iovec out{&r, sizeof r};
    alignas(cmsghdr) char obuf[CMSG_SPACE(sizeof(int))];
    msghdr a{};
    a.msg_iov = &out;
    a.msg_iovlen = 1;
    if (pidfd >= 0) {
      a.msg_control = obuf;
      a.msg_controllen = sizeof obuf;
      cmsghdr* c = CMSG_FIRSTHDR(&a);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &pidfd, sizeof pidfd);
    }
    // A client gone mid-request: its supervisor sees its control socket close and exits.
    if (libc::sendmsg(launcher_sock, &a, MSG_NOSIGNAL) < 0) libc::_exit(0);
    if (pidfd >= 0) libc::close(pidfd);
  }
}

} // namespace sv
#pragma GCC visibility pop

/// The client's side: the launcher of this process, made at its first use (again after a
/// fork, or if it died), and the requests to it, one at a time.
class launcher {
  using unique_fd = sandbox::detail::unique_fd;

public:
  [[nodiscard]] static launcher& instance() noexcept {
    static launcher* const l = new launcher; // never destroyed: usable from static destructors
    return *l;
  }

  /// Clones a supervisor for `setup` with `flags` (namespaces), its control socket `ctl`. Returns
  /// its pid and sets `pidfd`, or -1 with errno set as clone(2) would.
  [[nodiscard]] pid_t clone_supervisor(const supervisor_setup& setup, int flags, int ctl,
                                       int& pidfd) noexcept {
    const std::string packed = pack_setup(setup);
    sandbox::detail::unique_fd memfd(::memfd_create("sandbox-setup", MFD_CLOEXEC));
    if (!memfd || !write_all(memfd.get(), packed)) return -1;
    std::lock_guard lk(m_);
    // A launcher that died (killed from outside) is made again, once per request.
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!ready_locked()) return -1;
      int fds[3] = {memfd.get(), ctl, setup.hidden_layer_fd};
      const int nfds = setup.hidden_layer_fd >= 0 ? 3 : 2;
      sv::launch_request rq{};
      rq.flags = flags;
      rq.has_cpus = ::sched_getaffinity(0, sizeof rq.cpus, &rq.cpus) == 0;
      sv::launch_reply r{};
      int got = -1;
      if (send_request(rq, fds, nfds) && receive_reply(r, got)) {
        if (r.pid < 0) {
          if (got >= 0) ::close(got);
          errno = r.err;
          return -1;
        }
        pidfd = got;
        return r.pid;
      }
      if (got >= 0) ::close(got);
      drop_locked();
    }
    errno = EAGAIN;
    return -1;
  }

private:
  launcher() = default;

  static bool write_all(int fd, const std::string& s) noexcept {
    std::size_t done = 0;
    while (done < s.size()) {
      ssize_t n = ::write(fd, s.data() + done, s.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }

  /// A launcher of this process, with its current user and group, runs (made here if needed):
  /// supervisors get the launcher's credentials, and a caller that dropped root since must
  /// get sandboxes in a user namespace of its own, as if it had cloned them itself.
  bool ready_locked() noexcept {
    if (sock_ && owner_ == ::getpid() && uid_ == ::geteuid() && gid_ == ::getegid()) return true;
    if (owner_ != ::getpid()) { // a fork's copies: the parent's launcher, closed here only
      sock_.reset();
      pidfd_.reset();
    }
    drop_locked();
    int sp[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) return false;
    unique_fd mine(sp[0]), theirs(sp[1]);
    void* stack = ::mmap(nullptr, sv::launcher_stack_size, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return false;
    int pidfd = -1;
    // Exit signal 0, as the supervisors it clones inherit it: no SIGCHLD, and a caller's
    // waitpid(-1) reaps neither.
    pid_t pid = ::clone(sv::launcher_main, static_cast<char*>(stack) + sv::launcher_stack_size,
                        CLONE_PIDFD, reinterpret_cast<void*>(static_cast<std::intptr_t>(theirs.get())),
                        &pidfd);
    int err = errno;
    ::munmap(stack, sv::launcher_stack_size);
    if (pid < 0) {
      errno = err;
      return false;
    }
    sock_ = std::move(mine);
    pidfd_.reset(pidfd);
    owner_ = ::getpid();
    uid_ = ::geteuid();
    gid_ = ::getegid();
    return true;
  }

  /// Ends this process's launcher, if any, and reaps it.
  void drop_locked() noexcept {
    sock_.reset(); // it exits when its socket closes
    if (pidfd_) {
      ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
      siginfo_t si{};
      (void)::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &si,
                     WEXITED | __WALL);
      pidfd_.reset();
    }
  }

  bool send_request(const sv::launch_request& rq, const int* fds, int nfds) noexcept {
    iovec iov{const_cast<sv::launch_request*>(&rq), sizeof rq};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(3 * sizeof(int))] = {};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = CMSG_SPACE(static_cast<std::size_t>(nfds) * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(static_cast<std::size_t>(nfds) * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds, static_cast<std::size_t>(nfds) * sizeof(int));
    ssize_t n;
    do n = ::sendmsg(sock_.get(), &m, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == sizeof rq;
  }

  bool receive_reply(sv::launch_reply& r, int& pidfd) noexcept {
    iovec iov{&r, sizeof r};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    ssize_t n;
    do n = ::recvmsg(sock_.get(), &m, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (cmsghdr* c = n > 0 ? CMSG_FIRSTHDR(&m) : nullptr;
        c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
      std::memcpy(&pidfd, CMSG_DATA(c), sizeof pidfd);
    return n == sizeof r && (r.pid < 0 || pidfd >= 0);
  }

  std::mutex m_;
  pid_t owner_ = 0;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  unique_fd sock_, pidfd_;
};

} // namespace sandbox::local::detail
