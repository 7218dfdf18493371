// SPDX-License-Identifier: MIT
// Throughput and latency under concurrency, each figure beside a baseline measured in the same
// run. Every line is one fixed-duration run of N threads or connections doing one operation back
// to back (after a warm-up of a quarter of it, at most 0.5 s, and until every thread has done one
// operation): completed operations per second, and the p50 / p99 latency of one operation.
//   spawn      posix_spawn + waitpid of /bin/true, 1/4/16/64 threads (what the machine can do)
//   local      exec({"true"}) then result(), or try_result(10 ms) until done, from 1/4/16/64
//              threads, all on one sandbox and spread across 16     vs  spawn, same threads
//              run + exec + stop cycles, and an exec of 1 MiB of stdout (the baselines below)
//   sandboxd   the server over the local transport on an ephemeral loopback port, in this
//              process, driven by N cpp-httplib clients with a keep-alive connection each,
//              N = 1/16/64: GetSandbox, Exec of `true` on one sandbox and across 16, create +
//              exec + delete cycles, Exec of 1 MiB of stdout           vs  the same, local
//   gRPC       the same calls as unary gRPC (GetSandbox, Exec, CreateSandbox + Exec +
//              DeleteSandbox) on the same service, N clients with a connection each (when
//              built with grpc++)                                      vs  the same over REST
//   paced      posix_spawn, sandboxd Exec of `true` across 16 sandboxes over REST and gRPC, at
//              a load offered on a schedule (1000 a second from 16 threads) rather than as fast
//              as they go: latency from each operation's scheduled start (the p99 target's load)
// It ends with each series' throughput at N over its throughput at 1 (the target: >= 1.0,
// concurrency never lowers throughput) and sandboxd's exec at 16 connections across 16
// sandboxes over posix_spawn at 16 threads. Client, server and sandboxes share the machine's
// cores. Any failed operation (a non-200 answer included) is counted and printed as an error.
// Usage: load_bench [seconds per measurement]   (default 2: about 3 minutes in all; 1: about 90 s)
#include "../support/loopback_server.hpp"
#if SANDBOX_LOAD_BENCH_GRPC
#include "../support/grpc_client.hpp"

#include <sandbox/server/grpc_server.hpp>
#endif

#include <sandbox/local.hpp>

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <latch>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <cerrno>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using Box = sandbox::NoexceptSandbox;
using remote_box = sandbox::basic_sandbox<sandbox::testing::test_http_transport,
                                          sandbox::testing::test_retry, sandbox::return_errors>;

/// One operation: "" when it succeeded, else what went wrong.
using op_fn = std::function<std::string()>;
/// Makes thread `t`'s operation, on that thread (so that a client connection is its own).
using make_op = std::function<op_fn(int t)>;

constexpr int sandboxes_n = 16;
constexpr std::size_t mib = std::size_t{1} << 20;

struct figures {
  double ops_per_s = 0, p50_ms = 0, p99_ms = 0;
  long ops = 0, errors = 0; // errors: during the warm-up too
  std::string first_error;
};

std::chrono::duration<double> measured{2.0}, warm_up{0.5};

/// What one thread of a measurement saw.
struct per_thread {
  std::vector<double> ms; ///< latencies within the window
  long ok = 0, errors = 0;
  std::string first_error;
  clock_type::time_point last_end; ///< paced: when its last operation due in the window ended
};

/// Throughput and latency over the measured window of `seconds`, from each thread's figures.
figures summarize(const std::vector<per_thread>& out, double seconds) {
  figures f;
  std::vector<double> all;
  for (auto& o : out) {
    all.insert(all.end(), o.ms.begin(), o.ms.end());
    f.ops += o.ok;
    f.errors += o.errors;
    if (f.first_error.empty()) f.first_error = o.first_error;
  }
  f.ops_per_s = static_cast<double>(f.ops) / seconds;
  if (!all.empty()) {
    std::sort(all.begin(), all.end());
    auto at = [&](double q) { // nearest rank
      auto i = static_cast<std::size_t>(q * static_cast<double>(all.size()));
      return all[std::min(i, all.size() - 1)];
    };
    f.p50_ms = at(0.50);
    f.p99_ms = at(0.99);
  }
  return f;
}

/// Runs `threads` threads, each doing its operation back to back: a warm-up of at least
/// `warm_up` that lasts until every thread has completed one operation (so that a window never
/// starts before the pipeline is full), then `measured`. Throughput counts the successful
/// operations that ended within the measured window; the latencies are those of every operation
/// that ended in it.
figures drive(int threads, const make_op& make) {
  using ticks = clock_type::rep;
  constexpr ticks never = std::numeric_limits<ticks>::max();
  auto now = [] { return clock_type::now().time_since_epoch().count(); };
  std::vector<per_thread> out(static_cast<std::size_t>(threads));
  std::latch ready(threads), go(1);
  std::atomic<ticks> from{never}, until{never};
  std::atomic<int> warmed{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      op_fn op = make(t);
      per_thread& o = out[static_cast<std::size_t>(t)];
      o.ms.reserve(1 << 14);
      ready.count_down();
      go.wait();
      for (bool first = true;; first = false) {
        ticks t0 = now();
        if (t0 >= until.load()) break;
        std::string err = op();
        ticks t1 = now();
        if (first) ++warmed;
        bool ok = err.empty();
        if (!ok && o.errors++ == 0) o.first_error = std::move(err);
        if (t1 < from.load() || t1 >= until.load()) continue;
        o.ms.push_back(
            std::chrono::duration<double, std::milli>(clock_type::duration(t1 - t0)).count());
        if (ok) ++o.ok;
      }
    });
  ready.wait();
  go.count_down();
  std::this_thread::sleep_for(warm_up);
  while (warmed.load() < threads)
    std::this_thread::sleep_for(1ms);
  ticks start = now();
  from = start;
  until = start + std::chrono::duration_cast<clock_type::duration>(measured).count();
  for (auto& t : ts)
    t.join();

  return summarize(out, measured.count());
}

/// As `drive`, but open loop: the threads together start `rate` operations a second on a fixed
/// schedule (thread t's k-th at `(k * threads + t) / rate` after the start), and an operation's
/// latency runs from its scheduled start, so that a server falling behind shows in the figures
/// (no coordinated omission). Throughput: the operations due within the window, over the time
/// from its start until the last of them ended (more than the window when they fall behind).
figures drive_paced(int threads, double rate, const make_op& make) {
  std::vector<per_thread> out(static_cast<std::size_t>(threads));
  std::latch ready(threads + 1);
  const auto gap = std::chrono::duration<double>(1.0 / rate);
  clock_type::time_point start, from, until;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      op_fn op = make(t);
      per_thread& o = out[static_cast<std::size_t>(t)];
      o.ms.reserve(1 << 14);
      ready.arrive_and_wait(); // `start`, `from` and `until` are set before the last arrives
      for (long k = 0;; ++k) {
        auto due = start + std::chrono::duration_cast<clock_type::duration>(
                               gap * static_cast<double>(k * threads + t));
        if (due >= until) break;
        std::this_thread::sleep_until(due);
        std::string err = op();
        auto t1 = clock_type::now();
        bool ok = err.empty();
        if (!ok && o.errors++ == 0) o.first_error = std::move(err);
        if (due < from) continue; // the warm-up
        o.ms.push_back(std::chrono::duration<double, std::milli>(t1 - due).count());
        o.last_end = t1;
        if (ok) ++o.ok;
      }
    });
  start = clock_type::now() + 50ms;
  from = start + std::chrono::duration_cast<clock_type::duration>(warm_up);
  until = from + std::chrono::duration_cast<clock_type::duration>(measured);
  ready.arrive_and_wait();
  for (auto& t : ts)
    t.join();
  auto last = until;
  for (auto& o : out)
    last = std::max(last, o.last_end);
  return summarize(out, std::chrono::duration<double>(last - from).count());
}

/// The figures of one series, by N (threads or connections).
struct series {
  std::string name;
  std::map<int, figures> at;
};
std::vector<series> all_series;

series& start_series(std::string name) {
  all_series.push_back({std::move(name), {}});
  return all_series.back();
}

/// Measures `s` at each N and prints a line for each, with its throughput over `base`'s at
/// the same N when given.
/// `rate` > 0: paced at `rate` operations a second in all (see `drive_paced`).
void run_series(series& s, const std::vector<int>& ns, const make_op& make,
                const series* base = nullptr, double rate = 0) {
  for (int n : ns) {
    figures f = rate > 0 ? drive_paced(n, rate, make) : drive(n, make);
    s.at[n] = f;
    std::printf("  %-42s N=%-3d %8.0f ops/s  p50 %8.3f ms  p99 %8.3f ms", s.name.c_str(), n,
                f.ops_per_s, f.p50_ms, f.p99_ms);
    if (base) {
      auto b = base->at.find(n);
      if (b != base->at.end() && b->second.ops_per_s > 0)
        std::printf("  %5.2fx", f.ops_per_s / b->second.ops_per_s);
    }
    std::printf("  errors %ld\n", f.errors);
    if (f.errors) std::printf("      first error: %s\n", f.first_error.c_str());
    if (f.ops == 0) std::printf("      no operation succeeded within the measured window\n");
    std::fflush(stdout);
  }
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "load_bench: %s\n", what.c_str());
  std::exit(1);
}

// ---- operations ---------------------------------------------------------------------------

std::string spawn_true() {
  char prog[] = "/bin/true";
  char* argv[] = {prog, nullptr};
  pid_t pid;
  int rc = posix_spawn(&pid, prog, nullptr, nullptr, argv, environ);
  if (rc != 0) return std::string("posix_spawn: ") + std::strerror(rc);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return std::string("waitpid: ") + std::strerror(errno);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "" : "/bin/true did not exit 0";
}

/// "" if `r` is a result of a command that exited 0 (and printed `bytes`, when given).
std::string judge(const sandbox::result<sandbox::ExecResult>& r, std::size_t bytes = 0) {
  if (!r) return r.error().message;
  if (r.value().returncode != 0) return "exit code " + std::to_string(r.value().returncode);
  if (bytes && r.value().stdout_text.size() != bytes)
    return "stdout of " + std::to_string(r.value().stdout_text.size()) + " bytes";
  return "";
}

std::string exec_blocking(Box& box) { return judge(box.exec({"true"}).result()); }

/// exec, then waits in 10 ms slices until the command is done.
std::string exec_sliced(Box& box) {
  auto p = box.exec({"true"});
  for (;;) {
    auto r = p.try_result(10ms);
    if (r || !r.error().is(sandbox::errc::timeout)) return judge(r);
  }
}

std::string exec_mib(Box& box) {
  return judge(box.exec({"head", "-c", std::to_string(mib), "/dev/zero"}).result(), mib);
}

std::string local_cycle(const std::shared_ptr<sandbox::local_transport>& t) {
  auto made = Box::run({}, t);
  if (!made) return made.error().message;
  std::string err = exec_blocking(made.value());
  auto stopped = made.value().stop(0ms);
  if (err.empty() && !stopped) err = stopped.error().message;
  return err;
}

/// One client of the server, holding its own keep-alive connection.
class rest_client {
public:
  rest_client(const std::string& url, const std::string& token) : c_(url) {
    c_.set_keep_alive(true);
    c_.set_tcp_nodelay(true);
    c_.set_read_timeout(60, 0);
    c_.set_default_headers({{"Authorization", "Bearer " + token}});
  }

  /// "" for a 200, else the status and the start of the body, or why there was no answer.
  /// The body of a 200 is left in `body`.
  std::string call(const char* method, const std::string& path, const std::string& request = "",
                   std::string* body = nullptr) {
    httplib::Result r = std::strcmp(method, "POST") == 0
                            ? c_.Post(path.c_str(), request, "application/json")
                        : std::strcmp(method, "DELETE") == 0 ? c_.Delete(path.c_str())
                                                             : c_.Get(path.c_str());
    if (!r) return std::string(method) + " " + path + ": no answer (" + to_string(r.error()) + ")";
    if (r->status != 200)
      return std::string(method) + " " + path + ": HTTP " + std::to_string(r->status) + " " +
             r->body.substr(0, 200);
    if (body) *body = std::move(r->body);
    return "";
  }

  /// Exec of `request` in sandbox `id`: "" if it answered 200 with exit code 0 and at least
  /// `min_body` bytes.
  std::string exec(const std::string& id, const std::string& request, std::size_t min_body = 0) {
    std::string body;
    if (auto err = call("POST", "/v1/sandboxes/" + id + ":exec", request, &body); !err.empty())
      return err;
    // proto3 JSON leaves out a zero exit code.
    if (auto at = body.find("\"exitCode\":"); at != std::string::npos)
      return "exec answered " + body.substr(at, 16);
    if (body.size() < min_body) return "exec answered " + std::to_string(body.size()) + " bytes";
    return "";
  }

private:
  httplib::Client c_;
};

const std::string exec_true_body = R"({"command":["true"]})";
const std::string exec_mib_body =
    R"({"command":["head","-c",")" + std::to_string(mib) + R"(","/dev/zero"]})";
const std::string create_body = R"({"spec":{"containers":[{"name":"main","image":")" +
                                std::string(sandbox::http::default_image) + R"("}]}})";

std::string rest_cycle(rest_client& c) {
  std::string made;
  if (auto err = c.call("POST", "/v1/sandboxes", create_body, &made); !err.empty()) return err;
  auto sb = sandbox::http::from_json<sandbox::http::wire::Sandbox>(
      made, sandbox::http::decode_mode::lenient);
  if (!sb || sb.value().sandbox_id.empty()) return "CreateSandbox answered no sandbox id";
  const std::string& id = sb.value().sandbox_id;
  std::string err = c.exec(id, exec_true_body);
  std::string deleted = c.call("DELETE", "/v1/sandboxes/" + id + "?gracePeriodSeconds=0");
  return err.empty() ? deleted : err;
}

#if SANDBOX_LOAD_BENCH_GRPC
/// One gRPC client of the server, with a connection of its own.
class rpc_load_client {
public:
  rpc_load_client(const std::string& target, const std::string& token)
      : c_(target, "Bearer " + token, true) {}

  std::string get(const std::string& id) {
    sandbox::http::wire::GetSandboxRequest rq;
    rq.sandbox_id = id;
    auto r = c_.unary<sandbox::http::wire::Sandbox>("GetSandbox", rq);
    return r.ok() ? "" : "GetSandbox: " + r.status.error_message();
  }

  /// "" if the Exec ended with exit code 0 and at least `min_stdout` bytes of stdout.
  std::string exec(const std::string& id, std::vector<std::string> command,
                   std::size_t min_stdout = 0) {
    sandbox::http::wire::ExecRequest rq;
    rq.sandbox_id = id;
    rq.command = std::move(command);
    auto r = c_.unary<sandbox::http::wire::ExecResponse>("Exec", rq);
    if (!r.ok()) return "Exec: " + r.status.error_message();
    if (r.message.exit_code != 0) return "exit code " + std::to_string(r.message.exit_code);
    if (r.message.stdout_bytes.size() < min_stdout)
      return "stdout of " + std::to_string(r.message.stdout_bytes.size()) + " bytes";
    return "";
  }

  std::string cycle() {
    namespace wire = sandbox::http::wire;
    wire::CreateSandboxRequest rq;
    rq.sandbox.emplace();
    rq.sandbox->spec.emplace();
    wire::Container main;
    main.name = "main";
    main.image = std::string(sandbox::http::default_image);
    rq.sandbox->spec->containers = {main};
    auto made = c_.unary<wire::Sandbox>("CreateSandbox", rq);
    if (!made.ok()) return "CreateSandbox: " + made.status.error_message();
    const std::string& id = made.message.sandbox_id;
    std::string err = exec(id, {"true"});
    wire::DeleteSandboxRequest del;
    del.sandbox_id = id;
    auto deleted = c_.unary<wire::DeleteSandboxResponse>("DeleteSandbox", del);
    if (err.empty() && !deleted.ok()) err = "DeleteSandbox: " + deleted.status.error_message();
    return err;
  }

private:
  sandbox::testing::rpc_client c_;
};
#endif

/// Thread t's operation with a `Client` of its own, made (and so connected) on that thread from
/// `address` and `token`; `op` gets it and thread t's k-th index.
template <class Client>
make_op with_own(const std::string& address, const std::string& token,
                 std::function<std::string(Client&, int)> op) {
  return [&address, &token, op = std::move(op)](int t) -> op_fn {
    auto c = std::make_shared<Client>(address, token);
    return [c, op, t, k = 0]() mutable { return op(*c, t + k++); };
  };
}

void print_ratios() {
  std::printf("\nthroughput at N / throughput at 1 (target: >= 1.00, concurrency never lowers "
              "throughput)\n");
  for (const auto& s : all_series) {
    auto one = s.at.find(1);
    if (one == s.at.end() || one->second.ops_per_s <= 0) continue;
    std::printf("  %-42s", s.name.c_str());
    double worst = 1e9;
    for (const auto& [n, f] : s.at) {
      if (n == 1) continue;
      double r = f.ops_per_s / one->second.ops_per_s;
      worst = std::min(worst, r);
      std::printf("  N=%-2d %5.2f", n, r);
    }
    std::printf("   -> %s\n", worst >= 1.0 ? "met" : "NOT met");
  }
}

} // namespace

int main(int argc, char** argv) {
  double secs = argc > 1 ? std::atof(argv[1]) : 2.0;
  if (!(secs >= 0.2)) secs = 0.2;
  measured = std::chrono::duration<double>(secs);
  warm_up = std::chrono::duration<double>(std::min(0.5, secs / 4));
  all_series.reserve(32); // series are referred to by address
  const auto began = clock_type::now();
  std::printf("load_bench: %.1f s per measurement after %.2f s of warm-up, %u cores\n", secs,
              warm_up.count(), std::thread::hardware_concurrency());
  std::printf("columns: N threads or connections, completed ops/s, latency p50 and p99, "
              "throughput over the baseline at the same N, errors\n");

  const std::vector<int> threads_ns{1, 4, 16, 64}, conn_ns{1, 16, 64};

  std::printf("\nbaseline: posix_spawn + waitpid of /bin/true\n");
  series& spawn = start_series("posix_spawn + waitpid /bin/true");
  run_series(spawn, threads_ns, [](int) -> op_fn { return spawn_true; });

  // ---- the library, local transport ----
  auto local = sandbox::local_transport::shared();
  std::vector<Box> boxes;
  for (int i = 0; i < sandboxes_n; ++i) {
    auto b = Box::run({}, local);
    if (!b) die("cannot start a local sandbox: " + b.error().message);
    boxes.push_back(std::move(b).value());
  }
  // Thread t's k-th operation goes to sandbox 0 (one) or (t + k) % 16 (spread).
  auto on_boxes = [&](bool spread, std::string (*op)(Box&)) {
    return [&boxes, spread, op](int t) -> op_fn {
      return [&boxes, spread, op, t, k = 0]() mutable {
        Box& b = boxes[spread ? static_cast<std::size_t>((t + k++) % sandboxes_n) : 0];
        return op(b);
      };
    };
  };
  // The load the p99 target is set at: 1000 execs a second from 16 clients, offered.
  constexpr double offered = 1000;
  std::printf("\nbaseline at an offered load: %.0f ops/s from 16 threads\n", offered);
  series& spawn_paced = start_series("posix_spawn + waitpid /bin/true, paced");
  run_series(
      spawn_paced, {16}, [](int) -> op_fn { return spawn_true; }, nullptr, offered);

  std::printf("\nlocal transport: exec({\"true\"}) and its result (x: over posix_spawn at the same "
              "N)\n");
  const series* local_exec[2] = {}; // result(), on one sandbox and across 16
  for (bool spread : {false, true})
    for (bool sliced : {false, true}) {
      series& s = start_series(std::string(spread ? "local, 16 sandboxes" : "local, one sandbox") +
                               (sliced ? ", try_result(10ms) loop" : ", result()"));
      run_series(s, threads_ns, on_boxes(spread, sliced ? exec_sliced : exec_blocking), &spawn);
      if (!sliced) local_exec[spread] = &s;
    }

  std::printf("\nlocal transport: the baselines of the sandboxd lines below\n");
  series& local_cycles = start_series("local, run + exec true + stop(0)");
  run_series(local_cycles, conn_ns,
             [&](int) -> op_fn { return [&] { return local_cycle(local); }; });
  series& local_mib = start_series("local, exec 1 MiB stdout, 16 sandboxes");
  run_series(local_mib, conn_ns, on_boxes(true, exec_mib));

  // ---- sandboxd over REST ----
  sandbox::testing::loopback_server service;
  const std::string url = service.url(), token = service.token();
  std::vector<remote_box> remote;
  {
    auto client = service.client();
    for (int i = 0; i < sandboxes_n; ++i) {
      auto b = remote_box::run({}, client);
      if (!b) die("cannot start a sandbox on the server: " + b.error().message);
      remote.push_back(std::move(b).value());
    }
  }
  std::vector<std::string> ids;
  for (auto& b : remote)
    ids.push_back(b.id());
  auto with_client = [&](std::function<std::string(rest_client&, int)> op) {
    return with_own<rest_client>(url, token, std::move(op));
  };
  // Operation i of the spread series goes to sandbox i % 16.
  auto id_at = [&](int i) -> const std::string& {
    return ids[static_cast<std::size_t>(i % sandboxes_n)];
  };
  std::printf("\nsandboxd on loopback, one keep-alive connection per client thread (x: over the "
              "same operation on the local transport at the same N)\n");
  series& get = start_series("sandboxd, GET /v1/sandboxes/{id}");
  run_series(get, conn_ns, with_client([&](rest_client& c, int) {
               return c.call("GET", "/v1/sandboxes/" + ids[0]);
             }));
  series& rest_exec1 = start_series("sandboxd, exec true, one sandbox");
  run_series(rest_exec1, conn_ns,
             with_client([&](rest_client& c, int) { return c.exec(ids[0], exec_true_body); }),
             local_exec[0]);
  series& rest_exec16 = start_series("sandboxd, exec true, 16 sandboxes");
  run_series(rest_exec16, conn_ns,
             with_client([&](rest_client& c, int i) { return c.exec(id_at(i), exec_true_body); }),
             local_exec[1]);
  series& rest_paced = start_series("sandboxd, exec true, 16 sandboxes, paced");
  run_series(rest_paced, {16},
             with_client([&](rest_client& c, int i) { return c.exec(id_at(i), exec_true_body); }),
             &spawn_paced, offered);
  series& rest_cycles = start_series("sandboxd, create + exec true + delete");
  run_series(rest_cycles, conn_ns, with_client([](rest_client& c, int) { return rest_cycle(c); }),
             &local_cycles);
  series& rest_mib = start_series("sandboxd, exec 1 MiB stdout, 16 sandboxes");
  run_series(rest_mib, conn_ns, with_client([&](rest_client& c, int i) {
               // base64 of 1 MiB: at least 4/3 MiB of body
               return c.exec(id_at(i), exec_mib_body, mib * 4 / 3);
             }),
             &local_mib);

#if SANDBOX_LOAD_BENCH_GRPC
  // ---- the same service over gRPC ----
  sandbox::grpc_server<sandbox::local_transport> rpc(service.get().service());
  auto rpc_port = rpc.start("127.0.0.1", 0);
  if (!rpc_port) die("cannot start the gRPC server: " + rpc_port.error().message);
  const std::string target = "127.0.0.1:" + std::to_string(rpc_port.value());
  auto with_rpc = [&](std::function<std::string(rpc_load_client&, int)> op) {
    return with_own<rpc_load_client>(target, token, std::move(op));
  };
  std::printf("\nsandboxd over gRPC (unary calls), a connection per client thread (x: over the "
              "same call over REST at the same N)\n");
  series& rpc_get = start_series("gRPC, GetSandbox");
  run_series(rpc_get, conn_ns, with_rpc([&](rpc_load_client& c, int) { return c.get(ids[0]); }),
             &get);
  series& rpc_exec1 = start_series("gRPC, Exec true, one sandbox");
  run_series(rpc_exec1, conn_ns,
             with_rpc([&](rpc_load_client& c, int) { return c.exec(ids[0], {"true"}); }),
             &rest_exec1);
  series& rpc_exec16 = start_series("gRPC, Exec true, 16 sandboxes");
  run_series(rpc_exec16, conn_ns,
             with_rpc([&](rpc_load_client& c, int i) { return c.exec(id_at(i), {"true"}); }),
             &rest_exec16);
  series& rpc_paced = start_series("gRPC, Exec true, 16 sandboxes, paced");
  run_series(rpc_paced, {16},
             with_rpc([&](rpc_load_client& c, int i) { return c.exec(id_at(i), {"true"}); }),
             &rest_paced, offered);
  series& rpc_cycles = start_series("gRPC, create + exec true + delete");
  run_series(rpc_cycles, conn_ns, with_rpc([](rpc_load_client& c, int) { return c.cycle(); }),
             &rest_cycles);
  series& rpc_mib = start_series("gRPC, Exec 1 MiB stdout, 16 sandboxes");
  run_series(rpc_mib, conn_ns, with_rpc([&](rpc_load_client& c, int i) {
               return c.exec(id_at(i), {"head", "-c", std::to_string(mib), "/dev/zero"}, mib);
             }),
             &rest_mib);
#endif

  print_ratios();
  double spawn16 = spawn.at[16].ops_per_s, rest16 = rest_exec16.at[16].ops_per_s;
  std::printf("\nsandboxd exec true, 16 connections across 16 sandboxes, as fast as they go: "
              "%.0f ops/s (target: >= 1000), p99 %.1f ms; posix_spawn at 16 threads: %.0f ops/s, "
              "p99 %.1f ms; ratio %.2fx\n",
              rest16, rest_exec16.at[16].p99_ms, spawn16, spawn.at[16].p99_ms,
              spawn16 > 0 ? rest16 / spawn16 : 0.0);
  std::printf("the same at %.0f ops/s offered: p99 %.1f ms (target: <= 20 ms), p50 %.1f ms, "
              "%.0f ops/s done; posix_spawn at that load: p99 %.1f ms\n",
              offered, rest_paced.at[16].p99_ms, rest_paced.at[16].p50_ms,
              rest_paced.at[16].ops_per_s, spawn_paced.at[16].p99_ms);
#if SANDBOX_LOAD_BENCH_GRPC
  std::printf("over gRPC: %.0f ops/s, p99 %.1f ms as fast as they go; at %.0f ops/s offered: "
              "p99 %.1f ms, p50 %.1f ms\n",
              rpc_exec16.at[16].ops_per_s, rpc_exec16.at[16].p99_ms, offered,
              rpc_paced.at[16].p99_ms, rpc_paced.at[16].p50_ms);
#endif
  long errors = 0;
  for (const auto& s : all_series)
    for (const auto& [n, f] : s.at)
      errors += f.errors;
  std::printf("errors in all: %ld; whole run %.1f s\n", errors,
              std::chrono::duration<double>(clock_type::now() - began).count());
  for (auto& b : remote)
    (void)b.stop(0ms);
  return 0;
}
