// ProcessBackend: one sandboxed Python worker per session (ARCHITECTURE.md "Backends").
//
// Each worker is `python3 -I /opt/corral/worker.py` launched under the session's policy, with
// the worker directory bound read-only at /opt/corral and its protocol channel at fd 3. A
// crash, an OOM kill, a limit or a timeout ends that worker alone; the launcher's outcome says
// which, and the session is told once through its failure callback.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "manager/backend.h"
#include "manager/config.h"
#include "manager/lm_gateway.h"
#include "manager/memory_budget.h"
#include "sandbox/launcher.h"
#include "sandbox/policy.h"

namespace corral {

class ProcessBackend : public Backend {
 public:
  // Opens the launcher under `config.cgroup_parent`, removes what a crashed previous run left
  // there, and checks that the default policy loads and can run on this host. `gateway`
  // (optional; it must outlive the backend) answers the workers' model requests.
  static Result<std::unique_ptr<ProcessBackend>> Create(const DaemonConfig& config,
                                                        LmGateway* gateway = nullptr);

  std::string_view name() const override { return "process"; }
  Status Ready() const override;
  Status CheckPolicy(const std::string& policy) override;
  Result<std::unique_ptr<Worker>> Start(const WorkerSpec& spec,
                                        FailureCallback on_failure) override;

 private:
  ProcessBackend(const DaemonConfig& config, std::unique_ptr<Launcher> launcher,
                 uint64_t memory_budget, LmGateway* gateway);
  // The parsed policy `name` from the policies directory, loaded once.
  Result<Policy> LoadPolicy(const std::string& name);

  const DaemonConfig config_;
  std::unique_ptr<Launcher> launcher_;
  MemoryBudget memory_;  // every live worker holds a lease of its policy's memory limit
  LmGateway* const gateway_;

  std::mutex policies_mutex_;  // guards policies_
  std::map<std::string, Policy> policies_;
};

}  // namespace corral
