// SPDX-License-Identifier: MIT
// Commands on a terminal of their own (ExecOptions::tty) in a local sandbox: what the command
// sees, an interactive shell driven through stdin, end-of-file, resizing, kills, and a command
// that tampers with /dev to take over the next terminal.
#include <sandbox/sandbox.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>

using namespace std::chrono_literals;
using sandbox::errc;
using sandbox::TerminalSize;

namespace {

sandbox::NoexceptSandbox keep_alive() {
  auto box = sandbox::NoexceptSandbox::run({});
  REQUIRE(box);
  return std::move(box).value();
}

/// Polls `p` until its output (collected by the caller's on_stdout into `seen`) holds `what`.
template <class P>
bool await_output(P& p, const std::string& seen, std::string_view what) {
  auto until = std::chrono::steady_clock::now() + 20s;
  while (seen.find(what) == std::string::npos) {
    if (p.poll() || std::chrono::steady_clock::now() > until) return false;
    (void)p.try_result(10ms);
  }
  return true;
}

} // namespace

TEST_CASE("a command on a terminal sees one on stdin, stdout and stderr, of the size asked for",
          "[local][tty]") {
  auto box = keep_alive();
  auto r = box.exec({"sh", "-c",
                     "tty; stty size; test -t 0 && test -t 1 && test -t 2 && echo all-three; "
                     "echo \"TERM=$TERM\"; echo to-stderr >&2"},
                    {.tty = TerminalSize{.cols = 100, .rows = 30}})
               .result(20s);
  REQUIRE(r);
  const auto& x = r.value();
  CHECK(x.returncode == 0);
  // The first terminal of the sandbox's own devpts; lines end as a terminal ends them.
  CHECK(x.stdout_text.find("/dev/pts/0\r\n") != std::string::npos);
  CHECK(x.stdout_text.find("30 100\r\n") != std::string::npos);
  CHECK(x.stdout_text.find("all-three\r\n") != std::string::npos);
  CHECK(x.stdout_text.find("TERM=xterm\r\n") != std::string::npos);
  // stderr is the terminal too: it arrives with stdout.
  CHECK(x.stdout_text.find("to-stderr\r\n") != std::string::npos);
  CHECK(x.stderr_text.empty());
  INFO(x.stdout_text);

  // A caller's TERM wins; the default size is 80×24.
  auto d = box.exec({"sh", "-c", "stty size; echo \"TERM=$TERM\""},
                    {.env = {{"TERM", "vt100"}}, .tty = TerminalSize{.cols = 0, .rows = 0}})
               .result(20s);
  REQUIRE(d);
  CHECK(d.value().stdout_text == "24 80\r\nTERM=vt100\r\n");
}

TEST_CASE("an interactive shell on a terminal is driven through stdin", "[local][tty]") {
  auto box = keep_alive();
  auto p = box.exec({"sh"}, {.tty = TerminalSize{}});
  REQUIRE(p.write_stdin("echo $((6 * 7))\n"));
  REQUIRE(p.write_stdin("exit 3\n"));
  auto r = p.result(20s);
  REQUIRE(r);
  INFO(r.value().stdout_text);
  CHECK(r.value().returncode == 3);
  // The terminal echoes what it reads, then the shell answers.
  CHECK(r.value().stdout_text.find("echo $((6 * 7))\r\n") != std::string::npos);
  CHECK(r.value().stdout_text.find("42\r\n") != std::string::npos);
}

TEST_CASE("closing stdin of a command on a terminal types end-of-file", "[local][tty]") {
  auto box = keep_alive();
  auto p = box.exec({"cat"}, {.tty = TerminalSize{}});
  REQUIRE(p.write_stdin("hello\n"));
  REQUIRE(p.close_stdin());
  REQUIRE(p.close_stdin()); // idempotent
  auto r = p.result(20s);
  REQUIRE(r);
  CHECK(r.value().returncode == 0);
  CHECK(r.value().stdout_text == "hello\r\nhello\r\n"); // the echo, then cat
  // Closed: no more input is taken.
  auto w = p.write_stdin("more");
  CHECK_FALSE(w);
  // The terminal itself stays open until the end: closing it under the command hung it up
  // (SIGHUP, exit 129) in about 7 of 100 runs.
  for (int i = 0; i < 60; ++i) {
    auto q = box.exec({"cat"}, {.tty = TerminalSize{}});
    REQUIRE(q.write_stdin("again\n"));
    REQUIRE(q.close_stdin());
    REQUIRE(q.close_stdin());
    auto again = q.result(20s);
    REQUIRE(again);
    REQUIRE(again.value().returncode == 0);
  }
}

TEST_CASE("resizing a terminal tells its command", "[local][tty]") {
  auto box = keep_alive();
  std::string seen;
  auto p = box.exec(
      {"sh", "-c", "trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 0.05; done"},
      {.tty = TerminalSize{.cols = 80, .rows = 24},
       .on_stdout = [&seen](std::string_view s) noexcept { seen += s; }});
  REQUIRE(await_output(p, seen, "ready"));
  REQUIRE(p.resize({.cols = 132, .rows = 43}));
  auto r = p.result(20s);
  REQUIRE(r);
  CHECK(r.value().returncode == 0);
  CHECK(r.value().stdout_text.find("43 132\r\n") != std::string::npos);
  INFO(r.value().stdout_text);
  // Once the command has ended, a resize does nothing.
  CHECK(p.resize({.cols = 10, .rows = 10}));

  // A command without a terminal has nothing to resize.
  auto plain = box.exec({"true"});
  auto e = plain.resize({});
  REQUIRE_FALSE(e);
  CHECK(e.error().is(errc::validation));
  (void)plain.result(20s);
}

TEST_CASE("killing a command on a terminal kills what it started there", "[local][tty]") {
  auto box = keep_alive();
  std::string seen;
  auto p = box.exec(
      {"sh", "-c", "sleep 100 & echo started; wait"},
      {.tty = TerminalSize{}, .on_stdout = [&seen](std::string_view s) noexcept { seen += s; }});
  REQUIRE(await_output(p, seen, "started"));
  REQUIRE(p.kill());
  auto r = p.result(20s);
  REQUIRE(r);
  CHECK(r.value().returncode == 137);
  // The background sleep was in the command's process group and is gone too.
  auto left =
      box.exec({"sh", "-c", "cat /proc/[0-9]*/comm | grep -c '^sleep$' || true"}).result(20s);
  REQUIRE(left);
  CHECK(left.value().stdout_text == "0\n");
}

TEST_CASE("a command cannot put its own device in place of the next terminal", "[local][tty]") {
  auto box = keep_alive();
  // What a hostile command can do to /dev: replace /dev/ptmx, cover /dev/pts (where allowed).
  auto t = box.exec({"sh", "-c",
                     "rm -f /dev/ptmx && ln -s /dev/null /dev/ptmx; "
                     "mount -t tmpfs none /dev/pts 2>/dev/null; readlink /dev/ptmx"})
               .result(20s);
  REQUIRE(t);
  REQUIRE(t.value().stdout_text == "/dev/null\n");
  auto r = box.exec({"sh", "-c", "test -t 0 && test -t 1 && echo on-a-terminal"},
                    {.tty = TerminalSize{}})
               .result(20s);
  REQUIRE(r);
  CHECK(r.value().returncode == 0);
  CHECK(r.value().stdout_text == "on-a-terminal\r\n");
}

TEST_CASE("a terminal's output is all there when the result is", "[local][tty]") {
  auto box = keep_alive();
  // Output still on its way through the terminal when the exit is seen is not lost.
  for (int i = 0; i < 20; ++i) {
    auto r = box.exec({"sh", "-c", "seq 1 2000"}, {.tty = TerminalSize{}}).result(20s);
    REQUIRE(r);
    REQUIRE(r.value().stdout_text.size() == 8893 + 2000); // the digits and "\r\n" per line
    REQUIRE(r.value().stdout_text.ends_with("2000\r\n"));
  }
}

TEST_CASE("a terminal's output past the cap is counted exactly", "[local][tty]") {
  // Dropped output is moved to /dev/null inside the kernel where it comes from a pipe; from a
  // terminal that cannot be done, and it is read and counted instead.
  auto box = keep_alive();
  auto r = box.exec({"sh", "-c", "head -c 3000001 /dev/zero | tr '\\0' x"},
                    {.tty = TerminalSize{}, .max_output_bytes = 1000})
               .result(60s);
  REQUIRE(r);
  CHECK(r.value().stdout_text == std::string(1000, 'x'));
  CHECK(r.value().stdout_truncated);
  CHECK(r.value().stdout_bytes_produced == 3000001);
}

TEST_CASE("end-of-file on a terminal: before the command started, after a partial line, to a "
          "command that does not read",
          "[local][tty]") {
  auto box = keep_alive();
  // Closed at once, before the terminal has even arrived: cat still sees the end of its input.
  auto early = box.exec({"cat"}, {.tty = TerminalSize{}});
  REQUIRE(early.close_stdin());
  auto e = early.result(20s);
  REQUIRE(e);
  CHECK(e.value().returncode == 0);
  CHECK_FALSE(early.write_stdin("x")); // closed

  // A line under way: it is handed over, then the input ends.
  auto partial = box.exec({"cat"}, {.tty = TerminalSize{}});
  REQUIRE(partial.write_stdin("abc"));
  REQUIRE(partial.close_stdin());
  auto p = partial.result(20s);
  REQUIRE(p);
  CHECK(p.value().returncode == 0);
  CHECK(p.value().stdout_text == "abcabc"); // the echo, then cat's copy

  // A line ended by Enter typed as `\r`, or killed by Ctrl-U, is no line under way: one
  // end-of-file, not two (a second would also end the next reader).
  for (const char* typed : {"x\r", "abc\x15"}) {
    auto twice = box.exec({"sh", "-c", "cat >/dev/null; echo SECOND; cat >/dev/null; echo DONE"},
                          {.tty = TerminalSize{}});
    REQUIRE(twice.write_stdin(typed));
    REQUIRE(twice.close_stdin());
    auto t = twice.result(std::chrono::milliseconds(1500));
    REQUIRE_FALSE(t); // the second cat still waits for its input
    CHECK(t.error().is(errc::timeout));
    REQUIRE(twice.kill());
    (void)twice.result(20s);
  }

  // A command that does not read: closing its stdin does not wait for it.
  auto busy = box.exec({"sh", "-c", "sleep 3; exit 5"}, {.tty = TerminalSize{}});
  REQUIRE(busy.close_stdin());
  CHECK_FALSE(busy.poll()); // still sleeping: close_stdin returned without waiting for it
  auto b = busy.result(20s);
  REQUIRE(b);
  CHECK(b.value().returncode == 5);
}
