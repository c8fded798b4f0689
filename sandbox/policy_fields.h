// Reading one YAML node into one policy field, by the field's kind (policy_schema.h). Internal
// to the policy parser. May throw yaml-cpp exceptions; ParsePolicy catches them at its edge.
#pragma once

#include <string>
#include <string_view>

#include <yaml-cpp/yaml.h>

#include "sandbox/policy.h"
#include "sandbox/policy_schema.h"
#include "sandbox/status.h"

namespace corral {

// A node and the policy path it was found at, for messages: "limits.memory: ... (line 7)".
struct LocatedNode {
  YAML::Node node;
  std::string path;
  bool show_line = true;  // false for values that came from an override, not from the file

  Status Error(std::string_view reason) const;
  LocatedNode Child(YAML::Node child, std::string_view suffix) const;
};

// "a map", "a list", "a scalar", "nothing": for "expected a map, got a list".
std::string_view NodeTypeName(const YAML::Node& node);

// The key of a map entry as text; fails for a key that is not a scalar.
Result<std::string> MapKey(const LocatedNode& map, const YAML::Node& key);

// Reads `at.node` into `field`'s member of `policy`.
Status ApplyField(const FieldSpec& field, const LocatedNode& at, Policy& policy);

}  // namespace corral
