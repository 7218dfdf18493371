// SPDX-License-Identifier: MIT
// Built without optimization and linked to bind functions lazily (tests/meson.build), as a debug
// build of a client is by default: there the compiler calls CMSG_NXTHDR and makedev as functions,
// which the client has not bound yet when its first supervisor is cloned, so a supervisor binds
// them itself, which reads the dynamic linker's lists.
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

TEST_CASE("a supervisor of a lazily bound client keeps its copy of the client's memory, and works",
          "[local][memory]") {
  // Loaded first, and global: the dynamic linker's global scope then lies in malloc's heap, which
  // a supervisor that dropped its share of the client's memory could no longer read.
  void* lib = ::dlopen("libanl.so.1", RTLD_LAZY | RTLD_GLOBAL);
  INFO((lib ? "" : ::dlerror()));
  REQUIRE(lib);
  // Large enough a client for a supervisor of one bound at load to drop its share (within 1 s).
  std::vector<char> held(48 << 20, 1);
  auto box = sandbox::NoexceptSandbox::run();
  REQUIRE(box);
  const pid_t supervisor = supervisor_pid();
  REQUIRE(supervisor > 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  for (int i = 0; i < 3; ++i) {
    auto r = box.value().exec({"sh", "-c", "echo ok"}).result();
    REQUIRE(r);
    CHECK(r.value().stdout_text == "ok\n");
  }
  long rss = -1;
  std::ifstream in("/proc/" + std::to_string(supervisor) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) rss = std::atol(line.c_str() + 6);
  INFO("supervisor RSS " << rss << " KiB");
  CHECK(rss >= 40 * 1024); // it still shares the 48 MiB
  ::dlclose(lib);
}
