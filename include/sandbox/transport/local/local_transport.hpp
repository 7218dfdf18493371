// SPDX-License-Identifier: MIT
// local_transport: sandboxes on this host, in Linux namespaces, with no daemon. The default.
#pragma once

#include <sandbox/concepts.hpp>
#include <sandbox/detail/deadline.hpp>
#include <sandbox/detail/fork_safe.hpp>
#include <sandbox/detail/random.hpp>
#include <sandbox/detail/validate.hpp>
#include <sandbox/image/options.hpp>
#include <sandbox/transport/local/detail/box.hpp>
#include <sandbox/transport/local/detail/files.hpp>
#include <sandbox/transport/local/detail/process.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/vfs.h>

namespace sandbox {

/// Runs each sandbox as a process tree in its own pid, mount, uts, ipc, network and cgroup
/// namespaces, on a private writable overlay of a read-only root (the host's, or
/// `SandboxOptions::image`), its writes bounded by `Resources::disk_bytes`.
/// Sandboxes live as long as this process at most: when it dies, they die. As root the
/// sandbox's root user is the host's, held to Docker's default capabilities and system calls;
/// without root it runs in a user namespace mapped to the caller's uid (resource limits then
/// need root). With the default root (the host's, read-only) commands can *read* the host's
/// programs and libraries, but not its secrets (`SandboxOptions::whole_host_root`); code that
/// must see no host file at all belongs on an `image`.
/// Thread-safe; works when the caller is multi-threaded.
class local_transport {
public:
  using process_type = local::detail::process;

  struct options {
    /// read_file refuses files larger than this (errc::file_too_large) instead of exhausting
    /// the caller's memory.
    std::uint64_t max_file_bytes = std::uint64_t{1} << 30;
    /// read_file and write_file give up with errc::timeout once this much time has passed
    /// (the transfer is checked between reads and writes of at most 1 MiB each).
    std::chrono::milliseconds file_timeout = std::chrono::seconds(60);
    /// Where container images are kept and how they are fetched (with <sandbox/image.hpp>).
    image::image_options images{};
  };

  local_transport() noexcept = default;
  explicit local_transport(options o) noexcept : options_(o) {}

  /// The process-wide instance that `Sandbox::run` uses.
  [[nodiscard]] static std::shared_ptr<local_transport> shared() {
    static constinit std::atomic<std::shared_ptr<local_transport>*> made{nullptr};
    return sandbox::detail::process_static(made, [] {
      auto* instance = new std::shared_ptr<local_transport>(std::make_shared<local_transport>());
      // Its sandboxes are stopped, and their cgroups removed, as the program exits.
      std::atexit([] { delete made.exchange(nullptr); });
      return instance;
    });
  }

  /// Removes what the sandboxes of owners that died without cleaning up (SIGKILL) left on the
  /// host: their cgroups, and whatever still runs in them. Owners of this host's pid namespace
  /// only. `create` does it once per process anyway; a server calls it when it starts, so that
  /// a restart after a crash leaves nothing behind even before its first create.
  static void sweep() noexcept { local::detail::cgroups::sweep_once(); }

  /// Whether this host lets a sandbox have the limits of `r` (`SandboxOptions::resources`):
  /// `create`'s checks, then a cgroup made with them and removed again, so that a server finds
  /// out once at start rather than at every create (no privilege shows only when trying).
  /// It does not move a process into that cgroup: a host that refuses only that fails creates.
  /// **Errors:** validation, unsupported (the message names what is missing), unavailable,
  /// resource_exhausted.
  [[nodiscard]] static result<void> check_limits(const Resources& r) noexcept {
    namespace cg = local::detail::cgroups;
    SANDBOX_TRYV(cg::validate(r));
    if (!cg::requested(r)) return success();
    auto probe = cg::group::create(detail::random_id("probe-", 12), r); // removed as it goes
    if (!probe) return std::move(probe).as_failure();
    return success();
  }

  /// At most `n` processes and threads in all of this process's sandboxes that have a pids
  /// limit (`Resources::max_pids`), together (0: no total); on cgroup v2, sandboxes with only
  /// other limits count too. Per-sandbox limits alone let many sandboxes fill the host's
  /// process table. Applies from the next create on. A create that the others leave no room for
  /// (its init and one command) is refused with errc::resource_exhausted; one that has room
  /// may still find its commands refused (EAGAIN) while the others hold the rest.
  static void limit_total_pids(std::uint32_t n) noexcept {
    auto& reg = local::detail::cgroups::registry();
    std::lock_guard lk(reg.m);
    reg.total_pids = n;
    reg.total_set = true;
  }

  /// Builds a sandbox and starts its main command; returns once it is RUNNING. The sandbox ends
  /// COMPLETED when the main command exits, whatever its code; a main command that cannot start
  /// (not found, not executable) makes it FAILED right after, as does an OOM kill of the main
  /// process (`SandboxInfo::status_reason` says which). `request_id` is unused: a failed local
  /// create leaves nothing behind, so repeating it is always safe.
  /// `SandboxOptions::resources` become cgroup limits (v1 or v2): memory (RAM and swap together;
  /// an OOM-killed command reports ExecResult::oom_killed), pids (every process and thread,
  /// the sandbox's init included) and cpu (a CFS quota of `cpus` × 100 ms per 100 ms).
  /// **Errors:** validation (bad options, image not found), unsupported (what the host lacks:
  /// namespaces refused, user namespaces disabled, no privilege for cgroups, a missing cgroup
  /// controller — the message names it; never retried), resource_exhausted, failed (setup
  /// failed), unavailable (a transient host failure).
  [[nodiscard]] result<SandboxInfo> create(const SandboxOptions& o,
                                           std::string_view /*request_id*/) noexcept {
    SANDBOX_TRYV(detail::validate_options(o));
    namespace cg = local::detail::cgroups;
    SANDBOX_TRYV(cg::validate(o.resources));
    SANDBOX_TRYV(cg::check_host(cg::host_layout(), o.resources));
    cg::sweep_once(); // cgroups of owners that died without cleaning up (SIGKILL)
    if (o.mounted_files.size() > local::detail::sv::max_mounted_files)
      return fail(errc::validation,
                  "SandboxOptions::mounted_files: " + std::to_string(o.mounted_files.size()) +
                      " files, more than the " +
                      std::to_string(local::detail::sv::max_mounted_files) +
                      " a local sandbox places (one mount each)");
    std::optional<image::prepared_image> img;
    // An image directory is used by the path it resolves to here: the supervisor resolves it
    // in another process (whose /proc/self differs), and the host's root is no image. The
    // directory is held open until the sandbox is built, and the sandbox is built on it only.
    std::optional<SandboxOptions> resolved;
    image_dir dir;
    if (!o.image.empty() && o.image[0] == '/') {
      SANDBOX_TRY(found, resolve_image_dir(o.image));
      dir = std::move(found);
      if (dir.path != o.image) {
        resolved.emplace(o);
        resolved->image = dir.path;
      }
    }
    const SandboxOptions& opts = resolved ? *resolved : o;
    if (!opts.image.empty()) {
      SANDBOX_TRY(prepared, prepare_image(opts.image));
      img = std::move(prepared);
    }
    SANDBOX_TRY(b, local::detail::box::create(detail::random_id("sbx-", 12), opts, true,
                                              img ? &*img : nullptr, dir.fd ? &dir.id : nullptr));
    if (!o.command.empty()) {
      auto started = b->start_main(o.command);
      if (!started) {
        (void)b->stop(std::chrono::milliseconds(0));
        return std::move(started).as_failure();
      }
    }
    SandboxInfo info = b->info();
    std::lock_guard lk(m_);
    boxes_.emplace(b->id, std::move(b));
    return info;
  }

  [[nodiscard]] result<SandboxInfo> get(std::string_view id) noexcept {
    SANDBOX_TRY(b, find(id));
    return b->info();
  }

  /// The sandboxes this process owns (live ones unless `show_terminated`).
  [[nodiscard]] result<std::vector<SandboxInfo>> list(const ListFilter& f) noexcept {
    std::vector<std::shared_ptr<local::detail::box>> all;
    {
      std::lock_guard lk(m_);
      for (auto& [id, b] : boxes_)
        all.push_back(b);
    }
    std::vector<SandboxInfo> out;
    for (auto& b : all) {
      SandboxInfo i = b->info();
      if (!f.show_terminated && is_terminal(i.state) && f.state != i.state) continue;
      if (f.state && *f.state != i.state) continue;
      bool tagged = std::all_of(f.tags.begin(), f.tags.end(), [&](const std::string& t) {
        return std::find(i.tags.begin(), i.tags.end(), t) != i.tags.end();
      });
      if (tagged) out.push_back(std::move(i));
    }
    return out;
  }

  [[nodiscard]] result<SandboxInfo> wait(std::string_view id, State target,
                                         std::chrono::milliseconds timeout) noexcept {
    SANDBOX_TRY(b, find(id));
    // A local sandbox is RUNNING as soon as create returns.
    SandboxInfo i = is_terminal(target) ? b->wait_terminal(timeout) : b->info();
    if (is_terminal(target) && !is_terminal(i.state))
      return fail(errc::timeout, "sandbox " + i.id + " still " + std::string(to_string(i.state)) +
                                     " after " + std::to_string(timeout.count()) + " ms");
    return i;
  }

  [[nodiscard]] result<SandboxInfo> stop(std::string_view id, std::chrono::milliseconds grace,
                                         bool missing_ok) noexcept {
    auto b = find(id);
    if (!b) {
      if (missing_ok) return SandboxInfo{std::string(id), State::TERMINATED, {}, {}};
      return std::move(b).as_failure();
    }
    return b.value()->stop(grace);
  }

  [[nodiscard]] result<process_type> exec(std::string_view id, std::span<const std::string> argv,
                                          const ExecOptions& o) noexcept {
    SANDBOX_TRYV(detail::validate_exec(argv, o));
    SANDBOX_TRY(b, find(id));
    return process_type::start(std::move(b), argv, o);
  }

  /// Reads a whole regular file of the sandbox, as a command inside would see it. The path
  /// resolves inside the sandbox (`..` and symlinks, absolute ones included, cannot leave it;
  /// /proc magic links such as /proc/<pid>/root are not followed) and must lead to a regular
  /// file of an ordinary filesystem: kernel interfaces (/proc, /sys, cgroups, debugfs, …) are
  /// refused, because the caller would open them with its own privileges and view (the
  /// sandbox's PID 1 is a copy of the caller: /proc/1/environ is the caller's environment),
  /// and FIFOs, sockets and devices are refused rather than waited on. Bounded by
  /// options::max_file_bytes and options::file_timeout.
  /// **Errors:** file_not_found, file_is_directory, file_permission (a kernel interface, a magic
  /// link, a symlink loop, access denied), file_too_large (over options::max_file_bytes), file_io
  /// (not a regular file, I/O error), timeout (options::file_timeout passed), not_running,
  /// validation (not absolute, a NUL byte, longer than PATH_MAX or a name than NAME_MAX).
  [[nodiscard]] result<std::string> read_file(std::string_view id, std::string_view path) noexcept {
    namespace files = local::detail::files;
    const files::target t{id, path, deadline()};
    SANDBOX_TRYV(files::validate_path(path));
    SANDBOX_TRY(b, find(id));
    SANDBOX_TRY(root, b->open_root());
    SANDBOX_TRY(fd, files::open_read(root.get(), t));
    return files::read_all(fd.get(), t, options_.max_file_bytes);
  }

  /// Creates or replaces a regular file of the sandbox with `data` (a new file gets mode 0644),
  /// with the same resolution and the same refusals as read_file: never a kernel interface,
  /// never outside the sandbox. A file that exists is emptied only once it is known to be a
  /// regular one; a dangling symlink has its target created, inside the sandbox.
  /// **Errors:** file_not_found (missing parent), file_is_directory, file_permission (a kernel
  /// interface, a magic link, read-only file or mount), file_too_large (no space left), file_io
  /// (not a regular file), timeout (options::file_timeout passed), not_running, validation.
  [[nodiscard]] result<void> write_file(std::string_view id, std::string_view path,
                                        std::string_view data) noexcept {
    namespace files = local::detail::files;
    const files::target t{id, path, deadline()};
    SANDBOX_TRYV(files::validate_path(path));
    SANDBOX_TRY(b, find(id));
    SANDBOX_TRY(root, b->open_root());
    SANDBOX_TRY(fd, files::open_write(root.get(), t));
    return files::write_all(fd.get(), t, data);
  }

  /// The sandbox's log: what its main process writes to stdout and stderr, the last
  /// `local::detail::logring::data_bytes` (1 MiB) of it kept; from `offset` on, waiting up to
  /// `wait` for more when there is none yet. A keep-alive sandbox (no main command) has an empty
  /// log; command output (`exec`) never goes to it. Complete once the sandbox has ended.
  /// **Errors:** not_found.
  [[nodiscard]] result<LogRead> logs(std::string_view id, std::uint64_t offset,
                                     std::chrono::milliseconds wait) noexcept {
    SANDBOX_TRY(b, find(id));
    auto s = b->log_from(offset);
    // Until there is more, the log ends, or `wait` passes; a wake-up without news (the
    // supervisor is inside the sandbox: it could wake readers in a loop) waits again.
    auto deadline = sandbox::detail::deadline_after(wait);
    while (s.end <= offset && !s.closed && wait.count() > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      b->await_log(s.seq, left);
      s = b->log_from(offset);
    }
    LogRead out;
    out.first_offset = s.first;
    out.end_offset = s.end;
    out.complete = s.closed;
    out.chunks.reserve(s.pieces.size());
    for (auto& p : s.pieces)
      out.chunks.push_back(
          LogChunk{std::move(p.data),
                   std::chrono::system_clock::time_point(
                       std::chrono::duration_cast<std::chrono::system_clock::duration>(
                           std::chrono::nanoseconds(p.unix_ns))),
                   p.end});
    return out;
  }

  /// Forgets a sandbox (stopping it first if it still runs).
  void release(std::string_view id) noexcept {
    std::shared_ptr<local::detail::box> b;
    {
      std::lock_guard lk(m_);
      auto it = boxes_.find(id);
      if (it == boxes_.end()) return;
      b = std::move(it->second);
      boxes_.erase(it);
    }
    (void)b->stop(std::chrono::milliseconds(0));
  }

private:
  [[nodiscard]] result<std::shared_ptr<local::detail::box>> find(std::string_view id) noexcept {
    std::lock_guard lk(m_);
    auto it = boxes_.find(id);
    if (it == boxes_.end())
      return fail(errc::not_found, "no sandbox with id " + detail::quoted_excerpt(id));
    return it->second;
  }

  /// A directory holding a root filesystem is used as it is (nullopt); an OCI layout
  /// directory, an archive or a registry name goes to the image resolver (<sandbox/image.hpp>).
  [[nodiscard]] result<std::optional<image::prepared_image>>
  prepare_image(const std::string& image) noexcept {
    struct stat st {};
    const bool dir = image[0] == '/' && ::stat(image.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
    const bool layout = dir && ::stat((image + "/oci-layout").c_str(), &st) == 0;
    if (image[0] == '/' && !layout) {
      SANDBOX_TRYV(check_image(image));
      return std::optional<image::prepared_image>();
    }
    auto resolve = local::detail::installed_image_resolver();
    if (!resolve)
      return fail(errc::validation,
                  "image " + detail::quoted_excerpt(image, 256) +
                      ": container images (registry names, oci:, docker-archive:, OCI layouts) "
                      "need #include <sandbox/image.hpp> (libarchive, libcrypto, cpp-httplib, "
                      "simdjson); without it the local transport takes a root filesystem "
                      "directory only");
    SANDBOX_TRY(p, resolve(options_.images, layout ? "oci:" + image : image));
    return std::optional<image::prepared_image>(std::move(p));
  }

  /// An image directory as resolve_image_dir found it.
  struct image_dir {
    std::string path; ///< empty: the host's root, which is no image
    sandbox::detail::unique_fd fd;
    local::detail::dir_identity id;
  };

  /// The path `image` (absolute) resolves to in this process, without symlinks, `.` or `..`,
  /// and the directory there, open (O_PATH), the checks made on it; an empty path for the host's
  /// root itself ("/", "/usr/..", a bind mount of it: no image, so its secrets stay hidden).
  /// Refused when it does not resolve, resolves to a kernel interface, or changes meanwhile.
  [[nodiscard]] static result<image_dir> resolve_image_dir(const std::string& image) noexcept {
    // Opened as the kernel resolves it (the magic links of /proc too), then named by the path
    // the kernel gives that directory here, which must lead back to it. Resolved as text
    // (realpath), /proc/<pid>/root of another mount namespace, or a detached mount's
    // /proc/self/fd/N, reads as "/": the host's directories would stand in for the image's.
    image_dir found;
    found.fd.reset(::open(image.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!found.fd) {
      const int err = errno;
      SANDBOX_TRYV(check_image(image));
      return fail(errc::validation, "image " + detail::quoted_excerpt(image, 256) +
                                        " cannot be opened: " + detail::errno_text(err));
    }
    char at[PATH_MAX + 1];
    const std::string self = "/proc/self/fd/" + std::to_string(found.fd.get());
    const ssize_t len = ::readlink(self.c_str(), at, sizeof at);
    std::string dir =
        len > 0 && static_cast<std::size_t>(len) < sizeof at ? std::string(at, len) : std::string();
    struct stat st = {}, by_path = {};
    struct statfs fs {};
    if (dir.empty() || dir[0] != '/' || ::fstat(found.fd.get(), &st) != 0 ||
        ::fstatfs(found.fd.get(), &fs) != 0 || ::stat(dir.c_str(), &by_path) != 0 ||
        by_path.st_dev != st.st_dev || by_path.st_ino != st.st_ino)
      return fail(errc::validation,
                  "image " + detail::quoted_excerpt(image, 256) +
                      " cannot be resolved to a path that leads to it here (a deleted directory, "
                      "one of another mount namespace or a detached mount, or one replaced "
                      "meanwhile)");
    const bool kernel_fs =
        local::detail::files::kernel_fs_name(static_cast<std::uint64_t>(fs.f_type)) != nullptr;
    for (std::string_view kernel : {"/proc", "/sys"})
      if (kernel_fs || dir == kernel ||
          (dir.size() > kernel.size() && dir.compare(0, kernel.size(), kernel) == 0 &&
           dir[kernel.size()] == '/'))
        return fail(errc::validation, "image " + detail::quoted_excerpt(image, 256) +
                                          " resolves to " + detail::quoted_excerpt(dir, 256) +
                                          ", a kernel interface, not a root filesystem");
    struct stat root = {};
    if (::stat("/", &root) == 0 && st.st_dev == root.st_dev && st.st_ino == root.st_ino)
      return image_dir{};
    found.path = std::move(dir);
    found.id = {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
    return found;
  }

  [[nodiscard]] static result<void> check_image(const std::string& image) noexcept {
    struct stat st {};
    if (image[0] != '/' || ::stat(image.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return fail(errc::validation,
                  "image " + detail::quoted_excerpt(image, 256) +
                      " not found: the local transport takes an absolute path to a directory "
                      "holding a root filesystem (e.g. one made by debootstrap or an unpacked "
                      "container image), or a container image with <sandbox/image.hpp>");
    if (image.find_first_of(",:\\") != std::string::npos)
      return fail(errc::validation, "image path " + detail::quoted_excerpt(image, 256) +
                                        " contains ',', ':' or '\\', which overlayfs cannot take");
    return success();
  }

  [[nodiscard]] local::detail::files::clock::time_point deadline() const noexcept {
    auto now = local::detail::files::clock::now();
    auto left = options_.file_timeout;
    if (left > std::chrono::hours(24 * 365)) left = std::chrono::hours(24 * 365);
    return now + left;
  }

  options options_;
  sandbox::detail::fork_safe_mutex m_; // a forked child may start sandboxes here
  std::map<std::string, std::shared_ptr<local::detail::box>, std::less<>> boxes_;
};

static_assert(transport<local_transport>);
static_assert(supports_stdin<local_transport>);
static_assert(supports_terminal<local_transport>);
static_assert(taking_process<local_transport::process_type>);
static_assert(wakeable_process<local_transport::process_type>);

} // namespace sandbox
