// A real corrald for integration tests: the built binary, on 127.0.0.1 with an ephemeral
// port (`--listen 127.0.0.1:0`; the daemon writes the bound port to state_dir/corrald.port),
// a temporary state directory and its own cgroup parent, so tests run in parallel and one
// daemon's stale-sandbox cleanup can never touch another's.
//
// Every response the client gets is checked against docs/openapi.yaml; mismatches are
// collected (Catch2 assertions are not thread-safe, and tests call from many threads) and
// CHECKed in the destructor, on the test's thread. The destructor stops the daemon with
// SIGTERM and removes the cgroup parent.
//
// Thread safety: Get/Post/Delete/PostRaw may be called from any thread and never assert; the
// session helpers (CreateSession, CreatePythonProgram) REQUIRE and belong to the test thread.
#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace corral::testing {

struct HttpResult {
  int status = 0;  // 0 when the connection failed
  std::string body;
  nlohmann::json json;  // parsed body, null when empty or not JSON

  std::string code() const;  // error.code, or ""
};

struct DaemonOptions {
  std::vector<std::string> overrides;  // --set path=value
  std::string policies_dir;            // empty: the shipped policies
  std::string state_dir;               // empty: a fresh temporary directory
  std::string cgroup_parent;           // empty: a fresh unique name
  std::vector<std::string> env;        // NAME=value added to the daemon's environment
};

class Daemon {
 public:
  // Starts the daemon and waits until it listens; FAILs the test (with its log) otherwise.
  static std::unique_ptr<Daemon> Start(DaemonOptions options = {});
  ~Daemon();

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& state_dir() const { return state_dir_; }
  const std::string& cgroup_parent() const { return cgroup_parent_; }
  std::string log() const;

  HttpResult Get(const std::string& path);
  HttpResult Delete(const std::string& path);
  HttpResult Post(const std::string& path, const nlohmann::json& body);
  HttpResult PostRaw(const std::string& path, const std::string& body,
                     const std::string& content_type = "application/json");

  // Session helpers: each REQUIREs success.
  std::string CreateSession(const nlohmann::json& body = nlohmann::json::object());
  void CreatePythonProgram(const std::string& session, const std::string& program_id,
                           const std::string& source);
  HttpResult Execute(const std::string& session, const std::string& program_id,
                     const nlohmann::json& inputs = nlohmann::json::object(), int timeout_ms = 0);

  // SIGTERM; waits for the exit and returns its status as from waitpid.
  int Terminate();
  // SIGKILL; waits for the exit. Leaves the cgroup parent for the next daemon to clean.
  void KillHard();
  bool running() const { return pid_ > 0; }

  // Directories of this daemon's cgroup parent, one per hierarchy (those that exist).
  std::vector<std::string> CgroupParentDirs() const;
  // Names of the child cgroups under the parent now, in any hierarchy (live sandboxes plus
  // leftovers).
  std::vector<std::string> CgroupChildren() const;
  // Responses that did not match docs/openapi.yaml so far.
  std::vector<std::string> OpenApiMismatches();

 private:
  Daemon() = default;
  void Launch(const DaemonOptions& options);
  bool WaitForPort();
  HttpResult Finish(const std::string& method, const std::string& path, int status,
                    std::string body);

  std::string state_dir_;
  std::string cgroup_parent_;
  std::string log_path_;
  pid_t pid_ = -1;
  int port_ = 0;
  bool keep_cgroup_parent_ = false;
  bool owns_state_dir_ = false;

  std::mutex mismatches_mutex_;  // guards mismatches_
  std::vector<std::string> mismatches_;
};

// True when process `pid` is gone or a zombie.
bool ProcessGone(pid_t pid);

// Writes a policies directory holding the shipped policies plus `name` = default with
// `overrides` ("limits.memory=64Mi") applied; returns its path (under `dir`).
std::string MakePolicyDir(const std::string& dir, const std::string& name,
                          const std::vector<std::pair<std::string, std::string>>& overrides);

// A fresh temporary directory.
std::string MakeTempDir(const std::string& prefix);

}  // namespace corral::testing
