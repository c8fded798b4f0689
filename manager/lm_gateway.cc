#include "manager/lm_gateway.h"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "manager/http_errors.h"

namespace corral {
namespace {

using Clock = std::chrono::steady_clock;

const Logger kLog("lm_gateway");

constexpr size_t kMaxQueued = 1024;  // requests waiting for a gateway thread, all workers
constexpr size_t kMaxMessages = 256;
constexpr uint64_t kMaxTokensLimit = 1000000;
constexpr auto kMinute = std::chrono::minutes(1);
constexpr auto kDay = std::chrono::hours(24);
// Model time ends this much before the call's deadline (at most a quarter of what is left), so
// the worker still gets its lm_timeout and answers: a slow model must not be what kills the
// session's worker for a wall timeout.
constexpr std::chrono::milliseconds kReplyMargin{250};

Clock::time_point ModelDeadline(Clock::time_point call_deadline) {
  auto left = call_deadline - Clock::now();
  if (left <= Clock::duration::zero()) return call_deadline;
  return call_deadline - std::min<Clock::duration>(kReplyMargin, left / 4);
}

Status Invalid(std::string message) {
  return Status::InvalidArgument(std::move(message)).WithReason(std::string(kLmInvalidRequest));
}

Status NotConfigured(std::string message) {
  return Status::Unsupported(std::move(message)).WithReason(std::string(kLmNotConfigured));
}

Status RateLimited(std::string_view limit, uint64_t value, std::string_view what) {
  nlohmann::json details = {{"limit", std::string(limit)}, {"value", value}, {"status", nullptr}};
  return Status::ResourceExhausted(fmt::format("{} reached (`{}`: {})", what, limit, value))
      .WithReason(std::string(kLmRateLimited))
      .WithDetails(details.dump());
}

nlohmann::json ResponseFrame(const nlohmann::json& id, const LmCompletion& completion,
                             bool cached) {
  nlohmann::json usage = {{"prompt_tokens", cached ? 0 : completion.prompt_tokens},
                          {"completion_tokens", cached ? 0 : completion.completion_tokens}};
  return {{"type", "lm_response"},
          {"id", id},
          {"result", {{"content", completion.content}, {"usage", usage}, {"cached", cached}}}};
}

// A fixed window of `length`: restarted when it has passed.
template <typename Window>
void Roll(Window& window, Clock::duration length, Clock::time_point now) {
  if (window.count == 0 || now - window.start >= length) {
    window.start = now;
    window.count = 0;
  }
}

Result<double> Temperature(const nlohmann::json& value, std::string_view field) {
  if (!value.is_number() || value.get<double>() < 0 || value.get<double>() > 2) {
    return InvalidField(field, "must be a number from 0 to 2");
  }
  return value.get<double>();
}

Result<uint64_t> MaxTokens(const nlohmann::json& value, std::string_view field) {
  if (!value.is_number_unsigned() || value.get<uint64_t>() == 0 ||
      value.get<uint64_t>() > kMaxTokensLimit) {
    return InvalidField(field, fmt::format("must be an integer from 1 to {}", kMaxTokensLimit));
  }
  return value.get<uint64_t>();
}

Status CheckMessages(const nlohmann::json& messages) {
  if (!messages.is_array() || messages.empty() || messages.size() > kMaxMessages) {
    return Invalid(fmt::format("`messages` must be a list of 1..{} messages", kMaxMessages));
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const nlohmann::json& message = messages[i];
    bool ok = message.is_object() && message.size() == 2 && message.contains("role") &&
              message.contains("content") && message["content"].is_string() &&
              message["role"].is_string();
    std::string role = ok ? message["role"].get<std::string>() : "";
    if (role != "system" && role != "user" && role != "assistant") {
      return Invalid(
          fmt::format("`messages[{}]` must be {{role: system|user|assistant, "
                      "content: string}}",
                      i));
    }
  }
  return Status::Ok();
}

}  // namespace

nlohmann::json LmSettings::ToJson() const {
  return {{"endpoint", endpoint.empty() ? nlohmann::json(nullptr) : nlohmann::json(endpoint)},
          {"temperature", temperature},
          {"max_tokens", max_tokens}};
}

nlohmann::json LmUsage::ToJson() const {
  return {{"calls", calls},
          {"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"errors", errors},
          {"cache_hits", cache_hits}};
}

nlohmann::json LmErrorFrame(const nlohmann::json& id, const Status& status) {
  nlohmann::json details = nlohmann::json::parse(status.details_json(), nullptr, false);
  nlohmann::json upstream = nullptr;
  if (details.is_object() && details.contains("status")) upstream = details["status"];
  std::string type = status.reason().empty() ? std::string(kLmUnavailable) : status.reason();
  nlohmann::json error = {{"type", type}, {"message", status.message()}, {"status", upstream}};
  for (const char* key : {"endpoint", "limit", "value"}) {
    if (details.is_object() && details.contains(key)) error[key] = details[key];
  }
  return {{"type", "lm_response"}, {"id", id}, {"error", error}};
}

LmGateway::LmGateway(LmConfig config, std::map<std::string, std::unique_ptr<LmClient>> clients)
    : config_(std::move(config)), clients_(std::move(clients)) {
  uint64_t slots = 0;
  for (const auto& [name, endpoint] : config_.endpoints) slots += endpoint.max_concurrent;
  size_t count = static_cast<size_t>(std::clamp<uint64_t>(slots, 4, 64));
  for (size_t i = 0; i < count; ++i) threads_.emplace_back([this] { Run(); });
}

Result<std::unique_ptr<LmGateway>> LmGateway::Create(const LmConfig& config) {
  std::map<std::string, std::unique_ptr<LmClient>> clients;
  for (const auto& [name, endpoint] : config.endpoints) {
    CORRAL_ASSIGN_OR_RETURN(clients[name], LmClient::Create(endpoint));
    kLog.Info(kNoSession, "model endpoint `{}`: model `{}` at {}", name, endpoint.model,
              endpoint.base_url);
  }
  return std::unique_ptr<LmGateway>(new LmGateway(config, std::move(clients)));
}

LmGateway::~LmGateway() {
  std::deque<Task> left;
  {
    std::lock_guard lock(queue_mutex_);
    stopping_ = true;
    left.swap(queue_);
  }
  queue_ready_.notify_all();
  for (const auto& [name, client] : clients_) client->Cancel();  // no waiting on a stalled model
  for (std::thread& thread : threads_) thread.join();
  for (Task& task : left) {
    task.reply(LmErrorFrame(task.frame.value("id", nlohmann::json()),
                            Status::Unavailable("the daemon is shutting down")
                                .WithReason(std::string(kLmUnavailable))));
  }
}

LmSettings LmGateway::Defaults() const {
  LmSettings settings;
  settings.endpoint = config_.default_endpoint;
  return settings;
}

Result<LmSettings> LmGateway::ParseSettings(const nlohmann::json& object,
                                            const LmSettings& base) const {
  if (object.is_null()) return base;
  if (!object.is_object()) return InvalidField("lm", "must be an object");
  LmSettings settings = base;
  for (const auto& [key, value] : object.items()) {
    if (key == "endpoint") {
      if (!value.is_string()) return InvalidField("lm.endpoint", "must be a string");
      settings.endpoint = value.get<std::string>();
    } else if (key == "temperature") {
      CORRAL_ASSIGN_OR_RETURN(settings.temperature, Temperature(value, "lm.temperature"));
    } else if (key == "max_tokens") {
      CORRAL_ASSIGN_OR_RETURN(settings.max_tokens, MaxTokens(value, "lm.max_tokens"));
    } else {
      return InvalidField("lm." + key.substr(0, 64),
                          "unknown setting (endpoint, temperature, max_tokens)");
    }
  }
  if (!settings.endpoint.empty() && clients_.count(settings.endpoint) == 0) {
    std::vector<std::string> known;
    for (const auto& [name, client] : clients_) known.push_back(name);
    nlohmann::json details = {{"field", "lm.endpoint"}, {"endpoints", known}};
    return Status::InvalidArgument(
               fmt::format("lm.endpoint: `{}` is not a configured model endpoint (known: {})",
                           settings.endpoint.substr(0, 64),
                           known.empty() ? "none" : fmt::format("{}", fmt::join(known, ", "))))
        .WithReason("unknown_lm_endpoint")
        .WithDetails(details.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  return settings;
}

void LmGateway::SetSession(const std::string& session_id, const std::string& tenant,
                           const LmSettings& settings, std::weak_ptr<const void> owner) {
  std::lock_guard lock(mutex_);
  // Entries of ended sessions are swept when the map has doubled since the last sweep: a
  // sweep on every create made creates O(live sessions) (x8 slower at 10,000 pool sessions).
  if (sessions_.size() >= sweep_at_) {
    std::erase_if(sessions_, [](const auto& entry) { return entry.second.owner.expired(); });
    sweep_at_ = std::max<size_t>(kMinSweep, 2 * sessions_.size());
  }
  SessionState& state = sessions_[session_id];
  state = SessionState{};
  state.tenant = tenant;
  state.settings = settings;
  state.owner = std::move(owner);
}

Result<LmSettings> LmGateway::Configure(const std::string& session_id,
                                        const nlohmann::json& object) {
  LmSettings current;
  {
    std::lock_guard lock(mutex_);
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) {
      return Status::NotFound(fmt::format("session `{}` has no LM state", session_id))
          .WithReason("session_not_found");
    }
    current = it->second.settings;
  }
  CORRAL_ASSIGN_OR_RETURN(LmSettings settings, ParseSettings(object, current));
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) {
    return Status::NotFound(fmt::format("session `{}` ended", session_id))
        .WithReason("session_not_found");
  }
  it->second.settings = settings;
  return settings;
}

void LmGateway::ForgetSession(const std::string& session_id) {
  std::lock_guard lock(mutex_);
  sessions_.erase(session_id);
}

nlohmann::json LmGateway::SessionInfo(const std::string& session_id) const {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return nullptr;
  nlohmann::json info = it->second.settings.ToJson();
  info["usage"] = it->second.usage.ToJson();
  return info;
}

nlohmann::json LmGateway::Endpoints() const {
  nlohmann::json endpoints = nlohmann::json::array();
  for (const auto& [name, client] : clients_) {
    const LmEndpointConfig& config = client->config();
    endpoints.push_back({{"name", name},
                         {"model", config.model},
                         {"base_url", config.base_url},
                         {"timeout_ms", config.timeout.count()},
                         {"retries", config.retries},
                         {"max_concurrent", config.max_concurrent}});
  }
  nlohmann::json default_endpoint = nullptr;
  if (!config_.default_endpoint.empty()) default_endpoint = config_.default_endpoint;
  return {{"default_endpoint", default_endpoint}, {"endpoints", endpoints}};
}

void LmGateway::Submit(LmCaller caller, nlohmann::json frame, Reply reply) {
  {
    std::lock_guard lock(queue_mutex_);
    if (!stopping_ && queue_.size() < kMaxQueued) {
      queue_.push_back(Task{std::move(caller), std::move(frame), std::move(reply)});
      queue_ready_.notify_one();
      return;
    }
  }
  Status full = Status::ResourceExhausted("the model gateway's queue is full")
                    .WithReason(std::string(kLmRateLimited));
  reply(LmErrorFrame(frame.value("id", nlohmann::json()), full));
}

void LmGateway::Run() {
  while (true) {
    Task task;
    {
      std::unique_lock lock(queue_mutex_);
      queue_ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    nlohmann::json reply;
    try {
      reply = Serve(task.caller, task.frame);
    } catch (const std::exception& e) {  // a JSON type error from an odd frame, at worst
      kLog.Error(task.caller.log_context, "model request failed unexpectedly: {}", e.what());
      nlohmann::json id =
          task.frame.is_object() ? task.frame.value("id", nlohmann::json()) : nullptr;
      reply = LmErrorFrame(id, Status::Internal("the model request could not be served")
                                   .WithReason(std::string(kLmInvalidRequest)));
    }
    task.reply(reply);
  }
}

// A request is served as a checklist: check the frame and resolve the session's settings,
// answer from the cache, admit it against the quotas, call the endpoint, account.
nlohmann::json LmGateway::Serve(const LmCaller& caller, const nlohmann::json& frame) {
  nlohmann::json id = frame.value("id", nlohmann::json());
  Result<Request> request = Prepare(caller, frame);
  Result<LmCompletion> result = request.ok() ? Lookup(*request) : request.status();
  if (result.ok()) return ResponseFrame(id, *result, true);
  if (request.ok() && result.status().reason() == "cache_miss") {
    Status admitted = Admit(caller);
    if (admitted.ok()) {
      result = clients_.at(request->endpoint)
                   ->Complete(request->chat, ModelDeadline(caller.deadline), caller.log_context);
    } else {
      result = admitted;
    }
  }
  Request unprepared;
  unprepared.session_id = caller.session_id;
  Account(caller, request.ok() ? *request : unprepared, result);
  if (!result.ok()) {
    kLog.Info(caller.log_context, "model request failed: {}", result.status().message());
    return LmErrorFrame(id, result.status());
  }
  return ResponseFrame(id, *result, false);
}

Result<LmGateway::Request> LmGateway::Prepare(const LmCaller& caller, const nlohmann::json& frame) {
  auto id = frame.find("id");
  if (id == frame.end() || !id->is_string() || id->get<std::string>().size() > 64) {
    return Invalid("an lm_request needs a string `id` of at most 64 characters");
  }
  CORRAL_TRY(CheckMessages(frame.value("messages", nlohmann::json())));
  nlohmann::json overrides = frame.value("settings", nlohmann::json::object());
  if (!overrides.is_object() || overrides.contains("endpoint")) {
    return Invalid("`settings` must be an object of temperature and max_tokens");
  }

  LmSettings base;
  {
    std::lock_guard lock(mutex_);
    auto it = sessions_.find(caller.session_id);
    if (it == sessions_.end()) return NotConfigured("this session has no model settings");
    base = it->second.settings;
  }
  if (base.endpoint.empty()) {
    return NotConfigured(
        "no model endpoint is configured for this session: the daemon needs "
        "`lm.endpoints` and the session an `lm.endpoint` (or `lm.default_endpoint`)");
  }
  Result<LmSettings> settings = ParseSettings(overrides, base);
  if (!settings.ok()) return Invalid(settings.status().message());

  Request request;
  request.session_id = caller.session_id;
  request.endpoint = settings->endpoint;
  request.chat.messages = frame["messages"];
  request.chat.temperature = settings->temperature;
  request.chat.max_tokens = settings->max_tokens;
  // Identical requests at temperature 0 are expected to get identical answers.
  if (config_.cache && settings->temperature == 0) {
    request.cache_key = fmt::format(
        "{}\n{}\n{}", request.endpoint, request.chat.max_tokens,
        request.chat.messages.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  return request;
}

Result<LmCompletion> LmGateway::Lookup(const Request& request) {
  Status miss = Status::NotFound("not cached").WithReason("cache_miss");
  if (request.cache_key.empty()) return miss;
  std::lock_guard lock(mutex_);
  auto session = sessions_.find(request.session_id);
  if (session == sessions_.end()) return miss;
  auto hit = session->second.cache.find(request.cache_key);
  if (hit == session->second.cache.end()) return miss;
  ++session->second.usage.cache_hits;
  return hit->second;
}

Status LmGateway::Admit(const LmCaller& caller) {
  const LmLimitsConfig& limits = config_.limits;
  Clock::time_point now = Clock::now();
  std::lock_guard lock(mutex_);
  auto session = sessions_.find(caller.session_id);
  if (session == sessions_.end()) return NotConfigured("this session has no model settings");
  SessionState& state = session->second;
  TenantState& tenant = tenants_[state.tenant];
  Roll(state.minute, kMinute, now);
  Roll(state.day, kDay, now);
  Roll(tenant.minute, kMinute, now);
  Roll(tenant.day, kDay, now);
  if (limits.session_calls_per_minute > 0 &&
      state.minute.count >= limits.session_calls_per_minute) {
    return RateLimited("lm.limits.session_calls_per_minute", limits.session_calls_per_minute,
                       "the session's model calls per minute");
  }
  if (limits.tenant_calls_per_minute > 0 && tenant.minute.count >= limits.tenant_calls_per_minute) {
    return RateLimited("lm.limits.tenant_calls_per_minute", limits.tenant_calls_per_minute,
                       "the tenant's model calls per minute");
  }
  if (limits.session_tokens_per_day > 0 && state.day.count >= limits.session_tokens_per_day) {
    return RateLimited("lm.limits.session_tokens_per_day", limits.session_tokens_per_day,
                       "the session's model tokens per day");
  }
  if (limits.tenant_tokens_per_day > 0 && tenant.day.count >= limits.tenant_tokens_per_day) {
    return RateLimited("lm.limits.tenant_tokens_per_day", limits.tenant_tokens_per_day,
                       "the tenant's model tokens per day");
  }
  ++state.minute.count;
  ++tenant.minute.count;
  return Status::Ok();
}

void LmGateway::Account(const LmCaller& caller, const Request& request,
                        const Result<LmCompletion>& result) {
  std::lock_guard lock(mutex_);
  auto session = sessions_.find(caller.session_id);
  if (session == sessions_.end()) return;
  SessionState& state = session->second;
  if (!result.ok()) {
    ++state.usage.errors;
    return;
  }
  uint64_t tokens = result->prompt_tokens + result->completion_tokens;
  ++state.usage.calls;
  state.usage.prompt_tokens += result->prompt_tokens;
  state.usage.completion_tokens += result->completion_tokens;
  state.day.count += tokens;
  tenants_[state.tenant].day.count += tokens;
  if (request.cache_key.empty() || state.cache.count(request.cache_key) > 0) return;
  state.cache.emplace(request.cache_key, *result);
  state.cache_order.push_back(request.cache_key);
  if (state.cache_order.size() > config_.cache_entries) {
    state.cache.erase(state.cache_order.front());
    state.cache_order.pop_front();
  }
}

}  // namespace corral
