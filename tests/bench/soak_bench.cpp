// SPDX-License-Identifier: MIT
// Soak: the sandboxd program under minutes of mixed load from many clients, its resources (RSS,
// descriptors, threads, mounts, sandbox cgroups, processes under it) measured before and after;
// then SIGTERM under load (every sandbox stopped, a clean exit) and SIGKILL under load (what it
// leaves behind is swept by the next start).
//
//   build/tests/bench/soak_bench 600          # seconds of mixed load (default 600)
//
// sandboxd comes from $SANDBOXD, else from this build. Not part of the test suite (it takes
// minutes); exits 1 when anything grew beyond noise or was left behind.
#include <sandbox/detail/random.hpp>
#include <sandbox/transport/http/base64.hpp>
#include <sandbox/transport/http/codec.hpp>
#include <sandbox/transport/http/defaults.hpp>
#include <sandbox/transport/http/wire.hpp>

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

using namespace std::chrono_literals;
namespace wire = sandbox::http::wire;
using clock_type = std::chrono::steady_clock;

namespace {

// ---- the daemon
// ----------------------------------------------------------------------------------

/// sandboxd on an ephemeral loopback port, its log discarded.
class daemon_process {
public:
  daemon_process(const std::string& bin, const std::string& token) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    std::vector<std::string> env{"SANDBOXD_TOKEN=" + token};
    for (char** e = environ; *e; ++e)
      if (std::strncmp(*e, "SANDBOXD_TOKEN=", 15) != 0) env.emplace_back(*e);
    std::vector<std::string> args{bin, "--listen", "127.0.0.1:0"};
    std::vector<char*> argv, envp;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env)
      envp.push_back(e.data());
    envp.push_back(nullptr);
    if (posix_spawn(&pid_, bin.c_str(), &fa, nullptr, argv.data(), envp.data()) != 0) pid_ = 0;
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    std::string line;
    char c;
    while (pid_ > 0 && ::read(out[0], &c, 1) == 1 && c != '\n')
      line += c;
    ::close(out[0]);
    url_ = line;
  }
  ~daemon_process() { kill_and_reap(SIGKILL); }
  daemon_process(const daemon_process&) = delete;
  daemon_process& operator=(const daemon_process&) = delete;

  [[nodiscard]] bool ok() const noexcept { return pid_ > 0 && url_.rfind("http://", 0) == 0; }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  [[nodiscard]] const std::string& url() const noexcept { return url_; }

  /// Sends `sig` and waits (at most `limit`) for the exit; the wait status, or -1.
  int kill_and_reap(int sig, std::chrono::seconds limit = 120s) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    auto until = clock_type::now() + limit;
    int ws = 0;
    while (::waitpid(pid_, &ws, WNOHANG) == 0) {
      if (clock_type::now() > until) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &ws, 0);
        pid_ = 0;
        return -1;
      }
      std::this_thread::sleep_for(10ms);
    }
    pid_ = 0;
    return ws;
  }

private:
  pid_t pid_ = 0;
  std::string url_;
};

// ---- what is measured
// ------------------------------------------------------------------------------

long count_dir(const std::string& dir) {
  long n = 0;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
  }
  return n;
}

long status_field(pid_t pid, const char* name) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind(name, 0) == 0) return std::atol(line.c_str() + std::strlen(name));
  return -1;
}

/// The processes under `pid`, at any depth.
std::vector<pid_t> descendants(pid_t pid) {
  std::multimap<pid_t, pid_t> children;
  if (DIR* d = ::opendir("/proc")) {
    while (dirent* e = ::readdir(d)) {
      pid_t p = std::atoi(e->d_name);
      if (p <= 0) continue;
      std::ifstream f("/proc/" + std::string(e->d_name) + "/stat");
      std::string stat((std::istreambuf_iterator<char>(f)), {});
      auto close = stat.rfind(')');
      if (close == std::string::npos) continue;
      pid_t ppid = 0;
      char state = 0;
      if (std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) == 2)
        children.emplace(ppid, p);
    }
    ::closedir(d);
  }
  std::vector<pid_t> out, todo{pid};
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    for (auto [it, end] = children.equal_range(p); it != end; ++it) {
      out.push_back(it->second);
      todo.push_back(it->second);
    }
  }
  return out;
}

/// Sandbox cgroups of the process `owner` (every hierarchy; `<base>/sandbox/<pid>-…/<id>`).
long sandbox_cgroups(pid_t owner) {
  long n = 0;
  const std::string o = std::to_string(owner);
  for (std::string pattern :
       {"/sys/fs/cgroup/*/sandbox/" + o + "-*/*", "/sys/fs/cgroup/sandbox/" + o + "-*/*"}) {
    glob_t g{};
    if (::glob(pattern.c_str(), GLOB_ONLYDIR, nullptr, &g) == 0) n += static_cast<long>(g.gl_pathc);
    ::globfree(&g);
  }
  return n;
}

struct sample {
  long rss_kib = 0, fds = 0, threads = 0, mounts = 0, cgroups = 0, processes = 0;
};

sample measure(pid_t pid) {
  sample s;
  const std::string proc = "/proc/" + std::to_string(pid);
  s.rss_kib = status_field(pid, "VmRSS:");
  s.threads = status_field(pid, "Threads:");
  s.fds = count_dir(proc + "/fd");
  std::ifstream m(proc + "/mountinfo");
  for (std::string line; std::getline(m, line);)
    ++s.mounts;
  s.cgroups = sandbox_cgroups(pid);
  s.processes = static_cast<long>(descendants(pid).size());
  return s;
}

// ---- the load
// ------------------------------------------------------------------------------------

std::string sandbox_body(const std::string& more = "") {
  return R"({"spec":{"containers":[{"name":"main","image":")" +
         std::string(sandbox::http::default_image) + "\"" + more +
         R"(,"resourceRequirements":{"limits":{"memory":"256Mi"}}}]}})";
}

class client {
public:
  client(const std::string& url, const std::string& token) : c_(url) {
    c_.set_keep_alive(true);
    c_.set_read_timeout(120, 0);
    c_.set_bearer_token_auth(token);
  }
  /// "" for a 200 (its body in `body`), else what went wrong.
  std::string call(const std::string& method, const std::string& path,
                   const std::string& request = "", std::string* body = nullptr) {
    auto r = method == "POST"     ? c_.Post(path, request, "application/json")
             : method == "DELETE" ? c_.Delete(path)
                                  : c_.Get(path);
    if (!r) return method + " " + path + ": no answer (" + httplib::to_string(r.error()) + ")";
    if (r->status != 200)
      return method + " " + path + ": HTTP " + std::to_string(r->status) + " " +
             r->body.substr(0, 160);
    if (body) *body = std::move(r->body);
    return "";
  }
  std::string create(const std::string& spec, std::string& id) {
    std::string body;
    if (auto e = call("POST", "/v1/sandboxes", spec, &body); !e.empty()) return e;
    auto sb = sandbox::http::from_json<wire::Sandbox>(body, sandbox::http::decode_mode::lenient);
    if (!sb || sb.value().sandbox_id.empty()) return "CreateSandbox answered no id";
    id = sb.value().sandbox_id;
    return "";
  }
  std::string exec(const std::string& id, const std::string& argv_json) {
    std::string body;
    auto e =
        call("POST", "/v1/sandboxes/" + id + ":exec", R"({"command":)" + argv_json + "}", &body);
    if (!e.empty()) return e;
    return body.find("\"exitCode\":") == std::string::npos ? "" : "exec: " + body.substr(0, 120);
  }

private:
  httplib::Client c_;
};

/// Operations by kind: how many, and the first few errors.
struct tally {
  std::mutex m;
  std::map<std::string, long> ok, failed;
  std::map<std::string, std::string> first_error;
  void add(const std::string& kind, const std::string& err) {
    std::lock_guard lk(m);
    if (err.empty()) {
      ++ok[kind];
      return;
    }
    ++failed[kind];
    first_error.emplace(kind, err);
  }
};

/// Mixed load from `threads` clients until `stop`.
void load(const std::string& url, const std::string& token, const std::vector<std::string>& shared,
          int threads, std::atomic<bool>& stop, tally& t, bool expect_errors) {
  std::vector<std::thread> ts;
  for (int k = 0; k < threads; ++k)
    ts.emplace_back([&, k] {
      client c(url, token);
      const int port = std::atoi(url.c_str() + url.rfind(':') + 1);
      for (long n = k; !stop; ++n) {
        const std::string& box = shared[static_cast<std::size_t>(n) % shared.size()];
        std::string kind, err;
        switch (n % 8) {
        case 0: {
          kind = "create+exec+delete";
          std::string id;
          err = c.create(sandbox_body(), id);
          if (err.empty()) err = c.exec(id, R"(["true"])");
          if (!id.empty()) {
            auto d = c.call("DELETE", "/v1/sandboxes/" + id);
            if (err.empty()) err = d;
          }
          break;
        }
        case 1:
          kind = "exec true";
          err = c.exec(box, R"(["true"])");
          break;
        case 2:
          kind = "exec 1 MiB";
          err = c.exec(box, R"(["head","-c","1048576","/dev/zero"])");
          break;
        case 3: {
          kind = "write+read file";
          std::string encoded;
          sandbox::http::base64_encode_into(encoded, sandbox::detail::random_id("", 48));
          std::string path = "/tmp/soak-" + std::to_string(k);
          err = c.call("POST", "/v1/sandboxes/" + box + ":writeFile",
                       R"({"path":")" + path + R"(","content":")" + encoded + "\"}");
          std::string body;
          if (err.empty())
            err = c.call("GET", "/v1/sandboxes/" + box + ":readFile?path=" + path, "", &body);
          if (err.empty() && body.find(encoded) == std::string::npos)
            err = "readFile gave other content";
          break;
        }
        case 4:
          kind = "list";
          err = c.call("GET", "/v1/sandboxes?showTerminated=true");
          break;
        case 5: {
          // A client that gives up on a long command: the server must kill it.
          kind = "exec, client leaves";
          httplib::Client quitter(url);
          quitter.set_bearer_token_auth(token);
          quitter.set_read_timeout(0, 200'000);
          auto r = quitter.Post("/v1/sandboxes/" + box + ":exec", R"({"command":["sleep","3"]})",
                                "application/json");
          if (r) err = "answered before the command could end";
          break;
        }
        case 6: {
          kind = "half a request, then gone";
          int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
          sockaddr_in a{};
          a.sin_family = AF_INET;
          a.sin_port = htons(static_cast<std::uint16_t>(port));
          a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
          if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
            err = "connect failed";
          else if (::send(fd, "POST /v1/sandboxes HTTP/1.1\r\nContent-", 37, MSG_NOSIGNAL) != 37)
            err = "send failed";
          ::close(fd);
          break;
        }
        case 7: {
          kind = "one-shot sandbox";
          std::string id;
          err = c.create(sandbox_body(R"(,"command":"true")"), id);
          for (int i = 0; err.empty() && i < 2000; ++i) {
            std::string body;
            err = c.call("GET", "/v1/sandboxes/" + id, "", &body);
            if (body.find("STATE_COMPLETED") != std::string::npos) break;
            std::this_thread::sleep_for(10ms);
          }
          if (!id.empty()) (void)c.call("DELETE", "/v1/sandboxes/" + id);
          break;
        }
        }
        if (!expect_errors || err.empty()) t.add(kind, err);
      }
    });
  for (auto& th : ts)
    th.join();
}

void run_load_for(std::chrono::seconds d, const std::string& url, const std::string& token,
                  const std::vector<std::string>& shared, tally& t) {
  std::atomic<bool> stop{false};
  std::thread l([&] { load(url, token, shared, 8, stop, t, false); });
  std::this_thread::sleep_for(d);
  stop = true;
  l.join();
}

/// pidfds of `pids`, to tell later whether they are gone (a pid may be reused; a pidfd not).
std::vector<int> watch(const std::vector<pid_t>& pids) {
  std::vector<int> fds;
  for (pid_t p : pids)
    if (int fd = static_cast<int>(::syscall(SYS_pidfd_open, p, 0)); fd >= 0) fds.push_back(fd);
  return fds;
}
long still_alive(std::vector<int>& fds) {
  long n = 0;
  for (int fd : fds) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 0) == 0) ++n;
    ::close(fd);
  }
  fds.clear();
  return n;
}

} // namespace

int main(int argc, char** argv) {
  const long secs = argc > 1 ? std::atol(argv[1]) : 600;
  const char* env_bin = std::getenv("SANDBOXD");
  const std::string bin = env_bin && *env_bin ? env_bin : SANDBOXD_PATH;
  const std::string token = sandbox::detail::random_id("soak-", 32);
  bool pass = true;
  auto verdict = [&](bool ok, const char* what) {
    std::printf("  %-62s %s\n", what, ok ? "ok" : "FAILED");
    pass = pass && ok;
  };

  // ---- 1. minutes of mixed load --------------------------------------------------------------
  sample start, end;
  tally t;
  {
    daemon_process d(bin, token);
    if (!d.ok()) {
      std::fprintf(stderr, "soak_bench: cannot start %s\n", bin.c_str());
      return 2;
    }
    client c(d.url(), token);
    std::vector<std::string> shared(4);
    for (auto& id : shared)
      if (auto e = c.create(sandbox_body(), id); !e.empty()) {
        std::fprintf(stderr, "soak_bench: %s\n", e.c_str());
        return 2;
      }
    std::printf("sandboxd %s (pid %d): %ld s of mixed load from 8 clients\n", d.url().c_str(),
                static_cast<int>(d.pid()), secs);
    tally warm;
    run_load_for(std::chrono::seconds(std::min(secs / 10 + 5, 30L)), d.url(), token, shared, warm);
    std::this_thread::sleep_for(7s); // idle connections close, abandoned commands end
    start = measure(d.pid());
    auto began = clock_type::now();
    run_load_for(std::chrono::seconds(secs), d.url(), token, shared, t);
    double took = std::chrono::duration<double>(clock_type::now() - began).count();
    std::this_thread::sleep_for(7s);
    end = measure(d.pid());

    std::printf("\n%-28s %10s %10s %10s\n", "operation", "done", "per s", "failed");
    long failed = 0;
    for (const auto& [kind, n] : t.ok) {
      long f = t.failed.count(kind) ? t.failed[kind] : 0;
      failed += f;
      std::printf("%-28s %10ld %10.1f %10ld\n", kind.c_str(), n, static_cast<double>(n) / took, f);
    }
    for (const auto& [kind, e] : t.first_error)
      std::printf("  first error of %s: %s\n", kind.c_str(), e.c_str());
    std::printf("\n%-28s %12s %12s\n", "sandboxd", "start", "end");
    auto row = [](const char* name, long a, long b) {
      std::printf("%-28s %12ld %12ld\n", name, a, b);
    };
    row("RSS (KiB)", start.rss_kib, end.rss_kib);
    row("descriptors", start.fds, end.fds);
    row("threads", start.threads, end.threads);
    row("mounts", start.mounts, end.mounts);
    row("sandbox cgroups (its own)", start.cgroups, end.cgroups);
    row("processes under it", start.processes, end.processes);
    std::printf("\n");
    verdict(failed == 0, "every operation answered as expected");
    verdict(end.rss_kib <= start.rss_kib + std::max(start.rss_kib / 10, 8192L),
            "RSS: no growth beyond 10 % or 8 MiB");
    verdict(end.fds <= start.fds, "descriptors: no growth");
    verdict(end.threads <= start.threads, "threads: no growth");
    verdict(end.mounts <= start.mounts, "mounts: no growth");
    verdict(end.cgroups <= start.cgroups, "sandbox cgroups: no growth");
    verdict(end.processes <= start.processes, "processes: no growth");
  }

  // ---- 2. SIGTERM under load
  // ---------------------------------------------------------------------
  {
    daemon_process d(bin, token);
    client c(d.url(), token);
    std::vector<std::string> shared(4);
    for (auto& id : shared)
      (void)c.create(sandbox_body(), id);
    std::atomic<bool> stop{false};
    tally ignored;
    std::thread l([&] { load(d.url(), token, shared, 8, stop, ignored, true); });
    std::this_thread::sleep_for(3s);
    auto under = watch(descendants(d.pid()));
    long had = static_cast<long>(under.size());
    const pid_t pid = d.pid();
    int ws = d.kill_and_reap(SIGTERM);
    stop = true;
    l.join();
    std::this_thread::sleep_for(1s);
    long alive = still_alive(under);
    std::printf("\nSIGTERM under load: exit status %d, %ld of %ld processes under it left, "
                "%ld sandbox cgroups left\n",
                WIFEXITED(ws) ? WEXITSTATUS(ws) : -1, alive, had, sandbox_cgroups(pid));
    verdict(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "SIGTERM: sandboxd exits 0");
    verdict(alive == 0, "SIGTERM: nothing of its sandboxes runs on");
    verdict(sandbox_cgroups(pid) == 0, "SIGTERM: no sandbox cgroup left");
  }

  // ---- 3. SIGKILL under load, then a new start
  // -----------------------------------------------------
  {
    std::vector<int> under;
    long had = 0, cgroups_left = 0;
    pid_t killed = 0;
    {
      daemon_process d(bin, token);
      client c(d.url(), token);
      std::vector<std::string> shared(4);
      for (auto& id : shared)
        (void)c.create(sandbox_body(), id);
      std::atomic<bool> stop{false};
      tally ignored;
      std::thread l([&] { load(d.url(), token, shared, 8, stop, ignored, true); });
      std::this_thread::sleep_for(3s);
      under = watch(descendants(d.pid()));
      had = static_cast<long>(under.size());
      killed = d.pid();
      (void)d.kill_and_reap(SIGKILL);
      stop = true;
      l.join();
      std::this_thread::sleep_for(1s);
      cgroups_left = sandbox_cgroups(killed);
    }
    daemon_process next(bin, token); // its transport sweeps what the killed one left
    std::this_thread::sleep_for(1s);
    long alive = still_alive(under);
    long swept_to = sandbox_cgroups(killed);
    std::printf("\nSIGKILL under load: %ld processes were under it, %ld still run after the next "
                "start; sandbox cgroups left %ld, after the next start %ld\n",
                had, alive, cgroups_left, swept_to);
    verdict(next.ok(), "SIGKILL: sandboxd starts again");
    verdict(alive == 0, "SIGKILL: nothing of its sandboxes runs on");
    verdict(swept_to == 0, "SIGKILL: the next start sweeps the cgroups left behind");
  }
  std::printf("\n%s\n", pass ? "soak: passed" : "soak: FAILED");
  return pass ? 0 : 1;
}
