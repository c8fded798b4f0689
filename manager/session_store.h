// The pool backend's session store: every pool session's identity, metadata, program
// definitions and stats, kept outside the workers so that any worker can serve any session,
// a dead worker loses nothing, and sessions outlive a daemon restart.
//
// The interface is the seam for a store shared by several hosts; the embedded one is SQLite
// in the daemon's state directory (sqlite_session_store.cc).
//
// Durability contract: a method returns only once what it wrote is committed and on disk, so a
// create acknowledged to a client survives `kill -9` of the daemon and a power loss. A corrupt
// row fails the whole load; it is never skipped. A replaced program moves to the end of the
// creation order.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sandbox/status.h"

namespace corral {

struct StoredProgram {
  std::string program_id;
  nlohmann::json definition;  // the create_program arguments, replayed to recreate it
  std::string created_at;     // RFC 3339 UTC
};

struct StoredSession {
  std::string id;
  std::string user_id;
  std::string tenant;
  std::string policy;
  nlohmann::json metadata = nlohmann::json::object();
  std::string created_at;  // RFC 3339 UTC
  nlohmann::json stats = nlohmann::json::object();
  std::vector<StoredProgram> programs;  // in creation order (LoadAll fills it)
};

class SessionStore {
 public:
  virtual ~SessionStore() = default;

  // Adds a session (its `programs` are ignored). AlreadyExists (reason session_exists) when
  // the id is taken.
  virtual Status PutSession(const StoredSession& session) = 0;
  // Removes a session and all its programs; Ok when it was not there.
  virtual Status DeleteSession(const std::string& id) = 0;
  // Adds or replaces one program of an existing session; NotFound when the session is not
  // stored.
  virtual Status PutProgram(const std::string& session_id, const StoredProgram& program) = 0;
  // Removes one program; Ok when it was not there.
  virtual Status DeleteProgram(const std::string& session_id, const std::string& program_id) = 0;
  // Replaces the stats of a session; Ok (nothing written) when it is not stored.
  virtual Status SaveStats(const std::string& session_id, const nlohmann::json& stats) = 0;
  // Every stored session with its programs, sessions ordered by creation.
  virtual Result<std::vector<StoredSession>> LoadAll() = 0;
  // How many sessions are stored.
  virtual Result<uint64_t> CountSessions() = 0;
  // Names the store in logs and GET /v1/pool: "sqlite:/var/lib/corral/pool-sessions.db".
  virtual std::string Describe() const = 0;
};

// Opens (creating it and its schema when absent) the SQLite store at `path`, mode 0600; its
// directory must exist. A file written by a newer schema version is refused. Errors carry
// reason `store_error` and name the path.
Result<std::unique_ptr<SessionStore>> OpenSqliteSessionStore(const std::string& path);

}  // namespace corral
