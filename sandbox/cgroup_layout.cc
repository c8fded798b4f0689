// Finding the cgroup hierarchies: which layout the host runs (from the mount table) and where
// this process sits in each hierarchy (from its cgroup membership file).
#include <algorithm>

#include "sandbox/cgroup_internal.h"

namespace corral::cgroup_internal {
namespace {

bool Beneath(std::string_view path, std::string_view root) {
  if (path == root) return true;
  return path.size() > root.size() && path.substr(0, root.size()) == root &&
         path[root.size()] == '/';
}

bool Contains(const std::vector<std::string>& words, std::string_view word) {
  return std::find(words.begin(), words.end(), word) != words.end();
}

const Mount* FindV1Mount(const std::vector<Mount>& mounts, const std::string& mount_root,
                         std::string_view controller) {
  for (const Mount& mount : mounts) {
    if (mount.fstype == "cgroup" && Beneath(mount.mount_point, mount_root) &&
        Contains(mount.super_options, controller)) {
      return &mount;
    }
  }
  return nullptr;
}

const Mount* FindV2Mount(const std::vector<Mount>& mounts, const std::string& mount_point) {
  for (const Mount& mount : mounts) {
    if (mount.fstype == "cgroup2" && mount.mount_point == mount_point) return &mount;
  }
  return nullptr;
}

// `controller` empty: the cgroup2 line, "0::/path".
const SelfCgroup* FindEntry(const std::vector<SelfCgroup>& entries, std::string_view controller) {
  for (const SelfCgroup& entry : entries) {
    bool match =
        controller.empty() ? entry.controllers.empty() : Contains(entry.controllers, controller);
    if (match) return &entry;
  }
  return nullptr;
}

// The directory of this process's cgroup in the hierarchy mounted at `mount`. The membership
// path is relative to the hierarchy's root, the mount may show only a subtree of it (a
// container's mount), so that subtree's prefix is dropped. A path outside the mounted subtree
// (shown with "/.." inside a cgroup namespace) cannot be reached and is refused rather than
// guessed, which would write into someone else's cgroup.
Result<std::string> OwnDir(const Mount& mount, const SelfCgroup& entry) {
  std::string_view path = entry.path;
  std::string_view root = mount.root;
  bool reachable =
      path.find("/..") == std::string_view::npos && (root == "/" || Beneath(path, root));
  if (!reachable) {
    return Status::FailedPrecondition(
        fmt::format("own cgroup `{}` lies outside the hierarchy mounted at `{}` (root `{}`)", path,
                    mount.mount_point, root));
  }
  if (root != "/") path.remove_prefix(root.size());
  if (path == "/") path = "";
  return mount.mount_point + std::string(path);
}

Result<CgroupDirs> FindV1Dirs(const std::vector<Mount>& mounts,
                              const std::vector<SelfCgroup>& entries,
                              const std::string& mount_root) {
  CgroupDirs dirs;
  const std::pair<const char*, std::string*> kControllers[] = {{"memory", &dirs.memory},
                                                               {"pids", &dirs.pids},
                                                               {"cpu", &dirs.cpu},
                                                               {"cpuacct", &dirs.cpuacct},
                                                               {"freezer", &dirs.freezer}};
  for (auto [controller, dir] : kControllers) {
    const Mount* mount = FindV1Mount(mounts, mount_root, controller);
    if (mount == nullptr) continue;
    const SelfCgroup* entry = FindEntry(entries, controller);
    if (entry == nullptr) {
      return Status::FailedPrecondition(fmt::format(
          "`{}` is mounted but this process has no `{}` cgroup", controller, controller));
    }
    CORRAL_ASSIGN_OR_RETURN(*dir, OwnDir(*mount, *entry));
  }
  return dirs;
}

Result<CgroupLayout> ChooseLayout(const CgroupManagerOptions& options, bool has_v1, bool v2_at_root,
                                  bool v2_unified) {
  std::optional<CgroupLayout> detected;
  if (v2_at_root && !has_v1) detected = CgroupLayout::kV2;
  if (has_v1) detected = v2_unified ? CgroupLayout::kHybrid : CgroupLayout::kV1;
  if (!options.force_layout) {
    if (detected) return *detected;
    return Status::Unsupported(fmt::format(
        "no cgroup hierarchy with memory, pids, cpu or freezer under `{}`", options.mount_root));
  }
  CgroupLayout forced = *options.force_layout;
  bool possible = (forced == CgroupLayout::kV1 && has_v1) ||
                  (forced == CgroupLayout::kV2 && v2_at_root) ||
                  (forced == CgroupLayout::kHybrid && has_v1 && v2_unified);
  if (possible) return forced;
  return Status::Unsupported(fmt::format("cgroup layout `{}` asked for, but `{}` is not mounted so",
                                         CgroupLayoutName(forced), options.mount_root));
}

}  // namespace

Result<FoundLayout> FindLayout(const CgroupFs& fs, const CgroupManagerOptions& options) {
  CORRAL_ASSIGN_OR_RETURN(std::string mountinfo, fs.Read(options.mountinfo_file));
  CORRAL_ASSIGN_OR_RETURN(std::vector<Mount> mounts, ParseMountInfo(mountinfo));
  CORRAL_ASSIGN_OR_RETURN(std::string membership, fs.Read(options.self_cgroup_file));
  CORRAL_ASSIGN_OR_RETURN(std::vector<SelfCgroup> entries, ParseSelfCgroup(membership));

  FoundLayout found;
  CORRAL_ASSIGN_OR_RETURN(found.own, FindV1Dirs(mounts, entries, options.mount_root));
  const Mount* v2_root = FindV2Mount(mounts, options.mount_root);
  const Mount* v2_unified = FindV2Mount(mounts, options.mount_root + "/unified");
  CORRAL_ASSIGN_OR_RETURN(found.layout, ChooseLayout(options, found.own.has_v1(),
                                                     v2_root != nullptr, v2_unified != nullptr));

  if (found.layout == CgroupLayout::kV2) found.own = CgroupDirs();
  if (found.layout == CgroupLayout::kV1) return found;
  const SelfCgroup* entry = FindEntry(entries, "");
  if (entry == nullptr) {
    return Status::FailedPrecondition("cgroup2 is mounted but this process has no `0::` cgroup");
  }
  const Mount* v2 = found.layout == CgroupLayout::kV2 ? v2_root : v2_unified;
  CORRAL_ASSIGN_OR_RETURN(found.own.unified, OwnDir(*v2, *entry));
  return found;
}

}  // namespace corral::cgroup_internal
