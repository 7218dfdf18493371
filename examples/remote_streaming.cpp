// SPDX-License-Identifier: MIT
// A remote sandbox over gRPC: output as the command writes it, stdin, a terminal. Against the
// CoreWeave Sandboxes API or a sandboxd started with --grpc-listen:
//
//   CWSANDBOX_BASE_URL=http://127.0.0.1:8081 CWSANDBOX_API_KEY=$TOKEN ./remote_streaming
//
// Only the type changes: GrpcSandbox instead of Sandbox or RemoteSandbox.
#include <sandbox/grpc.hpp>

#include <iostream>

using namespace std::chrono_literals;

int main() try {
  auto box = sandbox::GrpcSandbox::run();

  // Live output: each line is printed as the command writes it, not at its end.
  auto job = box.exec({"sh", "-c", "for i in 1 2 3; do echo step $i; sleep 0.3; done"},
                      {.on_stdout = [](std::string_view s) noexcept { std::cout << "[1] " << s; }});
  int code = job.wait(); // the lines above are printed while it waits
  std::cout << "[1] exit code " << code << "\n";

  // Stdin: fed while the command runs, then closed.
  auto sort = box.exec({"sort"}, {.stdin_pipe = true});
  sort.write_stdin("pear\napple\n");
  sort.write_stdin("fig\n");
  sort.close_stdin();
  std::cout << "[2] sorted:\n" << sort.result().stdout_text;

  // A terminal: an interactive shell, typed into.
  auto sh = box.exec({"sh"}, {.tty = sandbox::TerminalSize{.cols = 100, .rows = 30}});
  sh.write_stdin("stty size; exit 3\n");
  auto t = sh.result(30s);
  std::cout << "[3] the shell exited with " << t.returncode << "; its terminal was "
            << (t.stdout_text.find("30 100") != std::string::npos ? "100x30" : "?") << "\n";

  // A command that would run too long is killed at its timeout, keeping what it wrote.
  try {
    box.exec({"sh", "-c", "echo partial; sleep 30"}, {.timeout = 1s}).result();
  } catch (const sandbox::SandboxTimeoutError& e) {
    std::cout << "[4] timed out, kept: " << (e.exec_result() ? e.exec_result()->stdout_text : "");
  }
  box.stop();
  return 0;
} catch (const sandbox::SandboxError& e) {
  std::cerr << "error: " << e.what() << " [" << e.code().message() << "]\n";
  return 1;
}
