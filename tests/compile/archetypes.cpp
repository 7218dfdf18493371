// SPDX-License-Identifier: MIT
// The core templates instantiated with nothing but archetypes (tests/compile/archetypes.hpp):
// every member of basic_sandbox and Process, in both error-policy shapes, with and without the
// stdin, terminal and log capabilities. Built in both exception modes; running it checks nothing
// more.
#include <sandbox/basic_sandbox.hpp>
#include <sandbox/process.hpp>

#include "archetypes.hpp"

#include <type_traits>

namespace arch = sandbox::archetypes;
using plain_transport = arch::transport<arch::process_handle>;
using stdin_transport = arch::transport<arch::stdin_process_handle>;

// Explicit instantiation definitions instantiate every member whose constraints hold.
template class sandbox::basic_sandbox<plain_transport, arch::retry, arch::returning_errors>;
template class sandbox::basic_sandbox<plain_transport, arch::retry, arch::raising_errors>;
template class sandbox::basic_sandbox<stdin_transport, arch::retry, arch::returning_errors>;
template class sandbox::basic_sandbox<stdin_transport, arch::retry, arch::raising_errors>;
template class sandbox::Process<stdin_transport, arch::returning_errors, arch::checking>;
template class sandbox::Process<stdin_transport, arch::raising_errors, arch::checking>;
// A handle that hands its result over: `result() &&` takes it.
using taking_transport = arch::transport<arch::taking_process_handle>;
template class sandbox::Process<taking_transport, arch::returning_errors, arch::checking>;
template class sandbox::Process<taking_transport, arch::raising_errors, arch::checking>;

// Without the stdin capability, by use (clang 14 instantiates members whose constraints fail).
template <class P>
void use_process(P& p, P&& other) {
  (void)p.result();
  (void)p.try_result({});
  (void)p.wait();
  (void)p.try_wait({});
  (void)p.poll();
  (void)p.returncode();
  (void)p.kill();
  (void)p.try_kill(9);
  (void)p.command();
  p = std::move(other);
  P moved(std::move(p));
}
using plain_returning = sandbox::Process<plain_transport, arch::returning_errors, arch::checking>;
using plain_raising = sandbox::Process<plain_transport, arch::raising_errors, arch::checking>;
template void use_process(plain_returning&, plain_returning&&);
template void use_process(plain_raising&, plain_raising&&);

// Member templates are instantiated by use.
template <class Box>
void use_member_templates(Box& box) {
  (void)box.template exec<arch::checking>({"x"}, {});
  (void)box.template try_exec<arch::checking>({"x"}, {});
  (void)box.exec({"x"});
  (void)box.try_exec({"x"});
}
template void
use_member_templates(sandbox::basic_sandbox<plain_transport, arch::retry, arch::returning_errors>&);
template void
use_member_templates(sandbox::basic_sandbox<plain_transport, arch::retry, arch::raising_errors>&);
template void
use_member_templates(sandbox::basic_sandbox<stdin_transport, arch::retry, arch::returning_errors>&);
template void
use_member_templates(sandbox::basic_sandbox<stdin_transport, arch::retry, arch::raising_errors>&);

// The log members exist exactly when the transport keeps logs.
using log_transport = arch::log_transport<arch::process_handle>;
static_assert(sandbox::log_transport<log_transport>);
static_assert(!sandbox::log_transport<plain_transport>);
template class sandbox::basic_sandbox<log_transport, arch::retry, arch::returning_errors>;
template class sandbox::basic_sandbox<log_transport, arch::retry, arch::raising_errors>;
template <class Box>
void use_log_members(Box& box) {
  (void)box.follow_logs([](std::string_view) noexcept {});
  (void)box.try_follow_logs([](std::string_view) noexcept {}, std::chrono::milliseconds(1));
}
template void
use_log_members(sandbox::basic_sandbox<log_transport, arch::retry, arch::returning_errors>&);
template void
use_log_members(sandbox::basic_sandbox<log_transport, arch::retry, arch::raising_errors>&);
template <class B>
concept has_logs = requires(B& b) {
  b.logs();
};
static_assert(has_logs<sandbox::basic_sandbox<log_transport, arch::retry, arch::returning_errors>>);
static_assert(
    !has_logs<sandbox::basic_sandbox<plain_transport, arch::retry, arch::returning_errors>>);

// The stdin members exist exactly when the transport's process type has the capability.
template <class P>
concept has_write_stdin = requires(P& p) {
  p.write_stdin("x");
};
static_assert(has_write_stdin<sandbox::Process<stdin_transport, arch::returning_errors>>);
static_assert(!has_write_stdin<sandbox::Process<plain_transport, arch::returning_errors>>);

// The terminal members exist exactly when the transport's process type has the capability
// (member templates: instantiated by use).
using terminal_transport = arch::transport<arch::terminal_process_handle>;
template <class P>
void use_terminal(P& p) {
  (void)p.resize({});
  (void)p.try_resize({.cols = 1, .rows = 1});
  (void)p.write_stdin("x");
}
using terminal_returning =
    sandbox::Process<terminal_transport, arch::returning_errors, arch::checking>;
using terminal_raising = sandbox::Process<terminal_transport, arch::raising_errors, arch::checking>;
template void use_terminal(terminal_returning&);
template void use_terminal(terminal_raising&);
template <class P>
concept has_resize = requires(P& p) {
  p.resize(sandbox::TerminalSize{});
};
static_assert(has_resize<terminal_returning>);
static_assert(!has_resize<sandbox::Process<stdin_transport, arch::returning_errors>>);

// What the concepts reject: a `throws` or `enabled` that is not a constant expression (the
// library branches on them with `if constexpr`), or that is not a bool.
struct runtime_throws : arch::returning_errors {
  static inline bool throws = false;
};
struct int_throws : arch::returning_errors {
  static constexpr int throws = 0;
};
struct runtime_check {
  static inline bool enabled = true;
};
static_assert(!sandbox::error_policy<runtime_throws>);
static_assert(!sandbox::error_policy<int_throws>);
static_assert(!sandbox::check_policy<runtime_check>);
static_assert(!sandbox::check_policy<int>);

// The library's own models.
static_assert(sandbox::error_policy<sandbox::return_errors>);
static_assert(sandbox::check_policy<sandbox::check> && sandbox::check_policy<sandbox::no_check>);
static_assert(sandbox::retry_policy<sandbox::no_retry>);

int main() { return 0; }
