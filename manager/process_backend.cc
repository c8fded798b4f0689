#include "manager/process_backend.h"

namespace corral {
namespace {

// A session's own sandboxed worker: every call is that session's, so the caller is fixed.
class ProcessWorker : public Worker {
 public:
  ProcessWorker(std::unique_ptr<SandboxWorker> worker, CallerIdentity caller)
      : worker_(std::move(worker)), caller_(std::move(caller)) {}

  Result<nlohmann::json> Call(const std::string& command, const nlohmann::json& args,
                              std::chrono::milliseconds timeout) override {
    return worker_->Call(command, args, std::chrono::steady_clock::now() + timeout, caller_);
  }
  void Stop(OutcomeReason reason) override { worker_->Stop(reason); }
  WorkerInfo Info() const override { return worker_->Info(); }

 private:
  std::unique_ptr<SandboxWorker> worker_;
  const CallerIdentity caller_;
};

}  // namespace

Result<std::unique_ptr<ProcessBackend>> ProcessBackend::Create(const DaemonConfig& config,
                                                               WorkerLauncher* launcher) {
  std::unique_ptr<ProcessBackend> backend(new ProcessBackend(config, launcher));
  CORRAL_TRY_CTX(backend->CheckPolicy(config.default_policy), "default policy `{}`",
                 config.default_policy);
  return backend;
}

Status ProcessBackend::Ready() const {
  return Status::Ok();
}

Status ProcessBackend::CheckPolicy(const std::string& policy) {
  return launcher_->LoadPolicy(policy).status();
}

Result<std::unique_ptr<Worker>> ProcessBackend::Start(const WorkerSpec& spec,
                                                      FailureCallback on_failure) {
  LogContext context{spec.session_id, spec.tenant};
  SandboxWorkerSpec sandbox{spec.session_id, context, spec.policy, false};
  CORRAL_ASSIGN_OR_RETURN(
      std::unique_ptr<SandboxWorker> worker,
      launcher_->Start(sandbox, std::move(on_failure), config_.process.start_timeout));
  CallerIdentity caller{spec.session_id, spec.tenant, context};
  return std::unique_ptr<Worker>(new ProcessWorker(std::move(worker), std::move(caller)));
}

}  // namespace corral
