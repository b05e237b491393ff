// Which sanitizer this test binary is built with (g++ defines __SANITIZE_*; clang answers
// __has_feature), for the tests that skip or scale under one.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define PROCXY_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PROCXY_TEST_TSAN 1
#endif
#endif

#if defined(__SANITIZE_ADDRESS__)
#define PROCXY_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PROCXY_TEST_ASAN 1
#endif
#endif

#ifdef PROCXY_TEST_TSAN
constexpr bool under_tsan = true;
#else
constexpr bool under_tsan = false;
#endif
#ifdef PROCXY_TEST_ASAN
constexpr bool under_asan = true;
#else
constexpr bool under_asan = false;
#endif
// Either: the instrumented builds, 5-20x slower.
constexpr bool sanitized_build = under_tsan || under_asan;
