// A small, honest OpenAPI 3 response checker for the tests: loads docs/openapi.yaml with
// yaml-cpp and checks that a response's status is documented for its path and method, and
// that its JSON body has the documented type, required properties and property types
// (following $ref, items, nullable). It does not check patterns, formats or oneOf.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace corral::testing {

// Empty when the response matches the document; otherwise what does not match.
std::string CheckAgainstOpenApi(const std::string& method, const std::string& path, int status,
                                const std::string& body);

}  // namespace corral::testing
