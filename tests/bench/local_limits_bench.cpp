// SPDX-License-Identifier: MIT
// What resource limits (cgroups) cost a local sandbox, each figure beside the same operation
// without limits, measured in the same run with the two interleaved (so that load from other
// processes on the machine falls on both alike):
//   cold start  run() -> first exec({"true"}) done: no limits, memory + pids, memory + pids + cpu
//   warm exec   exec({"true"}).result() in a live sandbox, limits on vs off
//   stop        stop() of a keep-alive sandbox (with limits: cgroup removal included)
//   cgroup      the cgroup alone: mkdir + limits, and rmdir (no sandbox)
// Limits: memory 256 MiB, pids 256, cpus 1.0 (elsewhere all three controllers).
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
namespace cg = sandbox::local::detail::cgroups;

struct samples {
  std::vector<double> ms;
  void add(clock_type::time_point a) {
    ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - a).count());
  }
  /// The q-quantile (kept in measuring order: compare pairs them).
  [[nodiscard]] double at(double q) const {
    std::vector<double> v = ms;
    std::sort(v.begin(), v.end());
    return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))];
  }
};

void print(const char* what, const samples& s) {
  std::printf("%-44s median %7.3f ms   p10 %7.3f   p90 %7.3f   p99 %7.3f\n", what, s.at(0.5),
              s.at(0.1), s.at(0.9), s.at(0.99));
}

/// Medians, and the median of the differences of the pairs measured back to back: the load of a
/// shared machine drifts, and the pairs see the same load.
void compare(const char* what, const samples& on, const samples& off) {
  samples diff;
  for (std::size_t i = 0; i < on.ms.size() && i < off.ms.size(); ++i)
    diff.ms.push_back(on.ms[i] - off.ms[i]);
  double paired = diff.at(0.5);
  std::printf("  %s: limits add %+.3f ms to the median (%.2fx); median of paired differences "
              "%+.3f ms\n",
              what, on.at(0.5) - off.at(0.5), on.at(0.5) / off.at(0.5), paired);
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "local_limits_bench: %s\n", what.c_str());
  std::exit(1);
}

/// 0: no limits; 1: memory + pids; 2: memory + pids + cpu.
sandbox::SandboxOptions with_limits(int level) {
  sandbox::SandboxOptions o;
  if (level >= 1) {
    o.resources.memory_bytes = 256u << 20;
    o.resources.max_pids = 256;
  }
  if (level >= 2) o.resources.cpus = 1.0;
  return o;
}

/// run() -> exec(true) done; the sandbox is kept (stopped later, off the clock).
Box cold_start(int limits, samples& s) {
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
    auto a = Box::run(with_limits(2));
    if (!a) die(a.error().message);
    auto b = Box::run(with_limits(0));
    if (!b) die(b.error().message);
  }

  samples cold[3], stop[3];
  for (int i = 0; i < n; ++i) {
    // Rotate which goes first, so that none always follows another's teardown.
    std::vector<Box> boxes;
    for (int k = 0; k < 3; ++k) {
      int level = (i + k) % 3;
      boxes.push_back(cold_start(level, cold[level]));
    }
    for (int k = 0; k < 3; ++k) {
      auto a = clock_type::now();
      (void)boxes[static_cast<std::size_t>(k)].stop();
      stop[(i + k) % 3].add(a);
    }
  }
  samples &cold_on = cold[2], &cold_off = cold[0], &stop_on = stop[2], &stop_off = stop[0];
  print("cold start, no limits", cold_off);
  print("cold start, memory + pids limits", cold[1]);
  print("cold start, memory + pids + cpu limits", cold_on);
  compare("cold start, memory + pids", cold[1], cold_off);
  compare("cold start, memory + pids + cpu", cold_on, cold_off);

  samples warm_on, warm_off;
  {
    auto on = Box::run(with_limits(2));
    auto off = Box::run(with_limits(0));
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
  sandbox::Resources r = with_limits(2).resources;
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
