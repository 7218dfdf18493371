// SPDX-License-Identifier: MIT
#include <sandbox/sandbox.hpp>

#include <catch2/catch.hpp>

using sandbox::errc;

TEST_CASE("errc has a category with a message for every code", "[errors]") {
  for (int v = static_cast<int>(errc::validation); v <= static_cast<int>(errc::unsupported); ++v) {
    std::error_code ec = sandbox::make_error_code(static_cast<errc>(v));
    CHECK(std::string(ec.category().name()) == "sandbox");
    CHECK(ec.message() != "unknown sandbox error");
  }
  CHECK(sandbox::error_category().message(999) == "unknown sandbox error");
  std::error_code ec = errc::timeout; // is_error_code_enum
  CHECK(ec == errc::timeout);
}

TEST_CASE("only unavailable, resource exhausted and request timeouts are transient", "[errors]") {
  CHECK(sandbox::is_transient(errc::unavailable));
  CHECK(sandbox::is_transient(errc::resource_exhausted));
  CHECK(sandbox::is_transient(errc::timeout));
  CHECK_FALSE(sandbox::is_transient(errc::command_timeout));
  CHECK_FALSE(sandbox::is_transient(errc::not_found));
  CHECK_FALSE(sandbox::is_transient(errc::validation));
  CHECK_FALSE(sandbox::is_transient(errc::transport));
}

TEST_CASE("return_errors passes results through", "[errors][policy]") {
  sandbox::result<int> ok = 3;
  CHECK(sandbox::return_errors::finish(std::move(ok)).value() == 3);
  sandbox::result<int> bad = sandbox::fail(errc::not_found, "no sandbox with id x");
  auto r = sandbox::return_errors::finish(std::move(bad));
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::not_found));
  CHECK(r.error().message == "no sandbox with id x");
}

#if SANDBOX_HAS_EXCEPTIONS
template <class Exception>
static void check_throws_as(errc code) {
  sandbox::result<void> r = sandbox::fail(code, "message for " + std::to_string(int(code)));
  try {
    sandbox::throw_errors::finish(std::move(r));
    FAIL("nothing thrown for errc " << int(code));
  } catch (const Exception& e) {
    CHECK(e.code() == code);
    CHECK(std::string(e.what()) == "message for " + std::to_string(int(code)));
  }
}

TEST_CASE("throw_errors throws the class matching each errc", "[errors][policy][exceptions]") {
  check_throws_as<sandbox::SandboxValidationError>(errc::validation);
  check_throws_as<sandbox::SandboxNotFoundError>(errc::not_found);
  check_throws_as<sandbox::SandboxNotRunningError>(errc::not_running);
  check_throws_as<sandbox::SandboxUnavailableError>(errc::unavailable);
  check_throws_as<sandbox::SandboxNotRunningError>(errc::unavailable); // anchor's hierarchy
  check_throws_as<sandbox::SandboxTimeoutError>(errc::timeout);
  check_throws_as<sandbox::SandboxTimeoutError>(errc::command_timeout);
  check_throws_as<sandbox::SandboxFailedError>(errc::failed);
  check_throws_as<sandbox::SandboxTerminatedError>(errc::terminated);
  check_throws_as<sandbox::SandboxExecutionError>(errc::execution);
  check_throws_as<sandbox::SandboxAuthenticationError>(errc::authentication);
  check_throws_as<sandbox::SandboxResourceExhaustedError>(errc::resource_exhausted);
  check_throws_as<sandbox::SandboxFileError>(errc::file_not_found);
  check_throws_as<sandbox::SandboxFileError>(errc::file_too_large);
  check_throws_as<sandbox::SandboxError>(errc::protocol);
  check_throws_as<std::system_error>(errc::server_error);
}

TEST_CASE("a thrown error keeps the server details and the ExecResult", "[errors][exceptions]") {
  sandbox::error e(errc::execution, "command false failed with exit code 1");
  auto x = std::make_shared<sandbox::ExecResult>();
  x->returncode = 1;
  x->command = {"false"};
  e.exec_result = x;
  auto info = std::make_shared<sandbox::server_error_info>();
  info->reason = "SOME_REASON";
  e.server = info;
  try {
    sandbox::throw_errors::raise(e);
  } catch (const sandbox::SandboxExecutionError& ex) {
    CHECK(ex.exec_result().returncode == 1);
    CHECK(ex.exec_result().command == std::vector<std::string>{"false"});
    REQUIRE(ex.server());
    CHECK(ex.server()->reason == "SOME_REASON");
  }
}
#else
TEST_CASE("without exceptions the throwing policy cannot be chosen", "[errors][policy]") {
  STATIC_REQUIRE_FALSE(sandbox::error_policy<sandbox::throw_errors>);
  STATIC_REQUIRE(sandbox::error_policy<sandbox::return_errors>);
}
#endif
