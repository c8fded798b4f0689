// Every syscall the default policy must refuse, called with harmless arguments (a bad
// descriptor, a bad pointer, an invalid flag) so that without the filter the kernel rejects it
// with a known errno, and under the filter it answers EPERM instead. The native run proves the
// EPERM came from the filter, not from the kernel.
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <catch2/catch.hpp>

#include "tests/unit/seccomp/seccomp_child.h"

namespace corral {
namespace {

using testing::ChildEnd;
using testing::Describe;
using testing::ErrnoOf;
using testing::RunInChild;

constexpr long kBadPtr = 1;  // page 0 is never mapped: EFAULT
constexpr long kBadFd = -1;  // EBADF
constexpr long kBadFlags = 0xffffffff;
constexpr int kNotRunNatively = -1;  // would act for real on the host when run without a filter

struct RefusedCall {
  const char* name;
  long nr;
  long args[6];
  int native_errno;
};

#define CALL(name) #name, __NR_##name

const RefusedCall kRefusedCalls[] = {
    // The mount family and the new mount API.
    {CALL(mount), {kBadPtr, kBadPtr, kBadPtr, 0, 0, 0}, EFAULT},
    {CALL(umount2), {kBadPtr, 0}, EFAULT},
    {CALL(pivot_root), {kBadPtr, kBadPtr}, EFAULT},
    {CALL(chroot), {kBadPtr}, EFAULT},
    {CALL(open_tree), {kBadFd, kBadPtr, 0}, EFAULT},
    {CALL(move_mount), {kBadFd, kBadPtr, kBadFd, kBadPtr, 0}, EFAULT},
    {CALL(fsopen), {kBadPtr, 0}, EFAULT},
    {CALL(fsconfig), {kBadFd, 0, 0, 0, 0}, EINVAL},
    {CALL(fsmount), {kBadFd, 0, 0}, EBADF},
    {CALL(fspick), {kBadFd, kBadPtr, 0}, EFAULT},
    {CALL(mount_setattr), {kBadFd, kBadPtr, 0, 0, 0}, EINVAL},
    // Whole-machine state.
    {CALL(reboot), {0, 0, 0, 0}, EINVAL},
    {CALL(kexec_load), {0, 0, 0, kBadFlags}, EINVAL},
    {CALL(kexec_file_load), {kBadFd, kBadFd, 0, 0, kBadFlags}, EINVAL},
    {CALL(init_module), {kBadPtr, 0, kBadPtr}, EFAULT},
    {CALL(finit_module), {kBadFd, kBadPtr, 0}, EBADF},
    {CALL(delete_module), {kBadPtr, 0}, EFAULT},
    {CALL(swapon), {kBadPtr, 0}, EFAULT},
    {CALL(swapoff), {kBadPtr}, EFAULT},
    {CALL(acct), {kBadPtr}, EFAULT},
    {CALL(sethostname), {kBadPtr, 1}, EFAULT},
    {CALL(setdomainname), {kBadPtr, 1}, EFAULT},
    {CALL(clock_settime), {0, kBadPtr}, EFAULT},
    {CALL(settimeofday), {kBadPtr, 0}, EFAULT},
    {CALL(adjtimex), {kBadPtr}, EFAULT},
    {CALL(clock_adjtime), {0, kBadPtr}, EFAULT},
    {CALL(syslog), {10000, 0, 0}, EINVAL},
    {CALL(vhangup), {}, kNotRunNatively},
    {CALL(quotactl), {0, kBadPtr, 0, 0}, EFAULT},
    {CALL(quotactl_fd), {kBadFd, 0, 0, 0}, EBADF},
    {CALL(iopl), {4}, EINVAL},
    {CALL(ioperm), {kBadFlags, 1, 1}, EINVAL},
    {CALL(modify_ldt), {1, 0, 0}, EINVAL},
    // Handles, notification of the whole filesystem.
    {CALL(open_by_handle_at), {kBadFd, kBadPtr, 0}, EFAULT},
    {CALL(name_to_handle_at), {kBadFd, kBadPtr, kBadPtr, kBadPtr, 0}, EFAULT},
    {CALL(fanotify_init), {kBadFlags, 0}, EINVAL},
    // NUMA policy.
    {CALL(mbind), {0, 0, 0, 0, 0, kBadFlags}, EINVAL},
    {CALL(set_mempolicy), {99, 0, 0}, EINVAL},
    {CALL(move_pages), {0, 1, kBadPtr, 0, kBadPtr, kBadFlags}, EINVAL},
    {CALL(migrate_pages), {0, 1, kBadPtr, kBadPtr}, EINVAL},
    // Obsolete calls, gone from the kernel (ENOSYS natively), refused by name all the same.
    {CALL(uselib), {kBadPtr}, ENOSYS},
    {CALL(ustat), {0, kBadPtr}, EINVAL},
    {CALL(sysfs), {99, 0, 0}, EINVAL},
    {CALL(_sysctl), {kBadPtr}, ENOSYS},
    {CALL(nfsservctl), {0, 0, 0}, ENOSYS},
    {CALL(get_kernel_syms), {kBadPtr}, ENOSYS},
    {CALL(query_module), {kBadPtr, 0, 0, 0, 0}, ENOSYS},
    {CALL(create_module), {kBadPtr, 0}, ENOSYS},
    {CALL(lookup_dcookie), {0, kBadPtr, 0}, ENOSYS},
    // The keyring: keys outlive the sandbox and are shared by uid.
    {CALL(add_key), {kBadPtr, kBadPtr, 0, 0, 0}, EFAULT},
    {CALL(request_key), {kBadPtr, kBadPtr, 0, 0}, EFAULT},
    {CALL(keyctl), {6, 0, kBadPtr, 1, 0}, EINVAL},
    // Reaching into other processes and into the kernel.
    {CALL(bpf), {-1, 0, 0}, EINVAL},
    {CALL(perf_event_open), {kBadPtr, 0, -1, -1, 0}, EFAULT},
    {CALL(userfaultfd), {kBadFlags}, EINVAL},
    {CALL(ptrace), {0xffff, 0, 0, 0}, ESRCH},
    {CALL(process_vm_readv), {0, 0, 0, 0, 0, kBadFlags}, EINVAL},
    {CALL(process_vm_writev), {0, 0, 0, 0, 0, kBadFlags}, EINVAL},
    {CALL(kcmp), {0, 0, -1, 0, 0}, ESRCH},
    {CALL(pidfd_getfd), {kBadFd, 0, 0}, EBADF},
    {CALL(process_madvise), {kBadFd, 0, 0, 0, 0}, EBADF},
    {CALL(memfd_secret), {kBadFlags}, EINVAL},
    {CALL(io_uring_setup), {0, kBadPtr}, EFAULT},
    {CALL(io_uring_enter), {kBadFd, 0, 0, 0, 0, 0}, EBADF},
    {CALL(io_uring_register), {kBadFd, 0, 0, 0}, EINVAL},
    // Namespaces.
    {CALL(unshare), {1}, EINVAL},
    {CALL(setns), {kBadFd, 0}, EBADF},
};

#undef CALL

int Call(const RefusedCall& call) {
  const long* a = call.args;
  long rc = syscall(call.nr, a[0], a[1], a[2], a[3], a[4], a[5]);
  // modify_ldt returns its error as a 32-bit int (arch/x86/kernel/ldt.c), which the libc
  // wrapper takes for a large positive result.
  if (rc > 0 && static_cast<int>(rc) < 0) return -static_cast<int>(rc);
  return ErrnoOf(rc);
}

// A kernel built without the facility (this host has no modules, kexec or iopl) answers ENOSYS
// natively; either way the call is not refused with EPERM by the kernel itself.
bool NativeAnswerMatches(const RefusedCall& call, const ChildEnd& end) {
  return end.exited && (end.exit_code == call.native_errno || end.exit_code == ENOSYS);
}

TEST_CASE("every refused syscall fails natively with its own errno and with EPERM filtered") {
  for (const RefusedCall& call : kRefusedCalls) {
    INFO("syscall " << call.name << " (" << call.nr << ")");
    CHECK(SyscallName(call.nr) == call.name);
    if (call.native_errno != kNotRunNatively) {
      ChildEnd native = RunInChild(nullptr, [&] { return Call(call); });
      INFO("without the filter: " << Describe(native));
      CHECK(NativeAnswerMatches(call, native));
    }
    ChildEnd filtered = RunInChild(&testing::DefaultProgram(), [&] { return Call(call); });
    INFO("with the filter: " << Describe(filtered));
    CHECK((filtered.exited && filtered.exit_code == EPERM));
  }
}

}  // namespace
}  // namespace corral
