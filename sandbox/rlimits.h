// rlimits: per-process limits, soft = hard so the process cannot raise them back. NPROC is not
// used: it counts per host uid, which says nothing per sandbox; the cgroup pids limit does that.
// The one exception is CPU: its soft limit sends SIGXCPU (an unambiguous "CPU time ran out" in
// the wait status) and the hard limit, one second later, SIGKILL for a process that ignores it.
// The sandbox-wide CPU limit is the supervisor's (cgroup usage); this is the per-process backstop.
#pragma once

#include "sandbox/policy.h"
#include "sandbox/spec.h"

namespace corral {

// NOFILE, FSIZE, CORE=0, STACK; CPU (cpu_time in seconds, rounded up) and AS when set.
void PlanRlimits(const LimitsPolicy& limits, SandboxSpec* spec);

// Child: sets each limit. Async-signal-safe. Returns the failing index (errno set), or -1.
int ApplyRlimits(const SandboxSpec& spec);

}  // namespace corral
