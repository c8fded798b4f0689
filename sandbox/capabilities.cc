#include "sandbox/capabilities.h"

#include <linux/securebits.h>
#include <sys/prctl.h>

#include <fstream>

namespace corral {

Status PrepareCapabilities(SandboxSpec* spec) {
  std::ifstream in("/proc/sys/kernel/cap_last_cap");
  int last = -1;
  if (!(in >> last) || last < 0) {
    return Status::Internal("read `/proc/sys/kernel/cap_last_cap`: no number");
  }
  spec->cap_last_cap = last;
  spec->empty_caps = cap_init();
  if (spec->empty_caps == nullptr) return ErrnoStatus("cap_init");
  return Status::Ok();
}

ApplyStep DropCapabilities(const SandboxSpec& spec) {
  // The bounding set caps what any later execve can ever gain, file capabilities included.
  for (int cap = 0; cap <= spec.cap_last_cap; ++cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {
      return ApplyStep::kBoundingSet;
    }
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
    return ApplyStep::kAmbientCapabilities;
  }
  // NOROOT: uid 0 or a setuid-root binary grants no capabilities; the locks make the bits
  // permanent for this process and its descendants. Setting them needs CAP_SETPCAP, which the
  // capset below gives up.
  constexpr int kBits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                        SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                        SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
  if (prctl(PR_SET_SECUREBITS, kBits, 0, 0, 0) != 0) return ApplyStep::kSecurebits;
  if (cap_set_proc(spec.empty_caps) != 0) return ApplyStep::kCapabilities;
  return static_cast<ApplyStep>(0);
}

}  // namespace corral
