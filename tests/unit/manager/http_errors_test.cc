// The one mapping of error categories and reasons to HTTP statuses and the error body.
#include <catch2/catch.hpp>

#include "manager/http_errors.h"

namespace corral {
namespace {

TEST_CASE("http errors: categories map to their statuses") {
  struct Case {
    Status status;
    int http;
    std::string code;
  };
  const std::vector<Case> cases = {
      {Status::InvalidArgument("x"), 400, "invalid_request"},
      {Status::NotFound("x"), 404, "not_found"},
      {Status::AlreadyExists("x"), 409, "already_exists"},
      {Status::FailedPrecondition("x"), 409, "failed_precondition"},
      {Status::TooLarge("x"), 413, "payload_too_large"},
      {Status::ResourceExhausted("x"), 429, "resource_exhausted"},
      {Status::Unavailable("x"), 503, "unavailable"},
      {Status::DeadlineExceeded("x"), 504, "deadline_exceeded"},
      {Status::Unsupported("x"), 501, "not_implemented"},
      {Status::Internal("x"), 500, "internal"},
      {Status::Error(ErrorCategory::kPermissionDenied, "x"), 403, "permission_denied"},
      {Status::Error(ErrorCategory::kUnauthenticated, "x"), 401, "unauthenticated"},
      {Status::NotFound("x").WithReason("session_not_found"), 404, "session_not_found"},
      {Status::FailedPrecondition("x").WithReason("program_error"), 422, "program_error"},
      {Status::InvalidArgument("x").WithReason("method_not_allowed"), 405, "method_not_allowed"},
      {Status::DeadlineExceeded("x").WithReason("wall_timeout"), 504, "wall_timeout"},
  };
  for (const Case& c : cases) {
    INFO(c.code);
    CHECK(HttpStatusFor(c.status) == c.http);
    CHECK(ErrorCode(c.status) == c.code);
  }
}

TEST_CASE("http errors: the body has one shape with details") {
  nlohmann::json body = ErrorBody(InvalidField("session_id", "must be a string"));
  CHECK(body["error"]["code"] == "invalid_field");
  CHECK(body["error"]["message"] == "session_id: must be a string");
  CHECK(body["error"]["details"]["field"] == "session_id");
  nlohmann::json plain = ErrorBody(Status::NotFound("gone"));
  CHECK(plain["error"]["details"].is_object());
  CHECK(plain["error"]["details"].empty());
}

TEST_CASE("http errors: worker error types map to statuses") {
  struct Case {
    std::string type;
    int http;
  };
  const std::vector<Case> cases = {
      {"program_not_found", 404},       {"program_exists", 409},    {"program_error", 422},
      {"invalid_program", 400},         {"invalid_signature", 400}, {"invalid_inputs", 400},
      {"invalid_program_id", 400},      {"invalid_args", 400},      {"unknown_command", 400},
      {"result_not_serializable", 422}, {"result_too_large", 422},  {"lm_not_configured", 501},
      {"lm_rate_limited", 429},         {"lm_timeout", 504},        {"lm_unavailable", 502},
      {"lm_bad_response", 502},         {"lm_parse_error", 422},    {"lm_invalid_request", 400},
      {"something_new", 409},
  };
  for (const Case& c : cases) {
    INFO(c.type);
    Status status = StatusFromWorkerError(c.type, "m", {{"traceback", "tb"}});
    CHECK(HttpStatusFor(status) == c.http);
    CHECK(ErrorBody(status)["error"]["details"].is_object());
  }
  Status error = StatusFromWorkerError("program_error", "boom", {{"traceback", "tb"}});
  CHECK(ErrorBody(error)["error"]["details"]["traceback"] == "tb");
  CHECK(ErrorCode(StatusFromWorkerError("something_new", "m", nullptr)) == "worker_error");
}

}  // namespace
}  // namespace corral
