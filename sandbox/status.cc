#include "sandbox/status.h"

#include <cstring>

namespace corral {

std::string_view CategoryName(ErrorCategory category) {
  switch (category) {
    case ErrorCategory::kOk: return "ok";
    case ErrorCategory::kInvalidArgument: return "invalid_argument";
    case ErrorCategory::kNotFound: return "not_found";
    case ErrorCategory::kAlreadyExists: return "already_exists";
    case ErrorCategory::kFailedPrecondition: return "failed_precondition";
    case ErrorCategory::kPermissionDenied: return "permission_denied";
    case ErrorCategory::kUnauthenticated: return "unauthenticated";
    case ErrorCategory::kTooLarge: return "too_large";
    case ErrorCategory::kResourceExhausted: return "resource_exhausted";
    case ErrorCategory::kUnavailable: return "unavailable";
    case ErrorCategory::kDeadlineExceeded: return "deadline_exceeded";
    case ErrorCategory::kUnsupported: return "unsupported";
    case ErrorCategory::kInternal: return "internal";
  }
  return "internal";
}

Status Status::FromErrno(int sys_errno, std::string message) {
  ErrorCategory category = ErrorCategory::kInternal;
  switch (sys_errno) {
    case ENOENT: category = ErrorCategory::kNotFound; break;
    case EEXIST: category = ErrorCategory::kAlreadyExists; break;
    case EACCES:
    case EPERM: category = ErrorCategory::kPermissionDenied; break;
    case EINVAL: category = ErrorCategory::kInvalidArgument; break;
    case EAGAIN:
    case ENOSPC:
    case EMFILE:
    case ENFILE:
    case ENOMEM: category = ErrorCategory::kResourceExhausted; break;
    case ETIMEDOUT: category = ErrorCategory::kDeadlineExceeded; break;
    case ENOSYS:
    case EOPNOTSUPP: category = ErrorCategory::kUnsupported; break;
    default: break;
  }
  return Status(category, std::move(message), sys_errno);
}

Status Status::Context(std::string_view what) const& {
  Status copy = *this;
  return std::move(copy).Context(what);
}

Status Status::Context(std::string_view what) && {
  if (!ok()) message_ = fmt::format("{}: {}", what, message_);
  return std::move(*this);
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  if (errno_ == 0) return message_;
  return fmt::format("{}: {}", message_, std::strerror(errno_));
}

}  // namespace corral
