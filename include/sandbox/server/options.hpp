// SPDX-License-Identifier: MIT
// How a sandbox server behaves: what the service layer and the REST front end are configured by.
#pragma once

#include <sandbox/options.hpp>
#include <sandbox/transport/http/defaults.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace sandbox {

/// How a `server` behaves.
struct server_options {
  /// Every request must carry `Authorization: Bearer <token>`. Required: a server without a
  /// token refuses to start.
  std::string token;
  /// Connections served at once (each keeps a thread while it is open, an exec included).
  std::size_t threads = 64;
  /// Largest request body; a larger one is refused (400; WriteFile: CWSANDBOX_FILE_TOO_LARGE).
  std::size_t max_request_bytes = std::size_t{64} << 20;
  /// Per-stream output cap of an Exec that sends `maxOutputBytes: 0` (the local transport's own
  /// default unless changed).
  std::uint64_t default_max_output_bytes = sandbox::default_max_output_bytes;
  /// Image names and what the transport is given for them (`SandboxOptions::image`); a name
  /// not listed is refused, so that a client never names a directory of this host. By default
  /// the client's default image runs on the transport's default root.
  std::map<std::string, std::string, std::less<>> images{{std::string(http::default_image), ""}};
  /// Run a sandbox whose main command is the clients' default keep-alive shell as a keep-alive
  /// sandbox of the transport (no extra processes in it; the same behaviour on stop).
  bool native_keep_alive = true;
  /// Terminal sandboxes the transport is asked to remember before the oldest is released.
  std::size_t retained_terminal = 1000;
  /// Idle time after which a keep-alive connection is closed.
  std::chrono::seconds keep_alive_timeout{5};
  /// One line per request: method, path, status, duration. Never the token or a body. Called
  /// from the connection threads, concurrently (as `trace` is).
  std::function<void(std::string_view line)> log;
  /// Each exchange whole, for debugging and wire checks: method, path, request body, status,
  /// response body. Never the headers (so never the token). Called after the response is sent.
  std::function<void(std::string_view method, std::string_view path, std::string_view request,
                     int status, std::string_view response)>
      trace;
};

} // namespace sandbox
