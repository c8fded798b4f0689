// The memory the daemon may promise to sandboxes, and what it has promised (S47).
//
// Each sandbox has its own cgroup memory limit, so it is OOM-killed only for its own use, as
// long as the host can give every live sandbox its whole limit at once. The budget makes that
// true by admission: a sandbox is started only if its limit fits in what the live ones have
// not already reserved; otherwise the create gets 429 `memory_budget_exhausted`. Without it,
// 13 `numeric` sessions (2 GiB each) were admitted on a 24 GiB host, and the kernel's global
// OOM killer would pick a victim among innocent sessions, the daemon or the host.
//
// Thread safety: every method may be called from any thread. A Lease may outlive nothing: it
// holds a pointer to its budget, which must outlive every lease.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "sandbox/status.h"

namespace corral {

class MemoryBudget {
 public:
  // Gives its bytes back to the budget when destroyed.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&& other) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease();
    uint64_t bytes() const { return bytes_; }

   private:
    friend class MemoryBudget;
    Lease(MemoryBudget* budget, uint64_t bytes) : budget_(budget), bytes_(bytes) {}
    void Release();

    MemoryBudget* budget_ = nullptr;
    uint64_t bytes_ = 0;
  };

  explicit MemoryBudget(uint64_t budget_bytes) : budget_(budget_bytes) {}

  // Reserves `limit` bytes for one sandbox (`what` names it in the error). A limit of 0 (a
  // policy without a memory limit) could use all of the host: it reserves the whole budget.
  Result<Lease> Reserve(uint64_t limit, std::string_view what);

  uint64_t budget() const { return budget_; }
  uint64_t committed() const;

 private:
  const uint64_t budget_;
  mutable std::mutex mutex_;  // guards committed_
  uint64_t committed_ = 0;
};

// The budget for `configured` bytes; 0 means auto: 90% of the smaller of the host's MemTotal
// and the memory limit of the daemon's own cgroup, leaving the rest to the daemon and the host.
Result<uint64_t> ResolveMemoryBudget(uint64_t configured);

}  // namespace corral
