// SPDX-License-Identifier: MIT
// The local sandbox's seccomp filter, run here by a small classic-BPF interpreter for every
// system call number: each gets the verdict the filter's documentation gives it, and every call
// whose verdict does not depend on its arguments is decided on the number alone, as the kernel's
// action cache needs.
#include <sandbox/transport/local/detail/seccomp.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <optional>

#include <sched.h>
#include <sys/socket.h>

namespace sc = sandbox::local::detail::seccomp;

namespace {

struct verdict {
  std::uint32_t action = 0;
  bool read_args = false; ///< it loaded an argument: the kernel cannot cache it
};

/// Runs the filter on one call; nullopt for an instruction it does not know or a jump out of it.
std::optional<verdict> run(std::uint32_t arch, std::uint32_t nr, std::uint64_t arg0 = 0) {
  seccomp_data d{};
  d.arch = arch;
  d.nr = static_cast<int>(nr);
  d.args[0] = arg0;
  std::uint32_t a = 0;
  bool read_args = false;
  const auto& code = sc::filter.code;
  for (std::size_t pc = 0; pc < sc::filter.size; ++pc) {
    const sock_filter& in = code[pc];
    switch (in.code) {
    case BPF_LD | BPF_W | BPF_ABS:
      if (in.k + 4 > sizeof d) return std::nullopt;
      std::memcpy(&a, reinterpret_cast<const char*>(&d) + in.k, 4);
      read_args = read_args || in.k >= offsetof(seccomp_data, args);
      break;
    case BPF_RET | BPF_K: return verdict{in.k, read_args};
    case BPF_JMP | BPF_JA: pc += in.k; break;
    case BPF_JMP | BPF_JEQ | BPF_K: pc += a == in.k ? in.jt : in.jf; break;
    case BPF_JMP | BPF_JGE | BPF_K: pc += a >= in.k ? in.jt : in.jf; break;
    case BPF_JMP | BPF_JGT | BPF_K: pc += a > in.k ? in.jt : in.jf; break;
    case BPF_JMP | BPF_JSET | BPF_K: pc += (a & in.k) != 0 ? in.jt : in.jf; break;
    default: return std::nullopt;
    }
  }
  return std::nullopt;
}

bool denied(std::uint32_t nr) {
  return std::find(std::begin(sc::denied_calls), std::end(sc::denied_calls), nr) !=
         std::end(sc::denied_calls);
}

constexpr std::uint32_t eperm = SECCOMP_RET_ERRNO | EPERM;
constexpr std::uint32_t enosys = SECCOMP_RET_ERRNO | ENOSYS;

} // namespace

TEST_CASE("every system call number gets the filter's documented verdict", "[seccomp]") {
  REQUIRE(sc::filter.size > 0);
  const std::uint32_t with_args[] = {__NR_clone, __NR_unshare, __NR_personality, __NR_socket};
  for (std::uint32_t nr = 0; nr < sc::first_unreviewed_nr + 64; ++nr) {
    INFO("system call " << nr);
    auto v = run(sc::native_arch, nr);
    REQUIRE(v);
    const bool by_args =
        std::find(std::begin(with_args), std::end(with_args), nr) != std::end(with_args);
    if (nr >= sc::first_unreviewed_nr || nr == __NR_clone3)
      CHECK(v->action == enosys);
    else if (denied(nr))
      CHECK(v->action == eperm);
    else
      CHECK(v->action == SECCOMP_RET_ALLOW);
    // Decided on the number alone, but for the calls whose arguments matter.
    CHECK(v->read_args == by_args);
  }
}

TEST_CASE("the calls checked by argument are refused only what they must be", "[seccomp]") {
  CHECK(run(sc::native_arch, __NR_clone, SIGCHLD)->action == SECCOMP_RET_ALLOW);
  CHECK(run(sc::native_arch, __NR_clone, CLONE_NEWUSER | SIGCHLD)->action == eperm);
  CHECK(run(sc::native_arch, __NR_unshare, CLONE_FILES)->action == SECCOMP_RET_ALLOW);
  CHECK(run(sc::native_arch, __NR_unshare, CLONE_NEWNET)->action == eperm);
  CHECK(run(sc::native_arch, __NR_personality, 0xffffffffu)->action == SECCOMP_RET_ALLOW);
  CHECK(run(sc::native_arch, __NR_personality, 0x0400000u)->action == eperm);
  CHECK(run(sc::native_arch, __NR_socket, AF_UNIX)->action == SECCOMP_RET_ALLOW);
  CHECK(run(sc::native_arch, __NR_socket, AF_VSOCK)->action == eperm);
}

TEST_CASE("a foreign ABI is killed, whatever the call", "[seccomp]") {
  for (std::uint32_t nr : {0u, 1u, 39u, 59u, 400u}) {
    CHECK(run(AUDIT_ARCH_I386, nr)->action == SECCOMP_RET_KILL_PROCESS);
    CHECK(run(AUDIT_ARCH_ARM, nr)->action == SECCOMP_RET_KILL_PROCESS);
#if defined(__x86_64__)
    CHECK(run(sc::native_arch, nr | __X32_SYSCALL_BIT)->action == SECCOMP_RET_KILL_PROCESS);
#endif
  }
}
