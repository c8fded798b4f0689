// Internals of the cgroup module, shared by cgroup.cc (layout, manager, sandbox cgroup),
// cgroup_v1.cc and cgroup_v2.cc (the controller files of each version) and cgroup_fs.cc
// (file access and parsing). Not part of the module's interface.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sandbox/cgroup.h"
#include "sandbox/status.h"

namespace corral::cgroup_internal {

// How long KillAll waits for a cgroup to empty before it reports failure.
inline constexpr std::chrono::milliseconds kEmptyTimeout{5000};

// File access beneath a cgroup tree. Every open is O_CLOEXEC and O_NOFOLLOW: a symlink planted
// in the tree must never redirect a write to a file outside it.
class CgroupFs {
 public:
  explicit CgroupFs(bool fake_tree) : fake_tree_(fake_tree) {}

  bool fake_tree() const { return fake_tree_; }
  // "write `/sys/fs/cgroup/pids/x/pids.max`: Invalid argument".
  Status Write(const std::string& path, std::string_view data) const;
  Result<std::string> Read(const std::string& path) const;
  bool Exists(const std::string& path) const;
  // A file holding one number; "max" reads as UINT64_MAX.
  Result<uint64_t> ReadNumber(const std::string& path) const;
  // A flat keyed file ("key value" lines: memory.events, cpu.stat, oom_control); 0 when the
  // key is absent, as the kernel leaves out counters it does not keep.
  Result<uint64_t> ReadKey(const std::string& path, std::string_view key) const;
  Result<std::vector<pid_t>> ReadPids(const std::string& procs_path) const;
  // mkdir; EEXIST is reported, the caller decides whether it is fine.
  Status MakeDir(const std::string& path) const;
  // rmdir, retrying EBUSY briefly (v1 memory releases charges after the last task leaves).
  // A missing directory is success. In a fake tree, regular files are unlinked first.
  Status RemoveDir(const std::string& path) const;
  Result<std::vector<std::string>> ListSubdirs(const std::string& path) const;

 private:
  bool fake_tree_;
};

// One sandbox's (or the parent's) directories, one per hierarchy in use. v1 controllers are
// empty when not mounted; several may share a directory ("cpu,cpuacct"). `unified` is the
// cgroup2 directory: the whole cgroup in pure v2, the controller-less one in hybrid.
struct CgroupDirs {
  std::string memory;
  std::string pids;
  std::string cpu;
  std::string cpuacct;
  std::string freezer;
  std::string unified;

  bool has_v1() const;
  // Distinct non-empty directories, v1 first, then unified.
  std::vector<std::string> All() const;
  CgroupDirs Child(std::string_view name) const;
};

// Names: [A-Za-z0-9_.-]{1,128}, not starting with '.', so "..", "." and hidden names, slashes
// and control files ("cgroup.procs" starts with a letter but is a file, mkdir fails) are out.
Status ValidateName(std::string_view name);

// Reading /proc/self/mountinfo and /proc/self/cgroup.
struct Mount {
  std::string root;         // the part of the hierarchy mounted here
  std::string mount_point;  // unescaped
  std::string fstype;
  std::vector<std::string> super_options;
};
Result<std::vector<Mount>> ParseMountInfo(std::string_view text);

struct SelfCgroup {
  std::vector<std::string> controllers;  // empty for the cgroup2 line "0::/path"
  std::string path;
};
Result<std::vector<SelfCgroup>> ParseSelfCgroup(std::string_view text);

// The layout and this process's own cgroup in each hierarchy. `options` paths are already
// defaulted (mount_root without a trailing slash).
struct FoundLayout {
  CgroupLayout layout = CgroupLayout::kV2;
  CgroupDirs own;
};
Result<FoundLayout> FindLayout(const CgroupFs& fs, const CgroupManagerOptions& options);

// Kills every listed process of a frozen cgroup. SIGKILL reaches frozen and stopped tasks;
// they die as soon as they are thawed.
Status KillEach(const CgroupFs& fs, const std::string& procs_path);

// Sleeps with a backoff from 1 ms up to 100 ms until `done` says true or `deadline` passes.
// Returns false when the deadline passed first; a failing check is returned as is.
template <typename Check>
Result<bool> WaitUntil(std::chrono::steady_clock::time_point deadline, Check done) {
  std::chrono::milliseconds pause{1};
  while (true) {
    Result<bool> result = done();
    if (!result.ok() || *result) return result;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds{100});
  }
}

namespace v1 {
Status ApplyLimits(const CgroupFs& fs, const CgroupDirs& dirs, const CgroupLimits& limits,
                   bool require_memory_swap);
// Freezes the cgroup so nothing forks while it is listed, SIGKILLs each process, thaws.
Status FreezeKillThaw(const CgroupFs& fs, const std::string& freezer_dir);
Result<bool> Populated(const CgroupFs& fs, const CgroupDirs& dirs);
Status ReadEvents(const CgroupFs& fs, const CgroupDirs& dirs, CgroupEvents* events);
Status ReadUsage(const CgroupFs& fs, const CgroupDirs& dirs, ResourceUsage* usage);
void SetUseHierarchy(const CgroupFs& fs, const std::string& memory_dir);
}  // namespace v1

namespace v2 {
Status ApplyLimits(const CgroupFs& fs, const std::string& dir, const CgroupLimits& limits,
                   bool require_memory_swap);
// Enables memory, pids and cpu for the parent's children (pure v2 only).
Status EnableControllers(const CgroupFs& fs, const std::string& own_dir,
                         const std::string& parent_dir);
// cgroup.freeze based fallback for kernels before cgroup.kill (5.2 .. 5.13).
Status FreezeKillThaw(const CgroupFs& fs, const std::string& dir);
Result<bool> Populated(const CgroupFs& fs, const std::string& dir);
Status ReadEvents(const CgroupFs& fs, const std::string& dir, CgroupEvents* events);
// memory.peak needs 5.19+; without it the peak reads 0 and the caller samples current.
Status ReadUsage(const CgroupFs& fs, const std::string& dir, ResourceUsage* usage);
}  // namespace v2

}  // namespace corral::cgroup_internal
