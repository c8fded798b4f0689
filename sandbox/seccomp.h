// The seccomp filter: an allow-list built with libseccomp from the policy, compiled in the
// launcher (privileged, may allocate) and installed in the child with one system call
// (async-signal-safe, no allocation), so it works after clone in a multi-threaded daemon and in
// a child forked from a warm template.
//
// What a refused call does: the policy's errno (EPERM by default); ENOSYS for clone3 (so libc
// falls back to clone, whose flags the filter can see) and for numbers the filter does not know
// (newer than this build: libc and Python fall back on ENOSYS). Under a kill policy a refused
// call is reported to the launcher through a seccomp user-notification listener, which records
// the syscall number and kills the whole sandbox. Foreign architectures (x32 numbers, the i386
// `int 0x80` entry) kill the process outright: their numbers mean other syscalls and would
// slip past rules written for the native table.
#pragma once

#include <linux/filter.h>

#include <string>
#include <vector>

#include "sandbox/policy.h"
#include "sandbox/status.h"

namespace corral {

struct SeccompProgram {
  std::vector<sock_filter> instructions;
  // Kill policy: install with SECCOMP_FILTER_FLAG_NEW_LISTENER and hand the listener to the
  // launcher, which turns each notification into `seccomp_violation` with the syscall number.
  bool use_listener = false;
};

// Builds the filter for `policy` (profile + allow - deny, argument rules, action).
Result<SeccompProgram> BuildSeccompProgram(const SeccompPolicy& policy);

// Installs `program` in the calling thread. no_new_privs must already be set.
// Async-signal-safe. Returns the listener fd (>= 0) when `use_listener`, 0 when installed
// without one, or -errno on failure.
int InstallSeccompProgram(const SeccompProgram& program);

// "ptrace" for 101 on x86_64; "syscall_<nr>" when unknown.
std::string SyscallName(long nr);

// Names in `names` that libseccomp does not know for the native architecture.
std::vector<std::string> UnknownSyscallNames(const std::vector<std::string>& names);

}  // namespace corral
