// SPDX-License-Identifier: MIT
// The sandbox's log: what its main process writes to stdout and stderr, kept in a ring buffer in
// shared memory (a sealed memfd). The supervisor drains the main's output pipe into it, so that
// the main never blocks on its output; the client maps it read-only and copies out of it, checking
// everything it reads there: the supervisor lives inside the sandbox.
#pragma once

#include <sandbox/transport/local/detail/libc.hpp>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace sandbox::local::detail::logring {

/// Output bytes kept: the last 1 MiB of what the main process wrote.
inline constexpr std::size_t data_bytes = std::size_t{1} << 20;
/// Chunks whose time is kept (each read of the output pipe is one chunk).
inline constexpr std::size_t max_chunks = 4096;
/// Largest chunk: one read of the pipe.
inline constexpr std::size_t max_chunk = std::size_t{64} << 10;

/// When a chunk was read, and where it ends in the log (bytes appended in all, after it).
struct chunk_record {
  std::uint64_t end;
  std::int64_t unix_ns;
};

struct header {
  std::atomic<std::uint64_t> end{0};     ///< bytes appended in all
  std::atomic<std::uint64_t> reserve{0}; ///< end of the bytes being written (end when none are)
  std::atomic<std::uint64_t> chunks{0};  ///< chunk records appended in all
  std::atomic<std::uint32_t> seq{0};     ///< bumped after each append and at close (futex word)
  std::atomic<std::uint32_t> closed{0};  ///< the writer is done: nothing more will come
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

struct ring {
  header h;
  chunk_record records[max_chunks];
  char data[data_bytes];
};

/// Size of the shared memory the ring lives in.
inline constexpr std::size_t ring_bytes = sizeof(ring);

[[nodiscard]] inline std::int64_t unix_now_ns() noexcept {
  timespec ts{};
  libc::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// ---- the writer (the supervisor: no allocation, no exceptions) -------------------------------

inline void wake(ring& r) noexcept {
  r.h.seq.fetch_add(1, std::memory_order_release);
  libc::syscall(SYS_futex, &r.h.seq, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

/// Reads what `fd` (non-blocking) has, up to one chunk, straight into the ring. Returns the bytes
/// read, 0 at EOF, -1 when nothing is available or on an error (errno tells).
inline long append_from(ring& r, int fd) noexcept {
  const std::uint64_t end = r.h.end.load(std::memory_order_relaxed);
  const std::size_t pos = static_cast<std::size_t>(end % data_bytes);
  const std::size_t room = std::min(data_bytes - pos, max_chunk);
  // Readers drop what lies within data_bytes of the reservation: it may be overwritten now.
  r.h.reserve.store(end + room, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  ssize_t n = libc::read(fd, r.data + pos, room);
  if (n <= 0) {
    r.h.reserve.store(end, std::memory_order_release);
    return n;
  }
  const std::uint64_t c = r.h.chunks.load(std::memory_order_relaxed);
  const std::uint64_t new_end = end + static_cast<std::uint64_t>(n);
  r.records[c % max_chunks] = chunk_record{new_end, unix_now_ns()};
  r.h.chunks.store(c + 1, std::memory_order_release);
  r.h.end.store(new_end, std::memory_order_release);
  // Written: only what lies more than data_bytes behind the end is gone.
  r.h.reserve.store(new_end, std::memory_order_release);
  wake(r);
  return n;
}

inline void close(ring& r) noexcept {
  r.h.closed.store(1, std::memory_order_release);
  wake(r);
}

// ---- the reader (the client: every value read from the ring is checked) ----------------------

/// A piece of the log: bytes read from the main's output at one time.
struct piece {
  std::string data;
  std::int64_t unix_ns = 0;
  std::uint64_t end = 0; ///< offset in the log after this piece
};

/// What the ring holds from some offset on.
struct snapshot {
  std::vector<piece> pieces;
  std::uint64_t first = 0; ///< oldest offset still kept (older output was overwritten)
  std::uint64_t end = 0;   ///< offset after the last byte written so far
  bool closed = false;     ///< nothing more will be written
  std::uint32_t seq = 0;   ///< for `await`: the sequence this snapshot saw
};

/// Copies what the ring holds from offset `from` on (from the oldest byte kept when `from` is
/// older), in pieces by the time they were written.
[[nodiscard]] inline snapshot read_from(const ring& r, std::uint64_t from) {
  snapshot s;
  s.seq = r.h.seq.load(std::memory_order_acquire);
  s.closed = r.h.closed.load(std::memory_order_acquire) != 0;
  // The end first: the records (published before it) then cover every byte up to it.
  const std::uint64_t end = r.h.end.load(std::memory_order_acquire);
  const std::uint64_t chunks = r.h.chunks.load(std::memory_order_acquire);
  s.end = end;
  std::uint64_t start = std::max(from, end > data_bytes ? end - data_bytes : 0);
  if (start >= end) {
    s.first = std::min(start, end);
    return s;
  }
  // The bytes, then which of them may have been overwritten while they were copied.
  std::string bytes(static_cast<std::size_t>(end - start), '\0');
  std::size_t pos = static_cast<std::size_t>(start % data_bytes);
  std::size_t first_part = std::min(bytes.size(), data_bytes - pos);
  std::memcpy(bytes.data(), r.data + pos, first_part);
  std::memcpy(bytes.data() + first_part, r.data, bytes.size() - first_part);
  // The records of the chunks that may cover them, newest last.
  const std::uint64_t oldest_record = chunks > max_chunks ? chunks - max_chunks : 0;
  std::vector<chunk_record> recs;
  recs.reserve(static_cast<std::size_t>(chunks - oldest_record));
  for (std::uint64_t i = oldest_record; i < chunks; ++i)
    recs.push_back(r.records[i % max_chunks]);
  std::atomic_thread_fence(std::memory_order_acquire);
  const std::uint64_t reserve = r.h.reserve.load(std::memory_order_relaxed);
  const std::uint64_t chunks_now = r.h.chunks.load(std::memory_order_relaxed);
  if (reserve > data_bytes && reserve - data_bytes > start) {
    std::uint64_t valid = std::min(reserve - data_bytes, end);
    bytes.erase(0, static_cast<std::size_t>(valid - start));
    start = valid;
  }
  // Records the writer may have overwritten meanwhile (one may be under way) are dropped.
  std::size_t stale = chunks_now + 1 > max_chunks + oldest_record
                          ? static_cast<std::size_t>(chunks_now + 1 - max_chunks - oldest_record)
                          : 0;
  recs.erase(recs.begin(),
             recs.begin() + static_cast<std::ptrdiff_t>(std::min(stale, recs.size())));
  s.first = start;
  // Pieces: each record's span within [start, end) (the first also takes what older records,
  // overwritten, covered); records out of order (a writer gone wrong) are passed over. Bytes no
  // record covers yet get the time of reading.
  std::uint64_t at = start;
  for (const auto& rec : recs) {
    if (rec.end <= at || rec.end > end) continue;
    s.pieces.push_back(piece{
        bytes.substr(static_cast<std::size_t>(at - start), static_cast<std::size_t>(rec.end - at)),
        rec.unix_ns, rec.end});
    at = rec.end;
  }
  if (at < end)
    s.pieces.push_back(
        piece{bytes.substr(static_cast<std::size_t>(at - start)), unix_now_ns(), end});
  return s;
}

/// Waits until the ring changes from what `seq` saw, or `timeout_ms` passes.
inline void await(const ring& r, std::uint32_t seq, long timeout_ms) noexcept {
  if (r.h.seq.load(std::memory_order_acquire) != seq) return;
  timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1'000'000};
  libc::syscall(SYS_futex, &r.h.seq, FUTEX_WAIT, seq, &ts, nullptr, 0);
}

} // namespace sandbox::local::detail::logring
