// The embedded session store: one SQLite file in the daemon's state directory.
//
// Every write is a single auto-committed statement, so it is atomic, and with
// WAL plus synchronous=FULL it is on disk before the method returns (see the
// durability contract in session_store.h). Deleting a session removes its
// programs by ON DELETE CASCADE.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <initializer_list>
#include <mutex>
#include <string_view>
#include <unordered_map>

#include <fmt/format.h>

#include "manager/session_store.h"
#include "sandbox/unique_fd.h"

namespace corral {
namespace {

constexpr int kSchemaVersion = 1;
constexpr const char* kStoreError = "store_error";

// `seq` records creation order; the indexes keep MAX(seq) and the ordered reads
// cheap.
constexpr const char* kSchema = R"sql(
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY NOT NULL, user_id TEXT NOT NULL, tenant TEXT NOT NULL,
  policy TEXT NOT NULL, metadata TEXT NOT NULL, created_at TEXT NOT NULL,
  stats TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_by_seq ON sessions(seq);
CREATE TABLE IF NOT EXISTS programs (
  session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
  program_id TEXT NOT NULL, definition TEXT NOT NULL, created_at TEXT NOT NULL,
  seq INTEGER NOT NULL, PRIMARY KEY (session_id, program_id));
CREATE INDEX IF NOT EXISTS programs_by_seq ON programs(seq);
PRAGMA user_version = 1;
COMMIT;
)sql";

enum Query : size_t {
  kInsertSession,
  kDeleteSession,
  kPutProgram,
  kDeleteProgram,
  kUpdateStats,
  kSelectSessions,
  kSelectPrograms,
  kCountSessions,
  kQueryCount,
};

// Indexed by Query. A replaced program takes a new seq, so it moves to the end
// of the order.
constexpr std::array<const char*, kQueryCount> kQueries = {
    "INSERT INTO sessions (id, user_id, tenant, policy, metadata, created_at, "
    "stats, seq) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, (SELECT IFNULL(MAX(seq), 0) + 1 FROM "
    "sessions))",
    "DELETE FROM sessions WHERE id = ?",
    "INSERT INTO programs (session_id, program_id, definition, created_at, "
    "seq) "
    "VALUES (?, ?, ?, ?, (SELECT IFNULL(MAX(seq), 0) + 1 FROM programs)) "
    "ON CONFLICT (session_id, program_id) DO UPDATE SET definition = "
    "excluded.definition, "
    "created_at = excluded.created_at, seq = excluded.seq",
    "DELETE FROM programs WHERE session_id = ? AND program_id = ?",
    "UPDATE sessions SET stats = ? WHERE id = ?",
    "SELECT id, user_id, tenant, policy, metadata, created_at, stats FROM "
    "sessions ORDER BY seq",
    "SELECT session_id, program_id, definition, created_at FROM programs ORDER "
    "BY seq",
    "SELECT COUNT(*) FROM sessions",
};

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;
using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

Status StoreError(const std::string& describe, std::string_view what, sqlite3* db) {
  return Status::Unavailable(
             fmt::format("session store `{}`: {}: {}", describe, what, sqlite3_errmsg(db)))
      .WithReason(kStoreError);
}

// One use of a cached statement: binds text parameters in order, and resets the
// statement on the way out so that it holds no read lock and no stale bindings
// between calls.
class Bound {
 public:
  explicit Bound(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~Bound() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Bound(const Bound&) = delete;
  Bound& operator=(const Bound&) = delete;

  // A failed bind would leave the parameter NULL; Step reports it instead of
  // writing that.
  Bound& Text(std::string_view text) {
    if (bind_rc_ == SQLITE_OK) {
      bind_rc_ = sqlite3_bind_text64(stmt_, ++index_, text.data(), text.size(), SQLITE_TRANSIENT,
                                     SQLITE_UTF8);
    }
    return *this;
  }
  int Step() { return bind_rc_ == SQLITE_OK ? sqlite3_step(stmt_) : bind_rc_; }
  std::string Column(int column) const {
    const unsigned char* text = sqlite3_column_text(stmt_, column);
    int size = sqlite3_column_bytes(stmt_, column);  // after column_text, as the docs require
    return text ? std::string(reinterpret_cast<const char*>(text), size) : std::string();
  }
  int64_t Integer(int column) const { return sqlite3_column_int64(stmt_, column); }

 private:
  sqlite3_stmt* stmt_;
  int index_ = 0;
  int bind_rc_ = SQLITE_OK;
};

// Invalid UTF-8 is replaced rather than thrown: no exception leaves this
// module.
std::string Dump(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// A row that does not parse is corruption; it must stop the load, not vanish
// from it.
Result<nlohmann::json> ParseStored(const std::string& text, const std::string& describe,
                                   std::string_view what) {
  nlohmann::json value = nlohmann::json::parse(text, nullptr, false);
  if (!value.is_discarded()) return value;
  return Status::Internal(
             fmt::format("session store `{}`: {}: stored JSON does not parse", describe, what))
      .WithReason(kStoreError);
}

// The store holds tenant source code and metadata, so only the daemon's user
// may read it. Creating the file here with mode 0600 (umask can only remove
// bits) closes the window in which SQLite would create it 0644; fchmod narrows
// a file left by an older run. SQLite gives the -wal and -shm files the mode of
// the database file.
Status CreatePrivateFile(const std::string& path, const std::string& describe) {
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd || fchmod(fd.get(), 0600) != 0) {
    return Status::Error(ErrorCategory::kUnavailable,
                         fmt::format("session store `{}`: create the file", describe), errno)
        .WithReason(kStoreError);
  }
  return Status::Ok();
}

Result<std::string> QueryText(sqlite3* db, const char* sql, const std::string& describe) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &raw, nullptr) != SQLITE_OK) {
    return StoreError(describe, sql, db);
  }
  Stmt stmt(raw);
  if (sqlite3_step(stmt.get()) != SQLITE_ROW) return StoreError(describe, sql, db);
  const unsigned char* text = sqlite3_column_text(stmt.get(), 0);
  return text ? std::string(reinterpret_cast<const char*>(text)) : std::string();
}

// WAL with synchronous=FULL syncs the log at every commit; NORMAL would be
// faster but may lose the last acknowledged writes on power loss. Foreign keys
// are per connection and off by default; the cascade from sessions to programs
// depends on them.
Status Configure(sqlite3* db, const std::string& describe) {
  sqlite3_extended_result_codes(db, 1);
  if (sqlite3_busy_timeout(db, 5000) != SQLITE_OK) {
    return StoreError(describe, "set busy timeout", db);
  }
  CORRAL_ASSIGN_OR_RETURN(std::string mode, QueryText(db, "PRAGMA journal_mode = WAL", describe));
  if (mode != "wal") {
    return Status::Unavailable(
               fmt::format("session store `{}`: journal mode is `{}`, not wal", describe, mode))
        .WithReason(kStoreError);
  }
  const char* pragmas = "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;";
  if (sqlite3_exec(db, pragmas, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return StoreError(describe, "set pragmas", db);
  }
  return Status::Ok();
}

// Creates the schema in a fresh file; refuses a file written by a newer
// corrald, whose meaning this one cannot know.
Status MigrateSchema(sqlite3* db, const std::string& describe) {
  CORRAL_ASSIGN_OR_RETURN(std::string text, QueryText(db, "PRAGMA user_version", describe));
  long long version = std::strtoll(text.c_str(), nullptr, 10);
  if (version > kSchemaVersion) {
    return Status::FailedPrecondition(fmt::format("session store `{}`: schema version {} is newer "
                                                  "than the {} this "
                                                  "corrald supports",
                                                  describe, version, kSchemaVersion))
        .WithReason(kStoreError);
  }
  if (version == kSchemaVersion) return Status::Ok();
  if (sqlite3_exec(db, kSchema, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return StoreError(describe, "create schema", db);
  }
  return Status::Ok();
}

class SqliteSessionStore final : public SessionStore {
 public:
  SqliteSessionStore(std::string describe, Db db)
      : describe_(std::move(describe)), db_(std::move(db)) {}

  Status Prepare() {
    for (size_t query = 0; query < kQueryCount; ++query) {
      sqlite3_stmt* raw = nullptr;
      int rc = sqlite3_prepare_v3(db_.get(), kQueries[query], -1, SQLITE_PREPARE_PERSISTENT, &raw,
                                  nullptr);
      if (rc != SQLITE_OK) return Fail(fmt::format("prepare `{}`", kQueries[query]));
      statements_[query].reset(raw);
    }
    return Status::Ok();
  }

  Status PutSession(const StoredSession& session) override {
    std::lock_guard<std::mutex> lock(mutex_);
    Bound insert(statements_[kInsertSession].get());
    insert.Text(session.id).Text(session.user_id).Text(session.tenant).Text(session.policy);
    insert.Text(Dump(session.metadata)).Text(session.created_at).Text(Dump(session.stats));
    int rc = insert.Step();
    if (rc == SQLITE_DONE) return Status::Ok();
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
      return Status::AlreadyExists(fmt::format("session `{}` already exists", session.id))
          .WithReason("session_exists");
    }
    return Fail(fmt::format("insert session `{}`", session.id));
  }

  Status DeleteSession(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mutex_);
    return Write(kDeleteSession, {id}, fmt::format("delete session `{}`", id));
  }

  Status PutProgram(const std::string& session_id, const StoredProgram& program) override {
    std::lock_guard<std::mutex> lock(mutex_);
    Bound put(statements_[kPutProgram].get());
    put.Text(session_id).Text(program.program_id).Text(Dump(program.definition));
    int rc = put.Text(program.created_at).Step();
    if (rc == SQLITE_DONE) return Status::Ok();
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
      return Status::NotFound(fmt::format("session `{}` not found", session_id))
          .WithReason("session_not_found");
    }
    return Fail(fmt::format("put program `{}` of session `{}`", program.program_id, session_id));
  }

  Status DeleteProgram(const std::string& session_id, const std::string& program_id) override {
    std::lock_guard<std::mutex> lock(mutex_);
    return Write(kDeleteProgram, {session_id, program_id},
                 fmt::format("delete program `{}` of session `{}`", program_id, session_id));
  }

  Status SaveStats(const std::string& session_id, const nlohmann::json& stats) override {
    std::lock_guard<std::mutex> lock(mutex_);
    return Write(kUpdateStats, {Dump(stats), session_id},
                 fmt::format("save stats of session `{}`", session_id));
  }

  // The two reads see one state without a read transaction: every write goes
  // through this connection under mutex_, and the daemon's instance lock keeps
  // other processes out.
  Result<std::vector<StoredSession>> LoadAll() override {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<StoredSession> sessions;
    CORRAL_TRY(ReadSessions(&sessions));
    CORRAL_TRY(ReadPrograms(&sessions));
    return sessions;
  }

  Result<uint64_t> CountSessions() override {
    std::lock_guard<std::mutex> lock(mutex_);
    Bound count(statements_[kCountSessions].get());
    if (count.Step() != SQLITE_ROW) return Fail("count sessions");
    return static_cast<uint64_t>(count.Integer(0));
  }

  std::string Describe() const override { return describe_; }

 private:
  // Call with mutex_ held, before the failed statement is reset.
  Status Fail(std::string_view what) const { return StoreError(describe_, what, db_.get()); }

  // Foreign keys make this impossible unless the file was edited by hand; say
  // so, never drop it.
  Status Orphan(std::string_view what) const {
    return Status::Internal(
               fmt::format("session store `{}`: {}: the session is not stored", describe_, what))
        .WithReason(kStoreError);
  }

  Status Write(Query query, std::initializer_list<std::string_view> params, std::string what) {
    Bound statement(statements_[query].get());
    for (std::string_view param : params) statement.Text(param);
    return statement.Step() == SQLITE_DONE ? Status::Ok() : Fail(what);
  }

  Status ReadSessions(std::vector<StoredSession>* sessions) {
    Bound select(statements_[kSelectSessions].get());
    int rc = SQLITE_ROW;
    while ((rc = select.Step()) == SQLITE_ROW) {
      StoredSession session;
      session.id = select.Column(0);
      session.user_id = select.Column(1);
      session.tenant = select.Column(2);
      session.policy = select.Column(3);
      std::string what = fmt::format("session `{}`", session.id);
      CORRAL_ASSIGN_OR_RETURN(session.metadata, ParseStored(select.Column(4), describe_, what));
      session.created_at = select.Column(5);
      CORRAL_ASSIGN_OR_RETURN(session.stats, ParseStored(select.Column(6), describe_, what));
      sessions->push_back(std::move(session));
    }
    return rc == SQLITE_DONE ? Status::Ok() : Fail("read sessions");
  }

  Status ReadPrograms(std::vector<StoredSession>* sessions) {
    std::unordered_map<std::string, StoredSession*> by_id;
    for (StoredSession& session : *sessions) by_id[session.id] = &session;
    Bound select(statements_[kSelectPrograms].get());
    int rc = SQLITE_ROW;
    while ((rc = select.Step()) == SQLITE_ROW) {
      std::string session_id = select.Column(0);
      StoredProgram program{select.Column(1), nullptr, select.Column(3)};
      std::string what = fmt::format("session `{}`: program `{}`", session_id, program.program_id);
      CORRAL_ASSIGN_OR_RETURN(program.definition, ParseStored(select.Column(2), describe_, what));
      auto session = by_id.find(session_id);
      if (session == by_id.end()) return Orphan(what);
      session->second->programs.push_back(std::move(program));
    }
    return rc == SQLITE_DONE ? Status::Ok() : Fail("read programs");
  }

  const std::string describe_;
  // Guards db_ and statements_: one connection, used by one thread at a time,
  // so that a cached statement is never stepped twice at once and
  // sqlite3_errmsg belongs to the failed call.
  std::mutex mutex_;
  Db db_;
  std::array<Stmt, kQueryCount> statements_;  // after db_: finalized before it closes
};

}  // namespace

Result<std::unique_ptr<SessionStore>> OpenSqliteSessionStore(const std::string& path) {
  std::string describe = "sqlite:" + path;
  CORRAL_TRY(CreatePrivateFile(path, describe));

  // No SQLite mutex: the store's own mutex already serializes every use of the
  // connection.
  sqlite3* raw = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  Db db(raw);  // a handle comes back even on failure and carries the message
  if (rc != SQLITE_OK) return StoreError(describe, "open", db.get());

  CORRAL_TRY(Configure(db.get(), describe));
  CORRAL_TRY(MigrateSchema(db.get(), describe));
  auto store = std::make_unique<SqliteSessionStore>(describe, std::move(db));
  CORRAL_TRY(store->Prepare());
  return std::unique_ptr<SessionStore>(std::move(store));
}

}  // namespace corral
