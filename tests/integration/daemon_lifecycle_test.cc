// The daemon's own life: graceful shutdown with calls in flight, and recovery after kill -9.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <thread>

#include "tests/support/daemon_harness.h"

namespace corral::testing {
namespace {

const char kSleeper[] = "import time\ndef forward():\n    time.sleep(60)\n    return 1\n";

std::vector<int> WorkerPids(Daemon& daemon, const std::vector<std::string>& sessions) {
  std::vector<int> pids;
  for (const std::string& id : sessions) {
    pids.push_back(daemon.Get("/v1/sessions/" + id).json["worker"]["pid"].get<int>());
  }
  return pids;
}

void WaitUntilBusy(Daemon& daemon, const std::string& session) {
  for (int i = 0; i < 3000; ++i) {
    if (daemon.Get("/v1/sessions/" + session).json["status"] == "busy") return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

TEST_CASE("daemon: SIGTERM with calls in flight answers them, exits 0, leaves nothing") {
  auto daemon = Daemon::Start();
  std::vector<std::string> sessions;
  for (int i = 0; i < 3; ++i) {
    sessions.push_back(daemon->CreateSession());
    daemon->CreatePythonProgram(sessions.back(), "sleep", kSleeper);
  }
  std::vector<int> pids = WorkerPids(*daemon, sessions);
  std::vector<HttpResult> results(sessions.size());
  std::vector<std::thread> calls;
  for (size_t i = 0; i < sessions.size(); ++i) {
    calls.emplace_back([&, i] { results[i] = daemon->Execute(sessions[i], "sleep", {}, 120000); });
  }
  for (const std::string& id : sessions) WaitUntilBusy(*daemon, id);

  int status = daemon->Terminate();
  for (std::thread& thread : calls) thread.join();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  for (const HttpResult& result : results) {
    CHECK(result.status == 503);
    CHECK(result.code() == "shutting_down");
  }
  for (int pid : pids) CHECK(ProcessGone(pid));
  CHECK(daemon->CgroupChildren().empty());
  CHECK(daemon->log().find("stopped") != std::string::npos);
}

TEST_CASE("daemon: after kill -9 a restarted daemon removes what the old one left") {
  auto old_daemon = Daemon::Start();
  std::vector<std::string> sessions = {old_daemon->CreateSession(), old_daemon->CreateSession()};
  std::vector<int> pids = WorkerPids(*old_daemon, sessions);
  old_daemon->KillHard();
  // The old daemon removed nothing: its sandboxes' cgroups are still there.
  CHECK(old_daemon->CgroupChildren().size() == 2);

  DaemonOptions options;
  options.state_dir = old_daemon->state_dir();
  options.cgroup_parent = old_daemon->cgroup_parent();
  auto restarted = Daemon::Start(options);
  CHECK(restarted->CgroupChildren().empty());
  for (int pid : pids) CHECK(ProcessGone(pid));
  CHECK(restarted->log().find("removed 2 sandbox(es) left by a previous run") != std::string::npos);
  // The new daemon works, and the old session ids are free again.
  std::string again = restarted->CreateSession({{"session_id", sessions[0]}});
  CHECK(again == sessions[0]);
}

}  // namespace
}  // namespace corral::testing
