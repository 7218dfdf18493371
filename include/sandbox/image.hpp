// SPDX-License-Identifier: MIT
// Container images for the local transport: registry names, OCI layouts and `docker save` /
// OCI archives, fetched into the content-addressed store (image/store.hpp) and run as an
// overlay of their unpacked layers. Including this header is what lets `SandboxOptions::image`
// name an image rather than only a directory (the local transport alone needs none of the
// libraries this brings: libarchive, OpenSSL's libcrypto, cpp-httplib, simdjson).
#pragma once

#include <sandbox/image/detail/manifest.hpp>
#include <sandbox/image/detail/registry.hpp>
#include <sandbox/image/detail/sha256.hpp>
#include <sandbox/image/detail/unpack.hpp>
#include <sandbox/image/options.hpp>
#include <sandbox/image/reference.hpp>
#include <sandbox/image/store.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <linux/openat2.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

namespace sandbox::image {

namespace detail {

/// Copies the file `rel` of the directory `dir` (a layout, an unpacked archive: untrusted
/// names, read through no symlink) into the store as blob `digest`, verifying it (skipped when
/// stored already).
[[nodiscard]] inline result<void> import_file(const store& s, const std::string& dir,
                                              const std::string& rel, const std::string& digest,
                                              const image_options& o, const std::string& image) {
  if (s.has_blob(digest)) {
    if (o.on_progress) o.on_progress(pull_progress{image, digest, 0, 0, true});
    return success();
  }
  const std::string path = dir + "/" + rel;
  auto opened = store::open_beneath(dir, rel, "image " + image + ": blob " + digest);
  if (!opened) {
    if (opened.error().code == errc::not_found)
      return fail(errc::validation, "image " + image + ": blob " + digest + " missing (" +
                                        sandbox::detail::shell_quote(path) + ")");
    return std::move(opened).as_failure();
  }
  sandbox::detail::unique_fd in = std::move(opened).value();
  struct stat st {};
  if (::fstat(in.get(), &st) != 0)
    return fail(errc::file_io, "image " + image + ": " + sandbox::detail::errno_text(errno));
  SANDBOX_TRY(fetching, s.lock(store::hex(digest) + ".pull", LOCK_EX));
  if (s.has_blob(digest)) return success();
  std::string tmp = s.tmp_path("import-" + sandbox::detail::random_id("", 12));
  sandbox::detail::unique_fd out(
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!out)
    return fail(errc::file_io, "image store: " + tmp + ": " + sandbox::detail::errno_text(errno));
  sha256 h;
  std::vector<char> buf(1 << 20);
  std::uint64_t done = 0, total = static_cast<std::uint64_t>(st.st_size);
  for (;;) {
    ssize_t n = ::read(in.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::unlink(tmp.c_str());
      return fail(errc::file_io, "image " + image + ": reading " + path + ": " +
                                     sandbox::detail::errno_text(errno));
    }
    if (n == 0) break;
    h.update(buf.data(), static_cast<std::size_t>(n));
    if (::write(out.get(), buf.data(), static_cast<std::size_t>(n)) != n) {
      int err = errno;
      ::unlink(tmp.c_str());
      return fail(err == ENOSPC ? errc::resource_exhausted : errc::file_io,
                  "image store: writing " + tmp + ": " + sandbox::detail::errno_text(err));
    }
    done += static_cast<std::uint64_t>(n);
    if (o.on_progress) o.on_progress(pull_progress{image, digest, done, total, false});
  }
  std::string got = h.digest();
  if (got != digest) {
    ::unlink(tmp.c_str());
    return fail(errc::protocol, "image " + image + ": blob " + sandbox::detail::shell_quote(path) +
                                    " does not match its digest " + digest + " (it hashes to " +
                                    got + "); nothing was kept");
  }
  (void)fetching;
  return s.commit(tmp, digest);
}

/// Imports the image `ref` of the OCI layout `dir` (its only image, or the one for this
/// platform, when `ref` is empty). Returns the manifest digest.
[[nodiscard]] inline result<std::string> import_layout(const store& s, const std::string& dir,
                                                       const std::string& ref,
                                                       const image_options& o,
                                                       const std::string& image) {
  SANDBOX_TRY(index_text,
              store::read_beneath(dir, "index.json", 4u << 20, "image " + image + ": index.json"));
  const std::string what = "image " + image + ": index.json";
  SANDBOX_TRY(index, parse_document(index_text, what));
  if (!index.is_index) return fail(errc::validation, what + " is not an image index");
  SANDBOX_TRY(m, pick_manifest(index, ref, what));
  auto blob = [&](const std::string& digest) { return "blobs/sha256/" + store::hex(digest); };
  for (int depth = 0; depth < 2; ++depth) {
    SANDBOX_TRYV(import_file(s, dir, blob(m.digest), m.digest, o, image));
    SANDBOX_TRY(text, s.read_blob(m.digest, 4u << 20));
    SANDBOX_TRY(doc, parse_document(text, "image " + image + ": manifest " + m.digest));
    if (!doc.is_index) {
      SANDBOX_TRYV(import_file(s, dir, blob(doc.config.digest), doc.config.digest, o, image));
      for (const auto& l : doc.layers)
        if (!s.has_layer(l.digest)) {
          SANDBOX_TRYV(import_file(s, dir, blob(l.digest), l.digest, o, image));
        }
      return m.digest;
    }
    SANDBOX_TRY(inner, pick_manifest(doc, "", what));
    m = std::move(inner);
  }
  return fail(errc::validation, what + ": an index points at another index");
}

/// Unpacks an archive (a tar of an OCI layout, or `docker save`'s) into a fresh directory of
/// the store's tmp/, confined like a layer; removed when the returned holder goes.
struct unpacked_archive {
  std::string dir;
  unpacked_archive() = default;
  unpacked_archive(unpacked_archive&& o) noexcept : dir(std::exchange(o.dir, {})) {}
  unpacked_archive& operator=(unpacked_archive&&) = delete;
  ~unpacked_archive() {
    if (!dir.empty()) (void)remove_tree(AT_FDCWD, dir.c_str());
  }
};

[[nodiscard]] inline result<unpacked_archive> unpack_archive(const store& s,
                                                             const std::string& file,
                                                             const image_options& o,
                                                             const std::string& image) {
  sandbox::detail::unique_fd in(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in)
    return fail(errc::validation, "image " + image + ": cannot open the archive: " +
                                      sandbox::detail::errno_text(errno));
  unpacked_archive u;
  u.dir = s.tmp_path("archive-" + sandbox::detail::random_id("", 12));
  if (::mkdir(u.dir.c_str(), 0700) != 0) {
    u.dir.clear();
    return fail(errc::file_io, "image store: tmp/: " + sandbox::detail::errno_text(errno));
  }
  sandbox::detail::unique_fd root(::open(u.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  layer_unpacker up(root.get(), "image " + image, o.max_layer_bytes);
  SANDBOX_TRYV(up.run(in.get()));
  return u;
}

/// A manifest for an image of `docker save` (which has none of its own, only file names), so
/// that it is kept and named like any other. Returns its digest.
[[nodiscard]] inline result<std::string>
import_docker_archive(const store& s, const std::string& dir, const std::string& ref,
                      const image_options& o, const std::string& image) {
  const std::string what = "image " + image + ": manifest.json";
  SANDBOX_TRY(text, store::read_beneath(dir, "manifest.json", 4u << 20, what));
  SANDBOX_TRY(saved, parse_saved(text, what));
  // Tags compare as registry names do (`team/app` is `docker.io/team/app:latest`).
  auto normal = [](const std::string& t) {
    auto r = parse_registry_ref(t);
    return r ? r.value().str() : t;
  };
  const std::string want = ref.empty() ? ref : normal(ref);
  const saved_image* pick = nullptr;
  for (const auto& si : saved) {
    bool named = ref.empty();
    for (const auto& t : si.tags)
      if (normal(t) == want) named = true;
    if (named) {
      pick = &si;
      break;
    }
  }
  if (!pick)
    return fail(errc::validation, what + (saved.empty() ? std::string(" lists no image")
                                                        : " has no image tagged " +
                                                              sandbox::detail::shell_quote(ref)));
  // Every file name is untrusted: opened below the unpacked archive, through no symlink.
  auto file_digest = [&](const std::string& name) -> result<std::pair<std::string, std::uint64_t>> {
    auto opened =
        store::open_beneath(dir, name, what + ": " + sandbox::detail::quoted_excerpt(name));
    if (!opened)
      return fail(errc::validation, what + ": " + sandbox::detail::quoted_excerpt(name) +
                                        " is not a file of the archive (" + opened.error().message +
                                        ")");
    sandbox::detail::unique_fd fd = std::move(opened).value();
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
      return fail(errc::file_io, what + ": " + sandbox::detail::errno_text(errno));
    sha256 h;
    std::vector<char> buf(1 << 20);
    for (ssize_t n; (n = ::read(fd.get(), buf.data(), buf.size())) > 0;)
      h.update(buf.data(), static_cast<std::size_t>(n));
    std::string d = h.digest();
    SANDBOX_TRYV(import_file(s, dir, name, d, o, image));
    return std::pair{d, static_cast<std::uint64_t>(st.st_size)};
  };
  SANDBOX_TRY(cfg, file_digest(pick->config));
  std::string manifest =
      "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
      "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" +
      cfg.first + "\",\"size\":" + std::to_string(cfg.second) + "},\"layers\":[";
  for (std::size_t i = 0; i < pick->layers.size(); ++i) {
    SANDBOX_TRY(l, file_digest(pick->layers[i]));
    manifest += std::string(i ? "," : "") +
                "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"" +
                l.first + "\",\"size\":" + std::to_string(l.second) + "}";
  }
  manifest += "]}";
  return s.put_bytes(manifest, "", what);
}

/// What a manifest reaches (its config and layers), for gc.
inline void reached_by(const store& s, const std::string& manifest, std::vector<std::string>& out) {
  auto text = s.read_blob(manifest, 4u << 20);
  if (!text) return;
  auto doc = parse_document(text.value(), "manifest");
  if (!doc || doc.value().is_index) return;
  out.push_back(doc.value().config.digest);
  for (const auto& l : doc.value().layers)
    out.push_back(l.digest);
}

/// The content of `rel` (`etc/passwd`) as the stacked layers show it: from the topmost layer
/// that has it, unless a layer above deletes it (a whiteout) or hides its directory (opaque,
/// or not a directory there). `rel` is one directory deep.
/// Read without following a symlink anywhere in the path (an image's /etc may point anywhere
/// on the host).
[[nodiscard]] inline std::optional<std::string> layer_file(const std::vector<std::string>& layers,
                                                           const std::string& rel) {
  auto open_in = [](int root, const std::string& path, std::uint64_t flags) {
    open_how how{};
    how.flags = flags | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    return sandbox::detail::unique_fd(
        static_cast<int>(::syscall(SYS_openat2, root, path.c_str(), &how, sizeof how)));
  };
  const auto slash = rel.rfind('/');
  const std::string parent = slash == std::string::npos ? std::string(".") : rel.substr(0, slash);
  for (const auto& l : layers) {
    sandbox::detail::unique_fd root(::open(l.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root) continue;
    struct stat st {};
    auto at = open_in(root.get(), rel, O_PATH);
    if (at && ::fstat(at.get(), &st) == 0) {
      if (S_ISCHR(st.st_mode) && st.st_rdev == 0) return std::nullopt; // a whiteout
      if (!S_ISREG(st.st_mode) || st.st_size > (1 << 20)) return std::nullopt;
      auto fd = open_in(root.get(), rel, O_RDONLY | O_NONBLOCK);
      std::string out(static_cast<std::size_t>(st.st_size), '\0');
      if (!fd || ::read(fd.get(), out.data(), out.size()) != static_cast<ssize_t>(out.size()))
        return std::nullopt;
      return out;
    }
    // Not in this layer: does it hide the layers below (its directory opaque, or deleted)?
    auto dir = open_in(root.get(), parent, O_RDONLY | O_DIRECTORY);
    if (dir) {
      char v = 0;
      if ((::fgetxattr(dir.get(), "trusted.overlay.opaque", &v, 1) == 1 && v == 'y') ||
          (::fgetxattr(dir.get(), "user.overlay.opaque", &v, 1) == 1 && v == 'y'))
        return std::nullopt;
    } else if (::fstatat(root.get(), parent.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      return std::nullopt; // not a directory here (a whiteout, a symlink, a file): it hides below
    }
  }
  return std::nullopt;
}

/// A decimal id (0 to 2^32-2), or nullopt.
[[nodiscard]] inline std::optional<std::uint32_t> parse_id(std::string_view s) noexcept {
  if (s.empty() || s.size() > 10 || s.find_first_not_of("0123456789") != s.npos)
    return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s)
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  if (v >= 0xffffffffu) return std::nullopt;
  return static_cast<std::uint32_t>(v);
}

/// The line of an /etc/passwd or /etc/group text whose first field is `name`, split at ':'.
[[nodiscard]] inline std::vector<std::string> db_entry(const std::optional<std::string>& db,
                                                       std::string_view name) {
  if (!db) return {};
  std::size_t b = 0;
  while (b < db->size()) {
    auto e = db->find('\n', b);
    if (e == std::string::npos) e = db->size();
    std::string_view line(db->data() + b, e - b);
    if (line.substr(0, line.find(':')) == name) {
      std::vector<std::string> f;
      for (std::size_t p = 0;;) {
        auto c = line.find(':', p);
        f.emplace_back(line.substr(p, c - p));
        if (c == std::string_view::npos) break;
        p = c + 1;
      }
      return f;
    }
    b = e + 1;
  }
  return {};
}

/// Resolves the config's `User` (`name`, `uid`, `name:group`, `uid:gid`, …) as container
/// engines do: names from the image's /etc/passwd and /etc/group; a bare user takes its
/// passwd group (a bare uid, group 0).
/// **Errors:** validation (a name the image does not have, a malformed id).
[[nodiscard]] inline result<void> resolve_user(prepared_image& p, const std::string& image) {
  if (p.user.empty()) return success();
  auto colon = p.user.find(':');
  std::string u = p.user.substr(0, colon),
              g = colon == std::string::npos ? "" : p.user.substr(colon + 1);
  auto bad = [&](const std::string& why) {
    return fail(errc::validation,
                "image " + image + ": User " + sandbox::detail::shell_quote(p.user) + ": " + why);
  };
  if (u.empty()) return bad("no user before ':'");
  std::optional<std::uint32_t> gid;
  if (auto id = parse_id(u)) {
    p.uid = id;
  } else {
    auto entry = db_entry(layer_file(p.layers, "etc/passwd"), u);
    if (entry.size() < 4) return bad("no such user in the image's /etc/passwd");
    auto uid = parse_id(entry[2]);
    gid = parse_id(entry[3]);
    if (!uid || !gid) return bad("its /etc/passwd entry is malformed");
    p.uid = uid;
    if (entry.size() > 5) p.home = entry[5];
  }
  if (!g.empty()) {
    if (auto id = parse_id(g)) {
      gid = id;
    } else {
      auto entry = db_entry(layer_file(p.layers, "etc/group"), g);
      if (entry.size() < 3 || !parse_id(entry[2]))
        return bad("no such group in the image's /etc/group");
      gid = parse_id(entry[2]);
    }
  }
  p.gid = gid ? *gid : 0;
  return success();
}

/// The in-use locks a running sandbox holds on its layers.
struct layer_lease {
  std::vector<sandbox::detail::unique_fd> locks;
};

/// The layers of the stored manifest `digest`, unpacked and leased, and its config.
[[nodiscard]] inline result<prepared_image> from_manifest(const store& s, const std::string& digest,
                                                          const image_options& o,
                                                          const std::string& image,
                                                          registry_client* fetch) {
  SANDBOX_TRY(text, s.read_blob(digest, 4u << 20));
  SANDBOX_TRY(doc, parse_document(text, "image " + image + ": manifest " + digest));
  if (doc.is_index)
    return fail(errc::protocol, "image " + image + ": " + digest + " is an index, not a manifest");
  if (doc.layers.empty())
    return fail(errc::validation, "image " + image + ": manifest " + digest + " has no layers");
  if (fetch) {
    SANDBOX_TRYV(fetch->blob(doc.config.digest, doc.config.size));
  }
  SANDBOX_TRY(cfg_text, s.read_blob(doc.config.digest, 16u << 20));
  SANDBOX_TRY(cfg, parse_config(cfg_text, "image " + image + ": config " + doc.config.digest));
  if (!cfg.os.empty() && cfg.os != "linux")
    return fail(errc::validation, "image " + image + " is for " + cfg.os + ", not linux");
  auto lease = std::make_shared<layer_lease>();
  prepared_image out;
  for (const auto& l : doc.layers) {
    // Leased before it is looked at: gc cannot remove it from now on.
    SANDBOX_TRY(held, s.lock(store::hex(l.digest), LOCK_SH));
    lease->locks.push_back(std::move(held));
    if (!s.has_layer(l.digest) && fetch) {
      SANDBOX_TRYV(fetch->blob(l.digest, l.size));
    }
    SANDBOX_TRY(dir, s.unpack(l.digest, o.max_layer_bytes, image));
    out.layers.push_back(std::move(dir));
  }
  std::reverse(out.layers.begin(), out.layers.end()); // overlayfs lists the topmost first
  // A layer listed twice (an empty one, typically) is kept where it is topmost: what it holds
  // and hides lower down, it holds and hides again there; overlayfs takes each directory once.
  for (std::size_t i = 0; i < out.layers.size(); ++i)
    for (std::size_t j = out.layers.size(); j-- > i + 1;)
      if (out.layers[j] == out.layers[i])
        out.layers.erase(out.layers.begin() + static_cast<std::ptrdiff_t>(j));
  out.env = std::move(cfg.env);
  out.working_dir = std::move(cfg.working_dir);
  out.user = std::move(cfg.user);
  out.entrypoint = std::move(cfg.entrypoint);
  out.cmd = std::move(cfg.cmd);
  out.digest = digest;
  out.lease = std::move(lease);
  SANDBOX_TRYV(resolve_user(out, image));
  return out;
}

/// A directory holding an `oci-layout` file is an OCI layout, whatever it is called.
inline void detect_layout(source& src) {
  struct stat st {};
  if (src.kind == source_kind::directory && ::stat((src.path + "/oci-layout").c_str(), &st) == 0 &&
      S_ISREG(st.st_mode))
    src.kind = source_kind::oci_layout;
}

/// The store's name for what `src` names (a registry name normalised).
[[nodiscard]] inline std::string store_key(const source& src) {
  switch (src.kind) {
  case source_kind::registry: return src.remote.str();
  case source_kind::oci_layout: return "oci:" + src.path + ":" + src.ref;
  case source_kind::oci_archive: return "oci-archive:" + src.path + ":" + src.ref;
  case source_kind::docker_archive: return "docker-archive:" + src.path + ":" + src.ref;
  case source_kind::directory: break;
  }
  return src.path;
}

/// An archive's identity: a rewritten archive is a new image under the same name.
[[nodiscard]] inline result<std::string> archive_identity(const source& src,
                                                          const std::string& image) {
  struct stat st {};
  if (::stat(src.path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    return fail(errc::validation, "image " + image + ": " + sandbox::detail::shell_quote(src.path) +
                                      " is not a file");
  return std::to_string(st.st_dev) + "." + std::to_string(st.st_ino) + "." +
         std::to_string(st.st_size) + "." + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

/// The manifest that the stored blob `digest` is or (an index) resolves to for this platform;
/// empty when a blob on the way is not stored.
[[nodiscard]] inline std::string local_manifest(const store& s, std::string digest) {
  for (int depth = 0; depth < 3 && s.has_blob(digest); ++depth) {
    auto text = s.read_blob(digest, 4u << 20);
    if (!text) return {};
    auto doc = parse_document(text.value(), "manifest " + digest);
    if (!doc) return {};
    if (!doc.value().is_index) return digest;
    auto m = pick_manifest(doc.value(), "", "index " + digest);
    if (!m) return {};
    digest = m.value().digest;
  }
  return {};
}

} // namespace detail

/// Makes `image` ready to run: fetches or imports it into the store (unless there already),
/// unpacks its layers, and returns them with the image's config. A directory is returned as
/// its only layer.
/// **Errors:** validation (a malformed name, a missing file, a hostile layer, no image for this
/// platform), not_found (the registry has no such image), authentication, protocol (a digest
/// mismatch: nothing is kept), unavailable / timeout (the registry, after retries),
/// file_io / resource_exhausted (the store's disk).
[[nodiscard]] inline result<prepared_image> prepare(std::string_view image,
                                                    const image_options& o = {}) noexcept {
  SANDBOX_TRY(src, parse_source(image));
  detail::detect_layout(src);
  const std::string name(image);
  if (src.kind == source_kind::directory) {
    prepared_image p;
    p.layers.push_back(src.path);
    return p;
  }
  SANDBOX_TRY(s, store::open(o));
  // Until the layers are leased: gc leaves alone what this is about to name and use.
  SANDBOX_TRY(shared, s.lock_store(LOCK_SH));
  (void)shared; // held until this returns
  const std::string key = detail::store_key(src);
  std::string digest, identity;
  // The name is recorded once the image is ready: a failed prepare leaves nothing gc keeps.
  auto ready = [&](result<prepared_image> p) -> result<prepared_image> {
    if (p && s.ref(key, identity) != digest) {
      SANDBOX_TRYV(s.set_ref(key, digest, identity));
    }
    return p;
  };
  switch (src.kind) {
  case source_kind::registry: {
    detail::registry_client client(src.remote, o, s, name);
    if (!src.remote.digest.empty())
      digest = detail::local_manifest(s, src.remote.digest); // pinned: never asked again
    else if (!o.always_pull)
      digest = s.ref(key);
    if (digest.empty()) {
      SANDBOX_TRY(d,
                  client.manifest(src.remote.digest.empty() ? src.remote.tag : src.remote.digest));
      digest = std::move(d);
    }
    return ready(detail::from_manifest(s, digest, o, name, &client));
  }
  case source_kind::oci_layout: {
    // Its index.json as it was when imported (its hash): unchanged, nothing else is read again.
    if (auto index = store::read_beneath(src.path, "index.json", 4u << 20, "index.json"))
      identity = "index.json:" + detail::sha256::of(index.value());
    digest = s.ref(key, identity);
    if (digest.empty()) {
      SANDBOX_TRY(d, detail::import_layout(s, src.path, src.ref, o, name));
      digest = std::move(d);
    }
    return ready(detail::from_manifest(s, digest, o, name, nullptr));
  }
  case source_kind::oci_archive:
  case source_kind::docker_archive: {
    SANDBOX_TRY(id, detail::archive_identity(src, name));
    identity = std::move(id);
    digest = s.ref(key, identity);
    if (digest.empty()) {
      SANDBOX_TRY(tree, detail::unpack_archive(s, src.path, o, name));
      auto d = src.kind == source_kind::oci_archive
                   ? detail::import_layout(s, tree.dir, src.ref, o, name)
                   : detail::import_docker_archive(s, tree.dir, src.ref, o, name);
      if (!d) return std::move(d).as_failure();
      digest = std::move(d).value();
    }
    return ready(detail::from_manifest(s, digest, o, name, nullptr));
  }
  case source_kind::directory: break;
  }
  return fail(errc::validation, "image " + name + ": unknown form");
}

/// Removes from the store every layer and blob that no known name reaches and no running
/// sandbox uses.
[[nodiscard]] inline result<gc_stats> gc(const image_options& o = {}) noexcept {
  SANDBOX_TRY(s, store::open(o));
  return s.gc(detail::reached_by);
}

/// Forgets a name (as `prepare` was given it: a registry name is normalised); its layers go at
/// the next `gc` unless another name reaches them. True when the store knew it.
[[nodiscard]] inline result<bool> forget(std::string_view image,
                                         const image_options& o = {}) noexcept {
  SANDBOX_TRY(src, parse_source(image));
  detail::detect_layout(src);
  SANDBOX_TRY(s, store::open(o));
  return s.forget(detail::store_key(src));
}

namespace detail {
[[nodiscard]] inline result<prepared_image> resolve_for_transport(const image_options& o,
                                                                  std::string_view image) noexcept {
  return prepare(image, o);
}
/// Including this header is what makes the local transport resolve images.
inline const bool resolver_installed =
    (sandbox::local::detail::installed_image_resolver() = &resolve_for_transport, true);
} // namespace detail

} // namespace sandbox::image
