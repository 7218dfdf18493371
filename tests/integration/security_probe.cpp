// SPDX-License-Identifier: MIT
// Attacks run inside a local sandbox by local_security_test. Each mode tries one thing a hostile
// program would try and prints what happened, one "name result" line per attempt, where result
// is "ok" or the errno name; the test decides what is acceptable. Plain libc only, so it runs
// wherever the test copies it.
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/io_uring.h>
#include <linux/kcmp.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

// Under AddressSanitizer builds the probe is instrumented too; LeakSanitizer needs ptrace-like
// access that the sandbox (rightly) denies, so leak checking is off for this program.
extern "C" const char* __asan_default_options() { return "detect_leaks=0"; }

namespace {

const char* errname(int e) {
  switch (e) {
  case 0: return "ok";
  case EPERM: return "EPERM";
  case EACCES: return "EACCES";
  case ENOSYS: return "ENOSYS";
  case ENOENT: return "ENOENT";
  case EINVAL: return "EINVAL";
  case EFAULT: return "EFAULT";
  case EBADF: return "EBADF";
  case ESRCH: return "ESRCH";
  case EROFS: return "EROFS";
  case ENXIO: return "ENXIO";
  case ECONNREFUSED: return "ECONNREFUSED";
  case ENETUNREACH: return "ENETUNREACH";
  case EAFNOSUPPORT: return "EAFNOSUPPORT";
  case EOPNOTSUPP: return "EOPNOTSUPP";
  case EIO: return "EIO";
  default: return strerror(e);
  }
}

/// Prints "name result" for a call that returns -1 on failure.
void report(const char* name, long rc) {
  std::printf("%s %s\n", name, errname(rc == -1 ? errno : 0));
}

int syscalls() {
  // Each call below is harmless if it succeeds in a process of its own, and most would succeed
  // without the seccomp filter even though commands hold no CAP_SYS_ADMIN: these are the ones
  // the filter alone stops.
  report("unshare_user", ::unshare(CLONE_NEWUSER));
  report("unshare_net", ::unshare(CLONE_NEWNET));
  report("clone_newuser", [] {
    long pid = ::syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) ::_exit(0);
    if (pid > 0) ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
    return pid;
  }());
  report("clone3", ::syscall(SYS_clone3, nullptr, 0));
  report("keyctl", ::syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
  report("add_key",
         ::syscall(SYS_add_key, "user", "sandbox-probe", "x", 1, KEY_SPEC_PROCESS_KEYRING));
  report("userfaultfd", ::syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY));
  perf_event_attr pe{};
  pe.size = sizeof pe;
  pe.type = PERF_TYPE_SOFTWARE;
  pe.config = PERF_COUNT_SW_TASK_CLOCK;
  pe.exclude_kernel = 1;
  pe.exclude_hv = 1;
  report("perf_event_open", ::syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
  io_uring_params up{};
  report("io_uring_setup", ::syscall(SYS_io_uring_setup, 1, &up));
  char src[8] = "secret", dst[8] = {};
  iovec l{dst, sizeof dst}, r{src, sizeof src};
  report("process_vm_readv_self", ::syscall(SYS_process_vm_readv, ::getpid(), &l, 1, &r, 1, 0));
  report("kcmp_self", ::syscall(SYS_kcmp, ::getpid(), ::getpid(), KCMP_FILE, 0, 0));
  report("ptrace_child", [] {
    pid_t child = ::fork();
    if (child == 0) {
      ::pause();
      ::_exit(0);
    }
    long rc = ::ptrace(PTRACE_SEIZE, child, nullptr, nullptr);
    int err = errno;
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    errno = err;
    return rc;
  }());
  report("personality_bsd", [] {
    long rc = ::personality(0x0006); // PER_BSD
    if (rc != -1) ::personality(PER_LINUX);
    return rc;
  }());
  report("personality_query", ::personality(0xffffffff));
  report("socket_vsock", ::socket(AF_VSOCK, SOCK_STREAM, 0));
  report("mount_tmpfs", ::mount("none", "/mnt", "tmpfs", 0, nullptr));
  report("umount_proc", ::umount2("/proc", MNT_DETACH));
  report("pivot_root", ::syscall(SYS_pivot_root, "/", "/"));
  report("bpf", ::syscall(SYS_bpf, 0, nullptr, 0));
  report("setns", ::syscall(SYS_setns, ::open("/proc/self/ns/net", O_RDONLY), 0));
  report("open_by_handle_at", ::syscall(SYS_open_by_handle_at, AT_FDCWD, nullptr, 0));
  report("init_module", ::syscall(SYS_init_module, nullptr, 0, ""));
  report("kexec_load", ::syscall(SYS_kexec_load, 0, 0, nullptr, 0));
  report("reboot", ::syscall(SYS_reboot, 0, 0, 0, nullptr));
  report("swapoff", ::syscall(SYS_swapoff, "/nonexistent"));
  report("settimeofday", ::syscall(SYS_settimeofday, nullptr, nullptr));
  report("syslog", ::syscall(SYS_syslog, 3, nullptr, 0));
  // What must keep working: a fork (clone without namespace flags), unshare of nothing new.
  report("fork", [] {
    pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    if (child > 0) ::waitpid(child, nullptr, 0);
    return static_cast<long>(child);
  }());
  report("unshare_files", ::unshare(CLONE_FILES));
  return 0;
}

/// A system call through the i386 ABI (int 0x80) or the x32 ABI; the filter kills the process.
int foreign_abi(const char* which) {
#if defined(__x86_64__)
  // The kernel's signal must end the process: a sanitizer's SIGSEGV handler would exit instead.
  std::signal(SIGSEGV, SIG_DFL);
  std::signal(SIGSYS, SIG_DFL);
  long rc;
  if (std::strcmp(which, "i386") == 0) {
    long nr = 20; // getpid in the i386 table
    asm volatile("int $0x80" : "=a"(rc) : "a"(nr) : "memory");
  } else {
    rc = ::syscall(0x40000000L | SYS_getpid);
  }
  std::printf("%s survived %ld\n", which, rc);
#else
  std::printf("%s unsupported\n", which);
#endif
  return 0;
}

/// Everything a command might try against the supervisor (PID 1), which holds a copy of the
/// client's memory: `addr` is where the client keeps a secret, so also where PID 1 has it.
int supervisor(unsigned long addr) {
  char buf[64] = {};
  auto leaked = [&](const char* name, long n) {
    if (n > 0)
      std::printf("%s ok %.*s\n", name, static_cast<int>(n), buf);
    else
      report(name, -1);
  };
  int fd = ::open("/proc/1/environ", O_RDONLY);
  leaked("environ", fd < 0 ? -1 : ::pread(fd, buf, sizeof buf - 1, 0));
  fd = ::open("/proc/1/mem", O_RDONLY);
  leaked("mem", fd < 0 ? -1 : ::pread(fd, buf, 32, static_cast<off_t>(addr)));
  iovec l{buf, 32}, r{reinterpret_cast<void*>(addr), 32};
  leaked("process_vm_readv", ::syscall(SYS_process_vm_readv, 1, &l, 1, &r, 1, 0));
  long rc = ::ptrace(PTRACE_ATTACH, 1, nullptr, nullptr);
  report("ptrace_attach", rc);
  if (rc == 0) ::ptrace(PTRACE_DETACH, 1, nullptr, nullptr);
  char link[256];
  report("fd_link", ::readlink("/proc/1/fd/3", link, sizeof link)); // its control socket
  report("root_link", ::readlink("/proc/1/root", link, sizeof link));
  report("kill_term", ::kill(1, SIGTERM));
  report("kill_kill", ::kill(1, SIGKILL));
  return 0;
}

/// Sends SIGKILL to every pid in [lo, hi] that is not part of this sandbox's own small set,
/// and reports how many signals were delivered.
int kill_range(long lo, long hi) {
  int delivered = 0;
  for (long pid = lo; pid <= hi; ++pid) {
    if (pid == ::getpid() || pid <= 1) continue;
    if (::kill(static_cast<pid_t>(pid), SIGKILL) == 0) ++delivered;
  }
  std::printf("delivered %d\n", delivered);
  return 0;
}

int connect_tcp(const char* host, int port) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, host, &a.sin_addr);
  report("connect", ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a));
  return 0;
}

/// A TCP server on 127.0.0.1 inside the sandbox, and a client of it in the same sandbox.
int loopback_roundtrip() {
  int srv = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(srv, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(srv, 1) != 0 ||
      ::getsockname(srv, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    return report("listen", -1), 0;
  int cli = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(cli, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return report("connect", -1), 0;
  int conn = ::accept(srv, nullptr, nullptr);
  char c = 0;
  bool ok = ::write(cli, "x", 1) == 1 && ::read(conn, &c, 1) == 1 && c == 'x';
  std::printf("roundtrip %s\n", ok ? "ok" : "broken");
  return 0;
}

/// Connects to a unix socket (a path, or "@name" for the abstract namespace) and prints what it
/// says first.
int connect_unix(const char* path) {
  int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::size_t n = std::strlen(path);
  std::memcpy(a.sun_path, path, n);
  if (path[0] == '@') a.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n);
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), len) != 0) return report("connect", -1), 0;
  char buf[64] = {};
  long got = ::read(s, buf, sizeof buf - 1);
  std::printf("connect ok %s\n", got > 0 ? buf : "");
  return 0;
}

/// Tries to reach the host's disk: a block device node `major`:`minor` (the host's root
/// filesystem, as the test saw it), made in each writable place, then opened for reading (never
/// for writing).
int raw_disk(unsigned major_nr, unsigned minor_nr, const char* dirs_csv) {
  dev_t dev = makedev(major_nr, minor_nr);
  char dirs[512];
  std::snprintf(dirs, sizeof dirs, "%s", dirs_csv);
  for (char* d = std::strtok(dirs, ","); d; d = std::strtok(nullptr, ",")) {
    char path[600];
    std::snprintf(path, sizeof path, "%s/probe-disk", d);
    ::unlink(path);
    long rc = ::mknod(path, S_IFBLK | 0600, dev);
    std::printf("mknod %s %s\n", d, errname(rc == -1 ? errno : 0));
    if (rc == -1) {
      // Maybe the node exists some other way: also try a character device (/dev/mem is 1:1).
      rc = ::mknod(path, S_IFCHR | 0600, makedev(1, 1));
      std::printf("mknod_chr %s %s\n", d, errname(rc == -1 ? errno : 0));
      if (rc == -1) continue;
    }
    int fd = ::open(path, O_RDONLY);
    std::printf("open %s %s\n", d, errname(fd < 0 ? errno : 0));
    if (fd >= 0) {
      char sector[512];
      std::printf("read %s %s\n", d, errname(::read(fd, sector, sizeof sector) == 512 ? 0 : errno));
      ::close(fd);
    }
    ::unlink(path);
  }
  return 0;
}

/// The classic chroot escape, then a look for the host's marker file.
int chroot_escape(const char* marker) {
  ::mkdir("/tmp/jail", 0755);
  long rc = ::chroot("/tmp/jail");
  report("chroot", rc);
  for (int i = 0; i < 64; ++i)
    (void)!::chdir("..");
  report("chroot_dot", ::chroot("."));
  report("marker", ::access(marker, F_OK));
  return 0;
}

/// Opens the controlling terminal.
int tty() {
  report("open_tty", ::open("/dev/tty", O_RDWR | O_NOCTTY));
  return 0;
}

/// Drops to `uid` (and gid) and executes the rest of the arguments.
int drop_exec(int uid, char** argv) {
  gid_t g = static_cast<gid_t>(uid);
  if (::setgroups(1, &g) != 0 || ::setresgid(g, g, g) != 0 ||
      ::setresuid(static_cast<uid_t>(uid), static_cast<uid_t>(uid), static_cast<uid_t>(uid)) != 0)
    return report("drop", -1), 1;
  ::execv(argv[0], argv);
  report("execv", -1);
  return 1;
}

int ids() {
  uid_t r, e, s;
  ::getresuid(&r, &e, &s);
  std::printf("uids %u %u %u\n", r, e, s);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc < 2) return 2;
  const char* mode = argv[1];
  if (!std::strcmp(mode, "syscalls")) return syscalls();
  if (!std::strcmp(mode, "abi") && argc == 3) return foreign_abi(argv[2]);
  if (!std::strcmp(mode, "supervisor") && argc == 3)
    return supervisor(std::strtoul(argv[2], nullptr, 0));
  if (!std::strcmp(mode, "kill-range") && argc == 4)
    return kill_range(std::atol(argv[2]), std::atol(argv[3]));
  if (!std::strcmp(mode, "connect-tcp") && argc == 4)
    return connect_tcp(argv[2], std::atoi(argv[3]));
  if (!std::strcmp(mode, "loopback")) return loopback_roundtrip();
  if (!std::strcmp(mode, "connect-unix") && argc == 3) return connect_unix(argv[2]);
  if (!std::strcmp(mode, "raw-disk") && argc == 5)
    return raw_disk(static_cast<unsigned>(std::atoi(argv[2])),
                    static_cast<unsigned>(std::atoi(argv[3])), argv[4]);
  if (!std::strcmp(mode, "chroot-escape") && argc == 3) return chroot_escape(argv[2]);
  if (!std::strcmp(mode, "tty")) return tty();
  if (!std::strcmp(mode, "drop-exec") && argc >= 4) return drop_exec(std::atoi(argv[2]), argv + 3);
  if (!std::strcmp(mode, "ids")) return ids();
  std::fprintf(stderr, "unknown mode %s\n", mode);
  return 2;
}
