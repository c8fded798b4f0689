// One corrald per state directory and per cgroup parent.
//
// A daemon removes, at start, every cgroup under its parent as a crashed run's leftovers, and
// owns the port and pid files in its state directory. A second daemon started with the same
// settings would kill the first one's live sessions and take its files, so it must refuse to
// start instead. The guard is an flock(2) on a lock file for each of the two: the kernel drops
// it when the holder dies, however it dies, so a crash never leaves a stale lock behind.
//
// Thread safety: a plain owner value; the locks last as long as it does.
#pragma once

#include <string>
#include <vector>

#include "manager/config.h"
#include "sandbox/status.h"
#include "sandbox/unique_fd.h"

namespace corral {

class InstanceLock {
 public:
  // Takes `<state_dir>/corrald.lock` and `<lock_dir>/corrald-<cgroup parent>.lock`. Fails with
  // `already_running`, naming the holder's pid and the setting it shares, when another daemon
  // holds either.
  static Result<InstanceLock> Acquire(const DaemonConfig& config,
                                      const std::string& lock_dir = "/run/corral");
  // Removes the lock files (a clean stop leaves none behind), then releases the locks.
  ~InstanceLock();
  InstanceLock(InstanceLock&&) = default;
  InstanceLock& operator=(InstanceLock&&) = default;

 private:
  InstanceLock() = default;
  struct Held {
    std::string path;
    UniqueFd fd;
  };
  std::vector<Held> held_;
};

}  // namespace corral
