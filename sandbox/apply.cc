// Applying a SandboxSpec to the current process: the child's half of a launch.
//
// Everything here is async-signal-safe (see sandbox/spec.h for why). A failing step writes an
// ApplyFailure record to the error pipe and the process exits; the launcher names the step.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "sandbox/capabilities.h"
#include "sandbox/descriptors.h"
#include "sandbox/mounts.h"
#include "sandbox/network.h"
#include "sandbox/rlimits.h"
#include "sandbox/spec.h"
#include "sandbox/user_ns.h"

namespace corral {
namespace {

constexpr int kSetupFailedExit = 127;

const char* const kStepNames[] = {
    "?",
    "wait for the launcher",
    "unshare cgroup namespace",
    "keep capabilities across setuid",
    "setgroups",
    "setresgid",
    "setresuid",
    "mount",
    "sethostname",
    "bring loopback up",
    "set up descriptors",
    "setsid",
    "chdir",
    "setrlimit",
    "set parent-death signal",
    "launcher gone",
    "drop bounding set",
    "clear ambient capabilities",
    "lock securebits",
    "drop capabilities",
    "set no_new_privs",
    "install seccomp filter",
    "send seccomp listener",
    "fork command",
    "report command pid",
    "execve",
};

bool Fail(const ChildChannels& channels, ApplyStep step, int detail = 0) {
  ReportFailure(channels.error_fd, step, errno, detail);
  return false;
}

// The launcher holds the sync pipe's write end for as long as it lives: a hang-up means it
// died before the parent-death signal was armed, which would otherwise go unnoticed.
bool LauncherAlive(int sync_fd) {
  struct pollfd pfd = {sync_fd, POLLIN, 0};
  int n = poll(&pfd, 1, 0);
  return !(n == 1 && (pfd.revents & (POLLHUP | POLLERR)));
}

// SCM_RIGHTS: the seccomp listener goes to the launcher, which answers every notification.
bool SendFd(int socket_fd, int fd) {
  char tag = 'l';
  struct iovec iov = {&tag, 1};
  union {
    char buffer[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr message = {};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control.buffer;
  message.msg_controllen = sizeof control.buffer;
  struct cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(header), &fd, sizeof fd);
  return sendmsg(socket_fd, &message, MSG_NOSIGNAL) == 1;
}

// The launcher's end has SO_PASSCRED, so the kernel attaches this process's pid to the message
// and translates it into the launcher's pid namespace: the command's host pid, unforgeable.
bool ReportPid(int socket_fd) {
  char tag = 'p';
  return send(socket_fd, &tag, 1, MSG_NOSIGNAL) == 1;
}

// Signals: the launcher's handlers must never run here (they are the daemon's code), and a
// signal arriving during setup waits, blocked, until the command runs with default actions.
void ResetSignals() {
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &action, nullptr);
  }
}

// The init is a copy of the launcher that never execs, so its argv and environment strings are
// the launcher's (the daemon's command line, its secrets). The memory is this process's own
// copy-on-write copy; overwriting it changes nothing for the launcher.
void WipeLauncherStrings(const SandboxSpec& spec) {
  static const char kName[] = "corral-init";
  if (spec.arg_end > spec.arg_start + sizeof kName) {
    auto* args = reinterpret_cast<char*>(spec.arg_start);
    memset(args, 0, spec.arg_end - spec.arg_start);
    memcpy(args, kName, sizeof kName);
  }
  prctl(PR_SET_NAME, kName, 0, 0, 0);
  if (spec.env_end > spec.env_start) {
    memset(reinterpret_cast<char*>(spec.env_start), 0, spec.env_end - spec.env_start);
  }
}

// The sandbox's init (pid 1 of its pid namespace) never runs tenant code. It reaps orphans,
// which the command (Python) does not, reports the command's wait status and exits; the kernel
// then kills whatever is left in the namespace.
[[noreturn]] void RunInit(pid_t command, int status_fd) {
  CloseAllExcept(status_fd);
  for (;;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid == command) {
      ssize_t ignored = write(status_fd, &status, sizeof status);
      (void)ignored;
      _exit(0);
    }
    if (pid < 0 && errno != EINTR) _exit(0);
  }
}

}  // namespace

const char* ApplyStepName(ApplyStep step) {
  auto index = static_cast<size_t>(step);
  return index < std::size(kStepNames) ? kStepNames[index] : "?";
}

void ReportFailure(int error_fd, ApplyStep step, int error, int detail) {
  ApplyFailure failure = {static_cast<int32_t>(step), error, detail};
  ssize_t ignored = write(error_fd, &failure, sizeof failure);
  (void)ignored;
}

// The order of a launch, and why (steps 1-2 run in the launcher, 3-12 here, 13 after):
//  1. clone with the namespaces, fork-like; the child waits on the sync pipe.
//  2. The launcher writes the id maps and moves the child into its cgroup, then says go.
//  3. Cgroup namespace after the cgroup move, so the child's view is rooted at its own
//     cgroup. Ids next (setresuid needs the maps of step 2), keeping capabilities across the
//     switch: files created in the tmpfs need a mapped owner.
//  4. Mounts and pivot_root, while CAP_SYS_ADMIN in the namespace is still held.
//  5. Hostname and loopback (CAP_SYS_ADMIN, CAP_NET_ADMIN in the namespace).
//  6. Descriptors after pivot_root: /dev/null is the sandbox's own.
//  7. setsid (no controlling terminal: no TIOCSTI into the launcher's terminal), workdir.
//  8. rlimits.
//  9. Parent-death signal after the id changes (they clear it), then check the launcher did
//     not die before it was armed.
// 10. Capabilities: bounding set, ambient, securebits (needs CAP_SETPCAP), then capset empty.
// 11. no_new_privs: required for an unprivileged seccomp filter, and no exec gains privilege.
// 12. seccomp last: every call above is made before the filter could refuse it.
// 13. Fork the command (the caller stays as init), execve.
bool ApplySpec(const SandboxSpec& spec, ChildChannels* channels, bool close_fds) {
  const ChildChannels& ch = *channels;
  if (spec.cgroup_namespace && unshare(CLONE_NEWCGROUP) != 0) {
    return Fail(ch, ApplyStep::kCgroupNamespace);
  }
  if (ApplyStep step = ApplyIds(spec); step != ApplyStep{}) return Fail(ch, step);
  if (int index = ApplyMounts(spec); index >= 0) return Fail(ch, ApplyStep::kMount, index);
  if (spec.hostname != nullptr && sethostname(spec.hostname, strlen(spec.hostname)) != 0) {
    return Fail(ch, ApplyStep::kHostname);
  }
  if (spec.loopback && !BringLoopbackUp()) return Fail(ch, ApplyStep::kLoopback);

  if (!ApplyDescriptors(spec, channels, close_fds)) return Fail(ch, ApplyStep::kDescriptors);
  if (setsid() < 0) return Fail(ch, ApplyStep::kSetsid);
  if (chdir(spec.workdir) != 0) return Fail(ch, ApplyStep::kChdir);
  if (int index = ApplyRlimits(spec); index >= 0) return Fail(ch, ApplyStep::kRlimit, index);

  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) {
    return Fail(ch, ApplyStep::kParentDeathSignal);
  }
  if (!LauncherAlive(ch.sync_fd)) {
    errno = ESRCH;
    return Fail(ch, ApplyStep::kParentGone);
  }

  if (ApplyStep step = DropCapabilities(spec); step != ApplyStep{}) return Fail(ch, step);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Fail(ch, ApplyStep::kNoNewPrivs);
  if (spec.has_seccomp) {
    int result = InstallSeccompProgram(spec.seccomp);
    if (result < 0) {
      errno = -result;
      return Fail(ch, ApplyStep::kSeccomp);
    }
    if (spec.seccomp.use_listener) {
      bool sent = SendFd(ch.control_fd, result);
      close(result);
      if (!sent) return Fail(ch, ApplyStep::kSendListener);
    }
  }
  return true;
}

void ExecCommand(const SandboxSpec& spec, const ChildChannels& channels) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  // execvp's rule: a missing candidate moves on; any other error is the one to report.
  int error = ENOENT;
  for (const char* path : spec.exec_candidates) {
    execve(path, spec.argv.data(), spec.envp.data());
    if (errno != ENOENT && errno != ENOTDIR) error = errno;
  }
  ReportFailure(channels.error_fd, ApplyStep::kExec, error);
}

void RunSandboxChild(const SandboxSpec& spec, ChildChannels channels, const int* close_first,
                     int close_count) {
  ResetSignals();
  WipeLauncherStrings(spec);
  for (int i = 0; i < close_count; ++i) close(close_first[i]);
  char go = 0;
  if (read(channels.sync_fd, &go, 1) != 1) {
    errno = ESRCH;
    ReportFailure(channels.error_fd, ApplyStep::kSyncWait, errno);
    _exit(kSetupFailedExit);
  }
  if (!ApplySpec(spec, &channels, false)) _exit(kSetupFailedExit);

  // A raw clone, not fork(): glibc's fork takes the allocator's locks, which another thread of
  // the launcher may have held at the first clone.
  long command = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
  if (command < 0) {
    ReportFailure(channels.error_fd, ApplyStep::kFork, errno);
    _exit(kSetupFailedExit);
  }
  if (command == 0) {
    if (!ReportPid(channels.control_fd)) {
      ReportFailure(channels.error_fd, ApplyStep::kReportPid, errno);
      _exit(kSetupFailedExit);
    }
    ExecCommand(spec, channels);
    _exit(kSetupFailedExit);
  }
  RunInit(static_cast<pid_t>(command), channels.status_fd);
}

Status FailureToStatus(const SandboxSpec& spec, const ApplyFailure& failure) {
  auto step = static_cast<ApplyStep>(failure.step);
  std::string what = ApplyStepName(step);
  auto detail = static_cast<size_t>(failure.detail);
  if (step == ApplyStep::kMount && detail < spec.mounts.size()) {
    what = spec.mounts[detail].label;
  } else if (step == ApplyStep::kRlimit && detail < spec.rlimits.size()) {
    what = fmt::format("setrlimit {}", spec.rlimits[detail].label);
  } else if (step == ApplyStep::kChdir) {
    what = fmt::format("chdir `{}`", spec.workdir);
  } else if (step == ApplyStep::kExec && !spec.argv.empty() && spec.argv[0] != nullptr) {
    what = fmt::format("execve `{}`", spec.argv[0]);
  }
  return Status::FromErrno(failure.error, what);
}

}  // namespace corral
