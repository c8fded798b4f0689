// Descriptors: the sandboxed process gets exactly the descriptors passed to it, at the numbers
// asked for, and /dev/null on 0..2 when those are not passed. Everything the launcher had open
// (sockets of other sessions, the daemon's listening socket, state files) is closed before the
// command runs.
#pragma once

#include "sandbox/spec.h"

namespace corral {

// Child, after pivot_root (it opens the sandbox's /dev/null). Moves the launcher channels above
// every target, copies each source to a high number before any dup2 (so a source numbered like
// another pass's target is never clobbered), dup2s them into place, then marks everything above
// the highest target close-on-exec, or closes it when `close_fds` (no exec will follow; the
// channels stay open). Async-signal-safe; false with errno set on failure.
bool ApplyDescriptors(const SandboxSpec& spec, ChildChannels* channels, bool close_fds);

// Closes every descriptor except `keep`. Async-signal-safe.
void CloseAllExcept(int keep);

}  // namespace corral
