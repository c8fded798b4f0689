// The seam between session bookkeeping (manager/session_registry.h) and the place a session's
// code runs. ProcessBackend gives every session its own sandboxed worker; PoolBackend shares
// warm workers between the sessions of one tenant, behind the same two interfaces.
//
// Thread safety: Backend methods may be called from any thread. A Worker's Call() is not
// re-entrant: the session runs its calls one at a time; Stop() and Info() may be called from
// any thread at any time, also while a call runs.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "sandbox/cgroup.h"
#include "sandbox/outcome.h"
#include "sandbox/status.h"

namespace corral {

// Why a worker stopped on its own, as the session shows it in `failure`.
struct WorkerFailure {
  std::string reason;  // oom_killed, pids_limit, seccomp_violation, wall_timeout, worker_crashed
  std::string message;
  int exit_code = -1;
  int signal = 0;
  long seccomp_syscall = -1;
  uint64_t memory_peak_bytes = 0;

  nlohmann::json ToJson() const;
  // The failure a call's error carries in details.failure; reason and message otherwise.
  static WorkerFailure FromStatus(const Status& status);
};

// Whether a call's error means its worker is gone (killed for a timeout, died, broke the
// protocol), rather than the worker refusing or failing the command.
bool IsWorkerDeath(const Status& status);

// The failure a sandbox outcome means for a session: the launcher's own reasons are kept,
// plain exits and stray signals become `worker_crashed`.
WorkerFailure FailureFromOutcome(const Outcome& outcome);

struct WorkerLimits {
  uint64_t memory_bytes = 0;
  uint64_t pids = 0;
  double cpus = 0;
};

struct WorkerInfo {
  pid_t pid = 0;
  uint32_t host_uid = 0;
  ResourceUsage usage;
  WorkerLimits limits;
  nlohmann::json backend;  // what only this backend knows, shown under its name; null: none
};

// What a session asks of a backend.
struct WorkerSpec {
  std::string session_id;
  std::string tenant;
  std::string policy;  // a shipped policy name, already validated
  std::string user_id;
  nlohmann::json metadata = nlohmann::json::object();
  std::string created_at;  // RFC 3339 UTC, for a backend that keeps sessions
};

// One session's worker.
class Worker {
 public:
  // Ends the worker if it still runs and frees everything it held; blocks until it is gone.
  virtual ~Worker() = default;

  // Runs one worker command. Errors carry a reason: the worker's own error type
  // (program_error, program_not_found, ...), `wall_timeout` (the worker was killed), or the
  // reason the worker died (oom_killed, worker_crashed, ...) with the failure in details.
  virtual Result<nlohmann::json> Call(const std::string& command, const nlohmann::json& args,
                                      std::chrono::milliseconds timeout) = 0;
  // Kills the worker (deleted, idle, shutting down). Does not block; pending calls fail.
  virtual void Stop(OutcomeReason reason) = 0;
  virtual WorkerInfo Info() const = 0;
  // The session is over for good (deleted or idle, not the daemon stopping): the backend drops
  // whatever it keeps of it beyond the worker. Called once, after Stop().
  virtual void Forget() {}
  // Whether a worker dying under a call fails the session (it does when the worker was the
  // session's own; a shared worker's death costs only the call).
  virtual bool DeathFailsSession() const { return true; }
};

// A session a backend kept across a daemon restart, with the handle that serves it again.
struct PersistedSession {
  std::string session_id;
  std::string user_id;
  std::string tenant;
  std::string policy;
  nlohmann::json metadata = nlohmann::json::object();
  std::string created_at;  // RFC 3339 UTC
  std::vector<std::string> programs;
  nlohmann::json stats = nlohmann::json::object();
  std::unique_ptr<Worker> worker;
};

using FailureCallback = std::function<void(const WorkerFailure& failure)>;

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  // Ok when sessions can be started now.
  virtual Status Ready() const = 0;
  // Checks that `policy` names a policy this backend can run (shipped and valid on this host).
  virtual Status CheckPolicy(const std::string& policy) = 0;
  // Starts a worker and returns once it answered ping. `on_failure` is called at most once,
  // from any thread, if the worker later dies on its own (crash, OOM, limits, timeout); never
  // after Stop() or destruction.
  virtual Result<std::unique_ptr<Worker>> Start(const WorkerSpec& spec,
                                                FailureCallback on_failure) = 0;
  // Live sessions of this backend at most (`max_concurrent_sessions` of its config).
  virtual uint64_t max_sessions() const = 0;
  // Idle time after which the registry ends a session of this backend.
  virtual std::chrono::milliseconds max_idle() const = 0;
  // The one policy this backend runs, when it cannot run others (the pool's).
  virtual std::optional<std::string> fixed_policy() const { return std::nullopt; }
  // Default wall time of one call.
  virtual std::chrono::milliseconds call_timeout() const = 0;
  // The sessions this backend kept from a previous run (once, at start).
  virtual Result<std::vector<PersistedSession>> Restore() {
    return std::vector<PersistedSession>{};
  }
};

}  // namespace corral
