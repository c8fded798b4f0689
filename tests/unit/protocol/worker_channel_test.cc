// WorkerChannel against the real worker.py and against a hostile fake worker
// (hostile_worker.py), both run as plain child processes over a real socketpair.
#include "manager/worker_channel.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

namespace corral {
namespace {

using std::chrono::steady_clock;
using namespace std::chrono_literals;

const std::string kWorkerPy = CORRAL_SOURCE_DIR "/images/python-worker/worker.py";
const std::string kHostilePy = CORRAL_SOURCE_DIR "/tests/unit/protocol/hostile_worker.py";
constexpr size_t kTestMaxFrame = 1 << 20;

// A generous deadline for calls that must answer: the machine is shared and noisy, and a test
// must never fail because it was slow.
steady_clock::time_point Patient() {
  return steady_clock::now() + 120s;
}

// A child process speaking on the other end of a channel; killed and reaped on destruction.
struct SpawnedWorker {
  pid_t pid = -1;
  std::unique_ptr<WorkerChannel> channel;

  ~SpawnedWorker() {
    channel.reset();
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

std::unique_ptr<SpawnedWorker> Spawn(std::vector<std::string> argv,
                                     std::vector<std::string> env = {}) {
  auto pair = WorkerChannel::MakeSocketPair();
  REQUIRE(pair.ok());
  // Moved off any low number first, so dup2 onto 3 always makes a fresh, inheritable copy.
  UniqueFd child_end(fcntl(pair->second.get(), F_DUPFD_CLOEXEC, 10));
  REQUIRE(child_end.valid());

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, child_end.get(), 3);
  env.push_back("CORRAL_CHANNEL_FD=3");
  env.push_back("CORRAL_MAX_FRAME=" + std::to_string(kTestMaxFrame));
  std::vector<char*> c_argv, c_env;
  for (auto& a : argv) c_argv.push_back(a.data());
  for (auto& e : env) c_env.push_back(e.data());
  c_argv.push_back(nullptr);
  c_env.push_back(nullptr);

  auto worker = std::make_unique<SpawnedWorker>();
  int rc = posix_spawn(&worker->pid, c_argv[0], &actions, nullptr, c_argv.data(), c_env.data());
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE(rc == 0);
  worker->channel = std::make_unique<WorkerChannel>(
      std::move(pair->first), WorkerChannelOptions{.max_frame = kTestMaxFrame});
  return worker;
}

std::unique_ptr<SpawnedWorker> SpawnRealWorker() {
  return Spawn({"/usr/bin/python3", "-I", kWorkerPy}, {"CORRAL_LOG_FORMAT=json"});
}

std::unique_ptr<SpawnedWorker> SpawnHostile(const std::string& mode) {
  return Spawn({"/usr/bin/python3", "-I", kHostilePy, mode});
}

void CreateProgram(WorkerChannel& channel, const std::string& id, const std::string& source) {
  auto reply = channel.Call(
      "create_program", {{"program_id", id}, {"kind", "python"}, {"source", source}}, Patient());
  REQUIRE(reply.ok());
  INFO(reply->error_message);
  REQUIRE(reply->ok);
}

TEST_CASE("worker channel pings the real worker", "[worker_channel]") {
  auto worker = SpawnRealWorker();
  auto reply = worker->channel->Call("ping", {}, Patient());
  REQUIRE(reply.ok());
  REQUIRE(reply->ok);
  CHECK(reply->result["pong"] == true);
  CHECK(reply->result["pid"] == worker->pid);
  CHECK(worker->channel->fault().ok());
}

TEST_CASE("worker channel returns the worker's typed errors as replies", "[worker_channel]") {
  auto worker = SpawnRealWorker();
  auto reply = worker->channel->Call("no_such_command", {}, Patient());
  REQUIRE(reply.ok());
  CHECK_FALSE(reply->ok);
  CHECK(reply->error_type == "unknown_command");

  CreateProgram(*worker->channel, "boom", "def forward():\n    raise ValueError('bad')\n");
  auto failed = worker->channel->Call("execute_program", {{"program_id", "boom"}}, Patient());
  REQUIRE(failed.ok());
  CHECK(failed->error_type == "program_error");
  CHECK(failed->error["exception"] == "ValueError");
  CHECK(worker->channel->fault().ok());  // a tenant's exception is not a protocol fault
}

TEST_CASE("worker channel gives concurrent callers their own replies", "[worker_channel]") {
  auto worker = SpawnRealWorker();
  constexpr int kThreads = 8;
  constexpr int kCallsEach = 15;
  for (int t = 0; t < kThreads; ++t) {
    CreateProgram(*worker->channel, "p" + std::to_string(t),
                  "calls = 0\ndef forward(tag):\n    global calls\n    calls += 1\n"
                  "    return {'me': " +
                      std::to_string(t) + ", 'tag': tag, 'calls': calls}\n");
  }

  std::atomic<int> wrong = 0, failed = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCallsEach; ++i) {
        std::string tag = std::to_string(t) + "/" + std::to_string(i);
        auto reply = worker->channel->Call(
            "execute_program",
            {{"program_id", "p" + std::to_string(t)}, {"inputs", {{"tag", tag}}}}, Patient());
        if (!reply.ok() || !reply->ok) {
          ++failed;
          continue;
        }
        const auto& out = reply->result["outputs"];
        if (out["me"] != t || out["tag"] != tag || out["calls"] != i + 1) ++wrong;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(failed == 0);
  CHECK(wrong == 0);
}

TEST_CASE("worker channel call past its deadline fails with wall_timeout", "[worker_channel]") {
  auto worker = SpawnRealWorker();
  CreateProgram(*worker->channel, "slow", "import time\ndef forward():\n    time.sleep(600)\n");
  auto reply = worker->channel->Call("execute_program", {{"program_id", "slow"}},
                                     steady_clock::now() + 200ms);
  REQUIRE_FALSE(reply.ok());
  CHECK(reply.status().category() == ErrorCategory::kDeadlineExceeded);
  CHECK(reply.status().reason() == kWallTimeout);
}

TEST_CASE("worker channel write to a worker that never reads ends at the deadline",
          "[worker_channel][hostile]") {
  auto worker = SpawnHostile("never_read");
  // Far larger than a socket buffer, so the write must block until the deadline.
  std::string filler(kTestMaxFrame - 1024, 'x');
  auto reply = worker->channel->Call("ping", {{"filler", filler}}, steady_clock::now() + 300ms);
  REQUIRE_FALSE(reply.ok());
  CHECK(reply.status().reason() == kWallTimeout);
  // Half a request is on the wire: the channel cannot be used again.
  CHECK(worker->channel->fault().reason() == kWallTimeout);
  auto later = worker->channel->Call("ping", {}, Patient());
  REQUIRE_FALSE(later.ok());
  CHECK(later.status().reason() == kWallTimeout);
}

TEST_CASE("worker channel reports a worker that exits as worker_exited", "[worker_channel]") {
  auto worker = SpawnRealWorker();
  CreateProgram(*worker->channel, "die", "import os\ndef forward():\n    os._exit(3)\n");
  auto reply = worker->channel->Call("execute_program", {{"program_id", "die"}}, Patient());
  REQUIRE_FALSE(reply.ok());
  CHECK(reply.status().reason() == kWorkerExited);

  auto later = worker->channel->Call("ping", {}, Patient());
  REQUIRE_FALSE(later.ok());
  CHECK(later.status().reason() == kWorkerExited);
}

TEST_CASE("worker channel close fails a pending call", "[worker_channel]") {
  auto worker = SpawnRealWorker();
  CreateProgram(*worker->channel, "slow", "import time\ndef forward():\n    time.sleep(600)\n");
  Result<WorkerReply> reply = Status::Internal("not run");
  std::thread caller([&] {
    reply = worker->channel->Call("execute_program", {{"program_id", "slow"}}, Patient());
  });
  // Close whether or not the call has been written yet: either way it must fail, not hang.
  worker->channel->Close();
  caller.join();
  REQUIRE_FALSE(reply.ok());
  CHECK(reply.status().reason() == kWorkerChannelClosed);
}

// Each hostile mode must fault the channel: the call fails with worker_protocol_error (or
// worker_exited when the worker dies mid-frame), never gets a reply, and later calls fail too.
TEST_CASE("worker channel refuses hostile frames", "[worker_channel][hostile]") {
  const char* modes[] = {
      "prefix_ffffffff",
      "prefix_80000000",
      "prefix_max_plus_one",
      "random_bytes",
      "garbage_body",
      "truncated_json",
      "non_object",
      "invalid_utf8",
      "deep_nesting",
      "never_sent",
      "no_id",
      "float_id",
      "string_id",
      "negative_id",
      "no_result_or_error",
      "result_and_error",
      "result_not_object",
      "error_without_type",
      "unsolicited",
  };
  for (const char* mode : modes) {
    DYNAMIC_SECTION(mode) {
      auto worker = SpawnHostile(mode);
      auto reply = worker->channel->Call("ping", {}, Patient());
      REQUIRE_FALSE(reply.ok());
      INFO(reply.status().ToString());
      CHECK(reply.status().reason() == kWorkerProtocolError);
      CHECK(worker->channel->fault().reason() == kWorkerProtocolError);

      auto later = worker->channel->Call("ping", {}, Patient());
      REQUIRE_FALSE(later.ok());
      CHECK(later.status().reason() == kWorkerProtocolError);
    }
  }
}

TEST_CASE("worker channel never hands a stale reply to a later call", "[worker_channel][hostile]") {
  auto worker = SpawnHostile("stale");
  auto first = worker->channel->Call("ping", {}, Patient());
  REQUIRE(first.ok());
  CHECK(first->result["echo"] == 1);

  auto second = worker->channel->Call("ping", {}, Patient());
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().reason() == kWorkerProtocolError);
}

TEST_CASE("worker channel faults on a duplicate reply", "[worker_channel][hostile]") {
  auto worker = SpawnHostile("duplicate");
  auto first = worker->channel->Call("ping", {}, Patient());
  // The first reply is the call's own; the duplicate behind it faults the channel.
  REQUIRE(first.ok());
  CHECK(first->result["echo"] == 1);

  auto second = worker->channel->Call("ping", {}, Patient());
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().reason() == kWorkerProtocolError);
}

TEST_CASE("worker channel ignores unknown fields in a reply", "[worker_channel][hostile]") {
  auto worker = SpawnHostile("unknown_fields");
  auto reply = worker->channel->Call("ping", {}, Patient());
  REQUIRE(reply.ok());
  CHECK(reply->result["echo"] == 1);
  CHECK(worker->channel->fault().ok());
}

TEST_CASE("worker channel reports a worker dying mid-frame as worker_exited",
          "[worker_channel][hostile]") {
  auto worker = SpawnHostile("exit_mid_frame");
  auto reply = worker->channel->Call("ping", {}, Patient());
  REQUIRE_FALSE(reply.ok());
  CHECK(reply.status().reason() == kWorkerExited);
}

TEST_CASE("worker channel routes worker-initiated frames to the request handler",
          "[worker_channel]") {
  auto worker = SpawnHostile("lm_request");
  std::atomic<int> seen = 0;
  worker->channel->SetRequestHandler([&](const nlohmann::json& frame) {
    ++seen;
    CHECK(frame["type"] == "lm_request");
    CHECK(worker->channel->Send({{"type", "lm_response"}, {"request_id", "r1"}}).ok());
  });
  auto reply = worker->channel->Call("ping", {}, Patient());
  REQUIRE(reply.ok());
  CHECK(seen == 1);
  CHECK(reply->result["handled"]["type"] == "lm_response");
}

TEST_CASE("worker channel faults on a worker-initiated frame of a type its handler does not serve",
          "[worker_channel]") {
  auto worker = SpawnHostile("lm_request");
  std::atomic<int> seen = 0;
  worker->channel->SetRequestHandler([&](const nlohmann::json&) { ++seen; }, {"log_request"});
  auto reply = worker->channel->Call("ping", {}, Patient());
  REQUIRE_FALSE(reply.ok());
  CHECK(reply.status().reason() == kWorkerProtocolError);
  CHECK(reply.status().message().find("`lm_request`") != std::string::npos);
  CHECK(seen == 0);
}

}  // namespace
}  // namespace corral
