// The supervisor: one thread per Launcher that watches every live sandbox with epoll.
//
// Per sandbox it watches a pidfd of the sandbox's init (exit), the output pipes (drained into
// the request's sink, bounded by limits.output), the seccomp listener (kill policies), and a
// timerfd for the wall-time limit; one periodic timerfd checks cgroup CPU usage while any
// sandbox has a CPU-time limit. When an init exits it decides the outcome from the launcher's
// own bookkeeping, cleans up (cgroup killed and removed, id lease released) and wakes waiters.
//
// The supervisor thread is also where sandboxes are cloned: PR_SET_PDEATHSIG fires when the
// *thread* that created the child exits, so cloning on a caller's short-lived thread would kill
// the sandbox with that thread. The supervisor lives as long as the Launcher.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sandbox/cgroup.h"
#include "sandbox/log.h"
#include "sandbox/outcome.h"
#include "sandbox/policy.h"
#include "sandbox/status.h"
#include "sandbox/unique_fd.h"
#include "sandbox/user_ns.h"

namespace corral {

// pidfd calls as raw system calls: glibc 2.36's <sys/pidfd.h> lacks C++ linkage.
int PidfdOpen(pid_t pid);
int PidfdKill(int pidfd);

// One live sandbox as the supervisor sees it. Fields above `mu` are set before Watch and not
// changed after, except where noted.
struct SandboxState {
  std::string name;
  LogContext log_context;
  pid_t init_pid = -1;
  pid_t command_pid = -1;
  uint32_t host_uid = 0;
  std::vector<std::string> cgroup_paths;
  bool pid_namespace = true;
  LimitsPolicy limits;
  std::chrono::steady_clock::time_point started;
  UniqueFd pidfd;        // of the init; kept open until the state goes, so a signal sent
                         // through it can never reach a recycled pid
  UniqueFd status_fd;    // read end: the command's raw wait status, written by the init
  UniqueFd sync_fd;      // write end of the sync pipe: the child sees EOF if we die early
  UniqueFd stdout_fd;    // read ends when an output sink is set (supervisor thread only)
  UniqueFd stderr_fd;
  UniqueFd listener_fd;  // seccomp user-notification listener (kill policies)
  UniqueFd wall_timer;
  IdLease lease;         // released on exit (supervisor thread)
  std::function<void(int, std::string_view)> output_sink;
  std::function<void(const Outcome&)> on_exit;

  std::mutex cgroup_mu;  // guards cgroup (a Cgroup is not shared between threads)
  std::unique_ptr<Cgroup> cgroup;

  // Supervisor thread only.
  uint64_t output_delivered = 0;
  uint64_t output_bytes = 0;
  bool output_truncated = false;

  mutable std::mutex mu;  // guards the fields below
  std::condition_variable done_cv;
  std::optional<OutcomeReason> kill_reason;  // first recorded wins
  long seccomp_syscall = -1;
  bool done = false;
  Outcome outcome;
  ResourceUsage last_usage;
};

class Supervisor {
 public:
  static Result<std::unique_ptr<Supervisor>> Start();
  // Kills every sandbox still watched, waits for their exits and stops the thread.
  ~Supervisor();

  // Runs `task` on the supervisor thread and returns when it has run.
  void RunOnThread(const std::function<void()>& task);
  // Starts watching `state` (its pidfd must be set). Thread-safe.
  void Watch(std::shared_ptr<SandboxState> state);
  // Records `reason` (first wins) and kills every process of the sandbox. Does not block.
  // Thread-safe.
  void Kill(const std::shared_ptr<SandboxState>& state, OutcomeReason reason);

 private:
  Supervisor() = default;
  void Loop();
  void Post(std::function<void()> task);
  void RunTasks();
  void Add(const std::shared_ptr<SandboxState>& state);
  void Remove(uint64_t id, SandboxState& state);
  void Dispatch(uint64_t key);
  void DrainOutput(const std::shared_ptr<SandboxState>& state, int stream, UniqueFd* fd,
                   bool until_eof);
  void HandleNotification(const std::shared_ptr<SandboxState>& state);
  void HandleExit(uint64_t id, const std::shared_ptr<SandboxState>& state);
  void CheckCpu();
  void UpdateCpuTimer();
  void EpollAdd(int fd, uint64_t key);

  UniqueFd epoll_;
  UniqueFd wake_;       // eventfd: tasks posted
  UniqueFd cpu_timer_;  // periodic while any sandbox has a CPU-time limit
  std::thread thread_;

  std::mutex mu_;  // guards tasks_, stopping_
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;

  // Supervisor thread only.
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::shared_ptr<SandboxState>> watched_;
};

}  // namespace corral
