// The failure values of manager/backend.h: how a worker's end reads in a session and an error.
#include "manager/backend.h"

#include <set>

#include <fmt/format.h>

namespace corral {

nlohmann::json WorkerFailure::ToJson() const {
  nlohmann::json json = {{"reason", reason},
                         {"message", message},
                         {"exit_code", nullptr},
                         {"signal", nullptr},
                         {"memory_peak_bytes", memory_peak_bytes}};
  if (exit_code >= 0) json["exit_code"] = exit_code;
  if (signal > 0) json["signal"] = signal;
  if (seccomp_syscall >= 0) json["seccomp_syscall"] = seccomp_syscall;
  return json;
}

WorkerFailure WorkerFailure::FromStatus(const Status& status) {
  WorkerFailure failure;
  failure.reason = status.reason();
  failure.message = status.message();
  nlohmann::json details = nlohmann::json::parse(status.details_json(), nullptr, false);
  if (!details.is_object() || !details.contains("failure")) return failure;
  const nlohmann::json& json = details["failure"];
  if (json.value("exit_code", nlohmann::json()).is_number_integer()) {
    failure.exit_code = json["exit_code"].get<int>();
  }
  if (json.value("signal", nlohmann::json()).is_number_integer()) {
    failure.signal = json["signal"].get<int>();
  }
  failure.seccomp_syscall = json.value("seccomp_syscall", -1L);
  failure.memory_peak_bytes = json.value("memory_peak_bytes", uint64_t{0});
  if (json.value("message", nlohmann::json()).is_string()) failure.message = json["message"];
  return failure;
}

WorkerFailure FailureFromOutcome(const Outcome& outcome) {
  WorkerFailure failure;
  failure.exit_code = outcome.exit_code;
  failure.signal = outcome.signal;
  failure.seccomp_syscall = outcome.seccomp_syscall;
  failure.memory_peak_bytes = outcome.memory_peak_bytes;
  switch (outcome.reason) {
    case OutcomeReason::kExited:
      failure.reason = "worker_crashed";
      failure.message = fmt::format("the worker exited with status {}", outcome.exit_code);
      break;
    case OutcomeReason::kSignaled:
      failure.reason = "worker_crashed";
      failure.message = fmt::format("the worker was killed by signal {}", outcome.signal);
      break;
    default:
      failure.reason = std::string(OutcomeReasonName(outcome.reason));
      failure.message = outcome.message.empty() ? failure.reason : outcome.message;
      break;
  }
  return failure;
}

bool IsWorkerDeath(const Status& status) {
  static const std::set<std::string, std::less<>> kDeaths = {
      "wall_timeout",          "oom_killed",        "pids_limit",     "cpu_timeout",
      "output_limit",          "seccomp_violation", "worker_crashed", "worker_exited",
      "worker_protocol_error", "killed_by_request"};
  return kDeaths.count(status.reason()) > 0;
}

}  // namespace corral
