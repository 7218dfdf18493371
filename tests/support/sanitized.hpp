// SPDX-License-Identifier: MIT
// Whether a sanitizer instruments this build: it keeps freed memory in quarantine and maps shadow
// memory, so memory is measured, and address space limited, only in plain builds.
#pragma once

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANDBOX_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
    __has_feature(memory_sanitizer)
#define SANDBOX_TEST_SANITIZED 1
#endif
#endif
