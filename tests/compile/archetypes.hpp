// SPDX-License-Identifier: MIT
// Archetypes: for each concept of <sandbox/concepts.hpp>, the smallest type that models it and
// nothing more (no default constructor, copy or assignment it does not require, exact parameter
// and return types). Code instantiated with them may use only what the concept promises, so a
// concept weaker than what the library uses fails to compile here instead of in a user's build.
#pragma once

#include <sandbox/concepts.hpp>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace sandbox::archetypes {

using ms = std::chrono::milliseconds;

[[nodiscard]] inline error unimplemented() noexcept {
  return error(errc::unsupported, "archetype");
}

/// process_handle: movable; wait, poll, kill. Not default-constructible, not copyable.
class process_handle {
public:
  explicit process_handle(int) noexcept {}
  process_handle(process_handle&&) noexcept = default;
  process_handle& operator=(process_handle&&) noexcept = default;
  process_handle(const process_handle&) = delete;
  process_handle& operator=(const process_handle&) = delete;
  ~process_handle() = default;

  [[nodiscard]] result<ExecResult> wait(std::optional<ms>) noexcept { return unimplemented(); }
  [[nodiscard]] std::optional<int> poll() noexcept { return std::nullopt; }
  [[nodiscard]] result<void> kill(int) noexcept { return unimplemented(); }
};

/// stdin_process: a process_handle that also takes stdin.
class stdin_process_handle : public process_handle {
public:
  using process_handle::process_handle;
  [[nodiscard]] result<void> write_stdin(std::string_view) noexcept { return unimplemented(); }
  [[nodiscard]] result<void> close_stdin() noexcept { return unimplemented(); }
};

/// terminal_process: a stdin_process whose terminal can be resized.
class terminal_process_handle : public stdin_process_handle {
public:
  using stdin_process_handle::stdin_process_handle;
  [[nodiscard]] result<void> resize(TerminalSize) noexcept { return unimplemented(); }
};

/// taking_process: a process handle that can hand its result over. (A terminal one: clang 14
/// instantiates constrained members on explicit instantiation, so it needs every capability.)
class taking_process_handle : public terminal_process_handle {
public:
  using terminal_process_handle::terminal_process_handle;
  [[nodiscard]] result<ExecResult> take(std::optional<ms>) noexcept { return unimplemented(); }
};

/// wakeable_process: a process handle whose wait a descriptor can end early.
class wakeable_process_handle : public taking_process_handle {
public:
  using taking_process_handle::taking_process_handle;
  [[nodiscard]] result<ExecResult> wait_or_wake(std::optional<ms>, int) noexcept {
    return unimplemented();
  }
  [[nodiscard]] result<ExecResult> take_or_wake(std::optional<ms>, int) noexcept {
    return unimplemented();
  }
};

/// transport: the operations on an id, `process_type` and `shared()`; not copyable, not movable,
/// not default-constructible (only `shared()` makes one).
template <class Handle>
class transport {
public:
  using process_type = Handle;

  static std::shared_ptr<transport> shared() {
    return std::shared_ptr<transport>(new transport(0));
  }
  transport(const transport&) = delete;
  transport& operator=(const transport&) = delete;
  ~transport() = default;

  [[nodiscard]] result<SandboxInfo> create(const SandboxOptions&, std::string_view) noexcept {
    return unimplemented();
  }
  [[nodiscard]] result<SandboxInfo> get(std::string_view) noexcept { return unimplemented(); }
  [[nodiscard]] result<std::vector<SandboxInfo>> list(const ListFilter&) noexcept {
    return unimplemented();
  }
  [[nodiscard]] result<SandboxInfo> wait(std::string_view, State, ms) noexcept {
    return unimplemented();
  }
  [[nodiscard]] result<SandboxInfo> stop(std::string_view, ms, bool) noexcept {
    return unimplemented();
  }
  [[nodiscard]] result<process_type> exec(std::string_view, std::span<const std::string>,
                                          const ExecOptions&) noexcept {
    return unimplemented();
  }
  [[nodiscard]] result<std::string> read_file(std::string_view, std::string_view) noexcept {
    return unimplemented();
  }
  [[nodiscard]] result<void> write_file(std::string_view, std::string_view,
                                        std::string_view) noexcept {
    return unimplemented();
  }
  void release(std::string_view) noexcept {}

protected:
  explicit transport(int) noexcept {}
};

/// log_transport: a transport with `logs(id, offset, wait)`, nothing more.
template <class Handle>
class log_transport : public transport<Handle> {
public:
  static std::shared_ptr<log_transport> shared() {
    return std::shared_ptr<log_transport>(new log_transport());
  }
  [[nodiscard]] result<LogRead> logs(std::string_view, std::uint64_t, ms) noexcept {
    return unimplemented();
  }

private:
  log_transport() noexcept : transport<Handle>(0) {}
};

/// retry_policy: default-constructible and copy-constructible (not assignable); a const,
/// noexcept next_delay.
struct retry {
  retry() = default;
  retry(const retry&) = default;
  retry& operator=(const retry&) = delete;
  [[nodiscard]] std::optional<ms> next_delay(const error&, const RetryState&) const noexcept {
    return std::nullopt;
  }
};

/// error_policy, returning shape: errors come back in `result<T>`.
struct returning_errors {
  static constexpr bool throws = false;
  template <class T>
  using return_type = result<T>;
  template <class T>
  [[nodiscard]] static result<T> finish(result<T>&& r) noexcept {
    return std::move(r);
  }
};

/// error_policy, raising shape (`throws` is true and the plain value is returned), without a
/// `throw`, so that it compiles in both exception modes: an error ends the program.
struct raising_errors {
  static constexpr bool throws = true;
  template <class T>
  using return_type = T;
  template <class T>
  static T finish(result<T>&& r) noexcept {
    if (!r) std::abort();
    if constexpr (!std::is_void_v<T>) return std::move(r).assume_value();
  }
};

/// check_policy: a constant `enabled`.
struct checking {
  static constexpr bool enabled = true;
};

static_assert(sandbox::process_handle<archetypes::process_handle>);
static_assert(!sandbox::stdin_process<archetypes::process_handle>);
static_assert(stdin_process<stdin_process_handle>);
static_assert(sandbox::transport<transport<archetypes::process_handle>>);
static_assert(sandbox::transport<transport<stdin_process_handle>>);
static_assert(!supports_stdin<transport<archetypes::process_handle>>);
static_assert(supports_stdin<transport<stdin_process_handle>>);
static_assert(!sandbox::terminal_process<stdin_process_handle>);
static_assert(sandbox::terminal_process<terminal_process_handle>);
static_assert(!supports_terminal<transport<stdin_process_handle>>);
static_assert(supports_terminal<transport<terminal_process_handle>>);
static_assert(!sandbox::taking_process<terminal_process_handle>);
static_assert(sandbox::taking_process<taking_process_handle>);
static_assert(!sandbox::wakeable_process<taking_process_handle>);
static_assert(sandbox::wakeable_process<wakeable_process_handle>);
static_assert(retry_policy<retry>);
static_assert(error_policy<returning_errors>);
static_assert(error_policy<raising_errors>);
static_assert(check_policy<checking>);

} // namespace sandbox::archetypes
