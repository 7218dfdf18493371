// SPDX-License-Identifier: MIT
// Built without optimization and run as a process of its own (tests/meson.build): there the
// compiler calls CMSG_NXTHDR and makedev as functions, which the client has not bound yet when
// its first supervisor is cloned.
#include <sandbox/local.hpp>

#include <catch2/catch.hpp>

#include <dlfcn.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

/// The pid of this process's one child named sandbox-init (its only sandbox's supervisor), or 0.
pid_t supervisor_pid() {
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "stat");
    std::string stat;
    std::getline(in, stat);
    const auto close = stat.rfind(')');
    if (close == std::string::npos || stat.find("(sandbox-init)") == std::string::npos) continue;
    if (std::atol(stat.c_str() + close + 4) == ::getpid()) return std::atoi(name.c_str());
  }
  return 0;
}

} // namespace

TEST_CASE("a supervisor of an unoptimized client serves commands after letting go of its memory",
          "[local][memory]") {
  // Loaded first, and global: the dynamic linker's global scope then lies in malloc's heap,
  // which the supervisor drops once set up. A function it bound lazily after that would crash it.
  void* lib = ::dlopen("libanl.so.1", RTLD_LAZY | RTLD_GLOBAL);
  INFO((lib ? "" : ::dlerror()));
  REQUIRE(lib);
  // Large enough a client for its supervisors to drop their share of its memory.
  std::vector<char> held(48 << 20, 1);
  auto box = sandbox::NoexceptSandbox::run();
  REQUIRE(box);
  // Until the supervisor has let go (once idle: its RSS falls below what it shares), so that
  // the commands below are its first calls after that.
  const std::string status = "/proc/" + std::to_string(supervisor_pid()) + "/status";
  long rss = -1;
  for (int i = 0; i < 2000 && (rss < 0 || rss >= 24 * 1024); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::ifstream in(status);
    for (std::string line; std::getline(in, line);)
      if (line.rfind("VmRSS:", 0) == 0) rss = std::atol(line.c_str() + 6);
  }
  INFO("supervisor RSS " << rss << " KiB");
  CHECK(rss < 24 * 1024);
  for (int i = 0; i < 3; ++i) {
    auto r = box.value().exec({"sh", "-c", "echo ok"}).result();
    REQUIRE(r);
    CHECK(r.value().stdout_text == "ok\n");
  }
  ::dlclose(lib);
}
