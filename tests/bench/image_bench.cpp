// SPDX-License-Identifier: MIT
// Container image figures, each beside a baseline measured in the same run:
//   cold start  run() -> first exec(true), busybox: from a cached image (oci: layout, and a
//               registry name already in the store) vs from the same files as a directory vs
//               bwrap --unshare-all true
//   pull        a 100 MiB layer (incompressible, gzip) from Debian's docker-registry on loopback
//               into an empty store, unpacked: vs skopeo copy of the same image to an OCI layout,
//               and vs gzip -dc | tar -x of the same layer
// Usage: image_bench [iterations]   (default 100). Needs docker-registry and skopeo.
#include "../support/image_fixtures.hpp"
#include "../support/timing.hpp"

#include <sandbox/image.hpp>
#include <sandbox/local.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

using namespace test_support;
using clock_type = std::chrono::steady_clock;

namespace {

void print_row(const char* what, stats s) { print(what, s, 60); }

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "image_bench: %s\n", what.c_str());
  std::exit(1);
}

double seconds(const std::function<void()>& f) {
  auto a = clock_type::now();
  f();
  return std::chrono::duration<double>(clock_type::now() - a).count();
}

} // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 100;
  using Box = sandbox::NoexceptSandbox;
  temp_dir work;
  const std::string layout = work.path + "/layout", store = work.path + "/store";
  make_layout(layout, {make_tar(busybox_entries(), compression::gzip)}, "{}", "v1");
  sandbox::local_transport::options lo;
  lo.images.store = store;
  auto t = std::make_shared<sandbox::local_transport>(lo);
  auto prepared = sandbox::image::prepare("oci:" + layout, lo.images);
  if (!prepared) die(prepared.error().message);
  const std::string dir = prepared.value().layers.front(); // the same files, as a directory
  std::printf("images, %d iterations each (busybox: %s)\n", n, dir.c_str());

  stats bwrap = measure(n, [] {
    const char* argv[] = {"/usr/bin/bwrap", "--ro-bind", "/",     "/",
                          "--proc",         "/proc",     "--dev", "/dev",
                          "--unshare-all",  "true",      nullptr};
    pid_t pid = -1;
    int st = 0;
    if (posix_spawn(&pid, argv[0], nullptr, nullptr, const_cast<char**>(argv), environ) != 0 ||
        waitpid(pid, &st, 0) != pid || st != 0)
      die("bwrap failed");
  });
  print_row("baseline: bwrap --ro-bind / / --proc --dev --unshare-all true", bwrap);

  auto cold = [&](const std::string& image) {
    std::vector<Box> keep;
    auto s = measure(n, [&] {
      sandbox::SandboxOptions o;
      o.image = image;
      auto box = Box::try_run(o, t);
      if (!box) die(box.error().message);
      auto r = box.value().exec({"true"}).result();
      if (!r || r.value().returncode != 0) die("exec failed in " + image);
      keep.push_back(std::move(box).value());
    });
    keep.clear();
    return s;
  };
  stats from_dir = cold(dir);
  print_row("cold start: image = the busybox directory", from_dir);
  stats from_layout = cold("oci:" + layout);
  print_row("cold start: image = oci:LAYOUT (in the store)", from_layout);

  registry reg;
  if (!reg.up()) die("docker-registry did not start");
  if (!reg.push(layout, "v1", "bench/busybox:v1")) die("skopeo push failed");
  const std::string name = reg.host() + "/bench/busybox:v1";
  if (!sandbox::image::prepare(name, lo.images)) die("pull failed");
  stats from_registry = cold(name);
  print_row("cold start: image = REGISTRY/NAME:TAG (in the store)", from_registry);
  std::printf("\ncold start from a cached image / from a directory: %.2fx (layout), %.2fx (name); "
              "target <= 1.10x\n",
              from_layout.median_ms / from_dir.median_ms,
              from_registry.median_ms / from_dir.median_ms);
  std::printf("cold start from a cached image / bwrap: %.2fx\n\n",
              from_registry.median_ms / bwrap.median_ms);

  // A 100 MiB layer of random bytes (gzip cannot shrink it), pulled into an empty store.
  std::string big(100u << 20, '\0');
  std::mt19937_64 rng(42);
  for (std::size_t i = 0; i + 8 <= big.size(); i += 8) {
    auto v = rng();
    std::memcpy(big.data() + i, &v, 8);
  }
  std::string layer = make_tar({{tar_entry::file, "data", big}}, compression::gzip);
  big.clear();
  const std::string big_layout = work.path + "/big";
  make_layout(big_layout, {layer}, "{}", "v1");
  write_all(work.path + "/layer.tar.gz", layer);
  if (!reg.push(big_layout, "v1", "bench/big:v1")) die("skopeo push of the big image failed");
  const double mib = static_cast<double>(layer.size()) / (1 << 20);
  double skopeo = seconds([&] {
    std::string cmd = "skopeo copy -q --src-tls-verify=false docker://" + reg.host() +
                      "/bench/big:v1 oci:" + work.path + "/skopeo-copy:v1";
    if (std::system(cmd.c_str()) != 0) die("skopeo copy failed");
  });
  double tar = seconds([&] {
    std::string cmd = "mkdir -p " + work.path + "/tar-x && gzip -dc " + work.path +
                      "/layer.tar.gz | tar -x -C " + work.path + "/tar-x";
    if (std::system(cmd.c_str()) != 0) die("tar -x failed");
  });
  sandbox::image::image_options fresh{.store = work.path + "/fresh"};
  double pull = seconds([&] {
    auto p = sandbox::image::prepare(reg.host() + "/bench/big:v1", fresh);
    if (!p) die(p.error().message);
  });
  // Unpack alone: the blob stays, the unpacked layer goes.
  (void)sandbox::image::detail::remove_tree(AT_FDCWD, (fresh.store + "/layers").c_str());
  (void)::mkdir((fresh.store + "/layers").c_str(), 0755);
  double unpack = seconds([&] {
    auto p = sandbox::image::prepare(reg.host() + "/bench/big:v1", fresh);
    if (!p) die(p.error().message);
  });
  std::printf("pull of a %.0f MiB layer from a loopback registry, verified and unpacked: "
              "%.3f s (%.0f MiB/s)\n",
              mib, pull, mib / pull);
  std::printf(
      "  of which unpacking alone (gzip + tar, libarchive):              %.3f s (%.0f MiB/s)\n",
      unpack, mib / unpack);
  std::printf("baseline: skopeo copy of the same image to an OCI layout (no unpack): %.3f s "
              "(%.0f MiB/s)\n",
              skopeo, mib / skopeo);
  std::printf("baseline: gzip -dc | tar -x of the same layer:                        %.3f s "
              "(%.0f MiB/s)\n",
              tar, mib / tar);
  return 0;
}
