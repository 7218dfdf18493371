// SPDX-License-Identifier: MIT
// What a hostile program inside a local sandbox tries, and what must stop it: every test makes the
// attack for real (mostly through tests/integration/security_probe.cpp, copied into the sandbox)
// and checks the host afterwards.
#include <sandbox/local.hpp>

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#ifndef SANDBOX_SECURITY_PROBE
#error "build with -DSANDBOX_SECURITY_PROBE=\"<path of security-probe>\""
#endif

using namespace std::chrono_literals;
using Box = sandbox::NoexceptSandbox;
using sandbox::errc;

/// The supervisor is a clone of this process, so it holds this string at the same address.
char client_secret[] = "client-secret-5f1c2a77e0";

#include "../support/host.hpp"
#include "../support/sandbox_helpers.hpp"
#include "../support/skip.hpp"

using test_support::become_nobody;
using test_support::in_child;
using test_support::make_box;
using test_support::outcome;
using test_support::parse;
using test_support::put;
using test_support::run;
using test_support::sh;
using test_support::slurp;
using test_support::status_hex_field;
using test_support::unique;

namespace {

/// Copies the probe into the sandbox's /tmp (works whatever of the host the sandbox sees).
bool install_probe(Box& box) {
  static const std::string bytes = slurp(SANDBOX_SECURITY_PROBE);
  return !bytes.empty() && box.write_file("/tmp/probe", bytes) &&
         run(box, {"chmod", "755", "/tmp/probe"}).code == 0;
}

std::map<std::string, std::string> probe(Box& box, std::vector<std::string> args) {
  args.insert(args.begin(), "/tmp/probe");
  auto o = run(box, std::move(args));
  INFO("probe output: " << o.out << o.err);
  CHECK(o.code == 0);
  return parse(o.out);
}

/// A listening socket on the host whose connections get `greeting` and are closed.
class host_server {
public:
  explicit host_server(int fd) : fd_(fd), thread_([this] { serve(); }) {}
  ~host_server() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  host_server(const host_server&) = delete;
  host_server& operator=(const host_server&) = delete;

private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      (void)!::write(c, "HOST", 4);
      ::close(c);
    }
  }
  int fd_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

int listen_unix(const std::string& path) { // "@name": abstract
  int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.data(), path.size());
  if (path[0] == '@')
    a.sun_path[0] = '\0';
  else
    ::unlink(path.c_str());
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&a), len) == 0);
  REQUIRE(::listen(s, 16) == 0);
  return s;
}

bool host_can_connect(const std::string& path) {
  int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.data(), path.size());
  if (path[0] == '@') a.sun_path[0] = '\0';
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  char buf[4] = {};
  bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), len) == 0 && ::read(s, buf, 4) == 4;
  ::close(s);
  return ok;
}

/// A directory of the host's root filesystem that a sandbox sees through its overlay (so not
/// /tmp, which the sandbox covers with its own, nor another filesystem mounted on the host).
std::string root_fs_dir() {
  struct stat root {};
  ::stat("/", &root);
  // Not one the default root hides (/root, /var, /srv, …).
  for (const char* d : {"/opt", "/usr/local"}) {
    struct stat st {};
    if (::stat(d, &st) == 0 && S_ISDIR(st.st_mode) && st.st_dev == root.st_dev) return d;
  }
  FAIL("no directory of the root filesystem outside /tmp to test with");
  return {};
}

int host_entries(const char* dir) {
  DIR* d = ::opendir(dir);
  if (!d) return 0;
  int n = 0;
  while (dirent* e = ::readdir(d))
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) ++n;
  ::closedir(d);
  return n;
}

} // namespace

TEST_CASE("commands cannot use the system calls Docker's default profile denies",
          "[local][security][seccomp]") {
  auto box = make_box();
  REQUIRE(install_probe(box));
  auto r = probe(box, {"syscalls"});
  for (const char* call : {"unshare_user",
                           "unshare_net",
                           "clone_newuser",
                           "keyctl",
                           "add_key",
                           "userfaultfd",
                           "perf_event_open",
                           "io_uring_setup",
                           "process_vm_readv_self",
                           "kcmp_self",
                           "ptrace_child",
                           "personality_bsd",
                           "socket_vsock",
                           "mount_tmpfs",
                           "umount_proc",
                           "pivot_root",
                           "bpf",
                           "setns",
                           "open_by_handle_at",
                           "init_module",
                           "kexec_load",
                           "reboot",
                           "swapoff",
                           "settimeofday",
                           "syslog"}) {
    INFO(call);
    CHECK(r[call] == "EPERM");
  }
  // clone3 says "not implemented", so libc falls back to clone, whose flags the filter sees.
  CHECK(r["clone3"] == "ENOSYS");
  // What programs need keeps working.
  CHECK(r["fork"] == "ok");
  CHECK(r["unshare_files"] == "ok");
  CHECK(r["personality_query"] == "ok");
  // Threads (clone without namespace flags) work: sort uses them on large input.
  CHECK(sh(box, "seq 1 200000 | sort -n --parallel=2 -S 1M | tail -1") == "200000\n");
  auto status = run(box, {"cat", "/proc/self/status"}).out;
  CHECK(status.find("Seccomp:\t2") != std::string::npos);
}

TEST_CASE("system calls through a foreign ABI kill the command",
          "[local][security][seccomp][foreign-abi]") {
#if defined(__x86_64__)
  auto box = make_box();
  REQUIRE(install_probe(box));
  // On some machines the i386 entry (int 0x80) is refused before any filter runs: the process
  // dies of SIGSEGV even outside a sandbox. There SIGSEGV is the expected death inside too;
  // everywhere else only the filter's SIGSYS is.
  int host_i386 = 0;
  {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      ::execl(SANDBOX_SECURITY_PROBE, "probe", "abi", "i386", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    int ws = 0;
    ::waitpid(pid, &ws, 0);
    host_i386 = WIFSIGNALED(ws) ? WTERMSIG(ws) : 0;
  }
  INFO("int 0x80 outside a sandbox: " << (host_i386 ? strsignal(host_i386) : "survived"));
  const int i386_death = host_i386 == SIGSEGV ? SIGSEGV : SIGSYS;
  for (const char* abi : {"i386", "x32"}) {
    INFO(abi);
    auto o = run(box, {"/tmp/probe", "abi", abi});
    CHECK(o.out.find("survived") == std::string::npos);
    CHECK(o.signal == (std::strcmp(abi, "i386") == 0 ? i386_death : SIGSYS));
  }
  // The filter applies to every command, not only the first.
  CHECK(run(box, {"/tmp/probe", "abi", "x32"}).signal == SIGSYS);
  CHECK(run(box, {"/tmp/probe", "abi", "i386"}).signal == i386_death);
#else
  SANDBOX_SKIP("no foreign ABI to test on this architecture");
#endif
}

TEST_CASE("commands hold only the default capabilities, whatever the caller holds",
          "[local][security][caps]") {
  // A caller with CAP_SYS_ADMIN in its inheritable and ambient sets: a root process keeps both
  // across execve unless the supervisor clears them.
  auto out = in_child([](int fd) {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    ::syscall(SYS_capget, &hdr, data);
    data[0].inheritable |= 1u << CAP_SYS_ADMIN;
    bool raised = ::syscall(SYS_capset, &hdr, data) == 0 &&
                  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_SYS_ADMIN, 0, 0) == 0;
    put(fd, "raised", raised ? "yes" : "no");
    auto made = Box::run({}, sandbox::local_transport::shared());
    if (!made) return put(fd, "error", made.error().message);
    auto r = made.value().exec({"cat", "/proc/self/status"}).result(30s);
    if (r) put(fd, "status", r.value().stdout_text);
  });
  auto m = parse(out);
  INFO(out);
  REQUIRE(m["raised"] == "yes");
  std::string status = m["status"];
  for (char& c : status)
    if (c == '|') c = '\n';
  constexpr std::uint64_t expected = sandbox::local::detail::sv::command_capabilities;
  CHECK(status_hex_field(status, "CapEff") == expected);
  CHECK(status_hex_field(status, "CapPrm") == expected);
  CHECK(status_hex_field(status, "CapBnd") == expected);
  CHECK(status_hex_field(status, "CapInh") == 0);
  CHECK(status_hex_field(status, "CapAmb") == 0);
  CHECK((expected & (1ull << CAP_SYS_ADMIN)) == 0);
  CHECK((expected & (1ull << CAP_MKNOD)) == 0);
  CHECK(status.find("NoNewPrivs:\t1") != std::string::npos);
}

TEST_CASE("a setuid binary inside gains nothing (no_new_privs)", "[local][security][caps]") {
  auto box = make_box();
  REQUIRE(install_probe(box));
  // A setuid-root copy of the probe on the overlay (not /tmp, which is nosuid).
  REQUIRE(sh(box, "cp /tmp/probe /usr/local/bin/suid-probe && chmod 4755 "
                  "/usr/local/bin/suid-probe && stat -c %A /usr/local/bin/suid-probe") ==
          "-rwsr-xr-x\n");
  auto o = run(box, {"/tmp/probe", "drop-exec", "65534", "/usr/local/bin/suid-probe", "ids"});
  INFO(o.out << o.err);
  CHECK(o.out == "uids 65534 65534 65534\n");
}

TEST_CASE("the supervisor cannot be read, traced or killed from inside",
          "[local][security][supervisor]") {
  auto box = make_box();
  REQUIRE(install_probe(box));
  auto r =
      probe(box, {"supervisor", std::to_string(reinterpret_cast<std::uintptr_t>(client_secret))});
  for (const char* how :
       {"environ", "mem", "process_vm_readv", "ptrace_attach", "fd_link", "root_link"}) {
    INFO(how << ": " << r[how]);
    CHECK(r[how].substr(0, 2) != "ok");
    CHECK(r[how].find("client-secret") == std::string::npos);
  }
  // Signals to PID 1 from inside are dropped; it still serves.
  CHECK(run(box, {"echo", "alive"}).out == "alive\n");
  CHECK(box.state().value() == sandbox::State::RUNNING);
}

TEST_CASE("the host's files cannot be modified, and no device node reaches its disk",
          "[local][security][filesystem]") {
  std::string path = root_fs_dir() + "/" + unique("host-file-");
  { std::ofstream(path) << "original\n"; }
  auto box = make_box();
  REQUIRE(install_probe(box));
  // Every way of changing it succeeds inside (on the writable layer) and changes nothing outside.
  CHECK(sh(box, "echo changed > " + path + " && chmod 777 " + path + " && cat " + path) ==
        "changed\n");
  sh(box, "truncate -s 0 " + path + "; ln -f " + path + " " + path + ".link; mv " + path + " " +
              path + ".moved; rm -f " + path + ".moved");
  CHECK(slurp(path) == "original\n");
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) != 0777);
  CHECK(::access((path + ".link").c_str(), F_OK) != 0);
  CHECK(::access((path + ".moved").c_str(), F_OK) != 0);
  ::unlink(path.c_str());

  // A block device node for the root filesystem's disk, wherever a command can write.
  struct stat root {};
  REQUIRE(::stat("/", &root) == 0);
  auto out = run(box, {"/tmp/probe", "raw-disk", std::to_string(major(root.st_dev)),
                       std::to_string(minor(root.st_dev)), "/,/root,/dev,/dev/shm,/tmp"})
                 .out;
  INFO(out);
  CHECK(out.find("mknod") != std::string::npos);
  CHECK(out.find("open") == std::string::npos); // no node was made, so none was opened
  CHECK(out.find("mknod / EPERM") != std::string::npos);
}

TEST_CASE("/proc and /sys show nothing sensitive and cannot be written",
          "[local][security][filesystem]") {
  auto box = make_box();
  // Masked like Docker's MaskedPaths: whatever of them this kernel has and shows on the host
  // reads as empty inside.
  int checked = 0;
  for (const char* f : {"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                        "/proc/interrupts", "/proc/latency_stats", "/proc/timer_stats"}) {
    std::ifstream in(f, std::ios::binary);
    char c;
    if (!(in >> std::noskipws >> c)) continue; // absent or empty here
    ++checked;
    INFO(f);
    CHECK(sh(box, std::string("cat ") + f + " 2>/dev/null | wc -c") == "0\n");
  }
  for (const char* d : {"/proc/acpi", "/proc/asound", "/proc/scsi", "/sys/firmware",
                        "/sys/devices/virtual/powercap"}) {
    if (host_entries(d) == 0) continue;
    ++checked;
    INFO(d);
    CHECK(sh(box, std::string("ls -A ") + d + " 2>/dev/null | wc -l") == "0\n");
  }
  CHECK(checked >= 2);
  // Read-only like Docker's ReadonlyPaths. core_pattern is written back unchanged: on a host
  // where this protection failed, the write would succeed and still change nothing.
  std::string core = slurp("/proc/sys/kernel/core_pattern");
  REQUIRE(!core.empty());
  auto w =
      run(box, {"sh", "-c", "cat /proc/sys/kernel/core_pattern > /proc/sys/kernel/core_pattern"});
  CHECK(w.code != 0);
  CHECK(w.err.find("Read-only") != std::string::npos);
  CHECK(slurp("/proc/sys/kernel/core_pattern") == core);
  CHECK(run(box, {"sh", "-c", ": > /proc/sysrq-trigger"}).code != 0);
  CHECK(run(box, {"sh", "-c", "echo 0 > /proc/sys/kernel/sysrq"}).code != 0);
  CHECK(run(box, {"sh", "-c", "echo x > /sys/kernel/uevent_helper"}).code != 0);
  // Still readable.
  CHECK(run(box, {"cat", "/proc/sys/kernel/ostype"}).out == "Linux\n");
  CHECK(!run(box, {"cat", "/proc/meminfo"}).out.empty());
}

TEST_CASE("/proc/1/root, .. and chroot lead nowhere", "[local][security][filesystem]") {
  // The host's /dev/shm is a tmpfs of its own: nothing inside the sandbox shows it, so seeing
  // this marker would mean reaching the host's mount tree.
  std::string marker = "/dev/shm/" + unique("sandbox-marker-");
  { std::ofstream(marker) << "host\n"; }
  auto box = make_box();
  REQUIRE(install_probe(box));
  auto r = probe(box, {"chroot-escape", marker});
  CHECK(r["chroot"] == "ok"); // CAP_SYS_CHROOT is a default capability
  CHECK(r["marker"] == "ENOENT");
  CHECK(sh(box, "cd /../../..; pwd; ls -d /proc/1/root/dev/shm/* /proc/self/root/../../" + marker +
                    " " + marker + " 2>/dev/null | wc -l") == "/\n0\n");
  CHECK(sh(box, "ls /proc/1/root/ >/dev/null 2>&1 && echo readable || echo closed") == "closed\n");
  // The file API resolves inside the sandbox too.
  CHECK(box.read_file(marker).error().is(errc::file_not_found));
  CHECK(box.read_file("/../../../../" + marker).error().is(errc::file_not_found));
  ::unlink(marker.c_str());
}

TEST_CASE("host unix sockets cannot be reached", "[local][security][network]") {
  // Listening sockets on the host: in /tmp, in a directory of the root filesystem the overlay
  // shows (connecting through the overlay must not reach the listener), and abstract.
  std::string in_tmp = "/tmp/" + unique("sbx-") + ".sock";
  std::string on_root = root_fs_dir() + "/" + unique("sbx-") + ".sock";
  std::string abstract = "@" + unique("sbx-");
  host_server a(listen_unix(in_tmp)), b(listen_unix(on_root)), c(listen_unix(abstract));
  for (const auto& p : {in_tmp, on_root, abstract}) {
    INFO(p);
    REQUIRE(host_can_connect(p)); // the control: they do listen
  }
  auto box = make_box();
  REQUIRE(install_probe(box));
  CHECK(probe(box, {"connect-unix", in_tmp})["connect"] == "ENOENT");
  CHECK(probe(box, {"connect-unix", on_root})["connect"] == "ECONNREFUSED");
  CHECK(probe(box, {"connect-unix", abstract})["connect"] == "ECONNREFUSED");
  // The file is there (the overlay shows it), only the listener is not.
  CHECK(run(box, {"test", "-S", on_root}).code == 0);

  // network_mode::host shares the host's abstract socket namespace (it belongs to the network
  // namespace): that opt-in reaches abstract sockets, never the ones on the filesystem.
  auto shared = make_box({.network = sandbox::network_mode::host});
  REQUIRE(install_probe(shared));
  CHECK(probe(shared, {"connect-unix", abstract})["connect"] == "ok HOST");
  CHECK(probe(shared, {"connect-unix", on_root})["connect"] == "ECONNREFUSED");
  ::unlink(in_tmp.c_str());
  ::unlink(on_root.c_str());
}

TEST_CASE("host processes are invisible and cannot be signalled", "[local][security][process]") {
  std::string tag = std::to_string(900000 + ::getpid() % 90000);
  pid_t host = ::fork();
  REQUIRE(host >= 0);
  if (host == 0) {
    ::execlp("sleep", "sleep", tag.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  auto box = make_box();
  REQUIRE(install_probe(box));
  // Every command line the sandbox can see (the script does not contain the tag itself).
  std::string all = sh(box, "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done");
  CHECK(all.find("sh -c") != std::string::npos); // the listing works
  CHECK(all.find("sleep " + tag) == std::string::npos);
  std::string hp = std::to_string(host);
  CHECK(sh(box, "cat /proc/" + hp + "/cmdline 2>/dev/null | tr '\\0' ' '").find(tag) ==
        std::string::npos);
  // Guess pids around the host's, and kill everything the sandbox can see.
  long lo = std::max<long>(2, host - 200), hi = host + 200;
  auto r = probe(box, {"kill-range", std::to_string(lo), std::to_string(hi)});
  INFO("kill-range " << lo << ".." << hi << ": " << r["delivered"]);
  run(box, {"sh", "-c", "kill -9 -1"});
  int ws = 0;
  CHECK(::waitpid(host, &ws, WNOHANG) == 0); // still running
  CHECK(::kill(host, 0) == 0);
  ::kill(host, SIGKILL);
  ::waitpid(host, &ws, 0);
  CHECK(WIFSIGNALED(ws));
  CHECK(WTERMSIG(ws) == SIGKILL);
}

TEST_CASE("the network is the sandbox's own loopback unless the host's network is asked for",
          "[local][security][network]") {
  int srv = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  REQUIRE(::bind(srv, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(srv, 16) == 0);
  REQUIRE(::getsockname(srv, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  std::string port = std::to_string(ntohs(a.sin_port));
  {
    auto box = make_box();
    REQUIRE(install_probe(box));
    CHECK(probe(box, {"connect-tcp", "127.0.0.1", port})["connect"] == "ECONNREFUSED");
    CHECK(probe(box, {"loopback"})["roundtrip"] == "ok");
    CHECK(sh(box, "ls /sys/class/net") == "lo\n");
  }
  {
    auto box = make_box({.network = sandbox::network_mode::host});
    REQUIRE(install_probe(box));
    CHECK(probe(box, {"connect-tcp", "127.0.0.1", port})["connect"] == "ok");
  }
  ::close(srv);
}

TEST_CASE("commands have no controlling terminal to push keystrokes into",
          "[local][security][tty]") {
  // A caller on a terminal: a pty made this child's controlling terminal.
  auto out = in_child([](int fd) {
    int master = ::posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0 || ::setsid() < 0)
      return put(fd, "error", "pty");
    int slave = ::open(::ptsname(master), O_RDWR); // becomes the controlling terminal
    int tty = ::open("/dev/tty", O_RDWR | O_NOCTTY);
    put(fd, "host_tty", slave >= 0 && tty >= 0 ? "ok" : "none");
    auto made = Box::run({}, sandbox::local_transport::shared());
    if (!made) return put(fd, "error", made.error().message);
    auto& box = made.value();
    if (!install_probe(box)) return put(fd, "error", "install");
    auto r = box.exec({"/tmp/probe", "tty"}).result(30s);
    if (r) put(fd, "inside", r.value().stdout_text);
  });
  auto m = parse(out);
  INFO(out);
  REQUIRE(m["host_tty"] == "ok");
  CHECK(m["inside"] == "open_tty ENXIO|");
}

TEST_CASE("a caller that is not root gets a sandbox in a user namespace",
          "[local][security][rootless][userns]") {
  if (sandbox::local::detail::read_sysctl("/proc/sys/user/max_user_namespaces") == "0" ||
      sandbox::local::detail::read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == "0") {
    SANDBOX_SKIP(
        "this host disables unprivileged user namespaces (the next test covers the error)");
  }
  std::string host_file = root_fs_dir() + "/" + unique("rootless-");
  std::string etc_file = "/etc/" + unique("rootless-");
  { std::ofstream(host_file) << "original\n"; }
  ::chmod(host_file.c_str(), 0666); // even a file the caller may write stays unchanged
  std::string on_root = root_fs_dir() + "/" + unique("sbx-") + ".sock";
  host_server srv(listen_unix(on_root));
  // A tiny image of busybox-static, readable by the unprivileged caller.
  std::string image = root_fs_dir() + "/" + unique("image-");
  for (const char* d : {"", "/bin", "/etc", "/proc", "/dev", "/tmp", "/sys"})
    REQUIRE(::mkdir((image + d).c_str(), 0755) == 0);
  REQUIRE(std::system(("cp /bin/busybox " + image + "/bin/busybox").c_str()) == 0);
  for (const char* tool : {"sh", "echo", "cat"})
    REQUIRE(::symlink("busybox", (image + "/bin/" + tool).c_str()) == 0);
  { std::ofstream(image + "/etc/image-marker") << "image\n"; }
  ::chmod(on_root.c_str(), 0777);
  auto out = in_child([&](int fd) {
    if (!become_nobody()) return put(fd, "error", "could not drop to 65534");
    auto made = Box::run({}, sandbox::local_transport::shared());
    if (!made) return put(fd, "error", made.error().message);
    auto& box = made.value();
    put(fd, "id", run(box, {"id", "-u"}).out);
    put(fd, "uid_map", sh(box, "cat /proc/self/uid_map | tr -s ' '"));
    put(fd, "etc",
        sh(box, "{ echo x > " + etc_file + "; } 2>/dev/null; cat " + etc_file + " 2>/dev/null"));
    put(fd, "host_file",
        sh(box, "{ echo changed > " + host_file + "; } 2>/dev/null; cat " + host_file));
    put(fd, "tmp", sh(box, "echo hi > /tmp/x && cat /tmp/x"));
    put(fd, "proc",
        sh(box, "ls -d /proc/[0-9]* | wc -l; cat /proc/timer_list 2>/dev/null | wc -c"));
    put(fd, "core_pattern",
        std::to_string(
            run(box,
                {"sh", "-c", "cat /proc/sys/kernel/core_pattern > /proc/sys/kernel/core_pattern"})
                .code));
    if (!install_probe(box)) return put(fd, "error", "install");
    auto r = parse(run(box, {"/tmp/probe", "syscalls"}).out);
    put(fd, "unshare_user", r["unshare_user"]);
    put(fd, "keyctl", r["keyctl"]);
    put(fd, "socket", parse(run(box, {"/tmp/probe", "connect-unix", on_root}).out)["connect"]);
    auto back = box.read_file("/tmp/x");
    put(fd, "read_back", back ? back.value() : "error: " + back.error().message);
    // network_mode::host: sysfs cannot be mounted for the host's network namespace; /sys is the
    // host's, read-only.
    auto shared =
        Box::run({.network = sandbox::network_mode::host}, sandbox::local_transport::shared());
    if (!shared) return put(fd, "error", shared.error().message);
    put(fd, "sys_ro", sh(shared.value(), "touch /sys/x 2>&1 | grep -c Read-only"));
    // An image directory is one overlay, as for root.
    auto img = Box::run({.image = image}, sandbox::local_transport::shared());
    if (!img) return put(fd, "error", img.error().message);
    put(fd, "image", sh(img.value(), "cat /etc/image-marker; echo x > /tmp/y && cat /tmp/y"));
  });
  auto m = parse(out);
  INFO(out);
  CHECK(m.count("error") == 0);
  CHECK(m["id"] == "0|");
  CHECK(m["uid_map"] == " 0 65534 1|");
  // New files land on the sandbox's private layer; files of the host's root (whose owner is not
  // mapped in the namespace) cannot even be changed there.
  CHECK(m["etc"] == "x|");
  CHECK(::access(etc_file.c_str(), F_OK) != 0);
  CHECK(m["host_file"] == "original|");
  CHECK(slurp(host_file) == "original\n");
  CHECK(m["tmp"] == "hi|");
  CHECK(m["proc"].substr(m["proc"].find('|') + 1) == "0|");
  CHECK(m["core_pattern"] != "0");
  CHECK(m["unshare_user"] == "EPERM");
  CHECK(m["keyctl"] == "EPERM");
  CHECK(m["socket"] != "ok HOST");
  CHECK(m["read_back"] == "hi|");
  CHECK(m["sys_ro"] == "1|");
  CHECK(m["image"] == "image|x|");
  CHECK(::access((image + "/tmp/y").c_str(), F_OK) != 0);
  CHECK(std::system(("rm -rf " + image).c_str()) == 0);
  ::unlink(host_file.c_str());
  ::unlink(on_root.c_str());
}

TEST_CASE("a caller that is not root can cover the host's files with mounted files, any name",
          "[local][security][rootless][userns][files]") {
  if (sandbox::local::detail::read_sysctl("/proc/sys/user/max_user_namespaces") == "0" ||
      sandbox::local::detail::read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == "0") {
    SANDBOX_SKIP("this host disables unprivileged user namespaces");
  }
  // /etc/hostname belongs to the host's root, unmapped in the caller's namespace: the file is
  // covered by a mount. The other names are ones the setup's own scratch file had or has.
  auto out = in_child([&](int fd) {
    if (!become_nobody()) return put(fd, "error", "could not drop to 65534");
    auto made = Box::run({.mounted_files = {{"/tmp/.sandbox-mounted-file", "mine\n"},
                                            {"/tmp/.sandbox-mounted-file-0", "mine too\n"},
                                            {"/etc/hostname", "covered\n"},
                                            {"/etc/passwd", "also\n"}}},
                         sandbox::local_transport::shared());
    if (!made) return put(fd, "error", made.error().message);
    put(fd, "files",
        sh(made.value(), "cat /tmp/.sandbox-mounted-file* /etc/hostname "
                         "/etc/passwd; ls -A /tmp | wc -l"));
    put(fd, "write", sh(made.value(), "{ echo x > /etc/hostname; } 2>/dev/null || echo refused"));
  });
  auto m = parse(out);
  INFO(out);
  CHECK(m.count("error") == 0);
  CHECK(m["files"] == "mine|mine too|covered|also|2|");
  CHECK(m["write"] == "refused|");
  CHECK(slurp("/etc/hostname") != "covered\n");
}

TEST_CASE("an image path is resolved where the caller stands, and never to a kernel interface",
          "[local][security][filesystem]") {
  // The process that mounts the image (a copy of the caller made at its first sandbox) has
  // another /proc/self: "/proc/self/cwd" must mean the caller's working directory, not that
  // copy's (which may be the host's root, secrets and all).
  (void)make_box(); // the copy exists, made in this working directory
  std::string dir = "/tmp/" + unique("sbx-cwd-image-");
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  { std::ofstream(dir + "/marker") << "the caller's directory\n"; }
  char before[PATH_MAX];
  REQUIRE(::getcwd(before, sizeof before));
  REQUIRE(std::string(before) != dir);
  REQUIRE(::chdir(dir.c_str()) == 0);
  auto box = Box::run({.image = "/proc/self/cwd"}, sandbox::local_transport::shared());
  REQUIRE(::chdir(before) == 0);
  REQUIRE(box);
  auto marker = box.value().read_file("/marker");
  REQUIRE(marker);
  CHECK(marker.value() == "the caller's directory\n");
  CHECK(!box.value().read_file("/etc/passwd"));
  (void)box.value().stop();
  // A working directory that no longer exists cannot be resolved: refused, never passed on to be
  // resolved again where /proc/self/cwd is another directory.
  std::string gone = "/tmp/" + unique("sbx-gone-");
  REQUIRE(::mkdir(gone.c_str(), 0755) == 0);
  REQUIRE(::chdir(gone.c_str()) == 0);
  REQUIRE(::rmdir(gone.c_str()) == 0);
  auto deleted = Box::run({.image = "/proc/self/cwd"}, sandbox::local_transport::shared());
  REQUIRE(::chdir(before) == 0);
  REQUIRE_FALSE(deleted);
  CHECK(deleted.error().is(sandbox::errc::validation));
  CHECK(deleted.error().message.find("cannot be resolved") != std::string::npos);
  // /proc and /sys hold no root filesystem, wherever they are bound.
  if (::geteuid() == 0) {
    std::string sys = "/tmp/" + unique("sbx-sys-");
    REQUIRE(::mkdir(sys.c_str(), 0700) == 0);
    REQUIRE(::mount("/sys/kernel", sys.c_str(), nullptr, MS_BIND, nullptr) == 0);
    auto bound = Box::run({.image = sys}, sandbox::local_transport::shared());
    ::umount2(sys.c_str(), MNT_DETACH);
    ::rmdir(sys.c_str());
    REQUIRE_FALSE(bound);
    CHECK(bound.error().message.find("kernel interface") != std::string::npos);
  }
  // A directory of another mount tree named through /proc (here a detached copy of an image,
  // as /proc/self/fd/N; likewise /proc/<pid>/root of another mount namespace) reads as "/" to
  // a resolution by text: its "root" subdirectory would have been the host's /root.
  if (::geteuid() == 0) {
    std::string tree_dir = "/tmp/" + unique("sbx-detached-");
    REQUIRE(::mkdir(tree_dir.c_str(), 0755) == 0);
    REQUIRE(::mkdir((tree_dir + "/root").c_str(), 0755) == 0);
    { std::ofstream(tree_dir + "/root/marker") << "the image\n"; }
    const std::string secret = unique("sbx-secret-");
    { std::ofstream("/root/" + secret) << "host\n"; }
    const int tree = static_cast<int>(
        ::syscall(SYS_open_tree, AT_FDCWD, tree_dir.c_str(), 1 /* OPEN_TREE_CLONE */ | O_CLOEXEC));
    REQUIRE(tree >= 0);
    auto other = Box::run({.image = "/proc/self/fd/" + std::to_string(tree) + "/root"},
                          sandbox::local_transport::shared());
    ::close(tree);
    ::unlink(("/root/" + secret).c_str());
    std::system(("rm -rf " + tree_dir).c_str());
    if (other) CHECK_FALSE(other.value().read_file("/" + secret));
    REQUIRE_FALSE(other);
    CHECK(other.error().is(sandbox::errc::validation));
    CHECK(other.error().message.find("cannot be resolved") != std::string::npos);
  }
  for (const char* image : {"/proc/self", "/proc/thread-self/fd", "/sys/kernel"}) {
    INFO(image);
    auto refused = Box::run({.image = image}, sandbox::local_transport::shared());
    REQUIRE_FALSE(refused);
    CHECK(refused.error().is(sandbox::errc::validation));
    CHECK(refused.error().message.find("kernel interface") != std::string::npos);
  }
  std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("a host that refuses user namespaces gets an error that says so",
          "[local][security][rootless]") {
  auto out = in_child([](int fd) {
    if (!become_nobody()) return put(fd, "error", "could not drop to 65534");
    // The kernel's answer on a host with user namespaces disabled: EPERM for CLONE_NEWUSER.
    sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_NEWUSER, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(std::size(code)), code};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
      return put(fd, "error", "seccomp");
    auto made = Box::run({}, sandbox::local_transport::shared());
    if (made) return put(fd, "error", "created a sandbox");
    put(fd, "unsupported", made.error().is(errc::unsupported) ? "yes" : "no");
    put(fd, "message", made.error().message);
  });
  auto m = parse(out);
  INFO(out);
  CHECK(m.count("error") == 0);
  CHECK(m["unsupported"] == "yes");
  CHECK(m["message"].find("user namespace was refused") != std::string::npos);
  CHECK(m["message"].find("Operation not permitted") != std::string::npos);
}

TEST_CASE("a caller under a seccomp filter that kills setns and fakes unshare still gets "
          "sandboxes, each in namespaces of its own",
          "[local][security]") {
  // Namespaces must come from the clone of each supervisor (or spare), never from unshare or
  // setns in the launcher: under such a filter setns would kill it, and an unshare that returns
  // 0 without doing it would put sandboxes in the host's namespaces (as namespaces made ahead
  // that way once did).
  auto out = in_child([](int fd) {
    sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_setns, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_unshare, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(std::size(code)), code};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
      return put(fd, "error", "seccomp");
    char host[64] = {};
    if (::readlink("/proc/self/ns/net", host, sizeof host - 1) <= 0) return put(fd, "error", "ns");
    std::vector<Box> boxes;
    std::string seen;
    for (int i = 0; i < 3; ++i) {
      auto box = Box::try_run({}, sandbox::local_transport::shared());
      if (!box) return put(fd, "error", box.error().message);
      auto ns = box.value().exec({"readlink", "/proc/self/ns/net"}).result();
      if (!ns || ns.value().returncode != 0) return put(fd, "error", "readlink in the sandbox");
      const std::string net = ns.value().stdout_text;
      if (net == std::string(host) + "\n") return put(fd, "error", "the host's network");
      if (seen.find(net) != std::string::npos) return put(fd, "error", "a network twice");
      seen += net;
      boxes.push_back(std::move(box).value());
    }
    put(fd, "started", "3");
  });
  auto m = parse(out);
  INFO(out);
  CHECK(m.count("error") == 0);
  CHECK(m["started"] == "3");
}

TEST_CASE("a caller that cannot map a user namespace is told why", "[local][security][rootless]") {
  auto out = in_child([](int fd) {
    // Dropped to nobody but left non-dumpable, as a process that changed uid is.
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0)
      return put(fd, "error", "could not drop to 65534");
    auto start = std::chrono::steady_clock::now();
    auto made = Box::run({}, sandbox::local_transport::shared());
    if (made) return put(fd, "error", "created a sandbox");
    put(fd, "message", made.error().message);
    // A refusal that will not go away is not retried (the default policy would wait 30 s).
    put(fd, "fast",
        std::chrono::steady_clock::now() - start < std::chrono::seconds(5) ? "yes" : "no");
  });
  auto m = parse(out);
  INFO(out);
  CHECK(m.count("error") == 0);
  CHECK(m["message"].find("not dumpable") != std::string::npos);
  CHECK(m["fast"] == "yes");
}

namespace {

struct inode_facts {
  mode_t mode;
  uid_t uid;
  gid_t gid;
  std::int64_t ctime_ns, mtime_ns;
  bool operator==(const inode_facts&) const = default;
};

inode_facts facts_of(const char* path) {
  struct stat st {};
  REQUIRE(::stat(path, &st) == 0);
  return {st.st_mode, st.st_uid, st.st_gid, st.st_ctim.tv_sec * 1000000000LL + st.st_ctim.tv_nsec,
          st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec};
}

/// Python run inside: every way of changing an inode's metadata, on each path given.
constexpr const char* change_metadata = R"(
import os, sys
for p in sys.argv[1:]:
    for what, f in (("chmod", lambda: os.chmod(p, 0)), ("chown", lambda: os.chown(p, 1, 1)),
                    ("utime", lambda: os.utime(p, (0, 0))), ("touch", lambda: os.utime(p)),
                    ("setxattr", lambda: os.setxattr(p, "user.x", b"1")),
                    ("setxattr_trusted", lambda: os.setxattr(p, "trusted.x", b"1"))):
        try:
            f()
            print(p, what, "ok")
        except OSError as e:
            print(p, what, e.errno)
)";

} // namespace

TEST_CASE("nothing done inside changes a host device node or what masks /proc",
          "[local][security][dev]") {
  // The sandbox's nodes are binds of these host inodes; the masked /proc files are binds of
  // /dev/null.
  const char* nodes[] = {"/dev/null",   "/dev/zero",    "/dev/full",
                         "/dev/random", "/dev/urandom", "/dev/tty"};
  std::map<std::string, inode_facts> before;
  for (const char* n : nodes)
    before[n] = facts_of(n);
  auto box = make_box();
  std::vector<std::string> argv = {"python3", "-c", change_metadata};
  for (const char* n : nodes)
    argv.push_back(n);
  for (const char* f : {"/proc/kcore", "/proc/keys", "/proc/timer_list"})
    if (run(box, {"test", "-c", f}).code == 0) argv.push_back(f); // masked with /dev/null here
  auto o = run(box, argv);
  INFO(o.out << o.err);
  CHECK(o.code == 0);
  CHECK(o.out.find(" ok") == std::string::npos); // every change was refused
  for (const char* n : nodes) {
    INFO(n);
    CHECK(facts_of(n) == before[n]);
    // Where the protection failed, give the host its nodes back.
    if (!(facts_of(n) == before[n])) {
      CHECK(::chown(n, before[n].uid, before[n].gid) == 0);
      CHECK(::chmod(n, before[n].mode & 07777) == 0);
    }
  }
  // ... and the nodes still work.
  CHECK(sh(box, "echo x > /dev/null && head -c 5 /dev/zero | wc -c && head -c 8 /dev/urandom | "
                "wc -c && head -c 8 /dev/random | wc -c") == "5\n8\n8\n");
  CHECK(sh(box, "head -c 1 /dev/zero > /dev/full").find("No space left") != std::string::npos);
  CHECK(sh(box, "ls -l /dev/null | cut -c1-10") == "crw-rw-rw-\n");
}

TEST_CASE("the caller's command line and environment are not visible inside",
          "[local][security][supervisor]") {
  // This test program's own argv[0] is the marker: PID 1 is a clone of this process.
  std::string self = slurp("/proc/self/cmdline");
  REQUIRE(!self.empty());
  std::string argv0 = self.substr(0, self.find('\0'));
  auto box = make_box();
  std::string cmdline = run(box, {"cat", "/proc/1/cmdline"}).out;
  CHECK(cmdline.substr(0, 13) == std::string("sandbox-init\0", 13));
  CHECK(cmdline.find(argv0) == std::string::npos);
  CHECK(cmdline.find_first_not_of('\0', 12) == std::string::npos);
  std::string all = sh(box, "cat /proc/[0-9]*/cmdline /proc/[0-9]*/comm /proc/[0-9]*/status "
                            "/proc/[0-9]*/environ 2>/dev/null");
  CHECK(all.find(argv0) == std::string::npos);
  CHECK(all.find("client-secret") == std::string::npos);
  CHECK(run(box, {"cat", "/proc/1/environ"}).code != 0);
  CHECK(run(box, {"cat", "/proc/1/comm"}).out == "sandbox-init\n");
  CHECK(sh(box, "grep Name: /proc/1/status") == "Name:\tsandbox-init\n");
}

TEST_CASE("a sandbox has its own cgroup namespace", "[local][security][cgroup]") {
  auto all_root = [](const std::string& cgroups) {
    std::istringstream in(cgroups);
    int lines = 0;
    for (std::string line; std::getline(in, line); ++lines)
      if (line.substr(line.rfind(':') + 1) != "/") return false;
    return lines > 0;
  };
  std::string host = slurp("/proc/self/cgroup");
  INFO("host: " << host);
  {
    auto box = make_box();
    auto seen = run(box, {"cat", "/proc/self/cgroup"}).out;
    INFO("inside: " << seen);
    CHECK(all_root(seen));
    CHECK(run(box, {"cat", "/proc/1/cgroup"}).out == seen);
  }
  {
    // With limits the sandbox has a cgroup of its own on the host, named after its owner's pid
    // and its id: neither shows inside.
    auto box = make_box({.resources = {.memory_bytes = 256u << 20, .max_pids = 256}});
    auto seen = run(box, {"cat", "/proc/self/cgroup"}).out;
    INFO("inside: " << seen);
    CHECK(all_root(seen));
    CHECK(seen.find(box.id()) == std::string::npos);
    CHECK(seen.find("sandbox") == std::string::npos);
  }
}

namespace {

/// Held by a test that changes what the host's root shows, so that the same test in the other
/// exception mode (a process of its own, run at the same time) does not see its changes.
struct host_root_lock {
  int fd = ::open("/tmp/sandbox-tests-host-root.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  host_root_lock() {
    REQUIRE(fd >= 0);
    while (::flock(fd, LOCK_EX) != 0 && errno == EINTR) {
    }
  }
  ~host_root_lock() { ::close(fd); }
  host_root_lock(const host_root_lock&) = delete;
  host_root_lock& operator=(const host_root_lock&) = delete;
};

/// Files the test plants where the host keeps its secrets; removed when it goes.
struct planted_secrets {
  host_root_lock lock;
  std::string token = unique("host-secret-");
  std::string home = "/home/" + unique("sbx-user-");
  std::string top = "/" + unique("sbx-top-"); // a top-level directory of the host's own
  std::vector<std::string> files = {"/root/" + token, home + "/" + token, "/var/lib/" + token,
                                    "/srv/" + token,  "/run/" + token,    "/var/tmp/" + token,
                                    top + "/" + token};
  planted_secrets() {
    REQUIRE(::mkdir(home.c_str(), 0755) == 0);
    REQUIRE(::mkdir(top.c_str(), 0755) == 0);
    for (const auto& f : files) {
      std::ofstream(f) << token << "\n";
      ::chmod(f.c_str(), 0644);
    }
  }
  ~planted_secrets() {
    for (const auto& f : files)
      ::unlink(f.c_str());
    ::rmdir(home.c_str());
    ::rmdir(top.c_str());
  }
};

} // namespace

TEST_CASE("the default root hides the host's secrets and keeps what programs need",
          "[local][security][filesystem]") {
  planted_secrets s;
  REQUIRE(slurp("/etc/shadow").size() > 0);
  auto box = make_box();
  for (const auto& f : s.files) {
    INFO(f);
    CHECK(run(box, {"cat", f}).code != 0);
  }
  CHECK(sh(box, "cat /root/* /home/*/* /var/lib/* /srv/* /run/* 2>/dev/null; grep -r " + s.token +
                    " /root /home /var /srv /run /etc /opt 2>/dev/null | head -1") == "");
  for (const char* f : {"/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/machine-id",
                        "/etc/ssl/private", "/etc/shadow-"}) {
    INFO(f);
    CHECK(run(box, {"test", "-e", f}).code != 0);
  }
  CHECK(sh(box, "ls /etc/ssh/ 2>/dev/null | grep -c ssh_host_") == "0\n");
  CHECK(sh(box, "for d in /root /home /srv /var/lib /var/log /var/cache; do ls -A $d | wc -l; "
                "done | tr -d '\\n'") == "000000");
  CHECK(sh(box, "ls -A /run") == "lock\n");
  // The top level holds only the usual directories: nothing the host added to it. (What the
  // host adds while the sandbox runs shows, as README says: the same test running in the other
  // exception mode plants "sbx-…" directories meanwhile.)
  for (const auto& name : [&] {
         std::vector<std::string> v;
         std::istringstream in(sh(box, "ls -A /"));
         for (std::string n; std::getline(in, n);)
           if (n.rfind("sbx-", 0) != 0) v.push_back(n);
         return v;
       }()) {
    INFO(name);
    CHECK(std::find_if(std::begin(sandbox::local::detail::hidden::top_level_shown),
                       std::end(sandbox::local::detail::hidden::top_level_shown),
                       [&](const char* t) { return name == t; }) !=
          std::end(sandbox::local::detail::hidden::top_level_shown));
  }
  CHECK(run(box, {"test", "-e", s.top}).code != 0);
  CHECK(sh(box, "ls /var | tr '\\n' ' '") == "cache lib local lock log opt run spool tmp ");
  CHECK(sh(box, "stat -c %a /root /var/tmp /run/lock | tr '\\n' ' '") == "700 1777 1777 ");
  // What programs need is there: the dynamic linker's cache, users, name service, certificates.
  CHECK(run(box, {"test", "-s", "/etc/ld.so.cache"}).code == 0);
  CHECK(sh(box, "getent passwd root | cut -d: -f1,6") == "root:/root\n");
  CHECK(sh(box, "ls -A /etc/ssl/certs 2>/dev/null | wc -l") ==
        std::to_string(host_entries("/etc/ssl/certs")) + "\n");
  CHECK(run(box, {"python3", "-c", "import json, ssl; print('ok')"}).out == "ok\n");
  // The sandbox may make its own: a file in /root, a shadow file.
  CHECK(sh(box, "echo x > /root/mine && cat /root/mine && echo 'u:*:1::::::' > /etc/shadow && "
                "cat /etc/shadow") == "x\nu:*:1::::::\n");
  CHECK(slurp("/etc/shadow").find("u:*:1::::::") == std::string::npos);

  // Asked for explicitly, the whole host root.
  auto whole = make_box({.whole_host_root = true});
  CHECK(run(whole, {"cat", s.files[0]}).out == s.token + "\n");
  CHECK(run(whole, {"cat", s.top + "/" + s.token}).out == s.token + "\n");
  CHECK(run(whole, {"test", "-e", "/etc/shadow"}).code == 0);
}

TEST_CASE("the host's root named as an image hides its secrets as the default root does",
          "[local][security][filesystem]") {
  if (::geteuid() != 0) {
    SANDBOX_SKIP("binding the host's root elsewhere needs root");
  }
  planted_secrets s;
  struct bound_root { // the host's root seen through a second path
    std::string dir = "/tmp/" + unique("sbx-hostroot-");
    bound_root() {
      REQUIRE(::mkdir(dir.c_str(), 0700) == 0);
      REQUIRE(::mount("/", dir.c_str(), nullptr, MS_BIND, nullptr) == 0);
    }
    ~bound_root() {
      ::umount2(dir.c_str(), MNT_DETACH);
      ::rmdir(dir.c_str());
    }
  } bound;
  for (const std::string& image : {std::string("/"), std::string("/usr/.."), bound.dir}) {
    INFO(image);
    auto box = make_box({.image = image});
    CHECK(run(box, {"test", "-e", "/etc/shadow"}).code != 0);
    CHECK(run(box, {"cat", s.files[0]}).code != 0);
    CHECK(run(box, {"test", "-e", s.top}).code != 0);
    CHECK(run(box, {"test", "-s", "/etc/ld.so.cache"}).code == 0);
  }
  auto whole = make_box({.image = "/", .whole_host_root = true});
  CHECK(run(whole, {"cat", s.files[0]}).out == s.token + "\n");
}

TEST_CASE("an image directory swapped for a symlink while the sandbox starts never shows the "
          "host's root",
          "[local][security][filesystem]") {
  // A host process that may rename in the image's directory swaps it for a symlink, over and
  // over: to the host's root (the image's own name), or, one directory up, to /proc/1 (whose
  // "root" is the host's root). Each start ends on the image, on the default root with the
  // secrets hidden (the path resolved to "/": no image), or refused; never on the host's root.
  planted_secrets s;
  const std::string base = "/tmp/" + unique("sbx-swap-");
  REQUIRE(::mkdir(base.c_str(), 0755) == 0);
  struct variant {
    std::string swapped, decoy, target, image;
  };
  const variant variants[] = {
      {base + "/img", base + "/img-link", "/", base + "/img"},
      {base + "/d", base + "/d-link", "/proc/1", base + "/d/root"},
  };
  for (const variant& v : variants) {
    INFO(v.image);
    REQUIRE(::mkdir(v.swapped.c_str(), 0755) == 0);
    if (v.image != v.swapped) REQUIRE(::mkdir(v.image.c_str(), 0755) == 0);
    { std::ofstream(v.image + "/marker") << "the image\n"; }
    REQUIRE(::symlink(v.target.c_str(), v.decoy.c_str()) == 0);
    std::atomic<bool> done{false};
    std::thread swapper([&] {
      while (!done) {
        (void)::syscall(SYS_renameat2, AT_FDCWD, v.swapped.c_str(), AT_FDCWD, v.decoy.c_str(),
                        RENAME_EXCHANGE);
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    });
    int on_image = 0, on_default = 0, refused = 0;
    for (int i = 0; i < 60; ++i) {
      auto box = Box::run({.image = v.image}, sandbox::local_transport::shared());
      if (!box) {
        ++refused;
        CHECK(box.error().is(errc::validation));
        continue;
      }
      auto marker = box.value().read_file("/marker");
      if (marker && marker.value() == "the image\n") {
        ++on_image;
      } else {
        ++on_default;
        CHECK(box.value().read_file("/etc/ld.so.cache")); // a root of the host's, then
      }
      // The host's secrets, wherever the sandbox ended up.
      CHECK(!box.value().read_file(s.files[0]));
      CHECK(!box.value().read_file("/etc/shadow"));
      (void)box.value().stop();
    }
    done = true;
    swapper.join();
    UNSCOPED_INFO(v.image << ": " << on_image << " on the image, " << on_default
                          << " on the default root, " << refused << " refused");
    std::system(("rm -rf " + base + "/*").c_str());
  }
  ::rmdir(base.c_str());
}

TEST_CASE("what the default root hides follows the host's changes between sandboxes",
          "[local][security][filesystem]") {
  // The hidden entries are prepared once and shared by later sandboxes (hidden_layer.hpp) while
  // the host's watched directories keep their times; times younger than 2 s are not trusted.
  using namespace std::chrono_literals;
  using sandbox::local::detail::hidden::current_layer;
  planted_secrets s;
  auto hides_top = [&] {
    auto box = make_box();
    return run(box, {"test", "-e", s.top}).code != 0;
  };
  CHECK(hides_top());
  // Once the host is quiet for 2 s, one layer serves every sandbox.
  auto quiet = current_layer();
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(2500ms);
    quiet = current_layer();
    if (quiet && quiet == current_layer()) break;
  }
  REQUIRE(quiet);
  CHECK(quiet == current_layer());
  CHECK(hides_top());

  // The host adds a top-level directory and a key where host keys live, and changes /srv's mode.
  struct host_changes {
    std::string later = "/" + unique("sbx-later-");
    std::string key = "/etc/ssh/ssh_host_" + unique("sbx-") + "_key";
    bool ssh = ::access("/etc/ssh", F_OK) == 0;
    struct stat srv {};
    host_changes() {
      REQUIRE(::stat("/srv", &srv) == 0);
      REQUIRE(::mkdir(later.c_str(), 0755) == 0);
      if (ssh) std::ofstream(key) << "key\n";
      REQUIRE(::chmod("/srv", 0711) == 0);
    }
    ~host_changes() {
      ::chmod("/srv", srv.st_mode & 07777);
      ::rmdir(later.c_str());
      if (ssh) ::unlink(key.c_str());
    }
  } changed;
  CHECK(current_layer() != quiet);
  auto box = make_box();
  CHECK(run(box, {"test", "-e", changed.later}).code != 0);
  if (changed.ssh) CHECK(run(box, {"test", "-e", changed.key}).code != 0);
  CHECK(sh(box, "stat -c %a /srv") == "711\n");
  CHECK(run(box, {"test", "-e", s.top}).code != 0);
}

TEST_CASE("a caller that is not root does not see the host's secrets either",
          "[local][security][rootless][userns]") {
  if (sandbox::local::detail::read_sysctl("/proc/sys/user/max_user_namespaces") == "0") {
    SANDBOX_SKIP("this host disables user namespaces");
  }
  planted_secrets s;
  auto out = in_child([&](int fd) {
    if (!become_nobody()) return put(fd, "error", "could not drop to 65534");
    auto made = Box::run({}, sandbox::local_transport::shared());
    if (!made) return put(fd, "error", made.error().message);
    auto& box = made.value();
    put(fd, "home", sh(box, "cat " + s.home + "/" + s.token + " 2>/dev/null | grep -c " + s.token));
    put(fd, "listing",
        sh(box, "for d in /root /home /srv /var/lib; do ls -A $d | wc -l; done; "
                "ls -A /run"));
    put(fd, "shadow", sh(box, "test -e /etc/shadow && echo present || echo absent"));
    put(fd, "ssh", sh(box, "ls /etc/ssh 2>/dev/null | grep -c ssh_host_"));
    put(fd, "passwd", sh(box, "grep -c ^root: /etc/passwd"));
    put(fd, "top", sh(box, "test -e " + s.top + " && echo present || echo absent"));
  });
  auto m = parse(out);
  INFO(out);
  CHECK(m.count("error") == 0);
  CHECK(m["home"] == "0|");
  CHECK(m["listing"] == "0|0|0|0|lock|");
  CHECK(m["shadow"] == "absent|");
  CHECK(m["ssh"] == "0|");
  CHECK(m["passwd"] == "1|");
  CHECK(m["top"] == "absent|");
}

TEST_CASE("what a sandbox writes is bounded, and the host is unharmed", "[local][security][disk]") {
  {
    // The defaults: 1 GiB for the writable layer and /tmp together, 64 MiB of /dev/shm.
    auto box = make_box();
    CHECK(sh(box, "df -B1 --output=size /tmp /dev/shm | tail -2 | tr -s ' \\n' ' '") ==
          std::to_string(sandbox::default_disk_bytes) + " " + std::to_string(64u << 20) + " ");
  }
  auto box = make_box({.resources = {.disk_bytes = 32u << 20}});
  for (const char* where : {"/tmp/big", "/var/tmp/big", "/usr/big", "/dev/shm/big"}) {
    INFO(where);
    auto o = run(box, {"sh", "-c",
                       std::string("head -c 100M /dev/zero > ") + where + "; echo $?; stat -c %s " +
                           where + "; rm -f " + where});
    INFO(o.out << o.err);
    CHECK(o.err.find("No space left on device") != std::string::npos);
    CHECK(o.out.substr(0, 2) == "1\n");
    CHECK(std::stoull(o.out.substr(2)) <= (64ull << 20));
  }
  // The writable layer and /tmp share one budget.
  CHECK(sh(box, "head -c 20M /dev/zero > /tmp/a && head -c 20M /dev/zero 2>/dev/null > /var/tmp/b; "
                "echo $?") == "1\n");
  // Commands still run once space is freed.
  CHECK(sh(box, "rm -f /tmp/a /var/tmp/b; echo ok > /tmp/c && cat /tmp/c") == "ok\n");
}
