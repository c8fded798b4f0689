// THE one place where error categories and reasons become HTTP statuses, and where the error
// body gets its shape: {"error": {"code", "message", "details"}}. Handlers return Status values;
// nothing else in the daemon picks a status code for an error.
//
// Thread safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "sandbox/status.h"

namespace corral {

// The HTTP status for an error: a reason with its own status (program_error -> 422) wins over
// the category (kNotFound -> 404). Never 2xx; 500 only for kInternal.
int HttpStatusFor(const Status& status);

// `error.code`: the reason when set, else a name derived from the category.
std::string ErrorCode(const Status& status);

// The error body: {"error": {"code", "message", "details": {...}}}.
nlohmann::json ErrorBody(const Status& status);

// A worker's typed error (`program_not_found`, `program_error`, ...) as a Status carrying the
// worker's type as its reason and `details` (traceback, field) as its details.
Status StatusFromWorkerError(std::string_view type, std::string_view message,
                             const nlohmann::json& details);

// Errors that name a field of the request: 400 invalid_field, details {"field": field}.
Status InvalidField(std::string_view field, std::string_view problem);

}  // namespace corral
