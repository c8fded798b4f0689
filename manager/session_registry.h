// Every live session by id, the cap on how many there are, the idle reaper and shutdown.
//
// A session is in the map from the moment its creation is accepted (status `starting`) until
// it is deleted, reaped or the daemon stops; taking it out of the map is what decides who ends
// it, so of many concurrent DELETEs exactly one wins (S55).
//
// Thread safety: every method may be called from any thread. The registry's mutex is never
// held while a session starts or ends (both block on a sandbox).
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "manager/backend.h"
#include "manager/config.h"
#include "manager/session.h"

namespace corral {

struct CreateSessionRequest {
  std::optional<std::string> session_id;  // generated when absent
  std::string user_id;
  std::string tenant = "default";
  std::optional<std::string> policy;   // config default when absent
  std::optional<std::string> backend;  // config default when absent
  nlohmann::json metadata = nlohmann::json::object();
};

class SessionRegistry {
 public:
  // `backends` by name; they must outlive the registry.
  SessionRegistry(const DaemonConfig& config, std::map<std::string, Backend*> backends);
  ~SessionRegistry();

  // Accepts, starts and returns a ready session; errors: session_exists (409),
  // too_many_sessions (429), backend_unavailable (400), policy_not_found (400),
  // worker_start_failed (503), shutting_down (503).
  Result<std::shared_ptr<Session>> Create(const CreateSessionRequest& request);
  Result<std::shared_ptr<Session>> Get(const std::string& id);
  std::vector<std::shared_ptr<Session>> List(const std::optional<std::string>& user_id);
  // Ends the session and frees everything it held; 404 session_not_found when another caller
  // got there first.
  Status Delete(const std::string& id);

  // Takes in the sessions each backend kept from a previous run (before serving); returns them.
  Result<std::vector<std::shared_ptr<Session>>> Restore();
  // Starts the thread that ends sessions idle for their backend's `max_idle_seconds`.
  void StartReaper();
  // Refuses new sessions, stops the reaper and ends every session. Idempotent.
  void Shutdown();
  // False once Shutdown() has begun.
  bool accepting();
  size_t size();

 private:
  Result<Backend*> ChooseBackend(const CreateSessionRequest& request);
  Status Reserve(const std::shared_ptr<Session>& session, const Backend& backend);
  SessionParams RestoredParams(PersistedSession& persisted, const Backend& backend);
  // The map and the per-backend counts change together. Require mutex_.
  void Insert(const std::shared_ptr<Session>& session);
  std::shared_ptr<Session> Erase(std::map<std::string, std::shared_ptr<Session>>::iterator it);
  // Takes the session out of the map if it is still `session`.
  bool Remove(const std::string& id, const Session* session);
  void ReapOnce();
  void ReaperLoop();

  const DaemonConfig config_;
  const std::map<std::string, Backend*> backends_;

  std::mutex mutex_;  // guards sessions_, live_, shutting_down_, reaper_stop_
  std::condition_variable reaper_wake_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;
  std::map<std::string, uint64_t> live_;  // sessions in sessions_ per backend name
  bool shutting_down_ = false;
  bool reaper_stop_ = false;
  std::thread reaper_;
};

// "s-" followed by 24 hex digits from getrandom(2).
Result<std::string> GenerateSessionId();

}  // namespace corral
