// SPDX-License-Identifier: MIT
// The scenarios on the local transport, and what only a local sandbox can show: isolation from
// the host, orphan reaping, multi-threaded callers, and that nothing outlives a sandbox.
#include <sandbox/sandbox.hpp>

struct local_env {
  using box = sandbox::NoexceptSandbox;
  static std::shared_ptr<sandbox::local_transport> transport() {
    return sandbox::local_transport::shared();
  }
};
#define SANDBOX_SCENARIO_ENVS local_env
#include "scenarios.hpp"

#include <dirent.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

using namespace std::chrono_literals;
using sandbox::errc;
using scenarios::keep_alive;

#include "../support/host.hpp"
#include "../support/sandbox_helpers.hpp"

using test_support::children_named;
using test_support::count_marked;
using test_support::eventually;
using test_support::launchers_of;
using test_support::slurp;
using test_support::status_hex_field;
using test_support::zombie_children;

namespace {

std::string run_out(local_env::box& box, std::vector<std::string> argv) {
  auto r = box.exec(std::move(argv)).result();
  if (!r) return "error: " + r.error().message;
  return r.value().stdout_text;
}

} // namespace

TEST_CASE("the sandbox has its own hostname, pid space and network", "[local][isolation]") {
  auto box = keep_alive<local_env>();
  CHECK(run_out(box, {"hostname"}) == box.id() + "\n");
  // PID 1 is the sandbox's own init; the test process is invisible inside.
  CHECK(run_out(box, {"cat", "/proc/1/comm"}) == "sandbox-init\n");
  std::string pids = run_out(box, {"sh", "-c", "ls -d /proc/[0-9]* | wc -l"});
  CHECK(std::stoi(pids) <= 4); // init, sh, ls (and wc)
  auto self = run_out(
      box, {"sh", "-c",
            "test -e /proc/" + std::to_string(getpid()) + " && echo visible || echo hidden"});
  if (getpid() > 10) CHECK(self == "hidden\n");
  // Only loopback, and it is up.
  CHECK(run_out(box, {"ls", "/sys/class/net"}) == "lo\n");
  CHECK(run_out(box, {"cat", "/sys/class/net/lo/operstate"}) != "down\n");
}

TEST_CASE("writes inside never reach the host", "[local][isolation]") {
  auto box = keep_alive<local_env>();
  std::string name = "/etc/sandbox-probe-" + box.id();
  auto w =
      box.exec({"sh", "-c",
                "echo x > " + name + " && echo y > /tmp/probe-" + box.id() + " && cat " + name})
          .result();
  REQUIRE(w);
  CHECK(w.value().stdout_text == "x\n");
  CHECK(access(name.c_str(), F_OK) != 0);
  CHECK(access(("/tmp/probe-" + box.id()).c_str(), F_OK) != 0);
  // Another sandbox does not see them either.
  auto other = keep_alive<local_env>();
  CHECK(run_out(other, {"sh", "-c", "cat " + name + " 2>/dev/null || echo absent"}) == "absent\n");
  // /dev holds only the usual safe nodes.
  CHECK(run_out(box, {"ls", "/dev"}) ==
        "fd\nfull\nnull\nptmx\npts\nrandom\nshm\nstderr\nstdin\nstdout\ntty\nurandom\nzero\n");
}

TEST_CASE("PID 1 reaps orphans without stealing exit codes", "[local][process]") {
  auto box = keep_alive<local_env>();
  for (int i = 0; i < 5; ++i) {
    auto r = box.exec({"sh", "-c", "(sleep 0.05 &) ; exit 7"}).result();
    REQUIRE(r);
    CHECK(r.value().returncode == 7);
  }
  // The orphaned sleeps are reaped: no zombie remains.
  CHECK(eventually([&] {
    return run_out(box, {"sh", "-c",
                         "cat /proc/[0-9]*/stat 2>/dev/null | awk '$3==\"Z\"' | wc -l"}) == "0\n";
  }));
}

namespace {
void on_usr2(int) {}
} // namespace

TEST_CASE("commands start with default signal dispositions whatever the caller set",
          "[local][process]") {
  // What the caller ignores, catches, or asks of SIGCHLD (SA_NOCLDWAIT would reap commands before
  // PID 1 sees them exit): the supervisor is a copy of the caller, made while these are set.
  // A sandbox first, so that what this process finds out once (and forks for) is done without.
  REQUIRE(local_env::box::run());
  struct sigaction ign {
  }, handler{}, nocldwait{}, old_usr1{}, old_usr2{}, old_chld{};
  ign.sa_handler = SIG_IGN;
  handler.sa_handler = on_usr2;
  nocldwait.sa_handler = SIG_DFL;
  nocldwait.sa_flags = SA_NOCLDWAIT;
  REQUIRE(sigaction(SIGUSR1, &ign, &old_usr1) == 0);
  REQUIRE(sigaction(SIGUSR2, &handler, &old_usr2) == 0);
  REQUIRE(sigaction(SIGCHLD, &nocldwait, &old_chld) == 0);
  // Signal 33, glibc's own (its sigaction refuses it), ignored through the bare system call as a
  // parent's SIG_IGN would be inherited across exec.
  unsigned long ign33[4] = {reinterpret_cast<unsigned long>(SIG_IGN), 0, 0, 0}, old33[4] = {};
  REQUIRE(syscall(SYS_rt_sigaction, 33, ign33, old33, 8) == 0);
  auto made = local_env::box::run();
  REQUIRE(syscall(SYS_rt_sigaction, 33, old33, nullptr, 8) == 0);
  sigaction(SIGUSR1, &old_usr1, nullptr);
  sigaction(SIGUSR2, &old_usr2, nullptr);
  sigaction(SIGCHLD, &old_chld, nullptr);
  REQUIRE(made);
  auto& box = made.value();
  // With a deadline: a command reaped unseen never ends for the caller.
  auto shown = box.exec({"cat", "/proc/self/status"}).result(10s);
  REQUIRE(shown);
  const std::string& status = shown.value().stdout_text;
  CHECK(status.find("SigIgn:\t0000000000000000\n") != std::string::npos);
  // PID 1 itself: a handler left there could run in a command's child before its execve (which
  // resets handlers, so the command's own SigCgt shows nothing).
  auto init = box.exec({"cat", "/proc/1/status"}).result(10s);
  REQUIRE(init);
  const std::string& init_status = init.value().stdout_text;
  CHECK(status_hex_field(init_status, "SigIgn") == 0); // SIGUSR1 and 33 among them
  CHECK((status_hex_field(init_status, "SigCgt") & (1ull << (SIGUSR2 - 1))) == 0);
  for (int i = 0; i < 3; ++i) {
    auto r = box.exec({"sh", "-c", "exit 5"}).result(10s);
    REQUIRE(r);
    CHECK(r.value().returncode == 5);
  }
}

TEST_CASE("a command killed by a signal reports it", "[local][process]") {
  auto box = keep_alive<local_env>();
  auto p = box.exec({"sleep", "30"});
  CHECK(p.kill(SIGTERM));
  auto r = p.result(10s);
  REQUIRE(r);
  CHECK(r.value().returncode == 128 + SIGTERM);
  CHECK(r.value().term_signal == SIGTERM);
  auto self = box.exec({"sh", "-c", "kill -KILL $$"}).result();
  REQUIRE(self);
  CHECK(self.value().term_signal == SIGKILL);
  CHECK(self.value().returncode == 137);
}

TEST_CASE("result(timeout) gives up waiting without killing the command", "[local][process]") {
  auto box = keep_alive<local_env>();
  auto p = box.exec({"sh", "-c", "sleep 0.5; echo done"});
  auto early = p.result(50ms);
  REQUIRE_FALSE(early);
  CHECK(early.error().is(errc::timeout));
  CHECK_FALSE(p.poll());
  auto later = p.result(10s);
  REQUIRE(later);
  CHECK(later.value().stdout_text == "done\n");
}

TEST_CASE("stdin is /dev/null unless asked for, and then delivered whole", "[local][process]") {
  auto box = keep_alive<local_env>();
  CHECK(run_out(box, {"sh", "-c", "cat; echo eof"}) == "eof\n");
  auto p = box.exec({"sh", "-c", "wc -c; sha256sum </dev/null >/dev/null"}, {.stdin_pipe = true});
  std::string big(3 << 20, 'a'); // larger than any pipe buffer
  CHECK(p.write_stdin(big));
  CHECK(p.close_stdin());
  auto r = p.result(30s);
  REQUIRE(r);
  CHECK(r.value().stdout_text == std::to_string(big.size()) + "\n");
}

TEST_CASE("sandboxes work from a multi-threaded caller", "[local][threads]") {
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      auto made = local_env::box::run({}, local_env::transport());
      if (!made) return;
      for (int i = 0; i < 5; ++i) {
        auto r = made.value().exec({"sh", "-c", "echo " + std::to_string(t * 10 + i)}).result();
        if (r && r.value().stdout_text == std::to_string(t * 10 + i) + "\n") ++ok;
      }
    });
  for (auto& th : threads)
    th.join();
  CHECK(ok == 20);
}

TEST_CASE("nothing of a sandbox remains after stop", "[local][cleanup]") {
  std::string mounts_before = slurp("/proc/self/mountinfo");
  std::string marker = "SANDBOX_TEST_MARK=" + sandbox::detail::random_id("", 16);
  auto eq = marker.find('=');
  {
    auto box = keep_alive<local_env>();
    auto bg = box.exec({"sh", "-c", "sleep 300 & sleep 300"},
                       {.env = {{marker.substr(0, eq), marker.substr(eq + 1)}}});
    CHECK(eventually([&] { return count_marked(marker) == 3; }));
    CHECK(box.stop(2s));
    // stop returned: no process is left (checked at once, not eventually)
    CHECK(count_marked(marker) == 0);
  }
  CHECK(slurp("/proc/self/mountinfo") == mounts_before);
}

TEST_CASE("a sandbox leaving scope is stopped", "[local][cleanup]") {
  std::string marker = "SANDBOX_TEST_MARK=" + sandbox::detail::random_id("", 16);
  auto eq = marker.find('=');
  {
    auto box = keep_alive<local_env>();
    auto bg = box.exec({"sleep", "300"}, {.env = {{marker.substr(0, eq), marker.substr(eq + 1)}}});
    CHECK(eventually([&] { return count_marked(marker) == 1; }));
  }
  CHECK(count_marked(marker) == 0);
}

TEST_CASE("sandboxes die with their owner", "[local][cleanup]") {
  std::string marker = "SANDBOX_TEST_MARK=" + sandbox::detail::random_id("", 16);
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    auto eq = marker.find('=');
    auto made = local_env::box::run({}, local_env::transport());
    if (!made) _exit(1);
    auto p = made.value().exec({"sleep", "300"},
                               {.env = {{marker.substr(0, eq), marker.substr(eq + 1)}}});
    (void)p.poll();
    char c = 'r';
    (void)!write(ready[1], &c, 1);
    pause();
    _exit(0);
  }
  close(ready[1]);
  char c = 0;
  CHECK(read(ready[0], &c, 1) == 1);
  close(ready[0]);
  CHECK(eventually([&] { return count_marked(marker) == 1; }));
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  CHECK(eventually([&] { return count_marked(marker) == 0; }));
}

TEST_CASE("a caller's memory is not write-protected again by every sandbox it starts",
          "[local][memory]") {
  // Supervisors come from a launcher cloned once per process: a caller that writes its memory
  // after each run() pays a fault per page once in its life, not after every sandbox (each page
  // a copy: 8192 faults here, 0.3 s for 64 MiB on a virtual machine).
  auto m = test_support::parse(test_support::in_child([](int fd) {
    constexpr std::size_t n = std::size_t{32} << 20;
    std::vector<char> heap(n, 1);
    volatile char* mem = heap.data();
    auto rewrite = [&] {
      rusage a{}, b{};
      getrusage(RUSAGE_SELF, &a);
      for (std::size_t i = 0; i < n; i += 4096)
        mem[i] = static_cast<char>(mem[i] + 1);
      getrusage(RUSAGE_SELF, &b);
      return static_cast<std::uint64_t>(b.ru_minflt - a.ru_minflt);
    };
    rewrite(); // shared with the suite's process since the fork: private again
    auto first = local_env::box::run({}, local_env::transport());
    if (!first) return test_support::put(fd, "error", first.error().message);
    test_support::put(fd, "after_first", rewrite()); // the launcher was made then: once
    auto second = local_env::box::run({}, local_env::transport());
    if (!second) return test_support::put(fd, "error", second.error().message);
    test_support::put(fd, "after_second", rewrite());
    auto r = second.value().exec({"true"}).result();
    test_support::put(fd, "exec", r && r.value().returncode == 0 ? "ok" : "failed");
  }));
  INFO("faults: " << m["after_first"] << " after the first sandbox, " << m["after_second"]
                  << " after the second");
  CHECK(m.count("error") == 0);
  CHECK(m["exec"] == "ok");
  CHECK(std::strtoull(m["after_second"].c_str(), nullptr, 10) < 256); // 8192 pages
}

TEST_CASE("the launcher holds none of the caller's files and ends with it", "[local][cleanup]") {
  // A pipe the caller closes must show its reader the end: a copy held open by the launcher (a
  // clone of the caller) would keep it open forever.
  auto m = test_support::parse(test_support::in_child([](int fd) {
    int p[2];
    if (pipe(p) != 0) return test_support::put(fd, "error", "pipe");
    auto box = local_env::box::run({}, local_env::transport());
    if (!box) return test_support::put(fd, "error", box.error().message);
    close(p[1]);
    pollfd w{p[0], POLLIN, 0};
    char c;
    const bool ended = poll(&w, 1, 30000) == 1 && read(p[0], &c, 1) == 0;
    test_support::put(fd, "pipe_ended", ended ? "yes" : "no");
    auto launchers = launchers_of(getpid());
    test_support::put(fd, "launchers", launchers.size());
    if (!launchers.empty()) test_support::put(fd, "launcher", launchers.front());
  }));
  CHECK(m.count("error") == 0);
  CHECK(m["pipe_ended"] == "yes");
  CHECK(m["launchers"] == "1");
  // Its caller gone, it goes too (its socket closed).
  const std::string launcher = "/proc/" + m["launcher"];
  CHECK(eventually([&] {
    auto stat = slurp(launcher + "/stat");
    return stat.empty() || stat.find(") Z ") != std::string::npos;
  }));
}

TEST_CASE("a launcher killed from outside is made again; a forked child gets its own",
          "[local][lifecycle]") {
  auto before = keep_alive<local_env>();
  auto launchers = launchers_of(getpid());
  REQUIRE(launchers.size() == 1);
  CHECK(kill(launchers.front(), SIGKILL) == 0);
  CHECK(eventually([&] { return launchers_of(getpid()).empty(); }));
  auto after = keep_alive<local_env>(); // made again, and the dead one reaped
  CHECK(run_out(after, {"echo", "new"}) == "new\n");
  CHECK(run_out(before, {"echo", "old"}) == "old\n"); // sandboxes it made are not its children
  auto again = launchers_of(getpid());
  REQUIRE(again.size() == 1);
  CHECK(again.front() != launchers.front());
  auto m = test_support::parse(test_support::in_child([](int fd) {
    auto box = local_env::box::run({}, local_env::transport());
    if (!box) return test_support::put(fd, "error", box.error().message);
    test_support::put(fd, "out", run_out(box.value(), {"echo", "child"}));
    test_support::put(fd, "launchers", launchers_of(getpid()).size());
  }));
  CHECK(m.count("error") == 0);
  CHECK(m["out"] == "child|");
  CHECK(m["launchers"] == "1");
  CHECK(launchers_of(getpid()) == again); // the parent's is untouched
  CHECK(run_out(after, {"echo", "still"}) == "still\n");
}

TEST_CASE("the supervisors a launcher made ahead and never used are reaped", "[local][spare]") {
  auto m = test_support::parse(test_support::in_child([](int fd) {
    auto gone = [](int pid) { return slurp("/proc/" + std::to_string(pid) + "/stat").empty(); };
    std::vector<local_env::box> kept;
    auto start = [&](sandbox::SandboxOptions o = {}) {
      auto b = local_env::box::run(std::move(o), local_env::transport());
      if (b) kept.push_back(std::move(b).value());
      return static_cast<bool>(b);
    };
    auto spare = [&] { return test_support::live_spare(getpid(), [&] { start(); }); };
    // A spare comes after a second start with the same namespaces.
    if (!start() || !start()) return test_support::put(fd, "error", "start");
    // A caller that changes what its sandboxes would inherit gets a new launcher: the old one
    // ends, and its spare with it, reaped at once.
    const int old = spare();
    rlimit files{};
    getrlimit(RLIMIT_NOFILE, &files);
    files.rlim_cur -= 1;
    setrlimit(RLIMIT_NOFILE, &files);
    if (!start() || !start()) return test_support::put(fd, "error", "start after the change");
    test_support::put(fd, "old_launchers_spare", old > 0 && gone(old));
    // A spare that does not fit the next request (another network) is discarded, and reaped
    // when that request is answered.
    const int unfit = spare();
    if (!start({.network = sandbox::network_mode::host}))
      return test_support::put(fd, "error", "host network");
    test_support::put(fd, "unfit_spare", unfit > 0 && gone(unfit));
    test_support::put(fd, "zombies", zombie_children(getpid()).size());
  }));
  CHECK(m.count("error") == 0);
  CHECK(m["old_launchers_spare"] == "1");
  CHECK(m["unfit_spare"] == "1");
  CHECK(m["zombies"] == "0");
}

TEST_CASE("a sandbox's commands get the CPUs of the thread that made it", "[local][threads]") {
  auto m = test_support::parse(test_support::in_child([](int fd) {
    auto cpus_of = [](const std::string& status) {
      auto at = status.find("Cpus_allowed_list:\t");
      return at == std::string::npos ? std::string("?")
                                     : status.substr(at + 19, status.find('\n', at) - at - 19);
    };
    cpu_set_t all, one;
    if (sched_getaffinity(0, sizeof all, &all) != 0) return test_support::put(fd, "error", "get");
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    // The first sandbox of this process (its launcher too) made while bound to one CPU.
    if (sched_setaffinity(0, sizeof one, &one) != 0) return test_support::put(fd, "error", "bind");
    auto first = local_env::box::run({}, local_env::transport());
    if (!first) return test_support::put(fd, "error", first.error().message);
    test_support::put(fd, "bound", cpus_of(slurp("/proc/thread-self/status")));
    test_support::put(fd, "bound_box",
                      cpus_of(run_out(first.value(), {"cat", "/proc/self/status"})));
    if (sched_setaffinity(0, sizeof all, &all) != 0)
      return test_support::put(fd, "error", "unbind");
    auto second = local_env::box::run({}, local_env::transport());
    if (!second) return test_support::put(fd, "error", second.error().message);
    test_support::put(fd, "unbound", cpus_of(slurp("/proc/thread-self/status")));
    test_support::put(fd, "unbound_box",
                      cpus_of(run_out(second.value(), {"cat", "/proc/self/status"})));
  }));
  INFO(m["bound"] << " / " << m["unbound"]);
  CHECK(m.count("error") == 0);
  CHECK(m["bound_box"] == m["bound"]);
  CHECK(m["unbound_box"] == m["unbound"]);
}

TEST_CASE("a sandbox never gets a capability its caller has given up since its first",
          "[local][security]") {
  auto m = test_support::parse(test_support::in_child([](int fd) {
    auto first = local_env::box::run({}, local_env::transport()); // the launcher is made here
    if (!first) return test_support::put(fd, "error", first.error().message);
    if (prctl(PR_CAPBSET_DROP, CAP_NET_RAW, 0, 0, 0) != 0)
      return test_support::put(fd, "error", "PR_CAPBSET_DROP");
    test_support::put(fd, "caller", status_hex_field(slurp("/proc/self/status"), "CapBnd"));
    auto second = local_env::box::run({}, local_env::transport());
    if (!second) return test_support::put(fd, "error", second.error().message);
    test_support::put(
        fd, "command",
        status_hex_field(run_out(second.value(), {"cat", "/proc/self/status"}), "CapBnd"));
  }));
  CHECK(m.count("error") == 0);
  const auto caller = std::strtoull(m["caller"].c_str(), nullptr, 10);
  const auto command = std::strtoull(m["command"].c_str(), nullptr, 10);
  INFO(std::hex << "caller's bounding set " << caller << ", a command's " << command);
  CHECK((caller & (1ull << CAP_NET_RAW)) == 0);
  CHECK((command & ~caller) == 0);
}

TEST_CASE("a host-network sandbox made after its caller changed network is in the new one",
          "[local][isolation]") {
  auto m = test_support::parse(test_support::in_child([](int fd) {
    auto first = local_env::box::run({}, local_env::transport()); // the launcher is made here
    if (!first) return test_support::put(fd, "error", first.error().message);
    if (unshare(CLONE_NEWNET) != 0) return test_support::put(fd, "error", "unshare");
    test_support::put(fd, "caller", slurp("/proc/self/net/dev"));
    auto second =
        local_env::box::run({.network = sandbox::network_mode::host}, local_env::transport());
    if (!second) return test_support::put(fd, "error", second.error().message);
    test_support::put(fd, "sandbox", run_out(second.value(), {"cat", "/proc/self/net/dev"}));
  }));
  CHECK(m.count("error") == 0);
  INFO(m["sandbox"]);
  CHECK(m["caller"].find("lo:") != std::string::npos);
  // Only the caller's new loopback, not the interfaces of the network it left.
  CHECK(m["sandbox"].size() == m["caller"].size());
}

TEST_CASE("a sandbox made after its caller chrooted is built from the caller's root",
          "[local][security]") {
  // Made from the launcher's root (the host's), it would show the host's root instead, with its
  // secrets: a caller that cannot make sandboxes from where it is must be refused.
  auto m = test_support::parse(test_support::in_child([](int fd) {
    auto first = local_env::box::run({}, local_env::transport()); // the launcher is made here
    if (!first) return test_support::put(fd, "error", first.error().message);
    char dir[] = "/tmp/sbx-jail-XXXXXX";
    if (!mkdtemp(dir)) return test_support::put(fd, "error", "mkdtemp");
    test_support::put(fd, "jail", dir);
    // A /tmp to stage the sandbox's layer on, as a jail with a system in it has.
    if (mkdir((std::string(dir) + "/tmp").c_str(), 01777) != 0 || chroot(dir) != 0 ||
        chdir("/") != 0)
      return test_support::put(fd, "error", "chroot");
    auto second = local_env::box::run({}, local_env::transport());
    test_support::put(fd, "second", second ? run_out(second.value(), {"ls", "/"}) : "refused");
  }));
  if (!m["jail"].empty()) {
    rmdir((m["jail"] + "/tmp").c_str());
    rmdir(m["jail"].c_str());
  }
  CHECK(m.count("error") == 0);
  CHECK(m["second"] == "refused");
}

TEST_CASE("a child forked while another thread starts a sandbox can start its own",
          "[local][threads]") {
  // The fork copies the launcher's lock as that thread holds it: the child must not wait for it.
  std::atomic<bool> done{false};
  std::thread busy([&] {
    while (!done)
      (void)local_env::box::run({}, local_env::transport());
  });
  int ok = 0;
  std::string why;
  for (int i = 0; i < 10; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1 + i % 3));
    int report[2];
    REQUIRE(pipe2(report, O_CLOEXEC) == 0);
    pid_t child = fork();
    if (child == 0) {
      alarm(10); // a child stuck on a lock dies of SIGALRM
      auto box = local_env::box::run({}, local_env::transport());
      std::string out = box ? run_out(box.value(), {"echo", "x"}) : box.error().message;
      (void)!write(report[1], out.data(), out.size());
      _exit(out == "x\n" ? 0 : 1);
    }
    ::close(report[1]);
    std::string said;
    char buf[512];
    for (ssize_t n; (n = ::read(report[0], buf, sizeof buf)) > 0;)
      said.append(buf, static_cast<std::size_t>(n));
    ::close(report[0]);
    int ws = 0;
    if (child > 0 && waitpid(child, &ws, 0) == child && WIFEXITED(ws) && WEXITSTATUS(ws) == 0)
      ++ok;
    else
      why += "child " + std::to_string(i) + ": status " + std::to_string(ws) + ", said '" + said +
             "'\n";
  }
  done = true;
  busy.join();
  INFO(why);
  CHECK(ok == 10);
}

TEST_CASE("a child forked while another thread holds a lock of the library can start a sandbox",
          "[local][threads]") {
  // The locks every sandbox of a process shares: fork waits for them, so the child finds them
  // free instead of held by a thread it does not have.
  sandbox::detail::fork_safe_mutex* locks[] = {
      &sandbox::local::detail::hidden::layer_cache::process_cache().m,
      &sandbox::local::detail::cgroups::registry().m};
  for (auto* lock : locks) {
    std::atomic<bool> held{false}, end{false};
    std::thread holder([&] {
      {
        std::lock_guard g(*lock);
        held = true;
        std::this_thread::sleep_for(100ms);
      }
      // Alive until the child is done: a thread that had ended (not joined) at the fork would
      // be a leak to a thread sanitizer in the child.
      while (!end)
        std::this_thread::sleep_for(1ms);
    });
    while (!held)
      std::this_thread::yield();
    pid_t child = fork();
    if (child == 0) {
      alarm(10); // a child stuck on the lock dies of SIGALRM
      auto box = local_env::box::run({}, local_env::transport());
      _exit(box && run_out(box.value(), {"echo", "x"}) == "x\n" ? 0 : 1);
    }
    int ws = 0;
    const bool waited = waitpid(child, &ws, 0) == child;
    end = true;
    holder.join();
    REQUIRE(waited);
    CHECK(WIFEXITED(ws));
    CHECK(WEXITSTATUS(ws) == 0);
  }
}

TEST_CASE("max_lifetime terminates the sandbox", "[local][lifecycle]") {
  auto box =
      keep_alive<local_env>(sandbox::SandboxOptions{.max_lifetime = std::chrono::seconds(1)});
  auto start = std::chrono::steady_clock::now();
  auto r = box.wait_until_complete(120s, false);
  CHECK(r);
  // Ended by the lifetime, not by the wait's own timeout.
  CHECK(scenarios::since(start) < 60s);
  CHECK(box.state().value() == sandbox::State::TERMINATED);
}

TEST_CASE("bad options are clear errors", "[local][validation]") {
  auto img = local_env::box::run(sandbox::SandboxOptions{.image = "/no/such/image"},
                                 local_env::transport());
  REQUIRE_FALSE(img);
  CHECK(img.error().is(errc::validation));
  CHECK(img.error().message.find("/no/such/image") != std::string::npos);
  auto wd = local_env::box::run(sandbox::SandboxOptions{.working_dir = "relative"},
                                local_env::transport());
  REQUIRE_FALSE(wd);
  CHECK(wd.error().is(errc::validation));
  CHECK(wd.error().message.find("working_dir") != std::string::npos);
  auto env =
      local_env::box::run(sandbox::SandboxOptions{.env = {{"A=B", "x"}}}, local_env::transport());
  REQUIRE_FALSE(env);
  CHECK(env.error().is(errc::validation));
  auto big = keep_alive<local_env>();
  auto huge = big.exec({"echo", std::string(200 * 1024, 'x')}).result();
  REQUIRE_FALSE(huge);
  CHECK(huge.error().is(errc::validation));
  // A NUL byte in an argument: said by position, in a message that neither carries the NUL
  // nor grows with the command (here 100 KiB).
  auto nul = big.exec({"echo", std::string(100 * 1024, 'x'), std::string("a\0b", 3)}).result();
  REQUIRE_FALSE(nul);
  CHECK(nul.error().is(errc::validation));
  CHECK(nul.error().message.find("argument 2 of 3 holds a NUL byte (at byte 1)") !=
        std::string::npos);
  CHECK(nul.error().message.size() < 1000);
  CHECK(nul.error().message.find('\0') == std::string::npos);
  // A working directory with a NUL byte is refused, not cut short at it.
  auto cwd = big.exec({"pwd"}, {.cwd = std::string("/tmp\0/etc", 9)}).result();
  REQUIRE_FALSE(cwd);
  CHECK(cwd.error().is(errc::validation));
  CHECK(cwd.error().message.find("cwd") != std::string::npos);
}

TEST_CASE("files can be written and read back, and paths stay inside", "[local][files]") {
  auto box = keep_alive<local_env>();
  std::string all;
  for (int i = 0; i < 256; ++i)
    all += static_cast<char>(i);
  CHECK(box.write_file("/tmp/bytes", all));
  auto back = box.read_file("/tmp/bytes");
  REQUIRE(back);
  CHECK(back.value() == all);
  CHECK(run_out(box, {"wc", "-c", "/tmp/bytes"}) == "256 /tmp/bytes\n");
  CHECK(box.read_file("/nope").error().is(errc::file_not_found));
  CHECK(box.read_file("/tmp").error().is(errc::file_is_directory));
  CHECK(box.read_file("relative").error().is(errc::validation));
  // A symlink to the host's files resolves inside the sandbox.
  REQUIRE(
      box.exec({"sh", "-c", "echo inside > /tmp/mark; ln -s /../../tmp/mark /tmp/link"}).result());
  CHECK(box.read_file("/tmp/link").value() == "inside\n");
  CHECK(box.read_file("/proc/1/root/etc/hostname").error().is(errc::file_permission));
}

TEST_CASE("stop waits out the grace period for a command ignoring SIGTERM, then kills it",
          "[local][lifecycle]") {
  std::string marker = "SANDBOX_TEST_MARK=" + sandbox::detail::random_id("", 16);
  auto eq = marker.find('=');
  auto box = keep_alive<local_env>();
  auto p = box.exec({"sh", "-c", "trap '' TERM; sleep 300"},
                    {.env = {{marker.substr(0, eq), marker.substr(eq + 1)}}});
  CHECK(eventually([&] { return count_marked(marker) == 2; }));
  auto start = std::chrono::steady_clock::now();
  CHECK(box.stop(700ms));
  auto took = scenarios::since(start);
  CHECK(took >= 650ms);
  CHECK(took < 150s); // killed after the grace period, not after the command's 300 s
  CHECK(count_marked(marker) == 0);
  auto r = p.result(5s);
  REQUIRE(r);
  CHECK(r.value().term_signal == SIGKILL);
}

TEST_CASE("exec shares the main process's filesystem, processes and network",
          "[local][isolation]") {
  // The main process serves one connection, then waits for /tmp/done: its exit ends the sandbox
  // (and kills every exec), so it must outlive the client's exec.
  auto box = keep_alive<local_env>(sandbox::SandboxOptions{
      .command = {"sh", "-c",
                  "echo from-main > /tmp/main-file; python3 -c \"import socket; "
                  "s = socket.socket(); s.bind(('127.0.0.1', 8765)); s.listen(); "
                  "c, _ = s.accept(); c.sendall(b'hello over loopback'); c.close()\"; "
                  "while [ ! -e /tmp/done ]; do sleep 0.02; done"}});
  CHECK(eventually([&] { return run_out(box, {"cat", "/tmp/main-file"}) == "from-main\n"; }));
  CHECK(eventually([&] {
    return run_out(box, {"sh", "-c", "cat /proc/[0-9]*/comm | grep -c python3"}) == "1\n";
  }));
  auto r = box.exec({"python3", "-c",
                     "import socket, time\n"
                     "for _ in range(200):\n"
                     "    try:\n"
                     "        s = socket.create_connection(('127.0.0.1', 8765)); break\n"
                     "    except OSError: time.sleep(0.05)\n"
                     "print(s.recv(100).decode())"})
               .result();
  REQUIRE(r);
  CHECK(r.value().stdout_text == "hello over loopback\n");
  REQUIRE(box.exec({"touch", "/tmp/done"}).result());
  // The main process exited 0: the sandbox completed.
  CHECK(box.wait_until_complete(10s));
  CHECK(box.returncode() == 0);
}

TEST_CASE("writing stdin to a command that exited is an error, not SIGPIPE", "[local][process]") {
  auto box = keep_alive<local_env>();
  auto p = box.exec({"true"}, {.stdin_pipe = true});
  CHECK(p.wait(10s).value() == 0);
  // The process has exited: the pipe has no reader. Without care this raises SIGPIPE and kills
  // the caller.
  auto w = p.write_stdin(std::string(1 << 20, 'x'));
  CHECK_FALSE(w);
  auto q = box.exec({"sh", "-c", "exec 0<&-; sleep 0.2"}, {.stdin_pipe = true});
  auto w2 = q.write_stdin(std::string(4 << 20, 'x'));
  REQUIRE_FALSE(w2);
  CHECK(w2.error().is(errc::not_running));
  std::string all;
  for (int i = 0; i < 256; ++i)
    all += static_cast<char>(i);
  auto echo = box.exec({"cat"}, {.stdin_pipe = true});
  CHECK(echo.write_stdin(all + all));
  CHECK(echo.close_stdin());
  CHECK(echo.result(10s).value().stdout_text == all + all); // binary-safe
}

TEST_CASE("stdin writes never raise SIGPIPE in the caller", "[local][process]") {
  // Deterministic form of the race above: the reader is gone before the write.
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  close(fds[0]);
  errno = 0;
  CHECK(sandbox::local::detail::write_no_sigpipe(fds[1], "data") == -1);
  CHECK(errno == EPIPE);
  sigset_t pending;
  sigpending(&pending);
  CHECK(sigismember(&pending, SIGPIPE) == 0); // consumed, not left to fire later
  close(fds[1]);
}

TEST_CASE("waits on an ended sandbox return at once, and stop keeps how it ended",
          "[local][lifecycle]") {
  auto job = local_env::box::run(sandbox::SandboxOptions{.command = {"/no/such/program"}},
                                 local_env::transport());
  REQUIRE(job);
  CHECK(eventually([&] { return job.value().state().value() == sandbox::State::FAILED; }));
  // The end was already observed: a long wait must not sleep out its timeout.
  auto start = std::chrono::steady_clock::now();
  CHECK(job.value().wait_until_complete(std::chrono::hours(1)).error().is(errc::failed));
  CHECK(scenarios::since(start) < 10min);
  CHECK(job.value().stop());
  CHECK(job.value().state().value() == sandbox::State::FAILED);
  // stop() of a sandbox that ended on its own keeps COMPLETED (not TERMINATED).
  auto ended = local_env::box::run(sandbox::SandboxOptions{.command = {"sh", "-c", "exit 4"}},
                                   local_env::transport());
  REQUIRE(ended);
  CHECK(eventually([&] { return ended.value().state().value() == sandbox::State::COMPLETED; }));
  CHECK(ended.value().stop());
  CHECK(ended.value().state().value() == sandbox::State::COMPLETED);
  CHECK(ended.value().returncode() == 4);
  CHECK(ended.value().wait_until_complete(1h));
}

TEST_CASE("a sandbox whose init is killed from outside fails, saying so", "[local][lifecycle]") {
  // The main command carries a marker in its environment: its parent on the host is the
  // sandbox's init.
  std::string marker = "SANDBOX_TEST_MARK=" + sandbox::detail::random_id("", 12);
  auto job = local_env::box::run(
      sandbox::SandboxOptions{.command = {"sleep", "infinity"},
                              .env = {{"SANDBOX_TEST_MARK", marker.substr(marker.find('=') + 1)}}},
      local_env::transport());
  REQUIRE(job);
  pid_t init = 0;
  REQUIRE(eventually([&] {
    DIR* d = opendir("/proc");
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
      std::string dir = std::string("/proc/") + e->d_name;
      if (slurp(dir + "/environ").find(marker) == std::string::npos) continue;
      std::string stat = slurp(dir + "/stat");
      auto close = stat.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream rest(stat.substr(close + 2));
      std::string state;
      rest >> state >> init;
    }
    closedir(d);
    return init > 0;
  }));
  REQUIRE(slurp("/proc/" + std::to_string(init) + "/comm") == "sandbox-init\n");
  REQUIRE(kill(init, SIGKILL) == 0);
  auto r = job.value().wait_until_complete(60s);
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::failed));
  CHECK_THAT(r.error().message, Catch::Contains("killed from outside"));
  CHECK(job.value().state().value() == sandbox::State::FAILED);
}

TEST_CASE("a timed wait returns while the command keeps writing", "[local][process]") {
  auto box = keep_alive<local_env>();
  auto p = box.exec({"sh", "-c", "yes"}, {.max_output_bytes = 1024});
  auto start = std::chrono::steady_clock::now();
  auto r = p.result(300ms);
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::timeout)); // returned at all: the output never stops
  CHECK(scenarios::since(start) >= 250ms);
  CHECK_FALSE(p.poll()); // returns too: it never blocks
  CHECK(p.kill());
  CHECK(p.result(10s).value().term_signal == SIGKILL);
}

TEST_CASE("stdin a command never read is reported, not dropped", "[local][process]") {
  auto box = keep_alive<local_env>();
  auto p = box.exec({"true"}, {.stdin_pipe = true});
  CHECK(p.wait(10s).value() == 0);
  auto w = p.write_stdin("data");
  REQUIRE_FALSE(w);
  CHECK(w.error().is(errc::not_running));
}
