// Text-level parsing and checks behind the policy schema: numbers, booleans, and what a value
// must satisfy (ValueCheck). Used by the policy parser; no YAML here. A failing call returns an
// InvalidArgument status whose message is the reason alone ("bad size `12Zb` (...)"): the
// caller prefixes the path.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "sandbox/policy_schema.h"
#include "sandbox/status.h"

namespace corral {

Result<bool> ParseBoolText(std::string_view text);
Result<uint32_t> ParseU32Text(std::string_view text);
Result<uint64_t> ParseCountText(std::string_view text);
Result<double> ParseDecimalText(std::string_view text);

// The choice named `text`, or an error listing the known names.
Result<EnumChoice> FindChoice(std::string_view text, std::span<const EnumChoice> choices);

// Checks `value` (a scalar, a list item or a map key) against `check`.
Status CheckValue(ValueCheck check, std::string_view value, std::span<const EnumChoice> choices);

}  // namespace corral
