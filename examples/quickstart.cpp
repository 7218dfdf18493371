// SPDX-License-Identifier: MIT
// The common patterns, on the local transport (needs root): one command and its exit code; a
// keep-alive sandbox running several commands; stdout, stderr and exit codes; check.
#include <sandbox/sandbox.hpp>

#include <iostream>

using namespace std::chrono_literals;

int main() try {
  // 1. One command: the sandbox's main process. Wait for it, then read its exit code.
  auto job = sandbox::Sandbox::run({"sh", "-c", "echo training...; exit 0"});
  job.wait_until_complete(60s);
  std::cout << "[1] " << job.id() << " exit code: " << job.returncode().value() << "\n";

  // A job that exits non-zero still ran to completion (COMPLETED): its code is yours to judge.
  auto bad = sandbox::Sandbox::run({"sh", "-c", "echo failing...; exit 3"});
  bad.wait_until_complete(60s);
  std::cout << "[1] " << sandbox::to_string(bad.state()) << " with exit code "
            << bad.returncode().value() << "\n";

  // FAILED is for a sandbox whose main command could not start, or that the system killed
  // (its memory limit: oom_killed()); the error says which.
  auto broken = sandbox::Sandbox::run({"no-such-trainer"});
  try {
    broken.wait_until_complete(60s);
  } catch (const sandbox::SandboxFailedError& e) {
    std::cout << "[1] " << e.what() << "\n";
  }

  // 2. Many commands: no main command = keep-alive; stopped when `box` leaves scope.
  auto box = sandbox::Sandbox::run();
  auto r = box.exec({"sh", "-c", "echo hello from $(hostname); echo warning >&2; exit 4"}).result();
  std::cout << "[2] stdout: " << r.stdout_text << "[2] stderr: " << r.stderr_text
            << "[2] returncode: " << r.returncode << "\n";

  // Commands run concurrently; exec returns at once.
  auto a = box.exec({"sh", "-c", "sleep 0.2; echo a"});
  auto b = box.exec({"sh", "-c", "echo b"});
  std::cout << "[2] " << b.result().stdout_text << "[2] " << a.result().stdout_text;

  // Working directory, environment and a timeout per command.
  auto env = box.exec({"sh", "-c", "echo $GREETING from $(pwd)"},
                      {.cwd = "/tmp", .env = {{"GREETING", "hi"}}, .timeout = 10s})
                 .result();
  std::cout << "[2] " << env.stdout_text;

  // The sandbox is isolated: writes stay inside, host processes are invisible.
  box.exec({"sh", "-c", "echo scratch > /etc/sandbox-demo"}).result();
  std::cout << "[2] processes visible inside: "
            << box.exec({"sh", "-c", "ls -d /proc/[0-9]* | wc -l"}).result().stdout_text;

  // 3. check: a non-zero exit becomes SandboxExecutionError, carrying the result.
  try {
    box.exec<sandbox::check>({"python3", "-c", "import sys; print('partial'); sys.exit(3)"})
        .result();
  } catch (const sandbox::SandboxExecutionError& e) {
    std::cout << "[3] " << e.what() << " (returncode " << e.exec_result().returncode << ", stdout "
              << e.exec_result().stdout_text.size() << " bytes)\n";
  }

  box.stop();
  std::cout << "[2] after stop: " << sandbox::to_string(box.state()) << "\n";
  return 0;
} catch (const sandbox::SandboxError& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
