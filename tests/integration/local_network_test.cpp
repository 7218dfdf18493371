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
/// and a link-local range: host side .1, namespace side .2 of each /30.
struct test_netns {
  std::string name = "sbxt" + sandbox::detail::random_id("", 8);
  std::string veth = "sv" + name.substr(4);
  std::string priv = "10.213." + std::to_string(std::rand() % 200 + 10) + ".";
  bool ok = false;
  test_netns() {
    std::string cmd = "ip netns add " + name + " && ip link add " + veth +
                      " type veth peer name eth0 netns " + name + " && ip addr add " + priv +
                      "1/30 dev " + veth + " && ip addr add 169.254.213.1/30 dev " + veth +
                      " && ip link set " + veth + " up && ip -n " + name + " addr add " + priv +
                      "2/30 dev eth0 && ip -n " + name +
                      " addr add 169.254.213.2/30 dev eth0 && ip -n " + name +
                      " link set eth0 up && ip -n " + name + " link set lo up";
    ok = std::system((cmd + " 2>/dev/null").c_str()) == 0;
  }
  test_netns(const test_netns&) = delete;
  ~test_netns() {
    (void)std::system(
        ("ip link del " + veth + " 2>/dev/null; ip netns del " + name + " 2>/dev/null").c_str());
  }
};

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

TEST_CASE("egress: the host's loopback only when allowed, through the NAT's gateway",
          "[local][network]") {
  hello_server host("127.0.0.1");
  REQUIRE(host.ok());
  {
    auto box = make_box({.network = network_mode::egress});
    CHECK(probe(box, "10.0.2.2", host.port()).substr(0, 7) == "refused");
    CHECK(probe(box, "127.0.0.1", host.port()).substr(0, 7) == "refused"); // its own loopback
    CHECK(sh(box, "cat /etc/resolv.conf") == "nameserver 10.0.2.3\n");
    CHECK(nat_children() == 1);
    // Its root cannot lift the filter: no CAP_NET_ADMIN.
    CHECK(sh(box, "nft flush ruleset 2>&1").find("Operation not permitted") != std::string::npos);
    CHECK(probe(box, "10.0.2.2", host.port()).substr(0, 7) == "refused");
  }
  CHECK(host.accepted() == 0);
  CHECK(nat_children() == 0); // the NAT ended with the sandbox
  auto allowed = make_box({.network = network_mode::egress, .network_allow = {"127.0.0.1/32"}});
  CHECK(probe(allowed, "10.0.2.2", host.port()) == "hello\n");
  CHECK(host.accepted() == 1);
}

TEST_CASE("egress: private and link-local ranges stay blocked unless allowed", "[local][network]") {
  test_netns ns;
  REQUIRE(ns.ok);
  hello_server priv(ns.priv + "2", ns.name), link(std::string("169.254.213.2"), ns.name);
  REQUIRE(priv.ok());
  REQUIRE(link.ok());
  {
    auto box = make_box({.network = network_mode::egress});
    CHECK(probe(box, ns.priv + "2", priv.port()).substr(0, 7) == "refused");
    CHECK(probe(box, "169.254.213.2", link.port()).substr(0, 7) == "refused");
  }
  CHECK(priv.accepted() == 0);
  CHECK(link.accepted() == 0);
  // Allowed: reached through the NAT (the host routes to the test's namespace).
  auto box = make_box({.network = network_mode::egress, .network_allow = {ns.priv + "0/30"}});
  CHECK(probe(box, ns.priv + "2", priv.port()) == "hello\n");
  CHECK(probe(box, "169.254.213.2", link.port()).substr(0, 7) == "refused");
  CHECK(priv.accepted() == 1);
  // The host's own address on that link is the host, blocked like its loopback.
  hello_server host_side(ns.priv + "1");
  REQUIRE(host_side.ok());
  auto other = make_box({.network = network_mode::egress, .network_allow = {"169.254.213.0/30"}});
  CHECK(probe(other, "169.254.213.2", link.port()) == "hello\n");
  CHECK(probe(other, ns.priv + "1", host_side.port()).substr(0, 7) == "refused");
  CHECK(host_side.accepted() == 0);
  // Without egress, nothing leaves at all.
  auto none = make_box({});
  CHECK(probe(none, ns.priv + "2", priv.port()).substr(0, 7) == "refused");
}

TEST_CASE("egress without root: the NAT and the filter in the caller's user namespace",
          "[local][network][rootless][userns]") {
  struct stat tun {};
  if (::stat("/dev/net/tun", &tun) != 0 || (tun.st_mode & 0006) != 0006)
    SANDBOX_SKIP("/dev/net/tun is not open to every user (Debian's udev makes it 0666)");
  hello_server host("127.0.0.1");
  REQUIRE(host.ok());
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
  });
  auto m = parse(out);
  if (m.count("unsupported")) SANDBOX_SKIP("user namespaces: " + m["unsupported"]);
  INFO(out);
  CHECK(m.count("error") == 0);
  CHECK(m["allowed"] == "hello|");
  CHECK(m["blocked"] == "refused");
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
