// SPDX-License-Identifier: MIT
// Network egress figures: TCP connect latency and download throughput from a server on the
// host's loopback, measured by the same Python client run on the host (baseline), in a sandbox
// with network_mode::host, and in one with network_mode::egress (through slirp4netns, the
// loopback allowed, reached at the NAT's gateway).
// Usage: network_bench [connects] [MiB]   (default 200 connects, 256 MiB)
#include <sandbox/local.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "network_bench: %s\n", what.c_str());
  std::exit(1);
}

/// A loopback server: each connection gets `bytes` bytes, then the connection is closed.
class server {
public:
  explicit server(std::size_t bytes) : bytes_(bytes) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 128) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      die("cannot listen on loopback");
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      std::string chunk(1 << 20, 'x');
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        for (std::size_t sent = 0; sent < bytes_;) {
          ssize_t w = ::write(c, chunk.data(), std::min(chunk.size(), bytes_ - sent));
          if (w <= 0) break;
          sent += static_cast<std::size_t>(w);
        }
        ::close(c);
      }
    });
  }
  ~server() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  [[nodiscard]] int port() const { return port_; }

private:
  std::size_t bytes_;
  int fd_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

/// The client: "lat HOST PORT N" prints the median connect+first-byte time in ms; "get HOST PORT"
/// prints MB/s of one download to its end.
constexpr const char* client = R"(
import socket, sys, time
mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "lat":
    ts = []
    for _ in range(int(sys.argv[4])):
        t = time.perf_counter()
        s = socket.create_connection((host, port)); s.recv(1); s.close()
        ts.append(time.perf_counter() - t)
    ts.sort(); print("%.3f" % (ts[len(ts) // 2] * 1000))
else:
    s = socket.create_connection((host, port)); t = time.perf_counter(); n = 0
    while True:
        b = s.recv(1 << 20)
        if not b: break
        n += len(b)
    print("%.0f" % (n / (time.perf_counter() - t) / 1e6))
)";

std::string on_host(const std::vector<std::string>& args) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) die("pipe");
  std::vector<std::string> all{"/usr/bin/python3", "-c", client};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  pid_t pid = -1;
  if (posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) != 0) die("python3");
  posix_spawn_file_actions_destroy(&fa);
  ::close(p[1]);
  std::string out;
  char buf[256];
  for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) > 0;)
    out.append(buf, static_cast<std::size_t>(n));
  ::close(p[0]);
  ::waitpid(pid, nullptr, 0);
  while (!out.empty() && out.back() == '\n')
    out.pop_back();
  return out;
}

std::string in_box(sandbox::NoexceptSandbox& box, const std::vector<std::string>& args) {
  std::vector<std::string> argv{"python3", "-c", client};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = box.exec(argv).result();
  if (!r || r.value().returncode != 0)
    die("client in the sandbox failed: " + (r ? r.value().stderr_text : r.error().message));
  std::string out = r.value().stdout_text;
  while (!out.empty() && out.back() == '\n')
    out.pop_back();
  return out;
}

} // namespace

int main(int argc, char** argv) {
  const int connects = argc > 1 ? std::atoi(argv[1]) : 200;
  const std::size_t mib = argc > 2 ? static_cast<std::size_t>(std::atoi(argv[2])) : 256;
  server one(1), bulk(mib << 20);
  const std::string n = std::to_string(connects), lat = std::to_string(one.port()),
                    get = std::to_string(bulk.port());
  auto host_box = sandbox::NoexceptSandbox::try_run({.network = sandbox::network_mode::host});
  auto nat_box = sandbox::NoexceptSandbox::try_run(
      {.network = sandbox::network_mode::egress, .network_allow = {"127.0.0.1/32"}});
  if (!host_box) die(host_box.error().message);
  if (!nat_box) die(nat_box.error().message);
  std::printf("TCP from a server on the host's loopback (%d connects; %zu MiB download)\n",
              connects, mib);
  std::printf("%-44s %14s %14s\n", "client", "connect ms", "download MB/s");
  std::printf("%-44s %14s %14s\n", "baseline: on the host",
              on_host({"lat", "127.0.0.1", lat, n}).c_str(),
              on_host({"get", "127.0.0.1", get}).c_str());
  std::printf("%-44s %14s %14s\n", "sandbox, network_mode::host",
              in_box(host_box.value(), {"lat", "127.0.0.1", lat, n}).c_str(),
              in_box(host_box.value(), {"get", "127.0.0.1", get}).c_str());
  std::printf("%-44s %14s %14s\n", "sandbox, network_mode::egress (slirp4netns)",
              in_box(nat_box.value(), {"lat", "10.0.2.2", lat, n}).c_str(),
              in_box(nat_box.value(), {"get", "10.0.2.2", get}).c_str());
  auto start = std::chrono::steady_clock::now();
  {
    auto b = sandbox::NoexceptSandbox::try_run({.network = sandbox::network_mode::egress});
    if (!b) die(b.error().message);
    auto r = b.value().exec({"true"}).result();
    if (!r) die(r.error().message);
  }
  auto egress_cold =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  start = std::chrono::steady_clock::now();
  {
    auto b = sandbox::NoexceptSandbox::try_run({});
    if (!b) die(b.error().message);
    auto r = b.value().exec({"true"}).result();
    if (!r) die(r.error().message);
  }
  auto none_cold =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("cold start + exec(true) + stop: egress %.1f ms, none %.1f ms (one each)\n",
              egress_cold, none_cold);
  return 0;
}
