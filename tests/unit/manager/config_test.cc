// corrald's config parser: defaults, every kind of value, and each way a file can be wrong.
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "manager/config.h"

namespace corral {
namespace {

Result<DaemonConfig> Parse(const std::string& yaml, const std::vector<std::string>& sets = {}) {
  return ParseConfig(yaml, "test.yaml", "/etc/corral", sets);
}

TEST_CASE("config: an empty file gives the documented defaults") {
  Result<DaemonConfig> config = Parse("");
  REQUIRE(config.ok());
  CHECK(config->listen == "127.0.0.1:8080");
  CHECK(config->state_dir == "/var/lib/corral");
  CHECK(config->default_policy == "default");
  CHECK(config->worker_python == "/usr/bin/python3");
  CHECK(config->limits.max_request_bytes == 1u << 20);
  CHECK(config->limits.max_frame_bytes == 16u << 20);
  CHECK(config->limits.max_output_bytes == 1u << 20);
  CHECK(config->limits.max_result_bytes == 8u << 20);
  CHECK(config->default_backend == "process");
  CHECK(config->process.max_concurrent_sessions == 100);
  CHECK(config->process.max_idle == std::chrono::seconds(3600));
  CHECK(config->process.idle_check_interval == std::chrono::seconds(60));
  CHECK(config->process.call_timeout == std::chrono::seconds(30));
  CHECK(config->process.start_timeout == std::chrono::seconds(10));
  CHECK(config->cgroup_parent == "corrald");
  CHECK(config->http.threads == 16);
  CHECK(config->http.read_timeout == std::chrono::seconds(5));
  CHECK(config->http.keep_alive_max == 100);
}

TEST_CASE("config: the shipped corral.yaml parses to the defaults") {
  std::ifstream file(std::string(CORRAL_SOURCE_DIR) + "/manager/corral.yaml");
  std::stringstream text;
  text << file.rdbuf();
  Result<DaemonConfig> shipped =
      ParseConfig(text.str(), "corral.yaml", std::string(CORRAL_SOURCE_DIR) + "/manager");
  INFO(shipped.status().ToString());
  REQUIRE(shipped.ok());
  Result<DaemonConfig> defaults = Parse("");
  CHECK(shipped->policies_dir == std::string(CORRAL_SOURCE_DIR) + "/policies");
  CHECK(shipped->worker_dir == std::string(CORRAL_SOURCE_DIR) + "/images/python-worker");
  CHECK(shipped->process.max_idle == defaults->process.max_idle);
  CHECK(shipped->http.threads == defaults->http.threads);
  CHECK(shipped->limits.max_frame_bytes == defaults->limits.max_frame_bytes);
}

TEST_CASE("config: docs/config.md documents every key") {
  std::ifstream file(std::string(CORRAL_SOURCE_DIR) + "/docs/config.md");
  std::stringstream text;
  text << file.rdbuf();
  for (const std::string& key : ConfigKeys()) {
    INFO(key);
    CHECK(text.str().find("`" + key + "`") != std::string::npos);
  }
}

TEST_CASE("config: values of every kind, and --set overrides") {
  Result<DaemonConfig> config = Parse(R"(
listen: 0.0.0.0:9000
state_dir: state
process:
  max_idle_seconds: 5
  idle_check_interval: 250ms
limits:
  max_request_bytes: 64Ki
log:
  level: debug
  format: json
)",
                                      {"process.call_timeout=2s", "listen=127.0.0.1:0"});
  REQUIRE(config.ok());
  CHECK(config->listen == "127.0.0.1:0");
  CHECK(config->state_dir == "/etc/corral/state");  // relative to the config file
  CHECK(config->process.max_idle == std::chrono::seconds(5));
  CHECK(config->process.idle_check_interval == std::chrono::milliseconds(250));
  CHECK(config->process.call_timeout == std::chrono::seconds(2));
  CHECK(config->limits.max_request_bytes == 64u << 10);
  CHECK(config->log_level == LogLevel::kDebug);
  CHECK(config->log_format == LogFormat::kJson);
}

TEST_CASE("config: bad files are errors naming the path") {
  struct Case {
    std::string yaml;
    std::vector<std::string> sets;
    std::string expected;  // in the message
  };
  const std::vector<Case> cases = {
      {"bogus: 1", {}, "`bogus`: unknown key"},
      {"process:\n  bogus: 1", {}, "`process.bogus`: unknown key"},
      {"process: 5", {}, "`process`: must be a map"},
      {"listen: [1, 2]", {}, "`listen`: must be a single value"},
      {"listen: nonsense", {}, "`listen`"},
      {"listen: 127.0.0.1:99999", {}, "port must be"},
      {"process:\n  max_concurrent_sessions: many", {}, "process.max_concurrent_sessions"},
      {"process:\n  max_concurrent_sessions: 0", {}, "at least 1"},
      {"process:\n  call_timeout: soon", {}, "process.call_timeout"},
      {"limits:\n  max_frame_bytes: 12Q", {}, "limits.max_frame_bytes"},
      {"log:\n  level: loud", {}, "log.level"},
      {"log:\n  format: xml", {}, "log.format"},
      {"worker:\n  python: python3", {}, "absolute"},
      {"worker:\n  python: /home/me/.pyenv/bin/python3", {}, "under /home"},
      {"worker:\n  python: /root/python3", {}, "under /root"},
      {"pool:\n  affinity: sticky", {}, "pool.affinity"},
      {"pool:\n  size: 1000", {}, "pool.size"},
      {"default_backend: lambda", {}, "default_backend"},
      {"default_policy: ../etc", {}, "default_policy"},
      {"cgroup:\n  parent: a/b", {}, "cgroup.parent"},
      {"http:\n  threads: 0", {}, "http.threads"},
      {"listen: [", {}, "not YAML"},
      {"", {"nope=1"}, "--set `nope`: unknown key"},
      {"", {"listen"}, "expected path=value"},
      {"lm:\n  bogus: 1", {}, "`lm.bogus`: unknown key"},
      {"lm:\n  endpoints:\n    a:\n      colour: red", {}, "`lm.endpoints.a.colour`: unknown key"},
      {"lm:\n  endpoints:\n    a:\n      model: m", {}, "`base_url` is required"},
      {"", {"lm.endpoints.a.base_url=http://h/v1"}, "`lm.endpoints.a`: `model` is required"},
      {"", {"lm.endpoints.a.base_url=ftp://h/v1"}, "lm.endpoints.a.base_url"},
      {"", {"lm.endpoints.a.base_url=https://user:pw@h/v1"}, "no user"},
      {"",
       {"lm.endpoints.a.base_url=http://h", "lm.endpoints.a.model=m",
        "lm.endpoints.a.api_key_env=K", "lm.endpoints.a.api_key_file=/k"},
       "not both"},
      {"", {"lm.endpoints.a.api_key_env=not a name"}, "environment variable"},
      {"",
       {"lm.endpoints.a.max_concurrent=0", "lm.endpoints.a.base_url=http://h",
        "lm.endpoints.a.model=m"},
       "max_concurrent"},
      {"", {"lm.endpoints.bad!.base_url=http://h", "lm.endpoints.bad!.model=m"}, "`bad!`"},
      {"", {"lm.default_endpoint=missing"}, "`missing` is not an endpoint"},
      {"", {"lm.cache=sometimes"}, "lm.cache"},
  };
  for (const Case& c : cases) {
    Result<DaemonConfig> config = Parse(c.yaml, c.sets);
    INFO(c.yaml << " -> " << config.status().ToString());
    REQUIRE_FALSE(config.ok());
    CHECK(config.status().category() == ErrorCategory::kInvalidArgument);
    CHECK(config.status().message().find(c.expected) != std::string::npos);
    CHECK(config.status().message().find("test.yaml") != std::string::npos);
  }
}

TEST_CASE("config: model endpoints by name, with defaults, limits and the cache") {
  Result<DaemonConfig> config = Parse(
      "lm:\n  default_endpoint: local\n  cache: false\n  limits:\n"
      "    tenant_tokens_per_day: 5000\n  endpoints:\n    local:\n"
      "      base_url: http://127.0.0.1:8000/v1/\n      model: llama\n    cloud:\n"
      "      base_url: https://api.example.com/v1\n      model: big\n"
      "      api_key_file: keys/cloud\n      timeout: 5s\n",
      {"lm.endpoints.cloud.max_concurrent=9"});
  INFO(config.status().ToString());
  REQUIRE(config.ok());
  CHECK(config->lm.default_endpoint == "local");
  CHECK_FALSE(config->lm.cache);
  CHECK(config->lm.limits.tenant_tokens_per_day == 5000);
  CHECK(config->lm.limits.session_calls_per_minute == 0);
  REQUIRE(config->lm.endpoints.size() == 2);
  const LmEndpointConfig& local = config->lm.endpoints.at("local");
  CHECK(local.name == "local");
  CHECK(local.model == "llama");
  CHECK(local.timeout == std::chrono::seconds(60));
  CHECK(local.retries == 2);
  CHECK(local.max_concurrent == 4);
  const LmEndpointConfig& cloud = config->lm.endpoints.at("cloud");
  CHECK(cloud.api_key_file == "/etc/corral/keys/cloud");
  CHECK(cloud.timeout == std::chrono::seconds(5));
  CHECK(cloud.max_concurrent == 9);

  Result<LmUrl> url = ParseLmUrl("http://127.0.0.1:8000/v1/");
  REQUIRE(url.ok());
  CHECK(url->scheme_host_port == "http://127.0.0.1:8000");
  CHECK(url->path == "/v1");
  CHECK(ParseLmUrl("https://api.example.com")->path.empty());

  Result<DaemonConfig> defaults = Parse("");
  REQUIRE(defaults.ok());
  CHECK(defaults->lm.endpoints.empty());
  CHECK(defaults->lm.default_endpoint.empty());
  CHECK(defaults->lm.cache);
}

TEST_CASE("config: listen addresses") {
  CHECK(ParseListenAddress("127.0.0.1:0")->port == 0);
  CHECK(ParseListenAddress("[::1]:8080")->host == "[::1]");
  CHECK_FALSE(ParseListenAddress(":80").ok());
  CHECK_FALSE(ParseListenAddress("host:").ok());
  CHECK_FALSE(ParseListenAddress("host:-1").ok());
}

}  // namespace
}  // namespace corral
