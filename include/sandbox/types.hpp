// SPDX-License-Identifier: MIT
// Value types shared by every layer: sandbox states, the result of a command, and what the
// transport and retry concepts are handed (`ListFilter`, `RetryState`).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sandbox {

/// Lifecycle of a sandbox: PENDING → CREATING → RUNNING → COMPLETED | FAILED | TERMINATED.
/// COMPLETED: the main process ended on its own, whatever its exit code (see `returncode`).
/// FAILED: the main process could not start, or the system killed the sandbox (its memory limit,
/// a kill from outside); `SandboxInfo::status_reason` says which. TERMINATED: stopped (by a
/// caller, or at the end of its lifetime). PAUSED and TERMINATING are reported by remote
/// services; the local transport never pauses.
enum class State : std::uint8_t {
  UNSPECIFIED,
  PENDING,
  CREATING,
  RUNNING,
  PAUSED,
  TERMINATING,
  COMPLETED,
  FAILED,
  TERMINATED,
};

/// `"RUNNING"`, `"COMPLETED"`, …
[[nodiscard]] constexpr std::string_view to_string(State s) noexcept {
  constexpr std::string_view names[] = {"UNSPECIFIED", "PENDING", "CREATING",
                                        "RUNNING",     "PAUSED",  "TERMINATING",
                                        "COMPLETED",   "FAILED",  "TERMINATED"};
  auto i = static_cast<std::size_t>(s);
  return i < std::size(names) ? names[i] : "UNSPECIFIED";
}

/// True for COMPLETED, FAILED and TERMINATED: nothing of the sandbox runs any more.
[[nodiscard]] constexpr bool is_terminal(State s) noexcept {
  return s == State::COMPLETED || s == State::FAILED || s == State::TERMINATED;
}

/// What a finished command produced. Output is kept as bytes in `std::string` (it may hold any
/// byte, including NUL); `*_text` names avoid the `stdout`/`stderr` macros of some C libraries.
struct ExecResult {
  std::string stdout_text{};
  std::string stderr_text{};
  /// Exit code; for a command killed by a signal, 128 + the signal number (as a shell reports it).
  int returncode = 0;
  /// The signal that killed the command, 0 when it exited normally.
  int term_signal = 0;
  /// The argv the caller asked for (before any wrapping for cwd).
  std::vector<std::string> command{};
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  std::uint64_t stdout_bytes_produced = 0;
  std::uint64_t stderr_bytes_produced = 0;
  /// The command was killed by the kernel's OOM killer because the sandbox reached its memory
  /// limit (`Resources::memory_bytes`); `returncode` is then 137.
  bool oom_killed = false;

  /// True when the command exited with 0.
  [[nodiscard]] bool ok() const noexcept { return returncode == 0 && term_signal == 0; }
};

/// A sandbox as a transport reports it.
struct SandboxInfo {
  std::string id{};
  State state = State::UNSPECIFIED;
  /// Exit code of the main process once it has ended (128 + the signal number when a signal
  /// ended it); empty while it runs and when it never started.
  std::optional<int> returncode{};
  std::vector<std::string> tags{};
  /// The main process was killed by the OOM killer because the sandbox reached its memory limit.
  bool oom_killed = false;
  /// Why the sandbox is in its state, when the transport says: for FAILED, what could not start
  /// or what killed it.
  std::string status_reason{};
};

/// A piece of a sandbox's log: what its main process wrote to stdout and stderr (one stream, as
/// a terminal would show them), read at one time.
struct LogChunk {
  std::string data{};
  std::chrono::system_clock::time_point time{}; ///< when it was read from the process
  std::uint64_t end_offset = 0;                 ///< offset in the log after this chunk
};

/// Part of a sandbox's log, from some offset on. Offsets count every byte ever written, so that
/// a reader can resume where it left off; the transport keeps only the most recent part.
struct LogRead {
  std::vector<LogChunk> chunks{};
  std::uint64_t first_offset = 0; ///< where what is kept begins (output older than it is lost)
  std::uint64_t end_offset = 0;   ///< offset after the last byte written so far
  bool complete = false;          ///< nothing more will be written (the main process ended)
};

/// Which sandboxes `list` returns.
struct ListFilter {
  std::vector<std::string> tags{}; ///< all of these tags
  std::optional<State> state{};
  bool show_terminated = false;
};

/// What a retry policy is told about the attempts so far.
struct RetryState {
  unsigned attempt = 1;                 ///< attempts made, including the failed one
  std::chrono::milliseconds elapsed{0}; ///< since the first failure
  std::chrono::milliseconds previous_delay{0};
  std::uint32_t random = 0; ///< uniform random bits for jitter
};

} // namespace sandbox
