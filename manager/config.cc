#include "manager/config.h"

#include <charconv>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "sandbox/policy.h"

namespace corral {
namespace {

namespace fs = std::filesystem;

// Applies one scalar to the config. `base_dir` resolves relative paths; `name` is the path
// segment a `*` in the row matched (an endpoint's name), empty for plain rows.
using Setter = Status (*)(DaemonConfig& config, const std::string& value,
                          const std::string& base_dir, const std::string& name);

struct ConfigRow {
  std::string_view path;
  Setter set;
};

Status SetCount(const std::string& value, uint64_t* out) {
  uint64_t parsed = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), parsed);
  if (ec != std::errc() || end != value.data() + value.size() || value.empty()) {
    return Status::InvalidArgument(fmt::format("`{}` is not a non-negative integer", value));
  }
  *out = parsed;
  return Status::Ok();
}

Status SetSize(const std::string& value, uint64_t* out) {
  CORRAL_ASSIGN_OR_RETURN(*out, ParseSize(value));
  return Status::Ok();
}

Status SetDuration(const std::string& value, std::chrono::milliseconds* out) {
  CORRAL_ASSIGN_OR_RETURN(*out, ParseDuration(value));
  return Status::Ok();
}

Status SetPath(const std::string& value, const std::string& base_dir, std::string* out) {
  if (value.empty()) return Status::InvalidArgument("must not be empty");
  fs::path path(value);
  if (path.is_relative()) path = fs::path(base_dir) / path;
  *out = path.lexically_normal().string();
  if (out->size() > 1 && out->back() == '/') out->pop_back();
  return Status::Ok();
}

Status SetOptionalPath(const std::string& value, const std::string& base_dir, std::string* out) {
  if (value.empty()) {
    out->clear();
    return Status::Ok();
  }
  return SetPath(value, base_dir, out);
}

Status SetName(const std::string& value, std::string* out) {
  // Names end up in file names and cgroup paths: no separators, no dot-dot.
  static const std::regex kName("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$");
  if (!std::regex_match(value, kName) || value.find("..") != std::string::npos) {
    return Status::InvalidArgument(
        fmt::format("`{}` must match ^[A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}$", value));
  }
  *out = value;
  return Status::Ok();
}

Status SetLogLevel(const std::string& value, LogLevel* out) {
  if (!ParseLogLevel(value, out)) {
    return Status::InvalidArgument(
        fmt::format("`{}` is not one of debug, info, warn, error", value));
  }
  return Status::Ok();
}

Status SetLogFormat(const std::string& value, LogFormat* out) {
  if (!ParseLogFormat(value, out)) {
    return Status::InvalidArgument(fmt::format("`{}` is not one of auto, text, json", value));
  }
  return Status::Ok();
}

Status SetBackend(const std::string& value, std::string* out) {
  if (value != "process" && value != "pool") {
    return Status::InvalidArgument(fmt::format("`{}` is not a backend (process, pool)", value));
  }
  *out = value;
  return Status::Ok();
}

Status SetAffinity(const std::string& value, std::string* out) {
  if (value != "spread" && value != "strict") {
    return Status::InvalidArgument(fmt::format("`{}` is not one of spread, strict", value));
  }
  *out = value;
  return Status::Ok();
}

Status SetListen(const std::string& value, std::string* out) {
  CORRAL_TRY(ParseListenAddress(value).status());
  *out = value;
  return Status::Ok();
}

// The worker's interpreter and its libraries are bound read-only into every sandbox. One
// under a home directory would expose (and run) files a user controls.
Status SetPython(const std::string& value, std::string* out) {
  fs::path path = fs::path(value).lexically_normal();
  if (!path.is_absolute()) return Status::InvalidArgument("must be an absolute path");
  std::string text = path.string();
  for (std::string_view home : {"/home", "/root"}) {
    if (text == home || text.starts_with(std::string(home) + "/")) {
      return Status::InvalidArgument(
          fmt::format("`{}` is under {}: use the system interpreter", value, home));
    }
  }
  *out = text;
  return Status::Ok();
}

Status SetMillis(const std::string& value, std::chrono::milliseconds* out, bool seconds) {
  uint64_t count = 0;
  CORRAL_TRY(SetCount(value, &count));
  *out = std::chrono::milliseconds(seconds ? count * 1000 : count);
  return Status::Ok();
}

#define CORRAL_ROW(key, body)                                              \
  {                                                                        \
    key,                                                                   \
        [](DaemonConfig& c, const std::string& v, const std::string& base, \
           const std::string& w) -> Status {                               \
          (void)base;                                                      \
          (void)w;                                                         \
          return body;                                                     \
        }                                                                  \
  }

// One row per key; docs/config.md has the same rows with meanings and defaults.
const std::vector<ConfigRow>& Table() {
  static const std::vector<ConfigRow> kTable = {
      CORRAL_ROW("listen", SetListen(v, &c.listen)),
      CORRAL_ROW("state_dir", SetPath(v, base, &c.state_dir)),
      CORRAL_ROW("policies_dir", SetPath(v, base, &c.policies_dir)),
      CORRAL_ROW("default_policy", SetName(v, &c.default_policy)),
      CORRAL_ROW("worker.python", SetPython(v, &c.worker_python)),
      CORRAL_ROW("worker.dir", SetPath(v, base, &c.worker_dir)),
      CORRAL_ROW("log.level", SetLogLevel(v, &c.log_level)),
      CORRAL_ROW("log.format", SetLogFormat(v, &c.log_format)),
      CORRAL_ROW("limits.max_request_bytes", SetSize(v, &c.limits.max_request_bytes)),
      CORRAL_ROW("limits.max_frame_bytes", SetSize(v, &c.limits.max_frame_bytes)),
      CORRAL_ROW("limits.max_output_bytes", SetSize(v, &c.limits.max_output_bytes)),
      CORRAL_ROW("limits.max_result_bytes", SetSize(v, &c.limits.max_result_bytes)),
      CORRAL_ROW("default_backend", SetBackend(v, &c.default_backend)),
      CORRAL_ROW("process.max_concurrent_sessions",
                 SetCount(v, &c.process.max_concurrent_sessions)),
      CORRAL_ROW("process.max_idle_seconds", SetMillis(v, &c.process.max_idle, true)),
      CORRAL_ROW("process.idle_check_interval", SetDuration(v, &c.process.idle_check_interval)),
      CORRAL_ROW("process.call_timeout", SetDuration(v, &c.process.call_timeout)),
      CORRAL_ROW("process.start_timeout", SetDuration(v, &c.process.start_timeout)),
      CORRAL_ROW("process.max_queued_calls", SetCount(v, &c.process.max_queued_calls)),
      CORRAL_ROW("process.memory_budget", SetSize(v, &c.process.memory_budget)),
      CORRAL_ROW("pool.size", SetCount(v, &c.pool.size)),
      CORRAL_ROW("pool.policy", SetName(v, &c.pool.policy)),
      CORRAL_ROW("pool.max_concurrent_sessions", SetCount(v, &c.pool.max_concurrent_sessions)),
      CORRAL_ROW("pool.max_idle_seconds", SetMillis(v, &c.pool.max_idle, true)),
      CORRAL_ROW("pool.call_timeout", SetDuration(v, &c.pool.call_timeout)),
      CORRAL_ROW("pool.max_queue_size", SetCount(v, &c.pool.max_queue_size)),
      CORRAL_ROW("pool.queue_timeout", SetDuration(v, &c.pool.queue_timeout)),
      CORRAL_ROW("pool.affinity", SetAffinity(v, &c.pool.affinity)),
      CORRAL_ROW("pool.max_workers_per_tenant", SetCount(v, &c.pool.max_workers_per_tenant)),
      CORRAL_ROW("pool.worker_max_requests", SetCount(v, &c.pool.worker_max_requests)),
      CORRAL_ROW("pool.worker_max_memory", SetSize(v, &c.pool.worker_max_memory)),
      CORRAL_ROW("pool.max_start_failures", SetCount(v, &c.pool.max_start_failures)),
      CORRAL_ROW("pool.restart_backoff", SetDuration(v, &c.pool.restart_backoff)),
      CORRAL_ROW("pool.store", SetOptionalPath(v, base, &c.pool.store)),
      CORRAL_ROW("cgroup.parent", SetName(v, &c.cgroup_parent)),
      CORRAL_ROW("http.threads", SetCount(v, &c.http.threads)),
      CORRAL_ROW("http.max_connections", SetCount(v, &c.http.max_connections)),
      CORRAL_ROW("http.request_timeout", SetDuration(v, &c.http.request_timeout)),
      CORRAL_ROW("http.read_timeout", SetDuration(v, &c.http.read_timeout)),
      CORRAL_ROW("http.write_timeout", SetDuration(v, &c.http.write_timeout)),
      CORRAL_ROW("http.keep_alive_max", SetCount(v, &c.http.keep_alive_max)),
      // The language-model gateway (manager/lm_config.h). `*` is an endpoint's name.
      CORRAL_ROW("lm.default_endpoint", SetLmText(v, &c.lm.default_endpoint)),
      CORRAL_ROW("lm.cache", SetBool(v, &c.lm.cache)),
      CORRAL_ROW("lm.cache_entries", SetCount(v, &c.lm.cache_entries)),
      CORRAL_ROW("lm.limits.session_calls_per_minute",
                 SetCount(v, &c.lm.limits.session_calls_per_minute)),
      CORRAL_ROW("lm.limits.tenant_calls_per_minute",
                 SetCount(v, &c.lm.limits.tenant_calls_per_minute)),
      CORRAL_ROW("lm.limits.session_tokens_per_day",
                 SetCount(v, &c.lm.limits.session_tokens_per_day)),
      CORRAL_ROW("lm.limits.tenant_tokens_per_day",
                 SetCount(v, &c.lm.limits.tenant_tokens_per_day)),
      CORRAL_ROW("lm.endpoints.*.base_url", SetLmUrl(v, &LmEndpoint(c.lm, w).base_url)),
      CORRAL_ROW("lm.endpoints.*.model", SetLmText(v, &LmEndpoint(c.lm, w).model)),
      CORRAL_ROW("lm.endpoints.*.api_key_env", SetLmEnvName(v, &LmEndpoint(c.lm, w).api_key_env)),
      CORRAL_ROW("lm.endpoints.*.api_key_file",
                 SetPath(v, base, &LmEndpoint(c.lm, w).api_key_file)),
      CORRAL_ROW("lm.endpoints.*.timeout", SetDuration(v, &LmEndpoint(c.lm, w).timeout)),
      CORRAL_ROW("lm.endpoints.*.retries", SetCount(v, &LmEndpoint(c.lm, w).retries)),
      CORRAL_ROW("lm.endpoints.*.retry_backoff",
                 SetDuration(v, &LmEndpoint(c.lm, w).retry_backoff)),
      CORRAL_ROW("lm.endpoints.*.max_concurrent", SetCount(v, &LmEndpoint(c.lm, w).max_concurrent)),
  };
  return kTable;
}

#undef CORRAL_ROW

std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> segments;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    segments.push_back(path.substr(start, dot - start));
    if (dot == std::string_view::npos) return segments;
    start = dot + 1;
  }
}

// Whether the first segments of `row` match all of `path`'s; `*` in a row matches any one
// non-empty segment, which is stored in `*wildcard`.
bool MatchesPrefix(std::string_view row, std::string_view path, std::string* wildcard) {
  std::vector<std::string_view> pattern = Segments(row), segments = Segments(path);
  if (segments.size() > pattern.size()) return false;
  for (size_t i = 0; i < segments.size(); ++i) {
    if (pattern[i] == "*" && !segments[i].empty()) {
      if (wildcard != nullptr) *wildcard = std::string(segments[i]);
    } else if (pattern[i] != segments[i]) {
      return false;
    }
  }
  return true;
}

const ConfigRow* FindRow(std::string_view path, std::string* wildcard = nullptr) {
  for (const ConfigRow& row : Table()) {
    if (Segments(row.path).size() == Segments(path).size() &&
        MatchesPrefix(row.path, path, wildcard)) {
      return &row;
    }
  }
  return nullptr;
}

bool IsSection(std::string_view prefix) {
  for (const ConfigRow& row : Table()) {
    if (Segments(row.path).size() > Segments(prefix).size() &&
        MatchesPrefix(row.path, prefix, nullptr)) {
      return true;
    }
  }
  return false;
}

// Walks the YAML tree into "path" -> scalar text, refusing unknown keys and wrong shapes.
Status Flatten(const YAML::Node& node, const std::string& prefix,
               std::map<std::string, std::string>* values) {
  for (const auto& entry : node) {
    std::string key = entry.first.Scalar();
    std::string path = prefix.empty() ? key : prefix + "." + key;
    const YAML::Node& value = entry.second;
    if (IsSection(path)) {
      if (!value.IsMap()) return Status::InvalidArgument(fmt::format("`{}`: must be a map", path));
      CORRAL_TRY(Flatten(value, path, values));
      continue;
    }
    if (FindRow(path) == nullptr) {
      return Status::InvalidArgument(fmt::format("`{}`: unknown key", path));
    }
    if (!value.IsScalar()) {
      return Status::InvalidArgument(fmt::format("`{}`: must be a single value", path));
    }
    (*values)[path] = value.Scalar();
  }
  return Status::Ok();
}

Status ApplyOverrides(const std::vector<std::string>& overrides,
                      std::map<std::string, std::string>* values) {
  for (const std::string& text : overrides) {
    size_t equals = text.find('=');
    if (equals == std::string::npos) {
      return Status::InvalidArgument(fmt::format("--set `{}`: expected path=value", text));
    }
    std::string path = text.substr(0, equals);
    if (FindRow(path) == nullptr) {
      return Status::InvalidArgument(fmt::format("--set `{}`: unknown key", path));
    }
    (*values)[path] = text.substr(equals + 1);
  }
  return Status::Ok();
}

Status CheckPoolConfig(const PoolBackendConfig& pool) {
  if (pool.size > 256) return Status::InvalidArgument("`pool.size`: must be at most 256");
  if (pool.max_concurrent_sessions == 0 || pool.max_queue_size == 0) {
    return Status::InvalidArgument(
        "`pool.max_concurrent_sessions`, `pool.max_queue_size`: must be at least 1");
  }
  if (pool.call_timeout.count() <= 0 || pool.queue_timeout.count() <= 0) {
    return Status::InvalidArgument("`pool.call_timeout`, `pool.queue_timeout`: must be > 0");
  }
  if (pool.worker_max_requests == 0 || pool.max_start_failures == 0) {
    return Status::InvalidArgument(
        "`pool.worker_max_requests`, `pool.max_start_failures`: must be at least 1");
  }
  return Status::Ok();
}

Status CheckWhole(const DaemonConfig& config) {
  if (config.process.max_concurrent_sessions == 0) {
    return Status::InvalidArgument("`process.max_concurrent_sessions`: must be at least 1");
  }
  if (config.http.max_connections == 0 || config.http.max_connections > 65536) {
    return Status::InvalidArgument("`http.max_connections`: must be between 1 and 65536");
  }
  if (config.http.threads == 0 || config.http.threads > config.http.max_connections) {
    return Status::InvalidArgument("`http.threads`: must be between 1 and `http.max_connections`");
  }
  if (config.http.request_timeout.count() <= 0 || config.http.keep_alive_max == 0) {
    return Status::InvalidArgument("`http.request_timeout`, `http.keep_alive_max`: must be > 0");
  }
  if (config.process.call_timeout.count() <= 0 || config.process.start_timeout.count() <= 0) {
    return Status::InvalidArgument("`process.call_timeout`, `process.start_timeout`: must be > 0");
  }
  if (config.process.idle_check_interval.count() <= 0) {
    return Status::InvalidArgument("`process.idle_check_interval`: must be > 0");
  }
  if (config.limits.max_frame_bytes < 1024) {
    return Status::InvalidArgument("`limits.max_frame_bytes`: must be at least 1Ki");
  }
  CORRAL_TRY(CheckPoolConfig(config.pool));
  CORRAL_TRY(CheckLmConfig(config.lm));
  return Status::Ok();
}

}  // namespace

Result<ListenAddress> ParseListenAddress(std::string_view text) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Status::InvalidArgument(fmt::format("`{}` is not HOST:PORT", text));
  }
  ListenAddress address;
  address.host = std::string(text.substr(0, colon));
  std::string_view port = text.substr(colon + 1);
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), address.port);
  if (ec != std::errc() || end != port.data() + port.size() || port.empty() || address.port < 0 ||
      address.port > 65535) {
    return Status::InvalidArgument(fmt::format("`{}`: port must be 0..65535", text));
  }
  return address;
}

Result<DaemonConfig> ParseConfig(const std::string& yaml_text, const std::string& source,
                                 const std::string& base_dir,
                                 const std::vector<std::string>& overrides) {
  DaemonConfig config;
  config.source = source;
  config.policies_dir = std::string(CORRAL_SOURCE_DIR) + "/policies";
  config.worker_dir = std::string(CORRAL_SOURCE_DIR) + "/images/python-worker";

  std::map<std::string, std::string> values;
  try {
    YAML::Node root = YAML::Load(yaml_text);
    if (root.IsDefined() && !root.IsNull()) {
      if (!root.IsMap()) return Status::InvalidArgument(fmt::format("{}: must be a map", source));
      CORRAL_TRY_CTX(Flatten(root, "", &values), "{}", source);
    }
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(fmt::format("{}: not YAML: {}", source, e.what()));
  }
  CORRAL_TRY_CTX(ApplyOverrides(overrides, &values), "{}", source);

  for (const auto& [path, value] : values) {
    std::string wildcard;
    const ConfigRow* row = FindRow(path, &wildcard);
    CORRAL_TRY_CTX(row->set(config, value, base_dir, wildcard), "{}: `{}`", source, path);
  }
  CORRAL_TRY_CTX(CheckWhole(config), "{}", source);
  if (config.pool.store.empty()) config.pool.store = config.state_dir + "/pool.db";
  return config;
}

Result<DaemonConfig> LoadConfigFile(const std::string& path,
                                    const std::vector<std::string>& overrides) {
  std::ifstream file(path);
  if (!file) return ErrnoStatus("read config `{}`", path);
  std::stringstream text;
  text << file.rdbuf();
  std::string base_dir = fs::absolute(fs::path(path)).parent_path().string();
  return ParseConfig(text.str(), path, base_dir, overrides);
}

std::vector<std::string> ConfigKeys() {
  std::vector<std::string> keys;
  for (const ConfigRow& row : Table()) {
    std::string key(row.path);
    if (size_t star = key.find('*'); star != std::string::npos) key.replace(star, 1, "<name>");
    keys.push_back(key);
  }
  return keys;
}

}  // namespace corral
