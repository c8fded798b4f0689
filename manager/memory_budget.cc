#include "manager/memory_budget.h"

#include <fstream>
#include <sstream>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace corral {
namespace {

constexpr double kAutoShare = 0.9;

std::string Mebibytes(uint64_t bytes) {
  return fmt::format("{} MiB", bytes >> 20);
}

// MemTotal from /proc/meminfo, in bytes; 0 when unreadable.
uint64_t HostMemTotal() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemTotal:") return kib << 10;
  }
  return 0;
}

// The v1 memory limit of the daemon's own cgroup, or v2 memory.max; 0 when none is set.
uint64_t OwnCgroupMemoryLimit() {
  std::ifstream self("/proc/self/cgroup");
  std::string line;
  while (std::getline(self, line)) {
    std::string path = line.substr(line.rfind(':') + 1);
    bool v1 = line.find(":memory:") != std::string::npos;
    bool v2 = line.rfind("0::", 0) == 0;
    if (!v1 && !v2) continue;
    std::string file = v1 ? "/sys/fs/cgroup/memory" + path + "/memory.limit_in_bytes"
                          : "/sys/fs/cgroup" + path + "/memory.max";
    std::ifstream limit(file);
    uint64_t bytes = 0;
    if (limit >> bytes && bytes > 0 && bytes < (1ull << 62)) return bytes;
  }
  return 0;
}

}  // namespace

MemoryBudget::Lease::Lease(Lease&& other) noexcept
    : budget_(std::exchange(other.budget_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

MemoryBudget::Lease& MemoryBudget::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    budget_ = std::exchange(other.budget_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

MemoryBudget::Lease::~Lease() {
  Release();
}

void MemoryBudget::Lease::Release() {
  if (budget_ == nullptr) return;
  std::lock_guard<std::mutex> lock(budget_->mutex_);
  budget_->committed_ -= bytes_;
  budget_ = nullptr;
  bytes_ = 0;
}

Result<MemoryBudget::Lease> MemoryBudget::Reserve(uint64_t limit, std::string_view what) {
  uint64_t bytes = limit == 0 ? budget_ : limit;
  std::lock_guard<std::mutex> lock(mutex_);
  if (bytes > budget_ - committed_) {
    nlohmann::json details = {
        {"budget_bytes", budget_}, {"committed_bytes", committed_}, {"requested_bytes", bytes}};
    return Status::ResourceExhausted(
               fmt::format("{} needs {} of memory, but {} of the daemon's memory budget of {} "
                           "(process.memory_budget) is promised to live sandboxes; end a "
                           "session or pick a policy with a smaller limits.memory",
                           what, Mebibytes(bytes), Mebibytes(committed_), Mebibytes(budget_)))
        .WithReason("memory_budget_exhausted")
        .WithDetails(details.dump());
  }
  committed_ += bytes;
  return Lease(this, bytes);
}

uint64_t MemoryBudget::committed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return committed_;
}

Result<uint64_t> ResolveMemoryBudget(uint64_t configured) {
  if (configured > 0) return configured;
  uint64_t total = HostMemTotal();
  if (total == 0) return Status::Internal("read MemTotal from /proc/meminfo");
  uint64_t own = OwnCgroupMemoryLimit();
  if (own > 0 && own < total) total = own;
  return static_cast<uint64_t>(static_cast<double>(total) * kAutoShare);
}

}  // namespace corral
