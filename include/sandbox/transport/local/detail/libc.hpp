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
// The string functions stay direct calls: the compiler inlines them, and the client calls them
// before any sandbox starts. A call missed here is only slower, never wrong.
#pragma once

#include <csignal>
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
namespace sandbox::local::detail::libc {

// Files and directories.
inline auto open = &::open;
inline auto openat = &::openat;
inline auto close = &::close;
inline auto read = &::read;
inline auto write = &::write;
inline auto fcntl = &::fcntl;
inline auto dup2 = &::dup2;
inline auto pipe2 = &::pipe2;
inline auto ioctl = &::ioctl;
inline auto ftruncate = &::ftruncate;
inline auto stat = &::stat;
inline auto lstat = &::lstat;
inline auto fstat = &::fstat;
inline auto fstatfs = &::fstatfs;
inline auto statx = &::statx;
inline auto mkdir = &::mkdir;
inline auto mknod = &::mknod;
inline auto symlink = &::symlink;
inline auto readlink = &::readlink;
inline auto unlink = &::unlink;
inline auto chmod = &::chmod;
inline auto chown = &::chown;
inline auto chdir = &::chdir;
inline auto umask = &::umask;
inline auto setxattr = &::setxattr;

// Mounts and namespaces.
inline auto mount = &::mount;
inline auto umount2 = &::umount2;
inline auto unshare = &::unshare;
inline auto sethostname = &::sethostname;

// Processes.
inline auto clone = &::clone;
inline auto execve = &::execve;
inline auto exit_immediately = &::_exit;
inline auto waitpid = &::waitpid;
inline auto waitid = &::waitid;
inline auto kill = &::kill;
inline auto getpid = &::getpid;
inline auto setsid = &::setsid;
inline auto setpgid = &::setpgid;
inline auto sched_getaffinity = &::sched_getaffinity;
inline auto sched_setaffinity = &::sched_setaffinity;
inline auto syscall = &::syscall;

// Signals.
inline auto sigemptyset = &::sigemptyset;
inline auto sigfillset = &::sigfillset;
inline auto sigaddset = &::sigaddset;
inline auto sigprocmask = &::sigprocmask;
inline auto signal = &::signal;
inline auto signalfd = &::signalfd;

// Memory, sockets, time.
inline auto mmap = &::mmap;
inline auto munmap = &::munmap;
inline auto madvise = &::madvise;
inline auto getpagesize = &::getpagesize;
inline auto socket = &::socket;
inline auto send = &::send;
inline auto sendmsg = &::sendmsg;
inline auto recv = &::recv;
inline auto recvmsg = &::recvmsg;
inline auto poll = &::poll;
inline auto clock_gettime = &::clock_gettime;

/// _exit, known to the compiler not to return.
[[noreturn]] inline void _exit(int status) noexcept {
  exit_immediately(status);
  __builtin_unreachable();
}

} // namespace sandbox::local::detail::libc
