// SPDX-License-Identifier: MIT
// A container image on the local transport: pulled (each blob's progress shown), run, and the
// store cleaned up afterwards.
//
//   images python:3.11                       # from Docker Hub (needs the network)
//   images 127.0.0.1:5000/team/app:v1        # a registry on this host
//   images oci:/srv/layout:v1                # an OCI layout; docker-archive:/x.tar, oci-archive:
#include <sandbox/image.hpp>
#include <sandbox/local.hpp>

#include <cstdio>
#include <iostream>
#include <memory>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: images IMAGE\n";
    return 2;
  }
  sandbox::local_transport::options o;
  o.images.on_progress = [](const sandbox::image::pull_progress& p) {
    // One line per blob as it completes (a terminal would redraw one line per layer instead).
    if (p.cached)
      std::printf("  %.19s… in the store\n", p.digest.c_str());
    else if (p.done == p.total)
      std::printf("  %.19s… %llu bytes fetched\n", p.digest.c_str(),
                  static_cast<unsigned long long>(p.total));
  };
  auto transport = std::make_shared<sandbox::local_transport>(o);

  std::cout << "pulling " << argv[1] << "\n";
  auto box = sandbox::NoexceptSandbox::try_run({.image = argv[1]}, transport);
  if (!box) {
    std::cerr << "cannot start a sandbox of " << argv[1] << ": " << box.error().message << "\n";
    return 1;
  }
  // The image's Env and WorkingDir apply; SandboxOptions::env and working_dir win over them.
  auto r = box.value().exec({"sh", "-c", "echo running in $(pwd) on $(hostname); ls /"}).result();
  if (!r) {
    std::cerr << "exec: " << r.error().message << "\n";
    return 1;
  }
  std::cout << r.value().stdout_text;
  (void)box.value().stop();

  // Layers stay in the store for the next sandbox; forget the name and collect what no name
  // (and no running sandbox) still needs.
  if (auto forgotten = sandbox::image::forget(argv[1], o.images); !forgotten) return 1;
  auto gc = sandbox::image::gc(o.images);
  if (!gc) {
    std::cerr << "gc: " << gc.error().message << "\n";
    return 1;
  }
  std::cout << "gc removed " << gc.value().layers << " layer(s), " << gc.value().blobs
            << " blob(s)\n";
  return 0;
}
