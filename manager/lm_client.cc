#include "manager/lm_client.h"

#include <httplib.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace corral {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

const Logger kLog("lm_client");

// Retry-After may ask for longer than any caller waits; past this it is not honoured.
constexpr milliseconds kMaxRetryAfter{60 * 1000};

Result<std::string> ReadKey(const LmEndpointConfig& config) {
  if (!config.api_key_env.empty()) {
    const char* value = std::getenv(config.api_key_env.c_str());
    if (value == nullptr || *value == '\0') {
      return Status::InvalidArgument(fmt::format(
          "the environment variable `{}` (api_key_env) is not set or empty", config.api_key_env));
    }
    return std::string(value);
  }
  if (!config.api_key_file.empty()) {
    std::ifstream file(config.api_key_file);
    if (!file) return ErrnoStatus("read api_key_file `{}`", config.api_key_file);
    std::stringstream text;
    text << file.rdbuf();
    std::string key = text.str();
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' ')) {
      key.pop_back();
    }
    if (key.empty()) {
      return Status::InvalidArgument(
          fmt::format("api_key_file `{}` is empty", config.api_key_file));
    }
    return key;
  }
  return std::string();  // a local server (llama.cpp, Ollama) often needs none
}

bool Retryable(int http_status) {
  return http_status == 429 || (http_status >= 500 && http_status <= 599);
}

milliseconds Remaining(Clock::time_point deadline) {
  return std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
}

milliseconds RetryAfter(const httplib::Response& response) {
  std::string value = response.get_header_value("Retry-After");
  char* end = nullptr;
  long seconds = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || end == nullptr || *end != '\0' || seconds < 0) return milliseconds(0);
  return std::min(milliseconds(seconds * 1000), kMaxRetryAfter);
}

}  // namespace

Result<LmCompletion> ParseChatCompletion(const std::string& body) {
  nlohmann::json json = nlohmann::json::parse(body, nullptr, false);
  if (json.is_discarded() || !json.is_object()) {
    return Status::InvalidArgument("the body is not a JSON object");
  }
  auto choices = json.find("choices");
  if (choices == json.end() || !choices->is_array() || choices->empty() ||
      !(*choices)[0].is_object()) {
    return Status::InvalidArgument("the body has no `choices`");
  }
  const nlohmann::json& choice = (*choices)[0];
  auto message = choice.find("message");
  if (message == choice.end() || !message->is_object() || !message->contains("content") ||
      !(*message)["content"].is_string()) {
    return Status::InvalidArgument("`choices[0].message.content` is not a string");
  }
  LmCompletion completion;
  completion.content = (*message)["content"].get<std::string>();
  auto usage = json.find("usage");
  if (usage != json.end() && usage->is_object()) {
    completion.prompt_tokens = usage->value("prompt_tokens", uint64_t{0});
    completion.completion_tokens = usage->value("completion_tokens", uint64_t{0});
  }
  return completion;
}

LmClient::LmClient(LmEndpointConfig config, LmUrl url, std::string api_key)
    : config_(std::move(config)), url_(std::move(url)), api_key_(std::move(api_key)) {}

Result<std::unique_ptr<LmClient>> LmClient::Create(const LmEndpointConfig& config) {
  CORRAL_ASSIGN_OR_RETURN(LmUrl url, ParseLmUrl(config.base_url));
  Result<std::string> key = ReadKey(config);
  if (!key.ok()) return Status(key.status()).Context(fmt::format("endpoint `{}`", config.name));
  return std::unique_ptr<LmClient>(new LmClient(config, std::move(url), std::move(*key)));
}

Status LmClient::Failure(std::string_view reason, int http_status, std::string message) const {
  ErrorCategory category = ErrorCategory::kUnavailable;
  if (reason == kLmRateLimited) category = ErrorCategory::kResourceExhausted;
  if (reason == kLmTimeout) category = ErrorCategory::kDeadlineExceeded;
  nlohmann::json details = {{"endpoint", config_.name}, {"status", nullptr}};
  if (http_status > 0) details["status"] = http_status;
  return Status::Error(category, fmt::format("model endpoint `{}`: {}", config_.name, message))
      .WithReason(std::string(reason))
      .WithDetails(details.dump());
}

bool LmClient::Acquire(Clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  bool free = slot_freed_.wait_until(
      lock, deadline, [&] { return cancelled_ || in_flight_ < config_.max_concurrent; });
  if (!free || cancelled_) return false;
  ++in_flight_;
  return true;
}

void LmClient::Cancel() {
  std::lock_guard lock(mutex_);
  cancelled_ = true;
  for (httplib::Client* client : active_) client->stop();  // shuts its socket down
  slot_freed_.notify_all();
}

bool LmClient::Track(httplib::Client* client) {
  std::lock_guard lock(mutex_);
  if (cancelled_) return false;
  active_.insert(client);
  return true;
}

void LmClient::Untrack(httplib::Client* client) {
  std::lock_guard lock(mutex_);
  active_.erase(client);
}

bool LmClient::Backoff(milliseconds wait) {
  std::unique_lock lock(mutex_);
  return !slot_freed_.wait_for(lock, wait, [&] { return cancelled_; });
}

void LmClient::Release() {
  std::lock_guard lock(mutex_);
  --in_flight_;
  slot_freed_.notify_one();
}

Result<LmCompletion> LmClient::Complete(const LmChatRequest& request, Clock::time_point deadline,
                                        const LogContext& context) {
  nlohmann::json body = {{"model", config_.model},
                         {"messages", request.messages},
                         {"temperature", request.temperature}};
  if (request.max_tokens > 0) body["max_tokens"] = request.max_tokens;
  std::string text = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);

  if (!Acquire(deadline)) {
    std::lock_guard lock(mutex_);
    if (cancelled_) return Failure(kLmUnavailable, 0, "the daemon is shutting down");
    return Failure(kLmTimeout, 0,
                   fmt::format("no free request slot (max_concurrent {}) before the deadline",
                               config_.max_concurrent));
  }
  Result<LmCompletion> result = Status::Internal("no attempt");
  milliseconds backoff = config_.retry_backoff;
  for (uint64_t attempt = 0;; ++attempt) {
    milliseconds left = Remaining(deadline);
    if (left.count() <= 0) {
      result = Failure(kLmTimeout, 0, "the call's deadline ran out");
      break;
    }
    int http_status = 0;
    milliseconds retry_after{0};
    result = Attempt(text, std::min(config_.timeout, left), &http_status, &retry_after);
    if (result.ok() || !Retryable(http_status) || attempt >= config_.retries) break;
    milliseconds wait = std::max(backoff, retry_after);
    if (wait >= Remaining(deadline)) break;  // the retry could not finish in time
    kLog.Warn(context, "model endpoint `{}` answered HTTP {}; retry {} of {} in {} ms",
              config_.name, http_status, attempt + 1, config_.retries, wait.count());
    if (!Backoff(wait)) break;  // shutting down: the last failure stands
    backoff *= 2;
  }
  Release();
  return result;
}

Result<LmCompletion> LmClient::Attempt(const std::string& body, milliseconds timeout,
                                       int* http_status, milliseconds* retry_after) {
  httplib::Client client(url_.scheme_host_port);
  client.set_connection_timeout(timeout);
  client.set_read_timeout(timeout);
  client.set_write_timeout(timeout);
  httplib::Headers headers;
  if (!api_key_.empty()) headers.emplace("Authorization", "Bearer " + api_key_);

  if (!Track(&client)) return Failure(kLmUnavailable, 0, "the daemon is shutting down");
  Clock::time_point started = Clock::now();
  httplib::Result response =
      client.Post((url_.path + "/chat/completions").c_str(), headers, body, "application/json");
  Untrack(&client);
  if (!response) {
    httplib::Error error = response.error();
    bool timed_out = error == httplib::Error::ConnectionTimeout ||
                     (error == httplib::Error::Read && Clock::now() - started >= timeout);
    if (timed_out) {
      return Failure(kLmTimeout, 0, fmt::format("no answer within {} ms", timeout.count()));
    }
    return Failure(kLmUnavailable, 0, fmt::format("request failed: {}", httplib::to_string(error)));
  }
  *http_status = response->status;
  if (response->status == 429) {
    *retry_after = RetryAfter(*response);
    return Failure(kLmRateLimited, 429, "rate limited (HTTP 429)");
  }
  if (response->status >= 500) {
    return Failure(kLmUnavailable, response->status,
                   fmt::format("server error (HTTP {})", response->status));
  }
  if (response->status < 200 || response->status > 299) {
    return Failure(kLmBadResponse, response->status,
                   fmt::format("refused the request (HTTP {})", response->status));
  }
  Result<LmCompletion> completion = ParseChatCompletion(response->body);
  if (!completion.ok()) {
    return Failure(kLmBadResponse, response->status,
                   fmt::format("not a chat completion: {}", completion.status().message()));
  }
  return completion;
}

}  // namespace corral
