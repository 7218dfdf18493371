// SPDX-License-Identifier: MIT
// Resource limits of local sandboxes (cgroups): a memory hog is OOM-killed and says so, a fork
// bomb stops at the pids limit while the host stays responsive, a cpu limit shows in the CPU time
// a busy loop gets, and no cgroup outlives its sandbox, not even when its owner is SIGKILLed.
//
// The host's cgroup version decides which files are checked; the v2 code path also runs against
// a controller-less cgroup2 mount (the hybrid layout's /sys/fs/cgroup/unified) when there is one.
#include <sandbox/local.hpp>

#include <catch2/catch.hpp>

#include <dirent.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using Box = sandbox::NoexceptSandbox;
using sandbox::errc;
using sandbox::State;
namespace cg = sandbox::local::detail::cgroups;

#include "../support/host.hpp"
#include "../support/skip.hpp"

using test_support::eventually;
using test_support::slurp;

namespace {

Box limited(sandbox::Resources r, std::vector<std::string> command = {}) {
  sandbox::SandboxOptions o;
  o.resources = r;
  o.command = std::move(command);
  auto made = Box::run(std::move(o));
  if (!made) FAIL("run failed: " << made.error().message);
  return std::move(made).value();
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

/// Where this process's cgroup of sandbox `id` lives for `controller` (v1), or its v2 directory.
std::string dir_of(const std::string& id, const char* controller = "memory") {
  const cg::layout& l = cg::host_layout();
  std::string base = l.v2_root;
  if (l.version == 1)
    for (unsigned c = 0; c < cg::controller_count; ++c)
      if (std::string(cg::controller_names[c]) == controller) base = l.v1_mounts[c];
  return base + "/sandbox/" + cg::owner_name(cg::self_owner()) + "/" + id;
}

/// Every directory this process's cgroup of sandbox `id` may occupy.
std::vector<std::string> all_dirs_of(const std::string& id) {
  std::vector<std::string> out;
  for (const auto& base : cg::bases(cg::host_layout(), cg::memory | cg::pids | cg::cpu))
    out.push_back(base + "/sandbox/" + cg::owner_name(cg::self_owner()) + "/" + id);
  return out;
}

std::uint64_t number_in(const std::string& path) {
  return std::strtoull(slurp(path).c_str(), nullptr, 10);
}

/// A live (not zombie) process with this host pid.
bool running(long pid) {
  std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  auto p = stat.rfind(')');
  return p != std::string::npos && p + 2 < stat.size() && stat[p + 2] != 'Z';
}

std::vector<long> members(const std::string& dir) {
  std::vector<long> out;
  std::istringstream in(slurp(dir + "/cgroup.procs"));
  for (long pid; in >> pid;)
    out.push_back(pid);
  return out;
}

bool have_cgroups() {
  const cg::layout& l = cg::host_layout();
  if (l.version == 0) return false;
  sandbox::Resources r;
  r.memory_bytes = 64 << 20;
  r.max_pids = 64;
  r.cpus = 1;
  return bool(cg::check_host(l, r));
}

constexpr std::uint64_t mib = 1 << 20;

} // namespace

TEST_CASE("a memory hog is OOM-killed and its result says so", "[local][limits][cgroups]") {
  if (!have_cgroups()) {
    SANDBOX_SKIP("no memory, pids and cpu cgroup controllers on this host");
  }
  sandbox::Resources r;
  r.memory_bytes = 64 * mib;
  auto box = limited(r);

  // The limit is RAM and swap together, and the sandbox does not swap.
  std::string dir = dir_of(box.id());
  if (cg::host_layout().version == 1) {
    CHECK(number_in(dir + "/memory.limit_in_bytes") == 64 * mib);
    if (exists(dir + "/memory.memsw.limit_in_bytes"))
      CHECK(number_in(dir + "/memory.memsw.limit_in_bytes") == 64 * mib);
    CHECK(number_in(dir + "/memory.swappiness") == 0);
  } else {
    CHECK(number_in(dir + "/memory.max") == 64 * mib);
    if (exists(dir + "/memory.swap.max")) CHECK(slurp(dir + "/memory.swap.max") == "0\n");
  }

  // `tail` keeps the whole of an endless line in memory.
  auto hog = box.exec({"tail", "/dev/zero"}).result(60s);
  REQUIRE(hog);
  CHECK(hog.value().returncode == 137);
  CHECK(hog.value().term_signal == SIGKILL);
  CHECK(hog.value().oom_killed);

  // The sandbox survives its hog, and a later command is not blamed for it.
  auto after = box.exec({"true"}).result(10s);
  REQUIRE(after);
  CHECK(after.value().returncode == 0);
  CHECK_FALSE(after.value().oom_killed);
  // A SIGKILL that is not the OOM killer's is not an OOM kill.
  auto killed = box.exec({"sh", "-c", "kill -9 $$"}).result(10s);
  REQUIRE(killed);
  CHECK(killed.value().returncode == 137);
  CHECK_FALSE(killed.value().oom_killed);
  // A shell reports its OOM-killed child as 137: that is an OOM kill of the command too.
  auto wrapped = box.exec({"sh", "-c", "tail /dev/zero; exit $?"}).result(60s);
  REQUIRE(wrapped);
  CHECK(wrapped.value().returncode == 137);
  CHECK(wrapped.value().oom_killed);

  // Under check, the error names the cause.
  sandbox::ExecOptions checked;
  checked.check = true;
  auto failed = box.exec({"tail", "/dev/zero"}, checked).result(60s);
  REQUIRE_FALSE(failed);
  CHECK(failed.error().code == errc::execution);
  CHECK_THAT(failed.error().message, Catch::Contains("memory limit"));
  REQUIRE(failed.error().exec_result);
  CHECK(failed.error().exec_result->oom_killed);
}

TEST_CASE("an OOM-killed main process is reported", "[local][limits][cgroups]") {
  if (!have_cgroups()) {
    SANDBOX_SKIP("no memory cgroup controller on this host");
  }
  sandbox::Resources r;
  r.memory_bytes = 32 * mib;
  auto job = limited(r, {"tail", "/dev/zero"});
  auto done = job.wait_until_complete(60s);
  REQUIRE_FALSE(done);
  CHECK(done.error().code == errc::failed);
  CHECK_THAT(done.error().message, Catch::Contains("memory limit"));
  // The system killed it, not the command itself: FAILED, unlike a main that exits 137.
  CHECK(job.state().value() == sandbox::State::FAILED);
  CHECK(job.returncode() == 137);
  CHECK(job.oom_killed());

  auto fine = limited(r, {"true"});
  CHECK(fine.wait_until_complete(30s));
  CHECK(fine.returncode() == 0);
  CHECK_FALSE(fine.oom_killed());
}

TEST_CASE("files in the sandbox's writable layers count against its memory limit",
          "[local][limits][cgroups]") {
  if (!have_cgroups()) {
    SANDBOX_SKIP("no memory cgroup controller on this host");
  }
  // /tmp (tmpfs) and the root's writable layer (an overlay over tmpfs) are memory: tmpfs pages
  // are charged to the cgroup of the process that writes them, so a writer going past the limit
  // is OOM-killed rather than the host filling up, and the file keeps its pages charged.
  sandbox::Resources r;
  r.memory_bytes = 48 * mib;
  bool v1 = cg::host_layout().version == 1;
  for (std::string path : {"/tmp/fill", "/var/fill"}) {
    INFO(path);
    auto box = limited(r);
    std::string dir = dir_of(box.id());
    auto w = box.exec({"dd", "if=/dev/zero", "of=" + path, "bs=1M", "count=100"}).result(60s);
    REQUIRE(w);
    CHECK(w.value().returncode == 137);
    CHECK(w.value().oom_killed);
    std::uint64_t usage = number_in(dir + (v1 ? "/memory.usage_in_bytes" : "/memory.current"));
    INFO("usage " << usage);
    CHECK(usage <= 48 * mib);
    CHECK(usage > 40 * mib); // the file: nothing else in the sandbox is that big
    std::string peak_file = dir + (v1 ? "/memory.max_usage_in_bytes" : "/memory.peak");
    if (exists(peak_file)) CHECK(number_in(peak_file) <= 48 * mib);
  }
}

TEST_CASE("a fork bomb stops at the pids limit and the host stays responsive",
          "[local][limits][cgroups]") {
  if (!have_cgroups()) {
    SANDBOX_SKIP("no pids cgroup controller on this host");
  }
  constexpr std::uint32_t limit = 32;
  sandbox::Resources r;
  r.max_pids = limit;
  auto box = limited(r);
  std::string dir = dir_of(box.id(), "pids");
  CHECK(number_in(dir + "/pids.max") == limit);

  // A bounded bomb: 2^8 leaves and as many forking shells, far beyond the limit; each level
  // forks until refused. The exec timeout bounds it should the shell retry forever. The bomb
  // runs in a subshell: a shell whose fork is refused exits, and `echo done` (a builtin) must
  // still run in the outer one.
  sandbox::ExecOptions eo;
  eo.timeout = 60s;
  auto bomb = box.exec({"sh", "-c",
                        "b() { if [ $1 -gt 0 ]; then b $(($1-1)) & b $(($1-1)) & wait; "
                        "else sleep 1; fi; }; (b 8) 2>/dev/null; echo done"},
                       eo);
  std::uint64_t most = 0;
  int host_spawns = 0, host_failures = 0;
  auto give_up = std::chrono::steady_clock::now() + 90s;
  while (!bomb.poll() && std::chrono::steady_clock::now() < give_up) {
    most = std::max(most, number_in(dir + "/pids.current"));
    // The host is untouched: this process keeps starting processes while the bomb presses.
    pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    int ws = 0;
    if (child > 0 && ::waitpid(child, &ws, 0) == child && WIFEXITED(ws))
      ++host_spawns;
    else
      ++host_failures;
    std::this_thread::sleep_for(2ms);
  }
  auto res = bomb.result(10s);
  REQUIRE(res);
  CHECK(res.value().stdout_text == "done\n");
  INFO("most processes seen " << most << "; host processes started meanwhile " << host_spawns);
  CHECK(most <= limit);
  if (exists(dir + "/pids.peak")) CHECK(number_in(dir + "/pids.peak") <= limit);
  // It did press against the limit: the kernel refused forks (pids.events counts them).
  CHECK(slurp(dir + "/pids.events") != "max 0\n");
  CHECK(host_spawns > 0);
  CHECK(host_failures == 0);
  // And the sandbox is usable again once the bomb's last shells (each sleeps 1 s) are gone: a
  // command's background processes outlive it, and until then a fork can still be refused.
  CHECK(eventually([&] { return number_in(dir + "/pids.current") <= 1; }));
  auto after = box.exec({"true"}).result(10s);
  INFO((after ? std::string() : after.error().message));
  REQUIRE(after);
  CHECK(after.value().returncode == 0);
}

TEST_CASE("a cpu limit shows in the CPU time a busy loop gets", "[local][limits][cgroups]") {
  if (!have_cgroups()) {
    SANDBOX_SKIP("no cpu cgroup controller on this host");
  }
  sandbox::Resources r;
  r.cpus = 0.25;
  auto box = limited(r);
  std::string dir = dir_of(box.id(), "cpu");
  if (cg::host_layout().version == 1) {
    CHECK(number_in(dir + "/cpu.cfs_quota_us") == 25000);
    CHECK(number_in(dir + "/cpu.cfs_period_us") == 100000);
  } else {
    CHECK(slurp(dir + "/cpu.max") == "25000 100000\n");
  }
  // A busy loop until the quota has throttled it a few times (however loaded the host is), then
  // its own CPU time (utime + stime, in clock ticks), compared with the wall time it had.
  auto start = std::chrono::steady_clock::now();
  auto busy =
      box.exec({"sh", "-c", "while :; do :; done & p=$!; read go; cat /proc/$p/stat; kill $p"},
               {.stdin_pipe = true});
  auto throttled = [&] {
    std::istringstream in(slurp(dir + "/cpu.stat"));
    std::string key;
    std::uint64_t n = 0;
    while (in >> key >> n)
      if (key == "nr_throttled") return n;
    return std::uint64_t{0};
  };
  CHECK(eventually([&] { return throttled() >= 10; }, 120s));
  std::this_thread::sleep_for(1s);
  REQUIRE(busy.write_stdin("go\n"));
  auto run = busy.result(60s);
  double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  REQUIRE(run);
  const std::string& stat = run.value().stdout_text;
  auto p = stat.rfind(')');
  REQUIRE(p != std::string::npos);
  std::istringstream fields(stat.substr(p + 2));
  std::string f;
  std::vector<std::string> v;
  while (fields >> f)
    v.push_back(f);
  REQUIRE(v.size() > 13);
  // After ')': state is field 3, utime 14, stime 15.
  double ticks = std::stod(v[11]) + std::stod(v[12]);
  double cpu_s = ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
  INFO("busy loop got " << cpu_s << " s of CPU in at most " << wall_s
                        << " s with a quota of 0.25 cores");
  // The quota caps it: 25 ms per 100 ms period over its lifetime (at most wall_s), plus the
  // period it started in and the clock tick's rounding. A loaded host may give it less.
  CHECK(cpu_s <= 0.25 * wall_s + 0.025 + 0.02);
  CHECK(cpu_s > 0.0);
}

TEST_CASE("no cgroup of a sandbox remains after it stops", "[local][limits][cgroups]") {
  if (!have_cgroups()) {
    SANDBOX_SKIP("no memory, pids and cpu cgroup controllers on this host");
  }
  sandbox::Resources r;
  r.memory_bytes = 64 * mib;
  r.max_pids = 64;
  r.cpus = 1;

  SECTION("stopped by the caller") {
    auto box = limited(r);
    auto dirs = all_dirs_of(box.id());
    REQUIRE_FALSE(dirs.empty());
    for (const auto& d : dirs) {
      INFO(d);
      CHECK(exists(d));
      CHECK(members(d).size() == 1); // the init only: commands inherit it when they start
    }
    // A command is in the sandbox's cgroups, wherever they are (seen from the host: inside, its
    // cgroup namespace shows them as "/").
    std::atomic<bool> up{false};
    sandbox::ExecOptions eo;
    eo.on_stdout = [&](std::string_view) noexcept { up = true; };
    auto cmd = box.exec({"sh", "-c", "echo up; exec sleep 60"}, eo);
    for (int i = 0; i < 3000 && !up; ++i) { // output is delivered while the caller waits
      (void)cmd.poll();
      std::this_thread::sleep_for(10ms);
    }
    REQUIRE(up);
    for (const auto& d : dirs) {
      INFO(d);
      CHECK(members(d).size() == 2);
    }
    CHECK(cmd.kill());
    CHECK(box.stop());
    for (const auto& d : dirs) {
      INFO(d);
      CHECK_FALSE(exists(d));
      // The owner directory goes with its last sandbox (no other is alive in this test).
      CHECK_FALSE(exists(d.substr(0, d.rfind('/'))));
    }
  }
  SECTION("ended by its main process") {
    auto job = limited(r, {"sh", "-c", "sleep 0.2"});
    auto dirs = all_dirs_of(job.id());
    CHECK(exists(dirs.at(0)));
    CHECK(job.wait_until_complete(30s));
    for (const auto& d : dirs)
      CHECK_FALSE(exists(d));
  }
  SECTION("failed to start") {
    sandbox::SandboxOptions o;
    o.resources = r;
    o.working_dir = "/proc/1/cannot-be-made"; // setup fails after the cgroup is made
    auto made = sandbox::local_transport::shared()->create(o, "");
    REQUIRE_FALSE(made);
    CHECK(made.error().code == errc::failed);
    for (const auto& d : all_dirs_of("x"))
      CHECK_FALSE(exists(d.substr(0, d.rfind('/'))));
  }
}

TEST_CASE("cgroups of a SIGKILLed owner are swept when the transport next starts",
          "[local][limits][cgroups]") {
  if (!have_cgroups()) {
    SANDBOX_SKIP("no memory, pids and cpu cgroup controllers on this host");
  }
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  pid_t owner = ::fork();
  REQUIRE(owner >= 0);
  if (owner == 0) {
    // The owner: a limited sandbox with a command in it, then it waits to be killed.
    ::close(pipe_fds[0]);
    auto t = std::make_shared<sandbox::local_transport>();
    sandbox::SandboxOptions o;
    o.resources.memory_bytes = 64 * mib;
    o.resources.max_pids = 64;
    o.resources.cpus = 1;
    auto made = t->create(o, "");
    if (!made) ::_exit(2);
    auto p = t->exec(made.value().id, std::vector<std::string>{"sleep", "1000"}, {});
    if (!p) ::_exit(3);
    (void)p.value().poll();
    std::string dirs;
    for (const auto& d : all_dirs_of(made.value().id))
      dirs += d + "\n";
    if (::write(pipe_fds[1], dirs.data(), dirs.size()) != static_cast<ssize_t>(dirs.size()))
      ::_exit(4);
    ::close(pipe_fds[1]);
    for (;;)
      ::pause();
  }
  ::close(pipe_fds[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(pipe_fds[0], buf, sizeof buf)) > 0;)
    text.append(buf, static_cast<std::size_t>(n));
  ::close(pipe_fds[0]);
  std::vector<std::string> dirs;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    dirs.push_back(line);
  REQUIRE_FALSE(dirs.empty());

  // Wait until the command runs, then freeze everything in the sandbox so that nothing of it
  // can clean up when its owner dies: the sweep must kill what it finds.
  REQUIRE(eventually([&] { return members(dirs[0]).size() >= 2; }));
  std::vector<long> inside = members(dirs[0]);
  for (long pid : inside)
    ::kill(static_cast<pid_t>(pid), SIGSTOP);
  ::kill(owner, SIGKILL);
  int ws = 0;
  REQUIRE(::waitpid(owner, &ws, 0) == owner);
  CHECK(WIFSIGNALED(ws));
  for (const auto& d : dirs)
    CHECK(exists(d)); // left behind

  // The next process to start the transport (a fresh one: the sweep runs once per process)
  // sweeps them before its first sandbox.
  pid_t next = ::fork();
  REQUIRE(next >= 0);
  if (next == 0) {
    auto t = std::make_shared<sandbox::local_transport>();
    auto made = t->create(sandbox::SandboxOptions{}, "");
    if (!made) ::_exit(2);
    (void)t->stop(made.value().id, 0ms, false);
    ::_exit(0);
  }
  REQUIRE(::waitpid(next, &ws, 0) == next);
  CHECK(WIFEXITED(ws));
  CHECK(WEXITSTATUS(ws) == 0);
  for (const auto& d : dirs) {
    INFO(d);
    CHECK_FALSE(exists(d));
    CHECK_FALSE(exists(d.substr(0, d.rfind('/'))));
  }
  for (long pid : inside) {
    INFO("pid " << pid);
    CHECK(eventually([&] { return !running(pid); }));
  }
}

TEST_CASE("a sweep leaves live owners alone and removes dead ones", "[local][limits][cgroups]") {
  if (!have_cgroups()) {
    SANDBOX_SKIP("no memory cgroup controller on this host");
  }
  const cg::layout& l = cg::host_layout();
  std::string base = cg::bases(l, cg::memory).at(0) + "/sandbox";
  ::mkdir(base.c_str(), 0755);
  cg::owner_id dead = cg::self_owner();
  dead.start += 1; // this pid, another start time: a process that is gone
  cg::owner_id other_ns = cg::self_owner();
  other_ns.start += 1;
  other_ns.pidns += 1; // an owner this process cannot judge
  std::string live_dir = base + "/" + cg::owner_name(cg::self_owner());
  std::string dead_dir = base + "/" + cg::owner_name(dead);
  std::string foreign_dir = base + "/" + cg::owner_name(other_ns);
  for (const auto& d : {live_dir, dead_dir, foreign_dir}) {
    REQUIRE(::mkdir(d.c_str(), 0755) == 0);
    REQUIRE(::mkdir((d + "/sbx-x").c_str(), 0755) == 0);
  }
  // A process left in the dead owner's cgroup is killed before the cgroup is removed.
  pid_t stray = ::fork();
  if (stray == 0) {
    for (;;)
      ::pause();
  }
  REQUIRE(stray > 0);
  REQUIRE(cg::write_text(dead_dir + "/sbx-x/cgroup.procs", std::to_string(stray)) == 0);
  cg::sweep(l);
  int ws = 0;
  CHECK(::waitpid(stray, &ws, 0) == stray);
  CHECK((WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL));
  CHECK_FALSE(exists(dead_dir));
  for (const auto& d : {live_dir, foreign_dir}) {
    CHECK(exists(d + "/sbx-x"));
    ::rmdir((d + "/sbx-x").c_str());
    ::rmdir(d.c_str());
  }
}

TEST_CASE("the cgroup v2 code path on a cgroup2 mount", "[local][limits][cgroup2]") {
  // The hybrid layout mounts a cgroup2 hierarchy without controllers at /sys/fs/cgroup/unified;
  // on a v2 host the real hierarchy is tested by the cases above.
  if (cg::read_text("/proc/self/mountinfo").find(" /sys/fs/cgroup/unified ") == std::string::npos ||
      !exists("/sys/fs/cgroup/unified/cgroup.procs")) {
    SANDBOX_SKIP("no cgroup2 mount at /sys/fs/cgroup/unified");
  }
  cg::layout l;
  l.version = 2;
  l.v2_root = "/sys/fs/cgroup/unified";
  l.v2_controllers = cg::read_text(l.v2_root + "/cgroup.controllers");

  // A limit whose controller is not there is refused, naming it.
  if (!cg::has_word(l.v2_controllers, "memory")) {
    sandbox::Resources r;
    r.memory_bytes = 64 * mib;
    auto refused = cg::group::create("sbx-v2", r, l);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == errc::unsupported);
    CHECK_THAT(refused.error().message, Catch::Contains("'memory'"));
    CHECK_THAT(refused.error().message, Catch::Contains("/sys/fs/cgroup/unified"));
  }

  // Create, attach, count, remove (killing what is left: cgroup.kill).
  auto made = cg::group::create("sbx-v2", sandbox::Resources{}, l);
  REQUIRE(made);
  auto& g = *made.value();
  REQUIRE(g.dirs().size() == 1);
  std::string dir = g.dirs()[0];
  CHECK(dir == l.v2_root + "/sandbox/" + cg::owner_name(cg::self_owner()) + "/sbx-v2");
  pid_t child = ::fork();
  if (child == 0) {
    for (;;)
      ::pause();
  }
  REQUIRE(child > 0);
  REQUIRE(g.attach(child));
  CHECK_THAT(slurp("/proc/" + std::to_string(child) + "/cgroup"),
             Catch::Contains("0::/sandbox/" + cg::owner_name(cg::self_owner()) + "/sbx-v2\n"));
  CHECK(g.oom_kills() == 0);
  g.remove();
  int ws = 0;
  CHECK(::waitpid(child, &ws, 0) == child);
  CHECK((WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL));
  CHECK_FALSE(exists(dir));
  CHECK_FALSE(exists(dir.substr(0, dir.rfind('/'))));

  // The sweep on v2: a dead owner's cgroup with a process in it.
  cg::owner_id dead = cg::self_owner();
  dead.start += 1;
  std::string dead_dir = l.v2_root + "/sandbox/" + cg::owner_name(dead);
  REQUIRE(::mkdir(dead_dir.c_str(), 0755) == 0);
  REQUIRE(::mkdir((dead_dir + "/sbx-y").c_str(), 0755) == 0);
  pid_t stray = ::fork();
  if (stray == 0) {
    for (;;)
      ::pause();
  }
  REQUIRE(stray > 0);
  REQUIRE(cg::write_text(dead_dir + "/sbx-y/cgroup.procs", std::to_string(stray)) == 0);
  cg::sweep(l);
  CHECK(::waitpid(stray, &ws, 0) == stray);
  CHECK((WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL));
  CHECK_FALSE(exists(dead_dir));
}

TEST_CASE("limits the host or the kernel cannot take are clear errors", "[local][limits]") {
  auto t = sandbox::local_transport::shared();
  auto create_with = [&](sandbox::Resources r) {
    sandbox::SandboxOptions o;
    o.resources = r;
    return t->create(o, "");
  };
  sandbox::Resources r;
  r.memory_bytes = 4096;
  auto tiny = create_with(r);
  REQUIRE_FALSE(tiny);
  CHECK(tiny.error().code == errc::validation);
  CHECK_THAT(tiny.error().message, Catch::Contains("memory_bytes"));
  r = {};
  r.max_pids = 1;
  auto one = create_with(r);
  REQUIRE_FALSE(one);
  CHECK(one.error().code == errc::validation);
  CHECK_THAT(one.error().message, Catch::Contains("max_pids"));
  for (double cpus : {-1.0, 0.001, std::numeric_limits<double>::quiet_NaN(),
                      std::numeric_limits<double>::infinity()}) {
    r = {};
    r.cpus = cpus;
    auto bad = create_with(r);
    INFO("cpus " << cpus);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code == errc::validation);
    CHECK_THAT(bad.error().message, Catch::Contains("cpus"));
  }

  // A pids limit above the kernel's own (PID_MAX_LIMIT) can never bind: it is no limit.
  if (have_cgroups()) {
    r = {};
    r.max_pids = 4000000000u;
    auto huge = cg::group::create("sbx-huge-pids", r);
    REQUIRE(huge);
    CHECK(slurp(huge.value()->dirs().at(0) + "/pids.max") == "max\n");
  }

  // A host without the controller: the error names it and what the host lacks.
  r = {};
  r.memory_bytes = 64 * mib;
  cg::layout v1_without_memory;
  v1_without_memory.version = 1;
  v1_without_memory.v1_mounts[1] = "/sys/fs/cgroup/pids";
  auto missing = cg::check_host(v1_without_memory, r);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == errc::unsupported);
  CHECK_THAT(missing.error().message, Catch::Contains("'memory'"));
  CHECK_THAT(missing.error().message, Catch::Contains("cgroup v1"));
  cg::layout v2_without_memory;
  v2_without_memory.version = 2;
  v2_without_memory.v2_root = "/sys/fs/cgroup";
  v2_without_memory.v2_controllers = "cpuset cpu io pids\n";
  missing = cg::check_host(v2_without_memory, r);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == errc::unsupported);
  CHECK_THAT(missing.error().message, Catch::Contains("'memory'"));
  CHECK_THAT(missing.error().message, Catch::Contains("cpuset cpu io pids"));
  cg::layout none;
  missing = cg::check_host(none, r);
  REQUIRE_FALSE(missing);
  CHECK_THAT(missing.error().message, Catch::Contains("no cgroup filesystem"));
  // Without limits nothing is asked of the host.
  CHECK(cg::check_host(none, sandbox::Resources{}));
}

TEST_CASE("limits asked by a caller that is not root are a clear error",
          "[local][limits][cgroups]") {
  if (!have_cgroups()) {
    SANDBOX_SKIP("no memory cgroup controller on this host");
  }
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(fds[0]);
    // As nobody: a sandbox in a user namespace, but no right to make cgroups.
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0 || ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0)
      ::_exit(2);
    auto t = std::make_shared<sandbox::local_transport>();
    sandbox::SandboxOptions o;
    o.resources.memory_bytes = 64 * mib;
    auto made = t->create(o, "");
    std::string out = made ? std::string("created")
                           : std::to_string(made.error().code.value()) + " " + made.error().message;
    (void)!::write(fds[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[1024];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;)
    out.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int ws = 0;
  REQUIRE(::waitpid(child, &ws, 0) == child);
  REQUIRE(WIFEXITED(ws));
  REQUIRE(WEXITSTATUS(ws) == 0);
  INFO(out);
  // Unsupported (a refusal that will not go away, so never retried): whether from the cgroup
  // or, where user namespaces are off, from the clone.
  CHECK(out.rfind(std::to_string(static_cast<int>(errc::unsupported)) + " ", 0) == 0);
  if (out.find("cgroup") != std::string::npos)
    CHECK_THAT(out, Catch::Contains("resource limits need root"));
}

TEST_CASE("the host's cgroup v1 mounts are read from mountinfo", "[local][limits]") {
  cg::layout l;
  cg::parse_v1_mounts("31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
                      "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup "
                      "cgroup rw,cpu,cpuacct\n"
                      "35 31 0:32 / /sys/fs/cgroup/mem\\040ory rw,relatime - cgroup cgroup "
                      "rw,memory\n"
                      "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup "
                      "rw,xattr,name=systemd\n"
                      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
                      l);
  CHECK(l.v1_mounts[0] == "/sys/fs/cgroup/mem ory");
  CHECK(l.v1_mounts[1].empty()); // no pids hierarchy
  CHECK(l.v1_mounts[2] == "/sys/fs/cgroup/cpu,cpuacct");
  CHECK(cg::field_value("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n", "oom_kill") == 7);
  CHECK(cg::field_value("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n",
                        "oom_kill") == 2);
  auto o = cg::parse_owner("123-456-789");
  REQUIRE(o);
  CHECK(o->pid == 123);
  CHECK(o->start == 456);
  CHECK(o->pidns == 789);
  CHECK_FALSE(cg::parse_owner("123-456"));
  CHECK_FALSE(cg::parse_owner("cgroup.procs"));
  CHECK_FALSE(cg::parse_owner("1-2-3x"));
}
