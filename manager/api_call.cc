// Route: POST /v1/sessions/{id}/call, the generic bridge call.
#include <array>

#include "manager/api.h"
#include "manager/http_errors.h"
#include "manager/request_validation.h"

namespace corral {
namespace {

// Only the worker's documented commands pass: the pool's session commands and anything a
// future worker adds stay unreachable from clients until they are reviewed and listed here.
constexpr std::array<std::string_view, 6> kCommands = {
    "ping", "list_programs", "get_stats", "create_program", "delete_program", "execute_program"};

const std::array kCallFields = {
    FieldSpec{"command", FieldType::kString, true, "^[a-z_]{1,64}$"},
    FieldSpec{"args", FieldType::kObject},
    FieldSpec{"timeout_ms", FieldType::kInteger, false, "", 0, 1, kMaxTimeoutMs},
};

Status CheckCommand(const std::string& command) {
  for (std::string_view known : kCommands) {
    if (known == command) return Status::Ok();
  }
  return Status::InvalidArgument(fmt::format("command: `{}` is not one of {}, configure_lm",
                                             command, fmt::join(kCommands, ", ")))
      .WithReason("unknown_command")
      .WithDetails(nlohmann::json{{"field", "command"}}.dump());
}

ApiResponse Call(ApiContext* context, const ApiRequest& request) {
  Result<nlohmann::json> body = ParseJsonBody(request.body, false);
  if (!body.ok()) return ErrorResponse(body.status());
  Status valid = ValidateFields(*body, kCallFields);
  if (!valid.ok()) return ErrorResponse(valid);
  std::string command = (*body)["command"].get<std::string>();
  Status known = command == "configure_lm" ? Status::Ok() : CheckCommand(command);
  if (!known.ok()) return ErrorResponse(known);

  Result<std::shared_ptr<Session>> session = SessionFromPath(context, request);
  if (!session.ok()) return ErrorResponse(session.status());
  nlohmann::json args = body->value("args", nlohmann::json::object());
  if (args.is_null()) args = nlohmann::json::object();
  if (command != "configure_lm") {
    Status args_valid = ValidateProgramArgs(command, args);
    if (!args_valid.ok()) return ErrorResponse(Status(args_valid).Context("args"));
  }
  // Model settings live in the daemon, which holds the endpoints: the worker never sees them.
  Result<nlohmann::json> result =
      command == "configure_lm" ? ConfigureLm(context, **session, args)
                                : (*session)->Call(command, args, CallTimeout(context, *body));
  if (!result.ok()) return ErrorResponse(result.status());
  if (command == "get_stats" && context->lm != nullptr && result->is_object()) {
    nlohmann::json lm = context->lm->SessionInfo((*session)->id());
    (*result)["lm"] = lm.is_object() ? lm["usage"] : lm;
  }
  return JsonResponse(200, {{"result", *result}});
}

}  // namespace

std::vector<Route> CallRoutes(ApiContext* context) {
  return {{"POST", "/v1/sessions/{id}/call",
           [context](const ApiRequest& r) { return Call(context, r); }}};
}

}  // namespace corral
