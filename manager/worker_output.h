// What a worker writes on stdout and stderr, drained into the daemon's log.
//
// The worker logs there (JSON lines); tenant code's prints are captured by the worker itself
// and returned with results, but a program can still write to the real descriptors. Such output
// is hostile: lines are cut at a fixed length, and a session may log only so many bytes per
// window (then one note says how much was dropped), so a printing loop cannot flood the log or
// grow the daemon's memory (S30).
//
// Thread safety: the sink is called by the launcher's supervisor thread only.
#pragma once

#include <functional>
#include <string_view>

#include "sandbox/log.h"

namespace corral {

std::function<void(int stream, std::string_view data)> MakeWorkerOutputSink(LogContext context);

}  // namespace corral
