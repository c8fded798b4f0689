#include "manager/lm_config.h"

#include <regex>

#include <fmt/format.h>

namespace corral {

Result<LmUrl> ParseLmUrl(const std::string& url) {
  // Credentials in a URL would be shown wherever endpoints are listed: keys go in
  // api_key_env or api_key_file, so user:password@ is refused.
  static const std::regex kUrl(
      R"(^(https?://[A-Za-z0-9.\-]+|https?://\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[^\s?#@]*)?$)");
  std::smatch match;
  if (!std::regex_match(url, match, kUrl)) {
    return Status::InvalidArgument(
        fmt::format("`{}` is not an http:// or https:// URL with a host, an optional port and "
                    "path, and no user, query or fragment",
                    url));
  }
  LmUrl parsed{match[1].str() + match[2].str(), match[3].str()};
  while (!parsed.path.empty() && parsed.path.back() == '/') parsed.path.pop_back();
  return parsed;
}

Status SetLmUrl(const std::string& value, std::string* out) {
  CORRAL_TRY(ParseLmUrl(value).status());
  *out = value;
  return Status::Ok();
}

Status SetLmEnvName(const std::string& value, std::string* out) {
  static const std::regex kEnvName("^[A-Za-z_][A-Za-z0-9_]{0,127}$");
  if (!std::regex_match(value, kEnvName)) {
    return Status::InvalidArgument(fmt::format("`{}` is not an environment variable name", value));
  }
  *out = value;
  return Status::Ok();
}

Status SetLmText(const std::string& value, std::string* out) {
  *out = value;
  return Status::Ok();
}

Status SetBool(const std::string& value, bool* out) {
  if (value == "true" || value == "yes" || value == "on") {
    *out = true;
  } else if (value == "false" || value == "no" || value == "off") {
    *out = false;
  } else {
    return Status::InvalidArgument(fmt::format("`{}` is not true or false", value));
  }
  return Status::Ok();
}

LmEndpointConfig& LmEndpoint(LmConfig& config, const std::string& name) {
  LmEndpointConfig& endpoint = config.endpoints[name];
  endpoint.name = name;
  return endpoint;
}

namespace {

Status CheckEndpoint(const LmEndpointConfig& endpoint) {
  static const std::regex kName("^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$");
  if (!std::regex_match(endpoint.name, kName)) {
    return Status::InvalidArgument(fmt::format(
        "endpoint name `{}` must match ^[A-Za-z0-9][A-Za-z0-9_-]{{0,63}}$", endpoint.name));
  }
  if (endpoint.base_url.empty()) return Status::InvalidArgument("`base_url` is required");
  if (endpoint.model.empty()) return Status::InvalidArgument("`model` is required");
  if (!endpoint.api_key_env.empty() && !endpoint.api_key_file.empty()) {
    return Status::InvalidArgument("give one of `api_key_env` and `api_key_file`, not both");
  }
  if (endpoint.timeout.count() <= 0) return Status::InvalidArgument("`timeout` must be > 0");
  if (endpoint.max_concurrent == 0 || endpoint.max_concurrent > 256) {
    return Status::InvalidArgument("`max_concurrent` must be between 1 and 256");
  }
  if (endpoint.retries > 10) return Status::InvalidArgument("`retries` must be at most 10");
  return Status::Ok();
}

}  // namespace

Status CheckLmConfig(const LmConfig& config) {
  for (const auto& [name, endpoint] : config.endpoints) {
    CORRAL_TRY_CTX(CheckEndpoint(endpoint), "`lm.endpoints.{}`", name);
  }
  if (!config.default_endpoint.empty() && config.endpoints.count(config.default_endpoint) == 0) {
    return Status::InvalidArgument(
        fmt::format("`lm.default_endpoint`: `{}` is not an endpoint under `lm.endpoints`",
                    config.default_endpoint));
  }
  if (config.cache_entries == 0) {
    return Status::InvalidArgument("`lm.cache_entries`: must be at least 1 (turn `lm.cache` off)");
  }
  return Status::Ok();
}

}  // namespace corral
