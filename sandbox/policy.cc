// Policy parsing: YAML text -> overrides applied to the tree -> the tree walked against the
// schema (policy_schema.cc) -> rules that span fields -> a Policy. Every error names the source,
// the path in the policy and the reason, and carries the reason code `invalid_policy`.
#include "sandbox/policy.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <set>

#include <yaml-cpp/yaml.h>

#include "sandbox/policy_fields.h"
#include "sandbox/policy_rules.h"
#include "sandbox/policy_schema.h"
#include "sandbox/policy_values.h"
#include "sandbox/unique_fd.h"

namespace corral {
namespace {

constexpr std::string_view kInvalidPolicy = "invalid_policy";

// A policy is a few kilobytes; anything much larger is a mistake (or /dev/zero), and the
// daemon should not read it into memory.
constexpr size_t kMaxPolicyBytes = 1 << 20;

// "path=value" from the command line or an API request, keyed by path.
using Overrides = std::map<std::string, std::string>;

Status Invalid(const Status& status, std::string_view source) {
  std::string message =
      source.empty() ? status.message() : fmt::format("{}: {}", source, status.message());
  return Status::Error(ErrorCategory::kInvalidArgument, std::move(message), status.sys_errno())
      .WithReason(std::string(kInvalidPolicy));
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      diagonal = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, substitute});
    }
  }
  return row[b.size()];
}

// " (did you mean `limits.memory`?)" for a near miss of a known path, else "".
std::string Suggestion(std::string_view path) {
  std::string_view best;
  size_t best_distance = 3;  // a typo is at most two edits away
  for (const FieldSpec& field : PolicySchema()) {
    size_t distance = EditDistance(path, field.path);
    if (distance < best_distance) {
      best = field.path;
      best_distance = distance;
    }
  }
  return best.empty() ? "" : fmt::format(" (did you mean `{}`?)", best);
}

std::string JoinPath(std::string_view prefix, std::string_view key) {
  return prefix.empty() ? std::string(key) : fmt::format("{}.{}", prefix, key);
}

// The override that set `path` or something inside it, or null.
const std::string* OverrideOf(const Overrides& overrides, std::string_view path) {
  for (const auto& [override_path, text] : overrides) {
    if (override_path == path ||
        (override_path.starts_with(path) && override_path[path.size()] == '.')) {
      return &text;
    }
  }
  return nullptr;
}

class TreeWalker {
 public:
  TreeWalker(const Overrides& overrides, Policy& policy) : overrides_(overrides), policy_(policy) {}

  // Reads every entry of the map at `at` (a section, or the root when `at.path` is empty).
  Status WalkSection(const LocatedNode& at) {
    if (!at.node.IsMap()) {
      return at.Error(fmt::format("expected a map, got {}", NodeTypeName(at.node)));
    }
    std::set<std::string> seen;
    for (const auto& entry : at.node) {
      CORRAL_ASSIGN_OR_RETURN(std::string key, MapKey(at, entry.first));
      std::string path = JoinPath(at.path, key);
      const std::string* override_text = OverrideOf(overrides_, path);
      LocatedNode child{entry.second, path, at.show_line && override_text == nullptr};

      if (!seen.insert(key).second) return child.Error("duplicate key");
      Status status = WalkEntry(child);
      if (!status.ok() && override_text != nullptr) {
        return std::move(status).Context(fmt::format("override `{}`", *override_text));
      }
      CORRAL_TRY(status);
    }
    return Status::Ok();
  }

 private:
  Status WalkEntry(const LocatedNode& at) {
    if (const FieldSpec* field = FindPolicyField(at.path)) return ApplyField(*field, at, policy_);
    if (IsPolicySection(at.path)) return WalkSection(at);
    return at.Error("unknown key" + Suggestion(at.path));
  }

  const Overrides& overrides_;
  Policy& policy_;
};

Result<YAML::Node> LoadYaml(const std::string& text) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) return Status::InvalidArgument(fmt::format("bad YAML: {}", e.msg));
    return Status::InvalidArgument(
        fmt::format("line {}, column {}: bad YAML: {}", e.mark.line + 1, e.mark.column + 1, e.msg));
  }
}

// An override may name a field, or one key inside a map field (`environment.LANG=C`).
bool IsOverridablePath(std::string_view path) {
  if (FindPolicyField(path) != nullptr) return true;
  size_t dot = path.rfind('.');
  if (dot == std::string_view::npos) return false;
  const FieldSpec* parent = FindPolicyField(path.substr(0, dot));
  return parent != nullptr && parent->kind == FieldKind::kStringMap;
}

// Sets `path` (dot-separated) in `root` to `value`, creating sections on the way.
Status SetInTree(YAML::Node root, const std::string& path, const YAML::Node& value) {
  YAML::Node current = root;
  std::string walked;
  size_t start = 0;
  for (size_t dot = path.find('.'); dot != std::string::npos; dot = path.find('.', start)) {
    std::string key = path.substr(start, dot - start);
    walked = JoinPath(walked, key);
    YAML::Node next = current[key];
    if (!next.IsDefined() || next.IsNull()) {
      current[key] = YAML::Node(YAML::NodeType::Map);
    } else if (!next.IsMap()) {
      return Status::InvalidArgument(
          fmt::format("{}: expected a map, got {}", walked, NodeTypeName(next)));
    }
    YAML::Node child = current[key];
    current.reset(child);  // rebinds; plain assignment would overwrite the node's content
    start = dot + 1;
  }
  current[path.substr(start)] = value;
  return Status::Ok();
}

Status ApplyOverride(YAML::Node root, const std::string& text, Overrides& applied) {
  auto fail = [&](std::string_view reason) {
    return Status::InvalidArgument(fmt::format("override `{}`: {}", text, reason));
  };
  size_t equals = text.find('=');
  if (equals == std::string::npos) return fail("expected path=value");
  std::string path = text.substr(0, equals);
  if (IsPolicySection(path)) return fail(fmt::format("{}: a section; set one of its fields", path));
  if (!IsOverridablePath(path)) {
    return fail(fmt::format("{}: unknown key{}", path, Suggestion(path)));
  }

  auto value = LoadYaml(text.substr(equals + 1));
  if (!value.ok()) return fail(value.status().message());
  Status set = SetInTree(root, path, *value);
  if (!set.ok()) return fail(set.message());
  applied[path] = text;
  return Status::Ok();
}

// The file name without directories and `.yaml`: "policies/strict.yaml" -> "strict".
std::string NameFromSource(std::string_view source) {
  size_t slash = source.rfind('/');
  if (slash != std::string_view::npos) source.remove_prefix(slash + 1);
  for (std::string_view extension : {".yaml", ".yml"}) {
    if (source.ends_with(extension)) source.remove_suffix(extension.size());
  }
  return std::string(source);
}

Status FillName(Policy& policy) {
  if (!policy.name.empty()) return Status::Ok();
  policy.name = NameFromSource(policy.source);
  Status valid = CheckValue(ValueCheck::kName, policy.name, {});
  if (valid.ok()) return valid;
  return Status::InvalidArgument(
      fmt::format("name: {} (taken from the file name; set `name`)", valid.message()));
}

Status CheckRules(const Policy& policy, const Overrides& overrides) {
  std::string path;
  Status status = CheckPolicyRules(policy, &path);
  const std::string* override_text = status.ok() ? nullptr : OverrideOf(overrides, path);
  if (override_text == nullptr) return status;
  return std::move(status).Context(fmt::format("override `{}`", *override_text));
}

Result<Policy> ParseTree(const std::string& yaml_text, const std::string& source,
                         const std::vector<std::string>& override_texts) {
  CORRAL_ASSIGN_OR_RETURN(YAML::Node root, LoadYaml(yaml_text));
  if (root.IsNull() || !root.IsDefined()) {
    return Status::InvalidArgument("the policy is empty (expected a map of settings)");
  }
  if (!root.IsMap()) {
    return Status::InvalidArgument(
        fmt::format("expected a map of settings at the top, got {}", NodeTypeName(root)));
  }
  Overrides overrides;
  for (const std::string& text : override_texts) CORRAL_TRY(ApplyOverride(root, text, overrides));

  Policy policy;
  policy.source = source;
  CORRAL_TRY(TreeWalker(overrides, policy).WalkSection(LocatedNode{root, "", true}));
  CORRAL_TRY(CheckRules(policy, overrides));
  CORRAL_TRY(FillName(policy));
  return policy;
}

}  // namespace

Result<Policy> ParsePolicy(const std::string& yaml_text, const std::string& source,
                           const std::vector<std::string>& overrides) {
  // yaml-cpp reports errors by throwing; none of that crosses this edge.
  try {
    Result<Policy> policy = ParseTree(yaml_text, source, overrides);
    if (!policy.ok()) return Invalid(policy.status(), source);
    return policy;
  } catch (const YAML::Exception& e) {
    return Invalid(Status::InvalidArgument(fmt::format("bad YAML: {}", e.what())), source);
  } catch (const std::exception& e) {
    return Status::Internal(fmt::format("{}: parsing the policy failed: {}", source, e.what()))
        .WithReason(std::string(kInvalidPolicy));
  }
}

Result<Policy> LoadPolicyFile(const std::string& path, const std::vector<std::string>& overrides) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Invalid(ErrnoStatus("open"), path);

  std::string text(kMaxPolicyBytes + 1, '\0');
  size_t size = 0;
  while (size < text.size()) {
    ssize_t n = read(fd.get(), text.data() + size, text.size() - size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Invalid(ErrnoStatus("read"), path);
    if (n == 0) break;
    size += static_cast<size_t>(n);
  }
  if (size > kMaxPolicyBytes) {
    return Invalid(Status::InvalidArgument(fmt::format("larger than {} bytes", kMaxPolicyBytes)),
                   path);
  }
  text.resize(size);
  return ParsePolicy(text, path, overrides);
}

}  // namespace corral
