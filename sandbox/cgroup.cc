// The cgroup manager and one sandbox's cgroup. Which version's files serve which purpose:
//   limits, events, usage: the v1 controllers when any are mounted (v1, hybrid), else v2;
//   kill and "populated": cgroup2 when mounted (v2, hybrid: cgroup.kill, cgroup.freeze and
//   cgroup.events work without controllers), else the v1 freezer and cgroup.procs.
#include <algorithm>
#include <sstream>

#include "sandbox/cgroup.h"
#include "sandbox/cgroup_internal.h"
#include "sandbox/log.h"

namespace corral {

std::string_view CgroupLayoutName(CgroupLayout layout) {
  switch (layout) {
    case CgroupLayout::kV1:
      return "v1";
    case CgroupLayout::kV2:
      return "v2";
    case CgroupLayout::kHybrid:
      return "hybrid";
  }
  return "unknown";
}

namespace cgroup_internal {
namespace {

const Logger kLog("cgroup");

class CgroupImpl : public Cgroup {
 public:
  CgroupImpl(CgroupFs fs, std::string name, CgroupDirs dirs, bool use_cgroup_kill)
      : fs_(fs),
        name_(std::move(name)),
        dirs_(std::move(dirs)),
        use_cgroup_kill_(use_cgroup_kill) {}
  ~CgroupImpl() override {
    Status status = Remove();
    if (!status.ok()) kLog.Error(kNoSession, "{}", status.ToString());
  }

  // Creates the directory in every hierarchy; on failure removes the ones it made and leaves
  // any that existed before (they belong to another sandbox of the same name).
  Status MakeDirs() {
    std::vector<std::string> made;
    for (const std::string& dir : dirs_.All()) {
      Status status = fs_.MakeDir(dir);
      if (status.ok()) {
        made.push_back(dir);
        continue;
      }
      for (const std::string& undo : made) (void)fs_.RemoveDir(undo);
      removed_ = true;
      return status;
    }
    return Status::Ok();
  }

  Status ApplyLimits(const CgroupLimits& limits, bool require_memory_swap) {
    if (dirs_.has_v1()) return v1::ApplyLimits(fs_, dirs_, limits, require_memory_swap);
    return v2::ApplyLimits(fs_, dirs_.unified, limits, require_memory_swap);
  }

  const std::string& name() const override { return name_; }

  Status AddProcess(pid_t pid) override {
    for (const std::string& dir : dirs_.All()) {
      CORRAL_TRY_CTX(fs_.Write(dir + "/cgroup.procs", std::to_string(pid)),
                     "add pid {} to cgroup `{}`", pid, name_);
    }
    return Status::Ok();
  }

  Status KillAll() override {
    // Rounds, because a v1 freeze may not settle (a task stuck in the kernel), and without any
    // freezer a process can fork between the listing and its kill.
    auto deadline = std::chrono::steady_clock::now() + kEmptyTimeout;
    while (true) {
      CORRAL_TRY_CTX(SignalAll(), "kill cgroup `{}`", name_);
      auto round_end = std::min(deadline, std::chrono::steady_clock::now() + kRoundTimeout);
      Result<bool> emptied = WaitUntil(round_end, [this]() -> Result<bool> {
        CORRAL_ASSIGN_OR_RETURN(bool populated, Populated());
        return !populated;
      });
      if (!emptied.ok()) return emptied.status().Context(fmt::format("kill cgroup `{}`", name_));
      if (*emptied) return Status::Ok();
      if (std::chrono::steady_clock::now() >= deadline) {
        return Status::Internal(fmt::format("kill cgroup `{}`: still populated after {} ms", name_,
                                            kEmptyTimeout.count()));
      }
    }
  }

  Result<bool> Populated() override {
    if (!dirs_.unified.empty()) return v2::Populated(fs_, dirs_.unified);
    return v1::Populated(fs_, dirs_);
  }

  Result<CgroupEvents> Events() override {
    CgroupEvents events;
    if (dirs_.has_v1()) {
      CORRAL_TRY_CTX(v1::ReadEvents(fs_, dirs_, &events), "events of cgroup `{}`", name_);
    } else {
      CORRAL_TRY_CTX(v2::ReadEvents(fs_, dirs_.unified, &events), "events of cgroup `{}`", name_);
    }
    CORRAL_ASSIGN_OR_RETURN(events.populated, Populated());
    return events;
  }

  Result<ResourceUsage> Usage() override {
    ResourceUsage usage;
    if (dirs_.has_v1()) {
      CORRAL_TRY_CTX(v1::ReadUsage(fs_, dirs_, &usage), "usage of cgroup `{}`", name_);
    } else {
      CORRAL_TRY_CTX(v2::ReadUsage(fs_, dirs_.unified, &usage), "usage of cgroup `{}`", name_);
    }
    // Kernels before 5.19 have no memory.peak: the best left is the highest value seen here.
    sampled_peak_ = std::max({sampled_peak_, usage.memory_bytes, usage.memory_peak_bytes});
    usage.memory_peak_bytes = sampled_peak_;
    sampled_pids_peak_ = std::max({sampled_pids_peak_, usage.pids, usage.pids_peak});
    usage.pids_peak = sampled_pids_peak_;
    return usage;
  }

  Status Remove() override {
    if (removed_) return Status::Ok();
    // Another manager (RemoveStale) or a half-made cgroup may have left some directories gone.
    Result<bool> populated = Populated();
    if (!populated.ok() && populated.status().sys_errno() != ENOENT) {
      return populated.status().Context(fmt::format("remove cgroup `{}`", name_));
    }
    if (populated.ok() && *populated) CORRAL_TRY(KillAll());
    for (const std::string& dir : dirs_.All()) {
      CORRAL_TRY_CTX(fs_.RemoveDir(dir), "remove cgroup `{}`", name_);
    }
    removed_ = true;
    return Status::Ok();
  }

  std::vector<std::string> Paths() const override { return dirs_.All(); }

 private:
  static constexpr std::chrono::milliseconds kRoundTimeout{1000};

  Status SignalAll() {
    // cgroup.kill (5.14+) kills every task in the subtree in one step, even ones forking.
    // Before it, a freezer (cgroup2's cgroup.freeze from 5.2, else v1's) stops forks while
    // the tasks are listed and killed one by one.
    bool have_unified = !dirs_.unified.empty();
    if (have_unified && use_cgroup_kill_ && fs_.Exists(dirs_.unified + "/cgroup.kill")) {
      return fs_.Write(dirs_.unified + "/cgroup.kill", "1");
    }
    if (have_unified && fs_.Exists(dirs_.unified + "/cgroup.freeze")) {
      return v2::FreezeKillThaw(fs_, dirs_.unified);
    }
    if (!dirs_.freezer.empty()) return v1::FreezeKillThaw(fs_, dirs_.freezer);
    // Nothing can stop forks while listing: kill what is there, the next round gets the rest.
    for (const std::string& dir : dirs_.All()) CORRAL_TRY(KillEach(fs_, dir + "/cgroup.procs"));
    return Status::Ok();
  }

  CgroupFs fs_;
  std::string name_;
  CgroupDirs dirs_;
  bool use_cgroup_kill_;
  bool removed_ = false;
  uint64_t sampled_peak_ = 0;
  uint64_t sampled_pids_peak_ = 0;
};

// Immutable after Open, so it may be shared between threads without a lock. The kernel
// serialises what two threads do to the tree; names keep their cgroups apart.
class ManagerImpl : public CgroupManager {
 public:
  ManagerImpl(CgroupFs fs, CgroupLayout layout, CgroupDirs parent,
              std::vector<std::string> controllers, const CgroupManagerOptions& options)
      : fs_(fs),
        layout_(layout),
        parent_(std::move(parent)),
        controllers_(std::move(controllers)),
        require_memory_swap_(options.require_memory_swap),
        use_cgroup_kill_(options.use_cgroup_kill),
        remove_parent_on_close_(options.remove_parent_on_close) {}

  ~ManagerImpl() override {
    if (remove_parent_on_close_) RemoveParent();
  }

  CgroupLayout layout() const override { return layout_; }
  std::vector<std::string> Controllers() const override { return controllers_; }

  Result<std::unique_ptr<Cgroup>> Create(const std::string& name,
                                         const CgroupLimits& limits) override {
    CORRAL_TRY(ValidateName(name));
    auto cgroup = std::make_unique<CgroupImpl>(fs_, name, parent_.Child(name), use_cgroup_kill_);
    CORRAL_TRY_CTX(cgroup->MakeDirs(), "create cgroup `{}`", name);
    Status limited = cgroup->ApplyLimits(limits, require_memory_swap_);
    if (!limited.ok()) {
      // The destructor removes the half-made cgroup.
      return std::move(limited).Context(fmt::format("limit cgroup `{}`", name));
    }
    return std::unique_ptr<Cgroup>(std::move(cgroup));
  }

  Result<int> RemoveStale() override {
    CORRAL_ASSIGN_OR_RETURN(std::vector<std::string> names, ListChildren());
    int removed = 0;
    Status first_error;
    for (const std::string& name : names) {
      CgroupImpl stale(fs_, name, ExistingOnly(parent_.Child(name)), use_cgroup_kill_);
      Status status = stale.Remove();
      if (status.ok()) {
        ++removed;
        kLog.Info(kNoSession, "removed stale cgroup `{}`", name);
      } else if (first_error.ok()) {
        first_error = std::move(status);
      }
    }
    if (!first_error.ok()) return first_error;
    return removed;
  }

  Result<std::vector<std::string>> ListChildren() override {
    std::vector<std::string> names;
    for (const std::string& dir : parent_.All()) {
      CORRAL_ASSIGN_OR_RETURN(std::vector<std::string> children, fs_.ListSubdirs(dir));
      names.insert(names.end(), children.begin(), children.end());
    }
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    return names;
  }

 private:
  // A parent still holding a child (a sandbox that outlives its launcher) stays, for the next
  // start's cleanup to find.
  void RemoveParent() const {
    for (const std::string& dir : parent_.All()) {
      Result<std::vector<std::string>> children = fs_.ListSubdirs(dir);
      if (!children.ok() || !children->empty()) continue;
      Status removed = fs_.RemoveDir(dir);
      if (!removed.ok()) kLog.Warn(kNoSession, "remove cgroup parent: {}", removed.ToString());
    }
  }

  // A leftover may exist in some hierarchies only (a crash during Create).
  CgroupDirs ExistingOnly(CgroupDirs dirs) const {
    for (std::string* dir :
         {&dirs.memory, &dirs.pids, &dirs.cpu, &dirs.cpuacct, &dirs.freezer, &dirs.unified}) {
      if (!dir->empty() && !fs_.Exists(*dir)) dir->clear();
    }
    return dirs;
  }

  const CgroupFs fs_;
  const CgroupLayout layout_;
  const CgroupDirs parent_;
  const std::vector<std::string> controllers_;
  const bool require_memory_swap_;
  const bool use_cgroup_kill_;
  const bool remove_parent_on_close_;
};

Status MakeParent(const CgroupFs& fs, const CgroupDirs& parent) {
  // Only the last component is made: the own cgroup exists, and nothing above the parent is
  // ever created.
  for (const std::string& dir : parent.All()) {
    Status status = fs.MakeDir(dir);
    if (!status.ok() && status.sys_errno() != EEXIST) return status;
  }
  return Status::Ok();
}

std::vector<std::string> V2Controllers(const CgroupFs& fs, const std::string& parent) {
  std::vector<std::string> controllers;
  // "cpu memory pids" (the fake tree keeps what was written: "+cpu +memory +pids").
  Result<std::string> enabled = fs.Read(parent + "/cgroup.subtree_control");
  std::istringstream words(enabled.ok() ? *enabled : "");
  std::vector<std::string> names;
  for (std::string word; words >> word;) names.push_back(word.substr(word[0] == '+' ? 1 : 0));
  for (const char* name : {"memory", "pids", "cpu"}) {
    if (std::find(names.begin(), names.end(), name) != names.end()) {
      controllers.emplace_back(name);
    }
  }
  if (fs.Exists(parent + "/memory.swap.max")) controllers.emplace_back("memory_swap");
  if (fs.Exists(parent + "/cpu.stat")) controllers.emplace_back("cpuacct");
  if (fs.Exists(parent + "/cgroup.freeze")) controllers.emplace_back("freezer");
  return controllers;
}

std::vector<std::string> ListControllers(const CgroupFs& fs, const CgroupManagerOptions& options,
                                         CgroupLayout layout, const CgroupDirs& parent) {
  std::vector<std::string> controllers;
  if (layout == CgroupLayout::kV2) {
    controllers = V2Controllers(fs, parent.unified);
  } else {
    if (!parent.memory.empty()) controllers.emplace_back("memory");
    if (!parent.memory.empty() && fs.Exists(parent.memory + "/memory.memsw.limit_in_bytes")) {
      controllers.emplace_back("memory_swap");
    }
    if (!parent.pids.empty()) controllers.emplace_back("pids");
    if (!parent.cpu.empty()) controllers.emplace_back("cpu");
    if (!parent.cpuacct.empty()) controllers.emplace_back("cpuacct");
    if (!parent.freezer.empty()) controllers.emplace_back("freezer");
  }
  if (!parent.unified.empty() && options.use_cgroup_kill &&
      fs.Exists(parent.unified + "/cgroup.kill")) {
    controllers.emplace_back("kill");
  }
  return controllers;
}

// An earlier Open in this process may have moved it into `<parent>-supervisor` (see
// v2::EnableControllers); its own cgroup is still the one above, or every Open would nest a
// new parent and leaf one level deeper.
void LeaveSupervisorLeaf(const std::string& parent_name, CgroupDirs* own) {
  std::string leaf = "/" + parent_name + "-supervisor";
  std::string& dir = own->unified;
  if (own->has_v1() || dir.size() <= leaf.size()) return;
  if (dir.compare(dir.size() - leaf.size(), leaf.size(), leaf) == 0)
    dir.resize(dir.size() - leaf.size());
}

CgroupManagerOptions WithDefaults(CgroupManagerOptions options) {
  while (options.mount_root.size() > 1 && options.mount_root.back() == '/') {
    options.mount_root.pop_back();
  }
  if (options.self_cgroup_file.empty()) options.self_cgroup_file = "/proc/self/cgroup";
  if (options.mountinfo_file.empty()) options.mountinfo_file = "/proc/self/mountinfo";
  return options;
}

}  // namespace
}  // namespace cgroup_internal

Result<std::unique_ptr<CgroupManager>> CgroupManager::Open(const CgroupManagerOptions& given) {
  namespace ci = cgroup_internal;
  CgroupManagerOptions options = ci::WithDefaults(given);
  ci::CgroupFs fs(options.fake_tree);
  CORRAL_TRY_CTX(ci::ValidateName(options.parent_name), "cgroup parent");

  Result<ci::FoundLayout> found = ci::FindLayout(fs, options);
  if (!found.ok()) return found.status().Context("detect cgroup layout");
  ci::LeaveSupervisorLeaf(options.parent_name, &found->own);
  ci::CgroupDirs parent = found->own.Child(options.parent_name);
  CORRAL_TRY_CTX(ci::MakeParent(fs, parent), "create cgroup parent `{}`", options.parent_name);
  if (!parent.memory.empty()) ci::v1::SetUseHierarchy(fs, parent.memory);
  if (found->layout == CgroupLayout::kV2) {
    CORRAL_TRY_CTX(ci::v2::EnableControllers(fs, found->own.unified, parent.unified),
                   "enable cgroup controllers for `{}`", parent.unified);
  }

  std::vector<std::string> controllers = ci::ListControllers(fs, options, found->layout, parent);
  ci::kLog.Info(kNoSession, "cgroup layout {}, parent {}, controllers {}",
                CgroupLayoutName(found->layout), fmt::join(parent.All(), " "),
                fmt::join(controllers, " "));
  return std::unique_ptr<CgroupManager>(std::make_unique<ci::ManagerImpl>(
      fs, found->layout, std::move(parent), std::move(controllers), options));
}

}  // namespace corral
