// SPDX-License-Identifier: MIT
// Images written by an attacker: every directory the sandbox's setup mounts on or writes into is
// a symlink out of the image (to "/", up a ".." chain, to /proc/1/root). The sandbox must still
// be built inside the image, and nothing of the host may be reached from it.
#include <sandbox/local.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "../support/host.hpp"
#include "../support/sandbox_helpers.hpp"
#include "../support/skip.hpp"

using namespace std::chrono_literals;
using Box = sandbox::NoexceptSandbox;
using sandbox::errc;
using test_support::become_nobody;
using test_support::sh;
using test_support::slurp;
using test_support::unique;

namespace {

/// A directory of the host's root filesystem outside /tmp (which the sandbox's setup covers).
std::string host_dir() {
  for (const char* d : {"/var/tmp", "/opt", "/srv"}) {
    struct stat st {};
    if (::stat(d, &st) == 0 && S_ISDIR(st.st_mode)) return d;
  }
  FAIL("no directory outside /tmp to test with");
  return {};
}

/// A busybox image whose `links` (path relative to the image -> target) replace directories.
struct image {
  std::string dir = host_dir() + "/" + unique("hostile-image-");
  using links_t = std::map<std::string, std::string>;
  explicit image(const links_t& links) {
    for (const char* d : {"", "/bin", "/etc", "/proc", "/dev", "/tmp", "/sys", "/var"})
      REQUIRE(::mkdir((dir + d).c_str(), 0755) == 0);
    REQUIRE(std::system(("cp /bin/busybox " + dir + "/bin/busybox").c_str()) == 0);
    for (const char* tool : {"sh", "cat", "echo", "ls", "test", "touch", "stat", "readlink"})
      REQUIRE(::symlink("busybox", (dir + "/bin/" + tool).c_str()) == 0);
    for (const auto& [path, target] : links) {
      std::string at = dir + "/" + path;
      ::rmdir(at.c_str());
      REQUIRE(::symlink(target.c_str(), at.c_str()) == 0);
    }
    ::chmod(dir.c_str(), 0755);
  }
  ~image() { (void)std::system(("rm -rf " + dir).c_str()); }
  image(const image&) = delete;
  image& operator=(const image&) = delete;
};

/// A marker file on the host's root filesystem, outside the image: the sandbox must not see it.
struct host_marker {
  std::string path = host_dir() + "/" + unique("host-marker-");
  host_marker() { std::ofstream(path) << "host\n"; }
  ~host_marker() { ::unlink(path.c_str()); }
};

/// What a command in a sandbox on `img` can reach of the host: "" when nothing.
std::string reach(Box& box, const host_marker& m) {
  std::string rel = m.path.substr(1);
  // Through every directory the setup touched, through "..", and by writing next to the marker.
  return sh(box, "for p in /" + rel + " /../../" + rel + " /sys/" + rel + " /proc/" + rel +
                     " /tmp/" + rel + " /dev/" + rel + " /sys/../" + rel + " /proc/1/root/" + rel +
                     "; do cat $p 2>/dev/null; done; { echo x > /sys/" + rel +
                     ".w; } 2>/dev/null; " + "{ echo x > /tmp/../" + rel +
                     ".w; } 2>/dev/null; { echo x > /" + rel +
                     ".w; } 2>/dev/null; cat /etc/shadow 2>/dev/null");
}

} // namespace

TEST_CASE("symlinks where the setup mounts lead nowhere outside the image",
          "[local][security][image]") {
  host_marker marker;
  const std::vector<std::string> targets = {
      "/", "../../../../../../..", "/proc/1/root", "..", "../.", "/proc/self/root", "//"};
  for (const char* where : {"sys", "proc", "tmp", "dev"}) {
    for (const auto& target : targets) {
      INFO(where << " -> " << target);
      image img(image::links_t{{where, target}});
      auto made = Box::run({.image = img.dir}, sandbox::local_transport::shared());
      if (!made) {
        // Refusing the image is acceptable only with a clear error naming the path.
        CHECK(made.error().message.find(where) != std::string::npos);
        continue;
      }
      auto& box = made.value();
      CHECK(reach(box, marker) == "");
      CHECK(::access((marker.path + ".w").c_str(), F_OK) != 0);
      ::unlink((marker.path + ".w").c_str());
      // The sandbox got its own: /proc shows its processes, /sys is sysfs, /tmp is writable,
      // /dev/null works, and "/.." is "/".
      CHECK(sh(box, "echo ok > /tmp/x && cat /tmp/x; test -e /proc/self/status && echo proc; "
                    "test -d /sys/kernel && echo sys; echo x > /dev/null && echo dev; "
                    "ls /.. | grep -c usr") == "ok\nproc\nsys\ndev\n0\n");
      // The image itself is unchanged: the link is still there.
      char buf[256] = {};
      CHECK(::readlink((img.dir + "/" + where).c_str(), buf, sizeof buf - 1) ==
            static_cast<ssize_t>(target.size()));
    }
  }
}

TEST_CASE("an image with every setup directory a symlink out", "[local][security][image]") {
  host_marker marker;
  image img(
      image::links_t{{"sys", "/"}, {"proc", "../../.."}, {"tmp", "/proc/1/root"}, {"dev", "/"}});
  auto made = Box::run({.image = img.dir}, sandbox::local_transport::shared());
  REQUIRE(made);
  CHECK(reach(made.value(), marker) == "");
  CHECK(::access((marker.path + ".w").c_str(), F_OK) != 0);
  ::unlink((marker.path + ".w").c_str());
}

TEST_CASE("files and directories the setup writes stay inside the image",
          "[local][security][image]") {
  std::string core = slurp("/proc/sys/kernel/core_pattern");
  // /etc points at a kernel interface; a mounted file placed there must not be written to it.
  image img(image::links_t{{"etc", "/proc/sys/kernel"}});
  auto made = Box::run({.image = img.dir, .mounted_files = {{"/etc/core_pattern", "|/bin/evil"}}},
                       sandbox::local_transport::shared());
  CHECK(!made);
  if (!made) CHECK(made.error().message.find("mounted files") != std::string::npos);
  CHECK(slurp("/proc/sys/kernel/core_pattern") == core);

  // A working directory and a mounted file behind a symlink that climbs out of the image: made
  // inside it (the host has no /data).
  REQUIRE(::access("/data", F_OK) != 0);
  image img2(image::links_t{{"work", "../../../../../data"}});
  REQUIRE(::mkdir((img2.dir + "/data").c_str(), 0755) == 0);
  std::string work = unique("work-");
  auto box = Box::run({.image = img2.dir,
                       .working_dir = "/work/" + work,
                       .mounted_files = {{"/work/" + work + "/f", "inside"}}},
                      sandbox::local_transport::shared());
  REQUIRE(box);
  CHECK(sh(box.value(), "cat f; ls /data") == "inside" + work + "\n");
  CHECK(::access("/data", F_OK) != 0);
  CHECK(::access((img2.dir + "/data/" + work).c_str(), F_OK) != 0); // on the private layer
}

TEST_CASE("a hostile image cannot reach the host for a caller that is not root",
          "[local][security][image][rootless][userns]") {
  if (sandbox::local::detail::read_sysctl("/proc/sys/user/max_user_namespaces") == "0") {
    SANDBOX_SKIP("this host disables user namespaces");
  }
  host_marker marker;
  ::chmod(marker.path.c_str(), 0644);
  image img(image::links_t{{"sys", "/"}, {"tmp", "../../../.."}});
  std::string out = test_support::in_child([&](int fd) {
    std::string said = "error: could not drop to 65534";
    if (become_nobody()) {
      auto made = Box::run({.image = img.dir}, sandbox::local_transport::shared());
      said = made ? "reach:" + reach(made.value(), marker) : "error: " + made.error().message;
    }
    (void)!::write(fd, said.data(), said.size());
  });
  CHECK(out == "reach:");
  CHECK(::access((marker.path + ".w").c_str(), F_OK) != 0);
  ::unlink((marker.path + ".w").c_str());
}
