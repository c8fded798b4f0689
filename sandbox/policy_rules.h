// Rules that a parsed policy must satisfy beyond each field's own kind and check: sanity
// bounds and rules that span fields. Internal to the policy parser.
#pragma once

#include <string>

#include "sandbox/policy.h"
#include "sandbox/status.h"

namespace corral {

// The first rule `policy` breaks, as "path: reason", or Ok. Sets `*failed_path` to that path.
Status CheckPolicyRules(const Policy& policy, std::string* failed_path);

}  // namespace corral
