// Routes: GET /healthz (liveness), GET /readyz (readiness), GET /openapi.yaml.
#include "manager/api.h"
#include "manager/version.h"

namespace corral {
namespace {

ApiResponse Healthz() {
  return JsonResponse(200, {{"status", "ok"}, {"version", kVersion}});
}

ApiResponse Readyz(ApiContext* context) {
  Status ready = context->ready ? context->ready() : Status::Ok();
  if (!ready.ok()) return ErrorResponse(ready);
  return JsonResponse(200, {{"status", "ready"}, {"sessions", context->registry->size()}});
}

ApiResponse OpenApi(ApiContext* context) {
  if (context->openapi_yaml.empty()) {
    return ErrorResponse(
        Status::NotFound("the OpenAPI document was not found at start").WithReason("not_found"));
  }
  return ApiResponse{200, "application/yaml", context->openapi_yaml};
}

}  // namespace

std::vector<Route> HealthRoutes(ApiContext* context) {
  return {
      {"GET", "/healthz", [](const ApiRequest&) { return Healthz(); }},
      {"GET", "/readyz", [context](const ApiRequest&) { return Readyz(context); }},
      {"GET", "/openapi.yaml", [context](const ApiRequest&) { return OpenApi(context); }},
  };
}

}  // namespace corral
