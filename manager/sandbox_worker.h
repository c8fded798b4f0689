// One sandboxed Python worker and the daemon's end of its channel: the launch that both
// backends share. The process backend gives each session a SandboxWorker of its own; the pool
// backend keeps a few and serves many sessions of one tenant with each.
//
// WorkerLauncher owns what every worker of this daemon shares: the sandbox launcher (one
// cgroup parent, so a crashed run's leftovers are found in one tree), the memory budget (so
// no sandbox is ever OOM-killed for another's use, whichever backend started it) and the
// parsed policies.
//
// Thread safety: WorkerLauncher may be used from any thread. A SandboxWorker's Call() is not
// re-entrant (one request at a time); Stop(), Info() and pid() may be called from any thread,
// also while a call runs.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "manager/backend.h"
#include "manager/config.h"
#include "manager/lm_gateway.h"
#include "manager/memory_budget.h"
#include "sandbox/launcher.h"
#include "sandbox/log.h"
#include "sandbox/policy.h"

namespace corral {

struct SandboxWorkerSpec {
  std::string name;    // the sandbox's name: its cgroup, and the id on its log lines
  LogContext context;  // session (or pool slot) and tenant of the launch's log lines
  std::string policy;  // a shipped policy name
  bool pool = false;   // the worker serves many sessions: every request names its session
};

// Who a request is for: the session whose programs run and whose model quota a model request
// spends. The daemon sets it per call; a tenant can never choose it.
struct CallerIdentity {
  std::string session_id;
  std::string tenant;
  LogContext context;
};

class SandboxWorker {
 public:
  virtual ~SandboxWorker() = default;  // kills the worker and waits until it is gone

  // Runs one worker command until `deadline`. Errors as Worker::Call (manager/backend.h): the
  // worker's own error type, `wall_timeout` (the worker was killed), or the reason it died.
  // In pool mode the request names `caller.session_id`.
  virtual Result<nlohmann::json> Call(const std::string& command, const nlohmann::json& args,
                                      std::chrono::steady_clock::time_point deadline,
                                      const CallerIdentity& caller) = 0;
  // Kills the worker for good; does not block; a running call fails; `on_failure` will not run.
  virtual void Stop(OutcomeReason reason) = 0;
  // Kills the worker as if it died (`on_failure` runs). Takes no lock the launcher holds while
  // it calls `on_failure`, so it may be called under the lock that callback takes.
  virtual void Kill(OutcomeReason reason) = 0;
  virtual WorkerInfo Info() const = 0;
  virtual pid_t pid() const = 0;
  // False once the worker's process has exited or its channel has failed.
  virtual bool Alive() const = 0;
};

class WorkerLauncher {
 public:
  // Opens the launcher under `config.cgroup_parent`, removes what a crashed previous run left
  // there, and resolves the memory budget. `gateway` (optional; it must outlive every worker)
  // answers the workers' model requests.
  static Result<std::unique_ptr<WorkerLauncher>> Create(const DaemonConfig& config,
                                                        LmGateway* gateway);

  // The parsed policy `name` from the policies directory, loaded once; policy_not_found or
  // policy_unsupported (this host lacks what it needs).
  Result<Policy> LoadPolicy(const std::string& name);

  // Launches a worker and returns once it answered ping within `start_timeout`; errors carry
  // reason worker_start_failed, memory_budget_exhausted or the policy's. `on_failure` runs at
  // most once, on a launcher thread, if the worker later dies on its own; never after Stop().
  Result<std::unique_ptr<SandboxWorker>> Start(const SandboxWorkerSpec& spec,
                                               FailureCallback on_failure,
                                               std::chrono::milliseconds start_timeout);

 private:
  WorkerLauncher(const DaemonConfig& config, std::unique_ptr<Launcher> launcher,
                 uint64_t memory_budget, LmGateway* gateway);

  const DaemonConfig config_;
  std::unique_ptr<Launcher> launcher_;
  MemoryBudget memory_;  // every live worker holds a lease of its policy's memory limit
  LmGateway* const gateway_;

  std::mutex policies_mutex_;  // guards policies_
  std::map<std::string, Policy> policies_;
};

}  // namespace corral
