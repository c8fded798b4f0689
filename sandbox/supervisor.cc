#include "sandbox/supervisor.h"

#include <linux/seccomp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <future>

#include "sandbox/seccomp.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace corral {
namespace {

const Logger kLog("sandbox");

enum WatchKind : uint64_t { kWake = 1, kCpuTick, kExit, kStdout, kStderr, kListener, kWall };
constexpr int kKindBits = 4;
constexpr auto kCpuPeriod = std::chrono::milliseconds(100);
constexpr int kReadsPerEvent = 16;  // then yield to other sandboxes; epoll fires again

uint64_t Key(uint64_t id, WatchKind kind) { return (id << kKindBits) | kind; }

itimerspec Period(std::chrono::milliseconds every) {
  itimerspec spec = {};
  spec.it_value.tv_sec = every.count() / 1000;
  spec.it_value.tv_nsec = (every.count() % 1000) * 1000000;
  spec.it_interval = spec.it_value;
  return spec;
}

struct ExitInfo {
  int status = 0;          // raw wait status of the command, when the init reported it
  bool have_status = false;
  int init_code = 0;       // CLD_EXITED, CLD_KILLED, ... of the init
  int init_value = 0;
};

// The precedence of outcomes: what the launcher did itself, then what the cgroup saw, then
// what the wait status says. The process's own exit code or output never decides a reason.
Outcome DecideOutcome(const SandboxState& state, const ExitInfo& exit,
                      const CgroupEvents& events, const ResourceUsage& usage,
                      std::optional<OutcomeReason> kill_reason, long seccomp_nr) {
  Outcome outcome;
  if (exit.have_status) {
    if (WIFEXITED(exit.status)) outcome.exit_code = WEXITSTATUS(exit.status);
    if (WIFSIGNALED(exit.status)) outcome.signal = WTERMSIG(exit.status);
  } else if (exit.init_code == CLD_EXITED) {
    outcome.exit_code = exit.init_value;
  } else {
    outcome.signal = exit.init_value;
  }
  bool signaled = outcome.signal != 0;
  bool cpu_limited = state.limits.cpu_time.count() > 0;
  auto cpu_limit = std::chrono::duration_cast<std::chrono::microseconds>(state.limits.cpu_time);

  if (kill_reason) {
    outcome.reason = *kill_reason;
  } else if (events.oom_kills > 0) {
    outcome.reason = OutcomeReason::kOomKilled;
  } else if (events.pids_max_hits > 0 &&
             ((signaled && outcome.signal == SIGKILL) || (!signaled && outcome.exit_code != 0))) {
    outcome.reason = OutcomeReason::kPidsLimit;
  } else if (cpu_limited && signaled &&
             (outcome.signal == SIGXCPU ||
              (outcome.signal == SIGKILL &&
               std::chrono::microseconds(usage.cpu_usec) >= cpu_limit))) {
    outcome.reason = OutcomeReason::kCpuTimeout;
  } else if (signaled && outcome.signal == SIGSYS) {
    outcome.reason = OutcomeReason::kSeccompViolation;  // bad architecture: no number known
  } else {
    outcome.reason = signaled ? OutcomeReason::kSignaled : OutcomeReason::kExited;
  }
  if (outcome.reason == OutcomeReason::kSeccompViolation && seccomp_nr >= 0) {
    outcome.seccomp_syscall = seccomp_nr;
    outcome.seccomp_syscall_name = SyscallName(seccomp_nr);
  }
  outcome.memory_peak_bytes = usage.memory_peak_bytes;
  outcome.pids_peak = usage.pids_peak;
  outcome.cpu_time = std::chrono::microseconds(usage.cpu_usec);
  outcome.wall_time = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - state.started);
  outcome.output_bytes = state.output_bytes;
  outcome.output_truncated = state.output_truncated;
  return outcome;
}

}  // namespace

int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }
int PidfdKill(int pidfd) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0));
}

Result<std::unique_ptr<Supervisor>> Supervisor::Start() {
  std::unique_ptr<Supervisor> supervisor(new Supervisor());
  supervisor->epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!supervisor->epoll_) return ErrnoStatus("epoll_create1");
  supervisor->wake_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!supervisor->wake_) return ErrnoStatus("eventfd");
  supervisor->cpu_timer_.reset(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!supervisor->cpu_timer_) return ErrnoStatus("timerfd_create");
  supervisor->EpollAdd(supervisor->wake_.get(), kWake);
  supervisor->EpollAdd(supervisor->cpu_timer_.get(), kCpuTick);
  supervisor->thread_ = std::thread([s = supervisor.get()] { s->Loop(); });
  return supervisor;
}

Supervisor::~Supervisor() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  uint64_t one = 1;
  ssize_t ignored = write(wake_.get(), &one, sizeof one);
  (void)ignored;
  if (thread_.joinable()) thread_.join();
}

void Supervisor::EpollAdd(int fd, uint64_t key) {
  epoll_event event = {};
  event.events = EPOLLIN;
  event.data.u64 = key;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
    kLog.Error(kNoSession, "epoll_ctl add fd {}: {}", fd, strerror(errno));
  }
}

void Supervisor::Post(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    tasks_.push_back(std::move(task));
  }
  uint64_t one = 1;
  ssize_t ignored = write(wake_.get(), &one, sizeof one);
  (void)ignored;
}

void Supervisor::RunOnThread(const std::function<void()>& task) {
  if (std::this_thread::get_id() == thread_.get_id()) {
    task();
    return;
  }
  std::promise<void> done;
  Post([&] {
    task();
    done.set_value();
  });
  done.get_future().wait();
}

void Supervisor::Watch(std::shared_ptr<SandboxState> state) {
  Post([this, state = std::move(state)] { Add(state); });
}

void Supervisor::Kill(const std::shared_ptr<SandboxState>& state, OutcomeReason reason) {
  {
    std::lock_guard lock(state->mu);
    if (state->done) return;
    if (!state->kill_reason) state->kill_reason = reason;
  }
  // SIGKILL to the init of a pid namespace kills every process in it, however it forked or
  // detached. Without a pid namespace the cgroup is the only complete list.
  if (state->pidfd) PidfdKill(state->pidfd.get());
  if (!state->pid_namespace) {
    Post([state] {
      std::lock_guard lock(state->cgroup_mu);
      if (state->cgroup) (void)state->cgroup->KillAll();
    });
  }
}

void Supervisor::Add(const std::shared_ptr<SandboxState>& state) {
  uint64_t id = next_id_++;
  watched_[id] = state;
  EpollAdd(state->pidfd.get(), Key(id, kExit));
  if (state->stdout_fd) EpollAdd(state->stdout_fd.get(), Key(id, kStdout));
  if (state->stderr_fd) EpollAdd(state->stderr_fd.get(), Key(id, kStderr));
  if (state->listener_fd) EpollAdd(state->listener_fd.get(), Key(id, kListener));
  if (state->limits.wall_time.count() > 0) {
    state->wall_timer.reset(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    itimerspec once = Period(state->limits.wall_time);
    once.it_interval = {};
    if (!state->wall_timer || timerfd_settime(state->wall_timer.get(), 0, &once, nullptr) != 0) {
      kLog.Error(state->log_context, "wall-time timer: {}; killing the sandbox", strerror(errno));
      Kill(state, OutcomeReason::kWallTimeout);
    } else {
      EpollAdd(state->wall_timer.get(), Key(id, kWall));
    }
  }
  UpdateCpuTimer();
}

void Supervisor::Remove(uint64_t id, SandboxState& state) {
  for (UniqueFd* fd : {&state.pidfd, &state.stdout_fd, &state.stderr_fd, &state.listener_fd,
                       &state.wall_timer}) {
    if (*fd) epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd->get(), nullptr);
  }
  state.stdout_fd.reset();
  state.stderr_fd.reset();
  state.listener_fd.reset();
  state.wall_timer.reset();
  watched_.erase(id);
  UpdateCpuTimer();
}

void Supervisor::UpdateCpuTimer() {
  bool needed = false;
  for (const auto& [id, state] : watched_) needed = needed || state->limits.cpu_time.count() > 0;
  itimerspec spec = needed ? Period(kCpuPeriod) : itimerspec{};
  timerfd_settime(cpu_timer_.get(), 0, &spec, nullptr);
}

void Supervisor::Loop() {
  epoll_event events[64];
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopping_ && tasks_.empty() && watched_.empty()) return;
    }
    int n = epoll_wait(epoll_.get(), events, 64, -1);
    if (n < 0 && errno != EINTR) {
      kLog.Error(kNoSession, "epoll_wait: {}", strerror(errno));
      return;
    }
    for (int i = 0; i < n; ++i) Dispatch(events[i].data.u64);
  }
}

void Supervisor::RunTasks() {
  uint64_t count;
  ssize_t ignored = read(wake_.get(), &count, sizeof count);
  (void)ignored;
  bool stopping = false;
  for (;;) {
    std::function<void()> task;
    {
      std::lock_guard lock(mu_);
      stopping = stopping_;
      if (tasks_.empty()) break;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
  // Stopping: nothing may outlive the launcher; every exit is still handled as usual.
  if (stopping) {
    for (const auto& [id, state] : watched_) Kill(state, OutcomeReason::kKilledByRequest);
  }
}

void Supervisor::Dispatch(uint64_t key) {
  auto kind = static_cast<WatchKind>(key & ((1u << kKindBits) - 1));
  if (kind == kWake) return RunTasks();
  if (kind == kCpuTick) return CheckCpu();
  uint64_t id = key >> kKindBits;
  auto it = watched_.find(id);
  if (it == watched_.end()) return;  // already handled earlier in this batch
  std::shared_ptr<SandboxState> state = it->second;
  switch (kind) {
    case kExit:
      return HandleExit(id, state);
    case kStdout:
      return DrainOutput(state, 1, &state->stdout_fd, false);
    case kStderr:
      return DrainOutput(state, 2, &state->stderr_fd, false);
    case kListener:
      return HandleNotification(state);
    case kWall: {
      uint64_t expirations;
      ssize_t ignored = read(state->wall_timer.get(), &expirations, sizeof expirations);
      (void)ignored;
      return Kill(state, OutcomeReason::kWallTimeout);
    }
    default:
      return;
  }
}

// Keeps at most limits.output bytes in all and counts the rest. The pipe is always drained,
// so a chatty process never blocks on a full pipe while the launcher waits for it to exit.
void Supervisor::DrainOutput(const std::shared_ptr<SandboxState>& state, int stream,
                             UniqueFd* fd, bool until_eof) {
  static thread_local char buffer[64 * 1024];
  for (int reads = 0; *fd && (until_eof || reads < kReadsPerEvent); ++reads) {
    ssize_t n = read(fd->get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd->get(), nullptr);
      fd->reset();
      return;
    }
    state->output_bytes += static_cast<uint64_t>(n);
    uint64_t room = state->limits.output - std::min(state->limits.output, state->output_delivered);
    uint64_t take = std::min<uint64_t>(room, static_cast<uint64_t>(n));
    if (take > 0 && state->output_sink) state->output_sink(stream, std::string_view(buffer, take));
    state->output_delivered += take;
    if (take < static_cast<uint64_t>(n)) {
      state->output_truncated = true;
      if (state->limits.kill_on_output_limit) Kill(state, OutcomeReason::kOutputLimit);
    }
  }
}

void Supervisor::HandleNotification(const std::shared_ptr<SandboxState>& state) {
  seccomp_notif notification;
  memset(&notification, 0, sizeof notification);
  if (ioctl(state->listener_fd.get(), SECCOMP_IOCTL_NOTIF_RECV, &notification) != 0) {
    if (errno == ENOENT || errno == EINTR) return;  // the caller died meanwhile
    // Hang-up: no process uses the filter any more.
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, state->listener_fd.get(), nullptr);
    state->listener_fd.reset();
    return;
  }
  {
    std::lock_guard lock(state->mu);
    if (state->seccomp_syscall < 0) state->seccomp_syscall = notification.data.nr;
  }
  Kill(state, OutcomeReason::kSeccompViolation);
}

void Supervisor::CheckCpu() {
  uint64_t expirations;
  ssize_t ignored = read(cpu_timer_.get(), &expirations, sizeof expirations);
  (void)ignored;
  for (const auto& [id, state] : watched_) {
    if (state->limits.cpu_time.count() <= 0) continue;
    Result<ResourceUsage> usage = [&] {
      std::lock_guard lock(state->cgroup_mu);
      return state->cgroup->Usage();
    }();
    auto limit = std::chrono::duration_cast<std::chrono::microseconds>(state->limits.cpu_time);
    if (usage.ok() && std::chrono::microseconds(usage->cpu_usec) >= limit) {
      Kill(state, OutcomeReason::kCpuTimeout);
    }
  }
}

void Supervisor::HandleExit(uint64_t id, const std::shared_ptr<SandboxState>& state) {
  siginfo_t info = {};
  if (waitid(static_cast<idtype_t>(P_PIDFD), state->pidfd.get(), &info, WEXITED) != 0) {
    kLog.Error(state->log_context, "waitid on the sandbox init: {}", strerror(errno));
  }
  ExitInfo exit;
  exit.init_code = info.si_code;
  exit.init_value = info.si_status;
  exit.have_status = read(state->status_fd.get(), &exit.status, sizeof exit.status) ==
                     static_cast<ssize_t>(sizeof exit.status);
  DrainOutput(state, 1, &state->stdout_fd, true);
  DrainOutput(state, 2, &state->stderr_fd, true);

  CgroupEvents events;
  ResourceUsage usage;
  {
    std::lock_guard lock(state->cgroup_mu);
    if (auto result = state->cgroup->Events(); result.ok()) events = *result;
    if (auto result = state->cgroup->Usage(); result.ok()) usage = *result;
    if (Status status = state->cgroup->KillAll(); !status.ok()) {
      kLog.Warn(state->log_context, "kill what is left: {}", status.ToString());
    }
    if (Status status = state->cgroup->Remove(); !status.ok()) {
      kLog.Error(state->log_context, "remove cgroup: {}", status.ToString());
    }
  }
  state->lease.Release();
  Remove(id, *state);

  Outcome outcome;
  {
    std::lock_guard lock(state->mu);
    outcome = DecideOutcome(*state, exit, events, usage, state->kill_reason,
                            state->seccomp_syscall);
    state->outcome = outcome;
    state->last_usage = usage;
    state->done = true;
  }
  state->done_cv.notify_all();
  kLog.Info(state->log_context, "sandbox ended: {} (status {})", OutcomeReasonName(outcome.reason),
            outcome.ShellStatus());
  if (state->on_exit) state->on_exit(outcome);
}

}  // namespace corral
