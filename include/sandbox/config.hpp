// SPDX-License-Identifier: MIT
// Feature detection and the few macros the library needs; the only place that looks at the
// compiler.
#pragma once

#include <boost/version.hpp>

#if !defined(SANDBOX_HAS_EXCEPTIONS)
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#define SANDBOX_HAS_EXCEPTIONS 1
#else
#define SANDBOX_HAS_EXCEPTIONS 0
#endif
#elif SANDBOX_HAS_EXCEPTIONS && !(defined(__cpp_exceptions) || defined(__EXCEPTIONS))
#error "SANDBOX_HAS_EXCEPTIONS=1 but the compiler has exceptions disabled"
#endif

#if !defined(__linux__)
#error "sandbox: only Linux is supported"
#endif
