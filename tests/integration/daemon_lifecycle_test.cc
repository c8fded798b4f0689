// The daemon's own life: graceful shutdown with calls in flight, and recovery after kill -9.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
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
  CHECK(daemon->CgroupParentDirs().empty());  // the parent itself is gone too
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

struct Exit {
  int status = -1;
  std::string output;
};

// Runs a second corrald with the shipped config and `sets`, to its exit (it must not start).
Exit RunSecondDaemon(const std::string& scratch, const std::vector<std::string>& sets) {
  std::string command = std::string(CORRAL_BUILD_DIR) + "/corrald --config " + CORRAL_SOURCE_DIR +
                        "/manager/corral.yaml --listen 127.0.0.1:0 --set log.format=text";
  for (const std::string& set : sets) command += " --set '" + set + "'";
  std::string output = scratch + "/second.log";
  Exit exit;
  exit.status = std::system((command + " >" + output + " 2>&1 </dev/null").c_str());
  std::ifstream file(output);
  std::stringstream text;
  text << file.rdbuf();
  exit.output = text.str();
  return exit;
}

TEST_CASE("daemon: a second daemon on the same state_dir or cgroup parent refuses to start") {
  auto first = Daemon::Start();
  std::string session = first->CreateSession();
  first->CreatePythonProgram(session, "p", "def forward():\n    return 7\n");
  std::string scratch = MakeTempDir("corrald-second");

  // Same state directory, another cgroup parent: it would take the port and pid files.
  Exit same_state = RunSecondDaemon(scratch, {"state_dir=" + first->state_dir(),
                                              "cgroup.parent=" + first->cgroup_parent() + "-2"});
  INFO(same_state.output);
  CHECK(WIFEXITED(same_state.status));
  CHECK(WEXITSTATUS(same_state.status) == 1);
  CHECK(same_state.output.find("another corrald (pid " + std::to_string(first->pid()) +
                               ") is running with the same state_dir") != std::string::npos);

  // Another state directory, the same cgroup parent: its start-up cleanup would kill ours.
  Exit same_parent = RunSecondDaemon(
      scratch, {"state_dir=" + scratch + "/state", "cgroup.parent=" + first->cgroup_parent()});
  INFO(same_parent.output);
  CHECK(WEXITSTATUS(same_parent.status) == 1);
  CHECK(same_parent.output.find("is running with the same cgroup.parent") != std::string::npos);

  // The first daemon lost nothing: its port file, its session and the session's state.
  CHECK(first->Get("/v1/sessions/" + session).json["status"] == "ready");
  CHECK(first->Execute(session, "p").json["outputs"] == 7);
  CHECK(std::filesystem::exists(first->state_dir() + "/corrald.port"));

  // A clean stop leaves no lock file behind (one per cgroup parent would pile up in /run).
  std::string parent_lock = "/run/corral/corrald-" + first->cgroup_parent() + ".lock";
  CHECK(std::filesystem::exists(parent_lock));
  std::string state_dir = first->state_dir();
  CHECK(first->Terminate() == 0);
  CHECK_FALSE(std::filesystem::exists(parent_lock));
  CHECK_FALSE(std::filesystem::exists(state_dir + "/corrald.lock"));
  std::filesystem::remove_all(scratch);
}

}  // namespace
}  // namespace corral::testing
