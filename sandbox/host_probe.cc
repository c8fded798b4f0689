// What this host supports: user namespaces, seccomp (and its user notifications), the cgroup
// layout and controllers, the kernel. Probed once per Launcher, for `corral-run --check` and
// so that a policy that needs what is missing fails closed at launch.
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "sandbox/launcher.h"

namespace corral {
namespace {

// The authoritative test is to try: sysctls differ between distributions (Debian's
// kernel.unprivileged_userns_clone, user.max_user_namespaces, AppArmor restrictions).
bool ProbeUserNamespaces() {
  long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
  if (pid == 0) _exit(0);
  if (pid < 0) return false;
  int status = 0;
  while (waitpid(static_cast<pid_t>(pid), &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

bool HasController(const HostSupport& host, const std::string& name) {
  const auto& list = host.cgroup_controllers;
  return std::find(list.begin(), list.end(), name) != list.end();
}

}  // namespace

HostSupport ProbeHost(const CgroupManager* cgroups) {
  HostSupport host;
  host.user_namespaces = ProbeUserNamespaces();
  host.seccomp = prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0;
  std::istringstream actions(ReadFirstLine("/proc/sys/kernel/seccomp/actions_avail"));
  for (std::string action; actions >> action;) {
    if (action == "user_notif") host.seccomp_user_notif = true;
  }
  if (cgroups != nullptr) {
    host.cgroup_layout = cgroups->layout();
    host.cgroup_controllers = cgroups->Controllers();
  }
  struct utsname name;
  if (uname(&name) == 0) host.kernel = std::string(name.sysname) + " " + name.release;
  return host;
}

std::vector<std::string> HostSupport::MissingFor(const Policy& policy) const {
  std::vector<std::string> needed;
  if (policy.namespaces.user && !user_namespaces) needed.push_back("namespaces.user");
  if (!seccomp) needed.push_back("seccomp");
  if (policy.seccomp.action == SeccompAction::kKill && !seccomp_user_notif) {
    needed.push_back("seccomp.user_notif");
  }
  const LimitsPolicy& limits = policy.limits;
  if (limits.memory > 0 && !HasController(*this, "memory")) needed.push_back("cgroup.memory");
  if (limits.memory > 0 && !HasController(*this, "memory_swap")) {
    needed.push_back("cgroup.memory_swap");
  }
  if (limits.pids > 0 && !HasController(*this, "pids")) needed.push_back("cgroup.pids");
  if ((limits.cpus > 0 || limits.cpu_time.count() > 0) && !HasController(*this, "cpu")) {
    needed.push_back("cgroup.cpu");
  }
  std::vector<std::string> missing;
  for (const auto& facility : needed) {
    const auto& optional = policy.optional;
    if (std::find(optional.begin(), optional.end(), facility) == optional.end()) {
      missing.push_back(facility);
    }
  }
  return missing;
}

}  // namespace corral
