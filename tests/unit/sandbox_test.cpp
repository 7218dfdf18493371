// SPDX-License-Identifier: MIT
// basic_sandbox and Process logic over a scripted transport: state mapping, check, lifetime.
#include <sandbox/sandbox.hpp>

#include "../support/scripted_transport.hpp"

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
using sandbox::errc;
using sandbox::State;
using Scripted = sandbox::testing::scripted_transport;
using Box = sandbox::basic_sandbox<Scripted, sandbox::no_retry, sandbox::return_errors>;

static sandbox::ExecResult exited(int code, std::string out = "", std::string err = "") {
  sandbox::ExecResult r;
  r.returncode = code;
  r.stdout_text = std::move(out);
  r.stderr_text = std::move(err);
  r.command = {"cmd"};
  return r;
}

TEST_CASE("check turns a non-zero exit into an execution error carrying the result",
          "[sandbox][check]") {
  auto t = std::make_shared<Scripted>();
  auto box = Box::run({}, t).value();
  t->exec_results.push_back(exited(3, "partial output", "boom\n"));
  auto r = box.exec<sandbox::check>({"cmd"}).result();
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::execution));
  CHECK(r.error().message == "command cmd failed with exit code 3: boom");
  REQUIRE(r.error().exec_result);
  CHECK(r.error().exec_result->returncode == 3);
  CHECK(r.error().exec_result->stdout_text == "partial output");
  CHECK(r.error().exec_result->command == std::vector<std::string>{"cmd"});

  t->exec_results.push_back(exited(3));
  auto unchecked = box.exec({"cmd"}).result();
  REQUIRE(unchecked);
  CHECK(unchecked.value().returncode == 3);

  t->exec_results.push_back(exited(4));
  auto runtime_checked = box.exec({"cmd"}, {.check = true}).result();
  REQUIRE_FALSE(runtime_checked);
  CHECK(runtime_checked.error().is(errc::execution));

  t->exec_results.push_back(exited(0, "fine"));
  auto ok = box.exec<sandbox::check>({"cmd"}).result();
  REQUIRE(ok);
  CHECK(ok.value().stdout_text == "fine");
}

TEST_CASE("wait maps FAILED and TERMINATED to their errors", "[sandbox][state]") {
  auto t = std::make_shared<Scripted>();
  auto box = Box::run({}, t).value();
  t->wait_results.push_back(sandbox::SandboxInfo{"sbx-test", State::FAILED, 2, {}});
  auto r = box.wait_until_complete(1s);
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::failed));
  CHECK(r.error().message == "sandbox sbx-test failed (main process exited with code 2)");
  CHECK(box.returncode() == 2);

  t->wait_results.push_back(sandbox::SandboxInfo{"sbx-test", State::TERMINATED, {}, {}});
  CHECK(box.wait_until_complete(1s).error().is(errc::terminated));
  t->wait_results.push_back(sandbox::SandboxInfo{"sbx-test", State::TERMINATED, {}, {}});
  CHECK(box.wait_until_complete(1s, false));
  t->wait_results.push_back(sandbox::SandboxInfo{"sbx-test", State::COMPLETED, 0, {}});
  CHECK(box.wait());
  t->wait_results.push_back(sandbox::fail(errc::timeout, "still RUNNING"));
  CHECK(box.wait_until_complete(1ms).error().is(errc::timeout));
}

TEST_CASE("a sandbox leaving scope is stopped once and released", "[sandbox][lifetime]") {
  auto t = std::make_shared<Scripted>();
  {
    auto box = Box::run({}, t).value();
    auto moved = std::move(box); // only the owner stops it
  }
  CHECK(t->calls == std::vector<std::string>{"create", "stop sbx-test", "release sbx-test"});

  t->calls.clear();
  {
    auto box = Box::run({}, t).value();
    CHECK(box.stop());
    CHECK(box.stop()); // idempotent: no second request
  }
  CHECK(t->calls == std::vector<std::string>{"create", "stop sbx-test", "release sbx-test"});
}

TEST_CASE("exec errors reach result() in return_errors mode", "[sandbox]") {
  auto t = std::make_shared<Scripted>();
  auto box = Box::run({}, t).value();
  t->exec_results.push_back(sandbox::fail(errc::not_running, "sandbox sbx-test is not running"));
  auto p = box.exec({"x"});
  CHECK_FALSE(p.poll());
  auto r = p.result();
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::not_running));
  CHECK(p.command() == std::vector<std::string>{"x"});
}

#if SANDBOX_HAS_EXCEPTIONS
TEST_CASE("the throwing policy throws at exec when the command cannot start",
          "[sandbox][exceptions]") {
  using ThrowingBox = sandbox::basic_sandbox<Scripted, sandbox::no_retry, sandbox::throw_errors>;
  auto t = std::make_shared<Scripted>();
  auto box = ThrowingBox::run({}, t);
  t->exec_results.push_back(sandbox::fail(errc::validation, "exec: command cannot be empty"));
  // The scripted process carries the error; the throw comes from result().
  CHECK_THROWS_AS(box.exec({"x"}).result(), sandbox::SandboxValidationError);
  t->exec_results.push_back(exited(5));
  CHECK_THROWS_AS(box.exec<sandbox::check>({"x"}).result(), sandbox::SandboxExecutionError);
  CHECK(box.exec<sandbox::check>({"x"}).wait() == 0);
}
#endif

TEST_CASE("a moved-from sandbox reports errors instead of crashing", "[sandbox][lifetime]") {
  auto t = std::make_shared<Scripted>();
  auto box = Box::run({}, t).value();
  auto other = std::move(box);
  CHECK(box.state().error().is(errc::not_found)); // NOLINT(bugprone-use-after-move)
  CHECK(box.stop().error().is(errc::not_found));
  CHECK(box.wait_until_complete(1s).error().is(errc::not_found));
  CHECK(box.exec({"x"}).result().error().is(errc::not_found));
  CHECK(box.read_file("/x").error().is(errc::not_found));
  CHECK(box.write_file("/x", "y").error().is(errc::not_found));
  CHECK(other.state().value() == State::RUNNING);
}
