// The policy schema: one row per YAML path, saying its kind, where it lands in `Policy`, its
// default as written in a policy file and a one-line meaning. The parser (policy.cc) walks a
// YAML tree against this table; docs/policy.md documents every row and a unit test checks that
// it does, and that each default here is the struct's default.
//
// Thread safety: the table is immutable static data.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "sandbox/policy.h"

namespace corral {

enum class FieldKind {
  kBool,        // true | false
  kU32,         // plain non-negative integer below 2^32
  kCount,       // plain non-negative integer (u64)
  kSize,        // bytes with an optional suffix: 64Mi, 1G, 4096 (u64)
  kDouble,      // a decimal number
  kDuration,    // 500ms, 30s, 5m, 1h; a plain number is seconds
  kString,      // a scalar
  kStringList,  // a sequence of scalars
  kStringMap,   // a map of scalar to scalar
  kBindList,    // a sequence of paths or {source, target, writable, optional} maps
  kEnum,        // one name out of `choices`
};

// What a value must also satisfy beyond its kind. For lists it applies to each item and for
// maps to each key.
enum class ValueCheck {
  kNone,
  kName,                  // [A-Za-z0-9._-]{1,64}: policy names appear in URLs and file names
  kAbsolutePath,          // absolute, no `..` component
  kOptionalAbsolutePath,  // same, or empty
  kHostname,              // RFC 1123 host name, at most 64 characters
  kEnvName,               // [A-Za-z_][A-Za-z0-9_]*
  kSyscallName,           // known to libseccomp for the native architecture
  kChoice,                // one of `choices` (enum lists)
};

struct EnumChoice {
  std::string_view name;
  int value;
};

template <typename T>
using MemberRef = T& (*)(Policy&);
using EnumSetter = void (*)(Policy&, const EnumChoice&);

// Where a field's value lands. The alternative must match the row's kind (a unit test checks).
using FieldTarget =
    std::variant<MemberRef<bool>, MemberRef<uint32_t>, MemberRef<uint64_t>, MemberRef<double>,
                 MemberRef<std::chrono::milliseconds>, MemberRef<std::string>,
                 MemberRef<std::vector<std::string>>, MemberRef<std::map<std::string, std::string>>,
                 MemberRef<std::vector<BindMount>>, EnumSetter>;

struct FieldSpec {
  std::string_view path;  // "limits.memory"
  FieldKind kind;
  FieldTarget target;
  std::string_view default_text;  // as a policy file would spell it; empty = computed
  std::string_view doc;
  ValueCheck check = ValueCheck::kNone;
  std::span<const EnumChoice> choices = {};
};

std::span<const FieldSpec> PolicySchema();

// The row for `path`, or null.
const FieldSpec* FindPolicyField(std::string_view path);

// True when `path` names a section that holds fields ("limits", "filesystem").
bool IsPolicySection(std::string_view path);

std::string_view FieldKindName(FieldKind kind);

}  // namespace corral
