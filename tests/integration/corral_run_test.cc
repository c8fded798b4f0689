// corral-run as a user drives it: the real binary, as a subprocess.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/support/skip.h"

extern char** environ;

namespace {

const std::string kCorralRun = CORRAL_BUILD_DIR "/corral-run";
const std::string kDefaultPolicy = CORRAL_SOURCE_DIR "/policies/default.yaml";

std::string ReadAll(int fd) {
  std::string text;
  char buffer[4096];
  for (;;) {
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return text;
    text.append(buffer, static_cast<size_t>(n));
  }
}

// A running corral-run with stdout and stderr on pipes (stdin: /dev/null).
struct Child {
  pid_t pid = -1;
  int out = -1;
  int err = -1;
};

Child Spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(kCorralRun.c_str()));
  for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  int out[2], err[2];
  REQUIRE(pipe2(out, O_CLOEXEC) == 0);
  REQUIRE(pipe2(err, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  Child child;
  int rc = posix_spawn(&child.pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  close(err[1]);
  REQUIRE(rc == 0);
  child.out = out[0];
  child.err = err[0];
  return child;
}

struct Finished {
  int status = -1;  // shell style
  std::string out;
  std::string err;
};

Finished Finish(Child child) {
  Finished result;
  result.out = ReadAll(child.out);  // corral-run writes little; stderr's pipe cannot fill
  result.err = ReadAll(child.err);
  close(child.out);
  close(child.err);
  int status = 0;
  while (waitpid(child.pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

Finished Run(const std::vector<std::string>& args) { return Finish(Spawn(args)); }

std::vector<std::string> PythonArgs(const std::string& code, std::vector<std::string> flags = {}) {
  std::vector<std::string> args = {"--policy", kDefaultPolicy};
  args.insert(args.end(), flags.begin(), flags.end());
  args.insert(args.end(), {"--", "python3", "-c", code});
  return args;
}

std::string LastLine(const std::string& text) {
  std::string trimmed = text;
  while (!trimmed.empty() && trimmed.back() == '\n') trimmed.pop_back();
  size_t newline = trimmed.rfind('\n');
  return newline == std::string::npos ? trimmed : trimmed.substr(newline + 1);
}

nlohmann::json OutcomeFromStderr(const Finished& run) {
  INFO(run.err);
  nlohmann::json outcome = nlohmann::json::parse(LastLine(run.err), nullptr, false);
  REQUIRE(outcome.is_object());
  return outcome;
}

bool CanSandbox() {
  Finished check = Run({"--check", "--policy", kDefaultPolicy});
  return check.status == 0;
}

TEST_CASE("corral-run: runs python3 from PATH and reports the outcome on stderr's last line") {
  CORRAL_SKIP_IF(!CanSandbox(), "corral-run --check says this host cannot run the policy");
  Finished run = Run(PythonArgs("print(1)"));
  INFO(run.err);
  CHECK(run.status == 0);
  CHECK(run.out == "1\n");
  nlohmann::json outcome = OutcomeFromStderr(run);
  CHECK(outcome["reason"] == "exited");
  CHECK(outcome["exit_code"] == 0);
  CHECK(outcome["sandbox"]["host_uid"].get<uint32_t>() >= 200000);
  CHECK(outcome["sandbox"]["pid"].get<int>() > 0);
  CHECK(outcome["sandbox"]["cgroup"].is_array());
  for (const auto& path : outcome["sandbox"]["cgroup"]) {
    CHECK_FALSE(std::filesystem::exists(path.get<std::string>()));
  }
}

TEST_CASE("corral-run: the outcome starts its own line after unterminated stderr") {
  CORRAL_SKIP_IF(!CanSandbox(), "corral-run --check says this host cannot run the policy");
  Finished run = Run(PythonArgs("import sys; sys.stderr.write('no newline')"));
  CHECK(run.status == 0);
  CHECK(run.err.rfind("no newline\n{", 0) == 0);
  CHECK(OutcomeFromStderr(run)["reason"] == "exited");
}

TEST_CASE("corral-run: the command's exit status and signal propagate") {
  CORRAL_SKIP_IF(!CanSandbox(), "corral-run --check says this host cannot run the policy");
  Finished exited = Run(PythonArgs("import sys; sys.exit(7)"));
  CHECK(exited.status == 7);
  CHECK(OutcomeFromStderr(exited)["exit_code"] == 7);

  Finished killed = Run(PythonArgs("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"));
  CHECK(killed.status == 128 + SIGKILL);
  nlohmann::json outcome = OutcomeFromStderr(killed);
  CHECK(outcome["reason"] == "signaled");
  CHECK(outcome["signal"] == SIGKILL);
}

TEST_CASE("corral-run: --outcome writes the record to a file, not to stderr") {
  CORRAL_SKIP_IF(!CanSandbox(), "corral-run --check says this host cannot run the policy");
  std::string path = fmt::format("/tmp/corral-run-test-{}.json", getpid());
  Finished run = Run(PythonArgs("import sys; print('e', file=sys.stderr)",
                                {"--outcome", path, "--set", "limits.wall_time=60s"}));
  CHECK(run.status == 0);
  CHECK(run.err == "e\n");
  std::ifstream in(path);
  nlohmann::json outcome = nlohmann::json::parse(in, nullptr, false);
  std::filesystem::remove(path);
  REQUIRE(outcome.is_object());
  CHECK(outcome["reason"] == "exited");
  CHECK(outcome["output_bytes"] == 2);
}

TEST_CASE("corral-run: --set limits apply and are reported as their outcome") {
  CORRAL_SKIP_IF(!CanSandbox(), "corral-run --check says this host cannot run the policy");
  Finished run =
      Run(PythonArgs("import time; time.sleep(1000)", {"--set", "limits.wall_time=300ms"}));
  CHECK(run.status == 128 + SIGKILL);
  CHECK(OutcomeFromStderr(run)["reason"] == "wall_timeout");
}

TEST_CASE("corral-run: SIGTERM kills the sandbox as killed_by_request") {
  CORRAL_SKIP_IF(!CanSandbox(), "corral-run --check says this host cannot run the policy");
  Child child = Spawn(PythonArgs("import time; print('ready', flush=True); time.sleep(1000)"));
  std::string seen;
  char buffer[64];
  while (seen.find("ready") == std::string::npos) {
    ssize_t n = read(child.out, buffer, sizeof buffer);
    REQUIRE(n > 0);
    seen.append(buffer, static_cast<size_t>(n));
  }
  REQUIRE(kill(child.pid, SIGTERM) == 0);
  Finished run = Finish(child);
  CHECK(run.status == 128 + SIGTERM);
  CHECK(OutcomeFromStderr(run)["reason"] == "killed_by_request");
}

TEST_CASE("corral-run: a launch failure exits 125 with a launch_failed record") {
  CORRAL_SKIP_IF(!CanSandbox(), "corral-run --check says this host cannot run the policy");
  Finished run = Run(PythonArgs("print(1)", {"--bind", "/nonexistent-corral-bind"}));
  CHECK(run.status == 125);
  CHECK_THAT(run.err, Catch::Contains("bind `/nonexistent-corral-bind`"));
  CHECK(OutcomeFromStderr(run)["reason"] == "launch_failed");
}

TEST_CASE("corral-run: --check reports the host") {
  Finished run = Run({"--check", "--policy", kDefaultPolicy});
  CHECK_THAT(run.out, Catch::Contains("cgroup layout: "));
  CHECK_THAT(run.out, Catch::Contains("user namespaces: "));
  CHECK_THAT(run.out, Catch::Contains("seccomp user notifications: "));
  CHECK_THAT(run.out, Catch::Contains("host id range: 200000-209999"));
  CHECK_THAT(run.out, Catch::Contains("policy `default`: "));
  CHECK((run.status == 0 || run.status == 1));
}

TEST_CASE("corral-run: bad command lines exit 2 naming the problem") {
  Finished unknown = Run({"--bogus-flag", "--policy", kDefaultPolicy, "--", "true"});
  CHECK(unknown.status == 2);
  CHECK_THAT(unknown.err, Catch::Contains("--bogus-flag"));

  Finished no_command = Run({"--policy", kDefaultPolicy});
  CHECK(no_command.status == 2);
  CHECK_THAT(no_command.err, Catch::Contains("command"));

  Finished bad_set = Run({"--policy", kDefaultPolicy, "--set", "limits.memory=lots", "--", "true"});
  CHECK(bad_set.status == 2);
  CHECK_THAT(bad_set.err, Catch::Contains("limits.memory"));

  Finished bad_name = Run(PythonArgs("print(1)", {"--name", "../escape"}));
  CHECK(bad_name.status == 2);
  CHECK_THAT(bad_name.err, Catch::Contains("sandbox name `../escape`"));

  Finished version = Run({"--version"});
  CHECK(version.status == 0);
  CHECK_THAT(version.out, Catch::Contains("corral-run"));
}

}  // namespace
