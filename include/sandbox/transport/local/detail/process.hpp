// SPDX-License-Identifier: MIT
// A command running in a local sandbox, as the client sees it: its pipes, its status socket, and
// the loop that reads both output streams concurrently until it exits.
#pragma once

#include <sandbox/detail/deadline.hpp>
#include <sandbox/detail/output_buffer.hpp>
#include <sandbox/detail/prefault.hpp>
#include <sandbox/options.hpp>
#include <sandbox/result.hpp>
#include <sandbox/transport/local/detail/box.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

namespace sandbox::local::detail {

using namespace sandbox::detail; // text, unique_fd, random: the library-wide helpers

/// The environment of one command: the sandbox's, overridden by the exec's own.
/// write(2) to a pipe whose reader may be gone, without raising SIGPIPE in the caller's process:
/// the signal is blocked for this thread and a SIGPIPE it caused is consumed.
[[nodiscard]] inline ssize_t write_no_sigpipe(int fd, std::string_view data) noexcept {
  sigset_t pipe_set, old_set, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  sigpending(&pending);
  const bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  ssize_t n = ::write(fd, data.data(), data.size());
  int err = errno;
  if (n < 0 && err == EPIPE && !was_pending) {
    timespec zero{0, 0};
    while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  errno = err;
  return n;
}

[[nodiscard]] inline std::vector<std::string> merge_env(const std::vector<std::string>& base,
                                                        const env_map& extra) {
  if (extra.empty()) return base;
  env_map env;
  for (const auto& kv : base) {
    auto eq = kv.find('=');
    env.insert_or_assign(kv.substr(0, eq), kv.substr(eq + 1));
  }
  for (const auto& [k, v] : extra)
    env.insert_or_assign(k, v);
  std::vector<std::string> out;
  for (const auto& [k, v] : env)
    out.push_back(k + "=" + v);
  return out;
}

/// A command started in a local sandbox.
class process {
public:
  process() = default;
  process(process&&) noexcept = default;
  process& operator=(process&&) noexcept = default;
  ~process() { // the threads faulting in the output buffers end before the buffers do
    ahead_[0].stop();
    ahead_[1].stop();
  }

  /// Asks the supervisor of `b` to start `argv`; returns as soon as the request is sent.
  [[nodiscard]] static result<process>
  start(std::shared_ptr<box> b, std::span<const std::string> argv, const ExecOptions& o) noexcept {
    process p;
    p.box_ = std::move(b);
    p.res_.command.assign(argv.begin(), argv.end());
    p.max_output_ = o.max_output_bytes == 0 ? default_max_output_bytes : o.max_output_bytes;
    p.on_out_ = o.on_stdout;
    p.on_err_ = o.on_stderr;
    if (o.timeout) p.exec_deadline_ = sandbox::detail::deadline_after(*o.timeout);
    std::string cwd = o.cwd ? *o.cwd : p.box_->workdir;
    std::vector<std::string> env = merge_env(p.box_->base_env, o.env);
    // As `docker exec -t`: a terminal's programs want to know what it is.
    if (o.tty && std::none_of(env.begin(), env.end(),
                              [](const std::string& kv) { return kv.starts_with("TERM="); }))
      env.emplace_back("TERM=xterm");
    SANDBOX_TRY(strings, pack_strings(argv, env, cwd));

    int st[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, st) != 0)
      return p.os_error("socketpair");
    p.status_.reset(st[0]);
    unique_fd st_theirs(st[1]);
    request rq{};
    rq.code = op::exec;
    rq.argc = static_cast<std::uint32_t>(argv.size());
    rq.envc = static_cast<std::uint32_t>(env.size());
    rq.strings_len = static_cast<std::uint32_t>(strings.size());
    p.oom_before_ = p.box_->oom_kills(); // 0 without a memory limit, at no cost
    rq.cpu = ::sched_getcpu();           // see follow_caller (supervisor.hpp)
    if (o.tty) {
      // The terminal's master comes back with `started` (read_status).
      p.tty_ = true;
      rq.flags = exec_tty;
      rq.tty_cols = o.tty->cols;
      rq.tty_rows = o.tty->rows;
      const int fd = st_theirs.get();
      SANDBOX_TRYV(p.box_->send(rq, strings, std::span<const int>(&fd, 1)));
      return p;
    }

    int out[2], err[2], in[2] = {-1, -1};
    if (::pipe2(out, O_CLOEXEC) != 0) return p.os_error("pipe");
    p.out_.reset(out[0]);
    unique_fd out_w(out[1]);
    if (::pipe2(err, O_CLOEXEC) != 0) return p.os_error("pipe");
    p.err_.reset(err[0]);
    unique_fd err_w(err[1]);
    unique_fd in_r;
    if (o.stdin_pipe) {
      if (::pipe2(in, O_CLOEXEC) != 0) return p.os_error("pipe");
      in_r.reset(in[0]);
      p.in_.reset(in[1]);
      ::fcntl(p.in_.get(), F_SETFL, O_NONBLOCK);
    }
    ::fcntl(p.out_.get(), F_SETFL, O_NONBLOCK);
    ::fcntl(p.err_.get(), F_SETFL, O_NONBLOCK);
    rq.flags = o.stdin_pipe ? std::uint32_t{exec_stdin_pipe} : 0u;
    int fds[4];
    int n = 0;
    fds[n++] = st_theirs.get();
    if (o.stdin_pipe) fds[n++] = in_r.get();
    fds[n++] = out_w.get();
    fds[n++] = err_w.get();
    SANDBOX_TRYV(p.box_->send(rq, strings, std::span<const int>(fds, n)));
    return p;
  }

  /// Waits up to `timeout` (forever if unset) for the command to finish.
  /// **Errors:** errc::timeout (still running; call again), errc::command_timeout (killed by
  /// ExecOptions::timeout; carries the output), errc::not_running (the sandbox ended first).
  [[nodiscard]] result<ExecResult> wait(std::optional<std::chrono::milliseconds> timeout) noexcept {
    SANDBOX_TRYV(wait_ended(timeout));
    return final_result();
  }

  /// As `wait`, but also returns errc::timeout (still running) once `wake` is readable (see
  /// `wakeable_process`); `wake` is polled, never read.
  [[nodiscard]] result<ExecResult> wait_or_wake(std::optional<std::chrono::milliseconds> timeout,
                                                int wake) noexcept {
    SANDBOX_TRYV(wait_ended(timeout, wake));
    return final_result();
  }

  /// As `wait`, but a successful result takes the output with it (see `taking_process`).
  [[nodiscard]] result<ExecResult> take(std::optional<std::chrono::milliseconds> timeout) noexcept {
    SANDBOX_TRYV(wait_ended(timeout));
    return taken();
  }

  /// As `take`, but also returns errc::timeout (still running) once `wake` is readable.
  [[nodiscard]] result<ExecResult> take_or_wake(std::optional<std::chrono::milliseconds> timeout,
                                                int wake) noexcept {
    SANDBOX_TRYV(wait_ended(timeout, wake));
    return taken();
  }

  /// Reads what is available without blocking; the exit code once the command has finished.
  [[nodiscard]] std::optional<int> poll() noexcept {
    if (!done_) (void)pump(clock::now(), nullptr);
    if (done_ && !failure_) return res_.returncode;
    return std::nullopt;
  }

  [[nodiscard]] std::optional<int> returncode() const noexcept {
    if (done_ && !failure_) return res_.returncode;
    return std::nullopt;
  }

  /// Sends `sig` to the command's process group.
  [[nodiscard]] result<void> kill(int sig) noexcept {
    if (done_) return success();
    SANDBOX_TRYV(await_pid());
    if (done_) return success();
    return signal_command(sig);
  }

  /// Writes all of `data` to the command's stdin, reading its output meanwhile so that neither
  /// side can block the other.
  [[nodiscard]] result<void> write_stdin(std::string_view data) noexcept {
    if (done_ && !data.empty())
      return fail(errc::not_running, command_excerpt(res_.command) + " has ended");
    SANDBOX_TRYV(stdin_open());
    return pump(std::nullopt, &data);
  }

  /// Writes as much of `data` as the command takes within `timeout` (reading its output
  /// meanwhile), and drops what was written from `data`: for a caller that must stay able to do
  /// something else (a server noticing that its client went away) while a command does not read.
  /// **Errors:** timeout (some of `data` is left; call again), and those of write_stdin.
  [[nodiscard]] result<void> write_stdin_for(std::string_view& data,
                                             std::chrono::milliseconds timeout) noexcept {
    if (done_ && !data.empty())
      return fail(errc::not_running, command_excerpt(res_.command) + " has ended");
    SANDBOX_TRYV(stdin_open());
    return pump(sandbox::detail::deadline_after(timeout), &data);
  }

  /// Closes stdin; on a terminal, which stays open, types end-of-file (Ctrl-D) instead: a
  /// program reading lines sees the end of its input (after the line under way, if any).
  /// The Ctrl-D is written as the terminal takes it (by later waits, if it is full): this never
  /// blocks on a command that does not read.
  [[nodiscard]] result<void> close_stdin() noexcept {
    if (tty_) { // the terminal stays open (see write_pending_eof): stdin_closed_ refuses writes
      if (stdin_closed_ || done_) {
        stdin_closed_ = true;
        return success();
      }
      stdin_closed_ = true;
      SANDBOX_TRYV(await_pid()); // the terminal arrives with `started`
      // A line under way takes one Ctrl-D to be read, and a second to end the input. No line is
      // under way after Enter (`\n`, or `\r`, which the terminal turns into `\n`), a line kill
      // (Ctrl-U), an interrupt (Ctrl-C) or an end-of-file, or before anything was typed.
      const bool line_empty =
          std::string_view("\n\r\x15\x03\x04", 6).find(last_typed_) != std::string_view::npos;
      if (in_) eof_pending_ = line_empty ? "\x04" : "\x04\x04";
      write_pending_eof();
      return success();
    }
    stdin_closed_ = true;
    in_.reset();
    return success();
  }

  /// Sets the size of the command's terminal (ExecOptions::tty).
  [[nodiscard]] result<void> resize(TerminalSize size) noexcept {
    if (!box_) return fail(errc::not_running, "no command: this process handle was moved from");
    if (!tty_)
      return fail(errc::validation, command_excerpt(res_.command) +
                                        " has no terminal to resize (set ExecOptions::tty)");
    SANDBOX_TRYV(await_pid());
    int fd = in_ ? in_.get() : out_.get();
    if (done_ || fd < 0) return success();
    winsize ws{};
    ws.ws_col = size.cols ? size.cols : 80;
    ws.ws_row = size.rows ? size.rows : 24;
    if (::ioctl(fd, TIOCSWINSZ, &ws) != 0)
      return fail(errc::transport, "resizing the terminal of " + command_excerpt(res_.command) +
                                       ": " + errno_text(errno));
    return success();
  }

private:
  using clock = std::chrono::steady_clock;

  /// The result of an ended command, its output moved out when it succeeded.
  [[nodiscard]] result<ExecResult> taken() noexcept {
    if (failure_ || timed_out_) return final_result(); // kept: the error carries a copy
    return take_output(res_);
  }

  result<process> os_error(const char* what) noexcept {
    return fail(errno == EMFILE || errno == ENFILE ? errc::resource_exhausted : errc::transport,
                std::string(what) + " for " + command_excerpt(res_.command) + " in " + box_->id +
                    ": " + errno_text(errno));
  }

  [[nodiscard]] result<void> stdin_open() noexcept {
    if (!stdin_closed_ && (in_ || (tty_ && pid_ == 0 && !done_))) return success();
    return fail(errc::validation, "stdin of " + command_excerpt(res_.command) +
                                      " is not open (set ExecOptions::stdin_pipe or tty, and do "
                                      "not write after close_stdin)");
  }

  [[nodiscard]] result<void> await_pid() noexcept {
    while (pid_ == 0 && !done_ && status_) {
      SANDBOX_TRYV(pump(std::nullopt, nullptr, true));
    }
    return success();
  }

  /// Reads one chunk of a stream. Below 1 MiB kept, straight into the result (16 KiB reads,
  /// growing with it); from there on, into a 1 MiB scratch buffer and appended: the copy out of
  /// a cache-hot buffer costs less than zero-filling fresh memory for the read, and a full
  /// result is not grown only to read the end of the stream. A result that outgrows 1 MiB
  /// reserves its room at once (`output_address_space`). Past the cap, chunks go to the
  /// scratch buffer and the part under the cap is kept: the callbacks see every chunk as read,
  /// kept or dropped, not split where the cap falls. False at EOF or when nothing is available.
  bool read_stream(unique_fd& fd, bool is_out) noexcept {
    constexpr std::size_t scratch_size = std::size_t{1} << 20;
    constexpr std::size_t large = sandbox::detail::large_output_bytes;
    std::string& buf = is_out ? res_.stdout_text : res_.stderr_text;
    // Read straight in, a buffer grows by its steps (16 KiB times 4^k) to `large` at most: past
    // that, `append_capped` reserves a large output's room at once.
    const std::size_t chunk =
        buf.size() < large ? std::min(std::clamp<std::size_t>(buf.size(), 16 * 1024, scratch_size),
                                      large - buf.size())
                           : scratch_size;
    bool& truncated = is_out ? res_.stdout_truncated : res_.stderr_truncated;
    std::uint64_t& produced = is_out ? res_.stdout_bytes_produced : res_.stderr_bytes_produced;
    const output_callback& cb = is_out ? on_out_ : on_err_;
    const std::uint64_t room = buf.size() < max_output_ ? max_output_ - buf.size() : 0;
    ssize_t n;
    const char* data;
    if (buf.size() < large && room >= chunk) {
      std::size_t old = buf.size();
      // While the output is small, the read is sized to what the pipe holds, and room for a
      // chunk is made only when that does not fit: after a sandbox's start (a clone leaves this
      // process's memory copy-on-write) each page written costs a fault (15-20 µs here).
      // Resizing for a whole chunk zero-filled it, and reserving one touched fresh heap pages:
      // 4-5 faults for the two streams of a command that prints nothing, whose one-byte read
      // fits in the string itself. (Room sized to the first read instead would start the 4x
      // growth off its usual steps: a 256 MiB result then outgrew its last step and was copied
      // whole, 1.5x its size at the peak.)
      std::size_t want = chunk;
      if (int held = 0; old < 64 * 1024 && ::ioctl(fd.get(), FIONREAD, &held) == 0)
        want = std::clamp<std::size_t>(static_cast<std::size_t>(held), 1, chunk);
      if (buf.capacity() - old < want)
        sandbox::detail::reserve_output(buf, old + chunk, max_output_);
      buf.resize(old + want);
      n = ::read(fd.get(), buf.data() + old, want);
      buf.resize(old + static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
      data = buf.data() + old;
      if (n > 0) produced += static_cast<std::uint64_t>(n);
    } else if (room == 0 && !cb && drop_in_kernel(fd.get(), n)) {
      data = nullptr;
      if (n > 0) {
        truncated = true;
        produced += static_cast<std::uint64_t>(n);
      }
    } else {
      if (!scratch_) scratch_.reset(new (std::nothrow) char[scratch_size]);
      char small[4096]; // when even 1 MiB cannot be had: slower, but the stream is read
      char* into = scratch_ ? scratch_.get() : small;
      n = ::read(fd.get(), into, scratch_ ? scratch_size : sizeof small);
      data = into;
      if (n > 0)
        sandbox::detail::append_capped_ahead(ahead_[is_out ? 0 : 1], buf,
                                             std::string_view(data, static_cast<std::size_t>(n)),
                                             max_output_, truncated, produced);
    }
    if (n > 0) {
      if (produced >= 64 * 1024) widen_pipe(fd.get(), is_out);
      if (cb) cb(std::string_view(data, static_cast<std::size_t>(n)));
      return true;
    }
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) fd.reset();
    return false;
  }

  /// Makes a stream's pipe larger once 64 KiB went through it, unless the command chose its
  /// size itself (it may want a small pipe, to be held back by its reader; one that chose the
  /// default size cannot be told from one that chose none).
  /// Between two CPUs, 1 MiB: a smaller pipe wakes the other side more often, which costs most
  /// there (256 MiB to on_stdout, the command on one CPU of a virtual machine's two and the
  /// reader on the other: 2.6 GB/s with 1 MiB, 1.8 with 256 KiB, 0.8 with the default 64 KiB).
  /// Within one CPU, 128 KiB: the pipe then shares the cache with the writer's and the reader's
  /// buffers (everything on one CPU: on_stdout 5.7 GB/s against 4.4 with 1 MiB, kept 1.8
  /// against 1.6). Both ends are on one CPU for sure only when the sandbox's commands and this
  /// thread may run on that CPU alone; where each runs otherwise is the scheduler's choice. Not at
  /// once: a pipe counts against its user's pipe buffer limit for as long as it is open, whatever
  /// it holds (fs.pipe-user-pages-soft, 16384 pages by default; past it, the user's new pipes get
  /// two pages in every process with neither CAP_SYS_RESOURCE nor CAP_SYS_ADMIN, a root caller's
  /// sandboxed commands included). Made larger at once, every running command's stdout counted 1
  /// MiB, and 64 commands at once reached it; now only a stream that writes much does (a command
  /// writing much on both counts 2 MiB: 32 such commands reach it). What that cost: a
  /// command and its reader start on one CPU (follow_caller), and a small pipe's early wake-ups are
  /// where the scheduler moves one of them to the other CPU. Of 120 runs of 256 MiB to on_stdout or
  /// dropped, 13 stayed on one CPU (about twice as fast) with the pipe made larger at once, 1 with
  /// it made larger after 64 KiB; the means were the same.
  void widen_pipe(int fd, bool is_out) noexcept {
    bool& done = widened_[is_out ? 0 : 1];
    if (done || tty_) return; // a terminal has no pipes
    done = true;
    const int made = 16 * static_cast<int>(::sysconf(_SC_PAGESIZE)); // PIPE_DEF_BUFFERS pages
    const int now = ::fcntl(fd, F_GETPIPE_SZ);
    const bool one_cpu = box_->sole_cpu >= 0 && sole_cpu_of() == box_->sole_cpu;
    const int size = one_cpu ? 128 << 10 : 1 << 20;
    // Refused to a caller without CAP_SYS_RESOURCE past fs.pipe-max-size or its user's pipe
    // buffer limits: the pipe stays as it is.
    if (now == made && now < size) (void)::fcntl(fd, F_SETPIPE_SZ, size);
  }

  /// Output past the cap that no callback wants is moved to /dev/null inside the kernel: counted,
  /// never copied out (4.0-4.5 GB/s here against 2.9-3.2 read and discarded). False where that
  /// cannot be done (a terminal, no null device): the caller reads it instead.
  bool drop_in_kernel(int fd, ssize_t& n) noexcept {
    if (no_splice_) return false;
    if (!null_) {
      // Not blocking: a FIFO there would wait for a reader. A regular file there (a broken
      // container) would get the dropped output written to it. Only the null device will do.
      null_.reset(::open("/dev/null", O_WRONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
      struct stat st {};
      if (null_ &&
          (::fstat(null_.get(), &st) != 0 || !S_ISCHR(st.st_mode) || st.st_rdev != ::makedev(1, 3)))
        null_.reset();
    }
    if (null_)
      n = ::splice(fd, nullptr, null_.get(), nullptr, std::size_t{1} << 20, SPLICE_F_NONBLOCK);
    if (!null_ || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      no_splice_ = true;
      return false;
    }
    return true;
  }

  void read_status() noexcept {
    reply r{};
    unique_fd attached;
    ssize_t n = receive_reply(status_.get(), r, attached);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n != sizeof r) { // the supervisor closed it without an exit: the sandbox went away
      status_.reset();
      if (!exited_)
        failure_ = error(errc::not_running, "sandbox " + box_->id + " stopped while " +
                                                command_excerpt(res_.command) + " was running");
      return;
    }
    switch (r.kind) {
    case event::started:
      pid_ = r.value;
      if (tty_) take_terminal(std::move(attached));
      break;
    case event::exited:
      exited_ = true;
      res_.returncode = returncode_of(r.value);
      res_.term_signal = WIFSIGNALED(r.value) ? WTERMSIG(r.value) : 0;
      // The kernel counts an OOM kill before it sends the SIGKILL: a count that grew while the
      // command ran, and an end as a SIGKILLed process (or a shell reporting one), means OOM.
      res_.oom_killed = res_.returncode == 137 && !kill_sent_ && box_->oom_kills() > oom_before_;
      status_.reset();
      break;
    case event::start_failed: {
      exited_ = true;
      status_.reset();
      if (r.where == stage::terminal && r.err != ENOENT && r.err != EACCES) {
        // No terminal to be had (too many open, none left): not the command's own failure.
        bool spent = r.err == ENOSPC || r.err == EMFILE || r.err == ENFILE || r.err == EAGAIN;
        failure_ = error(spent ? errc::resource_exhausted : errc::transport,
                         "cannot start " + command_excerpt(res_.command) + " in sandbox " +
                             box_->id + ": " + to_string(r.where) + ": " + errno_text(r.err));
        break;
      }
      if (r.where == stage::fork || r.where == stage::table_full) {
        failure_ = error(r.err == ESRCH ? errc::not_running : errc::resource_exhausted,
                         "cannot start " + command_excerpt(res_.command) + " in sandbox " +
                             box_->id + ": " + to_string(r.where) + ": " + errno_text(r.err));
        break;
      }
      // As a shell reports it: 127 not found, 126 not executable, 2 for a bad cwd.
      res_.returncode = r.where == stage::chdir ? 2 : (r.err == ENOENT ? 127 : 126);
      std::string what = r.where == stage::chdir ? "cannot change to working directory"
                                                 : "cannot execute " + shell_quote(res_.command[0]);
      std::string said = "sandbox: " + what + ": " + errno_text(r.err) + "\n";
      res_.stderr_text += said;
      res_.stderr_bytes_produced = res_.stderr_text.size();
      if (on_err_) on_err_(said); // as a shell's message would be: callbacks see all output
      break;
    }
    default: break;
    }
  }

  /// The I/O loop: reads output and status until the command is done (or `deadline`), writing
  /// `*stdin_data` meanwhile when given. `until_pid`: return once the pid is known. `wake`
  /// (when not -1): return errc::timeout once it is readable and the command still runs.
  [[nodiscard]] result<void> pump(std::optional<clock::time_point> deadline,
                                  std::string_view* stdin_data, bool until_pid = false,
                                  int wake = -1) noexcept {
    if (!box_) return fail(errc::not_running, "no command: this process handle was moved from");
    for (;;) {
      if (done_) {
        if (stdin_data && !stdin_data->empty())
          return fail(errc::not_running,
                      command_excerpt(res_.command) + " ended before reading all of its stdin");
        return success();
      }
      if (until_pid && pid_ != 0) return success();
      if (stdin_data && stdin_data->empty()) return success();
      if (exited_ || !status_) {
        finish_output();
        continue;
      }
      auto now = clock::now();
      kill_if_expired(now);
      pollfd p[5];
      int n = 0, i_status = -1, i_out = -1, i_err = -1, i_in = -1, i_wake = -1;
      if (status_) p[i_status = n++] = {status_.get(), POLLIN, 0};
      if (out_) p[i_out = n++] = {out_.get(), POLLIN, 0};
      if (err_) p[i_err = n++] = {err_.get(), POLLIN, 0};
      if (in_ && (stdin_data || !eof_pending_.empty())) p[i_in = n++] = {in_.get(), POLLOUT, 0};
      if (wake >= 0) p[i_wake = n++] = {wake, POLLIN, 0};
      int rc = ::poll(p, static_cast<nfds_t>(n), poll_timeout_ms(now, deadline));
      if (rc < 0 && errno != EINTR) return fail(errc::transport, "poll: " + errno_text(errno));
      // Checked after every round, not only on an idle poll: steady output must not keep a timed
      // wait (or the non-blocking poll()) from returning. An exit just seen is drained on the
      // next round instead.
      auto timed_out = [&] { return !exited_ && status_ && deadline && clock::now() >= *deadline; };
      if (rc <= 0) {
        if (timed_out()) return wait_timeout();
        continue;
      }
      if (i_out >= 0 && p[i_out].revents) read_stream(out_, true);
      if (i_err >= 0 && p[i_err].revents) read_stream(err_, false);
      if (i_in >= 0 && p[i_in].revents) {
        if (!stdin_data) {
          write_pending_eof();
        } else {
          SANDBOX_TRYV(feed_stdin(p[i_in].revents, *stdin_data));
        }
      }
      if (i_status >= 0 && p[i_status].revents) read_status();
      if (timed_out()) return wait_timeout();
      // Woken: what this round read is kept; an exit just seen is finished first.
      if (i_wake >= 0 && p[i_wake].revents && !exited_ && status_) return wait_timeout();
    }
  }

  /// The terminal's master: output is read from it, stdin written to a second descriptor of it,
  /// which also keeps the terminal open until the command ends (see write_pending_eof).
  void take_terminal(unique_fd master) noexcept {
    if (!master) { // it did not arrive (this process at its fd limit?): the command may not run
      failure_ =
          error(errc::resource_exhausted, "the terminal of " + command_excerpt(res_.command) +
                                              " did not arrive from sandbox " + box_->id);
      kill_sent_ = true;
      (void)signal_command(SIGKILL);
      return;
    }
    ::fcntl(master.get(), F_SETFL, O_NONBLOCK);
    if (int w = ::fcntl(master.get(), F_DUPFD_CLOEXEC, 3); w >= 0) in_.reset(w);
    out_ = std::move(master);
  }

  /// After the exit: everything the command wrote is already in the pipes; a background child
  /// that keeps them open does not hold up the result.
  void finish_output() noexcept {
    if (tty_) drain_terminal();
    while (out_ && read_stream(out_, true)) {
    }
    while (err_ && read_stream(err_, false)) {
    }
    if (!exited_ && !failure_) return;
    done_ = true;
    ahead_[0].end(res_.stdout_text);
    ahead_[1].end(res_.stderr_text);
    out_.reset();
    err_.reset();
    in_.reset();
    null_.reset();
    scratch_.reset();
  }

  /// A terminal's output may still be on its way through the kernel when the exit is seen; it
  /// is all there once a read fails with EIO (every holder of the terminal closed it). A
  /// background process that keeps the terminal open holds the result up for 100 ms at most.
  void drain_terminal() noexcept {
    const auto until = clock::now() + std::chrono::milliseconds(100);
    while (out_) {
      auto now = clock::now();
      if (now >= until) break;
      if (read_stream(out_, true)) continue;
      if (!out_) break;
      pollfd p{out_.get(), POLLIN, 0};
      if (::poll(&p, 1, clamp_ms(std::chrono::ceil<std::chrono::milliseconds>(until - now))) == 0)
        break;
    }
  }

  /// Writes what the terminal takes of a pending end-of-file (stdin_closed_ refuses more).
  void write_pending_eof() noexcept {
    while (in_ && !eof_pending_.empty()) {
      ssize_t w = write_no_sigpipe(in_.get(), eof_pending_);
      if (w > 0) {
        eof_pending_.erase(0, static_cast<std::size_t>(w));
        continue;
      }
      if (w < 0 && (errno == EAGAIN || errno == EINTR)) return; // the next pump writes it
      eof_pending_.clear();
    }
    // in_ stays open until the command ends: closing this second descriptor of the master was
    // seen to hang the terminal up (the command killed by SIGHUP) in 7 of 100 runs of
    // `cat` + close_stdin; the master's first descriptor may already be closed by then.
  }

  /// ExecOptions::timeout: kills the command's process group once, when it has passed.
  void kill_if_expired(clock::time_point now) noexcept {
    if (!exec_deadline_ || now < *exec_deadline_ || kill_sent_ || pid_ == 0) return;
    kill_sent_ = timed_out_ = true;
    (void)signal_command(SIGKILL);
  }

  /// Asks the supervisor to send `sig` to the command's process group.
  [[nodiscard]] result<void> signal_command(int sig) noexcept {
    request rq{};
    rq.code = op::signal;
    rq.pid = pid_;
    rq.sig = sig;
    return box_->send(rq);
  }

  /// How long one poll may sleep: until the caller's deadline or the command's, -1 for neither.
  [[nodiscard]] int poll_timeout_ms(clock::time_point now,
                                    std::optional<clock::time_point> deadline) const noexcept {
    int timeout_ms = -1;
    auto limit = [&](clock::time_point t) {
      int ms = clamp_ms(std::chrono::ceil<std::chrono::milliseconds>(t - now));
      if (timeout_ms < 0 || ms < timeout_ms) timeout_ms = ms;
    };
    if (deadline) limit(*deadline);
    // Past the exec deadline but before the pid is known, wait for `started` (it follows at
    // once) instead of spinning.
    if (exec_deadline_ && !kill_sent_ && (pid_ != 0 || now < *exec_deadline_))
      limit(*exec_deadline_);
    return timeout_ms;
  }

  /// Writes what the command's stdin pipe takes of `data` now.
  [[nodiscard]] result<void> feed_stdin(short revents, std::string_view& data) noexcept {
    if (revents & (POLLERR | POLLHUP)) {
      in_.reset();
      return fail(errc::not_running,
                  command_excerpt(res_.command) + " closed its stdin before reading all input");
    }
    ssize_t w = write_no_sigpipe(in_.get(), data);
    if (w > 0) {
      last_typed_ = data[static_cast<std::size_t>(w) - 1];
      data.remove_prefix(static_cast<std::size_t>(w));
    } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
      int e = errno;
      in_.reset();
      return fail(e == EPIPE ? errc::not_running : errc::transport,
                  "writing stdin of " + command_excerpt(res_.command) + ": " + errno_text(e));
    }
    return success();
  }

  /// Waits up to `timeout` (forever if unset) for the end: errc::timeout while it runs.
  [[nodiscard]] result<void> wait_ended(std::optional<std::chrono::milliseconds> timeout,
                                        int wake = -1) noexcept {
    std::optional<clock::time_point> deadline;
    if (timeout) deadline = sandbox::detail::deadline_after(*timeout);
    return pump(deadline, nullptr, false, wake);
  }

  [[nodiscard]] sandbox::result<void> wait_timeout() const noexcept {
    return fail(errc::timeout, command_excerpt(res_.command) + " in sandbox " + box_->id +
                                   " still running after the wait timed out");
  }

  [[nodiscard]] result<ExecResult> final_result() const noexcept {
    if (failure_) return fail(*failure_);
    if (timed_out_) {
      error e(errc::command_timeout, command_excerpt(res_.command) + " in sandbox " + box_->id +
                                         " timed out and was killed");
      e.exec_result = std::make_shared<const ExecResult>(res_);
      return fail(std::move(e));
    }
    return res_;
  }

  std::shared_ptr<box> box_;
  unique_fd status_, out_, err_, in_;
  /// stdout's, stderr's. Declared before res_: a move-assignment stops the old threads before it
  /// frees the old buffers.
  sandbox::detail::prefaulter ahead_[2];
  ExecResult res_;
  std::uint64_t max_output_ = default_max_output_bytes; ///< per stream, never 0
  output_callback on_out_, on_err_;
  std::unique_ptr<char[]> scratch_;  // large outputs, and output beyond the cap, are read here
  unique_fd null_;                   ///< /dev/null, once output is dropped (drop_in_kernel)
  bool no_splice_ = false;           ///< drop_in_kernel cannot be done here
  bool widened_[2] = {false, false}; ///< stdout's, stderr's pipe was seen to (widen_pipe)
  std::optional<clock::time_point> exec_deadline_;
  std::optional<error> failure_;
  pid_t pid_ = 0;
  std::uint64_t oom_before_ = 0; ///< the sandbox's OOM kill count when the command started
  bool exited_ = false;
  bool done_ = false;
  bool kill_sent_ = false;
  bool timed_out_ = false;
  bool tty_ = false; ///< on a terminal: out_ is its master, in_ a second descriptor of it
  bool stdin_closed_ = false;
  char last_typed_ = 0;     ///< the last byte written to stdin (a terminal's line under way)
  std::string eof_pending_; ///< a terminal's Ctrl-D not yet written
};

} // namespace sandbox::local::detail
