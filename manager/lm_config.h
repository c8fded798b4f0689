// The language-model gateway's part of corrald's config (`lm.*`, docs/config.md): named
// OpenAI-compatible endpoints, the default one, per-session and per-tenant limits, the cache.
//
// An endpoint's API key is never in the config text: the config names an environment variable
// of the daemon or a file, and the key is read once at start (manager/lm_client.h). Neither
// the key nor its source's contents are logged, returned by the API or sent into a sandbox.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "sandbox/status.h"

namespace corral {

struct LmEndpointConfig {
  std::string name;
  std::string base_url;      // http(s)://host[:port][/path], e.g. https://api.openai.com/v1
  std::string model;         // sent as `model` in every request
  std::string api_key_env;   // the daemon's environment variable holding the key, or
  std::string api_key_file;  // a file holding it (trailing newline dropped); neither: no key
  std::chrono::milliseconds timeout{60 * 1000};  // one HTTP attempt
  uint64_t retries = 2;                          // more attempts after a 429 or 5xx
  std::chrono::milliseconds retry_backoff{500};  // before the first retry; doubles each time
  uint64_t max_concurrent = 4;                   // requests in flight to this endpoint
};

// 0 means no limit. Minutes and days are fixed windows starting at the first call in them.
struct LmLimitsConfig {
  uint64_t session_calls_per_minute = 0;
  uint64_t tenant_calls_per_minute = 0;
  uint64_t session_tokens_per_day = 0;
  uint64_t tenant_tokens_per_day = 0;
};

struct LmConfig {
  std::map<std::string, LmEndpointConfig> endpoints;
  std::string default_endpoint;  // empty: sessions have none unless they choose one
  bool cache = true;             // identical temperature-0 requests answered once per session
  uint64_t cache_entries = 256;  // per session; the oldest entry goes first
  LmLimitsConfig limits;
};

// Setters for the config table (manager/config.cc).
Status SetLmUrl(const std::string& value, std::string* out);
Status SetLmEnvName(const std::string& value, std::string* out);
Status SetLmText(const std::string& value, std::string* out);
Status SetBool(const std::string& value, bool* out);
// The endpoint `name`, created on first mention.
LmEndpointConfig& LmEndpoint(LmConfig& config, const std::string& name);
// Checks what single keys cannot: every endpoint complete, the default one configured.
Status CheckLmConfig(const LmConfig& config);

// A base URL split for the HTTP client: "https://h:8443/v1" -> {"https://h:8443", "/v1"}.
struct LmUrl {
  std::string scheme_host_port;
  std::string path;  // without a trailing slash; "" for the root
};
Result<LmUrl> ParseLmUrl(const std::string& url);

}  // namespace corral
