// The pool backend across the life of its sessions and workers: sessions and their programs
// outlive daemon restarts (graceful and kill -9) through the session store, deletes and idle
// reaping leave it, pool sessions are counted apart from process ones, and a worker serves one
// tenant at a time. A real corrald with real sandboxed workers and a real SQLite file.
#include <signal.h>

#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "tests/support/pool_support.h"

namespace corral::testing {
namespace {

// --- daemon restarts ------------------------------------------------------------------------

// The sessions were all created with `p` (their owner) and `twice`: they are listed with both,
// execute, and their first execute re-creates both.
void CheckRestored(Daemon& daemon, const std::vector<std::string>& sessions,
                   const std::map<std::string, std::string>& created_at) {
  CHECK(SessionIds(daemon) == std::set<std::string>(sessions.begin(), sessions.end()));
  for (const std::string& s : sessions) {
    HttpResult info = daemon.Get("/v1/sessions/" + s);
    INFO(info.body);
    REQUIRE(info.status == 200);
    CHECK(info.json["backend"] == "pool");
    CHECK(info.json["status"] == "ready");
    CHECK(info.json["user_id"] == "user-" + s);
    CHECK(info.json["metadata"]["name"] == s);
    CHECK(info.json["programs"] == nlohmann::json({"p", "twice"}));
    if (created_at.count(s) > 0) CHECK(info.json["created_at"] == created_at.at(s));

    HttpResult run = daemon.Execute(s, "p", {{"n", 5}});
    INFO(run.body);
    CHECK(run.status == 200);
    CHECK(run.json["outputs"] == OwnerAnswer(s, 5));
    CHECK(Recreated(run) == 2);
    CHECK(daemon.Execute(s, "twice", {{"x", 21}}).json["outputs"] == 42);
    CHECK(ProgramIds(daemon.Get("/v1/sessions/" + s + "/programs")) ==
          std::set<std::string>{"p", "twice"});
  }
}

void CreateKeptSession(Daemon& daemon, const std::string& id) {
  CreatePoolSession(daemon,
                    {{"session_id", id}, {"user_id", "user-" + id}, {"metadata", {{"name", id}}}});
  daemon.CreatePythonProgram(id, "p", OwnerProgram(id));
  daemon.CreatePythonProgram(id, "twice", "def forward(x):\n    return 2 * x\n");
  CHECK(daemon.Execute(id, "p", {{"n", 1}}).json["outputs"] == OwnerAnswer(id, 1));
}

std::vector<pid_t> PoolPids(Daemon& daemon) {
  std::vector<pid_t> pids;
  for (const auto& worker : PoolStats(daemon)["workers"]) {
    if (worker["pid"].is_number()) pids.push_back(worker["pid"].get<pid_t>());
  }
  return pids;
}

TEST_CASE("pool: sessions and programs outlive a graceful restart and a kill -9") {
  const std::vector<std::string> config = {"pool.size=2"};
  auto first = StartPool(config);
  std::vector<std::string> sessions = {"kept-1", "kept-2"};
  std::map<std::string, std::string> created_at;
  for (const std::string& s : sessions) {
    CreateKeptSession(*first, s);
    created_at[s] = first->Get("/v1/sessions/" + s).json["created_at"].get<std::string>();
  }
  int status = first->Terminate();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  auto second = RestartPool(*first, config);
  CheckRestored(*second, sessions, created_at);
  // A clean stop kept the stats too.
  CHECK(second->Get("/v1/sessions/kept-1").json["stats"]["executions"].get<int>() >= 2);
  CHECK(second->log().find("restored 2 pool session(s)") != std::string::npos);

  // Created after the restart, acknowledged, then the daemon is killed outright.
  sessions.push_back("kept-3");
  CreateKeptSession(*second, "kept-3");
  std::vector<pid_t> old_workers = PoolPids(*second);
  second->KillHard();

  auto third = RestartPool(*first, config);
  for (pid_t pid : old_workers) CHECK(ProcessGone(pid));
  CheckRestored(*third, sessions, created_at);
  CHECK(third->log().find("restored 3 pool session(s)") != std::string::npos);
  CHECK(PoolStats(*third)["store"]["sessions"] == 3);
}

TEST_CASE("pool: a deleted session leaves the store and does not come back after a restart") {
  const std::vector<std::string> config = {"pool.size=1"};
  auto first = StartPool(config);
  std::vector<std::string> sessions = {"gone-1", "gone-2", "stays"};
  for (const std::string& s : sessions) CreateKeptSession(*first, s);
  CHECK(PoolStats(*first)["store"]["sessions"] == 3);

  CHECK(first->Delete("/v1/sessions/gone-1").status == 204);
  CHECK(first->Get("/v1/sessions/gone-1").status == 404);
  CHECK(first->Execute("gone-1", "p", {{"n", 1}}).status == 404);
  CHECK(PoolStats(*first)["store"]["sessions"] == 2);

  // The id is free again, and its new session sees none of the old one's programs, though the
  // worker held them a moment ago.
  CreatePoolSession(*first, {{"session_id", "gone-1"}});
  CHECK(ProgramIds(first->Get("/v1/sessions/gone-1/programs")).empty());
  CHECK(first->Execute("gone-1", "p", {{"n", 1}}).code() == "program_not_found");
  first->CreatePythonProgram("gone-1", "p", "def forward(n):\n    return 'new'\n");
  CHECK(first->Execute("gone-1", "p", {{"n", 1}}).json["outputs"] == "new");
  CHECK(first->Delete("/v1/sessions/gone-1").status == 204);
  CHECK(PoolStats(*first)["store"]["sessions"] == 2);
  CHECK(first->Terminate() == 0);

  auto second = RestartPool(*first, config);
  CHECK(SessionIds(*second) == std::set<std::string>{"gone-2", "stays"});
  CHECK(second->Get("/v1/sessions/gone-1").status == 404);
  CHECK(PoolStats(*second)["store"]["sessions"] == 2);
  CHECK(second->Delete("/v1/sessions/gone-2").status == 204);
  second->KillHard();

  auto third = RestartPool(*first, config);
  CHECK(SessionIds(*third) == std::set<std::string>{"stays"});
  CHECK(third->Get("/v1/sessions/gone-2").status == 404);
  CHECK(PoolStats(*third)["store"]["sessions"] == 1);
  CheckRestored(*third, {"stays"}, {});
}

// --- session limits -------------------------------------------------------------------------

TEST_CASE("pool: pool.max_concurrent_sessions counts pool sessions apart from process ones") {
  auto daemon = StartPool(
      {"pool.size=1", "pool.max_concurrent_sessions=2", "process.max_concurrent_sessions=1"});
  CreatePoolSession(*daemon);
  CreatePoolSession(*daemon);
  HttpResult refused = daemon->Post("/v1/sessions", {{"backend", "pool"}});
  INFO(refused.body);
  CHECK(refused.status == 429);
  CHECK(refused.code() == "too_many_sessions");
  CHECK(refused.json["error"]["message"].get<std::string>().find("pool.max_concurrent_sessions") !=
        std::string::npos);
  // The process backend has its own count.
  CHECK(daemon->Post("/v1/sessions", {{"backend", "process"}}).status == 201);
  CHECK(PoolStats(*daemon)["store"]["sessions"] == 2);

  HttpResult policy = daemon->Post("/v1/sessions", {{"backend", "pool"}, {"policy", "numeric"}});
  CHECK(policy.status == 400);
  CHECK(policy.code() == "policy_not_in_pool");
}

TEST_CASE("pool: an idle pool session is reaped and leaves the store") {
  auto daemon =
      StartPool({"pool.size=1", "pool.max_idle_seconds=2", "process.idle_check_interval=200ms"});
  std::string s = CreatePoolSession(*daemon);
  daemon->CreatePythonProgram(s, "p", OwnerProgram(s));
  CHECK(PoolStats(*daemon)["store"]["sessions"] == 1);
  HttpResult gone;
  for (auto end = Clock::now() + kStateBound; Clock::now() < end;) {
    gone = daemon->Get("/v1/sessions/" + s);
    if (gone.status == 404) break;
    std::this_thread::sleep_for(50ms);
  }
  CHECK(gone.status == 404);
  CHECK(PoolStats(*daemon)["store"]["sessions"] == 0);
}

TEST_CASE("pool: deleting a session mid-call ends that call and spares the others") {
  auto daemon = StartPool({"pool.size=2"});
  std::string doomed = CreatePoolSession(*daemon);
  daemon->CreatePythonProgram(doomed, "nap", kNap);
  std::string other = CreatePoolSession(*daemon);
  daemon->CreatePythonProgram(other, "p", OwnerProgram(other));
  HttpResult cut;
  std::thread call([&] {
    cut = daemon->Execute(doomed, "nap", {{"seconds", 60}, {"tag", "x"}}, 120000);
  });
  REQUIRE(WaitForPool(*daemon, [](const nlohmann::json& pool) {
    for (const auto& worker : pool["workers"]) {
      if (worker["state"] == "busy") return true;
    }
    return false;
  }));
  CHECK(daemon->Delete("/v1/sessions/" + doomed).status == 204);
  call.join();
  INFO(cut.body);
  bool definite = (cut.status == 409 && cut.code() == "session_ended") ||
                  (cut.status == 404 && cut.code() == "session_not_found");
  CHECK(definite);
  CHECK(daemon->Get("/v1/sessions/" + doomed).status == 404);
  CHECK(PoolStats(*daemon)["store"]["sessions"] == 1);
  CHECK(daemon->Execute(other, "p", {{"n", 3}}).json["outputs"] == OwnerAnswer(other, 3));
}

// --- tenants --------------------------------------------------------------------------------

TEST_CASE("pool: a worker that served one tenant is replaced before it serves another") {
  // Three tenants on two workers: some tenant always has to take a worker from another.
  constexpr int kCalls = 5;
  auto daemon = StartPool({"pool.size=2", "pool.queue_timeout=60s"});
  std::vector<std::pair<std::string, std::string>> sessions;  // (session, tenant)
  for (const char* tenant : {"A", "B", "C"}) {
    for (int i = 0; i < 2; ++i) {
      std::string id = CreatePoolSession(*daemon, {{"tenant", tenant}});
      daemon->CreatePythonProgram(id, "p", OwnerProgram(id));
      sessions.emplace_back(id, tenant);
    }
  }

  // Each session calls from its own thread and reads the pid that served it after each call.
  Failures failures;
  std::mutex mutex;                               // guards served
  std::map<pid_t, std::set<std::string>> served;  // worker pid -> tenants it ran code for
  std::vector<std::thread> threads;
  for (const auto& [session, tenant] : sessions) {
    threads.emplace_back([&, session, tenant] {
      for (int n = 0; n < kCalls; ++n) {
        HttpResult run = daemon->Execute(session, "p", {{"n", n}});
        if (run.status != 200 || run.json["outputs"] != OwnerAnswer(session, n)) {
          failures.Add(session + ": execute", run);
          continue;
        }
        HttpResult info = daemon->Get("/v1/sessions/" + session);
        std::lock_guard<std::mutex> lock(mutex);
        served[info.json["worker"]["pid"].get<pid_t>()].insert(tenant);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CheckNone(failures, *daemon);

  for (const auto& [pid, tenants] : served) {
    INFO("worker pid " << pid << " served " << tenants.size() << " tenant(s)");
    CHECK(tenants.size() == 1);
  }
  CHECK(served.size() >= 3);
  CHECK(daemon->log().find("changes tenant") != std::string::npos);
  for (const auto& worker : PoolStats(*daemon)["workers"]) {
    CHECK((worker["tenant"].is_null() || worker["tenant"] == "A" || worker["tenant"] == "B" ||
           worker["tenant"] == "C"));
  }
}

// Counts the live objects that hold a string containing the marker. Identical in every session;
// the marker is joined at run time, so this program's own code never holds it whole.
const char kScan[] = R"(
import gc
def forward():
    mark = "-".join(["kestrel", "quince", "5521"])
    found = 0
    for obj in gc.get_objects():
        try:
            if isinstance(obj, dict):
                values = list(obj.values())
            elif isinstance(obj, (list, tuple, set, frozenset)):
                values = list(obj)
            elif hasattr(obj, "__dict__"):
                values = list(vars(obj).values())
            else:
                continue
        except Exception:
            continue
        found += any(isinstance(v, str) and mark in v for v in values)
    return found
)";

const char kSecret[] = R"(
SECRET = "kestrel-quince-5521"
KEPT = [SECRET, {"secret": SECRET}]
def forward():
    return len(SECRET)
)";

TEST_CASE("pool: a tenant's gc walk finds nothing of another tenant's programs") {
  // One worker: every change of tenant must replace it.
  auto daemon = StartPool({"pool.size=1"});
  std::string b = CreatePoolSession(*daemon, {{"tenant", "B"}});
  daemon->CreatePythonProgram(b, "secret", kSecret);
  daemon->CreatePythonProgram(b, "scan", kScan);
  std::string a = CreatePoolSession(*daemon, {{"tenant", "A"}});
  daemon->CreatePythonProgram(a, "scan", kScan);
  std::string b2 = CreatePoolSession(*daemon, {{"tenant", "B"}});
  daemon->CreatePythonProgram(b2, "scan", kScan);

  for (int round = 0; round < 2; ++round) {
    INFO("round " << round);
    REQUIRE(daemon->Execute(b, "secret").json["outputs"] == 19);
    pid_t b_pid = daemon->Get("/v1/sessions/" + b).json["worker"]["pid"].get<pid_t>();
    // The walk works: it finds the marker in B's session, and in another session of tenant B
    // on the same worker (sessions of one tenant are namespaced, not isolated).
    HttpResult own = daemon->Execute(b, "scan");
    CHECK(own.json["outputs"].get<int>() >= 1);
    HttpResult neighbour = daemon->Execute(b2, "scan");
    INFO(neighbour.body);
    CHECK(daemon->Get("/v1/sessions/" + b2).json["worker"]["pid"] == b_pid);
    CHECK(neighbour.json["outputs"].get<int>() >= 1);

    HttpResult scanned = daemon->Execute(a, "scan");
    INFO(scanned.body);
    REQUIRE(scanned.status == 200);
    CHECK(scanned.json["outputs"] == 0);
    pid_t a_pid = daemon->Get("/v1/sessions/" + a).json["worker"]["pid"].get<pid_t>();
    CHECK(a_pid != b_pid);
    CHECK(ProcessGone(b_pid));
  }
}

TEST_CASE("pool: under strict affinity a session keeps its worker and its module state") {
  constexpr int kCalls = 10;
  auto daemon = StartPool({"pool.size=2", "pool.affinity=strict", "pool.queue_timeout=60s"});
  CHECK(PoolStats(*daemon)["affinity"] == "strict");
  std::string s = CreatePoolSession(*daemon);
  daemon->CreatePythonProgram(s, "count", kCounter);
  std::vector<std::string> others;
  for (int i = 0; i < 3; ++i) {
    others.push_back(CreatePoolSession(*daemon));
    daemon->CreatePythonProgram(others.back(), "nap", kNap);
  }

  // The same tenant's other sessions keep both workers busy meanwhile.
  Failures failures;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (const std::string& other : others) {
    threads.emplace_back([&, other] {
      while (!stop) {
        HttpResult run = daemon->Execute(other, "nap", {{"seconds", 0.1}, {"tag", other}});
        if (run.status != 200 || run.json["outputs"] != other) failures.Add(other, run);
      }
    });
  }
  std::vector<HttpResult> counts;
  std::set<nlohmann::json> slots;
  for (int i = 0; i < kCalls; ++i) {
    counts.push_back(daemon->Execute(s, "count"));
    slots.insert(daemon->Get("/v1/sessions/" + s).json["pool"]["worker"]);
  }
  stop = true;
  for (std::thread& thread : threads) thread.join();

  for (int i = 0; i < kCalls; ++i) {
    INFO(counts[i].body);
    CHECK(counts[i].status == 200);
    CHECK(counts[i].json["outputs"] == i + 1);
    CHECK(Recreated(counts[i]) == 0);
  }
  CHECK(slots.size() == 1);
  CHECK(daemon->Get("/v1/sessions/" + s).json["pool"]["recreations"] == 0);
  CheckNone(failures, *daemon);
}

}  // namespace
}  // namespace corral::testing
