// The launcher: turns a policy into a running, contained process, watches it, and reports how
// it ended.
//
// Two halves are kept apart (see sandbox/spec.h): preparing a SandboxSpec is privileged work
// done here, in the launcher; applying it happens in the child, before exec, and can also be
// done by a process forked from a warm template that applies the spec to itself without exec.
//
// One supervisor thread per Launcher watches every live sandbox (exit, output pipes, seccomp
// notifications, wall and CPU limits) with epoll: no thread per sandbox, no polling loops.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sandbox/cgroup.h"
#include "sandbox/outcome.h"
#include "sandbox/policy.h"
#include "sandbox/status.h"

namespace corral {

// A descriptor handed to the sandboxed process: `parent_fd` (owned by the caller, only
// duplicated) becomes `child_fd` in the child. Everything not passed is closed.
struct FdPass {
  int parent_fd;
  int child_fd;
};

struct LaunchRequest {
  std::string name;                // unique among live sandboxes: cgroup leaf and log context
  std::vector<std::string> argv;   // argv[0]: absolute path inside the sandbox
  std::map<std::string, std::string> env;  // added on top of the policy's environment
  std::vector<FdPass> fds;         // child fds 0..2 are /dev/null unless passed here
  std::vector<BindMount> extra_binds;  // added to the policy's binds (the worker's own code)
  // When set, the child's stdout and stderr are pipes the supervisor drains into this sink,
  // at most `limits.output` bytes in all (then `output_truncated`, and the sandbox is killed
  // with `output_limit` if the policy says so). stream: 1 or 2. Called on the supervisor thread.
  std::function<void(int stream, std::string_view data)> output_sink;
  // Called once on the supervisor thread when the sandbox has ended and been cleaned up.
  std::function<void(const Outcome&)> on_exit;
};

// Owner of one live sandbox. Destruction kills every process in it, reaps it and removes its
// cgroup and id lease. Thread safety: all methods may be called from any thread.
class Sandbox {
 public:
  virtual ~Sandbox() = default;
  virtual const std::string& name() const = 0;
  // Host pid of the sandboxed process (the command, not the sandbox's init).
  virtual pid_t pid() const = 0;
  virtual uint32_t host_uid() const = 0;
  // Paths of the sandbox's cgroup, one per hierarchy (for diagnostics and outcome records).
  virtual const std::vector<std::string>& cgroup_paths() const = 0;
  // Kills every process of the sandbox. The first reason recorded wins. Does not block.
  virtual void Kill(OutcomeReason reason) = 0;
  // Blocks until the sandbox has ended and been cleaned up.
  virtual Outcome Wait() = 0;
  // Waits at most `timeout`; nullopt if still running.
  virtual std::optional<Outcome> WaitFor(std::chrono::milliseconds timeout) = 0;
  virtual bool Exited() const = 0;
  virtual ResourceUsage Usage() const = 0;
};

struct LauncherOptions {
  CgroupManagerOptions cgroups;           // parent_name: the cgroup parent this launcher owns
  std::string id_lock_dir = "/run/corral/ids";  // host-id leases, shared by every launcher
  // An empty directory each sandbox mounts its own root over, inside its private mount
  // namespace (created 0755 at start: the sandbox's unprivileged host uid must search it).
  std::string root_dir = "/run/corral/root";
};

// What this host supports, for `corral-run --check` and for failing closed at start.
struct HostSupport {
  bool user_namespaces = false;
  bool seccomp = false;
  bool seccomp_user_notif = false;
  CgroupLayout cgroup_layout = CgroupLayout::kV2;
  std::vector<std::string> cgroup_controllers;
  std::string kernel;
  // What `policy` needs that this host lacks (empty = can run it).
  std::vector<std::string> MissingFor(const Policy& policy) const;
};

HostSupport ProbeHost(const CgroupManager* cgroups);

class Launcher {
 public:
  virtual ~Launcher() = default;
  static Result<std::unique_ptr<Launcher>> Create(const LauncherOptions& options);

  // Kills and removes what a crashed previous launcher with the same cgroup parent left.
  // Returns how many sandboxes were cleaned up.
  virtual Result<int> CleanupStale() = 0;
  // Fails closed: a policy that needs what the host lacks is refused, naming what is missing.
  virtual Result<std::unique_ptr<Sandbox>> Launch(const Policy& policy, LaunchRequest request) = 0;
  virtual const HostSupport& host() const = 0;
  virtual CgroupManager& cgroups() = 0;
};

}  // namespace corral
