// The sandbox's filesystem view: planned in the launcher, applied in the child.
//
// Root: a small tmpfs mounted over the launcher's root directory inside the child's private
// mount namespace, holding read-only (recursive, nosuid, nodev) binds of what the policy lists
// from the host, or a read-only bind of an image rootfs. Then a fresh /proc (the new pid
// namespace's), a minimal /dev (null, zero, full, random, urandom bound from the host, since
// mknod is refused in a user namespace), size- and inode-limited tmpfs at /tmp and /dev/shm,
// a generated /etc/passwd and /etc/group, the root tmpfs made read-only, and pivot_root.
// Nothing else of the host: no /sys, no cgroupfs, no /dev/pts.
#pragma once

#include <string>
#include <vector>

#include "sandbox/policy.h"
#include "sandbox/spec.h"
#include "sandbox/status.h"

namespace corral {

// Appends the mount steps for `policy` + `extra_binds` to spec->mounts. Checks the host side
// now (missing sources, symlinks, files versus directories) so the child only executes.
Status PlanMounts(const Policy& policy, const std::vector<BindMount>& extra_binds,
                  const std::string& root_dir, SandboxSpec* spec);

// Runs spec.mounts in order. Async-signal-safe. On failure returns the failing step's index and
// sets errno; returns -1 on success.
int ApplyMounts(const SandboxSpec& spec);

}  // namespace corral
