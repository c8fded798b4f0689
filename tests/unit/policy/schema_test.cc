// The schema table is the single source of the policy's shape: every row must be documented,
// its default must be the struct's default, and its target must match its kind.
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include "sandbox/policy.h"
#include "sandbox/policy_schema.h"

namespace corral {
namespace {

// The FieldTarget alternative each kind must use.
size_t ExpectedTargetIndex(FieldKind kind) {
  switch (kind) {
    case FieldKind::kBool:
      return 0;
    case FieldKind::kU32:
      return 1;
    case FieldKind::kCount:
    case FieldKind::kSize:
      return 2;
    case FieldKind::kDouble:
      return 3;
    case FieldKind::kDuration:
      return 4;
    case FieldKind::kString:
      return 5;
    case FieldKind::kStringList:
      return 6;
    case FieldKind::kStringMap:
      return 7;
    case FieldKind::kBindList:
      return 8;
    case FieldKind::kEnum:
      return 9;
  }
  return 99;
}

TEST_CASE("schema rows are unique, documented in the table and typed consistently", "[schema]") {
  std::set<std::string_view> paths;
  for (const FieldSpec& field : PolicySchema()) {
    INFO(field.path);
    CHECK(paths.insert(field.path).second);
    CHECK_FALSE(field.doc.empty());
    CHECK(field.target.index() == ExpectedTargetIndex(field.kind));
    CHECK(FindPolicyField(field.path) == &field);
    bool needs_choices = field.kind == FieldKind::kEnum || field.check == ValueCheck::kChoice;
    CHECK(needs_choices == !field.choices.empty());
  }
  CHECK(IsPolicySection("limits"));
  CHECK_FALSE(IsPolicySection("limits.memory"));
  CHECK_FALSE(IsPolicySection("limit"));
}

TEST_CASE("each schema default is the default of the policy struct", "[schema]") {
  auto base = ParsePolicy("name: t\n", "t.yaml");
  REQUIRE(base.ok());
  for (const FieldSpec& field : PolicySchema()) {
    if (field.default_text.empty()) continue;  // computed (the name)
    std::string override_text = fmt::format("{}={}", field.path, field.default_text);
    INFO(override_text);
    auto parsed = ParsePolicy("name: t\n", "t.yaml", {override_text});
    REQUIRE(parsed.ok());
    CHECK(*parsed == *base);
  }
}

// True when some table row of `doc` is about `path` and gives `default_text` as its default:
// "| `limits.memory` | size ... | `256Mi` | ...".
bool DocumentsDefault(const std::string& doc, std::string_view path, std::string_view def) {
  std::istringstream lines(doc);
  std::string row_start = fmt::format("| `{}` |", path);
  std::string cell = fmt::format("| `{}` |", def);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with(row_start) && (def.empty() || line.find(cell) != std::string::npos)) {
      return true;
    }
  }
  return false;
}

TEST_CASE("docs/policy.md documents every schema path with its default", "[schema]") {
  std::ifstream file(std::string(CORRAL_SOURCE_DIR) + "/docs/policy.md");
  REQUIRE(file.good());
  std::stringstream text;
  text << file.rdbuf();
  for (const FieldSpec& field : PolicySchema()) {
    INFO(field.path);
    CHECK(DocumentsDefault(text.str(), field.path, field.default_text));
  }
}

}  // namespace
}  // namespace corral
