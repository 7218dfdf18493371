// SPDX-License-Identifier: MIT
// The machine's ceiling for output, measured beside each figure that is compared with it.
#pragma once

#include "cpus.hpp"

#include <sandbox/detail/prefault.hpp>
#include <sandbox/transport/http/base64.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace test_support {

/// Seconds `bytes` (whole MiB) take through a plain pipe, `dd | dd` with 1 MiB blocks; negative
/// when dd failed. With CPUs given, the writer runs on `writer_cpu` and the reader on
/// `reader_cpu`.
inline double pipe_seconds(std::size_t bytes, int writer_cpu = -1, int reader_cpu = -1) {
  auto on = [](int cpu) {
    return cpu < 0 ? std::string() : "taskset -c " + std::to_string(cpu) + " ";
  };
  const std::string cmd = on(writer_cpu) +
                          "dd if=/dev/zero bs=1M count=" + std::to_string(bytes >> 20) +
                          " status=none | " + on(reader_cpu) + "dd of=/dev/null bs=1M status=none";
  const auto t0 = std::chrono::steady_clock::now();
  if (std::system(cmd.c_str()) != 0) return -1;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// The pipe's limit in MB/s, each placement the best of `tries`. Left to the scheduler, `dd | dd`
/// ran both ends on one CPU in some runs and on two in others, at twice the speed on one
/// (3.6-3.9 GB/s against 1.8-2.1 on a 2-CPU VM): a ratio to whichever it happened to be said
/// little. So both are measured, pinned, and figures are compared with the better one.
struct pipe_limit {
  double one_cpu = 0;  ///< both ends on the first CPU this process may use
  double two_cpus = 0; ///< writer and reader on the first two (0 with a single CPU)
  double placed = 0;   ///< plain `dd | dd`, unpinned: wherever the scheduler runs it
  [[nodiscard]] double best() const { return std::max(one_cpu, two_cpus); }
};

/// Measures `pipe_limit` with `bytes` (whole MiB) per run; one_cpu is negative when dd failed.
inline pipe_limit measure_pipe_limit(std::size_t bytes, int tries = 3) {
  const std::vector<int> cpus = usable_cpus();
  pipe_limit best;
  const double mb = static_cast<double>(bytes) / 1e6;
  for (int i = 0; i < tries; ++i) {
    const double one = pipe_seconds(bytes, cpus[0], cpus[0]);
    if (one < 0) return {-1, -1};
    best.one_cpu = std::max(best.one_cpu, mb / one);
    if (cpus.size() < 2) continue;
    const double two = pipe_seconds(bytes, cpus[0], cpus[1]);
    if (two < 0) return {-1, -1};
    best.two_cpus = std::max(best.two_cpus, mb / two);
  }
  for (int i = 0; i < tries; ++i) {
    const double placed = pipe_seconds(bytes);
    if (placed < 0) return {-1, -1};
    best.placed = std::max(best.placed, mb / placed);
  }
  return best;
}

namespace detail {

/// A loopback listener and a connection to it: `to` (the sending end) and `from`.
struct loopback_pair {
  int to = -1, from = -1;
  loopback_pair() {
    const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0) return;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        ::listen(listener, 1) == 0 &&
        ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      to = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      bool connected =
          to >= 0 && ::connect(to, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
      if (to >= 0 && !connected && errno == EINTR) { // a signal came: the connect goes on
        pollfd p{to, POLLOUT, 0};
        int r;
        do
          r = ::poll(&p, 1, -1);
        while (r < 0 && errno == EINTR);
        int err = 0;
        socklen_t err_len = sizeof err;
        connected =
            r == 1 && ::getsockopt(to, SOL_SOCKET, SO_ERROR, &err, &err_len) == 0 && err == 0;
      }
      if (connected) do
          from = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        while (from < 0 && errno == EINTR);
    }
    ::close(listener);
  }
  ~loopback_pair() {
    if (to >= 0) ::close(to);
    if (from >= 0) ::close(from);
  }
  loopback_pair(const loopback_pair&) = delete;
  loopback_pair& operator=(const loopback_pair&) = delete;
  [[nodiscard]] bool ok() const { return to >= 0 && from >= 0; }
};

/// Writes all of `n` bytes; false on an error. Async-signal-safe (a forked child's).
inline bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t k = ::write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= static_cast<std::size_t>(k);
  }
  return true;
}

/// `read`, again when a signal interrupts it. Async-signal-safe.
inline ssize_t read_some(int fd, char* p, std::size_t n) {
  ssize_t k;
  do
    k = ::read(fd, p, n);
  while (k < 0 && errno == EINTR);
  return k;
}

/// Whether the child `pid` exited with 0 (it is killed first when `stop`).
inline bool reaped_ok(pid_t pid, bool stop) {
  if (pid <= 0) return false;
  if (stop) ::kill(pid, SIGKILL);
  int status = 0;
  pid_t r;
  do
    r = ::waitpid(pid, &status, 0);
  while (r < 0 && errno == EINTR);
  return r == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

} // namespace detail

/// Loopback TCP's limit in MB/s, the best of `tries`: `bytes` through one connection on
/// 127.0.0.1, written and read 1 MiB at a time by two threads of this process (the floor under
/// any remote transport measured on loopback); negative when a socket call failed.
inline double tcp_loopback_limit(std::size_t bytes, int tries = 3) {
  constexpr std::size_t chunk = std::size_t{1} << 20;
  double best = -1;
  for (int i = 0; i < tries; ++i) {
    // Connected before the writer starts (the listener's backlog takes it), so that neither end
    // can wait for the other forever.
    detail::loopback_pair conn;
    if (!conn.ok()) break;
    bool sent_all = false;
    const auto t0 = std::chrono::steady_clock::now();
    std::thread writer([&] {
      const std::vector<char> block(chunk, 'x');
      std::size_t done = 0;
      while (done < bytes) {
        const ssize_t k = ::write(conn.to, block.data(), std::min(chunk, bytes - done));
        if (k <= 0) break;
        done += static_cast<std::size_t>(k);
      }
      sent_all = done == bytes;
      ::shutdown(conn.to, SHUT_WR);
    });
    std::vector<char> block(chunk);
    std::size_t got = 0;
    for (ssize_t k = 0; (k = detail::read_some(conn.from, block.data(), chunk)) > 0;)
      got += static_cast<std::size_t>(k);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // A writer blocked on a full window (the read failed) is stopped by the reset a close with
    // unread data sends; a shutdown would leave it blocked.
    ::close(conn.from);
    conn.from = -1;
    writer.join();
    if (!sent_all || got != bytes) return -1;
    best = std::max(best, static_cast<double>(bytes) / 1e6 / s);
  }
  return best;
}

/// The floor under a remote transport's large output on this machine, in MB/s of output, the
/// best of `tries`; negative when a system call failed or a byte was lost (or `bytes` is 0). A
/// writer process does what `dd if=/dev/zero bs=1M` does into a pipe (1 MiB, as the local
/// transport's); a relay process reads the pipe and sends what it read over one loopback TCP
/// connection; this process receives it. `base64`: the relay encodes what it reads (with the
/// library's codec) and this process decodes it as it arrives, as a REST response's value is.
/// `keep`: into fresh memory, as a kept result (else into 1 MiB used again and again, as output
/// passed on). No protocol, framing or JSON: only the copies, wake-ups, faults and encoding that
/// any server and client pair carrying a command's output that way must do. Timed from the
/// first fork to the end of the stream; what is freed afterwards is not. The children are reaped:
/// a caller that ignores SIGCHLD gets -1.
inline double relay_floor(std::size_t bytes, bool base64 = false, bool keep = true, int tries = 3) {
  using sandbox::http::base64_encoded_size;
  constexpr std::size_t chunk = std::size_t{1} << 20;
  if (bytes == 0) return -1;
  double best = -1;
  for (int i = 0; i < tries; ++i) {
    detail::loopback_pair conn;
    int pipe_fds[2];
    if (!conn.ok() || ::pipe2(pipe_fds, O_CLOEXEC) != 0) return -1;
    (void)::fcntl(pipe_fds[1], F_SETPIPE_SZ, 1 << 20);
    const int zero = ::open("/dev/zero", O_RDONLY | O_CLOEXEC);
    // Every buffer is allocated before the forks, and the codec has chosen its loops: a child
    // of this (threaded) process only reads, encodes, writes and exits.
    std::vector<char> written(chunk), in(chunk + 2);
    std::vector<char> encoded(base64 ? base64_encoded_size(chunk + 2) : 0);
    if (base64) sandbox::http::base64_encode_to(encoded.data(), {in.data(), 64});
    // The output's room, fresh: received into as it is, or appended to by the decoding.
    const std::size_t room_size = keep ? bytes : chunk;
    std::string decoded;
    void* room = MAP_FAILED;
    if (base64)
      decoded.reserve(room_size);
    else
      room = ::mmap(nullptr, room_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (zero < 0 || (!base64 && room == MAP_FAILED)) {
      if (room != MAP_FAILED) ::munmap(room, room_size);
      for (int fd : {pipe_fds[0], pipe_fds[1], zero})
        if (fd >= 0) ::close(fd);
      return -1;
    }
    std::vector<char> block(chunk + 8);
    const auto t0 = std::chrono::steady_clock::now();
    const pid_t writer = ::fork();
    if (writer == 0) {
      for (int fd : {pipe_fds[0], conn.to, conn.from})
        ::close(fd);
      for (std::size_t done = 0; done < bytes; done += chunk) {
        const std::size_t n = std::min(chunk, bytes - done);
        if (detail::read_some(zero, written.data(), n) != static_cast<ssize_t>(n) ||
            !detail::write_all(pipe_fds[1], written.data(), n))
          ::_exit(1);
      }
      ::_exit(0);
    }
    ::close(pipe_fds[1]);
    ::close(zero);
    const pid_t relay = writer < 0 ? -1 : ::fork();
    if (relay == 0) {
      ::close(conn.from);
      std::size_t held = 0; // bytes read but not yet sent (base64: the last group, incomplete)
      for (ssize_t k = 0; (k = detail::read_some(pipe_fds[0], in.data() + held, chunk)) > 0;) {
        held += static_cast<std::size_t>(k);
        if (!base64) {
          if (!detail::write_all(conn.to, in.data(), held)) ::_exit(1);
          held = 0;
          continue;
        }
        const std::size_t whole = held / 3 * 3;
        sandbox::http::base64_encode_to(encoded.data(), {in.data(), whole});
        if (!detail::write_all(conn.to, encoded.data(), whole / 3 * 4)) ::_exit(1);
        std::memmove(in.data(), in.data() + whole, held - whole);
        held -= whole;
      }
      sandbox::http::base64_encode_to(encoded.data(), {in.data(), held});
      ::_exit(detail::write_all(conn.to, encoded.data(), base64_encoded_size(held)) ? 0 : 1);
    }
    ::close(pipe_fds[0]);
    ::close(conn.to); // the relay's copy is the only sending end left
    conn.to = -1;
    // The room faulted in ahead of the copy by the library's own prefaulter, as a kept result's.
    sandbox::detail::prefaulter ahead;
    bool intact = relay > 0;
    std::size_t got = 0;  // output received (base64: decoded)
    std::size_t held = 0; // base64 received but not decoded: a group begun, or the padded last
    auto decode = [&](std::size_t n, bool last) {
      const std::size_t before = decoded.size();
      ahead.before_append(decoded, sandbox::http::base64_decoded_size_at_most(n));
      intact = sandbox::http::base64_decode_into(decoded, {block.data(), n}, 0, last).has_value();
      got += decoded.size() - before;
      intact = intact && got <= bytes; // a byte more than was sent is a byte wrong
      if (!keep)
        decoded.clear();
      else
        ahead.ahead_of(decoded);
    };
    bool ended = false; // the relay's end of the stream was seen
    while (intact) {
      // Kept: once all is there, one byte more is asked for (the end of the stream is awaited)
      // into `extra`, not past the room.
      char extra = 0;
      char* into = base64        ? block.data() + held
                   : !keep       ? static_cast<char*>(room)
                   : got < bytes ? static_cast<char*>(room) + got
                                 : &extra;
      const ssize_t k = detail::read_some(conn.from, into,
                                          base64 || !keep ? chunk
                                          : got < bytes   ? bytes - got
                                                          : 1);
      if (k < 0) intact = false;
      if (k <= 0) {
        ended = k == 0;
        break;
      }
      if (!base64) {
        got += static_cast<std::size_t>(k);
        intact = got <= bytes;
        if (keep) ahead.ahead_of(static_cast<char*>(room), got, bytes);
        continue;
      }
      held += static_cast<std::size_t>(k);
      std::size_t whole = held / 4 * 4;
      if (whole > 0 && block[whole - 1] == '=') whole -= 4; // the padded end: decoded last
      decode(whole, false);
      std::memmove(block.data(), block.data() + whole, held - whole);
      held -= whole;
    }
    // The stream has ended; what is left to decode is at most 7 characters.
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (base64 && intact) decode(held, true);
    ahead.stop(); // before the room goes
    if (room != MAP_FAILED) ::munmap(room, room_size);
    // Children still writing when this end stopped early are killed: a writer blocked on a full
    // pipe or window would wait forever.
    const bool stop = !(intact && ended);
    intact = detail::reaped_ok(writer, stop) && intact;
    intact = detail::reaped_ok(relay, stop) && intact;
    if (!intact || !ended || got != bytes) return -1;
    best = std::max(best, static_cast<double>(bytes) / 1e6 / s);
  }
  return best;
}

} // namespace test_support
