// SPDX-License-Identifier: MIT
// The v1 SandboxService over any transport, in terms of wire messages: what every front end of a
// server shares (the REST mapping today), whatever decodes the requests and encodes the answers.
// It keeps what the transport does not: each sandbox's spec as requested, one sandbox per create
// request id, and how long stopped sandboxes stay answerable.
#pragma once

#include <sandbox/concepts.hpp>
#include <sandbox/detail/socket.hpp>
#include <sandbox/detail/text.hpp>
#include <sandbox/options.hpp>
#include <sandbox/result.hpp>
#include <sandbox/server/options.hpp>
#include <sandbox/transport/http/defaults.hpp>
#include <sandbox/transport/http/mapping.hpp>
#include <sandbox/transport/http/protobuf.hpp>
#include <sandbox/transport/http/status.hpp>
#include <sandbox/transport/http/wire.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <poll.h>

namespace sandbox::serve {

namespace wire = http::wire;

/// What ListSandboxes asks for, decoded from whichever front end.
struct list_request {
  std::vector<std::string> tags{};
  std::optional<State> state{};
  bool show_terminated = false;
  std::int32_t page_size = 0; ///< 0: the default page (100); at most 1000
  std::string page_token{};   ///< the last id of the previous page
};

/// The SandboxService's calls over `Transport`. Thread-safe; not copyable or movable.
template <transport Transport>
class service {
public:
  using process_type = typename Transport::process_type;

  service(std::shared_ptr<Transport> t, server_options o) : t_(std::move(t)), o_(std::move(o)) {}
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  [[nodiscard]] const server_options& options() const noexcept { return o_; }

  /// CreateSandbox. One sandbox per non-empty `request_id`: a repeated create waits for the
  /// first and answers with its sandbox.
  /// **Errors:** validation (a spec the transport cannot run), unsupported (a spec asking for what
  /// this server does not implement), and the transport's.
  [[nodiscard]] result<wire::Sandbox> create(const wire::Sandbox& sb,
                                             const std::string& request_id) {
    // sandboxId and status are output only: ignored, so that a sandbox read back can be sent
    // again (AIP-203), as the published API has it.
    wire::SandboxSpec spec = sb.spec.value_or(wire::SandboxSpec{});
    SANDBOX_TRY(opts, http::options_of(spec, o_.images, o_.native_keep_alive, o_.pull_images,
                                       o_.allow_egress));
    opts.resources.max_pids = o_.max_pids;
    if (!request_id.empty()) {
      SANDBOX_TRY(earlier, claim(request_id));
      if (earlier) return get(*earlier);
    }
    if (auto room = reserve(); !room) {
      if (!request_id.empty()) {
        std::lock_guard lk(m_);
        settle(request_id, {});
      }
      cv_.notify_all();
      return room.assume_error();
    }
    std::string asked = now_text();
    auto made = t_->create(opts, request_id);
    {
      std::lock_guard lk(m_);
      --creating_;
      if (!request_id.empty()) settle(request_id, made ? made.assume_value().id : std::string());
      if (made) {
        specs_.emplace(
            made.assume_value().id,
            created_sandbox{std::move(spec), request_id, std::move(asked), now_text(), {}});
        live_.insert(made.assume_value().id);
      }
    }
    cv_.notify_all();
    if (!made) return made.assume_error();
    return sandbox_of(made.assume_value());
  }

  /// GetSandbox. **Errors:** the transport's (not_found).
  [[nodiscard]] result<wire::Sandbox> get(const std::string& id) const {
    SANDBOX_TRY(i, t_->get(id));
    return sandbox_of(i);
  }

  /// ListSandboxes, ordered by id and paged.
  /// **Errors:** validation (a negative page size), and the transport's.
  [[nodiscard]] result<wire::ListSandboxesResponse> list(const list_request& q) const {
    if (q.page_size < 0) return fail(errc::validation, "pageSize: must not be negative");
    SANDBOX_TRYV(http::check_tags(q.tags, "tags"));
    std::size_t page =
        q.page_size == 0 ? 100 : static_cast<std::size_t>(std::min(q.page_size, 1000));
    ListFilter f;
    f.tags = q.tags;
    f.state = q.state;
    f.show_terminated = q.show_terminated;
    SANDBOX_TRY(all, t_->list(f));
    std::sort(all.begin(), all.end(),
              [](const SandboxInfo& a, const SandboxInfo& b) { return a.id < b.id; });
    wire::ListSandboxesResponse out;
    for (const auto& i : all) {
      if (!q.page_token.empty() && i.id <= q.page_token) continue;
      if (out.sandboxes.size() == page) {
        out.next_page_token = out.sandboxes.back().sandbox_id;
        break;
      }
      out.sandboxes.push_back(sandbox_of(i));
    }
    return out;
  }

  /// The longest grace period a DeleteSandbox may ask for (a request waits it out).
  static constexpr std::chrono::seconds max_grace{3600};

  /// DeleteSandbox: stops the sandbox (after `grace`) and keeps it answerable for a while.
  /// **Errors:** validation (a grace period below 0 or above max_grace), the transport's
  /// (not_found unless `allow_missing`).
  [[nodiscard]] result<wire::DeleteSandboxResponse>
  remove(const std::string& id, std::chrono::seconds grace, bool allow_missing) {
    if (grace < std::chrono::seconds(0) || grace > max_grace)
      return fail(errc::validation, "gracePeriodSeconds: " + std::to_string(grace.count()) +
                                        " is not within 0 to " + std::to_string(max_grace.count()));
    bool known = t_->get(id).has_value();
    SANDBOX_TRY(i, t_->stop(id, grace, allow_missing));
    wire::DeleteSandboxResponse out;
    if (!known) return out; // allow_missing: nothing to remember (nor to push others out)
    out.sandbox = sandbox_of(i);
    forget_later(id);
    return out;
  }

  /// PurgeSandboxes: stops the running sandboxes that carry every tag of `q.tags` (all of them
  /// with `purge_all`), or only counts them in a dry run. A sandbox that could not be stopped is
  /// listed as failed, and also as retryable when its error is transient.
  /// **Errors:** validation (neither or both of tags and purge_all), unsupported (a request id:
  /// the published API reserves it), and the transport's (listing).
  [[nodiscard]] result<wire::PurgeSandboxesResponse> purge(const wire::PurgeSandboxesRequest& q) {
    if (q.tags.empty() != q.purge_all)
      return fail(errc::validation, q.purge_all ? "tags: must be empty when purgeAll is set"
                                                : "tags: required unless purgeAll is set");
    if (!q.request_id.empty())
      return fail(errc::unsupported, "requestId: reserved by the API for a later version; not "
                                     "implemented by this server");
    SANDBOX_TRYV(http::check_tags(q.tags, "tags"));
    ListFilter f;
    f.tags = q.tags;
    SANDBOX_TRY(all, t_->list(f));
    wire::PurgeSandboxesResponse out;
    for (const auto& i : all) {
      if (is_terminal(i.state)) continue;
      if (!q.dry_run) {
        if (auto r = t_->stop(i.id, std::chrono::seconds(0), true); !r) {
          out.failed_sandbox_ids.push_back(i.id);
          if (r.assume_error().transient()) out.retryable_failed_sandbox_ids.push_back(i.id);
          continue;
        }
        forget_later(i.id);
      }
      ++out.purge_count;
    }
    return out;
  }

  /// Starts Exec's command; the front end waits for it (and kills it if its client goes away).
  /// `deadline` (the request's own, e.g. grpc-timeout) bounds the command's run time.
  /// **Errors:** validation (a body that disagrees with the path, a negative output cap),
  /// unsupported (a container other than the primary), and the transport's.
  [[nodiscard]] result<process_type> exec(const std::string& id, const wire::ExecRequest& x,
                                          std::optional<std::chrono::milliseconds> deadline) {
    return exec(id, x, deadline, [](ExecOptions&) noexcept {});
  }

  /// Exec, with `adjust(ExecOptions&)` applied to what the request asks for before the command
  /// starts (a streaming front end sets callbacks and stdin there).
  template <class Adjust>
  [[nodiscard]] result<process_type> exec(const std::string& id, const wire::ExecRequest& x,
                                          std::optional<std::chrono::milliseconds> deadline,
                                          Adjust&& adjust) {
    SANDBOX_TRYV(same_sandbox(id, x.sandbox_id));
    SANDBOX_TRYV(check_container(id, x.container));
    SANDBOX_TRY(eo, http::exec_options_of(x, o_.default_max_output_bytes));
    // What a client may ask for is bounded by what the server allows (truncation flags tell).
    eo.max_output_bytes = std::min(eo.max_output_bytes, o_.max_output_bytes_limit);
    if (deadline) eo.timeout = std::max(*deadline, std::chrono::milliseconds(1));
    adjust(eo);
    return t_->exec(id, x.command, eo);
  }

  /// StreamLogs' reads: the sandbox's log from `offset` on, waiting up to `wait` for more when
  /// there is none yet. **Errors:** unsupported (a transport that keeps no logs), and the
  /// transport's (not_found).
  [[nodiscard]] result<LogRead> logs(const std::string& id, std::uint64_t offset,
                                     std::chrono::milliseconds wait) {
    if constexpr (log_transport<Transport>)
      return t_->logs(id, offset, wait);
    else
      return fail(errc::unsupported, "StreamLogs: the sandboxes of this server keep no logs");
  }

  /// Waits for an Exec's command until it ends, in growing slices (10 ms to 250 ms: short
  /// commands end within the first, a long one costs few wake-ups), killing it once `gone()`
  /// says the caller went away. A slice also ends when `wake` (if not -1) is readable, where
  /// the process can be woken, so a caller's departure is seen at once: gRPC's cancellation, a
  /// REST client's socket (readable at its close). Readable while the caller is still there (a
  /// REST client that sent more, the server's own shutdown for reading at stop), it is dropped,
  /// and the slices alone remain.
  /// **Errors:** not_running (`gone`: `why`, the command killed), and those of the wait.
  template <class Gone>
  [[nodiscard]] static result<ExecResult> await(process_type& proc, Gone&& gone,
                                                std::string_view why, int wake = -1) {
    using std::chrono::milliseconds;
    for (milliseconds slice(10);; slice = std::min(slice * 2, milliseconds(250))) {
      // The result is the caller's alone: taken rather than copied where the handle can.
      auto r = [&] {
        if constexpr (wakeable_process<process_type>) {
          if (wake >= 0) return proc.take_or_wake(slice, wake);
        }
        if constexpr (taking_process<process_type>)
          return proc.take(slice);
        else
          return proc.wait(slice);
      }();
      if (r || !r.assume_error().is(errc::timeout)) return r;
      // Readable before `gone` is asked: a caller that leaves in between is not mistaken for
      // one that sent more (which would drop the descriptor and leave the slices to see it).
      const bool readable = wake >= 0 && sandbox::detail::poll_for(wake, POLLIN, milliseconds(0));
      if (gone()) return kill(proc, why);
      if (readable) wake = -1;
    }
  }

  /// Kills an Exec's command whose caller went away, and waits for it (at most 10 s).
  [[nodiscard]] static error kill(process_type& proc, std::string_view why) {
    (void)proc.kill(SIGKILL);
    (void)proc.wait(std::chrono::milliseconds(10'000));
    return error(errc::not_running, std::string(why) + "; command killed");
  }

  /// The error status of a failed Exec: the output of a command its timeout killed travels as
  /// an ExecResponse detail.
  [[nodiscard]] static wire::Status exec_failure(const error& e) {
    auto status = http::status_from_error(e);
    if (auto partial = e.exec_result)
      status.exec_response = http::response_of(ExecResult(*partial));
    return status;
  }

  /// WriteFile. **Errors:** validation (a body that disagrees with the path), unsupported (a
  /// container other than the primary), and the transport's.
  [[nodiscard]] result<void> write_file(const std::string& id, const wire::WriteFileRequest& w) {
    SANDBOX_TRYV(same_sandbox(id, w.sandbox_id));
    SANDBOX_TRYV(check_container(id, w.container));
    if (auto r = t_->write_file(id, w.path, w.content); !r)
      return with_path(r.assume_error(), w.path);
    return success();
  }

  /// ReadFile. **Errors:** validation (no path), unsupported (a container other than the
  /// primary), and the transport's.
  [[nodiscard]] result<wire::ReadFileResponse>
  read_file(const std::string& id, const std::string& path, std::string_view container) {
    if (path.empty()) return fail(errc::validation, "path: required");
    SANDBOX_TRYV(check_container(id, container));
    auto content = t_->read_file(id, path);
    if (!content) return with_path(content.assume_error(), path);
    wire::ReadFileResponse out;
    out.content = std::move(content).assume_value();
    return out;
  }

  /// The sandboxes created here that are still remembered (stopped ones are forgotten after
  /// `retained_terminal` others).
  [[nodiscard]] std::vector<std::string> created() const {
    std::lock_guard lk(m_);
    std::vector<std::string> ids;
    for (const auto& [id, made] : specs_)
      ids.push_back(id);
    return ids;
  }

  /// Stops every sandbox created here; returns how many could not be stopped.
  std::size_t stop_all(std::chrono::milliseconds grace) noexcept {
    std::size_t failed = 0;
    for (const auto& id : created())
      if (!t_->stop(id, grace, true)) ++failed;
    return failed;
  }

private:
  /// Takes `request_id` for this call, or returns the sandbox an earlier call with it made
  /// (waiting while that call is still creating it).
  [[nodiscard]] result<std::optional<std::string>> claim(const std::string& request_id) {
    std::unique_lock lk(m_);
    for (;;) {
      auto it = by_request_.find(request_id);
      if (it == by_request_.end()) break;
      if (!it->second.sandbox.empty()) return std::optional<std::string>(it->second.sandbox);
      cv_.wait(lk);
    }
    by_request_.emplace(request_id, claimed{{}, ++claims_});
    request_order_.emplace_back(request_id, claims_);
    return std::optional<std::string>();
  }

  /// Counts a create about to start against `max_live_sandboxes`. At the limit, the sandboxes
  /// that ended on their own since are asked for first (so that they do not count); still at it,
  /// the create is refused as the hosted service refuses one over quota.
  [[nodiscard]] result<void> reserve() {
    std::unique_lock lk(m_);
    if (live_.size() + creating_ >= o_.max_live_sandboxes) {
      std::vector<std::string> ids(live_.begin(), live_.end());
      lk.unlock();
      std::vector<std::string> ended;
      for (const auto& id : ids)
        if (auto i = t_->get(id); !i || is_terminal(i.assume_value().state)) ended.push_back(id);
      lk.lock();
      for (const auto& id : ended)
        live_.erase(id);
    }
    if (live_.size() + creating_ >= o_.max_live_sandboxes) {
      error e(errc::resource_exhausted,
              "this server runs at most " + std::to_string(o_.max_live_sandboxes) +
                  " sandboxes at once (server_options::max_live_sandboxes); stop one, or retry "
                  "later");
      auto info = std::make_shared<server_error_info>();
      info->retry_delay = std::chrono::seconds(1);
      e.server = std::move(info);
      return e;
    }
    ++creating_;
    return success();
  }

  /// Records what a claimed request id made ("" on failure: a retry may try again). Request
  /// ids are remembered for a while, not forever. Called with `m_` held.
  void settle(const std::string& request_id, std::string id) {
    if (id.empty()) {
      by_request_.erase(request_id);
    } else {
      by_request_[request_id].sandbox = std::move(id);
    }
    // The oldest claims go; a request id claimed again since keeps its newer claim.
    while (request_order_.size() > 10 * o_.retained_terminal + 1000) {
      const auto& [oldest, claim] = request_order_.front();
      if (auto b = by_request_.find(oldest); b != by_request_.end() && b->second.claim == claim)
        by_request_.erase(b);
      request_order_.pop_front();
    }
  }

  [[nodiscard]] static std::string now_text() {
    return http::detail::pb::timestamp_text(std::chrono::system_clock::now());
  }

  /// A file error names its file in the ErrorInfo metadata (`filepath`), as the hosted service
  /// does.
  [[nodiscard]] static error with_path(error e, const std::string& path) {
    switch (static_cast<errc>(e.code.value())) {
    case errc::file_not_found:
    case errc::file_is_directory:
    case errc::file_permission:
    case errc::file_too_large:
    case errc::file_io:
      if (e.code.category() != error_category()) break;
      {
        auto info = e.server ? std::make_shared<server_error_info>(*e.server)
                             : std::make_shared<server_error_info>();
        info->metadata.emplace_back("filepath", path);
        e.server = std::move(info);
      }
      break;
    default: break;
    }
    return e;
  }

  /// A path-bound field may be repeated in the body, but must then name the same sandbox.
  [[nodiscard]] static result<void> same_sandbox(std::string_view path_id,
                                                 std::string_view body_id) {
    if (body_id.empty() || body_id == path_id) return success();
    return fail(errc::validation, "sandboxId: the body names " +
                                      sandbox::detail::quoted_excerpt(body_id) + ", the path " +
                                      sandbox::detail::quoted_excerpt(path_id));
  }

  /// The one container of a request: `""` or the primary container's name. A sandbox this
  /// service does not know is left to the transport (not_found).
  [[nodiscard]] result<void> check_container(std::string_view id, std::string_view c) const {
    if (c.empty()) return success();
    std::lock_guard lk(m_);
    auto it = specs_.find(id);
    if (it == specs_.end() || it->second.spec.containers.empty()) return success();
    std::string_view primary = it->second.spec.containers.front().name;
    if (c != primary) // the hosted service's sandboxes may have several; ours have one
      return fail(errc::unsupported, "container: " + sandbox::detail::quoted_excerpt(c) +
                                         " is not a container of sandbox " + std::string(id) +
                                         ", whose one container is " +
                                         sandbox::detail::quoted_excerpt(primary) +
                                         "; more are not implemented by this server");
    return success();
  }

  [[nodiscard]] wire::Sandbox sandbox_of(const SandboxInfo& i) const {
    wire::Sandbox sb;
    sb.sandbox_id = i.id;
    sb.status = http::status_of(i);
    sb.status->runner_id = o_.runner_id;
    std::lock_guard lk(m_);
    if (auto it = specs_.find(i.id); it != specs_.end()) {
      sb.spec = it->second.spec;
      // The times as this service saw them: the request, the start, the first sight of the end.
      auto& made = it->second;
      if (is_terminal(i.state) && made.end_time.empty()) made.end_time = now_text();
      sb.status->create_time = made.create_time;
      sb.status->start_time = made.start_time;
      sb.status->end_time = made.end_time;
      // What the transport was given: the requirements, or the older `resources` as both.
      if (!sb.spec->containers.empty()) {
        const auto& c = sb.spec->containers.front();
        if (c.resource_requirements)
          sb.status->effective_resource_requirements = c.resource_requirements;
        else if (c.resources)
          sb.status->effective_resource_requirements =
              wire::ResourceRequirements{*c.resources, *c.resources};
      }
    } else if (!i.tags.empty())
      sb.spec = wire::SandboxSpec{.tags = i.tags};
    return sb;
  }

  /// Keeps a stopped sandbox answerable for a while, then releases it from the transport.
  void forget_later(const std::string& id) {
    std::vector<std::string> release;
    {
      std::lock_guard lk(m_);
      live_.erase(id);
      if (std::find(stopped_.begin(), stopped_.end(), id) != stopped_.end()) return;
      stopped_.push_back(id);
      while (stopped_.size() > o_.retained_terminal) {
        const std::string& gone = stopped_.front();
        release.push_back(gone);
        if (auto s = specs_.find(gone); s != specs_.end()) {
          // Its request id goes with it (unless claimed again since): a retry after that makes
          // a new sandbox rather than answering 404 for one long gone.
          if (auto b = by_request_.find(s->second.request_id);
              b != by_request_.end() && b->second.sandbox == gone)
            by_request_.erase(b);
          specs_.erase(s);
        }
        stopped_.pop_front();
      }
    }
    for (const auto& r : release)
      t_->release(r);
  }

  std::shared_ptr<Transport> t_;
  server_options o_;
  mutable std::mutex m_;
  std::condition_variable cv_;
  struct claimed {
    std::string sandbox; ///< "" while its create is pending
    std::uint64_t claim; ///< which claim of the request id this is
  };
  std::map<std::string, claimed, std::less<>> by_request_;          // by request id
  std::deque<std::pair<std::string, std::uint64_t>> request_order_; // claims, oldest first
  std::uint64_t claims_ = 0;
  struct created_sandbox {
    wire::SandboxSpec spec;
    std::string request_id;                        ///< the create's, "" without one
    std::string create_time, start_time, end_time; ///< RFC 3339; end_time "" until seen ended
  };
  mutable std::map<std::string, created_sandbox, std::less<>> specs_; // by sandbox id
  std::set<std::string, std::less<>> live_; // created here, not stopped, not known to have ended
  std::size_t creating_ = 0;                // creates under way
  std::deque<std::string> stopped_;
};

} // namespace sandbox::serve
