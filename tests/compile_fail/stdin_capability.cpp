// SPDX-License-Identifier: MIT
// Writing to stdin on a transport without that capability must not compile.
#include <sandbox/local.hpp>

#include "../support/scripted_transport.hpp"

#if SANDBOX_EXPECT_FAIL
using T = sandbox::testing::scripted_transport;
#else
using T = sandbox::local_transport;
#endif

void feed(sandbox::basic_sandbox<T, sandbox::no_retry, sandbox::return_errors>& box) {
  auto p = box.exec({"cat"}, {.stdin_pipe = true});
  (void)p.write_stdin("data");
}

int main() { return 0; }
