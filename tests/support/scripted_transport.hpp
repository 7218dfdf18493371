// SPDX-License-Identifier: MIT
// A transport whose answers a test scripts in advance: for the policy logic (retry, error
// mapping, state handling) that does not need a real sandbox.
#pragma once

#include <sandbox/concepts.hpp>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace sandbox::testing {

/// A process whose outcome is fixed when it is created.
class scripted_process {
public:
  explicit scripted_process(result<ExecResult> r) : r_(std::move(r)) {}
  [[nodiscard]] result<ExecResult> wait(std::optional<std::chrono::milliseconds>) noexcept {
    ++waits;
    return r_;
  }
  [[nodiscard]] std::optional<int> poll() noexcept {
    if (r_) return r_.assume_value().returncode;
    return std::nullopt;
  }
  [[nodiscard]] result<void> kill(int) noexcept { return success(); }
  int waits = 0;

private:
  result<ExecResult> r_;
};

/// Scripted answers per operation; each call pops the front of its queue, or gives the default.
class scripted_transport {
public:
  using process_type = scripted_process;

  static std::shared_ptr<scripted_transport> shared() {
    static auto t = std::make_shared<scripted_transport>();
    return t;
  }

  std::deque<result<SandboxInfo>> create_results, get_results, wait_results, stop_results;
  std::deque<result<ExecResult>> exec_results;
  std::deque<result<std::string>> read_results;
  std::vector<std::string> calls;       ///< "create", "get id", "stop id", …
  std::vector<std::string> request_ids; ///< request id of each create
  std::vector<std::vector<std::string>> exec_argvs;
  std::vector<SandboxOptions> created; ///< options of each create

  [[nodiscard]] result<SandboxInfo> create(const SandboxOptions& o, std::string_view rid) noexcept {
    record("create");
    created.push_back(o);
    request_ids.emplace_back(rid);
    return pop(create_results, SandboxInfo{"sbx-test", State::RUNNING, {}, {}});
  }
  [[nodiscard]] result<SandboxInfo> get(std::string_view id) noexcept {
    record("get " + std::string(id));
    return pop(get_results, SandboxInfo{std::string(id), State::RUNNING, {}, {}});
  }
  [[nodiscard]] result<std::vector<SandboxInfo>> list(const ListFilter&) noexcept {
    record("list");
    return std::vector<SandboxInfo>{};
  }
  [[nodiscard]] result<SandboxInfo> wait(std::string_view id, State s,
                                         std::chrono::milliseconds) noexcept {
    record("wait " + std::string(id) + " " + std::string(to_string(s)));
    return pop(wait_results, SandboxInfo{std::string(id), s, {}, {}});
  }
  [[nodiscard]] result<SandboxInfo> stop(std::string_view id, std::chrono::milliseconds,
                                         bool) noexcept {
    record("stop " + std::string(id));
    return pop(stop_results, SandboxInfo{std::string(id), State::TERMINATED, {}, {}});
  }
  [[nodiscard]] result<process_type> exec(std::string_view id, std::span<const std::string> argv,
                                          const ExecOptions&) noexcept {
    record("exec " + std::string(id));
    exec_argvs.emplace_back(argv.begin(), argv.end());
    ExecResult def;
    def.command.assign(argv.begin(), argv.end());
    return process_type(pop(exec_results, def));
  }
  [[nodiscard]] result<std::string> read_file(std::string_view, std::string_view) noexcept {
    record("read_file");
    return pop(read_results, std::string());
  }
  [[nodiscard]] result<void> write_file(std::string_view, std::string_view,
                                        std::string_view) noexcept {
    record("write_file");
    return success();
  }
  void release(std::string_view id) noexcept { record("release " + std::string(id)); }

private:
  void record(std::string s) {
    std::lock_guard lk(m_);
    calls.push_back(std::move(s));
  }
  template <class T>
  result<T> pop(std::deque<result<T>>& q, T def) {
    std::lock_guard lk(m_);
    if (q.empty()) return def;
    auto r = std::move(q.front());
    q.pop_front();
    return r;
  }
  std::mutex m_;
};

static_assert(transport<scripted_transport>);
static_assert(!supports_stdin<scripted_transport>);

} // namespace sandbox::testing
