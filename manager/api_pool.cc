// Routes: GET /v1/pool, the pool backend's workers, queue and store.
#include "manager/api.h"
#include "manager/http_errors.h"

namespace corral {
namespace {

ApiResponse GetPool(ApiContext* context, const ApiRequest&) {
  if (context->pool == nullptr) {
    return ErrorResponse(Status::Unsupported("the pool backend is off in this daemon (pool.size "
                                             "is 0)")
                             .WithReason("pool_disabled"));
  }
  return JsonResponse(200, context->pool->Stats());
}

}  // namespace

std::vector<Route> PoolRoutes(ApiContext* context) {
  return {{"GET", "/v1/pool", [context](const ApiRequest& r) { return GetPool(context, r); }}};
}

}  // namespace corral
