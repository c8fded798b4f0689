// The pool backend's workers: `pool.size` sandboxed Python workers, each serving the sessions of
// one tenant at a time, and the bounded queue where requests wait for one.
//
// Sessions that share a worker share an interpreter, and tenant code can reach anything in it
// (gc, frames, module globals). So a worker carries one tenant from its first request until it
// is replaced: a worker that ran code for tenant A is restarted fresh before any session of
// tenant B is handed to it. The sessions of one tenant share its workers; that is the pool's
// purpose, and they are namespaced, not isolated, from each other.
//
// Each slot has a keeper thread that (re)starts its worker: at start, after a crash, an OOM
// kill or a timeout, after `worker_max_requests` or past `worker_max_memory`, and to change
// tenants. A slot whose worker fails to start `max_start_failures` times in a row is taken out
// of rotation (state `failed`) and reported, never retried in a tight loop.
//
// Thread safety: every method may be called from any thread. The pool's mutex is never held
// while a worker starts, stops or runs a request.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "manager/sandbox_worker.h"

namespace corral {

struct WorkerPoolOptions {
  uint64_t size = 10;
  std::string policy = "default";
  bool strict_affinity = false;  // wait for the worker that holds the session's programs
  uint64_t max_queue = 1000;
  uint64_t worker_max_requests = 10000;
  uint64_t worker_max_memory = 0;  // bytes; 0: never recycled for memory
  uint64_t max_start_failures = 3;
  std::chrono::milliseconds restart_backoff{1000};
  std::chrono::milliseconds failed_retry{60000};  // a slot out of rotation tries again after it
  uint64_t max_workers_per_tenant = 0;            // 0: no cap
  std::chrono::milliseconds start_timeout{10000};
  // A request of another tenant that has waited this long gets the next free worker (restarted
  // for it) ahead of the worker's own tenant.
  std::chrono::milliseconds tenant_patience{1250};
};

// Where a session last ran: a slot and the incarnation of its worker (a restarted worker holds
// nothing of what its predecessor held).
struct PoolAffinity {
  int slot = -1;
  uint64_t incarnation = 0;
};

class WorkerPool {
 public:
  using Clock = std::chrono::steady_clock;
  struct Slot;
  struct Waiter;

  // Exclusive use of one worker for one request. Given back on destruction: the worker is
  // handed to the next waiter, or restarted when MarkBroken() was called or it is due.
  class Lease {
   public:
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&&) = delete;
    ~Lease();

    SandboxWorker& worker();
    PoolAffinity affinity() const;
    pid_t pid() const;
    // Whether this worker holds `session`'s programs at `generation`.
    bool Holds(const std::string& session, uint64_t generation) const;
    bool HoldsAny(const std::string& session) const;
    void SetHolds(const std::string& session, uint64_t generation);
    // Sessions that ended since this worker last ran: drop them from it first.
    std::set<std::string> TakePendingDrops();
    // The worker died or was killed under this request: restart it.
    void MarkBroken() { broken_ = true; }

   private:
    friend class WorkerPool;
    Lease(WorkerPool* pool, Slot* slot) : pool_(pool), slot_(slot) {}
    WorkerPool* pool_;
    Slot* slot_;
    bool broken_ = false;
  };

  WorkerPool(WorkerPoolOptions options, WorkerLauncher* launcher);
  ~WorkerPool();  // fails waiting requests, stops the keepers, ends every worker
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Starts every slot's keeper, which starts its worker.
  void Start();
  // Ok once every slot finished its first start (ready, or out of rotation) and one serves.
  Status Ready();

  // Waits until a worker may serve `session` of `tenant`, at most until `deadline`. Errors:
  // 429 queue_full, 504 queue_timeout (never sent to a worker), 503 pool_unavailable,
  // shutting_down, or session_ended when Interrupt() cancelled the wait.
  Result<Lease> Acquire(const std::string& session, const std::string& tenant,
                        PoolAffinity affinity, Clock::time_point deadline);
  // The session is ending: a request of it waiting in the queue is cancelled, and a worker
  // running one is killed (and restarted), so the session's end never waits for a call.
  void Interrupt(const std::string& session);
  // The session ended for good: every worker that holds its programs drops them before it
  // next runs anything.
  void Forget(const std::string& session);

  // The pid, host uid and usage of the worker at `affinity`, if that worker still runs.
  WorkerInfo Info(PoolAffinity affinity);
  // GET /v1/pool: workers, queue, wait times.
  nlohmann::json Stats();

 private:
  bool InRotation(const Slot& slot) const;
  bool Idle(const Slot& slot, const Waiter* waiter) const;
  bool Alive(Slot* slot);
  bool Eligible(const Slot& slot, const Waiter& waiter) const;
  const Slot* Home(const Waiter& waiter) const;
  bool MayGrow(const std::string& tenant) const;
  Slot* PickIdle(const Waiter& waiter);
  void Grant(Slot* slot, Waiter* waiter);
  void RecycleFor(Waiter* waiter);
  void Restart(Slot* slot);
  void HandOff(Slot* slot);
  void Release(Slot* slot, bool broken, bool over_memory);
  void FailWaitersIfNoneServes();
  Status QueueStatus(const Waiter& waiter);

  uint64_t StaggeredMaxRequests(const Slot& slot) const;
  void KeeperLoop(Slot* slot);
  void StartWorker(Slot* slot, std::unique_lock<std::mutex>& lock);
  void OnWorkerDied(Slot* slot, uint64_t incarnation);

  const WorkerPoolOptions options_;
  WorkerLauncher* const launcher_;

  std::mutex mutex_;  // guards every slot's state, queue_, the counters and stopping_
  std::vector<std::unique_ptr<Slot>> slots_;
  std::deque<Waiter*> queue_;
  bool stopping_ = false;
  uint64_t waits_ = 0;
  uint64_t expired_ = 0;
  uint64_t rejected_ = 0;
  double wait_ms_sum_ = 0;
  double wait_ms_max_ = 0;
};

std::string_view PoolSlotStateName(int state);

}  // namespace corral
