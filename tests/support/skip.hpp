// SPDX-License-Identifier: MIT
// Skipping a test case that cannot run on this host (no cgroup controller, user namespaces
// disabled, …). Catch2 v2 has no skip of its own: SANDBOX_SKIP records the test case as skipped
// and returns from it, and tests/main.cpp then ends the executable with meson's skip code (77)
// instead of a pass, so a skip is never counted as a pass. meson.build runs the test cases that
// may skip (tagged by what they need) as tests of their own, so that they do not hide the others.
#pragma once

#include <catch2/catch.hpp>

#include <string>

namespace test_support {

/// Records that the running test case was skipped and why (defined in tests/main.cpp).
void record_skip(const std::string& reason);

} // namespace test_support

/// Skips the rest of the running test case: use at its start, before any check.
#define SANDBOX_SKIP(reason)                                                                       \
  do {                                                                                             \
    ::test_support::record_skip(reason);                                                           \
    WARN("SKIPPED: " << (reason));                                                                 \
    return;                                                                                        \
  } while (0)
