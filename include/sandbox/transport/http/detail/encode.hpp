// SPDX-License-Identifier: MIT
// proto3 JSON encoders of the wire messages (used by to_json in codec.hpp): lowerCamelCase names,
// default values omitted, int64 as strings, bytes as base64, enums by name.
#pragma once

#include <sandbox/transport/http/json_writer.hpp>
#include <sandbox/transport/http/wire.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sandbox::http::detail::json {

// Declared up front: messages nest, and lookup of `write` for the wire types does not reach this
// namespace by ADL.
inline void write(json_writer& w, const wire::Resources& m) noexcept;
inline void write(json_writer& w, const wire::ResourceRequirements& m) noexcept;
inline void write(json_writer& w, const wire::FileMount& m) noexcept;
inline void write(json_writer& w, const wire::Container& m) noexcept;
inline void write(json_writer& w, const wire::NetworkOptions& m) noexcept;
inline void write(json_writer& w, const wire::SandboxSpec& m) noexcept;
inline void write(json_writer& w, const wire::SandboxStatus& m) noexcept;
inline void write(json_writer& w, const wire::Sandbox& m) noexcept;

// Field writers: each omits the proto3 default value.

inline void put(json_writer& w, std::string_view key, const std::string& s) noexcept {
  if (!s.empty()) w.key(key).string(s);
}
inline void put_bytes(json_writer& w, std::string_view key, const std::string& bytes) noexcept {
  if (!bytes.empty()) w.key(key).base64(bytes);
}
inline void put(json_writer& w, std::string_view key, std::int32_t v) noexcept {
  if (v != 0) w.key(key).number(v);
}
inline void put(json_writer& w, std::string_view key, std::int64_t v) noexcept {
  if (v != 0) w.key(key).quoted_number(v);
}
inline void put(json_writer& w, std::string_view key, bool v) noexcept {
  if (v) w.key(key).boolean(true);
}
inline void put(json_writer& w, std::string_view key, std::optional<bool> v) noexcept {
  if (v) w.key(key).boolean(*v);
}
inline void put(json_writer& w, std::string_view key, std::optional<std::int32_t> v) noexcept {
  if (v) w.key(key).number(*v);
}
inline void put(json_writer& w, std::string_view key, wire::State s) noexcept {
  if (s == wire::State::STATE_UNSPECIFIED) return;
  w.key(key);
  if (auto name = wire::to_string(s); !name.empty()) w.string(name);
  else w.number(static_cast<std::int32_t>(s));
}
inline void put(json_writer& w, std::string_view key, const std::vector<std::string>& list) noexcept {
  if (list.empty()) return;
  w.key(key).begin_array();
  for (const auto& s : list) w.string(s);
  w.end_array();
}
inline void put(json_writer& w, std::string_view key, const wire::string_map& map) noexcept {
  if (map.empty()) return;
  w.key(key).begin_object();
  for (const auto& [k, v] : map) w.key(k).string(v);
  w.end_object();
}

/// A Duration as proto3 JSON writes it: whole seconds, or 3 fractional digits ("1.500s").
inline std::string duration_text(std::chrono::milliseconds d) noexcept {
  auto ms = d.count();
  std::string out = ms < 0 ? "-" : "";
  auto abs = ms < 0 ? -static_cast<std::uint64_t>(ms) : static_cast<std::uint64_t>(ms);
  out += std::to_string(abs / 1000);
  if (auto frac = abs % 1000) {
    out += '.';
    out += static_cast<char>('0' + frac / 100);
    out += static_cast<char>('0' + frac / 10 % 10);
    out += static_cast<char>('0' + frac % 10);
  }
  out += 's';
  return out;
}

// Message writers: each writes one object.

inline void write(json_writer& w, const wire::Resources& m) noexcept {
  w.begin_object();
  put(w, "cpu", m.cpu);
  put(w, "memory", m.memory);
  w.end_object();
}

inline void write(json_writer& w, const wire::ResourceRequirements& m) noexcept {
  w.begin_object();
  // A message field is present when set; an empty Resources is still worth omitting.
  if (m.requests != wire::Resources{}) write(w.key("requests"), m.requests);
  if (m.limits != wire::Resources{}) write(w.key("limits"), m.limits);
  w.end_object();
}

inline void write(json_writer& w, const wire::FileMount& m) noexcept {
  w.begin_object();
  put(w, "path", m.path);
  put_bytes(w, "content", m.content);
  w.end_object();
}

template <class Message>
void put_messages(json_writer& w, std::string_view key, const std::vector<Message>& list) noexcept {
  if (list.empty()) return;
  w.key(key).begin_array();
  for (const auto& m : list) write(w, m);
  w.end_array();
}

template <class Message>
void put_message(json_writer& w, std::string_view key, const std::optional<Message>& m) noexcept {
  if (m) write(w.key(key), *m);
}

inline void write(json_writer& w, const wire::Container& m) noexcept {
  w.begin_object();
  put(w, "name", m.name);
  put(w, "image", m.image);
  put(w, "command", m.command);
  put(w, "args", m.args);
  put(w, "environmentVariables", m.environment_variables);
  put(w, "workingDir", m.working_dir);
  put_messages(w, "files", m.files);
  put_message(w, "resourceRequirements", m.resource_requirements);
  w.end_object();
}

inline void write(json_writer& w, const wire::NetworkOptions& m) noexcept {
  w.begin_object();
  put(w, "denyEgress", m.deny_egress);
  put(w, "denyIngress", m.deny_ingress);
  w.end_object();
}

inline void write(json_writer& w, const wire::SandboxSpec& m) noexcept {
  w.begin_object();
  put_messages(w, "containers", m.containers);
  put(w, "primaryContainer", m.primary_container);
  put(w, "tags", m.tags);
  put(w, "annotations", m.annotations);
  put(w, "maxLifetimeSeconds", m.max_lifetime_seconds);
  put_message(w, "network", m.network);
  w.end_object();
}

inline void write(json_writer& w, const wire::SandboxStatus& m) noexcept {
  w.begin_object();
  put(w, "state", m.state);
  put(w, "stateReason", m.state_reason);
  put(w, "createTime", m.create_time);
  put(w, "startTime", m.start_time);
  put(w, "endTime", m.end_time);
  put(w, "exitCode", m.exit_code);
  put(w, "runnerId", m.runner_id);
  w.end_object();
}

inline void write(json_writer& w, const wire::Sandbox& m) noexcept {
  w.begin_object();
  put(w, "sandboxId", m.sandbox_id);
  put_message(w, "spec", m.spec);
  put_message(w, "status", m.status);
  w.end_object();
}

inline void write(json_writer& w, const wire::ListSandboxesResponse& m) noexcept {
  w.begin_object();
  put_messages(w, "sandboxes", m.sandboxes);
  put(w, "nextPageToken", m.next_page_token);
  w.end_object();
}

inline void write(json_writer& w, const wire::DeleteSandboxResponse& m) noexcept {
  w.begin_object();
  put_message(w, "sandbox", m.sandbox);
  w.end_object();
}

inline void write(json_writer& w, const wire::ExecRequest& m) noexcept {
  w.begin_object();
  put(w, "command", m.command);
  put(w, "env", m.env);
  put(w, "maxOutputBytes", m.max_output_bytes);
  put(w, "container", m.container);
  w.end_object();
}

inline void write(json_writer& w, const wire::ExecResponse& m) noexcept {
  w.begin_object();
  put_bytes(w, "stdout", m.stdout_bytes);
  put_bytes(w, "stderr", m.stderr_bytes);
  put(w, "exitCode", m.exit_code);
  put(w, "stdoutTruncated", m.stdout_truncated);
  put(w, "stderrTruncated", m.stderr_truncated);
  put(w, "stdoutBytesProduced", m.stdout_bytes_produced);
  put(w, "stderrBytesProduced", m.stderr_bytes_produced);
  w.end_object();
}

inline void write(json_writer& w, const wire::WriteFileRequest& m) noexcept {
  w.begin_object();
  put(w, "path", m.path);
  put_bytes(w, "content", m.content);
  put(w, "container", m.container);
  w.end_object();
}

inline void write(json_writer& w, const wire::ReadFileResponse& m) noexcept {
  w.begin_object();
  put_bytes(w, "content", m.content);
  w.end_object();
}

/// The grpc-gateway error body: `{"code", "message", "details": [ErrorInfo, RetryInfo]}`.
inline void write(json_writer& w, const wire::Status& m) noexcept {
  w.begin_object();
  put(w, "code", m.code);
  put(w, "message", m.message);
  if (m.error_info || m.retry_info) {
    w.key("details").begin_array();
    if (const auto& ei = m.error_info) {
      w.begin_object().key("@type").string("type.googleapis.com/google.rpc.ErrorInfo");
      put(w, "reason", ei->reason);
      put(w, "domain", ei->domain);
      put(w, "metadata", ei->metadata);
      w.end_object();
    }
    if (const auto& ri = m.retry_info) {
      w.begin_object().key("@type").string("type.googleapis.com/google.rpc.RetryInfo");
      w.key("retryDelay").string(duration_text(ri->retry_delay));
      w.end_object();
    }
    w.end_array();
  }
  w.end_object();
}

/// Expected size of the encoding, so that multi-megabyte bytes fields are written into one
/// allocation.
template <class Message>
std::size_t size_hint(const Message&) noexcept {
  return 256;
}
inline std::size_t size_hint(const wire::ExecResponse& m) noexcept {
  return 256 + base64_encoded_size(m.stdout_bytes.size()) +
         base64_encoded_size(m.stderr_bytes.size());
}
inline std::size_t size_hint(const wire::WriteFileRequest& m) noexcept {
  return 256 + m.path.size() + base64_encoded_size(m.content.size());
}
inline std::size_t size_hint(const wire::ReadFileResponse& m) noexcept {
  return 256 + base64_encoded_size(m.content.size());
}

} // namespace sandbox::http::detail::json
