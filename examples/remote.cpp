// SPDX-License-Identifier: MIT
// The same patterns on a remote service: the CoreWeave Sandboxes API, or a sandboxd.
//
//   CWSANDBOX_BASE_URL=http://127.0.0.1:8080 CWSANDBOX_API_KEY=$TOKEN ./remote
//
// Only the type changes: RemoteSandbox instead of Sandbox (the HTTP transport, configured from
// CWSANDBOX_BASE_URL and CWSANDBOX_API_KEY, or WANDB_API_KEY in W&B mode).
#include <sandbox/sandbox.hpp>

#include <iostream>

using namespace std::chrono_literals;

int main() try {
  // One command as the sandbox's main process; run() returns once the service accepted it.
  auto job = sandbox::RemoteSandbox::run({"sh", "-c", "echo training...; exit 0"});
  job.wait_until_complete(600s);
  std::cout << "[1] " << job.id() << " exit code: " << job.returncode().value_or(-1) << "\n";

  // A keep-alive sandbox; exec waits for RUNNING first, then returns a Process at once.
  auto box = sandbox::RemoteSandbox::run();
  auto r = box.exec({"sh", "-c", "echo hello; echo warning >&2; exit 4"}).result();
  std::cout << "[2] stdout: " << r.stdout_text << "[2] stderr: " << r.stderr_text
            << "[2] returncode: " << r.returncode << "\n";

  // cwd, env, a timeout and a cap on output, per command.
  auto big =
      box.exec(
             {"sh", "-c", "echo $GREETING from $(pwd); head -c 100000 /dev/zero"},
             {.cwd = "/tmp", .env = {{"GREETING", "hi"}}, .timeout = 30s, .max_output_bytes = 1000})
          .result();
  std::cout << "[3] kept " << big.stdout_text.size() << " of " << big.stdout_bytes_produced
            << " bytes (truncated: " << std::boolalpha << big.stdout_truncated << ")\n";

  // Files.
  box.write_file("/tmp/hello.txt", "hello, file\n");
  std::cout << "[4] " << box.read_file("/tmp/hello.txt");

  // Checked: a non-zero exit throws, carrying the result.
  try {
    box.exec<sandbox::check>({"sh", "-c", "exit 3"}).result();
  } catch (const sandbox::SandboxExecutionError& e) {
    std::cout << "[5] " << e.what() << " (returncode " << e.exec_result().returncode << ")\n";
  }
  box.stop();
  return 0;
} catch (const sandbox::SandboxError& e) {
  std::cerr << "error: " << e.what() << " [" << e.code().message() << "]\n";
  return 1;
}
