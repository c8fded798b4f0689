// Routes: POST/GET /v1/sessions/{id}/programs, DELETE /v1/sessions/{id}/programs/{program_id},
// POST /v1/sessions/{id}/programs/{program_id}/execute. Each is one worker command.
#include <array>

#include "manager/api.h"
#include "manager/http_errors.h"
#include "manager/request_validation.h"

namespace corral {
namespace {

// A python entrypoint is an identifier; the worker checks it again.
constexpr std::string_view kEntrypointPattern = "^[A-Za-z_][A-Za-z0-9_]{0,63}$";

const std::array kCreateFields = {
    FieldSpec{"program_id", FieldType::kString, true, kProgramIdPattern},
    FieldSpec{"kind", FieldType::kString, true, "^(python|signature)$"},
    FieldSpec{"source", FieldType::kString},
    FieldSpec{"entrypoint", FieldType::kString, false, kEntrypointPattern},
    FieldSpec{"signature", FieldType::kAny},
    FieldSpec{"instructions", FieldType::kString},
    FieldSpec{"chain_of_thought", FieldType::kAny},  // the worker checks both against the
    FieldSpec{"demos", FieldType::kAny},             // signature they belong to
};

// The arguments of execute_program and delete_program sent through the generic call.
const std::array kProgramCallFields = {
    FieldSpec{"program_id", FieldType::kString, true, kProgramIdPattern},
    FieldSpec{"inputs", FieldType::kAny},
};

const std::array kExecuteFields = {
    FieldSpec{"inputs", FieldType::kObject},
    FieldSpec{"timeout_ms", FieldType::kInteger, false, "", 0, 1, kMaxTimeoutMs},
};

}  // namespace

Status ValidateProgramArgs(const std::string& command, const nlohmann::json& args) {
  if (command == "create_program") return ValidateFields(args, kCreateFields);
  if (command == "execute_program") {
    CORRAL_TRY(ValidateFields(args, kProgramCallFields));
    if (args.contains("inputs") && !args["inputs"].is_object() && !args["inputs"].is_null()) {
      return InvalidField("inputs", "must be an object");
    }
    return Status::Ok();
  }
  if (command == "delete_program") return ValidateFields(args, kProgramCallFields);
  return Status::Ok();
}

namespace {

// Runs one worker command in the session named by the path.
Result<nlohmann::json> RunInSession(ApiContext* context, const ApiRequest& request,
                                    const std::string& command, const nlohmann::json& args,
                                    std::chrono::milliseconds timeout) {
  CORRAL_ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFromPath(context, request));
  return session->Call(command, args, timeout);
}

Result<std::string> ProgramIdFromPath(const ApiRequest& request) {
  std::string id = request.params.at("program_id");
  CORRAL_TRY(ValidateId("program_id", id, kProgramIdPattern));
  return id;
}

ApiResponse CreateProgram(ApiContext* context, const ApiRequest& request) {
  Result<nlohmann::json> body = ParseJsonBody(request.body, false);
  if (!body.ok()) return ErrorResponse(body.status());
  Status valid = ValidateFields(*body, kCreateFields);
  if (!valid.ok()) return ErrorResponse(valid);
  nlohmann::json args = nlohmann::json::object();
  for (const auto& [name, value] : body->items()) {
    if (!value.is_null()) args[name] = value;
  }
  Result<nlohmann::json> result =
      RunInSession(context, request, "create_program", args, kSessionCallTimeout);
  if (!result.ok()) return ErrorResponse(result.status());
  nlohmann::json created = result->is_object() ? *result : nlohmann::json::object();
  created["program_id"] = args["program_id"];
  created["kind"] = args["kind"];
  return JsonResponse(201, created);
}

ApiResponse ListPrograms(ApiContext* context, const ApiRequest& request) {
  Result<nlohmann::json> result = RunInSession(context, request, "list_programs",
                                               nlohmann::json::object(), kSessionCallTimeout);
  if (!result.ok()) return ErrorResponse(result.status());
  nlohmann::json listed = result->is_object() ? *result : nlohmann::json::object();
  if (!listed.contains("programs")) listed["programs"] = nlohmann::json::array();
  return JsonResponse(200, listed);
}

ApiResponse DeleteProgram(ApiContext* context, const ApiRequest& request) {
  Result<std::string> program_id = ProgramIdFromPath(request);
  if (!program_id.ok()) return ErrorResponse(program_id.status());
  Result<nlohmann::json> result = RunInSession(context, request, "delete_program",
                                               {{"program_id", *program_id}}, kSessionCallTimeout);
  if (!result.ok()) return ErrorResponse(result.status());
  return EmptyResponse(204);
}

ApiResponse ExecuteProgram(ApiContext* context, const ApiRequest& request) {
  Result<std::string> program_id = ProgramIdFromPath(request);
  if (!program_id.ok()) return ErrorResponse(program_id.status());
  Result<nlohmann::json> body = ParseJsonBody(request.body, true);
  if (!body.ok()) return ErrorResponse(body.status());
  Status valid = ValidateFields(*body, kExecuteFields);
  if (!valid.ok()) return ErrorResponse(valid);
  nlohmann::json inputs = body->value("inputs", nlohmann::json::object());
  if (inputs.is_null()) inputs = nlohmann::json::object();
  Result<nlohmann::json> result =
      RunInSession(context, request, "execute_program",
                   {{"program_id", *program_id}, {"inputs", inputs}}, CallTimeout(context, *body));
  if (!result.ok()) return ErrorResponse(result.status());
  return JsonResponse(200, *result);
}

}  // namespace

std::vector<Route> ProgramRoutes(ApiContext* context) {
  return {
      {"POST", "/v1/sessions/{id}/programs",
       [context](const ApiRequest& r) { return CreateProgram(context, r); }},
      {"GET", "/v1/sessions/{id}/programs",
       [context](const ApiRequest& r) { return ListPrograms(context, r); }},
      {"DELETE", "/v1/sessions/{id}/programs/{program_id}",
       [context](const ApiRequest& r) { return DeleteProgram(context, r); }},
      {"POST", "/v1/sessions/{id}/programs/{program_id}/execute",
       [context](const ApiRequest& r) { return ExecuteProgram(context, r); }},
  };
}

}  // namespace corral
