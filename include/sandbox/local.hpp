// SPDX-License-Identifier: MIT
// The core and the local transport only: what an embedded user needs (no HTTP, no JSON).
#pragma once

#include <sandbox/basic_sandbox.hpp>
#include <sandbox/concepts.hpp>
#include <sandbox/errors.hpp>
#include <sandbox/options.hpp>
#include <sandbox/policy/check.hpp>
#include <sandbox/policy/error.hpp>
#include <sandbox/policy/retry.hpp>
#include <sandbox/process.hpp>
#include <sandbox/result.hpp>
#include <sandbox/transport/local/local_transport.hpp>
#include <sandbox/types.hpp>

namespace sandbox {

/// A local sandbox that returns errors as `result<T>`; available with or without exceptions.
using NoexceptSandbox = basic_sandbox<local_transport, exponential_backoff<>, return_errors>;

#if SANDBOX_HAS_EXCEPTIONS
/// A local sandbox that throws `Sandbox*Error` exceptions.
using Sandbox = basic_sandbox<local_transport, exponential_backoff<>, throw_errors>;
#endif

} // namespace sandbox
