// SPDX-License-Identifier: MIT
// basic_sandbox and Process logic over a scripted transport: state mapping, check, lifetime.
#include <sandbox/sandbox.hpp>

#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "../support/residency.hpp"
#include "../support/sanitized.hpp"
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
  // The error says why the sandbox failed, as the transport reported it.
  t->wait_results.push_back(sandbox::SandboxInfo{
      "sbx-test", State::FAILED, {}, {}, false, "the main command was not found: 'x'"});
  auto r = box.wait_until_complete(1s);
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::failed));
  CHECK(r.error().message == "sandbox sbx-test failed: the main command was not found: 'x'");
  CHECK(box.status_reason() == "the main command was not found: 'x'");
  CHECK_FALSE(box.returncode());
  // Without a reason, an OOM kill still names the memory limit.
  auto oom = Box::run({}, t).value();
  t->wait_results.push_back(sandbox::SandboxInfo{"sbx-test", State::FAILED, 137, {}, true});
  CHECK(oom.wait_until_complete(1s).error().message ==
        "sandbox sbx-test failed: killed for exceeding its memory limit");
  CHECK(oom.oom_killed());
  CHECK(oom.returncode() == 137);
  // A main process that exited non-zero completed: no error, the code is the caller's to read.
  auto done = Box::run({}, t).value();
  t->wait_results.push_back(sandbox::SandboxInfo{"sbx-test", State::COMPLETED, 2, {}});
  CHECK(done.wait_until_complete(1s));
  CHECK(done.returncode() == 2);

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
  // One errc for every operation on a moved-from object: the caller's mistake (validation).
  CHECK(box.state().error().is(errc::validation)); // NOLINT(bugprone-use-after-move)
  CHECK(box.stop().error().is(errc::validation));
  CHECK(box.wait().error().is(errc::validation));
  CHECK(box.wait_until_complete(1s).error().is(errc::validation));
  CHECK(box.exec({"x"}).result().error().is(errc::validation));
  CHECK(box.try_exec({"x"}).error().is(errc::validation));
  CHECK(box.read_file("/x").error().is(errc::validation));
  CHECK(box.write_file("/x", "y").error().is(errc::validation));
  CHECK(box.read_file("/x").error().message == "this sandbox object was moved from");
  CHECK(box.id().empty());
  CHECK(other.state().value() == State::RUNNING);
  CHECK(t->calls == std::vector<std::string>{"create", "get sbx-test"});
}

TEST_CASE("a moved-from process reports the same error as a moved-from sandbox",
          "[sandbox][lifetime]") {
  auto t = std::make_shared<Scripted>();
  auto box = Box::run({}, t).value();
  t->exec_results.push_back(exited(0, "out"));
  auto p = box.exec({"cmd"});
  auto q = std::move(p);
  CHECK(p.result().error().is(errc::validation)); // NOLINT(bugprone-use-after-move)
  CHECK(p.result().error().message == "this process object was moved from");
  CHECK(p.wait().error().is(errc::validation));
  CHECK(p.kill().error().is(errc::validation));
  CHECK_FALSE(p.poll());
  CHECK_FALSE(p.returncode());
  CHECK(q.result().value().stdout_text == "out");

  // Assignment moves too, and a process that never started keeps its own error.
  t->exec_results.push_back(sandbox::fail(errc::not_running, "sandbox sbx-test is not running"));
  auto never = box.exec({"cmd"});
  p = std::move(never);
  CHECK(p.result().error().is(errc::not_running));
  CHECK(never.result().error().is(errc::validation)); // NOLINT(bugprone-use-after-move)
}

TEST_CASE("every try_ twin returns a result and mirrors its operation", "[sandbox][try]") {
  auto t = std::make_shared<Scripted>();
  auto made = Box::try_run({}, t);
  REQUIRE(made);
  Box& box = made.value();
  CHECK(box.try_state().value() == State::RUNNING);
  CHECK(box.try_wait(1s));
  t->wait_results.push_back(sandbox::SandboxInfo{"sbx-test", State::FAILED, 2, {}});
  CHECK(box.try_wait_until_complete(1s).error().is(errc::failed));
  t->read_results.push_back(std::string("content"));
  CHECK(box.try_read_file("/f").value() == "content");
  CHECK(box.try_write_file("/f", "data"));
  t->exec_results.push_back(exited(3));
  auto p = box.try_exec<sandbox::check>({"cmd"});
  REQUIRE(p);
  CHECK(p.value().try_wait().error().is(errc::execution));
  CHECK(p.value().try_kill());
  CHECK(Box::try_list({}, t).value().empty());
  CHECK(box.try_stop());
  CHECK(t->calls == std::vector<std::string>{"create", "get sbx-test", "wait sbx-test RUNNING",
                                             "wait sbx-test COMPLETED", "read_file", "write_file",
                                             "exec sbx-test", "list", "stop sbx-test"});
  // A command given to try_run becomes the main process, as with run.
  CHECK(Box::try_run({"true"}));
}

TEST_CASE("run takes options as designated initializers naming any member, and a command as a "
          "braced list or a vector",
          "[sandbox][options]") {
  // GCC 12 also read a designated list as a list of strings and found these calls ambiguous
  // (env, tags, command, network_allow, mounted_files, annotations): they did not compile.
  auto t = Scripted::shared();
  t->created.clear();
  CHECK(Box::run({.env = {{"K", "V"}}}));
  CHECK(Box::run({.tags = {"a"}}));
  CHECK(Box::run({.command = {"sleep", "1"}}));
  CHECK(Box::try_run({.network_allow = {"10.0.0.0/8"}}));
  CHECK(Box::try_run({.mounted_files = {{"/f", "data"}}}));
  CHECK(Box::run({.annotations = {{"a", "b"}}}));
  // A command, whatever mix of literals and strings it is written with.
  const std::string script = "app.py";
  CHECK(Box::run({"sh", "-c", "exit 3"}, {.tags = {"b"}}));
  CHECK(Box::run({"python3", script}));
  CHECK(Box::try_run({script}));
  CHECK(Box::run({{"one"}}));
  std::vector<std::string> argv{"true"};
  CHECK(Box::run(argv));
  CHECK(Box::try_run(std::vector<std::string>{"false"}, {.env = {{"X", "1"}}}));
  CHECK(Box::run({}));
  CHECK(Box::run({}, {.image = "img"}));
  using list = std::vector<std::string>;
  REQUIRE(t->created.size() == 14);
  CHECK(t->created[0].env == sandbox::env_map{{"K", "V"}});
  CHECK(t->created[1].tags == list{"a"});
  CHECK(t->created[2].command == list{"sleep", "1"});
  CHECK(t->created[3].network_allow == list{"10.0.0.0/8"});
  REQUIRE(t->created[4].mounted_files.size() == 1);
  CHECK(t->created[4].mounted_files[0].path == "/f");
  CHECK(t->created[4].mounted_files[0].content == "data");
  CHECK(t->created[5].annotations == sandbox::env_map{{"a", "b"}});
  CHECK(t->created[6].command == list{"sh", "-c", "exit 3"});
  CHECK(t->created[6].tags == list{"b"});
  CHECK(t->created[7].command == list{"python3", "app.py"});
  CHECK(t->created[7].image.empty());
  CHECK(t->created[8].command == list{"app.py"});
  CHECK(t->created[9].command == list{"one"});
  CHECK(t->created[9].image.empty());
  CHECK(t->created[10].command == list{"true"});
  CHECK(argv == list{"true"});
  CHECK(t->created[11].command == list{"false"});
  CHECK(t->created[11].env == sandbox::env_map{{"X", "1"}});
  CHECK(t->created[12].command.empty()); // keep-alive
  CHECK(t->created[13].command.empty());
  CHECK(t->created[13].image == "img");
}

#if SANDBOX_HAS_EXCEPTIONS
TEST_CASE("try_ twins never throw under the throwing policy", "[sandbox][try][exceptions]") {
  using ThrowingBox = sandbox::basic_sandbox<Scripted, sandbox::no_retry, sandbox::throw_errors>;
  auto t = std::make_shared<Scripted>();
  t->create_results.push_back(sandbox::fail(errc::unavailable, "no capacity"));
  CHECK(ThrowingBox::try_run({}, t).error().is(errc::unavailable));
  t->create_results.push_back(sandbox::fail(errc::unavailable, "no capacity"));
  CHECK_THROWS_AS(ThrowingBox::run({}, t).id(), sandbox::SandboxNotRunningError);

  auto box = ThrowingBox::run({}, t);
  t->exec_results.push_back(exited(5));
  auto p = box.try_exec<sandbox::check>({"x"});
  REQUIRE(p);
  CHECK(p.value().try_result().error().is(errc::execution));
  CHECK_THROWS_AS(p.value().result(), sandbox::SandboxExecutionError);
  t->read_results.push_back(sandbox::fail(errc::file_not_found, "no /f"));
  CHECK(box.try_read_file("/f").error().is(errc::file_not_found));
  t->wait_results.push_back(sandbox::SandboxInfo{"sbx-test", State::TERMINATED, {}, {}});
  CHECK(box.try_wait_until_complete(1s).error().is(errc::terminated));

  // Moved from: the same errc, thrown as SandboxValidationError or returned by the twins.
  auto other = std::move(box);
  CHECK_THROWS_AS(box.state(), sandbox::SandboxValidationError); // NOLINT(bugprone-use-after-move)
  CHECK_THROWS_AS(box.exec({"x"}), sandbox::SandboxValidationError);
  CHECK_THROWS_AS(box.read_file("/x"), sandbox::SandboxValidationError);
  CHECK(box.try_stop().error().is(errc::validation));
  auto moved = std::move(p.value());
  CHECK_THROWS_AS(p.value().result(), sandbox::SandboxValidationError);
  CHECK_THROWS_AS(p.value().kill(), sandbox::SandboxValidationError);
  CHECK(p.value().try_wait().error().is(errc::validation));
}
#endif

TEST_CASE("output callbacks are noexcept callables", "[sandbox][callbacks]") {
  sandbox::output_callback none;
  CHECK_FALSE(none);
  none("ignored"); // calling an empty callback does nothing
  std::string seen;
  sandbox::ExecOptions eo{.on_stdout = [&](std::string_view s) noexcept { seen += s; }};
  REQUIRE(eo.on_stdout);
  eo.on_stdout("a");
  sandbox::ExecOptions copy = eo; // options stay copyable
  copy.on_stdout("b");
  CHECK(seen == "ab");
  eo.on_stdout = nullptr;
  CHECK_FALSE(eo.on_stdout);
  // What is accepted: noexcept callables of a string_view; anything else does not compile
  // (tests/compile_fail/throwing_callback.cpp shows the message).
  auto throwing = [](std::string_view) {};
  auto quiet = [](std::string_view) noexcept {};
  STATIC_REQUIRE(std::is_convertible_v<decltype(quiet), sandbox::output_callback>);
  STATIC_REQUIRE(std::is_nothrow_invocable_v<const sandbox::output_callback&, std::string_view>);
  STATIC_REQUIRE_FALSE(std::is_nothrow_invocable_v<decltype(throwing)&, std::string_view>);
  STATIC_REQUIRE_FALSE(std::is_convertible_v<int, sandbox::output_callback>);
}

TEST_CASE("a growing output buffer keeps every byte in order whatever its size", "[unit][output]") {
  // Large buffers are copied a chunk at a time, the old one's pages released behind the copy:
  // sizes around the size where that starts (32 MiB), the chunk (8 MiB) and a page.
  constexpr std::size_t MiB = std::size_t{1} << 20;
  for (std::size_t n : {32 * MiB - 1, 32 * MiB, 32 * MiB + 1, 40 * MiB + 4095, 41 * MiB + 1}) {
    INFO(n);
    std::string buf(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
      buf[i] = static_cast<char>((i * 131 + i / 4096) & 0xff);
    const auto before = buf.capacity();
    sandbox::detail::reserve_output(buf, n + 1, UINT64_MAX);
    REQUIRE(buf.capacity() > before); // it did grow, by a copy
    REQUIRE(buf.size() == n);
    std::size_t bad = n;
    for (std::size_t i = 0; i < n && bad == n; ++i)
      if (buf[i] != static_cast<char>((i * 131 + i / 4096) & 0xff)) bad = i;
    CHECK(bad == n); // the first byte that differs, if any
    buf.push_back('!');
    CHECK(buf.back() == '!');
  }
}

TEST_CASE("a large output's room is not asked to be backed by huge pages", "[unit][output]") {
  // On a guest that hands freed memory back to its host, a huge page came back through the host
  // (120-180 MB/s) where 4 KiB pages did not (2.1-2.6 GB/s): see reserve_output.
  constexpr std::size_t MiB = std::size_t{1} << 20;
  std::string buf;
  sandbox::detail::reserve_output(buf, 64 * MiB, UINT64_MAX);
  REQUIRE(buf.capacity() >= 64 * MiB);
  const std::string flags = test_support::mapping_flags(buf.data() + 32 * MiB);
  REQUIRE_FALSE(flags.empty()); // the room is a mapping /proc/self/smaps shows
  // glibc.malloc.hugetlb=1 has glibc itself advise every mapping it makes.
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables && std::strstr(tunables, "hugetlb"))
    WARN("GLIBC_TUNABLES asks glibc for huge pages: whether the room is advised is not checked");
  else
    CHECK(flags.find(" hg") == std::string::npos);
}

TEST_CASE("a stream's kept output reserves its room once past 1 MiB, within its cap",
          "[unit][output]") {
  constexpr std::size_t MiB = std::size_t{1} << 20;
  const std::size_t room = sandbox::detail::output_address_space();
  if (room < 16 * MiB) {
    WARN("no room reserved at once on this machine (" << room << " bytes): not checked");
    return;
  }
  // Keeps `total` bytes, 64 KiB at a time, of a stream capped at `cap`; counts the buffers past
  // 1 MiB (each one a copy of the output into fresh memory).
  struct kept {
    std::string buf;
    int grown_past = 0;
    bool truncated = false;
    std::uint64_t produced = 0;
  };
  auto keep = [](std::size_t total, std::uint64_t cap) {
    kept k;
    std::string chunk(64 * 1024, 'x');
    for (std::size_t i = 0; i < total; i += chunk.size()) {
      chunk[0] = static_cast<char>(i / chunk.size());
      const auto before = k.buf.capacity();
      sandbox::detail::append_capped(k.buf, chunk, cap, k.truncated, k.produced, true);
      if (k.buf.capacity() != before && k.buf.size() > MiB) ++k.grown_past;
    }
    return k;
  };
  auto in_order = [](const std::string& buf) {
    for (std::size_t at = 0; at < buf.size(); at += 64 * 1024)
      if (buf[at] != static_cast<char>(at / (64 * 1024))) return false;
    return true;
  };
  kept unlimited = keep(std::min(room, 64 * MiB), UINT64_MAX);
  CHECK(unlimited.grown_past == 1); // one buffer past 1 MiB (by steps, three: 4, 16, 64 MiB)
  CHECK(unlimited.buf.capacity() >= room);
  CHECK(unlimited.buf.size() == std::min(room, 64 * MiB));
  CHECK(in_order(unlimited.buf));
  CHECK_FALSE(unlimited.truncated);
  // Within a cap the room is the cap's, not more.
  constexpr std::uint64_t cap = 5 * MiB + 3;
  kept capped = keep(6 * MiB, cap);
  CHECK(capped.grown_past == 1);
  CHECK(capped.buf.size() == cap);
  CHECK(capped.buf.capacity() >= cap);
  CHECK(capped.buf.capacity() <= cap + 15);
  CHECK(in_order(capped.buf));
  CHECK(capped.truncated);
  CHECK(capped.produced == 6 * MiB);
  // Up to 1 MiB, nothing more than 1 MiB is reserved.
  kept small = keep(MiB, UINT64_MAX);
  CHECK(small.buf.capacity() <= MiB);
}

#ifndef SANDBOX_TEST_SANITIZED
TEST_CASE("where address space is a budget, a stream's kept output grows by steps instead",
          "[unit][output]") {
  // Under an RLIMIT_AS or RLIMIT_DATA every reservation counts whether it is written or not: a
  // room reserved at once would use up what the caller may map (with 64 MiB to spare, an
  // uncaught std::bad_alloc, or std::terminate without exceptions). A sanitizer's shadow memory
  // does not fit under such a limit.
  constexpr std::size_t MiB = std::size_t{1} << 20;
  struct limit {
    int resource;
    const char* field; // what /proc/self/status says of its use now
  };
  for (limit l : {limit{RLIMIT_AS, "VmSize: %" SCNu64}, limit{RLIMIT_DATA, "VmData: %" SCNu64}}) {
    INFO(l.field);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      if (!test_support::limit_to_use_plus(l.resource, l.field, 64 * MiB)) ::_exit(2);
      if (sandbox::detail::output_address_space() != 0) ::_exit(4);
      std::string buf;
      bool truncated = false;
      std::uint64_t produced = 0;
      const std::string chunk(64 * 1024, 'x');
      while (buf.size() < 8 * MiB)
        sandbox::detail::append_capped(buf, chunk, UINT64_MAX, truncated, produced, true);
      ::_exit(buf.capacity() < 64 * MiB ? 0 : 5);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    INFO("status " << status);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
}
#endif

TEST_CASE("where /proc does not say whether memory is locked, nothing is reserved at once",
          "[unit][output]") {
  // A caller whose /proc/self/status cannot be read (a chroot without /proc, a bind mount over
  // it) may have called mlockall(MCL_FUTURE): a room reserved at once would then be faulted in
  // and locked whole (1 MiB of output, 256 MiB locked).
  if (::geteuid() != 0) {
    WARN("not root: no mount namespace of its own to hide /proc/self/status in; not checked");
    return;
  }
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (::unshare(CLONE_NEWNS) != 0) ::_exit(2);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(3);
    const std::string status = "/proc/" + std::to_string(::getpid()) + "/status";
    if (::mount("/dev/null", status.c_str(), nullptr, MS_BIND, nullptr) != 0) ::_exit(4);
    ::_exit(sandbox::detail::output_address_space() == 0 ? 0 : 5);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  INFO("status " << status);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("kept output grows geometrically, within its cap, and a cap below the need bounds "
          "nothing",
          "[unit][output]") {
  using sandbox::detail::reserve_output;
  // Counts the buffers a run of 4 KiB appends goes through.
  auto growths = [](std::uint64_t cap, std::size_t appends) {
    std::string buf;
    int n = 0;
    for (std::size_t i = 0; i < appends; ++i) {
      const auto before = buf.capacity();
      reserve_output(buf, buf.size() + 4096, cap);
      buf.append(4096, 'x');
      if (buf.capacity() != before) ++n;
    }
    return n;
  };
  CHECK(growths(UINT64_MAX, 4000) <= 12); // 16 MB in 4 KiB appends: fourfold steps
  // A cap that wrapped around (max + 64 on an "unlimited" maximum) is below every need: the
  // buffer must not grow by exactly one append each time (a copy of all of it per append).
  CHECK(growths(63, 4000) <= 12);
  // Within a cap the buffer never reserves past it.
  std::string capped;
  reserve_output(capped, 5000, 6000);
  reserve_output(capped, 5500, 6000);
  CHECK(capped.capacity() >= 5000);
  std::string big(5000, 'x');
  big.reserve(5000);
  reserve_output(big, 5001, 6000);
  CHECK(big.capacity() <= 6000 + 15);
}
