#include "manager/worker_pool.h"

#include <algorithm>

namespace corral {
namespace {

const Logger kLog("pool");

enum SlotState { kStarting, kReady, kBusy, kRecycling, kFailed };

}  // namespace

std::string_view PoolSlotStateName(int state) {
  switch (state) {
    case kStarting:
      return "starting";
    case kReady:
      return "ready";
    case kBusy:
      return "busy";
    case kRecycling:
      return "recycling";
    default:
      return "failed";
  }
}

struct WorkerPool::Slot {
  int index = 0;
  int state = kStarting;
  // Shared so that a worker can be stopped or read outside the pool's lock (its launcher's exit
  // callback takes that lock while the launcher holds its own) without being freed meanwhile.
  std::shared_ptr<SandboxWorker> worker;
  uint64_t incarnation = 0;              // bumped at each start
  std::string tenant;                    // the one tenant this worker has served; empty: fresh
  std::map<std::string, uint64_t> held;  // session -> generation of its programs in the worker
  std::set<std::string> pending_drops;   // ended sessions the worker still holds
  std::string serving;                   // session of the request running in it
  Waiter* reserved_for = nullptr;        // restarting for this waiter (another tenant's)
  bool restart = false;                  // the keeper must (re)start the worker
  bool started_once = false;             // its first start finished (or it failed out)
  uint64_t requests = 0;
  uint64_t max_requests = 0;    // recycled after this many (StaggeredMaxRequests)
  uint64_t start_failures = 0;  // in a row
  std::string last_error;
  Clock::time_point retry_at{};
  std::condition_variable wake;  // the keeper waits on it
  std::thread keeper;
};

struct WorkerPool::Waiter {
  std::string session;
  std::string tenant;
  PoolAffinity affinity;
  Clock::time_point since = Clock::now();
  Slot* granted = nullptr;
  Slot* reserved = nullptr;  // a slot restarting for it
  bool cancelled = false;
  Status error;  // set when the pool can no longer serve it
  std::condition_variable wake;
};

// --- leases ----------------------------------------------------------------------------------

WorkerPool::Lease::Lease(Lease&& other) noexcept
    : pool_(other.pool_), slot_(other.slot_), broken_(other.broken_) {
  other.slot_ = nullptr;
}

WorkerPool::Lease::~Lease() {
  if (slot_ == nullptr) return;
  // Memory is read outside the pool's lock (it reads cgroup files) and only every few
  // requests: a worker that grew past its bound is recycled between requests.
  bool over_memory = false;
  uint64_t limit = pool_->options_.worker_max_memory;
  if (!broken_ && limit > 0 && slot_->requests % 8 == 7) {
    over_memory = slot_->worker->Info().usage.memory_bytes > limit;
  }
  pool_->Release(slot_, broken_, over_memory);
}

SandboxWorker& WorkerPool::Lease::worker() {
  return *slot_->worker;
}

PoolAffinity WorkerPool::Lease::affinity() const {
  return {slot_->index, slot_->incarnation};
}

pid_t WorkerPool::Lease::pid() const {
  return slot_->worker->pid();
}

bool WorkerPool::Lease::Holds(const std::string& session, uint64_t generation) const {
  std::lock_guard<std::mutex> lock(pool_->mutex_);
  auto it = slot_->held.find(session);
  return it != slot_->held.end() && it->second == generation;
}

bool WorkerPool::Lease::HoldsAny(const std::string& session) const {
  std::lock_guard<std::mutex> lock(pool_->mutex_);
  return slot_->held.count(session) > 0;
}

void WorkerPool::Lease::SetHolds(const std::string& session, uint64_t generation) {
  std::lock_guard<std::mutex> lock(pool_->mutex_);
  slot_->held[session] = generation;
}

std::set<std::string> WorkerPool::Lease::TakePendingDrops() {
  std::lock_guard<std::mutex> lock(pool_->mutex_);
  return std::exchange(slot_->pending_drops, {});
}

// --- life ------------------------------------------------------------------------------------

WorkerPool::WorkerPool(WorkerPoolOptions options, WorkerLauncher* launcher)
    : options_(std::move(options)), launcher_(launcher) {
  for (uint64_t i = 0; i < options_.size; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->index = static_cast<int>(i);
    slot->restart = true;
    slots_.push_back(std::move(slot));
  }
}

void WorkerPool::Start() {
  for (auto& slot : slots_) {
    Slot* raw = slot.get();
    raw->keeper = std::thread([this, raw] { KeeperLoop(raw); });
  }
}

WorkerPool::~WorkerPool() {
  std::vector<std::shared_ptr<SandboxWorker>> workers;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    for (Waiter* waiter : queue_) waiter->wake.notify_all();
    for (auto& slot : slots_) {
      slot->wake.notify_all();
      if (slot->worker) workers.push_back(slot->worker);
    }
  }
  for (auto& worker : workers) worker->Stop(OutcomeReason::kKilledByRequest);
  workers.clear();
  for (auto& slot : slots_) {
    if (slot->keeper.joinable()) slot->keeper.join();
  }
  for (auto& slot : slots_) slot->worker.reset();  // blocks until each is gone
}

Status WorkerPool::Ready() {
  std::lock_guard<std::mutex> lock(mutex_);
  size_t serving = 0;
  for (const auto& slot : slots_) {
    if (!slot->started_once) {
      return Status::Unavailable(fmt::format("pool worker {} is starting", slot->index))
          .WithReason("pool_starting");
    }
    serving += InRotation(*slot);
  }
  if (serving == 0) {
    return Status::Unavailable("no pool worker could be started (GET /v1/pool says why)")
        .WithReason("pool_unavailable");
  }
  return Status::Ok();
}

// --- the keeper ------------------------------------------------------------------------------

void WorkerPool::KeeperLoop(Slot* slot) {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    if (!slot->restart) {
      slot->wake.wait(lock);
      continue;
    }
    if (Clock::now() < slot->retry_at) {
      slot->wake.wait_until(lock, slot->retry_at);
      continue;
    }
    StartWorker(slot, lock);
  }
}

// Replaces the slot's worker. Called with the lock held; releases it while the old worker
// ends and the new one starts.
void WorkerPool::StartWorker(Slot* slot, std::unique_lock<std::mutex>& lock) {
  std::shared_ptr<SandboxWorker> old = std::move(slot->worker);
  uint64_t incarnation = ++slot->incarnation;
  // The sandbox (and cgroup) name of a pool worker holds "..", which no session id may hold:
  // a client can never create a session whose cgroup takes a pool worker's name.
  std::string name = fmt::format("pool..{}..{}", slot->index, incarnation);
  lock.unlock();
  old.reset();  // the old worker and its cgroup are gone before a new one starts

  SandboxWorkerSpec spec{name, LogContext{name, ""}, options_.policy, true};
  Result<std::unique_ptr<SandboxWorker>> started = launcher_->Start(
      spec, [this, slot, incarnation](const WorkerFailure&) { OnWorkerDied(slot, incarnation); },
      options_.start_timeout);
  lock.lock();
  if (stopping_) {
    if (started.ok()) slot->worker = std::move(started).value();  // the destructor ends it
    return;
  }
  if (started.ok()) {
    slot->worker = std::move(started).value();
    slot->state = kReady;
    slot->tenant.clear();
    slot->held.clear();
    slot->pending_drops.clear();
    slot->requests = 0;
    slot->max_requests = StaggeredMaxRequests(*slot);
    slot->start_failures = 0;
    slot->restart = false;
    slot->started_once = true;
    HandOff(slot);
    return;
  }
  ++slot->start_failures;
  slot->last_error = started.status().ToString();
  if (slot->reserved_for != nullptr) slot->reserved_for->reserved = nullptr;
  slot->reserved_for = nullptr;
  if (slot->start_failures >= options_.max_start_failures) {
    kLog.Error(spec.context,
               "pool worker {} failed to start {} times, out of rotation; next try in {} s: {}",
               slot->index, slot->start_failures, options_.failed_retry.count() / 1000,
               slot->last_error);
    slot->state = kFailed;
    slot->started_once = true;
    // Out of rotation, not forever: what failed it (memory budget taken, a cgroup name in use)
    // may clear. One try per `failed_retry`, never a tight loop.
    slot->retry_at = Clock::now() + options_.failed_retry;
    FailWaitersIfNoneServes();
    return;
  }
  auto backoff = options_.restart_backoff * (1 << std::min<uint64_t>(slot->start_failures, 10));
  kLog.Warn(spec.context, "pool worker {} failed to start, retrying in {} ms: {}", slot->index,
            backoff.count() / 2, slot->last_error);
  slot->retry_at = Clock::now() + backoff / 2;
}

// worker_max_requests less up to a tenth, spread over slots and incarnations: workers started
// together would otherwise all be recycled in the same few seconds, emptying the pool at once.
uint64_t WorkerPool::StaggeredMaxRequests(const Slot& slot) const {
  uint64_t spread = options_.worker_max_requests / 10;
  uint64_t step = (static_cast<uint64_t>(slot.index) * 7 + slot.incarnation * 3) % 10;
  return options_.worker_max_requests - spread * step / 10;
}

// The launcher saw the worker end on its own (crash, OOM kill) while it may have been idle.
void WorkerPool::OnWorkerDied(Slot* slot, uint64_t incarnation) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopping_ || slot->incarnation != incarnation) return;
  if (slot->state == kReady) Restart(slot);  // a busy slot learns it from its request
}

void WorkerPool::Restart(Slot* slot) {
  slot->state = kRecycling;
  slot->restart = true;
  slot->wake.notify_all();
}

bool WorkerPool::InRotation(const Slot& slot) const {
  return slot.state != kFailed;
}

void WorkerPool::FailWaitersIfNoneServes() {
  for (const auto& slot : slots_) {
    if (InRotation(*slot)) return;
  }
  for (Waiter* waiter : queue_) {
    waiter->error = Status::Unavailable("no pool worker can be started (GET /v1/pool says why)")
                        .WithReason("pool_unavailable");
    waiter->wake.notify_all();
  }
  queue_.clear();
}

// --- matching requests and workers ----------------------------------------------------------

bool WorkerPool::Idle(const Slot& slot, const Waiter* waiter) const {
  return slot.state == kReady && (slot.reserved_for == nullptr || slot.reserved_for == waiter);
}

// Whether `slot` may serve `waiter` now without a restart: same tenant or a fresh worker, and
// under strict affinity only the worker that holds the session's programs.
bool WorkerPool::Eligible(const Slot& slot, const Waiter& waiter) const {
  if (!slot.tenant.empty() && slot.tenant != waiter.tenant) return false;
  if (slot.tenant.empty() && !MayGrow(waiter.tenant)) return false;
  const Slot* home = Home(waiter);
  return home == nullptr || home == &slot;
}

// Under strict affinity, the live worker that holds the waiter's session; else null.
const WorkerPool::Slot* WorkerPool::Home(const Waiter& waiter) const {
  if (!options_.strict_affinity || waiter.affinity.slot < 0) return nullptr;
  const Slot& home = *slots_[waiter.affinity.slot];
  bool holds = InRotation(home) && home.incarnation == waiter.affinity.incarnation &&
               home.held.count(waiter.session) > 0;
  return holds ? &home : nullptr;
}

// A ready worker whose process already died (the launcher has not told us yet) is restarted,
// never handed a request that would fail for a death it did not cause. Requires mutex_.
bool WorkerPool::Alive(Slot* slot) {
  if (slot->worker && slot->worker->Alive()) return true;
  Restart(slot);
  return false;
}

WorkerPool::Slot* WorkerPool::PickIdle(const Waiter& waiter) {
  if (waiter.affinity.slot >= 0 && waiter.affinity.slot < static_cast<int>(slots_.size())) {
    Slot* home = slots_[waiter.affinity.slot].get();
    if (Idle(*home, &waiter) && Eligible(*home, waiter) && Alive(home)) return home;
  }
  Slot* fresh = nullptr;
  for (const auto& slot : slots_) {
    if (!Idle(*slot, &waiter) || !Eligible(*slot, waiter) || !Alive(slot.get())) continue;
    if (slot->tenant == waiter.tenant) return slot.get();  // warm for this tenant
    if (fresh == nullptr) fresh = slot.get();
  }
  return fresh;
}

void WorkerPool::Grant(Slot* slot, Waiter* waiter) {
  auto it = std::find(queue_.begin(), queue_.end(), waiter);
  if (it != queue_.end()) queue_.erase(it);
  if (waiter->reserved != nullptr && waiter->reserved != slot) {
    waiter->reserved->reserved_for = nullptr;  // it restarts anyway and serves whoever is next
  }
  waiter->reserved = nullptr;
  slot->reserved_for = nullptr;
  slot->state = kBusy;
  slot->serving = waiter->session;
  if (slot->tenant.empty()) slot->tenant = waiter->tenant;
  waiter->granted = slot;
  waiter->wake.notify_all();
}

// No idle worker suits the waiter: an idle worker of another tenant is restarted for it.
// Whether `tenant` may take one more worker under `max_workers_per_tenant`: with many tenants
// on one pool, one tenant's long calls must not hold every worker.
bool WorkerPool::MayGrow(const std::string& tenant) const {
  if (options_.max_workers_per_tenant == 0) return true;
  uint64_t held = 0;
  for (const auto& slot : slots_) {
    bool reserved = slot->reserved_for != nullptr && slot->reserved_for->tenant == tenant;
    held += reserved || (InRotation(*slot) && slot->tenant == tenant);
  }
  return held < options_.max_workers_per_tenant;
}

void WorkerPool::RecycleFor(Waiter* waiter) {
  if (waiter->reserved != nullptr || Home(*waiter) != nullptr) return;
  if (!MayGrow(waiter->tenant)) return;
  for (const auto& slot : slots_) {
    if (slot->state != kReady || slot->reserved_for != nullptr) continue;
    if (slot->tenant.empty() || slot->tenant == waiter->tenant) continue;
    kLog.Info(LogContext{waiter->session, waiter->tenant},
              "pool worker {} changes tenant `{}` -> `{}`: restarting it", slot->index,
              slot->tenant, waiter->tenant);
    slot->reserved_for = waiter;
    waiter->reserved = slot.get();
    Restart(slot.get());
    return;
  }
}

// A ready worker looks for work: the waiter it restarted for; else a waiter of another tenant
// that has waited past `tenant_patience` (a busy tenant must not starve the others of a worker);
// else the oldest waiter it may serve as it is; else it restarts for the oldest waiter of another
// tenant.
void WorkerPool::HandOff(Slot* slot) {
  if (slot->reserved_for != nullptr) {
    Grant(slot, slot->reserved_for);
    return;
  }
  if (!Alive(slot)) return;
  Clock::time_point impatient = Clock::now() - options_.tenant_patience;
  for (Waiter* waiter : queue_) {
    if (slot->tenant.empty() || waiter->tenant == slot->tenant) break;  // serves it as it is
    if (waiter->since > impatient) continue;
    RecycleFor(waiter);
    if (waiter->reserved == slot) return;
  }
  for (Waiter* waiter : queue_) {
    if (Eligible(*slot, *waiter)) {
      Grant(slot, waiter);
      return;
    }
  }
  for (Waiter* waiter : queue_) {
    if (waiter->reserved == nullptr) {
      RecycleFor(waiter);
      if (waiter->reserved != nullptr) return;
    }
  }
}

void WorkerPool::Release(Slot* slot, bool broken, bool over_memory) {
  std::lock_guard<std::mutex> lock(mutex_);
  slot->serving.clear();
  ++slot->requests;
  if (stopping_) return;
  if (broken || over_memory || slot->requests >= slot->max_requests) {
    kLog.Info(LogContext{fmt::format("pool-{}", slot->index), slot->tenant},
              "recycling pool worker {} ({})", slot->index,
              broken        ? "it died or was killed"
              : over_memory ? "past worker_max_memory"
                            : "past worker_max_requests");
    Restart(slot);
    return;
  }
  slot->state = kReady;
  HandOff(slot);
}

Result<WorkerPool::Lease> WorkerPool::Acquire(const std::string& session, const std::string& tenant,
                                              PoolAffinity affinity, Clock::time_point deadline) {
  Waiter waiter;
  waiter.session = session;
  waiter.tenant = tenant;
  waiter.affinity = affinity;
  std::unique_lock<std::mutex> lock(mutex_);
  if (stopping_)
    return Status::Unavailable("the daemon is shutting down").WithReason("shutting_down");
  if (Slot* slot = PickIdle(waiter)) {
    Grant(slot, &waiter);
    return Lease(this, slot);
  }
  if (queue_.size() >= options_.max_queue) {
    ++rejected_;
    return Status::ResourceExhausted(
               fmt::format("{} requests already wait for a pool worker (pool.max_queue_size)",
                           queue_.size()))
        .WithReason("queue_full")
        .WithDetails(nlohmann::json{{"retry_after_s", 1}}.dump());
  }
  queue_.push_back(&waiter);
  RecycleFor(&waiter);
  waiter.wake.wait_until(lock, deadline, [&] {
    return waiter.granted != nullptr || waiter.cancelled || !waiter.error.ok() || stopping_;
  });
  double waited = std::chrono::duration<double, std::milli>(Clock::now() - waiter.since).count();
  ++waits_;
  wait_ms_sum_ += waited;
  wait_ms_max_ = std::max(wait_ms_max_, waited);
  if (waiter.granted != nullptr) return Lease(this, waiter.granted);
  return QueueStatus(waiter);
}

// Why a waiter left the queue without a worker. Requires mutex_.
Status WorkerPool::QueueStatus(const Waiter& waiter) {
  auto it = std::find(queue_.begin(), queue_.end(), &waiter);
  if (it != queue_.end()) queue_.erase(it);
  if (waiter.reserved != nullptr) waiter.reserved->reserved_for = nullptr;
  if (stopping_)
    return Status::Unavailable("the daemon is shutting down").WithReason("shutting_down");
  if (!waiter.error.ok()) return waiter.error;
  if (waiter.cancelled) {
    return Status::FailedPrecondition(fmt::format("session `{}` ended", waiter.session))
        .WithReason("session_ended");
  }
  ++expired_;
  return Status::DeadlineExceeded(
             "no pool worker became free within pool.queue_timeout; the "
             "request was not run")
      .WithReason("queue_timeout");
}

void WorkerPool::Interrupt(const std::string& session) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Waiter* waiter : queue_) {
    if (waiter->session != session) continue;
    waiter->cancelled = true;
    waiter->wake.notify_all();
  }
  // Under the lock, so the worker killed is the one running this session's request now, never
  // a neighbour's request that followed it.
  for (const auto& slot : slots_) {
    if (slot->state == kBusy && slot->serving == session) {
      slot->worker->Kill(OutcomeReason::kKilledByRequest);
    }
  }
}

void WorkerPool::Forget(const std::string& session) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& slot : slots_) {
    if (slot->held.erase(session) > 0) slot->pending_drops.insert(session);
  }
}

WorkerInfo WorkerPool::Info(PoolAffinity affinity) {
  std::shared_ptr<SandboxWorker> worker;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (affinity.slot < 0 || affinity.slot >= static_cast<int>(slots_.size())) return {};
    const Slot& slot = *slots_[affinity.slot];
    if (slot.incarnation != affinity.incarnation || !slot.worker) return {};
    worker = slot.worker;
  }
  return worker->Info();  // reads cgroup files: outside the lock
}

nlohmann::json WorkerPool::Stats() {
  std::vector<std::shared_ptr<SandboxWorker>> workers;
  nlohmann::json slots = nlohmann::json::array();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& slot : slots_) {
      workers.push_back(slot->state == kReady || slot->state == kBusy ? slot->worker : nullptr);
      slots.push_back(
          {{"index", slot->index},
           {"state", PoolSlotStateName(slot->state)},
           {"tenant",
            slot->tenant.empty() ? nlohmann::json(nullptr) : nlohmann::json(slot->tenant)},
           {"requests", slot->requests},
           {"sessions_held", slot->held.size()},
           {"start_failures", slot->start_failures},
           {"last_error", slot->last_error.empty() ? nlohmann::json(nullptr)
                                                   : nlohmann::json(slot->last_error)}});
    }
  }
  // Usage reads cgroup files: outside the lock.
  for (size_t i = 0; i < workers.size(); ++i) {
    WorkerInfo info = workers[i] != nullptr ? workers[i]->Info() : WorkerInfo{};
    slots[i]["pid"] = info.pid > 0 ? nlohmann::json(info.pid) : nlohmann::json(nullptr);
    slots[i]["memory_bytes"] = info.usage.memory_bytes;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  return {{"size", slots_.size()},
          {"workers", slots},
          {"queue",
           {{"depth", queue_.size()},
            {"max", options_.max_queue},
            {"waits", waits_},
            {"expired", expired_},
            {"rejected", rejected_},
            {"wait_ms_mean", waits_ > 0 ? wait_ms_sum_ / static_cast<double>(waits_) : 0.0},
            {"wait_ms_max", wait_ms_max_}}}};
}

}  // namespace corral
