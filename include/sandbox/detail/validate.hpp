// SPDX-License-Identifier: MIT
// Checks of caller input that every transport shares.
#pragma once

#include <sandbox/detail/text.hpp>
#include <sandbox/options.hpp>
#include <sandbox/result.hpp>

#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sandbox::detail {

[[nodiscard]] inline result<void> validate_env(const env_map& env, const char* where) noexcept {
  for (const auto& [k, v] : env) {
    if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos)
      return fail(errc::validation, std::string(where) + ": invalid environment variable name " +
                                        quoted_excerpt(k) +
                                        " (must be non-empty, without '=' or NUL)");
    if (v.find('\0') != std::string::npos)
      return fail(errc::validation, std::string(where) + ": the value of environment variable " +
                                        quoted_excerpt(k) + " holds a NUL byte");
  }
  return success();
}

/// An absolute path with `.`, `..` and repeated slashes resolved as the kernel would resolve them
/// in a tree without symlinks (`..` of the root is the root).
[[nodiscard]] inline std::string normal_path(std::string_view path) {
  std::vector<std::string_view> parts;
  for (std::size_t at = 0; at < path.size();) {
    std::size_t end = path.find('/', at);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(at, end - at);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    at = end + 1;
  }
  std::string out;
  for (auto part : parts)
    (out += '/') += part;
  return out.empty() ? "/" : out;
}

/// Why the kernel would refuse `path` as too long (`ENAMETOOLONG`), or nullptr: the whole path
/// must fit in PATH_MAX with its NUL, each name in NAME_MAX.
[[nodiscard]] inline const char* path_too_long(std::string_view path) noexcept {
  if (path.size() >= 4096) return " is longer than 4095 bytes";
  for (std::size_t at = 0; at < path.size();) {
    std::size_t end = path.find('/', at);
    if (end == std::string_view::npos) end = path.size();
    if (end - at > 255) return " has a name longer than 255 bytes";
    at = end + 1;
  }
  return nullptr;
}

/// argv non-empty with a non-empty program; cwd absolute when given; env names valid.
[[nodiscard]] inline result<void> validate_exec(std::span<const std::string> argv,
                                                const ExecOptions& o) noexcept {
  if (argv.empty()) return fail(errc::validation, "exec: command cannot be empty");
  if (argv[0].empty()) return fail(errc::validation, "exec: the program name (argv[0]) is empty");
  if (o.cwd && (o.cwd->empty() || (*o.cwd)[0] != '/' || o.cwd->find('\0') != std::string::npos))
    return fail(errc::validation,
                "exec " + command_excerpt(argv) +
                    ": ExecOptions::cwd must be an absolute path without NUL bytes, got " +
                    quoted_excerpt(*o.cwd, 256));
  if (auto why = o.cwd ? path_too_long(*o.cwd) : nullptr)
    return fail(errc::validation, "exec " + command_excerpt(argv) + ": ExecOptions::cwd " +
                                      quoted_excerpt(*o.cwd, 256) + why);
  if (o.timeout && o.timeout->count() <= 0)
    return fail(errc::validation,
                "exec " + command_excerpt(argv) + ": ExecOptions::timeout must be positive");
  return validate_env(o.env, "ExecOptions::env");
}

/// An IPv4 range: network address (host order) and prefix length.
struct cidr {
  std::uint32_t addr = 0;
  unsigned prefix = 32;
  [[nodiscard]] std::uint32_t mask() const noexcept {
    return prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - prefix);
  }
  [[nodiscard]] bool contains(std::uint32_t a) const noexcept { return (a & mask()) == addr; }
  [[nodiscard]] bool overlaps(const cidr& o) const noexcept {
    auto m = prefix < o.prefix ? mask() : o.mask();
    return (addr & m) == (o.addr & m);
  }
  [[nodiscard]] std::string str() const {
    return std::to_string(addr >> 24) + "." + std::to_string((addr >> 16) & 255) + "." +
           std::to_string((addr >> 8) & 255) + "." + std::to_string(addr & 255) + "/" +
           std::to_string(prefix);
  }
};

/// `a.b.c.d` or `a.b.c.d/n` (host bits must be zero), in decimal without leading zeros.
[[nodiscard]] inline std::optional<cidr> parse_cidr(std::string_view s) noexcept {
  cidr c;
  auto slash = s.find('/');
  std::string_view a = s.substr(0, slash);
  std::uint32_t v = 0;
  std::size_t b = 0;
  for (int i = 0; i < 4; ++i) {
    auto e = i < 3 ? a.find('.', b) : a.size();
    if (e == std::string_view::npos) return std::nullopt;
    std::string_view p = a.substr(b, e - b);
    if (p.empty() || p.size() > 3 || (p.size() > 1 && p[0] == '0') ||
        p.find_first_not_of("0123456789") != p.npos)
      return std::nullopt;
    unsigned n = 0;
    for (char ch : p)
      n = n * 10 + static_cast<unsigned>(ch - '0');
    if (n > 255) return std::nullopt;
    v = (v << 8) | n;
    b = e + 1;
  }
  if (slash != std::string_view::npos) {
    std::string_view p = s.substr(slash + 1);
    if (p.empty() || p.size() > 2 || p.find_first_not_of("0123456789") != p.npos)
      return std::nullopt;
    c.prefix = static_cast<unsigned>(p.size() == 1 ? p[0] - '0' : (p[0] - '0') * 10 + (p[1] - '0'));
    if (c.prefix > 32) return std::nullopt;
  }
  c.addr = v;
  if ((c.addr & c.mask()) != c.addr) return std::nullopt;
  return c;
}

/// IPv4's special-purpose ranges (RFC 6890 and its updates): this host, private, shared,
/// loopback, link-local (cloud metadata), protocol assignments, documentation, benchmarking,
/// multicast, reserved and broadcast. What egress and a server's pulls keep out of reach.
inline constexpr const char* special_ranges[] = {
    "0.0.0.0/8",       "10.0.0.0/8",     "100.64.0.0/10", "127.0.0.0/8",    "169.254.0.0/16",
    "172.16.0.0/12",   "192.0.0.0/24",   "192.0.2.0/24",  "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",   "240.0.0.0/4"};

[[nodiscard]] inline result<void> validate_options(const SandboxOptions& o) noexcept {
  if (!o.command.empty() && o.command[0].empty())
    return fail(errc::validation, "SandboxOptions::command: the program name is empty");
  if (!o.working_dir.empty() &&
      (o.working_dir[0] != '/' || o.working_dir.find('\0') != std::string::npos))
    return fail(errc::validation,
                "SandboxOptions::working_dir must be an absolute path without NUL bytes, got " +
                    quoted_excerpt(o.working_dir, 256));
  if (auto why = path_too_long(o.working_dir))
    return fail(errc::validation,
                "SandboxOptions::working_dir " + quoted_excerpt(o.working_dir, 256) + why);
  if (o.max_lifetime && o.max_lifetime->count() <= 0)
    return fail(errc::validation, "SandboxOptions::max_lifetime must be positive");
  if (o.image.find('\0') != std::string::npos)
    return fail(errc::validation,
                "SandboxOptions::image holds a NUL byte: " + quoted_excerpt(o.image, 256));
  std::set<std::string> placed;
  for (const auto& f : o.mounted_files) {
    // A last name "." names a directory, as a trailing '/' does. No "..": which directory it
    // leads back to depends on symlinks on the way (/bin/../etc is /usr/etc where /bin is a
    // link), so two paths could not be told the same or different.
    const std::string_view last = std::string_view(f.path).substr(f.path.rfind('/') + 1);
    if (f.path.size() < 2 || f.path[0] != '/' || f.path.back() == '/' || last == "." ||
        f.path.find('\0') != std::string::npos || normal_path(f.path).size() < 2)
      return fail(errc::validation, "SandboxOptions::mounted_files: path must be an absolute file "
                                    "path without NUL bytes, got " +
                                        quoted_excerpt(f.path, 256));
    if (f.path.find("/../") != std::string::npos || std::string_view(f.path).ends_with("/.."))
      return fail(errc::validation, "SandboxOptions::mounted_files: path " +
                                        quoted_excerpt(f.path, 256) +
                                        " holds '..'; name the file without it");
    if (auto why = path_too_long(f.path))
      return fail(errc::validation,
                  "SandboxOptions::mounted_files: path " + quoted_excerpt(f.path, 256) + why);
    if (!placed.insert(normal_path(f.path)).second)
      return fail(errc::validation,
                  "SandboxOptions::mounted_files: " + quoted_excerpt(f.path, 256) +
                      " names a file an earlier entry already places");
  }
  if (!o.network_allow.empty() && o.network != network_mode::egress)
    return fail(errc::validation, "SandboxOptions::network_allow is for network_mode::egress");
  for (const auto& a : o.network_allow)
    if (!parse_cidr(a))
      return fail(errc::validation, "SandboxOptions::network_allow: " + quoted_excerpt(a) +
                                        " is not an IPv4 address or CIDR (a.b.c.d or a.b.c.d/n)");
  return validate_env(o.env, "SandboxOptions::env");
}

} // namespace sandbox::detail
