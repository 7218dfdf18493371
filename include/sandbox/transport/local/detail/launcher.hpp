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
// After a start it also clones the next supervisor ahead, a spare (spare_main), which the next
// request with the same namespaces is handed to: see spare_supervisor.
//
// Like the supervisor it runs in a copy of a possibly multi-threaded client: plain system calls
// through libc.hpp, no allocation, no locks.
#pragma once

#include <sandbox/detail/fork_safe.hpp>
#include <sandbox/detail/unique_fd.hpp>
#include <sandbox/transport/local/detail/cgroups.hpp>
#include <sandbox/transport/local/detail/libc.hpp>
#include <sandbox/transport/local/detail/supervisor.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <pthread.h>
#include <sys/resource.h>

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace sandbox::local::detail {

/// A supervisor_setup flattened for the launcher: `head` holds the struct, its file specs and
/// their paths and strings; the files' contents follow it in order, written from where they are
/// (a large mounted file is not copied twice, nor held twice in memory). Pointers become offsets
/// from the start plus one (0 stays null).
struct packed_setup {
  std::string head;
  std::uint64_t size = 0; ///< head and contents
};

/// The string fields of supervisor_setup, which pack_setup and unpack_setup both walk.
inline constexpr const char* supervisor_setup::*setup_strings[] = {
    &supervisor_setup::hostname, &supervisor_setup::staging, &supervisor_setup::staging_opts,
    &supervisor_setup::tmp,      &supervisor_setup::root,    &supervisor_setup::overlay_opts,
    &supervisor_setup::upper,    &supervisor_setup::work,    &supervisor_setup::workdir,
    &supervisor_setup::lower};

[[nodiscard]] inline packed_setup pack_setup(const supervisor_setup& s) {
  packed_setup p;
  std::string& buf = p.head;
  buf.assign(sizeof(supervisor_setup) + s.nfiles * sizeof(mounted_file_spec), '\0');
  auto put = [&buf](const char* str) {
    if (!str) return static_cast<const char*>(nullptr);
    const std::size_t at = buf.size();
    buf.append(str).push_back('\0');
    return reinterpret_cast<const char*>(at + 1);
  };
  supervisor_setup c = s;
  for (auto field : setup_strings)
    c.*field = put(c.*field);
  std::vector<mounted_file_spec> files(s.files, s.files + s.nfiles);
  for (auto& f : files)
    f.path = put(f.path);
  std::uint64_t at = buf.size();
  for (auto& f : files) { // an empty one has no bytes to point at: null
    f.data = f.data && f.size ? reinterpret_cast<const char*>(at + 1) : nullptr;
    at += f.data ? f.size : 0;
  }
  if (!files.empty())
    std::memcpy(buf.data() + sizeof c, files.data(), files.size() * sizeof(mounted_file_spec));
  c.files = s.nfiles ? reinterpret_cast<const mounted_file_spec*>(sizeof c + 1) : nullptr;
  std::memcpy(buf.data(), &c, sizeof c);
  p.size = at;
  return p;
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
  // A string ends inside the buffer.
  auto fix_string = [&](const char*& p) {
    fix(p);
    ok = ok && (!p || std::memchr(p, 0, static_cast<std::size_t>(base + size - p)) != nullptr);
  };
  for (auto field : setup_strings)
    fix_string(s->*field);
  // The specs right after the struct, where pack_setup puts them.
  ok = ok &&
       reinterpret_cast<std::uintptr_t>(s->files) == (s->nfiles ? sizeof(supervisor_setup) + 1 : 0);
  fix(s->files);
  if (!ok || s->nfiles > (size - sizeof *s) / sizeof(mounted_file_spec)) return false;
  auto* files = const_cast<mounted_file_spec*>(s->files);
  for (std::size_t i = 0; i < s->nfiles && ok; ++i) {
    fix_string(files[i].path);
    const auto data = reinterpret_cast<std::uintptr_t>(files[i].data);
    ok = ok && (data == 0 || files[i].size <= size - (data - 1)); // ends at `size` at most
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
/// The answer: the supervisor's pid, or -1 and `err`; its pidfd comes with it. With `spare`,
/// not an answer but news, sent after one: a supervisor made ahead (spare_supervisor), its pidfd
/// attached, which the client reaps should it end unused.
struct launch_reply {
  pid_t pid;
  int err;
  bool spare = false;
};

inline constexpr int launcher_sock = 3; // the launcher's socket to the client
inline constexpr std::size_t launcher_stack_size = 256 * 1024; // as a supervisor's: sanitizers

/// What a spare supervisor starts from (spare_main's argument): its socket to the launcher and
/// the client's areas of memory it maps or scrubs first (supervisor_setup's, which are the same
/// in every request).
struct spare_start {
  int hand = -1;
  int flags = 0; ///< its clone's namespaces
  supervisor_setup areas{};
  bool known = false; ///< areas came with a first request
};

/// What the launcher hands a spare with a request's fds (the setup's memfd, the control socket,
/// the hidden layer if any): the CPUs of the thread asking.
struct handoff {
  bool has_cpus;
  cpu_set_t cpus;
};

/// Entry point of a spare: a supervisor cloned before its request, which takes every step that
/// does not depend on the sandbox (the clone and its namespaces, its first page faults, its
/// session and signals, the done_ahead steps) and then waits for a setup from the launcher.
/// These steps took 1.0-1.5 ms of a sandbox's start; made ahead they compete with the caller's
/// first command instead (on two CPUs): run() is 0.7-1.0 ms shorter, the first exec up to 0.3 ms
/// longer.
inline int spare_main(void* arg) noexcept {
  const auto& start = *static_cast<const spare_start*>(arg);
  leave_client(start.areas, reinterpret_cast<std::uintptr_t>(&arg));
  // Until its handoff, fd 3 is the socket to the launcher; no setup_failed before then.
  if (!place_fds(start.hand, -1) || detach("sandbox-spare") != stage::none)
    libc::_exit(exit_setup_failed);
  if (!(start.flags & CLONE_NEWNS) || (start.flags & CLONE_NEWUSER)) libc::_exit(exit_setup_failed);
  // Steps of the setup that are the same for every sandbox; one that fails here is taken again
  // (and reported) with the rest.
  done_ahead done;
  done.private_mounts = libc::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0;
  done.loopback = (start.flags & CLONE_NEWNET) && loopback_up();
  if (limit_bounding_set(command_capabilities)) done.bounded_to = command_capabilities;
  handoff h{};
  int fds[3] = {-1, -1, -1};
  int nfds = 0;
  // Signals are blocked: no EINTR. The launcher gone (discarded, or ended with its client) or
  // a garbled handoff: nothing to report to.
  if (receive_with_fds(ctl, h, fds, nfds) <= 0 || nfds < 2) libc::_exit(0);
  if (h.has_cpus) (void)libc::sched_setaffinity(0, sizeof h.cpus, &h.cpus);
  struct stat st {};
  void* mem = MAP_FAILED;
  if (libc::fstat(fds[0], &st) == 0 && st.st_size > 0)
    mem = libc::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE, fds[0], 0);
  libc::close(fds[0]);
  // The launcher checked this setup before handing it over; a failure here closes the control
  // socket, which the client reports.
  if (mem == MAP_FAILED ||
      !unpack_setup(static_cast<char*>(mem), static_cast<std::size_t>(st.st_size)))
    libc::_exit(exit_setup_failed);
  auto& s = *static_cast<supervisor_setup*>(mem);
  if (s.user_ns) libc::_exit(exit_setup_failed); // never handed one (it awaits its id maps)
  if ((s.hidden_layer_fd >= 0) != (nfds == 3) || !place_fds(fds[1], nfds == 3 ? fds[2] : -1))
    libc::_exit(exit_setup_failed);
  s.ctl_fd = ctl;
  s.hidden_layer_fd = nfds == 3 ? hidden_layer : -1;
  sys_prctl(PR_SET_NAME, reinterpret_cast<unsigned long>("sandbox-init"));
  run_sandbox(s, done);
}

/// Clones `fn(arg)` as a supervisor for a request with namespaces `flags`: on a fresh stack, with
/// CLONE_PARENT (the client's child, with this process's exit signal: none). Returns its pid and
/// sets `pidfd`, or -1 with errno set.
inline pid_t clone_for_client(int (*fn)(void*), void* arg, int flags, int& pidfd) noexcept {
  void* stack = libc::mmap(nullptr, supervisor_stack_size, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return -1;
  const pid_t pid = libc::clone(
      fn, static_cast<char*>(stack) + supervisor_stack_size,
      (flags & ~(CLONE_PARENT | CLONE_PIDFD | CSIGNAL)) | CLONE_PARENT | CLONE_PIDFD, arg, &pidfd);
  const int err = errno;
  libc::munmap(stack, supervisor_stack_size);
  errno = err;
  return pid;
}

/// The launcher's spare supervisor: after each reply it clones the next request's supervisor
/// (spare_main), to be handed that request if it asks for the same namespaces and the mounts it
/// copied are still the caller's. Not under a new user namespace, whose supervisor waits for
/// its id maps before anything else.
struct spare_supervisor {
  pid_t pid = -1;
  int pidfd = -1, hand = -1;
  int previous = -1; ///< the namespaces of the request before the last
  int mounts = -1;   ///< /proc/self/mounts, which polls POLLPRI after a mount or unmount
  spare_start start; ///< areas known once a first setup came

  /// Off where the mount table cannot be watched.
  void open() noexcept { mounts = libc::open("/proc/self/mounts", O_RDONLY | O_CLOEXEC); }

  /// True when a mount or unmount came since the last call (or it cannot be told): the spare's
  /// copy of the mount table, made after the last call, would lack it.
  [[nodiscard]] bool mounts_changed() noexcept {
    pollfd p{mounts, POLLPRI, 0};
    return libc::poll(&p, 1, 0) != 0;
  }

  /// Ends the spare, if any; the client reaps it (its child).
  void discard() noexcept {
    if (pid < 0) return;
    (void)libc::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
    libc::close(pidfd);
    libc::close(hand);
    pid = pidfd = hand = -1;
  }

  /// Hands the request to the spare if it fits; returns its pid and sets `out` to its pidfd, or
  /// -1 (the spare discarded: the caller clones one).
  [[nodiscard]] pid_t hand_over(const launch_request& rq, const int* fds, int nfds,
                                int& out) noexcept {
    if (pid < 0) return -1;
    if (start.flags != rq.flags || mounts_changed()) {
      discard();
      return -1;
    }
    const handoff h{rq.has_cpus, rq.cpus};
    if (!send_with_fds(hand, h, fds, nfds)) { // it died
      discard();
      return -1;
    }
    const pid_t handed = pid;
    out = pidfd;
    libc::close(hand);
    pid = pidfd = hand = -1;
    return handed;
  }

  /// Clones a spare for the next request like `rq`, and tells the client. False if the client
  /// is gone.
  [[nodiscard]] bool make(const launch_request& rq) noexcept {
    const int rq_flags = rq.flags;
    // Only for a caller whose last two requests asked for the same namespaces: one that
    // alternates (own network, host network) would only pay for spares it cannot use.
    const bool steady = previous == rq_flags;
    previous = rq_flags;
    if (!steady || pid >= 0 || mounts < 0 || !start.known || (rq_flags & CLONE_NEWUSER) ||
        !(rq_flags & CLONE_NEWNS))
      return true;
    // Off this CPU, where the reply just woke the caller and a handoff the sandbox handed over
    // (wakeups go to the waker's CPU): on the same CPU, that sandbox's start waited for this
    // clone, about 1 ms. The spare takes the caller's CPUs at its handoff.
    const int here = ::sched_getcpu();
    if (rq.has_cpus && here >= 0 && here < CPU_SETSIZE && CPU_COUNT(&rq.cpus) > 1) {
      cpu_set_t others = rq.cpus;
      CPU_CLR(here, &others);
      if (CPU_COUNT(&others) > 0) (void)libc::sched_setaffinity(0, sizeof others, &others);
    }
    (void)mounts_changed(); // what changed before now is in the copy the clone makes
    int sp[2];
    if (libc::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) return true;
    start.hand = sp[1];
    start.flags = rq_flags;
    int fd = -1;
    const pid_t made = clone_for_client(spare_main, &start, rq_flags, fd);
    libc::close(sp[1]);
    if (made < 0) {
      libc::close(sp[0]);
      return true;
    }
    pid = made;
    pidfd = fd;
    hand = sp[0];
    return send_with_fd(launcher_sock, launch_reply{made, 0, true}, fd, MSG_NOSIGNAL);
  }
};

/// Serves `rq`, with `fds` received: hands it to the spare, or clones a supervisor for it.
/// Returns the reply and sets `pidfd`.
inline launch_reply launch_one(const launch_request& rq, const int* fds, int nfds, int& pidfd,
                               spare_supervisor& spare) noexcept {
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
      spare.start.areas.args = setup->args;
      spare.start.areas.environment = setup->environment;
      spare.start.areas.libc_text = setup->libc_text;
      spare.start.known = true;
      if (pid_t handed = spare.hand_over(rq, fds, nfds, pidfd); handed >= 0) {
        r = {handed, 0};
      } else {
        setup->ctl_fd = fds[1];
        setup->hidden_layer_fd = wants_layer ? fds[2] : -1;
        // Refused (none of them in this process's cpuset any more): the launcher's CPUs.
        if (rq.has_cpus) (void)libc::sched_setaffinity(0, sizeof rq.cpus, &rq.cpus);
        const pid_t pid = clone_for_client(supervisor_main, setup, rq.flags, pidfd);
        r = {pid, pid < 0 ? errno : 0};
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
  // never show its peer an end. 0-2 are /dev/null, which supervisors keep.
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
  spare_supervisor spare;
  spare.open();
  for (;;) {
    if (spare.pid >= 0) {
      // While it waits, a spare holds a copy of the mounts it was cloned with: one the host
      // unmounts since stays busy (a disk that cannot be detached). It is ended then.
      pollfd p[2] = {{launcher_sock, POLLIN, 0}, {spare.mounts, POLLPRI, 0}};
      if (libc::poll(p, 2, -1) < 0) {
        if (errno != EINTR) spare.discard(); // unwatched, it would go on holding the mounts
        continue;
      }
      if (p[1].revents) {
        spare.discard();
        continue;
      }
    }
    launch_request rq{};
    int fds[3] = {-1, -1, -1};
    int nfds = 0;
    const ssize_t n = receive_with_fds(launcher_sock, rq, fds, nfds);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EMSGSIZE)) {
      spare.discard();
      libc::_exit(0);
    }
    if (n < 0 && errno == EINTR) continue;
    int pidfd = -1;
    const bool whole = n > 0;
    launch_reply r = whole ? launch_one(rq, fds, nfds, pidfd, spare) : launch_reply{-1, EINVAL};
    for (int i = 0; i < nfds; ++i)
      libc::close(fds[i]);
    // A client gone mid-request: its supervisor sees its control socket close and exits.
    if (!send_with_fd(launcher_sock, r, pidfd, MSG_NOSIGNAL)) {
      spare.discard();
      libc::_exit(0);
    }
    if (pidfd >= 0) libc::close(pidfd);
    if (r.pid >= 0 && !spare.make(rq)) {
      spare.discard();
      libc::_exit(0);
    }
  }
}

} // namespace sv
#pragma GCC visibility pop

/// Receives one message of `T`, and the descriptor attached to it if any. Without `block`,
/// EAGAIN when none is there.
template <class T>
[[nodiscard]] inline ssize_t receive_with_fd(int fd, T& r, sandbox::detail::unique_fd& attached,
                                             bool block) noexcept {
  iovec iov{&r, sizeof r};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  ssize_t n;
  do
    n = ::recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | (block ? 0 : MSG_DONTWAIT));
  while (n < 0 && errno == EINTR && block);
  if (n < 0) return n;
  for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    int got;
    std::memcpy(&got, CMSG_DATA(cm), sizeof got);
    attached.reset(got);
  }
  return n;
}

/// The client's side: the launcher of this process, made at its first use (again after a
/// fork, if it died, or if what the caller would give a supervisor changed: caller_state), and
/// the requests to it, one at a time.
class launcher {
  using unique_fd = sandbox::detail::unique_fd;

public:
  /// Never destroyed: usable from static destructors.
  [[nodiscard]] static launcher& instance() noexcept {
    return sandbox::detail::process_static(made_, [] { return new launcher; });
  }

  /// A forked child starts without the parent's launcher. A fork waits for m_, so no request
  /// is in flight.
  static void forget_in_child() noexcept {
    if (launcher* l = made_.load(std::memory_order_acquire)) l->forget_locked();
  }

  /// Clones a supervisor for `setup` with `flags` (namespaces), its control socket `ctl`. Returns
  /// its pid and sets `pidfd`, or -1 with errno set as clone(2) would.
  [[nodiscard]] pid_t clone_supervisor(const supervisor_setup& setup, int flags, int ctl,
                                       int& pidfd) noexcept {
    const packed_setup packed = pack_setup(setup);
    // A memfd's writes count against RLIMIT_FSIZE, and past it the kernel sends SIGXFSZ.
    rlimit fsize{};
    if (::getrlimit(RLIMIT_FSIZE, &fsize) == 0 && fsize.rlim_cur != RLIM_INFINITY &&
        packed.size > fsize.rlim_cur) {
      errno = EFBIG;
      return -1;
    }
    unique_fd memfd(make_memfd());
    if (!memfd || !write_all(memfd.get(), packed.head.data(), packed.head.size())) return -1;
    for (std::size_t i = 0; i < setup.nfiles; ++i)
      if (setup.files[i].data && setup.files[i].size &&
          !write_all(memfd.get(), setup.files[i].data, setup.files[i].size))
        return -1;
    sv::launch_request rq{};
    rq.flags = flags;
    rq.has_cpus = ::sched_getaffinity(0, sizeof rq.cpus, &rq.cpus) == 0;
    const std::string state = caller_state();
    int fds[3] = {memfd.get(), ctl, setup.hidden_layer_fd};
    const int nfds = setup.hidden_layer_fd >= 0 ? 3 : 2;
    std::lock_guard lk(m_);
    reap_stale_locked();
    // A launcher found dead when sending (killed from outside) is made again, once: the request
    // never reached it. One that dies after taking a request may have cloned a supervisor,
    // which exits when `ctl` closes: no retry then.
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!ready_locked(state)) return -1;
      if (!send_request(rq, fds, nfds)) {
        drop_locked();
        continue;
      }
      sv::launch_reply r{};
      int got = -1;
      if (!receive_reply(r, got)) {
        drop_locked();
        errno = EAGAIN;
        return -1;
      }
      if (r.pid < 0) {
        errno = r.err;
        return -1;
      }
      if (got < 0) { // its pidfd did not fit in this process's descriptors (EMFILE)
        got = static_cast<int>(::syscall(SYS_pidfd_open, r.pid, 0));
        if (got < 0) {
          const int err = errno;
          // This process's child, not reaped: the pid is still it. Where it cannot be killed,
          // it exits when `ctl` closes, and stays a zombie.
          siginfo_t si{};
          if (::kill(r.pid, SIGKILL) == 0)
            (void)::waitid(P_PID, static_cast<id_t>(r.pid), &si, WEXITED | __WALL);
          errno = err;
          return -1;
        }
      }
      pidfd = got;
      return r.pid;
    }
    errno = EAGAIN;
    return -1;
  }

private:
  launcher() = default;

  static int make_memfd() noexcept {
#ifndef MFD_NOEXEC_SEAL
    constexpr unsigned MFD_NOEXEC_SEAL = 0x0008U; // Linux 6.3; refused where vm.memfd_noexec=2
#endif
    int fd = ::memfd_create("sandbox-setup", MFD_CLOEXEC | MFD_NOEXEC_SEAL);
    if (fd < 0 && errno == EINVAL) fd = ::memfd_create("sandbox-setup", MFD_CLOEXEC); // older
    return fd;
  }

  static bool write_all(int fd, const char* data, std::size_t size) noexcept {
    std::size_t done = 0;
    while (done < size) {
      ssize_t n = ::write(fd, data + done, size - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }

  /// What a supervisor inherits from the thread that clones it and a launcher made under other
  /// conditions would not give it: user and groups, capabilities (the bounding and ambient sets
  /// too), securebits, no_new_privs and seccomp filters, namespaces, root directory, cgroups,
  /// resource limits, priority, I/O priority and scheduling policy. (About 0.1 ms here; the
  /// CPUs go with each request instead.) What cannot be read makes every state differ: a new
  /// launcher each time rather than one made under other conditions.
  [[nodiscard]] static std::string caller_state() {
    std::string state;
    static std::atomic<std::uint64_t> unknown{0};
    auto add = [&state](const auto& v) {
      state.append(reinterpret_cast<const char*>(&v), sizeof v);
    };
    auto cannot_tell = [&] { add(++unknown); };
    static constexpr const char* ns[] = {"/proc/thread-self/ns/mnt",
                                         "/proc/thread-self/ns/net",
                                         "/proc/thread-self/ns/user",
                                         "/proc/thread-self/ns/ipc",
                                         "/proc/thread-self/ns/uts",
                                         "/proc/thread-self/ns/cgroup",
                                         "/proc/thread-self/ns/pid_for_children",
                                         "/"};
    for (const char* path : ns) {
      struct stat st {};
      if (::stat(path, &st) == 0) {
        add(st.st_dev);
        add(st.st_ino);
      } else if (errno != ENOENT) { // a kernel without that namespace has none to change
        cannot_tell();
      }
    }
    const std::string cgroup = cgroups::read_text("/proc/self/cgroup"); // never empty when read
    if (cgroup.empty()) cannot_tell();
    state += cgroup;
    add(::prctl(PR_GET_SECUREBITS, 0, 0, 0, 0));
    add(::syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, 0));
    if (const std::string all = cgroups::read_text("/proc/thread-self/status"); all.empty()) {
      cannot_tell();
    } else {
      static constexpr std::string_view keep[] = {
          "Uid:",    "Gid:",    "Groups:", "NoNewPrivs:", "Seccomp:", "Seccomp_filters:",
          "CapInh:", "CapPrm:", "CapEff:", "CapBnd:",     "CapAmb:"};
      for (std::size_t at = 0; at < all.size();) {
        std::size_t end = all.find('\n', at);
        if (end == std::string::npos) end = all.size();
        const std::string_view line(all.data() + at, end - at);
        for (std::string_view k : keep)
          if (line.substr(0, k.size()) == k) state.append(line).push_back('\n');
        at = end + 1;
      }
    }
    for (int r = 0; r < RLIM_NLIMITS; ++r) {
      rlimit l{};
      if (::syscall(SYS_prlimit64, 0, r, nullptr, &l) == 0) add(l);
    }
    errno = 0;
    add(::getpriority(PRIO_PROCESS, 0)); // this thread's
    add(errno);
    sched_param param{};
    add(::sched_getscheduler(0));
    (void)::sched_getparam(0, &param);
    add(param.sched_priority);
    return state;
  }

  /// A launcher made under `state` (caller_state) runs for this process (made here if needed).
  bool ready_locked(const std::string& state) noexcept {
    if (owner_ != ::getpid()) forget_locked(); // a copy of another process's (a raw fork)
    if (sock_ && state == state_) return true;
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
    pid_t pid =
        ::clone(sv::launcher_main, static_cast<char*>(stack) + sv::launcher_stack_size, CLONE_PIDFD,
                reinterpret_cast<void*>(static_cast<std::intptr_t>(theirs.get())), &pidfd);
    int err = errno;
    ::munmap(stack, sv::launcher_stack_size);
    if (pid < 0) {
      errno = err;
      return false;
    }
    sock_ = std::move(mine);
    pidfd_.reset(pidfd);
    owner_ = ::getpid();
    state_ = state;
    return true;
  }

  /// Ends this process's launcher, if any, and its spares. The launcher is asked to end (its
  /// socket shut), which it does once done with what it is at: a spare it is making is then
  /// announced, not left to this process as a child it knows nothing of. One that does not end
  /// within a second (stopped) is killed. Either is reaped, or, where it cannot be killed (this
  /// process dropped root since), left to end with its socket and reaped later.
  void drop_locked() noexcept {
    if (pidfd_) {
      if (sock_) (void)::shutdown(sock_.get(), SHUT_WR);
      pollfd ended{pidfd_.get(), POLLIN, 0};
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      for (;;) { // a signal handler of the caller's may interrupt the wait
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                              until - std::chrono::steady_clock::now())
                              .count();
        if (left <= 0 || ::poll(&ended, 1, static_cast<int>(left)) == 1) break;
      }
      end_locked(pidfd_);
    }
    if (sock_) read_news_locked();
    sock_.reset();
    end_spares_locked();
  }

  /// Kills the process of `pidfd` (if it has not ended) and reaps it, or, where it cannot be
  /// killed (this process dropped root since), leaves it to stale_, reaped once ended.
  void end_locked(unique_fd& pidfd) noexcept {
    if (::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0) == 0 || errno == ESRCH) {
      siginfo_t si{};
      while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd.get()), &si,
                      WEXITED | __WALL) != 0 &&
             errno == EINTR) {
      }
      pidfd.reset();
    } else {
      stale_.push_back(std::move(pidfd));
    }
  }

  /// Ends and reaps the spares this process knows of: none is the launcher's spare any more
  /// (after a reply that handed one over or cloned a supervisor, the launcher has none; when it
  /// is dropped, none at all).
  void end_spares_locked() noexcept {
    for (auto& spare : spares_)
      end_locked(spare.second);
    spares_.clear();
  }

  /// Reaps the launchers and spares drop_locked could not kill, once they have ended.
  void reap_stale_locked() noexcept {
    for (std::size_t i = 0; i < stale_.size();) {
      siginfo_t si{};
      const int rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(stale_[i].get()),
                              &si, WEXITED | WNOHANG | __WALL);
      if (rc != 0 || si.si_pid != 0) {
        stale_[i] = std::move(stale_.back());
        stale_.pop_back();
      } else {
        ++i;
      }
    }
  }

  /// In a forked child: the parent's launcher is not this process's; its descriptors are
  /// closed here, the launcher itself left alone.
  void forget_locked() noexcept {
    sock_.reset();
    pidfd_.reset();
    stale_.clear();
    spares_.clear(); // the parent's children
    owner_ = 0;
    state_.clear();
  }

  bool send_request(const sv::launch_request& rq, const int* fds, int nfds) noexcept {
    return sv::send_with_fds(sock_.get(), rq, fds, nfds);
  }

  /// The reply; `pidfd` stays -1 if it did not fit (MSG_CTRUNC). News of spares on the way
  /// are taken note of (note_spare).
  bool receive_reply(sv::launch_reply& r, int& pidfd) noexcept {
    for (;;) {
      unique_fd attached;
      if (receive_with_fd(sock_.get(), r, attached, true) != sizeof r) return false;
      if (r.spare) {
        note_spare(r.pid, std::move(attached));
        continue;
      }
      if (r.pid < 0) return true;
      pidfd = attached.release();
      // Handed a spare: the sandbox's now, not one to reap. Any other was discarded (or died):
      // reaped now, not left a zombie until the next start.
      for (std::size_t i = 0; i < spares_.size(); ++i)
        if (spares_[i].first == r.pid) {
          spares_[i] = std::move(spares_.back());
          spares_.pop_back();
          break;
        }
      end_spares_locked();
      return true;
    }
  }

  /// A spare the launcher made: this process's child, reaped here if it ends unused.
  void note_spare(pid_t pid, unique_fd pidfd) noexcept {
    if (!pidfd) pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))); // EMFILE
    if (pidfd) spares_.emplace_back(pid, std::move(pidfd));
  }

  /// Takes note of the spares the launcher announced and this process has not read of yet.
  void read_news_locked() noexcept {
    sv::launch_reply r{};
    for (;;) {
      unique_fd attached;
      if (receive_with_fd(sock_.get(), r, attached, false) != sizeof r) return;
      if (r.spare) note_spare(r.pid, std::move(attached));
    }
  }

  inline static constinit std::atomic<launcher*> made_{nullptr};

  sandbox::detail::fork_safe_mutex m_;
  pid_t owner_ = 0;
  std::string state_; ///< caller_state() when the launcher was made
  unique_fd sock_, pidfd_;
  std::vector<unique_fd> stale_; ///< launchers and spares not killed, reaped once ended
  /// The launcher's spares not handed a sandbox yet (pid and pidfd), this process's children.
  std::vector<std::pair<pid_t, unique_fd>> spares_;
};

/// Registered as the program starts (see fork_safe.hpp).
inline const int launcher_forgotten_in_child =
    ::pthread_atfork(nullptr, nullptr, &launcher::forget_in_child);

} // namespace sandbox::local::detail
