// SPDX-License-Identifier: MIT
// Catch2's main, with skips (tests/support/skip.hpp): Catch2 v2 cannot skip a test case, so one
// that calls SANDBOX_SKIP returns early and is recorded here. When nothing failed, an executable
// in which a test case was skipped, or in which no test case ran at all, exits with 77, which
// meson reports as SKIP: a skip is never counted as a pass. Failures win over skips.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "support/skip.hpp"

#include <cstdio>
#include <map>
#include <string>

namespace {

constexpr int skip_exit_code = 77; // meson (and automake): the test was skipped

std::map<std::string, std::string> skipped; // test case name -> why
int test_cases_run = 0;
bool run_started = false;

/// Counts the test cases that ran (listing them, or --help, runs none).
struct run_counter : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testRunStarting(Catch::TestRunInfo const& info) override {
    TestEventListenerBase::testRunStarting(info);
    run_started = true;
  }
  void testCaseEnded(Catch::TestCaseStats const& stats) override {
    TestEventListenerBase::testCaseEnded(stats);
    ++test_cases_run;
  }
};

} // namespace

CATCH_REGISTER_LISTENER(run_counter)

void test_support::record_skip(const std::string& reason) {
  skipped.emplace(Catch::getResultCapture().getCurrentTestName(), reason);
}

int main(int argc, char* argv[]) {
  const int rc = Catch::Session().run(argc, argv);
  if (rc != 0 || !run_started) return rc;
  if (test_cases_run == 0) {
    std::fprintf(stderr, "SKIP: no test case matched, nothing ran\n");
    return skip_exit_code;
  }
  if (skipped.empty()) return 0;
  for (const auto& [name, why] : skipped)
    std::fprintf(stderr, "SKIP: %s: %s\n", name.c_str(), why.c_str());
  const int others = test_cases_run - static_cast<int>(skipped.size());
  std::fprintf(stderr, "SKIP: %zu of %d test cases skipped", skipped.size(), test_cases_run);
  if (others > 0)
    std::fprintf(stderr, "; the %d others passed, but this run counts as skipped", others);
  std::fprintf(stderr, "\n");
  return skip_exit_code;
}
