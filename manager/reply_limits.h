// The daemon's own check of what a worker answered to `execute_program`.
//
// The worker bounds captured output (limits.max_output_bytes, in characters) and the result
// (limits.max_result_bytes) itself, but the worker runs tenant code: a program can write its
// own reply frame on the channel descriptor and claim anything (a 15 MiB result, untruncated
// output, false `*_truncated` flags). Only the frame maximum would bound it. So the daemon
// applies the same limits again to every reply before it reaches a client: output past the
// limit is cut (at a character boundary) and marked truncated, and a result past its limit is
// refused as `result_too_large`, as the worker would have done.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "manager/config.h"
#include "sandbox/status.h"

namespace corral {

// Enforces `limits` on `result`, the reply to `command`; other commands pass unchanged.
Status EnforceReplyLimits(const std::string& command, const LimitsConfig& limits,
                          nlohmann::json* result);

}  // namespace corral
