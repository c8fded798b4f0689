// A hostile tenant against the whole daemon: tenant code that forges the worker protocol on its
// own channel descriptor (S50, S51), hunts the daemon's secrets through /proc (S10), leaves
// detached survivors (S29), and a session ended while its neighbour is mid-call (S49). Each
// time the hostile session alone fails or ends, with the exact reason, and the daemon and the
// neighbours carry on.
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/daemon_harness.h"

namespace corral::testing {
namespace {

const char kEcho[] = "def forward(x):\n    return x\n";

// Tenant helpers: frame() builds a protocol frame; request_id() finds the id of the request
// being served by walking the worker's stack (tenant code runs inside the worker process).
const char kForgeHelpers[] = R"(
import json, os, struct, sys
def frame(obj):
    body = json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body
def request_id():
    f = sys._getframe()
    while f:
        for v in f.f_locals.values():
            if isinstance(v, dict) and "id" in v and "command" in v:
                return v["id"]
        f = f.f_back
    raise RuntimeError("no request on the stack")
)";

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

// Pids of live processes owned by host uid `uid` (the sandbox's leased id).
std::vector<std::string> ProcessesOfUid(uid_t uid) {
  std::vector<std::string> pids;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return pids;
  while (dirent* entry = readdir(proc)) {
    std::string name = entry->d_name;
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    struct stat info;
    if (stat(("/proc/" + name).c_str(), &info) == 0 && info.st_uid == uid) pids.push_back(name);
  }
  closedir(proc);
  return pids;
}

// Bounded wait: the kill through the cgroup is synchronous, but a reaped process can take a
// moment to leave /proc.
bool NoProcessOfUid(uid_t uid) {
  for (int i = 0; i < 500; ++i) {
    if (ProcessesOfUid(uid).empty()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST_CASE("daemon: tenant code forging frames on the channel fails only its session (S50, S51)") {
  auto [name, body] = GENERATE(table<std::string, std::string>({
      {"length 0xFFFFFFFF", "    os.write(3, b'\\xff\\xff\\xff\\xff')\n"},
      {"length 0x80000000", "    os.write(3, b'\\x80\\x00\\x00\\x00')\n"},
      {"length just over the maximum", "    os.write(3, struct.pack('>I', (16 << 20) + 1))\n"},
      {"empty frame", "    os.write(3, b'\\x00\\x00\\x00\\x00')\n"},
      {"truncated JSON", "    os.write(3, struct.pack('>I', 5) + b'{\"id\"')\n"},
      {"random bytes", "    os.write(3, os.urandom(4096))\n"},
      {"stale id", "    os.write(3, frame({'id': 1, 'result': {'outputs': 'FORGED'}}))\n"},
      {"future id",
       "    os.write(3, frame({'id': request_id() + 1, 'result': {'outputs': 'FORGED'}}))\n"},
      {"negative id", "    os.write(3, frame({'id': -1, 'result': {}}))\n"},
      {"unsolicited frame", "    os.write(3, frame({'type': 'log', 'msg': 'x'}))\n"},
  }));
  INFO(name);
  auto daemon = Daemon::Start();
  std::string forger = daemon->CreateSession();
  std::string neighbour = daemon->CreateSession();
  daemon->CreatePythonProgram(neighbour, "echo", kEcho);
  daemon->CreatePythonProgram(
      forger, "forge",
      std::string(kForgeHelpers) + "def forward():\n" + body + "    return 'not forged'\n");

  HttpResult forged = daemon->Execute(forger, "forge", {}, 10000);
  INFO(forged.body);
  CHECK(forged.code() == "worker_protocol_error");
  CHECK(forged.body.find("FORGED") == std::string::npos);
  HttpResult info = WaitForStatus(*daemon, forger, "failed");
  CHECK(info.json["failure"]["reason"] == "worker_protocol_error");
  CHECK(daemon->Get("/healthz").status == 200);
  CHECK(daemon->Execute(neighbour, "echo", {{"x", 7}}).json["outputs"] == 7);
  CHECK(daemon->Delete("/v1/sessions/" + forger).status == 204);
}

TEST_CASE("daemon: a forged reply past the output and result limits is bounded by the daemon") {
  // The worker's own bounds are tenant code's to bypass: the program writes the reply itself.
  auto [name, outputs, stdout_bytes, status] = GENERATE(table<std::string, int, int, int>({
      {"result over max_result_bytes", 2 << 20, 0, 422},
      {"output over max_output_bytes", 3, 1 << 20, 200},
  }));
  INFO(name);
  auto daemon =
      Daemon::Start({.overrides = {"limits.max_result_bytes=1Mi", "limits.max_output_bytes=64Ki"}});
  std::string forger = daemon->CreateSession();
  daemon->CreatePythonProgram(forger, "forge", std::string(kForgeHelpers) + R"(
def forward(outputs, stdout):
    reply = {"outputs": "A" * outputs, "stdout": "\u00e9" * stdout, "stderr": "",
             "stdout_truncated": False, "stderr_truncated": False, "duration_ms": 0}
    os.write(3, frame({"id": request_id(), "result": reply}))
    return "not forged"
)");
  HttpResult forged =
      daemon->Execute(forger, "forge", {{"outputs", outputs}, {"stdout", stdout_bytes}}, 20000);
  INFO(forged.body.substr(0, 300));
  CHECK(forged.status == status);
  CHECK(forged.body.size() < (1 << 20));
  if (status == 422) {
    CHECK(forged.code() == "result_too_large");
    CHECK(forged.json["error"]["details"]["limit"] == 1 << 20);
  } else {
    // 64 Ki characters of two bytes each: cut at a character, never inside one.
    CHECK(forged.json["stdout"].get<std::string>().size() == 2 * (64 << 10));
    CHECK(forged.json["stdout_truncated"] == true);
  }
}

TEST_CASE("daemon: tenant bytes in a protocol error are cut before they are kept or logged") {
  auto daemon = Daemon::Start();
  std::string forger = daemon->CreateSession();
  // A 4 MiB number: the parser's error message would quote all of it.
  daemon->CreatePythonProgram(forger, "forge", std::string(kForgeHelpers) + R"(
def forward():
    body = b'{"id":' + str(request_id()).encode() + b',"result":1' + b'0' * (4 << 20) + b'}'
    os.write(3, struct.pack(">I", len(body)) + body)
    return 1
)");
  HttpResult forged = daemon->Execute(forger, "forge", {}, 20000);
  CHECK(forged.code() == "worker_protocol_error");
  CHECK(forged.body.size() < 4096);
  HttpResult info = WaitForStatus(*daemon, forger, "failed");
  CHECK(info.body.size() < 8192);
  CHECK(daemon->Get("/v1/sessions").body.size() < 8192);
  CHECK(daemon->log().size() < (64 << 10));
}

TEST_CASE("daemon: no secret of the daemon's environment reaches tenant code (S10)") {
  // Harness daemons inherit this process's environment.
  REQUIRE(setenv("CORRAL_ATTACK_SECRET", "canary-5f3a9d", 1) == 0);
  auto daemon = Daemon::Start();
  std::string hunter = daemon->CreateSession();
  daemon->CreatePythonProgram(hunter, "hunt", R"(
import os
def forward():
    seen = {"env": dict(os.environ), "pids": []}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        seen["pids"].append(pid)
        for name in ("environ", "cmdline", "status"):
            try:
                with open(f"/proc/{pid}/{name}", "rb") as f:
                    seen[f"{pid}/{name}"] = f.read().decode("latin1")
            except OSError as error:
                seen[f"{pid}/{name}"] = error.strerror
    return seen
)");
  HttpResult hunted = daemon->Execute(hunter, "hunt");
  unsetenv("CORRAL_ATTACK_SECRET");
  REQUIRE(hunted.status == 200);
  CHECK(hunted.body.find("canary-5f3a9d") == std::string::npos);
  CHECK(hunted.body.find("CORRAL_ATTACK_SECRET") == std::string::npos);
  // Only the sandbox's own processes: its init and the worker.
  CHECK(hunted.json["outputs"]["pids"].size() == 2);
  CHECK(daemon->Delete("/v1/sessions/" + hunter).status == 204);
}

TEST_CASE("daemon: detached, stopped and SIGTERM-deaf descendants die with the session (S29)") {
  auto daemon = Daemon::Start();
  std::string session = daemon->CreateSession();
  daemon->CreatePythonProgram(session, "detach", R"(
import os, signal, time
def forward():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            for fd in (0, 1, 2, 3):
                os.close(fd)
            while True:
                time.sleep(1)
        os._exit(0)
    if os.fork() == 0:
        os.kill(os.getpid(), signal.SIGSTOP)
    return "returned"
)");
  uid_t uid = daemon->Get("/v1/sessions/" + session).json["worker"]["host_uid"].get<uid_t>();
  HttpResult returned = daemon->Execute(session, "detach");
  REQUIRE(returned.status == 200);
  CHECK(returned.json["outputs"] == "returned");
  CHECK(ProcessesOfUid(uid).size() >= 3);  // init, worker and the survivors
  CHECK(daemon->Delete("/v1/sessions/" + session).status == 204);
  CHECK(NoProcessOfUid(uid));
}

TEST_CASE("daemon: a session ended mid-call leaves its neighbour's call to finish (S49)") {
  auto daemon = Daemon::Start();
  std::string ending = daemon->CreateSession();
  std::string neighbour = daemon->CreateSession();
  const char kSlow[] =
      "import time\ndef forward(tag):\n    time.sleep(2)\n    print(tag)\n    return tag\n";
  daemon->CreatePythonProgram(ending, "slow", kSlow);
  daemon->CreatePythonProgram(neighbour, "slow", kSlow);
  // Execute() is safe from any thread; it never asserts.
  auto neighbour_call = std::async(std::launch::async, [&] {
    return daemon->Execute(neighbour, "slow", {{"tag", "neighbour"}});
  });
  auto ending_call = std::async(std::launch::async, [&] {
    return daemon->Execute(ending, "slow", {{"tag", "ending"}});
  });
  // Both calls are running once the sessions report busy (bounded poll).
  WaitForStatus(*daemon, neighbour, "busy");
  WaitForStatus(*daemon, ending, "busy");
  CHECK(daemon->Delete("/v1/sessions/" + ending).status == 204);

  HttpResult finished = neighbour_call.get();
  INFO(finished.body);
  CHECK(finished.status == 200);
  CHECK(finished.json["outputs"] == "neighbour");
  CHECK(finished.json["stdout"] == "neighbour\n");
  HttpResult ended = ending_call.get();
  CHECK(ended.status == 409);
  CHECK(ended.code() == "session_ended");
  CHECK(daemon->Get("/v1/sessions/" + neighbour).json["status"] == "ready");
}

}  // namespace
}  // namespace corral::testing
