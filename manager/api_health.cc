// Routes: GET /healthz (liveness), GET /readyz (readiness), GET /openapi.yaml.
#include "manager/api.h"
#include "manager/openapi_document.h"
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

// Compiled in at build time, so the document always matches the daemon that serves it.
ApiResponse OpenApi() {
  return ApiResponse{200, "application/yaml", std::string(kOpenApiDocument)};
}

}  // namespace

std::vector<Route> HealthRoutes(ApiContext* context) {
  return {
      {"GET", "/healthz", [](const ApiRequest&) { return Healthz(); }},
      {"GET", "/readyz", [context](const ApiRequest&) { return Readyz(context); }},
      {"GET", "/openapi.yaml", [](const ApiRequest&) { return OpenApi(); }},
  };
}

}  // namespace corral
