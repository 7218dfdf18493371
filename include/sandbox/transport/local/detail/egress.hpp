// SPDX-License-Identifier: MIT
// network_mode::egress for a local sandbox: a user-mode NAT (slirp4netns, as rootless Podman
// uses) attached to the sandbox's network namespace, and a packet filter (nftables) in that
// namespace, set before the NAT brings the interface up, that rejects what must stay out of
// reach: the host's loopback and own addresses, link-local, private, shared, multicast and
// reserved ranges, unless allowed. The sandbox's commands cannot change the filter: they lack
// CAP_NET_ADMIN. The NAT ends when the sandbox stops, or when its owner dies.
#pragma once

#include <sandbox/detail/text.hpp>
#include <sandbox/detail/unique_fd.hpp>
#include <sandbox/detail/validate.hpp>
#include <sandbox/result.hpp>

#include <cerrno>
#include <chrono>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace sandbox::local::detail::egress {

using sandbox::detail::cidr;
using sandbox::detail::unique_fd;

/// The NAT's addresses inside the sandbox (slirp4netns' defaults).
inline constexpr const char* gateway = "10.0.2.2"; ///< the host's loopback, when allowed
inline constexpr const char* dns = "10.0.2.3";     ///< forwarded to the host's resolver

/// The first of `paths` that is an executable file (a fixed list: the caller's PATH is not
/// what decides which program gets the sandbox's namespaces), or nullptr.
[[nodiscard]] inline const char* find_program(std::initializer_list<const char*> paths) noexcept {
  for (const char* p : paths)
    if (::access(p, X_OK) == 0) return p;
  return nullptr;
}

/// What is blocked unless allowed: the special-purpose ranges, and this host's own addresses
/// (those it has when the sandbox starts).
[[nodiscard]] inline std::vector<cidr> blocked_ranges() {
  std::vector<cidr> out;
  for (const char* r : sandbox::detail::special_ranges)
    out.push_back(*sandbox::detail::parse_cidr(r));
  ifaddrs* ifs = nullptr;
  if (::getifaddrs(&ifs) == 0) {
    for (ifaddrs* i = ifs; i; i = i->ifa_next)
      if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET)
        out.push_back(
            {ntohl(reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr), 32});
    ::freeifaddrs(ifs);
  }
  return out;
}

/// Whether `allow` holds 127.0.0.1, the address the NAT's gateway stands for (then every port
/// of the host's loopback is reachable there; other loopback addresses are not reachable).
[[nodiscard]] inline bool allows_host_loopback(const std::vector<cidr>& allow) noexcept {
  for (const auto& a : allow)
    if (a.contains(0x7f000001u)) return true;
  return false;
}

/// The nftables ruleset of the sandbox's network namespace. Rules, not sets: ranges may
/// overlap (a host address inside a private range).
[[nodiscard]] inline std::string ruleset(const std::vector<cidr>& allow) {
  std::string r = "table inet sandbox_egress {\n chain out {\n"
                  "  type filter hook output priority 0; policy accept;\n"
                  "  oifname \"lo\" accept\n"
                  "  meta nfproto ipv6 reject\n" // the NAT carries IPv4 only
                  "  ip daddr " +
                  std::string(dns) + " meta l4proto { tcp, udp } th dport 53 accept\n";
  if (allows_host_loopback(allow)) r += "  ip daddr " + std::string(gateway) + " accept\n";
  for (const auto& a : allow)
    r += "  ip daddr " + a.str() + " accept\n";
  for (const auto& b : blocked_ranges())
    r += "  ip daddr " + b.str() + " reject with icmpx type admin-prohibited\n";
  return r + " }\n}\n";
}

/// A forked child's end: the error text it left in `err`, or "".
[[nodiscard]] inline std::string child_output(int err) {
  std::string s;
  char buf[512];
  for (off_t off = 0;;) {
    ssize_t n = ::pread(err, buf, sizeof buf, off);
    if (n <= 0) break;
    s.append(buf, static_cast<std::size_t>(n));
    off += n;
  }
  while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
    s.pop_back();
  return s.substr(0, 400);
}

/// Joins the sandbox's user (when `user_ns`) and network namespaces. Async-signal-safe: for a
/// child forked from a multi-threaded process.
inline bool join(int user_fd, int net_fd) noexcept {
  if (user_fd >= 0 && ::setns(user_fd, CLONE_NEWUSER) != 0) return false;
  return ::setns(net_fd, CLONE_NEWNET) == 0;
}

/// Loads `rules` with nft inside the network namespace `net_fd` (joining the user namespace
/// `user_fd` first, when not -1).
/// **Errors:** unsupported (no nft, or the kernel refuses nftables: the message says which).
[[nodiscard]] inline result<void> apply_rules(int user_fd, int net_fd, const std::string& rules,
                                              const std::string& id) {
  const char* nft = find_program({"/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"});
  if (!nft)
    return fail(errc::unsupported, "sandbox " + id +
                                       ": network egress needs nft (Debian: "
                                       "nftables) to keep the host's ranges out of reach");
  unique_fd in(::memfd_create("sandbox-nft", MFD_CLOEXEC)),
      err(::memfd_create("sandbox-nft-err", MFD_CLOEXEC));
  if (!in || !err ||
      ::write(in.get(), rules.data(), rules.size()) != static_cast<ssize_t>(rules.size()))
    return fail(errc::failed, "sandbox " + id + ": preparing the egress filter: " +
                                  sandbox::detail::errno_text(errno));
  (void)::lseek(in.get(), 0, SEEK_SET);
  const char* argv[] = {nft, "-f", "-", nullptr};
  const char* envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", nullptr};
  pid_t child = ::fork();
  if (child == 0) {
    if (!join(user_fd, net_fd)) ::_exit(125);
    ::dup2(in.get(), 0);
    ::dup2(err.get(), 1);
    ::dup2(err.get(), 2);
    ::execve(nft, const_cast<char**>(argv), const_cast<char**>(envp));
    ::_exit(126);
  }
  if (child < 0)
    return fail(errc::resource_exhausted,
                "sandbox " + id + ": fork: " + sandbox::detail::errno_text(errno));
  // Fails closed: a status not read (SIGCHLD ignored by the application: ECHILD) is a failure.
  int st = -1;
  pid_t waited = -1;
  while ((waited = ::waitpid(child, &st, 0)) < 0 && errno == EINTR) {
  }
  if (waited == child && WIFEXITED(st) && WEXITSTATUS(st) == 0) return success();
  if (waited != child)
    return fail(errc::unsupported, "sandbox " + id + ": the egress filter's status is unknown (" +
                                       sandbox::detail::errno_text(errno) +
                                       "; is SIGCHLD ignored?): not starting the NAT");
  std::string why = WIFEXITED(st) && WEXITSTATUS(st) == 125 ? "cannot join its network namespace"
                                                            : child_output(err.get());
  return fail(errc::unsupported,
              "sandbox " + id + ": the egress filter (nftables) could not be set: " + why);
}

/// A running NAT: it ends when `exit_fd` closes (also when this process dies: the kernel closes
/// it); `stop` closes it and reaps the NAT (this process's child: an init that reaps no orphans
/// would keep it a zombie).
struct nat_process {
  unique_fd exit_fd, pidfd;
  nat_process() = default;
  nat_process(nat_process&&) noexcept = default;
  nat_process& operator=(nat_process&& o) noexcept {
    stop();
    exit_fd = std::move(o.exit_fd);
    pidfd = std::move(o.pidfd);
    return *this;
  }
  ~nat_process() { stop(); }
  void stop() noexcept {
    exit_fd.reset();
    if (!pidfd) return;
    pollfd p{pidfd.get(), POLLIN, 0};
    if (::poll(&p, 1, 2000) <= 0)
      ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
    siginfo_t si{};
    while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd.get()), &si, WEXITED) !=
               0 &&
           errno == EINTR) {
    }
    pidfd.reset();
  }
};

/// Starts slirp4netns on the network namespace `net_fd` (of the user namespace `user_fd`, when
/// not -1): given as descriptors, since the sandbox's init cannot be looked into by pid.
/// **Errors:** unsupported (no slirp4netns, or it failed: its message), timeout (not ready in
/// 10 s).
[[nodiscard]] inline result<nat_process> start_nat(int user_fd, int net_fd, bool host_loopback,
                                                   const std::string& id) {
  const char* slirp =
      find_program({"/usr/bin/slirp4netns", "/bin/slirp4netns", "/usr/local/bin/slirp4netns"});
  if (!slirp)
    return fail(errc::unsupported,
                "sandbox " + id + ": network egress needs slirp4netns (Debian: slirp4netns)");
  int ex[2], ready[2];
  if (::pipe2(ex, O_CLOEXEC) != 0)
    return fail(errc::resource_exhausted,
                "sandbox " + id + ": pipe2: " + sandbox::detail::errno_text(errno));
  unique_fd exit_r(ex[0]), exit_w(ex[1]);
  if (::pipe2(ready, O_CLOEXEC) != 0)
    return fail(errc::resource_exhausted,
                "sandbox " + id + ": pipe2: " + sandbox::detail::errno_text(errno));
  unique_fd ready_r(ready[0]), ready_w(ready[1]);
  unique_fd err(::memfd_create("sandbox-slirp-err", MFD_CLOEXEC));
  unique_fd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  // The namespaces become its descriptors 5 and 6, named by /proc/self/fd paths.
  std::vector<const char*> argv{
      slirp,          "--configure",      "--mtu=65520",      "--exit-fd=3",
      "--ready-fd=4", "--enable-seccomp", "--netns-type=path"};
  // Its own mount namespace, capabilities dropped: for root only (without root it would need a
  // user namespace of its own, and fails on setegid(0)).
  if (::geteuid() == 0) argv.push_back("--enable-sandbox");
  if (!host_loopback) argv.push_back("--disable-host-loopback");
  if (user_fd >= 0) argv.push_back("--userns-path=/proc/self/fd/6");
  argv.insert(argv.end(), {"/proc/self/fd/5", "tap0", nullptr});
  const char* envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", nullptr};
  pid_t child = ::fork();
  if (child == 0) {
    ::setsid(); // no signal meant for the caller's process group reaches it
    // Out of the way of 0-4 first, then into place (dup2 clears close-on-exec).
    int e = ::fcntl(exit_r.get(), F_DUPFD, 10), r = ::fcntl(ready_w.get(), F_DUPFD, 10);
    int o = ::fcntl(err.get(), F_DUPFD, 10), n = ::fcntl(null.get(), F_DUPFD, 10);
    int nn = ::fcntl(net_fd, F_DUPFD, 10), un = user_fd >= 0 ? ::fcntl(user_fd, F_DUPFD, 10) : 0;
    if (e < 0 || r < 0 || o < 0 || n < 0 || nn < 0 || un < 0) ::_exit(126);
    ::dup2(n, 0);
    ::dup2(o, 1);
    ::dup2(o, 2);
    ::dup2(e, 3);
    ::dup2(r, 4);
    ::dup2(nn, 5);
    if (user_fd >= 0) ::dup2(un, 6);
    ::execve(slirp, const_cast<char**>(argv.data()), const_cast<char**>(envp));
    ::_exit(126);
  }
  if (child < 0)
    return fail(errc::resource_exhausted,
                "sandbox " + id + ": fork: " + sandbox::detail::errno_text(errno));
  nat_process nat;
  nat.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, child, 0)));
  if (!nat.pidfd) { // cannot be reaped by pidfd: by pid, now
    ::kill(child, SIGKILL);
    while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
    }
    return fail(errc::resource_exhausted,
                "sandbox " + id + ": pidfd_open: " + sandbox::detail::errno_text(errno));
  }
  nat.exit_fd = std::move(exit_w);
  exit_r.reset();
  ready_w.reset();
  pollfd p{ready_r.get(), POLLIN, 0};
  int n = 0;
  while ((n = ::poll(&p, 1, 10000)) < 0 && errno == EINTR) {
  }
  char c = 0;
  if (n > 0 && ::read(ready_r.get(), &c, 1) == 1 && c == '1') return nat;
  nat.stop(); // not ready: it failed (its message), or hangs
  std::string why = child_output(err.get());
  if (n == 0)
    return fail(errc::timeout, "sandbox " + id + ": slirp4netns was not ready within 10 s");
  if (why.find("/dev/net/tun") != std::string::npos && ::geteuid() != 0)
    why += " (without root, /dev/net/tun must be open to every user: mode 0666, as Debian's udev "
           "rules make it)";
  return fail(errc::unsupported, "sandbox " + id + ": slirp4netns could not set up the network" +
                                     (why.empty() ? std::string() : ": " + why));
}

} // namespace sandbox::local::detail::egress
