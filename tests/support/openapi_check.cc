#include "tests/support/openapi_check.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <mutex>
#include <vector>

namespace corral::testing {
namespace {

const YAML::Node& Document() {
  static std::once_flag once;
  static YAML::Node document;
  std::call_once(once, [] {
    document = YAML::LoadFile(std::string(CORRAL_SOURCE_DIR) + "/docs/openapi.yaml");
  });
  return document;
}

// yaml-cpp's Node::operator= writes through to the node it refers to (it would rewrite the
// document); reset() rebinds the handle instead, so lookups here only ever use reset().
YAML::Node Resolve(const YAML::Node& start_node) {
  YAML::Node node;
  node.reset(start_node);
  for (int hops = 0; hops < 16 && node.IsMap() && node["$ref"]; ++hops) {
    std::string ref = node["$ref"].as<std::string>();  // "#/components/schemas/X"
    YAML::Node target;
    target.reset(Document());
    size_t start = 2;
    while (start < ref.size()) {
      size_t slash = ref.find('/', start);
      if (slash == std::string::npos) slash = ref.size();
      YAML::Node next = target[ref.substr(start, slash - start)];
      target.reset(next);
      start = slash + 1;
    }
    node.reset(target);
  }
  return node;
}

std::vector<std::string> Split(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    parts.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return parts;
}

bool TemplateMatches(const std::string& templ, const std::string& path) {
  std::vector<std::string> want = Split(templ);
  std::vector<std::string> got = Split(path);
  if (want.size() != got.size()) return false;
  for (size_t i = 0; i < want.size(); ++i) {
    bool param = !want[i].empty() && want[i].front() == '{';
    if (!param && want[i] != got[i]) return false;
  }
  return true;
}

bool TypeMatches(const std::string& type, const nlohmann::json& value) {
  if (type == "object") return value.is_object();
  if (type == "array") return value.is_array();
  if (type == "string") return value.is_string();
  if (type == "integer") return value.is_number_integer();
  if (type == "number") return value.is_number();
  if (type == "boolean") return value.is_boolean();
  return true;
}

std::string CheckValue(const YAML::Node& unresolved, const nlohmann::json& value,
                       const std::string& where) {
  const YAML::Node schema = Resolve(unresolved);
  if (!schema.IsMap()) return "";
  if (value.is_null()) {
    bool nullable = schema["nullable"] && schema["nullable"].as<bool>();
    return nullable || !schema["type"] ? "" : where + ": null but not nullable";
  }
  if (schema["type"] && !TypeMatches(schema["type"].as<std::string>(), value)) {
    return fmt::format("{}: expected {}, got {}", where, schema["type"].as<std::string>(),
                       value.type_name());
  }
  if (schema["enum"] && value.is_string()) {
    bool found = false;
    for (const auto& option : schema["enum"]) found |= option.as<std::string>() == value;
    if (!found) return fmt::format("{}: `{}` not in enum", where, value.get<std::string>());
  }
  if (value.is_object()) {
    for (const auto& name : schema["required"]) {
      if (!value.contains(name.as<std::string>())) {
        return fmt::format("{}: missing required `{}`", where, name.as<std::string>());
      }
    }
    for (const auto& property : schema["properties"]) {
      std::string name = property.first.as<std::string>();
      if (!value.contains(name)) continue;
      std::string problem = CheckValue(property.second, value[name], where + "." + name);
      if (!problem.empty()) return problem;
    }
  }
  if (value.is_array() && schema["items"]) {
    for (size_t i = 0; i < value.size(); ++i) {
      std::string problem = CheckValue(schema["items"], value[i], fmt::format("{}[{}]", where, i));
      if (!problem.empty()) return problem;
    }
  }
  return "";
}

std::string CheckResponse(const std::string& method, const std::string& path, int status,
                          const std::string& body) {
  std::string bare = path.substr(0, path.find('?'));
  YAML::Node operation;
  const YAML::Node& document = Document();
  for (const auto& entry : document["paths"]) {
    if (!TemplateMatches(entry.first.as<std::string>(), bare)) continue;
    std::string lower = method;
    for (char& c : lower) c = static_cast<char>(std::tolower(c));
    const YAML::Node candidate = entry.second[lower];
    if (candidate) operation.reset(candidate);  // reset() throws on a missing node
    break;
  }
  if (!operation || !operation.IsMap()) {
    // Unknown routes and methods answer with the error shape; check that much.
    if (status != 404 && status != 405 && status != 400) {
      return fmt::format("{} {}: undocumented route answered {}", method, bare, status);
    }
    return CheckValue(Document()["components"]["schemas"]["Error"],
                      nlohmann::json::parse(body, nullptr, false), "body");
  }
  const YAML::Node documented = operation["responses"][std::to_string(status)];
  if (!documented) return fmt::format("{} {}: status {} is not documented", method, bare, status);
  const YAML::Node response = Resolve(documented);
  const YAML::Node content = response["content"];
  if (!content || !content["application/json"]) {
    if (!content && !body.empty()) {
      return fmt::format("{} {}: {} documents no body but got one", method, bare, status);
    }
    return "";
  }
  nlohmann::json parsed = nlohmann::json::parse(body, nullptr, false);
  if (parsed.is_discarded())
    return fmt::format("{} {}: {}: body is not JSON", method, bare, status);
  std::string problem = CheckValue(content["application/json"]["schema"], parsed, "body");
  if (!problem.empty()) return fmt::format("{} {} -> {}: {}", method, bare, status, problem);
  return "";
}

}  // namespace

std::string CheckAgainstOpenApi(const std::string& method, const std::string& path, int status,
                                const std::string& body) {
  // yaml-cpp nodes are not safe to read from many threads at once (lookups may allocate).
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  try {
    return CheckResponse(method, path, status, body);
  } catch (const std::exception& e) {
    return fmt::format("{} {} -> {}: checking against the document failed: {}", method, path,
                       status, e.what());
  }
}

}  // namespace corral::testing
