#include "manager/sandbox_worker.h"

#include <atomic>
#include <filesystem>
#include <optional>

#include <fmt/ranges.h>

#include "manager/http_errors.h"
#include "manager/worker_channel.h"
#include "manager/worker_output.h"

namespace corral {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const Logger kLog("worker");

// Inside every sandbox: the worker's code, bound read-only, and its channel descriptor.
constexpr char kWorkerMount[] = "/opt/corral";
constexpr int kChannelFd = 3;
// How long a call whose channel reported the worker gone waits for the launcher's outcome, so
// the error names the precise reason (oom_killed rather than worker_exited).
constexpr std::chrono::milliseconds kOutcomeGrace{3000};

// What the channel's request handler needs of its worker: who the call in flight is for and
// its deadline (a model request outside a call is refused: it would have no deadline and no
// session to charge), and the channel to answer on. Shared with the gateway's reply callbacks,
// which may outlive the worker: the worker clears `channel` before the channel is destroyed,
// and replies after that are dropped.
struct LmPortState {
  std::mutex mutex;  // guards every member
  WorkerChannel* channel = nullptr;
  std::optional<LmCaller> caller;  // set while a call runs

  void Begin(const CallerIdentity& identity, Clock::time_point deadline) {
    std::lock_guard<std::mutex> lock(mutex);
    caller = LmCaller{identity.session_id, identity.tenant, deadline, identity.context};
  }
  void End() {
    std::lock_guard<std::mutex> lock(mutex);
    caller.reset();
  }
  std::optional<LmCaller> Current() {
    std::lock_guard<std::mutex> lock(mutex);
    return caller;
  }

  void Send(const nlohmann::json& frame) {
    std::lock_guard<std::mutex> lock(mutex);
    if (channel == nullptr) return;
    Status sent = channel->Send(frame);
    // A reply too large for a frame was never written: the worker still waits, so it gets an
    // error instead of waiting out its deadline. Any other failure means the worker is gone.
    if (!sent.ok() && frame.contains("result")) {
      Status too_large = Status::Unavailable(fmt::format("the model's reply cannot be sent to "
                                                         "the worker: {}",
                                                         sent.message()))
                             .WithReason(std::string(kLmBadResponse));
      sent = channel->Send(LmErrorFrame(frame["id"], too_large));
    }
  }
};

// Shared between a worker and the launcher's on_exit callback, which may outlive it.
struct ExitState {
  std::mutex mutex;  // guards every member
  bool stopped = false;
  FailureCallback on_failure;
};

class LaunchedWorker : public SandboxWorker {
 public:
  LaunchedWorker(LogContext context, std::unique_ptr<Sandbox> sandbox,
                 std::unique_ptr<WorkerChannel> channel, std::shared_ptr<ExitState> exit_state,
                 WorkerLimits limits, std::shared_ptr<LmPortState> lm_port,
                 MemoryBudget::Lease memory)
      : memory_(std::move(memory)),
        context_(std::move(context)),
        sandbox_(std::move(sandbox)),
        channel_(std::move(channel)),
        exit_state_(std::move(exit_state)),
        limits_(limits),
        lm_port_(std::move(lm_port)) {}

  ~LaunchedWorker() override {
    Stop(OutcomeReason::kKilledByRequest);
    channel_->Close();  // also wakes a gateway reply blocked writing to the channel
    {
      std::lock_guard<std::mutex> lock(lm_port_->mutex);
      lm_port_->channel = nullptr;
    }
    Outcome outcome = sandbox_->Wait();
    kLog.Info(context_, "worker pid {} ended: {}", sandbox_->pid(),
              OutcomeReasonName(outcome.reason));
  }

  Result<nlohmann::json> Call(const std::string& command, const nlohmann::json& args,
                              Clock::time_point deadline, const CallerIdentity& caller) override {
    // The call's deadline also bounds every model request the worker makes during it.
    lm_port_->Begin(caller, deadline);
    bool delivered = false;
    Result<WorkerReply> reply =
        channel_->Call(command, args, deadline, pool_session(caller), &delivered);
    lm_port_->End();
    if (!reply.ok()) return ChannelFailure(reply.status(), delivered);
    if (!reply->ok) {
      return StatusFromWorkerError(reply->error_type, reply->error_message, reply->error);
    }
    return std::move(reply->result);
  }

  void Stop(OutcomeReason reason) override {
    {
      std::lock_guard<std::mutex> lock(exit_state_->mutex);
      exit_state_->stopped = true;
    }
    sandbox_->Kill(reason);
  }

  WorkerInfo Info() const override {
    WorkerInfo info;
    info.pid = sandbox_->pid();
    info.host_uid = sandbox_->host_uid();
    if (!sandbox_->Exited()) info.usage = sandbox_->Usage();
    info.limits = limits_;
    return info;
  }

  void Kill(OutcomeReason reason) override { sandbox_->Kill(reason); }

  pid_t pid() const override { return sandbox_->pid(); }
  bool Alive() const override { return !sandbox_->Exited() && channel_->fault().ok(); }

  void set_pool(bool pool) { pool_ = pool; }

 private:
  std::string pool_session(const CallerIdentity& caller) const {
    return pool_ ? caller.session_id : std::string();
  }

  // The channel failed: a timeout, a protocol fault or the worker gone. Each ends the worker;
  // the error names why as precisely as the launcher can tell.
  // A request the worker never received is marked `"delivered": false` in the details.
  Status ChannelFailure(const Status& status, bool delivered) {
    if (status.reason() == kWallTimeout) {
      sandbox_->Kill(OutcomeReason::kWallTimeout);
      kLog.Warn(context_, "call timed out: worker killed");
      return status;
    }
    if (status.reason() == kWorkerProtocolError) {
      kLog.Error(context_, "worker protocol error, killing it: {}", status.message());
      // The call's error is the failure: the launcher must not report the kill it causes as
      // the worker's fate (killed_by_request) ahead of it.
      Stop(OutcomeReason::kKilledByRequest);
      return status;
    }
    std::optional<Outcome> outcome = sandbox_->WaitFor(kOutcomeGrace);
    if (!outcome && delivered) return status;
    if (!outcome) return Status(status).WithDetails(R"({"delivered":false})");
    WorkerFailure failure = FailureFromOutcome(*outcome);
    nlohmann::json details = {{"failure", failure.ToJson()}};
    if (!delivered) details["delivered"] = false;
    return Status::FailedPrecondition(fmt::format("the worker died: {}", failure.message))
        .WithReason(failure.reason)
        .WithDetails(details.dump());
  }

  // Declared first, so it is given back only after the sandbox is gone.
  MemoryBudget::Lease memory_;
  const LogContext context_;
  std::unique_ptr<Sandbox> sandbox_;
  std::unique_ptr<WorkerChannel> channel_;
  std::shared_ptr<ExitState> exit_state_;
  const WorkerLimits limits_;
  std::shared_ptr<LmPortState> lm_port_;
  bool pool_ = false;
};

// A model request from the worker (the channel faults on any other worker-initiated type). It
// counts against the session of the call in flight, whatever the frame says: a tenant cannot
// spend another session's quota or use its settings.
void HandleWorkerFrame(LmGateway* gateway, const std::shared_ptr<LmPortState>& port,
                       const nlohmann::json& frame) {
  nlohmann::json id = frame.value("id", nlohmann::json());
  std::optional<LmCaller> caller = port->Current();
  if (!caller || gateway == nullptr) {
    Status refused = gateway == nullptr ? Status::Unsupported("this daemon has no model gateway")
                                              .WithReason(std::string(kLmNotConfigured))
                                        : Status::InvalidArgument("a model request outside a call")
                                              .WithReason(std::string(kLmInvalidRequest));
    port->Send(LmErrorFrame(id, refused));
    return;
  }
  gateway->Submit(std::move(*caller), frame,
                  [port](const nlohmann::json& reply) { port->Send(reply); });
}

// Runs on the launcher's supervisor thread once the sandbox has ended.
void OnSandboxExit(const std::shared_ptr<ExitState>& state, const LogContext& context,
                   const Outcome& outcome) {
  std::lock_guard<std::mutex> lock(state->mutex);
  if (state->stopped || !state->on_failure) return;
  WorkerFailure failure = FailureFromOutcome(outcome);
  kLog.Warn(context, "worker failed: {} ({})", failure.reason, failure.message);
  state->on_failure(failure);
  state->on_failure = nullptr;
}

LaunchRequest MakeLaunchRequest(const DaemonConfig& config, const SandboxWorkerSpec& spec,
                                int channel_fd) {
  LaunchRequest request;
  request.name = spec.name;  // one id on every log line of the session
  request.argv = {config.worker_python, "-I", std::string(kWorkerMount) + "/worker.py"};
  request.env = {
      {"CORRAL_CHANNEL_FD", std::to_string(kChannelFd)},
      {"CORRAL_MAX_FRAME", std::to_string(config.limits.max_frame_bytes)},
      {"CORRAL_MAX_OUTPUT", std::to_string(config.limits.max_output_bytes)},
      {"CORRAL_MAX_RESULT", std::to_string(config.limits.max_result_bytes)},
      {"CORRAL_LOG_FORMAT", "json"},
      {"CORRAL_SESSION_ID", spec.pool ? std::string() : spec.name},
      {"CORRAL_POOL", spec.pool ? "1" : "0"},
  };
  request.fds = {FdPass{channel_fd, kChannelFd}};
  request.extra_binds = {BindMount{config.worker_dir, kWorkerMount, false, false}};
  return request;
}

}  // namespace

WorkerLauncher::WorkerLauncher(const DaemonConfig& config, std::unique_ptr<Launcher> launcher,
                               uint64_t memory_budget, LmGateway* gateway)
    : config_(config), launcher_(std::move(launcher)), memory_(memory_budget), gateway_(gateway) {}

Result<std::unique_ptr<WorkerLauncher>> WorkerLauncher::Create(const DaemonConfig& config,
                                                               LmGateway* gateway) {
  LauncherOptions options;
  options.cgroups.parent_name = config.cgroup_parent;
  options.cgroups.remove_parent_on_close = true;  // the instance lock makes the name ours alone
  CORRAL_ASSIGN_OR_RETURN(std::unique_ptr<Launcher> launcher, Launcher::Create(options));

  // A previous daemon that was killed may have left sandboxes under our cgroup parent; they
  // are found through that tree only, never by process name.
  CORRAL_ASSIGN_OR_RETURN(int stale, launcher->CleanupStale());
  kLog.Info(kNoSession, "removed {} sandbox(es) left by a previous run under `{}`", stale,
            config.cgroup_parent);

  if (!fs::exists(fs::path(config.worker_dir) / "worker.py")) {
    return Status::NotFound(fmt::format("worker `{}/worker.py` not found", config.worker_dir));
  }
  CORRAL_ASSIGN_OR_RETURN(uint64_t budget, ResolveMemoryBudget(config.process.memory_budget));
  kLog.Info(kNoSession, "memory budget for sandboxes: {} MiB", budget >> 20);
  return std::unique_ptr<WorkerLauncher>(
      new WorkerLauncher(config, std::move(launcher), budget, gateway));
}

Result<Policy> WorkerLauncher::LoadPolicy(const std::string& name) {
  std::lock_guard<std::mutex> lock(policies_mutex_);
  auto it = policies_.find(name);
  if (it != policies_.end()) return it->second;

  std::string path = config_.policies_dir + "/" + name + ".yaml";
  if (!fs::exists(path)) {
    return Status::NotFound(fmt::format("policy `{}` is not shipped", name))
        .WithReason("policy_not_found");
  }
  CORRAL_ASSIGN_OR_RETURN(Policy policy, LoadPolicyFile(path));
  std::vector<std::string> missing = launcher_->host().MissingFor(policy);
  if (!missing.empty()) {
    return Status::Unsupported(fmt::format("policy `{}` needs what this host lacks: {}", name,
                                           fmt::join(missing, ", ")))
        .WithReason("policy_unsupported");
  }
  policies_.emplace(name, policy);
  return policy;
}

Result<std::unique_ptr<SandboxWorker>> WorkerLauncher::Start(
    const SandboxWorkerSpec& spec, FailureCallback on_failure,
    std::chrono::milliseconds start_timeout) {
  const LogContext& context = spec.context;
  CORRAL_ASSIGN_OR_RETURN(Policy policy, LoadPolicy(spec.policy));
  CORRAL_ASSIGN_OR_RETURN(
      MemoryBudget::Lease memory,
      memory_.Reserve(policy.limits.memory,
                      fmt::format("sandbox `{}` (policy `{}`)", spec.name, spec.policy)));
  CORRAL_ASSIGN_OR_RETURN(auto ends, WorkerChannel::MakeSocketPair());

  auto exit_state = std::make_shared<ExitState>();
  exit_state->on_failure = std::move(on_failure);
  LaunchRequest request = MakeLaunchRequest(config_, spec, ends.second.get());
  request.output_sink = MakeWorkerOutputSink(context);
  request.on_exit = [exit_state, context](const Outcome& outcome) {
    OnSandboxExit(exit_state, context, outcome);
  };

  Clock::time_point started = Clock::now();
  CORRAL_ASSIGN_OR_RETURN(std::unique_ptr<Sandbox> sandbox,
                          launcher_->Launch(policy, std::move(request)));
  ends.second.reset();  // the worker holds its end now; ours would hide its exit

  WorkerChannel::Options channel_options;
  channel_options.max_frame = config_.limits.max_frame_bytes;
  channel_options.log_context = context;
  auto channel = std::make_unique<WorkerChannel>(std::move(ends.first), channel_options);
  auto lm_port = std::make_shared<LmPortState>();
  lm_port->channel = channel.get();
  channel->SetRequestHandler(
      [gateway = gateway_, lm_port](const nlohmann::json& f) {
        HandleWorkerFrame(gateway, lm_port, f);
      },
      {"lm_request"});
  WorkerLimits limits{policy.limits.memory, policy.limits.pids, policy.limits.cpus};
  auto worker = std::make_unique<LaunchedWorker>(context, std::move(sandbox), std::move(channel),
                                                 exit_state, limits, lm_port, std::move(memory));
  worker->set_pool(spec.pool);

  // Ready only once the worker answers: a start that hangs is a failure.
  // A pool worker refuses a request that names no session; the ping touches none.
  CallerIdentity starter{spec.name, context.tenant, context};
  Result<nlohmann::json> ping =
      worker->Call("ping", nlohmann::json::object(), Clock::now() + start_timeout, starter);
  if (!ping.ok()) {
    return Status::Unavailable(
               fmt::format("the worker did not start: {}", ping.status().ToString()))
        .WithReason("worker_start_failed")
        .WithDetails(ping.status().details_json());
  }
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  kLog.Info(context, "worker pid {} ready in {} ms (policy `{}`)", worker->pid(), elapsed.count(),
            spec.policy);
  return std::unique_ptr<SandboxWorker>(std::move(worker));
}

}  // namespace corral
