// SPDX-License-Identifier: MIT
// HTTP transport figures, each beside the local transport measured in the same run. The server
// is sandbox/server.hpp over the local transport on an ephemeral loopback port (what sandboxd
// runs), in this process; client and server share the machine's cores.
//   warm exec   exec({"true"}).result() over HTTP       vs  the same on the local transport
//   round trip  GetSandbox over HTTP (the protocol's floor)
//   stdout      256 MiB of stdout over HTTP             vs  the same on the local transport
// Usage: http_bench [iterations]   (default 300)
#include "../support/loopback_server.hpp"

#include <sandbox/local.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>

namespace {

using clock_type = std::chrono::steady_clock;
using remote_box = sandbox::basic_sandbox<sandbox::testing::test_http_transport,
                                          sandbox::testing::test_retry, sandbox::return_errors>;

struct stats {
  double median_ms, p10_ms, p90_ms;
};

/// Runs `a` and `b` alternately (so that both see the same load), `n` times each.
std::pair<stats, stats> measure_pair(int n, const std::function<void()>& a,
                                     const std::function<void()>& b) {
  std::vector<double> ta, tb;
  for (int i = 0; i < 10; ++i)
    a(), b(); // warm-up: connections, page cache
  auto time = [](const std::function<void()>& f) {
    auto t0 = clock_type::now();
    f();
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
  };
  for (int i = 0; i < n; ++i) {
    ta.push_back(time(a));
    tb.push_back(time(b));
  }
  auto summary = [](std::vector<double>& t) {
    std::sort(t.begin(), t.end());
    auto at = [&](double q) {
      return t[static_cast<std::size_t>(q * static_cast<double>(t.size() - 1))];
    };
    return stats{at(0.5), at(0.1), at(0.9)};
  };
  return {summary(ta), summary(tb)};
}

/// CPU time (user + system) this process has used, in ms: the client and the server's threads,
/// not the sandboxes. Less sensitive to other load on the machine than wall time.
double cpu_ms() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto ms = [](timeval t) { return static_cast<double>(t.tv_sec) * 1e3 + t.tv_usec / 1e3; };
  return ms(u.ru_utime) + ms(u.ru_stime);
}

/// CPU ms of this process per call of `f`, over `n` calls.
double cpu_per_call(int n, const std::function<void()>& f) {
  double a = cpu_ms();
  for (int i = 0; i < n; ++i)
    f();
  return (cpu_ms() - a) / n;
}

void print(const char* what, stats s) {
  std::printf("%-44s median %8.3f ms   p10 %8.3f   p90 %8.3f\n", what, s.median_ms, s.p10_ms,
              s.p90_ms);
}

template <class Box>
void exec_true(Box& box) {
  auto r = box.exec({"true"}).result();
  if (!r || r.value().returncode != 0) {
    std::fprintf(stderr, "exec failed: %s\n", r ? "non-zero exit" : r.error().message.c_str());
    std::exit(1);
  }
}

/// Seconds to run a command printing `bytes` to stdout, and the bytes received.
template <class Box>
std::pair<double, std::size_t> stdout_run(Box& box, std::size_t bytes) {
  auto a = clock_type::now();
  auto r =
      box.exec({"head", "-c", std::to_string(bytes), "/dev/zero"}, {.max_output_bytes = bytes + 1})
          .result();
  double s = std::chrono::duration<double>(clock_type::now() - a).count();
  if (!r) {
    std::fprintf(stderr, "stdout run failed: %s\n", r.error().message.c_str());
    std::exit(1);
  }
  return {s, r.value().stdout_text.size()};
}

} // namespace

int run(int n) {

  sandbox::testing::loopback_server service;
  auto client = service.client();
  auto local_made = sandbox::NoexceptSandbox::run({}, sandbox::local_transport::shared());
  auto remote_made = remote_box::run({}, client);
  if (!local_made || !remote_made) {
    std::fprintf(stderr, "cannot start sandboxes: %s\n",
                 (!local_made ? local_made.error() : remote_made.error()).message.c_str());
    return 1;
  }
  auto& local = local_made.value();
  auto& remote = remote_made.value();

  std::printf("exec of `true` in a running sandbox (%d runs each, alternating)\n", n);
  auto [l, h] = measure_pair(
      n, [&] { exec_true(local); }, [&] { exec_true(remote); });
  auto rt = measure_pair(
                n,
                [&] {
                  if (!client->get(remote.id())) std::exit(1);
                },
                [] {})
                .first;
  print("  local transport (baseline)", l);
  print("  HTTP to the server on loopback", h);
  print("  GetSandbox round trip over HTTP", rt);
  double cl = cpu_per_call(n, [&] { exec_true(local); });
  double ch = cpu_per_call(n, [&] { exec_true(remote); });
  std::printf("  CPU time in this process per exec: local %.3f ms, HTTP %.3f ms (client and "
              "server: %+.3f ms)\n",
              cl, ch, ch - cl);
  double over = h.median_ms - l.median_ms;
  std::printf("  HTTP overhead: %+.3f ms (target <= +0.300 ms) -> %s\n", over,
              over <= 0.3 ? "met" : "NOT met");

  const std::size_t bytes = std::size_t{256} << 20;
  std::printf("\n256 MiB of stdout from one command (best of 3)\n");
  double best_local = 1e9, best_http = 1e9, cpu_local = 0, cpu_http = 0;
  for (int i = 0; i < 3; ++i) {
    double c0 = cpu_ms();
    auto [ls, lb] = stdout_run(local, bytes);
    double c1 = cpu_ms();
    auto [hs, hb] = stdout_run(remote, bytes);
    cpu_local += (c1 - c0) / 3;
    cpu_http += (cpu_ms() - c1) / 3;
    if (lb != bytes || hb != bytes) {
      std::fprintf(stderr, "short output: local %zu, http %zu\n", lb, hb);
      return 1;
    }
    best_local = std::min(best_local, ls);
    best_http = std::min(best_http, hs);
  }
  double mb = static_cast<double>(bytes) / 1e6;
  std::printf("  local transport (baseline)                 %8.0f MB/s  (%.3f s)\n",
              mb / best_local, best_local);
  std::printf("  HTTP to the server on loopback             %8.0f MB/s  (%.3f s)  target >= 300 "
              "MB/s -> %s\n",
              mb / best_http, best_http, mb / best_http >= 300 ? "met" : "NOT met");
  std::printf("  CPU time in this process per run: local %.0f ms, HTTP %.0f ms (client and "
              "server)\n",
              cpu_local, cpu_http);
  return 0;
}

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 300;
  if (n < 10) n = 10;
  // Everything runs on a thread other than main, as the server's requests do: on the main
  // thread, glibc trims the heap after each command and the local transport's output buffers
  // are page-faulted in again every time, which would skew the baseline.
  int rc = 1;
  std::thread([&] { rc = run(n); }).join();
  return rc;
}
