// corrald end to end: sessions, programs and calls over HTTP against a real daemon with real
// sandboxes. Every response is also checked against docs/openapi.yaml by the harness.
#include <catch2/catch.hpp>
#include <mutex>
#include <set>
#include <thread>

#include "tests/support/daemon_harness.h"
#include "tests/support/two_users.h"

namespace corral::testing {
namespace {

std::set<std::string> ProgramIds(const HttpResult& listed) {
  std::set<std::string> ids;
  for (const auto& program : listed.json["programs"]) {
    ids.insert(program["program_id"].get<std::string>());
  }
  return ids;
}

TEST_CASE("daemon: health, readiness and the OpenAPI document are served") {
  auto daemon = Daemon::Start();
  HttpResult health = daemon->Get("/healthz");
  CHECK(health.status == 200);
  CHECK(health.json["status"] == "ok");
  CHECK(health.json["version"].is_string());
  CHECK(daemon->Get("/readyz").status == 200);
  HttpResult openapi = daemon->Get("/openapi.yaml");
  CHECK(openapi.status == 200);
  CHECK(openapi.body.find("openapi: 3") != std::string::npos);
  HttpResult unknown = daemon->Get("/v2/nothing");
  CHECK(unknown.status == 404);
  CHECK(unknown.code() == "route_not_found");
  HttpResult wrong_method = daemon->PostRaw("/healthz", "{}");
  CHECK(wrong_method.status == 405);
  CHECK(wrong_method.code() == "method_not_allowed");
}

TEST_CASE("daemon: two users with the same program ids stay apart") {
  auto daemon = Daemon::Start();
  std::string a = daemon->CreateSession({{"user_id", "alice"}});
  std::string b = daemon->CreateSession({{"user_id", "bob"}});
  daemon->CreatePythonProgram(a, "qa_bot", kAliceQaBot);
  daemon->CreatePythonProgram(a, "summarizer", kSummarizer);
  daemon->CreatePythonProgram(b, "qa_bot", kBobQaBot);
  daemon->CreatePythonProgram(b, "classifier", kClassifier);

  // Both sessions execute concurrently; results are checked on this thread afterwards.
  constexpr int kThreadsPerSession = 3;
  constexpr int kCallsPerThread = 10;
  std::mutex mutex;  // guards the vectors below
  std::vector<HttpResult> alice_results;
  std::vector<HttpResult> bob_results;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreadsPerSession; ++t) {
    for (bool alice : {true, false}) {
      threads.emplace_back([&, t, alice] {
        for (int i = 0; i < kCallsPerThread; ++i) {
          std::string question = "q" + std::to_string(t) + "x" + std::to_string(i);
          HttpResult result = daemon->Execute(alice ? a : b, "qa_bot", {{"question", question}});
          result.body = question;  // remember what was asked
          std::lock_guard<std::mutex> lock(mutex);
          (alice ? alice_results : bob_results).push_back(result);
        }
      });
    }
  }
  for (std::thread& thread : threads) thread.join();

  std::set<int> alice_counts;
  for (const HttpResult& result : alice_results) {
    REQUIRE(result.status == 200);
    CHECK(result.json["outputs"]["answer"] == "alice:" + result.body);
    CHECK(result.json["stdout"] == "alice saw " + result.body + "\n");
    alice_counts.insert(result.json["outputs"]["count"].get<int>());
  }
  // Module state persists between calls, and calls of one session never overlap.
  CHECK(alice_counts.size() == kThreadsPerSession * kCallsPerThread);
  CHECK(*alice_counts.rbegin() == kThreadsPerSession * kCallsPerThread);
  for (const HttpResult& result : bob_results) {
    REQUIRE(result.status == 200);
    std::string reversed(result.body.rbegin(), result.body.rend());
    CHECK(result.json["outputs"]["answer"] == "bob:" + reversed);
    CHECK(result.json["outputs"]["counter_seen"].is_null());
  }

  CHECK(ProgramIds(daemon->Get("/v1/sessions/" + a + "/programs")) ==
        std::set<std::string>{"qa_bot", "summarizer"});
  CHECK(ProgramIds(daemon->Get("/v1/sessions/" + b + "/programs")) ==
        std::set<std::string>{"qa_bot", "classifier"});
  HttpResult again =
      daemon->Post("/v1/sessions/" + a + "/programs",
                   {{"program_id", "qa_bot"}, {"kind", "python"}, {"source", kAliceQaBot}});
  CHECK(again.status == 409);
  CHECK(again.code() == "program_exists");
  HttpResult foreign = daemon->Execute(a, "classifier", {{"text", "hello world"}});
  CHECK(foreign.status == 404);
  CHECK(foreign.code() == "program_not_found");
  CHECK(daemon->Execute(b, "classifier", {{"text", "hello world"}}).json["outputs"] == "long");
  CHECK(daemon->Execute(a, "summarizer", {{"text", "hello world"}}).json["outputs"] == "hello");

  HttpResult listed = daemon->Get("/v1/sessions?user_id=alice");
  REQUIRE(listed.status == 200);
  REQUIRE(listed.json["sessions"].size() == 1);
  CHECK(listed.json["sessions"][0]["session_id"] == a);
  HttpResult info = daemon->Get("/v1/sessions/" + a);
  CHECK(info.json["status"] == "ready");
  CHECK(info.json["programs"] == nlohmann::json({"qa_bot", "summarizer"}));
  CHECK(info.json["stats"]["executions"].get<int>() >= kThreadsPerSession * kCallsPerThread);
  CHECK(info.json["worker"]["pid"].get<int>() > 0);
}

TEST_CASE("daemon: program errors, signature programs and program deletion") {
  auto daemon = Daemon::Start();
  std::string s = daemon->CreateSession({{"session_id", "errors-1"}, {"metadata", {{"k", 1}}}});
  CHECK(s == "errors-1");
  daemon->CreatePythonProgram(s, "boom", "def forward():\n    raise ValueError('bad day')\n");
  HttpResult boom = daemon->Execute(s, "boom");
  CHECK(boom.status == 422);
  CHECK(boom.code() == "program_error");
  CHECK(boom.json["error"]["details"]["traceback"].get<std::string>().find("ValueError") !=
        std::string::npos);

  // The session stays usable after a program's exception.
  HttpResult ping = daemon->Post("/v1/sessions/" + s + "/call", {{"command", "ping"}});
  CHECK(ping.status == 200);
  CHECK(ping.json["result"]["pong"] == true);

  HttpResult signature = daemon->Post(
      "/v1/sessions/" + s + "/programs",
      {{"program_id", "qa"}, {"kind", "signature"}, {"signature", "question -> answer"}});
  CHECK(signature.status == 201);
  // No language model in this build: a clear 501, not a hang or a 500.
  HttpResult lm = daemon->Execute(s, "qa", {{"question", "why?"}});
  CHECK(lm.status == 501);
  CHECK(lm.code() == "lm_not_configured");

  // The generic call reaches the same worker commands, and the session's program list follows.
  HttpResult via_call = daemon->Post("/v1/sessions/" + s + "/call",
                                     {{"command", "create_program"},
                                      {"args",
                                       {{"program_id", "twice"},
                                        {"kind", "python"},
                                        {"source", "def forward(x):\n    return 2 * x\n"}}}});
  CHECK(via_call.status == 200);
  HttpResult ran = daemon->Post("/v1/sessions/" + s + "/call",
                                {{"command", "execute_program"},
                                 {"args", {{"program_id", "twice"}, {"inputs", {{"x", 21}}}}}});
  CHECK(ran.json["result"]["outputs"] == 42);
  CHECK(daemon
            ->Post("/v1/sessions/" + s + "/call",
                   {{"command", "delete_program"}, {"args", {{"program_id", "twice"}}}})
            .status == 200);
  CHECK(daemon->Delete("/v1/sessions/" + s + "/programs/boom").status == 204);
  CHECK(daemon->Delete("/v1/sessions/" + s + "/programs/boom").status == 404);
  CHECK(daemon->Get("/v1/sessions/" + s).json["programs"] == nlohmann::json({"qa"}));
  CHECK(daemon->Get("/v1/sessions/" + s).json["metadata"]["k"] == 1);

  // Executions count programs that ran (boom raised, qa reached the model gateway, twice
  // answered); an execute refused before running (unknown program, bad args) does not count.
  CHECK(daemon->Execute(s, "nothing-here").code() == "program_not_found");
  HttpResult bad_args = daemon->Post(
      "/v1/sessions/" + s + "/call",
      {{"command", "create_program"}, {"args", {{"program_id", 5}, {"kind", "python"}}}});
  CHECK(bad_args.status == 400);
  CHECK(bad_args.json["error"]["details"]["field"] == "program_id");
  CHECK(daemon->Get("/v1/sessions/" + s).json["stats"]["executions"] == 3);
  HttpResult duplicate = daemon->Post("/v1/sessions", {{"session_id", "errors-1"}});
  CHECK(duplicate.status == 409);
  CHECK(duplicate.code() == "session_exists");
  CHECK(daemon->Delete("/v1/sessions/" + s).status == 204);
  CHECK(daemon->Get("/v1/sessions/" + s).status == 404);
}

TEST_CASE("daemon: 50 sessions created and exercised in parallel") {
  auto daemon = Daemon::Start({{"process.max_concurrent_sessions=60"}});
  constexpr int kSessions = 50;
  constexpr int kThreads = 10;
  std::mutex mutex;  // guards failures and ids
  std::vector<std::string> failures;
  std::vector<std::string> ids;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kSessions; i += kThreads) {
        std::string id = "par-" + std::to_string(i);
        auto fail = [&](const std::string& what, const HttpResult& r) {
          std::lock_guard<std::mutex> lock(mutex);
          failures.push_back(id + ": " + what + ": " + std::to_string(r.status) + " " + r.body);
        };
        HttpResult created = daemon->Post("/v1/sessions", {{"session_id", id}});
        if (created.status != 201) {
          fail("create", created);
          continue;
        }
        std::string source = "def forward(n):\n    return '" + id + "' + ':' + str(n * 2)\n";
        HttpResult program =
            daemon->Post("/v1/sessions/" + id + "/programs",
                         {{"program_id", "p"}, {"kind", "python"}, {"source", source}});
        if (program.status != 201) {
          fail("program", program);
          continue;
        }
        for (int n = 0; n < 3; ++n) {
          HttpResult run = daemon->Execute(id, "p", {{"n", n}});
          if (run.status != 200 || run.json["outputs"] != id + ":" + std::to_string(n * 2)) {
            fail("execute", run);
          }
        }
        std::lock_guard<std::mutex> lock(mutex);
        ids.push_back(id);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const std::string& failure : failures) FAIL_CHECK(failure);
  CHECK(ids.size() == kSessions);
  CHECK(daemon->Get("/v1/sessions").json["sessions"].size() == kSessions);
  CHECK(daemon->CgroupChildren().size() == kSessions);
  for (const std::string& id : ids) CHECK(daemon->Delete("/v1/sessions/" + id).status == 204);
  CHECK(daemon->CgroupChildren().empty());
}

TEST_CASE("daemon: past max_concurrent_sessions creation gets 429 and nothing else changes") {
  auto daemon = Daemon::Start({{"process.max_concurrent_sessions=3"}});
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(daemon->CreateSession());
    daemon->CreatePythonProgram(ids.back(), "p", "def forward():\n    return 7\n");
  }
  HttpResult refused = daemon->Post("/v1/sessions", {{"session_id", "one-too-many"}});
  CHECK(refused.status == 429);
  CHECK(refused.code() == "too_many_sessions");
  CHECK(refused.json["error"]["message"].get<std::string>().find("max_concurrent_sessions") !=
        std::string::npos);
  CHECK(daemon->Get("/v1/sessions/one-too-many").status == 404);
  for (const std::string& id : ids) {
    CHECK(daemon->Get("/v1/sessions/" + id).json["status"] == "ready");
    CHECK(daemon->Execute(id, "p").json["outputs"] == 7);
  }
  CHECK(daemon->Delete("/v1/sessions/" + ids[0]).status == 204);
  CHECK(daemon->Post("/v1/sessions", {{"session_id", "now-fits"}}).status == 201);
}

TEST_CASE("daemon: sessions whose memory limits would pass the budget get 429 (S47)") {
  // Room for two default sessions (256 MiB each), not three, nor one `numeric` (2 GiB).
  auto daemon = Daemon::Start({.overrides = {"process.memory_budget=600Mi"}});
  std::vector<std::string> ids = {daemon->CreateSession(), daemon->CreateSession()};
  for (const std::string& id : ids) {
    daemon->CreatePythonProgram(id, "p", "def forward():\n    return 7\n");
  }
  for (const nlohmann::json& body :
       {nlohmann::json{{"session_id", "third"}},
        nlohmann::json{{"session_id", "big"}, {"policy", "numeric"}}}) {
    HttpResult refused = daemon->Post("/v1/sessions", body);
    INFO(refused.body);
    CHECK(refused.status == 429);
    CHECK(refused.code() == "memory_budget_exhausted");
    CHECK(refused.json["error"]["message"].get<std::string>().find("process.memory_budget") !=
          std::string::npos);
    CHECK(refused.json["error"]["details"]["committed_bytes"] == uint64_t{512} << 20);
    CHECK(daemon->Get("/v1/sessions/" + body["session_id"].get<std::string>()).status == 404);
  }
  CHECK(daemon->CgroupChildren().size() == 2);
  for (const std::string& id : ids) CHECK(daemon->Execute(id, "p").json["outputs"] == 7);

  // An ended session gives its share back.
  CHECK(daemon->Delete("/v1/sessions/" + ids[0]).status == 204);
  CHECK(daemon->Post("/v1/sessions", {{"session_id", "third"}}).status == 201);
}

TEST_CASE("daemon: concurrent DELETEs of a busy session: one 204, the rest 404 (S55)") {
  auto daemon = Daemon::Start();
  std::string s = daemon->CreateSession();
  daemon->CreatePythonProgram(s, "slow",
                              "import time\ndef forward():\n    time.sleep(2)\n"
                              "    return 1\n");
  int pid = daemon->Get("/v1/sessions/" + s).json["worker"]["pid"].get<int>();

  std::vector<int> call_statuses(5, -1);
  std::vector<std::string> call_codes(5);
  std::vector<std::thread> calls;
  for (int i = 0; i < 5; ++i) {
    calls.emplace_back([&, i] {
      HttpResult r = daemon->Execute(s, "slow");
      call_statuses[i] = r.status;
      call_codes[i] = r.code();
    });
  }
  // Wait (bounded) until a call runs, so the deletes race running and queued calls.
  for (int i = 0; i < 500 && daemon->Get("/v1/sessions/" + s).json["status"] != "busy"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::vector<int> delete_statuses(20, -1);
  std::vector<std::thread> deletes;
  for (int i = 0; i < 20; ++i) {
    deletes.emplace_back(
        [&, i] { delete_statuses[i] = daemon->Delete("/v1/sessions/" + s).status; });
  }
  for (std::thread& thread : deletes) thread.join();
  for (std::thread& thread : calls) thread.join();

  CHECK(std::count(delete_statuses.begin(), delete_statuses.end(), 204) == 1);
  CHECK(std::count(delete_statuses.begin(), delete_statuses.end(), 404) == 19);
  for (int i = 0; i < 5; ++i) {
    INFO("call " << i << " got " << call_statuses[i] << " " << call_codes[i]);
    bool definite = call_statuses[i] == 200 ||
                    (call_statuses[i] == 409 && call_codes[i] == "session_ended") ||
                    (call_statuses[i] == 404 && call_codes[i] == "session_not_found");
    CHECK(definite);
  }
  CHECK(daemon->Get("/v1/sessions/" + s).status == 404);
  CHECK(ProcessGone(pid));
  CHECK(daemon->CgroupChildren().empty());
}

}  // namespace
}  // namespace corral::testing

namespace corral::testing {
namespace {

TEST_CASE("daemon: one session's queue is bounded: past max_queued_calls 429 session_busy") {
  auto daemon = Daemon::Start({{"process.max_queued_calls=2"}});
  std::string s = daemon->CreateSession();
  std::string other = daemon->CreateSession();
  daemon->CreatePythonProgram(s, "slow",
                              "import time\ndef forward():\n    time.sleep(3)\n"
                              "    return 'slept'\n");
  daemon->CreatePythonProgram(other, "fast", "def forward():\n    return 'fast'\n");
  std::vector<HttpResult> results(3);
  std::vector<std::thread> calls;
  for (int i = 0; i < 3; ++i) {
    calls.emplace_back([&, i] { results[i] = daemon->Execute(s, "slow"); });
    // Bounded wait until this call runs or waits, so the queue fills in a known order.
    for (int j = 0; j < 3000; ++j) {
      HttpResult info = daemon->Get("/v1/sessions/" + s);
      if (info.json["status"] == "busy" && info.json["stats"]["queued"] == i) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  HttpResult refused = daemon->Execute(s, "slow");
  CHECK(refused.status == 429);
  CHECK(refused.code() == "session_busy");
  // Another session is not held up by this one's queue.
  CHECK(daemon->Execute(other, "fast").json["outputs"] == "fast");
  for (std::thread& call : calls) call.join();
  for (const HttpResult& result : results) CHECK(result.json["outputs"] == "slept");
}

}  // namespace
}  // namespace corral::testing
