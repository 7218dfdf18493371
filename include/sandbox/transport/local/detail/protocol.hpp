// SPDX-License-Identifier: MIT
// Messages between the client and a sandbox's supervisor (its PID 1). The client sends requests on
// the sandbox's control socket; the supervisor answers each exec on a status socket of its own,
// passed with the request, so concurrent commands never share a reply channel.
#pragma once

#include <cstdint>

namespace sandbox::local::detail {

enum class op : std::uint32_t {
  exec = 1,   ///< start a command: header, argv, env, cwd; fds: status, stdin, stdout, stderr
  signal = 2, ///< signal the process group of a command the supervisor started
  stop = 3,   ///< SIGTERM everything, SIGKILL after `grace_ms`, then exit
};

enum exec_flags : std::uint32_t {
  exec_main = 1,        ///< the sandbox's main process: its exit ends the sandbox
  exec_stdin_pipe = 2,  ///< an stdin fd follows; otherwise the command reads /dev/null
  exec_null_output = 4, ///< no output fds: stdout and stderr go to /dev/null
  exec_log_output = 8,  ///< stdout and stderr go to the sandbox's log: one fd, its ring's memfd
  /// stdin, stdout and stderr are a new terminal of the sandbox's devpts (size in the request);
  /// no fds but the status socket: the terminal's master comes back with `started`
  exec_tty = 16
};

struct request {
  op code;
  std::uint32_t flags;
  std::int32_t pid; ///< signal: the command (its process group)
  std::int32_t sig; ///< signal: the signal number
  std::uint32_t argc;
  std::uint32_t envc;
  std::uint32_t grace_ms;    ///< stop
  std::uint32_t strings_len; ///< argc + envc NUL-terminated strings, then the NUL-terminated cwd
  std::uint16_t tty_cols;    ///< exec_tty: the terminal's size
  std::uint16_t tty_rows;
  std::int32_t cpu = -1; ///< exec: the caller's CPU, where the command is started (-1: anywhere)
};

/// The largest request (header + strings); argv and env beyond it are a validation error.
inline constexpr std::uint32_t max_request_bytes = 128 * 1024;

/// Steps of sandbox setup and command start, named in error messages.
enum class stage : std::uint32_t {
  none,
  fds,
  mount_private,
  staging,
  overlay,
  proc,
  dev,
  tmp,
  sys,
  workdir,
  mounted_files,
  pivot_root,
  hostname,
  loopback,
  capabilities,
  signals,
  chdir,
  execve,
  fork,
  table_full,
  masks,
  session,
  seccomp,
  user_ns,
  hide,
  verify_root,
  cgroup_ns,
  terminal,
  user,
  image_changed,
};

[[nodiscard]] constexpr const char* to_string(stage s) noexcept {
  switch (s) {
  case stage::none: return "startup";
  case stage::fds: return "setting up file descriptors";
  case stage::mount_private: return "making mounts private";
  case stage::staging: return "mounting the private writable layer";
  case stage::overlay: return "mounting the overlay root";
  case stage::proc: return "mounting /proc";
  case stage::dev: return "populating /dev";
  case stage::tmp: return "mounting /tmp";
  case stage::sys: return "mounting /sys";
  case stage::workdir: return "creating the working directory";
  case stage::mounted_files: return "placing the mounted files";
  case stage::pivot_root: return "pivot_root";
  case stage::hostname: return "setting the hostname";
  case stage::loopback: return "bringing up loopback";
  case stage::capabilities: return "dropping capabilities";
  case stage::signals: return "setting up signals";
  case stage::chdir: return "changing to the working directory";
  case stage::execve: return "executing";
  case stage::fork: return "starting the process";
  case stage::table_full: return "too many running commands";
  case stage::masks: return "masking /proc and /sys";
  case stage::session: return "starting a session";
  case stage::seccomp: return "installing the seccomp filter";
  case stage::user_ns: return "mapping the user namespace";
  case stage::hide: return "hiding the host's secrets";
  case stage::verify_root: return "checking that the host's root is gone";
  case stage::cgroup_ns: return "entering a cgroup namespace";
  case stage::terminal: return "opening a terminal";
  case stage::user: return "switching to the image's user";
  case stage::image_changed:
    return "the image directory is not the one checked when the sandbox was asked for: it was "
           "replaced (renamed, or a directory on its path swapped for a symlink) while it started";
  }
  return "?";
}

/// Supervisor → client. On the control socket once after setup (`ready` or `setup_failed`); on a
/// command's status socket: `started`, then `exited` (or `start_failed`).
enum class event : std::uint32_t { ready = 1, setup_failed, started, start_failed, exited };

struct reply {
  event kind;
  std::int32_t value; ///< started: pid in the sandbox (+ a terminal's master fd); exited: status
  std::int32_t err;   ///< setup_failed / start_failed: errno
  stage where;
};

} // namespace sandbox::local::detail
