// SPDX-License-Identifier: MIT
// Plain structs mirroring the messages of coreweave.sandbox.v1.SandboxService that the HTTP
// transport and the server exchange. Field names are the proto names (snake_case); the JSON
// spelling (lowerCamelCase) is the codec's business (codec.hpp). Only the fields we use are
// modelled: a lenient decode skips the others, a strict decode rejects them by name.
#pragma once

#include <sandbox/types.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sandbox::http::wire {

/// map<string, string> fields; ordered so that encoding is deterministic.
using string_map = std::map<std::string, std::string, std::less<>>;

/// `coreweave.sandbox.v1.State`. An enum is open in proto3: a number the codec does not know is
/// kept as it is (and re-encoded as a number); `to_state` maps it to `State::UNSPECIFIED`.
enum class State : std::int32_t {
  STATE_UNSPECIFIED = 0,
  STATE_CREATING = 1,
  STATE_RUNNING = 2,
  STATE_COMPLETED = 3,
  STATE_FAILED = 4,
  STATE_TERMINATING = 5,
  STATE_TERMINATED = 6,
  STATE_PENDING = 7,
  STATE_PAUSED = 8,
};

/// The JSON name of a wire state (`"STATE_RUNNING"`), or an empty view for a number without one.
[[nodiscard]] constexpr std::string_view to_string(State s) noexcept {
  constexpr std::string_view names[] = {"STATE_UNSPECIFIED", "STATE_CREATING", "STATE_RUNNING",
                                        "STATE_COMPLETED",   "STATE_FAILED",   "STATE_TERMINATING",
                                        "STATE_TERMINATED",  "STATE_PENDING",  "STATE_PAUSED"};
  auto i = static_cast<std::int32_t>(s);
  return i >= 0 && i < static_cast<std::int32_t>(std::size(names)) ? names[i] : std::string_view{};
}

/// The wire state named `name`; an unknown name is STATE_UNSPECIFIED (proto3 JSON rule).
[[nodiscard]] constexpr State state_from_name(std::string_view name) noexcept {
  for (std::int32_t i = 0; i <= 8; ++i)
    if (to_string(static_cast<State>(i)) == name) return static_cast<State>(i);
  return State::STATE_UNSPECIFIED;
}

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

/// `Resources`: Kubernetes quantities as strings ("500m", "2", "512Mi").
struct Resources {
  std::string cpu;
  std::string memory;
  friend bool operator==(const Resources&, const Resources&) = default;
};

/// `ResourceRequirements`.
struct ResourceRequirements {
  Resources requests;
  Resources limits;
  friend bool operator==(const ResourceRequirements&, const ResourceRequirements&) = default;
};

/// `FileMount`: a file placed in the container before it starts. `content` is raw bytes.
struct FileMount {
  std::string path; ///< required in a strict decode
  std::string content;
  friend bool operator==(const FileMount&, const FileMount&) = default;
};

/// `Container`.
struct Container {
  std::string name;  ///< required in a strict decode
  std::string image; ///< required in a strict decode
  std::string command;
  std::vector<std::string> args;
  string_map environment_variables;
  std::string working_dir;
  std::vector<FileMount> files;
  std::optional<ResourceRequirements> resource_requirements;
  friend bool operator==(const Container&, const Container&) = default;
};

/// `NetworkOptions` (the two switches we support; rules are not modelled).
struct NetworkOptions {
  std::optional<bool> deny_egress;
  std::optional<bool> deny_ingress;
  friend bool operator==(const NetworkOptions&, const NetworkOptions&) = default;
};

/// `SandboxSpec`.
struct SandboxSpec {
  std::vector<Container> containers; ///< at least one in a strict decode
  std::string primary_container;
  std::vector<std::string> tags;
  string_map annotations;
  std::int32_t max_lifetime_seconds = 0; ///< 0 = platform default
  std::optional<NetworkOptions> network;
  friend bool operator==(const SandboxSpec&, const SandboxSpec&) = default;
};

/// `SandboxStatus` (output only). Times are RFC 3339 strings, passed through as sent.
struct SandboxStatus {
  State state = State::STATE_UNSPECIFIED;
  std::string state_reason;
  std::string create_time;
  std::string start_time;
  std::string end_time;
  /// Exit code of the primary container: explicit presence, `0` and "unknown" differ.
  std::optional<std::int32_t> exit_code;
  std::string runner_id;
  friend bool operator==(const SandboxStatus&, const SandboxStatus&) = default;
};

/// `Sandbox`: the body of CreateSandbox and the answer of Create/Get.
struct Sandbox {
  std::string sandbox_id;
  std::optional<SandboxSpec> spec; ///< required in a strict decode (the create request)
  std::optional<SandboxStatus> status;
  friend bool operator==(const Sandbox&, const Sandbox&) = default;
};

/// `ListSandboxesResponse`.
struct ListSandboxesResponse {
  std::vector<Sandbox> sandboxes;
  std::string next_page_token; ///< empty on the last page
  friend bool operator==(const ListSandboxesResponse&, const ListSandboxesResponse&) = default;
};

/// `DeleteSandboxResponse`; the sandbox may be absent (allow_missing on an absent sandbox).
struct DeleteSandboxResponse {
  std::optional<Sandbox> sandbox;
  friend bool operator==(const DeleteSandboxResponse&, const DeleteSandboxResponse&) = default;
};

/// `ExecRequest` body (the sandbox id travels in the path).
struct ExecRequest {
  std::vector<std::string> command; ///< non-empty in a strict decode
  string_map env;
  std::int32_t max_output_bytes = 0; ///< per stream; 0 = platform default
  std::string container;
  friend bool operator==(const ExecRequest&, const ExecRequest&) = default;
};

/// `ExecResponse`. Output is raw bytes in `std::string` (any byte, NUL included).
struct ExecResponse {
  std::string stdout_bytes;
  std::string stderr_bytes;
  std::int32_t exit_code = 0;
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  std::int64_t stdout_bytes_produced = 0;
  std::int64_t stderr_bytes_produced = 0;
  friend bool operator==(const ExecResponse&, const ExecResponse&) = default;
};

/// `WriteFileRequest` body (the sandbox id travels in the path).
struct WriteFileRequest {
  std::string path; ///< required in a strict decode
  std::string content;
  std::string container;
  friend bool operator==(const WriteFileRequest&, const WriteFileRequest&) = default;
};

/// `ReadFileResponse`.
struct ReadFileResponse {
  std::string content;
  friend bool operator==(const ReadFileResponse&, const ReadFileResponse&) = default;
};

/// `google.rpc.ErrorInfo` (AIP-193).
struct ErrorInfo {
  std::string reason;
  std::string domain;
  string_map metadata;
  friend bool operator==(const ErrorInfo&, const ErrorInfo&) = default;
};

/// `google.rpc.RetryInfo`; JSON form of the delay is a Duration string ("1.5s").
struct RetryInfo {
  std::chrono::milliseconds retry_delay{0};
  friend bool operator==(const RetryInfo&, const RetryInfo&) = default;
};

/// `google.rpc.Status`, the body of every error response. `details` is a list of `Any` in JSON;
/// the detail types we understand are kept (the first of each kind), the rest are skipped.
struct Status {
  std::int32_t code = 0; ///< a gRPC code (0 = OK)
  std::string message;
  std::optional<ErrorInfo> error_info;
  std::optional<RetryInfo> retry_info;
  /// Our server's detail (`coreweave.sandbox.v1.ExecResponse`) on a command timeout: the output
  /// the command produced before it was killed. Other services do not send it.
  std::optional<ExecResponse> exec_response;
  friend bool operator==(const Status&, const Status&) = default;
};

} // namespace sandbox::http::wire
