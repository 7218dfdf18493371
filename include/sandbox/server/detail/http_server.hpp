// SPDX-License-Identifier: MIT
// cpp-httplib's server, with its connections handled here instead of one pool thread per open
// connection: a connection with no request under way waits in one epoll set, not on a thread, so
// idle clients cannot starve the others; a request's line and headers must arrive within a
// deadline (slowloris), each later read and write within its own timeout (a client that stalls
// its body or never reads its response is cut off); open connections are bounded, the longest
// idle going first. cpp-httplib still parses and routes each request.
#pragma once

#include <sandbox/detail/socket.hpp>
#include <sandbox/transport/http/detail/fd_stream.hpp>

#include <httplib.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

namespace sandbox::serve::detail {

using namespace std::chrono_literals;

/// What a connection may take of the server.
struct connection_limits {
  std::size_t threads = 64;                             ///< requests served at once
  std::size_t max_connections = 4096;                   ///< open connections, idle ones included
  std::chrono::milliseconds header_timeout = 10s;       ///< request line and headers, in all
  std::chrono::milliseconds read_timeout = 30s;         ///< each wait for more of a body
  std::chrono::milliseconds write_timeout = 30s;        ///< each wait for the client to take more
  std::chrono::milliseconds idle_timeout = 5s;          ///< between requests (keep-alive)
  std::size_t max_header_bytes = std::size_t{64} << 10; ///< request line and headers, in all
  /// Sent (best effort, without waiting) to a connection refused because all others are busy.
  std::string refusal;
};

using clock = std::chrono::steady_clock;

/// One client connection as cpp-httplib's `Stream`. A request's line and headers (its head) are
/// gathered here without waiting (`fill`, from the idle set's thread), so that a worker starts
/// on a request only once its head is whole; a worker then reads the body from the buffer and the
/// socket, each wait up to the read timeout, and writes with each wait up to the write timeout.
/// Any timeout or error breaks the connection for good.
class connection final : public http::detail::fd_stream {
public:
  connection(int fd, const connection_limits& l) noexcept : fd_stream(fd), l_(l) {}
  ~connection() override {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
  }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  enum class filled { head, more, closed, too_large };

  /// Takes what the client has sent, without waiting. `head` once a whole request head is
  /// buffered; `too_large` when the buffered part of one exceeds the limit.
  [[nodiscard]] filled fill() noexcept {
    for (;;) {
      if (has_head()) return filled::head;
      if (len_ - off_ >= l_.max_header_bytes) return filled::too_large;
      if (!make_room()) return filled::closed;
      ssize_t n = ::recv(fd_, buf_.get() + len_, cap_ - len_, MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return filled::more;
      if (n <= 0) return filled::closed;
      took(static_cast<std::size_t>(n));
    }
  }

  /// A request was served: whatever of the next one is buffered has a head timeout of its own.
  void request_done() noexcept { head_deadline_ = clock::now() + l_.header_timeout; }

  /// When the connection must have sent a whole head, or have sent something at all.
  [[nodiscard]] clock::time_point deadline() const noexcept {
    return buffered() ? head_deadline_ : clock::now() + l_.idle_timeout;
  }

  [[nodiscard]] bool broken() const noexcept { return broken_; }
  [[nodiscard]] bool buffered() const noexcept { return off_ < len_; }
  /// Whether the socket has something more (or the client closed) within `wait`.
  [[nodiscard]] bool socket_readable_within(std::chrono::milliseconds wait) const noexcept {
    return poll_for(POLLIN, wait);
  }

  /// Gives the buffer back while nothing is buffered (an idle connection holds no memory).
  void trim() noexcept {
    if (buffered()) return;
    buf_.reset();
    cap_ = off_ = len_ = scanned_ = 0;
  }

  bool is_readable() const override { return buffered() || poll_for(POLLIN, l_.read_timeout); }
  bool is_writable() const override { return poll_for(POLLOUT, l_.write_timeout); }

  ssize_t read(char* ptr, std::size_t size) override {
    if (broken_) return -1;
    if (!buffered()) {
      off_ = len_ = scanned_ = 0;
      if (size >= 16384) return receive(ptr, size); // most of a body: no copy
      if (!make_room()) return fail();
      ssize_t n = receive(buf_.get(), cap_);
      if (n <= 0) return n;
      took(static_cast<std::size_t>(n));
    }
    std::size_t n = std::min(size, len_ - off_);
    std::memcpy(ptr, buf_.get() + off_, n);
    off_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, std::size_t size) override {
    if (broken_) return -1;
    ssize_t n = sandbox::detail::send_within(fd_, ptr, size, l_.write_timeout);
    return n < 0 ? fail() : n;
  }

private:
  /// A head ends with an empty line ("\r\n" after a line's "\n"), as cpp-httplib reads it.
  /// Each byte is looked at once, however slowly the head trickles in.
  [[nodiscard]] bool has_head() noexcept {
    std::string_view b(buf_.get() + off_, len_ - off_);
    if (b.starts_with("\r\n")) return true;
    std::size_t from = scanned_ > off_ + 2 ? scanned_ - off_ - 2 : 0;
    auto at = b.find("\n\r\n", from);
    scanned_ = at == std::string_view::npos ? len_ : off_ + at; // a later head is looked for anew
    return at != std::string_view::npos;
  }

  /// Space after the buffered bytes (allocated on first use: an idle connection has none).
  [[nodiscard]] bool make_room() noexcept {
    if (!buf_) {
      cap_ = std::max<std::size_t>(l_.max_header_bytes, 16384) + 1;
      buf_.reset(new (std::nothrow) char[cap_]);
      if (!buf_) return false;
    }
    if (len_ == cap_ && off_ > 0) {
      std::memmove(buf_.get(), buf_.get() + off_, len_ - off_);
      len_ -= off_;
      scanned_ = scanned_ > off_ ? scanned_ - off_ : 0;
      off_ = 0;
    }
    return len_ < cap_;
  }

  void took(std::size_t n) noexcept {
    if (!buffered()) head_deadline_ = clock::now() + l_.header_timeout; // a new head begins
    len_ += n;
  }

  ssize_t receive(char* into, std::size_t size) {
    ssize_t n = sandbox::detail::recv_within(fd_, into, size, l_.read_timeout);
    return n < 0 ? fail() : n;
  }

  ssize_t fail() noexcept {
    broken_ = true;
    return -1;
  }

  [[nodiscard]] bool poll_for(short events, std::chrono::milliseconds wait) const noexcept {
    return sandbox::detail::poll_for(fd_, events, wait);
  }

  const connection_limits& l_;
  std::unique_ptr<char[]> buf_;
  std::size_t cap_ = 0, off_ = 0, len_ = 0;
  std::size_t scanned_ = 0; ///< the head was looked for up to here
  bool broken_ = false;
  clock::time_point head_deadline_{};
};

/// The connections with no request under way, in one epoll set: each goes back to the workers
/// once its client has sent a whole request head, or is closed when its deadline passes (idle
/// too long, or a head too slow) or when room is needed for a new connection.
class idle_set {
public:
  explicit idle_set(std::function<void(std::shared_ptr<connection>)> ready)
      : ready_(std::move(ready)) {
    ep_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 0; // the wake-up; connections count from 1
    ok_ = ep_ >= 0 && wake_ >= 0 && ::epoll_ctl(ep_, EPOLL_CTL_ADD, wake_, &ev) == 0;
    if (ok_) thread_ = std::thread([this] { loop(); });
  }
  ~idle_set() { stop(); }
  idle_set(const idle_set&) = delete;
  idle_set& operator=(const idle_set&) = delete;

  /// Waits for `c`'s next request until `deadline`. A set that cannot (stopped, no epoll)
  /// closes it.
  void add(std::shared_ptr<connection> c, clock::time_point deadline) {
    std::lock_guard lk(m_);
    if (!ok_ || stopped_) return;
    std::uint64_t id = ++ids_;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
    ev.data.u64 = id;
    if (::epoll_ctl(ep_, EPOLL_CTL_ADD, c->socket(), &ev) != 0) return;
    c->trim();
    bool nearest = by_deadline_.empty() || deadline < by_deadline_.begin()->first;
    by_id_.emplace(id, entry{std::move(c), deadline});
    by_deadline_.emplace(deadline, id);
    if (nearest && std::this_thread::get_id() != thread_.get_id()) wake(); // to wait less
  }

  /// Closes the connection that has waited here the longest (ids grow with each wait); false
  /// when there is none.
  bool evict_oldest() {
    std::lock_guard lk(m_);
    if (by_id_.empty()) return false;
    drop(by_id_.begin()->first);
    return true;
  }

  /// Closes every waiting connection; later ones are closed as they come.
  void stop() {
    {
      std::lock_guard lk(m_);
      if (stopped_) return;
      stopped_ = true;
      wake();
    }
    if (thread_.joinable()) thread_.join();
    std::lock_guard lk(m_);
    by_id_.clear();
    by_deadline_.clear();
    if (ep_ >= 0) ::close(ep_);
    if (wake_ >= 0) ::close(wake_);
    ep_ = wake_ = -1;
  }

private:
  struct entry {
    std::shared_ptr<connection> conn;
    clock::time_point deadline;
  };

  void wake() noexcept {
    std::uint64_t one = 1;
    (void)!::write(wake_, &one, sizeof one);
  }

  /// Takes entry `id` out of the set. Called with `m_` held.
  std::shared_ptr<connection> take(std::uint64_t id) {
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return nullptr; // an event for an entry already gone
    auto c = std::move(it->second.conn);
    ::epoll_ctl(ep_, EPOLL_CTL_DEL, c->socket(), nullptr);
    by_deadline_.erase({it->second.deadline, id});
    by_id_.erase(it);
    return c;
  }
  void drop(std::uint64_t id) { (void)take(id); }

  void loop() {
    std::array<epoll_event, 64> evs;
    std::vector<std::shared_ptr<connection>> ready;
    for (;;) {
      int timeout = -1;
      {
        std::lock_guard lk(m_);
        if (stopped_) return;
        if (!by_deadline_.empty()) {
          auto left = std::chrono::ceil<std::chrono::milliseconds>(by_deadline_.begin()->first -
                                                                   clock::now());
          timeout = static_cast<int>(std::max(left, 0ms).count());
        }
      }
      int n = ::epoll_wait(ep_, evs.data(), static_cast<int>(evs.size()), timeout);
      {
        std::lock_guard lk(m_);
        if (stopped_) return;
        for (int i = 0; i < n; ++i) {
          if (evs[static_cast<std::size_t>(i)].data.u64 == 0) {
            std::uint64_t v;
            (void)!::read(wake_, &v, sizeof v);
          } else if (auto c = take(evs[static_cast<std::size_t>(i)].data.u64)) {
            ready.push_back(std::move(c));
          }
        }
        auto now = clock::now();
        while (!by_deadline_.empty() && by_deadline_.begin()->first <= now)
          drop(by_deadline_.begin()->second);
      }
      // Heads are gathered here, so that no worker waits on a client that trickles one.
      for (auto& c : ready) {
        switch (c->fill()) {
        case connection::filled::head: ready_(std::move(c)); break;
        case connection::filled::more: {
          auto until = c->deadline();
          add(std::move(c), until);
          break;
        }
        case connection::filled::closed:
        case connection::filled::too_large: break; // closed as `c` goes
        }
      }
      ready.clear();
    }
  }

  std::function<void(std::shared_ptr<connection>)> ready_;
  std::mutex m_;
  int ep_ = -1, wake_ = -1;
  bool ok_ = false, stopped_ = false;
  std::uint64_t ids_ = 0;
  std::map<std::uint64_t, entry> by_id_;
  std::set<std::pair<clock::time_point, std::uint64_t>> by_deadline_;
  std::thread thread_;
};

/// cpp-httplib's server with the connection handling above. Configure with `limits()` before
/// listening.
class http_server : public httplib::Server {
public:
  http_server() {
    new_task_queue = [this] { return new front_door(*this); };
    // A response that says `Connection: close` (one sent before its request's body was read,
    // say) ends the connection: what follows on it is not a request.
    set_post_routing_handler([](const httplib::Request&, httplib::Response& res) {
      for (auto [it, end] = res.headers.equal_range("Connection"); it != end; ++it)
        if (it->second == "close") close_after_ = true;
    });
  }

  [[nodiscard]] connection_limits& limits() noexcept { return l_; }

  /// Debian's library listens with a backlog of 5, which drops connections when many clients
  /// connect at once.
  [[nodiscard]] bool raise_backlog(int n) noexcept { return ::listen(svr_sock_, n) == 0; }

  /// The descriptor of the connection whose request this thread is handling (-1 outside one).
  [[nodiscard]] static int current_socket() noexcept { return current_; }

  /// Open connections (idle ones included).
  [[nodiscard]] std::size_t open_connections() const noexcept { return open_.load(); }

private:
  /// What cpp-httplib's accept loop hands each new socket to; runs it at once on that thread
  /// (nothing here waits) and owns the workers and the idle set for one run of the server.
  class front_door final : public httplib::TaskQueue {
  public:
    explicit front_door(http_server& s)
        : s_(s), workers_(std::max<std::size_t>(s.l_.threads, 1)),
          idle_([this](std::shared_ptr<connection> c) { serve_later(std::move(c)); }) {
      s_.door_ = this;
      s_.stopping_ = false;
      // Past the descriptor limit accept fails and nothing is evicted: stay below it, leaving
      // some for the sandboxes and files the requests need.
      s_.max_open_ = s_.l_.max_connections;
      rlimit files{};
      if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY)
        s_.max_open_ = std::min<std::size_t>(
            s_.max_open_, files.rlim_cur > 256 ? files.rlim_cur - 128 : files.rlim_cur / 2);
    }
    void enqueue(std::function<void()> fn) override { fn(); } // -> process_and_close_socket
    void shutdown() override {
      s_.stopping_ = true;
      idle_.stop();
      {
        // Requests in progress finish (a response being written still goes out); connections
        // waiting for more of a request stop waiting.
        std::lock_guard lk(s_.active_m_);
        for (int fd : s_.active_)
          ::shutdown(fd, SHUT_RD);
      }
      workers_.shutdown();
      s_.door_ = nullptr;
    }

    void serve_later(std::shared_ptr<connection> c) {
      workers_.enqueue([this, c = std::move(c)]() mutable { s_.serve(std::move(c), idle_); });
    }
    idle_set& idle() noexcept { return idle_; }

  private:
    http_server& s_;
    httplib::ThreadPool workers_;
    idle_set idle_;
  };

  // cpp-httplib's per-socket entry point, called by the accept loop through front_door.
  bool process_and_close_socket(socket_t sock) override {
    ::fcntl(sock, F_SETFL, ::fcntl(sock, F_GETFL) | O_NONBLOCK);
    if (++open_ > max_open_ && !door_->idle().evict_oldest()) {
      // Every connection is busy: say so rather than queue without bound.
      (void)!::send(sock, l_.refusal.data(), l_.refusal.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      ::shutdown(sock, SHUT_RDWR);
      ::close(sock);
      --open_;
      return false;
    }
    auto c = std::shared_ptr<connection>(new connection(sock, l_), [this](connection* p) {
      delete p;
      --open_;
    });
    // Most clients send at once; the idle set hands the connection to a worker when they do.
    auto until = c->deadline();
    door_->idle().add(std::move(c), until);
    return true;
  }

  /// Serves requests on `c` for as long as they follow each other closely, then parks it.
  void serve(std::shared_ptr<connection> c, idle_set& idle) {
    const int fd = c->socket();
    {
      std::lock_guard lk(active_m_);
      if (stopping_) return;
      active_.insert(fd);
    }
    current_ = fd;
    bool keep = false;
    for (bool next = true; next;) {
      bool closed = false;
      close_after_ = false;
      bool ok = process_request(*c, stopping_, closed, nullptr);
      if (!ok || closed || close_after_ || c->broken() || stopping_) break;
      c->request_done();
      // A client that keeps its connection busy sends its next request within moments; waiting
      // a little for it here saves a round through the idle set.
      // A part of a head waits in the idle set, where its deadline applies.
      for (next = false;;) {
        auto f = c->fill();
        if (f == connection::filled::head) next = true;
        if (f != connection::filled::more) break;
        if (c->buffered() || !c->socket_readable_within(2ms)) {
          keep = true;
          break;
        }
      }
    }
    current_ = -1;
    {
      std::lock_guard lk(active_m_);
      active_.erase(fd);
    }
    if (keep) {
      auto until = c->deadline();
      idle.add(std::move(c), until);
    }
  }

  connection_limits l_;
  front_door* door_ = nullptr;
  std::atomic<std::size_t> open_{0};
  std::size_t max_open_ = 0; ///< max_connections, within the descriptor limit
  std::atomic<bool> stopping_{false};
  std::mutex active_m_;
  std::set<int> active_;
  static inline thread_local int current_ = -1;
  static inline thread_local bool close_after_ = false;
};

} // namespace sandbox::serve::detail
