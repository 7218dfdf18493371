// SPDX-License-Identifier: MIT
// What the local sandbox tests share: making a sandbox, running a command in it, and running a
// caller in a forked child that reports "key value" lines back.
#pragma once

#include <sandbox/local.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace test_support {

using Box = sandbox::NoexceptSandbox;

/// `prefix` and ten random characters: names no other run uses.
inline std::string unique(const char* prefix) {
  return prefix + sandbox::detail::random_id("", 10);
}

/// A keep-alive sandbox on the shared local transport.
inline Box make_box(sandbox::SandboxOptions o = {}) {
  auto made = Box::run(std::move(o), sandbox::local_transport::shared());
  if (!made) FAIL("run failed: " << made.error().message);
  return std::move(made).value();
}

/// What a command printed and how it ended.
struct outcome {
  std::string out, err;
  int code = -1;
  int signal = 0;
};

inline outcome run(Box& box, std::vector<std::string> argv) {
  using namespace std::chrono_literals;
  auto r = box.exec(std::move(argv)).result(60s);
  if (!r) return {"", "error: " + r.error().message, -1, 0};
  return {r.value().stdout_text, r.value().stderr_text, r.value().returncode,
          r.value().term_signal};
}

/// `sh -c script`: its stdout and stderr together.
inline std::string sh(Box& box, const std::string& script) {
  auto o = run(box, {"sh", "-c", script});
  return o.out + o.err;
}

/// Runs `body` in a forked child and returns what it wrote to the pipe it is given. The child
/// never returns into Catch.
inline std::string in_child(const std::function<void(int)>& body) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    FAIL_CHECK("pipe2 failed");
    return "";
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    body(p[1]);
    ::_exit(0);
  }
  ::close(p[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; pid > 0 && (n = ::read(p[0], buf, sizeof buf)) > 0;)
    out.append(buf, static_cast<std::size_t>(n));
  ::close(p[0]);
  int ws = 0;
  CHECK(pid > 0);
  if (pid > 0) ::waitpid(pid, &ws, 0);
  CHECK(WIFEXITED(ws));
  return out;
}

/// Writes "key value" as one line (newlines in value become '|').
inline void put(int fd, const std::string& key, std::string value) {
  for (char& c : value)
    if (c == '\n') c = '|';
  std::string line = key + " " + value + "\n";
  (void)!::write(fd, line.data(), line.size());
}

inline void put(int fd, const std::string& key, std::uint64_t value) {
  put(fd, key, std::to_string(value));
}

/// "key value" lines as a map; the rest of a line after the key is the value.
inline std::map<std::string, std::string> parse(const std::string& out) {
  std::map<std::string, std::string> m;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    auto sp = line.find(' ');
    if (sp != std::string::npos) m[line.substr(0, sp)] = line.substr(sp + 1);
  }
  return m;
}

/// Drops this (forked, root) process to nobody, as an unprivileged caller would be.
inline bool become_nobody() {
  return ::setgroups(0, nullptr) == 0 && ::setresgid(65534, 65534, 65534) == 0 &&
         ::setresuid(65534, 65534, 65534) == 0 &&
         // Changing uid made the process non-dumpable; an ordinary user's process is dumpable.
         ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) == 0;
}

} // namespace test_support
