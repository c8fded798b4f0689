// A sandbox policy: what a sandboxed process may see and use. Parsed from YAML into this plain
// struct and validated before anything privileged happens (docs/policy.md documents every
// field, its meaning and its default).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "sandbox/status.h"

namespace corral {

struct NamespacePolicy {
  bool user = true;
  bool pid = true;
  bool mount = true;
  bool net = true;
  bool ipc = true;
  bool uts = true;
  bool cgroup = true;

  bool operator==(const NamespacePolicy&) const = default;
};

// The ids the sandboxed process has inside its user namespace, and the range of unprivileged
// host ids the launcher takes one uid/gid from per live sandbox (never shared by two).
struct UserPolicy {
  uint32_t uid = 1000;
  uint32_t gid = 1000;
  uint32_t host_id_base = 200000;
  uint32_t host_id_count = 10000;

  bool operator==(const UserPolicy&) const = default;
};

struct BindMount {
  std::string source;  // host path (or path in `rootfs` when one is set)
  std::string target;  // path inside the sandbox; defaults to `source`
  bool writable = false;
  bool optional = false;  // a missing source is skipped instead of failing the launch

  bool operator==(const BindMount&) const = default;
};

struct FilesystemPolicy {
  std::string rootfs;             // image rootfs directory; empty = read-only host binds
  std::vector<BindMount> binds;   // always read-only, nosuid, nodev unless `writable`
  uint64_t tmp_size = 64ull << 20;
  uint64_t tmp_inodes = 4096;
  uint64_t shm_size = 16ull << 20;
  std::string workdir = "/tmp";

  bool operator==(const FilesystemPolicy&) const = default;
};

struct LimitsPolicy {
  uint64_t memory = 256ull << 20;  // cgroup memory limit, swap off; 0 = none
  uint64_t pids = 64;              // cgroup pids limit (threads count); 0 = none
  double cpus = 1.0;               // CPU quota in cores; 0 = none
  std::chrono::milliseconds cpu_time{0};   // CPU time for the whole sandbox; 0 = none
  std::chrono::milliseconds wall_time{0};  // wall time for the whole sandbox; 0 = none
  uint64_t open_files = 256;       // RLIMIT_NOFILE
  uint64_t file_size = 64ull << 20;  // RLIMIT_FSIZE
  uint64_t stack = 8ull << 20;       // RLIMIT_STACK
  uint64_t address_space = 0;        // RLIMIT_AS; 0 = unlimited (numeric work needs that)
  uint64_t output = 1ull << 20;      // bytes of stdout+stderr kept
  bool kill_on_output_limit = false;  // end the sandbox with `output_limit` past `output`

  bool operator==(const LimitsPolicy&) const = default;
};

enum class SeccompAction { kErrno, kKill };

struct SeccompPolicy {
  std::string profile = "python";  // base allow-list, a table in sandbox/seccomp_profiles.cc
  SeccompAction action = SeccompAction::kErrno;  // what a refused syscall does
  int errno_value = 1;               // EPERM; ENOSYS is always used for clone3 and unknown calls
  std::vector<std::string> allow;    // added to the profile
  std::vector<std::string> deny;     // removed from the profile

  bool operator==(const SeccompPolicy&) const = default;
};

struct Policy {
  std::string name;
  std::string source;  // file it came from, for messages
  NamespacePolicy namespaces;
  UserPolicy user;
  FilesystemPolicy filesystem;
  LimitsPolicy limits;
  SeccompPolicy seccomp;
  std::string hostname = "corral";
  bool network_loopback = true;  // loopback up in the private net namespace; never host network
  std::map<std::string, std::string> environment;  // the whole environment of the process
  // Variables set to the CPU quota rounded up (numeric policy: OMP_NUM_THREADS, ...).
  std::vector<std::string> environment_from_cpus;
  // Isolation facilities this policy lets the launcher go without on a host that lacks them
  // ("cgroup.cpu", "cgroup.memory_swap", ...). Anything not listed fails the launch closed.
  std::vector<std::string> optional;

  bool operator==(const Policy&) const = default;
};

// Parses and validates. `source` names the text in messages ("policies/default.yaml").
// Overrides are "path.in.policy=value" strings applied before validation.
Result<Policy> ParsePolicy(const std::string& yaml_text, const std::string& source,
                           const std::vector<std::string>& overrides = {});
Result<Policy> LoadPolicyFile(const std::string& path,
                              const std::vector<std::string>& overrides = {});

// "256Mi" -> 268435456; "30s" -> 30000 ms. Exposed for the config parser too.
Result<uint64_t> ParseSize(const std::string& text);
Result<std::chrono::milliseconds> ParseDuration(const std::string& text);

}  // namespace corral
