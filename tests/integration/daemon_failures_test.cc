// A session's worker dies (crash, OOM, timeout, fork bomb) or sits idle: that session alone is
// failed or reaped with the precise reason, and every other session keeps working.
#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <thread>

#include "tests/support/daemon_harness.h"

namespace corral::testing {
namespace {

const char kEcho[] = "def forward(x):\n    return x\n";

// Polls (bounded) until the session's status is `status`; returns the last info.
HttpResult WaitForStatus(Daemon& daemon, const std::string& session, const std::string& status) {
  HttpResult info;
  for (int i = 0; i < 3000; ++i) {
    info = daemon.Get("/v1/sessions/" + session);
    if (info.status != 200 || info.json["status"] == status) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return info;
}

// The failed session answers later calls with 409 session_failed naming the reason; its
// neighbour still answers.
void CheckFailedAlone(Daemon& daemon, const std::string& failed, const std::string& reason,
                      const std::string& neighbour) {
  HttpResult info = WaitForStatus(daemon, failed, "failed");
  INFO(info.body);
  CHECK(info.json["status"] == "failed");
  CHECK(info.json["failure"]["reason"] == reason);
  HttpResult later = daemon.Post("/v1/sessions/" + failed + "/call", {{"command", "ping"}});
  CHECK(later.status == 409);
  CHECK(later.code() == "session_failed");
  CHECK(later.json["error"]["message"].get<std::string>().find(reason) != std::string::npos);
  CHECK(daemon.Execute(neighbour, "echo", {{"x", 42}}).json["outputs"] == 42);
  CHECK(daemon.Delete("/v1/sessions/" + failed).status == 204);
}

TEST_CASE("daemon: a worker that exits fails its session as worker_crashed") {
  auto daemon = Daemon::Start();
  std::string crash = daemon->CreateSession();
  std::string neighbour = daemon->CreateSession();
  daemon->CreatePythonProgram(neighbour, "echo", kEcho);
  daemon->CreatePythonProgram(crash, "die", "import os\ndef forward():\n    os._exit(3)\n");
  HttpResult died = daemon->Execute(crash, "die");
  CHECK(died.status == 409);
  CHECK(died.code() == "worker_crashed");
  CheckFailedAlone(*daemon, crash, "worker_crashed", neighbour);
}

TEST_CASE("daemon: exit code of a crashed worker is reported") {
  auto daemon = Daemon::Start();
  std::string crash = daemon->CreateSession();
  daemon->CreatePythonProgram(crash, "die", "import os\ndef forward():\n    os._exit(3)\n");
  daemon->Execute(crash, "die");
  HttpResult info = WaitForStatus(*daemon, crash, "failed");
  CHECK(info.json["failure"]["exit_code"] == 3);
}

TEST_CASE("daemon: memory past the policy limit fails the session as oom_killed") {
  std::string dir = MakeTempDir("corrald-policies");
  std::string policies = MakePolicyDir(dir, "small_memory", {{"limits.memory", "96Mi"}});
  auto daemon = Daemon::Start({{}, policies});
  std::string hog = daemon->CreateSession({{"policy", "small_memory"}});
  std::string neighbour = daemon->CreateSession();
  daemon->CreatePythonProgram(neighbour, "echo", kEcho);
  CHECK(daemon->Get("/v1/sessions/" + hog).json["limits"]["memory_bytes"] == 96ull << 20);
  // bytes * n writes every page, so the memory is really used (a calloc'd bytearray is not).
  daemon->CreatePythonProgram(hog, "hog",
                              "def forward():\n    kept = []\n    while True:\n"
                              "        kept.append(b'x' * (16 << 20))\n");
  HttpResult died = daemon->Execute(hog, "hog");
  CHECK(died.status == 409);
  CHECK(died.code() == "oom_killed");
  CheckFailedAlone(*daemon, hog, "oom_killed", neighbour);
  daemon.reset();
  std::filesystem::remove_all(dir);
}

TEST_CASE("daemon: a call past its timeout gets 504 wall_timeout and fails the session") {
  auto daemon = Daemon::Start();
  std::string slow = daemon->CreateSession();
  std::string neighbour = daemon->CreateSession();
  daemon->CreatePythonProgram(neighbour, "echo", kEcho);
  daemon->CreatePythonProgram(slow, "sleep", "import time\ndef forward():\n    time.sleep(600)\n");
  int pid = daemon->Get("/v1/sessions/" + slow).json["worker"]["pid"].get<int>();
  HttpResult timed_out = daemon->Execute(slow, "sleep", {}, 500);
  CHECK(timed_out.status == 504);
  CHECK(timed_out.code() == "wall_timeout");
  CheckFailedAlone(*daemon, slow, "wall_timeout", neighbour);
  CHECK(ProcessGone(pid));
}

TEST_CASE("daemon: a fork bomb in one session leaves the others answering") {
  auto daemon = Daemon::Start();
  std::string bomb = daemon->CreateSession();
  std::string neighbour = daemon->CreateSession();
  daemon->CreatePythonProgram(neighbour, "echo", kEcho);
  daemon->CreatePythonProgram(neighbour, "spawn",
                              "import subprocess\ndef forward():\n"
                              "    return subprocess.run(['/bin/echo', 'hi'], capture_output=True)"
                              ".stdout.decode()\n");
  daemon->CreatePythonProgram(bomb, "bomb", R"(
import os, time
def forward():
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)
)");
  std::atomic<bool> bombing{true};
  HttpResult bomb_result;
  std::thread bomber([&] {
    bomb_result = daemon->Execute(bomb, "bomb", {}, 5000);
    bombing = false;
  });
  std::vector<HttpResult> neighbour_results;
  while (bombing) {
    neighbour_results.push_back(daemon->Execute(neighbour, "spawn"));
    neighbour_results.push_back(daemon->Execute(neighbour, "echo", {{"x", "still here"}}));
  }
  bomber.join();
  INFO(bomb_result.body);
  bool contained = (bomb_result.status == 504 && bomb_result.code() == "wall_timeout") ||
                   (bomb_result.status == 409 && bomb_result.code() == "pids_limit");
  CHECK(contained);
  for (const HttpResult& result : neighbour_results) {
    INFO(result.body);
    CHECK(result.status == 200);
  }
  CHECK(daemon->Execute(neighbour, "spawn").json["outputs"] == "hi\n");
  CHECK(daemon->Delete("/v1/sessions/" + bomb).status == 204);
}

TEST_CASE("daemon: idle sessions are reaped, busy ones are not") {
  auto daemon =
      Daemon::Start({{"process.max_idle_seconds=2", "process.idle_check_interval=200ms"}});
  std::string idle = daemon->CreateSession();
  std::string busy = daemon->CreateSession();
  daemon->CreatePythonProgram(
      busy, "sleep", "import time\ndef forward():\n    time.sleep(5)\n    return 'done'\n");
  int idle_pid = daemon->Get("/v1/sessions/" + idle).json["worker"]["pid"].get<int>();

  // A call running longer than max_idle_seconds is activity: its session survives it.
  HttpResult slept = daemon->Execute(busy, "sleep", {}, 60000);
  CHECK(slept.status == 200);
  CHECK(slept.json["outputs"] == "done");
  CHECK(daemon->Get("/v1/sessions/" + busy).status == 200);

  HttpResult gone;
  for (int i = 0; i < 3000; ++i) {
    gone = daemon->Get("/v1/sessions/" + idle);
    if (gone.status == 404) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(gone.status == 404);
  CHECK(ProcessGone(idle_pid));
  CHECK(daemon->log().find("idle_timeout") != std::string::npos);
}

}  // namespace
}  // namespace corral::testing
