// SPDX-License-Identifier: MIT
// The user-facing scenarios, written once and run on every transport. A test file defines
// SANDBOX_SCENARIO_ENVS (a list of environment types) and includes this header. An environment
// provides `using box = basic_sandbox<Transport, Retry, return_errors>;` and
// `static std::shared_ptr<Transport> transport();`. Results are checked as values, so the
// scenarios run in both exception modes.
#pragma once

#include "../support/every_byte.hpp"

#include <sandbox/sandbox.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <string_view>
#include <thread>

namespace scenarios {

using namespace std::chrono_literals;
using sandbox::errc;
using sandbox::State;

template <class Env>
typename Env::box keep_alive(sandbox::SandboxOptions o = {}) {
  auto made = Env::box::run(std::move(o), Env::transport());
  if (!made) FAIL("run failed: " << made.error().message);
  return std::move(made).value();
}

using sandbox::testing::every_byte;

inline std::chrono::milliseconds since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               t);
}

} // namespace scenarios

TEMPLATE_TEST_CASE("a main command runs to completion and reports its exit code",
                   "[scenario][lifecycle]", SANDBOX_SCENARIO_ENVS) {
  using namespace scenarios;
  auto job = TestType::box::run(sandbox::SandboxOptions{.command = {"sh", "-c", "exit 0"}},
                                TestType::transport());
  REQUIRE(job);
  CHECK(job.value().wait_until_complete(30s));
  CHECK(job.value().returncode() == 0);
  CHECK(job.value().state().value() == State::COMPLETED);
}

TEMPLATE_TEST_CASE("a main command that exits non-zero or by a signal completes the sandbox",
                   "[scenario][lifecycle]", SANDBOX_SCENARIO_ENVS) {
  using namespace scenarios;
  // The job ran and ended on its own: its exit code is the caller's to judge, not an error.
  auto failing = TestType::box::run(sandbox::SandboxOptions{.command = {"sh", "-c", "exit 7"}},
                                    TestType::transport());
  REQUIRE(failing);
  auto r = failing.value().wait_until_complete(30s);
  INFO((r ? std::string() : r.error().message));
  CHECK(r);
  CHECK(failing.value().returncode() == 7);
  CHECK(failing.value().state().value() == State::COMPLETED);
  CHECK(failing.value().status_reason().empty());
  CHECK(failing.value().wait(30s)); // COMPLETED is no failure to start either

  // A signal from inside (not the memory limit): 128 + the signal number.
  auto killed = TestType::box::run(
      sandbox::SandboxOptions{.command = {"sh", "-c", "kill -KILL $$"}}, TestType::transport());
  REQUIRE(killed);
  CHECK(killed.value().wait_until_complete(30s));
  CHECK(killed.value().returncode() == 137);
  CHECK(killed.value().state().value() == State::COMPLETED);
  CHECK_FALSE(killed.value().oom_killed());
}

TEMPLATE_TEST_CASE("a main command that cannot start fails the sandbox", "[scenario][lifecycle]",
                   SANDBOX_SCENARIO_ENVS) {
  using namespace scenarios;
  auto job = TestType::box::run(sandbox::SandboxOptions{.command = {"/definitely/not/a/program"}},
                                TestType::transport());
  REQUIRE(job);
  auto r = job.value().wait_until_complete(30s);
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::failed));
  CHECK_THAT(r.error().message,
             Catch::Contains("not found") && Catch::Contains("/definitely/not/a/program"));
  CHECK(job.value().state().value() == State::FAILED);
  CHECK_FALSE(job.value().returncode()); // it never ran: there is no exit code
  CHECK_FALSE(job.value().oom_killed());
  CHECK_THAT(job.value().status_reason(), Catch::Contains("not found"));
  // wait() until RUNNING reports the failure to start too.
  CHECK(job.value().wait(30s).error().is(errc::failed));

  // A file that exists but cannot be executed.
  auto data = TestType::box::run(sandbox::SandboxOptions{.command = {"/etc/passwd"}},
                                 TestType::transport());
  REQUIRE(data);
  auto d = data.value().wait_until_complete(30s);
  REQUIRE_FALSE(d);
  CHECK(d.error().is(errc::failed));
  CHECK_THAT(d.error().message,
             Catch::Contains("cannot be executed") && Catch::Contains("/etc/passwd"));
}

TEMPLATE_TEST_CASE("a sandbox stopped while its main command runs is terminated",
                   "[scenario][lifecycle]", SANDBOX_SCENARIO_ENVS) {
  using namespace scenarios;
  auto job = TestType::box::run(sandbox::SandboxOptions{.command = {"sleep", "infinity"}},
                                TestType::transport());
  REQUIRE(job);
  CHECK(job.value().stop(10s));
  CHECK(job.value().state().value() == State::TERMINATED);
  CHECK(job.value().returncode() == 143); // sleep dies of the stop's SIGTERM
  auto r = job.value().wait_until_complete(30s);
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::terminated));
  CHECK(job.value().wait_until_complete(30s, false));
}

TEMPLATE_TEST_CASE("a keep-alive sandbox runs several commands", "[scenario][exec]",
                   SANDBOX_SCENARIO_ENVS) {
  using namespace scenarios;
  auto box = keep_alive<TestType>();
  CHECK(box.state().value() == State::RUNNING);
  auto r = box.exec({"sh", "-c", "echo out; echo err >&2; exit 4"}).result();
  REQUIRE(r);
  CHECK(r.value().stdout_text == "out\n");
  CHECK(r.value().stderr_text == "err\n");
  CHECK(r.value().returncode == 4);
  CHECK(r.value().command ==
        std::vector<std::string>{"sh", "-c", "echo out; echo err >&2; exit 4"});
  CHECK(r.value().stdout_bytes_produced == 4);

  auto second = box.exec({"echo", "again"});
  CHECK(second.wait().value() == 0);
  CHECK(second.returncode() == 0);
  CHECK(second.result().value().stdout_text == "again\n");

  auto missing = box.exec({"no-such-program-here"}).result();
  REQUIRE(missing);
  CHECK(missing.value().returncode == 127);
  CHECK(missing.value().stderr_text.find("no-such-program-here") != std::string::npos);
}

TEMPLATE_TEST_CASE("exec runs beside a long-running main command", "[scenario][exec]",
                   SANDBOX_SCENARIO_ENVS) {
  using namespace scenarios;
  auto box = keep_alive<TestType>(sandbox::SandboxOptions{.command = {"sleep", "infinity"}});
  auto r = box.exec({"sh", "-c", "echo beside"}).result();
  REQUIRE(r);
  CHECK(r.value().stdout_text == "beside\n");
  CHECK(box.state().value() == State::RUNNING);
  CHECK(box.stop(2s));
  CHECK(box.state().value() == State::TERMINATED);
}

TEMPLATE_TEST_CASE("check makes a non-zero exit an error with code, output and argv",
                   "[scenario][check]", SANDBOX_SCENARIO_ENVS) {
  using namespace scenarios;
  auto box = keep_alive<TestType>();
  std::vector<std::string> argv{"sh", "-c", "echo before; echo why >&2; exit 3"};
  auto r = box.template exec<sandbox::check>(argv).result();
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::execution));
  REQUIRE(r.error().exec_result);
  CHECK(r.error().exec_result->returncode == 3);
  CHECK(r.error().exec_result->stdout_text == "before\n");
  CHECK(r.error().exec_result->stderr_text == "why\n");
  CHECK(r.error().exec_result->command == argv);
  CHECK(r.error().message.find("exit code 3") != std::string::npos);

  auto runtime = box.exec({"false"}, {.check = true}).result();
  REQUIRE_FALSE(runtime);
  CHECK(runtime.error().is(errc::execution));
  CHECK(box.template exec<sandbox::check>({"true"}).result());
}

TEMPLATE_TEST_CASE("an exec timeout kills the whole process group and keeps the output",
                   "[scenario][timeout]", SANDBOX_SCENARIO_ENVS) {
  using namespace scenarios;
  auto box = keep_alive<TestType>();
  auto start = std::chrono::steady_clock::now();
  auto r =
      box.exec({"sh", "-c", "echo started; sleep 60 & sleep 60; echo never"}, {.timeout = 500ms})
          .result();
  auto took = since(start);
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::command_timeout));
  CHECK(took >= 450ms);
  CHECK(took < 5s);
  REQUIRE(r.error().exec_result);
  CHECK(r.error().exec_result->stdout_text == "started\n");
  // Neither sleep survived: the background one was in the same process group. Over gRPC the
  // timeout is the call's deadline, which the client sees pass while the server is still
  // killing: the kill is awaited, not assumed instant.
  std::string left;
  for (int i = 0; i < 100; ++i) {
    auto ps = box.exec({"sh", "-c", "for p in /proc/[0-9]*; do cat $p/comm; done"}).result();
    REQUIRE(ps);
    left = ps.value().stdout_text;
    if (left.find("sleep") == std::string::npos) break;
    std::this_thread::sleep_for(100ms);
  }
  CHECK(left.find("sleep") == std::string::npos);
}

TEMPLATE_TEST_CASE("cwd and env apply to one command", "[scenario][exec]", SANDBOX_SCENARIO_ENVS) {
  using namespace scenarios;
  auto box = keep_alive<TestType>(sandbox::SandboxOptions{.env = {{"BASE", "b"}, {"OVER", "1"}}});
  auto r = box.exec({"sh", "-c", "pwd; echo $BASE $OVER $ONLY"},
                    {.cwd = "/tmp", .env = {{"OVER", "2"}, {"ONLY", "x y"}}})
               .result();
  REQUIRE(r);
  CHECK(r.value().stdout_text == "/tmp\nb 2 x y\n");
  CHECK(r.value().command == std::vector<std::string>{"sh", "-c", "pwd; echo $BASE $OVER $ONLY"});

  auto rel = box.exec({"pwd"}, {.cwd = "tmp"}).result();
  REQUIRE_FALSE(rel);
  CHECK(rel.error().is(errc::validation));
  CHECK(rel.error().message.find("cwd") != std::string::npos);
  CHECK(rel.error().message.find("tmp") != std::string::npos);
  auto empty = box.exec({"pwd"}, {.cwd = ""}).result();
  REQUIRE_FALSE(empty);
  CHECK(empty.error().is(errc::validation));
  auto no_argv = box.exec({}).result();
  REQUIRE_FALSE(no_argv);
  CHECK(no_argv.error().is(errc::validation));
  CHECK(no_argv.error().message.find("empty") != std::string::npos);
}

TEMPLATE_TEST_CASE("large output on both streams at once arrives whole", "[scenario][exec]",
                   SANDBOX_SCENARIO_ENVS) {
  using namespace scenarios;
  auto box = keep_alive<TestType>();
  // 1 MiB on each stream, interleaved: a reader that drains one pipe at a time would deadlock.
  auto r = box.exec({"sh", "-c",
                     "i=0; while [ $i -lt 16 ]; do head -c 65536 /dev/zero; "
                     "head -c 65536 /dev/zero >&2; i=$((i+1)); done"},
                    {.timeout = 60s})
               .result();
  REQUIRE(r);
  CHECK(r.value().stdout_text.size() == 1u << 20);
  CHECK(r.value().stderr_text.size() == 1u << 20);
  CHECK(r.value().returncode == 0);
}

TEMPLATE_TEST_CASE("binary output keeps every byte around the read, page and growth boundaries",
                   "[scenario][exec][output]", SANDBOX_SCENARIO_ENVS) {
  using namespace scenarios;
  auto box = keep_alive<TestType>();
  const std::string data = every_byte((2u << 20) + 3);
  REQUIRE(box.write_file("/tmp/bin", data));
  const std::string twice = data + data;
  constexpr std::size_t KiB = 1024, MiB = 1024 * 1024;
  for (std::size_t n :
       {std::size_t{1}, 4 * KiB - 1, 4 * KiB, 4 * KiB + 1, 16 * KiB - 1, 16 * KiB, 16 * KiB + 1,
        64 * KiB + 1, MiB - 1, MiB, MiB + 1, 2 * MiB + 1, 4 * MiB - 1, 4 * MiB + 1}) {
    INFO("n = " << n);
    // Both streams at once: the same bytes on each.
    const std::string cmd = "cat /tmp/bin /tmp/bin | head -c " + std::to_string(n) +
                            " & cat /tmp/bin /tmp/bin | head -c " + std::to_string(n) +
                            " >&2; wait";
    auto r = box.exec({"sh", "-c", cmd}, {.timeout = 120s}).result();
    REQUIRE(r);
    const auto& x = r.value();
    CHECK(x.stdout_text.size() == n);
    CHECK(x.stderr_text.size() == n);
    CHECK((x.stdout_text == std::string_view(twice).substr(0, n)));
    CHECK((x.stderr_text == std::string_view(twice).substr(0, n)));
    CHECK(x.stdout_bytes_produced == n);
    CHECK(x.stderr_bytes_produced == n);
    CHECK_FALSE(x.stdout_truncated);
    CHECK_FALSE(x.stderr_truncated);
  }
  // Capped around the same boundaries: the kept part is the exact prefix, the rest is counted.
  for (std::size_t cap : {16 * KiB - 1, 16 * KiB, MiB - 1, MiB, MiB + 1}) {
    INFO("cap = " << cap);
    auto r = box.exec({"cat", "/tmp/bin"}, {.timeout = 120s, .max_output_bytes = cap}).result();
    REQUIRE(r);
    CHECK((r.value().stdout_text == std::string_view(data).substr(0, cap)));
    CHECK(r.value().stdout_truncated);
    CHECK(r.value().stdout_bytes_produced == data.size());
  }
}

TEMPLATE_TEST_CASE("stop ends the sandbox; it is idempotent; exec afterwards fails",
                   "[scenario][lifecycle]", SANDBOX_SCENARIO_ENVS) {
  using namespace scenarios;
  auto box = keep_alive<TestType>();
  auto running = box.exec({"sleep", "60"});
  auto start = std::chrono::steady_clock::now();
  CHECK(box.stop(5s));
  CHECK(since(start) < 4s); // sleep dies on SIGTERM: no need to wait for the grace period
  CHECK(box.state().value() == State::TERMINATED);
  CHECK(box.stop());
  auto r = running.result(10s);
  CHECK_FALSE((r.has_value() && r.value().returncode == 0));
  auto after = box.exec({"true"}).result();
  REQUIRE_FALSE(after);
  CHECK((after.error().is(errc::not_running) || after.error().is(errc::not_found)));
  auto done = box.wait_until_complete(1s);
  REQUIRE_FALSE(done);
  CHECK(done.error().is(errc::terminated));
  CHECK(box.wait_until_complete(1s, false));
}
