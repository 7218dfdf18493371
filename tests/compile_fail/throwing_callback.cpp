// SPDX-License-Identifier: MIT
// on_stdout/on_stderr are called from a noexcept path: a callback that is not noexcept must not
// compile, with or without exceptions (the control variant, the same callback declared
// noexcept, must).
#include <sandbox/options.hpp>

#include <string>
#include <string_view>

int main() {
  std::string seen;
  sandbox::ExecOptions eo;
#if SANDBOX_EXPECT_FAIL
  eo.on_stdout = [&](std::string_view s) { seen += s; };
#else
  eo.on_stdout = [&](std::string_view s) noexcept { seen += s; };
#endif
  eo.on_stdout("x");
  return seen == "x" ? 0 : 1;
}
