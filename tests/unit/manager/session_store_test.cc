// The SQLite session store on real files: round trips, the error reasons of the contract,
// persistence across a reopen, file mode, concurrent writers, and refusing what it cannot read.
#include <sqlite3.h>
#include <sys/stat.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <thread>

#include "manager/session_store.h"
#include "tests/support/daemon_harness.h"

namespace corral {
namespace {

// A fresh directory for one store file, removed with everything in it.
struct StoreDir {
  std::string dir = testing::MakeTempDir("corral-session-store");
  std::string path = dir + "/pool-sessions.db";
  ~StoreDir() { std::filesystem::remove_all(dir); }
};

std::unique_ptr<SessionStore> Open(const std::string& path) {
  Result<std::unique_ptr<SessionStore>> store = OpenSqliteSessionStore(path);
  INFO(store.status().ToString());
  REQUIRE(store.ok());
  return std::move(store).value();
}

StoredSession Session(const std::string& id) {
  StoredSession session;
  session.id = id;
  session.user_id = "u-" + id;
  session.tenant = "acme";
  session.policy = "default";
  session.metadata = {{"purpose", "test"}, {"n", 3}};
  session.created_at = "2024-05-01T12:00:00Z";
  session.stats = {{"calls", 0}};
  return session;
}

StoredProgram Program(const std::string& id, const std::string& source) {
  return {id, {{"language", "python"}, {"source", source}}, "2024-05-01T12:00:01Z"};
}

std::vector<std::string> ProgramIds(const StoredSession& session) {
  std::vector<std::string> ids;
  for (const StoredProgram& program : session.programs) ids.push_back(program.program_id);
  return ids;
}

// Runs SQL on the file directly, as a hand edit or another corrald version would.
void Exec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  INFO(sqlite3_errmsg(db));
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
}

std::vector<StoredSession> Load(SessionStore& store) {
  Result<std::vector<StoredSession>> sessions = store.LoadAll();
  INFO(sessions.status().ToString());
  REQUIRE(sessions.ok());
  return std::move(sessions).value();
}

TEST_CASE("session store: sessions and programs round trip in creation order") {
  StoreDir dir;
  std::unique_ptr<SessionStore> store = Open(dir.path);
  CHECK(store->Describe() == "sqlite:" + dir.path);
  REQUIRE(store->PutSession(Session("s-2")).ok());
  REQUIRE(store->PutSession(Session("s-1")).ok());
  REQUIRE(store->PutProgram("s-1", Program("b", "print(2)")).ok());
  REQUIRE(store->PutProgram("s-1", Program("a", "print(1)")).ok());
  REQUIRE(store->SaveStats("s-1", {{"calls", 7}}).ok());

  std::vector<StoredSession> sessions = Load(*store);
  REQUIRE(sessions.size() == 2);
  CHECK(sessions[0].id == "s-2");
  CHECK(sessions[0].programs.empty());
  const StoredSession& s1 = sessions[1];
  StoredSession expected = Session("s-1");
  CHECK(s1.id == "s-1");
  CHECK(s1.user_id == expected.user_id);
  CHECK(s1.tenant == expected.tenant);
  CHECK(s1.policy == expected.policy);
  CHECK(s1.metadata == expected.metadata);
  CHECK(s1.created_at == expected.created_at);
  CHECK(s1.stats == nlohmann::json{{"calls", 7}});
  CHECK(ProgramIds(s1) == std::vector<std::string>{"b", "a"});
  CHECK(s1.programs[1].definition == Program("a", "print(1)").definition);
  CHECK(s1.programs[1].created_at == "2024-05-01T12:00:01Z");
  CHECK(store->CountSessions().value() == 2);
}

TEST_CASE("session store: a taken id and an unknown session give their reasons") {
  StoreDir dir;
  std::unique_ptr<SessionStore> store = Open(dir.path);
  REQUIRE(store->PutSession(Session("s-1")).ok());

  Status duplicate = store->PutSession(Session("s-1"));
  CHECK(duplicate.category() == ErrorCategory::kAlreadyExists);
  CHECK(duplicate.reason() == "session_exists");
  CHECK_THAT(duplicate.message(), Catch::Contains("`s-1`"));

  Status orphan = store->PutProgram("s-none", Program("p", "x = 1"));
  CHECK(orphan.category() == ErrorCategory::kNotFound);
  CHECK(orphan.reason() == "session_not_found");
  CHECK_THAT(orphan.message(), Catch::Contains("`s-none`"));

  // Missing objects are not errors for the deleting and stats methods.
  CHECK(store->DeleteSession("s-none").ok());
  CHECK(store->DeleteProgram("s-1", "p-none").ok());
  CHECK(store->SaveStats("s-none", {{"calls", 1}}).ok());
  CHECK(store->CountSessions().value() == 1);
}

TEST_CASE("session store: deletes and replacements") {
  StoreDir dir;
  std::unique_ptr<SessionStore> store = Open(dir.path);
  REQUIRE(store->PutSession(Session("s-1")).ok());
  REQUIRE(store->PutSession(Session("s-2")).ok());
  for (const char* id : {"a", "b", "c"}) REQUIRE(store->PutProgram("s-1", Program(id, id)).ok());

  SECTION("deleting a program leaves the others in order") {
    REQUIRE(store->DeleteProgram("s-1", "b").ok());
    CHECK(ProgramIds(Load(*store)[0]) == std::vector<std::string>{"a", "c"});
  }
  SECTION("a replaced program has the new definition and moves to the end") {
    REQUIRE(store->PutProgram("s-1", Program("a", "new")).ok());
    StoredSession s1 = Load(*store)[0];
    CHECK(ProgramIds(s1) == std::vector<std::string>{"b", "c", "a"});
    CHECK(s1.programs[2].definition["source"] == "new");
  }
  SECTION("deleting a session removes its programs") {
    REQUIRE(store->DeleteSession("s-1").ok());
    CHECK(store->CountSessions().value() == 1);
    // A new session under the same id must not inherit the old one's programs.
    REQUIRE(store->PutSession(Session("s-1")).ok());
    std::vector<StoredSession> sessions = Load(*store);
    REQUIRE(sessions.size() == 2);
    CHECK(sessions[0].id == "s-2");
    CHECK(sessions[1].id == "s-1");
    CHECK(sessions[1].programs.empty());
  }
}

TEST_CASE("session store: data survives closing and reopening, in a file of mode 0600") {
  StoreDir dir;
  {
    std::unique_ptr<SessionStore> store = Open(dir.path);
    REQUIRE(store->PutSession(Session("s-1")).ok());
    REQUIRE(store->PutProgram("s-1", Program("p", "print(1)")).ok());
    // The write-ahead log holds the same tenant code as the database.
    struct stat wal = {};
    REQUIRE(stat((dir.path + "-wal").c_str(), &wal) == 0);
    CHECK((wal.st_mode & 07777) == 0600);
  }
  struct stat file = {};
  REQUIRE(stat(dir.path.c_str(), &file) == 0);
  CHECK((file.st_mode & 07777) == 0600);

  std::unique_ptr<SessionStore> reopened = Open(dir.path);
  std::vector<StoredSession> sessions = Load(*reopened);
  REQUIRE(sessions.size() == 1);
  CHECK(sessions[0].metadata == Session("s-1").metadata);
  CHECK(ProgramIds(sessions[0]) == std::vector<std::string>{"p"});
  CHECK(reopened->PutSession(Session("s-1")).reason() == "session_exists");
}

TEST_CASE("session store: puts from 8 threads all land") {
  StoreDir dir;
  std::unique_ptr<SessionStore> store = Open(dir.path);
  constexpr int kThreads = 8;
  constexpr int kEach = 25;
  std::atomic<int> failures{0};  // Catch2 assertions are not thread-safe
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&store, &failures, t] {
      for (int i = 0; i < kEach; ++i) {
        std::string id = "s-" + std::to_string(t) + "-" + std::to_string(i);
        if (!store->PutSession(Session(id)).ok()) ++failures;
        if (!store->PutProgram(id, Program("p", id)).ok()) ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(failures == 0);
  CHECK(store->CountSessions().value() == kThreads * kEach);
  std::vector<StoredSession> sessions = Load(*store);
  REQUIRE(sessions.size() == kThreads * kEach);
  for (const StoredSession& session : sessions) CHECK(session.programs.size() == 1);
}

TEST_CASE("session store: a file from a newer corrald is refused, naming its version") {
  StoreDir dir;
  Open(dir.path).reset();
  Exec(dir.path, "PRAGMA user_version = 2");
  Result<std::unique_ptr<SessionStore>> store = OpenSqliteSessionStore(dir.path);
  REQUIRE_FALSE(store.ok());
  CHECK(store.status().reason() == "store_error");
  CHECK_THAT(store.status().message(), Catch::Contains("schema version 2"));
  CHECK_THAT(store.status().message(), Catch::Contains(dir.path));
}

TEST_CASE("session store: a corrupt JSON row is an error naming the session") {
  struct Case {
    std::string sql;
    std::string named;
  };
  const std::vector<Case> cases = {
      {"UPDATE sessions SET metadata = '{not json' WHERE id = 's-bad'", "session `s-bad`"},
      {"UPDATE sessions SET stats = '[1,' WHERE id = 's-good'", "session `s-good`"},
      {"UPDATE programs SET definition = '' WHERE program_id = 'p'",
       "session `s-good`: program `p`"},
  };
  for (const Case& corruption : cases) {
    INFO(corruption.sql);
    StoreDir dir;
    {
      std::unique_ptr<SessionStore> store = Open(dir.path);
      REQUIRE(store->PutSession(Session("s-good")).ok());
      REQUIRE(store->PutSession(Session("s-bad")).ok());
      REQUIRE(store->PutProgram("s-good", Program("p", "x")).ok());
    }
    Exec(dir.path, corruption.sql);
    Result<std::vector<StoredSession>> sessions = Open(dir.path)->LoadAll();
    REQUIRE_FALSE(sessions.ok());
    CHECK(sessions.status().reason() == "store_error");
    CHECK_THAT(sessions.status().message(), Catch::Contains(corruption.named));
    CHECK_THAT(sessions.status().message(), Catch::Contains(dir.path));
  }
}

TEST_CASE("session store: a path in a missing directory is a store error naming the path") {
  StoreDir dir;
  std::string path = dir.dir + "/missing/pool-sessions.db";
  Result<std::unique_ptr<SessionStore>> store = OpenSqliteSessionStore(path);
  REQUIRE_FALSE(store.ok());
  CHECK(store.status().reason() == "store_error");
  CHECK(store.status().category() == ErrorCategory::kUnavailable);
  CHECK_THAT(store.status().message(), Catch::Contains("`sqlite:" + path + "`"));
  CHECK_THAT(store.status().ToString(), Catch::Contains("No such file or directory"));
}

TEST_CASE("session store: a write blocked past the busy timeout names the operation") {
  StoreDir dir;
  std::unique_ptr<SessionStore> store = Open(dir.path);
  sqlite3* other = nullptr;
  REQUIRE(sqlite3_open(dir.path.c_str(), &other) == SQLITE_OK);
  // Another writer holds the write lock for longer than the store's 5 s busy timeout.
  REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
  Status blocked = store->PutSession(Session("s-1"));
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);

  CHECK(blocked.category() == ErrorCategory::kUnavailable);
  CHECK(blocked.reason() == "store_error");
  CHECK(blocked.message() ==
        "session store `sqlite:" + dir.path + "`: insert session `s-1`: database is locked");
  CHECK(store->PutSession(Session("s-1")).ok());
}

TEST_CASE("session store: a string that is not UTF-8 does not throw out of the store") {
  StoreDir dir;
  std::unique_ptr<SessionStore> store = Open(dir.path);
  StoredSession session = Session("s-1");
  session.metadata["label"] = std::string("caf\xe9");  // Latin-1, as a careless caller may pass
  CHECK_NOTHROW(store->PutSession(session).ok());
  REQUIRE(store->PutSession(Session("s-2")).ok());
  CHECK_NOTHROW(store->SaveStats("s-2", {{"last_error", std::string("\xff")}}).ok());
  CHECK_NOTHROW(store->LoadAll().ok());
}

}  // namespace
}  // namespace corral
