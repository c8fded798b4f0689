#include "sandbox/outcome.h"

#include <set>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

namespace corral {
namespace {

TEST_CASE("outcome reasons have distinct stable names", "[outcome]") {
  const std::pair<OutcomeReason, const char*> kNames[] = {
      {OutcomeReason::kExited, "exited"},
      {OutcomeReason::kSignaled, "signaled"},
      {OutcomeReason::kOomKilled, "oom_killed"},
      {OutcomeReason::kPidsLimit, "pids_limit"},
      {OutcomeReason::kWallTimeout, "wall_timeout"},
      {OutcomeReason::kCpuTimeout, "cpu_timeout"},
      {OutcomeReason::kOutputLimit, "output_limit"},
      {OutcomeReason::kSeccompViolation, "seccomp_violation"},
      {OutcomeReason::kKilledByRequest, "killed_by_request"},
      {OutcomeReason::kLaunchFailed, "launch_failed"},
  };
  for (const auto& [reason, name] : kNames) CHECK(OutcomeReasonName(reason) == name);
}

TEST_CASE("outcome JSON carries every field", "[outcome]") {
  Outcome outcome;
  outcome.reason = OutcomeReason::kSeccompViolation;
  outcome.signal = 31;
  outcome.seccomp_syscall = 101;
  outcome.seccomp_syscall_name = "ptrace";
  outcome.message = "refused syscall";
  outcome.memory_peak_bytes = 12345;
  outcome.pids_peak = 3;
  outcome.cpu_time = std::chrono::microseconds(1'500'999);
  outcome.wall_time = std::chrono::microseconds(2'000'000);
  outcome.output_bytes = 77;
  outcome.output_truncated = true;

  nlohmann::json json = OutcomeToJson(outcome);
  CHECK(json["reason"] == "seccomp_violation");
  CHECK(json["exit_code"] == -1);
  CHECK(json["signal"] == 31);
  CHECK(json["seccomp_syscall"] == 101);
  CHECK(json["seccomp_syscall_name"] == "ptrace");
  CHECK(json["message"] == "refused syscall");
  CHECK(json["memory_peak_bytes"] == 12345);
  CHECK(json["pids_peak"] == 3);
  CHECK(json["cpu_time_ms"] == 1500);
  CHECK(json["wall_time_ms"] == 2000);
  CHECK(json["output_bytes"] == 77);
  CHECK(json["output_truncated"] == true);
  CHECK(json.size() == 12);
}

TEST_CASE("outcome JSON leaves out an unknown syscall name", "[outcome]") {
  Outcome outcome;
  outcome.exit_code = 0;
  nlohmann::json json = OutcomeToJson(outcome);
  CHECK(json["reason"] == "exited");
  CHECK_FALSE(json.contains("seccomp_syscall_name"));
  CHECK(json.size() == 11);
}

TEST_CASE("shell status is the exit code or 128 + signal", "[outcome]") {
  Outcome exited;
  exited.exit_code = 3;
  CHECK(exited.ShellStatus() == 3);

  Outcome killed;
  killed.reason = OutcomeReason::kWallTimeout;
  killed.signal = 9;
  CHECK(killed.ShellStatus() == 137);

  Outcome never_ran;
  never_ran.reason = OutcomeReason::kLaunchFailed;
  CHECK(never_ran.ShellStatus() == 125);
}

}  // namespace
}  // namespace corral
