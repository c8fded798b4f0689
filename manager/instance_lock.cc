#include "manager/instance_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <cerrno>
#include <filesystem>

namespace corral {
namespace {

// The pid the holder wrote into the file, for the message; "unknown" when unreadable.
std::string HolderPid(int fd) {
  char buffer[32] = {};
  ssize_t n = pread(fd, buffer, sizeof(buffer) - 1, 0);
  std::string pid = n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  return pid.empty() ? "unknown" : pid;
}

// Whether `fd` is still the file at `path`: a holder that stopped cleanly unlinks its lock file,
// and a daemon that opened the old file before that must not take a lock nobody else will see.
bool StillLinked(int fd, const std::string& path) {
  struct stat opened {
  }, linked{};
  if (fstat(fd, &opened) != 0 || lstat(path.c_str(), &linked) != 0) return false;
  return opened.st_dev == linked.st_dev && opened.st_ino == linked.st_ino;
}

// Opens and locks `path`; `shared` names what the two daemons have in common.
Result<UniqueFd> LockFile(const std::string& path, const std::string& shared) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    // O_NOFOLLOW: the directories are root's, but never write through a planted symlink.
    UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return ErrnoStatus("open lock file `{}`", path);
    if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK) return ErrnoStatus("lock `{}`", path);
      return Status::FailedPrecondition(
                 fmt::format("another corrald (pid {}) is running with the same {}; give this "
                             "one its own state_dir and cgroup.parent (lock `{}`)",
                             HolderPid(fd.get()), shared, path))
          .WithReason("already_running");
    }
    if (!StillLinked(fd.get(), path)) continue;  // its holder just removed it: take the new one
    std::string pid = std::to_string(getpid()) + "\n";
    if (ftruncate(fd.get(), 0) != 0 || pwrite(fd.get(), pid.data(), pid.size(), 0) < 0) {
      return ErrnoStatus("write lock file `{}`", path);
    }
    return fd;
  }
  return Status::Unavailable(fmt::format("lock `{}`: it keeps being replaced", path));
}

}  // namespace

Result<InstanceLock> InstanceLock::Acquire(const DaemonConfig& config,
                                           const std::string& lock_dir) {
  std::error_code error;
  std::filesystem::create_directories(lock_dir, error);
  if (error) {
    return Status::FromErrno(error.value(), fmt::format("create lock directory `{}`", lock_dir));
  }
  InstanceLock lock;
  CORRAL_ASSIGN_OR_RETURN(UniqueFd state,
                          LockFile(config.state_dir + "/corrald.lock",
                                   fmt::format("state_dir `{}`", config.state_dir)));
  lock.held_.push_back({config.state_dir + "/corrald.lock", std::move(state)});
  CORRAL_ASSIGN_OR_RETURN(
      UniqueFd cgroup, LockFile(fmt::format("{}/corrald-{}.lock", lock_dir, config.cgroup_parent),
                                fmt::format("cgroup.parent `{}`", config.cgroup_parent)));
  lock.held_.push_back(
      {fmt::format("{}/corrald-{}.lock", lock_dir, config.cgroup_parent), std::move(cgroup)});
  return lock;
}

InstanceLock::~InstanceLock() {
  // Unlinked while still locked, so a daemon that opened it meanwhile sees it gone and retries;
  // a crash leaves the file, which the next daemon simply locks again.
  for (Held& held : held_) {
    if (held.fd) unlink(held.path.c_str());
  }
}

}  // namespace corral
