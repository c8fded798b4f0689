#include "sandbox/policy_values.h"

#include <seccomp.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include "sandbox/policy.h"

namespace corral {
namespace {

struct Unit {
  std::string_view suffix;
  uint64_t multiplier;
};

// Decimal suffixes as disks and Kubernetes spell them; binary ones as memory is counted.
constexpr Unit kSizeUnits[] = {
    {"", 1},
    {"K", 1000},
    {"M", 1000 * 1000},
    {"G", 1000 * 1000 * 1000},
    {"T", 1000ull * 1000 * 1000 * 1000},
    {"Ki", 1ull << 10},
    {"Mi", 1ull << 20},
    {"Gi", 1ull << 30},
    {"Ti", 1ull << 40},
};

// Milliseconds per unit; a bare number is seconds, as `sleep` and most configs read it.
constexpr Unit kDurationUnits[] = {
    {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 60 * 60 * 1000},
};

// Ten years: past that a duration is a typo, and the arithmetic stays far from overflow.
constexpr double kMaxDurationMs = 10.0 * 365 * 24 * 3600 * 1000;

size_t DigitPrefix(std::string_view text) {
  size_t n = 0;
  while (n < text.size() && text[n] >= '0' && text[n] <= '9') ++n;
  return n;
}

// Digits, optionally followed by `.` and digits: the number part of a duration.
size_t DecimalPrefix(std::string_view text) {
  size_t n = DigitPrefix(text);
  if (n > 0 && n < text.size() && text[n] == '.') {
    size_t fraction = DigitPrefix(text.substr(n + 1));
    if (fraction > 0) n += 1 + fraction;
  }
  return n;
}

const Unit* FindUnit(std::span<const Unit> units, std::string_view suffix) {
  for (const Unit& unit : units) {
    if (unit.suffix == suffix) return &unit;
  }
  return nullptr;
}

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool IsEnvName(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    if (!IsAlnum(c) && c != '_') return false;
  }
  return true;
}

bool IsPolicyName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!IsAlnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

// RFC 1123: dot-separated labels of letters, digits and inner hyphens; the kernel takes at
// most 64 bytes (HOST_NAME_MAX).
bool IsHostname(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  while (true) {
    size_t dot = name.find('.');
    std::string_view label = name.substr(0, dot);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!IsAlnum(c) && c != '-') return false;
    }
    if (dot == std::string_view::npos) return true;
    name.remove_prefix(dot + 1);
  }
}

// A `..` component would let a bind source or target climb out of the rootfs or the new root
// the launcher builds, so paths must say exactly where they are.
Status CheckAbsolutePath(std::string_view path) {
  if (path.empty() || path[0] != '/') {
    return Status::InvalidArgument(fmt::format("path `{}` must be absolute", path));
  }
  if (path.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument("path must not contain a NUL byte");
  }
  for (size_t start = 0; start < path.size();) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (path.substr(start, end - start) == "..") {
      return Status::InvalidArgument(fmt::format("path `{}` must not contain `..`", path));
    }
    start = end + 1;
  }
  return Status::Ok();
}

std::string ChoiceNames(std::span<const EnumChoice> choices) {
  std::string names;
  for (const EnumChoice& choice : choices) {
    if (!names.empty()) names += ", ";
    names += choice.name;
  }
  return names;
}

}  // namespace

Result<uint64_t> ParseSize(const std::string& text) {
  auto bad = [&] {
    return Status::InvalidArgument(fmt::format(
        "bad size `{}` (use a number with an optional suffix K, M, G, T, Ki, Mi, Gi, Ti)", text));
  };
  size_t digits = DigitPrefix(text);
  const Unit* unit = FindUnit(kSizeUnits, std::string_view(text).substr(digits));
  if (digits == 0 || unit == nullptr) return bad();

  uint64_t number = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + digits, number);
  uint64_t bytes = 0;
  if (ec != std::errc() || __builtin_mul_overflow(number, unit->multiplier, &bytes)) {
    return Status::InvalidArgument(fmt::format("size `{}` is too large", text));
  }
  return bytes;
}

Result<std::chrono::milliseconds> ParseDuration(const std::string& text) {
  size_t number_size = DecimalPrefix(text);
  const Unit* unit = FindUnit(kDurationUnits, std::string_view(text).substr(number_size));
  if (number_size == 0 || unit == nullptr) {
    return Status::InvalidArgument(fmt::format(
        "bad duration `{}` (use a number with a unit ms, s, m or h; a plain number is seconds)",
        text));
  }
  double ms = std::strtod(text.substr(0, number_size).c_str(), nullptr) * unit->multiplier;
  if (ms > kMaxDurationMs) {
    return Status::InvalidArgument(fmt::format("duration `{}` is longer than ten years", text));
  }
  return std::chrono::milliseconds(std::llround(ms));
}

Result<bool> ParseBoolText(std::string_view text) {
  // Only the YAML 1.2 spellings: `no` and `off` read as strings elsewhere, and a policy should
  // mean the same to every reader.
  if (text == "true") return true;
  if (text == "false") return false;
  return Status::InvalidArgument(fmt::format("expected true or false, got `{}`", text));
}

Result<uint64_t> ParseCountText(std::string_view text) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return Status::InvalidArgument(fmt::format("expected a whole number, got `{}`", text));
  }
  return value;
}

Result<uint32_t> ParseU32Text(std::string_view text) {
  CORRAL_ASSIGN_OR_RETURN(uint64_t value, ParseCountText(text));
  if (value > std::numeric_limits<uint32_t>::max()) {
    return Status::InvalidArgument(fmt::format("`{}` is above 4294967295", text));
  }
  return static_cast<uint32_t>(value);
}

Result<double> ParseDecimalText(std::string_view text) {
  std::string copy(text);
  char* end = nullptr;
  double value = std::strtod(copy.c_str(), &end);
  if (copy.empty() || end != copy.c_str() + copy.size() || !std::isfinite(value)) {
    return Status::InvalidArgument(fmt::format("expected a number, got `{}`", text));
  }
  return value;
}

Result<EnumChoice> FindChoice(std::string_view text, std::span<const EnumChoice> choices) {
  for (const EnumChoice& choice : choices) {
    if (choice.name == text) return choice;
  }
  return Status::InvalidArgument(
      fmt::format("unknown value `{}` (known: {})", text, ChoiceNames(choices)));
}

Status CheckValue(ValueCheck check, std::string_view value, std::span<const EnumChoice> choices) {
  auto fail = [&](std::string_view what) {
    return Status::InvalidArgument(fmt::format("`{}` is not {}", value, what));
  };
  switch (check) {
    case ValueCheck::kNone:
      return Status::Ok();
    case ValueCheck::kName:
      return IsPolicyName(value) ? Status::Ok() : fail("a valid name ([A-Za-z0-9._-]{1,64})");
    case ValueCheck::kAbsolutePath:
      return CheckAbsolutePath(value);
    case ValueCheck::kOptionalAbsolutePath:
      return value.empty() ? Status::Ok() : CheckAbsolutePath(value);
    case ValueCheck::kHostname:
      return IsHostname(value) ? Status::Ok() : fail("a valid host name (RFC 1123, 64 bytes)");
    case ValueCheck::kEnvName:
      return IsEnvName(value) ? Status::Ok()
                              : fail("a valid environment name ([A-Za-z_][A-Za-z0-9_]*)");
    case ValueCheck::kSyscallName:
      if (seccomp_syscall_resolve_name(std::string(value).c_str()) == __NR_SCMP_ERROR) {
        return Status::InvalidArgument(fmt::format("unknown syscall `{}`", value));
      }
      return Status::Ok();
    case ValueCheck::kChoice:
      return FindChoice(value, choices).status();
  }
  return Status::Ok();
}

}  // namespace corral
