// SPDX-License-Identifier: MIT
// What resource limits (cgroups) cost a local sandbox, each figure beside the same operation
// without limits, measured in the same run with the two interleaved (so that load from other
// processes on the machine falls on both alike):
//   cold start  run() -> first exec({"true"}) done, limits on vs off
//   warm exec   exec({"true"}).result() in a live sandbox, limits on vs off
//   stop        stop() of a keep-alive sandbox (with limits: cgroup removal included)
//   cgroup      the cgroup alone: mkdir + limits, and rmdir (no sandbox)
// Limits: memory 256 MiB, pids 256, cpus 1.0 (all three controllers).
// Usage: local_limits_bench [iterations]   (default 200)
#include <sandbox/local.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
using Box = sandbox::NoexceptSandbox;
namespace cg = sandbox::detail::local::cgroups;

struct samples {
  std::vector<double> ms;
  void add(clock_type::time_point a) {
    ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - a).count());
  }
  double at(double q) {
    std::sort(ms.begin(), ms.end());
    return ms[static_cast<std::size_t>(q * static_cast<double>(ms.size() - 1))];
  }
};

void print(const char* what, samples& s) {
  std::printf("%-44s median %7.3f ms   p10 %7.3f   p90 %7.3f   p99 %7.3f\n", what, s.at(0.5),
              s.at(0.1), s.at(0.9), s.at(0.99));
}

void compare(const char* what, samples& on, samples& off) {
  std::printf("  %s: limits add %+.3f ms to the median (%.2fx)\n", what, on.at(0.5) - off.at(0.5),
              on.at(0.5) / off.at(0.5));
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "local_limits_bench: %s\n", what.c_str());
  std::exit(1);
}

sandbox::SandboxOptions with_limits(bool on) {
  sandbox::SandboxOptions o;
  if (on) {
    o.resources.memory_bytes = 256u << 20;
    o.resources.max_pids = 256;
    o.resources.cpus = 1.0;
  }
  return o;
}

/// run() -> exec(true) done; the sandbox is kept (stopped later, off the clock).
Box cold_start(bool limits, samples& s) {
  auto a = clock_type::now();
  auto box = Box::run(with_limits(limits));
  if (!box) die(box.error().message);
  auto r = box.value().exec({"true"}).result();
  if (!r || r.value().returncode != 0) die("cold exec failed");
  s.add(a);
  return std::move(box).value();
}

} // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 200;
  const cg::layout& l = cg::host_layout();
  std::printf("local sandboxes with and without resource limits, %d iterations each, cgroup v%d", n,
              l.version);
  if (l.version == 1)
    std::printf(" (memory at %s, pids at %s, cpu at %s)", l.v1_mounts[0].c_str(),
                l.v1_mounts[1].c_str(), l.v1_mounts[2].c_str());
  std::printf("\n");

  // Warm-up, and a check that limits work here at all.
  {
    auto a = Box::run(with_limits(true));
    if (!a) die(a.error().message);
    auto b = Box::run(with_limits(false));
    if (!b) die(b.error().message);
  }

  samples cold_on, cold_off, stop_on, stop_off;
  for (int i = 0; i < n; ++i) {
    // Alternate which goes first, so neither always follows the other's teardown.
    bool first = i % 2 == 0;
    Box x = cold_start(first, first ? cold_on : cold_off);
    Box y = cold_start(!first, first ? cold_off : cold_on);
    auto a = clock_type::now();
    (void)x.stop();
    (first ? stop_on : stop_off).add(a);
    a = clock_type::now();
    (void)y.stop();
    (first ? stop_off : stop_on).add(a);
  }
  print("cold start, no limits", cold_off);
  print("cold start, memory + pids + cpu limits", cold_on);
  compare("cold start", cold_on, cold_off);

  samples warm_on, warm_off;
  {
    auto on = Box::run(with_limits(true));
    auto off = Box::run(with_limits(false));
    if (!on || !off) die("run failed");
    for (int i = 0; i < n * 5; ++i) {
      for (bool limits : {i % 2 == 0, i % 2 != 0}) {
        auto a = clock_type::now();
        auto r = (limits ? on : off).value().exec({"true"}).result();
        if (!r || r.value().returncode != 0) die("warm exec failed");
        (limits ? warm_on : warm_off).add(a);
      }
    }
  }
  print("warm exec of true, no limits", warm_off);
  print("warm exec of true, limits", warm_on);
  compare("warm exec", warm_on, warm_off);

  print("stop, no limits", stop_off);
  print("stop, limits (cgroup removal included)", stop_on);
  compare("stop", stop_on, stop_off);

  samples mk, rm;
  sandbox::Resources r = with_limits(true).resources;
  for (int i = 0; i < n; ++i) {
    auto a = clock_type::now();
    auto g = cg::group::create("sbx-bench-" + std::to_string(i), r);
    if (!g) die(g.error().message);
    mk.add(a);
    a = clock_type::now();
    g.value()->remove();
    rm.add(a);
  }
  print("cgroup alone: mkdir + limits (3 controllers)", mk);
  print("cgroup alone: rmdir (3 controllers)", rm);
  return 0;
}
