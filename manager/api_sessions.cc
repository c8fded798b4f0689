// Routes: POST/GET /v1/sessions, GET/DELETE /v1/sessions/{id}.
#include <array>

#include "manager/api.h"
#include "manager/http_errors.h"
#include "manager/request_validation.h"

namespace corral {
namespace {

// Metadata is echoed back on every GET: bounded so one session cannot bloat every listing.
constexpr size_t kMaxMetadataBytes = 16 * 1024;

const std::array kCreateFields = {
    FieldSpec{"session_id", FieldType::kString, false, kSessionIdPattern},
    FieldSpec{"user_id", FieldType::kString, false, kUserIdPattern},
    FieldSpec{"tenant", FieldType::kString, false, kSessionIdPattern},
    FieldSpec{"policy", FieldType::kString, false, kPolicyNamePattern},
    FieldSpec{"backend", FieldType::kString, false, kPolicyNamePattern},
    FieldSpec{"metadata", FieldType::kObject, false, "", kMaxMetadataBytes},
    FieldSpec{"lm", FieldType::kObject},
};

std::optional<std::string> OptionalString(const nlohmann::json& body, const char* name) {
  if (!body.contains(name) || body[name].is_null()) return std::nullopt;
  return body[name].get<std::string>();
}

Result<CreateSessionRequest> ParseCreate(const ApiRequest& request) {
  CORRAL_ASSIGN_OR_RETURN(nlohmann::json body, ParseJsonBody(request.body, true));
  CORRAL_TRY(ValidateFields(body, kCreateFields));
  CreateSessionRequest create;
  create.session_id = OptionalString(body, "session_id");
  create.user_id = OptionalString(body, "user_id").value_or("");
  create.tenant = OptionalString(body, "tenant").value_or("default");
  create.policy = OptionalString(body, "policy");
  create.backend = OptionalString(body, "backend");
  if (body.contains("metadata") && body["metadata"].is_object()) create.metadata = body["metadata"];
  return create;
}

// The `lm` object of a create request, checked before anything starts.
Result<LmSettings> ParseCreateLm(ApiContext* context, const ApiRequest& request) {
  if (context->lm == nullptr) return LmSettings{};
  nlohmann::json body = nlohmann::json::parse(request.body, nullptr, false);
  nlohmann::json lm = body.is_object() ? body.value("lm", nlohmann::json()) : nlohmann::json();
  return context->lm->ParseSettings(lm, context->lm->Defaults());
}

ApiResponse CreateSession(ApiContext* context, const ApiRequest& request) {
  Result<CreateSessionRequest> create = ParseCreate(request);
  if (!create.ok()) return ErrorResponse(create.status());
  Result<LmSettings> lm = ParseCreateLm(context, request);
  if (!lm.ok()) return ErrorResponse(lm.status());
  Result<std::shared_ptr<Session>> session = context->registry->Create(*create);
  if (!session.ok()) return ErrorResponse(session.status());
  if (context->lm != nullptr) {
    context->lm->SetSession((*session)->id(), create->tenant, *lm, *session);
  }
  return JsonResponse(201, SessionJson(context, **session));
}

ApiResponse ListSessions(ApiContext* context, const ApiRequest& request) {
  std::optional<std::string> user_id;
  for (const auto& [name, value] : request.query) {
    if (name != "user_id") return ErrorResponse(InvalidField(name, "unknown query parameter"));
    Status valid = ValidateId("user_id", value, kUserIdPattern);
    if (!valid.ok()) return ErrorResponse(valid);
    user_id = value;
  }
  nlohmann::json sessions = nlohmann::json::array();
  for (const auto& session : context->registry->List(user_id)) {
    sessions.push_back(SessionJson(context, *session));
  }
  return JsonResponse(200, {{"sessions", sessions}});
}

ApiResponse GetSession(ApiContext* context, const ApiRequest& request) {
  Result<std::shared_ptr<Session>> session = SessionFromPath(context, request);
  if (!session.ok()) return ErrorResponse(session.status());
  return JsonResponse(200, SessionJson(context, **session));
}

ApiResponse DeleteSession(ApiContext* context, const ApiRequest& request) {
  std::string id = request.params.at("id");
  Status valid = ValidateId("session_id", id, kSessionIdPattern);
  if (!valid.ok()) return ErrorResponse(valid);
  Status deleted = context->registry->Delete(id);
  if (!deleted.ok()) return ErrorResponse(deleted);
  if (context->lm != nullptr) context->lm->ForgetSession(id);
  return EmptyResponse(204);
}

}  // namespace

Result<std::shared_ptr<Session>> SessionFromPath(ApiContext* context, const ApiRequest& request) {
  std::string id = request.params.at("id");
  CORRAL_TRY(ValidateId("session_id", id, kSessionIdPattern));
  return context->registry->Get(id);
}

std::chrono::milliseconds CallTimeout(ApiContext* context, const nlohmann::json& body) {
  if (body.contains("timeout_ms") && body["timeout_ms"].is_number_integer()) {
    return std::chrono::milliseconds(body["timeout_ms"].get<int64_t>());
  }
  (void)context;
  return kSessionCallTimeout;
}

std::vector<Route> SessionRoutes(ApiContext* context) {
  return {
      {"POST", "/v1/sessions",
       [context](const ApiRequest& r) { return CreateSession(context, r); }},
      {"GET", "/v1/sessions", [context](const ApiRequest& r) { return ListSessions(context, r); }},
      {"GET", "/v1/sessions/{id}",
       [context](const ApiRequest& r) { return GetSession(context, r); }},
      {"DELETE", "/v1/sessions/{id}",
       [context](const ApiRequest& r) { return DeleteSession(context, r); }},
  };
}

std::vector<Route> AllRoutes(ApiContext* context) {
  std::vector<Route> routes;
  for (auto group :
       {SessionRoutes, ProgramRoutes, CallRoutes, HealthRoutes, LmRoutes, PoolRoutes}) {
    std::vector<Route> more = group(context);
    routes.insert(routes.end(), more.begin(), more.end());
  }
  return routes;
}

}  // namespace corral
