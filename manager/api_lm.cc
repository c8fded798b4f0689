// Routes: GET /v1/lm/endpoints; and the daemon-side `configure_lm` call and the `lm` part of
// a session's JSON, used by api_sessions.cc and api_call.cc.
#include "manager/api.h"
#include "manager/http_errors.h"

namespace corral {
namespace {

ApiResponse ListEndpoints(ApiContext* context, const ApiRequest&) {
  if (context->lm == nullptr) {
    return JsonResponse(200,
                        {{"default_endpoint", nullptr}, {"endpoints", nlohmann::json::array()}});
  }
  return JsonResponse(200, context->lm->Endpoints());
}

}  // namespace

nlohmann::json SessionJson(ApiContext* context, Session& session) {
  nlohmann::json info = session.Info();
  if (context->lm != nullptr) info["lm"] = context->lm->SessionInfo(session.id());
  return info;
}

Result<nlohmann::json> ConfigureLm(ApiContext* context, const Session& session,
                                   const nlohmann::json& args) {
  if (context->lm == nullptr) {
    return Status::Unsupported("this daemon has no model gateway")
        .WithReason(std::string(kLmNotConfigured));
  }
  CORRAL_ASSIGN_OR_RETURN(LmSettings settings, context->lm->Configure(session.id(), args));
  return nlohmann::json{{"lm", settings.ToJson()}};
}

std::vector<Route> LmRoutes(ApiContext* context) {
  return {{"GET", "/v1/lm/endpoints",
           [context](const ApiRequest& r) { return ListEndpoints(context, r); }}};
}

}  // namespace corral
