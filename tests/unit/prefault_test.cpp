// SPDX-License-Identifier: MIT
// The prefaulter: pages past a large buffer's end are faulted in ahead of the writer, what the
// buffer holds never changes, and what was faulted in but never written goes back at the end.
#include "../support/residency.hpp"

#include <sandbox/detail/prefault.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace {

using test_support::advise_huge_pages;
using test_support::becomes_resident;
using test_support::kernel_populates;
using test_support::resident_pages;
using test_support::resident_past_content;
using test_support::unperturbed;

constexpr std::size_t MiB = std::size_t{1} << 20;

/// This process's thread count (/proc/self/status), 0 if it cannot be read.
int threads() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  int n = 0;
  char line[256];
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "Threads: %d", &n) == 1) break;
  std::fclose(f);
  return n;
}

/// Waits until this process has `n` threads; false if that never happens (liveness bound only).
bool threads_become(int n) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (threads() != n) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

bool all_of(const std::string& s, std::size_t from, std::size_t to, char c) {
  for (std::size_t i = from; i < to; ++i)
    if (s[i] != c) return false;
  return true;
}

} // namespace

TEST_CASE("a prefaulter faults in the pages just past a large buffer's end and hands back what "
          "was never written",
          "[unit][output]") {
  using sandbox::detail::prefaulter;
  unperturbed quiet;
  const bool populates = kernel_populates();
  if (!populates)
    WARN("this kernel has no MADV_POPULATE_WRITE (Linux 5.14): the prefaulter does nothing; "
         "only that the buffer is left as it was is checked");
  std::string buf;
  // A mapping of its own, nothing of it touched yet, backed by huge pages as a result's room is
  // where they are always on: a step then faults in a 2 MiB page that reaches past where it ended.
  sandbox::detail::reserve_output(buf, 64 * MiB, UINT64_MAX);
  advise_huge_pages(buf);
  buf.assign(3 * MiB + 5, 'a');
  const char* base = buf.data();
  const char* room_end = base + buf.capacity();
  prefaulter ahead;
  ahead.ahead_of(buf);
  const char* end = base + buf.size();
  if (populates) {
    CHECK(becomes_resident(end, end + prefaulter::ahead));
    // Nothing far past what was asked: a huge page's worth of slack where they are on.
    CHECK(resident_pages(end + prefaulter::ahead + 2 * MiB, room_end) == 0);
  }
  CHECK(buf.data() == base);
  CHECK(all_of(buf, 0, buf.size(), 'a'));

  // Written on: the window moves with the end.
  buf.append(5 * MiB, 'b');
  ahead.ahead_of(buf);
  end = base + buf.size();
  if (populates) CHECK(becomes_resident(end, end + prefaulter::ahead));
  CHECK(all_of(buf, 0, 3 * MiB + 5, 'a'));
  CHECK(all_of(buf, 3 * MiB + 5, buf.size(), 'b'));

  // At the end, what was faulted in past the content goes back; the content stays.
  buf.append(7, 'c');
  ahead.finish(buf);
  CHECK(resident_past_content(buf) == 0);
  CHECK(buf.size() == 8 * MiB + 12);
  CHECK(all_of(buf, 0, 3 * MiB + 5, 'a'));
  CHECK(all_of(buf, 3 * MiB + 5, 8 * MiB + 5, 'b'));
  CHECK(all_of(buf, 8 * MiB + 5, buf.size(), 'c'));
  CHECK(buf.c_str()[buf.size()] == '\0');
}

TEST_CASE("a prefaulter stays within a buffer's room, leaves small buffers alone, and follows a "
          "buffer that was reallocated",
          "[unit][output]") {
  using sandbox::detail::prefaulter;
  unperturbed quiet;
  const bool populates = kernel_populates();
  prefaulter ahead;

  // Small buffers (within malloc's heap) are never touched: their pages may be someone else's.
  std::string small;
  small.reserve(16 * MiB);
  small.assign(MiB, 's');
  const int before = threads();
  ahead.ahead_of(small);
  CHECK(threads() == before); // no thread was even started

  // Near the end of the room: up to its end, and the buffer is untouched.
  std::string near;
  near.reserve(40 * MiB);
  near.assign(near.capacity() - 3 * MiB, 'n');
  ahead.ahead_of(near);
  if (populates) CHECK(becomes_resident(near.data() + near.size(), near.data() + near.capacity()));
  CHECK(all_of(near, 0, near.size(), 'n'));

  // Waited for, then the buffer moves: the next request is faulted in from the new end.
  ahead.idle();
  std::string moved;
  moved.reserve(96 * MiB);
  moved.append(near);
  near = std::string();
  moved.append(MiB, 'm');
  ahead.ahead_of(moved);
  const char* end = moved.data() + moved.size();
  if (populates) CHECK(becomes_resident(end, end + prefaulter::ahead));
  CHECK(all_of(moved, 0, moved.size() - MiB, 'n'));
  CHECK(all_of(moved, moved.size() - MiB, moved.size(), 'm'));

  // A prefaulter ended, moved from or destroyed with requests in flight does not hang.
  moved.append(MiB, 'm');
  ahead.ahead_of(moved);
  prefaulter other = std::move(ahead);
  other.stop();
  other.stop();
  prefaulter third;
  third.ahead_of(moved);
  moved.append(MiB, 'm');
  third.ahead_of(moved);
  third.idle();
}

TEST_CASE("a prefaulter's thread ends when it has had nothing to do for a while, and comes back "
          "when it has, not for output that asks no step",
          "[unit][output]") {
  // A command that printed a lot and then waits for an hour holds no thread meanwhile; one that
  // then prints a line now and then (less than a step past what was faulted in) starts none.
  using sandbox::detail::prefaulter;
  unperturbed quiet;
  const bool populates = kernel_populates();
  const int before = threads();
  REQUIRE(before > 0);
  std::string buf;
  buf.reserve(64 * MiB);
  buf.assign(2 * MiB, 'a');
  prefaulter ahead;
  ahead.ahead_of(buf);
  const char* end = buf.data() + buf.size();
  if (populates) CHECK(becomes_resident(end, end + prefaulter::ahead));
  CHECK(threads_become(before)); // ended idle (after prefaulter::idle_for)
  int started = 0;
  for (int line = 0; line < 5; ++line) {
    buf.append(100, 'l');
    ahead.ahead_of(buf);
    started += threads() - before; // a thread started now lives idle_for at least
    std::this_thread::sleep_for(prefaulter::idle_for + std::chrono::milliseconds(20));
  }
  CHECK(started == 0);
  buf.append(9 * MiB, 'b');
  ahead.ahead_of(buf);
  end = buf.data() + buf.size();
  if (populates) CHECK(becomes_resident(end, end + prefaulter::ahead)); // a thread came back
  CHECK(all_of(buf, 0, 2 * MiB, 'a'));
  CHECK(all_of(buf, 2 * MiB, 2 * MiB + 500, 'l'));
  CHECK(all_of(buf, 2 * MiB + 500, buf.size(), 'b'));
  ahead.finish(buf);
  ahead.stop();
  CHECK(threads() == before);
}

TEST_CASE("a prefaulter copied into a forked child while its thread ran does nothing there, and "
          "never waits",
          "[unit][output]") {
  // The child's copy shares state with a thread that is not there, whose lock may be held for
  // good: neither an append that asks no step nor one that asks one may take it.
  using sandbox::detail::prefaulter;
  unperturbed quiet;
  std::string buf;
  buf.reserve(64 * MiB);
  buf.assign(4 * MiB, 'a');
  prefaulter ahead;
  ahead.ahead_of(buf);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::alarm(30); // a wait that never ends fails the test instead of hanging it
    buf.append(100, 'b');
    ahead.ahead_of(buf); // no step asked
    buf.append(16 * MiB, 'c');
    ahead.ahead_of(buf); // a step asked
    ahead.idle();
    ahead.finish(buf);
    ahead.stop();
    const bool same = all_of(buf, 0, 4 * MiB, 'a') && all_of(buf, 4 * MiB, 4 * MiB + 100, 'b') &&
                      all_of(buf, 4 * MiB + 100, buf.size(), 'c');
    ::_exit(same ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // The parent's own goes on.
  buf.append(4 * MiB, 'p');
  ahead.ahead_of(buf);
  const char* end = buf.data() + buf.size();
  if (kernel_populates()) CHECK(becomes_resident(end, end + prefaulter::ahead));
  ahead.finish(buf);
  ahead.stop();
}
