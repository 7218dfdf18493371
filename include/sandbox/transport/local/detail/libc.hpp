// SPDX-License-Identifier: MIT
// The C library functions a supervisor calls (and a command's child before its execve), reached
// through pointers that the dynamic linker fills when it loads the program.
//
// A direct call goes through the PLT, and is bound at its first call: the dynamic linker looks the
// name up in every library loaded before the C library and writes the address into the program's
// GOT. The client seldom calls mount or sethostname itself, so each supervisor (a copy of the
// client made by clone) bound them anew in its own copy, and that faulted: a clone does not copy
// the page tables of file mappings, and each lookup reads the hash tables of the libraries, the
// dynamic linker's code and the GOT's page (about 13 faults of 15–20 µs here, 0.3 ms of a 3.5 ms
// run(); more in a client that loads more libraries). A pointer initialized with a function's
// address is a data relocation, which is never lazy.
//
// Where that holds: in an executable, PIE or not, unless non-PIC code of it takes the address of
// the same function (the linker then points every reference at a PLT stub of its own); and in a
// shared library, where the supervisor's own functions are hidden (see supervisor.hpp) so that
// calls between them do not go through its PLT either. The pointers are `used` (link-time
// optimization would otherwise see they are never written and fold them back into direct calls)
// and live in .data.rel.ro.* sections of their own (the name .data.rel.ro itself conflicts with
// the compiler's constant objects there): read-only once relocated in a program linked with
// RELRO, like the GOT they stand in for. Calls through them skip _FORTIFY_SOURCE's checks.
//
// memcpy, memset, memcmp, strlen, strcmp and errno's __errno_location stay direct calls: every
// client calls them before any sandbox starts. A call missed here is only slower, never wrong.
#pragma once

#include <csignal>
#include <cstddef>
#include <cstring>
#include <ctime>

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

// Not const: the compiler folds a constant pointer back into a direct call.
// A section each: one shared by all would make them one COMDAT group, named after whichever the
// compiler emits first, which differs between -O0 and -O2 (the link then fails).
#define SANDBOX_LIBC_POINTER(name)                                                                 \
  [[gnu::used, gnu::section(".data.rel.ro.sandbox_libc." #name)]] inline auto name

#pragma GCC visibility push(hidden)
namespace sandbox::local::detail::libc {

// Files and directories.
SANDBOX_LIBC_POINTER(open) = &::open;
SANDBOX_LIBC_POINTER(openat) = &::openat;
SANDBOX_LIBC_POINTER(close) = &::close;
SANDBOX_LIBC_POINTER(read) = &::read;
SANDBOX_LIBC_POINTER(write) = &::write;
SANDBOX_LIBC_POINTER(fcntl) = &::fcntl;
SANDBOX_LIBC_POINTER(dup2) = &::dup2;
SANDBOX_LIBC_POINTER(pipe2) = &::pipe2;
SANDBOX_LIBC_POINTER(ioctl) = &::ioctl;
SANDBOX_LIBC_POINTER(ftruncate) = &::ftruncate;
SANDBOX_LIBC_POINTER(stat) = &::stat;
SANDBOX_LIBC_POINTER(lstat) = &::lstat;
SANDBOX_LIBC_POINTER(fstat) = &::fstat;
SANDBOX_LIBC_POINTER(fstatfs) = &::fstatfs;
SANDBOX_LIBC_POINTER(statx) = &::statx;
SANDBOX_LIBC_POINTER(mkdir) = &::mkdir;
SANDBOX_LIBC_POINTER(mknod) = &::mknod;
SANDBOX_LIBC_POINTER(symlink) = &::symlink;
SANDBOX_LIBC_POINTER(readlink) = &::readlink;
SANDBOX_LIBC_POINTER(unlink) = &::unlink;
SANDBOX_LIBC_POINTER(chmod) = &::chmod;
SANDBOX_LIBC_POINTER(chown) = &::chown;
SANDBOX_LIBC_POINTER(chdir) = &::chdir;
SANDBOX_LIBC_POINTER(umask) = &::umask;
SANDBOX_LIBC_POINTER(setxattr) = &::setxattr;

// Mounts and namespaces.
SANDBOX_LIBC_POINTER(mount) = &::mount;
SANDBOX_LIBC_POINTER(umount2) = &::umount2;
SANDBOX_LIBC_POINTER(unshare) = &::unshare;
SANDBOX_LIBC_POINTER(setns) = &::setns;
SANDBOX_LIBC_POINTER(sethostname) = &::sethostname;

// Processes.
SANDBOX_LIBC_POINTER(clone) = &::clone;
SANDBOX_LIBC_POINTER(execve) = &::execve;
SANDBOX_LIBC_POINTER(exit_immediately) = &::_exit;
SANDBOX_LIBC_POINTER(waitpid) = &::waitpid;
SANDBOX_LIBC_POINTER(waitid) = &::waitid;
SANDBOX_LIBC_POINTER(kill) = &::kill;
SANDBOX_LIBC_POINTER(getpid) = &::getpid;
SANDBOX_LIBC_POINTER(setsid) = &::setsid;
SANDBOX_LIBC_POINTER(setpgid) = &::setpgid;
SANDBOX_LIBC_POINTER(sched_getaffinity) = &::sched_getaffinity;
SANDBOX_LIBC_POINTER(sched_setaffinity) = &::sched_setaffinity;
SANDBOX_LIBC_POINTER(syscall) = &::syscall;

// Signals.
SANDBOX_LIBC_POINTER(sigemptyset) = &::sigemptyset;
SANDBOX_LIBC_POINTER(sigfillset) = &::sigfillset;
SANDBOX_LIBC_POINTER(sigaddset) = &::sigaddset;
SANDBOX_LIBC_POINTER(sigprocmask) = &::sigprocmask;
SANDBOX_LIBC_POINTER(signalfd) = &::signalfd;

// Strings the client may never have called.
SANDBOX_LIBC_POINTER(strchr) = static_cast<const char* (*)(const char*, int)>(&::strchr);
SANDBOX_LIBC_POINTER(strrchr) = static_cast<const char* (*)(const char*, int)>(&::strrchr);
SANDBOX_LIBC_POINTER(strpbrk) = static_cast<const char* (*)(const char*, const char*)>(&::strpbrk);
SANDBOX_LIBC_POINTER(memchr) =
    static_cast<const void* (*)(const void*, int, std::size_t)>(&::memchr);
SANDBOX_LIBC_POINTER(strncmp) = &::strncmp;

// Memory, sockets, time.
SANDBOX_LIBC_POINTER(mmap) = &::mmap;
SANDBOX_LIBC_POINTER(munmap) = &::munmap;
SANDBOX_LIBC_POINTER(madvise) = &::madvise;
SANDBOX_LIBC_POINTER(getpagesize) = &::getpagesize;
SANDBOX_LIBC_POINTER(socket) = &::socket;
SANDBOX_LIBC_POINTER(socketpair) = &::socketpair;
SANDBOX_LIBC_POINTER(send) = &::send;
SANDBOX_LIBC_POINTER(sendmsg) = &::sendmsg;
SANDBOX_LIBC_POINTER(recv) = &::recv;
SANDBOX_LIBC_POINTER(recvmsg) = &::recvmsg;
SANDBOX_LIBC_POINTER(poll) = &::poll;
SANDBOX_LIBC_POINTER(clock_gettime) = &::clock_gettime;

/// _exit, known to the compiler not to return.
[[noreturn]] inline void _exit(int status) noexcept {
  exit_immediately(status);
  __builtin_unreachable();
}

} // namespace sandbox::local::detail::libc
#pragma GCC visibility pop

#undef SANDBOX_LIBC_POINTER
