// The pool backend: warm sandboxed workers (manager/worker_pool.h) shared by many sessions of
// one tenant, with each session's definitions in a session store (manager/session_store.h), so
// that any worker can serve any session, a dead worker loses no session, and sessions and
// their programs outlive a daemon restart.
//
// A request goes to the worker that last served its session when that one is free; otherwise,
// under `pool.affinity: spread`, to any free worker of its tenant, where the session's programs
// are first re-created from the store (the response says so in `programs_recreated`; a python
// program's module-level state starts again there). Under `strict` it waits for its worker.
//
// Thread safety: as Backend (manager/backend.h).
#pragma once

#include <memory>
#include <string>

#include "manager/backend.h"
#include "manager/config.h"
#include "manager/sandbox_worker.h"
#include "manager/session_store.h"
#include "manager/worker_pool.h"

namespace corral {

class PoolBackend : public Backend {
 public:
  // Opens the store, checks the pool's policy and starts the workers (Ready() says when they
  // answer). `launcher` must outlive the backend.
  static Result<std::unique_ptr<PoolBackend>> Create(const DaemonConfig& config,
                                                     WorkerLauncher* launcher);
  ~PoolBackend() override;

  std::string_view name() const override { return "pool"; }
  Status Ready() const override;
  Status CheckPolicy(const std::string& policy) override;
  Result<std::unique_ptr<Worker>> Start(const WorkerSpec& spec,
                                        FailureCallback on_failure) override;
  uint64_t max_sessions() const override { return config_.pool.max_concurrent_sessions; }
  std::chrono::milliseconds max_idle() const override { return config_.pool.max_idle; }
  std::chrono::milliseconds call_timeout() const override { return config_.pool.call_timeout; }
  Result<std::vector<PersistedSession>> Restore() override;

  // GET /v1/pool: the workers, the queue and the store.
  nlohmann::json Stats();

  // What the pool's sessions share; public for the session handles in pool_backend.cc.
  struct Shared {
    const DaemonConfig config;
    std::unique_ptr<SessionStore> store;
    std::unique_ptr<WorkerPool> pool;
    const WorkerLimits limits;  // of the pool's policy, shared by every session of a worker
  };

  std::optional<std::string> fixed_policy() const override { return config_.pool.policy; }

 private:
  PoolBackend(const DaemonConfig& config, std::shared_ptr<Shared> shared);

  const DaemonConfig config_;
  std::shared_ptr<Shared> shared_;  // session handles hold it too
};

}  // namespace corral
