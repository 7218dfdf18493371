// SPDX-License-Identifier: MIT
// Wire messages ⇄ library types: what the client (http_transport.hpp) sends for a call and makes of
// the answer, and what the server (server.hpp) makes of a request and answers. Both directions of
// each mapping live here, so that a client and a server that share this header agree, whatever
// the encoding (JSON today, binary protobuf next).
#pragma once

#include <sandbox/detail/text.hpp>
#include <sandbox/detail/validate.hpp>
#include <sandbox/image/reference.hpp>
#include <sandbox/options.hpp>
#include <sandbox/result.hpp>
#include <sandbox/transport/http/defaults.hpp>
#include <sandbox/transport/http/wire.hpp>
#include <sandbox/types.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sandbox::http {

namespace wire {

/// Wire state → library state; a number outside the enum is UNSPECIFIED.
[[nodiscard]] constexpr sandbox::State to_state(State s) noexcept {
  switch (s) {
  case State::STATE_UNSPECIFIED: return sandbox::State::UNSPECIFIED;
  case State::STATE_CREATING: return sandbox::State::CREATING;
  case State::STATE_RUNNING: return sandbox::State::RUNNING;
  case State::STATE_COMPLETED: return sandbox::State::COMPLETED;
  case State::STATE_FAILED: return sandbox::State::FAILED;
  case State::STATE_TERMINATING: return sandbox::State::TERMINATING;
  case State::STATE_TERMINATED: return sandbox::State::TERMINATED;
  case State::STATE_PENDING: return sandbox::State::PENDING;
  case State::STATE_PAUSED: return sandbox::State::PAUSED;
  }
  return sandbox::State::UNSPECIFIED;
}

/// Library state → wire state.
[[nodiscard]] constexpr State to_wire(sandbox::State s) noexcept {
  switch (s) {
  case sandbox::State::UNSPECIFIED: return State::STATE_UNSPECIFIED;
  case sandbox::State::PENDING: return State::STATE_PENDING;
  case sandbox::State::CREATING: return State::STATE_CREATING;
  case sandbox::State::RUNNING: return State::STATE_RUNNING;
  case sandbox::State::PAUSED: return State::STATE_PAUSED;
  case sandbox::State::TERMINATING: return State::STATE_TERMINATING;
  case sandbox::State::COMPLETED: return State::STATE_COMPLETED;
  case sandbox::State::FAILED: return State::STATE_FAILED;
  case sandbox::State::TERMINATED: return State::STATE_TERMINATED;
  }
  return State::STATE_UNSPECIFIED;
}

} // namespace wire

namespace detail {

/// A quantity's number: decimal digits with an optional fraction and exponent ("1.5", "2e3"),
/// nothing strtod takes besides (no sign, space, hex, inf or nan).
[[nodiscard]] constexpr bool decimal_number(std::string_view q) noexcept {
  if (q.empty() || !((q[0] >= '0' && q[0] <= '9') || q[0] == '.')) return false;
  for (char c : q)
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'))
      return false;
  return true;
}

/// Cores from a CPU quantity ("500m", "2", "0.5").
[[nodiscard]] inline std::optional<double> parse_cpu(std::string_view q) noexcept {
  if (q.empty() || q.size() > 32) return std::nullopt;
  double scale = 1;
  if (q.back() == 'm') {
    scale = 1e-3;
    q.remove_suffix(1);
  }
  if (!decimal_number(q)) return std::nullopt;
  char* end = nullptr;
  std::string s(q);
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v) || v < 0) return std::nullopt;
  return v * scale;
}

/// Bytes from a memory quantity ("512Mi", "1G", "1000").
[[nodiscard]] inline std::optional<std::uint64_t> parse_memory(std::string_view q) noexcept {
  static constexpr std::pair<std::string_view, double> suffixes[] = {
      {"Ki", 1024.0}, {"Mi", 1048576.0}, {"Gi", 1073741824.0}, {"Ti", 1099511627776.0},
      {"k", 1e3},     {"M", 1e6},        {"G", 1e9},           {"T", 1e12}};
  if (q.empty() || q.size() > 32) return std::nullopt;
  double scale = 1;
  for (const auto& [sfx, mul] : suffixes)
    if (q.size() > sfx.size() && q.substr(q.size() - sfx.size()) == sfx) {
      scale = mul;
      q.remove_suffix(sfx.size());
      break;
    }
  if (!decimal_number(q)) return std::nullopt;
  std::string s(q);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v) || v < 0 || v * scale > 1.8e19)
    return std::nullopt;
  return static_cast<std::uint64_t>(v * scale);
}

} // namespace detail

// ---- CreateSandbox ----------------------------------------------------------------------------

/// Bounds on the tags a server keeps and matches: a sandbox is listed and matched by them, so
/// their number and size bound what every list, get and purge costs.
inline constexpr std::size_t max_tags = 64;
inline constexpr std::size_t max_tag_bytes = 256;

/// **Errors:** validation naming `where` (more than max_tags, or one longer than max_tag_bytes).
[[nodiscard]] inline result<void> check_tags(const std::vector<std::string>& tags,
                                             std::string_view where) {
  if (tags.size() > max_tags)
    return fail(errc::validation, std::string(where) + ": " + std::to_string(tags.size()) +
                                      " tags, more than " + std::to_string(max_tags));
  for (std::size_t i = 0; i < tags.size(); ++i)
    if (tags[i].size() > max_tag_bytes)
      return fail(errc::validation, std::string(where) + "[" + std::to_string(i) +
                                        "]: " + std::to_string(tags[i].size()) +
                                        " bytes, more than " + std::to_string(max_tag_bytes));
  return success();
}

/// The spec the client sends for `o`: one container named `main_container` running `o.command`
/// (or the keep-alive shell) on `o.image` (or `default_image`), with CPU and memory as Guaranteed
/// QoS (requests = limits).
/// **Errors:** validation (bad options, a lifetime or CPU count the API cannot carry),
/// unsupported (options the API has no field for: host network, a pids limit).
[[nodiscard]] inline result<wire::SandboxSpec> spec_of(const SandboxOptions& o,
                                                       std::string_view default_image) noexcept {
  SANDBOX_TRYV(sandbox::detail::validate_options(o));
  if (o.network == network_mode::host)
    return fail(errc::unsupported, "SandboxOptions::network host is an option of the local "
                                   "transport; the v1 API has no such mode");
  if (!o.network_allow.empty())
    return fail(errc::unsupported, "SandboxOptions::network_allow is an option of the local "
                                   "transport (the v1 API's egress rules are not modelled)");
  if (o.resources.max_pids)
    return fail(errc::unsupported,
                "SandboxOptions::resources.max_pids: the v1 API has no pids limit");
  if (o.max_lifetime && o.max_lifetime->count() > std::numeric_limits<std::int32_t>::max())
    return fail(errc::validation, "SandboxOptions::max_lifetime does not fit the API's int32 "
                                  "seconds");
  if (!std::isfinite(o.resources.cpus) || o.resources.cpus < 0)
    return fail(errc::validation, "SandboxOptions::resources.cpus must be a finite number >= 0");
  wire::Container c;
  c.name = std::string(main_container);
  c.image = o.image.empty() ? std::string(default_image) : o.image;
  if (o.command.empty()) {
    c.command = std::string(keep_alive_program);
    c.args = {"-c", std::string(keep_alive_script)};
  } else {
    c.command = o.command.front();
    c.args.assign(o.command.begin() + 1, o.command.end());
  }
  c.environment_variables.insert(o.env.begin(), o.env.end());
  c.working_dir = o.working_dir;
  for (const auto& f : o.mounted_files)
    c.files.push_back({f.path, f.content});
  if (o.resources.memory_bytes || o.resources.cpus > 0) {
    // Guaranteed QoS, as the anchor client does for a flat {cpu, memory}: requests = limits.
    wire::Resources r;
    if (o.resources.cpus > 0)
      r.cpu = std::to_string(static_cast<std::int64_t>(std::ceil(o.resources.cpus * 1000))) + "m";
    if (o.resources.memory_bytes) r.memory = std::to_string(o.resources.memory_bytes);
    c.resource_requirements = wire::ResourceRequirements{r, r};
  }
  wire::SandboxSpec spec;
  spec.containers.push_back(std::move(c));
  spec.primary_container = std::string(main_container);
  spec.tags = o.tags;
  spec.annotations.insert(o.annotations.begin(), o.annotations.end());
  if (o.max_lifetime)
    spec.max_lifetime_seconds = static_cast<std::int32_t>(o.max_lifetime->count());
  if (o.network)
    spec.network = wire::NetworkOptions{*o.network == network_mode::none, std::nullopt};
  return spec;
}

/// The options the server runs a requested spec with: exactly one container; its image looked
/// up in `images` (a name not listed is refused: a client never picks what the transport is
/// given, such as a directory of the server's host), or, when `pull`, any other registry name
/// (`python:3.11`, `host:5000/team/app@sha256:…`: never a path, a layout or an archive) given
/// to the transport as it is, to pull; the clients' keep-alive shell as a
/// keep-alive sandbox when `native_keep_alive`; limits, or else requests (or the older
/// `resources`), as the resources.
/// **Errors:** validation (an image not in `images`, a bad quantity, both resources and
/// resourceRequirements, args without a command, a negative lifetime, a primary container that
/// is not there, too many or too long tags), unsupported (several
/// containers, egress when `egress` is false, ingress, placement on the caller's own cluster).
[[nodiscard]] inline result<SandboxOptions>
options_of(const wire::SandboxSpec& spec,
           const std::map<std::string, std::string, std::less<>>& images, bool native_keep_alive,
           bool pull = false, bool egress = false) {
  // Unset means serverless, which is what this server is; CKS names the caller's own cluster.
  if (spec.mode != wire::SandboxMode::SANDBOX_MODE_UNSPECIFIED &&
      spec.mode != wire::SandboxMode::SANDBOX_MODE_SERVERLESS) {
    auto name = wire::to_string(spec.mode);
    return fail(errc::unsupported, "spec.mode: this server places sandboxes on its own host; " +
                                       (name.empty() ? std::to_string(static_cast<int>(spec.mode))
                                                     : std::string(name)) +
                                       " is not implemented");
  }
  // A service with no visibility only listens inside the sandbox, which needs nothing of this
  // server; exposing a port (a URL) does.
  for (std::size_t i = 0; i < spec.services.size(); ++i) {
    const auto& sv = spec.services[i];
    std::string at = "spec.services[" + std::to_string(i) + "]";
    if (sv.port < 1 || sv.port > 65535)
      return fail(errc::validation,
                  at + ".port: " + std::to_string(sv.port) + " is not within 1 to 65535");
    if (sv.visibility != wire::Visibility::VISIBILITY_UNSPECIFIED)
      return fail(errc::unsupported, at + ".visibility: exposing a port (a service URL) is not "
                                          "implemented by this server; a listen-only service "
                                          "(no visibility) is");
  }
  if (spec.containers.size() != 1)
    return fail(errc::unsupported, "spec.containers: this server runs exactly one container "
                                   "per sandbox, got " +
                                       std::to_string(spec.containers.size()));
  const auto& c = spec.containers.front();
  if (!spec.primary_container.empty() && spec.primary_container != c.name)
    return fail(errc::validation, "spec.primaryContainer: no container named " +
                                      sandbox::detail::quoted_excerpt(spec.primary_container));
  SandboxOptions o;
  auto image = images.find(c.image);
  if (image == images.end() && pull) {
    auto named = sandbox::image::parse_source(c.image);
    if (named && named.value().kind == sandbox::image::source_kind::registry &&
        c.image.substr(0, 9) != "docker://")
      o.image = c.image;
    else if (named)
      return fail(errc::validation,
                  "spec.containers[0].image: " + sandbox::detail::quoted_excerpt(c.image) +
                      " is not a registry image name");
    else
      return fail(errc::validation, "spec.containers[0].image: " + named.error().message);
  } else if (image == images.end()) {
    std::string offered;
    for (const auto& [name, _] : images)
      offered += (offered.empty() ? "" : ", ") + sandbox::detail::quoted_excerpt(name);
    return fail(errc::validation,
                "spec.containers[0].image: " + sandbox::detail::quoted_excerpt(c.image) +
                    " is not an image of this server (it has: " +
                    (offered.empty() ? std::string("none") : offered) + ")");
  }
  if (image != images.end()) o.image = image->second;
  if (c.command.empty() && !c.args.empty())
    return fail(errc::validation, "spec.containers[0].args: given without a command (this "
                                  "server has no image entrypoint)");
  bool keep_alive = native_keep_alive && c.command == keep_alive_program && c.args.size() == 2 &&
                    c.args[0] == "-c" && c.args[1] == keep_alive_script;
  if (!c.command.empty() && !keep_alive) {
    o.command.push_back(c.command);
    o.command.insert(o.command.end(), c.args.begin(), c.args.end());
  }
  o.env.insert(c.environment_variables.begin(), c.environment_variables.end());
  o.working_dir = c.working_dir;
  for (const auto& f : c.files)
    o.mounted_files.push_back({f.path, f.content});
  // Limits win; requests stand in when no limit is given (Guaranteed QoS either way here). The
  // older `resources` is the other way to say it, never both.
  if (c.resources && c.resource_requirements)
    return fail(errc::validation, "spec.containers[0].resources: given with resourceRequirements; "
                                  "the two are mutually exclusive");
  auto quantity = [&](std::string wire::Resources::*member) {
    struct found {
      std::string_view where;
      const std::string* value;
    };
    if (const auto& rr = c.resource_requirements) {
      if (!(rr->limits.*member).empty())
        return found{"resourceRequirements.limits", &(rr->limits.*member)};
      if (!(rr->requests.*member).empty())
        return found{"resourceRequirements.requests", &(rr->requests.*member)};
    }
    if (c.resources && !((*c.resources).*member).empty())
      return found{"resources", &((*c.resources).*member)};
    return found{{}, nullptr};
  };
  auto bad = [](std::string_view where, std::string_view what, const std::string& q) {
    return fail(errc::validation, "spec.containers[0]." + std::string(where) + "." +
                                      std::string(what) + ": bad quantity " +
                                      sandbox::detail::quoted_excerpt(q));
  };
  if (auto cpu = quantity(&wire::Resources::cpu); cpu.value) {
    auto v = detail::parse_cpu(*cpu.value);
    if (!v) return bad(cpu.where, "cpu", *cpu.value);
    o.resources.cpus = *v;
  }
  if (auto mem = quantity(&wire::Resources::memory); mem.value) {
    auto v = detail::parse_memory(*mem.value);
    if (!v) return bad(mem.where, "memory", *mem.value);
    o.resources.memory_bytes = *v;
  }
  SANDBOX_TRYV(check_tags(spec.tags, "spec.tags"));
  o.tags = spec.tags;
  o.annotations.insert(spec.annotations.begin(), spec.annotations.end());
  if (spec.max_lifetime_seconds < 0)
    return fail(errc::validation, "spec.maxLifetimeSeconds: must not be negative");
  if (spec.max_lifetime_seconds > 0)
    o.max_lifetime = std::chrono::seconds(spec.max_lifetime_seconds);
  if (spec.network && spec.network->deny_ingress && !*spec.network->deny_ingress)
    return fail(errc::unsupported, "spec.network.denyIngress: this server exposes nothing of a "
                                   "sandbox; ingress cannot be allowed");
  if (spec.network && spec.network->deny_egress && !*spec.network->deny_egress) {
    if (!egress)
      return fail(errc::unsupported, "spec.network.denyEgress: sandboxes of this server have no "
                                     "network beyond their own loopback (its operator can allow "
                                     "egress: sandboxd --egress)");
    o.network = network_mode::egress;
  }
  return o;
}

// ---- GetSandbox, ListSandboxes, DeleteSandbox ------------------------------------------------

/// How `stateReason` begins for a sandbox whose main process the OOM killer took: the reason a
/// Kubernetes container status gives, so that `oom_killed` survives the trip.
inline constexpr std::string_view oom_reason = "OOMKilled";

/// What the client knows of a sandbox from the service's answer.
[[nodiscard]] inline SandboxInfo info_of(const wire::Sandbox& sb) {
  SandboxInfo i;
  i.id = sb.sandbox_id;
  if (sb.status) {
    i.state = wire::to_state(sb.status->state);
    // exitCode has explicit presence: an absent one is "not known", a 0 is a 0.
    if (sb.status->exit_code) i.returncode = *sb.status->exit_code;
    i.status_reason = sb.status->state_reason;
    i.oom_killed = i.state == sandbox::State::FAILED && i.status_reason.starts_with(oom_reason);
  }
  if (sb.spec) i.tags = sb.spec->tags;
  return i;
}

/// The status the server reports for a sandbox.
[[nodiscard]] inline wire::SandboxStatus status_of(const SandboxInfo& i) {
  wire::SandboxStatus st;
  st.state = wire::to_wire(i.state);
  if (i.returncode) st.exit_code = *i.returncode; // optional: 0 is sent, not omitted
  st.state_reason = i.status_reason;
  if (i.oom_killed && !i.status_reason.starts_with(oom_reason))
    st.state_reason =
        std::string(oom_reason) + (i.status_reason.empty() ? "" : ": ") + i.status_reason;
  return st;
}

// ---- Exec -------------------------------------------------------------------------------------

/// The request the client sends to run `argv` with `o`. The API has no working directory: a
/// `cwd` wraps argv in `/bin/sh -c 'cd <cwd> && exec <argv>'`. `max_output_bytes` is the
/// per-stream cap as the API's int32 carries it (0: the service's default).
[[nodiscard]] inline wire::ExecRequest exec_request_of(std::span<const std::string> argv,
                                                       const ExecOptions& o,
                                                       std::int32_t max_output_bytes) {
  wire::ExecRequest x;
  if (o.cwd)
    x.command = {"/bin/sh", "-c",
                 "cd " + sandbox::detail::shell_quote(*o.cwd) + " && exec " +
                     sandbox::detail::join_command(argv)};
  else
    x.command.assign(argv.begin(), argv.end());
  x.env.insert(o.env.begin(), o.env.end());
  x.max_output_bytes = max_output_bytes;
  return x;
}

/// The options the server runs a requested command with; `maxOutputBytes: 0` is
/// `default_max_output_bytes`.
/// **Errors:** validation (a negative output cap).
[[nodiscard]] inline result<ExecOptions> exec_options_of(const wire::ExecRequest& x,
                                                         std::uint64_t default_max_output_bytes) {
  if (x.max_output_bytes < 0) return fail(errc::validation, "maxOutputBytes: must not be negative");
  ExecOptions eo;
  eo.env.insert(x.env.begin(), x.env.end());
  eo.max_output_bytes = x.max_output_bytes > 0 ? static_cast<std::uint64_t>(x.max_output_bytes)
                                               : default_max_output_bytes;
  return eo;
}

/// The client's result of a command, reporting `command` (the argv asked for, before any cwd
/// wrapping).
[[nodiscard]] inline ExecResult result_of(wire::ExecResponse&& x,
                                          std::vector<std::string> command) {
  ExecResult out;
  out.returncode = x.exit_code;
  out.command = std::move(command);
  out.stdout_truncated = x.stdout_truncated;
  out.stderr_truncated = x.stderr_truncated;
  // A service that leaves the counts out produced what it sent.
  out.stdout_bytes_produced = x.stdout_bytes_produced > 0
                                  ? static_cast<std::uint64_t>(x.stdout_bytes_produced)
                                  : x.stdout_bytes.size();
  out.stderr_bytes_produced = x.stderr_bytes_produced > 0
                                  ? static_cast<std::uint64_t>(x.stderr_bytes_produced)
                                  : x.stderr_bytes.size();
  out.stdout_text = std::move(x.stdout_bytes);
  out.stderr_text = std::move(x.stderr_bytes);
  return out;
}

/// The server's answer for a finished command.
[[nodiscard]] inline wire::ExecResponse response_of(ExecResult&& done) {
  wire::ExecResponse out;
  out.exit_code = done.returncode;
  out.stdout_truncated = done.stdout_truncated;
  out.stderr_truncated = done.stderr_truncated;
  out.stdout_bytes_produced = static_cast<std::int64_t>(done.stdout_bytes_produced);
  out.stderr_bytes_produced = static_cast<std::int64_t>(done.stderr_bytes_produced);
  out.stdout_bytes = std::move(done.stdout_text);
  out.stderr_bytes = std::move(done.stderr_text);
  return out;
}

} // namespace sandbox::http
