// SPDX-License-Identifier: MIT
// Compiled with -fno-exceptions: choosing the throwing error policy must not compile.
#include <sandbox/local.hpp>

#if SANDBOX_EXPECT_FAIL
using Box =
    sandbox::basic_sandbox<sandbox::local_transport, sandbox::no_retry, sandbox::throw_errors>;
#else
using Box =
    sandbox::basic_sandbox<sandbox::local_transport, sandbox::no_retry, sandbox::return_errors>;
#endif

int main() { return sizeof(Box) > 0 ? 0 : 1; }
