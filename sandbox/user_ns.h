// User namespace: id maps and host-id leases.
//
// Each live sandbox maps its one inside uid/gid to a host uid=gid leased from the policy's
// range. Two live sandboxes never share a host id, even across launcher processes (the daemon
// and parallel corral-run instances): a lease is an exclusive flock on <dir>/<id>.lock, held
// for the sandbox's life and dropped by the kernel if the holder dies. Per-uid kernel limits
// and signal permissions therefore never connect two sandboxes.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "sandbox/spec.h"
#include "sandbox/status.h"
#include "sandbox/unique_fd.h"

namespace corral {

class IdLease {
 public:
  IdLease() = default;
  IdLease(uint32_t id, UniqueFd lock) : id_(id), lock_(std::move(lock)) {}
  // Takes a free id in [base, base + count), starting at a random offset so that concurrent
  // launchers do not contend for the same locks. kResourceExhausted when all are taken.
  static Result<IdLease> Acquire(const std::string& lock_dir, uint32_t base, uint32_t count);

  uint32_t id() const { return id_; }
  bool held() const { return lock_.valid(); }
  void Release() { lock_.reset(); }

 private:
  uint32_t id_ = 0;
  UniqueFd lock_;
};

// Writes "<inside> <host> 1" to /proc/<pid>/uid_map and gid_map. The launcher runs as root in
// the initial namespace, so no setgroups "deny" is needed and the child may drop its
// supplementary groups itself.
Status WriteIdMaps(pid_t pid, uid_t inside_uid, gid_t inside_gid, uint32_t host_id);

// Child: keeps capabilities across the uid switch (they are dropped deliberately later), drops
// supplementary groups, then setresgid and setresuid to the spec's ids. Raw system calls: the
// glibc wrappers broadcast to every thread glibc believes exists, which after clone from a
// multi-threaded parent are threads this process does not have. Async-signal-safe; returns the
// failing step, or 0.
ApplyStep ApplyIds(const SandboxSpec& spec);

}  // namespace corral
