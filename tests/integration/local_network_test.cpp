// SPDX-License-Identifier: MIT
// network_mode::egress on the local transport. Every server a test reaches lives on this machine:
// on the host's loopback (reached through the NAT's gateway), or in a network namespace the test
// makes itself, whose addresses (a private and a link-local range) stand for the ranges that must
// stay blocked — so even a failing block sends nothing off this machine.
#include "../support/sandbox_helpers.hpp"
#include "../support/skip.hpp"

#include <sandbox/detail/random.hpp>
#include <sandbox/local.hpp>

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

using namespace test_support;
using sandbox::errc;
using sandbox::network_mode;

namespace {

/// A TCP server answering "hello\n" to every connection, on `addr` (in the current network
/// namespace, or in the one `netns` names), on a port of its own. Stopped with the object.
class hello_server {
public:
  explicit hello_server(const std::string& addr, const std::string& netns = "") {
    std::atomic<int> ready{0};
    thread_ = std::thread([&, addr, netns] {
      if (!netns.empty()) {
        int fd = ::open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) { // this thread only
          ready = -1;
          return;
        }
        ::close(fd);
      }
      fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      ::inet_pton(AF_INET, addr.c_str(), &a.sin_addr);
      socklen_t len = sizeof a;
      if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0 ||
          ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        ready = -1;
        return;
      }
      port_ = ntohs(a.sin_port);
      ready = 1;
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        ++accepted_;
        (void)!::write(c, "hello\n", 6);
        ::close(c);
      }
    });
    while (ready == 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ok_ = ready == 1;
  }
  hello_server(const hello_server&) = delete;
  ~hello_server() {
    stop_ = true;
    thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] int accepted() const { return accepted_; }

private:
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  int fd_ = -1;
  int port_ = 0;
  bool ok_ = false;
};

/// Python run inside: connects to argv[1]:argv[2] and prints what it reads, or the error.
constexpr const char* connect_probe = R"(
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    print(s.recv(100).decode().strip())
except OSError as e:
    print("refused", e.errno)
)";

std::string probe(Box& box, const std::string& host, int port) {
  auto o = run(box, {"python3", "-c", connect_probe, host, std::to_string(port)});
  return o.out + o.err;
}

/// A network namespace of the test's own, linked to the host by a veth pair holding a private
/// and a link-local /30 of its own (tests may run side by side): the host's side is .1, the
/// namespace's .2 of each.
struct test_netns {
  std::string name = "sbxt" + sandbox::detail::random_id("", 8);
  std::string veth = "sv" + name.substr(4);
  std::uint32_t r = sandbox::detail::random_u32();
  std::string priv = "10.213." + std::to_string(r % 250) + "." + std::to_string((r >> 8) % 63 * 4);
  std::string link =
      "169.254." + std::to_string(10 + (r >> 16) % 240) + "." + std::to_string((r >> 24) % 63 * 4);
  bool ok = false;

  /// Address `n` of the /30 starting at `base`.
  static std::string at(const std::string& base, int n) {
    auto dot = base.rfind('.');
    return base.substr(0, dot + 1) + std::to_string(std::stoi(base.substr(dot + 1)) + n);
  }
  test_netns() {
    std::string cmd =
        "ip netns add " + name + " && ip link add " + veth + " type veth peer name eth0 netns " +
        name + " && ip addr add " + at(priv, 1) + "/30 dev " + veth + " && ip addr add " +
        at(link, 1) + "/30 dev " + veth + " && ip link set " + veth + " up && ip -n " + name +
        " addr add " + at(priv, 2) + "/30 dev eth0 && ip -n " + name + " addr add " + at(link, 2) +
        "/30 dev eth0 && ip -n " + name + " link set eth0 up && ip -n " + name + " link set lo up";
    ok = std::system((cmd + " 2>/dev/null").c_str()) == 0;
  }
  test_netns(const test_netns&) = delete;
  ~test_netns() {
    (void)std::system(
        ("ip link del " + veth + " 2>/dev/null; ip netns del " + name + " 2>/dev/null").c_str());
  }
};

/// The host's first IPv4 address that is not loopback (its own address: as blocked as its
/// loopback), or "".
std::string host_address() {
  ifaddrs* ifs = nullptr;
  std::string out;
  if (::getifaddrs(&ifs) != 0) return out;
  for (ifaddrs* i = ifs; i && out.empty(); i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    char buf[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, buf,
                sizeof buf);
    if (std::string(buf).rfind("127.", 0) != 0 && std::string(buf).rfind("10.213.", 0) != 0 &&
        std::string(buf).rfind("169.254.", 0) != 0)
      out = buf;
  }
  ::freeifaddrs(ifs);
  return out;
}

/// A busybox root whose /etc/resolv.conf is a symlink (as on hosts with systemd-resolved).
std::string busybox_root_with_linked_resolv() {
  char tmpl[] = "/tmp/sandbox-net-image-XXXXXX";
  std::string root = ::mkdtemp(tmpl);
  for (const char* d : {"/bin", "/etc", "/proc", "/dev", "/tmp", "/sys", "/run"})
    ::mkdir((root + d).c_str(), 0755);
  if (std::system(("cp /bin/busybox " + root + "/bin/busybox").c_str()) != 0) return {};
  for (const char* tool : {"sh", "cat", "readlink"})
    (void)::symlink("busybox", (root + "/bin/" + tool).c_str());
  (void)::symlink("../run/resolver/resolv.conf", (root + "/etc/resolv.conf").c_str());
  return root;
}

/// slirp4netns processes whose parent is this process.
int nat_children() {
  int n = 0;
  DIR* d = ::opendir("/proc");
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
    std::string line;
    std::getline(f, line);
    auto close = line.rfind(')');
    if (close == std::string::npos || line.find("(slirp4netns)") == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string state;
    int ppid = 0;
    rest >> state >> ppid;
    if (ppid == ::getpid()) ++n;
  }
  ::closedir(d);
  return n;
}

} // namespace

TEST_CASE("egress: the host's loopback and addresses only when allowed, the filter out of reach",
          "[local][network]") {
  hello_server host("127.0.0.1");
  REQUIRE(host.ok());
  const std::string own = host_address();
  REQUIRE_FALSE(own.empty());
  hello_server host_own(own);
  REQUIRE(host_own.ok());
  {
    auto box = make_box({.network = network_mode::egress});
    CHECK(probe(box, "10.0.2.2", host.port()).substr(0, 7) == "refused");
    CHECK(probe(box, "127.0.0.1", host.port()).substr(0, 7) == "refused"); // its own loopback
    // The NAT would reach the host's own address: only the filter keeps it out.
    CHECK(probe(box, own, host_own.port()).substr(0, 7) == "refused");
    CHECK(sh(box, "cat /etc/resolv.conf") == "nameserver 10.0.2.3\n");
    CHECK(nat_children() == 1);
    // Its root cannot lift the filter (no CAP_NET_ADMIN), nor send past it on a packet socket
    // (no CAP_NET_RAW).
    CHECK(sh(box, "nft flush ruleset 2>&1").find("Operation not permitted") != std::string::npos);
    CHECK(probe(box, own, host_own.port()).substr(0, 7) == "refused");
    CHECK(sh(box, "python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)' "
                  "2>&1 | tail -1")
              .find("PermissionError") != std::string::npos);
  }
  CHECK(host.accepted() == 0);
  CHECK(host_own.accepted() == 0);
  CHECK(nat_children() == 0); // the NAT ended with the sandbox
  auto allowed = make_box({.network = network_mode::egress, .network_allow = {"127.0.0.1/32"}});
  CHECK(probe(allowed, "10.0.2.2", host.port()) == "hello\n");
  CHECK(host.accepted() == 1);
  CHECK(probe(allowed, own, host_own.port()).substr(0, 7) == "refused");
  auto own_allowed = make_box({.network = network_mode::egress, .network_allow = {own}});
  CHECK(probe(own_allowed, own, host_own.port()) == "hello\n");
}

TEST_CASE("egress: private and link-local ranges stay blocked unless allowed", "[local][network]") {
  test_netns ns;
  REQUIRE(ns.ok);
  const std::string priv = test_netns::at(ns.priv, 2), link = test_netns::at(ns.link, 2);
  hello_server in_priv(priv, ns.name), in_link(link, ns.name);
  REQUIRE(in_priv.ok());
  REQUIRE(in_link.ok());
  {
    auto box = make_box({.network = network_mode::egress});
    CHECK(probe(box, priv, in_priv.port()).substr(0, 7) == "refused");
    CHECK(probe(box, link, in_link.port()).substr(0, 7) == "refused");
  }
  CHECK(in_priv.accepted() == 0);
  CHECK(in_link.accepted() == 0);
  // Allowed: reached through the NAT (the host routes to the test's namespace).
  auto box = make_box({.network = network_mode::egress, .network_allow = {ns.priv + "/30"}});
  CHECK(probe(box, priv, in_priv.port()) == "hello\n");
  CHECK(probe(box, link, in_link.port()).substr(0, 7) == "refused");
  CHECK(in_priv.accepted() == 1);
  auto other = make_box({.network = network_mode::egress, .network_allow = {ns.link + "/30"}});
  CHECK(probe(other, link, in_link.port()) == "hello\n");
  CHECK(probe(other, priv, in_priv.port()).substr(0, 7) == "refused");
  // Without egress, nothing leaves at all.
  auto none = make_box({});
  CHECK(probe(none, priv, in_priv.port()).substr(0, 7) == "refused");
  CHECK(in_priv.accepted() == 1);
}

TEST_CASE("egress: a resolv.conf that is a symlink is replaced, not a failed start",
          "[local][network]") {
  std::string root = busybox_root_with_linked_resolv();
  REQUIRE_FALSE(root.empty());
  {
    auto box = make_box({.image = root, .network = network_mode::egress});
    CHECK(sh(box, "cat /etc/resolv.conf") == "nameserver 10.0.2.3\n");
  }
  CHECK(::access((root + "/run/resolver").c_str(), F_OK) != 0); // the image is untouched
  (void)std::system(("rm -rf " + root).c_str());
}

TEST_CASE("egress without root: the NAT and the filter in the caller's user namespace",
          "[local][network][rootless][userns]") {
  struct stat tun {};
  if (::stat("/dev/net/tun", &tun) != 0 || (tun.st_mode & 0006) != 0006)
    SANDBOX_SKIP("/dev/net/tun is not open to every user (Debian's udev makes it 0666)");
  hello_server host("127.0.0.1");
  REQUIRE(host.ok());
  const std::string image = busybox_root_with_linked_resolv();
  REQUIRE_FALSE(image.empty());
  // Root's image: its /etc is not the caller's to change.
  REQUIRE(std::system(("chmod -R a+rX " + image).c_str()) == 0);
  auto out = in_child([&](int fd) {
    if (!become_nobody()) return put(fd, "error", "could not drop to 65534");
    auto made = Box::try_run(
        sandbox::SandboxOptions{.network = network_mode::egress, .network_allow = {"127.0.0.0/8"}},
        sandbox::local_transport::shared());
    if (!made)
      return put(fd, made.error().is(errc::unsupported) ? "unsupported" : "error",
                 made.error().message);
    put(fd, "allowed", probe(made.value(), "10.0.2.2", host.port()));
    auto blocked = Box::try_run(sandbox::SandboxOptions{.network = network_mode::egress},
                                sandbox::local_transport::shared());
    if (!blocked) return put(fd, "error", blocked.error().message);
    put(fd, "blocked", probe(blocked.value(), "10.0.2.2", host.port()).substr(0, 7));
    // Its /etc is not this root's to change: it starts, with the image's own resolv.conf.
    auto linked =
        Box::try_run(sandbox::SandboxOptions{.image = image, .network = network_mode::egress},
                     sandbox::local_transport::shared());
    if (!linked) return put(fd, "error", linked.error().message);
    put(fd, "resolv", sh(linked.value(), "readlink /etc/resolv.conf"));
  });
  auto m = parse(out);
  if (m.count("unsupported")) SANDBOX_SKIP("user namespaces: " + m["unsupported"]);
  INFO(out);
  CHECK(m.count("error") == 0);
  CHECK(m["allowed"] == "hello|");
  CHECK(m["blocked"] == "refused");
  CHECK(m["resolv"] == "../run/resolver/resolv.conf|");
  (void)std::system(("rm -rf " + image).c_str());
}

TEST_CASE("network options are checked", "[local][network]") {
  auto r = Box::try_run(sandbox::SandboxOptions{.network_allow = {"10.0.0.0/8"}},
                        sandbox::local_transport::shared());
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::validation);
  CHECK(r.error().message.find("network_allow is for network_mode::egress") != std::string::npos);
  for (const char* bad :
       {"10.0.0.1/8", "256.1.1.1", "1.2.3", "1.2.3.4/33", "01.2.3.4", "::1", "a.b.c.d", ""}) {
    auto b = Box::try_run(
        sandbox::SandboxOptions{.network = network_mode::egress, .network_allow = {bad}},
        sandbox::local_transport::shared());
    REQUIRE_FALSE(b);
    CHECK(b.error().code == errc::validation);
    CHECK(b.error().message.find("network_allow") != std::string::npos);
  }
}
