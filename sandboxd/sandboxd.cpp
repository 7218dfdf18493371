// SPDX-License-Identifier: MIT
// sandboxd: a self-hosted sandbox server. It serves the CoreWeave Sandboxes v1 API over the
// local transport, as REST (`http_transport`, any REST client) and, with --grpc-listen, as native
// gRPC (the official Python and TypeScript clients), both on the same sandboxes.
//
//   export SANDBOXD_TOKEN=$(head -c 24 /dev/urandom | base64)
//   sandboxd --listen 127.0.0.1:8080 --grpc-listen 127.0.0.1:8081
//   CWSANDBOX_BASE_URL=http://127.0.0.1:8081 CWSANDBOX_API_KEY=$SANDBOXD_TOKEN python3 my.py
//
// The first line on stdout is the REST base URL (useful with port 0), the second (with
// --grpc-listen) the gRPC one. One line per REST request goes to stderr. SIGTERM or SIGINT stops
// every sandbox it created, then it exits.
#include <sandbox/local.hpp>
#if SANDBOXD_IMAGES
#include <sandbox/image.hpp>
#endif
#include <sandbox/server.hpp>
#include <sandbox/transport/http/detail/client.hpp>
#if SANDBOXD_GRPC
#include <sandbox/server/grpc_server.hpp>
#endif

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <pthread.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

namespace {

constexpr const char* usage =
    "usage: sandboxd --listen HOST:PORT [--token-file FILE] [--threads N]\n"
    "                [--image NAME=DIR|IMAGE]... [--pull] [--registry HOST:PORT]...\n"
    "                [--image-store DIR] [--egress]\n"
    "                [--max-request-bytes N] [--max-output-bytes N]\n"
    "                [--max-output-bytes-limit N]\n"
    "                [--max-sandboxes N] [--max-connections N]\n"
    "                [--max-pids N] [--max-total-pids N]\n"
    "                [--grpc-listen HOST:PORT [--tls-cert FILE --tls-key FILE]]\n"
    "The bearer token comes from SANDBOXD_TOKEN or --token-file; there is no default.\n"
    "Images: a client's image name must be one of --image (python:3.11 runs on this host's\n"
    "root unless given otherwise); with --pull, any other registry name, the default\n"
    "python:3.11 included unless --image names it, is pulled into the\n"
    "image store (--image-store, default $XDG_CACHE_HOME/sandbox or /var/cache/sandbox): from\n"
    "public registries only, unless a local one is listed with --registry.\n"
    "Network: a sandbox has its own loopback only; with --egress a client may ask for outbound\n"
    "access (network.denyEgress false), through a NAT that keeps this host's loopback and\n"
    "addresses and private, link-local and reserved ranges out of reach.\n"
    "--max-request-bytes (64 MiB by default) bounds a request's body, and so a WriteFile, and\n"
    "a ReadFile's file too.\n"
    "Each sandbox runs at most --max-pids processes and threads (2048 by default), and all\n"
    "of them together at most --max-total-pids (half the host's pid_max by default); 0: no\n"
    "limit. Both need cgroups, so root.\n"
    "PORT 0 picks a free port; the first line on stdout is the REST base URL, the second\n"
    "(with --grpc-listen) the gRPC one (http:// for plaintext h2c, https:// with TLS).\n";

int die(const std::string& msg) {
  std::fprintf(stderr, "sandboxd: %s\n", msg.c_str());
  return 2;
}

std::string now_utc() {
  timeval tv{};
  ::gettimeofday(&tv, nullptr);
  std::tm tm{};
  ::gmtime_r(&tv.tv_sec, &tm);
  char buf[40];
  std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(tv.tv_usec / 1000));
  return buf;
}

bool parse_size(const char* s, std::uint64_t& out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-') return false;
  out = v;
  return true;
}

/// What the command line and the environment ask for.
struct config {
  std::string host, token_file;
  int port = 0;
  std::string grpc_host, tls_cert, tls_key; // grpc_host empty: no gRPC
  std::string image_store;
  std::vector<std::string> local_registries;
  int grpc_port = 0;
  bool pids_given = false; // else a host that cannot limit pids gets a warning, not a refusal
  std::optional<std::uint32_t> total_pids;        // default: half the host's pid_max
  sandbox::server_options opts{.max_pids = 2048}; // podman's default
};

/// Splits `HOST:PORT` (an IPv6 host in brackets); an error message, or "".
std::string parse_listen(const std::string& flag, const std::string& listen, std::string& host,
                         int& port) {
  auto colon = listen.rfind(':');
  std::uint64_t n = 0;
  if (colon == std::string::npos || !parse_size(listen.c_str() + colon + 1, n) || n > 65535)
    return flag + " wants HOST:PORT, got " + listen;
  port = static_cast<int>(n);
  host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return {};
}

/// Fills `c` from argv; returns an error message, "" on success, or "help" for --help.
std::string parse_args(int argc, char** argv, config& c) {
  std::string listen, grpc_listen;
  bool named_default = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") return "help";
    if (a == "--egress") {
      c.opts.allow_egress = true;
      continue;
    }
    if (a == "--pull") {
#if SANDBOXD_IMAGES
      c.opts.pull_images = true;
      continue;
#else
      return "--pull: this sandboxd was built without image support (libarchive, libcrypto)";
#endif
    }
    if (i + 1 >= argc) return "missing value after " + a;
    const char* v = argv[++i];
    std::uint64_t n = 0;
    if (a == "--listen")
      listen = v;
    else if (a == "--image-store")
      c.image_store = v;
    else if (a == "--registry")
      c.local_registries.push_back(v);
    else if (a == "--token-file")
      c.token_file = v;
    else if (a == "--grpc-listen")
      grpc_listen = v;
    else if (a == "--tls-cert")
      c.tls_cert = v;
    else if (a == "--tls-key")
      c.tls_key = v;
    else if (a == "--threads" && parse_size(v, n) && n > 0)
      c.opts.threads = n;
    else if (a == "--max-request-bytes" && parse_size(v, n) && n > 0)
      c.opts.max_request_bytes = n;
    else if (a == "--max-output-bytes" && parse_size(v, n) && n > 0)
      c.opts.default_max_output_bytes = n;
    else if (a == "--max-output-bytes-limit" && parse_size(v, n) && n > 0)
      c.opts.max_output_bytes_limit = n;
    else if (a == "--max-sandboxes" && parse_size(v, n) && n > 0)
      c.opts.max_live_sandboxes = n;
    else if (a == "--max-connections" && parse_size(v, n) && n > 0)
      c.opts.max_connections = n;
    else if (a == "--max-pids" || a == "--max-total-pids") {
      // 1 leaves no room for a command (the sandbox's init counts); the kernel has no pid
      // beyond 2^22.
      if (!parse_size(v, n) || n == 1 || n >= sandbox::pid_max_limit)
        return a + " wants 0 (no limit) or a number from 2 to " +
               std::to_string(sandbox::pid_max_limit - 1) + ", got " + v;
      (a == "--max-pids" ? c.opts.max_pids : c.total_pids.emplace()) =
          static_cast<std::uint32_t>(n);
      c.pids_given = true;
    } else if (a == "--image" && std::strchr(v, '=')) {
      std::string kv = v;
      auto eq = kv.find('=');
      named_default = named_default || kv.substr(0, eq) == sandbox::http::default_image;
      c.opts.images[kv.substr(0, eq)] = kv.substr(eq + 1);
    } else {
      return "bad argument: " + a + " " + v;
    }
  }
  // With --pull the clients' default image is pulled too, unless --image says what it is.
  if (c.opts.pull_images && !named_default)
    c.opts.images.erase(std::string(sandbox::http::default_image));
  if (listen.empty()) return "--listen HOST:PORT is required";
  if (auto bad = parse_listen("--listen", listen, c.host, c.port); !bad.empty()) return bad;
  if (c.tls_cert.empty() != c.tls_key.empty()) return "--tls-cert and --tls-key go together";
  if (grpc_listen.empty()) {
    if (!c.tls_cert.empty()) return "--tls-cert and --tls-key are for --grpc-listen";
    return {};
  }
#if SANDBOXD_GRPC
  return parse_listen("--grpc-listen", grpc_listen, c.grpc_host, c.grpc_port);
#else
  return "--grpc-listen: this sandboxd was built without grpc++";
#endif
}

/// The whole of file `path` into `out`; an error message, or "".
std::string read_file(const std::string& what, const std::string& path, std::string& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return "cannot read the " + what + " " + path + ": " + std::strerror(errno);
  std::stringstream ss;
  ss << f.rdbuf();
  out = ss.str();
  return {};
}

std::string url_of(const char* scheme, const std::string& host, int port) {
  bool v6 = host.find(':') != std::string::npos;
  return std::string(scheme) + "://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

/// The bearer token from --token-file or SANDBOXD_TOKEN; an error message when there is none.
std::string load_token(config& c) {
  std::string& token = c.opts.token;
  if (!c.token_file.empty()) {
    if (auto bad = read_file("token file", c.token_file, token); !bad.empty()) return bad;
  } else if (const char* t = std::getenv("SANDBOXD_TOKEN")) {
    token = t;
  }
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' '))
    token.pop_back();
  if (token.empty())
    return "no bearer token: set SANDBOXD_TOKEN or pass --token-file FILE (sandboxd never "
           "serves without authentication)";
  return {};
}

/// Serves until SIGTERM or SIGINT, then stops every sandbox it created. The exit status.
int serve(config& c) {
  sandbox::server_options& opts = c.opts;
  std::mutex log_m;
  opts.log = [&](std::string_view line) {
    std::lock_guard lk(log_m);
    std::fprintf(stderr, "%s %.*s\n", now_utc().c_str(), static_cast<int>(line.size()),
                 line.data());
  };

  // Signals are taken by one thread with sigwait; every other thread inherits the block.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  // Each connection holds a descriptor, each running sandbox about four (and each command in
  // it four more while it runs): raise the soft limit as far as that needs (no further:
  // sandboxes inherit it), and keep connections within what it allows.
  const rlim_t need = opts.max_connections + 16 * opts.max_live_sandboxes + 128;
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < need) {
    files.rlim_cur = std::min(need, files.rlim_max);
    (void)::setrlimit(RLIMIT_NOFILE, &files);
  }
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < need) {
    rlim_t room = files.rlim_cur > need - opts.max_connections
                      ? files.rlim_cur - (need - opts.max_connections)
                      : 16;
    opts.max_connections = room;
    opts.log("at most " + std::to_string(room) +
             " connections: the descriptor limit (ulimit -n) is " + std::to_string(files.rlim_cur));
  }

  // Sandboxes report this host as their runner.
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0 && *host) opts.runner_id = host;

  // What a predecessor killed with SIGKILL left behind goes first.
  sandbox::local_transport::sweep();
  sandbox::local_transport::options lo;
  // A file read is held a few times over until it is sent (2.3 times here over REST), so it is
  // bounded as a file written is: a sparse file costs its sandbox nothing however large it says
  // it is.
  lo.max_file_bytes = opts.max_request_bytes;
  lo.images.store = c.image_store;
  // What clients name is pulled from public registries only: a name must not make this
  // server fetch from services on its host or network, except registries listed for it.
  lo.images.public_registries_only = true;
  lo.images.local_registries = c.local_registries;
  // A line per blob fetched, when it is complete (a layer can take a while: say which).
  lo.images.on_progress = [&opts](const sandbox::image::pull_progress& p) {
    if (!p.cached && p.done == p.total && p.total > 0)
      opts.log("pulled " + p.image + ": " + p.digest + " (" + std::to_string(p.total) + " bytes)");
  };
  // The API cannot ask for a pids limit: without these, any client's commands could fill the
  // host's process table.
  if (c.total_pids.value_or(0) != 0 && opts.max_pids == 0)
    return die("--max-total-pids counts the processes of sandboxes with a pids limit, and "
               "--max-pids 0 gives them none");
  if (opts.max_pids != 0) {
    // Set first, so that the check's probe writes the total too.
    std::uint64_t pid_max = 0;
    std::ifstream("/proc/sys/kernel/pid_max") >> pid_max;
    if (!c.total_pids && pid_max == 0)
      opts.log("warning: no total pids limit: /proc/sys/kernel/pid_max is unreadable (pass "
               "--max-total-pids)");
    sandbox::local_transport::limit_total_pids(c.total_pids.value_or(static_cast<std::uint32_t>(
        std::min<std::uint64_t>(pid_max / 2, sandbox::pid_max_limit - 1))));
    if (auto ok = sandbox::local_transport::check_limits({.max_pids = opts.max_pids}); !ok) {
      if (c.pids_given)
        return die("this host cannot limit a sandbox's pids: " + ok.error().message);
      opts.log("warning: sandboxes get no pids limit, as this host cannot hold one (--max-pids 0 "
               "says so without this warning): " +
               ok.error().message);
      opts.max_pids = 0;
      sandbox::local_transport::limit_total_pids(0);
    }
  }
  auto transport = std::make_shared<sandbox::local_transport>(std::move(lo));
  sandbox::server<sandbox::local_transport> srv(transport, opts);
  auto bound = srv.bind(c.host, c.port);
  if (!bound) return die(bound.error().message);
  if (!sandbox::http::detail::is_loopback_host(c.host))
    opts.log("warning: serving plain HTTP on " + c.host +
             ", not a loopback address: the bearer token and all data travel in clear; put a "
             "TLS proxy in front of sandboxd or listen on 127.0.0.1");
  std::string urls = url_of("http", c.host, bound.value()) + "\n";
#if SANDBOXD_GRPC
  // The same sandboxes over gRPC: one service behind both front ends.
  std::optional<sandbox::grpc_server<sandbox::local_transport>> rpc;
  if (!c.grpc_host.empty()) {
    std::optional<sandbox::tls_identity> tls;
    if (!c.tls_cert.empty()) {
      tls.emplace();
      if (auto bad = read_file("TLS certificate", c.tls_cert, tls->certificate_chain); !bad.empty())
        return die(bad);
      if (auto bad = read_file("TLS key", c.tls_key, tls->private_key); !bad.empty())
        return die(bad);
    } else if (!sandbox::http::detail::is_loopback_host(c.grpc_host)) {
      opts.log("warning: serving plaintext gRPC on " + c.grpc_host +
               ", not a loopback address: pass --tls-cert and --tls-key");
    }
    rpc.emplace(srv.service());
    auto g = rpc->start(c.grpc_host, c.grpc_port, tls);
    if (!g) return die(g.error().message);
    urls += url_of(tls ? "https" : "http", c.grpc_host, g.value()) + "\n";
  }
#endif
  std::fputs(urls.c_str(), stdout);
  std::fflush(stdout);

  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    opts.log(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") +
             ": stopping every sandbox, then the server");
    // Sandboxes first: a request waiting on a command then ends, and the server can stop.
    (void)srv.stop_all(std::chrono::seconds(5));
#if SANDBOXD_GRPC
    if (rpc) rpc->stop();
#endif
    srv.stop();
  });
  auto served = srv.run();
  if (!served) {
    opts.log("server failed: " + served.error().message);
    pthread_kill(waiter.native_handle(), SIGTERM);
  }
  waiter.join();
  // Again, for sandboxes created while the first round ran.
  auto ids = srv.created();
  std::size_t failed = srv.stop_all(std::chrono::seconds(5));
  opts.log("stopped " + std::to_string(ids.size() - failed) + " of " + std::to_string(ids.size()) +
           " sandboxes; exiting");
  return served && failed == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  config c;
  std::string bad = parse_args(argc, argv, c);
  if (bad == "help") {
    std::fputs(usage, stdout);
    return 0;
  }
  if (!bad.empty()) return die(bad + "\n" + usage);
  if (std::string no = load_token(c); !no.empty()) return die(no);
  return serve(c);
}
