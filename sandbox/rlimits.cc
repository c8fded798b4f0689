#include "sandbox/rlimits.h"

#include <sys/resource.h>

namespace corral {

void PlanRlimits(const LimitsPolicy& limits, SandboxSpec* spec) {
  auto add = [spec](int resource, uint64_t value, const char* label, uint64_t grace = 0) {
    auto soft = static_cast<rlim_t>(value);
    spec->rlimits.push_back({resource, soft, soft + grace, label});
  };
  add(RLIMIT_NOFILE, limits.open_files, "RLIMIT_NOFILE");
  add(RLIMIT_FSIZE, limits.file_size, "RLIMIT_FSIZE");
  add(RLIMIT_CORE, 0, "RLIMIT_CORE");
  add(RLIMIT_STACK, limits.stack, "RLIMIT_STACK");
  if (limits.cpu_time.count() > 0) {
    add(RLIMIT_CPU, (limits.cpu_time.count() + 999) / 1000, "RLIMIT_CPU", 1);
  }
  if (limits.address_space > 0) add(RLIMIT_AS, limits.address_space, "RLIMIT_AS");
}

int ApplyRlimits(const SandboxSpec& spec) {
  for (size_t i = 0; i < spec.rlimits.size(); ++i) {
    struct rlimit limit = {spec.rlimits[i].soft, spec.rlimits[i].hard};
    if (setrlimit(spec.rlimits[i].resource, &limit) != 0) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace corral
