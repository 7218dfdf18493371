// SPDX-License-Identifier: MIT
// The machine's ceiling for output, measured beside each figure that is compared with it.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace test_support {

/// Seconds `bytes` (whole MiB) take through a plain pipe, `dd | dd` with 1 MiB blocks; negative
/// when dd failed. With CPUs given, the writer runs on `writer_cpu` and the reader on
/// `reader_cpu`.
inline double pipe_seconds(std::size_t bytes, int writer_cpu = -1, int reader_cpu = -1) {
  auto on = [](int cpu) {
    return cpu < 0 ? std::string() : "taskset -c " + std::to_string(cpu) + " ";
  };
  const std::string cmd = on(writer_cpu) +
                          "dd if=/dev/zero bs=1M count=" + std::to_string(bytes >> 20) +
                          " status=none | " + on(reader_cpu) + "dd of=/dev/null bs=1M status=none";
  const auto t0 = std::chrono::steady_clock::now();
  if (std::system(cmd.c_str()) != 0) return -1;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// The pipe's limit in MB/s, each placement the best of `tries`. Left to the scheduler, `dd | dd`
/// ran both ends on one CPU in some runs and on two in others, at twice the speed on one
/// (3.6-3.9 GB/s against 1.8-2.1 on a 2-CPU VM): a ratio to whichever it happened to be said
/// little. So both are measured, pinned, and figures are compared with the better one.
struct pipe_limit {
  double one_cpu = 0;  ///< both ends on the first CPU this process may use
  double two_cpus = 0; ///< writer and reader on the first two (0 with a single CPU)
  double placed = 0;   ///< plain `dd | dd`, unpinned: wherever the scheduler runs it
  [[nodiscard]] double best() const { return std::max(one_cpu, two_cpus); }
};

/// Measures `pipe_limit` with `bytes` (whole MiB) per run; one_cpu is negative when dd failed.
inline pipe_limit measure_pipe_limit(std::size_t bytes, int tries = 3) {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE && cpus.size() < 2; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  if (cpus.empty()) cpus.push_back(0);
  pipe_limit best;
  const double mb = static_cast<double>(bytes) / 1e6;
  for (int i = 0; i < tries; ++i) {
    const double one = pipe_seconds(bytes, cpus[0], cpus[0]);
    if (one < 0) return {-1, -1};
    best.one_cpu = std::max(best.one_cpu, mb / one);
    if (cpus.size() < 2) continue;
    const double two = pipe_seconds(bytes, cpus[0], cpus[1]);
    if (two < 0) return {-1, -1};
    best.two_cpus = std::max(best.two_cpus, mb / two);
  }
  for (int i = 0; i < tries; ++i) {
    const double placed = pipe_seconds(bytes);
    if (placed < 0) return {-1, -1};
    best.placed = std::max(best.placed, mb / placed);
  }
  return best;
}

/// Loopback TCP's limit in MB/s, the best of `tries`: `bytes` through one connection on
/// 127.0.0.1, written and read 1 MiB at a time by two threads of this process (the floor under
/// any remote transport measured on loopback); negative when a socket call failed.
inline double tcp_loopback_limit(std::size_t bytes, int tries = 3) {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 1) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(listener);
    return -1;
  }
  constexpr std::size_t chunk = std::size_t{1} << 20;
  double best = -1;
  for (int i = 0; i < tries; ++i) {
    // Connected before the writer starts (the listener's backlog takes it), so that neither end
    // can wait for the other forever.
    const int to = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (to < 0) break;
    if (::connect(to, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(to);
      break;
    }
    const int from = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (from < 0) {
      ::close(to);
      break;
    }
    bool sent_all = false;
    const auto t0 = std::chrono::steady_clock::now();
    std::thread writer([&] {
      const std::vector<char> block(chunk, 'x');
      std::size_t done = 0;
      while (done < bytes) {
        const ssize_t k = ::write(to, block.data(), std::min(chunk, bytes - done));
        if (k <= 0) break;
        done += static_cast<std::size_t>(k);
      }
      sent_all = done == bytes;
      ::shutdown(to, SHUT_WR);
    });
    std::vector<char> block(chunk);
    std::size_t got = 0;
    for (ssize_t k = 0; (k = ::read(from, block.data(), chunk)) > 0;)
      got += static_cast<std::size_t>(k);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ::shutdown(from, SHUT_RDWR); // a writer still writing (the read failed) stops
    writer.join();
    ::close(to);
    ::close(from);
    if (!sent_all || got != bytes) break;
    best = std::max(best, static_cast<double>(bytes) / 1e6 / s);
  }
  ::close(listener);
  return best;
}

} // namespace test_support
