// SPDX-License-Identifier: MIT
// What of a range of memory is resident (mincore), and what the prefaulter (sandbox-ahead) needs
// to be seen at work.
#pragma once

#if __has_include(<malloc.h>)
#include <malloc.h>
#endif
#include <dirent.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace test_support {

/// How many of the whole pages within [from, to) are resident.
inline std::size_t resident_pages(const char* from, const char* to) {
  const auto page = static_cast<std::uintptr_t>(::getpagesize());
  const std::uintptr_t a = (reinterpret_cast<std::uintptr_t>(from) + page - 1) & ~(page - 1);
  const std::uintptr_t b = reinterpret_cast<std::uintptr_t>(to) & ~(page - 1);
  if (b <= a) return 0;
  std::vector<unsigned char> v((b - a) / page);
  if (::mincore(reinterpret_cast<void*>(a), b - a, v.data()) != 0) return SIZE_MAX;
  std::size_t n = 0;
  for (unsigned char c : v)
    n += c & 1;
  return n;
}

/// How many whole pages of `s`'s room past its content and terminator are resident.
inline std::size_t resident_past_content(const std::string& s) {
  return resident_pages(s.data() + s.size() + 1, s.data() + s.capacity());
}

/// Limits `resource` (RLIMIT_AS, RLIMIT_DATA) to what this process uses of it now, as `field` of
/// /proc/self/status says (`"VmSize: %" SCNu64`), plus `headroom` bytes. For a forked child:
/// false if the use could not be read or the limit set.
inline bool limit_to_use_plus(int resource, const char* field, std::uint64_t headroom) {
  std::uint64_t used_kib = 0;
  if (std::FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, field, &used_kib) == 1) break;
    std::fclose(f);
  }
  const rlimit r{(used_kib << 10) + headroom, (used_kib << 10) + headroom};
  return used_kib != 0 && ::setrlimit(resource, &r) == 0;
}

/// How many whole pages [from, to) holds.
inline std::size_t pages_in(const char* from, const char* to) {
  const auto page = static_cast<std::uintptr_t>(::getpagesize());
  const std::uintptr_t a = (reinterpret_cast<std::uintptr_t>(from) + page - 1) & ~(page - 1);
  const std::uintptr_t b = reinterpret_cast<std::uintptr_t>(to) & ~(page - 1);
  return b > a ? (b - a) / page : 0;
}

/// Waits until every whole page of [from, to) is resident; false if that never happens. A
/// liveness bound only: the thread faults 8 MiB in well under a second on any machine.
inline bool becomes_resident(const char* from, const char* to) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (resident_pages(from, to) != pages_in(from, to)) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

/// Whether this kernel has MADV_POPULATE_WRITE (Linux 5.14), which the prefaulter needs.
inline bool kernel_populates() {
  void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  const bool ok = ::madvise(p, 4096, MADV_POPULATE_WRITE) == 0;
  ::munmap(p, 4096);
  return ok;
}

/// `meson test` sets MALLOC_PERTURB_: glibc then fills every allocation, so each reserved page is
/// touched before the prefaulter could. Off for the test, as the environment had it afterwards.
struct unperturbed {
#ifdef M_PERTURB
  unperturbed() { ::mallopt(M_PERTURB, 0); }
  ~unperturbed() {
    const char* v = std::getenv("MALLOC_PERTURB_");
    ::mallopt(M_PERTURB, v ? std::atoi(v) : 0);
  }
#endif
};

/// Asks for the 2 MiB-aligned part of `buf`'s room to be backed by huge pages, as a system with
/// transparent huge pages always on backs it.
inline void advise_huge_pages(std::string& buf) {
  constexpr std::uintptr_t huge = std::uintptr_t{2} << 20;
  const auto begin = reinterpret_cast<std::uintptr_t>(buf.data());
  const std::uintptr_t from = (begin + huge - 1) & ~(huge - 1);
  const std::uintptr_t to = (begin + buf.capacity()) & ~(huge - 1);
  if (to > from) (void)::madvise(reinterpret_cast<void*>(from), to - from, MADV_HUGEPAGE);
}

/// The VmFlags of the mapping that holds `p` (/proc/self/smaps), empty if none was found.
inline std::string mapping_flags(const void* p) {
  std::FILE* f = std::fopen("/proc/self/smaps", "r");
  if (!f) return {};
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  bool inside = false;
  std::string flags;
  char line[512];
  while (std::fgets(line, sizeof line, f)) {
    unsigned long from = 0, to = 0;
    if (std::sscanf(line, "%lx-%lx ", &from, &to) == 2 &&
        std::strchr(line, '-') < std::strchr(line, ' '))
      inside = from <= at && at < to;
    else if (inside && std::strncmp(line, "VmFlags:", 8) == 0) {
      flags = line + 8;
      break;
    }
  }
  std::fclose(f);
  return flags;
}

/// How many threads of this process are named `name` (/proc/self/task/*/comm).
inline int threads_named(const char* name) {
  DIR* d = ::opendir("/proc/self/task");
  if (!d) return -1;
  int n = 0;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::string path = std::string("/proc/self/task/") + e->d_name + "/comm";
    if (std::FILE* f = std::fopen(path.c_str(), "r")) {
      char comm[32] = {};
      if (std::fgets(comm, sizeof comm, f)) {
        comm[std::strcspn(comm, "\n")] = 0;
        n += std::strcmp(comm, name) == 0;
      }
      std::fclose(f);
    }
  }
  ::closedir(d);
  return n;
}

} // namespace test_support
