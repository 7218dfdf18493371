// SPDX-License-Identifier: MIT
// Images made by tests: tar layers written with libarchive (hostile ones included), OCI layouts
// assembled from them, a busybox root filesystem, and Debian's docker-registry on a loopback
// port of its own.
#pragma once

#include <sandbox/image/detail/sha256.hpp>
#include <sandbox/image/detail/unpack.hpp>

#include <archive.h>
#include <archive_entry.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace test_support {

/// A fresh directory under /tmp, removed with all it holds when the object goes.
struct temp_dir {
  std::string path;
  temp_dir() {
    char tmpl[] = "/tmp/sandbox-img-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() { (void)sandbox::image::detail::remove_tree(AT_FDCWD, path.c_str()); }
};

inline std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void write_all(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

/// One entry of a layer as a test writes it (the names may be hostile on purpose).
struct tar_entry {
  enum kind_t { file, dir, symlink, hardlink, chardev, fifo } kind = file;
  std::string name;
  std::string data{}; ///< file content; symlink / hardlink target
  int mode = 0644;
  int major = 0, minor = 0;
};

enum class compression { none, gzip, zstd };

/// A tar of `entries`, in memory.
inline std::string make_tar(const std::vector<tar_entry>& entries,
                            compression c = compression::none) {
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (c == compression::gzip) archive_write_add_filter_gzip(a);
  if (c == compression::zstd) archive_write_add_filter_zstd(a);
  archive_write_set_bytes_in_last_block(a, 1); // no zero padding after the compressed stream
  std::string out;
  archive_write_open(
      a, &out, nullptr,
      [](archive*, void* d, const void* buf, size_t n) -> la_ssize_t {
        static_cast<std::string*>(d)->append(static_cast<const char*>(buf), n);
        return static_cast<la_ssize_t>(n);
      },
      nullptr);
  for (const auto& e : entries) {
    archive_entry* ae = archive_entry_new();
    archive_entry_set_pathname(ae, e.name.c_str());
    archive_entry_set_perm(ae, static_cast<mode_t>(e.mode));
    archive_entry_set_mtime(ae, 1700000000, 0);
    switch (e.kind) {
    case tar_entry::file:
      archive_entry_set_filetype(ae, AE_IFREG);
      archive_entry_set_size(ae, static_cast<la_int64_t>(e.data.size()));
      break;
    case tar_entry::dir: archive_entry_set_filetype(ae, AE_IFDIR); break;
    case tar_entry::symlink:
      archive_entry_set_filetype(ae, AE_IFLNK);
      archive_entry_set_symlink(ae, e.data.c_str());
      break;
    case tar_entry::hardlink:
      archive_entry_set_filetype(ae, AE_IFREG);
      archive_entry_set_hardlink(ae, e.data.c_str());
      break;
    case tar_entry::chardev:
      archive_entry_set_filetype(ae, AE_IFCHR);
      archive_entry_set_rdevmajor(ae, static_cast<dev_t>(e.major));
      archive_entry_set_rdevminor(ae, static_cast<dev_t>(e.minor));
      break;
    case tar_entry::fifo: archive_entry_set_filetype(ae, AE_IFIFO); break;
    }
    archive_write_header(a, ae);
    if (e.kind == tar_entry::file && !e.data.empty())
      archive_write_data(a, e.data.data(), e.data.size());
    archive_entry_free(ae);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

/// The entries of a busybox root filesystem: /bin/busybox and the applets the tests use.
inline std::vector<tar_entry> busybox_entries() {
  std::vector<tar_entry> e{{tar_entry::dir, "bin", "", 0755},
                           {tar_entry::dir, "tmp", "", 01777},
                           {tar_entry::dir, "etc", "", 0755}};
  e.push_back({tar_entry::file, "bin/busybox", read_all("/bin/busybox"), 0755});
  for (const char* t :
       {"sh", "echo", "cat", "ls", "env", "pwd", "test", "id", "stat", "wc", "true"})
    e.push_back({tar_entry::symlink, std::string("bin/") + t, "busybox", 0777});
  return e;
}

inline std::string digest_of(const std::string& data) {
  return sandbox::image::detail::sha256::of(data);
}

/// `data` decompressed (as it is when not compressed): what an image's diff_ids hash.
inline std::string uncompressed(const std::string& data) {
  archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_raw(a);
  std::string out;
  archive_entry* e = nullptr;
  if (archive_read_open_memory(a, data.data(), data.size()) == ARCHIVE_OK &&
      archive_read_next_header(a, &e) == ARCHIVE_OK) {
    char buf[65536];
    for (la_ssize_t n; (n = archive_read_data(a, buf, sizeof buf)) > 0;)
      out.append(buf, static_cast<std::size_t>(n));
  }
  archive_read_free(a);
  return out;
}

/// An OCI image layout at `dir` holding one image of `layers` (bottom first), tagged `tag`,
/// with `config_json` as its runtime config (`{"Env":[…],…}`). Returns the manifest's digest.
inline std::string make_layout(const std::string& dir, const std::vector<std::string>& layers,
                               const std::string& config_json = "{}",
                               const std::string& tag = "latest") {
  ::mkdir(dir.c_str(), 0755);
  ::mkdir((dir + "/blobs").c_str(), 0755);
  ::mkdir((dir + "/blobs/sha256").c_str(), 0755);
  auto put = [&](const std::string& data) {
    std::string d = digest_of(data);
    write_all(dir + "/blobs/sha256/" + d.substr(7), data);
    return d;
  };
  std::string diff_ids, layer_list;
  for (const auto& l : layers) {
    std::string d = put(l);
    diff_ids += std::string(diff_ids.empty() ? "" : ",") + "\"" + digest_of(uncompressed(l)) + "\"";
    layer_list += std::string(layer_list.empty() ? "" : ",") +
                  "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar" +
                  (l.substr(0, 2) == "\x1f\x8b"           ? "+gzip"
                   : l.substr(0, 4) == "\x28\xb5\x2f\xfd" ? "+zstd"
                                                          : "") +
                  "\",\"digest\":\"" + d + "\",\"size\":" + std::to_string(l.size()) + "}";
  }
  std::string config = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":" + config_json +
                       ",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[" + diff_ids + "]}}";
  std::string cd = put(config);
  std::string manifest =
      "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
      "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" +
      cd + "\",\"size\":" + std::to_string(config.size()) + "},\"layers\":[" + layer_list + "]}";
  std::string md = put(manifest);
  write_all(dir + "/oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
  write_all(dir + "/index.json", "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/"
                                 "vnd.oci.image.manifest.v1+json\",\"digest\":\"" +
                                     md + "\",\"size\":" + std::to_string(manifest.size()) +
                                     ",\"annotations\":{\"org.opencontainers.image.ref.name\":\"" +
                                     tag + "\"}}]}");
  return md;
}

/// A free loopback port (bound and released: another process could take it in between, which
/// a test then sees as its server failing to start).
inline int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

/// Whether something accepts connections on 127.0.0.1:port.
inline bool port_open(int port) {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(s);
  return ok;
}

/// Debian's docker-registry serving a directory of its own on a loopback port; with
/// `user`/`password`, behind htpasswd (bcrypt, made by htpasswd -B). Stopped with the object.
struct registry {
  temp_dir dir;
  int port = 0;
  pid_t pid = -1;

  explicit registry(const std::string& user = "", const std::string& password = "") {
    port = free_port();
    std::string auth;
    if (!user.empty()) {
      std::string cmd =
          "htpasswd -Bbn '" + user + "' '" + password + "' > " + dir.path + "/htpasswd";
      if (std::system(cmd.c_str()) != 0) return;
      auth = "auth:\n  htpasswd:\n    realm: test\n    path: " + dir.path + "/htpasswd\n";
    }
    write_all(dir.path + "/config.yml",
              "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  "
              "filesystem:\n    rootdirectory: " +
                  dir.path + "/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:" +
                  std::to_string(port) + "\n" + auth);
    std::string cfg = dir.path + "/config.yml";
    std::string log = dir.path + "/log";
    const char* argv[] = {"docker-registry", "serve", cfg.c_str(), nullptr};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    if (posix_spawnp(&pid, "docker-registry", &fa, nullptr, const_cast<char**>(argv), environ) != 0)
      pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 1000 && pid > 0 && !port_open(port); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;
  ~registry() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
  }
  [[nodiscard]] bool up() const { return pid > 0 && port_open(port); }
  [[nodiscard]] std::string host() const { return "127.0.0.1:" + std::to_string(port); }

  /// Pushes `oci:LAYOUT:TAG` as `NAME` (`repo:tag`) with skopeo; true on success.
  bool push(const std::string& layout, const std::string& tag, const std::string& name,
            const std::string& creds = "") const {
    std::string cmd = "skopeo copy -q --dest-tls-verify=false " +
                      (creds.empty() ? std::string() : "--dest-creds '" + creds + "' ") +
                      "oci:" + layout + ":" + tag + " docker://" + host() + "/" + name +
                      " >/dev/null";
    return std::system(cmd.c_str()) == 0;
  }

  /// The file holding blob `digest` in the registry's storage.
  [[nodiscard]] std::string blob_file(const std::string& digest) const {
    std::string hex = digest.substr(7);
    return dir.path + "/data/docker/registry/v2/blobs/sha256/" + hex.substr(0, 2) + "/" + hex +
           "/data";
  }
};

} // namespace test_support
