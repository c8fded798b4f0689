// The pool backend end to end: a real corrald whose warm sandboxed workers serve many sessions,
// with a real SQLite session store in its state directory. Sessions share workers but never
// another's programs, never another tenant's worker, and lose nothing when a worker or the daemon
// dies. Every response is also checked against docs/openapi.yaml by the harness.
//
// Slots that cannot start, worn workers and call timeouts are in pool_faults_test.cc; restarts,
// session limits and tenants in pool_lifecycle_test.cc.
//
// The harness starts daemons with `pool.size=0`; each test sizes its pool itself and waits for
// /readyz before creating pool sessions. No test asserts on timing: the bounds below only keep
// a broken daemon from hanging the run.
#include <signal.h>
#include <sys/wait.h>

#include <httplib.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "tests/support/pool_support.h"
#include "tests/support/two_users.h"
namespace corral::testing {
namespace {

// Failures that mean a worker died under a call (manager/backend.h IsWorkerDeath).
const std::set<std::string> kWorkerDeaths = {
    "wall_timeout",          "oom_killed",        "pids_limit",     "cpu_timeout",
    "output_limit",          "seccomp_violation", "worker_crashed", "worker_exited",
    "worker_protocol_error", "killed_by_request"};

// --- the two-users scenario -----------------------------------------------------------------

struct Answer {
  std::string question;
  HttpResult result;
};

// Alice and Bob, each with a `qa_bot` of their own code, calling from several threads at once.
struct TwoUsers {
  std::string backend;
  std::string alice;
  std::string bob;
  std::mutex mutex;  // guards the answers
  std::vector<Answer> alice_answers;
  std::vector<Answer> bob_answers;
};

constexpr int kThreadsPerUser = 3;
constexpr int kCallsPerThread = 8;

// `backend` empty: the create names none and gets `default_backend`.
void SetUpTwoUsers(Daemon& daemon, TwoUsers& users, const std::string& backend) {
  nlohmann::json alice = {{"user_id", "alice"}};
  nlohmann::json bob = {{"user_id", "bob"}};
  if (!backend.empty()) alice["backend"] = bob["backend"] = backend;
  users.alice = daemon.CreateSession(alice);
  users.bob = daemon.CreateSession(bob);
  daemon.CreatePythonProgram(users.alice, "qa_bot", kAliceQaBot);
  daemon.CreatePythonProgram(users.alice, "summarizer", kSummarizer);
  daemon.CreatePythonProgram(users.bob, "qa_bot", kBobQaBot);
  daemon.CreatePythonProgram(users.bob, "classifier", kClassifier);
}

void StartTwoUsersCalls(Daemon& daemon, TwoUsers& users, std::vector<std::thread>& threads) {
  for (int t = 0; t < kThreadsPerUser; ++t) {
    for (bool alice : {true, false}) {
      threads.emplace_back([&daemon, &users, t, alice] {
        for (int i = 0; i < kCallsPerThread; ++i) {
          std::string question = "q" + std::to_string(t) + "x" + std::to_string(i);
          std::string session = alice ? users.alice : users.bob;
          HttpResult result = daemon.Execute(session, "qa_bot", {{"question", question}});
          std::lock_guard<std::mutex> lock(users.mutex);
          (alice ? users.alice_answers : users.bob_answers).push_back({question, result});
        }
      });
    }
  }
}

// Every answer is its user's own. A process session keeps module state across all its calls;
// a pool session's module state starts again exactly where its programs were re-created.
void CheckTwoUsersAnswers(TwoUsers& users) {
  constexpr int kCalls = kThreadsPerUser * kCallsPerThread;
  INFO("backend " << users.backend);
  std::set<int> alice_counts;
  for (const Answer& answer : users.alice_answers) {
    INFO(answer.result.body);
    REQUIRE(answer.result.status == 200);
    CHECK(answer.result.json["outputs"]["answer"] == "alice:" + answer.question);
    CHECK(answer.result.json["stdout"] == "alice saw " + answer.question + "\n");
    int count = answer.result.json["outputs"]["count"].get<int>();
    alice_counts.insert(count);
    CHECK(count <= kCalls);
    if (Recreated(answer.result) > 0) {
      CHECK(Recreated(answer.result) == 2);
      CHECK(count == 1);
    }
  }
  if (users.backend == "process") {
    CHECK(alice_counts.size() == kCalls);
    CHECK(*alice_counts.rbegin() == kCalls);
  }
  for (const Answer& answer : users.bob_answers) {
    INFO(answer.result.body);
    REQUIRE(answer.result.status == 200);
    std::string reversed(answer.question.rbegin(), answer.question.rend());
    CHECK(answer.result.json["outputs"]["answer"] == "bob:" + reversed);
    // Alice's `counter` lives in her own program's namespace, even in a shared interpreter.
    CHECK(answer.result.json["outputs"]["counter_seen"].is_null());
    if (Recreated(answer.result) > 0) CHECK(Recreated(answer.result) == 2);
  }
}

void CheckTwoUsersApart(Daemon& daemon, TwoUsers& users) {
  INFO("backend " << users.backend);
  const std::string& a = users.alice;
  const std::string& b = users.bob;
  CHECK(ProgramIds(daemon.Get("/v1/sessions/" + a + "/programs")) ==
        std::set<std::string>{"qa_bot", "summarizer"});
  CHECK(ProgramIds(daemon.Get("/v1/sessions/" + b + "/programs")) ==
        std::set<std::string>{"qa_bot", "classifier"});
  HttpResult again =
      daemon.Post("/v1/sessions/" + a + "/programs",
                  {{"program_id", "qa_bot"}, {"kind", "python"}, {"source", kAliceQaBot}});
  CHECK(again.status == 409);
  CHECK(again.code() == "program_exists");
  HttpResult foreign = daemon.Execute(a, "classifier", {{"text", "hello world"}});
  CHECK(foreign.status == 404);
  CHECK(foreign.code() == "program_not_found");
  CHECK(daemon.Execute(b, "summarizer", {{"text", "hello world"}}).status == 404);
  CHECK(daemon.Execute(b, "classifier", {{"text", "hello world"}}).json["outputs"] == "long");
  CHECK(daemon.Execute(a, "summarizer", {{"text", "hello world"}}).json["outputs"] == "hello");

  HttpResult info = daemon.Get("/v1/sessions/" + a);
  INFO(info.body);
  CHECK(info.json["backend"] == users.backend);
  CHECK(info.json["user_id"] == "alice");
  CHECK(info.json["programs"] == nlohmann::json({"qa_bot", "summarizer"}));
  CHECK(info.json["stats"]["executions"].get<int>() >= kThreadsPerUser * kCallsPerThread);
  CHECK(info.json["worker"]["pid"].get<int>() > 0);
  if (users.backend == "pool") {
    REQUIRE(info.json.contains("pool"));
    CHECK(info.json["pool"]["worker"].is_number_integer());
    CHECK(info.json["pool"]["shared_limits"] == true);
    uint64_t recreated_answers = 0;
    for (const Answer& answer : users.alice_answers) {
      recreated_answers += Recreated(answer.result) > 0;
    }
    CHECK(info.json["pool"]["recreations"].get<uint64_t>() >= recreated_answers);
  } else {
    CHECK_FALSE(info.json.contains("pool"));
  }
}

TEST_CASE("pool: two users with the same program ids stay apart on the pool backend") {
  // No backend in the creates: default_backend sends them to the pool.
  auto daemon = StartPool({"pool.size=2", "default_backend=pool"});
  TwoUsers users;
  users.backend = "pool";
  SetUpTwoUsers(*daemon, users, "");
  std::vector<std::thread> threads;
  StartTwoUsersCalls(*daemon, users, threads);
  for (std::thread& thread : threads) thread.join();
  CheckTwoUsersAnswers(users);
  CheckTwoUsersApart(*daemon, users);

  HttpResult listed = daemon->Get("/v1/sessions?user_id=alice");
  REQUIRE(listed.json["sessions"].size() == 1);
  CHECK(listed.json["sessions"][0]["session_id"] == users.alice);
  CHECK(daemon->Delete("/v1/sessions/" + users.alice).status == 204);
  CHECK(daemon->Delete("/v1/sessions/" + users.bob).status == 204);
}

TEST_CASE("pool: the two-users scenario runs on both backends side by side in one daemon") {
  auto daemon = StartPool({"pool.size=2"});
  TwoUsers on_pool;
  on_pool.backend = "pool";
  TwoUsers on_process;
  on_process.backend = "process";
  SetUpTwoUsers(*daemon, on_pool, "pool");
  SetUpTwoUsers(*daemon, on_process, "process");

  // All four sessions called at once.
  std::vector<std::thread> threads;
  StartTwoUsersCalls(*daemon, on_pool, threads);
  StartTwoUsersCalls(*daemon, on_process, threads);
  for (std::thread& thread : threads) thread.join();
  for (TwoUsers* users : {&on_pool, &on_process}) {
    CheckTwoUsersAnswers(*users);
    CheckTwoUsersApart(*daemon, *users);
  }

  // One API lists both: Alice has a session on each backend.
  HttpResult listed = daemon->Get("/v1/sessions?user_id=alice");
  REQUIRE(listed.status == 200);
  std::map<std::string, std::string> backends;
  for (const auto& session : listed.json["sessions"]) {
    backends[session["session_id"].get<std::string>()] = session["backend"].get<std::string>();
  }
  CHECK(backends ==
        std::map<std::string, std::string>{{on_pool.alice, "pool"}, {on_process.alice, "process"}});
  // A process session has a sandbox of its own; pool sessions add none.
  CHECK(daemon->CgroupChildren().size() == 2 + 2);
  for (TwoUsers* users : {&on_pool, &on_process}) {
    CHECK(daemon->Delete("/v1/sessions/" + users->alice).status == 204);
    CHECK(daemon->Delete("/v1/sessions/" + users->bob).status == 204);
  }
  CHECK(daemon->CgroupChildren().size() == 2);
  CHECK(PoolStats(*daemon)["store"]["sessions"] == 0);
}

// --- many sessions --------------------------------------------------------------------------

TEST_CASE("pool: 1,000 sessions on 4 workers, same program id, each answer the session's own") {
  constexpr int kSessions = 1000;
  constexpr int kThreads = 16;
  constexpr int kRounds = 2;
  auto daemon = StartPool({"pool.size=4"});
  Failures failures;
  std::vector<std::string> ids(kSessions);
  for (int i = 0; i < kSessions; ++i) ids[i] = "many-" + std::to_string(i);

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kSessions; i += kThreads) {
        HttpResult created =
            daemon->Post("/v1/sessions", {{"session_id", ids[i]}, {"backend", "pool"}});
        if (created.status != 201) failures.Add(ids[i] + ": create", created);
        HttpResult program = daemon->Post(
            "/v1/sessions/" + ids[i] + "/programs",
            {{"program_id", "p"}, {"kind", "python"}, {"source", OwnerProgram(ids[i])}});
        if (program.status != 201) failures.Add(ids[i] + ": program", program);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CheckNone(failures, *daemon);

  // Each session is called from one thread, 16 sessions at once on 4 workers; each round starts
  // at another place in a thread's share, so sessions meet other neighbours on the workers.
  threads.clear();
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<int> share;
      for (int i = t; i < kSessions; i += kThreads) share.push_back(i);
      for (int round = 0; round < kRounds; ++round) {
        for (size_t k = 0; k < share.size(); ++k) {
          int i = share[(k + round * share.size() / kRounds) % share.size()];
          HttpResult run = daemon->Execute(ids[i], "p", {{"n", round}});
          if (run.status != 200 || run.json["outputs"] != OwnerAnswer(ids[i], round)) {
            failures.Add(ids[i] + ": execute", run);
          }
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CheckNone(failures, *daemon);

  nlohmann::json pool = PoolStats(*daemon);
  INFO(pool.dump());
  CHECK(pool["store"]["sessions"] == kSessions);
  CHECK(pool["size"] == 4);
  uint64_t requests = 0;
  for (const auto& worker : pool["workers"]) requests += worker["requests"].get<uint64_t>();
  CHECK(requests >= uint64_t{kSessions} * (1 + kRounds));
  CHECK(SessionIds(*daemon).size() == kSessions);
  // Pool sessions add no sandbox: the pool's workers are all there is.
  CHECK(daemon->CgroupChildren().size() == 4);
}

// --- worker faults --------------------------------------------------------------------------

TEST_CASE("pool: a worker killed with -9 under load costs its in-flight request alone") {
  constexpr int kLoadSessions = 6;
  auto daemon = StartPool({"pool.size=3"});
  std::string victim = CreatePoolSession(*daemon);
  daemon->CreatePythonProgram(victim, "p", OwnerProgram(victim));
  daemon->CreatePythonProgram(victim, "nap", kNap);
  std::vector<std::string> load;
  for (int i = 0; i < kLoadSessions; ++i) {
    load.push_back(CreatePoolSession(*daemon));
    daemon->CreatePythonProgram(load.back(), "p", OwnerProgram(load.back()));
  }
  REQUIRE(daemon->Execute(victim, "p", {{"n", 0}}).status == 200);
  HttpResult info = daemon->Get("/v1/sessions/" + victim);
  int slot = info.json["pool"]["worker"].get<int>();
  pid_t pid = info.json["worker"]["pid"].get<pid_t>();

  // The victim's long call runs on its worker (the only call so far, so the busy one).
  HttpResult held;
  std::thread holder([&] {
    held = daemon->Execute(victim, "nap", {{"seconds", 60}, {"tag", "slept"}}, 120000);
  });
  bool busy = WaitForPool(*daemon, [&](const nlohmann::json& pool) {
    return pool["workers"][slot]["state"] == "busy";
  });
  REQUIRE(busy);
  REQUIRE(PoolStats(*daemon)["workers"][slot]["pid"] == pid);

  // Load on the other workers, before, during and after the kill.
  Failures failures;
  std::atomic<bool> stop{false};
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (const std::string& session : load) {
    threads.emplace_back([&, session] {
      for (int n = 0; !stop; ++n) {
        HttpResult run = daemon->Execute(session, "p", {{"n", n}});
        if (run.status != 200 || run.json["outputs"] != OwnerAnswer(session, n)) {
          failures.Add(session + ": execute", run);
        }
        ++done;
      }
    });
  }
  auto wait_calls = [&](int more) {
    int target = done + more;
    for (auto end = Clock::now() + kStateBound; Clock::now() < end && done < target;) {
      std::this_thread::sleep_for(10ms);
    }
  };
  wait_calls(100);
  REQUIRE(kill(pid, SIGKILL) == 0);
  holder.join();
  wait_calls(100);
  stop = true;
  for (std::thread& thread : threads) thread.join();

  INFO(held.body);
  CHECK(held.status != 200);
  CHECK(kWorkerDeaths.count(held.code()) == 1);
  CheckNone(failures, *daemon);
  CHECK(ProcessGone(pid));

  // The slot gets a fresh worker; the victim's session goes on, its programs re-created.
  bool replaced = WaitForPool(*daemon, [&](const nlohmann::json& pool) {
    const nlohmann::json& worker = pool["workers"][slot];
    return worker["pid"].is_number() && worker["pid"] != pid && worker["state"] != "failed";
  });
  CHECK(replaced);
  HttpResult victim_info = daemon->Get("/v1/sessions/" + victim);
  CHECK(victim_info.json["status"] == "ready");
  HttpResult after = daemon->Execute(victim, "p", {{"n", 7}});
  INFO(after.body);
  CHECK(after.status == 200);
  CHECK(after.json["outputs"] == OwnerAnswer(victim, 7));
  CHECK(Recreated(after) == 2);
  CHECK(daemon->Execute(victim, "nap", {{"seconds", 0}, {"tag", "again"}}).json["outputs"] ==
        "again");
  CHECK(daemon->Get("/v1/sessions/" + victim).json["pool"]["recreations"].get<int>() >= 1);
}

TEST_CASE("pool: workers killed with -9 while serving load cost only their own requests") {
  constexpr int kKills = 4;
  constexpr int kLoadSessions = 8;
  auto daemon = StartPool({"pool.size=3"});
  std::vector<std::string> load;
  for (int i = 0; i < kLoadSessions; ++i) {
    load.push_back(CreatePoolSession(*daemon));
    daemon->CreatePythonProgram(load.back(), "nap", kNap);
  }

  // Every session calls back to back; each call naps, so a killed busy worker has one in flight.
  std::mutex mutex;  // guards failed
  std::vector<HttpResult> failed;
  std::atomic<bool> stop{false};
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (const std::string& session : load) {
    threads.emplace_back([&, session] {
      while (!stop) {
        HttpResult run = daemon->Execute(session, "nap", {{"seconds", 0.05}, {"tag", session}});
        if (run.status != 200 || run.json["outputs"] != session) {
          std::lock_guard<std::mutex> lock(mutex);
          failed.push_back(run);
        }
        ++done;
      }
    });
  }
  std::vector<pid_t> killed;
  for (int k = 0; k < kKills; ++k) {
    pid_t pid = 0;
    WaitForPool(*daemon, [&](const nlohmann::json& pool) {
      for (const auto& worker : pool["workers"]) {
        if (worker["state"] == "busy" && worker["pid"].is_number()) {
          pid = worker["pid"].get<pid_t>();
          return true;
        }
      }
      return false;
    });
    REQUIRE(pid > 0);
    REQUIRE(kill(pid, SIGKILL) == 0);
    killed.push_back(pid);
    int target = done + 2 * kLoadSessions;
    for (auto end = Clock::now() + kStateBound; Clock::now() < end && done < target;) {
      std::this_thread::sleep_for(10ms);
    }
  }
  stop = true;
  for (std::thread& thread : threads) thread.join();

  // Each kill may cost the request it interrupted, with a typed error, and nothing else.
  INFO("calls: " << done << ", failed: " << failed.size());
  CHECK(failed.size() <= static_cast<size_t>(kKills));
  for (const HttpResult& result : failed) {
    INFO(result.status << " " << result.body);
    CHECK(kWorkerDeaths.count(result.code()) == 1);
  }
  for (pid_t pid : killed) CHECK(ProcessGone(pid));
  for (const std::string& session : load) {
    CHECK(daemon->Execute(session, "nap", {{"seconds", 0}, {"tag", "after"}}).json["outputs"] ==
          "after");
  }
}

TEST_CASE("pool: a request after an idle worker died runs on a fresh one") {
  constexpr int kRounds = 10;
  auto daemon = StartPool({"pool.size=1"});
  std::string s = CreatePoolSession(*daemon);
  daemon->CreatePythonProgram(s, "p", OwnerProgram(s));
  // The worker is idle when it dies: no request was in flight, so none may fail.
  for (int n = 0; n < kRounds; ++n) {
    INFO("round " << n);
    pid_t pid = 0;
    REQUIRE(WaitForPool(*daemon, [&](const nlohmann::json& pool) {
      const nlohmann::json& worker = pool["workers"][0];
      if (worker["state"] != "ready" || !worker["pid"].is_number()) return false;
      pid = worker["pid"].get<pid_t>();
      return true;
    }));
    REQUIRE(kill(pid, SIGKILL) == 0);
    // Once the process is gone (its channel closed), the daemon can know: a request sent to the
    // worker in the instant it dies is indistinguishable from one that killed it, and is failed
    // rather than repeated (README, Limitations).
    for (int i = 0; i < 10000 && !ProcessGone(pid); ++i) std::this_thread::sleep_for(1ms);
    REQUIRE(ProcessGone(pid));
    HttpResult run = daemon->Execute(s, "p", {{"n", n}});
    INFO(run.body);
    CHECK(run.status == 200);
    CHECK(run.json["outputs"] == OwnerAnswer(s, n));
  }
}

// --- the queue ------------------------------------------------------------------------------

// One raw request, for what the harness does not keep: the response headers.
httplib::Result RawExecute(Daemon& daemon, const std::string& session, const nlohmann::json& body) {
  httplib::Client client("127.0.0.1", daemon.port());
  client.set_read_timeout(60s);
  return client.Post(("/v1/sessions/" + session + "/programs/nap/execute").c_str(), body.dump(),
                     "application/json");
}

TEST_CASE("pool: past pool.max_queue_size a request gets 429 queue_full, admitted ones run") {
  auto daemon = StartPool({"pool.size=1", "pool.max_queue_size=2", "pool.queue_timeout=60s"});
  std::string holder = CreatePoolSession(*daemon);
  daemon->CreatePythonProgram(holder, "nap", kNap);
  std::vector<std::string> sessions;
  for (int i = 0; i < 3; ++i) {
    sessions.push_back(CreatePoolSession(*daemon));
    daemon->CreatePythonProgram(sessions.back(), "nap", kNap);
  }

  // The one worker is held until the test lets go; two requests of two sessions wait: the
  // queue is full.
  HttpResult held;
  std::vector<HttpResult> admitted(2);
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    held = daemon->Execute(holder, "nap", {{"seconds", 60}, {"tag", "held"}}, 120000);
  });
  REQUIRE(WaitForPool(
      *daemon, [](const nlohmann::json& pool) { return pool["workers"][0]["state"] == "busy"; }));
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      admitted[i] =
          daemon->Execute(sessions[i], "nap", {{"seconds", 0}, {"tag", "t" + std::to_string(i)}});
    });
    REQUIRE(WaitForQueueDepth(*daemon, i + 1));
  }

  nlohmann::json third = {{"inputs", {{"seconds", 0}, {"tag", "t2"}}}};
  HttpResult refused = daemon->Execute(sessions[2], "nap", third["inputs"]);
  httplib::Result raw = RawExecute(*daemon, sessions[2], third);
  nlohmann::json queue = PoolStats(*daemon)["queue"];
  // Ending the holder's session frees the worker (replaced, as it was killed mid-call).
  CHECK(daemon->Delete("/v1/sessions/" + holder).status == 204);
  for (auto& thread : threads) thread.join();

  INFO(refused.body);
  CHECK(refused.status == 429);
  CHECK(refused.code() == "queue_full");
  CHECK(refused.json["error"]["details"]["retry_after_s"] == 1);
  REQUIRE(raw);
  CHECK(raw->status == 429);
  CHECK(raw->get_header_value("Retry-After") == "1");
  INFO(queue.dump());
  CHECK(queue["depth"] == 2);
  CHECK(queue["rejected"] == 2);
  CHECK(held.code() == "session_ended");
  for (int i = 0; i < 2; ++i) {
    INFO(admitted[i].body);
    CHECK(admitted[i].status == 200);
    CHECK(admitted[i].json["outputs"] == "t" + std::to_string(i));
  }
  queue = PoolStats(*daemon)["queue"];
  CHECK(queue["expired"] == 0);
  CHECK(queue["depth"] == 0);
  // Refused, not lost: the session answers once there is room.
  CHECK(daemon->Execute(sessions[2], "nap", third["inputs"]).json["outputs"] == "t2");
}

TEST_CASE("pool: a request that waits past pool.queue_timeout gets 504 and never runs") {
  auto daemon = StartPool({"pool.size=1", "pool.queue_timeout=500ms"});
  std::string holder = CreatePoolSession(*daemon);
  daemon->CreatePythonProgram(holder, "nap", kNap);
  std::string counted = CreatePoolSession(*daemon);
  daemon->CreatePythonProgram(counted, "count", kCounter);
  // The one worker now holds `count`; its module state counts every run there.
  REQUIRE(daemon->Execute(counted, "count").json["outputs"] == 1);

  HttpResult slept;
  std::thread busy([&] {
    slept = daemon->Execute(holder, "nap", {{"seconds", 4}, {"tag", "slept"}});
  });
  REQUIRE(WaitForPool(
      *daemon, [](const nlohmann::json& pool) { return pool["workers"][0]["state"] == "busy"; }));
  HttpResult expired = daemon->Execute(counted, "count");
  busy.join();

  INFO(expired.body);
  CHECK(expired.status == 504);
  CHECK(expired.code() == "queue_timeout");
  CHECK(slept.json["outputs"] == "slept");
  // Same worker, same program, no re-creation: a count of 2 means the expired request never ran.
  HttpResult after = daemon->Execute(counted, "count");
  INFO(after.body);
  CHECK(after.status == 200);
  CHECK(Recreated(after) == 0);
  CHECK(after.json["outputs"] == 2);
  nlohmann::json queue = PoolStats(*daemon)["queue"];
  CHECK(queue["expired"] == 1);
  CHECK(queue["depth"] == 0);
}

TEST_CASE("pool: a waiting request of one tenant is not starved by another tenant's stream") {
  // One worker; tenant A keeps it busy with three sessions calling back to back, so requests of
  // A are always waiting. B's request, queued behind two of them, must still get the worker in
  // its turn (after a restart for tenant B), well within pool.queue_timeout.
  auto daemon = StartPool({"pool.size=1", "pool.queue_timeout=5s"});
  std::vector<std::string> a;
  for (int i = 0; i < 3; ++i) {
    a.push_back(CreatePoolSession(*daemon, {{"tenant", "A"}}));
    daemon->CreatePythonProgram(a.back(), "nap", kNap);
  }
  std::string b = CreatePoolSession(*daemon, {{"tenant", "B"}});
  daemon->CreatePythonProgram(b, "nap", kNap);

  Failures failures;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (const std::string& session : a) {
    threads.emplace_back([&, session] {
      while (!stop) {
        HttpResult run = daemon->Execute(session, "nap", {{"seconds", 0.05}, {"tag", "a"}});
        if (run.status != 200) failures.Add(session, run);
      }
    });
  }
  REQUIRE(WaitForQueueDepth(*daemon, 2));
  HttpResult served = daemon->Execute(b, "nap", {{"seconds", 0}, {"tag", "b"}});
  stop = true;
  for (std::thread& thread : threads) thread.join();
  INFO(served.body << "\nqueue: " << PoolStats(*daemon)["queue"].dump());
  CHECK(served.status == 200);
  CHECK(served.json["outputs"] == "b");
  CheckNone(failures, *daemon);
}

}  // namespace
}  // namespace corral::testing
