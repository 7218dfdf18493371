// SPDX-License-Identifier: MIT
// The seccomp filter every command of a local sandbox runs under, written as a classic BPF
// program by hand (no libseccomp: a header-only library should not make its users link
// -lseccomp for one constant program).
//
// What it denies is what Docker's default profile denies to a container with Docker's default
// capabilities, checked name by name against moby's profiles/seccomp/default.json; the
// differences are listed below with their reasons. Docker writes its profile as an allowlist;
// this filter lists the denied calls instead and answers ENOSYS for every number above the
// newest call reviewed here, so it is an allowlist in effect: a system call added to a later
// kernel is unavailable until someone reviews it (runc answers such calls the same way, and libc
// falls back on ENOSYS).
//
// Denied calls fail with EPERM, as under Docker, so programs see an ordinary permission error;
// clone3 fails with ENOSYS so that libc falls back to clone, whose flags the filter can inspect
// (clone3 passes them in memory, which seccomp cannot read). Calls through a non-native ABI
// (i386 `int 0x80` or x32 on x86_64, AArch32 on arm64) kill the process with SIGSYS: their
// numbers mean other calls, no program in a sandbox needs them, and a 32-bit program whose every
// call failed would misbehave in ways far harder to diagnose than a SIGSYS.
//
// Differences from Docker's default profile, on purpose:
// - ptrace, process_vm_readv and process_vm_writev are denied (Docker allows them on kernels >=
//   4.8). The sandbox's PID 1 holds a copy of the client's memory; it is also non-dumpable and
//   no command holds CAP_SYS_PTRACE, and this is a third wall. Debuggers and strace do not work
//   inside a sandbox.
// - io_uring_setup/enter/register are denied (older Docker releases allowed them; current moby
//   no longer does): io_uring performs operations without passing through this filter and has
//   been a steady source of kernel privilege escalations.
// - unshare is allowed when it asks for no new namespace (CLONE_FILES, CLONE_FS, CLONE_SYSVSEM
//   only affect the caller); Docker denies unshare outright without CAP_SYS_ADMIN.
// - Calls newer than Docker's list that a kernel of this writing offers are allowed when they
//   only act on the caller (cachestat, fchmodat2, map_shadow_stack, futex_wake/wait/requeue,
//   statmount/listmount (they see the sandbox's own mounts), lsm_*_self_attr, lsm_list_modules,
//   mseal, the *xattrat calls, file_getattr/file_setattr, uretprobe/uprobe); open_tree_attr is
//   denied like open_tree.
// - mknod stays allowed as under Docker, but CAP_MKNOD is not in the commands' bounding set (the
//   supervisor drops it) and every writable mount is nodev: Docker relies on its device cgroup
//   for that, which a local sandbox does not have.
#pragma once

#include <sandbox/transport/local/detail/libc.hpp>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <utility>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "sandbox: the local transport's seccomp filter is written for x86_64 and aarch64 only"
#endif

#pragma GCC visibility push(hidden) // run by the supervisor: see libc.hpp
namespace sandbox::local::detail::seccomp {

#if defined(__x86_64__)
inline constexpr std::uint32_t native_arch = AUDIT_ARCH_X86_64;
#else
inline constexpr std::uint32_t native_arch = AUDIT_ARCH_AARCH64;
#endif

/// Calls from 451 on share one numbering across architectures; the C library headers this is
/// built with may predate them.
inline constexpr std::uint32_t nr_open_tree_attr = 467;
/// The first system call number not reviewed here: from it on, calls fail with ENOSYS.
inline constexpr std::uint32_t first_unreviewed_nr = 470;

/// The namespace flags that clone (low 32 bits of its first argument) must not carry.
inline constexpr std::uint32_t clone_ns_flags = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
                                                CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
                                                CLONE_NEWNET;
/// unshare also knows CLONE_NEWTIME (0x80 is the exit signal's byte in clone's flags).
inline constexpr std::uint32_t unshare_ns_flags = clone_ns_flags | 0x00000080u;

/// personality() values Docker allows: PER_LINUX, UNAME26, ADDR_NO_RANDOMIZE (with and without
/// UNAME26), and the query 0xffffffff.
inline constexpr std::uint32_t allowed_personalities[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffffu};

/// Denied with EPERM whatever their arguments. Sorted by number within each block.
inline constexpr std::uint32_t denied_calls[] = {
#if defined(__x86_64__)
    // x86_64 only: port I/O, obsolete or never implemented calls.
    __NR_uselib,
    __NR_ustat,
    __NR_sysfs,
    __NR__sysctl,
    __NR_iopl,
    __NR_ioperm,
    __NR_create_module,
    __NR_get_kernel_syms,
    __NR_query_module,
    __NR_getpmsg,
    __NR_putpmsg,
    __NR_afs_syscall,
    __NR_tuxcall,
    __NR_security,
    __NR_vserver,
#endif
    // The kernel log, accounting, and the machine's clock.
    __NR_syslog,
    __NR_acct,
    __NR_settimeofday,
    __NR_clock_settime,
    // Mounts: the sandbox's mount table is fixed once the supervisor has built it.
    __NR_pivot_root,
    __NR_mount,
    __NR_umount2,
    __NR_open_tree,
    __NR_move_mount,
    __NR_fsopen,
    __NR_fsconfig,
    __NR_fsmount,
    __NR_fspick,
    __NR_mount_setattr,
    nr_open_tree_attr,
    // Swap, quotas, reboot, host and domain name.
    __NR_swapon,
    __NR_swapoff,
    __NR_quotactl,
    __NR_quotactl_fd,
    __NR_reboot,
    __NR_sethostname,
    __NR_setdomainname,
    __NR_vhangup,
    __NR_nfsservctl,
    // Kernel modules and kexec.
    __NR_init_module,
    __NR_finit_module,
    __NR_delete_module,
    __NR_kexec_load,
    __NR_kexec_file_load,
    // Namespaces: entering one.
    __NR_setns,
    // Other processes' memory and files, and kernel-wide tracing.
    __NR_ptrace,
    __NR_process_vm_readv,
    __NR_process_vm_writev,
    __NR_kcmp,
    __NR_pidfd_getfd,
    __NR_process_madvise,
    __NR_perf_event_open,
    __NR_bpf,
    __NR_lookup_dcookie,
    __NR_fanotify_init,
    __NR_userfaultfd,
    // Files by handle, bypassing path lookup (the "shocker" escape).
    __NR_open_by_handle_at,
    // The kernel keyring is not namespaced.
    __NR_add_key,
    __NR_request_key,
    __NR_keyctl,
    // NUMA placement (Docker: CAP_SYS_NICE only).
    __NR_mbind,
    __NR_set_mempolicy,
    __NR_get_mempolicy,
    __NR_migrate_pages,
    __NR_move_pages,
    __NR_set_mempolicy_home_node,
    // io_uring.
    __NR_io_uring_setup,
    __NR_io_uring_enter,
    __NR_io_uring_register,
};

/// A BPF program of at most 255 instructions (every jump then fits the 8-bit offsets).
struct program {
  std::array<sock_filter, 255> code{};
  unsigned short size = 0;
};

namespace bpf_detail {

constexpr sock_filter stmt(std::uint16_t code, std::uint32_t k) noexcept {
  return sock_filter{code, 0, 0, k};
}

constexpr std::uint32_t arg_low(int i) noexcept {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return static_cast<std::uint32_t>(offsetof(seccomp_data, args) + 8 * i);
#else
  return static_cast<std::uint32_t>(offsetof(seccomp_data, args) + 8 * i + 4);
#endif
}

/// Not constexpr: reaching it while assembling `filter` is a compile-time error.
inline void invalid_jump() noexcept {}

/// Assembles the program: labels are instruction indices fixed up after emission.
struct assembler {
  program p;
  enum label : std::uint8_t {
    allow,
    allow_args, // the same as allow, placed last: BPF jumps only forward
    deny,
    nosys,
    kill,
    clone,
    unshare,
    personality,
    socket,
    n
  };
  unsigned short at[n] = {};
  struct fixup {
    unsigned short insn;
    label target;
    bool on_true;
  };
  std::array<fixup, 255> fixups{};
  unsigned short nfix = 0;

  constexpr void emit(sock_filter f) { p.code[p.size++] = f; }
  constexpr void load(std::uint32_t offset) { emit(stmt(BPF_LD | BPF_W | BPF_ABS, offset)); }
  /// if (A <op> k) goto target; else fall through.
  constexpr void jump_if(std::uint16_t op, std::uint32_t k, label target) {
    fixups[nfix++] = {p.size, target, true};
    emit(sock_filter{static_cast<std::uint16_t>(BPF_JMP | op | BPF_K), 0, 0, k});
  }
  /// if (A <op> k) fall through; else goto target.
  constexpr void jump_unless(std::uint16_t op, std::uint32_t k, label target) {
    fixups[nfix++] = {p.size, target, false};
    emit(sock_filter{static_cast<std::uint16_t>(BPF_JMP | op | BPF_K), 0, 0, k});
  }
  /// if (A <op> k) goto `on_true`; else goto `on_false`.
  constexpr void jump_either(std::uint16_t op, std::uint32_t k, label on_true, label on_false) {
    fixups[nfix++] = {p.size, on_true, true};
    fixups[nfix++] = {p.size, on_false, false};
    emit(sock_filter{static_cast<std::uint16_t>(BPF_JMP | op | BPF_K), 0, 0, k});
  }
  /// if (A <op> k) goto where `land` is later called with the returned jump; else fall through.
  constexpr unsigned short jump_ahead(std::uint16_t op, std::uint32_t k) {
    emit(sock_filter{static_cast<std::uint16_t>(BPF_JMP | op | BPF_K), 0, 0, k});
    return static_cast<unsigned short>(p.size - 1);
  }
  constexpr void land(unsigned short jump) { p.code[jump].jt = offset(jump, p.size); }
  constexpr void ret(std::uint32_t action) { emit(stmt(BPF_RET | BPF_K, action)); }
  constexpr void place(label l) { at[l] = p.size; }
  /// The offset of a jump at `from` to `to`: forward, and within 8 bits.
  static constexpr std::uint8_t offset(unsigned short from, unsigned short to) {
    if (to <= from || to - from - 1 > 255) invalid_jump();
    return static_cast<std::uint8_t>(to - from - 1);
  }
  constexpr void resolve() {
    for (unsigned short i = 0; i < nfix; ++i) {
      auto& f = fixups[i];
      const std::uint8_t offset = assembler::offset(f.insn, at[f.target]);
      if (f.on_true)
        p.code[f.insn].jt = offset;
      else
        p.code[f.insn].jf = offset;
    }
  }
};

/// Sends each of the `n` sorted numbers in `nr` to `deny`, the others to `allow`: a search tree
/// on the number, with runs of at most 6 compared one by one at its leaves. The kernel runs the
/// program once per system call number for its action cache when the filter is installed: with
/// a chain of every denied number the install took 170 µs here, with the tree 115 µs (a filter
/// of one instruction: 90 µs). It is on every sandbox's start.
constexpr void deny_tree(assembler& a, const std::uint32_t* nr, std::size_t n) {
  using L = assembler;
  if (n <= 6) {
    for (std::size_t i = 0; i + 1 < n; ++i)
      a.jump_if(BPF_JEQ, nr[i], L::deny);
    a.jump_either(BPF_JEQ, nr[n - 1], L::deny, L::allow);
    return;
  }
  // if (nr >= nr[half]) the upper part, which follows the lower one.
  const std::size_t half = n / 2;
  const unsigned short upper = a.jump_ahead(BPF_JGE, nr[half]);
  deny_tree(a, nr, half);
  a.land(upper);
  deny_tree(a, nr + half, n - half);
}

constexpr program build() {
  assembler a;
  using L = assembler;
  // Arguments and ABI first, then the few calls whose arguments matter (their checks cannot be
  // cached by the kernel anyway), then the plain denials. Every other call reaches `allow`
  // through loads and jumps on the number alone, which the kernel's seccomp action cache
  // recognises: allowed calls then skip this program entirely.
  a.load(offsetof(seccomp_data, arch));
  a.jump_unless(BPF_JEQ, native_arch, L::kill);
  a.load(offsetof(seccomp_data, nr));
#if defined(__x86_64__)
  a.jump_if(BPF_JSET, __X32_SYSCALL_BIT, L::kill);
#endif
  a.jump_if(BPF_JGE, first_unreviewed_nr, L::nosys);
  a.jump_if(BPF_JEQ, __NR_clone, L::clone);
  a.jump_if(BPF_JEQ, __NR_clone3, L::nosys);
  a.jump_if(BPF_JEQ, __NR_unshare, L::unshare);
  a.jump_if(BPF_JEQ, __NR_personality, L::personality);
  a.jump_if(BPF_JEQ, __NR_socket, L::socket);
  std::array<std::uint32_t, std::size(denied_calls)> sorted{};
  for (std::size_t i = 0; i < sorted.size(); ++i)
    sorted[i] = denied_calls[i];
  for (std::size_t i = 1; i < sorted.size(); ++i) // insertion sort: constexpr everywhere
    for (std::size_t j = i; j > 0 && sorted[j - 1] > sorted[j]; --j)
      std::swap(sorted[j - 1], sorted[j]);
  deny_tree(a, sorted.data(), sorted.size());
  a.place(L::allow);
  a.ret(SECCOMP_RET_ALLOW);

  a.place(L::clone);
  a.load(arg_low(0));
  a.jump_if(BPF_JSET, clone_ns_flags, L::deny);
  a.ret(SECCOMP_RET_ALLOW);

  a.place(L::unshare);
  a.load(arg_low(0));
  a.jump_if(BPF_JSET, unshare_ns_flags, L::deny);
  a.ret(SECCOMP_RET_ALLOW);

  a.place(L::personality);
  a.load(arg_low(0));
  for (std::uint32_t v : allowed_personalities)
    a.jump_if(BPF_JEQ, v, L::allow_args);
  a.ret(SECCOMP_RET_ERRNO | EPERM);

  // AF_VSOCK reaches the hypervisor, outside any network namespace.
  a.place(L::socket);
  a.load(arg_low(0));
  a.jump_if(BPF_JEQ, AF_VSOCK, L::deny);
  a.ret(SECCOMP_RET_ALLOW);

  a.place(L::deny);
  a.ret(SECCOMP_RET_ERRNO | EPERM);
  a.place(L::nosys);
  a.ret(SECCOMP_RET_ERRNO | ENOSYS);
  a.place(L::kill);
  a.ret(SECCOMP_RET_KILL_PROCESS);
  a.place(L::allow_args);
  a.ret(SECCOMP_RET_ALLOW);
  a.resolve();
  return a.p;
}

} // namespace bpf_detail

/// The filter, assembled at compile time: installing it needs no allocation, so the supervisor
/// (a clone of a possibly multi-threaded client) can install it on itself once the sandbox is
/// built, and every command inherits it.
inline constexpr program filter = bpf_detail::build();
static_assert(filter.size < 200, "jump offsets must fit in 8 bits");

/// Installs `filter` on the calling process (a single thread); returns 0 or an errno. Requires
/// no_new_privs or CAP_SYS_ADMIN. Async-signal-safe: one system call, no allocation.
/// **Errors:** EINVAL (kernel without seccomp filters), EACCES (neither of the above), ENOMEM.
inline int install() noexcept {
  sock_fprog prog{filter.size, const_cast<sock_filter*>(filter.code.data())};
  if (libc::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0u, &prog) != 0) return errno;
  return 0;
}

} // namespace sandbox::local::detail::seccomp
#pragma GCC visibility pop
