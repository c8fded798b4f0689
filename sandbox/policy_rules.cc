#include "sandbox/policy_rules.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

namespace corral {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

struct PolicyRule {
  std::string_view path;
  bool (*holds)(const Policy&);
  std::string_view reason;
};

bool Overlap(const std::vector<std::string>& names, const auto& other) {
  return std::any_of(names.begin(), names.end(),
                     [&](const std::string& name) { return other.contains(name); });
}

bool AllowAndDenyDisjoint(const Policy& p) {
  return std::none_of(p.seccomp.deny.begin(), p.seccomp.deny.end(), [&](const std::string& n) {
    return std::find(p.seccomp.allow.begin(), p.seccomp.allow.end(), n) != p.seccomp.allow.end();
  });
}

const PolicyRule kRules[] = {
    // The launcher maps each sandbox to its own unprivileged host uid through the user
    // namespace; without one the tenant would run as the launcher's (root) user.
    {"namespaces.user", [](const Policy& p) { return p.namespaces.user; },
     "must be true: host id mapping needs a user namespace"},

    // Ids below 65536 belong to real accounts (system users, people, nobody=65534); a sandbox
    // mapped onto one could read and write that account's files.
    {"user.host_id_base", [](const Policy& p) { return p.user.host_id_base >= 65536; },
     "must be at least 65536, above every real account"},
    {"user.host_id_count", [](const Policy& p) { return p.user.host_id_count >= 1; },
     "must be at least 1"},
    {"user.host_id_count",
     [](const Policy& p) {
       return uint64_t{p.user.host_id_base} + p.user.host_id_count <= UINT32_MAX;
     },
     "the range host_id_base + host_id_count must end below 4294967295 (uid -1)"},

    // tmpfs reads size=0 and nr_inodes=0 as "no limit": a tenant could fill the host's RAM.
    {"filesystem.tmp_size", [](const Policy& p) { return p.filesystem.tmp_size > 0; },
     "must be above 0: a tmpfs of size 0 has no limit at all"},
    {"filesystem.tmp_inodes", [](const Policy& p) { return p.filesystem.tmp_inodes > 0; },
     "must be above 0: a tmpfs with 0 inodes has no limit at all"},
    {"filesystem.shm_size", [](const Policy& p) { return p.filesystem.shm_size > 0; },
     "must be above 0: a tmpfs of size 0 has no limit at all"},

    {"limits.memory",
     [](const Policy& p) { return p.limits.memory == 0 || p.limits.memory >= 8 * kMiB; },
     "must be 0 (no limit) or at least 8Mi: less cannot start an interpreter"},
    {"limits.pids", [](const Policy& p) { return p.limits.pids <= 4194304; },
     "must be at most 4194304 (the kernel's PID_MAX_LIMIT)"},
    {"limits.cpus", [](const Policy& p) { return p.limits.cpus >= 0 && p.limits.cpus <= 1024; },
     "must be between 0 (no quota) and 1024 cores"},
    {"limits.open_files", [](const Policy& p) { return p.limits.open_files >= 3; },
     "must be at least 3: stdin, stdout and stderr"},
    {"limits.open_files", [](const Policy& p) { return p.limits.open_files <= 1048576; },
     "must be at most 1048576 (the kernel's default fs.nr_open)"},

    {"seccomp.deny", &AllowAndDenyDisjoint, "a syscall is both in seccomp.allow and here"},
    {"environment_from_cpus",
     [](const Policy& p) { return !Overlap(p.environment_from_cpus, p.environment); },
     "a variable is also set in environment; set it in one place"},
};

}  // namespace

Status CheckPolicyRules(const Policy& policy, std::string* failed_path) {
  for (const PolicyRule& rule : kRules) {
    if (!rule.holds(policy)) {
      *failed_path = rule.path;
      return Status::InvalidArgument(fmt::format("{}: {}", rule.path, rule.reason));
    }
  }
  return Status::Ok();
}

}  // namespace corral
