// The launcher's half of a launch: validate, lease a host id, prepare the spec, create the
// cgroup, clone, write the id maps, move the child into its cgroup, say go, wait for exec, and
// hand the sandbox to the supervisor. The child's half is sandbox/apply.cc.
#include "sandbox/launcher.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include <fmt/format.h>

#include "sandbox/log.h"
#include "sandbox/spec.h"
#include "sandbox/supervisor.h"
#include "sandbox/unique_fd.h"
#include "sandbox/user_ns.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace corral {
namespace {

const Logger kLog("sandbox");
constexpr int kSetupTimeoutMs = 30000;

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Result<Pipe> MakePipe(int flags = 0) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | flags) != 0) return ErrnoStatus("pipe2");
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// Names become cgroup directories and log fields: a strict pattern keeps "..", "/" and
// control characters out of both.
Status ValidateRequest(const LaunchRequest& request) {
  const std::string& name = request.name;
  auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
  bool good = !name.empty() && name.size() <= 64 && alnum(name[0]);
  for (char c : name) good = good && (alnum(c) || c == '-' || c == '_' || c == '.');
  if (!good) {
    return Status::InvalidArgument(fmt::format(
        "sandbox name `{}`: must be 1-64 of [A-Za-z0-9._-], starting with a letter or digit",
        name));
  }
  if (request.argv.empty()) return Status::InvalidArgument("argv is empty");
  return Status::Ok();
}

bool Has(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

// Every directory on the way must be searchable by the sandbox's unprivileged host uid, which
// mounts its root there: its capabilities do not cover host-owned inodes.
Status MakeRootDir(const std::string& path) {
  std::string partial;
  size_t start = 1;
  while (start <= path.size()) {
    size_t end = std::min(path.find('/', start), path.size());
    partial = path.substr(0, end);
    if (mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoStatus("mkdir `{}`", partial);
    }
    start = end + 1;
  }
  if (chmod(path.c_str(), 0755) != 0) return ErrnoStatus("chmod `{}`", path);
  return Status::Ok();
}

// The messages the child sends on the control socket: the seccomp listener (from the init,
// SCM_RIGHTS) and the command's pid (from the command, SCM_CREDENTIALS, in our pid namespace).
struct ChildReport {
  UniqueFd listener;
  pid_t command_pid = -1;
};

ChildReport ReceiveReports(int control_fd) {
  ChildReport report;
  for (int i = 0; i < 2 && report.command_pid < 0; ++i) {
    char tag = 0;
    iovec iov = {&tag, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int))];
    msghdr message = {};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    if (recvmsg(control_fd, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) <= 0) break;
    for (cmsghdr* h = CMSG_FIRSTHDR(&message); h != nullptr; h = CMSG_NXTHDR(&message, h)) {
      if (h->cmsg_level != SOL_SOCKET) continue;
      if (h->cmsg_type == SCM_RIGHTS && tag == 'l') {
        int fd;
        memcpy(&fd, CMSG_DATA(h), sizeof fd);
        report.listener.reset(fd);
      } else if (h->cmsg_type == SCM_CREDENTIALS && tag == 'p') {
        ucred credentials;
        memcpy(&credentials, CMSG_DATA(h), sizeof credentials);
        report.command_pid = credentials.pid;
      }
    }
  }
  return report;
}

// Waits for the error pipe: EOF means every copy of its write end closed, i.e. the command
// exec'd (close-on-exec) and the init closed its own; a record means a step failed.
Result<std::optional<ApplyFailure>> WaitForExec(int error_fd) {
  ApplyFailure failure = {};
  size_t got = 0;
  while (got < sizeof failure) {
    pollfd pfd = {error_fd, POLLIN, 0};
    int n = poll(&pfd, 1, kSetupTimeoutMs);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return Status::DeadlineExceeded("sandbox setup did not finish in 30 s");
    ssize_t r = read(error_fd, reinterpret_cast<char*>(&failure) + got, sizeof failure - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoStatus("read the error pipe");
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  if (got == sizeof failure) return std::optional<ApplyFailure>(failure);
  return std::optional<ApplyFailure>();
}

// The launcher's side of the child's channels (see ChildChannels), and the output pipes.
struct LaunchChannels {
  Pipe sync;
  Pipe error;
  Pipe status;
  UniqueFd control[2];  // [0]: ours, with SO_PASSCRED; [1]: the child's
  Pipe out;
  Pipe err;
};

Result<LaunchChannels> MakeChannels(bool with_output) {
  LaunchChannels ch;
  CORRAL_ASSIGN_OR_RETURN(ch.sync, MakePipe());
  CORRAL_ASSIGN_OR_RETURN(ch.error, MakePipe());
  CORRAL_ASSIGN_OR_RETURN(ch.status, MakePipe(O_NONBLOCK));
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return ErrnoStatus("socketpair");
  }
  ch.control[0].reset(pair[0]);
  ch.control[1].reset(pair[1]);
  int on = 1;
  if (setsockopt(pair[0], SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) {
    return ErrnoStatus("setsockopt SO_PASSCRED");
  }
  if (with_output) {
    CORRAL_ASSIGN_OR_RETURN(ch.out, MakePipe());
    CORRAL_ASSIGN_OR_RETURN(ch.err, MakePipe());
    for (Pipe* p : {&ch.out, &ch.err}) {
      if (fcntl(p->read.get(), F_SETFL, O_NONBLOCK) != 0) return ErrnoStatus("fcntl O_NONBLOCK");
    }
  }
  return ch;
}

// With an output sink, the child's 1 and 2 are our pipes, whatever the request passed there.
void PassOutputPipes(const LaunchChannels& ch, SandboxSpec* spec) {
  std::erase_if(spec->fds, [](const auto& pass) { return pass.second == 1 || pass.second == 2; });
  spec->fds.emplace_back(ch.out.write.get(), 1);
  spec->fds.emplace_back(ch.err.write.get(), 2);
}

// A launch that failed after the clone: nothing of it may stay behind.
void AbortLaunch(SandboxState& state) {
  if (state.pidfd) {
    PidfdKill(state.pidfd.get());
    siginfo_t info;
    waitid(static_cast<idtype_t>(P_PIDFD), state.pidfd.get(), &info, WEXITED);
  }
  if (Status removed = state.cgroup->Remove(); !removed.ok()) {
    kLog.Error(state.log_context, "remove cgroup after failed launch: {}", removed.ToString());
  }
}

class SandboxImpl : public Sandbox {
 public:
  SandboxImpl(std::shared_ptr<SandboxState> state, Supervisor* supervisor)
      : state_(std::move(state)), supervisor_(supervisor) {}
  ~SandboxImpl() override {
    if (!Exited()) Kill(OutcomeReason::kKilledByRequest);
    Wait();
  }

  const std::string& name() const override { return state_->name; }
  pid_t pid() const override { return state_->command_pid; }
  uint32_t host_uid() const override { return state_->host_uid; }
  const std::vector<std::string>& cgroup_paths() const override {
    return state_->cgroup_paths;
  }
  void Kill(OutcomeReason reason) override { supervisor_->Kill(state_, reason); }

  Outcome Wait() override {
    std::unique_lock lock(state_->mu);
    state_->done_cv.wait(lock, [&] { return state_->done; });
    return state_->outcome;
  }
  std::optional<Outcome> WaitFor(std::chrono::milliseconds timeout) override {
    std::unique_lock lock(state_->mu);
    if (!state_->done_cv.wait_for(lock, timeout, [&] { return state_->done; })) {
      return std::nullopt;
    }
    return state_->outcome;
  }
  bool Exited() const override {
    std::lock_guard lock(state_->mu);
    return state_->done;
  }
  ResourceUsage Usage() const override {
    {
      std::lock_guard lock(state_->mu);
      if (state_->done) return state_->last_usage;
    }
    std::lock_guard lock(state_->cgroup_mu);
    if (!state_->cgroup) return {};
    Result<ResourceUsage> usage = state_->cgroup->Usage();
    return usage.ok() ? *usage : ResourceUsage{};
  }

 private:
  std::shared_ptr<SandboxState> state_;
  Supervisor* supervisor_;
};

class LauncherImpl : public Launcher {
 public:
  LauncherImpl(LauncherOptions options, std::unique_ptr<CgroupManager> cgroups,
               std::unique_ptr<Supervisor> supervisor)
      : options_(std::move(options)),
        cgroups_(std::move(cgroups)),
        supervisor_(std::move(supervisor)),
        host_(ProbeHost(cgroups_.get())) {}

  Result<int> CleanupStale() override { return cgroups_->RemoveStale(); }
  Result<std::unique_ptr<Sandbox>> Launch(const Policy& policy, LaunchRequest request) override {
    LogContext context{request.name, ""};
    Result<std::unique_ptr<Sandbox>> result = DoLaunch(policy, std::move(request));
    if (!result.ok()) return result.status().Context(fmt::format("launch `{}`", context.session));
    return result;
  }
  const HostSupport& host() const override { return host_; }
  CgroupManager& cgroups() override { return *cgroups_; }

 private:
  Result<std::unique_ptr<Sandbox>> DoLaunch(const Policy& policy, LaunchRequest request);
  CgroupLimits LimitsFor(const Policy& policy) const;
  Status StartChild(const SandboxSpec& spec, const Policy& policy, SandboxState* state,
                    LaunchChannels* channels);

  LauncherOptions options_;
  std::unique_ptr<CgroupManager> cgroups_;
  std::unique_ptr<Supervisor> supervisor_;
  HostSupport host_;
};

// A limit whose controller is missing is only dropped when the policy lists it as optional;
// MissingFor has refused the launch otherwise.
CgroupLimits LauncherImpl::LimitsFor(const Policy& policy) const {
  const auto& controllers = host_.cgroup_controllers;
  CgroupLimits limits;
  if (Has(controllers, "memory")) limits.memory_bytes = policy.limits.memory;
  if (Has(controllers, "pids")) limits.pids = policy.limits.pids;
  if (Has(controllers, "cpu")) limits.cpus = policy.limits.cpus;
  return limits;
}

Result<std::unique_ptr<Sandbox>> LauncherImpl::DoLaunch(const Policy& policy,
                                                         LaunchRequest request) {
  CORRAL_TRY(ValidateRequest(request));
  if (auto missing = host_.MissingFor(policy); !missing.empty()) {
    return Status::Unsupported(fmt::format(
        "policy `{}` needs what this host lacks: {} (list them under `optional` to run without)",
        policy.name, fmt::join(missing, ", ")));
  }
  CORRAL_ASSIGN_OR_RETURN(IdLease lease,
                          IdLease::Acquire(options_.id_lock_dir, policy.user.host_id_base,
                                           policy.user.host_id_count));
  PrepareOptions prepare{options_.root_dir, lease.id(), host_.seccomp};
  CORRAL_ASSIGN_OR_RETURN(std::unique_ptr<SandboxSpec> spec,
                          PrepareSpec(policy, request, prepare));

  CORRAL_ASSIGN_OR_RETURN(LaunchChannels channels, MakeChannels(bool(request.output_sink)));
  if (request.output_sink) PassOutputPipes(channels, spec.get());

  auto state = std::make_shared<SandboxState>();
  state->name = request.name;
  state->log_context = LogContext{request.name, ""};
  state->host_uid = lease.id();
  state->pid_namespace = policy.namespaces.pid;
  state->limits = policy.limits;
  state->output_sink = std::move(request.output_sink);
  state->on_exit = std::move(request.on_exit);
  CORRAL_ASSIGN_OR_RETURN(state->cgroup, cgroups_->Create(request.name, LimitsFor(policy)));
  state->cgroup_paths = state->cgroup->Paths();

  if (Status started = StartChild(*spec, policy, state.get(), &channels); !started.ok()) {
    AbortLaunch(*state);
    return started;
  }
  state->lease = std::move(lease);
  kLog.Info(state->log_context, "sandbox started: pid {} host uid {}", state->command_pid,
            state->host_uid);
  supervisor_->Watch(state);
  return std::unique_ptr<Sandbox>(new SandboxImpl(state, supervisor_.get()));
}

Status LauncherImpl::StartChild(const SandboxSpec& spec, const Policy& policy,
                                SandboxState* state, LaunchChannels* ch) {
  Pipe *sync = &ch->sync, *error = &ch->error, *status = &ch->status, *out = &ch->out,
       *err = &ch->err;
  UniqueFd* control = ch->control;
  ChildChannels channels{sync->read.get(), error->write.get(), control[1].get(),
                         status->write.get()};
  // The child closes the launcher's ends of its own channels, or it would never see EOF.
  int close_first[] = {sync->write.get(), error->read.get(), control[0].get(),
                       status->read.get(), out->read.get(), err->read.get()};
  long pid = -1;
  int clone_errno = 0;
  state->started = std::chrono::steady_clock::now();
  supervisor_->RunOnThread([&] {
    pid = syscall(SYS_clone, spec.clone_flags | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) RunSandboxChild(spec, channels, close_first, std::size(close_first));
    clone_errno = errno;
  });
  if (pid < 0) return Status::FromErrno(clone_errno, "clone");
  state->init_pid = static_cast<pid_t>(pid);
  state->pidfd.reset(PidfdOpen(state->init_pid));
  if (!state->pidfd) return ErrnoStatus("pidfd_open");
  for (UniqueFd* fd : {&sync->read, &error->write, &control[1], &status->write, &out->write,
                       &err->write}) {
    fd->reset();
  }

  if (policy.namespaces.user) {
    CORRAL_TRY(WriteIdMaps(state->init_pid, policy.user.uid, policy.user.gid, state->host_uid));
  }
  CORRAL_TRY_CTX(state->cgroup->AddProcess(state->init_pid), "move into cgroup");
  char go = 'g';
  if (write(sync->write.get(), &go, 1) != 1) return ErrnoStatus("write the go byte");

  CORRAL_ASSIGN_OR_RETURN(std::optional<ApplyFailure> failure, WaitForExec(error->read.get()));
  if (failure) return FailureToStatus(spec, *failure);
  ChildReport report = ReceiveReports(control[0].get());
  if (report.command_pid < 0) {
    return Status::Internal("the sandbox died during setup before its command started");
  }
  if (spec.has_seccomp && spec.seccomp.use_listener && !report.listener) {
    return Status::Internal("the sandbox sent no seccomp listener");
  }
  state->command_pid = report.command_pid;
  state->listener_fd = std::move(report.listener);
  state->status_fd = std::move(status->read);
  state->sync_fd = std::move(sync->write);
  state->stdout_fd = std::move(out->read);
  state->stderr_fd = std::move(err->read);
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Launcher>> Launcher::Create(const LauncherOptions& options) {
  CORRAL_TRY_CTX(MakeRootDir(options.root_dir), "create the sandbox root directory");
  CORRAL_ASSIGN_OR_RETURN(std::unique_ptr<CgroupManager> cgroups,
                          CgroupManager::Open(options.cgroups));
  CORRAL_ASSIGN_OR_RETURN(std::unique_ptr<Supervisor> supervisor, Supervisor::Start());
  return std::unique_ptr<Launcher>(
      new LauncherImpl(options, std::move(cgroups), std::move(supervisor)));
}

}  // namespace corral
