// The pool backend when workers fail: a slot whose worker cannot start leaves rotation instead
// of looping, worn or swollen workers are replaced between requests, a call past its timeout
// costs that call alone, and the pool's own commands stay out of a client's reach.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <set>
#include <thread>

#include "tests/support/pool_support.h"

namespace corral::testing {
namespace {

// Only a bound against a broken daemon hanging the run, never a timing assertion.
constexpr int kPollRounds = 1200;  // of 50 ms

int64_t WorkerPid(Daemon& daemon, const std::string& session) {
  HttpResult info = daemon.Get("/v1/sessions/" + session);
  REQUIRE(info.status == 200);
  return info.json["worker"]["pid"].get<int64_t>();
}

std::string PoolSession(Daemon& daemon, const std::string& id) {
  return CreatePoolSession(daemon, {{"session_id", id}, {"tenant", "acme"}});
}

TEST_CASE("pool: a worker slot that keeps failing to start leaves rotation and says why") {
  DaemonOptions options;
  // An interpreter that exits at once: every pool worker start fails.
  options.overrides = {"pool.size=2", "pool.max_start_failures=2", "pool.restart_backoff=10ms",
                       "worker.python=/usr/bin/false"};
  auto daemon = Daemon::Start(options);

  HttpResult pool;
  auto all_failed = [&] {
    pool = daemon->Get("/v1/pool");
    if (pool.status != 200) return false;
    for (const auto& worker : pool.json["workers"]) {
      if (worker["state"] != "failed") return false;
    }
    return true;
  };
  for (int i = 0; i < kPollRounds && !all_failed(); ++i) std::this_thread::sleep_for(50ms);
  INFO(pool.body << "\n" << daemon->log());
  REQUIRE(all_failed());
  for (const auto& worker : pool.json["workers"]) {
    CHECK(worker["start_failures"] == 2);
    CHECK(worker["pid"].is_null());
    CHECK_THAT(worker["last_error"].get<std::string>(), Catch::Contains("did not start"));
  }

  // Out of rotation means no more attempts: the count stays where it stopped.
  std::this_thread::sleep_for(300ms);
  REQUIRE(all_failed());
  for (const auto& worker : pool.json["workers"]) CHECK(worker["start_failures"] == 2);

  HttpResult ready = daemon->Get("/readyz");
  CHECK(ready.status == 503);
  CHECK(ready.code() == "pool_unavailable");
  HttpResult created = daemon->Post("/v1/sessions", {{"backend", "pool"}});
  CHECK(created.status == 503);
  CHECK(created.code() == "pool_unavailable");
  CHECK(daemon->Get("/v1/sessions").json["sessions"].empty());
}

TEST_CASE("pool: a worker is replaced after worker_max_requests, and past worker_max_memory") {
  auto daemon = StartPool({"pool.size=1", "pool.worker_max_requests=3"});
  std::string session = PoolSession(*daemon, "worn");
  daemon->CreatePythonProgram(session, "count", kCounter);  // request 1 of the worker
  std::set<int64_t> pids;
  std::vector<int64_t> counts;
  for (int i = 0; i < 5; ++i) {
    HttpResult run = daemon->Execute(session, "count");
    INFO(run.body);
    REQUIRE(run.status == 200);
    counts.push_back(run.json["outputs"].get<int64_t>());
    pids.insert(WorkerPid(*daemon, session));
  }
  // Requests 2 and 3 ran on the first worker; the fresh one re-created the program.
  CHECK(counts == std::vector<int64_t>{1, 2, 1, 2, 3});
  CHECK(pids.size() == 2);

  auto swollen = StartPool({"pool.size=1", "pool.worker_max_memory=1Mi"});
  std::string other = PoolSession(*swollen, "swollen");
  swollen->CreatePythonProgram(other, "count", kCounter);
  int64_t first = WorkerPid(*swollen, other);
  // Memory is checked between requests, every 8th one: within 8 requests of its start the
  // worker (always past 1 MiB) is replaced, and the next call re-creates the program.
  int recreated_at = 0;
  for (int i = 1; i <= 9 && recreated_at == 0; ++i) {
    HttpResult run = swollen->Execute(other, "count");
    REQUIRE(run.status == 200);
    if (run.json.contains("programs_recreated")) recreated_at = i;
  }
  CHECK(recreated_at == 8);  // the create was request 1, so request 8 ended the first worker
  CHECK(WorkerPid(*swollen, other) != first);
}

TEST_CASE("pool: a call past its timeout costs that call; the session goes on") {
  auto daemon = StartPool({"pool.size=1"});
  std::string session = PoolSession(*daemon, "slow");
  daemon->CreatePythonProgram(session, "nap",
                              "import time\ndef forward():\n    time.sleep(60)\n    return 1\n");
  daemon->CreatePythonProgram(session, "count", kCounter);
  int64_t before = WorkerPid(*daemon, session);

  HttpResult late = daemon->Execute(session, "nap", nlohmann::json::object(), 300);
  CHECK(late.status == 504);
  CHECK(late.code() == "wall_timeout");

  HttpResult info = daemon->Get("/v1/sessions/" + session);
  CHECK(info.json["status"] == "ready");
  CHECK(info.json["failure"].is_null());
  HttpResult next = daemon->Execute(session, "count");
  INFO(next.body);
  REQUIRE(next.status == 200);
  CHECK(next.json["outputs"] == 1);
  CHECK(next.json["programs_recreated"] == 2);
  CHECK(WorkerPid(*daemon, session) != before);
}

TEST_CASE("pool: the pool's own commands are not a client's to send") {
  auto daemon = StartPool({"pool.size=1"});
  std::string victim = PoolSession(*daemon, "victim");
  std::string attacker = PoolSession(*daemon, "attacker");
  daemon->CreatePythonProgram(victim, "count", kCounter);
  REQUIRE(daemon->Execute(victim, "count").status == 200);

  // drop_session naming a neighbour in the same worker is refused before any worker sees it.
  HttpResult dropped =
      daemon->Post("/v1/sessions/" + attacker + "/call",
                   {{"command", "drop_session"}, {"args", {{"session_id", victim}}}});
  CHECK(dropped.status == 400);
  CHECK(dropped.code() == "unknown_command");
  HttpResult still = daemon->Execute(victim, "count");
  INFO(still.body);
  REQUIRE(still.status == 200);
  CHECK(still.json["outputs"] == 2);  // same worker, state intact
  CHECK_FALSE(still.json.contains("programs_recreated"));
}

TEST_CASE("pool: no session id can take a pool worker's cgroup name") {
  auto daemon = StartPool({"pool.size=1"});
  // Pool workers are named with "..", which session ids may never hold.
  std::vector<std::string> children = daemon->CgroupChildren();
  REQUIRE(children.size() == 1);
  CHECK(children[0].find("..") != std::string::npos);
  HttpResult squat = daemon->Post("/v1/sessions", {{"session_id", children[0]}});
  CHECK(squat.status == 400);
  CHECK(squat.json["error"]["details"]["field"] == "session_id");

  // Process sessions with names like the workers' next ones leave restarts unharmed.
  for (const char* id : {"pool-0-2", "pool-0-3", "pool.0.2", "pool..0..2"}) {
    daemon->Post("/v1/sessions", {{"session_id", id}});
  }
  for (const char* tenant : {"a", "b", "a", "b"}) {  // each change of tenant restarts the worker
    std::string session = CreatePoolSession(*daemon, {{"tenant", tenant}});
    daemon->CreatePythonProgram(session, "count", kCounter);
    HttpResult run = daemon->Execute(session, "count");
    INFO(run.body << "\n" << daemon->log());
    CHECK(run.status == 200);
  }
  CHECK(daemon->Get("/readyz").status == 200);
}

TEST_CASE("pool: ending a session mid-call never kills the neighbour's call that follows it") {
  constexpr int kRounds = 15;
  constexpr int kDeleters = 8;
  auto daemon = StartPool({"pool.size=1"});
  std::string neighbour = PoolSession(*daemon, "neighbour");
  daemon->CreatePythonProgram(neighbour, "count", kCounter);
  std::atomic<bool> done{false};
  Failures failures;
  std::thread load([&] {
    while (!done) {
      HttpResult run = daemon->Execute(neighbour, "count");
      if (run.status != 200) failures.Add("neighbour", run);
    }
  });
  for (int round = 0; round < kRounds; ++round) {
    std::string victim = PoolSession(*daemon, "victim-" + std::to_string(round));
    daemon->CreatePythonProgram(victim, "nap", kNap);
    std::thread call([&] { daemon->Execute(victim, "nap", {{"seconds", 0.05}, {"tag", "v"}}); });
    std::vector<std::thread> deleters;
    for (int i = 0; i < kDeleters; ++i) {
      deleters.emplace_back([&] { daemon->Delete("/v1/sessions/" + victim); });
    }
    for (auto& thread : deleters) thread.join();
    call.join();
  }
  done = true;
  load.join();
  CheckNone(failures, *daemon);
}

}  // namespace
}  // namespace corral::testing
