// SPDX-License-Identifier: MIT
// The sandboxd program as a user runs it (its path comes in $SANDBOXD): it refuses to start
// without a token, rejects bad tokens and bad requests with google.rpc.Status bodies, serves
// http_transport, logs one line per request without the token, and stops its sandboxes on
// SIGTERM.
#include <sandbox/http.hpp>
#include <sandbox/local.hpp>

#include <httplib.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

using namespace std::chrono_literals;
using sandbox::errc;

#include "../support/host.hpp"
#include "../support/skip.hpp"

using test_support::count_marked;
using test_support::slurp;

namespace {

/// A sandboxd child process: stdout on a pipe (its first line is the URL), stderr in memory.
class daemon_process {
public:
  daemon_process(std::vector<std::string> args, const std::string& token) {
    const char* bin = std::getenv("SANDBOXD");
    REQUIRE(bin);
    int out[2];
    REQUIRE(pipe2(out, O_CLOEXEC) == 0);
    out_ = out[0];
    err_ = memfd_create("sandboxd-stderr", MFD_CLOEXEC);
    REQUIRE(err_ >= 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err_, 2);
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e)
      if (std::string_view(*e).substr(0, 15) != "SANDBOXD_TOKEN=") env.emplace_back(*e);
    if (!token.empty()) env.push_back("SANDBOXD_TOKEN=" + token);
    args.insert(args.begin(), bin);
    std::vector<char*> argv, envp;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env)
      envp.push_back(e.data());
    envp.push_back(nullptr);
    REQUIRE(posix_spawn(&pid_, bin, &fa, nullptr, argv.data(), envp.data()) == 0);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
  }
  daemon_process(const daemon_process&) = delete;
  ~daemon_process() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(out_);
    close(err_);
  }

  /// The first line on stdout, or "" if none comes within 10 s.
  std::string first_line() {
    std::string line;
    auto end = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < end) {
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char c;
      if (read(out_, &c, 1) != 1) break;
      if (c == '\n') return line;
      line += c;
    }
    return "";
  }

  /// Exit status once the process has ended (within `limit`), or -1.
  int wait_exit(std::chrono::milliseconds limit = 10s) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }

  void signal(int sig) const { kill(pid_, sig); }

  std::string err() const {
    std::string s;
    char buf[4096];
    for (off_t off = 0;;) {
      ssize_t n = pread(err_, buf, sizeof buf, off);
      if (n <= 0) break;
      s.append(buf, static_cast<std::size_t>(n));
      off += n;
    }
    return s;
  }

private:
  pid_t pid_ = -1;
  int out_ = -1;
  int err_ = -1;
};

/// A running sandboxd on an ephemeral loopback port.
struct running_daemon {
  std::string token = "tok-" + sandbox::detail::random_id("", 24);
  daemon_process proc;
  std::string url;

  explicit running_daemon(std::vector<std::string> args = {})
      : proc(with_listen(std::move(args)), token), url(proc.first_line()) {}

  static std::vector<std::string> with_listen(std::vector<std::string> args) {
    args.insert(args.begin(), {"--listen", "127.0.0.1:0"});
    return args;
  }

  httplib::Result raw(const std::string& method, const std::string& path, const std::string& auth,
                      const std::string& body = "") {
    httplib::Client c(url);
    c.set_read_timeout(120, 0); // a DELETE waits out its grace period
    httplib::Headers h;
    if (!auth.empty()) h.emplace("Authorization", auth);
    if (method == "POST") return c.Post(path.c_str(), h, body, "application/json");
    if (method == "DELETE") return c.Delete(path.c_str(), h);
    return c.Get(path.c_str(), h);
  }

  std::shared_ptr<sandbox::http_transport> client() {
    return sandbox::http_transport::make({.base_url = url, .api_key = token}).value();
  }
};

} // namespace

TEST_CASE("sandboxd refuses to start without a token", "[sandboxd]") {
  daemon_process none({"--listen", "127.0.0.1:0"}, "");
  CHECK(none.wait_exit() == 2);
  CHECK(none.err().find("SANDBOXD_TOKEN") != std::string::npos);

  daemon_process missing({"--listen", "127.0.0.1:0", "--token-file", "/no/such/file"}, "");
  CHECK(missing.wait_exit() == 2);
  CHECK(missing.err().find("/no/such/file") != std::string::npos);

  char path[] = "/tmp/sandboxd-token-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, "\n", 1) == 1);
  close(fd);
  daemon_process blank({"--listen", "127.0.0.1:0", "--token-file", path}, "");
  CHECK(blank.wait_exit() == 2);
  CHECK(blank.err().find("no bearer token") != std::string::npos);
  unlink(path);

  daemon_process no_listen({}, "tok");
  CHECK(no_listen.wait_exit() == 2);
}

TEST_CASE("sandboxd answers 401 without the right token", "[sandboxd]") {
  running_daemon d;
  REQUIRE(d.url.substr(0, 17) == "http://127.0.0.1:");
  for (const std::string& auth : {std::string(), std::string("Bearer wrong"),
                                  "Bearer " + d.token + "x", "Basic " + d.token, d.token}) {
    INFO(auth);
    auto r = d.raw("GET", "/v1/sandboxes", auth);
    REQUIRE(r);
    CHECK(r->status == 401);
    auto st = sandbox::http::from_json<sandbox::http::wire::Status>(
        r->body, sandbox::http::decode_mode::lenient);
    REQUIRE(st);
    CHECK(st.value().code == 16);
    CHECK(r->body.find(d.token) == std::string::npos);
  }
  auto ok = d.raw("GET", "/v1/sandboxes", "Bearer " + d.token);
  REQUIRE(ok);
  CHECK(ok->status == 200);
  // The token travels with the client's requests; without it, the typed error.
  auto bad = sandbox::http_transport::make({.base_url = d.url, .api_key = "nope"}).value();
  auto r = bad->list({});
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::authentication));
}

TEST_CASE("sandboxd rejects bad requests naming the field", "[sandboxd]") {
  running_daemon d;
  std::string auth = "Bearer " + d.token;
  struct bad_case {
    std::string body, field;
  };
  for (const auto& [body, field] : std::vector<bad_case>{
           {R"({"spec":{"containers":[{"name":"main","image":"python:3.11","bogus":1}]}})",
            "spec.containers[0].bogus"},
           {R"({"spec":{"containers":"x"}})", "spec.containers"},
           {R"({"spec":{"containers":[{"name":"main","image":5}]}})", "spec.containers[0].image"},
           {R"({})", "spec"},
           {R"({"spec":{"containers":[{"name":"main","image":"python:3.11"}]},"extra":true})",
            "extra"},
           {"{not json", ""},
       }) {
    INFO(body);
    auto r = d.raw("POST", "/v1/sandboxes", auth, body);
    REQUIRE(r);
    CHECK(r->status == 400);
    auto st = sandbox::http::from_json<sandbox::http::wire::Status>(
        r->body, sandbox::http::decode_mode::lenient);
    REQUIRE(st);
    CHECK(st.value().code == 3);
    CHECK(st.value().message.find(field) != std::string::npos);
  }
  auto q = d.raw("GET", "/v1/sandboxes?pageSize=2&colour=red", auth);
  REQUIRE(q);
  CHECK(q->status == 400);
  CHECK(q->body.find("colour") != std::string::npos);
  auto route = d.raw("GET", "/v2/whatever", auth);
  REQUIRE(route);
  CHECK(route->status == 404);
  CHECK(route->body.find(R"("code":5)") != std::string::npos);
}

TEST_CASE("sandboxd answers what a single host lacks as the hosted service does", "[sandboxd]") {
  running_daemon d;
  std::string auth = "Bearer " + d.token;
  namespace wire = sandbox::http::wire;
  auto unimplemented = [&](const std::string& method, const std::string& path,
                           const std::string& body, const std::string& named) {
    INFO(method << " " << path << " " << body);
    auto r = d.raw(method, path, auth, body);
    REQUIRE(r);
    CHECK(r->status == 501);
    auto st = sandbox::http::from_json<wire::Status>(r->body, sandbox::http::decode_mode::strict);
    REQUIRE(st);
    CHECK(st.value().code == 12); // UNIMPLEMENTED
    CHECK(st.value().error_info ==
          wire::ErrorInfo{"CWSANDBOX_NOT_IMPLEMENTED", "cwsandbox.com", {}});
    CHECK_THAT(st.value().message, Catch::Contains(named));
  };
  const std::string main = R"({"name":"main","image":"python:3.11")";
  unimplemented("POST", "/v1/sandboxes",
                R"({"spec":{"containers":[)" + main + R"(}],"volumes":[{"name":"v"}]}})",
                "spec.volumes");
  unimplemented("POST", "/v1/sandboxes",
                R"({"spec":{"containers":[)" + main + R"(,"resources":{"gpu":{"count":"1"}}}]}})",
                "spec.containers[0].resources.gpu");
  unimplemented("POST", "/v1/sandboxes", R"({"spec":{"containers":[)" + main + "}," + main + "}]}}",
                "spec.containers");
  unimplemented("POST", "/v1/sandboxes:createFromTemplate", R"({"templateId":"t"})",
                "CreateSandboxFromTemplate");
  unimplemented("GET", "/v1/fileSystemSnapshots", "", "ListFileSystemSnapshots");
  unimplemented("GET", "/v1/fileSystemSnapshots/fss-1", "", "GetFileSystemSnapshot");
  unimplemented("DELETE", "/v1/fileSystemSnapshots/fss-1", "", "DeleteFileSystemSnapshot");
  unimplemented("POST", "/v1/sandboxes/sbx-1:snapshot", "{}", "CreateFileSystemSnapshot");
  unimplemented("GET", "/v1/sandboxes?runnerIds=r-1", "", "runnerIds");
  // Repeated fields travel as repeated query parameters: any value set is refused.
  unimplemented("GET", "/v1/sandboxes?volumeIds=&volumeIds=v-1", "", "volumeIds");
  unimplemented("DELETE", "/v1/sandboxes/sbx-1?snapshotVolumes=a&snapshotVolumes=b", "",
                "snapshotVolumes");
  unimplemented("POST", "/v1/sandboxes:purge", R"({"tags":["t"],"requestId":"r-1"})", "requestId");

  // Output-only fields of a sandbox sent back are ignored; a container other than the primary
  // is not implemented.
  auto made =
      d.raw("POST", "/v1/sandboxes", auth,
            R"({"sandboxId":"sbx-mine","status":{"state":"STATE_FAILED",)"
            R"("effectiveRuntimeClass":"x"},"sourceTemplateId":"t","spec":{"containers":[)" +
                main + "}]}}");
  REQUIRE(made);
  CHECK(made->status == 200);
  auto sb = sandbox::http::from_json<wire::Sandbox>(made->body, sandbox::http::decode_mode::strict);
  REQUIRE(sb);
  const std::string id = sb.value().sandbox_id;
  CHECK(id != "sbx-mine");
  unimplemented("POST", "/v1/sandboxes/" + id + ":exec",
                R"({"command":["true"],"container":"sidecar"})", "sidecar");
  auto ran = d.raw("POST", "/v1/sandboxes/" + id + ":exec", auth,
                   R"({"command":["true"],"container":"main"})");
  REQUIRE(ran);
  CHECK(ran->status == 200);
  // A sandbox that does not exist is not found, whatever container the request names.
  auto none = d.raw("POST", "/v1/sandboxes/sbx-none:exec", auth,
                    R"({"command":["true"],"container":"sidecar"})");
  REQUIRE(none);
  CHECK(none->status == 404);
  CHECK(d.client()->stop(id, 0s, false));
}

TEST_CASE("sandboxd holds against hostile requests", "[sandboxd]") {
  running_daemon d;
  std::string auth = "Bearer " + d.token;
  auto refused = [&](const std::string& method, const std::string& path, const std::string& body,
                     const std::string& named) {
    INFO(method << " " << path << " " << body.substr(0, 200));
    auto r = d.raw(method, path, auth, body);
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK_THAT(r->body, Catch::Contains(named));
    CHECK(r->body.size() < 2000);
  };
  auto spec = [](const std::string& image, const std::string& more = "") {
    return R"({"spec":{"containers":[{"name":"main","image":")" + image + R"("}])" + more + "}}";
  };
  // A client never picks a directory of the server's host as its root.
  refused("POST", "/v1/sandboxes", spec("/"), "not an image of this server");
  refused("POST", "/v1/sandboxes", spec(std::string(100000, 'z')), "100000 bytes");
  // Tags bound what every list and purge costs.
  std::string many = R"(,"tags":[)";
  for (int i = 0; i < 65; ++i)
    many += (i ? ",\"" : "\"") + std::to_string(i) + "\"";
  refused("POST", "/v1/sandboxes", spec("python:3.11", many + "]"), "more than 64");
  refused("POST", "/v1/sandboxes",
          spec("python:3.11", R"(,"tags":[")" + std::string(257, 't') + R"("])"), "spec.tags[0]");
  refused("POST", "/v1/sandboxes:purge", R"({"dryRun":true)" + many + "]}", "more than 64");
  // Names that are neither the JSON nor the proto name of a field.
  refused("GET", "/v1/sandboxes?pageSize_=1", "", "pageSize_");
  refused("GET", "/v1/sandboxes?page__size=1", "", "page__size");
  CHECK(d.raw("GET", "/v1/sandboxes?page_size=1", auth)->status == 200);
  // A grace period beyond the server's bound.
  refused("DELETE", "/v1/sandboxes/sbx-1?gracePeriodSeconds=2147483647", "", "gracePeriodSeconds");

  // A sandbox that ignores SIGTERM, stopped with a grace period: the server keeps answering.
  auto made = d.raw("POST", "/v1/sandboxes", auth,
                    R"({"spec":{"containers":[{"name":"main","image":"python:3.11",)"
                    R"("command":"sh","args":["-c","trap 'touch /tmp/termed' TERM; )"
                    R"(touch /tmp/trapped; while :; do sleep 1; done"]}]}})");
  REQUIRE(made);
  REQUIRE(made->status == 200);
  auto sb = sandbox::http::from_json<sandbox::http::wire::Sandbox>(
      made->body, sandbox::http::decode_mode::lenient);
  REQUIRE(sb);
  const std::string id = sb.value().sandbox_id;
  // A deadline far beyond the clock's range is no deadline, not one already passed.
  {
    httplib::Client c(d.url);
    auto r = c.Post(("/v1/sandboxes/" + id + ":exec").c_str(),
                    {{"Authorization", auth}, {"grpc-timeout", "99999999H"}},
                    R"({"command":["echo","ran"]})", "application/json");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body.find(R"("stdout":"cmFuCg==")") != std::string::npos); // "ran\n"
  }
  // A SIGTERM that came before the trap would end the command at once.
  REQUIRE(test_support::eventually([&] {
    auto f = d.raw("GET", "/v1/sandboxes/" + id + ":readFile?path=/tmp/trapped", auth);
    return f && f->status == 200;
  }));
  std::atomic<bool> deleted{false};
  std::atomic<int> delete_status{0};
  std::thread stopper([&] { // no Catch2 assertions off the main thread: it is not thread-safe
    auto r = d.raw("DELETE", "/v1/sandboxes/" + id + "?gracePeriodSeconds=15", auth);
    delete_status = r ? r->status : -1;
    deleted = true;
  });
  // Once the command has its SIGTERM, the grace period runs (15 s): meanwhile the sandbox and
  // the list are answered.
  CHECK(test_support::eventually([&] {
    auto f = d.raw("GET", "/v1/sandboxes/" + id + ":readFile?path=/tmp/termed", auth);
    return f && f->status == 200;
  }));
  auto got = d.raw("GET", "/v1/sandboxes/" + id, auth);
  auto listed = d.raw("GET", "/v1/sandboxes", auth);
  CHECK_FALSE(deleted);
  REQUIRE(got);
  CHECK(got->status == 200);
  CHECK(got->body.find("STATE_RUNNING") != std::string::npos); // answered within the grace
  REQUIRE(listed);
  CHECK(listed->status == 200);
  stopper.join();
  CHECK(deleted);
  CHECK(delete_status == 200);
}

TEST_CASE("sandboxd purges the sandboxes that carry the given tags", "[sandboxd]") {
  running_daemon d;
  std::string auth = "Bearer " + d.token;
  namespace wire = sandbox::http::wire;
  auto t = d.client();
  std::vector<sandbox::NoexceptRemoteSandbox> boxes;
  for (auto tags : {std::vector<std::string>{"batch", "a"}, {"batch"}, {"keep"}}) {
    auto b = sandbox::NoexceptRemoteSandbox::run({.tags = tags}, t);
    REQUIRE(b);
    boxes.push_back(std::move(b).value());
  }
  auto purge = [&](const std::string& body) {
    auto r = d.raw("POST", "/v1/sandboxes:purge", auth, body);
    REQUIRE(r);
    INFO(r->body);
    REQUIRE(r->status == 200);
    return sandbox::http::from_json<wire::PurgeSandboxesResponse>(
               r->body, sandbox::http::decode_mode::strict)
        .value();
  };
  CHECK(purge(R"({"tags":["batch"],"dryRun":true})").purge_count == 2);
  CHECK(boxes[0].state().value() == sandbox::State::RUNNING);
  CHECK(purge(R"({"tags":["batch","a"]})").purge_count == 1);
  CHECK(boxes[0].state().value() == sandbox::State::TERMINATED);
  CHECK(boxes[1].state().value() == sandbox::State::RUNNING);
  CHECK(purge(R"({"tags":["batch"]})").purge_count == 1);
  CHECK(boxes[1].state().value() == sandbox::State::TERMINATED);
  CHECK(boxes[2].state().value() == sandbox::State::RUNNING);
  for (const char* body : {"{}", R"({"tags":["keep"],"purgeAll":true})"}) {
    INFO(body);
    auto refused = d.raw("POST", "/v1/sandboxes:purge", auth, body);
    REQUIRE(refused);
    CHECK(refused->status == 400);
    CHECK(refused->body.find("tags") != std::string::npos);
  }
  CHECK(boxes[2].state().value() == sandbox::State::RUNNING);
  CHECK(purge(R"({"purgeAll":true})").purge_count == 1);
  CHECK(boxes[2].state().value() == sandbox::State::TERMINATED);
}

TEST_CASE("sandboxd takes the documented bodies that repeat the path's sandboxId", "[sandboxd]") {
  running_daemon d;
  std::string auth = "Bearer " + d.token;
  auto box = sandbox::NoexceptRemoteSandbox::run({}, d.client());
  REQUIRE(box);
  const std::string id = box.value().id();
  const std::string at = "/v1/sandboxes/" + id;
  // As the API reference shows them, byte for byte but for the id.
  auto ran = d.raw("POST", at + ":exec", auth,
                   R"({"sandboxId":")" + id +
                       R"(","command":["sh","-c","echo hi"],"env":{},"maxOutputBytes":0,)"
                       R"("container":""})");
  REQUIRE(ran);
  CHECK(ran->status == 200);
  CHECK(ran->body.find(R"("stdout":"aGkK")") != std::string::npos); // "hi\n"
  auto wrote = d.raw("POST", at + ":writeFile", auth,
                     R"({"sandboxId":")" + id + R"(","path":"/tmp/f","content":"eA=="})");
  REQUIRE(wrote);
  CHECK(wrote->status == 200);
  CHECK(box.value().read_file("/tmp/f").value() == "x");
  // A body naming another sandbox than its path is refused, naming both.
  for (const auto& [op, body] : std::vector<std::pair<std::string, std::string>>{
           {":exec", R"({"sandboxId":"sbx-other","command":["true"]})"},
           {":writeFile", R"({"sandboxId":"sbx-other","path":"/tmp/g","content":""})"}}) {
    INFO(op);
    auto r = d.raw("POST", at + op, auth, body);
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(r->body.find("sandboxId") != std::string::npos);
    CHECK(r->body.find("sbx-other") != std::string::npos);
    CHECK(r->body.find(id) != std::string::npos);
  }
  CHECK_FALSE(box.value().read_file("/tmp/g"));
  // The refusal quotes a value the client chose only in part: it never grows with it.
  auto huge = d.raw("POST", at + ":exec", auth,
                    R"({"sandboxId":")" + std::string(1 << 20, '\'') + R"(","command":["true"]})");
  REQUIRE(huge);
  CHECK(huge->status == 400);
  CHECK(huge->body.size() < 1000);
  CHECK(huge->body.find("1048576 bytes") != std::string::npos);
  CHECK(box.value().stop(2s));
}

TEST_CASE("sandboxd serves the HTTP transport and logs each request without the token",
          "[sandboxd]") {
  running_daemon d;
  {
    auto box = sandbox::NoexceptRemoteSandbox::run({}, d.client());
    REQUIRE(box);
    auto r = box.value().exec({"sh", "-c", "echo hello; exit 5"}).result();
    REQUIRE(r);
    CHECK(r.value().stdout_text == "hello\n");
    CHECK(r.value().returncode == 5);
    CHECK(box.value().stop(2s));
  }
  // The line is written after the response: wait for it rather than race it.
  std::string log;
  for (int i = 0; i < 200 && log.find("DELETE /v1/sandboxes/") == std::string::npos; ++i) {
    if (i) std::this_thread::sleep_for(10ms);
    log = d.proc.err();
  }
  CHECK(log.find("POST /v1/sandboxes 200") != std::string::npos);
  CHECK(log.find(":exec 200") != std::string::npos);
  CHECK(log.find("DELETE /v1/sandboxes/") != std::string::npos);
  CHECK(log.find(" ms\n") != std::string::npos);
  CHECK(log.find(d.token) == std::string::npos);
}

TEST_CASE("sandboxd reports how a main command ended: exitCode with COMPLETED, 0 included",
          "[sandboxd][lifecycle]") {
  running_daemon d;
  std::string auth = "Bearer " + d.token;
  // The GetSandbox body once the sandbox is terminal.
  auto final_body = [&](std::vector<std::string> command) {
    auto box = sandbox::NoexceptRemoteSandbox::run({.command = std::move(command)}, d.client());
    REQUIRE(box);
    auto w = box.value().wait_until_complete(60s);
    CHECK((w || w.error().is(errc::failed))); // terminal either way; the body tells the rest
    auto r = d.raw("GET", "/v1/sandboxes/" + box.value().id(), auth);
    REQUIRE(r);
    CHECK(r->status == 200);
    return r->body;
  };
  std::string zero = final_body({"sh", "-c", "exit 0"});
  CHECK_THAT(zero, Catch::Contains(R"("state":"STATE_COMPLETED")"));
  CHECK_THAT(zero, Catch::Contains(R"("exitCode":0)")); // present: 0 is not "unknown"
  std::string seven = final_body({"sh", "-c", "exit 7"});
  CHECK_THAT(seven, Catch::Contains(R"("state":"STATE_COMPLETED")"));
  CHECK_THAT(seven, Catch::Contains(R"("exitCode":7)"));
  std::string missing = final_body({"/no/such/program"});
  CHECK_THAT(missing, Catch::Contains(R"("state":"STATE_FAILED")"));
  CHECK_THAT(missing, Catch::Contains(R"("stateReason":"the main command was not found: )"));
  CHECK_THAT(missing, !Catch::Contains("exitCode"));
}

TEST_CASE("SIGTERM stops every sandbox sandboxd created, then it exits", "[sandboxd]") {
  running_daemon d;
  std::string marker = "SANDBOXD_TEST_MARK=" + sandbox::detail::random_id("", 16);
  auto eq = marker.find('=');
  // After the server is gone, the sandbox objects' own stop gives up within a short budget.
  using quick = sandbox::exponential_backoff<20, 150, 100, 300>;
  using box_t =
      sandbox::basic_sandbox<sandbox::basic_http_transport<quick>, quick, sandbox::return_errors>;
  auto t =
      sandbox::basic_http_transport<quick>::make({.base_url = d.url, .api_key = d.token}).value();
  auto a = box_t::run({}, t);
  auto b =
      box_t::run(sandbox::SandboxOptions{.command = {"sleep", "300"},
                                         .env = {{marker.substr(0, eq), marker.substr(eq + 1)}}},
                 t);
  REQUIRE(a);
  REQUIRE(b);
  auto p =
      a.value().exec({"sleep", "300"}, {.env = {{marker.substr(0, eq), marker.substr(eq + 1)}}});
  bool up = false;
  for (int i = 0; i < 500 && !up; ++i) {
    up = count_marked(marker) == 2;
    if (!up) std::this_thread::sleep_for(10ms);
  }
  REQUIRE(up);
  d.proc.signal(SIGTERM);
  CHECK(d.proc.wait_exit(20s) == 0);
  CHECK(count_marked(marker) == 0);
  // The exec in flight ended (killed with its sandbox) rather than hanging.
  auto r = p.result(5s);
  CHECK_FALSE((r && r.value().returncode == 0));
  CHECK(d.proc.err().find("received SIGTERM") != std::string::npos);
}

TEST_CASE("sandboxd sweeps, as it starts, what a predecessor killed with SIGKILL left",
          "[sandboxd][cgroups]") {
  std::vector<std::string> dirs;
  {
    running_daemon a;
    auto made = a.raw("POST", "/v1/sandboxes", "Bearer " + a.token,
                      R"({"spec":{"containers":[{"name":"main","image":"python:3.11",)"
                      R"("resourceRequirements":{"limits":{"memory":"64Mi"}}}]}})");
    REQUIRE(made);
    if (made->status == 501) {
      SANDBOX_SKIP("no memory cgroup controller on this host: " + made->body);
    }
    REQUIRE(made->status == 200);
    auto sb = sandbox::http::from_json<sandbox::http::wire::Sandbox>(
        made->body, sandbox::http::decode_mode::lenient);
    REQUIRE(sb);
    // The sandbox's cgroup, in whichever hierarchy holds it (v1 or v2).
    for (const char* pattern : {"/sys/fs/cgroup/*/sandbox/*/", "/sys/fs/cgroup/sandbox/*/"}) {
      glob_t g{};
      std::string p = pattern + sb.value().sandbox_id;
      if (::glob(p.c_str(), GLOB_ONLYDIR, nullptr, &g) == 0)
        for (std::size_t i = 0; i < g.gl_pathc; ++i)
          dirs.emplace_back(g.gl_pathv[i]);
      ::globfree(&g);
    }
    REQUIRE_FALSE(dirs.empty());
    a.proc.signal(SIGKILL);
    REQUIRE(a.proc.wait_exit(20s) == 128 + SIGKILL);
  }
  auto exists = [](const std::string& d) { return ::access(d.c_str(), F_OK) == 0; };
  for (const auto& d : dirs)
    CHECK(exists(d)); // left behind: its owner could not remove it
  running_daemon b;   // and no request to it
  REQUIRE_FALSE(b.url.empty());
  for (const auto& d : dirs)
    CHECK(test_support::eventually([&] { return !exists(d); }, 20s));
}

TEST_CASE("sandboxd refuses pids limits that cannot work", "[sandboxd]") {
  for (std::vector<std::string> args : {std::vector<std::string>{"--max-pids", "1"},
                                        {"--max-total-pids", "1"},
                                        {"--max-pids", "4194304"},
                                        {"--max-pids", "-3"}}) {
    args.insert(args.begin(), {"--listen", "127.0.0.1:0"});
    daemon_process bad(args, "tok");
    CHECK(bad.wait_exit() == 2);
    CHECK(bad.err().find("wants 0 (no limit) or a number from 2 to 4194303") != std::string::npos);
  }
  daemon_process uncounted(
      {"--listen", "127.0.0.1:0", "--max-pids", "0", "--max-total-pids", "100"}, "tok");
  CHECK(uncounted.wait_exit() == 2);
  CHECK(uncounted.err().find("--max-pids 0") != std::string::npos);
}

TEST_CASE("sandboxd limits each sandbox's pids and all of them together", "[sandboxd][cgroups]") {
  namespace cg = sandbox::local::detail::cgroups;
  if (auto ok = sandbox::local_transport::check_limits({.max_pids = 64}); !ok) {
    SANDBOX_SKIP("this host cannot limit pids: " + ok.error().message);
  }
  // A sandbox's cgroup for pids, whoever owns it ("" when it has none): its parent is the
  // directory of all the sandboxes of that sandboxd.
  auto pids_dir = [](const std::string& id) {
    const cg::layout& l = cg::host_layout();
    std::string pattern = (l.version == 1 ? l.v1_mounts[1] : l.v2_root) + "/sandbox/*/" + id;
    std::string found;
    glob_t g{};
    if (::glob(pattern.c_str(), GLOB_ONLYDIR, nullptr, &g) == 0 && g.gl_pathc == 1)
      found = g.gl_pathv[0];
    ::globfree(&g);
    return found;
  };
  auto text_of = [](const std::string& file) { return test_support::slurp(file); };
  std::uint64_t pid_max = 0;
  std::ifstream("/proc/sys/kernel/pid_max") >> pid_max;
  struct limit_case {
    std::vector<std::string> args;
    std::string each, all; // pids.max of a sandbox and of all; "" for no cgroup
  };
  for (const auto& [args, each, all] :
       {limit_case{{}, "2048\n", std::to_string(pid_max / 2) + "\n"},
        limit_case{{"--max-pids", "64", "--max-total-pids", "100"}, "64\n", "100\n"},
        limit_case{{"--max-pids", "0"}, "", ""}}) {
    running_daemon d(args);
    REQUIRE_FALSE(d.url.empty());
    auto box = sandbox::NoexceptRemoteSandbox::run({}, d.client());
    REQUIRE(box);
    std::string dir = pids_dir(box.value().id());
    if (each.empty()) {
      CHECK(dir.empty());
      continue;
    }
    REQUIRE_FALSE(dir.empty());
    CHECK(text_of(dir + "/pids.max") == each);
    CHECK(text_of(dir.substr(0, dir.rfind('/')) + "/pids.max") == all);
  }

  // Enforced: with 40 for all, one sandbox's 30 sleeps leave another no room for 30 more.
  running_daemon d({"--max-pids", "64", "--max-total-pids", "40"});
  REQUIRE_FALSE(d.url.empty());
  auto a = sandbox::NoexceptRemoteSandbox::run({}, d.client());
  auto b = sandbox::NoexceptRemoteSandbox::run({}, d.client());
  REQUIRE(a);
  REQUIRE(b);
  const std::string sleeps = "n=0; while [ $n -lt 30 ]; do sleep 600 & n=$((n+1)); done; echo $n";
  auto first = a.value().exec({"sh", "-c", sleeps}).result();
  REQUIRE(first);
  CHECK(first.value().stdout_text == "30\n");
  // The exec's own shell may not even start (a failed exec); if it does, it cannot start 30.
  auto second = b.value().exec({"sh", "-c", "(" + sleeps + ") 2>/dev/null"}).result();
  CHECK((!second || second.value().stdout_text != "30\n"));
  std::string all = pids_dir(a.value().id());
  REQUIRE_FALSE(all.empty());
  all = all.substr(0, all.rfind('/'));
  // A fork was refused ("max N" counts it: in the forking cgroup on v1, the limiting one on
  // v2), and not by the sandbox's own limit of 64, which it stayed under.
  const std::string mine = pids_dir(b.value().id());
  auto refused = [&](const std::string& dir) {
    return text_of(dir + "/pids.events").find("max 0") == std::string::npos;
  };
  CHECK((refused(all) || refused(mine)));
  CHECK(std::stoul(text_of(mine + "/pids.current")) < 64);
  CHECK(a.value().stop());
  CHECK(b.value().stop());
}

TEST_CASE("sandboxd refuses a sandbox that the others leave no room for, and makes it once they "
          "end",
          "[sandboxd][cgroups]") {
  if (auto ok = sandbox::local_transport::check_limits({.max_pids = 64}); !ok) {
    SANDBOX_SKIP("this host cannot limit pids: " + ok.error().message);
  }
  running_daemon d({"--max-pids", "64", "--max-total-pids", "24"});
  REQUIRE_FALSE(d.url.empty());
  using once =
      sandbox::basic_sandbox<sandbox::http_transport, sandbox::no_retry, sandbox::return_errors>;
  auto a = once::run({}, d.client());
  REQUIRE(a);
  // Sleeps until a fork is refused: all 24 taken, then one given back as the shell ends.
  auto fill = a.value()
                  .exec({"sh", "-c",
                         "n=0; while [ $n -lt 60 ]; do sleep 600 & n=$((n+1)); done 2>/dev/null"})
                  .result();
  REQUIRE(fill);
  auto b = once::run({}, d.client());
  REQUIRE_FALSE(b);
  CHECK(b.error().is(sandbox::errc::resource_exhausted));
  CHECK(b.error().message.find("may run 24") != std::string::npos);
  CHECK(a.value().stop());
  // Its processes are counted until the kernel has freed them, which may be a moment after.
  auto c = once::run({}, d.client());
  for (int i = 0; i < 100 && !c && c.error().is(sandbox::errc::resource_exhausted); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    c = once::run({}, d.client());
  }
  REQUIRE(c);
  auto r = c.value().exec({"echo", "room"}).result();
  REQUIRE(r);
  CHECK(r.value().stdout_text == "room\n");
}

TEST_CASE("sandboxd reads no file larger than it would take in a request, sparse ones included",
          "[sandboxd]") {
  running_daemon d({"--max-request-bytes", "1000000"});
  REQUIRE_FALSE(d.url.empty());
  auto box = sandbox::NoexceptRemoteSandbox::run({}, d.client());
  REQUIRE(box);
  auto made =
      box.value()
          .exec({"sh", "-c", "head -c 1000000 /dev/zero > /tmp/fits && truncate -s 2G /tmp/sparse"})
          .result();
  REQUIRE(made);
  REQUIRE(made.value().returncode == 0);
  auto fits = box.value().read_file("/tmp/fits");
  REQUIRE(fits);
  CHECK(fits.value().size() == 1000000);
  auto sparse = box.value().read_file("/tmp/sparse");
  REQUIRE_FALSE(sparse);
  CHECK(sparse.error().is(sandbox::errc::file_too_large));
  CHECK(sparse.error().message.find("1000000") != std::string::npos);
}
