// SPDX-License-Identifier: MIT
// A consumer of the installed image part: it must find libarchive and libcrypto through the
// package, then parse a name and open an image store of its own.
#include <sandbox/image.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  auto src = sandbox::image::parse_source("python:3.11");
  auto s = sandbox::image::store::open({.store = argc > 1 ? argv[1] : "/tmp/consumer-store"});
  if (!src || !s) return 1;
  std::printf("image: %s, store %s\n", src.value().remote.str().c_str(), s.value().root().c_str());
  return 0;
}
