// SPDX-License-Identifier: MIT
// The core and the HTTP transport: sandboxes on the CoreWeave Sandboxes service or a sandboxd.
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
#include <sandbox/transport/http/http_transport.hpp>
#include <sandbox/types.hpp>

namespace sandbox {

/// A remote sandbox that returns errors as `result<T>`; available with or without exceptions.
using NoexceptRemoteSandbox = basic_sandbox<http_transport, exponential_backoff<>, return_errors>;

#if SANDBOX_HAS_EXCEPTIONS
/// A remote sandbox that throws `Sandbox*Error` exceptions.
///
///     auto box = sandbox::RemoteSandbox::run();   // CWSANDBOX_BASE_URL, CWSANDBOX_API_KEY
///     auto r = box.exec({"python3", "-c", "print(1)"}).result();
using RemoteSandbox = basic_sandbox<http_transport, exponential_backoff<>, throw_errors>;
#endif

} // namespace sandbox
