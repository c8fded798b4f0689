// How a sandbox ended, decided from the launcher's own bookkeeping (cgroup events, its own
// timers, seccomp notifications, wait status), never from the process's output or exit code:
// a tenant cannot forge its way into (or out of) an outcome.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace corral {

enum class OutcomeReason {
  kExited,            // exited on its own; see exit_code
  kSignaled,          // killed by a signal nobody in the launcher sent; see signal
  kOomKilled,         // the cgroup memory limit was hit and the kernel killed a process
  kPidsLimit,         // died after forks failed at the cgroup pids limit
  kWallTimeout,       // the launcher's wall clock limit (or a caller's deadline) ran out
  kCpuTimeout,        // CPU time limit (cgroup-wide by the launcher, or RLIMIT_CPU)
  kOutputLimit,       // wrote more than the policy allows and the policy kills for it
  kSeccompViolation,  // a refused syscall under a kill policy, or a foreign architecture
  kKilledByRequest,   // the owner asked (session deleted, daemon shutting down)
  kLaunchFailed,      // never started: a setup step failed
};

std::string_view OutcomeReasonName(OutcomeReason reason);

struct Outcome {
  OutcomeReason reason = OutcomeReason::kExited;
  int exit_code = -1;     // when it exited
  int signal = 0;         // the signal that ended the sandboxed process, if any
  long seccomp_syscall = -1;       // syscall number under kSeccompViolation, when known
  std::string seccomp_syscall_name;
  std::string message;             // launch failure or extra detail, for operators
  uint64_t memory_peak_bytes = 0;
  uint64_t pids_peak = 0;
  std::chrono::microseconds cpu_time{0};
  std::chrono::microseconds wall_time{0};
  uint64_t output_bytes = 0;       // bytes written to stdout+stderr in all
  bool output_truncated = false;

  // What a shell would report: the exit code, or 128 + signal.
  int ShellStatus() const;
};

nlohmann::json OutcomeToJson(const Outcome& outcome);

}  // namespace corral
