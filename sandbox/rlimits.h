// rlimits: per-process limits, soft = hard so the process cannot raise them back. NPROC is not
// used: it counts per host uid, which says nothing per sandbox; the cgroup pids limit does that.
#pragma once

#include "sandbox/policy.h"
#include "sandbox/spec.h"

namespace corral {

// NOFILE, FSIZE, CORE=0, STACK; CPU (cpu_time in seconds, rounded up) and AS when set.
void PlanRlimits(const LimitsPolicy& limits, SandboxSpec* spec);

// Child: sets each limit. Async-signal-safe. Returns the failing index (errno set), or -1.
int ApplyRlimits(const SandboxSpec& spec);

}  // namespace corral
