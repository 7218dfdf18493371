// SPDX-License-Identifier: MIT
// What `SandboxOptions::image` names, told apart the way skopeo's transports spell them:
// a root filesystem directory, `oci:DIR[:REF]`, `oci-archive:FILE[:REF]`,
// `docker-archive:FILE[:NAME:TAG]`, `docker://NAME` or a bare registry name. No dependency.
#pragma once

#include <sandbox/detail/text.hpp>
#include <sandbox/result.hpp>

#include <string>
#include <string_view>

namespace sandbox::image {

/// A name in a registry: `docker.io/library/python:3.11`, `127.0.0.1:5000/team/img@sha256:…`.
struct registry_ref {
  std::string registry;   ///< host[:port] as written (`docker.io` for names without one)
  std::string repository; ///< `library/python`
  std::string tag;        ///< empty when `digest` is set and no tag was written
  std::string digest;     ///< `sha256:<64 hex>`, or empty

  /// `registry/repository:tag@digest`, as pulled; also the store's name for it.
  [[nodiscard]] std::string str() const {
    std::string s = registry + "/" + repository;
    if (!tag.empty()) s += ":" + tag;
    if (!digest.empty()) s += "@" + digest;
    return s;
  }
};

enum class source_kind {
  directory,      ///< an absolute path to a root filesystem (what the local transport always took)
  oci_layout,     ///< `oci:DIR[:REF]`
  oci_archive,    ///< `oci-archive:FILE[:REF]` (a tar of an OCI layout)
  docker_archive, ///< `docker-archive:FILE[:NAME:TAG]` (`docker save`)
  registry,       ///< `docker://NAME` or a bare NAME
};

/// A parsed `SandboxOptions::image`.
struct source {
  source_kind kind = source_kind::directory;
  std::string path;    ///< directory, layout or archive (absolute)
  std::string ref;     ///< `:REF` of oci / oci-archive / docker-archive, or empty
  registry_ref remote; ///< kind == registry
};

namespace detail {

[[nodiscard]] inline bool is_lower_alnum(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/// `sha256:` and 64 lower-case hex digits (the only algorithm the store takes).
[[nodiscard]] inline bool is_sha256_digest(std::string_view d) noexcept {
  if (d.size() != 71 || d.substr(0, 7) != "sha256:") return false;
  for (char c : d.substr(7))
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

/// One path component of a repository: lower-case alphanumerics joined by `.`, `_`, `__`, `-`+.
[[nodiscard]] inline bool valid_path_component(std::string_view c) noexcept {
  if (c.empty() || !is_lower_alnum(c.front()) || !is_lower_alnum(c.back())) return false;
  for (std::size_t i = 0; i < c.size(); ++i) {
    char ch = c[i];
    if (is_lower_alnum(ch)) continue;
    if (ch == '.' || ch == '-') {
      if (ch == '.' && !is_lower_alnum(c[i + 1])) return false;
      continue;
    }
    if (ch == '_') {
      if (i + 1 < c.size() && c[i + 1] == '_') ++i;
      if (!is_lower_alnum(c[i + 1])) return false;
      continue;
    }
    return false;
  }
  return true;
}

[[nodiscard]] inline bool valid_tag(std::string_view t) noexcept {
  if (t.empty() || t.size() > 128 || t.front() == '.' || t.front() == '-') return false;
  for (char c : t)
    if (!(is_lower_alnum(c) || (c >= 'A' && c <= 'Z') || c == '_' || c == '.' || c == '-'))
      return false;
  return true;
}

/// A registry host: a domain or IPv4 name with an optional port (`localhost`, `a.b`, `h:5000`).
[[nodiscard]] inline bool valid_host(std::string_view h) noexcept {
  auto colon = h.rfind(':');
  std::string_view name = h.substr(0, colon);
  if (colon != std::string_view::npos) {
    std::string_view port = h.substr(colon + 1);
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != port.npos)
      return false;
  }
  if (name.empty() || name.size() > 253) return false;
  for (char c : name)
    if (!(is_lower_alnum(c) || (c >= 'A' && c <= 'Z') || c == '.' || c == '-')) return false;
  return name.front() != '.' && name.front() != '-';
}

[[nodiscard]] inline auto bad_ref(std::string_view name, std::string_view why) {
  return fail(errc::validation, "image " + sandbox::detail::quoted_excerpt(name, 256) +
                                    " is not a valid image reference: " + std::string(why));
}

} // namespace detail

/// Parses a registry name as Docker does: the first component is a registry when it holds a
/// `.` or `:` or is `localhost`; otherwise the registry is `docker.io`, where one-component
/// names live under `library/`. No tag and no digest means `:latest`.
/// **Errors:** validation, saying which part is wrong.
[[nodiscard]] inline result<registry_ref> parse_registry_ref(std::string_view name) noexcept {
  registry_ref r;
  std::string_view rest = name;
  if (name.empty()) return detail::bad_ref(name, "it is empty");
  if (name.size() > 1024) return detail::bad_ref(name.substr(0, 64), "longer than 1024 bytes");
  if (auto at = rest.find('@'); at != std::string_view::npos) {
    r.digest = std::string(rest.substr(at + 1));
    rest = rest.substr(0, at);
    if (!detail::is_sha256_digest(r.digest))
      return detail::bad_ref(name, "the digest must be sha256: and 64 lower-case hex digits");
  }
  // The tag is after the last ':' that comes after the last '/' (a port's ':' comes before).
  auto slash = rest.rfind('/');
  auto colon = rest.rfind(':');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    r.tag = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
    if (!detail::valid_tag(r.tag))
      return detail::bad_ref(name, "the tag " + sandbox::detail::quoted_excerpt(r.tag, 256) +
                                       " may hold only letters, digits, '_', '.', '-' (at most "
                                       "128, not starting with '.' or '-')");
  }
  auto first = rest.find('/');
  std::string_view head = rest.substr(0, first);
  if (first != std::string_view::npos &&
      (head.find_first_of(".:") != std::string_view::npos || head == "localhost")) {
    if (!detail::valid_host(head))
      return detail::bad_ref(name, "the registry " + sandbox::detail::quoted_excerpt(head, 256) +
                                       " is not a host[:port]");
    r.registry = std::string(head);
    rest = rest.substr(first + 1);
  } else {
    r.registry = "docker.io";
  }
  if (r.registry == "index.docker.io" || r.registry == "registry-1.docker.io")
    r.registry = "docker.io";
  if (rest.empty()) return detail::bad_ref(name, "the repository name is missing");
  for (std::size_t b = 0;;) {
    auto e = rest.find('/', b);
    if (!detail::valid_path_component(rest.substr(b, e - b)))
      return detail::bad_ref(name, "the repository " + sandbox::detail::quoted_excerpt(rest, 256) +
                                       " must be lower-case components (a-z 0-9, joined by "
                                       "'.', '_' or '-') separated by '/'");
    if (e == std::string_view::npos) break;
    b = e + 1;
  }
  r.repository = std::string(rest);
  if (r.registry == "docker.io" && r.repository.find('/') == std::string::npos)
    r.repository = "library/" + r.repository;
  if (r.tag.empty() && r.digest.empty()) r.tag = "latest";
  return r;
}

/// Tells the forms of `SandboxOptions::image` apart. A value starting with `/` is a directory
/// (as it always was); `oci:`, `oci-archive:`, `docker-archive:` and `docker://` name their
/// transport; anything else is a registry name.
/// **Errors:** validation (a malformed name, a relative path).
[[nodiscard]] inline result<source> parse_source(std::string_view image) noexcept {
  source s;
  auto with_path = [&](source_kind k, std::string_view rest,
                       std::string_view what) -> result<source> {
    s.kind = k;
    // DIR[:REF]: a path may hold no ':' here (overlayfs could not take it anyway).
    auto colon = rest.find(':');
    s.path = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) s.ref = std::string(rest.substr(colon + 1));
    if (s.path.empty() || s.path[0] != '/')
      return fail(errc::validation, "image " + sandbox::detail::quoted_excerpt(image, 256) +
                                        ": the " + std::string(what) + " must be an absolute path");
    if (colon != std::string_view::npos && s.ref.empty())
      return fail(errc::validation, "image " + sandbox::detail::quoted_excerpt(image, 256) +
                                        ": nothing after ':' (leave the ':' out for the default)");
    return s;
  };
  if (image.empty()) return fail(errc::validation, "image is empty");
  if (image[0] == '/') {
    s.path = std::string(image);
    return s;
  }
  if (image.substr(0, 4) == "oci:")
    return with_path(source_kind::oci_layout, image.substr(4), "layout directory");
  if (image.substr(0, 12) == "oci-archive:")
    return with_path(source_kind::oci_archive, image.substr(12), "archive");
  if (image.substr(0, 15) == "docker-archive:")
    return with_path(source_kind::docker_archive, image.substr(15), "archive");
  std::string_view name = image;
  if (name.substr(0, 9) == "docker://") name = name.substr(9);
  if (name.substr(0, 2) == "./" || name.substr(0, 3) == "../" || name == "." || name == "..")
    return fail(errc::validation, "image " + sandbox::detail::quoted_excerpt(image, 256) +
                                      ": a root filesystem directory must be an absolute path");
  s.kind = source_kind::registry;
  SANDBOX_TRY(r, parse_registry_ref(name));
  s.remote = std::move(r);
  return s;
}

} // namespace sandbox::image
