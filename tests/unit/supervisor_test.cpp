// SPDX-License-Identifier: MIT
// What the supervisor reads of /proc before it builds a sandbox, parsed without allocation.
#include <sandbox/transport/local/detail/supervisor.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

namespace sv = sandbox::local::detail::sv;

namespace {

bool parse(const std::string& line, std::uint64_t& mask) {
  return sv::signal_mask_line(line.data(), line.size(), mask);
}

} // namespace

TEST_CASE("a signal mask line of /proc/<pid>/status is taken only whole", "[supervisor]") {
  std::uint64_t m = 7;
  CHECK(parse("SigIgn:\t0000000000001000", m));
  CHECK(m == 0x1000);
  CHECK(parse("SigCgt:\tffffffffffffffff", m));
  CHECK(m == ~std::uint64_t{0});
  CHECK(parse("SigCgt: 0000000180004a02", m));
  CHECK(m == 0x180004a02);
  m = 7;
  for (const char* bad : {"SigIgn:", "SigIgn:\t", "SigIgn:\t00000000000010x0", "SigBlk:\t0",
                          "SigIgn:\t00000000000000001", "Name:\tSigIgn:\t1", "SigIgn:\t-1",
                          "SigIgn:\t0000000000001000 "}) {
    INFO(bad);
    CHECK_FALSE(parse(bad, m));
  }
  CHECK(m == 7); // untouched by what it refused
}

TEST_CASE("the signals this process ignores or catches are read from /proc", "[supervisor]") {
  struct sigaction ign {
  }, old{};
  ign.sa_handler = SIG_IGN;
  REQUIRE(sigaction(SIGUSR1, &ign, &old) == 0);
  const std::uint64_t seen = sv::changed_signals();
  sigaction(SIGUSR1, &old, nullptr);
  CHECK(seen != ~std::uint64_t{0}); // read, not the fallback
  CHECK((seen >> (SIGUSR1 - 1) & 1) == 1);
  CHECK((sv::changed_signals() >> (SIGUSR1 - 1) & 1) == 0);
}
