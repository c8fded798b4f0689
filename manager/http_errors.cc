#include "manager/http_errors.h"

#include <array>

namespace corral {
namespace {

struct CategoryStatus {
  ErrorCategory category;
  int http_status;
  std::string_view code;  // error.code when the Status has no reason
};

constexpr std::array kCategories = {
    CategoryStatus{ErrorCategory::kInvalidArgument, 400, "invalid_request"},
    CategoryStatus{ErrorCategory::kUnauthenticated, 401, "unauthenticated"},
    CategoryStatus{ErrorCategory::kPermissionDenied, 403, "permission_denied"},
    CategoryStatus{ErrorCategory::kNotFound, 404, "not_found"},
    CategoryStatus{ErrorCategory::kAlreadyExists, 409, "already_exists"},
    CategoryStatus{ErrorCategory::kFailedPrecondition, 409, "failed_precondition"},
    CategoryStatus{ErrorCategory::kTooLarge, 413, "payload_too_large"},
    CategoryStatus{ErrorCategory::kResourceExhausted, 429, "resource_exhausted"},
    CategoryStatus{ErrorCategory::kUnsupported, 501, "not_implemented"},
    CategoryStatus{ErrorCategory::kUnavailable, 503, "unavailable"},
    CategoryStatus{ErrorCategory::kDeadlineExceeded, 504, "deadline_exceeded"},
    CategoryStatus{ErrorCategory::kInternal, 500, "internal"},
};

// Reasons whose status is not their category's. A tenant program's own failure (exception,
// unserialisable or oversized result) is neither bad input nor a server fault: 422.
struct ReasonStatus {
  std::string_view reason;
  int http_status;
};

constexpr std::array kReasons = {
    ReasonStatus{"program_error", 422},
    ReasonStatus{"result_not_serializable", 422},
    ReasonStatus{"result_too_large", 422},
    ReasonStatus{"method_not_allowed", 405},
    // The model endpoint behind the gateway failed or answered nonsense: a bad gateway.
    ReasonStatus{"lm_unavailable", 502},
    ReasonStatus{"lm_bad_response", 502},
    // The model answered, but not in the form the signature asks for: like a program error.
    ReasonStatus{"lm_parse_error", 422},
};

// The worker's error types (images/python-worker/worker.py) and what they are.
struct WorkerErrorType {
  std::string_view type;
  ErrorCategory category;
};

constexpr std::array kWorkerErrors = {
    WorkerErrorType{"program_not_found", ErrorCategory::kNotFound},
    WorkerErrorType{"program_exists", ErrorCategory::kAlreadyExists},
    WorkerErrorType{"program_error", ErrorCategory::kFailedPrecondition},
    WorkerErrorType{"invalid_program", ErrorCategory::kInvalidArgument},
    WorkerErrorType{"invalid_signature", ErrorCategory::kInvalidArgument},
    WorkerErrorType{"invalid_inputs", ErrorCategory::kInvalidArgument},
    WorkerErrorType{"invalid_program_id", ErrorCategory::kInvalidArgument},
    WorkerErrorType{"invalid_args", ErrorCategory::kInvalidArgument},
    WorkerErrorType{"unknown_command", ErrorCategory::kInvalidArgument},
    WorkerErrorType{"result_not_serializable", ErrorCategory::kFailedPrecondition},
    WorkerErrorType{"result_too_large", ErrorCategory::kFailedPrecondition},
    // Model calls (manager/lm_gateway.h), as the gateway answered them to the worker. No
    // endpoint for the session: 501.
    WorkerErrorType{"lm_not_configured", ErrorCategory::kUnsupported},
    WorkerErrorType{"lm_rate_limited", ErrorCategory::kResourceExhausted},
    WorkerErrorType{"lm_timeout", ErrorCategory::kDeadlineExceeded},
    WorkerErrorType{"lm_unavailable", ErrorCategory::kUnavailable},
    WorkerErrorType{"lm_bad_response", ErrorCategory::kUnavailable},
    WorkerErrorType{"lm_parse_error", ErrorCategory::kFailedPrecondition},
    WorkerErrorType{"lm_invalid_request", ErrorCategory::kInvalidArgument},
};

}  // namespace

int HttpStatusFor(const Status& status) {
  for (const ReasonStatus& row : kReasons) {
    if (row.reason == status.reason()) return row.http_status;
  }
  for (const CategoryStatus& row : kCategories) {
    if (row.category == status.category()) return row.http_status;
  }
  return 500;
}

std::string ErrorCode(const Status& status) {
  if (!status.reason().empty()) return status.reason();
  for (const CategoryStatus& row : kCategories) {
    if (row.category == status.category()) return std::string(row.code);
  }
  return "internal";
}

nlohmann::json ErrorBody(const Status& status) {
  nlohmann::json details = nlohmann::json::object();
  if (!status.details_json().empty()) {
    details = nlohmann::json::parse(status.details_json(), nullptr, false);
    if (!details.is_object()) details = nlohmann::json::object();
  }
  return {{"error",
           {{"code", ErrorCode(status)}, {"message", status.ToString()}, {"details", details}}}};
}

Status StatusFromWorkerError(std::string_view type, std::string_view message,
                             const nlohmann::json& details) {
  ErrorCategory category = ErrorCategory::kInternal;
  std::string reason = "worker_error";
  for (const WorkerErrorType& row : kWorkerErrors) {
    if (row.type == type) {
      category = row.category;
      reason = std::string(type);
    }
  }
  // An error type this daemon does not know is the worker's fault, not the client's; it is
  // still reported as the worker's own answer rather than as a daemon bug.
  if (category == ErrorCategory::kInternal) category = ErrorCategory::kFailedPrecondition;
  nlohmann::json shown = details.is_object() ? details : nlohmann::json::object();
  if (reason == "worker_error") shown["worker_error_type"] = std::string(type);
  // "ValueError: bad day" tells an operator more than the exception's text alone.
  std::string text(message);
  if (shown.contains("exception") && shown["exception"].is_string()) {
    text = shown["exception"].get<std::string>() + ": " + text;
  }
  return Status::Error(category, std::move(text))
      .WithReason(std::move(reason))
      .WithDetails(shown.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

Status InvalidField(std::string_view field, std::string_view problem) {
  nlohmann::json details = {{"field", std::string(field)}};
  return Status::InvalidArgument(fmt::format("{}: {}", field, problem))
      .WithReason("invalid_field")
      .WithDetails(details.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace corral
