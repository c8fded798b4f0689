#include "manager/pool_backend.h"

#include <algorithm>

#include "manager/session.h"

namespace corral {
namespace {

using Clock = std::chrono::steady_clock;

const Logger kLog("pool_backend");

// Stats reach the store every this many calls, and when the session's handle goes (daemon
// stop); a `kill -9` loses at most this many calls' worth of counts, never a definition.
constexpr uint64_t kStatsEvery = 100;

// The commands a client may send to a pool session. `drop_session` is the pool's own: a
// client naming another session in it must never reach that session's programs.
bool IsClientCommand(const std::string& command) {
  static const std::set<std::string, std::less<>> kCommands = {
      "ping", "create_program", "execute_program", "list_programs", "delete_program", "get_stats"};
  return kCommands.count(command) > 0;
}

std::string NowRfc3339() {
  return Rfc3339(std::chrono::system_clock::now());
}

// One pool session's handle: it routes each call to a worker of the pool, first making that
// worker hold the session's programs as the store has them. Calls of one session arrive one
// at a time (Session's queue), so the members below the mutex change only on the calling
// thread; the mutex is for Info() from other threads.
class PoolSession : public Worker {
 public:
  PoolSession(std::shared_ptr<PoolBackend::Shared> shared, StoredSession record)
      : shared_(std::move(shared)),
        record_(std::move(record)),
        context_{record_.id, record_.tenant},
        programs_(std::move(record_.programs)) {
    calls_ = record_.stats.value("calls", uint64_t{0});
    errors_ = record_.stats.value("errors", uint64_t{0});
    executions_ = record_.stats.value("executions", uint64_t{0});
    recreations_ = record_.stats.value("recreations", uint64_t{0});
  }

  ~PoolSession() override {
    if (!forgotten_) SaveStats();
  }

  Result<nlohmann::json> Call(const std::string& command, const nlohmann::json& args,
                              std::chrono::milliseconds timeout) override {
    if (!IsClientCommand(command)) {
      return Status::InvalidArgument(fmt::format("unknown command `{}`", command.substr(0, 100)))
          .WithReason("unknown_command");
    }
    // pool.call_timeout is the ceiling too: a request holds a worker that other sessions (and,
    // between its restarts, other tenants) wait for.
    timeout = std::min(timeout, shared_->config.pool.call_timeout);
    Clock::time_point queued_until = Clock::now() + shared_->config.pool.queue_timeout;
    Result<nlohmann::json> result = Attempt(command, args, queued_until, timeout);
    // A worker that died before it received the request (between two requests, say) cost the
    // request nothing: it runs once more, on another worker. A request it did receive is never
    // repeated, since it may be what killed the worker.
    if (!result.ok() && Undelivered(result.status())) {
      kLog.Info(context_, "worker was gone before the request reached it: running it elsewhere");
      result = Attempt(command, args, queued_until, timeout);
    }
    return Count(command, std::move(result));
  }

  void Stop(OutcomeReason) override { shared_->pool->Interrupt(record_.id); }

  void Forget() override {
    forgotten_ = true;
    Status deleted = shared_->store->DeleteSession(record_.id);
    if (!deleted.ok()) kLog.Error(context_, "forget session: {}", deleted.ToString());
    shared_->pool->Forget(record_.id);
  }

  bool DeathFailsSession() const override { return false; }

  WorkerInfo Info() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    // The worker that last served the session, while it still runs: its usage is shared with
    // the tenant's other sessions (`shared_limits`).
    WorkerInfo info = shared_->pool->Info(affinity_);
    if (info.pid == 0) info.pid = last_pid_;
    info.limits = shared_->limits;
    info.backend = {
        {"worker", affinity_.slot >= 0 ? nlohmann::json(affinity_.slot) : nlohmann::json()},
        {"recreations", recreations_},
        {"shared_limits", true}};
    return info;
  }

 private:
  Result<nlohmann::json> Attempt(const std::string& command, const nlohmann::json& args,
                                 Clock::time_point queued_until,
                                 std::chrono::milliseconds timeout) {
    CORRAL_ASSIGN_OR_RETURN(
        WorkerPool::Lease lease,
        shared_->pool->Acquire(record_.id, record_.tenant, affinity_, queued_until));
    Result<nlohmann::json> result = Serve(lease, command, args, Clock::now() + timeout);
    std::lock_guard<std::mutex> lock(mutex_);
    affinity_ = lease.affinity();
    last_pid_ = lease.pid();
    return result;
  }

  static bool Undelivered(const Status& status) {
    if (!IsWorkerDeath(status)) return false;
    nlohmann::json details = nlohmann::json::parse(status.details_json(), nullptr, false);
    return details.is_object() && details.value("delivered", true) == false;
  }

  // The command on a leased worker: ended sessions it held dropped, this session's programs
  // made current, the command run, and a change of programs written to the store before the
  // client hears of it.
  Result<nlohmann::json> Serve(WorkerPool::Lease& lease, const std::string& command,
                               const nlohmann::json& args, Clock::time_point deadline) {
    CORRAL_TRY(DropEnded(lease, deadline));
    CORRAL_ASSIGN_OR_RETURN(size_t recreated, SyncPrograms(lease, deadline));
    CORRAL_ASSIGN_OR_RETURN(nlohmann::json result, Run(lease, record_.id, command, args, deadline));
    CORRAL_TRY(Persist(lease, command, args, deadline));
    if (recreated > 0 && result.is_object()) result["programs_recreated"] = recreated;
    return result;
  }

  Result<nlohmann::json> Run(WorkerPool::Lease& lease, const std::string& session,
                             const std::string& command, const nlohmann::json& args,
                             Clock::time_point deadline) {
    CallerIdentity caller{session, record_.tenant, LogContext{session, record_.tenant}};
    Result<nlohmann::json> result = lease.worker().Call(command, args, deadline, caller);
    if (!result.ok() && IsWorkerDeath(result.status())) lease.MarkBroken();
    return result;
  }

  Status DropEnded(WorkerPool::Lease& lease, Clock::time_point deadline) {
    for (const std::string& ended : lease.TakePendingDrops()) {
      nlohmann::json args = {{"session_id", ended}};
      Result<nlohmann::json> dropped = Run(lease, ended, "drop_session", args, deadline);
      if (!dropped.ok()) return dropped.status();
    }
    return Status::Ok();
  }

  // Re-creates the session's programs on a worker that does not hold them as they are now.
  // Returns how many were re-created.
  Result<size_t> SyncPrograms(WorkerPool::Lease& lease, Clock::time_point deadline) {
    if (lease.Holds(record_.id, generation_)) return size_t{0};
    if (lease.HoldsAny(record_.id)) {
      nlohmann::json args = {{"session_id", record_.id}};
      CORRAL_TRY(Run(lease, record_.id, "drop_session", args, deadline).status());
    }
    for (const StoredProgram& program : programs_) {
      Result<nlohmann::json> created =
          Run(lease, record_.id, "create_program", program.definition, deadline);
      if (!created.ok() && IsWorkerDeath(created.status())) return created.status();
      // A program whose top level fails now (it read the clock, say) stays missing here; its
      // next execute says program_not_found for it rather than running something else.
      if (!created.ok()) {
        kLog.Warn(context_, "re-creating program `{}` failed: {}", program.program_id,
                  created.status().ToString());
      }
    }
    lease.SetHolds(record_.id, generation_);
    if (programs_.empty()) return size_t{0};
    std::lock_guard<std::mutex> lock(mutex_);
    ++recreations_;
    return programs_.size();
  }

  // A program created or deleted on the worker is written to the store before the reply; a
  // create the store cannot keep is undone on the worker and fails.
  Status Persist(WorkerPool::Lease& lease, const std::string& command, const nlohmann::json& args,
                 Clock::time_point deadline) {
    if (command != "create_program" && command != "delete_program") return Status::Ok();
    auto id = args.find("program_id");
    if (id == args.end() || !id->is_string()) return Status::Ok();  // the worker refused it
    std::string program_id = id->get<std::string>();
    if (command == "create_program") {
      StoredProgram program{program_id, args, NowRfc3339()};
      Status put = shared_->store->PutProgram(record_.id, program);
      if (!put.ok()) {
        (void)Run(lease, record_.id, "delete_program", {{"program_id", program_id}}, deadline);
        return put;
      }
      std::erase_if(programs_, [&](const StoredProgram& p) { return p.program_id == program_id; });
      programs_.push_back(std::move(program));
    } else {
      CORRAL_TRY(shared_->store->DeleteProgram(record_.id, program_id));
      std::erase_if(programs_, [&](const StoredProgram& p) { return p.program_id == program_id; });
    }
    ++generation_;
    lease.SetHolds(record_.id, generation_);
    return Status::Ok();
  }

  Result<nlohmann::json> Count(const std::string& command, Result<nlohmann::json> result) {
    bool save = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++calls_;
      if (!result.ok()) ++errors_;
      if (command == "execute_program" && ProgramRan(result.status())) ++executions_;
      save = calls_ % kStatsEvery == 0;
    }
    if (save) SaveStats();
    return result;
  }

  void SaveStats() {
    nlohmann::json stats;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stats = {{"calls", calls_},
               {"errors", errors_},
               {"executions", executions_},
               {"recreations", recreations_}};
    }
    Status saved = shared_->store->SaveStats(record_.id, stats);
    if (!saved.ok()) kLog.Warn(context_, "save stats: {}", saved.ToString());
  }

  const std::shared_ptr<PoolBackend::Shared> shared_;
  StoredSession record_;
  const LogContext context_;
  std::vector<StoredProgram> programs_;  // as the store has them, in creation order
  uint64_t generation_ = 1;              // bumped at each change of programs_
  bool forgotten_ = false;

  mutable std::mutex mutex_;  // guards the members below
  PoolAffinity affinity_;
  pid_t last_pid_ = 0;
  uint64_t calls_ = 0;
  uint64_t errors_ = 0;
  uint64_t executions_ = 0;
  uint64_t recreations_ = 0;
};

WorkerPoolOptions PoolOptions(const DaemonConfig& config, const Policy& policy) {
  const PoolBackendConfig& pool = config.pool;
  WorkerPoolOptions options;
  options.size = pool.size;
  options.policy = pool.policy;
  options.strict_affinity = pool.affinity == "strict";
  options.max_queue = pool.max_queue_size;
  options.worker_max_requests = pool.worker_max_requests;
  // Default: recycle at 80% of the policy's limit, before the OOM killer would end a request.
  options.worker_max_memory =
      pool.worker_max_memory > 0 ? pool.worker_max_memory : policy.limits.memory / 5 * 4;
  options.max_start_failures = pool.max_start_failures;
  options.restart_backoff = pool.restart_backoff;
  options.start_timeout = config.process.start_timeout;
  options.tenant_patience = pool.queue_timeout / 4;
  options.max_workers_per_tenant = pool.max_workers_per_tenant;
  return options;
}

}  // namespace

PoolBackend::PoolBackend(const DaemonConfig& config, std::shared_ptr<Shared> shared)
    : config_(config), shared_(std::move(shared)) {}

PoolBackend::~PoolBackend() = default;

Result<std::unique_ptr<PoolBackend>> PoolBackend::Create(const DaemonConfig& config,
                                                         WorkerLauncher* launcher) {
  CORRAL_ASSIGN_OR_RETURN(Policy policy, launcher->LoadPolicy(config.pool.policy));
  CORRAL_ASSIGN_OR_RETURN(std::unique_ptr<SessionStore> store,
                          OpenSqliteSessionStore(config.pool.store));
  auto shared = std::make_shared<Shared>(Shared{
      config, std::move(store), std::make_unique<WorkerPool>(PoolOptions(config, policy), launcher),
      WorkerLimits{policy.limits.memory, policy.limits.pids, policy.limits.cpus}});
  kLog.Info(kNoSession, "pool of {} worker(s) under policy `{}`, store {}", config.pool.size,
            config.pool.policy, shared->store->Describe());
  shared->pool->Start();
  return std::unique_ptr<PoolBackend>(new PoolBackend(config, std::move(shared)));
}

Status PoolBackend::Ready() const {
  return shared_->pool->Ready();
}

Status PoolBackend::CheckPolicy(const std::string& policy) {
  if (policy == config_.pool.policy) return Status::Ok();
  return Status::InvalidArgument(fmt::format("pool sessions run under the pool's policy `{}`, "
                                             "not `{}`; use the process backend for another",
                                             config_.pool.policy, policy))
      .WithReason("policy_not_in_pool")
      .WithDetails(nlohmann::json{{"field", "policy"}}.dump());
}

Result<std::unique_ptr<Worker>> PoolBackend::Start(const WorkerSpec& spec, FailureCallback) {
  StoredSession record;
  record.id = spec.session_id;
  record.user_id = spec.user_id;
  record.tenant = spec.tenant;
  record.policy = spec.policy;
  record.metadata = spec.metadata;
  record.created_at = spec.created_at;
  // Written before the create is acknowledged: an acknowledged session survives a crash.
  CORRAL_TRY(shared_->store->PutSession(record));
  return std::unique_ptr<Worker>(new PoolSession(shared_, std::move(record)));
}

Result<std::vector<PersistedSession>> PoolBackend::Restore() {
  CORRAL_ASSIGN_OR_RETURN(std::vector<StoredSession> stored, shared_->store->LoadAll());
  std::vector<PersistedSession> restored;
  for (StoredSession& record : stored) {
    PersistedSession session;
    session.session_id = record.id;
    session.user_id = record.user_id;
    session.tenant = record.tenant;
    session.policy = record.policy;
    session.metadata = record.metadata;
    session.created_at = record.created_at;
    session.stats = record.stats;
    for (const StoredProgram& program : record.programs) {
      session.programs.push_back(program.program_id);
    }
    session.worker = std::make_unique<PoolSession>(shared_, std::move(record));
    restored.push_back(std::move(session));
  }
  return restored;
}

nlohmann::json PoolBackend::Stats() {
  nlohmann::json stats = shared_->pool->Stats();
  Result<uint64_t> stored = shared_->store->CountSessions();
  stats["policy"] = config_.pool.policy;
  stats["affinity"] = config_.pool.affinity;
  stats["store"] = {{"kind", shared_->store->Describe()},
                    {"sessions", stored.ok() ? nlohmann::json(*stored) : nlohmann::json()}};
  Status ready = Ready();
  stats["ready"] = ready.ok();
  return stats;
}

}  // namespace corral
