// SPDX-License-Identifier: MIT
// Constants of the v1 HTTP mapping that the client and the server must agree on.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sandbox::http {

/// The service the client talks to when neither the options nor `CWSANDBOX_BASE_URL` name one.
inline constexpr std::string_view default_base_url = "https://api.cwsandbox.com";

/// The image of a sandbox whose options name none (the anchor clients' default).
inline constexpr std::string_view default_image = "python:3.11";

/// The main command of a keep-alive sandbox: a shell that exits 0 on SIGTERM/SIGINT, so a stop
/// never waits out its grace period on a PID 1 that ignores SIGTERM. Sent as `command` + `args`.
inline constexpr std::string_view keep_alive_program = "/bin/sh";
inline constexpr std::string_view keep_alive_script =
    "trap \"exit 0\" TERM INT; sleep infinity & wait";

/// The name of the one container the client puts in a sandbox spec.
inline constexpr std::string_view main_container = "main";

/// The request header that carries a call's deadline (gRPC wire format, honoured by gRPC
/// gateways). The client sends it on Exec when `ExecOptions::timeout` is set; the server kills
/// the command when it expires.
inline constexpr std::string_view deadline_header = "grpc-timeout";

/// `d` in the grpc-timeout format: at most 8 digits and a unit (`m` milliseconds, `S`, `M`, `H`).
[[nodiscard]] inline std::string format_grpc_timeout(std::chrono::milliseconds d) {
  std::int64_t ms = d.count() < 1 ? 1 : d.count();
  if (ms <= 99'999'999) return std::to_string(ms) + "m";
  std::int64_t s = (ms + 999) / 1000;
  if (s <= 99'999'999) return std::to_string(s) + "S";
  return std::to_string(std::min<std::int64_t>((s + 3599) / 3600, 99'999'999)) + "H";
}

/// Parses a grpc-timeout value; nothing when it is malformed.
[[nodiscard]] inline std::optional<std::chrono::milliseconds>
parse_grpc_timeout(std::string_view v) noexcept {
  if (v.size() < 2 || v.size() > 9) return std::nullopt;
  std::int64_t n = 0;
  for (char c : v.substr(0, v.size() - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  using namespace std::chrono;
  switch (v.back()) {
  case 'H': return duration_cast<milliseconds>(hours(n));
  case 'M': return duration_cast<milliseconds>(minutes(n));
  case 'S': return duration_cast<milliseconds>(seconds(n));
  case 'm': return milliseconds(n);
  case 'u': return milliseconds((n + 999) / 1000);
  case 'n': return milliseconds((n + 999'999) / 1'000'000);
  default: return std::nullopt;
  }
}

} // namespace sandbox::http
