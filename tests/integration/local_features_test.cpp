// SPDX-License-Identifier: MIT
// Local transport capabilities beyond the shared scenarios: streaming output, bounded output,
// root filesystem images, large files, listing, and a soak of create/exec/stop cycles that
// counts what could leak.
#include <sandbox/detail/unique_fd.hpp>
#include <sandbox/local.hpp>

#include <catch2/catch.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using Box = sandbox::NoexceptSandbox;
using sandbox::errc;

#include "../support/host.hpp"
#include "../support/skip.hpp"

using test_support::slurp;

namespace {

Box keep_alive(sandbox::SandboxOptions o = {}) {
  auto made = Box::run(std::move(o));
  if (!made) FAIL("run failed: " << made.error().message);
  return std::move(made).value();
}

long status_kib(const char* field) {
  std::istringstream in(slurp("/proc/self/status"));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::atol(line.c_str() + std::strlen(field));
  return -1;
}

int count_entries(const char* dir) {
  int n = 0;
  DIR* d = opendir(dir);
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n;
}

/// This process's children: pid and name (comm).
std::vector<std::pair<pid_t, std::string>> children() {
  std::vector<std::pair<pid_t, std::string>> found;
  std::string me = std::to_string(getpid());
  DIR* d = opendir("/proc");
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::string stat = slurp(std::string("/proc/") + e->d_name + "/stat");
    auto open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    std::string state, ppid;
    rest >> state >> ppid;
    if (ppid == me)
      found.emplace_back(std::atoi(e->d_name), stat.substr(open + 1, close - open - 1));
  }
  closedir(d);
  return found;
}

/// This process's children but its launcher and the supervisor it makes ahead, which come and go
/// with the launcher (and the latter bears the former's name for a moment after its clone).
int count_children() {
  const auto all = children();
  return static_cast<int>(std::count_if(all.begin(), all.end(), [](const auto& child) {
    return child.second != "sandbox-launch" && child.second != "sandbox-spare";
  }));
}

/// A tiny root filesystem made of busybox-static: enough for sh, echo, cat, ls. At `root` (made
/// here), or in a new directory under /tmp.
std::string make_busybox_image(std::string root = {}) {
  char tmpl[] = "/tmp/sandbox-image-XXXXXX";
  if (root.empty())
    root = mkdtemp(tmpl);
  else if (mkdir(root.c_str(), 0755) != 0)
    return {};
  for (const char* d : {"/bin", "/etc", "/proc", "/dev", "/tmp", "/sys"})
    mkdir((root + d).c_str(), 0755);
  std::string cp = "cp /bin/busybox " + root + "/bin/busybox";
  if (std::system(cp.c_str()) != 0) return {};
  for (const char* tool : {"sh", "echo", "cat", "ls", "hostname", "wc"})
    symlink("busybox", (root + "/bin/" + tool).c_str());
  std::ofstream(root + "/etc/image-marker") << "busybox image\n";
  return root;
}

/// The pids of this process's children named `comm`.
std::vector<pid_t> children_named(const std::string& comm) {
  std::vector<pid_t> found;
  for (const auto& [pid, name] : children())
    if (name == comm) found.push_back(pid);
  return found;
}

/// A keep-alive sandbox, and its supervisor's pid (the one child named sandbox-init it added).
std::pair<Box, pid_t> keep_alive_with_supervisor() {
  auto before = children_named("sandbox-init");
  Box box = keep_alive();
  std::vector<pid_t> fresh;
  for (pid_t p : children_named("sandbox-init"))
    if (std::find(before.begin(), before.end(), p) == before.end()) fresh.push_back(p);
  REQUIRE(fresh.size() == 1);
  return {std::move(box), fresh[0]};
}

/// The Cpus_allowed_list line of a /proc status file ("0-1", "0,2-3", ...).
std::string cpus_allowed(const std::string& status) {
  auto at = status.find("Cpus_allowed_list:");
  if (at == std::string::npos) return "?";
  std::istringstream in(status.substr(at + sizeof "Cpus_allowed_list:" - 1));
  std::string list;
  in >> list;
  return list;
}

} // namespace

TEST_CASE("on_stdout receives output while the command runs", "[local][streaming]") {
  auto box = keep_alive();
  std::vector<std::pair<std::string, std::chrono::steady_clock::time_point>> seen;
  std::string err_seen;
  auto r = box.exec({"sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done; echo e >&2"},
                    {.on_stdout =
                         [&](std::string_view chunk) noexcept {
                           seen.emplace_back(std::string(chunk), std::chrono::steady_clock::now());
                         },
                     .on_stderr = [&](std::string_view chunk) noexcept { err_seen += chunk; }})
               .result();
  auto end = std::chrono::steady_clock::now();
  REQUIRE(r);
  CHECK(r.value().stdout_text == "line1\nline2\nline3\n"); // still collected
  CHECK(err_seen == "e\n");
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].first == "line1\n");
  // Lines arrive over time, not at exit.
  CHECK(seen[1].second - seen[0].second >= 150ms);
  CHECK(seen[2].second - seen[1].second >= 150ms);
  CHECK(end - seen[0].second >= 300ms); // the first line came well before the command ended
}

TEST_CASE("a wait ends early when the caller's descriptor is readable, and only then",
          "[local][exec]") {
  // What a server waits with when a command's stdin or its call's cancellation comes from its
  // client: wait_or_wake, and take_or_wake, which hands the output over.
  auto t = sandbox::local_transport::shared();
  auto box = keep_alive();
  for (bool taking : {false, true}) {
    INFO((taking ? "take_or_wake" : "wait_or_wake"));
    auto p = t->exec(box.id(), std::vector<std::string>{"sh", "-c", "sleep 1; echo done"}, {});
    REQUIRE(p);
    auto wait = [&](int fd) {
      return taking ? p.value().take_or_wake(std::nullopt, fd)
                    : p.value().wait_or_wake(std::nullopt, fd);
    };
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    sandbox::detail::unique_fd r_end(fds[0]), w_end(fds[1]);
    REQUIRE(::write(w_end.get(), "x", 1) == 1);
    for (int i = 0; i < 2; ++i) { // polled, never read: it wakes every wait while readable
      auto woken = wait(r_end.get());
      REQUIRE_FALSE(woken);
      CHECK(woken.error().is(errc::timeout)); // still running
    }
    char c = 0;
    REQUIRE(::read(r_end.get(), &c, 1) == 1);
    auto ended = wait(r_end.get()); // nothing to wake it now
    REQUIRE(ended);
    CHECK(ended.value().stdout_text == "done\n");
    // An ended command's result, readable descriptor or not; taken output is gone from it.
    REQUIRE(::write(w_end.get(), "x", 1) == 1);
    auto again = wait(r_end.get());
    REQUIRE(again);
    CHECK(again.value().returncode == 0);
    CHECK(again.value().stdout_text == (taking ? "" : "done\n"));
  }
}

TEST_CASE("max_output_bytes drops but counts, never blocks, and bounds memory", "[local][output]") {
  auto box = keep_alive();
  long rss_before = status_kib("VmRSS:");
  auto r = box.exec({"sh", "-c", "head -c 1073741824 /dev/zero; echo done >&2"},
                    {.timeout = 120s, .max_output_bytes = 1 << 20})
               .result();
  long rss_after = status_kib("VmRSS:");
  REQUIRE(r);
  CHECK(r.value().returncode == 0);
  CHECK(r.value().stdout_text.size() == 1u << 20);
  CHECK(r.value().stdout_truncated);
  CHECK(r.value().stdout_bytes_produced == 1ull << 30);
  CHECK(r.value().stderr_text == "done\n");
  CHECK_FALSE(r.value().stderr_truncated);
  CHECK(rss_after - rss_before < 64 * 1024); // KiB: far below the 1 GiB produced
}

TEST_CASE("an image directory becomes the sandbox's root", "[local][image]") {
  std::string image = make_busybox_image();
  REQUIRE_FALSE(image.empty());
  {
    auto box = keep_alive(sandbox::SandboxOptions{.image = image});
    auto r = box.exec({"sh", "-c", "cat /etc/image-marker; ls /bin | wc -l; echo x > /etc/new"})
                 .result();
    REQUIRE(r);
    CHECK(r.value().stdout_text == "busybox image\n7\n");
    CHECK(r.value().returncode == 0);
    // The image is the read-only lower layer: the write stayed in the sandbox.
    CHECK(access((image + "/etc/new").c_str(), F_OK) != 0);
    auto host_only = box.exec({"/usr/bin/env"}).result();
    REQUIRE(host_only);
    CHECK(host_only.value().returncode == 127);
  }
  std::system(("rm -rf " + image).c_str());
}

TEST_CASE("a container image name without <sandbox/image.hpp> is refused, saying what to include",
          "[local][image]") {
  // This file does not include <sandbox/image.hpp>: the local transport takes directories only.
  for (const char* name : {"python:3.11", "oci:/srv/layout", "docker-archive:/tmp/a.tar"}) {
    auto box = Box::try_run(sandbox::SandboxOptions{.image = name});
    REQUIRE_FALSE(box);
    CHECK(box.error().code == errc::validation);
    CHECK(box.error().message.find("#include <sandbox/image.hpp>") != std::string::npos);
  }
}

TEST_CASE("large files round-trip byte for byte", "[local][files]") {
  auto box = keep_alive();
  std::string data(256u << 20, '\0');
  for (std::size_t i = 0; i < data.size(); i += 4096)
    data[i] = static_cast<char>(i / 4096);
  REQUIRE(box.write_file("/tmp/big", data));
  auto back = box.read_file("/tmp/big");
  REQUIRE(back);
  CHECK(back.value().size() == data.size());
  CHECK(back.value() == data);
  auto size = box.exec({"stat", "-c", "%s", "/tmp/big"}).result();
  REQUIRE(size);
  CHECK(size.value().stdout_text == std::to_string(data.size()) + "\n");
  CHECK(box.write_file("/no/such/dir/file", "x").error().is(errc::file_not_found));
  CHECK(box.write_file("/tmp", "x").error().is(errc::file_is_directory));
}

TEST_CASE("list returns the sandboxes this process owns", "[local][list]") {
  auto a = keep_alive(sandbox::SandboxOptions{.tags = {"list-test", "a"}});
  auto b = keep_alive(sandbox::SandboxOptions{.tags = {"list-test", "b"}});
  auto tagged = Box::list(sandbox::ListFilter{.tags = {"list-test"}});
  REQUIRE(tagged);
  CHECK(tagged.value().size() == 2);
  auto only_a = Box::list(sandbox::ListFilter{.tags = {"list-test", "a"}});
  REQUIRE(only_a);
  REQUIRE(only_a.value().size() == 1);
  CHECK(only_a.value()[0].id == a.id());
  CHECK(b.stop());
  CHECK(Box::list(sandbox::ListFilter{.tags = {"list-test"}}).value().size() == 1);
  CHECK(Box::list(sandbox::ListFilter{.tags = {"list-test"}, .show_terminated = true})
            .value()
            .size() == 2);
  CHECK(a.wait()); // RUNNING already
}

TEST_CASE("create/exec/stop cycles leak no fd, mount or process", "[local][soak]") {
  const char* env = std::getenv("SANDBOX_SOAK_CYCLES");
  const int cycles = env ? std::atoi(env) : 1000;
  auto once = [] {
    auto box = Box::run();
    if (!box) return false;
    auto r = box.value().exec({"true"}).result();
    return r && r.value().returncode == 0 && box.value().stop();
  };
  REQUIRE(once()); // first use may open lasting descriptors (none expected, but not counted)
  int fds = count_entries("/proc/self/fd");
  std::string mounts = slurp("/proc/self/mountinfo");
  int children = count_children();
  int failures = 0;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < cycles; ++i)
    if (!once()) ++failures;
  auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(failures == 0);
  CHECK(count_entries("/proc/self/fd") == fds);
  CHECK(slurp("/proc/self/mountinfo") == mounts);
  CHECK(count_children() == children);
  WARN(cycles << " cycles in " << took << " s");
}

TEST_CASE("sandboxes start while other threads of their client start and end", "[local][threads]") {
  // A supervisor is a clone of one thread of its client. Under ASan it used to wait forever in
  // prctl(PR_SET_NAME) for the sanitizer's thread registry lock, which a thread starting or
  // ending elsewhere held at the clone (within 150 starts, here).
  std::atomic<bool> done{false};
  std::vector<std::thread> churn;
  for (int k = 0; k < 4; ++k)
    churn.emplace_back([&] {
      while (!done)
        std::thread([] {}).join();
    });
  int started = 0;
  for (int i = 0; i < 300; ++i)
    if (auto box = Box::run(); box && box.value().stop()) ++started;
  done = true;
  for (auto& t : churn)
    t.join();
  CHECK(started == 300);
}

TEST_CASE("a stopped or ended sandbox that is still remembered holds no descriptor",
          "[local][soak]") {
  // A server remembers many stopped sandboxes (to answer for them): each must cost no fd.
  auto t = std::make_shared<sandbox::local_transport>();
  {
    auto warm = t->create({}, "");
    REQUIRE(warm);
    REQUIRE(t->stop(warm.value().id, 0ms, false));
  }
  int fds = count_entries("/proc/self/fd");
  std::vector<std::string> ids;
  for (int i = 0; i < 8; ++i) {
    sandbox::SandboxOptions o;
    if (i % 2) o.command = {"true"}; // ends on its own
    auto made = t->create(o, "");
    REQUIRE(made);
    ids.push_back(made.value().id);
  }
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i % 2) {
      auto done = t->wait(ids[i], sandbox::State::COMPLETED, 60s);
      REQUIRE(done);
      CHECK(done.value().state == sandbox::State::COMPLETED);
    } else {
      auto stopped = t->stop(ids[i], 0ms, false);
      REQUIRE(stopped);
      CHECK(stopped.value().state == sandbox::State::TERMINATED);
    }
  }
  CHECK(count_entries("/proc/self/fd") == fds);
  for (const auto& id : ids) {
    auto i = t->get(id); // still answered for
    REQUIRE(i);
    CHECK(sandbox::is_terminal(i.value().state));
    t->release(id);
  }
}

TEST_CASE("mounted files are placed read-only", "[local][files]") {
  std::string all;
  for (int i = 0; i < 256; ++i)
    all += static_cast<char>(i);
  auto box = keep_alive(sandbox::SandboxOptions{
      .mounted_files = {{"/etc/app/config.json", "{\"a\": 1}\n"}, {"/tmp/bytes", all}}});
  CHECK(box.read_file("/etc/app/config.json").value() == "{\"a\": 1}\n");
  CHECK(box.read_file("/tmp/bytes").value() == all);
  auto w = box.exec({"sh", "-c",
                     "echo x >> /etc/app/config.json || echo refused; "
                     "rm -f /etc/app/config.json || echo kept; umount /tmp/bytes "
                     "2>/dev/null || echo mounted"})
               .result();
  REQUIRE(w);
  CHECK(w.value().stdout_text == "refused\nkept\nmounted\n");
  CHECK(box.read_file("/etc/app/config.json").value() == "{\"a\": 1}\n");

  auto bad = Box::run(sandbox::SandboxOptions{.mounted_files = {{"relative/path", "x"}}});
  REQUIRE_FALSE(bad);
  CHECK(bad.error().is(errc::validation));
  CHECK(bad.error().message.find("relative/path") != std::string::npos);
}

TEST_CASE("a mounted file that cannot be placed is named in the error", "[local][files]") {
  // The second entry fails; the message names it, not just the step.
  for (const char* path : {"/etc", "/etc/passwd/under-a-file"}) {
    INFO(path);
    auto bad =
        Box::run(sandbox::SandboxOptions{.mounted_files = {{"/etc/fine", "x"}, {path, "y"}}});
    REQUIRE_FALSE(bad);
    CHECK(bad.error().is(errc::validation));
    CHECK(bad.error().message.find(std::string("mounted files: ") + path + ":") !=
          std::string::npos);
  }
  // One larger than the sandbox's disk: the disk ran out, not the caller's path.
  auto full =
      Box::run(sandbox::SandboxOptions{.resources = {.disk_bytes = 1 << 20},
                                       .mounted_files = {{"/etc/big", std::string(2 << 20, 'b')}}});
  REQUIRE_FALSE(full);
  CHECK(full.error().is(errc::resource_exhausted));
  CHECK(full.error().message.find("/etc/big:") != std::string::npos);
  // Twice the same file, spelt differently: refused before anything starts.
  auto twice = Box::run(
      sandbox::SandboxOptions{.mounted_files = {{"/etc/app/x", "1"}, {"/etc//app/./x", "2"}}});
  REQUIRE_FALSE(twice);
  CHECK(twice.error().is(errc::validation));
  CHECK(twice.error().message.find("already places") != std::string::npos);
}

TEST_CASE("mounted files are counted, and a path that names a directory is refused",
          "[local][files]") {
  std::vector<sandbox::MountedFile> many;
  for (int i = 0; i < 1025; ++i)
    many.push_back({"/etc/many/" + std::to_string(i), "x"});
  auto refused = Box::run(sandbox::SandboxOptions{.mounted_files = many});
  REQUIRE_FALSE(refused);
  CHECK(refused.error().is(errc::validation));
  CHECK(refused.error().message.find("1025 files") != std::string::npos);
  many.pop_back();
  auto box = Box::run(sandbox::SandboxOptions{.mounted_files = many});
  REQUIRE(box);
  auto last = box.value().read_file("/etc/many/1023");
  REQUIRE(last);
  CHECK(last.value() == "x");
  for (const char* dir : {"/..", "/.", "/etc/..", "/etc/."}) {
    INFO(dir);
    auto bad = Box::run(sandbox::SandboxOptions{.mounted_files = {{dir, "x"}}});
    REQUIRE_FALSE(bad);
    CHECK(bad.error().is(errc::validation));
    CHECK(bad.error().message.find("absolute file path") != std::string::npos);
  }
}

TEST_CASE("an image directory under /tmp works however its path is spelt", "[local][image]") {
  std::string image = make_busybox_image();
  REQUIRE_FALSE(image.empty());
  std::string link = image + "-link";
  REQUIRE(::symlink(image.c_str(), link.c_str()) == 0);
  // The private layer goes on /tmp unless the image is there: decided on the resolved path.
  for (const std::string& spelt : {"/" + image, "/tmp/./" + image.substr(5), link}) {
    INFO(spelt);
    auto box = Box::run(sandbox::SandboxOptions{.image = spelt});
    REQUIRE(box);
    auto marker = box.value().read_file("/etc/image-marker");
    REQUIRE(marker);
    CHECK(marker.value() == "busybox image\n");
  }
  ::unlink(link.c_str());
  std::system(("rm -rf " + image).c_str());
}

TEST_CASE("an environment that leaves no room for a command is refused when the sandbox starts",
          "[local]") {
  auto huge = Box::run(sandbox::SandboxOptions{.env = {{"BIG", std::string(200 * 1024, 'x')}}});
  REQUIRE_FALSE(huge);
  CHECK(huge.error().is(errc::validation));
  CHECK(huge.error().message.find("environment") != std::string::npos);
  CHECK(huge.error().message.size() < 600);
  // Just under the limit, a short command still runs with it.
  auto big = Box::run(sandbox::SandboxOptions{.env = {{"BIG", std::string(100 * 1024, 'x')}}});
  REQUIRE(big);
  auto r = big.value().exec({"sh", "-c", "echo ${#BIG}"}).result();
  REQUIRE(r);
  CHECK(r.value().stdout_text == std::to_string(100 * 1024) + "\n");
}

TEST_CASE("an image's symlinks cannot steer mounted files onto the host", "[local][image]") {
  std::string image = make_busybox_image();
  REQUIRE_FALSE(image.empty());
  REQUIRE(symlink("/", (image + "/escape").c_str()) == 0);
  std::string name = "sandbox-escape-" + sandbox::detail::random_id("", 12);
  {
    auto box = keep_alive(sandbox::SandboxOptions{
        .image = image, .mounted_files = {{"/escape/" + name, "inside\n"}}});
    CHECK(box.read_file("/" + name).value() == "inside\n");
  }
  CHECK(access(("/" + name).c_str(), F_OK) != 0);
  std::system(("rm -rf " + image).c_str());
}

TEST_CASE("file errors are typed, and special files never hang or exhaust memory",
          "[local][files]") {
  auto small = std::make_shared<sandbox::local_transport>(
      sandbox::local_transport::options{.max_file_bytes = 1000});
  auto made = Box::run(sandbox::SandboxOptions{.mounted_files = {{"/etc/ro", "fixed"}}}, small);
  REQUIRE(made);
  Box& box = made.value();
  CHECK(box.write_file("/tmp/ok", std::string(1000, 'x')));
  CHECK(box.read_file("/tmp/ok").value().size() == 1000);
  CHECK(box.write_file("/tmp/big", std::string(1001, 'x')));
  auto big = box.read_file("/tmp/big");
  REQUIRE_FALSE(big);
  CHECK(big.error().is(errc::file_too_large));
  CHECK(big.error().message.find("/tmp/big") != std::string::npos);
  CHECK(box.write_file("/etc/ro", "changed").error().is(errc::file_permission));
  CHECK(box.read_file("/etc/ro").value() == "fixed");
  CHECK(box.read_file("/dev/zero").error().is(errc::file_io)); // endless: refused
  REQUIRE(box.exec({"mkfifo", "/tmp/fifo"}).result());
  auto start = std::chrono::steady_clock::now();
  CHECK(box.read_file("/tmp/fifo").error().is(errc::file_io)); // no writer: would block forever
  CHECK(box.write_file("/tmp/fifo", "x").error().is(errc::file_io));
  // Refused at once, not after the transport's file timeout (60 s) ran out.
  CHECK(std::chrono::steady_clock::now() - start < 30s);
  // Kernel interfaces are not files: the caller would read them with its own privileges.
  auto comm = box.read_file("/proc/1/comm");
  REQUIRE_FALSE(comm);
  CHECK(comm.error().is(errc::file_permission));
  CHECK(comm.error().message.find("kernel interface") != std::string::npos);
}

TEST_CASE("the main process's stdout and stderr are the sandbox's log; exec output is not",
          "[local][logs]") {
  // The main writes, waits for /tmp/go, writes again and ends.
  auto made =
      Box::run({"sh", "-c",
                "echo out; echo err >&2; while [ ! -e /tmp/go ]; do sleep 0.01; done; echo after"});
  REQUIRE(made);
  auto& box = made.value();
  // Output of exec never reaches the log.
  REQUIRE(box.exec({"echo", "exec-only"}).result());
  REQUIRE(box.exec({"touch", "/tmp/go"}).result());
  std::string seen;
  auto followed = box.follow_logs([&](std::string_view c) noexcept { seen += c; });
  REQUIRE(followed);
  CHECK(seen == "out\nerr\nafter\n");
  auto all = box.logs();
  REQUIRE(all);
  CHECK(all.value() == seen);
  CHECK(seen.find("exec-only") == std::string::npos);

  // A keep-alive sandbox (no main command) has an empty log.
  auto idle = keep_alive();
  REQUIRE(idle.exec({"sh", "-c", "echo noise; echo noise >&2"}).result());
  auto none = idle.logs();
  REQUIRE(none);
  CHECK(none.value().empty());
}

TEST_CASE("the log keeps the last 1 MiB with offsets that count every byte; a flood of output "
          "neither blocks the main nor the sandbox",
          "[local][logs]") {
  // 4 MiB of numbered lines: the log keeps the last 1 MiB, the offsets count all of it.
  auto made = Box::run({"sh", "-c", "seq 1 500000; echo done"});
  REQUIRE(made);
  auto& box = made.value();
  REQUIRE(box.wait_until_complete(60s));
  auto t = sandbox::local_transport::shared();
  auto read = t->logs(box.id(), 0, 0ms);
  REQUIRE(read);
  const auto& r = read.value();
  std::string expected;
  for (int i = 1; i <= 500000; ++i)
    expected += std::to_string(i) + "\n";
  expected += "done\n";
  CHECK(r.complete);
  CHECK(r.end_offset == expected.size());
  CHECK(r.first_offset == expected.size() - (std::size_t{1} << 20));
  std::string kept;
  std::uint64_t at = r.first_offset;
  for (const auto& c : r.chunks) {
    kept += c.data;
    at += c.data.size();
    CHECK(c.end_offset == at); // each chunk ends where the next begins
  }
  CHECK(kept == expected.substr(expected.size() - (std::size_t{1} << 20)));
  // From an offset: only what follows it.
  auto tail = t->logs(box.id(), expected.size() - 5, 0ms);
  REQUIRE(tail);
  REQUIRE(!tail.value().chunks.empty());
  CHECK(tail.value().chunks.back().data.substr(tail.value().chunks.back().data.size() - 5) ==
        "done\n");

  // A main that never stops writing: the sandbox still serves commands, and the log stays at
  // its size.
  auto flood = Box::run({"sh", "-c", "yes flood"});
  REQUIRE(flood);
  for (int i = 0; i < 20; ++i) {
    auto r2 = flood.value().exec({"echo", "served"}).result();
    REQUIRE(r2);
    CHECK(r2.value().stdout_text == "served\n");
  }
  auto f = t->logs(flood.value().id(), 0, 0ms);
  REQUIRE(f);
  CHECK(f.value().end_offset > (std::size_t{1} << 20));
  std::size_t bytes = 0;
  for (const auto& c : f.value().chunks)
    bytes += c.data.size();
  CHECK(bytes <= (std::size_t{1} << 20));
  CHECK(!f.value().complete);
  REQUIRE(flood.value().stop());
  auto ended = t->logs(flood.value().id(), f.value().end_offset, 5s);
  REQUIRE(ended);
  CHECK(ended.value().complete); // nothing more after the end
}

TEST_CASE("every sandbox has a network and an IPC namespace of its own", "[local]") {
  // A sandbox's supervisor is made ahead, with its namespaces, between sandboxes: each is used
  // once, and a sandbox on the host's network, started in between, still gets the host's.
  auto t = std::make_shared<sandbox::local_transport>();
  auto ns_of = [](Box& box, const char* kind) {
    auto r = box.exec({"readlink", std::string("/proc/self/ns/") + kind}).result();
    return r && r.value().returncode == 0 ? r.value().stdout_text : std::string("failed");
  };
  char host[64] = {}, host_ipc[64] = {};
  REQUIRE(readlink("/proc/self/ns/net", host, sizeof host - 1) > 0);
  REQUIRE(readlink("/proc/self/ns/ipc", host_ipc, sizeof host_ipc - 1) > 0);
  std::vector<std::string> seen, seen_ipc;
  std::vector<Box> alive; // all at once: an ended one's namespace could be freed and reused
  for (int i = 0; i < 6; ++i) {
    if (i % 2) {
      auto shared = Box::run(sandbox::SandboxOptions{.network = sandbox::network_mode::host}, t);
      REQUIRE(shared);
      CHECK(ns_of(shared.value(), "net") == std::string(host) + "\n");
      std::string ipc = ns_of(shared.value(), "ipc");
      CHECK(ipc != std::string(host_ipc) + "\n");
      CHECK(std::find(seen_ipc.begin(), seen_ipc.end(), ipc) == seen_ipc.end());
      seen_ipc.push_back(ipc);
      alive.push_back(std::move(shared).value());
    }
    auto box = Box::run({}, t);
    REQUIRE(box);
    std::string ns = ns_of(box.value(), "net"), ipc = ns_of(box.value(), "ipc");
    INFO("sandbox " << i << ": " << ns << ipc);
    CHECK(ns.rfind("net:[", 0) == 0);
    CHECK(ns != std::string(host) + "\n");
    CHECK(std::find(seen.begin(), seen.end(), ns) == seen.end());
    seen.push_back(ns);
    CHECK(ipc.rfind("ipc:[", 0) == 0);
    CHECK(ipc != std::string(host_ipc) + "\n");
    CHECK(std::find(seen_ipc.begin(), seen_ipc.end(), ipc) == seen_ipc.end());
    seen_ipc.push_back(ipc);
    // Its own loopback and no other interface.
    auto links = box.value().exec({"cat", "/proc/net/dev"}).result();
    REQUIRE(links);
    CHECK(links.value().stdout_text.find("lo:") != std::string::npos);
    CHECK(std::count(links.value().stdout_text.begin(), links.value().stdout_text.end(), ':') == 1);
    alive.push_back(std::move(box).value());
  }
}

TEST_CASE("a command may use every CPU of its sandbox whichever CPU it was asked from, and the "
          "supervisor is bound to none once it has ended",
          "[local]") {
  // The supervisor starts a command on its caller's CPU, bound there until the command ends, and
  // the command widens its CPUs before execve; both must be undone, from any CPU.
  const std::string all = cpus_allowed(slurp("/proc/thread-self/status"));
  cpu_set_t mine;
  REQUIRE(sched_getaffinity(0, sizeof mine, &mine) == 0);
  if (CPU_COUNT(&mine) < 2) WARN("one CPU: a command bound to its caller's CPU looks the same");
  auto [box, supervisor] = keep_alive_with_supervisor();
  const std::string supervisor_status = "/proc/" + std::to_string(supervisor) + "/status";
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &mine)) continue;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    REQUIRE(sched_setaffinity(0, sizeof one, &one) == 0);
    auto r = box.exec({"grep", "Cpus_allowed_list", "/proc/self/status"}).result();
    REQUIRE(r);
    INFO("asked from CPU " << cpu);
    CHECK(cpus_allowed(r.value().stdout_text) == all);
    CHECK(cpus_allowed(slurp(supervisor_status)) == all);
    // And the supervisor does follow: bound to the caller's CPU while the command runs (within
    // its lease, so tried more than once on a loaded machine).
    if (CPU_COUNT(&mine) < 2) continue;
    bool followed = false;
    for (int i = 0; i < 20 && !followed; ++i) {
      auto seen = box.exec({"grep", "Cpus_allowed_list", "/proc/1/status"}).result();
      followed = seen && cpus_allowed(seen.value().stdout_text) == std::to_string(cpu);
    }
    CHECK(followed);
  }
  REQUIRE(sched_setaffinity(0, sizeof mine, &mine) == 0);
  // Two at once, the first still running while the second ends; and a command that runs on
  // does not keep the supervisor bound beyond its lease (follow_lease_ms).
  auto running = box.exec({"sleep", "30"});
  auto r = box.exec({"grep", "Cpus_allowed_list", "/proc/self/status"}).result();
  REQUIRE(r);
  CHECK(cpus_allowed(r.value().stdout_text) == all);
  std::string now_allowed;
  for (int i = 0; i < 1000 && (now_allowed = cpus_allowed(slurp(supervisor_status))) != all; ++i)
    std::this_thread::sleep_for(10ms);
  CHECK(now_allowed == all);
  CHECK(running.poll() == std::nullopt); // still running: the lease, not its end, unbound it
  CHECK(running.kill(SIGKILL));
  CHECK(running.result().value().returncode == 137);
  CHECK(cpus_allowed(slurp(supervisor_status)) == all);
}

TEST_CASE("a supervisor has libc's code mapped from its start, not page fault by page fault",
          "[local][populate]") {
  // A child of fork starts without its parent's code mapped, and each page fault costs 15-20 µs
  // in a VM: the supervisor maps libc's code in one call (prefault) instead.
  const auto page = static_cast<std::uintptr_t>(::getpagesize());
  auto* probe = ::mmap(nullptr, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(probe != MAP_FAILED);
  const bool can_populate = ::madvise(probe, page, 22 /* MADV_POPULATE_READ */) == 0;
  ::munmap(probe, page);
  if (!can_populate) SANDBOX_SKIP("this kernel lacks MADV_POPULATE_READ (Linux 5.14)");
  auto libc = sandbox::local::detail::code_segment_of(sandbox::local::detail::libc_address());
  REQUIRE(libc.end > libc.begin);
  int on_stack = 0;
  auto none = sandbox::local::detail::code_segment_of(reinterpret_cast<std::uintptr_t>(&on_stack));
  CHECK(none.end == none.begin);
  auto [box, supervisor] = keep_alive_with_supervisor();
  // The supervisor's copy of libc's code segment: how much of it is mapped (Rss) of its Size.
  const std::string text = slurp("/proc/" + std::to_string(supervisor) + "/smaps");
  if (text.empty()) SANDBOX_SKIP("the supervisor's smaps is not readable here (not root)");
  std::istringstream smaps(text);
  char start[32];
  std::snprintf(start, sizeof start, "%lx-", static_cast<unsigned long>(libc.begin & ~(page - 1)));
  long size_kib = -1, rss_kib = -1;
  bool in_libc = false;
  for (std::string line; std::getline(smaps, line);) {
    const std::string first = line.substr(0, line.find(' '));
    const bool mapping = first.find('-') != std::string::npos &&
                         first.find_first_not_of("0123456789abcdef-") == std::string::npos;
    if (mapping)
      in_libc = line.rfind(start, 0) == 0;
    else if (in_libc && line.rfind("Size:", 0) == 0)
      size_kib = std::atol(line.c_str() + 5);
    else if (in_libc && line.rfind("Rss:", 0) == 0)
      rss_kib = std::atol(line.c_str() + 4);
  }
  INFO("libc's code in the supervisor: " << rss_kib << " of " << size_kib << " KiB mapped");
  REQUIRE(size_kib > 0);
  // All of it, but for what the kernel may have reclaimed since (without the prefault, about
  // half: 496 of 1368 KiB here).
  CHECK(rss_kib >= size_kib - 64);
}

/// The live spare supervisor of this process's launcher (test_support::live_spare), a start
/// into `kept` making another if needed.
pid_t live_spare(std::vector<Box>& kept) {
  return test_support::live_spare(getpid(), [&] { kept.push_back(keep_alive()); });
}

TEST_CASE("the next sandbox's supervisor is made ahead, and the next sandbox gets it",
          "[local][spare]") {
  // Made after a caller's second start with the same namespaces. A mount anywhere on the host
  // (another test) ends a waiting spare: tried again then.
  std::vector<Box> kept;
  kept.push_back(keep_alive());
  bool handed = false;
  for (int attempt = 0; attempt < 5 && !handed; ++attempt) {
    kept.push_back(keep_alive());
    const pid_t spare = live_spare(kept);
    REQUIRE(spare > 0);
    auto [next, supervisor] = keep_alive_with_supervisor();
    handed = supervisor == spare;
    if (handed) CHECK(slurp("/proc/" + std::to_string(supervisor) + "/comm") == "sandbox-init\n");
    kept.push_back(std::move(next));
  }
  CHECK(handed);
  // And another for the one after.
  CHECK(live_spare(kept) > 0);
}

/// Unmounts and removes a directory a test mounted something on, however the test ends.
struct mounted_dir {
  std::string path;
  ~mounted_dir() {
    ::umount2(path.c_str(), MNT_DETACH);
    ::rmdir(path.c_str());
  }
};

TEST_CASE("a sandbox sees what the host mounted after its supervisor was made ahead",
          "[local][spare][image]") {
  // The supervisor made ahead holds a copy of the host's mounts from then: an image directory on
  // a file system mounted since would be missing from it, or found under another.
  std::vector<Box> kept;
  kept.push_back(keep_alive());
  kept.push_back(keep_alive());
  REQUIRE(live_spare(kept) > 0);
  char tmpl[] = "/tmp/sandbox-mnt-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  mounted_dir dir{tmpl};
  REQUIRE(::mount("tmpfs", dir.path.c_str(), "tmpfs", 0, "size=64m") == 0);
  const std::string image = make_busybox_image(dir.path + "/image");
  REQUIRE_FALSE(image.empty());
  auto box = Box::run({.image = image});
  INFO((box ? std::string("started") : box.error().message));
  REQUIRE(box);
  auto r = box.value().exec({"cat", "/etc/image-marker"}).result();
  REQUIRE(r);
  CHECK(r.value().stdout_text == "busybox image\n");
}

TEST_CASE("a waiting spare supervisor lets go of what the host unmounts", "[local][spare]") {
  // A file system the host unmounts must not stay busy in a copy of the mounts held by an idle
  // spare: here, a tmpfs unmounted with MNT_DETACH is freed (its files' memory given back) only
  // when no mount namespace holds it.
  std::vector<Box> kept;
  kept.push_back(keep_alive());
  char tmpl[] = "/tmp/sandbox-mnt-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  mounted_dir dir{tmpl};
  REQUIRE(::mount("tmpfs", dir.path.c_str(), "tmpfs", 0, "size=64m") == 0);
  kept.push_back(keep_alive());
  // A spare made since the mount, which holds it (another test's mount may end one meanwhile).
  std::string spare_mounts;
  for (int attempt = 0; attempt < 5 && spare_mounts.empty(); ++attempt) {
    const pid_t spare = live_spare(kept);
    REQUIRE(spare > 0);
    const std::string path = "/proc/" + std::to_string(spare) + "/mountinfo";
    if (slurp(path).find(dir.path) != std::string::npos) spare_mounts = path;
  }
  REQUIRE_FALSE(spare_mounts.empty());
  REQUIRE(::umount2(dir.path.c_str(), MNT_DETACH) == 0);
  CHECK(test_support::eventually(
      [&] { return slurp(spare_mounts).find(dir.path) == std::string::npos; }));
}
