// SPDX-License-Identifier: MIT
// The parts of proto3 JSON that need no parser (codec.hpp adds the simdjson decoder): field-name
// spellings, the text form of google.protobuf.Duration, and the encoders of the wire messages
// (lowerCamelCase names, default values omitted, int64 as strings, bytes as base64, enums by name).
#pragma once

#include <sandbox/transport/http/json_writer.hpp>
#include <sandbox/transport/http/wire.hpp>

#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
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

/// True when `key` names the proto field `snake`, as snake_case or as lowerCamelCase.
[[nodiscard]] constexpr bool key_is(std::string_view key, std::string_view snake) noexcept {
  if (key == snake) return true;
  std::size_t k = 0;
  for (std::size_t i = 0; i < snake.size(); ++i, ++k) {
    char c = snake[i];
    if (c == '_' && i + 1 < snake.size()) {
      c = snake[++i];
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    if (k >= key.size() || key[k] != c) return false;
  }
  return k == key.size();
}

/// lowerCamelCase of a snake_case proto name, for messages about fields that are absent.
[[nodiscard]] inline std::string camel(std::string_view snake) noexcept {
  std::string out;
  for (std::size_t i = 0; i < snake.size(); ++i) {
    if (snake[i] == '_' && i + 1 < snake.size() && snake[i + 1] >= 'a' && snake[i + 1] <= 'z')
      out += static_cast<char>(snake[++i] - 'a' + 'A');
    else
      out += snake[i];
  }
  return out;
}

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
  if (auto name = wire::to_string(s); !name.empty())
    w.string(name);
  else
    w.number(static_cast<std::int32_t>(s));
}
inline void put(json_writer& w, std::string_view key,
                const std::vector<std::string>& list) noexcept {
  if (list.empty()) return;
  w.key(key).begin_array();
  for (const auto& s : list)
    w.string(s);
  w.end_array();
}
inline void put(json_writer& w, std::string_view key, const wire::string_map& map) noexcept {
  if (map.empty()) return;
  w.key(key).begin_object();
  for (const auto& [k, v] : map)
    w.key(k).string(v);
  w.end_object();
}

/// A Duration as proto3 JSON writes it: whole seconds, or 3 fractional digits ("1.500s").
[[nodiscard]] inline std::string duration_text(std::chrono::milliseconds d) noexcept {
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

/// Parses a google.protobuf.Duration in its JSON form (`"1.5s"`, `"-2s"`, up to 9 fractional
/// digits); nullopt if it is not one.
/// A positive delay below a millisecond rounds up to 1 ms, so that a hint is never lost.
[[nodiscard]] inline std::optional<std::chrono::milliseconds>
parse_duration(std::string_view s) noexcept {
  if (s.size() < 2 || s.back() != 's') return std::nullopt;
  s.remove_suffix(1);
  bool negative = !s.empty() && s.front() == '-';
  if (negative) s.remove_prefix(1);
  auto dot = s.find('.');
  std::string_view whole = s.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view{} : s.substr(dot + 1);
  if (whole.empty() || (dot != std::string_view::npos && (frac.empty() || frac.size() > 9)))
    return std::nullopt;
  std::int64_t secs = 0;
  auto [p, ec] = std::from_chars(whole.data(), whole.data() + whole.size(), secs);
  // Duration's range is ±315,576,000,000 s.
  if (ec != std::errc{} || p != whole.data() + whole.size() || secs > 315'576'000'000)
    return std::nullopt;
  std::int64_t nanos = 0;
  for (std::size_t i = 0; i < 9; ++i) {
    char c = i < frac.size() ? frac[i] : '0';
    if (c < '0' || c > '9') return std::nullopt;
    nanos = nanos * 10 + (c - '0');
  }
  std::int64_t ms = secs * 1000 + (nanos + 999'999) / 1'000'000;
  return std::chrono::milliseconds(negative ? -ms : ms);
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
  for (const auto& m : list)
    write(w, m);
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

/// The grpc-gateway error body: `{"code", "message", "details": [ErrorInfo, RetryInfo,
/// ExecResponse]}`.
inline void write(json_writer& w, const wire::Status& m) noexcept {
  w.begin_object();
  put(w, "code", m.code);
  put(w, "message", m.message);
  if (m.error_info || m.retry_info || m.exec_response) {
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
    if (const auto& x = m.exec_response) {
      w.begin_object().key("@type").string("type.googleapis.com/coreweave.sandbox.v1.ExecResponse");
      put_bytes(w, "stdout", x->stdout_bytes);
      put_bytes(w, "stderr", x->stderr_bytes);
      put(w, "exitCode", x->exit_code);
      put(w, "stdoutTruncated", x->stdout_truncated);
      put(w, "stderrTruncated", x->stderr_truncated);
      put(w, "stdoutBytesProduced", x->stdout_bytes_produced);
      put(w, "stderrBytesProduced", x->stderr_bytes_produced);
      w.end_object();
    }
    w.end_array();
  }
  w.end_object();
}

/// Expected size of the encoding, so that multi-megabyte bytes fields are written into one
/// allocation.
template <class Message>
[[nodiscard]] std::size_t size_hint(const Message&) noexcept {
  return 256;
}
[[nodiscard]] inline std::size_t size_hint(const wire::ExecResponse& m) noexcept {
  return 256 + base64_encoded_size(m.stdout_bytes.size()) +
         base64_encoded_size(m.stderr_bytes.size());
}
[[nodiscard]] inline std::size_t size_hint(const wire::Status& m) noexcept {
  return 256 + m.message.size() + (m.exec_response ? size_hint(*m.exec_response) : 0);
}
[[nodiscard]] inline std::size_t size_hint(const wire::WriteFileRequest& m) noexcept {
  return 256 + m.path.size() + base64_encoded_size(m.content.size());
}
[[nodiscard]] inline std::size_t size_hint(const wire::ReadFileResponse& m) noexcept {
  return 256 + base64_encoded_size(m.content.size());
}

} // namespace sandbox::http::detail::json
