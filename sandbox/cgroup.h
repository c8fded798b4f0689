// cgroups for sandboxes, v1 and v2 both first-class.
//
// Layouts: pure v2 (unified, current Kubernetes nodes), pure v1 (memory, pids, cpu, cpuacct,
// freezer hierarchies mounted apart), and the hybrid these build machines run: v1 hierarchies
// hold the controllers while a controller-less v2 hierarchy (/sys/fs/cgroup/unified) offers
// cgroup.kill, cgroup.freeze and cgroup.events, which the kill and "populated" paths use.
//
// The launcher owns one parent cgroup (named in its options) beneath its own cgroup in every
// hierarchy it uses; each sandbox gets one child there. Nothing outside that parent is ever
// written or removed.
//
// Thread safety: a CgroupManager may be shared between threads; a Cgroup is used by one owner.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sandbox/status.h"

namespace corral {

enum class CgroupLayout { kV1, kV2, kHybrid };
std::string_view CgroupLayoutName(CgroupLayout layout);

struct CgroupLimits {
  uint64_t memory_bytes = 0;  // 0 = no limit; swap is always off when set
  uint64_t pids = 0;          // 0 = no limit
  double cpus = 0;            // CPU quota in cores; 0 = none
};

struct CgroupEvents {
  uint64_t oom_kills = 0;      // processes the kernel OOM-killed in this cgroup
  uint64_t pids_max_hits = 0;  // forks refused at the pids limit
  bool populated = false;
};

struct ResourceUsage {
  uint64_t memory_bytes = 0;
  uint64_t memory_peak_bytes = 0;
  uint64_t pids = 0;
  uint64_t pids_peak = 0;  // pids.peak where the kernel has it (6.1+ on v1 and v2), else sampled
  uint64_t cpu_usec = 0;
};

// One sandbox's cgroup (in every hierarchy). Destruction kills what is left in it and removes
// it; errors there are logged, never thrown.
class Cgroup {
 public:
  virtual ~Cgroup() = default;
  virtual const std::string& name() const = 0;
  // Moves `pid` (a host pid) into the cgroup in every hierarchy.
  virtual Status AddProcess(pid_t pid) = 0;
  // Kills every process in it, including stopped ones and ones that escaped their session
  // (v2: cgroup.kill; v1: freeze, SIGKILL each, thaw), and waits until it is empty.
  virtual Status KillAll() = 0;
  virtual Result<bool> Populated() = 0;
  virtual Result<CgroupEvents> Events() = 0;
  virtual Result<ResourceUsage> Usage() = 0;
  // Kills what is left and removes the directories. Idempotent.
  virtual Status Remove() = 0;
  // Paths of this cgroup, one per hierarchy, for diagnostics.
  virtual std::vector<std::string> Paths() const = 0;
};

struct CgroupManagerOptions {
  std::string mount_root = "/sys/fs/cgroup";  // tests point this at a fake tree
  std::string parent_name = "corral";         // the parent the launcher owns
  // Where this process sits in each hierarchy; empty = read /proc/self/cgroup.
  std::string self_cgroup_file = "/proc/self/cgroup";
  // Mount table to detect the layout from; empty = /proc/self/mountinfo.
  std::string mountinfo_file = "/proc/self/mountinfo";
  // Use this layout instead of the detected one; it must match what is mounted (kV1 on a
  // hybrid host ignores the cgroup2 hierarchy, so tests run the v1 freezer kill path for real).
  std::optional<CgroupLayout> force_layout;
  // mount_root is a plain directory tree standing in for cgroupfs (tests): writes create the
  // files they write, and Remove unlinks regular files before rmdir. A real cgroup directory
  // holds only kernel files, which rmdir takes with it; never set this on a real mount.
  bool fake_tree = false;
  // A memory limit without swap off (v1 memory.memsw, v2 memory.swap.max missing) would let a
  // sandbox page out past its limit. Create then fails with reason `cgroup.memory_swap` unless
  // this is false, in which case the memory limit alone is applied.
  bool require_memory_swap = true;
  // false: kill by freezing (cgroup.freeze, else the v1 freezer) even where cgroup.kill
  // exists, as kernels 5.2 to 5.13 must; lets tests run that path on a current kernel.
  bool use_cgroup_kill = true;
  // Remove the parent (where it has no children left) when the manager is destroyed: a daemon
  // that owns its parent alone (corrald holds a lock on the name) leaves nothing behind. Off
  // where several launchers share a parent name, as concurrent corral-run processes do: one
  // would remove the parent under another's Create.
  bool remove_parent_on_close = false;
};

class CgroupManager {
 public:
  // With `remove_parent_on_close`, removes the parent if no child is left in it.
  virtual ~CgroupManager() = default;
  // Detects the layout and creates (or reuses) the parent cgroup.
  static Result<std::unique_ptr<CgroupManager>> Open(const CgroupManagerOptions& options);

  virtual CgroupLayout layout() const = 0;
  // Controllers available for limits: "memory", "pids", "cpu", "memory_swap", "freezer", ...
  virtual std::vector<std::string> Controllers() const = 0;
  virtual Result<std::unique_ptr<Cgroup>> Create(const std::string& name,
                                                 const CgroupLimits& limits) = 0;
  // Kills and removes every child of the parent: what a crashed previous run left behind.
  // Returns how many cgroups were removed.
  virtual Result<int> RemoveStale() = 0;
  // Names of the children of the parent now (live sandboxes plus leftovers).
  virtual Result<std::vector<std::string>> ListChildren() = 0;
};

}  // namespace corral
