// Preparing a SandboxSpec: the launcher's half of a launch (see sandbox/spec.h).
#include "sandbox/spec.h"

#include <sched.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <set>

#include <fmt/format.h>

#include "sandbox/capabilities.h"
#include "sandbox/launcher.h"
#include "sandbox/mounts.h"
#include "sandbox/rlimits.h"

namespace corral {
namespace {

constexpr const char* kDefaultPath = "/usr/local/bin:/usr/bin:/bin";

int CloneFlags(const NamespacePolicy& ns) {
  int flags = 0;
  if (ns.user) flags |= CLONE_NEWUSER;
  if (ns.pid) flags |= CLONE_NEWPID;
  if (ns.mount) flags |= CLONE_NEWNS;
  if (ns.net) flags |= CLONE_NEWNET;
  if (ns.ipc) flags |= CLONE_NEWIPC;
  if (ns.uts) flags |= CLONE_NEWUTS;
  return flags;
}

Status CheckEnvName(const std::string& name) {
  if (name.empty() || name.find_first_of("=", 0) != std::string::npos ||
      name.find('\0') != std::string::npos) {
    return Status::InvalidArgument(fmt::format("environment variable name `{}` is invalid", name));
  }
  return Status::Ok();
}

// The whole environment comes from the policy and the request: nothing of the launcher's own
// environment (credentials, tokens, paths of the host) reaches the sandbox.
Result<std::map<std::string, std::string>> BuildEnvironment(const Policy& policy,
                                                            const LaunchRequest& request) {
  std::map<std::string, std::string> env = policy.environment;
  long cpus = std::max(1L, static_cast<long>(std::ceil(policy.limits.cpus)));
  for (const auto& name : policy.environment_from_cpus) env[name] = std::to_string(cpus);
  for (const auto& [name, value] : request.env) env[name] = value;
  for (const auto& [name, value] : env) {
    CORRAL_TRY(CheckEnvName(name));
    if (value.find('\0') != std::string::npos) {
      return Status::InvalidArgument(fmt::format("environment variable `{}` holds a NUL", name));
    }
  }
  return env;
}

// argv[0] is an absolute path inside the sandbox, or a bare name looked up in the sandbox's
// PATH by the child itself (the host's view of a path can differ from the sandbox's).
Status PlanExec(const LaunchRequest& request, const std::map<std::string, std::string>& env,
                SandboxSpec* spec) {
  const std::string& program = request.argv[0];
  if (program.empty() || program.find('\0') != std::string::npos) {
    return Status::InvalidArgument("argv[0] is empty");
  }
  if (program[0] == '/') {
    spec->exec_candidates.push_back(spec->Keep(program));
  } else if (program.find('/') != std::string::npos) {
    return Status::InvalidArgument(
        fmt::format("argv[0] `{}`: must be absolute or a bare name looked up in PATH", program));
  } else {
    auto it = env.find("PATH");
    std::string path = it == env.end() ? kDefaultPath : it->second;
    size_t start = 0;
    while (start <= path.size()) {
      size_t end = std::min(path.find(':', start), path.size());
      std::string dir = path.substr(start, end - start);
      if (!dir.empty() && dir[0] == '/') {
        spec->exec_candidates.push_back(spec->Keep(fmt::format("{}/{}", dir, program)));
      }
      start = end + 1;
    }
  }
  for (const auto& arg : request.argv) spec->argv.push_back(const_cast<char*>(spec->Keep(arg)));
  spec->argv.push_back(nullptr);
  for (const auto& [name, value] : env) {
    spec->envp.push_back(const_cast<char*>(spec->Keep(fmt::format("{}={}", name, value))));
  }
  spec->envp.push_back(nullptr);
  return Status::Ok();
}

Status PlanDescriptors(const LaunchRequest& request, SandboxSpec* spec) {
  std::set<int> targets;
  for (const FdPass& pass : request.fds) {
    if (pass.parent_fd < 0 || pass.child_fd < 0 || pass.child_fd > 1023) {
      return Status::InvalidArgument(
          fmt::format("descriptor pass {} -> {} is out of range", pass.parent_fd, pass.child_fd));
    }
    if (!targets.insert(pass.child_fd).second) {
      return Status::InvalidArgument(fmt::format("descriptor {} passed twice", pass.child_fd));
    }
    spec->fds.emplace_back(pass.parent_fd, pass.child_fd);
    spec->max_target_fd = std::max(spec->max_target_fd, pass.child_fd);
  }
  return Status::Ok();
}

// Fields 48-51 of /proc/self/stat: where this process's argv and environment strings live.
void FindArgsAndEnvironment(SandboxSpec* spec) {
  std::ifstream in("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t comm_end = stat.rfind(')');
  if (comm_end == std::string::npos) return;
  std::istringstream fields(stat.substr(comm_end + 2));
  std::vector<std::string> tokens;
  for (std::string token; fields >> token;) tokens.push_back(token);
  constexpr size_t kArgStart = 48 - 3;  // tokens start at field 3 (state)
  if (tokens.size() < kArgStart + 4) return;
  spec->arg_start = std::stoull(tokens[kArgStart]);
  spec->arg_end = std::stoull(tokens[kArgStart + 1]);
  spec->env_start = std::stoull(tokens[kArgStart + 2]);
  spec->env_end = std::stoull(tokens[kArgStart + 3]);
}

}  // namespace

SandboxSpec::~SandboxSpec() {
  if (empty_caps != nullptr) cap_free(empty_caps);
}

const char* SandboxSpec::Keep(std::string text) {
  strings.push_back(std::move(text));
  return strings.back().c_str();
}

Result<std::unique_ptr<SandboxSpec>> PrepareSpec(const Policy& policy,
                                                 const LaunchRequest& request,
                                                 const PrepareOptions& options) {
  auto spec = std::make_unique<SandboxSpec>();
  const NamespacePolicy& ns = policy.namespaces;
  // pivot_root in the launcher's own mount namespace would change the host's root.
  if (!ns.mount) {
    return Status::Unsupported("namespaces.mount: false is not supported: the sandbox root "
                               "is built in a private mount namespace");
  }
  if (request.argv.empty()) return Status::InvalidArgument("argv is empty");
  spec->clone_flags = CloneFlags(ns);
  spec->cgroup_namespace = ns.cgroup;
  spec->user_namespace = ns.user;
  spec->uid = ns.user ? policy.user.uid : options.host_uid;
  spec->gid = ns.user ? policy.user.gid : options.host_uid;

  CORRAL_TRY(PlanMounts(policy, request.extra_binds, options.root_dir, spec.get()));
  if (ns.uts) spec->hostname = spec->Keep(policy.hostname);
  spec->loopback = ns.net && policy.network_loopback;
  CORRAL_TRY(PlanDescriptors(request, spec.get()));
  spec->workdir = spec->Keep(policy.filesystem.workdir);
  PlanRlimits(policy.limits, spec.get());
  CORRAL_TRY(PrepareCapabilities(spec.get()));

  if (options.seccomp) {
    CORRAL_ASSIGN_OR_RETURN(spec->seccomp, BuildSeccompProgram(policy.seccomp));
    spec->has_seccomp = true;
  }
  CORRAL_ASSIGN_OR_RETURN(auto env, BuildEnvironment(policy, request));
  CORRAL_TRY(PlanExec(request, env, spec.get()));
  FindArgsAndEnvironment(spec.get());
  return spec;
}

}  // namespace corral
