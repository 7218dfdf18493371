// SPDX-License-Identifier: MIT
// The OCI / Docker documents an image is made of (index or manifest list, manifest, config,
// `docker save`'s manifest.json), read with simdjson. Everything in them is untrusted: a field
// of the wrong type or a malformed digest is an error that names the document.
#pragma once

#include <sandbox/image/reference.hpp>
#include <sandbox/result.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

namespace sandbox::image::detail {

/// A reference from one document to a blob.
struct descriptor {
  std::string media_type;
  std::string digest;
  std::uint64_t size = 0;
  std::string os, architecture, variant; ///< an index entry's platform
  std::string ref_name;                  ///< an index entry's org.opencontainers.image.ref.name
};

/// A manifest list / image index, or a manifest.
struct document {
  bool is_index = false;
  std::vector<descriptor> manifests; ///< is_index
  descriptor config;                 ///< !is_index
  std::vector<descriptor> layers;    ///< !is_index, bottom first
};

struct config {
  std::vector<std::string> env, entrypoint, cmd;
  std::string working_dir, user, os, architecture;
};

/// The platform images are picked for: this build's architecture, as OCI names it.
[[nodiscard]] constexpr std::string_view host_architecture() noexcept {
#if defined(__x86_64__)
  return "amd64";
#elif defined(__aarch64__)
  return "arm64";
#elif defined(__arm__)
  return "arm";
#elif defined(__i386__)
  return "386";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return "ppc64le";
#elif defined(__s390x__)
  return "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
  return "riscv64";
#else
  return "unknown";
#endif
}

namespace json = simdjson::dom;

[[nodiscard]] inline auto bad_doc(std::string_view what, std::string_view why) {
  return fail(errc::protocol, std::string(what) + ": " + std::string(why));
}

/// A string member into `out` ("" when absent or null); an error when present with another type.
[[nodiscard]] inline result<void> read_string(json::object o, std::string_view key,
                                              std::string_view what, std::string& out) {
  out.clear();
  json::element v;
  if (o.at_key(key).get(v) || v.is_null()) return success();
  std::string_view s;
  if (v.get(s)) return bad_doc(what, "\"" + std::string(key) + "\" is not a string");
  out = std::string(s);
  return success();
}

/// An array of strings into `out` (empty when absent or null).
[[nodiscard]] inline result<void> read_strings(json::object o, std::string_view key,
                                               std::string_view what,
                                               std::vector<std::string>& out) {
  out.clear();
  json::element v;
  if (o.at_key(key).get(v) || v.is_null()) return success();
  json::array a;
  if (v.get(a)) return bad_doc(what, "\"" + std::string(key) + "\" is not an array");
  for (json::element x : a) {
    std::string_view s;
    if (x.get(s)) return bad_doc(what, "\"" + std::string(key) + "\" holds a non-string");
    out.emplace_back(s);
  }
  return success();
}

[[nodiscard]] inline result<descriptor> read_descriptor(json::element e, std::string_view what) {
  json::object o;
  if (e.get(o)) return bad_doc(what, "a descriptor is not an object");
  descriptor d;
  SANDBOX_TRYV(read_string(o, "mediaType", what, d.media_type));
  SANDBOX_TRYV(read_string(o, "digest", what, d.digest));
  if (!is_sha256_digest(d.digest))
    return bad_doc(what, "digest " + sandbox::detail::shell_quote(d.digest.substr(0, 80)) +
                             " is not sha256: and 64 lower-case hex digits");
  json::element sz;
  if (!o.at_key("size").get(sz)) {
    std::uint64_t n = 0;
    if (sz.get(n)) return bad_doc(what, "\"size\" is not a non-negative integer");
    d.size = n;
  }
  json::object p;
  if (!o.at_key("platform").get(p)) {
    SANDBOX_TRYV(read_string(p, "os", what, d.os));
    SANDBOX_TRYV(read_string(p, "architecture", what, d.architecture));
    SANDBOX_TRYV(read_string(p, "variant", what, d.variant));
  }
  json::object ann;
  if (!o.at_key("annotations").get(ann)) {
    SANDBOX_TRYV(read_string(ann, "org.opencontainers.image.ref.name", what, d.ref_name));
  }
  return d;
}

/// The document's root element (in `p`'s memory).
[[nodiscard]] inline result<json::element> parse_root(json::parser& p, std::string_view text,
                                                      std::string_view what) {
  json::element doc;
  if (auto err = p.parse(text.data(), text.size()).get(doc))
    return bad_doc(what, std::string("not JSON (") + simdjson::error_message(err) + ")");
  return doc;
}

[[nodiscard]] inline result<json::object> parse_object(json::parser& p, std::string_view text,
                                                       std::string_view what) {
  SANDBOX_TRY(doc, parse_root(p, text, what));
  json::object o;
  if (doc.get(o)) return bad_doc(what, "not a JSON object");
  return o;
}

/// An index / manifest list or a manifest (OCI or Docker v2 schema 2; schema 1 is refused).
[[nodiscard]] inline result<document> parse_document(std::string_view text, std::string_view what) {
  json::parser p;
  SANDBOX_TRY(o, parse_object(p, text, what));
  document d;
  json::element v;
  std::int64_t schema = 0;
  if (!o.at_key("schemaVersion").get(v) && !v.get(schema) && schema == 1)
    return fail(errc::unsupported, std::string(what) +
                                       ": Docker schema 1 manifests are not supported (long "
                                       "deprecated; push the image again with a current tool)");
  if (!o.at_key("manifests").get(v)) {
    json::array a;
    if (v.get(a)) return bad_doc(what, "\"manifests\" is not an array");
    d.is_index = true;
    for (json::element e : a) {
      SANDBOX_TRY(m, read_descriptor(e, what));
      d.manifests.push_back(std::move(m));
    }
    return d;
  }
  if (o.at_key("config").get(v)) return bad_doc(what, "neither an index nor a manifest");
  SANDBOX_TRY(c, read_descriptor(v, what));
  d.config = std::move(c);
  json::array layers;
  if (o.at_key("layers").get(layers)) return bad_doc(what, "a manifest without \"layers\"");
  for (json::element e : layers) {
    SANDBOX_TRY(l, read_descriptor(e, what));
    d.layers.push_back(std::move(l));
  }
  if (d.layers.size() > 127)
    return bad_doc(what, "more than 127 layers (the limit Docker and overlayfs share)");
  return d;
}

/// The manifest of an index this host runs: linux on this architecture (any variant), or the
/// only entry of an index without platforms. `ref`: pick by ref.name annotation (OCI layouts).
[[nodiscard]] inline result<descriptor> pick_manifest(const document& index, std::string_view ref,
                                                      std::string_view what) {
  const descriptor* found = nullptr;
  for (const auto& m : index.manifests) {
    if (!ref.empty() && m.ref_name != ref) continue;
    if (!m.os.empty() && (m.os != "linux" || m.architecture != host_architecture())) continue;
    found = &m;
    break;
  }
  if (found) return *found;
  if (!ref.empty())
    return fail(errc::validation, std::string(what) + ": no image named " +
                                      sandbox::detail::shell_quote(ref) + " in its index");
  std::string have;
  for (const auto& m : index.manifests)
    have += (have.empty() ? "" : ", ") + m.os + "/" + m.architecture;
  return fail(errc::validation, std::string(what) + ": no image for linux/" +
                                    std::string(host_architecture()) +
                                    " (it has: " + (have.empty() ? "none" : have) + ")");
}

[[nodiscard]] inline result<config> parse_config(std::string_view text, std::string_view what) {
  json::parser p;
  SANDBOX_TRY(o, parse_object(p, text, what));
  config c;
  SANDBOX_TRYV(read_string(o, "os", what, c.os));
  SANDBOX_TRYV(read_string(o, "architecture", what, c.architecture));
  json::object cfg;
  if (o.at_key("config").get(cfg)) return c; // an image with no runtime config
  SANDBOX_TRYV(read_strings(cfg, "Env", what, c.env));
  SANDBOX_TRYV(read_strings(cfg, "Entrypoint", what, c.entrypoint));
  SANDBOX_TRYV(read_strings(cfg, "Cmd", what, c.cmd));
  SANDBOX_TRYV(read_string(cfg, "WorkingDir", what, c.working_dir));
  SANDBOX_TRYV(read_string(cfg, "User", what, c.user));
  return c;
}

/// One image of `docker save`'s manifest.json: paths inside the archive.
struct saved_image {
  std::string config;
  std::vector<std::string> layers;
  std::vector<std::string> tags;
};

[[nodiscard]] inline result<std::vector<saved_image>> parse_saved(std::string_view text,
                                                                  std::string_view what) {
  json::parser p;
  SANDBOX_TRY(doc, parse_root(p, text, what));
  json::array a;
  if (doc.get(a)) return bad_doc(what, "not a JSON array");
  std::vector<saved_image> out;
  for (json::element e : a) {
    json::object o;
    if (e.get(o)) return bad_doc(what, "an entry is not an object");
    saved_image s;
    SANDBOX_TRYV(read_string(o, "Config", what, s.config));
    SANDBOX_TRYV(read_strings(o, "Layers", what, s.layers));
    SANDBOX_TRYV(read_strings(o, "RepoTags", what, s.tags));
    if (s.config.empty()) return bad_doc(what, "an entry without \"Config\"");
    out.push_back(std::move(s));
  }
  return out;
}

} // namespace sandbox::image::detail
