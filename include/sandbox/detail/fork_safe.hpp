// SPDX-License-Identifier: MIT
// Locks and process-wide objects that a fork() leaves usable in the child.
//
// A child forked while another thread holds a lock, or is making a function-local static,
// inherits the lock held or the static half-made, by a thread it does not have: its first use
// of either waits forever. fork() here first waits until no process_static is being made and no
// fork_safe_mutex is held, lets none be taken until it has copied the process, and lets them
// again in parent and child. The handlers that do this are registered as the program starts,
// outside any lock: pthread_atfork itself waits while another thread forks.
// Rules: do not fork while holding a fork_safe_mutex, and do not make a process_static while
// holding one (a fork holds `making` while it waits for the mutexes).
#pragma once

#include <atomic>
#include <mutex>

#include <pthread.h>
#include <time.h>

namespace sandbox::detail {

namespace fork_safety {

/// How many fork_safe_mutexes are held or waited for, and whether a fork waits for none to be.
struct gate_state {
  std::mutex m;
  unsigned held = 0;
  bool forking = false;
};

/// Constant-initialized and trivially destroyed: usable before main and after exit.
inline constinit gate_state gate{};
/// Held while a process_static is made: making one may make another.
inline constinit std::mutex making;
inline thread_local bool making_here = false;
/// The fork_safe_mutexes this thread holds or waits for: one that holds some may take more
/// while a fork waits (for all of them to be let go).
inline thread_local unsigned held_here = 0;

inline void pause() noexcept {
  struct timespec t {
    0, 20'000
  };
  ::nanosleep(&t, nullptr);
}

/// Before a fork: no process_static being made, no fork_safe_mutex held, none taken until after.
inline void take_all() noexcept {
  making.lock();
  gate.m.lock();
  gate.forking = true;
  while (gate.held != 0) {
    gate.m.unlock();
    pause();
    gate.m.lock();
  }
}

inline void free_all() noexcept {
  gate.forking = false;
  gate.m.unlock();
  making.unlock();
}

inline const int registered = ::pthread_atfork(&take_all, &free_all, &free_all);

} // namespace fork_safety

/// A mutex that fork() waits for (see the top of this header).
class fork_safe_mutex {
public:
  fork_safe_mutex() noexcept = default;
  fork_safe_mutex(const fork_safe_mutex&) = delete;
  fork_safe_mutex& operator=(const fork_safe_mutex&) = delete;

  void lock() {
    enter();
    m_.lock();
  }
  [[nodiscard]] bool try_lock() noexcept {
    enter();
    if (m_.try_lock()) return true;
    leave();
    return false;
  }
  void unlock() noexcept {
    m_.unlock();
    leave();
  }

private:
  static void enter() noexcept {
    using namespace fork_safety;
    gate.m.lock();
    while (gate.forking && held_here == 0) {
      gate.m.unlock();
      pause();
      gate.m.lock();
    }
    ++gate.held;
    ++held_here;
    gate.m.unlock();
  }
  static void leave() noexcept {
    using namespace fork_safety;
    std::lock_guard g(gate.m);
    --gate.held;
    --held_here;
  }

  std::mutex m_;
};

/// The object in `slot`, made by `make()` (which returns it from `new`) at the first call and
/// never destroyed. In place of a function-local static, whose making a fork() does not wait
/// for. `slot` must be constant-initialized: `static constinit std::atomic<T*> slot{nullptr};`.
template <class T, class Make>
[[nodiscard]] T& process_static(std::atomic<T*>& slot, Make make) {
  if (T* made = slot.load(std::memory_order_acquire)) return *made;
  struct hold {
    bool outer = !fork_safety::making_here;
    hold() {
      if (!outer) return;
      fork_safety::making.lock();
      fork_safety::making_here = true;
    }
    ~hold() {
      if (!outer) return;
      fork_safety::making_here = false;
      fork_safety::making.unlock();
    }
    hold(const hold&) = delete;
    hold& operator=(const hold&) = delete;
  } held;
  T* made = slot.load(std::memory_order_relaxed);
  if (!made) {
    made = make();
    slot.store(made, std::memory_order_release);
  }
  return *made;
}

} // namespace sandbox::detail
