// Request bodies and path parameters, checked before anything is created.
//
// Threats (docs/security.md S52): bodies that are not JSON, of the wrong shape, megabyte
// strings, nesting deep enough to overflow nlohmann's recursive parser, unknown fields, ids
// with `/`, `..`, NUL or kilobytes of characters. Every refusal is a 400 naming the field.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "sandbox/status.h"

namespace corral {

// Deeper JSON than this is refused before parsing.
inline constexpr int kMaxJsonDepth = 64;

// Parses a request body as a JSON object. An empty body is an empty object when
// `empty_is_object`. Refuses nesting past kMaxJsonDepth with a cheap pre-scan first.
Result<nlohmann::json> ParseJsonBody(std::string_view body, bool empty_is_object);

enum class FieldType { kString, kInteger, kObject, kAny };

// One field a request body may carry.
struct FieldSpec {
  std::string_view name;
  FieldType type;
  bool required = false;
  std::string_view pattern;  // strings: an ECMAScript regex the whole value must match
  size_t max_bytes = 0;      // strings: length; objects: serialised size; 0 = no limit
  int64_t min = 0;           // integers
  int64_t max = 0;           // integers; 0 = no upper limit
};

// Checks `body` against `fields`: unknown fields, missing required ones, types, patterns and
// sizes. The first problem found is returned as 400 invalid_field naming the field.
Status ValidateFields(const nlohmann::json& body, std::span<const FieldSpec> fields);

// Identifiers that appear in paths: the same rules as the request bodies.
inline constexpr std::string_view kSessionIdPattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$";
inline constexpr std::string_view kProgramIdPattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$";
inline constexpr std::string_view kPolicyNamePattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$";
inline constexpr std::string_view kUserIdPattern = "^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$";

Status ValidateId(std::string_view field, std::string_view value, std::string_view pattern);

}  // namespace corral
