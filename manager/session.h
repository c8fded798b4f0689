// One client session: its identity, its state, its worker, and the queue its calls wait in.
//
// Calls of one session run one at a time, in arrival order (a ticket queue); calls of
// different sessions never wait for each other. A session that failed (its worker crashed,
// was OOM-killed, timed out) keeps its failure for GET and answers later calls with 409
// `session_failed`; an ended session answers 409 `session_ended` (503 `shutting_down` when the
// daemon is stopping).
//
// Thread safety: every method may be called from any thread. Lock order: the session's mutex
// is never held while calling into its Worker, so a worker's failure callback (launcher
// thread) may always take it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "manager/backend.h"
#include "manager/config.h"
#include "sandbox/log.h"
#include "sandbox/status.h"

namespace corral {

enum class SessionStatus { kStarting, kReady, kBusy, kFailed, kEnded };
std::string_view SessionStatusName(SessionStatus status);

struct SessionParams {
  std::string id;
  std::string user_id;
  std::string tenant = "default";
  std::string policy;
  std::string backend;
  nlohmann::json metadata = nlohmann::json::object();
  std::chrono::milliseconds call_timeout{30000};  // shown in limits; calls pass their own
  uint64_t max_queued_calls = 8;                  // waiting calls past this get 429 session_busy
  LimitsConfig limits;                            // applied again to what the worker answers
  // Set only for a session restored from a backend's store (manager/backend.h).
  std::string created_at;                           // RFC 3339 UTC; empty: now
  std::vector<std::string> programs;                // programs it already has
  nlohmann::json stats = nlohmann::json::object();  // calls, errors, executions so far
};

// A call timeout that means "the session's backend default" (SessionParams::call_timeout).
inline constexpr std::chrono::milliseconds kSessionCallTimeout{0};

// Whether an execute_program that ended with `status` ran the program (it may have raised, or
// its worker died under it), rather than being refused before it ran (unknown program, bad
// inputs, a full queue). Only those count as executions.
bool ProgramRan(const Status& status);

// `when` as RFC 3339 UTC with milliseconds: "2026-12-04T06:05:21.123Z".
std::string Rfc3339(std::chrono::system_clock::time_point when);

// Why a session ended (not failed): a client deleted it, it sat idle, the daemon stops.
inline constexpr std::string_view kEndDeleted = "deleted";
inline constexpr std::string_view kEndIdle = "idle_timeout";
inline constexpr std::string_view kEndShutdown = "shutting_down";

class Session {
 public:
  explicit Session(SessionParams params);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const std::string& id() const { return params_.id; }
  const std::string& user_id() const { return params_.user_id; }
  const std::string& backend() const { return params_.backend; }
  const std::string& created_at() const { return created_at_; }
  const LogContext& log_context() const { return context_; }

  // Hands the started worker over; the session becomes ready. Fails (and frees the worker)
  // when the session was ended while its worker started.
  Status Attach(std::unique_ptr<Worker> worker);
  // The worker died on its own: the session is failed with that reason. First failure wins;
  // ignored once ended.
  void MarkFailed(const WorkerFailure& failure);
  // Runs one worker command after every call that arrived before it. Past
  // `max_queued_calls` waiting calls: 429 session_busy (each waiting call holds an HTTP
  // thread; one session must not take them all).
  // A `timeout` of kSessionCallTimeout is the session's default.
  Result<nlohmann::json> Call(const std::string& command, const nlohmann::json& args,
                              std::chrono::milliseconds timeout);
  // Ends the session: stops its worker, fails waiting and running calls, and returns once the
  // worker is gone. Returns false when it had already ended.
  bool End(std::string_view reason);

  // No call runs and the last one finished before `now - max_idle`.
  bool IdleFor(std::chrono::milliseconds max_idle, std::chrono::steady_clock::time_point now);
  nlohmann::json Info();

 private:
  // The error a call gets from a session that can no longer run it. Requires mutex_.
  Status UnusableStatus() const;
  Result<nlohmann::json> CallWorker(Worker& worker, const std::string& command,
                                    const nlohmann::json& args, std::chrono::milliseconds timeout);
  // Bookkeeping once the worker answered; returns what the caller gets.
  Result<nlohmann::json> AfterCall(const std::string& command, const nlohmann::json& args,
                                   Result<nlohmann::json> result);

  const SessionParams params_;
  const LogContext context_;
  const std::string created_at_;  // RFC 3339

  mutable std::mutex mutex_;  // guards every member below
  std::condition_variable changed_;
  SessionStatus status_ = SessionStatus::kStarting;
  std::optional<WorkerFailure> failure_;
  std::string end_reason_;
  std::shared_ptr<Worker> worker_;
  uint64_t next_ticket_ = 0;  // handed to each arriving call
  uint64_t serving_ = 0;      // the ticket allowed to run now
  int running_ = 0;           // calls inside the worker right now (0 or 1)
  int waiting_ = 0;           // calls queued behind it
  std::chrono::steady_clock::time_point last_activity_ = std::chrono::steady_clock::now();
  std::chrono::system_clock::time_point last_activity_at_;
  std::set<std::string> programs_;
  uint64_t calls_ = 0;
  uint64_t errors_ = 0;
  uint64_t executions_ = 0;
};

}  // namespace corral
