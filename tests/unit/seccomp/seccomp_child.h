// Test helpers: run a body in a forked child, optionally under a seccomp program, and report
// how the child ended. Assertions stay in the parent; the child only returns a number.
#pragma once

#include <functional>
#include <string>

#include "sandbox/seccomp.h"
#include "sandbox/unique_fd.h"

namespace corral::testing {

struct ChildEnd {
  bool exited = false;
  int exit_code = -1;  // when exited
  int signal = 0;      // when killed by a signal
};

// Exit code of a child whose filter could not be installed.
constexpr int kInstallFailed = 250;

// Forks; the child calls setsid (so nothing it does can reach the test's terminal), sets
// no_new_privs, installs `program` when not null, and exits with body()'s value.
ChildEnd RunInChild(const SeccompProgram* program, const std::function<int()>& body);

// errno of a failed raw syscall, 0 when it succeeded: the child's exit code.
int ErrnoOf(long rc);

// The filter of the default policy, built once per test binary.
const SeccompProgram& DefaultProgram();

// The filter of the default policy with action kill (a listener), built once.
const SeccompProgram& KillModeProgram();

// Builds a program for `policy`, failing the test when it cannot.
SeccompProgram ProgramFor(const SeccompPolicy& policy);

std::string Describe(const ChildEnd& end);

// A child under a program with a listener, and the listener it handed over (SCM_RIGHTS), the
// way the launcher receives it.
struct Supervised {
  pid_t pid = -1;
  UniqueFd listener;
};

// Forks; the child calls setsid, sets no_new_privs, installs `program` (use_listener), sends
// the listener to the parent and exits with body()'s value.
Supervised StartSupervised(const SeccompProgram& program, const std::function<int()>& body);

struct Notification {
  bool received = false;  // false: the listener hung up, every filtered process ended
  long nr = -1;
  pid_t pid = -1;  // the caller: the child or one of its descendants
};

// Waits for the next notification on the child's listener.
Notification NextNotification(const Supervised& child);

}  // namespace corral::testing
