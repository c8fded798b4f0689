// One OpenAI-compatible chat-completions endpoint, as corrald's gateway calls it: POST
// `<base_url>/chat/completions` over http or https (cpp-httplib with OpenSSL), the key as a
// bearer token, a timeout per attempt, retries with exponential backoff on 429 and 5xx, and at
// most `max_concurrent` requests in flight.
//
// The key is read once, at Create(), from the daemon's environment or a file. It lives only in
// this object: it is never logged, never part of a Status, and never leaves the daemon except
// in the Authorization header sent to the endpoint.
//
// Errors carry a reason clients branch on and details {endpoint, status}: `lm_unavailable`
// (connection refused, 5xx after the retries; status null when no HTTP answer came),
// `lm_rate_limited` (429 after the retries), `lm_timeout` (an attempt, a wait for a free slot
// or the caller's deadline ran out), `lm_bad_response` (a non-2xx status other than 429/5xx, or
// a body that is not a chat completion). Upstream bodies are not copied into errors: an
// upstream that echoes request headers must not carry the key into a message.
//
// Thread safety: Complete() may be called from many threads at once.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "manager/lm_config.h"
#include "sandbox/log.h"
#include "sandbox/status.h"

namespace httplib {
class Client;
}

namespace corral {

inline constexpr std::string_view kLmUnavailable = "lm_unavailable";
inline constexpr std::string_view kLmRateLimited = "lm_rate_limited";
inline constexpr std::string_view kLmTimeout = "lm_timeout";
inline constexpr std::string_view kLmBadResponse = "lm_bad_response";

struct LmChatRequest {
  nlohmann::json messages;  // [{role, content}], already checked
  double temperature = 0;
  uint64_t max_tokens = 0;  // 0: not sent
};

struct LmCompletion {
  std::string content;
  uint64_t prompt_tokens = 0;
  uint64_t completion_tokens = 0;
};

class LmClient {
 public:
  // Reads the key; fails naming the variable or file (never the key) when it cannot.
  static Result<std::unique_ptr<LmClient>> Create(const LmEndpointConfig& config);

  // One completion, retried as configured, never past `deadline`.
  Result<LmCompletion> Complete(const LmChatRequest& request,
                                std::chrono::steady_clock::time_point deadline,
                                const LogContext& context);

  // Ends requests in flight and refuses new ones (the daemon is stopping): an endpoint that
  // stalls must not hold shutdown for its timeout. Idempotent.
  void Cancel();

  const LmEndpointConfig& config() const { return config_; }

 private:
  LmClient(LmEndpointConfig config, LmUrl url, std::string api_key);

  // Waits for one of the `max_concurrent` slots until `deadline`; false when it ran out.
  bool Acquire(std::chrono::steady_clock::time_point deadline);
  void Release();
  // One HTTP attempt. `*http_status` is the upstream status, 0 when none came.
  Result<LmCompletion> Attempt(const std::string& body, std::chrono::milliseconds timeout,
                               int* http_status, std::chrono::milliseconds* retry_after);
  Status Failure(std::string_view reason, int http_status, std::string message) const;
  // Registers a client for Cancel(); false when cancelled already.
  bool Track(httplib::Client* client);
  void Untrack(httplib::Client* client);
  // Sleeps for `wait` unless cancelled; false when cancelled.
  bool Backoff(std::chrono::milliseconds wait);

  const LmEndpointConfig config_;
  const LmUrl url_;
  const std::string api_key_;  // empty: no Authorization header

  std::mutex mutex_;                    // guards in_flight_, active_, cancelled_
  std::condition_variable slot_freed_;  // also signalled by Cancel()
  uint64_t in_flight_ = 0;
  std::set<httplib::Client*> active_;  // the httplib clients of attempts in flight
  bool cancelled_ = false;
};

// The completion inside a chat-completions response body; plain message on failure.
Result<LmCompletion> ParseChatCompletion(const std::string& body);

}  // namespace corral
