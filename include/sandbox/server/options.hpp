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
  std::string token{};
  /// Requests served at once (each keeps a thread while it runs, an exec included). A connection
  /// with no request under way keeps none.
  std::size_t threads = 64;
  /// Open connections, idle ones included; when a new one would exceed it, the connection idle
  /// the longest is closed (or, with none idle, the new one is answered UNAVAILABLE). Never more
  /// than the descriptor limit (`ulimit -n`) less 128 allows: raise that limit for more.
  std::size_t max_connections = 4096;
  /// Time a client has to send a request's line and headers, in all (a slow trickle is cut off).
  std::chrono::milliseconds header_timeout{10'000};
  /// Longest wait for more of a request body, and for a client to take more of a response (each
  /// wait; a body that keeps trickling in is not cut off). A body must come with a
  /// Content-Length no larger than max_request_bytes (chunked bodies are refused: 411).
  std::chrono::milliseconds read_timeout{30'000};
  std::chrono::milliseconds write_timeout{30'000};
  /// Sandboxes created here and not yet stopped or ended; a create beyond it is refused with
  /// RESOURCE_EXHAUSTED and a RetryInfo, so that a flood of creates cannot exhaust the host.
  std::size_t max_live_sandboxes = 256;
  /// Processes and threads each sandbox created here may have at once (0: no limit); the v1 API
  /// cannot ask for a pids limit, so this is it. The transport must be able to enforce it
  /// (local: cgroups, as root) or every create fails saying why: check first
  /// (`local_transport::check_limits`), as sandboxd does at start. Sandboxes together: see
  /// `local_transport::limit_total_pids`.
  std::uint32_t max_pids = 0;
  /// Largest request body; a larger one is refused (400; WriteFile: CWSANDBOX_FILE_TOO_LARGE).
  std::size_t max_request_bytes = std::size_t{64} << 20;
  /// Per-stream output cap of an Exec that sends `maxOutputBytes: 0` (the local transport's own
  /// default unless changed).
  std::uint64_t default_max_output_bytes = sandbox::default_max_output_bytes;
  /// The most an Exec may keep per stream, whatever its `maxOutputBytes` asks (more is dropped,
  /// and flagged as truncated): each kept byte is held a few times over until it is sent.
  std::uint64_t max_output_bytes_limit = std::uint64_t{256} << 20;
  /// Image names and what the transport is given for them (`SandboxOptions::image`); a name
  /// not listed is refused, so that a client never names a directory of this host. By default
  /// the client's default image runs on the transport's default root.
  std::map<std::string, std::string, std::less<>> images{{std::string(http::default_image), ""}};
  /// Any other registry name a client gives (never a path, a layout or an archive) is pulled
  /// by the transport (the local one needs <sandbox/image.hpp> for it). Names in `images` still
  /// map as listed: remove the default's entry to pull the real default image.
  bool pull_images = false;
  /// A spec asking for egress (`network.denyEgress: false`) gets network_mode::egress; without
  /// it such a spec is refused (UNIMPLEMENTED).
  bool allow_egress = false;
  /// Run a sandbox whose main command is the clients' default keep-alive shell as a keep-alive
  /// sandbox of the transport (no extra processes in it; the same behaviour on stop).
  bool native_keep_alive = true;
  /// What sandboxes report as the runner they run on (`status.runnerId`): this host.
  std::string runner_id = "local";
  /// Terminal sandboxes the transport is asked to remember before the oldest is released.
  std::size_t retained_terminal = 1000;
  /// Idle time after which a keep-alive connection is closed.
  std::chrono::seconds keep_alive_timeout{5};
  /// One line per request: method, path, status, duration. Never the token or a body. Called
  /// from the connection threads, concurrently (as `trace` is).
  std::function<void(std::string_view line)> log{};
  /// Each exchange whole, for debugging and wire checks: method, path, request body, status,
  /// response body. Never the headers (so never the token). Called after the response is sent.
  std::function<void(std::string_view method, std::string_view path, std::string_view request,
                     int status, std::string_view response)>
      trace{};
};

} // namespace sandbox
