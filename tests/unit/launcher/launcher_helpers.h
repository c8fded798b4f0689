// Shared by the launcher tests: a real Launcher under its own cgroup parent, the shipped
// default policy, and a way to run Python in a sandbox and collect what it printed.
#pragma once

#include <unistd.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "sandbox/launcher.h"
#include "sandbox/policy.h"
#include "tests/support/skip.h"

namespace corral::testing {

inline std::string UniqueName(const std::string& tag) {
  static std::atomic<int> counter{0};
  return fmt::format("{}-{}-{}", tag, getpid(), counter++);
}

inline std::unique_ptr<Launcher> MakeLauncher() {
  LauncherOptions options;
  options.cgroups.parent_name = "corral-unit-launcher";
  Result<std::unique_ptr<Launcher>> launcher = Launcher::Create(options);
  INFO(launcher.status().ToString());
  REQUIRE(launcher.ok());
  return std::move(launcher).value();
}

inline Policy DefaultPolicy(const std::vector<std::string>& overrides = {}) {
  Result<Policy> policy =
      LoadPolicyFile(CORRAL_SOURCE_DIR "/policies/default.yaml", overrides);
  INFO(policy.status().ToString());
  REQUIRE(policy.ok());
  return *policy;
}

struct Captured {
  std::mutex mu;
  std::string out;
  std::string err;
};

// A request running `code` with /usr/bin/python3, its output collected into `captured`.
inline LaunchRequest PythonRequest(const std::string& tag, const std::string& code,
                                   std::shared_ptr<Captured> captured) {
  LaunchRequest request;
  request.name = UniqueName(tag);
  request.argv = {"/usr/bin/python3", "-c", code};
  request.output_sink = [captured](int stream, std::string_view data) {
    std::lock_guard lock(captured->mu);
    (stream == 1 ? captured->out : captured->err).append(data);
  };
  return request;
}

struct RunResult {
  Outcome outcome;
  std::string out;
  std::string err;
};

inline RunResult RunPython(Launcher& launcher, const Policy& policy, const std::string& code) {
  auto captured = std::make_shared<Captured>();
  Result<std::unique_ptr<Sandbox>> sandbox =
      launcher.Launch(policy, PythonRequest("py", code, captured));
  INFO(sandbox.status().ToString());
  REQUIRE(sandbox.ok());
  RunResult result;
  result.outcome = (*sandbox)->Wait();
  std::lock_guard lock(captured->mu);
  result.out = captured->out;
  result.err = captured->err;
  return result;
}

inline bool SandboxingUnavailable(const Launcher& launcher) {
  return !launcher.host().user_namespaces || !launcher.host().seccomp;
}

}  // namespace corral::testing
