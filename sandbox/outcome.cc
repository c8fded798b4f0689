#include "sandbox/outcome.h"

#include <nlohmann/json.hpp>

namespace corral {

std::string_view OutcomeReasonName(OutcomeReason reason) {
  switch (reason) {
    case OutcomeReason::kExited:
      return "exited";
    case OutcomeReason::kSignaled:
      return "signaled";
    case OutcomeReason::kOomKilled:
      return "oom_killed";
    case OutcomeReason::kPidsLimit:
      return "pids_limit";
    case OutcomeReason::kWallTimeout:
      return "wall_timeout";
    case OutcomeReason::kCpuTimeout:
      return "cpu_timeout";
    case OutcomeReason::kOutputLimit:
      return "output_limit";
    case OutcomeReason::kSeccompViolation:
      return "seccomp_violation";
    case OutcomeReason::kKilledByRequest:
      return "killed_by_request";
    case OutcomeReason::kLaunchFailed:
      return "launch_failed";
  }
  return "launch_failed";
}

// The exit code when the process exited, 128 + signal when a signal ended it. A sandbox that
// never ran has neither and reports 125, as `docker run` and `podman run` do when the
// container itself could not start (126 and 127 are the shell's "cannot execute", "not found").
int Outcome::ShellStatus() const {
  if (signal > 0) return 128 + signal;
  if (exit_code >= 0) return exit_code;
  return 125;
}

nlohmann::json OutcomeToJson(const Outcome& outcome) {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  nlohmann::json json = {
      {"reason", OutcomeReasonName(outcome.reason)},
      {"exit_code", outcome.exit_code},
      {"signal", outcome.signal},
      {"seccomp_syscall", outcome.seccomp_syscall},
      {"message", outcome.message},
      {"memory_peak_bytes", outcome.memory_peak_bytes},
      {"pids_peak", outcome.pids_peak},
      {"cpu_time_ms", duration_cast<milliseconds>(outcome.cpu_time).count()},
      {"wall_time_ms", duration_cast<milliseconds>(outcome.wall_time).count()},
      {"output_bytes", outcome.output_bytes},
      {"output_truncated", outcome.output_truncated},
  };
  if (!outcome.seccomp_syscall_name.empty()) {
    json["seccomp_syscall_name"] = outcome.seccomp_syscall_name;
  }
  return json;
}

}  // namespace corral
