// Helpers of the pool backend's integration tests (tests/integration/pool_*_test.cc): a daemon
// with a ready pool, pool sessions, GET /v1/pool polled within bounds, failures gathered on
// client threads. The bounds only keep a broken daemon from hanging the run; no test asserts on
// timing.
#pragma once

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/daemon_harness.h"

namespace corral::testing {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// A pool's first start on a loaded CI machine: generous, and only a setup bound.
inline constexpr auto kReadyBound = 120s;
// Waits for a state the test itself brings about (a call running, a queue filling).
inline constexpr auto kStateBound = 60s;

inline constexpr char kNap[] =
    "import time\ndef forward(seconds, tag):\n    time.sleep(seconds)\n"
    "    return tag\n";

inline constexpr char kCounter[] =
    "calls = 0\ndef forward():\n    global calls\n    calls += 1\n"
    "    return calls\n";

// Every session defines the same global name with its own value: one interpreter serves them
// all, so an answer that is not the session's own would show here.
inline std::string OwnerProgram(const std::string& session) {
  return "OWNER = '" + session + "'\ndef forward(n):\n    return OWNER + ':' + str(n)\n";
}

inline std::string OwnerAnswer(const std::string& session, int n) {
  return session + ":" + std::to_string(n);
}

// Failures seen on client threads (Catch2 assertions are not thread-safe), reported on the
// test's thread.
class Failures {
 public:
  void Add(const std::string& what, const HttpResult& result) {
    std::lock_guard<std::mutex> lock(mutex_);
    failures_.push_back(what + ": " + std::to_string(result.status) + " " +
                        result.body.substr(0, 400));
  }
  std::vector<std::string> Take() {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::exchange(failures_, {});
  }

 private:
  std::mutex mutex_;  // guards failures_
  std::vector<std::string> failures_;
};

// The tail of the daemon's log: enough to see why, short enough to read.
inline std::string LogTail(Daemon& daemon) {
  std::string log = daemon.log();
  return log.size() > 8000 ? log.substr(log.size() - 8000) : log;
}

inline void CheckNone(Failures& failures, Daemon& daemon) {
  std::vector<std::string> seen = failures.Take();
  for (const std::string& failure : seen) FAIL_CHECK(failure);
  if (!seen.empty()) FAIL_CHECK(seen.size() << " failure(s); corrald log:\n" << LogTail(daemon));
}

// Polls /readyz (bounded) until every pool worker answered its first ping.
inline void WaitReady(Daemon& daemon) {
  HttpResult ready;
  for (auto end = Clock::now() + kReadyBound; Clock::now() < end;) {
    ready = daemon.Get("/readyz");
    if (ready.status == 200) return;
    std::this_thread::sleep_for(50ms);
  }
  INFO("last /readyz: " << ready.status << " " << ready.body << "\ncorrald log:\n" << daemon.log());
  REQUIRE(ready.status == 200);
}

inline std::unique_ptr<Daemon> StartPool(const std::vector<std::string>& overrides) {
  auto daemon = Daemon::Start({.overrides = overrides});
  WaitReady(*daemon);
  return daemon;
}

// A daemon on `old`'s state directory and cgroup parent, so it reuses the pool's store.
inline std::unique_ptr<Daemon> RestartPool(const Daemon& old,
                                           const std::vector<std::string>& overrides) {
  auto daemon = Daemon::Start(
      {.overrides = overrides, .state_dir = old.state_dir(), .cgroup_parent = old.cgroup_parent()});
  WaitReady(*daemon);
  return daemon;
}

inline std::string CreatePoolSession(Daemon& daemon,
                                     nlohmann::json body = nlohmann::json::object()) {
  body["backend"] = "pool";
  return daemon.CreateSession(body);
}

inline nlohmann::json PoolStats(Daemon& daemon) {
  HttpResult stats = daemon.Get("/v1/pool");
  INFO(stats.body);
  REQUIRE(stats.status == 200);
  return stats.json;
}

// Polls GET /v1/pool (bounded) until `done` holds for it; returns whether it did.
template <typename Predicate>
bool WaitForPool(Daemon& daemon, Predicate done) {
  for (auto end = Clock::now() + kStateBound; Clock::now() < end;) {
    HttpResult stats = daemon.Get("/v1/pool");
    if (stats.status == 200 && done(stats.json)) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

inline bool WaitForQueueDepth(Daemon& daemon, int depth) {
  return WaitForPool(daemon,
                     [&](const nlohmann::json& pool) { return pool["queue"]["depth"] == depth; });
}

inline std::set<std::string> SessionIds(Daemon& daemon) {
  HttpResult listed = daemon.Get("/v1/sessions");
  INFO(listed.body);
  REQUIRE(listed.status == 200);
  std::set<std::string> ids;
  for (const auto& session : listed.json["sessions"]) {
    ids.insert(session["session_id"].get<std::string>());
  }
  return ids;
}

inline std::set<std::string> ProgramIds(const HttpResult& listed) {
  std::set<std::string> ids;
  for (const auto& program : listed.json["programs"]) {
    ids.insert(program["program_id"].get<std::string>());
  }
  return ids;
}

inline uint64_t Recreated(const HttpResult& result) {
  return result.json.is_object() ? result.json.value("programs_recreated", uint64_t{0}) : 0;
}

}  // namespace corral::testing
