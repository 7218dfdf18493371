// SPDX-License-Identifier: MIT
// Looking at the host from a test: file contents, the processes that carry a marker, waiting for a
// condition.
#pragma once

#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace test_support {

/// The whole content of a file ("" if it cannot be read).
inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// Where a symbolic link points ("" if it cannot be read).
inline std::string slurp_link(const std::string& path) {
  char buf[4096];
  const ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

/// A hexadecimal field of a /proc/<pid>/status text ("CapEff", "SigIgn", ...); all ones if absent.
inline std::uint64_t status_hex_field(const std::string& status, const std::string& name) {
  auto at = status.find(name + ":\t");
  if (at == std::string::npos) return ~0ull;
  return std::stoull(status.substr(at + name.size() + 2, 16), nullptr, 16);
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

/// The pids of the processes whose parent is `parent` and whose name (comm) is `name`.
inline std::vector<int> children_named(int parent, const std::string& name) {
  std::vector<int> found;
  DIR* d = opendir("/proc");
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    // "pid (comm) state ppid ...": the name may hold spaces and parentheses.
    const std::string stat = slurp(std::string("/proc/") + e->d_name + "/stat");
    const auto open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close + 4 > stat.size())
      continue;
    std::istringstream rest(stat.substr(close + 2));
    char state = 0;
    int ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent && state != 'Z' && stat.substr(open + 1, close - open - 1) == name)
      found.push_back(std::atoi(e->d_name));
  }
  closedir(d);
  return found;
}

/// The launchers among `parent`'s children: named sandbox-launch and in its pid namespace. A
/// supervisor made ahead bears that name for a moment after its clone, in a namespace of its own.
inline std::vector<int> launchers_of(int parent) {
  std::vector<int> found;
  const std::string own = slurp_link("/proc/" + std::to_string(parent) + "/ns/pid");
  for (int pid : children_named(parent, "sandbox-launch"))
    if (slurp_link("/proc/" + std::to_string(pid) + "/ns/pid") == own) found.push_back(pid);
  return found;
}

/// `parent`'s children that have ended and wait to be reaped (zombies).
inline std::vector<int> zombie_children(int parent) {
  std::vector<int> found;
  DIR* d = opendir("/proc");
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const std::string stat = slurp(std::string("/proc/") + e->d_name + "/stat");
    const auto close = stat.rfind(')');
    if (close == std::string::npos || close + 4 > stat.size()) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state = 0;
    int ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent && state == 'Z') found.push_back(std::atoi(e->d_name));
  }
  closedir(d);
  return found;
}

/// Whether `cond` becomes true within `limit`. The default is far above what a loaded machine
/// needs: it only bounds how long a failing test takes.
inline bool eventually(const std::function<bool()>& cond,
                       std::chrono::milliseconds limit = std::chrono::seconds(60)) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

/// The live `sandbox-spare` child of `parent`: the supervisor its launcher made ahead. A mount
/// anywhere on the host (another test) ends a waiting spare: `start_one` starts a sandbox, after
/// which the launcher makes another. -1 if none comes.
inline int live_spare(int parent, const std::function<void()>& start_one) {
  for (int round = 0; round < 5; ++round) {
    std::vector<int> found;
    if (eventually([&] { return (found = children_named(parent, "sandbox-spare")).size() == 1; },
                   std::chrono::seconds(2)))
      return found.front();
    start_one();
  }
  return -1;
}

} // namespace test_support
