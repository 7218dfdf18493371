// SPDX-License-Identifier: MIT
// The v1 HTTP API has no stdin: writing to a command's stdin over http_transport must not
// compile (the control variant, on the local transport, must).
#include <sandbox/http.hpp>
#include <sandbox/local.hpp>

#if SANDBOX_EXPECT_FAIL
using T = sandbox::http_transport;
#else
using T = sandbox::local_transport;
#endif

void feed(sandbox::basic_sandbox<T, sandbox::no_retry, sandbox::return_errors>& box) {
  auto p = box.exec({"cat"}, {.stdin_pipe = true});
  (void)p.write_stdin("data");
}

int main() { return 0; }
