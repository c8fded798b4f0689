#include "sandbox/descriptors.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <unistd.h>

#include <cerrno>

namespace corral {
namespace {

constexpr int kMaxPasses = 64;

// Duplicates `*fd` to the lowest free number >= `min` (close-on-exec) and closes the old one.
bool MoveAbove(int* fd, int min) {
  if (*fd < 0 || *fd >= min) return true;
  int moved = fcntl(*fd, F_DUPFD_CLOEXEC, min);
  if (moved < 0) return false;
  close(*fd);
  *fd = moved;
  return true;
}

bool NullOnStandardFds(const SandboxSpec& spec) {
  for (int target = 0; target <= 2; ++target) {
    bool passed = false;
    for (const auto& [source, child] : spec.fds) passed = passed || child == target;
    if (passed) continue;
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0) return false;
    if (null_fd != target && dup2(null_fd, target) < 0) return false;
    if (null_fd != target) close(null_fd);
    if (null_fd == target && fcntl(target, F_SETFD, 0) != 0) return false;
  }
  return true;
}

}  // namespace

bool ApplyDescriptors(const SandboxSpec& spec, ChildChannels* channels, bool close_fds) {
  int above = spec.max_target_fd + 1;
  int* own[] = {&channels->sync_fd, &channels->error_fd, &channels->control_fd,
                &channels->status_fd};
  for (int* fd : own) {
    if (!MoveAbove(fd, above)) return false;
  }

  int high[kMaxPasses];
  size_t count = spec.fds.size();
  if (count > kMaxPasses) {
    errno = E2BIG;
    return false;
  }
  for (size_t i = 0; i < count; ++i) {
    high[i] = fcntl(spec.fds[i].first, F_DUPFD_CLOEXEC, above);
    if (high[i] < 0) return false;
  }
  for (size_t i = 0; i < count; ++i) {
    if (dup2(high[i], spec.fds[i].second) < 0) return false;  // dup2 clears close-on-exec
  }
  for (size_t i = 0; i < count; ++i) close(high[i]);
  if (!NullOnStandardFds(spec)) return false;
  // Gaps below the highest target hold whatever the launcher had there: close them too.
  for (int fd = 3; fd < above; ++fd) {
    bool passed = false;
    for (const auto& [source, child] : spec.fds) passed = passed || child == fd;
    if (!passed) close(fd);
  }

  if (!close_fds) {
    return close_range(above, ~0U, CLOSE_RANGE_CLOEXEC) == 0;
  }
  // No exec will close them: close everything above the targets but the channels.
  int keep_max = above - 1;
  for (int* fd : own) keep_max = *fd > keep_max ? *fd : keep_max;
  for (int fd = above; fd <= keep_max; ++fd) {
    bool channel = false;
    for (int* own_fd : own) channel = channel || *own_fd == fd;
    if (!channel) close(fd);
  }
  return close_range(keep_max + 1, ~0U, 0) == 0;
}

void CloseAllExcept(int keep) {
  if (keep > 0) close_range(0, keep - 1, 0);
  close_range(keep + 1, ~0U, 0);
}

}  // namespace corral
