// SPDX-License-Identifier: MIT
// Growing the buffers that keep a command's output (ExecResult::stdout_text / stderr_text, a
// response body) so that a large output costs little more than the copy out of the pipe or the
// socket.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include <sandbox/detail/read_text.hpp>

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

namespace sandbox::detail {

/// A buffer this large is a mapping of its own (glibc's malloc maps 32 MiB and more itself): its
/// pages are its alone, to advise or hand back. Smaller ones may lie in malloc's heap.
inline constexpr std::size_t own_mapping_bytes = std::size_t{32} << 20;

/// An output past this many bytes is a large one: a stream reads straight into its result up to
/// here, and past it reserves the room `output_address_space()` says at once.
inline constexpr std::size_t large_output_bytes = std::size_t{1} << 20;

/// Appends `from` to `to`, whose room is reserved, and leaves `from` garbage (its pages zero, its
/// size unchanged): it is freed right after. A large `from` is copied a chunk at a time and its
/// copied pages handed back to the kernel as it goes, so that growing a buffer holds its content
/// about once, not twice (a 256 MiB output growing past 256 MiB peaked at 512 MiB). Only whole
/// pages within the content go back: an allocator keeps its bookkeeping outside what it hands out,
/// and may read nothing of freed memory. Only from `own_mapping_bytes` on.
inline void append_releasing(std::string& to, std::string& from) {
  constexpr std::size_t chunk = std::size_t{8} << 20;
  const std::size_t n = from.size();
  if (n < own_mapping_bytes) {
    to.append(from);
    return;
  }
  const auto page = static_cast<std::uintptr_t>(::getpagesize());
  const char* p = from.data();
  const auto begin = reinterpret_cast<std::uintptr_t>(p);
  std::uintptr_t released = (begin + page - 1) & ~(page - 1);
  for (std::size_t done = 0; done < n;) {
    const std::size_t k = std::min(chunk, n - done);
    to.append(p + done, k);
    done += k;
    const std::uintptr_t end = (begin + done) & ~(page - 1);
    if (end > released) {
      // Best effort: where the kernel refuses, the pages are only freed with the buffer.
      (void)::madvise(reinterpret_cast<void*>(released), end - released, MADV_DONTNEED);
      released = end;
    }
  }
}

/// Makes room for `need` bytes in `buf`, which keeps at most `cap`. Grows fourfold, by at most
/// 256 MiB a step (a 256 MiB output is copied a third of its size in all, not its whole size,
/// and a large one does not reserve four times what it holds), to `at_least` if that is more,
/// never past `cap`. The room is not asked to be backed by huge pages. On a virtual machine whose
/// guest hands freed memory back to its host (free page reporting, by 2 MiB blocks here), a huge
/// page is such a block and comes back through the host: first touch after 2.5 s idle, 120-180
/// MB/s against 2.1-2.6 GB/s for 4 KiB pages, which come from what the guest kept. A 256 MiB
/// result after 3 s idle, advised / not: kept locally 240-1608 MB/s (most near 290) / 1845-2887,
/// over gRPC 171-401 / 812-1013, decoded over REST 31-126 / 153-233; back to back no slower.
inline void reserve_output(std::string& buf, std::size_t need, std::uint64_t cap,
                           std::uint64_t at_least = 0) {
  if (buf.capacity() >= need) return;
  constexpr std::uint64_t step = std::uint64_t{256} << 20;
  const std::uint64_t have = buf.capacity();
  // A cap below what is needed bounds nothing: growing by exactly `need` each time would copy
  // the whole buffer for every append.
  if (cap < need) cap = UINT64_MAX;
  std::uint64_t grown = std::min(4 * have, have + step);
  grown = std::max<std::uint64_t>(need, std::min(std::max(grown, at_least), cap));
  std::string next;
  next.reserve(static_cast<std::size_t>(grown));
  append_releasing(next, buf);
  buf.swap(next);
}

/// Whether address space is a budget here, so that a reservation costs whether or not it is
/// written: under an RLIMIT_AS or RLIMIT_DATA (which counts private mappings since Linux 4.7), a
/// kernel that commits memory strictly (vm.overcommit_memory = 2), or locked memory (after
/// mlockall(MCL_FUTURE) every page reserved is faulted in and locked).
[[nodiscard]] inline bool address_space_is_budget() noexcept {
  for (int which : {RLIMIT_AS, RLIMIT_DATA}) {
    rlimit l{};
    if (::getrlimit(which, &l) != 0 || l.rlim_cur != RLIM_INFINITY) return true;
  }
  // What cannot be read counts as a budget: a caller without /proc may still lock its memory.
  const std::string overcommit = read_text("/proc/sys/vm/overcommit_memory");
  if (overcommit.empty() || overcommit.starts_with('2')) return true;
  const std::string status = read_text("/proc/self/status");
  const std::size_t at = status.find("\nVmLck:");
  if (at == std::string::npos) return true;
  const std::string_view locked =
      std::string_view(status).substr(at + 7, status.find('\n', at + 7) - (at + 7));
  return locked.find_first_of("123456789") != std::string_view::npos;
}

/// The room a stream's kept output reserves in one go when it passes 1 MiB
/// (`reserve_output(..., at_least)`): 256 MiB of address space (16 MiB where addresses are 32
/// bits), at most a quarter of the machine's memory; none where address space is a budget.
/// Growing by steps instead copied the output at each step into fresh memory that the kernel
/// zeroes first, which took half the time of a 256 MiB kept output here (1.2 GB/s against 2.4);
/// pages never written cost no memory.
[[nodiscard]] inline std::size_t output_address_space() noexcept {
  constexpr std::size_t most = sizeof(void*) >= 8 ? std::size_t{256} << 20 : std::size_t{16} << 20;
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0 || address_space_is_budget()) return 0;
  const auto quarter = static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page) / 4;
  return static_cast<std::size_t>(std::min<std::uint64_t>(most, quarter));
}

/// The room to reserve at once for `claimed` bytes that a peer says are coming (a body's
/// length): all of them up to `large_output_bytes`, beyond that no more than a kept output
/// reserves (`output_address_space()`, none where address space is a budget); the rest is
/// grown into as the bytes arrive. A length claimed but never sent then costs no more address
/// space than an output does: a claim of 4 GiB under an RLIMIT_AS of 400 MiB failed the
/// reservation, which ended the process (an allocation failure in noexcept code).
[[nodiscard]] inline std::uint64_t room_for_claimed(std::uint64_t claimed) noexcept {
  if (claimed <= large_output_bytes) return claimed;
  return std::max<std::uint64_t>(large_output_bytes,
                                 std::min<std::uint64_t>(claimed, output_address_space()));
}

/// A copy of `r` that takes its output (the texts) with it; `r` keeps the rest, texts empty.
template <class Result>
[[nodiscard]] Result take_output(Result& r) {
  std::string out, err;
  out.swap(r.stdout_text);
  err.swap(r.stderr_text);
  Result taken = r; // all but the texts: copying them is what this avoids
  taken.stdout_text = std::move(out);
  taken.stderr_text = std::move(err);
  return taken;
}

/// Keeps what of `data` fits under `cap` in `buf`, counts all of it in `produced`, and sets
/// `truncated` when some did not fit. `large_at_once`: a buffer that must grow past 1 MiB for the
/// first time reserves `output_address_space()` (within `cap`).
inline void append_capped(std::string& buf, std::string_view data, std::uint64_t cap,
                          bool& truncated, std::uint64_t& produced, bool large_at_once = false) {
  const std::uint64_t room = buf.size() < cap ? cap - buf.size() : 0;
  const auto keep = static_cast<std::size_t>(std::min<std::uint64_t>(room, data.size()));
  if (keep > 0) {
    const std::size_t need = buf.size() + keep;
    std::uint64_t at_least = 0;
    // Under 4 MiB: a buffer whose first read was short grows off its steps, a little past 1 MiB.
    if (large_at_once && need > large_output_bytes && buf.capacity() < need &&
        buf.capacity() < 4 * large_output_bytes)
      at_least = output_address_space();
    reserve_output(buf, need, cap, at_least);
    buf.append(data.data(), keep);
  }
  if (keep < data.size()) truncated = true;
  produced += data.size();
}

} // namespace sandbox::detail
