#include "manager/process_backend.h"

#include <atomic>
#include <filesystem>
#include <optional>

#include <fmt/ranges.h>

#include "manager/http_errors.h"
#include "manager/worker_channel.h"
#include "manager/worker_output.h"
#include "sandbox/log.h"

namespace corral {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const Logger kLog("process_backend");

// Inside every sandbox: the worker's code, bound read-only, and its channel descriptor.
constexpr char kWorkerMount[] = "/opt/corral";
constexpr int kChannelFd = 3;
// How long a call whose channel reported the worker gone waits for the launcher's outcome, so
// the error names the precise reason (oom_killed rather than worker_exited).
constexpr std::chrono::milliseconds kOutcomeGrace{3000};

// What the channel's request handler needs of its worker: the deadline of the call in flight
// (a model request outside a call is refused: it would have no deadline) and the channel to
// answer on. Shared with the gateway's reply callbacks, which may outlive the worker: the
// worker clears `channel` before the channel is destroyed, and replies after that are dropped.
struct LmPortState {
  std::atomic<int64_t> deadline_ns{0};  // steady clock; 0: no call in flight
  std::mutex mutex;                     // guards channel
  WorkerChannel* channel = nullptr;

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

class ProcessWorker : public Worker {
 public:
  ProcessWorker(LogContext context, std::unique_ptr<Sandbox> sandbox,
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

  ~ProcessWorker() override {
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
                              std::chrono::milliseconds timeout) override {
    // The call's deadline also bounds every model request the worker makes during it.
    Clock::time_point deadline = Clock::now() + timeout;
    lm_port_->deadline_ns = deadline.time_since_epoch().count();
    Result<WorkerReply> reply = channel_->Call(command, args, deadline);
    lm_port_->deadline_ns = 0;
    if (!reply.ok()) return ChannelFailure(reply.status());
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

 private:
  // The channel failed: a timeout, a protocol fault or the worker gone. Each ends the worker;
  // the error names why as precisely as the launcher can tell.
  Status ChannelFailure(const Status& status) {
    if (status.reason() == kWallTimeout) {
      sandbox_->Kill(OutcomeReason::kWallTimeout);
      kLog.Warn(context_, "call timed out: worker killed");
      return status;
    }
    if (status.reason() == kWorkerProtocolError) {
      kLog.Error(context_, "worker protocol error, killing it: {}", status.message());
      sandbox_->Kill(OutcomeReason::kKilledByRequest);
      return status;
    }
    std::optional<Outcome> outcome = sandbox_->WaitFor(kOutcomeGrace);
    if (!outcome) return status;
    WorkerFailure failure = FailureFromOutcome(*outcome);
    return Status::FailedPrecondition(fmt::format("the worker died: {}", failure.message))
        .WithReason(failure.reason)
        .WithDetails(nlohmann::json{{"failure", failure.ToJson()}}.dump());
  }

  // Declared first, so it is given back only after the sandbox is gone.
  MemoryBudget::Lease memory_;
  const LogContext context_;
  std::unique_ptr<Sandbox> sandbox_;
  std::unique_ptr<WorkerChannel> channel_;
  std::shared_ptr<ExitState> exit_state_;
  const WorkerLimits limits_;
  std::shared_ptr<LmPortState> lm_port_;
};

// A model request from the worker (the channel faults on any other worker-initiated type). The
// session it counts against is this worker's own, whatever the frame says: a tenant cannot
// spend another session's quota or use its settings.
void HandleWorkerFrame(LmGateway* gateway, const std::shared_ptr<LmPortState>& port,
                       const WorkerSpec& spec, const LogContext& context,
                       const nlohmann::json& frame) {
  nlohmann::json id = frame.value("id", nlohmann::json());
  int64_t deadline_ns = port->deadline_ns;
  if (deadline_ns == 0 || gateway == nullptr) {
    Status refused = gateway == nullptr ? Status::Unsupported("this daemon has no model gateway")
                                              .WithReason(std::string(kLmNotConfigured))
                                        : Status::InvalidArgument("a model request outside a call")
                                              .WithReason(std::string(kLmInvalidRequest));
    port->Send(LmErrorFrame(id, refused));
    return;
  }
  LmCaller caller{spec.session_id, spec.tenant, Clock::time_point(Clock::duration(deadline_ns)),
                  context};
  gateway->Submit(std::move(caller), frame,
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

LaunchRequest MakeLaunchRequest(const DaemonConfig& config, const WorkerSpec& spec,
                                int channel_fd) {
  LaunchRequest request;
  request.name = spec.session_id;  // one id on every log line of the session
  request.argv = {config.worker_python, "-I", std::string(kWorkerMount) + "/worker.py"};
  request.env = {
      {"CORRAL_CHANNEL_FD", std::to_string(kChannelFd)},
      {"CORRAL_MAX_FRAME", std::to_string(config.limits.max_frame_bytes)},
      {"CORRAL_MAX_OUTPUT", std::to_string(config.limits.max_output_bytes)},
      {"CORRAL_MAX_RESULT", std::to_string(config.limits.max_result_bytes)},
      {"CORRAL_LOG_FORMAT", "json"},
      {"CORRAL_SESSION_ID", spec.session_id},
  };
  request.fds = {FdPass{channel_fd, kChannelFd}};
  request.extra_binds = {BindMount{config.worker_dir, kWorkerMount, false, false}};
  return request;
}

}  // namespace

nlohmann::json WorkerFailure::ToJson() const {
  nlohmann::json json = {{"reason", reason},
                         {"message", message},
                         {"exit_code", nullptr},
                         {"signal", nullptr},
                         {"memory_peak_bytes", memory_peak_bytes}};
  if (exit_code >= 0) json["exit_code"] = exit_code;
  if (signal > 0) json["signal"] = signal;
  if (seccomp_syscall >= 0) json["seccomp_syscall"] = seccomp_syscall;
  return json;
}

WorkerFailure WorkerFailure::FromStatus(const Status& status) {
  WorkerFailure failure;
  failure.reason = status.reason();
  failure.message = status.message();
  nlohmann::json details = nlohmann::json::parse(status.details_json(), nullptr, false);
  if (!details.is_object() || !details.contains("failure")) return failure;
  const nlohmann::json& json = details["failure"];
  if (json.value("exit_code", nlohmann::json()).is_number_integer()) {
    failure.exit_code = json["exit_code"].get<int>();
  }
  if (json.value("signal", nlohmann::json()).is_number_integer()) {
    failure.signal = json["signal"].get<int>();
  }
  failure.seccomp_syscall = json.value("seccomp_syscall", -1L);
  failure.memory_peak_bytes = json.value("memory_peak_bytes", uint64_t{0});
  if (json.value("message", nlohmann::json()).is_string()) failure.message = json["message"];
  return failure;
}

WorkerFailure FailureFromOutcome(const Outcome& outcome) {
  WorkerFailure failure;
  failure.exit_code = outcome.exit_code;
  failure.signal = outcome.signal;
  failure.seccomp_syscall = outcome.seccomp_syscall;
  failure.memory_peak_bytes = outcome.memory_peak_bytes;
  switch (outcome.reason) {
    case OutcomeReason::kExited:
      failure.reason = "worker_crashed";
      failure.message = fmt::format("the worker exited with status {}", outcome.exit_code);
      break;
    case OutcomeReason::kSignaled:
      failure.reason = "worker_crashed";
      failure.message = fmt::format("the worker was killed by signal {}", outcome.signal);
      break;
    default:
      failure.reason = std::string(OutcomeReasonName(outcome.reason));
      failure.message = outcome.message.empty() ? failure.reason : outcome.message;
      break;
  }
  return failure;
}

ProcessBackend::ProcessBackend(const DaemonConfig& config, std::unique_ptr<Launcher> launcher,
                               uint64_t memory_budget, LmGateway* gateway)
    : config_(config), launcher_(std::move(launcher)), memory_(memory_budget), gateway_(gateway) {}

Result<std::unique_ptr<ProcessBackend>> ProcessBackend::Create(const DaemonConfig& config,
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
  std::unique_ptr<ProcessBackend> backend(
      new ProcessBackend(config, std::move(launcher), budget, gateway));
  CORRAL_TRY_CTX(backend->CheckPolicy(config.default_policy), "default policy `{}`",
                 config.default_policy);
  return backend;
}

Status ProcessBackend::Ready() const {
  return Status::Ok();
}

Result<Policy> ProcessBackend::LoadPolicy(const std::string& name) {
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

Status ProcessBackend::CheckPolicy(const std::string& policy) {
  return LoadPolicy(policy).status();
}

Result<std::unique_ptr<Worker>> ProcessBackend::Start(const WorkerSpec& spec,
                                                      FailureCallback on_failure) {
  LogContext context{spec.session_id, spec.tenant};
  CORRAL_ASSIGN_OR_RETURN(Policy policy, LoadPolicy(spec.policy));
  CORRAL_ASSIGN_OR_RETURN(
      MemoryBudget::Lease memory,
      memory_.Reserve(policy.limits.memory,
                      fmt::format("session `{}` (policy `{}`)", spec.session_id, spec.policy)));
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
      [gateway = gateway_, lm_port, spec, context](const nlohmann::json& f) {
        HandleWorkerFrame(gateway, lm_port, spec, context, f);
      },
      {"lm_request"});
  WorkerLimits limits{policy.limits.memory, policy.limits.pids, policy.limits.cpus};
  auto worker = std::make_unique<ProcessWorker>(context, std::move(sandbox), std::move(channel),
                                                exit_state, limits, lm_port, std::move(memory));

  // The session is ready only once the worker answers: a start that hangs is a failure.
  Result<nlohmann::json> ping =
      worker->Call("ping", nlohmann::json::object(), config_.process.start_timeout);
  if (!ping.ok()) {
    return Status::Unavailable(
               fmt::format("the worker did not start: {}", ping.status().ToString()))
        .WithReason("worker_start_failed")
        .WithDetails(ping.status().details_json());
  }
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  kLog.Info(context, "worker pid {} ready in {} ms (policy `{}`)", worker->Info().pid,
            elapsed.count(), spec.policy);
  return std::unique_ptr<Worker>(std::move(worker));
}

}  // namespace corral
