// SPDX-License-Identifier: MIT
// A project outside the tree that uses the installed library: a command in a local sandbox, and
// with SANDBOX_CONSUMER_REMOTE=1 the same through the HTTP transport (CWSANDBOX_BASE_URL and
// CWSANDBOX_API_KEY name the server). Prints what the command printed. Built as a strict project
// builds (-Wall -Wextra -Werror): the options are given as designated initializers, each naming
// only what it sets.
#ifdef CONSUMER_LOCAL_ONLY
#include <sandbox/local.hpp>
#else
#include <sandbox/sandbox.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>

int main() try {
  using namespace std::chrono_literals;
  auto box = sandbox::Sandbox::run({.working_dir = "/tmp"});
  std::cout << "local: "
            << box.exec({"sh", "-c", "echo hello from $WHO"},
                        {.env = {{"WHO", "a sandbox"}}, .timeout = 60s})
                   .result()
                   .stdout_text;
#ifndef CONSUMER_LOCAL_ONLY
  if (const char* remote = std::getenv("SANDBOX_CONSUMER_REMOTE");
      remote && std::string(remote) == "1") {
    auto far = sandbox::RemoteSandbox::run();
    std::cout
        << "remote: "
        << far.exec({"echo", "hello from afar"}, {.max_output_bytes = 100}).result().stdout_text;
  }
#endif
  return 0;
} catch (const sandbox::SandboxError& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
