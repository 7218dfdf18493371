// SPDX-License-Identifier: MIT
// How container images are fetched and kept (image_options), and what a resolved image gives
// a sandbox (prepared_image). No dependency: the local transport holds these without linking
// the image code (libarchive, libcrypto, cpp-httplib, simdjson), which <sandbox/image.hpp> adds.
#pragma once

#include <sandbox/result.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sandbox::image {

/// Progress of one blob being fetched (a layer, a config, a manifest).
struct pull_progress {
  std::string image{};  ///< as the caller named it
  std::string digest{}; ///< the blob's `sha256:…`
  std::uint64_t done = 0;
  std::uint64_t total = 0; ///< 0 when unknown
  bool cached = false;     ///< already in the store: nothing is fetched
};

/// Called as blobs arrive, from the pulling thread. Must not throw (it is called from
/// `noexcept` code: an exception ends the program).
using progress_callback = std::function<void(const pull_progress&)>;

/// A registry's credentials.
struct credentials {
  std::string username{};
  std::string password{};
};

struct image_options {
  /// The store's directory. Empty: `$XDG_CACHE_HOME/sandbox`, else `/var/cache/sandbox` for
  /// root and `~/.cache/sandbox` for others. Its path may not hold ',', ':' or '\\'
  /// (overlayfs takes layer paths in a comma- and colon-separated list).
  std::string store{};
  /// Per registry host (`docker.io`, `127.0.0.1:5000`); others come from
  /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` (its `auths`), if any.
  std::map<std::string, credentials, std::less<>> auth{};
  /// Hosts spoken to over plain http. Loopback hosts always are; every other registry is https.
  std::vector<std::string> insecure_registries{};
  /// For a server pulling what its clients name (sandboxd --pull): registries, token realms and
  /// redirects on loopback, private, link-local or other special addresses (IP literals, and
  /// `localhost`) are refused unless `local_registries` lists them (`host:port`).
  bool public_registries_only = false;
  std::vector<std::string> local_registries{};
  /// CA bundle for registries; empty: the system's trust store.
  std::string ca_cert_path{};
  progress_callback on_progress{};
  /// `always`: ask the registry for a tag even when the store has it (a digest never changes).
  bool always_pull = false;
  /// A layer unpacking to more than this is refused (a decompression bomb fills no disk).
  std::uint64_t max_layer_bytes = std::uint64_t{32} << 30;
  /// Each request gives up after this long without progress.
  std::chrono::milliseconds read_timeout{60000};
  /// Transient failures (connection refused or lost, 429, 5xx, a cut-off download) are retried
  /// with exponential backoff for this long; 0: never.
  std::chrono::milliseconds retry_for{30000};
};

/// An image ready to be a sandbox's root: its layers unpacked in the store, and its config.
struct prepared_image {
  /// Unpacked layer directories, topmost first (overlayfs `lowerdir` order).
  std::vector<std::string> layers{};
  std::vector<std::string> env{}; ///< `Env`: `K=V`
  std::string working_dir{};      ///< `WorkingDir`, or empty
  std::string user{};             ///< `User` as written, or empty
  /// `User` resolved against the image's /etc/passwd and /etc/group: commands run as it (a
  /// caller without root: only the sandbox's root maps, so they run as root).
  std::optional<std::uint32_t> uid{}, gid{};
  std::string home{}; ///< the user's home directory from /etc/passwd, or empty
  std::vector<std::string> entrypoint{}, cmd{};
  std::string digest{}; ///< the manifest's
  /// Held while a sandbox runs on the layers: `gc` leaves them alone until it is released.
  std::shared_ptr<const void> lease{};
};

} // namespace sandbox::image

namespace sandbox::local::detail {

/// Resolves an image that is not a plain directory; set by including <sandbox/image.hpp>.
using image_resolver = result<image::prepared_image> (*)(const image::image_options&,
                                                         std::string_view image) noexcept;

/// The resolver in use (nullptr: only directories). Written once at static initialisation.
inline image_resolver& installed_image_resolver() noexcept {
  static image_resolver r = nullptr;
  return r;
}

} // namespace sandbox::local::detail
