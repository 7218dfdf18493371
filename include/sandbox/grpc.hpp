// SPDX-License-Identifier: MIT
// The core and the gRPC transport: sandboxes on the CoreWeave Sandboxes service or a sandboxd,
// with live output, stdin and terminals. Needs grpc++ (Debian: libgrpc++-dev); not part of
// <sandbox/sandbox.hpp>.
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
#include <sandbox/transport/grpc/grpc_transport.hpp>
#include <sandbox/types.hpp>

namespace sandbox {

/// A sandbox on a remote service over gRPC that returns errors as `result<T>`; available with or
/// without exceptions.
using NoexceptGrpcSandbox = basic_sandbox<grpc_transport, exponential_backoff<>, return_errors>;

#if SANDBOX_HAS_EXCEPTIONS
/// A sandbox on a remote service over gRPC that throws `Sandbox*Error` exceptions.
///
///     auto box = sandbox::GrpcSandbox::run();   // CWSANDBOX_BASE_URL, CWSANDBOX_API_KEY
///     auto p = box.exec({"sort"}, {.stdin_pipe = true});
///     p.write_stdin("b\na\n");
///     p.close_stdin();
///     auto r = p.result();                       // r.stdout_text == "a\nb\n"
using GrpcSandbox = basic_sandbox<grpc_transport, exponential_backoff<>, throw_errors>;
#endif

} // namespace sandbox
