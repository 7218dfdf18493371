// SPDX-License-Identifier: MIT
// Looking at the host from a test: file contents and the processes that carry a marker.
#pragma once

#include <dirent.h>

#include <fstream>
#include <sstream>
#include <string>

namespace test_support {

/// The whole content of a file ("" if it cannot be read).
inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// Host processes whose environment contains `marker` (a test puts it in a command's env).
inline int count_marked(const std::string& marker) {
  int n = 0;
  DIR* d = opendir("/proc");
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    if (slurp(std::string("/proc/") + e->d_name + "/environ").find(marker) != std::string::npos)
      ++n;
  }
  closedir(d);
  return n;
}

} // namespace test_support
