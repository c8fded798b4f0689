// corrald's configuration: one YAML file, every key documented in docs/config.md with its
// default, every value overridable from the command line (`--set path.in.config=value`).
//
// The parser is driven by one table (config.cc): a row per key path, its kind and where it
// lands. An unknown key, a wrong type or a bad value is an error naming the file and the path.
//
// Thread safety: a parsed DaemonConfig is a plain value, read-only once the daemon starts.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "manager/lm_config.h"
#include "sandbox/log.h"
#include "sandbox/status.h"

namespace corral {

struct ProcessBackendConfig {
  uint64_t max_concurrent_sessions = 100;
  std::chrono::milliseconds max_idle{3600 * 1000};  // `max_idle_seconds`
  std::chrono::milliseconds idle_check_interval{60 * 1000};
  std::chrono::milliseconds call_timeout{30 * 1000};   // default per-call wall time
  std::chrono::milliseconds start_timeout{10 * 1000};  // launch until the worker answers ping
  uint64_t max_queued_calls = 8;  // calls waiting behind a running one, per session
  uint64_t memory_budget = 0;     // sum of live sandboxes' memory limits; 0 = auto (90% host)
};

// The pool backend: warm sandboxed workers shared by many sessions of one tenant
// (manager/pool_backend.h). `size` 0 turns it off.
struct PoolBackendConfig {
  uint64_t size = 10;
  std::string policy = "default";  // every pool worker runs under this one policy
  uint64_t max_concurrent_sessions = 10000;
  std::chrono::milliseconds max_idle{3600 * 1000};  // `max_idle_seconds`
  std::chrono::milliseconds call_timeout{30 * 1000};
  uint64_t max_queue_size = 1000;                   // requests waiting for a worker, all sessions
  std::chrono::milliseconds queue_timeout{5000};    // longest wait for a worker
  std::string affinity = "spread";                  // spread | strict
  uint64_t max_workers_per_tenant = 0;              // workers one tenant may hold; 0: no cap
  uint64_t worker_max_requests = 10000;             // recycled after serving this many
  uint64_t worker_max_memory = 0;                   // recycled past it; 0: 80% of the policy limit
  uint64_t max_start_failures = 3;                  // in a row, then the slot is out of rotation
  std::chrono::milliseconds restart_backoff{1000};  // doubled after each failed start
  std::string store;                                // SQLite file; default state_dir/pool.db
};

struct LimitsConfig {
  uint64_t max_request_bytes = 1ull << 20;  // HTTP body
  uint64_t max_frame_bytes = 16ull << 20;   // one worker protocol frame, both directions
  uint64_t max_output_bytes = 1ull << 20;   // captured stdout/stderr per execution
  uint64_t max_result_bytes = 8ull << 20;   // serialised outputs per execution
};

struct HttpConfig {
  uint64_t threads = 16;                             // kept warm
  uint64_t max_connections = 1024;                   // served at once, a thread each; more wait
  std::chrono::milliseconds request_timeout{10000};  // whole request, or keep-alive idle (S53)
  std::chrono::milliseconds read_timeout{5000};      // each read
  std::chrono::milliseconds write_timeout{5000};
  uint64_t keep_alive_max = 100;
};

struct DaemonConfig {
  std::string source;  // the config file, for messages
  std::string listen = "127.0.0.1:8080";
  std::string state_dir = "/var/lib/corral";
  std::string policies_dir;  // default: <source tree>/policies
  std::string default_policy = "default";
  std::string worker_python = "/usr/bin/python3";
  std::string worker_dir;  // default: <source tree>/images/python-worker
  LogLevel log_level = LogLevel::kInfo;
  LogFormat log_format = LogFormat::kAuto;
  LimitsConfig limits;
  std::string default_backend = "process";
  ProcessBackendConfig process;
  PoolBackendConfig pool;
  std::string cgroup_parent = "corrald";
  HttpConfig http;
  LmConfig lm;
};

// The listen address split: "127.0.0.1:8080" -> {"127.0.0.1", 8080}. Port 0 = ephemeral.
struct ListenAddress {
  std::string host;
  int port = 0;
};
Result<ListenAddress> ParseListenAddress(std::string_view text);

// Parses `yaml_text`, applies `overrides` ("path=value", later wins), validates. Relative
// paths resolve against `base_dir` (the config file's directory). `source` names the text in
// messages.
Result<DaemonConfig> ParseConfig(const std::string& yaml_text, const std::string& source,
                                 const std::string& base_dir,
                                 const std::vector<std::string>& overrides = {});
Result<DaemonConfig> LoadConfigFile(const std::string& path,
                                    const std::vector<std::string>& overrides = {});

// Every key path the config accepts, in table order (docs and tests enumerate them).
std::vector<std::string> ConfigKeys();

}  // namespace corral
