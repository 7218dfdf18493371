// SPDX-License-Identifier: MIT
// sandbox: the command-line tool. `sandbox run` runs one command in a local sandbox (no daemon);
// the other commands work on the sandboxes of a service (the hosted API or a sandboxd) named by
// --url or CWSANDBOX_BASE_URL, with the key from CWSANDBOX_API_KEY. Built on the public API only.
//
//   sandbox run --memory 512Mi -- python3 -c 'print(1)'
//   id=$(sandbox create --tag ci -- sleep 600); sandbox exec "$id" -- uname -a; sandbox delete "$id"
#include <sandbox/sandbox.hpp>
#if SANDBOX_CLI_IMAGES
#include <sandbox/image.hpp>
#endif
#if SANDBOX_CLI_GRPC
#include <sandbox/grpc.hpp>
#endif
#include <sandbox/transport/http/json_writer.hpp>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <csignal>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

namespace {

using namespace std::chrono_literals;

constexpr const char* usage = R"(usage: sandbox COMMAND [OPTIONS] [-- CMD...]

Local (a sandbox on this host, no daemon):
  run [OPTIONS] -- CMD...    run CMD in a fresh sandbox, its output live, stdin passed on;
                             exits with CMD's exit status; the sandbox is gone afterwards
    --image IMAGE            root filesystem (default: the host's, read-only): a directory,
                             or, when built with image support, python:3.11, oci:DIR[:TAG],
                             docker-archive:FILE, oci-archive:FILE (pulled into the store)
    --memory SIZE            memory limit (bytes, or with K M G Ki Mi Gi)
    --cpus N                 CPU limit in cores (0.5 = half a core)
    --pids N                 most processes
    --timeout SECONDS        kill CMD after this long (exit status 124)
    --env NAME=VALUE         environment (repeatable)
    --workdir DIR            working directory
    --network MODE           none: loopback only (default); host: the host's network;
                             egress: outbound through a NAT, without the host's loopback,
                             its addresses, link-local and private ranges
    --allow CIDR             with egress: reachable although blocked (repeatable)
    --mount-file FILE:/PATH  place FILE read-only at PATH (repeatable)
    -n                       stdin from /dev/null (keep the caller's stdin for the caller)

Remote (--url URL or CWSANDBOX_BASE_URL; key from CWSANDBOX_API_KEY):
  create [--image NAME] [--tag T]... [--env NAME=VALUE]... [--memory SIZE] [--cpus N]
         [-- CMD...]          create a sandbox (running CMD, or kept alive); prints its id
  ls [--tag T]... [--state STATE] [--all]
                             list sandboxes (--all: stopped ones too)
  get ID                     show one sandbox
  exec ID [-n] [--timeout S] [--workdir DIR] [--env NAME=VALUE]... -- CMD...
                             run CMD in it, output live, stdin passed on; exits with its status
  shell ID [--workdir DIR] [--env NAME=VALUE]... [-- CMD...]
                             a terminal in it (CMD, default /bin/sh), as ssh or docker exec -it
  logs ID [-f]               its main command's output (-f: follow until it ends)
  cp SRC DST                 copy a file; one side is ID:PATH, the other a local file or -
  stop ID [--grace SECONDS]  stop it (SIGTERM, then SIGKILL after the grace; default 10)
  delete ID                  stop it at once; not an error when it is already gone

  --json                     output for scripts (create, ls, get)
  --url URL                  the service (http:// to loopback, https:// elsewhere)

Exit status: a command's own status for run and exec (124: its --timeout); otherwise 0 on
success, 2 for a usage error, and for an error from the library 64 + its code:
  65 validation   66 not_found   67 not_running   68 timeout   69 command_timeout
  70 failed   71 terminated   73 unavailable   74 resource_exhausted   75 authentication
  76 conflict   77 file_not_found   78 file_is_directory   79 file_permission
  80 file_too_large   81 file_io   82 transport   83 protocol   84 server_error
  85 unsupported
Errors are one line on stderr: "sandbox: CODE: what went wrong".
)";

// ---- failing ----------------------------------------------------------------------------------

struct usage_error {
  std::string what;
};

/// One line, whatever the message holds (a server's message may echo input with line breaks).
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

int fail_usage(const std::string& what) {
  std::fprintf(stderr, "sandbox: usage: %s (see sandbox --help)\n", one_line(what).c_str());
  return 2;
}

int fail_with(const sandbox::error& e) {
  const auto code = static_cast<sandbox::errc>(e.code.value());
  std::fprintf(stderr, "sandbox: %s: %s\n", std::string(sandbox::to_string(code)).c_str(),
               one_line(e.message).c_str());
  return 64 + e.code.value();
}

// ---- progress: shown on a terminal while something long is waited for, never on a pipe -----

class progress {
public:
  explicit progress(std::string what) : what_(std::move(what)) {
    if (!::isatty(STDERR_FILENO)) return;
    thread_ = std::thread([this] {
      const auto start = std::chrono::steady_clock::now();
      std::unique_lock lk(m_);
      // Quick waits show nothing; a longer one shows what and for how long.
      while (!cv_.wait_for(lk, 200ms, [&] { return done_; })) {
        const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
        std::fprintf(stderr, "\r%s... %.1f s ", what_.c_str(), took.count());
        std::fflush(stderr);
        shown_ = true;
      }
    });
  }
  progress(const progress&) = delete;
  progress& operator=(const progress&) = delete;
  ~progress() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lk(m_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
    if (shown_) std::fprintf(stderr, "\r\033[K"); // the line is cleared once it is over
  }

private:
  std::string what_;
  std::mutex m_;
  std::condition_variable cv_;
  bool done_ = false, shown_ = false;
  std::thread thread_;
};

// ---- arguments --------------------------------------------------------------------------------

/// The command line after the command name: options (with values) and what follows `--`.
struct args {
  std::vector<std::pair<std::string, std::string>> options;
  std::vector<std::string> positional, command;
  bool has(std::string_view name) const {
    for (auto& [k, v] : options)
      if (k == name) return true;
    return false;
  }
  std::optional<std::string> get(std::string_view name) const {
    std::optional<std::string> out;
    for (auto& [k, v] : options)
      if (k == name) out = v;
    return out;
  }
  std::vector<std::string> all(std::string_view name) const {
    std::vector<std::string> out;
    for (auto& [k, v] : options)
      if (k == name) out.push_back(v);
    return out;
  }
};

/// Options that take no value; every other `--name` takes the next argument.
bool is_flag(std::string_view name) {
  return name == "--json" || name == "--all" || name == "-f" || name == "--follow" || name == "-n";
}

args parse(int argc, char** argv, int from, std::initializer_list<std::string_view> allowed) {
  args a;
  for (int i = from; i < argc; ++i) {
    std::string_view s = argv[i];
    if (s == "--") {
      a.command.assign(argv + i + 1, argv + argc);
      break;
    }
    if (s.size() > 1 && s[0] == '-') {
      bool known = s == "--json" || s == "--url";
      for (auto n : allowed)
        known = known || n == s;
      if (!known) throw usage_error{"unknown option " + std::string(s)};
      if (is_flag(s)) {
        a.options.emplace_back(std::string(s), "");
        continue;
      }
      if (i + 1 >= argc) throw usage_error{"missing value after " + std::string(s)};
      a.options.emplace_back(std::string(s), argv[++i]);
      continue;
    }
    a.positional.emplace_back(s);
  }
  return a;
}

/// A whole number in [0, most].
std::uint64_t number(std::string_view what, const std::string& v, std::uint64_t most = UINT64_MAX) {
  std::uint64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec == std::errc::result_out_of_range || (ec == std::errc{} && n > most))
    throw usage_error{std::string(what) + " is too large (at most " + std::to_string(most) + ")"};
  if (ec != std::errc{} || p != v.data() + v.size())
    throw usage_error{std::string(what) + " wants a whole number, got '" + v + "'"};
  return n;
}

/// Seconds: at most about 30 years, so that any count fits the clocks it is added to.
std::chrono::seconds seconds_of(std::string_view what, const std::string& v) {
  return std::chrono::seconds(number(what, v, 1'000'000'000));
}

/// A positive decimal number, at most `most`.
double decimal(std::string_view what, const std::string& v, double most) {
  double d = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
  if (ec != std::errc{} || p != v.data() + v.size() || !(d > 0) || d > most)
    throw usage_error{std::string(what) + " wants a number above 0 and at most " +
                      std::to_string(static_cast<long long>(most)) + ", got '" + v.substr(0, 40) +
                      "'"};
  return d;
}

/// Bytes, or with a decimal (K M G) or binary (Ki Mi Gi) suffix.
std::uint64_t size_of(std::string_view what, const std::string& v) {
  static constexpr std::pair<std::string_view, std::uint64_t> units[] = {
      {"Ki", 1ull << 10}, {"Mi", 1ull << 20}, {"Gi", 1ull << 30},
      {"K", 1000ull},     {"M", 1000000ull},  {"G", 1000000000ull}};
  for (auto [suffix, scale] : units)
    if (v.size() > suffix.size() && std::string_view(v).ends_with(suffix)) {
      auto n = number(what, v.substr(0, v.size() - suffix.size()));
      if (n > UINT64_MAX / scale) throw usage_error{std::string(what) + " is too large"};
      return n * scale;
    }
  return number(what, v);
}

sandbox::env_map env_of(const args& a) {
  sandbox::env_map env;
  for (const auto& kv : a.all("--env")) {
    auto eq = kv.find('=');
    if (eq == 0 || eq == std::string::npos)
      throw usage_error{"--env wants NAME=VALUE, got '" + kv + "'"};
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

/// The most the tool reads from one file or stdin: it is sent whole, in one message.
constexpr std::size_t max_file_bytes = std::size_t{1} << 30;

/// The whole of `fd` (a regular file or a stream), at most max_file_bytes; nullopt with `why`
/// set on a read error or when there is more.
std::optional<std::string> read_fd(int fd, std::string& why) {
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      why = std::strerror(errno);
      return std::nullopt;
    }
    if (n == 0) return data;
    if (data.size() + static_cast<std::size_t>(n) > max_file_bytes) {
      why = "larger than " + std::to_string(max_file_bytes) + " bytes";
      return std::nullopt;
    }
    data.append(buf, static_cast<std::size_t>(n));
  }
}

/// The contents of the regular file at `path` (- for stdin), or the error saying why not. A
/// FIFO, a device or a directory is refused, never waited on or read without end.
sandbox::result<std::string> read_file_at(const std::string& path) {
  using sandbox::errc;
  int fd = path == "-" ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return sandbox::fail(errno == ENOENT ? errc::file_not_found : errc::file_io,
                         path + ": " + std::strerror(errno));
  struct stat st {};
  std::string why;
  std::optional<std::string> data;
  errc code = errc::file_io;
  if (::fstat(fd, &st) != 0) {
    why = std::strerror(errno);
  } else if (S_ISDIR(st.st_mode)) {
    why = "is a directory (copy one file at a time)";
    code = errc::file_is_directory;
  } else if (fd != STDIN_FILENO && !S_ISREG(st.st_mode)) {
    why = "not a regular file (a device or a FIFO; pipe it in as - instead)";
  } else if (fd != STDIN_FILENO && static_cast<std::uint64_t>(st.st_size) > max_file_bytes) {
    why = "larger than " + std::to_string(max_file_bytes) + " bytes";
    code = errc::file_too_large;
  } else {
    data = read_fd(fd, why);
    if (!data && why.starts_with("larger")) code = errc::file_too_large;
  }
  if (fd != STDIN_FILENO) ::close(fd);
  if (!data) return sandbox::fail(code, path + ": " + why);
  return std::move(*data);
}

// ---- output ------------------------------------------------------------------------------------

/// Set once stdout or stderr cannot be written (a closed pipe, a full disk): the command
/// running is then stopped, as a command writing to a closed pipe would be by SIGPIPE.
std::atomic<bool> output_gone{false};

void write_out(int fd, std::string_view data) noexcept {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      output_gone = true;
      return;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

/// The exit status of a tool whose output went away: a command's death by SIGPIPE.
constexpr int output_gone_status = 128 + SIGPIPE;

void write_info(sandbox::http::json_writer& w, const sandbox::SandboxInfo& i) {
  w.begin_object().key("id").string(i.id).key("state").string(sandbox::to_string(i.state));
  if (i.returncode) w.key("returncode").number(static_cast<std::int32_t>(*i.returncode));
  w.key("tags").begin_array();
  for (const auto& t : i.tags)
    w.string(t);
  w.end_array();
  if (!i.status_reason.empty()) w.key("statusReason").string(i.status_reason);
  w.end_object();
}

void print_table(const std::vector<sandbox::SandboxInfo>& boxes) {
  std::printf("%-24s %-12s %-5s %s\n", "ID", "STATE", "EXIT", "TAGS");
  for (const auto& i : boxes) {
    std::string tags;
    for (const auto& t : i.tags)
      tags += (tags.empty() ? "" : ",") + t;
    std::string code = i.returncode ? std::to_string(*i.returncode) : "-";
    std::printf("%-24s %-12s %-5s %s\n", i.id.c_str(), std::string(sandbox::to_string(i.state)).c_str(),
                code.c_str(), tags.c_str());
  }
}

// ---- running a command: output live, stdin passed on ------------------------------------------

/// Output delivered as it comes (and stdin passed on) where the transport streams; otherwise
/// kept, and printed when the command ends.
sandbox::ExecOptions live_options(bool streaming) {
  sandbox::ExecOptions o;
  if (!streaming) return o;
  o.stdin_pipe = true;
  o.max_output_bytes = 1; // everything goes to the callbacks; nothing is kept
  o.on_stdout = [](std::string_view d) noexcept { write_out(STDOUT_FILENO, d); };
  o.on_stderr = [](std::string_view d) noexcept { write_out(STDERR_FILENO, d); };
  return o;
}

/// Runs a started command to its end: this process's stdin goes to it (until end of file) while
/// its output goes out live through the callbacks. One thread: a process handle is not shared.
/// Returns the command's exit status, or the error's.
/// False when the caller closed stdin (see main): the command then reads end of file.
bool stdin_usable = true;

template <class Proc, class Tick = void (*)(Proc&)>
int drive(Proc& proc, bool with_stdin, bool streaming, Tick tick = [](Proc&) {}) {
  bool open = with_stdin && streaming && stdin_usable;
  if (streaming && !open) (void)proc.close_stdin();
  char buf[65536];
  for (;;) {
    tick(proc);
    bool fed = false;
    if (open) {
      pollfd in{STDIN_FILENO, POLLIN, 0};
      if (::poll(&in, 1, 0) > 0) {
        ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
        if (n > 0) {
          fed = true;
          // Fails once the command has ended or closed its stdin: the wait below tells which.
          if (!proc.write_stdin(std::string_view(buf, static_cast<std::size_t>(n)))) open = false;
        } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
          (void)proc.close_stdin();
          open = false;
        }
      }
    }
    if (output_gone) { // nobody reads what it prints: stop it
      (void)proc.kill(SIGKILL);
      (void)proc.wait(10s);
      return output_gone_status;
    }
    // While input flows, only what is ready is read out; while none comes, a short wait; once it
    // has ended, a wait for the end (output keeps flowing to the callbacks meanwhile).
    const std::optional<std::chrono::milliseconds> slice =
        fed ? std::optional(0ms) : open || streaming ? std::optional(20ms) : std::nullopt;
    auto r = proc.wait(slice);
    if (r) {
      if (!streaming) {
        write_out(STDOUT_FILENO, r.value().stdout_text);
        write_out(STDERR_FILENO, r.value().stderr_text);
      }
      return output_gone ? output_gone_status : r.value().returncode;
    }
    if (r.error().is(sandbox::errc::timeout)) continue; // still running
    if (r.error().is(sandbox::errc::command_timeout)) {
      std::fprintf(stderr, "sandbox: command_timeout: %s\n", one_line(r.error().message).c_str());
      return 124;
    }
    return fail_with(r.error());
  }
}

/// A request id that makes a retried create idempotent.
std::string request_id() {
  std::random_device rd;
  char id[33];
  for (int i = 0; i < 32; i += 8)
    std::snprintf(id + i, 9, "%08x", rd());
  return std::string("req-") + id;
}

// ---- local: run --------------------------------------------------------------------------------

int cmd_run(int argc, char** argv) {
  auto a = parse(argc, argv, 2,
                 {"--image", "--memory", "--cpus", "--pids", "--timeout", "--env", "--workdir",
                  "--network", "--allow", "--mount-file", "-n"});
  if (a.command.empty()) throw usage_error{"run wants a command after --"};
  if (!a.positional.empty()) throw usage_error{"unexpected '" + a.positional[0] + "' (put the command after --)"};
  sandbox::SandboxOptions o;
  o.image = a.get("--image").value_or("");
  if (auto m = a.get("--memory")) o.resources.memory_bytes = size_of("--memory", *m);
  if (auto c = a.get("--cpus")) o.resources.cpus = decimal("--cpus", *c, 4096);
  if (auto p = a.get("--pids")) o.resources.max_pids = static_cast<std::uint32_t>(number("--pids", *p, UINT32_MAX));
  o.env = env_of(a);
  o.working_dir = a.get("--workdir").value_or("");
  if (auto n = a.get("--network")) {
    if (*n != "none" && *n != "host" && *n != "egress")
      throw usage_error{"--network wants none, host or egress"};
    o.network = *n == "host" ? sandbox::network_mode::host
                : *n == "egress" ? sandbox::network_mode::egress
                                 : sandbox::network_mode::none;
  }
  for (const auto& allow : a.all("--allow")) o.network_allow.push_back(allow);
  for (const auto& spec : a.all("--mount-file")) {
    auto colon = spec.rfind(":/"); // PATH is absolute; FILE may hold colons of its own
    if (colon == 0 || colon == std::string::npos)
      throw usage_error{"--mount-file wants FILE:/PATH, got '" + spec + "'"};
    auto content = read_file_at(spec.substr(0, colon));
    if (!content) throw content.error();
    o.mounted_files.push_back({spec.substr(colon + 1), std::move(content).value()});
  }
  auto eo = live_options(true);
  if (auto t = a.get("--timeout")) eo.timeout = seconds_of("--timeout", *t);
  eo.cwd = o.working_dir.empty() ? std::nullopt : std::optional<std::string>(o.working_dir);

  auto t = sandbox::local_transport::shared();
  std::optional<sandbox::SandboxInfo> made;
  {
    progress p("starting a sandbox");
    auto r = t->create(o, "");
    if (!r) return fail_with(r.error());
    made = std::move(r).value();
  }
  const std::string id = made->id;
  int status = 0;
  if (auto proc = t->exec(id, a.command, eo))
    status = drive(proc.value(), !a.has("-n"), true);
  else
    status = fail_with(proc.error());
  (void)t->stop(id, 0ms, true);
  t->release(id);
  return status;
}

// ---- remote ------------------------------------------------------------------------------------

#if SANDBOX_CLI_GRPC
using remote = sandbox::grpc_transport; // live output and stdin, as the official clients have
#else
using remote = sandbox::http_transport;
#endif

std::shared_ptr<remote> connect(const args& a) {
  auto o = sandbox::remote_options::from_env();
  if (auto url = a.get("--url")) o.base_url = *url;
  auto t = remote::make(std::move(o));
  if (!t) throw t.error();
  return std::move(t).value();
}

template <class T>
T or_throw(sandbox::result<T> r) {
  if (!r) throw r.error();
  return std::move(r).value();
}

void no_positional(const args& a, std::string_view cmd) {
  if (!a.positional.empty())
    throw usage_error{std::string(cmd) + ": unexpected '" + a.positional[0] +
                      "' (a command goes after --)"};
}

std::string one_id(const args& a, std::string_view cmd) {
  if (a.positional.size() != 1) throw usage_error{std::string(cmd) + " wants one sandbox id"};
  return a.positional[0];
}

int cmd_create(int argc, char** argv) {
  auto a = parse(argc, argv, 2, {"--image", "--tag", "--env", "--memory", "--cpus"});
  no_positional(a, "create");
  sandbox::SandboxOptions o;
  o.image = a.get("--image").value_or("");
  o.tags = a.all("--tag");
  o.env = env_of(a);
  if (auto m = a.get("--memory")) o.resources.memory_bytes = size_of("--memory", *m);
  if (auto c = a.get("--cpus")) o.resources.cpus = decimal("--cpus", *c, 4096);
  o.command = a.command;
  auto t = connect(a);
  sandbox::SandboxInfo info;
  {
    progress p("creating a sandbox");
    info = or_throw(t->create(o, request_id()));
    info = or_throw(t->wait(info.id, sandbox::State::RUNNING, 5min));
  }
  if (a.has("--json")) {
    sandbox::http::json_writer w;
    write_info(w, info);
    std::printf("%s\n", w.str().c_str());
  } else {
    std::printf("%s\n", info.id.c_str());
  }
  return 0;
}

int cmd_ls(int argc, char** argv) {
  auto a = parse(argc, argv, 2, {"--tag", "--state", "--all"});
  no_positional(a, "ls");
  sandbox::ListFilter f;
  f.tags = a.all("--tag");
  f.show_terminated = a.has("--all");
  if (auto s = a.get("--state")) {
    for (auto st : {sandbox::State::PENDING, sandbox::State::CREATING, sandbox::State::RUNNING,
                    sandbox::State::PAUSED, sandbox::State::TERMINATING, sandbox::State::COMPLETED,
                    sandbox::State::FAILED, sandbox::State::TERMINATED})
      if (sandbox::to_string(st) == *s) f.state = st;
    if (!f.state) throw usage_error{"--state wants a state name (RUNNING, COMPLETED, ...)"};
  }
  auto boxes = or_throw(connect(a)->list(f));
  if (a.has("--json")) {
    sandbox::http::json_writer w;
    w.begin_array();
    for (const auto& i : boxes)
      write_info(w, i);
    w.end_array();
    std::printf("%s\n", w.str().c_str());
  } else {
    print_table(boxes);
  }
  return 0;
}

int cmd_get(int argc, char** argv) {
  auto a = parse(argc, argv, 2, {});
  auto info = or_throw(connect(a)->get(one_id(a, "get")));
  if (a.has("--json")) {
    sandbox::http::json_writer w;
    write_info(w, info);
    std::printf("%s\n", w.str().c_str());
  } else {
    print_table({info});
  }
  return 0;
}

int cmd_exec(int argc, char** argv) {
  auto a = parse(argc, argv, 2, {"--timeout", "--workdir", "--env", "-n"});
  const std::string id = one_id(a, "exec");
  if (a.command.empty()) throw usage_error{"exec wants a command after --"};
  auto eo = live_options(sandbox::supports_stdin<remote>);
  eo.env = env_of(a);
  if (auto w = a.get("--workdir")) eo.cwd = *w;
  if (auto t = a.get("--timeout")) eo.timeout = seconds_of("--timeout", *t);
  auto proc = or_throw(connect(a)->exec(id, a.command, eo));
  return drive(proc, !a.has("-n"), sandbox::supports_stdin<remote>);
}

// ---- shell: a terminal in the sandbox -----------------------------------------------------------

std::atomic<bool> window_changed{false};

/// The terminal's settings before raw mode, restored however the tool ends.
termios saved_terminal{};
std::atomic<bool> terminal_raw{false};

/// A signal that ends the tool while the terminal is raw: the terminal back first, then the
/// signal's own end (tcsetattr and raise are async-signal-safe).
extern "C" void restore_and_die(int sig) {
  if (terminal_raw) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_terminal);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

/// This terminal in raw mode while it lives: every key goes to the sandbox's terminal as typed
/// (Ctrl-C and Ctrl-D included), which echoes and interprets them itself.
class raw_terminal {
public:
  raw_terminal() {
    if (::tcgetattr(STDIN_FILENO, &saved_terminal) != 0) return;
    for (int sig : {SIGTERM, SIGHUP, SIGINT, SIGQUIT})
      ::signal(sig, restore_and_die);
    termios raw = saved_terminal;
    ::cfmakeraw(&raw);
    terminal_raw = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  raw_terminal(const raw_terminal&) = delete;
  raw_terminal& operator=(const raw_terminal&) = delete;
  ~raw_terminal() {
    if (terminal_raw.exchange(false)) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_terminal);
  }
};

sandbox::TerminalSize window_size() {
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0) return {};
  return {ws.ws_col, ws.ws_row};
}

int cmd_shell(int argc, char** argv) {
  auto a = parse(argc, argv, 2, {"--workdir", "--env"});
  const std::string id = one_id(a, "shell");
  if constexpr (!sandbox::supports_terminal<remote>) {
    throw sandbox::error(sandbox::errc::unsupported,
                         "shell: this build speaks REST, which has no terminal (build with grpc++)");
  } else {
    if (!::isatty(STDIN_FILENO) || !::isatty(STDOUT_FILENO))
      throw usage_error{"shell needs a terminal (stdin and stdout); use exec on a pipe"};
    sandbox::ExecOptions eo;
    eo.tty = window_size();
    eo.env = env_of(a);
    if (const char* term = std::getenv("TERM"); term && !eo.env.count("TERM")) eo.env["TERM"] = term;
    if (auto w = a.get("--workdir")) eo.cwd = *w;
    eo.max_output_bytes = 1;
    eo.on_stdout = [](std::string_view d) noexcept { write_out(STDOUT_FILENO, d); };
    std::vector<std::string> command = a.command;
    if (command.empty()) command = {"/bin/sh"};
    auto proc = or_throw(connect(a)->exec(id, command, eo));
    struct sigaction sa{};
    sa.sa_handler = [](int) { window_changed = true; };
    ::sigaction(SIGWINCH, &sa, nullptr);
    raw_terminal raw;
    return drive(proc, true, true, [](remote::process_type& p) {
      if (window_changed.exchange(false)) (void)p.resize(window_size());
    });
  }
}

int cmd_logs(int argc, char** argv) {
  auto a = parse(argc, argv, 2, {"-f", "--follow"});
  const std::string id = one_id(a, "logs");
  const bool follow = a.has("-f") || a.has("--follow");
  if constexpr (sandbox::log_transport<remote>) {
    auto t = connect(a);
    std::uint64_t offset = 0;
    for (;;) {
      auto r = or_throw(t->logs(id, offset, follow ? 1000ms : 0ms));
      for (const auto& c : r.chunks)
        write_out(STDOUT_FILENO, c.data);
      if (output_gone) return output_gone_status;
      offset = r.end_offset;
      if (!follow || r.complete) return 0;
    }
  } else {
    throw sandbox::error(sandbox::errc::unsupported, "logs: this build's transport has none");
  }
}

int cmd_cp(int argc, char** argv) {
  auto a = parse(argc, argv, 2, {});
  if (a.positional.size() != 2) throw usage_error{"cp wants SRC and DST"};
  const std::string& src = a.positional[0];
  const std::string& dst = a.positional[1];
  // ID:PATH, where PATH is absolute; a local path never starts "something:/".
  auto remote_of = [](const std::string& s) -> std::optional<std::pair<std::string, std::string>> {
    auto colon = s.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 >= s.size() || s[colon + 1] != '/')
      return std::nullopt;
    return std::pair(s.substr(0, colon), s.substr(colon + 1));
  };
  auto from = remote_of(src), to = remote_of(dst);
  if (from.has_value() == to.has_value()) throw usage_error{"cp: one side must be ID:/PATH"};
  auto t = connect(a);
  if (from) {
    auto data = or_throw(t->read_file(from->first, from->second));
    if (dst == "-") {
      write_out(STDOUT_FILENO, data);
    } else {
      std::ofstream f(dst, std::ios::binary | std::ios::trunc);
      if (!f.write(data.data(), static_cast<std::streamsize>(data.size())) || !f.flush())
        throw sandbox::error(sandbox::errc::file_io, "cp: cannot write " + dst);
    }
    return 0;
  }
  std::string data = or_throw(read_file_at(src));
  or_throw(t->write_file(to->first, to->second, data));
  return 0;
}

int cmd_stop(int argc, char** argv, bool remove) {
  auto a = parse(argc, argv, 2, remove ? std::initializer_list<std::string_view>{}
                                       : std::initializer_list<std::string_view>{"--grace"});
  const std::string id = one_id(a, remove ? "delete" : "stop");
  auto grace = remove ? 0s : seconds_of("--grace", a.get("--grace").value_or("10"));
  auto t = connect(a);
  progress p(remove ? "deleting " + id : "stopping " + id);
  or_throw(t->stop(id, grace, remove));
  return 0;
}

int dispatch(int argc, char** argv) {
  const std::string_view cmd = argv[1];
  if (cmd == "run") return cmd_run(argc, argv);
  if (cmd == "create") return cmd_create(argc, argv);
  if (cmd == "ls" || cmd == "list") return cmd_ls(argc, argv);
  if (cmd == "get") return cmd_get(argc, argv);
  if (cmd == "exec") return cmd_exec(argc, argv);
  if (cmd == "logs") return cmd_logs(argc, argv);
  if (cmd == "shell") return cmd_shell(argc, argv);
  if (cmd == "cp") return cmd_cp(argc, argv);
  if (cmd == "stop") return cmd_stop(argc, argv, false);
  if (cmd == "delete" || cmd == "rm") return cmd_stop(argc, argv, true);
  throw usage_error{"unknown command '" + std::string(cmd) + "'"};
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h" ||
      std::string_view(argv[1]) == "help") {
    std::fputs(usage, argc < 2 ? stderr : stdout);
    std::fputs(sandbox::supports_stdin<remote>
                   ? "This build speaks gRPC to a service (live output and stdin for exec).\n"
                   : "This build speaks REST to a service (exec output comes when it ends).\n",
               argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  // A closed stdin, stdout or stderr gets /dev/null: otherwise the next descriptor the library
  // opens would take its number, and the tool would read or write it as if it were the stream.
  // One that is close-on-exec was opened in this process (by a library, before main: grpc's
  // eventfd takes a closed stdin's number) and is not the caller's: a stdin is then read as
  // empty; an output cannot be moved out of the library's way, so the tool refuses to run.
  for (int fd = 0; fd <= 2; ++fd) {
    const int flags = ::fcntl(fd, F_GETFD);
    if (flags < 0 && errno == EBADF) {
      if (::open("/dev/null", O_RDWR) != fd) return 2;
    } else if (flags >= 0 && (flags & FD_CLOEXEC)) {
      if (fd != STDIN_FILENO) return 2;
      stdin_usable = false;
    }
  }
  std::signal(SIGPIPE, SIG_IGN); // a closed pipe is noticed by write (output_gone)
  try {
    return dispatch(argc, argv);
  } catch (const usage_error& e) {
    return fail_usage(e.what);
  } catch (const sandbox::error& e) {
    return fail_with(e);
  }
}
