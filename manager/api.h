// The v1 HTTP API's route tables (docs/openapi.yaml describes every route and response).
// Each api_*.cc file contributes the routes of one resource; handlers stay short: validate,
// call the registry or the session, shape the JSON.
//
// Thread safety: handlers run on HTTP threads concurrently; everything they reach is
// thread-safe.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "manager/config.h"
#include "manager/http_server.h"
#include "manager/lm_gateway.h"
#include "manager/pool_backend.h"
#include "manager/session_registry.h"

namespace corral {

struct ApiContext {
  const DaemonConfig* config = nullptr;
  SessionRegistry* registry = nullptr;
  std::function<Status()> ready;  // readiness of the launcher and the backends
  LmGateway* lm = nullptr;        // model settings and usage of sessions
  PoolBackend* pool = nullptr;    // null when the pool is off (pool.size 0)
};

std::vector<Route> SessionRoutes(ApiContext* context);
std::vector<Route> ProgramRoutes(ApiContext* context);
std::vector<Route> CallRoutes(ApiContext* context);
std::vector<Route> HealthRoutes(ApiContext* context);
std::vector<Route> LmRoutes(ApiContext* context);
std::vector<Route> PoolRoutes(ApiContext* context);

// Every route of the v1 API.
std::vector<Route> AllRoutes(ApiContext* context);

// Shared by the handlers: the session named by the `{id}` path parameter.
Result<std::shared_ptr<Session>> SessionFromPath(ApiContext* context, const ApiRequest& request);
// A session as GET shows it: Session::Info() plus its model settings and usage (`lm`).
nlohmann::json SessionJson(ApiContext* context, Session& session);
// The configure_lm command of POST /v1/sessions/{id}/call, served by the daemon itself.
Result<nlohmann::json> ConfigureLm(ApiContext* context, const Session& session,
                                   const nlohmann::json& args);
// The arguments of a program command sent through the generic call, checked as the program
// routes check their bodies: a bad or unknown field is a 400 naming it.
Status ValidateProgramArgs(const std::string& command, const nlohmann::json& args);
// A call's timeout: `timeout_ms` from the body, else kSessionCallTimeout.
std::chrono::milliseconds CallTimeout(ApiContext* context, const nlohmann::json& body);
// Upper bound of `timeout_ms` in request bodies: one hour.
inline constexpr int64_t kMaxTimeoutMs = 3600 * 1000;

}  // namespace corral
