#include "manager/session.h"

#include <ctime>

#include "manager/reply_limits.h"

namespace corral {
namespace {

const Logger kLog("session");

uint64_t StatOr0(const nlohmann::json& stats, const char* name) {
  auto it = stats.find(name);
  return it != stats.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

}  // namespace

std::string Rfc3339(std::chrono::system_clock::time_point when) {
  auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count();
  std::time_t seconds = static_cast<std::time_t>(millis / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char text[40];
  size_t n = std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(text + n, sizeof(text) - n, ".%03dZ", static_cast<int>(millis % 1000));
  return text;
}

std::string_view SessionStatusName(SessionStatus status) {
  switch (status) {
    case SessionStatus::kStarting:
      return "starting";
    case SessionStatus::kReady:
      return "ready";
    case SessionStatus::kBusy:
      return "busy";
    case SessionStatus::kFailed:
      return "failed";
    case SessionStatus::kEnded:
      return "ended";
  }
  return "failed";
}

bool ProgramRan(const Status& status) {
  static const std::set<std::string, std::less<>> kRan = {
      "program_error", "result_not_serializable", "result_too_large"};
  return status.ok() || kRan.count(status.reason()) > 0 || status.reason().starts_with("lm_") ||
         IsWorkerDeath(status);
}

Session::Session(SessionParams params)
    : params_(std::move(params)),
      context_{params_.id, params_.tenant},
      created_at_(params_.created_at.empty() ? Rfc3339(std::chrono::system_clock::now())
                                             : params_.created_at),
      last_activity_at_(std::chrono::system_clock::now()),
      programs_(params_.programs.begin(), params_.programs.end()),
      calls_(StatOr0(params_.stats, "calls")),
      errors_(StatOr0(params_.stats, "errors")),
      executions_(StatOr0(params_.stats, "executions")) {}

Status Session::Attach(std::unique_ptr<Worker> worker) {
  std::shared_ptr<Worker> owned = std::move(worker);
  std::unique_lock<std::mutex> lock(mutex_);
  if (status_ == SessionStatus::kEnded) {
    lock.unlock();
    owned.reset();  // blocks until the worker is gone, outside the lock
    return Status::FailedPrecondition(fmt::format("session `{}` was ended while starting", id()))
        .WithReason("session_ended");
  }
  worker_ = std::move(owned);
  if (status_ == SessionStatus::kStarting) status_ = SessionStatus::kReady;
  changed_.notify_all();
  return Status::Ok();
}

void Session::MarkFailed(const WorkerFailure& failure) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (status_ == SessionStatus::kEnded || status_ == SessionStatus::kFailed) return;
  status_ = SessionStatus::kFailed;
  failure_ = failure;
  kLog.Warn(context_, "session failed: {}: {}", failure.reason, failure.message);
  changed_.notify_all();
}

Status Session::UnusableStatus() const {
  if (status_ == SessionStatus::kFailed) {
    nlohmann::json details = {{"reason", failure_->reason}, {"failure", failure_->ToJson()}};
    return Status::FailedPrecondition(
               fmt::format("session `{}` failed: {}", id(), failure_->reason))
        .WithReason("session_failed")
        .WithDetails(details.dump());
  }
  if (end_reason_ == kEndShutdown) {
    return Status::Unavailable("the daemon is shutting down").WithReason("shutting_down");
  }
  nlohmann::json details = {{"reason", end_reason_}};
  return Status::FailedPrecondition(fmt::format("session `{}` ended: {}", id(), end_reason_))
      .WithReason("session_ended")
      .WithDetails(details.dump());
}

Result<nlohmann::json> Session::Call(const std::string& command, const nlohmann::json& args,
                                     std::chrono::milliseconds timeout) {
  if (timeout <= kSessionCallTimeout) timeout = params_.call_timeout;
  std::unique_lock<std::mutex> lock(mutex_);
  if (status_ == SessionStatus::kStarting) {
    return Status::FailedPrecondition(fmt::format("session `{}` is starting", id()))
        .WithReason("session_not_ready");
  }
  auto usable = [this] {
    return status_ == SessionStatus::kReady || status_ == SessionStatus::kBusy;
  };
  if (!usable()) return UnusableStatus();

  if (running_ > 0 && static_cast<uint64_t>(waiting_) >= params_.max_queued_calls) {
    return Status::ResourceExhausted(
               fmt::format("session `{}` already has {} calls waiting (process.max_queued_calls)",
                           id(), waiting_))
        .WithReason("session_busy");
  }
  // A waiting call is activity too: the reaper never ends a session somebody waits on.
  uint64_t ticket = next_ticket_++;
  ++waiting_;
  changed_.wait(lock, [&] { return !usable() || (serving_ == ticket && running_ == 0); });
  --waiting_;
  if (!usable()) return UnusableStatus();

  status_ = SessionStatus::kBusy;
  ++running_;
  std::shared_ptr<Worker> worker = worker_;
  lock.unlock();

  Result<nlohmann::json> result = CallWorker(*worker, command, args, timeout);
  if (result.ok()) {
    // The worker's own bounds are tenant-controlled: a program can forge its reply.
    Status bounded = EnforceReplyLimits(command, params_.limits, &result.value());
    if (!bounded.ok()) result = std::move(bounded);
  }
  return AfterCall(command, args, std::move(result));
}

// An exception from the worker's side (a JSON type error on a forged reply, a bug) must never
// skip AfterCall: the session would count a call running forever, and End() and the daemon's
// shutdown would wait on it.
Result<nlohmann::json> Session::CallWorker(Worker& worker, const std::string& command,
                                           const nlohmann::json& args,
                                           std::chrono::milliseconds timeout) {
  try {
    return worker.Call(command, args, timeout);
  } catch (const std::exception& e) {
    kLog.Error(context_, "call `{}` threw: {}", command, e.what());
    return Status::Internal(fmt::format("call `{}` failed inside corrald", command));
  }
}

Result<nlohmann::json> Session::AfterCall(const std::string& command, const nlohmann::json& args,
                                          Result<nlohmann::json> result) {
  std::unique_lock<std::mutex> lock(mutex_);
  --running_;
  ++serving_;
  ++calls_;
  last_activity_ = std::chrono::steady_clock::now();
  last_activity_at_ = std::chrono::system_clock::now();
  if (!result.ok()) ++errors_;
  if (command == "execute_program" && ProgramRan(result.status())) ++executions_;
  if (result.ok() && args.contains("program_id") && args["program_id"].is_string()) {
    if (command == "create_program") programs_.insert(args["program_id"].get<std::string>());
    if (command == "delete_program") programs_.erase(args["program_id"].get<std::string>());
  }
  if (status_ == SessionStatus::kBusy) status_ = SessionStatus::kReady;
  changed_.notify_all();
  if (result.ok() || !IsWorkerDeath(result.status())) return result;
  // The worker died under this call. Ended by a client or the daemon: say so, not how it died.
  if (status_ == SessionStatus::kEnded) return UnusableStatus();
  if (status_ == SessionStatus::kReady && worker_ && worker_->DeathFailsSession()) {
    lock.unlock();
    MarkFailed(WorkerFailure::FromStatus(result.status()));
  }
  return result;
}

bool Session::End(std::string_view reason) {
  std::shared_ptr<Worker> worker;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (status_ == SessionStatus::kEnded) return false;
    status_ = SessionStatus::kEnded;
    end_reason_ = std::string(reason);
    worker = worker_;
    changed_.notify_all();
  }
  kLog.Info(context_, "ending session: {}", reason);
  if (worker) worker->Stop(OutcomeReason::kKilledByRequest);

  // Running calls return once the worker is dead; only then is it safe to free it.
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return running_ == 0; });
  std::shared_ptr<Worker> last = std::move(worker_);
  lock.unlock();
  if (last && reason != kEndShutdown) last->Forget();
  worker.reset();
  last.reset();  // blocks until the sandbox is gone and its cgroup removed
  return true;
}

bool Session::IdleFor(std::chrono::milliseconds max_idle,
                      std::chrono::steady_clock::time_point now) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (running_ > 0 || waiting_ > 0 || status_ == SessionStatus::kStarting) return false;
  return now - last_activity_ >= max_idle;
}

nlohmann::json Session::Info() {
  std::unique_lock<std::mutex> lock(mutex_);
  nlohmann::json info = {
      {"session_id", params_.id},
      {"user_id",
       params_.user_id.empty() ? nlohmann::json(nullptr) : nlohmann::json(params_.user_id)},
      {"tenant", params_.tenant},
      {"backend", params_.backend},
      {"policy", params_.policy},
      {"status", SessionStatusName(status_)},
      {"failure", failure_ ? failure_->ToJson() : nlohmann::json(nullptr)},
      {"created_at", created_at_},
      {"last_activity_at", Rfc3339(last_activity_at_)},
      {"programs", programs_},
      {"stats",
       {{"calls", calls_}, {"errors", errors_}, {"executions", executions_}, {"queued", waiting_}}},
      {"metadata", params_.metadata},
  };
  if (status_ == SessionStatus::kEnded) info["end_reason"] = end_reason_;
  std::shared_ptr<Worker> worker = worker_;
  lock.unlock();

  // Usage reads cgroup files: done outside the lock so a slow read never stalls calls.
  WorkerInfo worker_info = worker ? worker->Info() : WorkerInfo{};
  // A pool session that has not run yet has no worker; a pool worker's host uid is its own.
  bool has_pid = worker && worker_info.pid > 0;
  info["worker"] = {
      {"pid", has_pid ? nlohmann::json(worker_info.pid) : nlohmann::json(nullptr)},
      {"host_uid", has_pid && worker_info.host_uid > 0 ? nlohmann::json(worker_info.host_uid)
                                                       : nlohmann::json(nullptr)}};
  info["resources"] = {{"memory_bytes", worker_info.usage.memory_bytes},
                       {"memory_peak_bytes", worker_info.usage.memory_peak_bytes},
                       {"pids", worker_info.usage.pids},
                       {"cpu_ms", worker_info.usage.cpu_usec / 1000}};
  info["limits"] = {{"memory_bytes", worker_info.limits.memory_bytes},
                    {"pids", worker_info.limits.pids},
                    {"cpus", worker_info.limits.cpus},
                    {"call_timeout_ms", params_.call_timeout.count()}};
  if (!worker_info.backend.is_null()) info[params_.backend] = worker_info.backend;
  return info;
}

}  // namespace corral
