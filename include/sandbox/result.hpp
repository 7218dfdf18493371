// SPDX-License-Identifier: MIT
// sandbox::result<T>: the one return type of every operation inside the library.
#pragma once

#include <sandbox/config.hpp>
#include <sandbox/errors.hpp>

#include <boost/outcome/basic_result.hpp>
#include <boost/outcome/policy/terminate.hpp>
#include <boost/outcome/success_failure.hpp>
#include <boost/outcome/try.hpp>

namespace sandbox {

namespace outcome = BOOST_OUTCOME_V2_NAMESPACE;

/// The value of a successful operation or the `sandbox::error` that says why it failed.
/// Accessing the wrong side calls `std::terminate` (the same in both exception modes, so two
/// translation units built differently agree on the type).
template <class T>
using result = outcome::basic_result<T, error, outcome::policy::terminate>;

using outcome::success;

/// `return fail(errc::x, "what happened")` inside functions returning `result<T>`.
[[nodiscard]] inline auto fail(errc code, std::string message) noexcept {
  return outcome::failure(error{code, std::move(message)});
}
[[nodiscard]] inline auto fail(error e) noexcept { return outcome::failure(std::move(e)); }

} // namespace sandbox

// Outcome v2.1 (Boost < 1.76) declares the variable itself; v2.2 wants it spelled out.
#if BOOST_VERSION < 107600
#define SANDBOX_TRY(var, ...) BOOST_OUTCOME_TRY(var, __VA_ARGS__)
#else
#define SANDBOX_TRY(var, ...) BOOST_OUTCOME_TRY(auto&& var, __VA_ARGS__)
#endif
/// Propagates the error of an expression whose value is not needed.
#define SANDBOX_TRYV(...) BOOST_OUTCOME_TRYV(__VA_ARGS__)
