// SPDX-License-Identifier: MIT
// A remote transport's base URL: `https://host[:port]`, or `http://` to a loopback host. Shared
// by every channel (REST, gRPC); no dependency.
#pragma once

#include <sandbox/detail/text.hpp>
#include <sandbox/result.hpp>

#include <string>
#include <string_view>

namespace sandbox::http::detail {

/// Where requests go: `scheme://host:port`, nothing else.
struct endpoint {
  bool tls = true;
  std::string host; ///< without brackets for IPv6 literals
  int port = 443;

  /// `https://api.cwsandbox.com`, `http://127.0.0.1:8080` (the default port is left out).
  [[nodiscard]] std::string origin() const {
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    std::string o = (tls ? "https://" : "http://") + h;
    if (port != (tls ? 443 : 80)) o += ":" + std::to_string(port);
    return o;
  }
};

/// True for `localhost`, `127.0.0.0/8` and `::1`: hosts where plain http cannot be overheard.
[[nodiscard]] inline bool is_loopback_host(std::string_view host) noexcept {
  if (host == "localhost" || host == "::1") return true;
  if (host.substr(0, 4) != "127.") return false;
  return host.find_first_not_of("0123456789.") == std::string_view::npos;
}

/// Parses a base URL (`https://host[:port]`, or `http://` for loopback hosts unless
/// `allow_insecure_http`). A trailing `/` is accepted; a path, query, user info or another
/// scheme is not.
/// **Errors:** validation (saying what is wrong; user info is never echoed).
[[nodiscard]] inline result<endpoint> parse_base_url(std::string_view url,
                                                     bool allow_insecure_http) noexcept {
  endpoint ep;
  std::string_view rest;
  if (url.substr(0, 8) == "https://") {
    rest = url.substr(8);
  } else if (url.substr(0, 7) == "http://") {
    ep.tls = false;
    ep.port = 80;
    rest = url.substr(7);
  } else {
    auto colon = url.find("://");
    return fail(errc::validation,
                "base URL must start with https:// or http://, got " +
                    (colon == std::string_view::npos
                         ? std::string("no scheme")
                         : "scheme " + sandbox::detail::shell_quote(url.substr(0, colon))));
  }
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('@') != std::string_view::npos)
    return fail(errc::validation, "base URL must not carry user info (credentials go in "
                                  "remote_options::api_key or CWSANDBOX_API_KEY)");
  if (auto p = rest.find_first_of("/?#"); p != std::string_view::npos)
    return fail(errc::validation, "base URL must not have a path, query or fragment, got " +
                                      sandbox::detail::shell_quote(url));
  std::string_view port;
  bool has_port = false;
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos)
      return fail(errc::validation,
                  "base URL: unterminated IPv6 literal in " + sandbox::detail::shell_quote(url));
    ep.host = std::string(rest.substr(1, close - 1));
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        return fail(errc::validation, "base URL: garbage after the IPv6 literal in " +
                                          sandbox::detail::shell_quote(url));
      port = after.substr(1);
      has_port = true;
    }
  } else if (auto colon = rest.find(':'); colon != std::string_view::npos) {
    ep.host = std::string(rest.substr(0, colon));
    port = rest.substr(colon + 1);
    has_port = true;
  } else {
    ep.host = std::string(rest);
  }
  if (ep.host.empty())
    return fail(errc::validation, "base URL has no host: " + sandbox::detail::shell_quote(url));
  if (has_port) {
    int n = 0;
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string_view::npos)
      return fail(errc::validation, "base URL: bad port in " + sandbox::detail::shell_quote(url));
    for (char c : port)
      n = n * 10 + (c - '0');
    if (n < 1 || n > 65535)
      return fail(errc::validation,
                  "base URL: port out of range in " + sandbox::detail::shell_quote(url));
    ep.port = n;
  }
  if (!ep.tls && !allow_insecure_http && !is_loopback_host(ep.host))
    return fail(errc::validation,
                "base URL " + sandbox::detail::shell_quote(url) +
                    ": plain http is only allowed to a loopback host (credentials would travel "
                    "in clear); use https or set remote_options::allow_insecure_http");
  return ep;
}

} // namespace sandbox::http::detail
