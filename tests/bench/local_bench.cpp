// SPDX-License-Identifier: MIT
// Local transport figures, each beside a baseline measured in the same run:
//   cold start  run() -> first exec({"true"}) done      vs  bwrap --unshare-all true, posix_spawn
//   warm exec   exec({"true"}).result() in a live box    vs  posix_spawn + pipes + waitpid
//   stop        stop() of a keep-alive sandbox
// Usage: local_bench [iterations]   (default 200)
#include <sandbox/local.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace {

using clock_type = std::chrono::steady_clock;

struct stats {
  double median_ms, p10_ms, p90_ms;
};

stats measure(int n, const std::function<void()>& f) {
  std::vector<double> t;
  t.reserve(static_cast<std::size_t>(n));
  f(); // warm-up
  for (int i = 0; i < n; ++i) {
    auto a = clock_type::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  auto at = [&](double q) { return t[static_cast<std::size_t>(q * (t.size() - 1))]; };
  return {at(0.5), at(0.1), at(0.9)};
}

void print(const char* what, stats s) {
  std::printf("%-58s median %8.3f ms   p10 %8.3f   p90 %8.3f\n", what, s.median_ms, s.p10_ms,
              s.p90_ms);
}

/// posix_spawn of argv with stdout/stderr pipes, read to EOF, then waitpid: what exec does.
bool spawn_wait(const std::vector<const char*>& argv) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) return false;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], &fa, nullptr, const_cast<char* const*>(argv.data()), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  close(err[1]);
  char buf[4096];
  while (read(out[0], buf, sizeof buf) > 0) {
  }
  while (read(err[0], buf, sizeof buf) > 0) {
  }
  close(out[0]);
  close(err[0]);
  int st = 0;
  if (rc == 0) waitpid(pid, &st, 0);
  return rc == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "local_bench: %s\n", what.c_str());
  std::exit(1);
}

} // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 200;
  using Box = sandbox::NoexceptSandbox;
  std::printf("local transport, %d iterations each\n", n);

  auto spawn = measure(n * 5, [] {
    if (!spawn_wait({"/bin/true", nullptr})) die("posix_spawn /bin/true failed");
  });
  print("baseline: posix_spawn + pipes + waitpid of /bin/true", spawn);

  bool have_bwrap = access("/usr/bin/bwrap", X_OK) == 0;
  stats bwrap{};
  if (have_bwrap) {
    bwrap = measure(n, [] {
      if (!spawn_wait({"/usr/bin/bwrap", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
                       "--unshare-all", "true", nullptr}))
        die("bwrap failed");
    });
    print("baseline: bwrap --ro-bind / / --proc --dev --unshare-all true", bwrap);
  }

  std::vector<Box> keep; // stopped after the clock: stop is measured on its own below
  keep.reserve(static_cast<std::size_t>(n) + 1);
  auto cold = measure(n, [&] {
    auto box = Box::run();
    if (!box) die(box.error().message);
    auto r = box.value().exec({"true"}).result();
    if (!r || r.value().returncode != 0) die("cold exec failed");
    keep.push_back(std::move(box).value());
  });
  keep.clear();
  print("cold start: run() -> first exec(true) done", cold);

  auto stop = measure(n, [] {}); // placeholder replaced below
  {
    std::vector<Box> boxes;
    for (int i = 0; i < n + 1; ++i) {
      auto b = Box::run();
      if (!b) die(b.error().message);
      boxes.push_back(std::move(b).value());
    }
    std::size_t i = 0;
    stop = measure(n, [&] { (void)boxes[i++].stop(); });
  }
  print("stop(): keep-alive sandbox, nothing left afterwards", stop);

  auto made = Box::run();
  if (!made) die(made.error().message);
  Box& box = made.value();
  auto warm = measure(n * 5, [&] {
    auto r = box.exec({"true"}).result();
    if (!r || r.value().returncode != 0) die("warm exec failed");
  });
  print("warm exec: exec({\"true\"}).result() in a running sandbox", warm);

  std::printf("\ncold start / target 3 ms: %.2fx", cold.median_ms / 3.0);
  if (have_bwrap) std::printf("   cold start / bwrap: %.2fx (target <= 0.75x)", cold.median_ms / bwrap.median_ms);
  std::printf("\nwarm exec / posix_spawn: %.2fx (target <= 1.5x)\n", warm.median_ms / spawn.median_ms);

  // The supervisor is cloned without CLONE_VM, so a large caller pays for copying page tables once
  // per sandbox (never per exec). Show it with 256 MiB resident.
  std::vector<char> ballast(256u << 20);
  std::memset(ballast.data(), 1, ballast.size());
  auto cold_big = measure(std::max(n / 4, 10), [] {
    auto b = Box::run();
    if (!b) die(b.error().message);
    if (!b.value().exec({"true"}).result()) die("exec failed");
  });
  auto warm_big = measure(n, [&] { (void)box.exec({"true"}).result(); });
  auto spawn_big = measure(n, [] { (void)spawn_wait({"/bin/true", nullptr}); });
  std::printf("\nwith 256 MiB resident in the caller (%d bytes touched):\n", ballast[4096]);
  print("cold start incl. stop", cold_big);
  print("warm exec", warm_big);
  print("baseline: posix_spawn + pipes + waitpid", spawn_big);
  return 0;
}
