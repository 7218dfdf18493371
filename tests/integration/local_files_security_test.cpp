// SPDX-License-Identifier: MIT
// read_file / write_file against a hostile sandbox: every path and every file inside belongs to
// the attacker, who plants links to the kernel's files, to the host, to /proc/self (which
// resolves to whoever opens it), and special files that never end. The caller opens with its own
// privileges, so each test checks that nothing of the caller, the host or the kernel comes back,
// that nothing outside the sandbox is written, and that every refusal is a typed error.
#include <sandbox/local.hpp>

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "../support/host.hpp"
#include "../support/sandbox_helpers.hpp"

using namespace std::chrono_literals;
using sandbox::errc;

namespace {

using Box = sandbox::NoexceptSandbox;
using test_support::slurp;
using test_support::unique;

Box make_box() {
  auto made = Box::run({}, sandbox::local_transport::shared());
  if (!made) FAIL("run failed: " << made.error().message);
  return std::move(made).value();
}

struct outcome {
  std::string out, err;
  int code = -1;
};

outcome run(Box& box, std::vector<std::string> argv) {
  sandbox::ExecOptions o;
  o.timeout = 30s;
  auto r = box.exec(std::move(argv), std::move(o)).result(60s);
  if (!r) return {"", "error: " + r.error().message, -1};
  return {r.value().stdout_text, r.value().stderr_text, r.value().returncode};
}

/// What must never come out of read_file, nor be changed by write_file: secrets of this process
/// (the sandbox's PID 1 is a clone of it: its environ, cmdline and memory are copies of ours),
/// of the kernel, and a host directory the sandbox cannot see (its /dev/shm is its own).
struct secrets {
  /// Put in the environment before any sandbox is made: the clone's memory holds it.
  std::string env_value = unique("env-secret-");
  /// What /proc/<pid>/environ of this process, and so of its clone, shows (the block the
  /// process started with; setenv does not change it).
  std::string environ_block = slurp("/proc/self/environ");
  std::string cmdline = slurp("/proc/self/cmdline");
  std::string kallsyms_line; ///< a line with a real kernel address, when the host shows one
  std::string host_dir = unique("/dev/shm/sandbox-files-");
  std::string host_victim = host_dir + "/victim";
  std::string host_name = unique("/dev/shm/sandbox-secret-"); ///< a file right in /dev/shm
  std::string host_content = unique("host-content-") + "\n";

  secrets() {
    ::setenv("SANDBOX_FILES_TEST_SECRET", env_value.c_str(), 1);
    std::istringstream kall(slurp("/proc/kallsyms"));
    for (std::string line; std::getline(kall, line);)
      if (line.size() > 20 && line.find_first_not_of('0', 0) < 16) {
        kallsyms_line = line;
        break;
      }
    ::mkdir(host_dir.c_str(), 0700);
    std::ofstream(host_victim) << host_content;
    std::ofstream(host_name) << host_content;
  }
  ~secrets() {
    ::unlink(host_victim.c_str());
    ::rmdir(host_dir.c_str());
    ::unlink(host_name.c_str());
    ::unsetenv("SANDBOX_FILES_TEST_SECRET");
  }
  secrets(const secrets&) = delete;
  secrets& operator=(const secrets&) = delete;

  /// Which secret `s` holds; "" when none.
  [[nodiscard]] std::string found_in(const std::string& s) const {
    if (s.find(env_value) != std::string::npos) return "the test's environment variable";
    if (environ_block.size() > 8 && s.find(environ_block) != std::string::npos)
      return "the test's environment block (/proc/1/environ of the clone)";
    if (cmdline.size() > 8 && s.find(cmdline) != std::string::npos)
      return "the test's command line";
    if (!kallsyms_line.empty() && s.find(kallsyms_line) != std::string::npos)
      return "a real kernel address";
    if (s.find(host_content) != std::string::npos) return "the host file";
    return {};
  }
  /// The host's files are as the test made them.
  [[nodiscard]] bool host_untouched() const {
    return slurp(host_victim) == host_content && slurp(host_name) == host_content;
  }
};

/// Runs one shell script inside; false (with the output in the log) when it fails.
bool script(Box& box, const std::string& text) {
  auto o = run(box, {"sh", "-c", "set -e\n" + text});
  INFO("script output: " << o.out << o.err);
  CHECK(o.code == 0);
  return o.code == 0;
}

/// `ln -s target name` for each pair, in `dir` (made first).
bool plant_links(Box& box, const std::string& dir,
                 const std::vector<std::pair<std::string, std::string>>& links) {
  std::string s = "mkdir -p " + dir + "\ncd " + dir + "\n";
  for (const auto& [name, to] : links)
    s += "ln -s '" + to + "' '" + name + "'\n";
  return script(box, s);
}

/// The words of `s`, split at spaces.
std::vector<std::string> words(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string w; in >> w;)
    out.push_back(w);
  return out;
}

bool one_of(const sandbox::error& e, const std::vector<errc>& codes) {
  for (errc c : codes)
    if (e.is(c)) return true;
  return false;
}

/// The errors a file operation may end with on hostile input: never a timeout or a transport
/// failure, never an untyped one.
bool file_family(const sandbox::error& e) {
  return one_of(e, {errc::validation, errc::file_not_found, errc::file_is_directory,
                    errc::file_permission, errc::file_too_large, errc::file_io});
}

struct read_case {
  std::string path;
  std::vector<errc> expected;
  bool kernel = false; ///< refused as a kernel interface
};

void check_refused(Box& box, const secrets& s, const read_case& c) {
  INFO("read_file " << c.path);
  auto r = box.read_file(c.path);
  CHECK_FALSE(r);
  if (r) {
    CHECK(s.found_in(r.value()) == "");
    return;
  }
  INFO("error: " << r.error().message);
  CHECK(one_of(r.error(), c.expected));
  CHECK(r.error().message.find(c.path) != std::string::npos);
  if (c.kernel) CHECK(r.error().message.find("kernel interface") != std::string::npos);
}

} // namespace

TEST_CASE("read_file refuses kernel files behind links planted inside",
          "[local][security][files]") {
  secrets s;
  auto box = make_box();
  REQUIRE(plant_links(box, "/tmp/l",
                      {{"environ", "/proc/1/environ"},
                       {"cmdline", "/proc/1/cmdline"},
                       {"mem", "/proc/1/mem"},
                       {"maps", "/proc/1/maps"},
                       {"rel_environ", "../../proc/1/environ"},
                       {"p1", "/proc/1"},
                       {"self_environ", "/proc/self/environ"},
                       {"self_mem", "/proc/self/mem"},
                       {"self", "/proc/self"},
                       {"tself_environ", "/proc/thread-self/environ"},
                       {"tself_comm", "/proc/thread-self/comm"},
                       {"kallsyms", "/proc/kallsyms"},
                       {"version", "/proc/version"},
                       {"vmcoreinfo", "/sys/kernel/vmcoreinfo"},
                       {"notes", "/sys/kernel/notes"},
                       {"sys_kernel", "/sys/kernel"},
                       {"cgroup", "/sys/fs/cgroup"},
                       {"cgroup_procs", "/sys/fs/cgroup/cgroup.procs"},
                       {"cgroup_mem", "/sys/fs/cgroup/memory/memory.limit_in_bytes"},
                       {"p1root", "/proc/1/root/etc/hostname"},
                       {"p1cwd", "/proc/1/cwd/etc/hostname"},
                       {"p1fd", "/proc/1/fd/0"},
                       {"p1exe", "/proc/1/exe"},
                       {"stdin", "/dev/stdin"}}));
  const std::vector<errc> kernel = {errc::file_permission};
  // /proc/self is whoever opens it: the caller is no process of the sandbox's pid namespace.
  const std::vector<errc> self = {errc::file_not_found, errc::file_permission};
  const std::vector<errc> magic = {errc::file_permission};
  const std::vector<read_case> cases = {
      {"/tmp/l/environ", kernel, true},
      {"/tmp/l/cmdline", kernel, true},
      {"/tmp/l/mem", kernel, true},
      {"/tmp/l/maps", kernel, true},
      {"/tmp/l/rel_environ", kernel, true},
      {"/tmp/l/p1/environ", kernel, true},
      {"/tmp/l/p1/task/1/environ", kernel, true},
      {"/tmp/l/self_environ", self},
      {"/tmp/l/self_mem", self},
      {"/tmp/l/self/environ", self},
      {"/tmp/l/self/status", self},
      {"/tmp/l/tself_environ", self},
      {"/tmp/l/tself_comm", self},
      {"/tmp/l/kallsyms", kernel, true},
      {"/tmp/l/version", kernel, true},
      {"/tmp/l/vmcoreinfo", kernel, true},
      {"/tmp/l/notes", kernel, true},
      {"/tmp/l/sys_kernel", kernel, true},
      {"/tmp/l/cgroup", kernel, true},
      {"/tmp/l/cgroup_procs", {errc::file_permission, errc::file_not_found}},
      {"/tmp/l/cgroup_mem", {errc::file_permission, errc::file_not_found}},
      {"/tmp/l/p1root", magic},
      {"/tmp/l/p1cwd", magic},
      {"/tmp/l/p1fd", magic},
      {"/tmp/l/p1exe", magic},
      {"/tmp/l/stdin", self},
      // The same paths given directly.
      {"/proc/1/environ", kernel, true},
      {"/proc/1/cmdline", kernel, true},
      {"/proc/kallsyms", kernel, true},
      {"/proc/self/environ", self},
      {"/proc/thread-self/environ", self},
      {"/sys/kernel/notes", kernel, true},
      {"/proc/1/root/etc/hostname", magic},
  };
  for (const auto& c : cases)
    check_refused(box, s, c);
  // Still a working sandbox, whose own commands see their own /proc.
  CHECK(run(box, {"cat", "/proc/1/comm"}).out == "sandbox-init\n");
}

TEST_CASE("read_file through .. chains and absolute or /proc/1/root links stays inside",
          "[local][security][files]") {
  secrets s;
  auto box = make_box();
  const std::string dotdots = "../../../../../../../../../..";
  REQUIRE(plant_links(box, "/tmp/l2",
                      {{"abs", s.host_name},
                       {"rel", dotdots + s.host_name},
                       {"abs_victim", s.host_victim},
                       {"rel_victim", dotdots + s.host_victim},
                       {"shm", "/dev/shm"},
                       {"hostdir", s.host_dir},
                       {"up", dotdots},
                       {"p1root", "/proc/1/root" + s.host_name},
                       {"selfroot", "/proc/self/root" + s.host_name},
                       {"shadow", dotdots + "/etc/os-release"}}));
  const std::vector<errc> missing = {errc::file_not_found};
  const std::vector<read_case> cases = {
      {"/tmp/l2/abs", missing},
      {"/tmp/l2/rel", missing},
      {"/tmp/l2/abs_victim", missing},
      {"/tmp/l2/rel_victim", missing},
      {"/tmp/l2/shm" + s.host_name.substr(8), missing},
      {"/tmp/l2/hostdir/victim", missing},
      {"/tmp/l2/up" + s.host_name, missing},
      {"/tmp/l2/up/../../../.." + s.host_victim, missing},
      {"/tmp/l2/p1root", {errc::file_permission}},
      {"/tmp/l2/selfroot", {errc::file_not_found, errc::file_permission}},
      {s.host_name, missing},
      {"/../../../.." + s.host_name, missing},
      {"/tmp/../../.." + s.host_victim, missing},
  };
  for (const auto& c : cases)
    check_refused(box, s, c);
  // A `..` chain that resolves inside gives what a command inside reads, nothing else.
  auto own = box.read_file("/tmp/l2/shadow");
  REQUIRE(own);
  CHECK(own.value() == run(box, {"cat", "/tmp/l2/shadow"}).out);
  CHECK(s.host_untouched());
}

TEST_CASE("read_file and write_file refuse /proc/kmsg and special files at once",
          "[local][security][files]") {
  secrets s;
  auto box = make_box();
  REQUIRE(script(box, "mkdir -p /tmp/s && cd /tmp/s\n"
                      "mkfifo fifo\n"
                      "perl -MSocket -e 'socket(my $s, AF_UNIX, SOCK_STREAM, 0) or die; "
                      "bind($s, pack_sockaddr_un(\"/tmp/s/sock\")) or die'\n"
                      "ln -s /proc/kmsg kmsg\n"
                      "ln -s fifo fifolink\n"
                      "ln -s /dev/zero zero\n"
                      "ln -s /tmp dir\n"));
  const std::vector<errc> special = {errc::file_io};
  const std::vector<errc> dir = {errc::file_is_directory};
  // /proc/kmsg waits for kernel messages forever, and reading it consumes them.
  const std::vector<read_case> cases = {
      {"/proc/kmsg", {errc::file_permission}, true},
      {"/tmp/s/kmsg", {errc::file_permission}, true},
      {"/tmp/s/fifo", special},
      {"/tmp/s/fifolink", special},
      {"/tmp/s/sock", special},
      {"/dev/null", special},
      {"/dev/zero", special},
      {"/tmp/s/zero", special},
      {"/dev/full", special},
      {"/dev/urandom", special},
      {"/dev/tty", special},
      {"/dev/ptmx", {errc::file_io, errc::file_permission}},
      {"/dev/pts/ptmx", {errc::file_permission}, true},
      {"/tmp", dir},
      {"/tmp/s/dir", dir},
      {"/dev", dir},
      {"/", dir},
  };
  for (const auto& c : cases) {
    check_refused(box, s, c);
    INFO("write_file " << c.path);
    auto w = box.write_file(c.path, "x");
    CHECK_FALSE(w);
    if (!w) {
      INFO("error: " << w.error().message);
      CHECK(one_of(w.error(), c.expected));
    }
  }
  CHECK(run(box, {"sh", "-c", "ls /tmp/s | wc -l"}).out == "6\n"); // nothing made or removed
}

TEST_CASE("write_file through links planted inside never changes the host or a kernel file",
          "[local][security][files]") {
  secrets s;
  auto box = make_box();
  const std::string dotdots = "../../../../../../../../../..";
  const std::string core_pattern = slurp("/proc/sys/kernel/core_pattern");
  const std::string profiling = slurp("/sys/kernel/profiling");
  const std::string oom_before = run(box, {"cat", "/proc/1/oom_score_adj"}).out;
  REQUIRE(plant_links(box, "/tmp/w",
                      {{"abs", s.host_name},
                       {"rel", dotdots + s.host_name},
                       {"abs_victim", s.host_victim},
                       {"rel_victim", dotdots + s.host_victim},
                       {"hostdir", s.host_dir},
                       {"p1root", "/proc/1/root" + s.host_victim},
                       {"oom", "/proc/1/oom_score_adj"},
                       {"self_oom", "/proc/self/oom_score_adj"},
                       {"core_pattern", "/proc/sys/kernel/core_pattern"},
                       {"profiling", "/sys/kernel/profiling"},
                       {"proc_new", "/proc/new-file"},
                       {"sys_new", "/sys/kernel/new-file"},
                       {"cgroup_new", "/sys/fs/cgroup/new-file"}}));
  struct write_case {
    std::string path, data;
    std::vector<errc> expected;
  };
  const std::vector<errc> missing = {errc::file_not_found};
  const std::vector<errc> kernel = {errc::file_permission};
  // What is written to a kernel file is its current value: were it written, nothing changes.
  const std::vector<write_case> cases = {
      {"/tmp/w/abs_victim", "changed\n", missing},
      {"/tmp/w/rel_victim", "changed\n", missing},
      {"/tmp/w/hostdir/victim", "changed\n", missing},
      {"/tmp/w/p1root", "changed\n", kernel},
      {"/tmp/w/oom", "1000\n", kernel},
      {"/proc/1/oom_score_adj", "1000\n", kernel},
      {"/tmp/w/self_oom", "1000\n", {errc::file_not_found, errc::file_permission}},
      {"/tmp/w/core_pattern", core_pattern, kernel},
      {"/proc/sys/kernel/core_pattern", core_pattern, kernel},
      {"/tmp/w/profiling", profiling, kernel},
      {"/tmp/w/proc_new", "x", kernel},
      {"/tmp/w/sys_new", "x", kernel},
      {"/tmp/w/cgroup_new", "x", kernel},
      {"/proc/1/new-file", "x", kernel},
  };
  for (const auto& c : cases) {
    INFO("write_file " << c.path);
    auto w = box.write_file(c.path, c.data);
    CHECK_FALSE(w);
    if (!w) {
      INFO("error: " << w.error().message);
      CHECK(one_of(w.error(), c.expected));
      CHECK(w.error().message.find(c.path) != std::string::npos);
    }
  }
  // A dangling link to a host path creates that path inside the sandbox, as `>` would.
  for (const char* link : {"/tmp/w/abs", "/tmp/w/rel"}) {
    INFO("write_file " << link);
    CHECK(box.write_file(link, "inside\n"));
    CHECK(run(box, {"cat", s.host_name}).out == "inside\n");
  }
  CHECK(s.host_untouched());
  CHECK(slurp("/proc/sys/kernel/core_pattern") == core_pattern);
  CHECK(run(box, {"cat", "/proc/1/oom_score_adj"}).out == oom_before);
}

TEST_CASE("a link swapped while read_file or write_file resolves it never reaches the kernel",
          "[local][security][files]") {
  secrets s;
  auto box = make_box();
  const std::string oom_before = run(box, {"cat", "/proc/1/oom_score_adj"}).out;
  REQUIRE(script(box, "mkdir -p /tmp/r && cd /tmp/r && echo regular > ok"));
  // Two commands rename, as fast as they can, a link to a kernel file and a link to `ok` over
  // `x` (read below) and `y` (written below): each of the caller's steps (resolve, check, open)
  // may see either.
  auto swapper = box.exec({"perl", "-e", R"(chdir "/tmp/r" or die;
    for (;;) {
      symlink($ARGV[0], "a"); rename("a", "x");
      symlink("ok", "b"); rename("b", "x");
    })",
                           "/proc/1/environ"});
  auto writer = box.exec({"perl", "-e", R"(chdir "/tmp/r" or die;
    for (;;) {
      symlink($ARGV[0], "c"); rename("c", "y");
      symlink("ok", "d"); rename("d", "y");
    })",
                          "/proc/1/oom_score_adj"});
  int read_ok = 0, write_ok = 0;
  for (int i = 0; i < 3000; ++i) {
    auto r = box.read_file("/tmp/r/x");
    if (r) {
      ++read_ok;
      CHECK(r.value() == "regular\n");
      CHECK(s.found_in(r.value()) == "");
    } else {
      INFO("read_file error: " << r.error().message);
      CHECK(one_of(r.error(), {errc::file_permission, errc::file_not_found}));
    }
    // Written, it is `ok`; never the kernel file.
    auto w = box.write_file("/tmp/r/y", "regular\n");
    if (w)
      ++write_ok;
    else {
      INFO("write_file error: " << w.error().message);
      CHECK(one_of(w.error(), {errc::file_permission, errc::file_not_found, errc::file_io}));
    }
  }
  CHECK(swapper.poll() == std::nullopt); // still swapping at the end
  (void)swapper.kill();
  (void)writer.kill();
  (void)swapper.result(10s);
  (void)writer.result(10s);
  CHECK(read_ok > 0);
  CHECK(write_ok > 0);
  CHECK(run(box, {"cat", "/proc/1/oom_score_adj"}).out == oom_before);
}

TEST_CASE("file operations give up at options::file_timeout with errc::timeout",
          "[local][security][files]") {
  // No retry: a timeout is transient, and the retry policy would repeat it.
  using Quick =
      sandbox::basic_sandbox<sandbox::local_transport, sandbox::no_retry, sandbox::return_errors>;
  auto t = std::make_shared<sandbox::local_transport>(
      sandbox::local_transport::options{.file_timeout = 0ms});
  auto made = Quick::run({}, t);
  REQUIRE(made);
  Quick& box = made.value();
  REQUIRE(box.exec({"sh", "-c", "head -c 8388608 /dev/zero > /tmp/big"}).result());
  auto r = box.read_file("/tmp/big");
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::timeout));
  CHECK(r.error().message.find("/tmp/big") != std::string::npos);
  auto w = box.write_file("/tmp/out", std::string(std::size_t{8} << 20, 'x'));
  REQUIRE_FALSE(w);
  CHECK(w.error().is(errc::timeout));
  CHECK(w.error().message.find("/tmp/out") != std::string::npos);
  // The defaults are generous.
  auto normal = make_box();
  REQUIRE(normal.exec({"sh", "-c", "head -c 8388608 /dev/zero > /tmp/big"}).result());
  auto big = normal.read_file("/tmp/big");
  REQUIRE(big);
  CHECK(big.value().size() == std::size_t{8} << 20);
}

TEST_CASE("fuzzed hostile paths end in an inside file or a typed error",
          "[local][security][files]") {
  secrets s;
  auto box = make_box();
  const std::string oom_before = run(box, {"cat", "/proc/1/oom_score_adj"}).out;
  const std::string name255(255, 'b'), name256(256, 'c');
  const std::string shm_name = s.host_name.substr(9); // after "/dev/shm/"
  // The fixture, built by one script: links to /, .., /proc/1/root, /proc/self/fd/0, the host,
  // loops, magic links, kernel files; a FIFO, a socket, devices, and ordinary files.
  std::string fixture = R"(mkdir -p /tmp/fz/dir && cd /tmp/fz
echo fixture > file
echo inner > dir/inner
echo deep > dir/@NAME255@
ln -s / root
ln -s .. up
ln -s ../../../../../../../../.. dotdot
ln -s /proc/1/root proot
ln -s /proc/self/fd/0 fd0
ln -s /proc/1/fd/0 p1fd
ln -s /proc/1/cwd p1cwd
ln -s /proc/1/exe p1exe
ln -s /proc/self self
ln -s /proc/thread-self tself
ln -s /proc/1 p1
ln -s /proc/1/environ env
ln -s /proc/kmsg kmsg
ln -s /proc/kallsyms kall
ln -s /sys/kernel sysk
ln -s /sys/fs/cgroup cg
ln -s @HOST@ host
ln -s ../../../../../../..@HOST@ hostrel
ln -s @HOSTDIR@ hostdir
ln -s /dev/shm shm
ln -s loop loop
ln -s loopb loopa
ln -s loopa loopb
ln -s file flink
ln -s dir/inner ilink
ln -s missing/file dangling
mkfifo fifo
perl -MSocket -e 'socket(my $s, AF_UNIX, SOCK_STREAM, 0) or die;
                  bind($s, pack_sockaddr_un("/tmp/fz/sock")) or die'
ln -s /dev/null null
ln -s /dev/zero zero
ln -s /dev/tty tty
ln -s /dev/ptmx ptmx
ln -s /dev/stdin stdin
)";
  for (auto [from, to] : {std::pair<std::string, std::string>{"@NAME255@", name255},
                          {"@HOSTDIR@", s.host_dir},
                          {"@HOST@", s.host_name}})
    for (auto at = fixture.find(from); at != std::string::npos; at = fixture.find(from))
      fixture.replace(at, from.size(), to);
  REQUIRE(script(box, fixture));
  std::vector<std::string> vocabulary = words(
      ". .. tmp fz file dir inner root up dotdot proot fd0 p1fd p1cwd p1exe self tself p1 env "
      "kmsg kall sysk cg host hostrel hostdir shm loop loopa flink ilink dangling fifo sock null "
      "zero tty ptmx stdin proc 1 environ mem cmdline fd 0 cwd exe dev sys kernel notes etc "
      "hostname oom_score_adj thread-self victim missing new");
  for (std::string w : {std::string(), shm_name, name255, name256, std::string("nul\0byte", 8)})
    vocabulary.push_back(w);
  // Steps that lead from /tmp/fz back to /tmp/fz (some only for a command inside, or never),
  // and last names: most paths look plausible, so that some lead to ordinary files.
  const std::vector<std::string> steps =
      words(". dir/.. up/fz root/tmp/fz dotdot/tmp/fz ../fz shm/../../tmp/fz p1/../../tmp/fz "
            "self/../../tmp/fz proot/tmp/fz loop/.. fifo/.. dir/inner/.. hostdir/../../tmp/fz "
            "sysk/../../../tmp/fz /");
  std::vector<std::string> leaves =
      words("file flink ilink dir/inner new new2 host hostrel dangling env kmsg kall fifo sock "
            "null tty p1/environ self/environ tself/environ proot/etc/hostname fd0 "
            "root/etc/os-release");
  leaves.push_back("dir/" + name255);
  std::mt19937 rng(20250611); // fixed: the same paths on every run
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  auto any = [&](const std::vector<std::string>& v) -> const std::string& {
    return v[pick(v.size())];
  };
  auto random_path = [&]() -> std::string {
    std::size_t kind = pick(100);
    if (kind < 2) return "";
    if (kind < 5) return "tmp/fz/" + any(vocabulary); // relative
    if (kind < 8) {                                   // longer than PATH_MAX
      std::string p;
      while (p.size() < 5000)
        p += "/" + name255;
      return p;
    }
    std::string p = "/tmp/fz";
    if (kind < 60) {
      for (std::size_t n = pick(4); n > 0; --n)
        p += "/" + any(steps);
      p += "/" + (pick(5) == 0 ? any(vocabulary) : any(leaves));
    } else {
      if (kind >= 85) p.clear();
      for (std::size_t n = 1 + pick(6); n > 0; --n)
        p += "/" + any(vocabulary);
    }
    if (pick(12) == 0) p += "/";
    return p;
  };
  int reads = 0, writes = 0;
  for (int i = 0; i < 600; ++i) {
    const std::string path = random_path();
    const bool write = pick(4) == 0;
    INFO("#" << i << (write ? " write_file " : " read_file ") << path);
    if (write) {
      const std::string data = "fuzz-" + std::to_string(i) + "\n";
      auto w = box.write_file(path, data);
      if (!w) {
        INFO("error: " << w.error().message);
        CHECK(file_family(w.error()));
        continue;
      }
      ++writes;
      // Written inside: a command there reads it back at the same path.
      CHECK(run(box, {"cat", "--", path}).out == data);
    } else {
      auto r = box.read_file(path);
      if (!r) {
        INFO("error: " << r.error().message);
        CHECK(file_family(r.error()));
        continue;
      }
      ++reads;
      CHECK(s.found_in(r.value()) == "");
      // Exactly what a command inside reads at that path.
      auto inside = run(box, {"cat", "--", path});
      CHECK(inside.code == 0);
      CHECK(inside.out == r.value());
    }
  }
  // The fixed seed reaches ordinary files too: the fuzzing did not only collect refusals.
  CHECK(reads > 30);
  CHECK(writes > 10);
  CHECK(s.host_untouched());
  CHECK(run(box, {"cat", "/proc/1/oom_score_adj"}).out == oom_before);
  CHECK(run(box, {"cat", "/proc/1/comm"}).out == "sandbox-init\n");
}
