// SPDX-License-Identifier: MIT
// Unpacks a layer (a tar, compressed in any way libarchive reads) into a directory, taking every
// entry as written by an attacker: no entry lands outside the directory, none is written through
// a symlink, device nodes and setuid/setgid bits are not unpacked, extended attributes (file
// capabilities among them) are dropped, and the unpacked size is bounded. OCI whiteouts become
// overlayfs whiteouts (0/0 character devices, which need no privilege) and opaque directories
// overlayfs' opaque xattr, so that layers stack as an overlay.
#pragma once

#include <sandbox/detail/text.hpp>
#include <sandbox/detail/unique_fd.hpp>
#include <sandbox/result.hpp>

#include <cerrno>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

namespace sandbox::image::detail {

using sandbox::detail::unique_fd;

struct archive_free {
  void operator()(archive* a) const noexcept { archive_read_free(a); }
};
using archive_ptr = std::unique_ptr<archive, archive_free>;

/// A reader of tar streams: every compression libarchive knows (gzip, zstd, xz, bzip2, none).
[[nodiscard]] inline archive_ptr open_tar(int fd) noexcept {
  archive_ptr a(archive_read_new());
  if (!a) return a;
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open_fd(a.get(), fd, 1 << 20) != ARCHIVE_OK) a.reset();
  return a;
}

/// Removes `name` below `dirfd`, whatever it is; a directory with all it holds. Never follows
/// a symlink. Holds one descriptor per level (layers are at most `max_depth` deep). 0 or errno.
inline int remove_tree(int dirfd, const char* name) noexcept {
  if (::unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return 0;
  if (errno != EISDIR && errno != EPERM) return errno;
  struct stat st {};
  if (::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno;
  if (!S_ISDIR(st.st_mode)) return EPERM;
  // A directory of a layer may be read-only or unreadable to its owner (mode 0555, 0311).
  if ((st.st_mode & 0700) != 0700) (void)::fchmodat(dirfd, name, 0700, 0);
  unique_fd d(::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!d) return errno;
  std::vector<std::string> names;
  {
    int dup = ::fcntl(d.get(), F_DUPFD_CLOEXEC, 3);
    DIR* dir = dup >= 0 ? ::fdopendir(dup) : nullptr;
    if (!dir) {
      int err = errno;
      if (dup >= 0) ::close(dup);
      return err;
    }
    while (dirent* e = ::readdir(dir)) {
      std::string_view n(e->d_name);
      if (n != "." && n != "..") names.emplace_back(n);
    }
    ::closedir(dir); // before going deeper: one descriptor per level
  }
  int err = 0;
  for (const auto& n : names)
    if (int r = remove_tree(d.get(), n.c_str())) err = r;
  if (err) return err;
  return ::unlinkat(dirfd, name, AT_REMOVEDIR) == 0 ? 0 : errno;
}

/// Deeper entries are refused: no real image nests this far, and removing a tree holds a
/// descriptor per level.
inline constexpr std::size_t max_depth = 256;
/// More entries in one layer are refused (each is an inode; the largest real layers hold a
/// few hundred thousand).
inline constexpr std::uint64_t max_entries = 4'000'000;
/// Directory lookups one layer may cost (about a minute of system calls): many entries deep in
/// the tree cost one lookup per level each.
inline constexpr std::uint64_t max_walk = 64'000'000;

/// The components of an entry's name below the layer's root: a leading `/` or `./` is dropped
/// (tar's convention), `.` ignored, `..` taken back; a name that climbs above the root is
/// refused. Empty: the root itself.
[[nodiscard]] inline result<std::vector<std::string>> name_components(std::string_view name,
                                                                      const std::string& where) {
  if (name.size() > 4096)
    return fail(errc::validation, where + ": an entry's name is longer than 4096 bytes");
  if (name.find('\0') != std::string_view::npos)
    return fail(errc::validation, where + ": an entry's name holds a NUL byte");
  std::vector<std::string> out;
  std::size_t b = 0;
  while (b <= name.size()) {
    auto e = name.find('/', b);
    if (e == std::string_view::npos) e = name.size();
    std::string_view c = name.substr(b, e - b);
    if (c == "..") {
      if (out.empty())
        return fail(errc::validation, where + ": entry " +
                                          sandbox::detail::quoted_excerpt(name, 256) +
                                          " climbs out of the layer ('..' above its root)");
      out.pop_back();
    } else if (!c.empty() && c != ".") {
      out.emplace_back(c);
    }
    b = e + 1;
  }
  if (out.size() > max_depth)
    return fail(errc::validation,
                where + ": entry " + sandbox::detail::shell_quote(name.substr(0, 80)) +
                    "… is more than " + std::to_string(max_depth) + " directories deep");
  return out;
}

/// Unpacks one layer.
class layer_unpacker {
public:
  /// `root`: the (empty) directory to fill; `where`: names the layer in messages.
  layer_unpacker(int root, std::string where, std::uint64_t max_bytes) noexcept
      : root_(root), where_(std::move(where)), max_bytes_(max_bytes), as_root_(::geteuid() == 0) {}

  /// Reads the whole tar from `fd`.
  /// **Errors:** validation (a hostile or malformed entry, a corrupt archive, too large: the
  /// message names the entry), file_io / resource_exhausted (the host's disk).
  [[nodiscard]] result<void> run(int fd) noexcept {
    archive_ptr a = open_tar(fd);
    if (!a) return fail(errc::validation, where_ + ": not a tar archive libarchive can read");
    archive_entry* e = nullptr;
    for (;;) {
      int r = archive_read_next_header(a.get(), &e);
      if (r == ARCHIVE_EOF) break;
      if (r < ARCHIVE_WARN) return fail(errc::validation, where_ + ": " + reason(a.get()));
      SANDBOX_TRYV(entry(a.get(), e));
    }
    return finish();
  }

  [[nodiscard]] std::uint64_t bytes() const noexcept { return bytes_; }
  [[nodiscard]] std::uint64_t skipped_devices() const noexcept { return skipped_devices_; }

private:
  struct deferred_dir {
    mode_t mode;
    timespec mtime;
  };

  [[nodiscard]] static std::string reason(archive* a) {
    const char* s = archive_error_string(a);
    return s ? s : "corrupt archive";
  }

  [[nodiscard]] auto io_fail(int err, std::string_view what, std::string_view name) const {
    errc c = err == ENOSPC || err == EDQUOT ? errc::resource_exhausted : errc::file_io;
    return fail(c, where_ + ": " + std::string(what) + " " +
                       sandbox::detail::quoted_excerpt(name, 256) + ": " +
                       sandbox::detail::errno_text(err));
  }

  /// Opens the directory `path[0..n)` below the root, creating missing ones; refuses to pass
  /// through a symlink or a file (so nothing is written outside the layer).
  [[nodiscard]] result<unique_fd> open_dirs(const std::vector<std::string>& path, std::size_t n,
                                            std::string_view name, bool create) {
    unique_fd cur(::fcntl(root_, F_DUPFD_CLOEXEC, 3));
    if (!cur) return io_fail(errno, "opening the layer for", name);
    walked_ += n;
    if (walked_ > max_walk)
      return fail(errc::validation, where_ + ": too costly to unpack (more than " +
                                        std::to_string(max_walk) +
                                        " directory lookups: very many deep entries)");
    for (std::size_t i = 0; i < n; ++i) {
      const char* c = path[i].c_str();
      int fd = ::openat(cur.get(), c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0 && errno == ENOENT && create) {
        if (::mkdirat(cur.get(), c, 0755) != 0 && errno != EEXIST)
          return io_fail(errno, "creating a directory for", name);
        fd = ::openat(cur.get(), c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      }
      if (fd < 0) {
        if (errno == ELOOP || errno == ENOTDIR)
          return fail(errc::validation,
                      where_ + ": entry " + sandbox::detail::quoted_excerpt(name, 256) +
                          " lies below " + sandbox::detail::quoted_excerpt(path[i], 256) +
                          ", which is a symlink or a file in this layer");
        return io_fail(errno, "opening the directory of", name);
      }
      cur.reset(fd);
    }
    return cur;
  }

  /// Makes room for a new entry `base` in `dir`: whatever is there goes, except a directory
  /// when a directory comes (tar merges them).
  [[nodiscard]] result<bool> clear(int dir, const std::string& base, bool new_is_dir,
                                   std::string_view name) {
    struct stat st {};
    if (::fstatat(dir, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return false;
      return io_fail(errno, "looking at", name);
    }
    if (new_is_dir && S_ISDIR(st.st_mode)) return true;
    if (int err = remove_tree(dir, base.c_str())) return io_fail(err, "replacing", name);
    return false;
  }

  [[nodiscard]] result<void> charge(std::uint64_t n, std::string_view name) {
    bytes_ += n;
    if (bytes_ > max_bytes_)
      return fail(errc::validation, where_ + ": unpacks to more than " +
                                        std::to_string(max_bytes_) + " bytes (at entry " +
                                        sandbox::detail::quoted_excerpt(name, 256) + ")");
    return success();
  }

  [[nodiscard]] result<void> entry(archive* a, archive_entry* e) {
    const char* raw = archive_entry_pathname(e);
    if (!raw) return fail(errc::validation, where_ + ": an entry without a name");
    std::string_view name(raw);
    SANDBOX_TRYV(charge(512, name)); // an entry costs a block however small
    if (++entries_ > max_entries)
      return fail(errc::validation,
                  where_ + ": more than " + std::to_string(max_entries) + " entries");
    SANDBOX_TRY(path, name_components(name, where_));
    if (path.empty()) return success(); // the root itself: its metadata is the layer's own
    const std::string base = path.back();
    SANDBOX_TRY(dir, open_dirs(path, path.size() - 1, name, true));
    const int d = dir.get();

    // OCI whiteouts.
    if (base == ".wh..wh..opq") return make_opaque(d, name);
    if (base.size() > 4 && base.compare(0, 4, ".wh.") == 0) {
      std::string hidden = base.substr(4);
      if (hidden == "." || hidden == "..")
        return fail(errc::validation, where_ + ": whiteout " +
                                          sandbox::detail::quoted_excerpt(name, 256) +
                                          " names no entry");
      SANDBOX_TRYV(clear(d, hidden, false, name));
      if (::mknodat(d, hidden.c_str(), S_IFCHR | 0000, ::makedev(0, 0)) != 0)
        return io_fail(errno, "making the whiteout", name);
      return success();
    }

    const timespec mtime{archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
    if (const char* target = archive_entry_hardlink(e)) return hard_link(d, path, target, name);

    mode_t type = archive_entry_filetype(e);
    mode_t mode = archive_entry_perm(e) & 07777;
    const bool is_dir = type == AE_IFDIR;
    // Never as given: setuid, and setgid on files (setgid on a directory only passes its group).
    mode &= is_dir ? ~mode_t(S_ISUID) : ~mode_t(S_ISUID | S_ISGID);
    SANDBOX_TRY(keep, clear(d, base, is_dir, name));
    switch (type) {
    case AE_IFDIR:
      if (!keep && ::mkdirat(d, base.c_str(), 0700) != 0)
        return io_fail(errno, "creating the directory", name);
      // Its mode last: a read-only directory must still take its entries. Once per directory
      // however often the archive names it.
      dirs_[join(path)] = deferred_dir{mode, mtime};
      owner(d, base, e);
      return success();
    case AE_IFREG: return regular(a, e, d, base, mode, mtime, name);
    case AE_IFLNK: {
      const char* to = archive_entry_symlink(e);
      if (!to)
        return fail(errc::validation, where_ + ": symlink " +
                                          sandbox::detail::quoted_excerpt(name, 256) +
                                          " has no target");
      SANDBOX_TRYV(charge(std::string_view(to).size(), name));
      // Stored as written: resolved in the sandbox's root at run time, never followed here.
      if (::symlinkat(to, d, base.c_str()) != 0)
        return io_fail(errno, "creating the symlink", name);
      break;
    }
    case AE_IFIFO:
      if (::mkfifoat(d, base.c_str(), mode) != 0) return io_fail(errno, "creating the fifo", name);
      break;
    default: // character and block devices, sockets: not unpacked
      ++skipped_devices_;
      return success();
    }
    owner(d, base, e);
    times(d, base, mtime);
    return success();
  }

  void owner(int d, const std::string& base, archive_entry* e) noexcept {
    if (as_root_) // a caller without root owns every file (its uid is root in the sandbox)
      (void)::fchownat(d, base.c_str(), static_cast<uid_t>(archive_entry_uid(e)),
                       static_cast<gid_t>(archive_entry_gid(e)), AT_SYMLINK_NOFOLLOW);
  }

  static void times(int d, const std::string& base, timespec mtime) noexcept {
    const timespec ts[2] = {mtime, mtime};
    (void)::utimensat(d, base.c_str(), ts, AT_SYMLINK_NOFOLLOW);
  }

  [[nodiscard]] result<void> regular(archive* a, archive_entry* e, int d, const std::string& base,
                                     mode_t mode, timespec mtime, std::string_view name) {
    std::int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
    if (size < 0)
      return fail(errc::validation, where_ + ": entry " +
                                        sandbox::detail::quoted_excerpt(name, 256) +
                                        " has a negative size");
    SANDBOX_TRYV(charge(static_cast<std::uint64_t>(size), name));
    unique_fd f(
        ::openat(d, base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!f) return io_fail(errno, "creating", name);
    const void* buf = nullptr;
    std::size_t n = 0;
    la_int64_t off = 0;
    for (;;) {
      int r = archive_read_data_block(a, &buf, &n, &off);
      if (r == ARCHIVE_EOF) break;
      if (r < ARCHIVE_WARN)
        return fail(errc::validation,
                    where_ + ": " + sandbox::detail::quoted_excerpt(name, 256) + ": " + reason(a));
      if (off < 0 || static_cast<std::uint64_t>(off) + n > static_cast<std::uint64_t>(size))
        return fail(errc::validation, where_ + ": entry " +
                                          sandbox::detail::quoted_excerpt(name, 256) +
                                          " holds more data than its size");
      const char* p = static_cast<const char*>(buf);
      while (n > 0) { // sparse files: each block at its offset
        ssize_t w = ::pwrite(f.get(), p, n, off);
        if (w < 0) {
          if (errno == EINTR) continue;
          return io_fail(errno, "writing", name);
        }
        p += w;
        n -= static_cast<std::size_t>(w);
        off += w;
      }
    }
    if (::ftruncate(f.get(), size) != 0) return io_fail(errno, "sizing", name);
    if (as_root_)
      (void)::fchown(f.get(), static_cast<uid_t>(archive_entry_uid(e)),
                     static_cast<gid_t>(archive_entry_gid(e)));
    if (::fchmod(f.get(), mode) != 0) return io_fail(errno, "setting the mode of", name);
    const timespec ts[2] = {mtime, mtime};
    (void)::futimens(f.get(), ts);
    return success();
  }

  /// A hard link to an entry of this layer (the target is looked up below the root, through
  /// no symlink, so it can never be a file of the host).
  [[nodiscard]] result<void> hard_link(int d, const std::vector<std::string>& path,
                                       std::string_view target, std::string_view name) {
    const std::string& base = path.back();
    SANDBOX_TRY(tpath, name_components(target, where_));
    if (tpath.empty())
      return fail(errc::validation, where_ + ": hard link " +
                                        sandbox::detail::quoted_excerpt(name, 256) +
                                        " points at the layer's root");
    auto tdir = open_dirs(tpath, tpath.size() - 1, name, false);
    if (!tdir)
      return fail(errc::validation, where_ + ": hard link " +
                                        sandbox::detail::quoted_excerpt(name, 256) + " to " +
                                        sandbox::detail::quoted_excerpt(target, 256) +
                                        ": no such entry earlier in this layer");
    struct stat st {};
    if (::fstatat(tdir.value().get(), tpath.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        S_ISDIR(st.st_mode))
      return fail(errc::validation, where_ + ": hard link " +
                                        sandbox::detail::quoted_excerpt(name, 256) + " to " +
                                        sandbox::detail::quoted_excerpt(target, 256) +
                                        ": no such file earlier in this layer");
    if (tpath == path) return success(); // a link to itself: it exists already
    SANDBOX_TRYV(clear(d, base, false, name));
    if (::linkat(tdir.value().get(), tpath.back().c_str(), d, base.c_str(), 0) != 0)
      return io_fail(errno, "linking", name);
    return success();
  }

  [[nodiscard]] result<void> make_opaque(int d, std::string_view name) {
    // Both spellings: trusted.* for overlays mounted by root, user.* for those mounted in a user
    // namespace (userxattr). One is enough.
    int ok = 0;
    if (as_root_ && ::fsetxattr(d, "trusted.overlay.opaque", "y", 1, 0) == 0) ++ok;
    if (::fsetxattr(d, "user.overlay.opaque", "y", 1, 0) == 0) ++ok;
    if (!ok) return io_fail(errno, "marking opaque the directory of", name);
    return success();
  }

  /// Directory modes and times, deepest first, now that nothing more is written into them.
  /// (In reverse order of their joined paths: a directory's entries come after it.)
  [[nodiscard]] result<void> finish() {
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
      std::vector<std::string> path;
      for (std::size_t b = 0; b <= it->first.size();) {
        auto e = it->first.find('/', b);
        if (e == std::string::npos) e = it->first.size();
        path.push_back(it->first.substr(b, e - b));
        b = e + 1;
      }
      auto dir = open_dirs(path, path.size(), it->first, false);
      if (!dir) {
        if (dir.error().code == errc::validation && walked_ > max_walk)
          return std::move(dir).as_failure();
        continue; // replaced by a later entry
      }
      if (::fchmod(dir.value().get(), it->second.mode) != 0)
        return io_fail(errno, "setting the mode of", it->first);
      const timespec ts[2] = {it->second.mtime, it->second.mtime};
      (void)::futimens(dir.value().get(), ts);
    }
    return success();
  }

  [[nodiscard]] static std::string join(const std::vector<std::string>& path) {
    std::string out;
    for (const auto& c : path)
      out += (out.empty() ? "" : "/") + c;
    return out;
  }

  int root_;
  std::string where_;
  std::uint64_t max_bytes_;
  bool as_root_;
  std::uint64_t bytes_ = 0;
  std::uint64_t skipped_devices_ = 0;
  std::uint64_t entries_ = 0;
  std::uint64_t walked_ = 0; ///< directory lookups so far
  std::map<std::string, deferred_dir> dirs_;
};

} // namespace sandbox::image::detail
