// cgroup v1: one hierarchy per controller (memory, pids, cpu, cpuacct, freezer), each with its
// own files. Used for the pure v1 layout and for the controllers of the hybrid layout.
#include <cmath>

#include "sandbox/cgroup_internal.h"
#include "sandbox/log.h"

namespace corral::cgroup_internal::v1 {
namespace {

constexpr uint64_t kCpuPeriodUsec = 100000;
// The kernel refuses a quota under 1 ms.
constexpr uint64_t kMinCpuQuotaUsec = 1000;
constexpr std::chrono::milliseconds kFreezeTimeout{1000};

Status Unavailable(std::string_view controller) {
  return Status::Unsupported(fmt::format("cgroup controller `{}` unavailable", controller));
}

Status ApplyMemory(const CgroupFs& fs, const std::string& dir, uint64_t bytes,
                   bool require_memory_swap) {
  std::string value = std::to_string(bytes);
  CORRAL_TRY(fs.Write(dir + "/memory.limit_in_bytes", value));

  // memsw limits memory plus swap; equal to the memory limit, it leaves no room to swap, so
  // the memory limit cannot be dodged by paging out. Missing when the kernel was booted
  // without swap accounting (swapaccount=0).
  std::string memsw = dir + "/memory.memsw.limit_in_bytes";
  Status status = fs.Write(memsw, value);
  if (status.ok() || status.sys_errno() != ENOENT) return status;
  if (!require_memory_swap) return Status::Ok();
  return Status::Unsupported(
             fmt::format("cgroup.memory_swap unavailable: `{}` missing (swap accounting off)",
                         memsw))
      .WithReason("cgroup.memory_swap");
}

Status ApplyCpu(const CgroupFs& fs, const std::string& dir, double cpus) {
  uint64_t quota = static_cast<uint64_t>(std::llround(cpus * kCpuPeriodUsec));
  CORRAL_TRY(fs.Write(dir + "/cpu.cfs_period_us", std::to_string(kCpuPeriodUsec)));
  return fs.Write(dir + "/cpu.cfs_quota_us", std::to_string(std::max(quota, kMinCpuQuotaUsec)));
}

}  // namespace

Status ApplyLimits(const CgroupFs& fs, const CgroupDirs& dirs, const CgroupLimits& limits,
                   bool require_memory_swap) {
  // An unset limit keeps the fresh cgroup's default, which is "no limit" for all three.
  if (limits.memory_bytes > 0) {
    if (dirs.memory.empty()) return Unavailable("memory");
    CORRAL_TRY(ApplyMemory(fs, dirs.memory, limits.memory_bytes, require_memory_swap));
  }
  if (limits.pids > 0) {
    if (dirs.pids.empty()) return Unavailable("pids");
    CORRAL_TRY(fs.Write(dirs.pids + "/pids.max", std::to_string(limits.pids)));
  }
  if (limits.cpus > 0) {
    if (dirs.cpu.empty()) return Unavailable("cpu");
    CORRAL_TRY(ApplyCpu(fs, dirs.cpu, limits.cpus));
  }
  return Status::Ok();
}

Status FreezeKillThaw(const CgroupFs& fs, const std::string& freezer_dir) {
  std::string state = freezer_dir + "/freezer.state";
  CORRAL_TRY(fs.Write(state, "FROZEN"));

  // FREEZING until every task has stopped; a frozen task cannot fork, so the listing below is
  // complete. A task stuck in the kernel may keep it FREEZING: kill what is listed anyway,
  // the caller repeats the round until the cgroup is empty.
  auto deadline = std::chrono::steady_clock::now() + kFreezeTimeout;
  Result<bool> frozen = WaitUntil(deadline, [&]() -> Result<bool> {
    CORRAL_ASSIGN_OR_RETURN(std::string text, fs.Read(state));
    return text.rfind("FROZEN", 0) == 0;
  });

  Status killed = frozen.ok() ? KillEach(fs, freezer_dir + "/cgroup.procs") : frozen.status();
  // Thaw whatever happened: a frozen cgroup with a live task would hold it stopped forever.
  Status thawed = fs.Write(state, "THAWED");
  CORRAL_TRY(killed);
  return thawed;
}

Result<bool> Populated(const CgroupFs& fs, const CgroupDirs& dirs) {
  CgroupDirs v1_only = dirs;
  v1_only.unified.clear();
  for (const std::string& dir : v1_only.All()) {
    CORRAL_ASSIGN_OR_RETURN(std::vector<pid_t> pids, fs.ReadPids(dir + "/cgroup.procs"));
    if (!pids.empty()) return true;
  }
  return false;
}

Status ReadEvents(const CgroupFs& fs, const CgroupDirs& dirs, CgroupEvents* events) {
  // `oom_kill` in memory.oom_control needs 4.13+; older kernels leave it out (reads 0).
  if (!dirs.memory.empty()) {
    CORRAL_ASSIGN_OR_RETURN(events->oom_kills,
                            fs.ReadKey(dirs.memory + "/memory.oom_control", "oom_kill"));
  }
  if (!dirs.pids.empty()) {
    CORRAL_ASSIGN_OR_RETURN(events->pids_max_hits, fs.ReadKey(dirs.pids + "/pids.events", "max"));
  }
  return Status::Ok();
}

Status ReadUsage(const CgroupFs& fs, const CgroupDirs& dirs, ResourceUsage* usage) {
  if (!dirs.memory.empty()) {
    CORRAL_ASSIGN_OR_RETURN(usage->memory_bytes,
                            fs.ReadNumber(dirs.memory + "/memory.usage_in_bytes"));
    CORRAL_ASSIGN_OR_RETURN(usage->memory_peak_bytes,
                            fs.ReadNumber(dirs.memory + "/memory.max_usage_in_bytes"));
  }
  if (!dirs.pids.empty()) {
    CORRAL_ASSIGN_OR_RETURN(usage->pids, fs.ReadNumber(dirs.pids + "/pids.current"));
    if (fs.Exists(dirs.pids + "/pids.peak")) {
      CORRAL_ASSIGN_OR_RETURN(usage->pids_peak, fs.ReadNumber(dirs.pids + "/pids.peak"));
    }
  }
  if (!dirs.cpuacct.empty()) {
    CORRAL_ASSIGN_OR_RETURN(uint64_t nanoseconds, fs.ReadNumber(dirs.cpuacct + "/cpuacct.usage"));
    usage->cpu_usec = nanoseconds / 1000;
  }
  return Status::Ok();
}

void SetUseHierarchy(const CgroupFs& fs, const std::string& memory_dir) {
  // Without it (kernels before 5.x default to 0 in some setups) a child's usage would not count
  // against the parent. Refused once the parent has children, or fixed at 1 on new kernels:
  // either way there is nothing more to do, so the error is only logged.
  Status status = fs.Write(memory_dir + "/memory.use_hierarchy", "1");
  if (!status.ok()) {
    Logger("cgroup").Debug(kNoSession, "memory.use_hierarchy: {}", status.ToString());
  }
}

}  // namespace corral::cgroup_internal::v1
