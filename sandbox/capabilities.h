// Capabilities: every set emptied (effective, permitted, inheritable, ambient, bounding) and the
// securebits locked so that nothing can bring them back, not even running a setuid-root or
// file-capability binary inside the sandbox.
#pragma once

#include "sandbox/spec.h"
#include "sandbox/status.h"

namespace corral {

// Launcher side: the highest capability number of this kernel (/proc/sys/kernel/cap_last_cap)
// and an empty capability set (libcap cap_init) for the child to install.
Status PrepareCapabilities(SandboxSpec* spec);

// Child: drops the bounding set, clears the ambient set, locks the securebits (needs
// CAP_SETPCAP, so before the capset), then installs the empty sets with cap_set_proc, which
// does not allocate. Async-signal-safe; returns the failing step, or 0.
ApplyStep DropCapabilities(const SandboxSpec& spec);

}  // namespace corral
