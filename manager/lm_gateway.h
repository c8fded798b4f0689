// The language-model gateway: answers the `lm_request` frames workers send while they execute
// (images/python-worker/corral_lm.py) by calling the session's model endpoint, so that tenant
// code reaches a model without network access and without ever seeing a key.
//
// Per session it keeps the LM settings (endpoint, temperature, max_tokens), usage (calls,
// prompt and completion tokens, errors, cache hits) and a cache of identical temperature-0
// requests; per session and per tenant it enforces calls per minute and tokens per day. Every
// failure is answered as a typed error frame, never left hanging: the caller's deadline (the
// deadline of the call the worker is executing) bounds queueing, the upstream request and its
// retries.
//
// Which session a request counts against is decided by the backend, never by the frame: the
// process backend knows its worker's one session; a pool backend resolves the session of the
// request it is executing. Both hand the gateway an LmCaller.
//
// Threads: Submit() never blocks; requests are served on the gateway's own threads and answered
// through the given callback, from one of those threads. Every other method may be called from
// any thread. The destructor answers what is still queued and joins its threads, so a backend's
// workers (whose callbacks it calls) must be gone first, or must drop replies themselves.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "manager/lm_client.h"
#include "manager/lm_config.h"
#include "sandbox/log.h"
#include "sandbox/status.h"

namespace corral {

inline constexpr std::string_view kLmNotConfigured = "lm_not_configured";
inline constexpr std::string_view kLmInvalidRequest = "lm_invalid_request";

struct LmSettings {
  std::string endpoint;  // empty: none configured, requests get lm_not_configured
  double temperature = 0;
  uint64_t max_tokens = 1024;

  nlohmann::json ToJson() const;
};

struct LmUsage {
  uint64_t calls = 0;  // requests that reached the endpoint and were answered
  uint64_t prompt_tokens = 0;
  uint64_t completion_tokens = 0;
  uint64_t errors = 0;  // requests answered with an error (quota, upstream, bad request)
  uint64_t cache_hits = 0;

  nlohmann::json ToJson() const;
};

// Whose request this is, as the backend knows it.
struct LmCaller {
  std::string session_id;
  std::string tenant;
  std::chrono::steady_clock::time_point deadline;
  LogContext log_context;
};

class LmGateway {
 public:
  using Reply = std::function<void(const nlohmann::json& frame)>;

  // Reads every endpoint's key and starts the gateway's threads.
  static Result<std::unique_ptr<LmGateway>> Create(const LmConfig& config);
  ~LmGateway();
  LmGateway(const LmGateway&) = delete;
  LmGateway& operator=(const LmGateway&) = delete;

  // The settings of a session that asks for nothing: the default endpoint.
  LmSettings Defaults() const;
  // `object` ({endpoint, temperature, max_tokens}, each optional) applied over `base`. An
  // unknown endpoint is invalid_argument `unknown_lm_endpoint` naming it and the known ones.
  Result<LmSettings> ParseSettings(const nlohmann::json& object, const LmSettings& base) const;

  // Starts keeping state for a session. `owner` is the session object: an entry whose owner
  // is gone is dropped, so a session that ends in any way frees its entry.
  void SetSession(const std::string& session_id, const std::string& tenant,
                  const LmSettings& settings, std::weak_ptr<const void> owner);
  // configure_lm: new settings over the current ones; returns them.
  Result<LmSettings> Configure(const std::string& session_id, const nlohmann::json& object);
  void ForgetSession(const std::string& session_id);
  // {endpoint, temperature, max_tokens, usage}; null for a session it does not know.
  nlohmann::json SessionInfo(const std::string& session_id) const;
  // {default_endpoint, endpoints: [{name, model, base_url, ...}]}; never a key.
  nlohmann::json Endpoints() const;

  // Serves one `lm_request` frame; `reply` gets its `lm_response`. Never blocks.
  void Submit(LmCaller caller, nlohmann::json frame, Reply reply);

 private:
  struct Task {
    LmCaller caller;
    nlohmann::json frame;
    Reply reply;
  };
  // A fixed window: `count` events since `start`.
  struct Window {
    std::chrono::steady_clock::time_point start;
    uint64_t count = 0;
  };
  struct SessionState {
    std::string tenant;
    LmSettings settings;
    LmUsage usage;
    std::weak_ptr<const void> owner;
    Window minute;  // calls
    Window day;     // tokens
    std::map<std::string, LmCompletion> cache;
    std::deque<std::string> cache_order;  // oldest first
  };
  struct TenantState {
    Window minute;
    Window day;
  };
  struct Request {
    std::string session_id;
    LmChatRequest chat;
    std::string endpoint;
    std::string cache_key;  // empty: not cacheable
  };

  LmGateway(LmConfig config, std::map<std::string, std::unique_ptr<LmClient>> clients);
  void Run();
  nlohmann::json Serve(const LmCaller& caller, const nlohmann::json& frame);
  // Steps of Serve().
  Result<Request> Prepare(const LmCaller& caller, const nlohmann::json& frame);
  Result<LmCompletion> Lookup(const Request& request);  // ok only on a cache hit
  Status Admit(const LmCaller& caller);                 // quotas; counts the call
  void Account(const LmCaller& caller, const Request& request, const Result<LmCompletion>& result);

  const LmConfig config_;
  const std::map<std::string, std::unique_ptr<LmClient>> clients_;

  static constexpr size_t kMinSweep = 64;
  mutable std::mutex mutex_;  // guards sessions_, sweep_at_, tenants_
  std::map<std::string, SessionState> sessions_;
  size_t sweep_at_ = kMinSweep;  // sessions_ size that triggers the next sweep
  std::map<std::string, TenantState> tenants_;

  std::mutex queue_mutex_;  // guards queue_, stopping_
  std::condition_variable queue_ready_;
  std::deque<Task> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;  // started last
};

// The lm_response frame for an error.
nlohmann::json LmErrorFrame(const nlohmann::json& id, const Status& status);

}  // namespace corral
