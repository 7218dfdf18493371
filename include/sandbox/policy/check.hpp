// SPDX-License-Identifier: MIT
// Check policies: is a non-zero exit an error?
#pragma once

#include <sandbox/concepts.hpp>

namespace sandbox {

/// `exec<check>(…)`: a non-zero exit becomes an errc::execution error carrying the ExecResult.
struct check {
  static constexpr bool enabled = true;
};

/// `exec<no_check>(…)` (the default): the exit code is part of the result.
struct no_check {
  static constexpr bool enabled = false;
};

static_assert(check_policy<check>);
static_assert(check_policy<no_check>);

} // namespace sandbox
