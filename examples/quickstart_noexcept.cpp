// SPDX-License-Identifier: MIT
// The quickstart without exceptions (built with -fno-exceptions): every call returns a result.
#include <sandbox/sandbox.hpp>

#include <iostream>

using namespace std::chrono_literals;
using Box = sandbox::NoexceptSandbox; // basic_sandbox<local_transport, exponential_backoff<>,
                                      //               return_errors>

int main() {
  auto made = Box::run();
  if (!made) {
    std::cerr << "cannot start a sandbox: " << made.error().message << "\n";
    return 1;
  }
  Box& box = made.value();

  auto r = box.exec({"sh", "-c", "echo out; echo err >&2; exit 2"}).result();
  if (r)
    std::cout << "stdout: " << r.value().stdout_text << "stderr: " << r.value().stderr_text
              << "returncode: " << r.value().returncode << "\n";

  // check: the error value carries the same facts as SandboxExecutionError.
  auto checked = box.exec<sandbox::check>({"false"}).result();
  if (!checked) {
    const sandbox::error& e = checked.error();
    std::cout << "error: " << e.message << " (errc " << e.code.value() << ", returncode "
              << e.exec_result->returncode << ")\n";
  }

  auto slow = box.exec({"sleep", "10"}, {.timeout = 200ms}).result();
  if (!slow && slow.error().is(sandbox::errc::command_timeout))
    std::cout << "timed out: " << slow.error().message << "\n";

  if (auto stopped = box.stop(); !stopped) std::cerr << stopped.error().message << "\n";
  return 0;
}
