// The embedded session store: one SQLite file in the daemon's state directory.
//
// WAL with synchronous=NORMAL: a committed transaction is in the WAL file before the call
// returns, so it survives the daemon being killed (kill -9, OOM); only a power loss or kernel
// crash can lose the last commits (sqlite.org/pragma.html#pragma_synchronous). FULL would add
// an fsync to every session create.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mutex>

#include "manager/session_store.h"

namespace corral {
namespace {

constexpr int kSchemaVersion = 1;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  tenant TEXT NOT NULL,
  policy TEXT NOT NULL,
  metadata TEXT NOT NULL,
  created_at TEXT NOT NULL,
  stats TEXT NOT NULL,
  seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS programs (
  session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
  program_id TEXT NOT NULL,
  definition TEXT NOT NULL,
  created_at TEXT NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY (session_id, program_id)
);
)sql";

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StatementFinalizer {
  void operator()(sqlite3_stmt* statement) const { sqlite3_finalize(statement); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;
using Statement = std::unique_ptr<sqlite3_stmt, StatementFinalizer>;

class SqliteSessionStore : public SessionStore {
 public:
  SqliteSessionStore(std::string path, Db db) : path_(std::move(path)), db_(std::move(db)) {}

  Status Init() {
    CORRAL_TRY(Exec("PRAGMA journal_mode=WAL", "set journal mode"));
    CORRAL_TRY(Exec("PRAGMA synchronous=NORMAL", "set synchronous"));
    CORRAL_TRY(Exec("PRAGMA foreign_keys=ON", "enable foreign keys"));
    CORRAL_ASSIGN_OR_RETURN(int64_t version, QueryInt("PRAGMA user_version", "read version"));
    if (version > kSchemaVersion) {
      return Error(fmt::format("schema version {} is newer than this corrald's {}", version,
                               kSchemaVersion));
    }
    CORRAL_TRY(Exec(kSchema, "create schema"));
    CORRAL_TRY(Exec(fmt::format("PRAGMA user_version={}", kSchemaVersion), "set version"));
    CORRAL_ASSIGN_OR_RETURN(next_seq_, QueryInt("SELECT COALESCE(MAX(seq), 0) + 1 FROM "
                                                "(SELECT seq FROM sessions UNION ALL "
                                                "SELECT seq FROM programs)",
                                                "read sequence"));
    return Status::Ok();
  }

  Status PutSession(const StoredSession& session) override {
    std::lock_guard<std::mutex> lock(mutex_);
    CORRAL_ASSIGN_OR_RETURN(Statement insert,
                            Prepare("INSERT INTO sessions (id, user_id, tenant, policy, metadata, "
                                    "created_at, stats, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
    Bind(insert, {session.id, session.user_id, session.tenant, session.policy,
                  session.metadata.dump(), session.created_at, session.stats.dump()});
    sqlite3_bind_int64(insert.get(), 8, next_seq_++);
    int rc = sqlite3_step(insert.get());
    if (rc == SQLITE_CONSTRAINT) {
      return Status::AlreadyExists(fmt::format("session `{}` already exists", session.id))
          .WithReason("session_exists");
    }
    return Done(rc, fmt::format("insert session `{}`", session.id));
  }

  Status DeleteSession(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mutex_);
    return Run("DELETE FROM sessions WHERE id = ?", {id}, fmt::format("delete session `{}`", id));
  }

  Status PutProgram(const std::string& session_id, const StoredProgram& program) override {
    std::lock_guard<std::mutex> lock(mutex_);
    CORRAL_ASSIGN_OR_RETURN(Statement upsert,
                            Prepare("INSERT OR REPLACE INTO programs (session_id, program_id, "
                                    "definition, created_at, seq) VALUES (?, ?, ?, ?, ?)"));
    Bind(upsert, {session_id, program.program_id, program.definition.dump(), program.created_at});
    sqlite3_bind_int64(upsert.get(), 5, next_seq_++);
    int rc = sqlite3_step(upsert.get());
    if (rc == SQLITE_CONSTRAINT) {
      return Status::NotFound(fmt::format("no stored session `{}`", session_id))
          .WithReason("session_not_found");
    }
    return Done(rc, fmt::format("store program `{}` of `{}`", program.program_id, session_id));
  }

  Status DeleteProgram(const std::string& session_id, const std::string& program_id) override {
    std::lock_guard<std::mutex> lock(mutex_);
    return Run("DELETE FROM programs WHERE session_id = ? AND program_id = ?",
               {session_id, program_id},
               fmt::format("delete program `{}` of `{}`", program_id, session_id));
  }

  Status SaveStats(const std::string& session_id, const nlohmann::json& stats) override {
    std::lock_guard<std::mutex> lock(mutex_);
    return Run("UPDATE sessions SET stats = ? WHERE id = ?", {stats.dump(), session_id},
               fmt::format("save stats of `{}`", session_id));
  }

  Result<std::vector<StoredSession>> LoadAll() override {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<StoredSession> sessions;
    std::map<std::string, size_t> index;
    CORRAL_ASSIGN_OR_RETURN(Statement select,
                            Prepare("SELECT id, user_id, tenant, policy, metadata, created_at, "
                                    "stats FROM sessions ORDER BY seq"));
    int rc;
    while ((rc = sqlite3_step(select.get())) == SQLITE_ROW) {
      StoredSession session;
      session.id = Text(select, 0);
      session.user_id = Text(select, 1);
      session.tenant = Text(select, 2);
      session.policy = Text(select, 3);
      CORRAL_ASSIGN_OR_RETURN(session.metadata, Json(select, 4, session.id));
      session.created_at = Text(select, 5);
      CORRAL_ASSIGN_OR_RETURN(session.stats, Json(select, 6, session.id));
      index[session.id] = sessions.size();
      sessions.push_back(std::move(session));
    }
    CORRAL_TRY(Done(rc, "read sessions"));
    CORRAL_TRY(LoadPrograms(&sessions, index));
    return sessions;
  }

  Result<uint64_t> CountSessions() override {
    std::lock_guard<std::mutex> lock(mutex_);
    CORRAL_ASSIGN_OR_RETURN(int64_t count, QueryInt("SELECT COUNT(*) FROM sessions", "count"));
    return static_cast<uint64_t>(count);
  }

  std::string Describe() const override { return "sqlite:" + path_; }

 private:
  Status LoadPrograms(std::vector<StoredSession>* sessions,
                      const std::map<std::string, size_t>& index) {
    CORRAL_ASSIGN_OR_RETURN(Statement select,
                            Prepare("SELECT session_id, program_id, definition, created_at FROM "
                                    "programs ORDER BY seq"));
    int rc;
    while ((rc = sqlite3_step(select.get())) == SQLITE_ROW) {
      auto it = index.find(Text(select, 0));
      if (it == index.end()) continue;  // foreign keys make this impossible; never guess
      StoredProgram program;
      program.program_id = Text(select, 1);
      CORRAL_ASSIGN_OR_RETURN(program.definition, Json(select, 2, Text(select, 0)));
      program.created_at = Text(select, 3);
      (*sessions)[it->second].programs.push_back(std::move(program));
    }
    return Done(rc, "read programs");
  }

  Status Error(std::string_view what) const {
    return Status::Unavailable(fmt::format("session store `{}`: {}", Describe(), what))
        .WithReason("store_error");
  }

  Status SqliteError(std::string_view what) const {
    return Error(fmt::format("{}: {}", what, sqlite3_errmsg(db_.get())));
  }

  Status Exec(const std::string& sql, std::string_view what) {
    char* message = nullptr;
    if (sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, &message) == SQLITE_OK) {
      return Status::Ok();
    }
    std::string text = message != nullptr ? message : "unknown error";
    sqlite3_free(message);
    return Error(fmt::format("{}: {}", what, text));
  }

  Result<Statement> Prepare(const char* sql) {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db_.get(), sql, -1, &raw, nullptr) != SQLITE_OK) {
      return SqliteError("prepare");
    }
    return Statement(raw);
  }

  static void Bind(const Statement& statement, std::initializer_list<std::string> values) {
    int column = 1;
    for (const std::string& value : values) {
      sqlite3_bind_text(statement.get(), column++, value.data(), static_cast<int>(value.size()),
                        SQLITE_TRANSIENT);
    }
  }

  Status Run(const char* sql, std::initializer_list<std::string> values, const std::string& what) {
    CORRAL_ASSIGN_OR_RETURN(Statement statement, Prepare(sql));
    Bind(statement, values);
    return Done(sqlite3_step(statement.get()), what);
  }

  Status Done(int rc, std::string_view what) const {
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) return Status::Ok();
    return SqliteError(what);
  }

  Result<int64_t> QueryInt(const char* sql, std::string_view what) {
    CORRAL_ASSIGN_OR_RETURN(Statement statement, Prepare(sql));
    if (sqlite3_step(statement.get()) != SQLITE_ROW) return SqliteError(what);
    return sqlite3_column_int64(statement.get(), 0);
  }

  static std::string Text(const Statement& statement, int column) {
    const unsigned char* text = sqlite3_column_text(statement.get(), column);
    return text != nullptr ? reinterpret_cast<const char*>(text) : "";
  }

  // A stored JSON value that does not parse is corruption: an error naming the session, never
  // a silent default.
  Result<nlohmann::json> Json(const Statement& statement, int column, const std::string& id) {
    nlohmann::json value = nlohmann::json::parse(Text(statement, column), nullptr, false);
    if (value.is_discarded()) return Error(fmt::format("session `{}`: corrupt JSON", id));
    return value;
  }

  const std::string path_;
  std::mutex mutex_;  // guards db_ (one connection, used by one thread at a time) and next_seq_
  Db db_;
  int64_t next_seq_ = 1;  // creation order of sessions and programs
};

}  // namespace

Result<std::unique_ptr<SessionStore>> OpenSqliteSessionStore(const std::string& path) {
  auto failed = [&](std::string_view what, int sys_errno) {
    return Status::FromErrno(sys_errno, fmt::format("session store `sqlite:{}`: {}", path, what))
        .WithReason("store_error");
  };
  // The store holds tenants' program source: created 0600 before SQLite opens it, so it is
  // never readable by others, whatever the daemon's umask.
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return failed("create", errno);
  if (fchmod(fd, 0600) != 0) {
    int saved = errno;
    close(fd);
    return failed("chmod", saved);
  }
  close(fd);

  sqlite3* raw = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, nullptr);
  Db db(raw);
  if (rc != SQLITE_OK) {
    return Status::Unavailable(fmt::format("session store `sqlite:{}`: open: {}", path,
                                           raw != nullptr ? sqlite3_errmsg(raw) : "out of memory"))
        .WithReason("store_error");
  }
  sqlite3_busy_timeout(db.get(), 5000);
  auto store = std::make_unique<SqliteSessionStore>(path, std::move(db));
  CORRAL_TRY(store->Init());
  return std::unique_ptr<SessionStore>(std::move(store));
}

}  // namespace corral
