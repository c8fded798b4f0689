#include "sandbox/policy_fields.h"

#include <set>
#include <variant>

#include "sandbox/policy_values.h"

namespace corral {
namespace {

template <typename T>
T& Member(const FieldSpec& field, Policy& policy) {
  return std::get<MemberRef<T>>(field.target)(policy);
}

Result<std::string> Scalar(const LocatedNode& at, std::string_view what) {
  if (!at.node.IsScalar()) {
    return at.Error(fmt::format("expected {}, got {}", what, NodeTypeName(at.node)));
  }
  return at.node.Scalar();
}

// Parses the scalar at `at` with `parse` (a text parser returning Result<T>) into `out`.
template <typename T, typename Parse>
Status ReadScalar(const LocatedNode& at, std::string_view what, Parse parse, T& out) {
  CORRAL_ASSIGN_OR_RETURN(std::string text, Scalar(at, what));
  auto value = parse(text);
  if (!value.ok()) return at.Error(value.status().message());
  out = std::move(value).value();
  return Status::Ok();
}

Status ReadString(const FieldSpec& field, const LocatedNode& at, std::string& out) {
  CORRAL_ASSIGN_OR_RETURN(out, Scalar(at, "a string"));
  Status valid = CheckValue(field.check, out, field.choices);
  return valid.ok() ? valid : at.Error(valid.message());
}

Status ReadStringList(const FieldSpec& field, const LocatedNode& at,
                      std::vector<std::string>& out) {
  if (!at.node.IsSequence()) {
    return at.Error(fmt::format("expected a list, got {}", NodeTypeName(at.node)));
  }
  out.clear();
  std::set<std::string> seen;
  for (size_t i = 0; i < at.node.size(); ++i) {
    LocatedNode item = at.Child(at.node[i], fmt::format("[{}]", i));
    std::string text;
    CORRAL_TRY(ReadString(field, item, text));
    if (!seen.insert(text).second) return item.Error(fmt::format("`{}` is listed twice", text));
    out.push_back(std::move(text));
  }
  return Status::Ok();
}

Status ReadStringMap(const FieldSpec& field, const LocatedNode& at,
                     std::map<std::string, std::string>& out) {
  if (!at.node.IsMap()) {
    return at.Error(fmt::format("expected a map, got {}", NodeTypeName(at.node)));
  }
  out.clear();
  for (const auto& entry : at.node) {
    CORRAL_ASSIGN_OR_RETURN(std::string key, MapKey(at, entry.first));
    LocatedNode value = at.Child(entry.second, "." + key);
    Status valid = CheckValue(field.check, key, field.choices);
    if (!valid.ok()) return value.Error(valid.message());
    CORRAL_ASSIGN_OR_RETURN(std::string text, Scalar(value, "a string"));
    if (text.find('\0') != std::string::npos) return value.Error("contains a NUL byte");
    if (!out.emplace(key, std::move(text)).second) return value.Error("duplicate key");
  }
  return Status::Ok();
}

// The keys of a bind given as a map, as a small schema of its own.
struct BindKey {
  std::string_view key;
  std::variant<std::string BindMount::*, bool BindMount::*> member;
};
constexpr BindKey kBindKeys[] = {
    {"source", &BindMount::source},
    {"target", &BindMount::target},
    {"writable", &BindMount::writable},
    {"optional", &BindMount::optional},
};

Status ReadBindKey(const LocatedNode& at, std::string_view key, BindMount& bind) {
  for (const BindKey& spec : kBindKeys) {
    if (spec.key != key) continue;
    if (auto* text = std::get_if<std::string BindMount::*>(&spec.member)) {
      CORRAL_ASSIGN_OR_RETURN(bind.*(*text), Scalar(at, "a path"));
      return Status::Ok();
    }
    return ReadScalar(at, "true or false", ParseBoolText,
                      bind.*std::get<bool BindMount::*>(spec.member));
  }
  return at.Error("unknown key (known: source, target, writable, optional)");
}

// A bind over the new root or over the /proc and /dev the launcher mounts itself would replace
// what the sandbox is built on (a host /proc or /dev would hand the tenant the host's).
Status CheckBindTarget(const LocatedNode& at, std::string_view target) {
  for (std::string_view reserved : {"/proc", "/dev"}) {
    if (target == reserved || (target.starts_with(reserved) && target[reserved.size()] == '/')) {
      return at.Error(fmt::format("`{}` is mounted by the launcher itself", target));
    }
  }
  if (target.find_first_not_of('/') == std::string_view::npos) {
    return at.Error("a bind cannot replace the sandbox root");
  }
  return Status::Ok();
}

Result<BindMount> ReadBind(const LocatedNode& at) {
  BindMount bind;
  if (at.node.IsScalar()) {
    bind.source = at.node.Scalar();
  } else if (at.node.IsMap()) {
    std::set<std::string> seen;
    for (const auto& entry : at.node) {
      CORRAL_ASSIGN_OR_RETURN(std::string key, MapKey(at, entry.first));
      LocatedNode value = at.Child(entry.second, "." + key);
      if (!seen.insert(key).second) return value.Error("duplicate key");
      CORRAL_TRY(ReadBindKey(value, key, bind));
    }
    if (bind.source.empty()) return at.Error("a bind needs a `source`");
  } else {
    return at.Error(fmt::format("expected a path or a map, got {}", NodeTypeName(at.node)));
  }
  if (bind.target.empty()) bind.target = bind.source;

  Status valid = CheckValue(ValueCheck::kAbsolutePath, bind.source, {});
  if (valid.ok()) valid = CheckValue(ValueCheck::kAbsolutePath, bind.target, {});
  if (!valid.ok()) return at.Error(valid.message());
  CORRAL_TRY(CheckBindTarget(at, bind.target));
  return bind;
}

Status ReadBinds(const LocatedNode& at, std::vector<BindMount>& out) {
  if (!at.node.IsSequence()) {
    return at.Error(fmt::format("expected a list, got {}", NodeTypeName(at.node)));
  }
  out.clear();
  std::set<std::string> targets;
  for (size_t i = 0; i < at.node.size(); ++i) {
    LocatedNode item = at.Child(at.node[i], fmt::format("[{}]", i));
    CORRAL_ASSIGN_OR_RETURN(BindMount bind, ReadBind(item));
    if (!targets.insert(bind.target).second) {
      return item.Error(fmt::format("`{}` is bound twice", bind.target));
    }
    out.push_back(std::move(bind));
  }
  return Status::Ok();
}

Status ReadEnum(const FieldSpec& field, const LocatedNode& at, Policy& policy) {
  CORRAL_ASSIGN_OR_RETURN(std::string text, Scalar(at, "a name"));
  auto choice = FindChoice(text, field.choices);
  if (!choice.ok()) return at.Error(choice.status().message());
  std::get<EnumSetter>(field.target)(policy, *choice);
  return Status::Ok();
}

}  // namespace

Status LocatedNode::Error(std::string_view reason) const {
  YAML::Mark mark = node.Mark();
  if (!show_line || mark.is_null()) {
    return Status::InvalidArgument(fmt::format("{}: {}", path, reason));
  }
  return Status::InvalidArgument(fmt::format("{}: {} (line {})", path, reason, mark.line + 1));
}

LocatedNode LocatedNode::Child(YAML::Node child, std::string_view suffix) const {
  return LocatedNode{child, path + std::string(suffix), show_line};
}

std::string_view NodeTypeName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return "nothing";
  }
  return "nothing";
}

Result<std::string> MapKey(const LocatedNode& map, const YAML::Node& key) {
  if (!key.IsScalar()) return map.Error("keys must be plain names");
  return key.Scalar();
}

Status ApplyField(const FieldSpec& field, const LocatedNode& at, Policy& policy) {
  switch (field.kind) {
    case FieldKind::kBool:
      return ReadScalar(at, "true or false", ParseBoolText, Member<bool>(field, policy));
    case FieldKind::kU32:
      return ReadScalar(at, "a whole number", ParseU32Text, Member<uint32_t>(field, policy));
    case FieldKind::kCount:
      return ReadScalar(at, "a whole number", ParseCountText, Member<uint64_t>(field, policy));
    case FieldKind::kSize:
      return ReadScalar(at, "a size", ParseSize, Member<uint64_t>(field, policy));
    case FieldKind::kDouble:
      return ReadScalar(at, "a number", ParseDecimalText, Member<double>(field, policy));
    case FieldKind::kDuration:
      return ReadScalar(at, "a duration", ParseDuration,
                        Member<std::chrono::milliseconds>(field, policy));
    case FieldKind::kString:
      return ReadString(field, at, Member<std::string>(field, policy));
    case FieldKind::kStringList:
      return ReadStringList(field, at, Member<std::vector<std::string>>(field, policy));
    case FieldKind::kStringMap:
      return ReadStringMap(field, at, Member<std::map<std::string, std::string>>(field, policy));
    case FieldKind::kBindList:
      return ReadBinds(at, Member<std::vector<BindMount>>(field, policy));
    case FieldKind::kEnum:
      return ReadEnum(field, at, policy);
  }
  return Status::Internal(fmt::format("{}: field kind not handled", field.path));
}

}  // namespace corral
