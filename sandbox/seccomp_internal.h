// Inside the seccomp module: the profile tables (sandbox/seccomp_profiles.cc) and the helper
// that turns "any value but these" into rules libseccomp can express. Not for other modules.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace corral::seccomp_internal {

// A profile's allow-list by name, or an empty span when there is no such profile. Names the
// linked libseccomp does not know (syscalls newer than it) are skipped when the filter is
// built: their numbers fall to the default action, ENOSYS, which libc treats as "too old".
std::span<const std::string_view> ProfileAllowList(std::string_view profile);

// One masked equality on an argument: (arg & mask) == value.
struct ArgMatch {
  uint64_t mask;
  uint64_t value;
};

// Masked equalities on the low `width` bits of an argument that, taken together, match exactly
// the values NOT in `values`. libseccomp allows one comparison per argument in a rule and has
// no masked not-equal, so "anything but these" is written as every bit prefix that leads to no
// listed value: at most width * values.size() matches.
std::vector<ArgMatch> ComplementMatches(std::span<const uint32_t> values, int width);

}  // namespace corral::seccomp_internal
