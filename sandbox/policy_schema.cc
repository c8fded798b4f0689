#include "sandbox/policy_schema.h"

#include <cerrno>

namespace corral {
namespace {

// `CORRAL_FIELD(limits.memory)` is a captureless lambda returning a reference to that member,
// turned into a plain function pointer so the table stays static data.
#define CORRAL_FIELD(member) +[](Policy& p) -> decltype(auto) { return (p.member); }

constexpr EnumChoice kProfiles[] = {{"python", 0}};

constexpr EnumChoice kActions[] = {
    {"errno", static_cast<int>(SeccompAction::kErrno)},
    {"kill", static_cast<int>(SeccompAction::kKill)},
};

// The errno values a refused syscall may return. Libraries react to each differently: ENOSYS
// makes libc fall back to an older call, EPERM and EACCES read as "not allowed".
constexpr EnumChoice kErrnos[] = {
    {"EPERM", EPERM},   {"EACCES", EACCES}, {"ENOSYS", ENOSYS},         {"EINVAL", EINVAL},
    {"ENOENT", ENOENT}, {"EFAULT", EFAULT}, {"EOPNOTSUPP", EOPNOTSUPP},
};

// Facilities a policy may let the launcher go without on a host that lacks them.
constexpr EnumChoice kOptionalFacilities[] = {
    {"cgroup.cpu", 0}, {"cgroup.memory_swap", 0}, {"cgroup.pids", 0}, {"cgroup.memory", 0}};

void SetProfile(Policy& p, const EnumChoice& c) {
  p.seccomp.profile = std::string(c.name);
}
void SetAction(Policy& p, const EnumChoice& c) {
  p.seccomp.action = static_cast<SeccompAction>(c.value);
}
void SetErrno(Policy& p, const EnumChoice& c) {
  p.seccomp.errno_value = c.value;
}

using K = FieldKind;
using V = ValueCheck;

const FieldSpec kSchema[] = {
    {"name", K::kString, CORRAL_FIELD(name), "",
     "name of the policy; defaults to the file name without `.yaml`", V::kName},

    {"namespaces.user", K::kBool, CORRAL_FIELD(namespaces.user), "true",
     "new user namespace; must stay true (host ids are mapped through it)"},
    {"namespaces.pid", K::kBool, CORRAL_FIELD(namespaces.pid), "true",
     "new pid namespace: the sandbox sees only its own processes"},
    {"namespaces.mount", K::kBool, CORRAL_FIELD(namespaces.mount), "true",
     "new mount namespace: the sandbox root is built from binds"},
    {"namespaces.net", K::kBool, CORRAL_FIELD(namespaces.net), "true",
     "new network namespace: no host interfaces"},
    {"namespaces.ipc", K::kBool, CORRAL_FIELD(namespaces.ipc), "true",
     "new IPC namespace: private System V IPC and POSIX message queues"},
    {"namespaces.uts", K::kBool, CORRAL_FIELD(namespaces.uts), "true",
     "new UTS namespace: the sandbox has its own host name"},
    {"namespaces.cgroup", K::kBool, CORRAL_FIELD(namespaces.cgroup), "true",
     "new cgroup namespace: the sandbox cannot see the host's cgroup paths"},

    {"user.uid", K::kU32, CORRAL_FIELD(user.uid), "1000", "uid inside the sandbox"},
    {"user.gid", K::kU32, CORRAL_FIELD(user.gid), "1000", "gid inside the sandbox"},
    {"user.host_id_base", K::kU32, CORRAL_FIELD(user.host_id_base), "200000",
     "first host id of the range sandboxes are mapped to (one id per live sandbox)"},
    {"user.host_id_count", K::kU32, CORRAL_FIELD(user.host_id_count), "10000",
     "number of host ids in that range: the most sandboxes alive at once"},

    {"filesystem.rootfs", K::kString, CORRAL_FIELD(filesystem.rootfs), "\"\"",
     "image root directory; empty = build the root from read-only host binds",
     V::kOptionalAbsolutePath},
    {"filesystem.binds", K::kBindList, CORRAL_FIELD(filesystem.binds), "[]",
     "paths bound into the sandbox, read-only, nosuid, nodev unless `writable`"},
    {"filesystem.tmp_size", K::kSize, CORRAL_FIELD(filesystem.tmp_size), "64Mi",
     "size of the private tmpfs at /tmp"},
    {"filesystem.tmp_inodes", K::kCount, CORRAL_FIELD(filesystem.tmp_inodes), "4096",
     "inodes of the tmpfs at /tmp"},
    {"filesystem.shm_size", K::kSize, CORRAL_FIELD(filesystem.shm_size), "16Mi",
     "size of the private tmpfs at /dev/shm"},
    {"filesystem.workdir", K::kString, CORRAL_FIELD(filesystem.workdir), "/tmp",
     "working directory of the sandboxed process", V::kAbsolutePath},

    {"limits.memory", K::kSize, CORRAL_FIELD(limits.memory), "256Mi",
     "cgroup memory limit with swap off; 0 = none"},
    {"limits.pids", K::kCount, CORRAL_FIELD(limits.pids), "64",
     "cgroup pids limit (threads count); 0 = none"},
    {"limits.cpus", K::kDouble, CORRAL_FIELD(limits.cpus), "1", "CPU quota in cores; 0 = none"},
    {"limits.cpu_time", K::kDuration, CORRAL_FIELD(limits.cpu_time), "0",
     "CPU time for the whole sandbox; 0 = none"},
    {"limits.wall_time", K::kDuration, CORRAL_FIELD(limits.wall_time), "0",
     "wall time for the whole sandbox; 0 = none"},
    {"limits.open_files", K::kCount, CORRAL_FIELD(limits.open_files), "256", "RLIMIT_NOFILE"},
    {"limits.file_size", K::kSize, CORRAL_FIELD(limits.file_size), "64Mi", "RLIMIT_FSIZE"},
    {"limits.stack", K::kSize, CORRAL_FIELD(limits.stack), "8Mi", "RLIMIT_STACK"},
    {"limits.address_space", K::kSize, CORRAL_FIELD(limits.address_space), "0",
     "RLIMIT_AS; 0 = unlimited"},
    {"limits.output", K::kSize, CORRAL_FIELD(limits.output), "1Mi",
     "bytes of stdout and stderr kept"},
    {"limits.kill_on_output_limit", K::kBool, CORRAL_FIELD(limits.kill_on_output_limit), "false",
     "end the sandbox with `output_limit` once it writes more than `limits.output`"},

    {"seccomp.profile", K::kEnum, &SetProfile, "python", "base syscall allow-list", V::kChoice,
     kProfiles},
    {"seccomp.action", K::kEnum, &SetAction, "errno",
     "what a refused syscall does: return an errno, or kill the sandbox", V::kChoice, kActions},
    {"seccomp.errno", K::kEnum, &SetErrno, "EPERM", "errno a refused syscall returns", V::kChoice,
     kErrnos},
    {"seccomp.allow", K::kStringList, CORRAL_FIELD(seccomp.allow), "[]",
     "syscalls added to the profile", V::kSyscallName},
    {"seccomp.deny", K::kStringList, CORRAL_FIELD(seccomp.deny), "[]",
     "syscalls removed from the profile", V::kSyscallName},

    {"hostname", K::kString, CORRAL_FIELD(hostname), "corral", "host name inside the sandbox",
     V::kHostname},
    {"network.loopback", K::kBool, CORRAL_FIELD(network_loopback), "true",
     "bring loopback up in the private network namespace"},
    {"environment", K::kStringMap, CORRAL_FIELD(environment), "{}",
     "the whole environment of the process; nothing is inherited", V::kEnvName},
    {"environment_from_cpus", K::kStringList, CORRAL_FIELD(environment_from_cpus), "[]",
     "variables set to the CPU quota rounded up (thread pools size themselves by them)",
     V::kEnvName},
    {"optional", K::kStringList, CORRAL_FIELD(optional), "[]",
     "facilities the launcher may go without on a host that lacks them", V::kChoice,
     kOptionalFacilities},
};

#undef CORRAL_FIELD

}  // namespace

std::span<const FieldSpec> PolicySchema() {
  return kSchema;
}

const FieldSpec* FindPolicyField(std::string_view path) {
  for (const FieldSpec& field : kSchema) {
    if (field.path == path) return &field;
  }
  return nullptr;
}

bool IsPolicySection(std::string_view path) {
  for (const FieldSpec& field : kSchema) {
    if (field.path.size() > path.size() && field.path.starts_with(path) &&
        field.path[path.size()] == '.') {
      return true;
    }
  }
  return false;
}

std::string_view FieldKindName(FieldKind kind) {
  switch (kind) {
    case FieldKind::kBool:
      return "bool";
    case FieldKind::kU32:
      return "u32";
    case FieldKind::kCount:
      return "count";
    case FieldKind::kSize:
      return "size";
    case FieldKind::kDouble:
      return "number";
    case FieldKind::kDuration:
      return "duration";
    case FieldKind::kString:
      return "string";
    case FieldKind::kStringList:
      return "string list";
    case FieldKind::kStringMap:
      return "string map";
    case FieldKind::kBindList:
      return "bind list";
    case FieldKind::kEnum:
      return "enum";
  }
  return "unknown";
}

}  // namespace corral
