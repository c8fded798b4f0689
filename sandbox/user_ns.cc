#include "sandbox/user_ns.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/securebits.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include <fmt/format.h>

namespace corral {
namespace {

Status WriteFile(const std::string& path, const std::string& text) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus("open `{}`", path);
  if (write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return ErrnoStatus("write `{}`", path);
  }
  return Status::Ok();
}

}  // namespace

Result<IdLease> IdLease::Acquire(const std::string& lock_dir, uint32_t base, uint32_t count) {
  std::error_code ec;
  std::filesystem::create_directories(lock_dir, ec);
  if (ec) return Status::FromErrno(ec.value(), fmt::format("create `{}`", lock_dir));
  if (count == 0) return Status::InvalidArgument("user.host_id_count is 0");

  uint32_t start = std::random_device{}() % count;
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t id = base + (start + i) % count;
    std::string path = fmt::format("{}/{}.lock", lock_dir, id);
    UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return ErrnoStatus("open `{}`", path);
    if (flock(fd.get(), LOCK_EX | LOCK_NB) == 0) return IdLease(id, std::move(fd));
    if (errno != EWOULDBLOCK) return ErrnoStatus("lock `{}`", path);
  }
  return Status::ResourceExhausted(
      fmt::format("every host id in [{}, {}) is leased to a live sandbox", base, base + count));
}

Status WriteIdMaps(pid_t pid, uid_t inside_uid, gid_t inside_gid, uint32_t host_id) {
  CORRAL_TRY(WriteFile(fmt::format("/proc/{}/uid_map", pid),
                       fmt::format("{} {} 1\n", inside_uid, host_id)));
  return WriteFile(fmt::format("/proc/{}/gid_map", pid),
                   fmt::format("{} {} 1\n", inside_gid, host_id));
}

ApplyStep ApplyIds(const SandboxSpec& spec) {
  // Without this, leaving uid 0 (or switching ids at all) would clear the capabilities the
  // mounts still need; they are all dropped on purpose after the mounts.
  if (prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0) != 0) {
    return ApplyStep::kKeepCapsAcrossSetuid;
  }
  if (syscall(SYS_setgroups, 0, nullptr) != 0) return ApplyStep::kSetgroups;
  if (syscall(SYS_setresgid, spec.gid, spec.gid, spec.gid) != 0) return ApplyStep::kSetresgid;
  // Files the child creates in its tmpfs need an owner mapped in the namespace (an unmapped
  // fsuid gives EOVERFLOW), so the switch comes before the mounts.
  if (syscall(SYS_setresuid, spec.uid, spec.uid, spec.uid) != 0) return ApplyStep::kSetresuid;
  return static_cast<ApplyStep>(0);
}

}  // namespace corral
