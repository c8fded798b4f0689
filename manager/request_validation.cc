#include "manager/request_validation.h"

#include <map>
#include <mutex>
#include <regex>

#include "manager/frame.h"
#include "manager/http_errors.h"

namespace corral {
namespace {

// nlohmann's parser recurses once per nesting level: 100000 `[` would overflow the stack of
// an HTTP thread (S52). Count depth outside strings before parsing; linear and allocation-free.
Status CheckDepth(std::string_view body) {
  if (JsonDepthWithin(body, kMaxJsonDepth)) return Status::Ok();
  return Status::InvalidArgument(
             fmt::format("body: JSON nested deeper than {} levels", kMaxJsonDepth))
      .WithReason("invalid_json");
}

// Compiled once per pattern; patterns are the constants of the route tables.
const std::regex& CompiledPattern(std::string_view pattern) {
  static std::mutex mutex;  // guards `cache`
  static std::map<std::string, std::regex, std::less<>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(pattern);
  if (it == cache.end())
    it = cache.emplace(std::string(pattern), std::regex(pattern.begin(), pattern.end())).first;
  return it->second;
}

std::string_view TypeName(FieldType type) {
  switch (type) {
    case FieldType::kString:
      return "a string";
    case FieldType::kInteger:
      return "an integer";
    case FieldType::kObject:
      return "an object";
    case FieldType::kAny:
      return "a value";
  }
  return "a value";
}

bool HasType(const nlohmann::json& value, FieldType type) {
  switch (type) {
    case FieldType::kString:
      return value.is_string();
    case FieldType::kInteger:
      return value.is_number_integer();
    case FieldType::kObject:
      return value.is_object();
    case FieldType::kAny:
      return true;
  }
  return false;
}

std::string Describe(const FieldSpec& spec) {
  if (spec.type == FieldType::kString && !spec.pattern.empty()) {
    return fmt::format("must be a string matching {}", spec.pattern);
  }
  return fmt::format("must be {}", TypeName(spec.type));
}

Status CheckString(const FieldSpec& spec, const std::string& value) {
  if (spec.max_bytes != 0 && value.size() > spec.max_bytes) {
    return InvalidField(spec.name, fmt::format("longer than {} bytes", spec.max_bytes));
  }
  if (!spec.pattern.empty()) return ValidateId(spec.name, value, spec.pattern);
  return Status::Ok();
}

Status CheckInteger(const FieldSpec& spec, const nlohmann::json& value) {
  if (value.is_number_unsigned() && value.get<uint64_t>() > INT64_MAX) {
    return InvalidField(spec.name, "out of range");
  }
  int64_t number = value.get<int64_t>();
  if (number < spec.min || (spec.max != 0 && number > spec.max)) {
    return InvalidField(spec.name, fmt::format("must be between {} and {}", spec.min, spec.max));
  }
  return Status::Ok();
}

Status CheckField(const FieldSpec& spec, const nlohmann::json& value) {
  if (!HasType(value, spec.type)) return InvalidField(spec.name, Describe(spec));
  if (value.is_string()) return CheckString(spec, value.get_ref<const std::string&>());
  if (spec.type == FieldType::kInteger) return CheckInteger(spec, value);
  if (spec.max_bytes != 0 &&
      value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).size() >
          spec.max_bytes) {
    return InvalidField(spec.name, fmt::format("larger than {} bytes", spec.max_bytes));
  }
  return Status::Ok();
}

const FieldSpec* FindSpec(std::span<const FieldSpec> fields, const std::string& name) {
  for (const FieldSpec& spec : fields) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

}  // namespace

Result<nlohmann::json> ParseJsonBody(std::string_view body, bool empty_is_object) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    if (empty_is_object) return nlohmann::json::object();
    return Status::InvalidArgument("body: a JSON object is required").WithReason("invalid_json");
  }
  CORRAL_TRY(CheckDepth(body));
  nlohmann::json parsed = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return Status::InvalidArgument("body: not valid JSON").WithReason("invalid_json");
  }
  if (!parsed.is_object()) {
    return Status::InvalidArgument("body: must be a JSON object").WithReason("invalid_json");
  }
  return parsed;
}

Status ValidateFields(const nlohmann::json& body, std::span<const FieldSpec> fields) {
  for (const auto& [name, value] : body.items()) {
    const FieldSpec* spec = FindSpec(fields, name);
    if (spec == nullptr) {
      // The name is client text: quote a bounded, printable prefix of it.
      std::string shown = name.substr(0, 64);
      for (char& c : shown) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
      }
      return InvalidField(shown, "unknown field");
    }
    if (value.is_null() && !spec->required) continue;
    CORRAL_TRY(CheckField(*spec, value));
  }
  for (const FieldSpec& spec : fields) {
    if (spec.required && !body.contains(spec.name)) {
      return InvalidField(spec.name, fmt::format("required; {}", Describe(spec)));
    }
  }
  return Status::Ok();
}

Status ValidateId(std::string_view field, std::string_view value, std::string_view pattern) {
  // Ids become cgroup names, log keys and URL segments: one path component, printable, short.
  bool bad = value.size() > 128 || value.find("..") != std::string_view::npos ||
             !std::regex_match(value.begin(), value.end(), CompiledPattern(pattern));
  if (bad) return InvalidField(field, fmt::format("must be a string matching {}", pattern));
  return Status::Ok();
}

}  // namespace corral
