// SPDX-License-Identifier: MIT
#include <sandbox/sandbox.hpp>

#include "../support/scripted_transport.hpp"

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
using sandbox::errc;
using sandbox::RetryState;

TEST_CASE("no_retry never retries", "[retry]") {
  CHECK_FALSE(sandbox::no_retry{}.next_delay(sandbox::error(errc::unavailable, ""), {}));
}

TEST_CASE("exponential_backoff retries only transient errors", "[retry]") {
  sandbox::exponential_backoff<> p;
  CHECK(p.next_delay(sandbox::error(errc::unavailable, ""), {}));
  CHECK(p.next_delay(sandbox::error(errc::resource_exhausted, ""), {}));
  CHECK_FALSE(p.next_delay(sandbox::error(errc::not_found, ""), {}));
  CHECK_FALSE(p.next_delay(sandbox::error(errc::execution, ""), {}));
  CHECK_FALSE(p.next_delay(sandbox::error(errc::command_timeout, ""), {}));
}

TEST_CASE("exponential_backoff delays grow by the factor, jittered, and stay capped", "[retry]") {
  sandbox::exponential_backoff<200, 150, 2000, 30000> p;
  sandbox::error e(errc::unavailable, "");
  RetryState s;
  for (std::uint32_t rnd : {0u, 1u, 77u, 0xffffffffu, 123456789u}) {
    s.random = rnd;
    s.previous_delay = 0ms;
    auto first = p.next_delay(e, s);
    REQUIRE(first);
    CHECK(*first >= 200ms);
    CHECK(*first <= 300ms); // max(initial, 0) × 1.5
    s.previous_delay = 1800ms;
    auto later = p.next_delay(e, s);
    REQUIRE(later);
    CHECK(*later >= 200ms);
    CHECK(*later <= 2000ms); // capped
  }
  // With the biggest random value the upper bound is reached exactly.
  s.previous_delay = 1000ms;
  s.random = 1300; // (1500 - 200 + 1) = 1301 values: 1300 % 1301 = 1300 → 200 + 1300
  CHECK(p.next_delay(e, s) == 1500ms);
}

TEST_CASE("exponential_backoff gives up when the budget is spent and honours retry hints",
          "[retry]") {
  sandbox::exponential_backoff<200, 150, 2000, 1000, 10000> p;
  sandbox::error e(errc::unavailable, "");
  RetryState s;
  s.elapsed = 1000ms;
  CHECK_FALSE(p.next_delay(e, s));
  s.elapsed = 900ms; // 100 ms left: the delay never runs past the budget
  auto d = p.next_delay(e, s);
  REQUIRE(d);
  CHECK(*d <= 100ms);

  auto info = std::make_shared<sandbox::server_error_info>();
  info->retry_delay = 700ms;
  e.server = info;
  s.elapsed = 0ms;
  CHECK(p.next_delay(e, s) == 700ms);
  s.elapsed = 500ms;
  CHECK(p.next_delay(e, s) == 500ms); // the hint, cut to what is left of the budget
}

using ScriptedBox =
    sandbox::basic_sandbox<sandbox::testing::scripted_transport,
                           sandbox::exponential_backoff<1, 100, 1, 5000>, sandbox::return_errors>;

TEST_CASE("run retries a transient create with the same request id", "[retry][sandbox]") {
  auto t = std::make_shared<sandbox::testing::scripted_transport>();
  t->create_results.push_back(sandbox::fail(errc::unavailable, "busy"));
  t->create_results.push_back(sandbox::fail(errc::resource_exhausted, "rate limited"));
  auto box = ScriptedBox::run({}, t);
  REQUIRE(box);
  CHECK(box.value().id() == "sbx-test");
  REQUIRE(t->request_ids.size() == 3);
  CHECK(t->request_ids[0] == t->request_ids[1]);
  CHECK(t->request_ids[1] == t->request_ids[2]);
  CHECK(t->request_ids[0].size() == 36);
}

TEST_CASE("run does not retry a permanent error", "[retry][sandbox]") {
  auto t = std::make_shared<sandbox::testing::scripted_transport>();
  t->create_results.push_back(sandbox::fail(errc::validation, "bad image"));
  auto box = ScriptedBox::run({}, t);
  REQUIRE_FALSE(box);
  CHECK(box.error().is(errc::validation));
  CHECK(box.error().message == "bad image");
  CHECK(t->request_ids.size() == 1);
}

TEST_CASE("the budget ends retrying with the last error", "[retry][sandbox]") {
  using Tight =
      sandbox::basic_sandbox<sandbox::testing::scripted_transport,
                             sandbox::exponential_backoff<5, 100, 5, 30>, sandbox::return_errors>;
  auto t = std::make_shared<sandbox::testing::scripted_transport>();
  for (int i = 0; i < 100; ++i)
    t->create_results.push_back(sandbox::fail(errc::unavailable, "down " + std::to_string(i)));
  auto box = Tight::run({}, t);
  REQUIRE_FALSE(box);
  CHECK(box.error().is(errc::unavailable));
  CHECK(t->request_ids.size() >= 2);
  CHECK(t->request_ids.size() <= 10);
}
