// SPDX-License-Identifier: MIT
// Locks and process-wide objects that a fork() leaves usable in the child.
//
// A child forked while another thread holds a lock, or is making a function-local static,
// inherits the lock held or the static half-made, by a thread it does not have: its first use
// of either waits forever. fork() here first waits until no process_static is being made and no
// fork_safe_mutex is held, holds them all while it copies the process, and frees them again in
// parent and child. The handlers that do this are registered as the program starts, outside
// any lock: pthread_atfork itself waits while another thread forks.
// Rules, since a fork takes these in one fixed order: hold at most one fork_safe_mutex at a
// time, do not make a process_static or a fork_safe_mutex while holding one, and do not fork
// while holding one.
#pragma once

#include <atomic>
#include <mutex>

#include <pthread.h>

namespace sandbox::detail {

class fork_safe_mutex;

namespace fork_safety {

struct registry {
  std::mutex m; ///< guards the list
  fork_safe_mutex* head = nullptr;
};

/// Constant-initialized and trivially destroyed: usable before main and after exit.
inline constinit registry all{};
/// Held while a process_static is made: making one may make another.
inline constinit std::mutex making;
inline thread_local bool making_here = false;

inline void take_all() noexcept;
inline void free_all() noexcept;

inline const int registered = ::pthread_atfork(&take_all, &free_all, &free_all);

} // namespace fork_safety

/// A mutex that fork() waits for (see the top of this header).
class fork_safe_mutex {
public:
  fork_safe_mutex() noexcept {
    std::lock_guard g(fork_safety::all.m);
    next_ = fork_safety::all.head;
    if (next_) next_->prev_ = this;
    fork_safety::all.head = this;
  }
  ~fork_safe_mutex() {
    std::lock_guard g(fork_safety::all.m);
    (prev_ ? prev_->next_ : fork_safety::all.head) = next_;
    if (next_) next_->prev_ = prev_;
  }
  fork_safe_mutex(const fork_safe_mutex&) = delete;
  fork_safe_mutex& operator=(const fork_safe_mutex&) = delete;

  void lock() { m_.lock(); }
  [[nodiscard]] bool try_lock() noexcept { return m_.try_lock(); }
  void unlock() noexcept { m_.unlock(); }

private:
  friend void fork_safety::take_all() noexcept;
  friend void fork_safety::free_all() noexcept;

  std::mutex m_;
  fork_safe_mutex* next_ = nullptr;
  fork_safe_mutex* prev_ = nullptr;
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

namespace fork_safety {

inline void take_all() noexcept {
  making.lock();
  all.m.lock();
  for (fork_safe_mutex* p = all.head; p; p = p->next_)
    p->m_.lock();
}

inline void free_all() noexcept {
  for (fork_safe_mutex* p = all.head; p; p = p->next_)
    p->m_.unlock();
  all.m.unlock();
  making.unlock();
}

} // namespace fork_safety

} // namespace sandbox::detail
