// SPDX-License-Identifier: MIT
// What the local sandbox's hardening costs, each figure beside a baseline from the same run:
//   warm exec      exec({"true"}) in a live sandbox, commands under the seccomp filter   vs  the
//                  same sandbox machinery without it (A/B interleaved), and posix_spawn
//   syscall-bound  dd bs=1 count=200000 (400 000 read/write calls), with vs without the filter
//   fork-bound     sh forking 200 `true`s (clone is one of the calls the filter inspects)
//   cold start     run() -> exec({"true"}) done -> stop, everything on   vs  bwrap --unshare-all;
//                  and with the host's secrets hidden (the default) vs whole_host_root
//   rootless       the same cold start by an unprivileged caller (user namespace, one overlay
//                  per directory of the root), in a forked child dropped to uid 65534
// Usage: local_security_bench [iterations]   (default 200)
#include "../support/timing.hpp"

#include <sandbox/local.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <grp.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace {

using clock_type = std::chrono::steady_clock;
namespace local = sandbox::local::detail;

using test_support::measure;
using test_support::measure_ab;
using test_support::print;
using test_support::stats;
using test_support::summarize;
using test_support::time_ms;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "local_security_bench: %s\n", what.c_str());
  std::exit(1);
}

bool spawn_wait(const std::vector<const char*>& argv) {
  pid_t pid;
  int out = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out, 1);
  posix_spawn_file_actions_adddup2(&fa, out, 2);
  int rc =
      posix_spawnp(&pid, argv[0], &fa, nullptr, const_cast<char* const*>(argv.data()), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out);
  int st = 0;
  if (rc == 0) ::waitpid(pid, &st, 0);
  return rc == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/// A sandbox from the transport's own building block, with or without the seccomp filter.
std::shared_ptr<local::box> make_box(bool seccomp) {
  auto b = local::box::create(sandbox::detail::random_id("bench-", 8), {}, seccomp);
  if (!b) die("create: " + b.error().message);
  return std::move(b).value();
}

void exec_ok(const std::shared_ptr<local::box>& b, const std::vector<std::string>& argv) {
  auto p = local::process::start(b, argv, {});
  if (!p) die("exec: " + p.error().message);
  auto r = p.value().wait(std::nullopt);
  if (!r || r.value().returncode != 0)
    die("exec " + argv[0] + ": " + (r ? r.value().stderr_text : r.error().message));
}

double cold_start_once(const sandbox::SandboxOptions& o = {}) {
  return time_ms([&] {
    auto box = sandbox::NoexceptSandbox::run(o, sandbox::local_transport::shared());
    if (!box) die("run: " + box.error().message);
    auto r = box.value().exec({"true"}).result();
    if (!r || r.value().returncode != 0) die("cold exec failed");
    (void)box.value().stop(std::chrono::milliseconds(0));
  });
}

/// Cold start by an unprivileged caller, measured in a child dropped to uid 65534.
bool rootless_cold_start(int n, stats& out) {
  int p[2];
  if (::pipe(p) != 0) return false;
  std::fflush(stdout); // or the child prints what is buffered again
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0 || ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0)
      ::_exit(1);
    cold_start_once();
    std::vector<double> t;
    for (int i = 0; i < n; ++i)
      t.push_back(cold_start_once());
    stats s = summarize(std::move(t));
    (void)!::write(p[1], &s, sizeof s);
    ::_exit(0);
  }
  ::close(p[1]);
  bool ok = ::read(p[0], &out, sizeof out) == sizeof out;
  ::close(p[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  return ok;
}

} // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 200;
  if (n < 5) n = 5;
  std::printf("local_security_bench: %d iterations, medians of each\n\n", n);

  auto with = make_box(true), without = make_box(false);
  auto [w, wo] = measure_ab(
      n, [&] { exec_ok(with, {"true"}); }, [&] { exec_ok(without, {"true"}); });
  print("warm exec true, seccomp filter", w);
  print("warm exec true, no filter (baseline)", wo);
  print("posix_spawn true (baseline)", measure(n, [] { spawn_wait({"true", nullptr}); }));
  std::printf("  filter cost per exec: %+.3f ms (%.2fx)\n\n", w.median_ms - wo.median_ms,
              w.median_ms / wo.median_ms);

  int heavy = std::max(5, n / 10);
  std::vector<std::string> dd = {"dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=200000"};
  auto [dw, dwo] = measure_ab(
      heavy, [&] { exec_ok(with, dd); }, [&] { exec_ok(without, dd); });
  print("dd 400k read/write calls, seccomp filter", dw);
  print("dd 400k read/write calls, no filter (baseline)", dwo);
  std::printf("  per call: %+.1f ns\n", (dw.median_ms - dwo.median_ms) * 1e6 / 400000);
  std::vector<std::string> forks = {"sh", "-c",
                                    "i=0; while [ $i -lt 200 ]; do /bin/true; "
                                    "i=$((i+1)); done"};
  auto [fw, fwo] = measure_ab(
      heavy, [&] { exec_ok(with, forks); }, [&] { exec_ok(without, forks); });
  print("sh forking 200 x true, seccomp filter", fw);
  print("sh forking 200 x true, no filter (baseline)", fwo);
  std::printf("  per fork+exec: %+.1f us\n\n", (fw.median_ms - fwo.median_ms) * 1e3 / 200);
  with.reset();
  without.reset();

  std::vector<double> cold;
  cold_start_once();
  for (int i = 0; i < n; ++i)
    cold.push_back(cold_start_once());
  print("cold start run -> exec true -> stop (all protections)", summarize(cold));
  // Hiding the host's secrets from the default root, against the whole host root (A/B).
  std::vector<double> hid, whole;
  for (int i = 0; i < n; ++i) {
    hid.push_back(cold_start_once());
    whole.push_back(cold_start_once({.whole_host_root = true}));
  }
  stats h = summarize(hid), wh = summarize(whole);
  print("cold start, host secrets hidden (default)", h);
  print("cold start, whole_host_root (baseline)", wh);
  std::printf("  hiding costs: %+.3f ms\n", h.median_ms - wh.median_ms);
  bool have_bwrap = spawn_wait({"bwrap", "--ro-bind", "/", "/", "true", nullptr});
  if (have_bwrap)
    print("bwrap --ro-bind / / --proc --dev --unshare-all true (baseline)", measure(n, [] {
            spawn_wait({"bwrap", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
                        "--unshare-all", "true", nullptr});
          }));
  else
    std::printf("bwrap: not installed, no baseline\n");
  stats rootless{};
  if (rootless_cold_start(std::max(5, n / 4), rootless))
    print("cold start as uid 65534 (user namespace, mirrored root)", rootless);
  else
    std::printf("cold start as uid 65534: not possible on this host\n");
  return 0;
}
