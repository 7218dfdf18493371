// SPDX-License-Identifier: MIT
// What a caller can ask of a sandbox and of one command in it. Every member of these structs has
// an initializer, so that a designated initializer naming only some of them does not warn under
// -Wextra (-Wmissing-field-initializers, GCC): a project built with -Werror can write
// `box.exec(cmd, {.timeout = 10s})`. The same holds for every struct a caller fills in.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace sandbox {

/// Environment variables, ordered so that requests are reproducible.
using env_map = std::map<std::string, std::string, std::less<>>;

/// What `ExecOptions::max_output_bytes = 0` ("the platform default", as in the v1 API) means
/// locally: a result keeps at most 64 MiB of each stream. `sandboxd` applies it by default too.
inline constexpr std::uint64_t default_max_output_bytes = std::uint64_t{64} << 20;

/// `ExecOptions::max_output_bytes` that keeps all output, however large: the caller's memory is
/// then the only limit. Over HTTP it asks for the most the API's int32 field can carry
/// (2^31-1 bytes per stream).
inline constexpr std::uint64_t unlimited_output = UINT64_MAX;

/// Called with each chunk of output as the command produces it: not necessarily whole lines, and
/// chunks are as the transport reads them (over gRPC, a message may come in several).
///
/// **Contract: a callback must not throw.** It runs inside the transport's output loop, which is
/// `noexcept` (it runs the same with and without exceptions), so an exception leaving it would
/// end the program. That is enforced where it can be: only a callable that is `noexcept` for a
/// `std::string_view` argument is accepted, in both exception modes, so one source compiles the
/// same way in each; anything else is a compile error that says so. A callback that calls code
/// which may throw catches what it throws itself.
///
///     eo.on_stdout = [&](std::string_view chunk) noexcept { log.append(chunk); };
///
/// The callback is called from the thread that waits for or polls the command (`result()`,
/// `wait()`, `poll()`), one chunk at a time, never concurrently with itself.
class output_callback {
public:
  output_callback() noexcept = default;
  output_callback(std::nullptr_t) noexcept {}

  template <class F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, output_callback> &&
           !std::is_same_v<std::remove_cvref_t<F>, std::nullptr_t> &&
           std::is_invocable_v<std::decay_t<F>&, std::string_view>) output_callback(F&& f)
      : f_(std::forward<F>(f)) {
    static_assert(std::is_nothrow_invocable_v<std::decay_t<F>&, std::string_view>,
                  "sandbox: on_stdout/on_stderr callbacks must not throw: they are called from "
                  "a noexcept path. Declare the callable noexcept, e.g. "
                  "[&](std::string_view chunk) noexcept { ... }");
  }

  /// True when a callable is set.
  explicit operator bool() const noexcept { return static_cast<bool>(f_); }

  /// Calls the callable with `chunk` (does nothing when none is set).
  void operator()(std::string_view chunk) const noexcept {
    if (f_) f_(chunk);
  }

private:
  std::function<void(std::string_view)> f_;
};

/// The size of a terminal, in character cells.
struct TerminalSize {
  std::uint16_t cols = 80;
  std::uint16_t rows = 24;
};

/// Options of one `exec`.
struct ExecOptions {
  /// Working directory; must be absolute. Empty: the sandbox's working directory.
  std::optional<std::string> cwd{};
  /// Added to (and overriding) the sandbox's environment for this command only.
  env_map env{};
  /// Kill the command's whole process group when it runs longer; the result is then a
  /// command timeout error carrying the output produced so far. Unset: no limit.
  std::optional<std::chrono::milliseconds> timeout{};
  /// Open a pipe to the command's stdin (`Process::write_stdin`); otherwise it reads /dev/null.
  bool stdin_pipe = false;
  /// Run the command on a terminal of its own (a pseudo-terminal of the sandbox, as `ssh -t` or
  /// `docker exec -t` do; transports with a terminal only): stdin, stdout and stderr are the
  /// terminal, so everything it prints arrives as stdout (with the terminal's `\r\n` line ends and
  /// the echo of what it reads), stdin is open (`write_stdin`; `close_stdin` types end-of-file,
  /// Ctrl-D), and `Process::resize` changes its size. A size of 0 is the default, 80×24.
  std::optional<TerminalSize> tty{};
  /// Per stream, the bytes kept in the result; the rest is dropped but counted
  /// (`ExecResult::*_truncated`, `*_bytes_produced`), and `on_stdout`/`on_stderr` still see it.
  /// 0: the platform default (local and gRPC: `default_max_output_bytes`; REST: the service's).
  /// `unlimited_output`: no cap.
  std::uint64_t max_output_bytes = 0;
  /// Receive output while the command runs (transports with streaming only). The callbacks must
  /// not throw (see `output_callback`): only `noexcept` callables are accepted.
  output_callback on_stdout{};
  output_callback on_stderr{};
  /// Runtime twin of `exec<sandbox::check>`: a non-zero exit becomes an execution error.
  bool check = false;
};

/// What a local sandbox may write when `Resources::disk_bytes` is 0: its writable layer and
/// `/tmp` together (`/dev/shm` has 64 MiB of its own, as in Docker).
inline constexpr std::uint64_t default_disk_bytes = std::uint64_t{1} << 30;

/// The kernel's PID_MAX_LIMIT: no pid is larger, so a pids limit from here on can never bind.
inline constexpr std::uint32_t pid_max_limit = std::uint32_t{1} << 22;

/// Resource limits of a sandbox. Zero / unset means no limit, except for `disk_bytes`.
struct Resources {
  std::uint64_t memory_bytes = 0;
  std::uint32_t max_pids = 0;
  /// CPU time as a fraction of one core (0.5 = half a core).
  double cpus = 0;
  /// Local transport: bytes the sandbox may write (its writable layer and /tmp together, held
  /// in host memory); beyond it writes fail with ENOSPC inside. 0: `default_disk_bytes`.
  std::uint64_t disk_bytes = 0;
};

/// A file placed read-only into the sandbox at start. `path` is absolute, fits the kernel's
/// limits (4095 bytes, names of 255), holds no `..`, and names a file no other entry names.
struct MountedFile {
  std::string path{};
  std::string content{};
};

/// How a sandbox reaches the network.
enum class network_mode {
  /// Its own loopback only. The local transport's default; remote, `deny_egress` (the hosted
  /// service's default is decided by the service).
  none,
  /// The host's network, shared (local transport only).
  host,
  /// Outbound TCP and UDP, and DNS, through a user-mode NAT (local: slirp4netns, for root and
  /// non-root callers, ending with the sandbox). The host's own addresses and loopback,
  /// link-local (169.254.0.0/16: cloud metadata), private, shared, multicast and reserved
  /// IPv4 ranges stay unreachable unless `SandboxOptions::network_allow` lists them.
  egress,
};

/// Options of a sandbox.
struct SandboxOptions {
  /// Root filesystem. Local transport: empty = the host's root, read-only under a private
  /// writable layer, without the host's secrets (see `whole_host_root`); so is a directory that
  /// is the host's root itself ("/", a bind mount of it); otherwise a directory holding a root
  /// filesystem. Remote: a container image.
  std::string image{};
  /// Local transport, default root only: show the host's root whole. Otherwise home directories,
  /// /root, /var, /run, /srv, /mnt, /media, /boot and secret files of /etc (shadow, sudoers,
  /// ssh host keys, private TLS keys, machine-id, …) are hidden; README lists them.
  bool whole_host_root = false;
  /// Main process (argv). Empty: keep-alive until stopped.
  std::vector<std::string> command{};
  /// Environment of the main process and the base environment of every exec.
  env_map env{};
  /// Working directory of the main process and default cwd of exec (absolute). Empty: "/".
  std::string working_dir{};
  Resources resources{};
  /// Unset: the transport's default (local: `none`; remote: the service's).
  std::optional<network_mode> network{};
  /// With `egress`: IPv4 destinations (`10.1.2.0/24`, `127.0.0.1`, `169.254.169.254/32`) that
  /// are reachable although a blocked range holds them. `127.0.0.0/8` (or part of it) is the
  /// host's loopback, reached at the NAT's gateway 10.0.2.2 inside the sandbox.
  std::vector<std::string> network_allow{};
  std::vector<MountedFile> mounted_files{};
  std::vector<std::string> tags{};
  env_map annotations{};
  /// Terminate the sandbox after this long. Unset: no limit (local) / service default (remote).
  std::optional<std::chrono::seconds> max_lifetime{};
};

} // namespace sandbox
