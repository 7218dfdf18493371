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
#include <sys/file.h>
#include <sys/stat.h>
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
    // Its parents too (~/.cache may not exist yet).
    for (auto slash = root.find('/', 1); slash != std::string::npos;
         slash = root.find('/', slash + 1))
      (void)::mkdir(root.substr(0, slash).c_str(), 0755);
    for (const char* sub : {"", "/blobs", "/blobs/sha256", "/layers", "/refs", "/locks", "/tmp"}) {
      std::string d = root + sub;
      if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST)
        return fail(errc::file_io, "image store: cannot create " + sandbox::detail::shell_quote(d) +
                                       ": " + sandbox::detail::errno_text(errno));
    }
    store s;
    s.root_ = std::move(root);
    return s;
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

  [[nodiscard]] static result<std::string> read_file(const std::string& path, std::size_t max,
                                                     const std::string& what) noexcept {
    sandbox::detail::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) {
      if (errno == ENOENT) return fail(errc::not_found, what + " not found");
      return fail(errc::file_io, what + ": " + sandbox::detail::errno_text(errno));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
      return fail(errc::file_io, what + ": not a regular file");
    if (static_cast<std::uint64_t>(st.st_size) > max)
      return fail(errc::protocol, what + " is larger than " + std::to_string(max) + " bytes");
    std::string out(static_cast<std::size_t>(st.st_size), '\0');
    std::size_t got = 0;
    while (got < out.size()) {
      ssize_t n = ::read(fd.get(), out.data() + got, out.size() - got);
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
      if (::rename(tmp.c_str(), dir.c_str()) != 0) return io_error("storing " + dir);
      return success();
    }();
    if (!done) {
      (void)detail::remove_tree(AT_FDCWD, tmp.c_str());
      return std::move(done).as_failure();
    }
    (void)fetching;
    return dir;
  }

  /// The manifest digest a name was last resolved to, if any.
  [[nodiscard]] std::string ref(std::string_view name) const noexcept {
    auto text = read_file(ref_path(name), 4096, "ref");
    if (!text) return {};
    auto nl = text.value().find('\n');
    if (nl == std::string::npos || text.value().substr(0, nl) != name) return {};
    std::string d = text.value().substr(nl + 1);
    while (!d.empty() && d.back() == '\n')
      d.pop_back();
    return detail::is_sha256_digest(d) && has_blob(d) ? d : std::string();
  }

  /// Records that `name` resolves to the manifest `digest` (replacing what it was).
  [[nodiscard]] result<void> set_ref(std::string_view name,
                                     std::string_view digest) const noexcept {
    std::string text = std::string(name) + "\n" + std::string(digest) + "\n";
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

  /// Forgets a name (its blobs and layers stay until `gc`). True when it was known.
  bool forget(std::string_view name) const noexcept {
    return ::unlink(ref_path(name).c_str()) == 0;
  }

  /// Removes every blob and unpacked layer that no name in refs/ reaches and no sandbox uses,
  /// and what processes that died while unpacking or importing left in tmp/ (older than an
  /// hour; interrupted downloads stay, to be resumed).
  /// `reachable(store, manifest_digest, out)` adds the digests a manifest reaches.
  template <class Reach>
  [[nodiscard]] result<gc_stats> gc(Reach&& reachable) const noexcept {
    std::set<std::string> keep;
    for (const auto& f : list(root_ + "/refs")) {
      auto text = read_file(root_ + "/refs/" + f, 4096, "ref");
      if (!text) continue;
      auto nl = text.value().find('\n');
      if (nl == std::string::npos) continue;
      std::string d = text.value().substr(nl + 1);
      while (!d.empty() && d.back() == '\n')
        d.pop_back();
      if (!detail::is_sha256_digest(d)) continue;
      keep.insert(hex(d));
      std::vector<std::string> reached;
      reachable(*this, d, reached);
      for (auto& r : reached)
        keep.insert(hex(r));
    }
    gc_stats st;
    for (const auto& h : list(root_ + "/layers")) {
      if (keep.count(h) || h.size() != 64) continue;
      auto in_use = lock(h, LOCK_EX | LOCK_NB);
      if (!in_use) continue;
      if (detail::remove_tree(AT_FDCWD, (root_ + "/layers/" + h).c_str()) == 0) ++st.layers;
    }
    const auto hour_ago = ::time(nullptr) - 3600;
    for (const auto& t : list(root_ + "/tmp")) {
      struct stat st {};
      std::string p = root_ + "/tmp/" + t;
      if (t.size() > 8 && t.compare(t.size() - 8, 8, ".partial") == 0) continue;
      if (::lstat(p.c_str(), &st) == 0 && st.st_mtime < hour_ago)
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
