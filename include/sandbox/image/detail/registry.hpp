// SPDX-License-Identifier: MIT
// Pulling from a registry with the OCI distribution API over cpp-httplib: manifests (an index
// resolved to this host's platform), blobs streamed to the store while hashed, resumed with a
// Range request after an interruption, verified before they are kept. Authentication as Docker
// does it: a 401's WWW-Authenticate challenge, Bearer (a token from the realm, anonymously or
// with credentials) or Basic; credentials from image_options or Docker's config.json.
#pragma once

#include <sandbox/detail/retry_loop.hpp>
#include <sandbox/detail/text.hpp>
#include <sandbox/detail/unique_fd.hpp>
#include <sandbox/detail/validate.hpp>
#include <sandbox/image/detail/manifest.hpp>
#include <sandbox/image/store.hpp>
#include <sandbox/policy/retry.hpp>
#include <sandbox/transport/http/base64.hpp>
#include <sandbox/transport/http/endpoint.hpp>

#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <httplib.h>
#include <simdjson.h>

namespace sandbox::image::detail {

/// The key="value" parameters of a WWW-Authenticate challenge, and its scheme (lower-cased).
struct challenge {
  std::string scheme;
  std::map<std::string, std::string> params;
};

[[nodiscard]] inline challenge parse_challenge(std::string_view h) {
  challenge c;
  std::size_t i = 0;
  while (i < h.size() && h[i] != ' ')
    c.scheme += static_cast<char>(std::tolower(static_cast<unsigned char>(h[i++])));
  while (i < h.size()) {
    while (i < h.size() && (h[i] == ' ' || h[i] == ','))
      ++i;
    std::size_t k = i;
    while (i < h.size() && h[i] != '=')
      ++i;
    std::string key(h.substr(k, i - k));
    for (auto& ch : key)
      ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (i++ >= h.size()) break;
    std::string value;
    if (i < h.size() && h[i] == '"') {
      for (++i; i < h.size() && h[i] != '"'; ++i) {
        if (h[i] == '\\' && i + 1 < h.size()) ++i;
        value += h[i];
      }
      ++i;
    } else {
      while (i < h.size() && h[i] != ',')
        value += h[i++];
    }
    c.params[key] = value;
  }
  return c;
}

/// Where a request goes: scheme, host and port, each checked (a registry's answer names realms
/// and redirect targets: nothing of them reaches cpp-httplib unparsed).
struct site {
  bool tls = true;
  std::string host;
  int port = 443;
  [[nodiscard]] std::string origin() const {
    std::string o = (tls ? "https://" : "http://") + host;
    if (port != (tls ? 443 : 80)) o += ":" + std::to_string(port);
    return o;
  }
  [[nodiscard]] std::string host_port() const { return host + ":" + std::to_string(port); }
  /// For a server's pulls: the address `host` was checked at, connected to instead of a second
  /// lookup (which could answer otherwise). Empty: resolve as usual.
  std::string pinned;
};

/// `host[:port]` into `s` (scheme already set); false when either is malformed.
[[nodiscard]] inline bool parse_host_port(std::string_view hp, site& s) noexcept {
  auto colon = hp.rfind(':');
  std::string_view host = hp.substr(0, colon);
  if (colon != std::string_view::npos) {
    std::string_view p = hp.substr(colon + 1);
    if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != p.npos) return false;
    int port = 0;
    for (char c : p)
      port = port * 10 + (c - '0');
    if (port < 1 || port > 65535) return false;
    s.port = port;
  } else {
    s.port = s.tls ? 443 : 80;
  }
  if (host.empty() || host.size() > 253 || host.front() == '.' || host.front() == '-') return false;
  // A number the resolver would read as an address (127.1, 0x7f000001, 2130706433,
  // 127.0.0.01) only in its canonical dotted form: the checks of local hosts read that form.
  in_addr numeric{};
  if (::inet_aton(std::string(host).c_str(), &numeric) != 0 && !sandbox::detail::parse_cidr(host))
    return false;
  for (char c : host)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '-'))
      return false;
  s.host = std::string(host);
  return true;
}

/// An absolute http(s) URL: its site, and its path with query (`/` when none).
[[nodiscard]] inline std::optional<std::pair<site, std::string>> parse_url(std::string_view url) {
  site s;
  if (url.substr(0, 8) == "https://") {
    url.remove_prefix(8);
  } else if (url.substr(0, 7) == "http://") {
    s.tls = false;
    url.remove_prefix(7);
  } else {
    return std::nullopt;
  }
  auto slash = url.find('/');
  if (!parse_host_port(url.substr(0, slash), s)) return std::nullopt;
  std::string path = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  for (char c : path)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return std::nullopt;
  return std::pair{std::move(s), std::move(path)};
}

/// An IPv4 address (host order) in a loopback, private, link-local, shared or reserved range.
[[nodiscard]] inline bool is_local_ipv4(std::uint32_t addr) noexcept {
  for (const char* r : sandbox::detail::special_ranges)
    if (sandbox::detail::parse_cidr(r)->contains(addr)) return true;
  return false;
}

/// `localhost` (any case, a trailing dot too), or an IPv4 literal in a special range: local
/// by its text alone, without asking a resolver.
[[nodiscard]] inline bool is_local_host(std::string_view host) noexcept {
  std::string h(host);
  for (auto& c : h)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  while (!h.empty() && h.back() == '.')
    h.pop_back();
  if (h == "localhost" || (h.size() > 10 && h.substr(h.size() - 10) == ".localhost")) return true;
  auto ip = sandbox::detail::parse_cidr(h);
  return ip && is_local_ipv4(ip->addr);
}

/// The address to connect to for a host whose every address is public, as numeric text; ""
/// when one of them is local (loopback, private, link-local, … for IPv4; loopback, unique
/// local, link-local, multicast, unspecified or a local IPv4 mapped, for IPv6).
/// **Errors:** unavailable (the name does not resolve now).
[[nodiscard]] inline result<std::string> public_address(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res); rc != 0)
    return fail(errc::unavailable, "cannot resolve " + sandbox::detail::quoted_excerpt(host) +
                                       ": " + ::gai_strerror(rc));
  std::string first;
  bool local = false;
  for (addrinfo* a = res; a && !local; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    if (a->ai_family == AF_INET) {
      auto* in = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
      local = is_local_ipv4(ntohl(in->sin_addr.s_addr));
      ::inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    } else if (a->ai_family == AF_INET6) {
      const in6_addr& v6 = reinterpret_cast<const sockaddr_in6*>(a->ai_addr)->sin6_addr;
      std::uint32_t mapped = 0;
      std::memcpy(&mapped, v6.s6_addr + 12, 4);
      local = IN6_IS_ADDR_LOOPBACK(&v6) || IN6_IS_ADDR_UNSPECIFIED(&v6) ||
              IN6_IS_ADDR_LINKLOCAL(&v6) || IN6_IS_ADDR_SITELOCAL(&v6) ||
              IN6_IS_ADDR_MULTICAST(&v6) || (v6.s6_addr[0] & 0xfe) == 0xfc ||
              ((IN6_IS_ADDR_V4MAPPED(&v6) || IN6_IS_ADDR_V4COMPAT(&v6)) &&
               is_local_ipv4(ntohl(mapped)));
      ::inet_ntop(AF_INET6, &v6, text, sizeof text);
    }
    if (first.empty()) first = text;
  }
  ::freeaddrinfo(res);
  return local ? std::string() : first;
}

/// Credentials for `host` from Docker's config.json (`auths`), if it names them.
[[nodiscard]] inline std::optional<credentials> docker_config_credentials(std::string_view host) {
  std::string path;
  if (const char* d = std::getenv("DOCKER_CONFIG"); d && *d)
    path = std::string(d) + "/config.json";
  else if (const char* h = std::getenv("HOME"); h && *h)
    path = std::string(h) + "/.docker/config.json";
  else
    return std::nullopt;
  auto text = store::read_file(path, 1u << 20, path);
  if (!text) return std::nullopt;
  simdjson::dom::parser p;
  simdjson::dom::object auths;
  if (p.parse(text.value()).at_key("auths").get(auths)) return std::nullopt;
  std::vector<std::string> keys{std::string(host), "https://" + std::string(host),
                                "http://" + std::string(host)};
  if (host == "docker.io")
    keys.insert(keys.end(),
                {"https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io"});
  for (const auto& k : keys) {
    simdjson::dom::object entry;
    if (auths.at_key(k).get(entry)) continue;
    std::string_view auth, user, pass;
    if (!entry.at_key("auth").get(auth) && !auth.empty()) {
      auto decoded = http::base64_decode(auth);
      if (!decoded) continue;
      auto colon = decoded.value().find(':');
      if (colon == std::string::npos) continue;
      return credentials{decoded.value().substr(0, colon), decoded.value().substr(colon + 1)};
    }
    if (!entry.at_key("username").get(user) && !entry.at_key("password").get(pass))
      return credentials{std::string(user), std::string(pass)};
  }
  return std::nullopt;
}

/// A client of one repository of one registry.
class registry_client {
  /// `op` under exponential backoff, within image_options::retry_for.
  template <class Op>
  [[nodiscard]] auto retrying(Op&& op) const {
    sandbox::detail::retry_bounds b;
    b.deadline = std::chrono::steady_clock::now() + o_.retry_for;
    return sandbox::detail::with_retry(exponential_backoff<>{}, std::forward<Op>(op), b);
  }

public:
  registry_client(const registry_ref& r, const image_options& o, const store& s, std::string image)
      : ref_(r), o_(o), store_(s), image_(std::move(image)) {
    host_ = r.registry == "docker.io" ? "registry-1.docker.io" : r.registry;
    registry_.tls = !plain_http(host_);
    registry_ok_ = parse_host_port(host_, registry_);
    if (auto it = o.auth.find(r.registry); it != o.auth.end())
      creds_ = it->second;
    else
      creds_ = docker_config_credentials(r.registry);
  }

  /// The manifest `reference` (a tag or digest) of this repository, stored; an index is
  /// resolved to this host's platform. Returns the manifest's digest.
  /// **Errors:** not_found (no such image), authentication, protocol (a digest mismatch, a
  /// malformed document), unavailable / timeout (after retries), unsupported.
  [[nodiscard]] result<std::string> manifest(std::string reference) {
    for (int depth = 0; depth < 2; ++depth) {
      SANDBOX_TRY(body, small("/manifests/" + reference, manifest_types, 4u << 20));
      std::string what = "image " + image_ + ": manifest " + reference;
      std::string want = is_sha256_digest(reference) ? reference : std::string();
      SANDBOX_TRY(digest, store_.put_bytes(body, want, what));
      SANDBOX_TRY(doc, parse_document(body, what));
      if (!doc.is_index) return digest;
      SANDBOX_TRY(m, pick_manifest(doc, "", what));
      reference = m.digest;
    }
    return fail(errc::protocol, "image " + image_ + ": an index points at another index");
  }

  /// Fetches blob `digest` into the store unless it is there. Resumes a download left in tmp/
  /// by an interrupted pull. The caller holds no lock; this takes the blob's fetch lock.
  [[nodiscard]] result<void> blob(const std::string& digest, std::uint64_t size) {
    if (store_.has_blob(digest)) {
      report(digest, size, size, true);
      return success();
    }
    if (size > o_.max_layer_bytes)
      return fail(errc::validation, "image " + image_ + ": blob " + digest + " is " +
                                        std::to_string(size) + " bytes, more than max_layer_bytes");
    SANDBOX_TRY(fetching, store_.lock(store::hex(digest) + ".pull", LOCK_EX));
    if (store_.has_blob(digest)) {
      report(digest, size, size, true);
      return success();
    }
    auto r = retrying([&] { return download(digest, size); });
    (void)fetching;
    return r;
  }

private:
  static constexpr const char* manifest_types =
      "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
      "application/vnd.docker.distribution.manifest.list.v2+json, "
      "application/vnd.docker.distribution.manifest.v2+json";

  void report(const std::string& digest, std::uint64_t done, std::uint64_t total,
              bool cached) const {
    if (o_.on_progress) o_.on_progress(pull_progress{image_, digest, done, total, cached});
  }

  [[nodiscard]] bool plain_http(std::string_view host) const {
    std::string_view name = host;
    if (auto c = name.rfind(':'); c != std::string_view::npos) name = name.substr(0, c);
    if (http::detail::is_loopback_host(name)) return true;
    for (const auto& h : o_.insecure_registries)
      if (h == host) return true;
    return false;
  }

  /// Whether this client may speak to `s`: plain http only to loopback or listed hosts;
  /// local hosts not at all for a server unless listed.
  /// For a server, a name is resolved here, refused if any address is local, and pinned to the
  /// address checked.
  [[nodiscard]] result<void> may_reach(site& s, std::string_view what) const {
    if (!s.tls && !plain_http(s.host_port()) && !plain_http(s.host))
      return fail(errc::protocol, "image " + image_ + ": " + std::string(what) + " " + s.origin() +
                                      " is plain http to a host that is not loopback (list it in "
                                      "image_options::insecure_registries)");
    if (!o_.public_registries_only) return success();
    for (const auto& h : o_.local_registries)
      if (h == s.host_port() || h == s.host) return success();
    std::string address;
    if (!is_local_host(s.host)) {
      auto resolved = public_address(s.host);
      if (!resolved)
        return fail(errc::unavailable,
                    "image " + image_ + ": " + std::string(what) + " " + resolved.error().message);
      address = std::move(resolved).value();
    }
    if (address.empty())
      return fail(errc::validation, "image " + image_ + ": " + std::string(what) + " " +
                                        s.origin() +
                                        " is a local address, which this server does not pull "
                                        "from (its operator can list it)");
    s.pinned = std::move(address);
    return success();
  }

  [[nodiscard]] result<std::unique_ptr<httplib::ClientImpl>> client_for(const site& s) const {
    std::unique_ptr<httplib::ClientImpl> c;
    if (s.tls) {
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
      auto ssl = std::make_unique<httplib::SSLClient>(s.host, s.port);
      if (!o_.ca_cert_path.empty()) ssl->set_ca_cert_path(o_.ca_cert_path.c_str());
      ssl->enable_server_certificate_verification(true);
      c = std::move(ssl);
#else
      return fail(errc::unsupported, "image " + image_ + ": " + s.origin() +
                                         ": cpp-httplib was built without TLS support");
#endif
    } else {
      c = std::make_unique<httplib::ClientImpl>(s.host, s.port);
    }
    if (!s.pinned.empty()) c->set_hostname_addr_map({{s.host, s.pinned}});
    c->set_tcp_nodelay(true);
    c->set_follow_location(false); // redirects are followed here, without credentials
    auto rt = o_.read_timeout.count();
    c->set_read_timeout(static_cast<time_t>(rt / 1000), static_cast<time_t>((rt % 1000) * 1000));
    c->set_connection_timeout(10, 0);
    return c;
  }

  [[nodiscard]] std::string origin() const { return registry_.origin(); }
  [[nodiscard]] std::string where(std::string_view path) const {
    return "image " + image_ + ": GET " + origin() + "/v2/" + ref_.repository + std::string(path);
  }

  /// An error for a response that is not a success.
  [[nodiscard]] error status_error(int status, std::string_view path, std::string_view body) const {
    std::string w = where(path) + ": HTTP " + std::to_string(status);
    // Only the distribution API's error codes (MANIFEST_UNKNOWN, DENIED, …): the rest of a body
    // is not repeated (a server's pull must not relay what some local service answered).
    simdjson::dom::parser p;
    simdjson::dom::array errors;
    std::string codes;
    if (!body.empty() && !p.parse(body.data(), body.size()).at_key("errors").get(errors))
      for (simdjson::dom::element e : errors) {
        std::string_view code;
        if (e.at_key("code").get(code) || code.size() > 40 ||
            code.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != code.npos)
          continue;
        codes += (codes.empty() ? "" : ", ") + std::string(code);
      }
    if (!codes.empty()) w += " (" + codes + ")";
    errc c = status == 401 || status == 403 ? errc::authentication
             : status == 404                ? errc::not_found
             : status == 429                ? errc::resource_exhausted
             : status >= 500                ? errc::unavailable
                                            : errc::protocol;
    if (status == 401 && !creds_)
      w += "; no credentials for " + ref_.registry +
           " (image_options::auth, or `docker login` into ~/.docker/config.json)";
    return {c, std::move(w)};
  }

  [[nodiscard]] error transport_error(httplib::Error e, std::string_view path) const {
    errc c = e == httplib::Error::Read ? errc::timeout : errc::unavailable;
    if (e == httplib::Error::SSLServerVerification || e == httplib::Error::SSLConnection)
      c = errc::transport;
    return {c, where(path) + ": " + httplib::to_string(e)};
  }

  /// Answers a 401's challenge: the Authorization header to send from now on.
  [[nodiscard]] result<void> authenticate(std::string_view header, std::string_view path) {
    challenge c = parse_challenge(header);
    if (c.scheme == "basic") {
      if (!creds_)
        return fail(errc::authentication, where(path) +
                                              ": the registry asks for credentials and "
                                              "none are known for " +
                                              ref_.registry +
                                              " (image_options::auth, or `docker login`)");
      authorization_ =
          httplib::make_basic_authentication_header(creds_->username, creds_->password).second;
      return success();
    }
    if (c.scheme != "bearer" || c.params["realm"].empty())
      return fail(errc::authentication,
                  where(path) + ": unsupported authentication challenge " +
                      sandbox::detail::shell_quote(std::string(header.substr(0, 200))));
    auto realm = c.params["realm"];
    auto parsed = parse_url(realm);
    if (!parsed)
      return fail(errc::protocol, where(path) + ": token realm " +
                                      sandbox::detail::quoted_excerpt(realm) +
                                      " is not an http(s) URL with a valid host and port");
    auto [realm_site, realm_path] = std::move(*parsed);
    SANDBOX_TRYV(may_reach(realm_site, "token realm"));
    const std::string host = realm_site.host_port();
    std::string scope =
        c.params.count("scope") ? c.params["scope"] : "repository:" + ref_.repository + ":pull";
    realm_path += realm_path.find('?') == std::string::npos ? "?" : "&";
    realm_path += "scope=" + httplib::detail::encode_query_param(scope);
    if (c.params.count("service"))
      realm_path += "&service=" + httplib::detail::encode_query_param(c.params["service"]);
    SANDBOX_TRY(cli, client_for(realm_site));
    httplib::Headers h;
    if (creds_)
      h.insert(httplib::make_basic_authentication_header(creds_->username, creds_->password));
    std::string token_body;
    bool token_too_big = false;
    auto res = cli->Get(realm_path, h, [&](const char* d, std::size_t n) {
      if (token_body.size() + n > (64u << 10)) return !(token_too_big = true);
      token_body.append(d, n);
      return true;
    });
    if (token_too_big)
      return fail(errc::protocol, where(path) + ": the token response is larger than 64 KiB");
    if (!res)
      return fail(errc::unavailable, where(path) + ": token request to " + host + ": " +
                                         httplib::to_string(res.error()));
    if (res->status != 200)
      return fail(errc::authentication, where(path) + ": token request to " + host + ": HTTP " +
                                            std::to_string(res->status) +
                                            (creds_ ? " (credentials refused?)" : ""));
    simdjson::dom::parser p;
    simdjson::dom::element doc;
    std::string_view token;
    if (p.parse(token_body).get(doc) ||
        (doc["token"].get(token) && doc["access_token"].get(token)) || token.empty())
      return fail(errc::protocol, where(path) + ": the token response holds no token");
    authorization_ = "Bearer " + std::string(token);
    return success();
  }

  /// A small document (manifest) of the repository, authenticating and retrying as needed.
  [[nodiscard]] result<std::string> small(const std::string& path, const char* accept,
                                          std::size_t max) {
    return retrying([&]() -> result<std::string> {
      for (int attempt = 0;; ++attempt) {
        if (!registry_ok_)
          return fail(errc::validation, "image " + image_ + ": registry " +
                                            sandbox::detail::quoted_excerpt(host_) +
                                            " is not a valid host[:port]");
        SANDBOX_TRYV(may_reach(registry_, "registry"));
        SANDBOX_TRY(cli, client_for(registry_));
        httplib::Headers h{{"Accept", accept}};
        if (!authorization_.empty()) h.emplace("Authorization", authorization_);
        std::string body;
        bool too_big = false;
        auto res = cli->Get("/v2/" + ref_.repository + path, h, [&](const char* d, std::size_t n) {
          if (body.size() + n > max) return !(too_big = true);
          body.append(d, n);
          return true;
        });
        if (too_big)
          return fail(errc::protocol,
                      where(path) + ": larger than " + std::to_string(max) + " bytes");
        if (!res) return fail(transport_error(res.error(), path));
        if (res->status == 401 && attempt == 0 && res->has_header("WWW-Authenticate")) {
          SANDBOX_TRYV(authenticate(res->get_header_value("WWW-Authenticate"), path));
          continue;
        }
        if (res->status != 200) return fail(status_error(res->status, path, body));
        return body;
      }
    });
  }

  /// One attempt at a blob: resumes what tmp/ holds, hashes as it writes, keeps it if verified.
  [[nodiscard]] result<void> download(const std::string& digest, std::uint64_t size) {
    const std::string path = "/blobs/" + digest;
    const std::string tmp = store_.tmp_path(store::hex(digest) + ".partial");
    sandbox::detail::unique_fd fd(::open(tmp.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!fd)
      return fail(errc::file_io, "image store: " + tmp + ": " + sandbox::detail::errno_text(errno));
    // What an interrupted pull left: hashed again (the hash state is not kept), then resumed.
    sha256 h;
    std::uint64_t have = 0;
    {
      std::vector<char> buf(1 << 20);
      for (;;) {
        ssize_t n = ::read(fd.get(), buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        h.update(buf.data(), static_cast<std::size_t>(n));
        have += static_cast<std::uint64_t>(n);
      }
    }
    if (size && have > size) { // not what this blob is: start over
      (void)::ftruncate(fd.get(), 0);
      (void)::lseek(fd.get(), 0, SEEK_SET);
      h = sha256();
      have = 0;
    }
    const std::uint64_t resumed_from = have;
    const std::uint64_t limit = size ? size : o_.max_layer_bytes; // a size is not optional
    if (!registry_ok_)
      return fail(errc::validation, "image " + image_ + ": registry " +
                                        sandbox::detail::quoted_excerpt(host_) +
                                        " is not a valid host[:port]");
    SANDBOX_TRYV(may_reach(registry_, "registry"));
    site at = registry_;
    std::string target = "/v2/" + ref_.repository + path;
    bool send_auth = true;
    for (int hops = 0;; ++hops) {
      SANDBOX_TRY(cli, client_for(at));
      httplib::Headers hd;
      if (send_auth && !authorization_.empty()) hd.emplace("Authorization", authorization_);
      if (have) hd.emplace("Range", "bytes=" + std::to_string(have) + "-");
      int status = 0;
      std::string location, challenge_header, err_body;
      bool write_failed = false, too_big = false;
      std::uint64_t total = size;
      auto res = cli->Get(
          target, hd,
          [&](const httplib::Response& r) {
            status = r.status;
            location = r.get_header_value("Location");
            challenge_header = r.get_header_value("WWW-Authenticate");
            if (status == 200 && have) { // the server ignored the range: from the start
              (void)::ftruncate(fd.get(), 0);
              (void)::lseek(fd.get(), 0, SEEK_SET);
              h = sha256();
              have = 0;
            }
            return true;
          },
          [&](const char* d, std::size_t n) {
            if (status != 200 && status != 206) { // an error's body: its start is enough
              err_body.append(d, std::min<std::size_t>(n, 4096 - err_body.size()));
              return err_body.size() < 4096;
            }
            if (have + n > limit) return !(too_big = true);
            for (std::size_t off = 0; off < n;) {
              ssize_t w = ::write(fd.get(), d + off, n - off);
              if (w < 0 && errno == EINTR) continue;
              if (w < 0) return !(write_failed = true);
              off += static_cast<std::size_t>(w);
            }
            h.update(d, n);
            have += n;
            report(digest, have, total, false);
            return true;
          });
      if (too_big) {
        (void)::ftruncate(fd.get(), 0);
        return fail(errc::protocol, where(path) + ": the registry sent more than the " +
                                        std::to_string(limit) + " bytes " +
                                        (size ? "the manifest gives" : "a blob may have"));
      }
      if (write_failed) {
        int err = errno;
        return fail(err == ENOSPC || err == EDQUOT ? errc::resource_exhausted : errc::file_io,
                    "image store: writing " + tmp + ": " + sandbox::detail::errno_text(err));
      }
      if (!res && status == 0) return fail(transport_error(res.error(), path)); // no answer
      if (status == 401 && hops == 0 && !challenge_header.empty()) {
        SANDBOX_TRYV(authenticate(challenge_header, path));
        continue;
      }
      if ((status == 301 || status == 302 || status == 303 || status == 307 || status == 308) &&
          hops < 5 && !location.empty()) {
        if (location[0] == '/' && location.find_first_of(" \r\n\t") == std::string::npos) {
          target = location;
        } else {
          auto parsed = parse_url(location);
          if (!parsed)
            return fail(errc::protocol,
                        where(path) + ": redirect to " + sandbox::detail::quoted_excerpt(location));
          SANDBOX_TRYV(may_reach(parsed->first, "redirect to"));
          if (parsed->first.origin() != at.origin())
            send_auth = false; // credentials stay with the registry
          at = std::move(parsed->first);
          target = std::move(parsed->second);
        }
        continue;
      }
      if (status == 416 && have) { // what tmp/ holds is all there is, or wrong: start over
        (void)::ftruncate(fd.get(), 0);
        return fail(errc::unavailable, where(path) + ": resume refused (HTTP 416); starting over");
      }
      if (status != 200 && status != 206) return fail(status_error(status, path, err_body));
      if (!res) // cut off: what arrived stays in tmp/ for the next attempt
        return fail(errc::unavailable, where(path) + ": connection lost after " +
                                           std::to_string(have) + " bytes (" +
                                           httplib::to_string(res.error()) + ")");
      break;
    }
    if (size && have != size)
      return fail(errc::unavailable, where(path) + ": " + std::to_string(have) + " of " +
                                         std::to_string(size) + " bytes arrived");
    std::string got = h.digest();
    if (got != digest) {
      (void)::ftruncate(fd.get(), 0);
      ::unlink(tmp.c_str());
      if (resumed_from) // what an earlier pull left was not this blob's start: once more, whole
        return fail(errc::unavailable, where(path) + ": a download resumed after " +
                                           std::to_string(resumed_from) +
                                           " bytes does not match its digest; starting over");
      return fail(errc::protocol, where(path) +
                                      ": content does not match its digest (it hashes to " + got +
                                      "); nothing was kept");
    }
    return store_.commit(tmp, digest);
  }

  registry_ref ref_;
  const image_options& o_;
  const store& store_;
  std::string image_;
  std::string host_;
  site registry_;
  bool registry_ok_ = false;
  std::optional<credentials> creds_;
  std::string authorization_;
};

} // namespace sandbox::image::detail
