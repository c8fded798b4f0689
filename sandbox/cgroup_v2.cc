// cgroup v2: one unified hierarchy, every controller's files in the one directory. Used for the
// pure v2 layout; in the hybrid layout only the controller-less parts (kill, freeze, events).
#include <cmath>

#include "sandbox/cgroup_internal.h"
#include "sandbox/log.h"

namespace corral::cgroup_internal::v2 {
namespace {

constexpr uint64_t kCpuPeriodUsec = 100000;
constexpr uint64_t kMinCpuQuotaUsec = 1000;  // the kernel refuses less than 1 ms
constexpr std::chrono::milliseconds kFreezeTimeout{1000};
constexpr int kMoveRounds = 5;
const char* const kWantedControllers[] = {"cpu", "memory", "pids"};

Status ApplyMemory(const CgroupFs& fs, const std::string& dir, uint64_t bytes,
                   bool require_memory_swap) {
  CORRAL_TRY(fs.Write(dir + "/memory.max", std::to_string(bytes)));

  // Swap off: otherwise a sandbox at its limit pages out and keeps growing. The file is missing
  // when the kernel keeps no swap accounting.
  std::string swap = dir + "/memory.swap.max";
  Status status = fs.Write(swap, "0");
  if (status.ok() || status.sys_errno() != ENOENT) return status;
  if (!require_memory_swap) return Status::Ok();
  return Status::Unsupported(
             fmt::format("cgroup.memory_swap unavailable: `{}` missing (swap accounting off)",
                         swap))
      .WithReason("cgroup.memory_swap");
}

// The v2 rule "no internal processes": a cgroup that holds processes cannot hand controllers to
// its children. In a Kubernetes container whose cgroup namespace root is its own cgroup, the
// daemon sits in exactly the cgroup it must enable controllers in, so every process there moves
// into a leaf beside the parent (`<parent>-supervisor`) first. Processes may fork while being
// moved, so the move repeats until the cgroup is empty.
Status MoveProcessesToLeaf(const CgroupFs& fs, const std::string& own_dir,
                           const std::string& leaf) {
  Status made = fs.MakeDir(leaf);
  if (!made.ok() && made.sys_errno() != EEXIST) return made;
  for (int round = 0; round < kMoveRounds; ++round) {
    CORRAL_ASSIGN_OR_RETURN(std::vector<pid_t> pids, fs.ReadPids(own_dir + "/cgroup.procs"));
    if (pids.empty()) return Status::Ok();
    for (pid_t pid : pids) {
      Status moved = fs.Write(leaf + "/cgroup.procs", std::to_string(pid));
      if (!moved.ok() && moved.sys_errno() != ESRCH) return moved;
    }
  }
  return Status::Unavailable(fmt::format("cgroup `{}` keeps gaining processes", own_dir));
}

// "+cpu +memory +pids", limited to what the cgroup itself was given.
Result<std::string> EnableRequest(const CgroupFs& fs, const std::string& own_dir) {
  CORRAL_ASSIGN_OR_RETURN(std::string available, fs.Read(own_dir + "/cgroup.controllers"));
  std::vector<std::string> words;
  std::string word;
  for (char c : available + " ") {
    if (c == ' ' || c == '\n') {
      if (!word.empty()) words.push_back(std::exchange(word, ""));
    } else {
      word.push_back(c);
    }
  }
  std::string request;
  for (const char* controller : kWantedControllers) {
    if (std::find(words.begin(), words.end(), controller) == words.end()) continue;
    request += fmt::format("{}+{}", request.empty() ? "" : " ", controller);
  }
  return request;
}

}  // namespace

Status ApplyLimits(const CgroupFs& fs, const std::string& dir, const CgroupLimits& limits,
                   bool require_memory_swap) {
  // An unset limit keeps the fresh cgroup's default, "max".
  if (limits.memory_bytes > 0) {
    CORRAL_TRY(ApplyMemory(fs, dir, limits.memory_bytes, require_memory_swap));
  }
  if (limits.pids > 0) CORRAL_TRY(fs.Write(dir + "/pids.max", std::to_string(limits.pids)));
  if (limits.cpus > 0) {
    uint64_t quota = static_cast<uint64_t>(std::llround(limits.cpus * kCpuPeriodUsec));
    std::string value = fmt::format("{} {}", std::max(quota, kMinCpuQuotaUsec), kCpuPeriodUsec);
    CORRAL_TRY(fs.Write(dir + "/cpu.max", value));
  }
  return Status::Ok();
}

Status EnableControllers(const CgroupFs& fs, const std::string& own_dir,
                         const std::string& parent_dir) {
  CORRAL_ASSIGN_OR_RETURN(std::string request, EnableRequest(fs, own_dir));
  if (request.empty()) return Status::Ok();

  std::string own_control = own_dir + "/cgroup.subtree_control";
  Status enabled = fs.Write(own_control, request);
  if (!enabled.ok() && enabled.sys_errno() == EBUSY) {
    CORRAL_TRY(MoveProcessesToLeaf(fs, own_dir, parent_dir + "-supervisor"));
    enabled = fs.Write(own_control, request);
  }
  CORRAL_TRY(enabled);
  return fs.Write(parent_dir + "/cgroup.subtree_control", request);
}

Status FreezeKillThaw(const CgroupFs& fs, const std::string& dir) {
  CORRAL_TRY(fs.Write(dir + "/cgroup.freeze", "1"));
  auto deadline = std::chrono::steady_clock::now() + kFreezeTimeout;
  Result<bool> frozen = WaitUntil(deadline, [&]() -> Result<bool> {
    CORRAL_ASSIGN_OR_RETURN(uint64_t value, fs.ReadKey(dir + "/cgroup.events", "frozen"));
    return value == 1;
  });

  Status killed = frozen.ok() ? KillEach(fs, dir + "/cgroup.procs") : frozen.status();
  // Thaw whatever happened, or a live task would stay stopped forever.
  Status thawed = fs.Write(dir + "/cgroup.freeze", "0");
  CORRAL_TRY(killed);
  return thawed;
}

Result<bool> Populated(const CgroupFs& fs, const std::string& dir) {
  CORRAL_ASSIGN_OR_RETURN(uint64_t populated, fs.ReadKey(dir + "/cgroup.events", "populated"));
  return populated != 0;
}

Status ReadEvents(const CgroupFs& fs, const std::string& dir, CgroupEvents* events) {
  // A controller's files exist only when the parent enabled it; absent means "never happened".
  if (fs.Exists(dir + "/memory.events")) {
    CORRAL_ASSIGN_OR_RETURN(events->oom_kills, fs.ReadKey(dir + "/memory.events", "oom_kill"));
  }
  if (fs.Exists(dir + "/pids.events")) {
    CORRAL_ASSIGN_OR_RETURN(events->pids_max_hits, fs.ReadKey(dir + "/pids.events", "max"));
  }
  return Status::Ok();
}

Status ReadUsage(const CgroupFs& fs, const std::string& dir, ResourceUsage* usage) {
  if (fs.Exists(dir + "/memory.current")) {
    CORRAL_ASSIGN_OR_RETURN(usage->memory_bytes, fs.ReadNumber(dir + "/memory.current"));
  }
  if (fs.Exists(dir + "/memory.peak")) {
    CORRAL_ASSIGN_OR_RETURN(usage->memory_peak_bytes, fs.ReadNumber(dir + "/memory.peak"));
  }
  if (fs.Exists(dir + "/pids.current")) {
    CORRAL_ASSIGN_OR_RETURN(usage->pids, fs.ReadNumber(dir + "/pids.current"));
  }
  if (fs.Exists(dir + "/pids.peak")) {
    CORRAL_ASSIGN_OR_RETURN(usage->pids_peak, fs.ReadNumber(dir + "/pids.peak"));
  }
  // cpu.stat's usage_usec is kept even without the cpu controller.
  CORRAL_ASSIGN_OR_RETURN(usage->cpu_usec, fs.ReadKey(dir + "/cpu.stat", "usage_usec"));
  return Status::Ok();
}

}  // namespace corral::cgroup_internal::v2
