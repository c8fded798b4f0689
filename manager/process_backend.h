// The process backend: one sandboxed worker per session, its own cgroup and limits. A crash,
// an OOM kill or a timeout ends that session alone, with the reason recorded.
//
// Thread safety: as Backend (manager/backend.h).
#pragma once

#include <memory>
#include <string>

#include "manager/backend.h"
#include "manager/config.h"
#include "manager/sandbox_worker.h"

namespace corral {

class ProcessBackend : public Backend {
 public:
  // `launcher` must outlive the backend. Checks that the default policy loads and can run on
  // this host.
  static Result<std::unique_ptr<ProcessBackend>> Create(const DaemonConfig& config,
                                                        WorkerLauncher* launcher);

  std::string_view name() const override { return "process"; }
  Status Ready() const override;
  Status CheckPolicy(const std::string& policy) override;
  Result<std::unique_ptr<Worker>> Start(const WorkerSpec& spec,
                                        FailureCallback on_failure) override;
  uint64_t max_sessions() const override { return config_.process.max_concurrent_sessions; }
  std::chrono::milliseconds max_idle() const override { return config_.process.max_idle; }
  std::chrono::milliseconds call_timeout() const override { return config_.process.call_timeout; }

 private:
  ProcessBackend(const DaemonConfig& config, WorkerLauncher* launcher)
      : config_(config), launcher_(launcher) {}

  const DaemonConfig config_;
  WorkerLauncher* const launcher_;
};

}  // namespace corral
