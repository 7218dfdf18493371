// SPDX-License-Identifier: MIT
// A lock another thread holds at fork(), or an object it is making, is whole and usable in the
// child.
#include <sandbox/detail/fork_safe.hpp>

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

namespace {

using sandbox::detail::fork_safe_mutex;
using sandbox::detail::process_static;

/// Forks; the child exits with what `child` returns (0 on success). Returns the child's wait
/// status.
template <class F>
int in_child(F child) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(child());
  int ws = -1;
  if (pid > 0) ::waitpid(pid, &ws, 0);
  return ws;
}

/// A thread that runs `work` and then lives on until `end` is set: one that had ended (not
/// joined) when the process forked would be a leak to a thread sanitizer in the child.
template <class F>
std::thread thread_until(std::atomic<bool>& end, F work) {
  return std::thread([&end, work] {
    work();
    while (!end)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
}

/// Whether `m` can be taken within two seconds.
bool takes(fork_safe_mutex& m) {
  for (int i = 0; i < 200; ++i) {
    if (m.try_lock()) {
      m.unlock();
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

} // namespace

TEST_CASE("a fork_safe_mutex another thread holds is free in the forked child, its data whole",
          "[unit][fork]") {
  static fork_safe_mutex m;
  static int guarded = 0;
  std::atomic<bool> held{false}, end{false};
  std::thread holder = thread_until(end, [&] {
    std::lock_guard g(m);
    held = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    guarded = 1; // written last, as a half-done update would be
  });
  while (!held)
    std::this_thread::yield();
  int ws = in_child([] {
    if (!takes(m)) return 1;
    return guarded == 1 ? 0 : 2;
  });
  end = true;
  holder.join();
  CHECK(WIFEXITED(ws));
  CHECK(WEXITSTATUS(ws) == 0);
  CHECK(takes(m));
}

TEST_CASE("a fork waits for a thread that holds several fork_safe_mutexes, however many exist",
          "[unit][fork]") {
  std::vector<std::unique_ptr<fork_safe_mutex>> all; // more than a sanitizer lets one thread hold
  for (int i = 0; i < 100; ++i)
    all.push_back(std::make_unique<fork_safe_mutex>());
  std::atomic<bool> first{false}, end{false};
  std::thread nester = thread_until(end, [&] {
    std::lock_guard a(*all[7]);
    first = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::lock_guard b(*all[3]); // taken while the fork waits
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  });
  while (!first)
    std::this_thread::yield();
  int ws = in_child([&] {
    for (auto& m : all)
      if (!takes(*m)) return 1;
    return 0;
  });
  end = true;
  nester.join();
  CHECK(WIFEXITED(ws));
  CHECK(WEXITSTATUS(ws) == 0);
  for (auto& m : all)
    CHECK(takes(*m));
}

TEST_CASE("a process_static another thread is making when the process forks is made in the child",
          "[unit][fork]") {
  struct slow {
    int value = 0;
  };
  static constinit std::atomic<slow*> made{nullptr};
  static std::atomic<bool> making{false};
  auto get = [] {
    return &process_static(made, [] {
      // Making one may make another.
      static constinit std::atomic<int*> inner{nullptr};
      (void)process_static(inner, [] { return new int(7); });
      auto* s = new slow;
      making = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      s->value = 42;
      return s;
    });
  };
  std::atomic<bool> end{false};
  std::thread maker = thread_until(end, [&] { (void)get(); });
  while (!making)
    std::this_thread::yield();
  int ws = in_child([&] {
    ::alarm(10); // a child that waits for the half-made object dies of SIGALRM
    return get()->value == 42 ? 0 : 1;
  });
  end = true;
  maker.join();
  CHECK(WIFEXITED(ws));
  CHECK(WEXITSTATUS(ws) == 0);
  CHECK(get()->value == 42);
  CHECK(get() == get());
}
