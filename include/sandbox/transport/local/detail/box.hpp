// SPDX-License-Identifier: MIT
// The client's side of one local sandbox: creating it (clone into new namespaces), asking its
// supervisor to start or signal commands, following its lifecycle, and stopping it.
#pragma once

#include <sandbox/detail/fork_safe.hpp>
#include <sandbox/detail/text.hpp>
#include <sandbox/detail/unique_fd.hpp>
#include <sandbox/detail/validate.hpp>
#include <sandbox/image/options.hpp>
#include <sandbox/options.hpp>
#include <sandbox/result.hpp>
#include <sandbox/transport/local/detail/cgroups.hpp>
#include <sandbox/transport/local/detail/egress.hpp>
#include <sandbox/transport/local/detail/hidden_layer.hpp>
#include <sandbox/transport/local/detail/launcher.hpp>
#include <sandbox/transport/local/detail/log_ring.hpp>
#include <sandbox/transport/local/detail/protocol.hpp>
#include <sandbox/transport/local/detail/supervisor.hpp>
#include <sandbox/transport/local/detail/userns.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#ifdef __GLIBC__
#include <gnu/libc-version.h>
#endif
#include <link.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

namespace sandbox::local::detail {

using namespace sandbox::detail; // text, unique_fd, random: the library-wide helpers

/// The one CPU the process `pid` (0: the calling thread) may run on; -1 when it may run on
/// several (or they cannot be read).
[[nodiscard]] inline int sole_cpu_of(pid_t pid = 0) noexcept {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  if (::sched_getaffinity(pid, sizeof cpus, &cpus) != 0 || CPU_COUNT(&cpus) != 1) return -1;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &cpus)) return c;
  return -1;
}

/// Waits until `fd` is readable; false on timeout. A negative timeout waits forever.
[[nodiscard]] inline bool wait_readable(int fd, int timeout_ms) noexcept {
  pollfd p{fd, POLLIN, 0};
  for (;;) {
    int rc = ::poll(&p, 1, timeout_ms);
    if (rc >= 0) return rc > 0;
    if (errno != EINTR) return true; // let the caller's read report the error
  }
}

[[nodiscard]] inline int clamp_ms(std::chrono::milliseconds d) noexcept {
  if (d.count() <= 0) return 0;
  return d.count() > 0x7fffffff ? 0x7fffffff : static_cast<int>(d.count());
}

/// Sends one request with optional fds. Fails with not_running when the supervisor is gone.
[[nodiscard]] inline result<void> send_request(int ctl, const request& rq, std::string_view strings,
                                               std::span<const int> fds,
                                               std::string_view id) noexcept {
  iovec iov[2] = {{const_cast<request*>(&rq), sizeof rq},
                  {const_cast<char*>(strings.data()), strings.size()}};
  msghdr mh{};
  mh.msg_iov = iov;
  mh.msg_iovlen = strings.empty() ? 1 : 2;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 4)] = {};
  if (!fds.empty()) {
    mh.msg_control = cbuf;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    if (::sendmsg(ctl, &mh, MSG_NOSIGNAL) >= 0) return success();
    if (errno == EINTR) continue;
    int err = errno;
    if (err == EPIPE || err == ECONNRESET || err == ENOTCONN)
      return fail(errc::not_running, "sandbox " + std::string(id) + " is not running");
    return fail(errc::transport,
                "sending a request to sandbox " + std::string(id) + ": " + errno_text(err));
  }
}

/// Receives one reply from the supervisor, and the fd attached to it if any (`ready`: the
/// sandbox's root; `started`: a terminal's master). Without `block`, EAGAIN when none is there.
[[nodiscard]] inline ssize_t receive_reply(int fd, reply& r, unique_fd& attached,
                                           bool block = false) noexcept {
  return receive_with_fd(fd, r, attached, block);
}

/// Receives the supervisor's first reply; a `ready` one carries an fd of the sandbox's root.
[[nodiscard]] inline ssize_t receive_ready(int ctl, reply& r, unique_fd& root) noexcept {
  ssize_t n = receive_reply(ctl, r, root, true);
  if (n == sizeof r && r.kind == event::ready && !root) return -1;
  return n;
}

/// Packs argv, env ("K=V") and cwd as the supervisor expects them.
[[nodiscard]] inline result<std::string> pack_strings(std::span<const std::string> argv,
                                                      std::span<const std::string> env,
                                                      std::string_view cwd) noexcept {
  std::string s;
  std::size_t total = cwd.size() + 1;
  for (const auto& a : argv)
    total += a.size() + 1;
  for (const auto& e : env)
    total += e.size() + 1;
  if (total > max_request_bytes || argv.size() + env.size() > sv::max_strings)
    return fail(errc::validation, "command and environment too large: " + std::to_string(total) +
                                      " bytes in " + std::to_string(argv.size() + env.size()) +
                                      " strings (limit " + std::to_string(max_request_bytes) +
                                      " bytes)");
  // Said by position: the command itself, NUL and all, is no text for a message.
  for (std::size_t i = 0; i < argv.size(); ++i)
    if (auto at = argv[i].find('\0'); at != std::string::npos)
      return fail(errc::validation, "argument " + std::to_string(i) + " of " +
                                        std::to_string(argv.size()) +
                                        " holds a NUL byte (at byte " + std::to_string(at) + ")");
  s.reserve(total);
  for (const auto& a : argv)
    s.append(a).push_back('\0');
  for (const auto& e : env)
    s.append(e).push_back('\0');
  s.append(cwd).push_back('\0');
  return s;
}

[[nodiscard]] inline int returncode_of(int wait_status) noexcept {
  return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
}

/// One local sandbox as the client sees it. Thread-safe.
class box {
public:
  std::string id;
  std::vector<std::string> tags;
  std::vector<std::string> base_env; ///< "K=V" of the sandbox environment
  std::string workdir;
  /// The one CPU its commands run on, when its supervisor may run on that one only (it takes on
  /// the CPUs of the thread that made it: a single-CPU machine or cpuset, a pinned thread); -1
  /// otherwise. Read once the sandbox is built: a supervisor's CPUs narrowed to one later are
  /// not seen (its pipes keep the size for several), CPUs given to it later are seen only where
  /// they reach the thread that reads (see process::widen_pipe).
  int sole_cpu = -1;

  /// Clones the supervisor into new namespaces (and a user namespace when the caller is not
  /// root) and waits until the sandbox is built. `seccomp_filter` false is for measuring the
  /// filter's cost only. `img`: the image `o.image` names, prepared (its layers are the root,
  /// its config the defaults), or nullptr when `o.image` is a directory or empty.
  /// `image_dir`: the identity of the directory `o.image` names, which the caller checked and
  /// holds open until this returns: the sandbox is built on that directory or not at all.
  [[nodiscard]] static result<std::shared_ptr<box>>
  create(std::string id, const SandboxOptions& o, bool seccomp_filter = true,
         const image::prepared_image* img = nullptr,
         const dir_identity* image_dir = nullptr) noexcept;

  box() = default;
  box(const box&) = delete;
  box& operator=(const box&) = delete;
  ~box() {
    if (pidfd_) (void)stop(std::chrono::milliseconds(0)); // none: failed before the clone
  }

  /// Sends a request to the supervisor; not_running once the sandbox has ended.
  [[nodiscard]] result<void> send(const request& rq, std::string_view strings = {},
                                  std::span<const int> fds = {}) noexcept {
    std::lock_guard lk(m_);
    if (!ctl_ || is_terminal(state_))
      return fail(errc::not_running,
                  "sandbox " + id + " is not running (" + std::string(to_string(state_)) + ")");
    return send_request(ctl_.get(), rq, strings, fds, id);
  }

  /// Current state; notices a sandbox that ended without blocking.
  [[nodiscard]] SandboxInfo info() noexcept {
    std::lock_guard lk(m_);
    if (!is_terminal(state_) && wait_readable(pidfd_.get(), 0)) finish_locked();
    return info_locked();
  }

  /// Blocks until the sandbox is terminal or `timeout` passes (then returns its current state).
  [[nodiscard]] SandboxInfo wait_terminal(std::chrono::milliseconds timeout) noexcept {
    bool done = await_exit(timeout);
    std::lock_guard lk(m_);
    if (done && !is_terminal(state_)) finish_locked();
    return info_locked();
  }

  /// SIGTERM to everything in the sandbox, `grace`, SIGKILL; returns when nothing of it is left.
  [[nodiscard]] SandboxInfo stop(std::chrono::milliseconds grace) noexcept {
    {
      std::lock_guard lk(m_);
      // A sandbox that already ended on its own keeps its COMPLETED or FAILED.
      if (!is_terminal(state_) && wait_readable(pidfd_.get(), 0)) finish_locked();
      if (is_terminal(state_)) return info_locked();
      stop_requested_ = true;
      request rq{};
      rq.code = op::stop;
      rq.grace_ms = static_cast<std::uint32_t>(clamp_ms(grace));
      (void)send_request(ctl_.get(), rq, {}, {}, id);
    }
    // The grace period passes without the lock, so that the sandbox's state, a listing or
    // another stop answer meanwhile. The supervisor SIGKILLs at the end of grace; this is the
    // backstop if it cannot.
    bool exited = await_exit(grace + std::chrono::milliseconds(2000));
    std::lock_guard lk(m_);
    if (!exited && !is_terminal(state_))
      ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
    finish_locked();
    return info_locked();
  }

  /// A directory fd of the sandbox's root, as its processes see it; fails once it has ended.
  [[nodiscard]] result<unique_fd> open_root() noexcept {
    std::lock_guard lk(m_);
    // The supervisor is reaped only in finish_locked (under m_), so its pid cannot be reused here.
    if (is_terminal(state_) || wait_readable(pidfd_.get(), 0))
      return fail(errc::not_running, "sandbox " + id + " is not running");
    int fd = ::fcntl(root_.get(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return fail(errc::not_running, "sandbox " + id + ": " + errno_text(errno));
    return unique_fd(fd);
  }

  /// Sends the main command's start request (with its status socket).
  [[nodiscard]] result<void> start_main(std::span<const std::string> argv) noexcept;

  /// OOM kills in the sandbox so far (0 without a memory limit); see ExecResult::oom_killed.
  [[nodiscard]] std::uint64_t oom_kills() noexcept { return cgroup_ ? cgroup_->oom_kills() : 0; }

  /// The sandbox's log (its main process's stdout and stderr) from offset `from` on; empty for a
  /// sandbox without a main process. `closed` once nothing more can come: the writer closed it,
  /// or the sandbox has ended (its supervisor drains the log before it exits).
  [[nodiscard]] logring::snapshot log_from(std::uint64_t from) noexcept {
    bool ended = is_terminal(info().state);
    logring::snapshot s;
    if (log_.ring) s = logring::read_from(*log_.ring, from);
    s.closed = s.closed || ended;
    return s;
  }

  /// Waits up to `timeout` for the log to grow after a snapshot saw `seq` (or the sandbox to end).
  void await_log(std::uint32_t seq, std::chrono::milliseconds timeout) noexcept {
    if (log_.ring)
      logring::await(*log_.ring, seq, clamp_ms(timeout));
    else
      (void)await_exit(timeout);
  }

private:
  struct paths; // the host paths and mount options of one sandbox's setup

  /// Waits without the lock until the supervisor has exited (or the sandbox is terminal), at
  /// most `timeout`; true if it has. Polls a duplicate of the pidfd, which finish_locked may
  /// close meanwhile.
  [[nodiscard]] bool await_exit(std::chrono::milliseconds timeout) noexcept {
    unique_fd watch;
    {
      std::lock_guard lk(m_);
      if (is_terminal(state_) || !pidfd_) return true;
      watch.reset(::fcntl(pidfd_.get(), F_DUPFD_CLOEXEC, 0));
    }
    if (watch) return wait_readable(watch.get(), clamp_ms(timeout));
    // No descriptor to spare: look in short slices instead.
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      {
        std::lock_guard lk(m_);
        if (is_terminal(state_) || wait_readable(pidfd_.get(), 0)) return true;
      }
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  [[nodiscard]] SandboxInfo info_locked() const {
    return SandboxInfo{id, state_, returncode_, tags, oom_killed_, reason_};
  }

  /// The environment every command starts from must leave room for a command in one request:
  /// refused here, not at each exec.
  [[nodiscard]] result<void> check_base_env() const noexcept {
    std::size_t bytes = workdir.size() + 1 + 2; // the working directory, and a one-letter command
    for (const auto& e : base_env)
      bytes += e.size() + 1;
    if (bytes <= max_request_bytes && base_env.size() < sv::max_strings) return success();
    return fail(errc::validation,
                "sandbox " + id +
                    ": its environment (the defaults, the image's and "
                    "SandboxOptions::env) takes " +
                    std::to_string(bytes - 3 - workdir.size()) + " bytes in " +
                    std::to_string(base_env.size()) +
                    " variables; with the working directory and a command it must fit in " +
                    std::to_string(max_request_bytes) + " bytes and " +
                    std::to_string(sv::max_strings) + " strings");
  }

  // The steps of create, in order.
  [[nodiscard]] result<void> clone_supervisor(const supervisor_setup& setup, bool host_network,
                                              bool user_ns) noexcept;
  /// `keep_ns`: also opens the supervisor's user and network namespaces (for egress).
  [[nodiscard]] result<void> map_user_ns(bool keep_ns) noexcept;
  [[nodiscard]] result<void> join_cgroup(const Resources& r) noexcept;
  [[nodiscard]] result<void> await_ready(const SandboxOptions& o, bool user_ns) noexcept;
  /// network_mode::egress: the filter first, then the NAT (nothing leaves unfiltered).
  [[nodiscard]] result<void> start_egress(const SandboxOptions& o, bool user_ns) noexcept {
    std::vector<sandbox::detail::cidr> allow;
    for (const auto& a : o.network_allow)
      allow.push_back(*sandbox::detail::parse_cidr(a)); // validated
    if (!user_ns)
      ns_net_.reset(
          ::open(("/proc/" + std::to_string(pid_) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns_net_)
      return fail(errc::failed,
                  "sandbox " + id + ": opening its network namespace: " + errno_text(errno));
    SANDBOX_TRYV(egress::apply_rules(ns_user_.get(), ns_net_.get(), egress::ruleset(allow), id));
    SANDBOX_TRY(nat, egress::start_nat(ns_user_.get(), ns_net_.get(),
                                       egress::allows_host_loopback(allow), id));
    ns_user_.reset();
    ns_net_.reset();
    std::lock_guard lk(m_);
    nat_ = std::move(nat);
    return success();
  }
  /// Kills a sandbox that failed during create and leaves it FAILED; returns `e`.
  [[nodiscard]] error abort_create(error e) noexcept {
    std::lock_guard lk(m_);
    stop_requested_ = true;
    ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
    finish_locked();
    state_ = State::FAILED;
    return e;
  }

  /// Why the main command could not start, as a shell would say it.
  [[nodiscard]] std::string start_failure_text(const reply& r) const {
    std::string name = quoted_excerpt(main_name_, 256);
    if (r.where == stage::execve && r.err == ENOENT)
      return "the main command was not found: " + name;
    if (r.where == stage::execve)
      return "the main command cannot be executed: " + name + ": " + errno_text(r.err);
    if (r.where == stage::chdir)
      return "the main command could not start: cannot change to the working directory " +
             quoted_excerpt(workdir, 256) + ": " + errno_text(r.err);
    return "the main command " + name + " could not start: " + to_string(r.where) + ": " +
           errno_text(r.err);
  }

  /// Reaps the supervisor and settles the final state. Caller holds m_.
  void finish_locked() noexcept {
    if (is_terminal(state_)) return;
    siginfo_t si{};
    while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &si,
                    WEXITED | __WALL) != 0 &&
           errno == EINTR) {
    }
    nat_.stop();          // its network namespace is gone with the supervisor
    image_lease_.reset(); // and its overlay of the image's layers
    int sup_exit = si.si_code == CLD_EXITED ? si.si_status : -1;
    // The supervisor reported the main command's exit or start failure (if any) before it exited.
    bool main_exited = false;
    std::optional<reply> start_failure;
    if (main_status_) {
      reply r{};
      while (::recv(main_status_.get(), &r, sizeof r, MSG_DONTWAIT) == sizeof r) {
        if (r.kind == event::exited) {
          main_exited = true;
          returncode_ = returncode_of(r.value);
        } else if (r.kind == event::start_failed) {
          start_failure = r;
        }
      }
    }
    if (cgroup_) {
      // The kernel counts an OOM kill before it sends the SIGKILL, so the count is final here.
      oom_killed_ = main_exited && returncode_ == 137 && cgroup_->oom_kills() > 0;
      cgroup_->remove(); // the init is reaped: nothing of the sandbox is left in the cgroup
    }
    // Any exit of the main process on its own, non-zero or by a signal from inside, is a
    // completion (the caller reads returncode); FAILED is kept for what the command did not
    // choose: it never started, or the system killed it.
    if (stop_requested_ || sup_exit == sv::exit_expired) {
      state_ = State::TERMINATED;
    } else if (oom_killed_) {
      state_ = State::FAILED;
      reason_ = "the main process was killed for exceeding the sandbox's memory limit";
    } else if (main_exited) {
      state_ = State::COMPLETED;
    } else if (start_failure) {
      state_ = State::FAILED;
      reason_ = start_failure_text(*start_failure);
    } else {
      state_ = State::FAILED; // the supervisor died without a stop
      reason_ = "the sandbox's init process was killed from outside the sandbox";
    }
    // Nothing of a terminal sandbox holds a descriptor (a server keeps many of them around);
    // waiters without the lock poll their own duplicate of the pidfd (await_exit).
    ctl_.reset();
    main_status_.reset();
    pidfd_.reset();
    root_.reset();
  }

  std::mutex m_;
  pid_t pid_ = 0;
  unique_fd pidfd_;
  unique_fd ctl_;
  unique_fd main_status_;
  unique_fd root_; ///< O_PATH fd of the sandbox's root, from the supervisor
  State state_ = State::CREATING;
  std::optional<int> returncode_;
  std::string reason_;    ///< SandboxInfo::status_reason
  std::string main_name_; ///< argv[0] of the main command, for the reason of a start failure
  bool stop_requested_ = false;
  std::unique_ptr<cgroups::group> cgroup_;  ///< set by create only: resource limits
  std::shared_ptr<const void> image_lease_; ///< keeps the image's layers from the store's gc
  egress::nat_process nat_;                 ///< network_mode::egress
  unique_fd ns_user_, ns_net_;              ///< egress, during create: the supervisor's namespaces
  bool oom_killed_ = false;                 ///< the main process was OOM-killed
  /// The log ring, mapped read-only (the supervisor writes it); set once by start_main.
  struct log_mapping {
    logring::ring* ring = nullptr;
    log_mapping() = default;
    log_mapping(const log_mapping&) = delete;
    log_mapping& operator=(const log_mapping&) = delete;
    ~log_mapping() {
      if (ring) ::munmap(ring, logring::ring_bytes);
    }
  } log_;
};

/// The first existing directory the private tmpfs can be mounted on (in the sandbox's own mount
/// namespace only, so the host never sees it) that does not hide the image below it.
[[nodiscard]] inline const char* staging_dir(std::string_view image) noexcept {
  for (const char* d : {"/tmp", "/mnt", "/run", "/var/tmp", "/media", "/srv", "/opt"}) {
    std::string_view dv(d);
    if (image.size() > dv.size() && image.substr(0, dv.size()) == dv && image[dv.size()] == '/')
      continue;
    struct stat st {};
    if (::stat(d, &st) == 0 && S_ISDIR(st.st_mode)) return d;
  }
  return nullptr;
}

/// Where this process's argv and environment strings lie (/proc/self/stat fields 48-51), read
/// once: a supervisor overwrites them in its copy of this memory. And libc's code, which a
/// supervisor maps at once (prefault).
struct client_areas {
  memory_area args, environment, libc_text;
};

/// The executable segment of the loaded object any of whose segments holds `address` (none:
/// {0, 0}).
[[nodiscard]] inline memory_area code_segment_of(std::uintptr_t address) noexcept {
  struct search {
    std::uintptr_t address;
    memory_area found;
  } q{address, {}};
  ::dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) noexcept -> int {
        auto& in = *static_cast<search*>(data);
        bool holds = false;
        memory_area code;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const auto& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD) continue;
          const std::uintptr_t begin = info->dlpi_addr + ph.p_vaddr, end = begin + ph.p_memsz;
          holds = holds || (in.address >= begin && in.address < end);
          if ((ph.p_flags & PF_X) && code.end == code.begin) code = {begin, end};
        }
        if (!holds) return 0;
        in.found = code;
        return 1;
      },
      &q);
  return q.found;
}

/// An address inside libc itself. Not a function's: without -fpie, `&umask` is the program's
/// own PLT entry.
[[nodiscard]] inline std::uintptr_t libc_address() noexcept {
#ifdef __GLIBC__
  return reinterpret_cast<std::uintptr_t>(::gnu_get_libc_version()); // its read-only data
#else
  return reinterpret_cast<std::uintptr_t>(&::umask);
#endif
}

[[nodiscard]] inline client_areas read_client_areas() noexcept {
  client_areas a;
  a.libc_text = code_segment_of(libc_address());
  // Statically linked, that is the whole program's code: mapping all of a large one would
  // cost more than the faults it saves.
  if (a.libc_text.end - a.libc_text.begin > (std::uintptr_t{4} << 20)) a.libc_text = {};
  unique_fd fd(::open("/proc/self/stat", O_RDONLY | O_CLOEXEC));
  char buf[2048];
  ssize_t n = fd ? ::read(fd.get(), buf, sizeof buf - 1) : -1;
  if (n <= 0) return a;
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')'); // the name may hold spaces and parentheses
  std::uintptr_t v[4] = {};
  for (int field = 3; p && field <= 51; ++field) { // p: at field `field` after the skip
    p = std::strchr(p, ' ');
    if (!p) break;
    ++p;
    if (field >= 48) v[field - 48] = static_cast<std::uintptr_t>(std::strtoull(p, nullptr, 10));
  }
  a.args = {v[0], v[1]};
  a.environment = {v[2], v[3]};
  return a;
}

[[nodiscard]] inline const client_areas& client_memory() noexcept {
  static constinit std::atomic<const client_areas*> made{nullptr};
  return sandbox::detail::process_static(
      made, [] { return new const client_areas(read_client_areas()); });
}

/// The environment every command of the sandbox starts from: defaults, then the image's
/// (`K=V` entries of its config), then the options'.
[[nodiscard]] inline std::vector<std::string>
make_base_env(const std::string& id, const env_map& extra,
              const image::prepared_image* img = nullptr) {
  env_map env{{"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
              {"HOME", "/root"},
              {"HOSTNAME", id}};
  if (img && !img->home.empty() && !needs_user_ns()) env.insert_or_assign("HOME", img->home);
  if (img)
    for (const auto& kv : img->env) {
      auto eq = kv.find('=');
      if (eq != std::string::npos && eq > 0)
        env.insert_or_assign(kv.substr(0, eq), kv.substr(eq + 1));
    }
  for (const auto& [k, v] : extra)
    env.insert_or_assign(k, v);
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [k, v] : env)
    out.push_back(k + "=" + v);
  return out;
}

/// The strings a supervisor_setup points at; they live as long as the create call.
struct box::paths {
  std::string lower, upper, work, root, tmp, staging_opts, overlay_opts;
  std::string resolv_conf; ///< egress: the NAT's resolver, unless the options mount their own
  std::vector<mounted_file_spec> files;

  /// `hidden`: the shared layer of hidden entries (hidden_layer.hpp), or nullptr.
  paths(const char* staging, const SandboxOptions& o, bool user_ns,
        const hidden::shared_layer* hidden, const image::prepared_image* img, bool pinned) {
    std::string s = staging;
    lower = o.image.empty() ? std::string("/") : o.image;
    if (img) { // its layers, topmost first
      lower.clear();
      for (const auto& l : img->layers)
        lower += (lower.empty() ? "" : ":") + l;
    }
    upper = s + "/upper";
    work = s + "/work";
    root = s + "/root";
    tmp = s + "/tmp";
    const std::uint64_t disk = o.resources.disk_bytes ? o.resources.disk_bytes : default_disk_bytes;
    staging_opts = "mode=0755,size=" + std::to_string(disk);
    overlay_opts = "lowerdir=";
    // Above the host's root; the supervisor keeps the layer's mount as fd sv::hidden_layer.
    // A pinned image directory: the one the supervisor opened and checked, as that fd.
    const std::string layer_fd = "/proc/self/fd/" + std::to_string(sv::hidden_layer);
    if (hidden) overlay_opts += layer_fd + ":";
    overlay_opts += (pinned ? layer_fd : lower) + ",upperdir=" + upper + ",workdir=" + work;
    if (user_ns) overlay_opts += ",userxattr"; // trusted.* xattrs need the host's CAP_SYS_ADMIN
    for (const auto& f : o.mounted_files)
      files.push_back({f.path.c_str(), f.content.data(), f.content.size(), false});
    bool own_resolv = false;
    for (const auto& f : o.mounted_files)
      own_resolv = own_resolv || normal_path(f.path) == "/etc/resolv.conf";
    if (o.network == network_mode::egress && !own_resolv) {
      resolv_conf = "nameserver " + std::string(egress::dns) + "\n";
      files.push_back({"/etc/resolv.conf", resolv_conf.data(), resolv_conf.size(), true});
    }
  }

  [[nodiscard]] supervisor_setup setup(const box& b, const char* staging, const SandboxOptions& o,
                                       bool user_ns, const hidden::shared_layer* hidden,
                                       const image::prepared_image* img) const noexcept {
    supervisor_setup st;
    st.hidden_layer_fd = hidden ? hidden->fd.get() : -1;
    st.hostname = b.id.c_str();
    st.staging = staging;
    st.staging_opts = staging_opts.c_str();
    st.tmp = tmp.c_str();
    st.root = root.c_str();
    st.upper = upper.c_str();
    st.work = work.c_str();
    st.overlay_opts = overlay_opts.c_str();
    st.workdir = b.workdir.c_str();
    st.host_network = o.network == network_mode::host;
    st.no_packet_sockets = o.network == network_mode::egress;
    st.user_ns = user_ns;
    st.mirror_root = user_ns && o.image.empty();
    st.lower = lower.c_str();
    st.hide_host_secrets = o.image.empty() && !o.whole_host_root;
    st.wait_for_cgroup = cgroups::requested(o.resources);
    st.args = client_memory().args;
    st.environment = client_memory().environment;
    st.libc_text = client_memory().libc_text;
    st.oom_commands_first = o.resources.memory_bytes != 0;
    // An image's User, where it maps: as root, ids are the host's own; in a user namespace
    // only the sandbox's root is mapped, so commands stay root there.
    if (img && img->uid && !user_ns && (*img->uid != 0 || img->gid.value_or(0) != 0)) {
      st.as_user = true;
      st.uid = *img->uid;
      st.gid = img->gid.value_or(0);
    }
    st.files = files.data();
    st.nfiles = files.size();
    if (o.max_lifetime) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*o.max_lifetime).count();
      st.lifetime_ms = static_cast<std::uint32_t>(std::clamp<long long>(ms, 1, 0xffffffffLL));
    }
    return st;
  }
};

inline result<std::shared_ptr<box>> box::create(std::string id, const SandboxOptions& o,
                                                bool seccomp_filter,
                                                const image::prepared_image* img,
                                                const dir_identity* image_dir) noexcept {
  auto b = std::make_shared<box>();
  b->id = std::move(id);
  b->tags = o.tags;
  b->workdir = !o.working_dir.empty()             ? o.working_dir
               : img && !img->working_dir.empty() ? img->working_dir
                                                  : "/";
  b->base_env = make_base_env(b->id, o.env, img);
  SANDBOX_TRYV(b->check_base_env());
  if (img) b->image_lease_ = img->lease;

  const char* staging = staging_dir(img && !img->layers.empty() ? img->layers.front() : o.image);
  if (!staging)
    return fail(errc::unsupported, "sandbox " + b->id +
                                       ": no directory to mount the private layer on (/tmp, "
                                       "/mnt, /run, … all missing)");
  const bool user_ns = needs_user_ns();
  // The supervisor starts as a copy of this process: if this one is not dumpable, its
  // /proc/<pid>/uid_map belongs to the host's root and cannot be written.
  if (user_ns && ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 1)
    return fail(errc::unsupported,
                "sandbox " + b->id +
                    ": this process is not dumpable (it changed uid, or set PR_SET_DUMPABLE 0), "
                    "so it cannot map the user namespace a sandbox needs when not root");
  // Held until the supervisor is cloned (the launcher hands it a copy of the descriptor).
  std::shared_ptr<const hidden::shared_layer> hidden;
  if (!user_ns && o.image.empty() && !o.whole_host_root) hidden = hidden::current_layer();
  const bool pinned = image_dir && !img && !o.image.empty();
  const paths p(staging, o, user_ns, hidden.get(), img, pinned);
  if (p.overlay_opts.size() > 4000) // the kernel takes one page of mount options
    return fail(errc::validation, "sandbox " + b->id + ": the image has too many layers (" +
                                      std::to_string(img ? img->layers.size() : 1) +
                                      ") for one overlay mount; its layer paths take " +
                                      std::to_string(p.overlay_opts.size()) + " bytes of 4000");
  supervisor_setup setup = p.setup(*b, staging, o, user_ns, hidden.get(), img);
  setup.seccomp = seccomp_filter;
  if (pinned) {
    setup.lower_pinned = true;
    setup.lower_id = *image_dir;
  }
  SANDBOX_TRYV(b->clone_supervisor(setup, o.network == network_mode::host, user_ns));
  // A step that fails after the clone leaves the sandbox FAILED, its supervisor killed.
  auto done = user_ns ? b->map_user_ns(o.network == network_mode::egress) : success();
  if (done && cgroups::requested(o.resources)) done = b->join_cgroup(o.resources);
  if (done) done = b->await_ready(o, user_ns);
  if (done) b->sole_cpu = sole_cpu_of(b->pid_); // as the launcher set them (or failed to)
  if (done && o.network == network_mode::egress) done = b->start_egress(o, user_ns);
  if (!done) return fail(b->abort_create(std::move(done).assume_error()));
  b->state_ = State::RUNNING;
  return b;
}

/// Clones the supervisor (PID 1 of the new namespaces) with `setup`; on success the box holds
/// its pid, pidfd and control socket.
inline result<void> box::clone_supervisor(const supervisor_setup& setup, bool host_network,
                                          bool user_ns) noexcept {
  int sv_fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv_fds) != 0)
    return fail(errc::resource_exhausted, "sandbox " + id + ": socketpair: " + errno_text(errno));
  unique_fd mine(sv_fds[0]), theirs(sv_fds[1]);
  int pidfd = -1;
  // This process's child all the same (CLONE_PARENT), with exit signal 0: no SIGCHLD, and a
  // caller's waitpid(-1) cannot reap it.
  int flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC |
              (host_network ? 0 : CLONE_NEWNET) | (user_ns ? CLONE_NEWUSER : 0);
  pid_t pid = launcher::instance().clone_supervisor(setup, flags, theirs.get(), pidfd);
  int err = errno;
  if (pid < 0) {
    if (err == EMFILE || err == ENFILE) // this process's descriptors, on the way to the launcher
      return fail(errc::resource_exhausted, "sandbox " + id + ": " + errno_text(err));
    if (err == EFBIG)
      return fail(errc::validation, "sandbox " + id +
                                        ": its mounted files and setup are larger than this "
                                        "process's file size limit (RLIMIT_FSIZE)");
    if (user_ns && err != EAGAIN && err != ENOMEM)
      return fail(errc::unsupported, "sandbox " + id + ": " + explain_user_ns_refusal(err));
    if (err == EPERM)
      return fail(errc::unsupported,
                  "sandbox " + id +
                      ": creating namespaces was refused (EPERM): local sandboxes need root or "
                      "CAP_SYS_ADMIN on this host");
    return fail(err == EAGAIN || err == ENOMEM || err == ENOSPC ? errc::resource_exhausted
                                                                : errc::unsupported,
                "sandbox " + id + ": clone: " + errno_text(err));
  }
  pid_ = pid;
  pidfd_.reset(pidfd);
  ctl_ = std::move(mine);
  return success();
}

/// Maps the supervisor's user namespace; it waits for the byte sent after that.
inline result<void> box::map_user_ns(bool keep_ns) noexcept {
  auto fail_map = [&](const std::string& why) {
    return fail(errc::failed,
                "sandbox " + id + " failed to start: mapping the user namespace: " + why);
  };
  if (auto mapped = write_id_maps(pid_); !mapped) return fail_map(mapped.error().message);
  if (keep_ns) {
    // Now or never: the supervisor is still dumpable (waiting for "g"), so its namespaces can
    // be opened by this unprivileged process.
    const std::string ns = "/proc/" + std::to_string(pid_) + "/ns/";
    ns_user_.reset(::open((ns + "user").c_str(), O_RDONLY | O_CLOEXEC));
    ns_net_.reset(::open((ns + "net").c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns_user_ || !ns_net_) return fail_map("opening its namespaces: " + errno_text(errno));
  }
  if (::send(ctl_.get(), "g", 1, MSG_NOSIGNAL) != 1)
    return fail_map("the supervisor exited before its user namespace was mapped");
  return success();
}

/// Makes the sandbox's cgroup while the supervisor builds the sandbox, and moves the supervisor
/// into it before it can start a command: commands inherit the cgroup, so the attach (≈ 40 µs,
/// but 15-30 ms about 1 % of the time on v1) stays off the exec path.
inline result<void> box::join_cgroup(const Resources& r) noexcept {
  SANDBOX_TRY(made, cgroups::group::create(id, r));
  cgroup_ = std::move(made);
  SANDBOX_TRYV(cgroup_->attach(pid_));
  // The supervisor makes its cgroup namespace once it is in the sandbox's cgroup.
  if (::send(ctl_.get(), "c", 1, MSG_NOSIGNAL) != 1)
    return fail(errc::failed, "sandbox " + id + ": the supervisor exited during setup");
  return success();
}

/// Waits for the supervisor's `ready` (with the root fd) or its report of what failed.
inline result<void> box::await_ready(const SandboxOptions& o, bool user_ns) noexcept {
  reply r{};
  ssize_t n = receive_ready(ctl_.get(), r, root_);
  if (n == sizeof r && r.kind == event::ready) return success();
  const bool reported = n == sizeof r && r.kind == event::setup_failed;
  std::string why = reported ? std::string(to_string(r.where)) + ": " : std::string();
  if (reported && r.where == stage::image_changed)
    return fail(errc::validation, "sandbox " + id + " failed to start: image " +
                                      quoted_excerpt(o.image, 256) + ": " + to_string(r.where));
  // A mounted file's path is the caller's: the message says which one.
  const bool file = reported && r.where == stage::mounted_files && r.value >= 0 &&
                    static_cast<std::size_t>(r.value) < o.mounted_files.size();
  if (file)
    why += quoted_excerpt(o.mounted_files[static_cast<std::size_t>(r.value)].path, 256) + ": ";
  if (reported)
    why +=
        user_ns && r.where == stage::overlay ? explain_user_ns_overlay(r.err) : errno_text(r.err);
  else
    why = "the supervisor exited during setup";
  // A file that cannot be placed where the caller asked is the caller's to fix, unless the
  // sandbox's disk or the host ran out.
  const bool exhausted = r.err == ENOSPC || r.err == EDQUOT;
  const bool host = r.err == ENOMEM || r.err == EMFILE || r.err == ENFILE;
  errc code = file && exhausted ? errc::resource_exhausted
              : (file && !host) || (reported && r.where == stage::overlay && !o.image.empty())
                  ? errc::validation
                  : errc::failed;
  return fail(code, "sandbox " + id + " failed to start: " + why);
}

inline result<void> box::start_main(std::span<const std::string> argv) noexcept {
  SANDBOX_TRY(strings, pack_strings(argv, base_env, workdir));
  {
    std::lock_guard lk(m_);
    main_name_ = argv.empty() ? std::string() : argv.front();
  }
  int st[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, st) != 0)
    return fail(errc::resource_exhausted, "sandbox " + id + ": socketpair: " + errno_text(errno));
  main_status_.reset(st[0]);
  unique_fd theirs(st[1]);
  // The log: shared memory sealed at its size (the supervisor, inside the sandbox, could
  // otherwise shrink it under this process's reads), mapped here read-only.
  unique_fd log(::memfd_create("sandbox-log", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  void* ring = MAP_FAILED;
  if (!log || ::ftruncate(log.get(), static_cast<off_t>(logring::ring_bytes)) != 0 ||
      ::fcntl(log.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0 ||
      (ring = ::mmap(nullptr, logring::ring_bytes, PROT_READ, MAP_SHARED, log.get(), 0)) ==
          MAP_FAILED)
    return fail(errc::resource_exhausted, "sandbox " + id + ": its log: " + errno_text(errno));
  log_.ring = static_cast<logring::ring*>(ring);
  request rq{};
  rq.code = op::exec;
  rq.flags = exec_main | exec_log_output;
  rq.argc = static_cast<std::uint32_t>(argv.size());
  rq.envc = static_cast<std::uint32_t>(base_env.size());
  rq.strings_len = static_cast<std::uint32_t>(strings.size());
  int fds[2] = {theirs.get(), log.get()};
  return send(rq, strings, std::span<const int>(fds, 2));
}

} // namespace sandbox::local::detail
