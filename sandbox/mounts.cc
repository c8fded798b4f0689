#include "sandbox/mounts.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <set>

#include <fmt/format.h>

namespace corral {
namespace {

constexpr uint64_t kReadOnly = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
constexpr uint64_t kWritable = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
constexpr const char* kDevNodes[] = {"null", "zero", "full", "random", "urandom"};
constexpr const char* kDevLinks[][2] = {{"/proc/self/fd", "fd"},
                                        {"/proc/self/fd/0", "stdin"},
                                        {"/proc/self/fd/1", "stdout"},
                                        {"/proc/self/fd/2", "stderr"}};

// Rejects relative paths and ".." components: a bind target like "/../etc" would otherwise
// land outside the new root while it is still being built.
Status CheckPath(const std::string& path, std::string_view what) {
  bool dotdot = path == ".." || path.find("/../") != std::string::npos ||
                (path.size() >= 3 && path.compare(path.size() - 3, 3, "/..") == 0);
  if (path.empty() || path[0] != '/' || dotdot) {
    return Status::InvalidArgument(fmt::format("{} `{}`: must be an absolute path without ..",
                                               what, path));
  }
  return Status::Ok();
}

std::string Parent(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

bool IsUnder(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

// Builds the step list. Paths given to its methods are paths inside the sandbox.
class MountPlanner {
 public:
  MountPlanner(const Policy& policy, std::string root, SandboxSpec* spec)
      : policy_(policy), root_(std::move(root)), spec_(spec) {}

  Status Plan(const std::vector<BindMount>& extra_binds);

 private:
  bool image() const { return !policy_.filesystem.rootfs.empty(); }
  std::string At(const std::string& inside) const {
    return inside == "/" ? root_ : root_ + inside;
  }
  void Add(MountStep step, std::string label) {
    step.label = spec_->Keep(std::move(label));
    spec_->mounts.push_back(step);
  }
  void Mount(const std::string& source, const std::string& inside, const char* fstype,
             unsigned long flags, const std::string& data, std::string label);
  void SetAttr(const std::string& inside, bool recursive, uint64_t attrs);
  void Simple(MountKind kind, const std::string& inside, mode_t mode, const char* verb);
  Status MountPoint(const std::string& inside, bool directory);
  Status Mkdirs(const std::string& inside);
  Status PlanRoot();
  Status PlanBind(const BindMount& bind, bool from_image);
  void PlanDev();
  void PlanTmpfs(const std::string& inside, uint64_t size, uint64_t inodes);
  Status PlanUserFiles();

  const Policy& policy_;
  std::string root_;
  SandboxSpec* spec_;
  std::set<std::string> made_;                               // directories created in the tmpfs
  std::vector<std::pair<std::string, std::string>> bound_;  // directory binds: inside -> host
};

void MountPlanner::Mount(const std::string& source, const std::string& inside,
                         const char* fstype, unsigned long flags, const std::string& data,
                         std::string label) {
  MountStep step{MountKind::kMount};
  step.source = spec_->Keep(source);
  step.target = spec_->Keep(At(inside));
  step.fstype = fstype;
  step.flags = flags;
  step.data = data.empty() ? nullptr : spec_->Keep(data);
  Add(step, std::move(label));
}

void MountPlanner::SetAttr(const std::string& inside, bool recursive, uint64_t attrs) {
  MountStep step{MountKind::kSetAttr};
  step.target = spec_->Keep(At(inside));
  step.recursive = recursive;
  step.attr_set = attrs;
  Add(step, fmt::format("{} `{}`", attrs & MOUNT_ATTR_RDONLY ? "make read-only" : "restrict",
                        inside));
}

void MountPlanner::Simple(MountKind kind, const std::string& inside, mode_t mode,
                          const char* verb) {
  MountStep step{kind};
  step.target = spec_->Keep(At(inside));
  step.mode = mode;
  Add(step, fmt::format("{} `{}`", verb, inside));
}

// A directory bind (or the image) already covers `inside`: its mount point must exist there,
// since that tree is read-only by the time the child gets to it.
Status MountPlanner::MountPoint(const std::string& inside, bool directory) {
  std::string covered;
  if (image()) covered = policy_.filesystem.rootfs + inside;
  for (const auto& [target, source] : bound_) {
    if (IsUnder(inside, target) && inside != target) {
      covered = source + inside.substr(target.size());
    }
  }
  if (!covered.empty()) {
    struct stat st;
    if (lstat(covered.c_str(), &st) != 0) {
      return ErrnoStatus("mount point `{}` (read-only, would be `{}`)", inside, covered);
    }
    return Status::Ok();
  }
  CORRAL_TRY(Mkdirs(Parent(inside)));
  if (directory) {
    if (made_.insert(inside).second) Simple(MountKind::kMkdir, inside, 0755, "mkdir");
  } else {
    Simple(MountKind::kTouch, inside, 0644, "create mount point");
  }
  return Status::Ok();
}

Status MountPlanner::Mkdirs(const std::string& inside) {
  if (inside == "/" || made_.count(inside) != 0) return Status::Ok();
  return MountPoint(inside, true);
}

Status MountPlanner::PlanRoot() {
  MountStep private_step{MountKind::kMakePrivate};
  private_step.target = "/";
  Add(private_step, "make `/` private");
  if (image()) {
    // The image is the root, read-only throughout; binds and mounts land on its directories.
    Mount(policy_.filesystem.rootfs, "/", nullptr, MS_BIND | MS_REC, "",
          fmt::format("bind image rootfs `{}`", policy_.filesystem.rootfs));
    SetAttr("/", true, kReadOnly);
    return Status::Ok();
  }
  Mount("tmpfs", "/", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m,nr_inodes=4096",
        fmt::format("mount root tmpfs on `{}`", root_));
  return Status::Ok();
}

Status MountPlanner::PlanBind(const BindMount& bind, bool from_image) {
  std::string target = bind.target.empty() ? bind.source : bind.target;
  CORRAL_TRY(CheckPath(bind.source, "bind source"));
  CORRAL_TRY(CheckPath(target, "bind target"));
  std::string source = from_image ? policy_.filesystem.rootfs + bind.source : bind.source;

  struct stat st;
  if (lstat(source.c_str(), &st) != 0) {
    if (errno == ENOENT && bind.optional) return Status::Ok();
    return ErrnoStatus("bind `{}`", source);
  }
  // Merged /usr (Debian 12: /bin -> usr/bin, /lib -> usr/lib): recreate the link so the
  // sandbox resolves it through its own bind of /usr, exactly as the host does.
  if (S_ISLNK(st.st_mode) && !image()) {
    char link[PATH_MAX];
    ssize_t n = readlink(source.c_str(), link, sizeof link - 1);
    if (n < 0) return ErrnoStatus("readlink `{}`", source);
    CORRAL_TRY(Mkdirs(Parent(target)));
    MountStep step{MountKind::kSymlink};
    step.source = spec_->Keep(std::string(link, n));
    step.target = spec_->Keep(At(target));
    Add(step, fmt::format("symlink `{}`", target));
    return Status::Ok();
  }
  if (stat(source.c_str(), &st) != 0) return ErrnoStatus("bind `{}`", source);
  bool directory = S_ISDIR(st.st_mode);
  CORRAL_TRY(MountPoint(target, directory));
  Mount(source, target, nullptr, MS_BIND | MS_REC, "", fmt::format("bind `{}`", source));
  SetAttr(target, true, bind.writable ? kWritable : kReadOnly);
  if (directory) bound_.emplace_back(target, source);
  return Status::Ok();
}

void MountPlanner::PlanTmpfs(const std::string& inside, uint64_t size, uint64_t inodes) {
  Mount("tmpfs", inside, "tmpfs", MS_NOSUID | MS_NODEV,
        fmt::format("mode=1777,size={},nr_inodes={}", size, inodes),
        fmt::format("mount tmpfs on `{}`", inside));
}

// mknod is refused in a user namespace, so the device nodes are the host's, bound one by one
// onto empty files; /dev itself is a private tmpfs, made read-only once populated.
void MountPlanner::PlanDev() {
  Mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64",
        "mount tmpfs on `/dev`");
  for (const char* node : kDevNodes) {
    std::string inside = fmt::format("/dev/{}", node);
    Simple(MountKind::kTouch, inside, 0666, "create device mount point");
    Mount(inside, inside, nullptr, MS_BIND, "", fmt::format("bind `{}`", inside));
    SetAttr(inside, false, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
  }
  for (const auto& link : kDevLinks) {
    MountStep step{MountKind::kSymlink};
    step.source = link[0];
    step.target = spec_->Keep(At(fmt::format("/dev/{}", link[1])));
    Add(step, fmt::format("symlink `/dev/{}`", link[1]));
  }
  Simple(MountKind::kMkdir, "/dev/shm", 0755, "mkdir");
  PlanTmpfs("/dev/shm", policy_.filesystem.shm_size, policy_.filesystem.tmp_inodes);
  SetAttr("/dev", false, kReadOnly | MOUNT_ATTR_NOEXEC);
}

// Python's getpass and pwd look the user up; give them a user that exists and nothing else
// of the host's account database.
Status MountPlanner::PlanUserFiles() {
  for (const auto& [target, source] : bound_) {
    if (IsUnder("/etc/passwd", target)) return Status::Ok();
  }
  CORRAL_TRY(Mkdirs("/etc"));
  const UserPolicy& user = policy_.user;
  std::string files[2][2] = {
      {"/etc/passwd", fmt::format("sandbox:x:{}:{}:sandbox:/tmp:/bin/sh\n"
                                  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
                                  user.uid, user.gid)},
      {"/etc/group", fmt::format("sandbox:x:{}:\nnogroup:x:65534:\n", user.gid)}};
  for (auto& [path, text] : files) {
    MountStep step{MountKind::kWriteFile};
    step.target = spec_->Keep(At(path));
    step.data_len = text.size();
    step.data = spec_->Keep(std::move(text));
    step.mode = 0644;
    Add(step, fmt::format("write `{}`", path));
  }
  return Status::Ok();
}

Status MountPlanner::Plan(const std::vector<BindMount>& extra_binds) {
  CORRAL_TRY(PlanRoot());

  // Parents before children: a bind at /usr/lib/x must land on the /usr bind, not under it.
  std::vector<std::pair<BindMount, bool>> binds;
  for (const auto& bind : policy_.filesystem.binds) binds.emplace_back(bind, image());
  for (const auto& bind : extra_binds) binds.emplace_back(bind, false);
  auto target_of = [](const BindMount& b) { return b.target.empty() ? b.source : b.target; };
  std::stable_sort(binds.begin(), binds.end(), [&](const auto& a, const auto& b) {
    return target_of(a.first) < target_of(b.first);
  });
  for (const auto& [bind, from_image] : binds) CORRAL_TRY(PlanBind(bind, from_image));

  CORRAL_TRY(MountPoint("/proc", true));
  Mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "", "mount `/proc`");
  CORRAL_TRY(MountPoint("/dev", true));
  PlanDev();
  CORRAL_TRY(MountPoint("/tmp", true));
  PlanTmpfs("/tmp", policy_.filesystem.tmp_size, policy_.filesystem.tmp_inodes);
  if (!image()) {
    CORRAL_TRY(PlanUserFiles());
    // Writes to /, /etc, /etc/hosts fail with EROFS from here on.
    SetAttr("/", false, kReadOnly);
  }

  MountStep pivot{MountKind::kPivotRoot};
  pivot.target = spec_->Keep(root_);
  Add(pivot, fmt::format("pivot_root to `{}`", root_));
  return Status::Ok();
}

bool WriteWhole(int fd, const char* data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

bool CreateFile(const MountStep& step, int extra_flags) {
  int fd = open(step.target, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | extra_flags,
                step.mode);
  if (fd < 0) return false;
  bool ok = step.data == nullptr || WriteWhole(fd, step.data, step.data_len);
  int saved = errno;
  close(fd);
  errno = saved;
  return ok;
}

// pivot_root(".", ".") stacks the old root under the new one at "."; detaching it leaves only
// the new root, with no path back to the host's tree.
bool PivotRoot(const char* root) {
  return chdir(root) == 0 && syscall(SYS_pivot_root, ".", ".") == 0 &&
         umount2(".", MNT_DETACH) == 0 && chdir("/") == 0;
}

bool RunStep(const MountStep& step) {
  switch (step.kind) {
    case MountKind::kMakePrivate:
      return mount(nullptr, step.target, nullptr, MS_REC | MS_PRIVATE, nullptr) == 0;
    case MountKind::kMount:
      return mount(step.source, step.target, step.fstype, step.flags, step.data) == 0;
    case MountKind::kSetAttr: {
      struct mount_attr attr = {};
      attr.attr_set = step.attr_set;
      unsigned flags = step.recursive ? AT_RECURSIVE : 0;
      return syscall(SYS_mount_setattr, AT_FDCWD, step.target, flags, &attr, sizeof attr) == 0;
    }
    case MountKind::kMkdir:
      return mkdir(step.target, step.mode) == 0 || errno == EEXIST;
    case MountKind::kTouch:
      return CreateFile(step, 0);
    case MountKind::kSymlink:
      return symlink(step.source, step.target) == 0;
    case MountKind::kWriteFile:
      return CreateFile(step, O_EXCL);
    case MountKind::kPivotRoot:
      return PivotRoot(step.target);
  }
  errno = EINVAL;
  return false;
}

}  // namespace

Status PlanMounts(const Policy& policy, const std::vector<BindMount>& extra_binds,
                  const std::string& root_dir, SandboxSpec* spec) {
  if (!policy.filesystem.rootfs.empty()) {
    CORRAL_TRY(CheckPath(policy.filesystem.rootfs, "filesystem.rootfs"));
  }
  return MountPlanner(policy, root_dir, spec).Plan(extra_binds);
}

int ApplyMounts(const SandboxSpec& spec) {
  umask(022);
  for (size_t i = 0; i < spec.mounts.size(); ++i) {
    if (!RunStep(spec.mounts[i])) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace corral
