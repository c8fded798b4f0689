#include "manager/session_registry.h"

#include <sys/random.h>

#include "sandbox/log.h"

namespace corral {
namespace {

const Logger kLog("registry");

}  // namespace

Result<std::string> GenerateSessionId() {
  unsigned char bytes[12];
  size_t filled = 0;
  while (filled < sizeof(bytes)) {
    ssize_t n = getrandom(bytes + filled, sizeof(bytes) - filled, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("getrandom");
    filled += static_cast<size_t>(n);
  }
  std::string id = "s-";
  for (unsigned char byte : bytes) id += fmt::format("{:02x}", byte);
  return id;
}

SessionRegistry::SessionRegistry(const DaemonConfig& config,
                                 std::map<std::string, Backend*> backends)
    : config_(config), backends_(std::move(backends)) {}

SessionRegistry::~SessionRegistry() {
  Shutdown();
}

Result<Backend*> SessionRegistry::ChooseBackend(const CreateSessionRequest& request) {
  std::string name = request.backend.value_or(config_.default_backend);
  auto it = backends_.find(name);
  if (it == backends_.end()) {
    std::string available;
    for (const auto& [known, backend] : backends_) {
      available += (available.empty() ? "" : ", ") + known;
    }
    return Status::InvalidArgument(
               fmt::format("backend `{}` is not available in this daemon (available: {})", name,
                           available))
        .WithReason("backend_unavailable")
        .WithDetails(nlohmann::json{{"field", "backend"}}.dump());
  }
  CORRAL_TRY(it->second->Ready());
  return it->second;
}

Status SessionRegistry::Reserve(const std::shared_ptr<Session>& session, const Backend& backend) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (shutting_down_) {
    return Status::Unavailable("the daemon is shutting down").WithReason("shutting_down");
  }
  if (sessions_.count(session->id()) > 0) {
    return Status::AlreadyExists(fmt::format("session `{}` already exists", session->id()))
        .WithReason("session_exists");
  }
  uint64_t limit = backend.max_sessions();
  uint64_t live = live_[session->backend()];
  if (live >= limit) {
    return Status::ResourceExhausted(
               fmt::format("{} {} sessions are live, the most this daemon allows "
                           "({}.max_concurrent_sessions); end one first",
                           live, session->backend(), session->backend()))
        .WithReason("too_many_sessions")
        .WithDetails(nlohmann::json{{"limit", limit}}.dump());
  }
  Insert(session);
  return Status::Ok();
}

void SessionRegistry::Insert(const std::shared_ptr<Session>& session) {
  sessions_.emplace(session->id(), session);
  ++live_[session->backend()];
}

std::shared_ptr<Session> SessionRegistry::Erase(
    std::map<std::string, std::shared_ptr<Session>>::iterator it) {
  std::shared_ptr<Session> session = std::move(it->second);
  sessions_.erase(it);
  --live_[session->backend()];
  return session;
}

Result<std::shared_ptr<Session>> SessionRegistry::Create(const CreateSessionRequest& request) {
  CORRAL_ASSIGN_OR_RETURN(Backend * backend, ChooseBackend(request));
  SessionParams params;
  if (request.session_id) {
    params.id = *request.session_id;
  } else {
    CORRAL_ASSIGN_OR_RETURN(params.id, GenerateSessionId());
  }
  params.user_id = request.user_id;
  params.tenant = request.tenant;
  params.policy = request.policy.value_or(backend->fixed_policy().value_or(config_.default_policy));
  params.backend = std::string(backend->name());
  params.metadata = request.metadata;
  params.call_timeout = backend->call_timeout();
  params.max_queued_calls = config_.process.max_queued_calls;
  params.limits = config_.limits;

  Status policy = backend->CheckPolicy(params.policy);
  if (!policy.ok() && policy.category() == ErrorCategory::kNotFound) {
    return Status::InvalidArgument(policy.message())
        .WithReason("policy_not_found")
        .WithDetails(nlohmann::json{{"field", "policy"}}.dump());
  }
  CORRAL_TRY(policy);

  auto session = std::make_shared<Session>(params);
  CORRAL_TRY(Reserve(session, *backend));

  // The callback may run after the session is gone: it holds the session weakly.
  std::weak_ptr<Session> weak = session;
  WorkerSpec spec{params.id,      params.tenant,   params.policy,
                  params.user_id, params.metadata, session->created_at()};
  Result<std::unique_ptr<Worker>> worker =
      backend->Start(spec, [weak](const WorkerFailure& failure) {
        if (auto alive = weak.lock()) alive->MarkFailed(failure);
      });
  if (!worker.ok()) {
    kLog.Error(session->log_context(), "start failed: {}", worker.status().ToString());
    Remove(params.id, session.get());
    session->End("start_failed");
    return worker.status();
  }
  CORRAL_TRY(session->Attach(std::move(worker).value()));
  kLog.Info(session->log_context(), "session created (user `{}`, policy `{}`)", params.user_id,
            params.policy);
  return session;
}

Result<std::shared_ptr<Session>> SessionRegistry::Get(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) {
    return Status::NotFound(fmt::format("no session `{}`", id)).WithReason("session_not_found");
  }
  return it->second;
}

std::vector<std::shared_ptr<Session>> SessionRegistry::List(
    const std::optional<std::string>& user_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::shared_ptr<Session>> found;
  for (const auto& [id, session] : sessions_) {
    if (!user_id || session->user_id() == *user_id) found.push_back(session);
  }
  return found;
}

bool SessionRegistry::Remove(const std::string& id, const Session* session) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = sessions_.find(id);
  if (it == sessions_.end() || (session != nullptr && it->second.get() != session)) return false;
  Erase(it);
  return true;
}

Status SessionRegistry::Delete(const std::string& id) {
  std::shared_ptr<Session> session;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) {
      return Status::NotFound(fmt::format("no session `{}`", id)).WithReason("session_not_found");
    }
    session = Erase(it);
  }
  session->End(kEndDeleted);
  return Status::Ok();
}

bool SessionRegistry::accepting() {
  std::lock_guard<std::mutex> lock(mutex_);
  return !shutting_down_;
}

size_t SessionRegistry::size() {
  std::lock_guard<std::mutex> lock(mutex_);
  return sessions_.size();
}

void SessionRegistry::StartReaper() {
  reaper_ = std::thread([this] { ReaperLoop(); });
}

void SessionRegistry::ReaperLoop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!reaper_stop_) {
    reaper_wake_.wait_for(lock, config_.process.idle_check_interval);
    if (reaper_stop_) break;
    lock.unlock();
    ReapOnce();
    lock.lock();
  }
}

void SessionRegistry::ReapOnce() {
  auto now = std::chrono::steady_clock::now();
  for (const std::shared_ptr<Session>& session : List(std::nullopt)) {
    auto backend = backends_.find(session->backend());
    if (backend == backends_.end()) continue;
    std::chrono::milliseconds max_idle = backend->second->max_idle();
    if (!session->IdleFor(max_idle, now)) continue;
    if (!Remove(session->id(), session.get())) continue;  // deleted meanwhile
    kLog.Info(session->log_context(), "reaping session idle for {} s: {}", max_idle.count() / 1000,
              kEndIdle);
    session->End(kEndIdle);
  }
}

Result<std::vector<std::shared_ptr<Session>>> SessionRegistry::Restore() {
  std::vector<std::shared_ptr<Session>> restored;
  for (const auto& [name, backend] : backends_) {
    CORRAL_ASSIGN_OR_RETURN(std::vector<PersistedSession> kept, backend->Restore());
    for (PersistedSession& persisted : kept) {
      SessionParams params = RestoredParams(persisted, *backend);
      auto session = std::make_shared<Session>(std::move(params));
      {
        std::lock_guard<std::mutex> lock(mutex_);
        Insert(session);
      }
      CORRAL_TRY(session->Attach(std::move(persisted.worker)));
      restored.push_back(std::move(session));
    }
    if (!kept.empty()) kLog.Info(kNoSession, "restored {} {} session(s)", kept.size(), name);
  }
  return restored;
}

SessionParams SessionRegistry::RestoredParams(PersistedSession& persisted, const Backend& backend) {
  SessionParams params;
  params.id = persisted.session_id;
  params.user_id = persisted.user_id;
  params.tenant = persisted.tenant;
  params.policy = persisted.policy;
  params.backend = std::string(backend.name());
  params.metadata = persisted.metadata;
  params.call_timeout = backend.call_timeout();
  params.max_queued_calls = config_.process.max_queued_calls;
  params.limits = config_.limits;
  params.created_at = persisted.created_at;
  params.programs = persisted.programs;
  params.stats = persisted.stats;
  return params;
}

void SessionRegistry::Shutdown() {
  std::map<std::string, std::shared_ptr<Session>> sessions;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    shutting_down_ = true;
    reaper_stop_ = true;
    sessions.swap(sessions_);
    live_.clear();
  }
  reaper_wake_.notify_all();
  if (reaper_.joinable()) reaper_.join();
  if (!sessions.empty()) kLog.Info(kNoSession, "ending {} session(s)", sessions.size());
  for (auto& [id, session] : sessions) session->End(kEndShutdown);
}

}  // namespace corral
