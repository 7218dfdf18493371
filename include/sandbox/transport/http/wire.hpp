// SPDX-License-Identifier: MIT
// Plain structs mirroring the messages of coreweave.sandbox.v1.SandboxService that the HTTP
// transport and the server exchange, each followed by its descriptor (descriptor.hpp): the one
// place that says which proto field a member is. Member names are the proto names (snake_case)
// but for `stdout`/`stderr`, which are macros on some C libraries. The fields we use are
// modelled; every other field of the published messages is listed in `unmodelled<M>`, so that it
// parses: ignored (output only), or unsupported (a capability our server lacks: a strict decode
// refuses it with errc::unsupported when it is set). A name in neither list is unknown: a
// lenient decode skips it, a strict one rejects it. The fields are listed in the order JSON
// writes them; the numbers are the proto's.
#pragma once

#include <sandbox/transport/http/descriptor.hpp>

#include <array>
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
/// kept as it is (and re-encoded as a number); `to_state` (mapping.hpp) maps it to
/// `State::UNSPECIFIED`.
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
template <>
inline constexpr auto
    descriptor<State> = enumeration("coreweave.sandbox.v1.State", "STATE_UNSPECIFIED",
                                    "STATE_CREATING", "STATE_RUNNING", "STATE_COMPLETED",
                                    "STATE_FAILED", "STATE_TERMINATING", "STATE_TERMINATED",
                                    "STATE_PENDING", "STATE_PAUSED");

/// The wire state named `name`; an unknown name is STATE_UNSPECIFIED (proto3 JSON rule).
[[nodiscard]] constexpr State state_from_name(std::string_view name) noexcept {
  return enum_from_name<State>(name);
}

/// `coreweave.sandbox.v1.SandboxMode`: where the hosted service places a sandbox.
enum class SandboxMode : std::int32_t {
  SANDBOX_MODE_UNSPECIFIED = 0,
  SANDBOX_MODE_SERVERLESS = 1,
  SANDBOX_MODE_CKS = 2,
};
template <>
inline constexpr auto descriptor<SandboxMode> = enumeration("coreweave.sandbox.v1.SandboxMode",
                                                            "SANDBOX_MODE_UNSPECIFIED",
                                                            "SANDBOX_MODE_SERVERLESS",
                                                            "SANDBOX_MODE_CKS");

/// `Resources`: Kubernetes quantities as strings ("500m", "2", "512Mi").
struct Resources {
  std::string cpu;
  std::string memory;
  friend bool operator==(const Resources&, const Resources&) = default;
};
template <>
inline constexpr auto
    descriptor<Resources> = message("coreweave.sandbox.v1.Resources",
                                    field(1, "cpu", kind::string, &Resources::cpu),
                                    field(2, "memory", kind::string, &Resources::memory));
template <>
inline constexpr auto unmodelled<Resources> = std::array{unsupported(3, "gpu")};

/// `ResourceRequirements`.
struct ResourceRequirements {
  Resources requests;
  Resources limits;
  friend bool operator==(const ResourceRequirements&, const ResourceRequirements&) = default;
};
template <>
inline constexpr auto descriptor<ResourceRequirements> =
    message("coreweave.sandbox.v1.ResourceRequirements",
            field(1, "requests", kind::message, &ResourceRequirements::requests),
            field(2, "limits", kind::message, &ResourceRequirements::limits));

/// `FileMount`: a file placed in the container before it starts. `content` is raw bytes.
struct FileMount {
  std::string path; ///< required in a strict decode
  std::string content;
  friend bool operator==(const FileMount&, const FileMount&) = default;
};
template <>
inline constexpr auto
    descriptor<FileMount> = message("coreweave.sandbox.v1.FileMount",
                                    field(1, "path", kind::string, &FileMount::path, required),
                                    field(2, "content", kind::bytes, &FileMount::content));

/// `Container`.
struct Container {
  std::string name;  ///< required in a strict decode
  std::string image; ///< required in a strict decode
  std::string command;
  std::vector<std::string> args;
  string_map environment_variables;
  std::string working_dir;
  std::vector<FileMount> files;
  std::optional<Resources> resources; ///< the older form of resource_requirements.limits
  std::optional<ResourceRequirements> resource_requirements;
  friend bool operator==(const Container&, const Container&) = default;
};
template <>
inline constexpr auto descriptor<Container> = message(
    "coreweave.sandbox.v1.Container", field(1, "name", kind::string, &Container::name, required),
    field(2, "image", kind::string, &Container::image, required),
    field(3, "command", kind::string, &Container::command),
    field(4, "args", kind::string, &Container::args),
    field(5, "environment_variables", kind::string, &Container::environment_variables),
    field(10, "working_dir", kind::string, &Container::working_dir),
    field(7, "files", kind::message, &Container::files),
    field(6, "resources", kind::message, &Container::resources),
    field(11, "resource_requirements", kind::message, &Container::resource_requirements));
template <>
inline constexpr auto unmodelled<Container> =
    std::array{unsupported(8, "volume_mounts"), unsupported(9, "secret_stores"),
               unsupported(12, "security_context"), unsupported(13, "image_pull_credentials")};

/// `NetworkOptions` (the two switches; rules are not modelled).
struct NetworkOptions {
  std::optional<bool> deny_egress;
  std::optional<bool> deny_ingress;
  friend bool operator==(const NetworkOptions&, const NetworkOptions&) = default;
};
template <>
inline constexpr auto descriptor<NetworkOptions> =
    message("coreweave.sandbox.v1.NetworkOptions",
            field(3, "deny_egress", kind::boolean, &NetworkOptions::deny_egress),
            field(4, "deny_ingress", kind::boolean, &NetworkOptions::deny_ingress));
template <>
inline constexpr auto unmodelled<NetworkOptions> =
    std::array{unsupported(1, "ingress"), unsupported(2, "egress")};

/// `ServiceProtocol`.
enum class ServiceProtocol : std::int32_t {
  SERVICE_PROTOCOL_UNSPECIFIED = 0,
  SERVICE_PROTOCOL_TCP = 1,
  SERVICE_PROTOCOL_UDP = 2,
  SERVICE_PROTOCOL_SCTP = 3,
};
template <>
inline constexpr auto descriptor<ServiceProtocol> =
    enumeration("coreweave.sandbox.v1.ServiceProtocol", "SERVICE_PROTOCOL_UNSPECIFIED",
                "SERVICE_PROTOCOL_TCP", "SERVICE_PROTOCOL_UDP", "SERVICE_PROTOCOL_SCTP");

/// `Visibility`: who may reach a service's port (unspecified: nobody outside the sandbox).
enum class Visibility : std::int32_t {
  VISIBILITY_UNSPECIFIED = 0,
  VISIBILITY_PUBLIC = 1,
  VISIBILITY_PRIVATE = 2,
  VISIBILITY_CUSTOM = 3,
};
template <>
inline constexpr auto
    descriptor<Visibility> = enumeration("coreweave.sandbox.v1.Visibility",
                                         "VISIBILITY_UNSPECIFIED", "VISIBILITY_PUBLIC",
                                         "VISIBILITY_PRIVATE", "VISIBILITY_CUSTOM");

/// `Service`: a port the sandbox listens on, and who may reach it.
struct Service {
  std::int32_t port = 0; ///< required in a strict decode
  std::string name;
  ServiceProtocol protocol = ServiceProtocol::SERVICE_PROTOCOL_UNSPECIFIED;
  Visibility visibility = Visibility::VISIBILITY_UNSPECIFIED;
  friend bool operator==(const Service&, const Service&) = default;
};
template <>
inline constexpr auto
    descriptor<Service> = message("coreweave.sandbox.v1.Service",
                                  field(1, "port", kind::int32, &Service::port, required),
                                  field(2, "name", kind::string, &Service::name),
                                  field(3, "protocol", kind::enumeration, &Service::protocol),
                                  field(4, "visibility", kind::enumeration, &Service::visibility));
template <>
inline constexpr auto unmodelled<Service> = std::array{unsupported(5, "endpoint")};

/// `SandboxSpec`.
struct SandboxSpec {
  std::vector<Container> containers{}; ///< at least one in a strict decode
  std::string primary_container{};
  std::vector<std::string> tags;
  string_map annotations{};
  std::int32_t max_lifetime_seconds = 0; ///< 0 = platform default
  std::optional<NetworkOptions> network{};
  SandboxMode mode = SandboxMode::SANDBOX_MODE_UNSPECIFIED;
  std::vector<Service> services{}; ///< our server: listen-only ones (no visibility)
  friend bool operator==(const SandboxSpec&, const SandboxSpec&) = default;
};
template <>
inline constexpr auto descriptor<SandboxSpec> =
    message("coreweave.sandbox.v1.SandboxSpec",
            field(1, "containers", kind::message, &SandboxSpec::containers, required),
            field(2, "primary_container", kind::string, &SandboxSpec::primary_container),
            field(8, "tags", kind::string, &SandboxSpec::tags),
            field(11, "annotations", kind::string, &SandboxSpec::annotations),
            field(5, "max_lifetime_seconds", kind::int32, &SandboxSpec::max_lifetime_seconds),
            field(10, "network", kind::message, &SandboxSpec::network),
            field(14, "mode", kind::enumeration, &SandboxSpec::mode),
            field(4, "services", kind::message, &SandboxSpec::services));
template <>
inline constexpr auto unmodelled<SandboxSpec> = std::array{unsupported(3, "volumes"),
                                                           unsupported(6, "network_ids"),
                                                           unsupported(7, "object_storage_access"),
                                                           unsupported(9, "runner_ids"),
                                                           unsupported(12, "init_containers"),
                                                           unsupported(13, "instance_type"),
                                                           unsupported(15, "runtime_class")};

/// `SandboxStatus` (output only). Times are RFC 3339 strings, passed through as sent.
struct SandboxStatus {
  State state = State::STATE_UNSPECIFIED;
  std::string state_reason{};
  std::string create_time{};
  std::string start_time{};
  std::string end_time{};
  /// Exit code of the primary container: explicit presence, `0` and "unknown" differ.
  std::optional<std::int32_t> exit_code{};
  std::string runner_id{};
  /// The resources the sandbox runs with (our server: what its spec asked for).
  std::optional<ResourceRequirements> effective_resource_requirements{};
  friend bool operator==(const SandboxStatus&, const SandboxStatus&) = default;
};
template <>
inline constexpr auto descriptor<SandboxStatus> =
    message("coreweave.sandbox.v1.SandboxStatus",
            field(1, "state", kind::enumeration, &SandboxStatus::state),
            field(2, "state_reason", kind::string, &SandboxStatus::state_reason),
            field(3, "create_time", kind::timestamp, &SandboxStatus::create_time),
            field(4, "start_time", kind::timestamp, &SandboxStatus::start_time),
            field(5, "end_time", kind::timestamp, &SandboxStatus::end_time),
            field(9, "exit_code", kind::int32, &SandboxStatus::exit_code),
            field(13, "runner_id", kind::string, &SandboxStatus::runner_id),
            field(17, "effective_resource_requirements", kind::message,
                  &SandboxStatus::effective_resource_requirements));
template <>
inline constexpr auto unmodelled<SandboxStatus> =
    std::array{ignored(6, "services"),
               ignored(8, "resource_usage"),
               ignored(10, "effective_resources"),
               ignored(11, "effective_max_lifetime_seconds"),
               ignored(12, "container_statuses"),
               ignored(14, "runner_group_id"),
               ignored(15, "effective_ingress"),
               ignored(16, "effective_egress"),
               ignored(18, "attached_volume_ids"),
               ignored(19, "effective_runtime_class")};

/// `Sandbox`: the body of CreateSandbox and the answer of Create/Get.
struct Sandbox {
  std::string sandbox_id;
  std::optional<SandboxSpec> spec; ///< required in a strict decode (the create request)
  std::optional<SandboxStatus> status;
  friend bool operator==(const Sandbox&, const Sandbox&) = default;
};
template <>
inline constexpr auto
    descriptor<Sandbox> = message("coreweave.sandbox.v1.Sandbox",
                                  field(1, "sandbox_id", kind::string, &Sandbox::sandbox_id),
                                  field(2, "spec", kind::message, &Sandbox::spec, required),
                                  field(3, "status", kind::message, &Sandbox::status));
template <>
inline constexpr auto unmodelled<Sandbox> =
    std::array{ignored(4, "source_template_id"), ignored(5, "source_template_revision")};

/// `ListSandboxesResponse`.
struct ListSandboxesResponse {
  std::vector<Sandbox> sandboxes;
  std::string next_page_token; ///< empty on the last page
  friend bool operator==(const ListSandboxesResponse&, const ListSandboxesResponse&) = default;
};
template <>
inline constexpr auto descriptor<ListSandboxesResponse> =
    message("coreweave.sandbox.v1.ListSandboxesResponse",
            field(1, "sandboxes", kind::message, &ListSandboxesResponse::sandboxes),
            field(2, "next_page_token", kind::string, &ListSandboxesResponse::next_page_token));

/// `DeleteSandboxResponse`; the sandbox may be absent (allow_missing on an absent sandbox).
struct DeleteSandboxResponse {
  std::optional<Sandbox> sandbox;
  friend bool operator==(const DeleteSandboxResponse&, const DeleteSandboxResponse&) = default;
};
template <>
inline constexpr auto descriptor<DeleteSandboxResponse> =
    message("coreweave.sandbox.v1.DeleteSandboxResponse",
            field(1, "sandbox", kind::message, &DeleteSandboxResponse::sandbox));
template <>
inline constexpr auto unmodelled<DeleteSandboxResponse> =
    std::array{ignored(2, "file_system_snapshot_ids")};

/// `PurgeSandboxesRequest`: stops every sandbox that has all of `tags` (every sandbox, with
/// `purge_all`).
struct PurgeSandboxesRequest {
  std::vector<std::string> tags;
  bool dry_run = false; ///< count, stop nothing
  std::string request_id;
  bool purge_all = false;
  friend bool operator==(const PurgeSandboxesRequest&, const PurgeSandboxesRequest&) = default;
};
template <>
inline constexpr auto descriptor<PurgeSandboxesRequest> =
    message("coreweave.sandbox.v1.PurgeSandboxesRequest",
            field(1, "tags", kind::string, &PurgeSandboxesRequest::tags),
            field(2, "dry_run", kind::boolean, &PurgeSandboxesRequest::dry_run),
            field(3, "request_id", kind::string, &PurgeSandboxesRequest::request_id),
            field(4, "purge_all", kind::boolean, &PurgeSandboxesRequest::purge_all));

/// `PurgeSandboxesResponse`.
struct PurgeSandboxesResponse {
  std::int32_t purge_count = 0; ///< stopped (or, in a dry run, that would be)
  std::vector<std::string> failed_sandbox_ids;
  std::vector<std::string> retryable_failed_sandbox_ids;
  friend bool operator==(const PurgeSandboxesResponse&, const PurgeSandboxesResponse&) = default;
};
template <>
inline constexpr auto descriptor<PurgeSandboxesResponse> = message(
    "coreweave.sandbox.v1.PurgeSandboxesResponse",
    field(1, "purge_count", kind::int32, &PurgeSandboxesResponse::purge_count),
    field(2, "failed_sandbox_ids", kind::string, &PurgeSandboxesResponse::failed_sandbox_ids),
    field(3, "retryable_failed_sandbox_ids", kind::string,
          &PurgeSandboxesResponse::retryable_failed_sandbox_ids));

/// `ExecRequest`. Over REST the sandbox id travels in the path (the body may repeat it).
struct ExecRequest {
  std::string sandbox_id;           ///< also in the request path; a server checks they agree
  std::vector<std::string> command; ///< non-empty in a strict decode
  string_map env;
  std::int32_t max_output_bytes = 0; ///< per stream; 0 = platform default
  std::string container;
  friend bool operator==(const ExecRequest&, const ExecRequest&) = default;
};
template <>
inline constexpr auto descriptor<ExecRequest> =
    message("coreweave.sandbox.v1.ExecRequest",
            field(1, "sandbox_id", kind::string, &ExecRequest::sandbox_id),
            field(2, "command", kind::string, &ExecRequest::command, required),
            field(3, "env", kind::string, &ExecRequest::env),
            field(4, "max_output_bytes", kind::int32, &ExecRequest::max_output_bytes),
            field(5, "container", kind::string, &ExecRequest::container));

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
template <>
inline constexpr auto descriptor<ExecResponse> =
    message("coreweave.sandbox.v1.ExecResponse",
            field(1, "stdout", kind::bytes, &ExecResponse::stdout_bytes),
            field(2, "stderr", kind::bytes, &ExecResponse::stderr_bytes),
            field(3, "exit_code", kind::int32, &ExecResponse::exit_code),
            field(4, "stdout_truncated", kind::boolean, &ExecResponse::stdout_truncated),
            field(5, "stderr_truncated", kind::boolean, &ExecResponse::stderr_truncated),
            field(6, "stdout_bytes_produced", kind::int64, &ExecResponse::stdout_bytes_produced),
            field(7, "stderr_bytes_produced", kind::int64, &ExecResponse::stderr_bytes_produced));

/// `WriteFileRequest`. Over REST the sandbox id travels in the path (the body may repeat it).
struct WriteFileRequest {
  std::string sandbox_id; ///< also in the request path; a server checks they agree
  std::string path;       ///< required in a strict decode
  std::string content;
  std::string container;
  friend bool operator==(const WriteFileRequest&, const WriteFileRequest&) = default;
};
template <>
inline constexpr auto descriptor<WriteFileRequest> =
    message("coreweave.sandbox.v1.WriteFileRequest",
            field(1, "sandbox_id", kind::string, &WriteFileRequest::sandbox_id),
            field(2, "path", kind::string, &WriteFileRequest::path, required),
            field(3, "content", kind::bytes, &WriteFileRequest::content),
            field(4, "container", kind::string, &WriteFileRequest::container));

/// `ReadFileResponse`.
struct ReadFileResponse {
  std::string content;
  friend bool operator==(const ReadFileResponse&, const ReadFileResponse&) = default;
};
template <>
inline constexpr auto descriptor<ReadFileResponse> =
    message("coreweave.sandbox.v1.ReadFileResponse",
            field(1, "content", kind::bytes, &ReadFileResponse::content));

// ---- Requests and streams of the binary (gRPC) mapping ------------------------------------
// Over REST these requests travel as path and query; over gRPC each is a message of its own.

/// `CreateSandboxRequest`.
struct CreateSandboxRequest {
  std::optional<Sandbox> sandbox; ///< required in a strict decode
  std::string request_id;         ///< one sandbox per non-empty id
  friend bool operator==(const CreateSandboxRequest&, const CreateSandboxRequest&) = default;
};
template <>
inline constexpr auto descriptor<CreateSandboxRequest> =
    message("coreweave.sandbox.v1.CreateSandboxRequest",
            field(1, "sandbox", kind::message, &CreateSandboxRequest::sandbox, required),
            field(2, "request_id", kind::string, &CreateSandboxRequest::request_id));

/// `GetSandboxRequest`.
struct GetSandboxRequest {
  std::string sandbox_id; ///< required in a strict decode
  friend bool operator==(const GetSandboxRequest&, const GetSandboxRequest&) = default;
};
template <>
inline constexpr auto descriptor<GetSandboxRequest> =
    message("coreweave.sandbox.v1.GetSandboxRequest",
            field(1, "sandbox_id", kind::string, &GetSandboxRequest::sandbox_id, required));

/// `ListSandboxesRequest`.
struct ListSandboxesRequest {
  std::int32_t page_size = 0;
  std::string page_token;
  std::vector<std::string> tags;
  State state = State::STATE_UNSPECIFIED; ///< unspecified: any state
  bool show_terminated = false;
  friend bool operator==(const ListSandboxesRequest&, const ListSandboxesRequest&) = default;
};
template <>
inline constexpr auto descriptor<ListSandboxesRequest> =
    message("coreweave.sandbox.v1.ListSandboxesRequest",
            field(1, "page_size", kind::int32, &ListSandboxesRequest::page_size),
            field(2, "page_token", kind::string, &ListSandboxesRequest::page_token),
            field(3, "tags", kind::string, &ListSandboxesRequest::tags),
            field(4, "state", kind::enumeration, &ListSandboxesRequest::state),
            field(5, "show_terminated", kind::boolean, &ListSandboxesRequest::show_terminated));
template <>
inline constexpr auto unmodelled<ListSandboxesRequest> =
    std::array{unsupported(6, "runner_ids"), unsupported(7, "volume_ids")};

/// `DeleteSandboxRequest`.
struct DeleteSandboxRequest {
  std::string sandbox_id; ///< required in a strict decode
  std::int32_t grace_period_seconds = 0;
  std::string request_id; ///< a delete is idempotent as it is
  bool allow_missing = false;
  friend bool operator==(const DeleteSandboxRequest&, const DeleteSandboxRequest&) = default;
};
template <>
inline constexpr auto descriptor<DeleteSandboxRequest> = message(
    "coreweave.sandbox.v1.DeleteSandboxRequest",
    field(1, "sandbox_id", kind::string, &DeleteSandboxRequest::sandbox_id, required),
    field(2, "grace_period_seconds", kind::int32, &DeleteSandboxRequest::grace_period_seconds),
    field(4, "request_id", kind::string, &DeleteSandboxRequest::request_id),
    field(5, "allow_missing", kind::boolean, &DeleteSandboxRequest::allow_missing));
template <>
inline constexpr auto unmodelled<DeleteSandboxRequest> =
    std::array{unsupported(3, "snapshot_volumes")};

/// `ReadFileRequest`.
struct ReadFileRequest {
  std::string sandbox_id; ///< required in a strict decode
  std::string path;       ///< required in a strict decode
  std::string container;
  friend bool operator==(const ReadFileRequest&, const ReadFileRequest&) = default;
};
template <>
inline constexpr auto descriptor<ReadFileRequest> =
    message("coreweave.sandbox.v1.ReadFileRequest",
            field(1, "sandbox_id", kind::string, &ReadFileRequest::sandbox_id, required),
            field(2, "path", kind::string, &ReadFileRequest::path, required),
            field(3, "container", kind::string, &ReadFileRequest::container));

/// `WriteFileResponse` (no fields).
struct WriteFileResponse {
  friend bool operator==(const WriteFileResponse&, const WriteFileResponse&) = default;
};
template <>
inline constexpr auto
    descriptor<WriteFileResponse> = message("coreweave.sandbox.v1.WriteFileResponse");

/// `ExecStreamInit`: the first message of a StreamExec call.
struct ExecStreamInit {
  std::string sandbox_id;           ///< required in a strict decode
  std::vector<std::string> command; ///< required in a strict decode
  bool tty = false;
  std::uint32_t tty_width = 0;
  std::uint32_t tty_height = 0;
  string_map env;
  std::string container;
  friend bool operator==(const ExecStreamInit&, const ExecStreamInit&) = default;
};
template <>
inline constexpr auto descriptor<ExecStreamInit> =
    message("coreweave.sandbox.v1.ExecStreamInit",
            field(1, "sandbox_id", kind::string, &ExecStreamInit::sandbox_id, required),
            field(2, "command", kind::string, &ExecStreamInit::command, required),
            field(3, "tty", kind::boolean, &ExecStreamInit::tty),
            field(4, "tty_width", kind::uint32, &ExecStreamInit::tty_width),
            field(5, "tty_height", kind::uint32, &ExecStreamInit::tty_height),
            field(6, "env", kind::string, &ExecStreamInit::env),
            field(7, "container", kind::string, &ExecStreamInit::container));

/// `ExecStreamResize`: a terminal's new size.
struct ExecStreamResize {
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  friend bool operator==(const ExecStreamResize&, const ExecStreamResize&) = default;
};
template <>
inline constexpr auto descriptor<ExecStreamResize> =
    message("coreweave.sandbox.v1.ExecStreamResize",
            field(1, "width", kind::uint32, &ExecStreamResize::width),
            field(2, "height", kind::uint32, &ExecStreamResize::height));

/// `ExecStreamClose` (no fields): the end of the command's stdin.
struct ExecStreamClose {
  friend bool operator==(const ExecStreamClose&, const ExecStreamClose&) = default;
};
template <>
inline constexpr auto descriptor<ExecStreamClose> = message("coreweave.sandbox.v1.ExecStreamClose");

/// `ExecStreamRequest`: one of init (first), stdin bytes, resize, close.
struct ExecStreamRequest {
  std::optional<ExecStreamInit> init;
  std::optional<std::string> stdin_bytes;
  std::optional<ExecStreamResize> resize;
  std::optional<ExecStreamClose> close;
  friend bool operator==(const ExecStreamRequest&, const ExecStreamRequest&) = default;
};
template <>
inline constexpr auto descriptor<ExecStreamRequest> =
    message("coreweave.sandbox.v1.ExecStreamRequest",
            field(1, "init", kind::message, &ExecStreamRequest::init, in_oneof(1)),
            field(2, "stdin", kind::bytes, &ExecStreamRequest::stdin_bytes, in_oneof(1)),
            field(3, "resize", kind::message, &ExecStreamRequest::resize, in_oneof(1)),
            field(4, "close", kind::message, &ExecStreamRequest::close, in_oneof(1)));

/// `ExecStreamReady`: the command has started and takes stdin.
struct ExecStreamReady {
  std::string ready_time; ///< RFC 3339
  friend bool operator==(const ExecStreamReady&, const ExecStreamReady&) = default;
};
template <>
inline constexpr auto descriptor<ExecStreamReady> = message("coreweave.sandbox.v1.ExecStreamReady",
                                                            field(1, "ready_time", kind::timestamp,
                                                                  &ExecStreamReady::ready_time));

/// `ExecStreamOutput.Stream`.
enum class OutputStream : std::int32_t {
  STREAM_UNSPECIFIED = 0,
  STREAM_STDOUT = 1,
  STREAM_STDERR = 2,
};
template <>
inline constexpr auto
    descriptor<OutputStream> = enumeration("coreweave.sandbox.v1.ExecStreamOutput.Stream",
                                           "STREAM_UNSPECIFIED", "STREAM_STDOUT", "STREAM_STDERR");

/// `ExecStreamOutput`: a chunk of the command's output, in the order it was read.
struct ExecStreamOutput {
  OutputStream stream = OutputStream::STREAM_UNSPECIFIED;
  std::string data;
  friend bool operator==(const ExecStreamOutput&, const ExecStreamOutput&) = default;
};
template <>
inline constexpr auto descriptor<ExecStreamOutput> =
    message("coreweave.sandbox.v1.ExecStreamOutput",
            field(1, "stream", kind::enumeration, &ExecStreamOutput::stream),
            field(2, "data", kind::bytes, &ExecStreamOutput::data));

/// `ExecStreamExit`: the command's exit code, the last message of a call that ran it.
struct ExecStreamExit {
  std::int32_t exit_code = 0;
  std::string completed_time; ///< RFC 3339
  friend bool operator==(const ExecStreamExit&, const ExecStreamExit&) = default;
};
template <>
inline constexpr auto descriptor<ExecStreamExit> =
    message("coreweave.sandbox.v1.ExecStreamExit",
            field(1, "exit_code", kind::int32, &ExecStreamExit::exit_code),
            field(2, "completed_time", kind::timestamp, &ExecStreamExit::completed_time));

/// `ExecStreamError`: why the command could not run or ended without an exit code. `code` is a
/// gRPC code name (`"NOT_FOUND"`).
struct ExecStreamError {
  std::string message;
  std::string code;
  friend bool operator==(const ExecStreamError&, const ExecStreamError&) = default;
};
template <>
inline constexpr auto descriptor<ExecStreamError> =
    message("coreweave.sandbox.v1.ExecStreamError",
            field(1, "message", kind::string, &ExecStreamError::message),
            field(2, "code", kind::string, &ExecStreamError::code));

/// `ExecStreamResponse`: one of ready, output, exit, error.
struct ExecStreamResponse {
  std::optional<ExecStreamReady> ready;
  std::optional<ExecStreamOutput> output;
  std::optional<ExecStreamExit> exit;
  std::optional<ExecStreamError> error;
  friend bool operator==(const ExecStreamResponse&, const ExecStreamResponse&) = default;
};
template <>
inline constexpr auto descriptor<ExecStreamResponse> =
    message("coreweave.sandbox.v1.ExecStreamResponse",
            field(1, "ready", kind::message, &ExecStreamResponse::ready, in_oneof(1)),
            field(2, "output", kind::message, &ExecStreamResponse::output, in_oneof(1)),
            field(3, "exit", kind::message, &ExecStreamResponse::exit, in_oneof(1)),
            field(4, "error", kind::message, &ExecStreamResponse::error, in_oneof(1)));

/// `StreamLogsRequest`.
struct StreamLogsRequest {
  std::string sandbox_id; ///< required in a strict decode
  bool follow = false;
  std::int32_t tail_lines = 0; ///< 0: all that is kept
  std::string since_time;      ///< RFC 3339; empty: from the start
  std::string container;
  bool timestamps = false;
  std::string resume_log_session_id;
  std::uint64_t resume_log_offset = 0;
  friend bool operator==(const StreamLogsRequest&, const StreamLogsRequest&) = default;
};
template <>
inline constexpr auto descriptor<StreamLogsRequest> = message(
    "coreweave.sandbox.v1.StreamLogsRequest",
    field(1, "sandbox_id", kind::string, &StreamLogsRequest::sandbox_id, required),
    field(2, "follow", kind::boolean, &StreamLogsRequest::follow),
    field(3, "tail_lines", kind::int32, &StreamLogsRequest::tail_lines),
    field(4, "since_time", kind::timestamp, &StreamLogsRequest::since_time),
    field(5, "container", kind::string, &StreamLogsRequest::container),
    field(6, "timestamps", kind::boolean, &StreamLogsRequest::timestamps),
    field(7, "resume_log_session_id", kind::string, &StreamLogsRequest::resume_log_session_id),
    field(8, "resume_log_offset", kind::uint64, &StreamLogsRequest::resume_log_offset));

/// `LogStreamError`.
struct LogStreamError {
  std::string message;
  std::string code;
  friend bool operator==(const LogStreamError&, const LogStreamError&) = default;
};
template <>
inline constexpr auto descriptor<LogStreamError> =
    message("coreweave.sandbox.v1.LogStreamError",
            field(1, "message", kind::string, &LogStreamError::message),
            field(2, "code", kind::string, &LogStreamError::code));

/// `LogEntry`: a piece of the main process's output.
struct LogEntry {
  std::string data;
  std::string timestamp; ///< RFC 3339
  std::string log_session_id;
  std::uint64_t next_log_offset = 0;
  std::optional<LogStreamError> error;
  friend bool operator==(const LogEntry&, const LogEntry&) = default;
};
template <>
inline constexpr auto descriptor<LogEntry> =
    message("coreweave.sandbox.v1.LogEntry", field(1, "data", kind::bytes, &LogEntry::data),
            field(2, "timestamp", kind::timestamp, &LogEntry::timestamp),
            field(3, "log_session_id", kind::string, &LogEntry::log_session_id),
            field(4, "next_log_offset", kind::uint64, &LogEntry::next_log_offset),
            field(5, "error", kind::message, &LogEntry::error));

/// `google.rpc.ErrorInfo` (AIP-193).
struct ErrorInfo {
  std::string reason;
  std::string domain;
  string_map metadata;
  friend bool operator==(const ErrorInfo&, const ErrorInfo&) = default;
};
template <>
inline constexpr auto
    descriptor<ErrorInfo> = message("google.rpc.ErrorInfo",
                                    field(1, "reason", kind::string, &ErrorInfo::reason),
                                    field(2, "domain", kind::string, &ErrorInfo::domain),
                                    field(3, "metadata", kind::string, &ErrorInfo::metadata));

/// `google.rpc.RetryInfo`; JSON form of the delay is a Duration string ("1.5s").
struct RetryInfo {
  std::chrono::milliseconds retry_delay{0};
  friend bool operator==(const RetryInfo&, const RetryInfo&) = default;
};
/// The delay is `required` here: a RetryInfo entry without one says nothing and is dropped.
template <>
inline constexpr auto descriptor<RetryInfo> = message("google.rpc.RetryInfo",
                                                      field(1, "retry_delay", kind::duration,
                                                            &RetryInfo::retry_delay, required));

/// `google.rpc.Status`, the body of every error response. `details` is a list of `Any` in JSON;
/// the detail types we understand are kept (the first of each kind), the rest are skipped.
struct Status {
  std::int32_t code = 0; ///< a gRPC code (0 = OK)
  std::string message{};
  std::optional<ErrorInfo> error_info{};
  std::optional<RetryInfo> retry_info;
  /// Our server's detail (`coreweave.sandbox.v1.ExecResponse`) on a REST Exec's command timeout:
  /// the output the command produced before it was killed. Other services do not send it.
  std::optional<ExecResponse> exec_response{};
  friend bool operator==(const Status&, const Status&) = default;
};
template <>
inline constexpr auto descriptor<Status> = message(
    "google.rpc.Status", field(1, "code", kind::int32, &Status::code),
    field(2, "message", kind::string, &Status::message),
    any_field(3, "details", &Status::error_info, &Status::retry_info, &Status::exec_response));

/// One detail of a Connect error: its type's full name and the message's protobuf bytes as
/// base64 text (usually unpadded), decoded when the detail is used, so that one bad detail does
/// not spoil the body. Connect's `debug` member is not kept.
struct ConnectErrorDetail {
  std::string type;
  std::string value;
  friend bool operator==(const ConnectErrorDetail&, const ConnectErrorDetail&) = default;
};
template <>
inline constexpr auto descriptor<ConnectErrorDetail> =
    message("connect.ErrorDetail", field(1, "type", kind::string, &ConnectErrorDetail::type),
            field(2, "value", kind::string, &ConnectErrorDetail::value));

/// The error body of the Connect protocol (connectrpc.com/docs/protocol), which the hosted service
/// may send instead of a `google.rpc.Status`: `code` is a name (`"not_found"`), not a number.
/// Not a proto message; described so that the JSON codec reads it (the numbers are ours).
struct ConnectError {
  std::string code;
  std::string message;
  std::vector<ConnectErrorDetail> details;
  friend bool operator==(const ConnectError&, const ConnectError&) = default;
};
template <>
inline constexpr auto descriptor<ConnectError> =
    message("connect.Error", field(1, "code", kind::string, &ConnectError::code, required),
            field(2, "message", kind::string, &ConnectError::message),
            field(3, "details", kind::message, &ConnectError::details));

} // namespace sandbox::http::wire
