// SPDX-License-Identifier: MIT
// The content-addressed image store: blobs kept by their verified sha256, each layer unpacked
// once (shared read-only by every sandbox of every image holding it), and names → manifest
// digests. Safe for concurrent use by threads and processes (flock): one download and one
// unpack per blob however many ask for it at once.
//
//   STORE/blobs/sha256/HEX    verified blobs (manifests, configs, compressed layers)
//   STORE/layers/HEX/         unpacked layer of blob HEX (complete once it has this name)
//   STORE/refs/HEX            "NAME\nDIGEST\n" for the name whose sha256 is HEX
//   STORE/locks/HEX, .pull    in-use (shared) and fetch (exclusive) locks of blob HEX
//   STORE/tmp/                downloads in progress (resumable) and unpacks in progress
#pragma once

#include <sandbox/detail/random.hpp>
#include <sandbox/detail/text.hpp>
#include <sandbox/detail/unique_fd.hpp>
#include <sandbox/image/detail/sha256.hpp>
#include <sandbox/image/detail/unpack.hpp>
#include <sandbox/image/options.hpp>
#include <sandbox/image/reference.hpp>

#include <cstdlib>
#include <ctime>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace sandbox::image {

/// What `gc` removed.
struct gc_stats {
  std::size_t layers = 0, blobs = 0;
};

class store {
  [[nodiscard]] static auto io_error(const std::string& what, int err = errno) {
    errc c = err == ENOSPC || err == EDQUOT ? errc::resource_exhausted : errc::file_io;
    return fail(c, "image store: " + what + ": " + sandbox::detail::errno_text(err));
  }

public:
  /// Opens (creating) the store `o.store` or the default location.
  /// **Errors:** validation (a path overlayfs cannot take), file_io (cannot create it).
  [[nodiscard]] static result<store> open(const image_options& o) noexcept {
    std::string root = o.store.empty() ? default_root() : o.store;
    while (root.size() > 1 && root.back() == '/')
      root.pop_back();
    if (root.empty() || root[0] != '/')
      return fail(errc::validation, "image store " + sandbox::detail::shell_quote(root) +
                                        " is not an absolute path (set image_options::store or "
                                        "$XDG_CACHE_HOME or $HOME)");
    if (root.find_first_of(",:\\") != std::string::npos)
      return fail(errc::validation, "image store path " + sandbox::detail::shell_quote(root) +
                                        " contains ',', ':' or '\\', which overlayfs cannot take");
    store made;
    made.root_ = root;
    // Made before: a store opened per sandbox costs a few stats, not a dozen mkdirs.
    bool complete = true;
    for (const char* sub : {"/blobs/sha256", "/layers", "/refs", "/locks", "/tmp"}) {
      struct stat st {};
      complete = complete && ::stat((root + sub).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
    }
    if (complete) {
      // A store made private only later (it once was 0755): private now.
      struct stat st {};
      if (::stat(root.c_str(), &st) == 0 && st.st_uid == ::geteuid() && (st.st_mode & 077))
        (void)::chmod(root.c_str(), 0700);
      return made;
    }
    // Its parents too (~/.cache may not exist yet).
    for (auto slash = root.find('/', 1); slash != std::string::npos;
         slash = root.find('/', slash + 1))
      (void)::mkdir(root.substr(0, slash).c_str(), 0755);
    // Private to its owner: pulled images may be private, and a layer's world-writable
    // directories (/tmp of an image) must not be writable by other users of the host.
    for (const char* sub : {"", "/blobs", "/blobs/sha256", "/layers", "/refs", "/locks", "/tmp"}) {
      std::string d = root + sub;
      if (::mkdir(d.c_str(), *sub ? 0755 : 0700) != 0 && errno != EEXIST)
        return fail(errc::file_io, "image store: cannot create " + sandbox::detail::shell_quote(d) +
                                       ": " + sandbox::detail::errno_text(errno));
    }
    return made;
  }

  [[nodiscard]] const std::string& root() const noexcept { return root_; }

  [[nodiscard]] static std::string hex(std::string_view digest) {
    return std::string(digest.substr(digest.find(':') + 1));
  }
  [[nodiscard]] std::string blob_path(std::string_view digest) const {
    return root_ + "/blobs/sha256/" + hex(digest);
  }
  [[nodiscard]] std::string layer_path(std::string_view digest) const {
    return root_ + "/layers/" + hex(digest);
  }
  [[nodiscard]] std::string tmp_path(std::string_view name) const {
    return root_ + "/tmp/" + std::string(name);
  }

  [[nodiscard]] bool has_blob(std::string_view digest) const noexcept {
    struct stat st {};
    return ::stat(blob_path(digest).c_str(), &st) == 0 && S_ISREG(st.st_mode);
  }
  [[nodiscard]] bool has_layer(std::string_view digest) const noexcept {
    struct stat st {};
    return ::stat(layer_path(digest).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  }

  /// An advisory lock on a file of locks/: shared (in use) or exclusive (fetching, removing).
  /// **Errors:** file_io.
  [[nodiscard]] result<sandbox::detail::unique_fd> lock(std::string_view name,
                                                        int how) const noexcept {
    std::string p = root_ + "/locks/" + std::string(name);
    sandbox::detail::unique_fd fd(::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!fd)
      return fail(errc::file_io, "image store: " + p + ": " + sandbox::detail::errno_text(errno));
    while (::flock(fd.get(), how) != 0) {
      if (errno == EINTR) continue;
      if (errno == EWOULDBLOCK) return fail(errc::conflict, "image store: " + p + " is locked");
      return fail(errc::file_io,
                  "image store: locking " + p + ": " + sandbox::detail::errno_text(errno));
    }
    return fd;
  }

  /// Stores `data` as a blob after checking it hashes to `digest` (empty: whatever it hashes
  /// to). Returns the digest.
  /// **Errors:** protocol (digest mismatch: nothing is stored), file_io.
  [[nodiscard]] result<std::string> put_bytes(std::string_view data, std::string_view digest,
                                              std::string_view what) const noexcept {
    std::string got = detail::sha256::of(data);
    if (!digest.empty() && got != digest)
      return fail(errc::protocol, std::string(what) + ": content does not match its digest " +
                                      std::string(digest) + " (it hashes to " + got + ")");
    if (has_blob(got)) return got;
    std::string tmp = tmp_path("put-" + sandbox::detail::random_id("", 12));
    sandbox::detail::unique_fd fd(
        ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd) return io_error("creating " + tmp);
    for (std::size_t off = 0; off < data.size();) {
      ssize_t w = ::write(fd.get(), data.data() + off, data.size() - off);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        return io_error("writing " + tmp, err);
      }
      off += static_cast<std::size_t>(w);
    }
    SANDBOX_TRYV(commit(tmp, got));
    return got;
  }

  /// Moves a verified download into blobs/ under `digest`.
  [[nodiscard]] result<void> commit(const std::string& tmp,
                                    std::string_view digest) const noexcept {
    // On disk before it has its name: a blob under its digest is never checked again.
    sandbox::detail::unique_fd f(::open(tmp.c_str(), O_RDONLY | O_CLOEXEC));
    if (!f || ::fsync(f.get()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      return io_error("syncing blob " + std::string(digest), err);
    }
    if (::rename(tmp.c_str(), blob_path(digest).c_str()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      return io_error("storing blob " + std::string(digest), err);
    }
    return success();
  }

  /// A small blob's content (a manifest, a config), at most `max` bytes.
  /// **Errors:** not_found (not stored), protocol (larger than `max`), file_io.
  [[nodiscard]] result<std::string> read_blob(std::string_view digest,
                                              std::size_t max = 16u << 20) const noexcept {
    return read_file(blob_path(digest), max, "blob " + std::string(digest));
  }

  /// Opens `rel` below the directory `dir` for reading, through no symlink and no `..` out of it
  /// (what a layout or an unpacked archive names is untrusted); a regular file only.
  /// **Errors:** not_found, validation (a symlink, a special file, a path out of `dir`), file_io.
  [[nodiscard]] static result<sandbox::detail::unique_fd>
  open_beneath(const std::string& dir, std::string_view rel, const std::string& what) noexcept {
    sandbox::detail::unique_fd root(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root)
      return fail(errc::validation, what + ": " + sandbox::detail::shell_quote(dir) + ": " +
                                        sandbox::detail::errno_text(errno));
    open_how how{};
    how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    const std::string r(rel);
    sandbox::detail::unique_fd fd(
        static_cast<int>(::syscall(SYS_openat2, root.get(), r.c_str(), &how, sizeof how)));
    if (!fd) {
      int err = errno;
      if (err == ENOENT) return fail(errc::not_found, what + " not found");
      if (err == ELOOP || err == EXDEV)
        return fail(errc::validation, what + ": " + sandbox::detail::shell_quote(r) +
                                          " goes through a symlink or out of its directory");
      return fail(errc::file_io, what + ": " + sandbox::detail::errno_text(err));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
      return fail(errc::validation,
                  what + ": " + sandbox::detail::shell_quote(r) + " is not a regular file");
    (void)::fcntl(fd.get(), F_SETFL, 0);
    return fd;
  }

  [[nodiscard]] static result<std::string> read_beneath(const std::string& dir,
                                                        std::string_view rel, std::size_t max,
                                                        const std::string& what) noexcept {
    SANDBOX_TRY(fd, open_beneath(dir, rel, what));
    return read_fd(fd.get(), max, what);
  }

  [[nodiscard]] static result<std::string> read_file(const std::string& path, std::size_t max,
                                                     const std::string& what) noexcept {
    // O_NONBLOCK: a FIFO in its place does not block the caller (read_fd then refuses it).
    sandbox::detail::unique_fd fd(
        ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (!fd) {
      if (errno == ENOENT) return fail(errc::not_found, what + " not found");
      return fail(errc::file_io, what + ": " + sandbox::detail::errno_text(errno));
    }
    return read_fd(fd.get(), max, what);
  }

  [[nodiscard]] static result<std::string> read_fd(int fdn, std::size_t max,
                                                   const std::string& what) noexcept {
    struct stat st {};
    if (::fstat(fdn, &st) != 0 || !S_ISREG(st.st_mode))
      return fail(errc::file_io, what + ": not a regular file");
    if (static_cast<std::uint64_t>(st.st_size) > max)
      return fail(errc::protocol, what + " is larger than " + std::to_string(max) + " bytes");
    std::string out(static_cast<std::size_t>(st.st_size), '\0');
    std::size_t got = 0;
    while (got < out.size()) {
      ssize_t n = ::read(fdn, out.data() + got, out.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return fail(errc::file_io, what + ": short read");
      got += static_cast<std::size_t>(n);
    }
    return out;
  }

  /// Unpacks the stored layer blob `digest` unless done already; the caller holds its in-use
  /// lock. One unpack at a time per layer (the others wait, then find it done).
  /// **Errors:** as layer_unpacker::run; not_found (the blob is not stored).
  [[nodiscard]] result<std::string> unpack(std::string_view digest, std::uint64_t max_bytes,
                                           std::string_view image_name) const noexcept {
    std::string dir = layer_path(digest);
    if (has_layer(digest)) return dir;
    SANDBOX_TRY(fetching, lock(hex(digest) + ".pull", LOCK_EX));
    if (has_layer(digest)) return dir;
    std::string where = "image " + std::string(image_name) + ": layer " + std::string(digest);
    sandbox::detail::unique_fd blob(::open(blob_path(digest).c_str(), O_RDONLY | O_CLOEXEC));
    if (!blob) return fail(errc::not_found, where + ": blob not in the store");
    std::string tmp =
        tmp_path("layer-" + hex(digest).substr(0, 16) + "-" + sandbox::detail::random_id("", 8));
    if (::mkdir(tmp.c_str(), 0755) != 0) return io_error("creating " + tmp);
    auto done = [&]() -> result<void> {
      sandbox::detail::unique_fd root(::open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!root) return io_error("opening " + tmp);
      detail::layer_unpacker u(root.get(), where, max_bytes);
      SANDBOX_TRYV(u.run(blob.get()));
      // Complete on disk before it has its name (syncfs: the layer's files, in one call).
      if (::syncfs(root.get()) != 0) return io_error("syncing " + tmp);
      if (::rename(tmp.c_str(), dir.c_str()) != 0) return io_error("storing " + dir);
      return success();
    }();
    if (!done) {
      (void)detail::remove_tree(AT_FDCWD, tmp.c_str());
      // The blob stays (another image, or a caller with a larger limit, may take it); no name
      // reaches it after a failed prepare, so gc removes it.
      return std::move(done).as_failure();
    }
    (void)fetching;
    return dir;
  }

  /// The manifest digest a name was last resolved to, if any (and if `identity`, when given,
  /// is still what it was then: an archive rewritten is a new image under the same name).
  [[nodiscard]] std::string ref(std::string_view name,
                                std::string_view identity = {}) const noexcept {
    auto text = read_file(ref_path(name), 8192, "ref");
    if (!text) return {};
    auto lines = split_ref(text.value());
    if (lines.size() < 2 || lines[0] != name) return {};
    if (lines.size() > 2 ? lines[2] != identity : !identity.empty()) return {};
    return detail::is_sha256_digest(lines[1]) && has_blob(lines[1]) ? lines[1] : std::string();
  }

  /// Records that `name` resolves to the manifest `digest` (replacing what it was).
  [[nodiscard]] result<void> set_ref(std::string_view name, std::string_view digest,
                                     std::string_view identity = {}) const noexcept {
    std::string text = std::string(name) + "\n" + std::string(digest) + "\n";
    if (!identity.empty()) text += std::string(identity) + "\n";
    std::string tmp = tmp_path("ref-" + sandbox::detail::random_id("", 12));
    sandbox::detail::unique_fd fd(
        ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd || ::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
      int err = errno;
      ::unlink(tmp.c_str());
      return io_error("writing " + tmp, err);
    }
    if (::rename(tmp.c_str(), ref_path(name).c_str()) != 0) return io_error("storing a ref");
    return success();
  }

  /// "NAME\nDIGEST\n[IDENTITY\n]" as its lines.
  [[nodiscard]] static std::vector<std::string> split_ref(const std::string& text) {
    std::vector<std::string> out;
    for (std::size_t b = 0; b < text.size();) {
      auto e = text.find('\n', b);
      if (e == std::string::npos) e = text.size();
      out.push_back(text.substr(b, e - b));
      b = e + 1;
    }
    return out;
  }

  /// Held shared by `prepare` from its first look at the store until its layers are leased,
  /// exclusive by `gc`: gc never removes what a prepare is about to name or use.
  [[nodiscard]] result<sandbox::detail::unique_fd> lock_store(int how) const noexcept {
    return lock("store", how);
  }

  /// Forgets a name (its blobs and layers stay until `gc`). True when it was known.
  bool forget(std::string_view name) const noexcept {
    return ::unlink(ref_path(name).c_str()) == 0;
  }

  /// Removes every blob and unpacked layer that no name in refs/ reaches and no sandbox uses,
  /// and what processes that died while unpacking or importing left in tmp/ (older than an
  /// hour; an interrupted download stays a day, to be resumed).
  /// `reachable(store, manifest_digest, out)` adds the digests a manifest reaches.
  template <class Reach>
  [[nodiscard]] result<gc_stats> gc(Reach&& reachable) const noexcept {
    // Not blocking: shared holders keep coming while a pull runs (flock favours none), so gc
    // tries for a while and then says so. (A progress callback must not call gc.)
    auto exclusive = lock_store(LOCK_EX | LOCK_NB);
    for (int i = 0; !exclusive && exclusive.error().code == errc::conflict && i < 200; ++i) {
      ::usleep(50'000);
      exclusive = lock_store(LOCK_EX | LOCK_NB);
    }
    if (!exclusive)
      return fail(errc::conflict, "image store " + root_ +
                                      ": images are being prepared (for 10 s); gc again later");
    std::set<std::string> keep;
    for (const auto& f : list(root_ + "/refs")) {
      auto text = read_file(root_ + "/refs/" + f, 8192, "ref");
      if (!text) continue;
      auto lines = split_ref(text.value());
      if (lines.size() < 2 || !detail::is_sha256_digest(lines[1])) continue;
      keep.insert(hex(lines[1]));
      std::vector<std::string> reached;
      reachable(*this, lines[1], reached);
      for (auto& r : reached)
        keep.insert(hex(r));
    }
    gc_stats st;
    for (const auto& h : list(root_ + "/layers")) {
      if (keep.count(h) || h.size() != 64) continue;
      auto in_use = lock(h, LOCK_EX | LOCK_NB);
      if (!in_use) continue;
      // Out of layers/ first: a removal cut short must not leave a layer that looks complete.
      std::string doomed =
          tmp_path("gc-" + h.substr(0, 16) + "-" + sandbox::detail::random_id("", 8));
      if (::rename((root_ + "/layers/" + h).c_str(), doomed.c_str()) != 0) continue;
      ++st.layers;
      (void)detail::remove_tree(AT_FDCWD, doomed.c_str());
    }
    const auto hour_ago = ::time(nullptr) - 3600;
    for (const auto& t : list(root_ + "/tmp")) {
      struct stat ts {};
      std::string p = root_ + "/tmp/" + t;
      const bool partial = t.size() > 8 && t.compare(t.size() - 8, 8, ".partial") == 0;
      // Removals cut short go now; an interrupted download stays a day, to be resumed.
      const bool doomed = t.compare(0, 3, "gc-") == 0;
      const auto limit = partial ? hour_ago - 23 * 3600 : hour_ago;
      if (::lstat(p.c_str(), &ts) == 0 && (doomed || ts.st_mtime < limit))
        (void)detail::remove_tree(AT_FDCWD, p.c_str());
    }
    for (const auto& h : list(root_ + "/blobs/sha256")) {
      if (keep.count(h)) continue;
      auto in_use = lock(h, LOCK_EX | LOCK_NB);
      if (!in_use) continue;
      auto fetching = lock(h + ".pull", LOCK_EX | LOCK_NB);
      if (!fetching) continue;
      if (::unlink((root_ + "/blobs/sha256/" + h).c_str()) == 0) ++st.blobs;
    }
    (void)exclusive;
    return st;
  }

  /// Names in a directory (not . and ..).
  [[nodiscard]] static std::vector<std::string> list(const std::string& dir) {
    std::vector<std::string> out;
    DIR* d = ::opendir(dir.c_str());
    if (!d) return out;
    while (dirent* e = ::readdir(d)) {
      std::string_view n(e->d_name);
      if (n != "." && n != "..") out.emplace_back(n);
    }
    ::closedir(d);
    return out;
  }

private:
  [[nodiscard]] static std::string default_root() {
    if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x == '/')
      return std::string(x) + "/sandbox";
    if (::geteuid() == 0) return "/var/cache/sandbox";
    if (const char* h = std::getenv("HOME"); h && *h == '/')
      return std::string(h) + "/.cache/sandbox";
    return {};
  }

  [[nodiscard]] std::string ref_path(std::string_view name) const {
    return root_ + "/refs/" + hex(detail::sha256::of(name));
  }

  std::string root_;
};

} // namespace sandbox::image
